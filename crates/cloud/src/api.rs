//! HTTP: the device login API, the operator API (bearer admin token), health, metrics and the
//! OpenAPI document. Handlers only extract, call the service and encode; who may call what is
//! decided by the [`Admin`] and [`DeviceSession`] extractors.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use sesame_proto::admin::{
    AuditLog, AuditQuery, CertificateRequest, DeviceDetail, DeviceEnrolled, DeviceList, Enrolled,
    FamilyCode, FamilyList, FamilyRequest, ListQuery, Revocation, RevokeRequest, RootList,
    Untrusted,
};
use sesame_proto::auth::{ChallengeRequest, ResponseRequest, Session, SessionInfo};
use sesame_proto::{auth::Challenge, Health};

use crate::access::{Admin, DeviceSession};
use crate::error::ApiError;
use crate::extract::{Body, Client, ClientCert};
use crate::service::{Refusal, Service};

type S = State<Arc<Service>>;
type ApiResult<T> = Result<T, ApiError>;

/// The whole service as a router (testable without a socket).
pub fn app(service: Arc<Service>) -> Router {
    let limit = service.config.body_limit;
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/info", get(crate::info::handler))
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/response", post(response))
        .route("/v1/auth/tls", post(tls_login))
        .route("/v1/session", get(session))
        .route("/v1/admin/roots", post(add_root).get(roots))
        .route(
            "/v1/admin/roots/{fingerprint}",
            axum::routing::delete(untrust_root),
        )
        .route("/v1/admin/families/code", post(family_code))
        .route("/v1/admin/families", post(add_family).get(families))
        .route("/v1/admin/devices", post(add_device).get(devices))
        .route("/v1/admin/devices/{serial}", get(device))
        .route("/v1/admin/revoke", post(revoke))
        .route("/v1/admin/unrevoke", post(unrevoke))
        .route("/v1/admin/audit", get(audit))
        .layer(DefaultBodyLimit::max(limit))
        .merge(crate::data::routes(&service))
        .merge(crate::batch::routes(&service))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            request_timeout,
        ))
        .layer(axum::middleware::from_fn(crate::extract::storable_uri));
    crate::observe::layers(routes, &service).with_state(service)
}

/// A request that takes longer than the configured timeout (a trickled body, a stalled client)
/// gets 408 and its connection slot back.
async fn request_timeout(
    State(s): S,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let limit = std::time::Duration::from_secs(s.config.request_timeout_secs);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError {
            status: StatusCode::REQUEST_TIMEOUT,
            code: "request_timeout",
            message: format!("the request took over {} s", limit.as_secs()),
        }
        .into_response(),
    }
}

fn created<T>(new: bool, body: T) -> (StatusCode, Json<T>) {
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body))
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Store(e) => e.into(),
        Refusal::Auth(reason) => ApiError::auth(reason),
    }
}

/// Liveness and database health.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub(crate) async fn healthz(State(s): S) -> (StatusCode, Json<Health>) {
    let (status, text) = if s.store.healthy().await {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
    };
    (
        status,
        Json(Health {
            status: text.into(),
        }),
    )
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "OpenMetrics text exposition",
        content_type = "application/openmetrics-text", body = String)))]
pub(crate) async fn metrics(State(s): S) -> impl IntoResponse {
    // The expiry gauges come from the database; they go before the exposition's end marker.
    let expiring = crate::batch::expiry_metrics(&s).await;
    let body = s.metrics.render();
    let body = match body.strip_suffix("# EOF\n") {
        Some(head) => format!("{head}{expiring}# EOF\n"),
        None => body + &expiring,
    };
    ([("content-type", crate::metrics::CONTENT_TYPE)], body)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "OpenAPI document", body = Object)))]
pub(crate) async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

/// Steps 1-3: the device certificate in, a challenge out.
#[utoipa::path(post, path = "/v1/auth/challenge", tag = "device",
    request_body = ChallengeRequest, responses((status = 200, body = Challenge)))]
pub(crate) async fn challenge(
    State(s): S,
    Client(client): Client,
    Body(req): Body<ChallengeRequest>,
) -> ApiResult<Json<Challenge>> {
    let started = Instant::now();
    let r = s.challenge(&req.certificate, client).await;
    s.metrics.latency(started.elapsed());
    Ok(Json(r.map_err(refusal)?))
}

/// Steps 5-7: the chip's signature over the challenge message in, a session token out.
#[utoipa::path(post, path = "/v1/auth/response", tag = "device",
    request_body = ResponseRequest, responses((status = 200, body = Session)))]
pub(crate) async fn response(
    State(s): S,
    Client(client): Client,
    Body(req): Body<ResponseRequest>,
) -> ApiResult<Json<Session>> {
    let started = Instant::now();
    let r = s
        .respond(
            &req.challenge_id,
            &req.signature,
            req.certificate.as_deref(),
            req.ecdh.as_ref(),
            client,
        )
        .await;
    s.metrics.latency(started.elapsed());
    Ok(Json(r.map_err(refusal)?))
}

/// A login for a device that authenticated with its certificate in the TLS handshake.
#[utoipa::path(post, path = "/v1/auth/tls", tag = "device",
    responses((status = 200, body = Session)))]
pub(crate) async fn tls_login(
    State(s): S,
    Client(client): Client,
    ClientCert(cert): ClientCert,
) -> ApiResult<Json<Session>> {
    let Some(cert) = cert else {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "no_client_certificate",
            message: "connect over TLS with the device certificate (mutual TLS)".into(),
        });
    };
    Ok(Json(s.tls_login(&cert, client).await.map_err(refusal)?))
}

/// The device behind a session token.
#[utoipa::path(get, path = "/v1/session", tag = "device", security(("device" = [])),
    responses((status = 200, body = SessionInfo)))]
pub(crate) async fn session(dev: DeviceSession) -> Json<SessionInfo> {
    Json(SessionInfo {
        serial: dev.serial().to_string(),
    })
}

/// Trusts a root CA (PEM or base64 DER): 201 if new, 200 if already trusted.
#[utoipa::path(post, path = "/v1/admin/roots", tag = "operator", security(("admin" = [])),
    request_body = CertificateRequest,
    responses((status = 201, body = Enrolled), (status = 200, body = Enrolled)))]
pub(crate) async fn add_root(
    State(s): S,
    admin: Admin,
    Body(req): Body<CertificateRequest>,
) -> ApiResult<(StatusCode, Json<Enrolled>)> {
    let (new, root) = s.trust_root(&admin, &req.certificate).await?;
    Ok(created(new, root))
}

/// The trusted roots.
#[utoipa::path(get, path = "/v1/admin/roots", tag = "operator", security(("admin" = [])),
    responses((status = 200, body = RootList)))]
pub(crate) async fn roots(State(s): S, admin: Admin) -> ApiResult<Json<RootList>> {
    Ok(Json(s.list_roots(&admin).await?))
}

/// Stops trusting a root: its families and their devices are refused from the next request.
#[utoipa::path(delete, path = "/v1/admin/roots/{fingerprint}", tag = "operator",
    security(("admin" = [])),
    params(("fingerprint" = String, Path, description = "SHA-256 of the root, hex (colons allowed)")),
    responses((status = 200, body = Untrusted)))]
pub(crate) async fn untrust_root(
    State(s): S,
    admin: Admin,
    Path(fingerprint): Path<String>,
) -> ApiResult<Json<Untrusted>> {
    Ok(Json(s.untrust_root(&admin, &fingerprint).await?))
}

/// A single-use code to prove possession of a family key.
#[utoipa::path(post, path = "/v1/admin/families/code", tag = "operator",
    security(("admin" = [])), responses((status = 200, body = FamilyCode)))]
pub(crate) async fn family_code(State(s): S, admin: Admin) -> ApiResult<Json<FamilyCode>> {
    Ok(Json(s.family_code(&admin).await?))
}

/// Enrolls a family CA: its certificate, a code, and the code signed by the family key.
#[utoipa::path(post, path = "/v1/admin/families", tag = "operator", security(("admin" = [])),
    request_body = FamilyRequest,
    responses((status = 201, body = Enrolled), (status = 200, body = Enrolled)))]
pub(crate) async fn add_family(
    State(s): S,
    admin: Admin,
    Body(req): Body<FamilyRequest>,
) -> ApiResult<(StatusCode, Json<Enrolled>)> {
    let (new, family) = s.enroll_family(&admin, &req).await?;
    Ok(created(new, family))
}

/// The enrolled families.
#[utoipa::path(get, path = "/v1/admin/families", tag = "operator", security(("admin" = [])),
    responses((status = 200, body = FamilyList)))]
pub(crate) async fn families(State(s): S, admin: Admin) -> ApiResult<Json<FamilyList>> {
    Ok(Json(s.list_families(&admin).await?))
}

/// Enrolls one device on its own certificate.
#[utoipa::path(post, path = "/v1/admin/devices", tag = "operator", security(("admin" = [])),
    request_body = CertificateRequest, responses((status = 201, body = DeviceEnrolled)))]
pub(crate) async fn add_device(
    State(s): S,
    admin: Admin,
    Body(req): Body<CertificateRequest>,
) -> ApiResult<(StatusCode, Json<DeviceEnrolled>)> {
    let d = s.enroll_device(&admin, &req.certificate).await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// The device registry.
#[utoipa::path(get, path = "/v1/admin/devices", tag = "operator", security(("admin" = [])),
    params(ListQuery), responses((status = 200, body = DeviceList)))]
pub(crate) async fn devices(
    State(s): S,
    admin: Admin,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<DeviceList>> {
    Ok(Json(s.list_devices(&admin, q.limit).await?))
}

/// One device.
#[utoipa::path(get, path = "/v1/admin/devices/{serial}", tag = "operator",
    security(("admin" = [])), params(("serial" = String, Path, description = "Device serial")),
    responses((status = 200, body = DeviceDetail)))]
pub(crate) async fn device(
    State(s): S,
    admin: Admin,
    Path(serial): Path<String>,
) -> ApiResult<Json<DeviceDetail>> {
    Ok(Json(s.device_detail(&admin, &serial).await?))
}

/// Revokes a device (serial, fingerprint or certificate) or a family.
#[utoipa::path(post, path = "/v1/admin/revoke", tag = "operator", security(("admin" = [])),
    request_body = RevokeRequest, responses((status = 200, body = Revocation)))]
pub(crate) async fn revoke(
    State(s): S,
    admin: Admin,
    Body(r): Body<RevokeRequest>,
) -> ApiResult<Json<Revocation>> {
    Ok(Json(s.change_revocation(&admin, r, true).await?))
}

/// Undoes a revocation.
#[utoipa::path(post, path = "/v1/admin/unrevoke", tag = "operator", security(("admin" = [])),
    request_body = RevokeRequest, responses((status = 200, body = Revocation)))]
pub(crate) async fn unrevoke(
    State(s): S,
    admin: Admin,
    Body(r): Body<RevokeRequest>,
) -> ApiResult<Json<Revocation>> {
    Ok(Json(s.change_revocation(&admin, r, false).await?))
}

/// The audit log by device and time.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "operator", security(("admin" = [])),
    params(AuditQuery), responses((status = 200, body = AuditLog)))]
pub(crate) async fn audit(
    State(s): S,
    admin: Admin,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<AuditLog>> {
    Ok(Json(s.audit_query(&admin, &q).await?))
}
