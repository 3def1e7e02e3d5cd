//! HTTP: the device API (challenge, response), the operator API (bearer admin token), health,
//! metrics and the OpenAPI document.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{Body, Client};
use crate::service::{now, Refusal, Service};
use crate::trust::{cert_target, key_target, serial_target, Standing};

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
        .layer(axum::middleware::from_fn(crate::extract::storable_uri))
        .with_state(service)
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
pub(crate) fn admin(s: &Service, headers: &HeaderMap) -> ApiResult<()> {
    let given = bearer(headers);
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
    let expiring = crate::batch::expiry_metrics(&s).await;
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render() + &expiring,
    )
}

#[derive(Deserialize)]
struct ChallengeReq {
    certificate: String,
    #[serde(default)]
    #[allow(dead_code)]
    chain: Vec<String>,
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::Store(e) => e.into(),
        Refusal::Auth(reason) => ApiError::auth(reason),
    }
}

async fn challenge(
    State(s): S,
    Client(client): Client,
    Body(req): Body<ChallengeReq>,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let der = B64.decode(req.certificate.trim()).map_err(|_| {
        ApiError::bad_request("malformed_request", "certificate is not valid base64")
    })?;
    let r = s.challenge(&der, client).await;
    s.metrics.latency(started.elapsed());
    Ok(Json(
        serde_json::to_value(r.map_err(refusal)?).unwrap_or_default(),
    ))
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
    Client(client): Client,
    Body(req): Body<ResponseReq>,
) -> ApiResult<Json<Value>> {
    let started = Instant::now();
    let sig = B64
        .decode(req.signature.trim())
        .map_err(|_| ApiError::bad_request("malformed_request", "signature is not valid base64"))?;
    let cert = match &req.certificate {
        Some(c) => Some(B64.decode(c.trim()).map_err(|_| {
            ApiError::bad_request("malformed_request", "certificate is not valid base64")
        })?),
        None => None,
    };
    let r = s
        .respond(
            &req.challenge_id,
            &sig,
            cert.as_deref(),
            req.ecdh.as_ref(),
            client,
        )
        .await;
    s.metrics.latency(started.elapsed());
    Ok(Json(
        serde_json::to_value(r.map_err(refusal)?).unwrap_or_default(),
    ))
}

/// A login for a device that authenticated with its certificate in the TLS handshake.
async fn tls_login(
    State(s): S,
    Client(client): Client,
    crate::extract::ClientCert(cert): crate::extract::ClientCert,
) -> ApiResult<Json<Value>> {
    let Some(cert) = cert else {
        return Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "no_client_certificate",
            message: "connect over TLS with the device certificate (mutual TLS)".into(),
        });
    };
    let r = s.tls_login(&cert, client).await;
    Ok(Json(
        serde_json::to_value(r.map_err(refusal)?).unwrap_or_default(),
    ))
}

/// The bearer token of a request (empty if none).
pub(crate) fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
}

/// The device behind a bearer token; refused if the session is unknown or expired (401
/// `unauthorized`), or the device, its certificate, key or family has been revoked since (401
/// `revoked` / `family_revoked`).
pub(crate) async fn session_device(
    s: &Service,
    headers: &HeaderMap,
) -> ApiResult<crate::store_trust::SessionRow> {
    match s.session(bearer(headers)).await? {
        Some(Ok(row)) => Ok(row),
        Some(Err(Standing::FamilyRevoked)) => {
            Err(ApiError::auth(crate::auth::Reason::FamilyRevoked))
        }
        Some(Err(Standing::Revoked)) => Err(ApiError::auth(crate::auth::Reason::Revoked)),
        Some(Err(_)) => Err(ApiError::auth(crate::auth::Reason::NotEnrolled)),
        None => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "no valid session".into(),
        }),
    }
}

async fn session(State(s): S, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let row = session_device(&s, &headers).await?;
    Ok(Json(json!({ "serial": row.serial })))
}

#[derive(Deserialize)]
struct CertReq {
    certificate: String,
}

fn created(new: bool) -> StatusCode {
    if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn add_root(
    State(s): S,
    h: HeaderMap,
    Body(req): Body<CertReq>,
) -> ApiResult<impl IntoResponse> {
    admin(&s, &h)?;
    let der = der_of(&req.certificate)?;
    let cert = x509_cert::Certificate::from_der_checked(&der)?;
    // A root is a self-signed CA: a leaf or a family CA here would trust too much or nothing.
    sesame_pki::verify_ca_issued_by(&der, &der).map_err(|e| {
        ApiError::bad_request(
            "not_a_root",
            format!("a trusted root must be a self-signed CA certificate ({e})"),
        )
    })?;
    let fp = sesame_pki::fingerprint(&der);
    let subject = cert.tbs_certificate.subject.to_string();
    let new = s
        .store
        .add_root(&fp, &B64.encode(&der), &subject, now())
        .await?;
    s.audit("", "trust_root", "", &fp).await?;
    s.trust().await?;
    Ok((
        created(new),
        Json(json!({ "fingerprint": fp, "subject": subject })),
    ))
}

async fn roots(State(s): S, h: HeaderMap) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    Ok(Json(json!({ "roots": s.store.roots().await? })))
}

/// Stops trusting a root: every family under it, and so every device, is refused from the next
/// request on (until the root is trusted again).
async fn untrust_root(
    State(s): S,
    h: HeaderMap,
    Path(fingerprint): Path<String>,
) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let fp = sesame_pki::profile::canonical_hash(&fingerprint).ok_or_else(|| {
        ApiError::bad_request(
            "malformed_request",
            "a root fingerprint is 64 hex digits (colons allowed)",
        )
    })?;
    if !s.store.untrust_root(&fp).await? {
        return Err(ApiError::not_found(format!("no trusted root {fp}")));
    }
    s.audit("", "untrust_root", "", &fp).await?;
    s.trust().await?;
    Ok(Json(json!({ "untrusted": fp })))
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
    Body(req): Body<FamilyReq>,
) -> ApiResult<impl IntoResponse> {
    admin(&s, &h)?;
    let der = der_of(&req.certificate)?;
    let sig = B64
        .decode(req.signature.trim())
        .map_err(|_| ApiError::bad_request("malformed_request", "signature is not valid base64"))?;
    let cert = x509_cert::Certificate::from_der_checked(&der)?;
    if cert.tbs_certificate.issuer == cert.tbs_certificate.subject {
        return Err(ApiError::bad_request(
            "is_root",
            "this is a root (self-signed); enroll the family CA it issued",
        ));
    }
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
            .audit("", "enroll_family_refused", "proof_of_possession", "")
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
    let new = s.store.add_family(&row, now()).await?;
    s.audit("", "enroll_family", "", &format!("{name} {fp}"))
        .await?;
    // This instance's TLS handshakes know the family at once (others within a second).
    s.trust().await?;
    Ok((
        created(new),
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
    Body(req): Body<CertReq>,
) -> ApiResult<impl IntoResponse> {
    admin(&s, &h)?;
    let der = der_of(&req.certificate)?;
    let leaf = sesame_pki::profile::device_leaf(&der)
        .map_err(|e| ApiError::bad_request("bad_profile", e.to_string()))?;
    let cert_id = hex::encode(leaf.cert_id);
    let owner = format!("{}{cert_id}", crate::trust::CERT_OWNER);
    let bind = s
        .store
        .enroll_device(
            &crate::store_trust::Registration {
                serial: &leaf.serial,
                owner: &owner,
                cert_id: &cert_id,
                key_id: &hex::encode(leaf.key_id),
                der_hash: &hex::encode(leaf.der_hash),
                der: &B64.encode(&der),
            },
            now(),
        )
        .await?;
    if bind == crate::store_trust::Bind::Conflict {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "serial_conflict",
            message: format!("serial {} belongs to another device", leaf.serial),
        });
    }
    s.audit(&leaf.serial, "enroll_device", "", &cert_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({ "cert_id": cert_id, "fingerprint": hex::encode(leaf.der_hash), "serial": leaf.serial }),
        ),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

/// Marks each device revoked from the trust state (no query per device).
async fn with_standing(
    s: &Service,
    mut devices: Vec<crate::store::DeviceRow>,
) -> ApiResult<Vec<crate::store::DeviceRow>> {
    let trust = s.trust().await?;
    let t = now() as u64;
    for d in &mut devices {
        d.revoked = trust.standing(&d.serial, &d.cert_id, &d.key_id, &d.owner, t) != Standing::Good;
    }
    Ok(devices)
}

async fn devices(State(s): S, h: HeaderMap, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let rows = s
        .store
        .devices(q.limit.unwrap_or(1000).clamp(1, 100_000))
        .await?;
    Ok(Json(json!({ "devices": with_standing(&s, rows).await? })))
}

pub(crate) fn serial_arg(serial: &str) -> ApiResult<String> {
    sesame_pki::profile::canonical_serial(serial).ok_or_else(|| {
        ApiError::bad_request(
            "bad_serial",
            "a serial is 1 to 64 characters of A-Z 0-9 - . _",
        )
    })
}

async fn device(State(s): S, h: HeaderMap, Path(serial): Path<String>) -> ApiResult<Json<Value>> {
    admin(&s, &h)?;
    let serial = serial_arg(&serial)?;
    let Some(d) = s.store.device(&serial).await? else {
        return Err(ApiError::not_found(format!("no device {serial}")));
    };
    let d = with_standing(&s, vec![d]).await?;
    Ok(Json(json!({ "serial": serial, "certificates": d })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeReq {
    serial: Option<String>,
    fingerprint: Option<String>,
    family: Option<String>,
    certificate: Option<String>,
    /// Revoke a serial the cloud has never seen (a device not yet in the field).
    #[serde(default)]
    pre_revoke: bool,
}

/// What a revocation request names: revocation targets (with a description of each), or a
/// family. Unknown names are a 404; nothing is written for them.
async fn targets(s: &Service, r: RevokeReq) -> ApiResult<Result<Vec<(String, Value)>, String>> {
    let one = |n: usize| n == 1;
    let given = [
        r.serial.is_some(),
        r.fingerprint.is_some(),
        r.family.is_some(),
        r.certificate.is_some(),
    ];
    if !one(given.iter().filter(|g| **g).count()) {
        return Err(ApiError::bad_request(
            "malformed_request",
            "give exactly one of serial, fingerprint, certificate, family",
        ));
    }
    if let Some(f) = r.family {
        return Ok(Err(f.trim().to_string()));
    }
    let mut out = Vec::new();
    if let Some(serial) = r.serial {
        let serial = serial_arg(&serial)?;
        if s.store.device(&serial).await?.is_none() && !r.pre_revoke {
            return Err(ApiError::not_found(format!(
                "no device {serial} has been seen; add \"pre_revoke\": true to revoke it before it is"
            )));
        }
        out.push((
            serial_target(&serial),
            json!({ "kind": "serial", "serial": serial }),
        ));
    }
    if let Some(fp) = r.fingerprint {
        let h = sesame_pki::profile::canonical_hash(&fp).ok_or_else(|| {
            ApiError::bad_request(
                "malformed_request",
                "a fingerprint is 64 hex digits (colons allowed)",
            )
        })?;
        let found = s.store.devices_by_hash(&h).await?;
        if found.is_empty() {
            return Err(ApiError::not_found(format!(
                "no known certificate or key has the fingerprint {h}; give the certificate instead"
            )));
        }
        for d in found {
            out.push((
                cert_target(&d.cert_id),
                json!({ "kind": "certificate", "serial": d.serial, "cert_id": d.cert_id }),
            ));
            out.push((
                key_target(&d.key_id),
                json!({ "kind": "key", "serial": d.serial, "key_id": d.key_id }),
            ));
        }
    }
    if let Some(c) = r.certificate {
        let der = der_of(&c)?;
        let leaf = sesame_pki::profile::device_leaf(&der)
            .map_err(|e| ApiError::bad_request("bad_profile", e.to_string()))?;
        let (cert_id, key_id) = (hex::encode(leaf.cert_id), hex::encode(leaf.key_id));
        out.push((
            cert_target(&cert_id),
            json!({ "kind": "certificate", "serial": leaf.serial, "cert_id": cert_id }),
        ));
        out.push((
            key_target(&key_id),
            json!({ "kind": "key", "serial": leaf.serial, "key_id": key_id }),
        ));
    }
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(Ok(out))
}

async fn revoke(State(s): S, h: HeaderMap, Body(r): Body<RevokeReq>) -> ApiResult<Json<Value>> {
    change_revocation(&s, &h, r, true).await
}

async fn unrevoke(State(s): S, h: HeaderMap, Body(r): Body<RevokeReq>) -> ApiResult<Json<Value>> {
    change_revocation(&s, &h, r, false).await
}

async fn change_revocation(
    s: &Service,
    h: &HeaderMap,
    r: RevokeReq,
    revoke: bool,
) -> ApiResult<Json<Value>> {
    admin(s, h)?;
    let (event, key) = if revoke {
        ("revoke", "revoked")
    } else {
        ("unrevoke", "unrevoked")
    };
    match targets(s, r).await? {
        Err(family) => {
            let rows = s.store.set_family_revoked(&family, revoke).await?;
            // This instance's handshakes see the change at once.
            s.trust().await?;
            if rows.is_empty() {
                return Err(ApiError::not_found(format!("no family {family}")));
            }
            let matched: Vec<Value> = rows
                .iter()
                .map(|f| json!({ "kind": "family", "name": f.name, "fingerprint": f.fingerprint }))
                .collect();
            for f in &rows {
                s.audit(
                    "",
                    &format!("{event}_family"),
                    "",
                    &format!("{} {}", f.name, f.fingerprint),
                )
                .await?;
            }
            Ok(Json(json!({ key: matched })))
        }
        Ok(targets) => {
            let names: Vec<String> = targets.iter().map(|(t, _)| t.clone()).collect();
            if revoke {
                s.store.revoke(&names, now()).await?;
            } else if s.store.unrevoke(&names).await? == 0 {
                return Err(ApiError::not_found("none of these is revoked"));
            }
            s.trust().await?;
            for (t, d) in &targets {
                s.audit(
                    d["serial"].as_str().unwrap_or_default(),
                    &format!("{event}_device"),
                    "",
                    t,
                )
                .await?;
            }
            Ok(Json(
                json!({ key: targets.into_iter().map(|(_, d)| d).collect::<Vec<_>>() }),
            ))
        }
    }
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
    // Refusals aggregated in memory are written first, so the log is current.
    s.flush_audit().await?;
    let serial = q.serial.as_deref().map(serial_arg).transpose()?;
    let rows = s
        .store
        .audit_log(
            serial.as_deref(),
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
