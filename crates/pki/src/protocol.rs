//! Messages a chip signs for the cloud, shared by the cloud and the device agent so both build
//! exactly the same bytes.
//!
//! **Authentication.** For a challenge `C` (32 random bytes) issued to a certificate `cert` by
//! the cloud named `identity`:
//!
//! ```text
//! M = "sesame/auth/v1" || 0x00 || len(identity) (2 bytes, BE) || identity || C || SHA-256(cert DER)
//! ```
//!
//! The chip signs the digest `SHA-256(M)` (P-256 key) or `SHA-384(M)` (P-384 key). The context
//! string makes the signature useless for any other purpose, the identity for any other cloud,
//! the certificate hash for any other certificate.

use sha2::Digest;

/// Context string of authentication signatures.
pub const AUTH_CONTEXT: &[u8] = b"sesame/auth/v1";

/// A domain-separated message: `context || 0x00 || len(identity) || identity || parts…`.
pub fn message(context: &[u8], identity: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(64 + identity.len() + parts.iter().map(|p| p.len()).sum::<usize>());
    m.extend_from_slice(context);
    m.push(0);
    m.extend_from_slice(&(identity.len() as u16).to_be_bytes());
    m.extend_from_slice(identity.as_bytes());
    for p in parts {
        m.extend_from_slice(p);
    }
    m
}

/// The authentication message for a certificate.
pub fn auth_message(identity: &str, challenge: &[u8], cert_der: &[u8]) -> Vec<u8> {
    auth_message_with_cert_hash(identity, challenge, &sha2::Sha256::digest(cert_der))
}

/// The same message from the certificate's SHA-256 (its fingerprint).
pub fn auth_message_with_cert_hash(
    identity: &str,
    challenge: &[u8],
    cert_sha256: &[u8],
) -> Vec<u8> {
    message(AUTH_CONTEXT, identity, &[challenge, cert_sha256])
}

/// The digest a chip signs for a key of this size: SHA-256 for P-256 (65-byte SEC1 point),
/// SHA-384 for P-384 (97 bytes); `None` for another key.
pub fn digest_for_key(message: &[u8], public_key: &[u8]) -> Option<Vec<u8>> {
    match public_key.len() {
        65 => Some(sha2::Sha256::digest(message).to_vec()),
        97 => Some(sha2::Sha384::digest(message).to_vec()),
        _ => None,
    }
}
