//! `sesame firmware sign`: a signed release manifest for an image.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use sesame_agent::data::Manifest;
use sha2::Digest;

/// Signs `image` as `version` with the firmware key (PKCS#8 PEM, P-256): the chip verifies
/// SHA-256 of `protocol::firmware_message(version, sha256, size)` with the key in its zone.
pub fn sign_release(key_pem: &str, version: u32, image: &[u8]) -> Result<Manifest> {
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem)
        .map_err(|e| anyhow!("firmware key: {e}"))?;
    let sha = sha2::Sha256::digest(image);
    let sig: p256::ecdsa::Signature = key.sign(&sesame_pki::protocol::firmware_message(
        version,
        &sha,
        image.len() as u64,
    ));
    Ok(Manifest {
        version,
        sha256: hex::encode(sha),
        size: image.len() as u64,
        signature: B64.encode(sig.to_bytes()),
    })
}

/// `sesame firmware sign --key K --version V IMAGE [--out FILE]`.
pub fn sign_cmd(key: &Path, version: u32, image: &Path, out: Option<&Path>) -> Result<()> {
    let pem =
        std::fs::read_to_string(key).with_context(|| format!("cannot read {}", key.display()))?;
    let img = std::fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
    let m = sign_release(&pem, version, &img)?;
    let text = serde_json::to_string_pretty(&m)?;
    match out {
        Some(o) => std::fs::write(o, text + "\n")
            .with_context(|| format!("cannot write {}", o.display()))?,
        None => outln!("{text}"),
    }
    Ok(())
}
