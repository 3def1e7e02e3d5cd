//! `sesame-host`: a `no_std` host driver for the STSAFE-A110 secure element (and sesame's
//! software chip), generic over any `embedded_hal::i2c::I2c` bus and `DelayNs` delay.
//!
//! It sends the bytes ST's host library (STSELib) sends (`docs/protocol.md`): one method per
//! chip command, NACK polling with bounded retries, STSELib's two-read response pattern, the
//! CRC checked on every response, and the host secure channel (C-MAC, R-MAC, command and
//! response encryption) chosen per command from the chip's command authorization table. The
//! driver core never allocates: variable-size answers go to caller buffers, fixed-size ones
//! come back as typed values ([`EccPublicKey`], [`EccSignature`], [`SharedSecret`]).
//!
//! # Start, and talk plainly
//!
//! The examples run against sesame's software chip on an in-process bus; on a board, pass your
//! HAL's I2C peripheral and delay instead.
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, _) = sesame_chip_doc::chip();
//! use sesame_host::Stsafe;
//! # use sesame_host::NoDelay as Delay;
//! let mut se = Stsafe::new(bus.device(), Delay, 0x20);
//! let info = se.init()?; // product data (must be an A110) + command table
//! assert_eq!(info.mask_id, [0x00, 0x46, 0x01]);
//! let mut out = [0u8; 3];
//! se.echo(&[1, 2, 3], &mut out)?;
//! let mut random = [0u8; 600]; // any length: one command per 255 bytes
//! se.generate_random(&mut random)?;
//! # Ok(()) }
//! ```
//!
//! # The host secure channel
//!
//! [`Stsafe::open_session`] loads the chip's C-MAC counter (Query 0x17) and keeps the host keys
//! in the driver. From then on each command travels as the chip's command table says (plain,
//! C-MAC + R-MAC, or encrypted); the data-partition commands can ask for C-MAC + R-MAC
//! themselves ([`ZoneAccess::MAC`]), for zones whose access condition is "host". A protected
//! command without a session is [`Error::NoSession`], and the bus is not touched.
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, _) = sesame_chip_doc::chip();
//! # let mut se = sesame_host::Stsafe::new(bus.device(), sesame_host::NoDelay, 0x20);
//! # let (mac_key, cipher_key) = (sesame_chip_doc::MAC_KEY, sesame_chip_doc::CIPHER_KEY);
//! use sesame_host::ZoneAccess;
//! se.init()?;
//! se.open_session(&mac_key, &cipher_key)?;
//! se.update_with(1, 0, b"config v2", ZoneAccess::MAC)?; // C-MAC + R-MAC, counter + 1
//! let mut back = [0u8; 9];
//! se.read_with(1, 0, &mut back, ZoneAccess::MAC)?;
//! // After a lost answer the driver reads the counter again before the next protected
//! // command; `reopen_session` does it on demand.
//! se.reopen_session()?;
//! # Ok(()) }
//! ```
//!
//! # Device certificate and id
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, _) = sesame_chip_doc::chip();
//! # let mut se = sesame_host::Stsafe::new(bus.device(), sesame_host::NoDelay, 0x20);
//! let mut cert = [0u8; 1024];
//! let len = se.read_certificate(0, &mut cert)?; // BE16 at offset 2, + 4; 253-byte chunks
//! let id: [u8; 11] = se.device_id(0)?; // 11 bytes at offset 15 of zone 0
//! # assert_eq!(len, 260);
//! # Ok(()) }
//! ```
//!
//! # Sign a digest, verify a signature
//!
//! The chip signs the digest as given (it does not hash); signatures and keys cross the API as
//! raw `R || S` and `X || Y`. [`Stsafe::verify_with_zone_key`] has the chip verify a signature
//! with a public key kept in one of its zones (`04 || X || Y`).
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, _) = sesame_chip_doc::chip();
//! # let mut se = sesame_host::Stsafe::new(bus.device(), sesame_host::NoDelay, 0x20);
//! # use p256_nostd::ecdsa::signature::hazmat::PrehashSigner;
//! # let s: p256_nostd::ecdsa::Signature =
//! #     sesame_chip_doc::verification_key().sign_prehash(&[0x11; 32])?;
//! # let message_signature = s.to_bytes();
//! use sesame_host::Curve;
//! let digest = [0x11u8; 32]; // SHA-256 of the message, computed by the host
//! let signature = se.generate_signature(0, &digest)?;
//! assert_eq!(signature.rs().len(), 64);
//! // A signature made by the key whose public key is stored in zone 3, checked by the chip:
//! assert!(se.verify_with_zone_key(3, 0, Curve::P256, &message_signature, &digest)?);
//! # Ok(()) }
//! ```
//!
//! # ECDH
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, other) = sesame_chip_doc::chip();
//! # let mut se = sesame_host::Stsafe::new(bus.device(), sesame_host::NoDelay, 0x20);
//! # let peer_xy = other.to_sec1()[1..].to_vec();
//! use sesame_host::{Curve, EccPublicKey};
//! let peer = EccPublicKey::from_xy(Curve::P256, &peer_xy).ok_or("not a P-256 key")?;
//! let static_secret = se.establish_key(0, &peer)?; // with the key in slot 0
//! let (ephemeral_public, secret) = se.ecdh_ephemeral(&peer)?; // slot 0xFF, single use
//! # Ok(()) }
//! ```
//!
//! # Zones and one-way counters
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, _) = sesame_chip_doc::chip();
//! # let mut se = sesame_host::Stsafe::new(bus.device(), sesame_host::NoDelay, 0x20);
//! se.update(1, 0, b"hello")?;
//! let mut five = [0u8; 5];
//! se.read(1, 0, &mut five)?;
//! let left = se.decrement(4, 0, 1, b"use #1")?; // zone 4 is a counter zone
//! let mut note = [0u8; 6];
//! assert_eq!(se.read_counter(4, 0, &mut note)?, left);
//! for zone in se.query_data_partition()? {
//!     println!("zone {}: {} bytes, counter {:?}", zone.index, zone.data_len, zone.counter);
//! }
//! # Ok(()) }
//! ```
//!
//! # Lock and unlock the life cycle
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, _) = sesame_chip_doc::chip();
//! # let mut se = sesame_host::Stsafe::new(bus.device(), sesame_host::NoDelay, 0x20);
//! # let password = sesame_chip_doc::PASSWORD;
//! use sesame_host::LifeCycle;
//! se.lock(&password)?; // Verify Password, then Put Attribute 0x08 = 0x83
//! assert_eq!(se.query_life_cycle()?, LifeCycle::OPERATIONAL_LOCKED);
//! se.unlock(&password)?; // ... = 0x03
//! # Ok(()) }
//! ```
//!
//! # Authenticate a peer chip, use the socket bus
//!
//! The [`auth`] module (feature `x509`) checks a chip's certificate against a CA certificate and
//! has the chip sign a random challenge; the `socket` module (feature `std`) puts the driver on
//! `sesame chip serve`. Each has its example.
//!
//! # Features
//!
//! `x509` (default): [`auth`], parsing X.509 with RustCrypto's `x509-cert`, which needs
//! `alloc`. `std`: `socket::SocketBus`, the virtual I2C bus of protocol.md §10 over TCP or a
//! Unix socket, and `signer`: a driver shared by threads behind a mutex, whose key slots are
//! RustCrypto `PrehashSigner` / `Signer` / `Keypair` (P-256, P-384). `rustls`: `tls`, the
//! chip's key as a rustls `SigningKey` for mutual TLS. `async`: `asynch::AsyncStsafe`, the
//! driver over `embedded-hal-async` (no_std, no alloc). With `--no-default-features` the crate
//! is `no_std` without `alloc`: the plain driver.
//!
//! # Choices where protocol.md is silent
//!
//! - Query 0x24 is sent once by [`Stsafe::init`] (STSELib sends it twice, the first time only
//!   to size a buffer). Before `init` every command is plain.
//! - The whole access condition decides protection: AC 5 (admin or host) is protected, where
//!   STSELib's 2-bit storage of the AC reads it as free.
//! - An exchange that ends without a chip status (NACK timeout, corrupted frame, bus error)
//!   leaves the session out of step: the counter is read again before the next protected
//!   command. [`Config::crc_rereads`] (default 0, like STSELib) re-reads a corrupted response,
//!   which the chip keeps readable, without running the command again.
//! - LEN is outside the CRC, so both reads of a response must agree on it, and a LEN that
//!   cannot fit a frame is a corrupted response ([`Error::Crc`]).
//! - [`Stsafe::put_host_key`] is sent with C-MAC + R-MAC when a session is open (a chip
//!   replaces provisioned keys only that way), and the session goes on with the new keys.
//! - The chunked zone flows use STSELib's 253-byte certificate chunk.
//! - A public key kept in a zone for [`Stsafe::verify_with_zone_key`] is SEC1 `04 || X || Y`.
//! - The first wait after a command is 1 ms (`STSE_FIRST_POLLING_INTERVAL` is a build option
//!   of STSELib); a busy chip NACKs and is polled every 10 ms, up to 100 times.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "x509")]
extern crate p256_nostd as p256;
#[cfg(feature = "x509")]
extern crate p384_nostd as p384;
#[cfg(feature = "x509")]
extern crate sha2_nostd as sha2;
#[cfg(feature = "x509")]
extern crate x509_cert_nostd as x509_cert;

#[cfg(feature = "async")]
pub mod asynch;
#[cfg(feature = "x509")]
pub mod auth;
#[cfg(feature = "std")]
pub mod bus;
mod commands;
mod driver;
mod error;
mod flows;
mod session;
#[cfg(feature = "std")]
pub mod signer;
#[cfg(feature = "std")]
pub mod socket;
mod table;
#[cfg(feature = "rustls")]
pub mod tls;
mod transport;
mod types;

pub use commands::Records;
pub use driver::Stsafe;
pub use error::Error;
pub use flows::{CHUNK, DEVICE_ID_LEN, DEVICE_ID_OFFSET};
pub use table::Protection;
pub use transport::Config;
pub use types::{
    EccPublicKey, EccSignature, EnvelopeKeyType, ProductInfo, SharedSecret, WakeMode, ZoneAccess,
    MAX_COORDINATE,
};

/// Re-exported from `sesame-wire`: the codec types the driver's API uses.
pub use sesame_wire::{
    resp::{
        ChipModel, CommandAuthRecord, EnvelopeSlotRecord, HostKeySlot, I2cParameters,
        KeySlotRecord, KeyTableHeader, PasswordResult, ZoneRecord,
    },
    Attribute, CommandCode, Curve, LifeCycle, Status, ZoneOption,
};

/// A `DelayNs` that does not wait: for buses whose transactions block until the chip is ready
/// (sesame's in-process bus without realistic timing), tests and examples.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDelay;

impl embedded_hal::delay::DelayNs for NoDelay {
    fn delay_ns(&mut self, _ns: u32) {}
}
