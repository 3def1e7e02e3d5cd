//! The data path (device bearer token): encrypted, chip-signed telemetry up; command-key-signed
//! commands down with chip-signed receipts; firmware releases; chip-signed usage reports. And
//! the operator side of each.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sesame_pki::protocol;
use sha2::Digest;

use crate::auth;
use crate::error::ApiError;
use crate::service::{now, Service};
use crate::store_data::{CommandRow, SessionRow};

type S = State<Arc<Service>>;
type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn routes() -> Router<Arc<Service>> {
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
        .route("/v1/admin/firmware", post(publish_firmware))
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

fn body<T>(j: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    j.map(|Json(v)| v).map_err(ApiError::from)
}

/// The device behind a bearer token; refused if the session is unknown/expired or the device
/// (or its certificate, or its family) has been revoked since. The session's telemetry key
/// comes back unwrapped (hex), or empty.
async fn device(s: &Service, headers: &HeaderMap) -> ApiResult<SessionRow> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    let Some(mut row) = s.store.session_row(&hash, now()).await? else {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no valid device session",
        ));
    };
    let families = s.store.families().await?;
    for d in s.store.devices(Some(&row.serial), 1).await? {
        let family_revoked = families
            .iter()
            .any(|f| f.fingerprint == d.family && f.revoked);
        if d.revoked || family_revoked {
            return Err(ApiError::auth(crate::auth::Reason::Revoked));
        }
    }
    if s.store.is_revoked(&row.serial, "").await? {
        return Err(ApiError::auth(crate::auth::Reason::Revoked));
    }
    row.telemetry_key = s
        .unwrap_session_key(&row.telemetry_key, &hash)
        .map(hex::encode)
        .unwrap_or_default();
    Ok(row)
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
    crate::api::check_admin(s, headers)
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
    j: Result<Json<TelemetryReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let dev = device(&s, &h).await?;
    let r = body(j)?;
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
    let payload = String::from_utf8_lossy(&plain).into_owned();
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
    j: Result<Json<QueueReq>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    admin(&s, &h)?;
    let r = body(j)?;
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
    j: Result<Json<ReceiptReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let dev = device(&s, &h).await?;
    let r = body(j)?;
    let sig = b64("signature", &r.signature)?;
    if seq < 0 {
        return Err(ApiError::bad_request(
            "malformed_request",
            "negative sequence",
        ));
    }
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

#[derive(Deserialize)]
struct PublishReq {
    manifest: Value,
    image: String,
}

async fn publish_firmware(
    State(s): S,
    h: HeaderMap,
    j: Result<Json<PublishReq>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    admin(&s, &h)?;
    let r = body(j)?;
    let image = b64("image", &r.image)?;
    let version = r.manifest["version"]
        .as_i64()
        .ok_or_else(|| ApiError::bad_request("malformed_request", "manifest has no version"))?;
    let sha = hex::encode(sha2::Sha256::digest(&image));
    if r.manifest["sha256"].as_str() != Some(sha.as_str())
        || r.manifest["size"].as_u64() != Some(image.len() as u64)
    {
        return Err(ApiError::bad_request(
            "manifest_mismatch",
            "the manifest does not describe this image",
        ));
    }
    if !s
        .store
        .put_firmware(version, &r.manifest.to_string(), &r.image, now())
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
    Ok((StatusCode::CREATED, Json(json!({ "version": version }))))
}

async fn latest_firmware(State(s): S, h: HeaderMap) -> ApiResult<Json<Value>> {
    device(&s, &h).await?;
    match s.store.firmware(None).await? {
        Some((m, _)) => Ok(Json(serde_json::from_str(&m).unwrap_or_default())),
        None => Err(ApiError::not_found("no firmware released")),
    }
}

async fn firmware_image(
    State(s): S,
    h: HeaderMap,
    Path(version): Path<i64>,
) -> ApiResult<Json<Value>> {
    device(&s, &h).await?;
    match s.store.firmware(Some(version)).await? {
        Some((m, image)) => Ok(Json(
            json!({ "manifest": serde_json::from_str::<Value>(&m).unwrap_or_default(), "image": image }),
        )),
        None => Err(ApiError::not_found(format!("no firmware {version}"))),
    }
}

#[derive(Deserialize)]
struct UsageReq {
    seq: u64,
    remaining: u32,
    signature: String,
}

async fn usage(
    State(s): S,
    h: HeaderMap,
    j: Result<Json<UsageReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let dev = device(&s, &h).await?;
    let r = body(j)?;
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
    match s.store.usage(&serial).await? {
        Some((remaining, at)) => Ok(Json(
            json!({ "serial": serial, "remaining": remaining, "reported_at": at }),
        )),
        None => Err(ApiError::not_found(format!(
            "no usage report from {serial}"
        ))),
    }
}
