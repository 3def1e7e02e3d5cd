//! Device authentication: certificate checks, the domain-separated challenge message, and
//! signature verification (ring, which measured fastest among the backends built here).
//!
//! The message the chip signs is defined in [`sesame_pki::protocol`] (shared with the agent).

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED};

pub use sesame_pki::protocol::{
    auth_message, auth_message_with_cert_hash as message_with_cert_hash,
    digest_for_key as auth_digest, AUTH_CONTEXT as CONTEXT,
};

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
