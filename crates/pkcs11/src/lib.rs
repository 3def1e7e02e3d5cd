//! `sesame-pkcs11`: a PKCS#11 module (`libsesame_pkcs11.so`) that makes an STSAFE-A110, or
//! sesame's software chip, a token for any PKCS#11 application: OpenSSL through
//! `libengine-pkcs11-openssl`, `pkcs11-tool`, p11-kit, browsers.
//!
//! The token (one slot) holds:
//! - the private key of chip slot 0 (and of slot 1 when the chip has one), CKA_ID `00` /
//!   `01`: sensitive, never extractable; `CKM_ECDSA` (the caller hashes; `R || S` out),
//!   `CKM_ECDSA_SHA256`, `CKM_ECDSA_SHA384` and `CKM_ECDH1_DERIVE` (CKD_NULL) run in the chip;
//! - the certificate in zone 0 and its public key, CKA_ID `00`;
//! - the chip's random generator (`C_GenerateRandom`).
//!
//! It reaches the chip over the bus `SESAME_PKCS11_BUS` names (see [`config`]): a
//! `sesame chip serve` socket or `/dev/i2c-N[:ADDR]`. The token has no PIN: whoever reaches
//! the bus reaches the keys, as on the I2C bus itself; `C_Login` with an empty PIN succeeds,
//! with any other PIN it is `CKR_PIN_INCORRECT`.
//!
//! [`token::Module`] is the whole token in safe Rust; `ffi` is the C ABI over it, the crate's
//! only `unsafe` code.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
mod ffi;
pub mod objects;
mod ops;
pub mod token;

pub use cryptoki_sys;
