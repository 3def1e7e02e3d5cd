//! The operator API (`/v1/admin/*`, bearer operator token): roots, families, devices,
//! revocation, audit.

use serde::{Deserialize, Serialize};

/// A certificate to trust or enroll: PEM text, or base64 DER.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateRequest {
    /// PEM, or base64 DER.
    pub certificate: String,
}

/// A root CA as the cloud lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Root {
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// Subject name.
    pub subject: String,
}

/// `GET /v1/admin/roots`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RootList {
    /// Trusted roots.
    pub roots: Vec<Root>,
}

/// `DELETE /v1/admin/roots/{fingerprint}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Untrusted {
    /// The fingerprint no longer trusted (canonical hex).
    pub untrusted: String,
}

/// `POST /v1/admin/families/code`: a single-use code for a proof of possession.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FamilyCode {
    /// The code to sign with the family CA key.
    pub code: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// `POST /v1/admin/families`: a family CA with the proof that its key signed the code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FamilyRequest {
    /// The family CA certificate: PEM, or base64 DER.
    pub certificate: String,
    /// The code from `POST /v1/admin/families/code`.
    pub code: String,
    /// DER ECDSA signature of the code's bytes with the family CA key (base64 on the wire).
    #[serde(with = "crate::base64_bytes")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub signature: Vec<u8>,
}

/// An enrolled family.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Family {
    /// SHA-256 of the family CA certificate, hex.
    pub fingerprint: String,
    /// Family name (the CA's CN).
    pub name: String,
    /// Fingerprint of the root it chains to.
    pub root: String,
    /// Revoked.
    pub revoked: bool,
}

/// `GET /v1/admin/families`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FamilyList {
    /// Enrolled families.
    pub families: Vec<Family>,
}

/// A root or family just trusted (201) or already trusted (200).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enrolled {
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
    /// A root's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// A family's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /v1/admin/devices`: a device enrolled on its own certificate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceEnrolled {
    /// SHA-256 of the TBSCertificate, hex.
    pub cert_id: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// The serial (certificate CN).
    pub serial: String,
}

/// A device in the registry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    /// Serial (certificate CN, canonical).
    pub serial: String,
    /// The family fingerprint that owns this serial, or `cert:<cert id>` for an individually
    /// enrolled device.
    pub owner: String,
    /// SHA-256 of the TBSCertificate of the last certificate it used, hex.
    pub cert_id: String,
    /// SHA-256 of its public key point, hex.
    pub key_id: String,
    /// SHA-256 of that certificate's DER, hex.
    pub fingerprint: String,
    /// Enrolled individually.
    pub enrolled: bool,
    /// Revoked (by serial, certificate, key or family).
    pub revoked: bool,
    /// Unix time of the last successful login (0 = never).
    pub last_auth: i64,
}

/// `GET /v1/admin/devices`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// Devices.
    pub devices: Vec<Device>,
}

/// `GET /v1/admin/devices/{serial}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceDetail {
    /// The serial asked for (canonical).
    pub serial: String,
    /// Its registry entries.
    pub certificates: Vec<Device>,
}

/// `?limit=` of a listing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ListQuery {
    /// Most rows (1 to 100000, default 1000).
    pub limit: Option<i64>,
}

/// `POST /v1/admin/revoke` and `/v1/admin/unrevoke`: exactly one of the names.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// A device serial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// SHA-256 (hex, colons allowed) of a known certificate or key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// A family, by name or fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// A device certificate (PEM or base64 DER): its certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Revoke a serial the cloud has never seen (a device not yet in the field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pre_revoke: bool,
}

/// One thing a revocation named.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// Every certificate of a serial.
    Serial {
        /// The serial.
        serial: String,
    },
    /// One certificate.
    Certificate {
        /// Its device's serial.
        serial: String,
        /// SHA-256 of its TBSCertificate, hex.
        cert_id: String,
    },
    /// One key, in whatever certificate.
    Key {
        /// Its device's serial.
        serial: String,
        /// SHA-256 of the public key point, hex.
        key_id: String,
    },
    /// A family and every device under it.
    Family {
        /// Family name.
        name: String,
        /// Fingerprint of the family CA.
        fingerprint: String,
    },
}

impl Target {
    /// The device serial it concerns (empty for a family).
    pub fn serial(&self) -> &str {
        match self {
            Self::Serial { serial }
            | Self::Certificate { serial, .. }
            | Self::Key { serial, .. } => serial,
            Self::Family { .. } => "",
        }
    }
}

/// What a revocation (`revoked`) or its undoing (`unrevoked`) changed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revocation {
    /// What `POST /v1/admin/revoke` revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Vec<Target>>,
    /// What `POST /v1/admin/unrevoke` restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unrevoked: Option<Vec<Target>>,
}

/// `GET /v1/admin/audit` query.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AuditQuery {
    /// Only this device.
    pub serial: Option<String>,
    /// From this Unix second on.
    pub since: Option<i64>,
    /// Up to this Unix second.
    pub until: Option<i64>,
    /// Most rows (1 to 100000, default 1000).
    pub limit: Option<i64>,
}

/// One audit event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Unix seconds.
    pub at: i64,
    /// The device concerned (empty if none).
    pub serial: String,
    /// What happened, e.g. `auth_success`, `revoke_device`.
    pub event: String,
    /// Why (refusals).
    pub reason: String,
    /// Details.
    pub detail: String,
}

/// `GET /v1/admin/audit`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditLog {
    /// Events, oldest first.
    pub events: Vec<AuditEvent>,
}

/// `POST /v1/admin/batches`: a factory batch and the factory key the operator trusts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BatchImportRequest {
    /// The JWS (compact, ES256) from `manifest.jsonl.jws`.
    pub signature: String,
    /// `manifest.jsonl`, exactly as the factory wrote it.
    pub manifest: String,
    /// The factory's batch-signing public key (SPKI PEM).
    pub factory_key: String,
}

/// What an import did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchImported {
    /// The batch id.
    pub batch: String,
    /// Its family's name.
    pub family: String,
    /// Chips in the batch.
    pub chips: u64,
    /// Serials newly bound to the family.
    pub registered: u64,
    /// True when this batch was imported before (nothing changed).
    pub already_imported: bool,
    /// Milliseconds the import took.
    pub ms: u64,
}

/// `GET /v1/admin/expiring`: chips of imported batches whose certificate ends within `days`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams, utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ExpiringQuery {
    /// Days from now (0 to 36500; 0: already ended).
    pub days: i64,
    /// Most rows listed (default 1000, at most 100000).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// A device certificate nearing its end.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExpiringDevice {
    /// Serial.
    pub serial: String,
    /// The batch it came in.
    pub batch: String,
    /// Family name.
    pub family: String,
    /// Certificate notAfter (Unix seconds).
    pub not_after: i64,
}

/// The devices nearing expiry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Expiring {
    /// The window asked for.
    pub days: i64,
    /// Unix seconds the window ends.
    pub before: i64,
    /// How many there are in all.
    pub total: i64,
    /// The first of them, soonest first.
    pub devices: Vec<ExpiringDevice>,
}
