//! Peer-chip authentication (feature `x509`), as `stse_device_authenticate` does it
//! (protocol.md §7): read the chip's certificate from its zone, check it against a CA
//! certificate, send a random challenge sized to the key, have the chip sign it, and verify the
//! signature with the certificate's key. Unlike STSELib, validity dates are checked when the
//! caller passes the time.
//!
//! ```
//! # include!("../../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, ca_der) = sesame_chip_doc::chip_with_certificate();
//! use sesame_host::auth::{AuthError, AuthOptions, ChainError};
//! use sesame_host::Stsafe;
//! # use sesame_host::NoDelay as Delay;
//! let mut se = Stsafe::new(bus.device(), Delay, 0x20);
//! se.init()?;
//! let mut rng = rand_core::OsRng;
//! let mut cert = [0u8; 1024];
//! let now = Some(1_780_000_000); // Unix seconds, from your clock; None skips date checks
//! let key = se.authenticate_peer(&ca_der, &AuthOptions { now, ..Default::default() }, &mut rng, &mut cert)?;
//! // A chip presenting a certificate from another CA is refused:
//! let other_ca = sesame_chip_doc::other_ca();
//! let err = se.authenticate_peer(&other_ca, &AuthOptions::default(), &mut rng, &mut cert);
//! assert!(matches!(err, Err(AuthError::Chain(ChainError::WrongIssuer))));
//! # Ok(()) }
//! ```

mod chain;

use core::fmt;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use rand_core::CryptoRngCore;

pub use chain::{certificate_public_key, verify_chain};

use crate::{EccPublicKey, Error, Stsafe, MAX_COORDINATE};

/// Why a certificate does not chain to the CA (see [`verify_chain`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainError {
    /// The CA certificate does not parse.
    MalformedCa,
    /// The device certificate does not parse (or its two signature algorithms differ).
    MalformedCertificate,
    /// A signature algorithm or key type other than ECDSA with SHA-256/384 on P-256/P-384.
    UnsupportedAlgorithm,
    /// A public key that is not an uncompressed point of its curve.
    BadPublicKey,
    /// The certificate was issued by someone else: its issuer is not the CA's subject.
    WrongIssuer,
    /// The issuing certificate is not a CA (no basicConstraints cA, or keyUsage without
    /// keyCertSign).
    IssuerNotCa,
    /// The CA's signature over the certificate does not verify: another CA with the same name,
    /// or an altered certificate.
    BadCertificateSignature,
    /// A certificate's notAfter is before `now`.
    Expired,
    /// A certificate's notBefore is after `now`.
    NotYetValid,
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MalformedCa => "the CA certificate is malformed",
            Self::MalformedCertificate => "the device certificate is malformed",
            Self::UnsupportedAlgorithm => "unsupported signature algorithm or key type",
            Self::BadPublicKey => "invalid public key in a certificate",
            Self::WrongIssuer => "the certificate was not issued by this CA",
            Self::IssuerNotCa => "the issuing certificate is not a CA",
            Self::BadCertificateSignature => "the CA's signature on the certificate is invalid",
            Self::Expired => "a certificate has expired",
            Self::NotYetValid => "a certificate is not valid yet",
        })
    }
}

impl core::error::Error for ChainError {}

/// Why a peer chip was not authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError<E> {
    /// Talking to the chip failed.
    Driver(Error<E>),
    /// Its certificate does not chain to the CA.
    Chain(ChainError),
    /// The chip's signature over the challenge does not verify with its certificate's key: the
    /// chip does not hold the certified key (a cloned certificate).
    KeyMismatch,
}

impl<E> From<Error<E>> for AuthError<E> {
    fn from(e: Error<E>) -> Self {
        Self::Driver(e)
    }
}

impl<E> From<ChainError> for AuthError<E> {
    fn from(e: ChainError) -> Self {
        Self::Chain(e)
    }
}

impl<E: fmt::Debug> fmt::Display for AuthError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver(e) => write!(f, "{e}"),
            Self::Chain(e) => write!(f, "{e}"),
            Self::KeyMismatch => f.write_str("the chip does not hold its certificate's key"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for AuthError<E> {}

/// Where the peer keeps its certificate and key, and the time to check dates against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthOptions {
    /// The certificate zone (0 on ST chips).
    pub zone: u8,
    /// The private key slot paired with the certificate (0).
    pub slot: u8,
    /// Now, in Unix seconds: validity dates are checked when given.
    pub now: Option<u64>,
}

impl<I2C: I2c, D: DelayNs> Stsafe<I2C, D> {
    /// Authenticates the chip: reads its certificate into `cert_buf` (253-byte chunks), checks
    /// it against `ca_der` ([`verify_chain`]), draws a challenge from `rng` sized to the key
    /// (32 bytes for P-256, 48 for P-384), has the chip sign it with `options.slot` (Generate
    /// Signature, signed as a digest), and verifies the signature with the certificate's key.
    /// Returns that key.
    pub fn authenticate_peer<R: CryptoRngCore + ?Sized>(
        &mut self,
        ca_der: &[u8],
        options: &AuthOptions,
        rng: &mut R,
        cert_buf: &mut [u8],
    ) -> Result<EccPublicKey, AuthError<I2C::Error>> {
        let size = self.read_certificate(options.zone, cert_buf)?;
        let leaf = cert_buf.get(..size).ok_or(Error::BufferTooSmall)?;
        let key = verify_chain(ca_der, leaf, options.now)?;
        let mut buf = [0u8; MAX_COORDINATE];
        let challenge = &mut buf[..key.curve().coordinate_len()];
        rng.fill_bytes(challenge);
        let signature = self.generate_signature(options.slot, challenge)?;
        if chain::verify_prehashed(&key, challenge, signature.rs(), chain::SigEncoding::Raw) {
            Ok(key)
        } else {
            Err(AuthError::KeyMismatch)
        }
    }
}
