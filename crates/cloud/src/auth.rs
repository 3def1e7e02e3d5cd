//! Device authentication: certificate checks, the domain-separated challenge message, and
//! signature verification (ring, which measured fastest among the backends built here).
//!
//! The message the chip signs is defined in [`sesame_proto::messages`] (shared with the agent).

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED};

pub use sesame_proto::messages::{
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
    /// A CA certificate (basicConstraints CA, keyCertSign or cRLSign) presented as a device.
    NotEndEntity,
    /// keyUsage without digitalSignature, or no extendedKeyUsage clientAuth.
    WrongKeyUsage,
    /// The certificate serial number is zero or negative.
    InvalidSerialNumber,
    /// Not a P-256 or P-384 EC key.
    UnsupportedKey,
    /// The SPKI's curve and its point disagree.
    CurveMismatch,
    /// The subject CN is not a device serial (length or characters).
    BadSerial,
    /// No enrolled family issued it and it is not enrolled itself (the one answer for every
    /// untrusted certificate, whatever it names).
    NotEnrolled,
    /// The device, its certificate or its key is revoked.
    Revoked,
    /// Its family is revoked.
    FamilyRevoked,
    /// The certificate, its family CA or its root is outside its validity period.
    Expired,
    /// The serial belongs to a device of another family (or an individually enrolled one).
    SerialConflict,
    /// The challenge was never issued or was already used.
    UnknownChallenge,
    /// The challenge expired.
    ChallengeExpired,
    /// The response names another certificate than the challenge was issued to.
    CertificateMismatch,
    /// The response carries no certificate and this instance did not issue the challenge.
    CertificateRequired,
    /// The signature does not verify.
    BadSignature,
    /// Too many refusals from this client address, or too many logins of this device.
    Throttled,
}

impl Reason {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            Self::MalformedCertificate => "malformed_certificate",
            Self::NotEndEntity => "not_end_entity",
            Self::WrongKeyUsage => "wrong_key_usage",
            Self::InvalidSerialNumber => "invalid_serial_number",
            Self::UnsupportedKey => "unsupported_key",
            Self::CurveMismatch => "curve_mismatch",
            Self::BadSerial => "bad_serial",
            Self::NotEnrolled => "not_enrolled",
            Self::Revoked => "revoked",
            Self::FamilyRevoked => "family_revoked",
            Self::Expired => "expired",
            Self::SerialConflict => "serial_conflict",
            Self::UnknownChallenge => "unknown_challenge",
            Self::ChallengeExpired => "challenge_expired",
            Self::CertificateMismatch => "certificate_mismatch",
            Self::CertificateRequired => "certificate_required",
            Self::BadSignature => "bad_signature",
            Self::Throttled => "throttled",
        }
    }

    /// A sentence for the `message` of the refusal.
    pub fn message(self) -> &'static str {
        match self {
            Self::MalformedCertificate => "the certificate is not valid DER X.509",
            Self::NotEndEntity => "a CA certificate cannot authenticate as a device",
            Self::WrongKeyUsage => {
                "the certificate needs keyUsage digitalSignature and extendedKeyUsage clientAuth"
            }
            Self::InvalidSerialNumber => "the certificate serial number must be positive",
            Self::UnsupportedKey => "only P-256 and P-384 device keys are supported",
            Self::CurveMismatch => "the public key is not a point of the curve its SPKI names",
            Self::BadSerial => "the subject CN must be 1 to 64 characters of A-Z 0-9 - . _",
            Self::NotEnrolled => {
                "the certificate does not chain to an enrolled family and is not enrolled"
            }
            Self::Revoked => "the device is revoked",
            Self::FamilyRevoked => "the device's family is revoked",
            Self::Expired => "the certificate or one of its CAs is expired or not yet valid",
            Self::SerialConflict => "this serial belongs to a device of another family",
            Self::UnknownChallenge => "unknown or already used challenge",
            Self::ChallengeExpired => "the challenge expired",
            Self::CertificateMismatch => "the challenge was issued to another certificate",
            Self::CertificateRequired => {
                "send the device certificate with the response (another instance issued the challenge)"
            }
            Self::BadSignature => "the signature does not verify",
            Self::Throttled => "too many attempts; try later",
        }
    }

    /// The reason for a certificate outside the device profile.
    pub fn of_profile(e: &sesame_pki::profile::ProfileError) -> Self {
        use sesame_pki::profile::ProfileError as P;
        match e {
            P::NotEndEntity => Self::NotEndEntity,
            P::KeyUsage | P::ExtendedKeyUsage => Self::WrongKeyUsage,
            P::SerialNumber => Self::InvalidSerialNumber,
            P::UnsupportedKey(_) => Self::UnsupportedKey,
            P::CurveMismatch => Self::CurveMismatch,
            P::BadSerial => Self::BadSerial,
            _ => Self::MalformedCertificate,
        }
    }

    /// Every reason, for metrics.
    pub const ALL: [Reason; 18] = [
        Self::MalformedCertificate,
        Self::NotEndEntity,
        Self::WrongKeyUsage,
        Self::InvalidSerialNumber,
        Self::UnsupportedKey,
        Self::CurveMismatch,
        Self::BadSerial,
        Self::NotEnrolled,
        Self::Revoked,
        Self::FamilyRevoked,
        Self::Expired,
        Self::SerialConflict,
        Self::UnknownChallenge,
        Self::ChallengeExpired,
        Self::CertificateMismatch,
        Self::CertificateRequired,
        Self::BadSignature,
        Self::Throttled,
    ];
}
