//! The signed batch manifest (see [`sesame_pki::batch_sig`]): written by [`crate::personalize`]
//! at the end of a complete batch as `manifest.jsonl.jws`, with the factory's batch-signing key.

use std::fs;
use std::path::{Path, PathBuf};

use sesame_pki::batch_sig::{manifest_sha256, sign_batch, BatchClaims};

use crate::error::{io, Error, Kind, Result};
use crate::FactoryDir;

/// File name of the signature, next to `manifest.jsonl`.
pub const SIGNATURE_FILE: &str = "manifest.jsonl.jws";

impl FactoryDir {
    /// The batch-signing key (P-256, PKCS#8 PEM).
    pub fn batch_key(&self) -> PathBuf {
        self.0.join("batch.key.pem")
    }
    /// Its public key: what the cloud is given to trust batches from this factory.
    pub fn batch_pub(&self) -> PathBuf {
        self.0.join("batch.pub.pem")
    }
}

/// A factory made before batches were signed gets its batch-signing key at its first batch.
pub(crate) fn ensure_batch_key(d: &FactoryDir) -> Result<()> {
    if d.batch_key().exists() {
        return Ok(());
    }
    crate::new_p256_pair(&d.batch_key(), &d.batch_pub())
}

/// Signs the finished manifest of `out`; replaces any earlier signature atomically.
pub(crate) fn sign_manifest(
    d: &FactoryDir,
    out: &Path,
    claims_of: impl FnOnce(String, u64) -> BatchClaims,
) -> Result<()> {
    let manifest_path = out.join("manifest.jsonl");
    let manifest = io(fs::read(&manifest_path), || {
        format!("cannot read {}", manifest_path.display())
    })?;
    let count = manifest
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    let claims = claims_of(manifest_sha256(&manifest), count);
    let read = |p: PathBuf| {
        io(fs::read_to_string(&p), || {
            format!("cannot read {}", p.display())
        })
    };
    let jws = sign_batch(&claims, &read(d.batch_key())?, &read(d.batch_pub())?)
        .map_err(|e| Error::new(Kind::Crypto, format!("signing the manifest: {e}")))?;
    let path = out.join(SIGNATURE_FILE);
    let tmp = out.join(format!("{SIGNATURE_FILE}.tmp"));
    io(
        fs::write(&tmp, format!("{jws}\n")).and_then(|()| fs::rename(&tmp, &path)),
        || format!("cannot write {}", path.display()),
    )
}

/// Removes the signature of a batch that is being (re)built: a batch without one is unfinished.
pub(crate) fn unsign(out: &Path) -> Result<()> {
    let path = out.join(SIGNATURE_FILE);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e)
            .map_err(|e| Error::new(Kind::Io, format!("cannot remove {}: {e}", path.display()))),
        _ => Ok(()),
    }
}
