//! `POST /v1/admin/batches`: imports a factory batch whose manifest is signed by a factory key
//! the operator trusts (see `sesame_pki::batch_sig`). The signature, the manifest's count and
//! digest are checked before anything is written; the batch is then recorded and its devices
//! pre-registered (bound to the family) in one transaction. The same batch imported again is a
//! no-op; a batch id reused with another manifest, or a serial that another batch already
//! brought, is refused (a replayed or re-signed old batch).
//!
//! Also `GET /v1/admin/expiring?days=N`: chips of imported batches whose certificate ends within
//! N days.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use sesame_pki::batch_sig::{verify_batch, BatchRefusal};
use sesame_proto::admin::{
    BatchImportRequest, BatchImported, Expiring, ExpiringDevice, ExpiringQuery,
};
use sha2::Digest;

use crate::access::Admin;
use crate::error::ApiError;
use crate::extract::Body;
use crate::service::Service;
use crate::store_batch::{BatchEntry, BatchRecord, Imported};

type S = State<Arc<Service>>;
type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn routes(s: &Service) -> Router<Arc<Service>> {
    Router::new()
        .route("/v1/admin/batches", post(import))
        .route("/v1/admin/expiring", get(expiring))
        // A batch of 100,000 chips is about 30 MB of manifest: the firmware image limit.
        .layer(DefaultBodyLimit::max(s.config.firmware_limit))
}

type ImportReq = BatchImportRequest;

fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        code,
        message: message.into(),
    }
}

fn of_refusal(r: &BatchRefusal) -> ApiError {
    let code = match r {
        BatchRefusal::WrongKey { .. } => "wrong_factory_key",
        BatchRefusal::BadSignature => "bad_signature",
        BatchRefusal::Truncated { .. } => "truncated_manifest",
        BatchRefusal::Tampered(_) => "tampered_manifest",
        _ => "malformed_manifest",
    };
    refused(StatusCode::UNPROCESSABLE_ENTITY, code, r.to_string())
}

/// A verified batch, ready to store.
struct Verified {
    claims: sesame_pki::batch_sig::BatchClaims,
    factory_key: String,
    entries: Vec<BatchEntry>,
}

/// Everything that needs no database: signature, count, digest, each entry's form.
fn verify(req: &ImportReq) -> ApiResult<Verified> {
    let (claims, lines) = verify_batch(&req.signature, &req.factory_key, req.manifest.as_bytes())
        .map_err(|r| of_refusal(&r))?;
    let factory_key =
        sesame_pki::batch_sig::factory_key_id(&req.factory_key).map_err(|r| of_refusal(&r))?;
    let bad = |m: String| of_refusal(&BatchRefusal::Malformed(m));
    let mut entries = Vec::with_capacity(lines.len());
    for l in lines {
        let serial = sesame_pki::profile::canonical_serial(&l.serial)
            .ok_or_else(|| bad(format!("serial '{}' is not a serial", l.serial)))?;
        let point = hex::decode(&l.public_key)
            .ok()
            .filter(|p| matches!(p.len(), 65 | 97) && p[0] == 4)
            .ok_or_else(|| bad(format!("{serial}: public key is not an uncompressed point")))?;
        let cert_ok = l.cert_sha256.len() == 64 && hex::decode(&l.cert_sha256).is_ok();
        if !cert_ok {
            return Err(bad(format!(
                "{serial}: certificate fingerprint is not SHA-256 hex"
            )));
        }
        entries.push(BatchEntry {
            serial,
            cert_sha256: l.cert_sha256.to_ascii_lowercase(),
            key_id: hex::encode(sha2::Sha256::digest(&point)),
        });
    }
    Ok(Verified {
        claims,
        factory_key,
        entries,
    })
}

/// Imports a factory batch signed by a factory key the operator trusts.
#[utoipa::path(post, path = "/v1/admin/batches", tag = "operator", security(("admin" = [])),
    request_body = BatchImportRequest,
    responses((status = 201, body = BatchImported), (status = 200, description = "Imported before: nothing changed", body = BatchImported)))]
pub(crate) async fn import(
    State(s): S,
    _admin: Admin,
    Body(req): Body<ImportReq>,
) -> ApiResult<(StatusCode, Json<BatchImported>)> {
    let started = std::time::Instant::now();
    // Hashing and parsing 100,000 entries is CPU work: off the async threads.
    let mut v = tokio::task::spawn_blocking(move || verify(&req))
        .await
        .map_err(|_| {
            refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "verification failed",
            )
        })??;
    let c = &v.claims;
    let family = s
        .store
        .families()
        .await?
        .into_iter()
        .find(|f| f.fingerprint == c.family_ca_sha256)
        .ok_or_else(|| {
            refused(
                StatusCode::CONFLICT,
                "unknown_family",
                format!(
                    "the batch's family CA ({}, '{}') is not enrolled; enroll the family first",
                    c.family_ca_sha256, c.family
                ),
            )
        })?;
    if family.revoked {
        return Err(refused(
            StatusCode::CONFLICT,
            "family_revoked",
            format!("family '{}' is revoked", family.name),
        ));
    }
    let record = BatchRecord {
        id: &c.batch_id,
        manifest_sha256: &c.manifest_sha256,
        owner: &family.fingerprint,
        family: &family.name,
        factory_key: &v.factory_key,
        not_after: c.device_not_after,
    };
    let outcome = s
        .store
        .import_batch(&record, &mut v.entries, s.now())
        .await?;
    let ms = started.elapsed().as_millis() as u64;
    let id = v.claims.batch_id.clone();
    match outcome {
        Imported::New { chips, registered } => {
            tracing::info!(batch = %id, chips, registered, ms, "batch imported");
            Ok((
                StatusCode::CREATED,
                Json(BatchImported {
                    batch: id,
                    family: family.name,
                    chips,
                    registered,
                    already_imported: false,
                    ms,
                }),
            ))
        }
        Imported::Again => Ok((
            StatusCode::OK,
            Json(BatchImported {
                batch: id,
                family: family.name,
                chips: v.entries.len() as u64,
                registered: 0,
                already_imported: true,
                ms,
            }),
        )),
        Imported::IdReused => Err(refused(
            StatusCode::CONFLICT,
            "batch_replayed",
            format!("batch {id} was imported before with another manifest"),
        )),
        Imported::SerialInBatch { serial, batch } => Err(refused(
            StatusCode::CONFLICT,
            "batch_replayed",
            format!(
                "serial {serial} was imported with batch {batch}; a batch may not bring it again"
            ),
        )),
        Imported::SerialOwned(serial) => Err(refused(
            StatusCode::CONFLICT,
            "serial_conflict",
            format!("serial {serial} belongs to another family or device"),
        )),
    }
}

/// Device certificates (of imported batches) that end within `days`.
#[utoipa::path(get, path = "/v1/admin/expiring", tag = "operator", security(("admin" = [])),
    params(ExpiringQuery), responses((status = 200, body = Expiring)))]
pub(crate) async fn expiring(
    State(s): S,
    _admin: Admin,
    Query(q): Query<ExpiringQuery>,
) -> ApiResult<Json<Expiring>> {
    if !(0..=36_500).contains(&q.days) {
        return Err(ApiError::bad_request("bad_days", "days is 0 to 36500"));
    }
    let before = s.now().saturating_add(q.days * 86_400);
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    let rows = s.store.expiring(before, limit).await?;
    let total = s.store.expiring_count(before).await?;
    Ok(Json(Expiring {
        days: q.days,
        before,
        total,
        devices: rows
            .into_iter()
            .map(|r| ExpiringDevice {
                serial: r.serial,
                batch: r.batch,
                family: r.family,
                not_after: r.not_after,
            })
            .collect(),
    }))
}

/// Windows the expiry gauge reports, in days (0: already expired).
const EXPIRY_WINDOWS: [i64; 4] = [0, 30, 90, 365];

/// `sesame_device_certificates_expiring{within_days="N"}`: chips of imported batches whose
/// certificate ends within N days. Empty if the database does not answer (the scrape still
/// gets the other metrics).
pub(crate) async fn expiry_metrics(s: &Service) -> String {
    let mut out = String::from(
        "# HELP sesame_device_certificates_expiring Device certificates (of imported batches) that end within the given days (0: already ended).\n# TYPE sesame_device_certificates_expiring gauge\n",
    );
    let t = s.now();
    for days in EXPIRY_WINDOWS {
        match s
            .store
            .expiring_count(t.saturating_add(days * 86_400))
            .await
        {
            Ok(n) => out.push_str(&format!(
                "sesame_device_certificates_expiring{{within_days=\"{days}\"}} {n}\n"
            )),
            Err(_) => return String::new(),
        }
    }
    out
}
