//! Device login: challenge and response (`/v1/auth/*`), the TLS login, the session check.

use serde::{Deserialize, Serialize};

/// `POST /v1/auth/challenge`: the device certificate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeRequest {
    /// The device certificate, DER (base64 on the wire).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub certificate: Vec<u8>,
    /// Intermediate certificates (accepted and ignored: the cloud knows the families).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
}

/// The answer to a challenge request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Challenge {
    /// Identifier to answer with.
    pub challenge_id: String,
    /// 32 random bytes, base64.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub challenge: String,
    /// Unix seconds after which the challenge is refused.
    pub expires_at: i64,
    /// The cloud identity bound into the signed message.
    pub identity: String,
}

/// `POST /v1/auth/response`: the chip's signature over the challenge message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResponseRequest {
    /// The challenge being answered.
    pub challenge_id: String,
    /// Raw `R || S` signature (base64 on the wire).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub signature: Vec<u8>,
    /// The certificate the device answers for (must be the one challenged), DER (base64).
    #[serde(
        default,
        with = "crate::base64_bytes::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub certificate: Option<Vec<u8>>,
    /// The device's half of the telemetry key exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecdh: Option<EcdhOffer>,
}

/// The device's half of the telemetry key exchange, sent with its login response.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EcdhOffer {
    /// The chip's ephemeral P-256 public key (SEC1 uncompressed, hex).
    pub public: String,
    /// The chip's slot-0 signature (base64 `R || S`) over `ecdh_device_message`.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub signature: String,
}

/// A session after a successful login.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    /// Bearer token (the cloud stores only its hash).
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The device's serial.
    pub serial: String,
    /// The cloud's half of the telemetry key exchange, when the device offered one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ecdh: Option<CloudEcdh>,
}

/// The cloud's ephemeral ECDH key, signed with its command key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloudEcdh {
    /// SEC1 P-256 public key, hex.
    pub public: String,
    /// Command-key signature (`R || S`, base64) over `ecdh_cloud_message`.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub signature: String,
}

/// `GET /v1/session`: the device behind a bearer token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// The device's serial.
    pub serial: String,
}
