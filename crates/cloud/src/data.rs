//! HTTP for the data path (device bearer token): telemetry, commands and receipts, firmware,
//! usage; and the operator side of each. Handlers only extract, call the service and encode.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use sesame_proto::data::{
    Command, CommandList, FirmwarePublished, Manifest, PendingCommands, QueueRequest,
    ReceiptRecorded, ReceiptRequest, TelemetryAccepted, TelemetryLog, TelemetryRequest,
    UsageRecorded, UsageReport, UsageRequest, MANIFEST_HEADER,
};

use crate::access::{Admin, DeviceSession};
use crate::error::ApiError;
use crate::extract::Body;
use crate::service::Service;

type S = State<Arc<Service>>;
type ApiResult<T> = Result<T, ApiError>;

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
        .route("/v1/devices/{serial}/telemetry", get(device_telemetry))
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

/// An encrypted, chip-signed message; refused if `seq` is not above the last accepted.
#[utoipa::path(post, path = "/v1/telemetry", tag = "device", security(("device" = [])),
    request_body = TelemetryRequest, responses((status = 200, body = TelemetryAccepted)))]
pub(crate) async fn telemetry(
    State(s): S,
    dev: DeviceSession,
    Body(r): Body<TelemetryRequest>,
) -> ApiResult<Json<TelemetryAccepted>> {
    Ok(Json(s.ingest_telemetry(&dev, &r).await?))
}

/// A device's accepted telemetry, decrypted.
#[utoipa::path(get, path = "/v1/admin/devices/{serial}/telemetry", tag = "operator",
    security(("admin" = [])), params(("serial" = String, Path, description = "Device serial")),
    responses((status = 200, body = TelemetryLog)))]
pub(crate) async fn admin_telemetry(
    State(s): S,
    admin: Admin,
    Path(serial): Path<String>,
) -> ApiResult<Json<TelemetryLog>> {
    Ok(Json(s.telemetry_log(&admin, &serial).await?))
}

/// Same as `/v1/admin/devices/{serial}/telemetry`.
#[utoipa::path(get, path = "/v1/devices/{serial}/telemetry", tag = "operator",
    security(("admin" = [])), params(("serial" = String, Path, description = "Device serial")),
    responses((status = 200, body = TelemetryLog)))]
pub(crate) async fn device_telemetry(
    state: S,
    admin: Admin,
    serial: Path<String>,
) -> ApiResult<Json<TelemetryLog>> {
    admin_telemetry(state, admin, serial).await
}

/// Queues a command; the cloud signs {serial, seq, expiry, body} with its command key.
#[utoipa::path(post, path = "/v1/admin/devices/{serial}/commands", tag = "operator",
    security(("admin" = [])), params(("serial" = String, Path, description = "Device serial")),
    request_body = QueueRequest, responses((status = 201, body = Command)))]
pub(crate) async fn queue_command(
    State(s): S,
    admin: Admin,
    Path(serial): Path<String>,
    Body(r): Body<QueueRequest>,
) -> ApiResult<(StatusCode, Json<Command>)> {
    let c = s.queue_command(&admin, &serial, &r).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// A device's commands with their receipts.
#[utoipa::path(get, path = "/v1/admin/devices/{serial}/commands", tag = "operator",
    security(("admin" = [])), params(("serial" = String, Path, description = "Device serial")),
    responses((status = 200, body = CommandList)))]
pub(crate) async fn admin_commands(
    State(s): S,
    admin: Admin,
    Path(serial): Path<String>,
) -> ApiResult<Json<CommandList>> {
    Ok(Json(s.command_log(&admin, &serial).await?))
}

/// The device's pending signed commands.
#[utoipa::path(get, path = "/v1/commands", tag = "device", security(("device" = [])),
    responses((status = 200, body = PendingCommands)))]
pub(crate) async fn pending_commands(
    State(s): S,
    dev: DeviceSession,
) -> ApiResult<Json<PendingCommands>> {
    Ok(Json(s.pending_commands(&dev).await?))
}

/// A chip-signed receipt for a command.
#[utoipa::path(post, path = "/v1/commands/{seq}/receipt", tag = "device",
    security(("device" = [])),
    params(("seq" = i64, Path, description = "The command's sequence")),
    request_body = ReceiptRequest, responses((status = 200, body = ReceiptRecorded)))]
pub(crate) async fn receipt(
    State(s): S,
    dev: DeviceSession,
    Path(seq): Path<i64>,
    Body(r): Body<ReceiptRequest>,
) -> ApiResult<Json<ReceiptRecorded>> {
    Ok(Json(s.record_receipt(&dev, seq, &r).await?))
}

/// Publishes a signed release: the image as the body, its manifest (compact JSON) in the
/// `sesame-manifest` header.
#[utoipa::path(post, path = "/v1/admin/firmware", tag = "operator", security(("admin" = [])),
    params(("sesame-manifest" = String, Header, description = "The signed manifest, compact JSON")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = FirmwarePublished)))]
pub(crate) async fn publish_firmware(
    State(s): S,
    admin: Admin,
    h: HeaderMap,
    image: Bytes,
) -> ApiResult<(StatusCode, Json<FirmwarePublished>)> {
    let manifest = h.get(MANIFEST_HEADER).and_then(|v| v.to_str().ok());
    let p = s.publish_firmware(&admin, manifest, &image).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// The newest release's manifest.
#[utoipa::path(get, path = "/v1/firmware/latest", tag = "device", security(("device" = [])),
    responses((status = 200, body = Manifest)))]
pub(crate) async fn latest_firmware(State(s): S, dev: DeviceSession) -> ApiResult<Json<Manifest>> {
    Ok(Json(s.latest_firmware(&dev).await?))
}

/// A release's image, with its manifest in the `sesame-manifest` header.
#[utoipa::path(get, path = "/v1/firmware/{version}", tag = "device", security(("device" = [])),
    params(("version" = i64, Path, description = "Release version")),
    responses((status = 200, description = "The image",
        content_type = "application/octet-stream", body = Vec<u8>,
        headers(("sesame-manifest" = String, description = "The signed manifest, compact JSON")))))]
pub(crate) async fn firmware_image(
    State(s): S,
    dev: DeviceSession,
    Path(version): Path<i64>,
) -> ApiResult<axum::response::Response> {
    let (manifest, image) = s.firmware_image(&dev, version).await?;
    Ok((
        [
            ("content-type", "application/octet-stream".to_string()),
            (MANIFEST_HEADER, manifest),
        ],
        image,
    )
        .into_response())
}

/// A chip-signed usage report.
#[utoipa::path(post, path = "/v1/usage", tag = "device", security(("device" = [])),
    request_body = UsageRequest, responses((status = 200, body = UsageRecorded)))]
pub(crate) async fn usage(
    State(s): S,
    dev: DeviceSession,
    Body(r): Body<UsageRequest>,
) -> ApiResult<Json<UsageRecorded>> {
    Ok(Json(s.report_usage(&dev, &r).await?))
}

/// The remaining uses a device last reported.
#[utoipa::path(get, path = "/v1/admin/devices/{serial}/usage", tag = "operator",
    security(("admin" = [])), params(("serial" = String, Path, description = "Device serial")),
    responses((status = 200, body = UsageReport)))]
pub(crate) async fn admin_usage(
    State(s): S,
    admin: Admin,
    Path(serial): Path<String>,
) -> ApiResult<Json<UsageReport>> {
    Ok(Json(s.usage_report(&admin, &serial).await?))
}
