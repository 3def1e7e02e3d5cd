//! The signed batch manifest: a JWS (ES256, compact form) by the factory's batch-signing key
//! over the batch's identity and the SHA-256 of its JSONL manifest, so every line (serial,
//! certificate fingerprint, public key) is covered. It travels next to the manifest as
//! `manifest.jsonl.jws`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ManifestLine;

/// The JWS `typ` of a signed batch manifest.
pub const BATCH_TYP: &str = "sesame-batch+jwt";

/// What the factory signs for a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchClaims {
    /// Random batch id (32 hex digits), fixed when the batch is started.
    pub batch_id: String,
    /// Family name.
    pub family: String,
    /// SHA-256 of the family CA certificate DER (hex): the owner the devices bind to.
    pub family_ca_sha256: String,
    /// Number of chips (lines) in the manifest.
    pub count: u64,
    /// SHA-256 of the manifest file's exact bytes (hex).
    pub manifest_sha256: String,
    /// When the batch was started (Unix seconds).
    pub created: i64,
    /// The devices' certificate notAfter (Unix seconds), the same for the whole batch.
    pub device_not_after: i64,
}

/// Why a signed manifest is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchRefusal {
    /// The signature file or the key is not what it should be.
    Malformed(String),
    /// Signed by another key than the trusted factory key.
    WrongKey {
        /// Key id in the signature.
        signed_by: String,
        /// Key id of the trusted key.
        trusted: String,
    },
    /// The signature does not verify.
    BadSignature,
    /// Fewer lines than were signed.
    Truncated {
        /// Lines signed.
        signed: u64,
        /// Lines present.
        present: u64,
    },
    /// The manifest's bytes differ from the signed ones (an entry changed, added or reordered).
    Tampered(String),
}

impl core::fmt::Display for BatchRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed(m) => write!(f, "malformed signed manifest: {m}"),
            Self::WrongKey { signed_by, trusted } => write!(
                f,
                "signed by factory key {signed_by}, not by the trusted factory key {trusted}"
            ),
            Self::BadSignature => f.write_str("the manifest signature does not verify"),
            Self::Truncated { signed, present } => write!(
                f,
                "truncated manifest: {present} of the {signed} signed entries"
            ),
            Self::Tampered(m) => write!(f, "tampered manifest: {m}"),
        }
    }
}

impl std::error::Error for BatchRefusal {}

/// A factory key's id: SHA-256 of its SubjectPublicKeyInfo DER (hex).
pub fn factory_key_id(public_pem: &str) -> Result<String, BatchRefusal> {
    use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
    let pk = p256::PublicKey::from_public_key_pem(public_pem).map_err(|e| {
        BatchRefusal::Malformed(format!("factory key is not a P-256 public key: {e}"))
    })?;
    let der = pk
        .to_public_key_der()
        .map_err(|e| BatchRefusal::Malformed(format!("factory key: {e}")))?;
    Ok(hex::encode(Sha256::digest(der.as_bytes())))
}

/// SHA-256 of the manifest bytes, hex.
pub fn manifest_sha256(manifest: &[u8]) -> String {
    hex::encode(Sha256::digest(manifest))
}

/// Signs `claims` with the factory's batch key (PKCS#8 PEM, P-256); `public_pem` names it.
pub fn sign_batch(
    claims: &BatchClaims,
    key_pem: &str,
    public_pem: &str,
) -> Result<String, crate::Error> {
    let key = EncodingKey::from_ec_pem(key_pem.as_bytes())
        .map_err(|e| crate::Error::Parse(format!("batch-signing key: {e}")))?;
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(BATCH_TYP.into());
    header.kid = Some(factory_key_id(public_pem).map_err(|e| crate::Error::Parse(e.to_string()))?);
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| crate::Error::Issue(e.to_string()))
}

/// Verifies a signed manifest against the trusted factory key and the manifest's bytes; returns
/// the claims and the parsed lines (each of the signed family, serials unique).
pub fn verify_batch(
    jws: &str,
    trusted_pem: &str,
    manifest: &[u8],
) -> Result<(BatchClaims, Vec<ManifestLine>), BatchRefusal> {
    let trusted = factory_key_id(trusted_pem)?;
    let header = jsonwebtoken::decode_header(jws.trim())
        .map_err(|e| BatchRefusal::Malformed(format!("not a JWS: {e}")))?;
    if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(BATCH_TYP) {
        return Err(BatchRefusal::Malformed(format!(
            "expected an ES256 {BATCH_TYP}, got {:?} {:?}",
            header.alg, header.typ
        )));
    }
    let signed_by = header.kid.unwrap_or_default();
    if signed_by != trusted {
        return Err(BatchRefusal::WrongKey { signed_by, trusted });
    }
    let key = DecodingKey::from_ec_pem(trusted_pem.as_bytes())
        .map_err(|e| BatchRefusal::Malformed(format!("factory key: {e}")))?;
    let mut v = Validation::new(Algorithm::ES256);
    // A batch manifest does not expire: its devices' certificates carry the validity.
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    let claims = match jsonwebtoken::decode::<BatchClaims>(jws.trim(), &key, &v) {
        Ok(d) => d.claims,
        Err(e) => {
            return Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => BatchRefusal::BadSignature,
                _ => BatchRefusal::Malformed(e.to_string()),
            })
        }
    };
    let present = manifest
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    if present < claims.count {
        return Err(BatchRefusal::Truncated {
            signed: claims.count,
            present,
        });
    }
    if present > claims.count {
        return Err(BatchRefusal::Tampered(format!(
            "{present} entries, {} signed",
            claims.count
        )));
    }
    let digest = manifest_sha256(manifest);
    if digest != claims.manifest_sha256 {
        return Err(BatchRefusal::Tampered(format!(
            "its SHA-256 is {digest}, the signed one {}",
            claims.manifest_sha256
        )));
    }
    let text = std::str::from_utf8(manifest)
        .map_err(|_| BatchRefusal::Malformed("manifest is not UTF-8".into()))?;
    let mut lines = Vec::with_capacity(present as usize);
    let mut seen = std::collections::HashSet::with_capacity(present as usize);
    for (n, l) in text.lines().filter(|l| !l.is_empty()).enumerate() {
        // Signed, so only a faulty factory gets here; still refused rather than half imported.
        let line = ManifestLine::parse(l)
            .map_err(|e| BatchRefusal::Malformed(format!("entry {}: {e}", n + 1)))?;
        if line.family != claims.family {
            return Err(BatchRefusal::Malformed(format!(
                "entry {} is of family '{}', the batch of '{}'",
                n + 1,
                line.family,
                claims.family
            )));
        }
        if !seen.insert(line.serial.clone()) {
            return Err(BatchRefusal::Malformed(format!(
                "serial {} appears twice",
                line.serial
            )));
        }
        lines.push(line);
    }
    Ok((claims, lines))
}
