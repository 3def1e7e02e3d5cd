//! The data path: telemetry, commands and receipts, firmware, usage; and the operator's view of
//! each.

use serde::{Deserialize, Serialize};

/// `POST /v1/telemetry`: an encrypted message signed by the chip.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TelemetryRequest {
    /// Sequence number, above the last accepted.
    pub seq: u64,
    /// Unix seconds at the device.
    pub time: i64,
    /// AES-GCM nonce (base64 on the wire).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub nonce: Vec<u8>,
    /// AES-256-GCM ciphertext and tag under the session's telemetry key (base64).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub ciphertext: Vec<u8>,
    /// The chip's `R || S` signature over `telemetry_message` (base64).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub signature: Vec<u8>,
}

/// A telemetry message accepted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TelemetryAccepted {
    /// Its sequence number.
    pub accepted: i64,
}

/// One accepted message, decrypted.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TelemetryMessage {
    /// Sequence number.
    pub seq: i64,
    /// Unix seconds at the device.
    pub time: i64,
    /// The plaintext.
    pub payload: String,
    /// Unix seconds at the cloud.
    pub received: i64,
}

/// `GET /v1/admin/devices/{serial}/telemetry`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TelemetryLog {
    /// The device.
    pub serial: String,
    /// Its messages by sequence.
    pub messages: Vec<TelemetryMessage>,
}

/// `POST /v1/admin/devices/{serial}/commands`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueRequest {
    /// The command (1 to 4096 bytes of text).
    pub body: String,
    /// Seconds it stays valid (1 to 30 days, default an hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

/// A command as the cloud signed it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Command {
    /// Target serial.
    pub serial: String,
    /// Per-device sequence.
    pub seq: i64,
    /// Unix seconds.
    pub expires: i64,
    /// Body.
    pub body: String,
    /// Command-key signature, base64 `R || S` over `command_message`.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub signature: String,
    /// The device's receipt status (empty while pending).
    #[serde(default)]
    pub receipt: String,
}

/// `GET /v1/admin/devices/{serial}/commands`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommandList {
    /// Commands with their receipts.
    pub commands: Vec<Command>,
}

/// `GET /v1/commands`: the device's pending commands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingCommands {
    /// The cloud identity bound into each command's signed message.
    pub identity: String,
    /// Commands without a receipt that have not expired.
    pub commands: Vec<Command>,
}

/// `POST /v1/commands/{seq}/receipt`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptRequest {
    /// `executed`, `refused` or `failed`, optionally followed by `:detail`.
    pub status: String,
    /// The chip's signature over `receipt_message` (base64).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub signature: Vec<u8>,
}

/// A receipt recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptRecorded {
    /// The command's sequence.
    pub recorded: i64,
}

/// The header that carries a release's signed manifest (compact JSON) with its image.
pub const MANIFEST_HEADER: &str = "sesame-manifest";

/// A signed firmware manifest (`sesame firmware sign`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Version (monotonic).
    pub version: u32,
    /// SHA-256 of the image, hex.
    pub sha256: String,
    /// Image size in bytes.
    pub size: u64,
    /// Firmware-key signature (`R || S`, base64) over `firmware_message`.
    #[cfg_attr(feature = "openapi", schema(format = Byte))]
    pub signature: String,
}

/// `POST /v1/admin/firmware`: a release published.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FirmwarePublished {
    /// Its version.
    pub version: i64,
    /// Image bytes.
    pub size: u64,
}

/// `POST /v1/usage`: a chip-signed report of the consumable's counter.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageRequest {
    /// Sequence number, above the last report.
    pub seq: u64,
    /// Remaining uses.
    pub remaining: u32,
    /// The chip's signature over `usage_message` (base64).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub signature: Vec<u8>,
}

/// A usage report recorded.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageRecorded {
    /// Remaining uses, as reported.
    pub remaining: u32,
}

/// `GET /v1/admin/devices/{serial}/usage`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    /// The device.
    pub serial: String,
    /// Remaining uses at its last report.
    pub remaining: i64,
    /// Unix seconds of that report.
    pub reported_at: i64,
}
