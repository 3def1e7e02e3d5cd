//! `sesame-proto`: the requests and responses of the sesame cloud's HTTP API, as the cloud,
//! the agent and the CLI exchange them.
//!
//! The wire format is JSON. Binary values travel as text exactly as they always have:
//! certificates, signatures, nonces and ciphertexts as standard base64 (decoded here into
//! bytes, surrounding whitespace tolerated), keys and hashes as lowercase hex. Fields the login
//! code keeps as text (challenge, session, key exchange) stay text.
//!
//! [`messages`] holds the bytes a chip signs (login, telemetry, commands, receipts, usage,
//! firmware, key exchange), so the cloud and the agent build exactly the same ones.
//!
//! With the `openapi` feature every type also derives `utoipa::ToSchema`, from which the cloud
//! generates its OpenAPI document.
//!
//! ```
//! use sesame_proto::auth::ChallengeRequest;
//! let req = ChallengeRequest { certificate: vec![0x30, 0x03], chain: vec![] };
//! let text = serde_json::to_string(&req).unwrap();
//! assert_eq!(text, r#"{"certificate":"MAM="}"#);
//! let back: ChallengeRequest = serde_json::from_str(r#"{"certificate":" MAM=\n"}"#).unwrap();
//! assert_eq!(back.certificate, [0x30, 0x03]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod data;
pub mod messages;
pub mod mqtt;

use serde::{Deserialize, Serialize};

/// The body of every refusal: a stable machine-readable code and a sentence.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable code, e.g. `not_enrolled`, `malformed_request`, `unauthorized`.
    pub error: String,
    /// Human-readable message.
    pub message: String,
}

/// `GET /v1/info` (no token): what a client may learn about a cloud before it trusts anything.
/// Fingerprints are SHA-256 of the key's SubjectPublicKeyInfo DER, lowercase hex.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Info {
    /// The cloud's name, bound into every authentication signature.
    pub identity: String,
    /// The service's version.
    pub version: String,
    /// The command public key, when the cloud has one (commands and encrypted telemetry).
    pub command_key: Option<PublicKeyInfo>,
    /// Fingerprint of the firmware public key releases must verify under, when configured.
    #[serde(default)]
    pub firmware_key_sha256: Option<String>,
}

/// A P-256 public key as the cloud publishes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKeyInfo {
    /// SubjectPublicKeyInfo, PEM (`-----BEGIN PUBLIC KEY-----`), as the factory writes it.
    pub public_key_pem: String,
    /// SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex (clients recompute it).
    pub sha256: String,
}

/// `GET /healthz`: `ok`, or `database unavailable` (with 503).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` or what is wrong.
    pub status: String,
}

/// Serde for bytes as standard base64 text (whitespace around it tolerated on input).
pub mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `bytes` as base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Reads base64 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.trim())
            .map_err(|_| serde::de::Error::custom("a binary field is not valid base64"))
    }

    /// The same for an optional field (absent or `null` is `None`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Writes `Some(bytes)` as base64, `None` as `null`.
        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        /// Reads base64 text or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            #[derive(Deserialize)]
            struct W(#[serde(with = "super")] Vec<u8>);
            Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bad_base64_is_refused_with_a_clear_error() {
        let e = serde_json::from_str::<auth::ChallengeRequest>(r#"{"certificate":"!!"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not valid base64"), "{e}");
    }

    #[test]
    fn optional_bytes_round_trip() {
        let r = auth::ResponseRequest {
            challenge_id: "c".into(),
            signature: vec![1, 2, 3],
            certificate: None,
            ecdh: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"challenge_id":"c","signature":"AQID"}"#);
        let back: auth::ResponseRequest =
            serde_json::from_str(r#"{"challenge_id":"c","signature":"AQID","certificate":"AQ=="}"#)
                .unwrap();
        assert_eq!(back.certificate, Some(vec![1]));
    }

    #[test]
    fn revocation_targets_keep_their_shape() {
        let t = admin::Target::Certificate {
            serial: "S1".into(),
            cert_id: "ab".into(),
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"kind":"certificate","serial":"S1","cert_id":"ab"}"#
        );
    }

    #[test]
    fn unknown_revocation_fields_are_refused() {
        assert!(serde_json::from_str::<admin::RevokeRequest>(r#"{"serail":"X"}"#).is_err());
    }
}
