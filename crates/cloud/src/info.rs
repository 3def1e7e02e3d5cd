//! `GET /v1/info`, unauthenticated: what a client may learn about this cloud before it trusts
//! anything. Its identity (the string devices sign over), its version, and the public halves of
//! its command key and firmware key with their fingerprints, so that a client given a
//! fingerprint once (`--command-key-sha256`) can fetch the key and check it instead of being
//! handed a key file.
//!
//! A fingerprint is the SHA-256 of the key's SubjectPublicKeyInfo DER, lowercase hex: what
//! `openssl pkey -pubin -in command.pub.pem -outform DER | sha256sum` prints for the factory's
//! file, so the operator can compute it from the factory's copy, not from the cloud's answer.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use ring::signature::KeyPair;
use sha2::{Digest, Sha256};

use crate::service::Service;

pub use sesame_proto::{Info, PublicKeyInfo};

/// The PEM and fingerprint of a P-256 public key given as a SEC1 point (`None` if it is not
/// one, which a loaded key always is).
pub fn public_key_info(sec1: &[u8]) -> Option<PublicKeyInfo> {
    let pk = p256::PublicKey::from_sec1_bytes(sec1).ok()?;
    let der = pk.to_public_key_der().ok()?;
    let pem = pk.to_public_key_pem(LineEnding::LF).ok()?;
    Some(PublicKeyInfo {
        public_key_pem: pem,
        sha256: hex::encode(Sha256::digest(der.as_bytes())),
    })
}

impl Service {
    /// What `GET /v1/info` publishes.
    pub fn info(&self) -> Info {
        Info {
            identity: self.config.identity.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            command_key: self
                .command_key
                .as_ref()
                .and_then(|k| public_key_info(k.public_key().as_ref())),
            firmware_key_sha256: self
                .firmware_key
                .as_deref()
                .and_then(public_key_info)
                .map(|k| k.sha256),
        }
    }
}

/// `GET /v1/info`.
#[utoipa::path(get, path = "/v1/info", tag = "service",
    responses((status = 200, description = "Identity, version and key fingerprints", body = Info)))]
pub(crate) async fn handler(State(s): State<Arc<Service>>) -> Json<Info> {
    Json(s.info())
}
