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
    let sig: p256::ecdsa::Signature = key.sign(&sesame_proto::messages::firmware_message(
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

/// The uncompressed public point of a PKCS#8 P-256 key.
fn public_point(key_pem: &str) -> Option<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let k = p256::SecretKey::from_pkcs8_pem(key_pem).ok()?;
    Some(k.public_key().to_encoded_point(false).as_bytes().to_vec())
}

/// Refuses a key that is not the factory's firmware key: the devices of `factory` hold the
/// firmware public key in a read-only zone and would refuse every release signed otherwise.
/// Names the key when it is the command key or the root CA's.
pub fn check_key(key_pem: &str, key: &Path, factory: &Path) -> Result<()> {
    let f = crate::factory::FactoryDir(factory.to_path_buf());
    let point = public_point(key_pem);
    let firmware = std::fs::read_to_string(f.firmware_pub()).with_context(|| {
        format!(
            "{} is not a factory (no firmware.pub.pem)",
            factory.display()
        )
    })?;
    let firmware = crate::sim::point_from_public_pem(&firmware)?;
    if point.as_deref() == Some(firmware.as_slice()) {
        return Ok(());
    }
    let command = std::fs::read_to_string(f.command_pub())
        .ok()
        .and_then(|t| crate::sim::point_from_public_pem(&t).ok());
    let root = std::fs::read_to_string(f.root())
        .ok()
        .and_then(|t| sesame_pki::cert_from_pem(&t).ok())
        .and_then(|der| sesame_pki::device_identity(&der).ok())
        .map(|id| id.public_key);
    let which = if point.is_some() && point == command {
        "the cloud's command key".to_string()
    } else if point.is_some() && point == root {
        "the root CA's key".to_string()
    } else {
        "not the factory's firmware key".to_string()
    };
    Err(anyhow!(
        "{} is {which}: devices of the factory {} check releases with {} and would refuse this one; sign with {}",
        key.display(),
        factory.display(),
        f.firmware_pub().display(),
        f.firmware_key().display()
    ))
}

/// `sesame firmware sign --key K --version V IMAGE [--out FILE]`; with a factory (given, or
/// the key's own directory when it is one), the key must be that factory's firmware key.
pub fn sign_cmd(
    key: &Path,
    factory: Option<&Path>,
    version: u32,
    image: &Path,
    out: Option<&Path>,
) -> Result<()> {
    let pem = crate::files::pem_text(
        key,
        "the firmware-signing key (PKCS#8 PEM, the factory's firmware.key.pem)",
    )?;
    let beside = key
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .filter(|p| p.join("firmware.pub.pem").exists());
    match factory.or(beside) {
        Some(f) => check_key(&pem, key, f)?,
        None => eprintln!(
            "warning: cannot check that {} is the factory's firmware key; pass --factory DIR",
            key.display()
        ),
    }
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
