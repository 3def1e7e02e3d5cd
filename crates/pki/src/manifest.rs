//! The factory manifest: one JSON line per personalized chip.

use serde::{Deserialize, Serialize};

/// One chip of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestLine {
    /// The chip's serial (hex), also the certificate's CN.
    pub serial: String,
    /// SHA-256 of the device certificate DER (hex).
    pub cert_sha256: String,
    /// Family name.
    pub family: String,
    /// The slot-0 public key, uncompressed SEC1, hex.
    pub public_key: String,
}

impl ManifestLine {
    /// The line as written (JSON, no trailing newline).
    pub fn to_json(&self) -> String {
        // A struct of strings always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one line.
    pub fn parse(line: &str) -> Result<Self, crate::Error> {
        serde_json::from_str(line).map_err(|e| crate::Error::Parse(format!("manifest line: {e}")))
    }
}
