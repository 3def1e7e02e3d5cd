//! Reading the files an operator names, with errors that say what the file should have been.

use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// The text of a PEM file that should hold `what` (e.g. "the firmware-signing key, PKCS#8
/// PEM such as the factory's firmware.key.pem"); binary or non-PEM content is named as such.
pub fn pem_text(path: &Path, what: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match String::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => Ok(text),
        Ok(_) => Err(anyhow!(
            "{} is not a PEM file (no -----BEGIN line); expected {what}",
            path.display()
        )),
        Err(_) => Err(anyhow!(
            "{} is binary data, not a PEM file; expected {what}",
            path.display()
        )),
    }
}

/// The text of a file that should hold `what`; binary content is named as such.
pub fn text(path: &Path, what: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow!("{} is binary data; expected {what}", path.display()))
}

/// A certificate file, PEM or DER, as DER (of a PEM bundle, the first certificate).
pub fn certificate(path: &Path, what: &str) -> Result<Vec<u8>> {
    use x509_cert::der::Decode;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{}: PEM with non-UTF-8 bytes", path.display()))?;
        return sesame_pki::cert_from_pem(&text).map_err(|e| {
            anyhow!(
                "{}: no certificate in it ({e}); expected {what}",
                path.display()
            )
        });
    }
    x509_cert::Certificate::from_der(&bytes).map_err(|_| {
        anyhow!(
            "{} is neither a PEM nor a DER certificate; expected {what}",
            path.display()
        )
    })?;
    Ok(bytes)
}
