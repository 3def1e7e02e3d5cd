//! The data path (device bearer token): encrypted, chip-signed telemetry up; command-key-signed
//! commands down with chip-signed receipts; firmware releases; chip-signed usage reports. And
//! the operator side of each.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sesame_pki::protocol;
use sha2::Digest;

use crate::api::{serial_arg, session_device};
use crate::auth;
use crate::error::ApiError;
use crate::extract::Body;
use crate::service::{now, Service};
use crate::store_data::CommandRow;
use crate::store_trust::SessionRow;

type S = State<Arc<Service>>;
type ApiResult<T> = Result<T, ApiError>;

/// Longest command body, bytes.
const COMMAND_MAX: usize = 4096;

pub(crate) fn routes(s: &Service) -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/telemetry", post(telemetry))
        .route("/v1/commands", get(pending_commands))
        .route("/v1/commands/{seq}/receipt", post(receipt))
        .route("/v1/firmware/latest", get(latest_firmware))
        .route("/v1/firmware/{version}", get(firmware_image))
        .route("/v1/usage", post(usage))
        .route("/v1/admin/devices/{serial}/telemetry", get(admin_telemetry))
        // The same, at the path the product documentation gives (operator token required).
        .route("/v1/devices/{serial}/telemetry", get(admin_telemetry))
        .route(
            "/v1/admin/devices/{serial}/commands",
            post(queue_command).get(admin_commands),
        )
        .route("/v1/admin/devices/{serial}/usage", get(admin_usage))
        .layer(DefaultBodyLimit::max(s.config.body_limit))
        // Images travel as bytes, up to their own limit.
        .merge(
            Router::new()
                .route("/v1/admin/firmware", post(publish_firmware))
                .layer(DefaultBodyLimit::max(s.config.firmware_limit)),
        )
}

fn refused(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

fn b64(field: &str, v: &str) -> ApiResult<Vec<u8>> {
    B64.decode(v.trim()).map_err(|_| {
        ApiError::bad_request("malformed_request", format!("{field} is not valid base64"))
    })
}

/// The device behind a bearer token; refused if the session is unknown or expired, or the device
/// (its serial, certificate, key or family) has been revoked since.
async fn device(s: &Service, headers: &HeaderMap) -> ApiResult<SessionRow> {
    session_device(s, headers).await
}

/// Checks that `message` was signed (`R || S`) by the chip behind this session.
fn signed_by_chip(dev: &SessionRow, message: &[u8], sig: &[u8], what: &str) -> ApiResult<()> {
    let pk = hex::decode(&dev.public_key).unwrap_or_default();
    if auth::verify(&pk, message, sig) {
        Ok(())
    } else {
        Err(refused(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            &format!("the {what} is not signed by the device's chip"),
        ))
    }
}

fn admin(s: &Service, headers: &HeaderMap) -> ApiResult<()> {
    crate::api::admin(s, headers)
}

#[derive(Deserialize)]
struct TelemetryReq {
    seq: u64,
    time: i64,
    nonce: String,
    ciphertext: String,
    signature: String,
}

async fn telemetry(
    State(s): S,
    h: HeaderMap,
    Body(r): Body<TelemetryReq>,
) -> ApiResult<Json<Value>> {
    let dev = device(&s, &h).await?;
    let (nonce, ct, sig) = (
        b64("nonce", &r.nonce)?,
        b64("ciphertext", &r.ciphertext)?,
        b64("signature", &r.signature)?,
    );
    let m =
        protocol::telemetry_message(&s.config.identity, &dev.serial, r.seq, r.time, &nonce, &ct);
    if let Err(e) = signed_by_chip(&dev, &m, &sig, "message") {
        let _ = s
            .audit(&dev.serial, "telemetry_refused", "bad_signature", "")
            .await;
        return Err(e);
    }
    let key: [u8; 32] = hex::decode(&dev.telemetry_key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| {
            refused(
                StatusCode::CONFLICT,
                "no_session_key",
                "log in with a key exchange first",
            )
        })?;
    let Some(plain) = protocol::open_payload(
        &key,
        &nonce,
        &protocol::telemetry_aad(&dev.serial, r.seq, r.time),
        &ct,
    ) else {
        let _ = s
            .audit(&dev.serial, "telemetry_refused", "bad_tag", "")
            .await;
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "bad_tag",
            "the payload does not decrypt under the session key",
        ));
    };
    let seq = i64::try_from(r.seq)
        .map_err(|_| ApiError::bad_request("malformed_request", "seq out of range"))?;
    let payload = String::from_utf8(plain)
        .ok()
        .filter(|p| !p.contains('\0'))
        .ok_or_else(|| {
            ApiError::bad_request(
                "unstorable_input",
                "the decrypted payload must be UTF-8 text without NUL",
            )
        })?;
    // Committed before the acknowledgement; a sequence not above the last accepted is a replay.
    if !s
        .store
        .put_telemetry(&dev.serial, seq, r.time, &payload, now())
        .await?
    {
        let _ = s
            .audit(&dev.serial, "telemetry_refused", "replay", &seq.to_string())
            .await;
        return Err(refused(
            StatusCode::CONFLICT,
            "replay",
            "sequence number not above the last accepted",
        ));
    }
    Ok(Json(json!({ "accepted": seq })))
}

async fn admin_telemetry(
    State(s): S,
    h: HeaderMap,
    Path(serial): Path<String>,
) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let serial = serial_arg(&serial)?;
    Ok(Json(
        json!({ "serial": serial, "messages": s.store.telemetry(&serial, 10_000).await? }),
    ))
}

#[derive(Deserialize)]
struct QueueReq {
    body: String,
    #[serde(default)]
    ttl: Option<i64>,
}

async fn queue_command(
    State(s): S,
    h: HeaderMap,
    Path(serial): Path<String>,
    Body(r): Body<QueueReq>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    admin(&s, &h)?;
    let serial = serial_arg(&serial)?;
    if r.body.is_empty() || r.body.len() > COMMAND_MAX {
        return Err(ApiError::bad_request(
            "malformed_request",
            format!("a command body is 1 to {COMMAND_MAX} bytes"),
        ));
    }
    if s.command_key.is_none() {
        return Err(refused(
            StatusCode::CONFLICT,
            "no_command_key",
            "the cloud has no command-signing key configured",
        ));
    }
    for _ in 0..3 {
        let seq = s.store.next_command_seq(&serial).await?;
        let expires = now() + r.ttl.unwrap_or(3600).clamp(1, 30 * 86_400);
        let m = protocol::command_message(
            &s.config.identity,
            &serial,
            seq as u64,
            expires,
            r.body.as_bytes(),
        );
        let sig = s.sign_command(&m).ok_or_else(|| {
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "signing failed",
            )
        })?;
        let c = CommandRow {
            serial: serial.clone(),
            seq,
            expires,
            body: r.body.clone(),
            signature: B64.encode(sig),
            receipt: String::new(),
        };
        if s.store.put_command(&c).await? {
            s.audit(&serial, "command_queued", "", &seq.to_string())
                .await?;
            return Ok((StatusCode::CREATED, Json(json!(c))));
        }
    }
    Err(refused(
        StatusCode::CONFLICT,
        "busy",
        "concurrent commands for this device; retry",
    ))
}

async fn admin_commands(
    State(s): S,
    h: HeaderMap,
    Path(serial): Path<String>,
) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let serial = serial_arg(&serial)?;
    Ok(Json(
        json!({ "commands": s.store.commands(&serial, false).await? }),
    ))
}

async fn pending_commands(State(s): S, h: HeaderMap) -> ApiResult<Json<Value>> {
    let dev = device(&s, &h).await?;
    Ok(Json(
        json!({ "identity": s.config.identity, "commands": s.store.commands(&dev.serial, true).await? }),
    ))
}

#[derive(Deserialize)]
struct ReceiptReq {
    status: String,
    signature: String,
}

async fn receipt(
    State(s): S,
    h: HeaderMap,
    Path(seq): Path<i64>,
    Body(r): Body<ReceiptReq>,
) -> ApiResult<Json<Value>> {
    let dev = device(&s, &h).await?;
    let sig = b64("signature", &r.signature)?;
    if seq < 0 {
        return Err(ApiError::bad_request(
            "malformed_request",
            "negative sequence",
        ));
    }
    receipt_status(&r.status)?;
    let m = protocol::receipt_message(&s.config.identity, &dev.serial, seq as u64, &r.status);
    signed_by_chip(&dev, &m, &sig, "receipt")?;
    if !s
        .store
        .put_receipt(&dev.serial, seq, &r.status, now())
        .await?
    {
        return Err(refused(
            StatusCode::CONFLICT,
            "no_pending_command",
            "no pending command with this sequence",
        ));
    }
    s.audit(&dev.serial, "command_receipt", &r.status, &seq.to_string())
        .await?;
    Ok(Json(json!({ "recorded": seq })))
}

/// Outcomes a receipt may report, each optionally followed by `:detail`.
pub const RECEIPT_OUTCOMES: [&str; 3] = ["executed", "refused", "failed"];
/// Longest receipt detail, bytes.
const RECEIPT_DETAIL_MAX: usize = 200;

/// A receipt status is `OUTCOME` or `OUTCOME:detail`, with OUTCOME from [`RECEIPT_OUTCOMES`] and
/// a short printable detail: a receipt always settles its command.
fn receipt_status(status: &str) -> ApiResult<()> {
    let (outcome, detail) = status.split_once(':').unwrap_or((status, ""));
    let detail_ok = detail.len() <= RECEIPT_DETAIL_MAX && !detail.chars().any(char::is_control);
    if RECEIPT_OUTCOMES.contains(&outcome)
        && detail_ok
        && (detail.is_empty() != status.contains(':'))
    {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "bad_receipt_status",
            format!(
                "a receipt status is one of {} optionally followed by ':' and up to {RECEIPT_DETAIL_MAX} printable characters",
                RECEIPT_OUTCOMES.join(", ")
            ),
        ))
    }
}

/// The header that carries a release's signed manifest (compact JSON) with its image.
pub const MANIFEST_HEADER: &str = "sesame-manifest";

/// A signed firmware manifest.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    version: u32,
    sha256: String,
    size: u64,
    signature: String,
}

/// `POST /v1/admin/firmware`: the image as the body (`application/octet-stream`), its manifest
/// in the `sesame-manifest` header. Accepted only if the manifest describes the image and its
/// signature verifies under the configured firmware key, so no version is spent on a release
/// that devices would refuse.
async fn publish_firmware(
    State(s): S,
    h: HeaderMap,
    image: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    admin(&s, &h)?;
    let Some(fw_key) = s.firmware_key.as_ref() else {
        return Err(refused(
            StatusCode::CONFLICT,
            "no_firmware_key",
            "the cloud has no firmware public key configured (firmware_key)",
        ));
    };
    let manifest: Manifest = h
        .get(MANIFEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "malformed_request",
                format!("send the signed manifest as compact JSON in the {MANIFEST_HEADER} header"),
            )
        })?;
    let sha = sha2::Sha256::digest(&image);
    if manifest.sha256 != hex::encode(sha) || manifest.size != image.len() as u64 {
        return Err(ApiError::bad_request(
            "manifest_mismatch",
            "the manifest does not describe this image",
        ));
    }
    let sig = b64("signature", &manifest.signature)?;
    let m = protocol::firmware_message(manifest.version, &sha, manifest.size);
    if !auth::verify(fw_key, &m, &sig) {
        let _ = s
            .audit(
                "",
                "firmware_refused",
                "bad_signature",
                &manifest.version.to_string(),
            )
            .await;
        return Err(refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_signature",
            "the manifest is not signed by the firmware key",
        ));
    }
    let version = i64::from(manifest.version);
    let manifest_json = serde_json::to_string(&manifest).unwrap_or_default();
    if !s
        .store
        .put_firmware(version, &manifest_json, &B64.encode(&image), now())
        .await?
    {
        return Err(refused(
            StatusCode::CONFLICT,
            "exists",
            "this version is already released",
        ));
    }
    s.audit("", "firmware_release", "", &version.to_string())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "version": version, "size": image.len() })),
    ))
}

async fn latest_firmware(State(s): S, h: HeaderMap) -> ApiResult<Json<Value>> {
    device(&s, &h).await?;
    match s.store.firmware(None).await? {
        Some((m, _)) => Ok(Json(serde_json::from_str(&m).unwrap_or_default())),
        None => Err(ApiError::not_found("no firmware released")),
    }
}

/// The image of a release, as bytes, with its manifest in the `sesame-manifest` header.
async fn firmware_image(
    State(s): S,
    h: HeaderMap,
    Path(version): Path<i64>,
) -> ApiResult<axum::response::Response> {
    device(&s, &h).await?;
    match s.store.firmware(Some(version)).await? {
        Some((m, image)) => {
            let bytes = B64.decode(image).map_err(|_| {
                ApiError::from(crate::store::StoreError::Corrupt(
                    "stored image is not base64".into(),
                ))
            })?;
            Ok((
                [
                    ("content-type", "application/octet-stream".to_string()),
                    (MANIFEST_HEADER, m),
                ],
                bytes,
            )
                .into_response())
        }
        None => Err(ApiError::not_found(format!("no firmware {version}"))),
    }
}

#[derive(Deserialize)]
struct UsageReq {
    seq: u64,
    remaining: u32,
    signature: String,
}

async fn usage(State(s): S, h: HeaderMap, Body(r): Body<UsageReq>) -> ApiResult<Json<Value>> {
    let dev = device(&s, &h).await?;
    let sig = b64("signature", &r.signature)?;
    let m = protocol::usage_message(&s.config.identity, &dev.serial, r.seq, r.remaining);
    signed_by_chip(&dev, &m, &sig, "report")?;
    let seq = i64::try_from(r.seq)
        .map_err(|_| ApiError::bad_request("malformed_request", "seq out of range"))?;
    if !s
        .store
        .put_usage(&dev.serial, seq, r.remaining as i64, now())
        .await?
    {
        return Err(refused(
            StatusCode::CONFLICT,
            "replay",
            "sequence number not above the last report",
        ));
    }
    Ok(Json(json!({ "remaining": r.remaining })))
}

async fn admin_usage(
    State(s): S,
    h: HeaderMap,
    Path(serial): Path<String>,
) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let serial = serial_arg(&serial)?;
    match s.store.usage(&serial).await? {
        Some((remaining, at)) => Ok(Json(
            json!({ "serial": serial, "remaining": remaining, "reported_at": at }),
        )),
        None => Err(ApiError::not_found(format!(
            "no usage report from {serial}"
        ))),
    }
}
