//! Device authentication: certificate checks, the domain-separated challenge message, and
//! signature verification (ring, which measured fastest among the backends built here).
//!
//! **What the chip signs.** For a challenge `C` (32 random bytes) issued to a certificate `cert`
//! by the cloud named `identity`, the message is
//!
//! ```text
//! M = "sesame/auth/v1" || 0x00 || len(identity) (2 bytes, BE) || identity || C || SHA-256(cert DER)
//! ```
//!
//! and the chip signs the digest `SHA-256(M)` (P-256 key) or `SHA-384(M)` (P-384 key) with
//! Generate Signature, returning `R || S`. The context string makes the signature useless for
//! any other purpose (telemetry, receipts), the identity for any other cloud, the certificate
//! hash for any other certificate.

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED};
use sha2::Digest;

/// The context string of authentication signatures.
pub const CONTEXT: &[u8] = b"sesame/auth/v1";

/// The message a device signs (through its digest) to answer a challenge.
pub fn auth_message(identity: &str, challenge: &[u8], cert_der: &[u8]) -> Vec<u8> {
    message_with_cert_hash(identity, challenge, &sha2::Sha256::digest(cert_der))
}

/// The same message from the certificate's SHA-256 (its fingerprint).
pub fn message_with_cert_hash(identity: &str, challenge: &[u8], cert_sha256: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + 3 + identity.len() + challenge.len() + 32);
    m.extend_from_slice(CONTEXT);
    m.push(0);
    m.extend_from_slice(&(identity.len() as u16).to_be_bytes());
    m.extend_from_slice(identity.as_bytes());
    m.extend_from_slice(challenge);
    m.extend_from_slice(cert_sha256);
    m
}

/// The digest the chip signs for a key of `public_key`'s size (SHA-256 for P-256, SHA-384 for
/// P-384), or `None` for another key type.
pub fn auth_digest(message: &[u8], public_key: &[u8]) -> Option<Vec<u8>> {
    match public_key.len() {
        65 => Some(sha2::Sha256::digest(message).to_vec()),
        97 => Some(sha2::Sha384::digest(message).to_vec()),
        _ => None,
    }
}

/// Verifies a raw `R || S` signature over `message` with an uncompressed SEC1 public key.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let alg = match public_key.len() {
        65 => &ECDSA_P256_SHA256_FIXED,
        97 => &ECDSA_P384_SHA384_FIXED,
        _ => return false,
    };
    UnparsedPublicKey::new(alg, public_key)
        .verify(message, signature)
        .is_ok()
}

/// Why an authentication was refused: the `error` code of the 401 (or 429) body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The certificate is not DER X.509.
    MalformedCertificate,
    /// No enrolled family issued it and it is not enrolled itself.
    NotEnrolled,
    /// The device is revoked (serial or fingerprint).
    Revoked,
    /// Its family is revoked.
    FamilyRevoked,
    /// Outside its validity period.
    Expired,
    /// Not issued for client authentication / digital signature.
    WrongKeyUsage,
    /// The challenge was never issued or was already used.
    UnknownChallenge,
    /// The challenge expired.
    ChallengeExpired,
    /// The response names another certificate than the challenge was issued to.
    CertificateMismatch,
    /// The signature does not verify.
    BadSignature,
    /// Too many failures or requests from this device.
    Throttled,
}

impl Reason {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedCertificate => "malformed_certificate",
            Self::NotEnrolled => "not_enrolled",
            Self::Revoked => "revoked",
            Self::FamilyRevoked => "family_revoked",
            Self::Expired => "expired",
            Self::WrongKeyUsage => "wrong_key_usage",
            Self::UnknownChallenge => "unknown_challenge",
            Self::ChallengeExpired => "challenge_expired",
            Self::CertificateMismatch => "certificate_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Throttled => "throttled",
        }
    }

    /// Every reason, for metrics.
    pub const ALL: [Reason; 11] = [
        Self::MalformedCertificate,
        Self::NotEnrolled,
        Self::Revoked,
        Self::FamilyRevoked,
        Self::Expired,
        Self::WrongKeyUsage,
        Self::UnknownChallenge,
        Self::ChallengeExpired,
        Self::CertificateMismatch,
        Self::BadSignature,
        Self::Throttled,
    ];
}
