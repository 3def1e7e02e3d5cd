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

/// Context of the chip's signature over its ephemeral ECDH key.
pub const ECDH_DEVICE_CONTEXT: &[u8] = b"sesame/ecdh-device/v1";
/// Context of the cloud's signature (command key) over its ephemeral ECDH key.
pub const ECDH_CLOUD_CONTEXT: &[u8] = b"sesame/ecdh-cloud/v1";
/// Context of telemetry signatures.
pub const TELEMETRY_CONTEXT: &[u8] = b"sesame/telemetry/v1";
/// Context of command signatures (cloud command key).
pub const COMMAND_CONTEXT: &[u8] = b"sesame/command/v1";
/// Context of command receipts (chip).
pub const RECEIPT_CONTEXT: &[u8] = b"sesame/receipt/v1";
/// Context of usage reports (chip).
pub const USAGE_CONTEXT: &[u8] = b"sesame/usage/v1";
/// Context of firmware manifests (firmware key). The identity is empty: a release is valid for
/// any cloud.
pub const FIRMWARE_CONTEXT: &[u8] = b"sesame/firmware/v1";

/// The telemetry key of a session: HKDF-SHA256 over the ECDH secret (X coordinate), salted with
/// the login challenge, bound to the serial.
pub fn telemetry_key(shared_x: &[u8], challenge: &[u8], serial: &str) -> [u8; 32] {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(challenge), shared_x);
    let mut key = [0u8; 32];
    let info = [TELEMETRY_CONTEXT, b"/key/", serial.as_bytes()].concat();
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
    let _ = hk.expand(&info, &mut key);
    key
}

/// Associated data of a telemetry payload: serial, sequence, time.
pub fn telemetry_aad(serial: &str, seq: u64, time: i64) -> Vec<u8> {
    [
        serial.as_bytes(),
        &[0],
        &seq.to_be_bytes(),
        &time.to_be_bytes(),
    ]
    .concat()
}

/// AES-256-GCM encryption of a telemetry payload.
pub fn seal_payload(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], payload: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    aes_gcm::Aes256Gcm::new(key.into())
        .encrypt(nonce.into(), Payload { msg: payload, aad })
        .unwrap_or_default()
}

/// AES-256-GCM decryption; `None` if the tag does not verify.
pub fn open_payload(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Vec<u8>> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    if nonce.len() != 12 {
        return None;
    }
    aes_gcm::Aes256Gcm::new(key.into())
        .decrypt(
            nonce.into(),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

/// The signed part of a telemetry message.
pub fn telemetry_message(
    identity: &str,
    serial: &str,
    seq: u64,
    time: i64,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Vec<u8> {
    message(
        TELEMETRY_CONTEXT,
        identity,
        &[
            serial.as_bytes(),
            &[0],
            &seq.to_be_bytes(),
            &time.to_be_bytes(),
            nonce,
            ciphertext,
        ],
    )
}

/// The signed part of a command.
pub fn command_message(
    identity: &str,
    serial: &str,
    seq: u64,
    expires: i64,
    body: &[u8],
) -> Vec<u8> {
    message(
        COMMAND_CONTEXT,
        identity,
        &[
            serial.as_bytes(),
            &[0],
            &seq.to_be_bytes(),
            &expires.to_be_bytes(),
            body,
        ],
    )
}

/// The signed part of a receipt.
pub fn receipt_message(identity: &str, serial: &str, seq: u64, status: &str) -> Vec<u8> {
    message(
        RECEIPT_CONTEXT,
        identity,
        &[
            serial.as_bytes(),
            &[0],
            &seq.to_be_bytes(),
            status.as_bytes(),
        ],
    )
}

/// The signed part of a usage report.
pub fn usage_message(identity: &str, serial: &str, seq: u64, remaining: u32) -> Vec<u8> {
    message(
        USAGE_CONTEXT,
        identity,
        &[
            serial.as_bytes(),
            &[0],
            &seq.to_be_bytes(),
            &remaining.to_be_bytes(),
        ],
    )
}

/// The signed part of a firmware manifest.
pub fn firmware_message(version: u32, sha256: &[u8], size: u64) -> Vec<u8> {
    message(
        FIRMWARE_CONTEXT,
        "",
        &[&version.to_be_bytes(), sha256, &size.to_be_bytes()],
    )
}

/// The chip's ECDH key signed for the cloud.
pub fn ecdh_device_message(identity: &str, challenge: &[u8], device_ephemeral: &[u8]) -> Vec<u8> {
    message(
        ECDH_DEVICE_CONTEXT,
        identity,
        &[challenge, device_ephemeral],
    )
}

/// The cloud's ECDH key signed with its command key.
pub fn ecdh_cloud_message(
    identity: &str,
    serial: &str,
    device_ephemeral: &[u8],
    cloud_ephemeral: &[u8],
) -> Vec<u8> {
    message(
        ECDH_CLOUD_CONTEXT,
        identity,
        &[serial.as_bytes(), &[0], device_ephemeral, cloud_ephemeral],
    )
}
