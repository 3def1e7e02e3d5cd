//! `sesame-pki`: the certificates of a sesame fleet.
//!
//! Three profiles — root CA, family CA (an intermediate with pathLen 0 that signs one family of
//! devices) and device certificate (subject CN = the chip's serial, digitalSignature +
//! keyAgreement, clientAuth, RFC 5280's "no well-defined expiration" by default) — issued with
//! `rcgen`, verified with `rustls-webpki` (device → family CA → root), with PEM/DER helpers and
//! the factory manifest format. P-256 by default, P-384 end to end.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod batch_sig;
mod issue;
mod manifest;
mod pemfile;
pub mod profile;
mod verify;

pub use issue::{Authority, DeviceKey, KeyAlg, DEVICE_NOT_AFTER_NONE};
pub use manifest::ManifestLine;
pub use pemfile::{cert_from_pem, certs_from_pem, to_pem, PEM_CERT};
pub use verify::{
    check_validity, device_identity, verify_ca_issued_by, verify_device, DeviceIdentity,
    VerifyError,
};

/// A PKI operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Issuing failed (bad key, bad parameters).
    Issue(String),
    /// A certificate or key could not be parsed.
    Parse(String),
    /// The certificate does not use the long DER length form the host libraries expect.
    ShortForm,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Issue(e) => write!(f, "cannot issue certificate: {e}"),
            Self::Parse(e) => write!(f, "cannot parse: {e}"),
            Self::ShortForm => {
                f.write_str("certificate is shorter than 256 bytes (needs the 30 82 length form)")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Self::Issue(e.to_string())
    }
}

/// SHA-256 of DER bytes, hex: the certificate fingerprint used in manifests and by the cloud.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}
