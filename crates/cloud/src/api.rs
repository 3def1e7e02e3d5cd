//! HTTP: the device API (challenge, response), the operator API (bearer admin token), health,
//! metrics and the OpenAPI document.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

use crate::error::ApiError;
use crate::service::{now, Refusal, Service};

type S = State<Arc<Service>>;
type ApiResult<T> = Result<T, ApiError>;

/// The whole service as a router (testable without a socket).
pub fn app(service: Arc<Service>) -> Router {
    let limit = service.config.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/v1/auth/challenge", post(challenge))
        .route("/v1/auth/response", post(response))
        .route("/v1/session", get(session))
        .route("/v1/admin/roots", post(add_root))
        .route("/v1/admin/families/code", post(family_code))
        .route("/v1/admin/families", post(add_family).get(families))
        .route("/v1/admin/devices", post(add_device).get(devices))
        .route("/v1/admin/devices/{serial}", get(device))
        .route("/v1/admin/revoke", post(revoke))
        .route("/v1/admin/audit", get(audit))
        .merge(crate::data::routes())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(service)
}

fn body<T>(j: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    j.map(|Json(v)| v).map_err(ApiError::from)
}

/// A certificate given as PEM text or base64 DER.
fn der_of(text: &str) -> ApiResult<Vec<u8>> {
    if text.contains("-----BEGIN") {
        sesame_pki::cert_from_pem(text)
            .map_err(|e| ApiError::bad_request("malformed_request", e.to_string()))
    } else {
        B64.decode(text.trim()).map_err(|_| {
            ApiError::bad_request("malformed_request", "certificate is not valid base64")
        })
    }
}

/// The operator bearer token check.
pub(crate) fn check_admin(s: &Service, headers: &HeaderMap) -> ApiResult<()> {
    admin(s, headers)
}

fn admin(s: &Service, headers: &HeaderMap) -> ApiResult<()> {
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !given.is_empty()
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            given.as_bytes(),
            s.config.admin_token.as_bytes(),
        ))
    {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "operator token required".into(),
        })
    }
}

async fn healthz(State(s): S) -> impl IntoResponse {
    if s.store.healthy().await {
        (StatusCode::OK, Json(json!({ "status": "ok" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "database unavailable" })),
        )
    }
}

async fn metrics(State(s): S) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

#[derive(Deserialize)]
struct ChallengeReq {
    certificate: String,
    #[serde(default)]
    #[allow(dead_code)]
    chain: Vec<String>,
}

async fn refuse(s: &Service, r: Refusal, serial: &str, started: Instant) -> ApiError {
    s.metrics.latency(started.elapsed());
    match r {
        Refusal::Store(e) => e.into(),
        Refusal::Auth(reason) => {
            s.metrics.failure(reason);
            tracing::info!(serial, reason = reason.code(), "authentication refused");
            if !serial.is_empty() {
                let _ = s
                    .store
                    .bump(&format!("fail:{serial}"), now(), s.config.rate_window)
                    .await;
            }
            let _ = s.audit(serial, "auth_failure", reason.code(), "").await;
            ApiError::auth(reason)
        }
    }
}

async fn challenge(
    State(s): S,
    j: Result<Json<ChallengeReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let req = body(j)?;
    let der = B64.decode(req.certificate.trim()).map_err(|_| {
        ApiError::bad_request("malformed_request", "certificate is not valid base64")
    })?;
    let serial = sesame_pki::device_identity(&der)
        .map(|i| i.serial)
        .unwrap_or_default();
    match s.challenge(&der).await {
        Ok(c) => {
            s.metrics.latency(started.elapsed());
            Ok(Json(serde_json::to_value(c).unwrap_or_default()))
        }
        Err(r) => Err(refuse(&s, r, &serial, started).await),
    }
}

#[derive(Deserialize)]
struct ResponseReq {
    challenge_id: String,
    signature: String,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    ecdh: Option<crate::service::EcdhOffer>,
}

async fn response(
    State(s): S,
    j: Result<Json<ResponseReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let req = body(j)?;
    let sig = B64
        .decode(req.signature.trim())
        .map_err(|_| ApiError::bad_request("malformed_request", "signature is not valid base64"))?;
    let cert = match &req.certificate {
        Some(c) => Some(B64.decode(c.trim()).map_err(|_| {
            ApiError::bad_request("malformed_request", "certificate is not valid base64")
        })?),
        None => None,
    };
    match s
        .respond(&req.challenge_id, &sig, cert.as_deref(), req.ecdh.as_ref())
        .await
    {
        Ok(session) => {
            s.metrics.success();
            s.metrics.latency(started.elapsed());
            let _ = s.audit(&session.serial, "auth_success", "", "").await;
            Ok(Json(serde_json::to_value(session).unwrap_or_default()))
        }
        Err((r, serial)) => Err(refuse(&s, r, &serial, started).await),
    }
}

async fn session(State(s): S, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    match s.store.session(&hash, now()).await? {
        Some(serial) => Ok(Json(json!({ "serial": serial }))),
        None => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "no valid session".into(),
        }),
    }
}

#[derive(Deserialize)]
struct CertReq {
    certificate: String,
}

async fn add_root(
    State(s): S,
    h: HeaderMap,
    j: Result<Json<CertReq>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    admin(&s, &h)?;
    let der = der_of(&body(j)?.certificate)?;
    let cert = x509_cert::Certificate::from_der_checked(&der)?;
    let fp = sesame_pki::fingerprint(&der);
    let subject = cert.tbs_certificate.subject.to_string();
    let created = s
        .store
        .add_root(&fp, &B64.encode(&der), &subject, now())
        .await?;
    s.audit(&subject, "trust_root", "", &fp).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(json!({ "fingerprint": fp, "subject": subject })),
    ))
}

async fn family_code(State(s): S, h: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let code = hex::encode(s.random(16));
    let expires_at = now() + 600;
    s.store.new_code(&code, expires_at).await?;
    Ok(Json(json!({ "code": code, "expires_at": expires_at })))
}

#[derive(Deserialize)]
struct FamilyReq {
    certificate: String,
    code: String,
    /// DER ECDSA signature of the code's bytes with the family CA key, base64.
    signature: String,
}

async fn add_family(
    State(s): S,
    h: HeaderMap,
    j: Result<Json<FamilyReq>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    admin(&s, &h)?;
    let req = body(j)?;
    let der = der_of(&req.certificate)?;
    let sig = B64
        .decode(req.signature.trim())
        .map_err(|_| ApiError::bad_request("malformed_request", "signature is not valid base64"))?;
    let cert = x509_cert::Certificate::from_der_checked(&der)?;
    let name = sesame_pki::device_identity(&der)
        .map(|i| i.serial)
        .unwrap_or_else(|_| cert.tbs_certificate.subject.to_string());
    let roots = s.store.roots().await?;
    let root = roots
        .iter()
        .find(|r| {
            B64.decode(&r.der)
                .is_ok_and(|rd| sesame_pki::verify_ca_issued_by(&der, &rd).is_ok())
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "untrusted_family",
                "the family certificate is not a CA signed by a trusted root",
            )
        })?;
    if !s.store.take_code(&req.code, now()).await? {
        return Err(ApiError::bad_request(
            "bad_code",
            "unknown, used or expired verification code",
        ));
    }
    let key = sesame_pki::device_identity(&der)
        .map(|i| i.public_key)
        .unwrap_or_default();
    let alg: &dyn ring::signature::VerificationAlgorithm = if key.len() == 97 {
        &ring::signature::ECDSA_P384_SHA384_ASN1
    } else {
        &ring::signature::ECDSA_P256_SHA256_ASN1
    };
    if ring::signature::UnparsedPublicKey::new(alg, &key)
        .verify(req.code.as_bytes(), &sig)
        .is_err()
    {
        let _ = s
            .audit(&name, "enroll_family_refused", "proof_of_possession", "")
            .await;
        return Err(ApiError::bad_request(
            "proof_of_possession",
            "the signature of the code does not verify with the family key",
        ));
    }
    let fp = sesame_pki::fingerprint(&der);
    let row = crate::store::FamilyRow {
        fingerprint: fp.clone(),
        name: name.clone(),
        root: root.fingerprint.clone(),
        revoked: false,
        der: B64.encode(&der),
    };
    let created = s.store.add_family(&row, now()).await?;
    s.audit(&name, "enroll_family", "", &fp).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(json!({ "fingerprint": fp, "name": name })),
    ))
}

async fn families(State(s): S, h: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    Ok(Json(json!({ "families": s.store.families().await? })))
}

async fn add_device(
    State(s): S,
    h: HeaderMap,
    j: Result<Json<CertReq>, JsonRejection>,
) -> ApiResult<impl IntoResponse> {
    admin(&s, &h)?;
    let der = der_of(&body(j)?.certificate)?;
    let id = sesame_pki::device_identity(&der)
        .map_err(|e| ApiError::bad_request("malformed_certificate", e.to_string()))?;
    let fp = sesame_pki::fingerprint(&der);
    let created = s
        .store
        .enroll_device(&fp, &id.serial, &B64.encode(&der), now())
        .await?;
    s.audit(&id.serial, "enroll_device", "", &fp).await?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(json!({ "fingerprint": fp, "serial": id.serial })),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn devices(State(s): S, h: HeaderMap, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    Ok(Json(
        json!({ "devices": s.store.devices(None, q.limit.unwrap_or(1000).clamp(1, 100_000)).await? }),
    ))
}

async fn device(State(s): S, h: HeaderMap, Path(serial): Path<String>) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let d = s.store.devices(Some(&serial), 1).await?;
    if d.is_empty() {
        return Err(ApiError::not_found(format!("no device {serial}")));
    }
    Ok(Json(json!({ "serial": serial, "certificates": d })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeReq {
    serial: Option<String>,
    fingerprint: Option<String>,
    family: Option<String>,
}

async fn revoke(
    State(s): S,
    h: HeaderMap,
    j: Result<Json<RevokeReq>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let r = body(j)?;
    let t = now();
    let (target, what) = match (r.serial, r.fingerprint, r.family) {
        (Some(v), None, None) => {
            s.store.revoke(&format!("serial:{v}"), t).await?;
            (v, "revoke_device")
        }
        (None, Some(v), None) => {
            s.store.revoke(&format!("fp:{v}"), t).await?;
            (v, "revoke_device")
        }
        (None, None, Some(v)) => {
            if s.store.revoke_family(&v).await? == 0 {
                return Err(ApiError::not_found(format!("no family {v}")));
            }
            (v, "revoke_family")
        }
        _ => {
            return Err(ApiError::bad_request(
                "malformed_request",
                "give exactly one of serial, fingerprint, family",
            ))
        }
    };
    s.audit(&target, what, "", "").await?;
    Ok(Json(json!({ "revoked": target })))
}

#[derive(Deserialize)]
struct AuditQuery {
    serial: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<i64>,
}

async fn audit(State(s): S, h: HeaderMap, Query(q): Query<AuditQuery>) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let rows = s
        .store
        .audit_log(
            q.serial.as_deref(),
            q.since.unwrap_or(0),
            q.until.unwrap_or(i64::MAX),
            q.limit.unwrap_or(1000).clamp(1, 100_000),
        )
        .await?;
    Ok(Json(json!({ "events": rows })))
}

/// Parses DER strictly for the operator API.
trait FromDerChecked: Sized {
    fn from_der_checked(der: &[u8]) -> ApiResult<Self>;
}

impl FromDerChecked for x509_cert::Certificate {
    fn from_der_checked(der: &[u8]) -> ApiResult<Self> {
        use x509_cert::der::Decode;
        x509_cert::Certificate::from_der(der)
            .map_err(|e| ApiError::bad_request("malformed_certificate", e.to_string()))
    }
}
