//! Signed factory batches: `POST /v1/admin/batches` verifies the factory's signature, the count
//! and the digest before it writes anything, pre-registers the devices, imports a batch once,
//! and refuses a batch that replays serials another batch brought. Also the expiry report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::*;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use sesame_chip::CurveName;
use sesame_cloud::Service;
use sesame_pki::batch_sig::{manifest_sha256, sign_batch, BatchClaims};
use sesame_pki::{fingerprint, ManifestLine};

/// A factory's batch-signing key: (PKCS#8 PEM, SPKI PEM).
fn factory_key() -> (String, String) {
    let sk = p256::SecretKey::random(&mut rand_core::OsRng);
    (
        sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        sk.public_key().to_public_key_pem(LineEnding::LF).unwrap(),
    )
}

fn line_of(d: &Device) -> ManifestLine {
    ManifestLine {
        serial: d.serial.clone(),
        cert_sha256: fingerprint(&d.cert),
        family: "cameras".into(),
        public_key: hex::encode(sesame_pki::device_identity(&d.cert).unwrap().public_key),
    }
}

/// A well-formed entry for a chip that exists only on paper: random serial, fingerprint and
/// 65-byte uncompressed-point encoding (not a point on the curve; the import checks the form,
/// the chip's key is proven at its login).
fn synthetic(i: usize) -> ManifestLine {
    let mut point = vec![4u8];
    point.extend(rand_bytes(64));
    ManifestLine {
        serial: format!("02{:016X}", 0xA000_0000_0000u64 + i as u64),
        cert_sha256: hex::encode(rand_bytes(32)),
        family: "cameras".into(),
        public_key: hex::encode(point),
    }
}

struct Batch {
    manifest: String,
    claims: BatchClaims,
}

fn batch(pki: &Pki, lines: &[ManifestLine], not_after: i64) -> Batch {
    let mut manifest = String::with_capacity(lines.len() * 260);
    for l in lines {
        manifest.push_str(&l.to_json());
        manifest.push('\n');
    }
    let claims = BatchClaims {
        batch_id: hex::encode(rand_bytes(16)),
        family: "cameras".into(),
        family_ca_sha256: fingerprint(&pki.family.der),
        count: lines.len() as u64,
        manifest_sha256: manifest_sha256(manifest.as_bytes()),
        created: sesame_cloud::now(),
        device_not_after: not_after,
    };
    Batch { manifest, claims }
}

const FAR: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

async fn import(
    s: &Arc<Service>,
    manifest: &str,
    claims: &BatchClaims,
    key: &(String, String),
    trusted: &str,
) -> (StatusCode, Value) {
    let jws = sign_batch(claims, &key.0, &key.1).unwrap();
    import_jws(s, manifest, &jws, trusted).await
}

async fn import_jws(
    s: &Arc<Service>,
    manifest: &str,
    jws: &str,
    trusted: &str,
) -> (StatusCode, Value) {
    call(
        s,
        "POST",
        "/v1/admin/batches",
        Some(json!({ "manifest": manifest, "signature": jws, "factory_key": trusted })),
        true,
    )
    .await
}

async fn device_count(s: &Arc<Service>) -> usize {
    let (_, v) = call(s, "GET", "/v1/admin/devices?limit=100000", None, true).await;
    v["devices"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn tampered_truncated_foreign_and_replayed_batches_are_refused_and_write_nothing() {
    refusals(&sqlite()).await;
}

#[tokio::test]
async fn batches_on_postgres() {
    // A fresh database each: both use the same synthetic serials.
    if let Some(db) = postgres().await {
        refusals(&db).await;
    }
    if let Some(db) = postgres().await {
        expiry(&db).await;
    }
}

async fn refusals(db: &Db) {
    let s = cloud(db).await;
    let pki = Pki::new(sesame_pki::KeyAlg::P256);
    pki.enroll(&s).await;
    let key = factory_key();
    let other = factory_key();
    let mut devices: Vec<Device> = (0..3)
        .map(|_| Device::new(&pki.family, CurveName::P256))
        .collect();
    let mut lines: Vec<ManifestLine> = devices.iter().map(line_of).collect();
    lines.extend((0..5).map(synthetic));
    let b = batch(&pki, &lines, FAR);
    let jws = sign_batch(&b.claims, &key.0, &key.1).unwrap();

    // Not an operator: 401.
    let (st, _) = call(
        &s,
        "POST",
        "/v1/admin/batches",
        Some(json!({ "manifest": b.manifest, "signature": jws, "factory_key": key.1 })),
        false,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // One entry changed (its fingerprint).
    let tampered = b
        .manifest
        .replacen(&lines[4].cert_sha256, &hex::encode([0u8; 32]), 1);
    refused(
        &import_jws(&s, &tampered, &jws, &key.1).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "tampered_manifest",
    );
    // The last entry cut off.
    let cut = b
        .manifest
        .lines()
        .take(7)
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let r = import_jws(&s, &cut, &jws, &key.1).await;
    refused(&r, StatusCode::UNPROCESSABLE_ENTITY, "truncated_manifest");
    assert!(
        r.1["message"].as_str().unwrap().contains("7 of the 8"),
        "{}",
        r.1
    );
    // An entry added.
    let added = format!("{}{}\n", b.manifest, synthetic(99).to_json());
    refused(
        &import_jws(&s, &added, &jws, &key.1).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "tampered_manifest",
    );
    // Signed by another factory than the one trusted.
    refused(
        &import_jws(&s, &b.manifest, &jws, &other.1).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong_factory_key",
    );
    // Claims changed after signing (count raised to hide a truncation): the signature breaks.
    let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
    let mut forged = b.claims.clone();
    forged.count = 7;
    forged.manifest_sha256 = manifest_sha256(cut.as_bytes());
    use base64::Engine;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&forged).unwrap());
    refused(
        &import_jws(&s, &cut, &parts.join("."), &key.1).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "bad_signature",
    );
    // Garbage.
    refused(
        &import_jws(&s, &b.manifest, "not.a.jws", &key.1).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "malformed_manifest",
    );
    assert_eq!(device_count(&s).await, 0, "a refused batch wrote devices");

    // The real thing: 8 chips pre-registered.
    let r = import_jws(&s, &b.manifest, &jws, &key.1).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    assert_eq!(r.1["registered"], 8);
    assert_eq!(device_count(&s).await, 8);
    // Again: a no-op.
    let r = import_jws(&s, &b.manifest, &jws, &key.1).await;
    ok(&r);
    assert_eq!(r.1["already_imported"], true);
    // The same batch id with another manifest (re-signed by the factory key): refused.
    let mut other_lines = lines.clone();
    other_lines.push(synthetic(50));
    let mut again = batch(&pki, &other_lines, FAR);
    again.claims.batch_id.clone_from(&b.claims.batch_id);
    refused(
        &import(&s, &again.manifest, &again.claims, &key, &key.1).await,
        StatusCode::CONFLICT,
        "batch_replayed",
    );
    // The old batch replayed under a new id (a new serial added to look new): refused, nothing written.
    let replay = batch(&pki, &other_lines, FAR);
    let r = import(&s, &replay.manifest, &replay.claims, &key, &key.1).await;
    refused(&r, StatusCode::CONFLICT, "batch_replayed");
    assert!(
        r.1["message"]
            .as_str()
            .unwrap()
            .contains(&b.claims.batch_id),
        "{}",
        r.1
    );
    assert_eq!(device_count(&s).await, 8);
    // A serial another family's device holds already.
    let other_pki = Pki::new(sesame_pki::KeyAlg::P256);
    other_pki.enroll(&s).await;
    let mut stranger = Device::new(&other_pki.family, CurveName::P256);
    ok(&login(&s, &mut stranger).await);
    let mut clash = line_of(&stranger);
    clash.family = "cameras".into();
    let c = batch(&pki, &[synthetic(60), clash], FAR);
    refused(
        &import(&s, &c.manifest, &c.claims, &key, &key.1).await,
        StatusCode::CONFLICT,
        "serial_conflict",
    );
    assert_eq!(device_count(&s).await, 9);
    // A family the cloud does not know.
    let unknown = Pki::new(sesame_pki::KeyAlg::P256);
    let u = batch(&unknown, &[synthetic(70)], FAR);
    refused(
        &import(&s, &u.manifest, &u.claims, &key, &key.1).await,
        StatusCode::CONFLICT,
        "unknown_family",
    );

    // A pre-registered device logs in; its registry row gets its certificate.
    let r = login(&s, &mut devices[0]).await;
    ok(&r);
    let (_, v) = call(
        &s,
        "GET",
        &format!("/v1/admin/devices/{}", devices[0].serial),
        None,
        true,
    )
    .await;
    assert_eq!(
        v["certificates"][0]["fingerprint"],
        fingerprint(&devices[0].cert),
        "{v}"
    );
    // A device of another family claiming a pre-registered serial is refused.
    let mut thief = Device::with_serial(&other_pki.family, CurveName::P256, &devices[1].serial);
    let r = login(&s, &mut thief).await;
    refused(&r, StatusCode::UNAUTHORIZED, "serial_conflict");
}

/// 100,000 chips (three real, the rest synthetic but well formed) in one signed manifest.
#[tokio::test]
async fn a_signed_batch_of_100000_chips_imports_once() {
    const N: usize = 100_000;
    let db = sqlite();
    let s = cloud(&db).await;
    let pki = Pki::new(sesame_pki::KeyAlg::P256);
    pki.enroll(&s).await;
    let key = factory_key();
    let mut devices: Vec<Device> = (0..3)
        .map(|_| Device::new(&pki.family, CurveName::P256))
        .collect();
    let mut lines: Vec<ManifestLine> = devices.iter().map(line_of).collect();
    lines.extend((0..N - 3).map(synthetic));
    let b = batch(&pki, &lines, FAR);
    let t = std::time::Instant::now();
    let r = import(&s, &b.manifest, &b.claims, &key, &key.1).await;
    let took = t.elapsed();
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    assert_eq!(r.1["chips"], N);
    assert_eq!(r.1["registered"], N);
    eprintln!(
        "imported a signed manifest of {N} chips ({} MB) in {:.2} s (server side {} ms)",
        b.manifest.len() / (1 << 20),
        took.as_secs_f64(),
        r.1["ms"]
    );
    // Truncated by one line: refused before any write.
    let cut = &b.manifest[..b.manifest[..b.manifest.len() - 1].rfind('\n').unwrap() + 1];
    let r = import(&s, cut, &b.claims, &key, &key.1).await;
    refused(&r, StatusCode::UNPROCESSABLE_ENTITY, "truncated_manifest");
    let r = import(&s, &b.manifest, &b.claims, &key, &key.1).await;
    ok(&r);
    assert_eq!(r.1["already_imported"], true);
    ok(&login(&s, &mut devices[2]).await);
}

/// Devices nearing the end of their certificates: the operator list and the metric.
#[tokio::test]
async fn devices_nearing_expiry_are_reported() {
    expiry(&sqlite()).await;
}

async fn expiry(db: &Db) {
    let s = cloud(db).await;
    let pki = Pki::new(sesame_pki::KeyAlg::P256);
    pki.enroll(&s).await;
    let key = factory_key();
    let day = 86_400;
    let now = sesame_cloud::now();
    // Three batches: ending in 10 days, in 200 days, and in 15 years.
    for (i, end) in [
        (0, now + 10 * day),
        (10, now + 200 * day),
        (20, now + 5479 * day),
    ] {
        let lines: Vec<ManifestLine> = (i..i + 2 + i / 10).map(synthetic).collect();
        let b = batch(&pki, &lines, end);
        let r = import(&s, &b.manifest, &b.claims, &key, &key.1).await;
        assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    }
    let (st, v) = call(&s, "GET", "/v1/admin/expiring?days=30", None, true).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["total"], 2, "{v}");
    let serials: Vec<&str> = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, [synthetic(0).serial, synthetic(1).serial]);
    assert_eq!(v["devices"][0]["family"], "cameras");
    let (_, v) = call(&s, "GET", "/v1/admin/expiring?days=365", None, true).await;
    assert_eq!(v["total"], 5, "{v}");
    let (_, v) = call(&s, "GET", "/v1/admin/expiring?days=0", None, true).await;
    assert_eq!(v["total"], 0, "{v}");
    // Operators only, and a sane window.
    let (st, _) = call(&s, "GET", "/v1/admin/expiring?days=30", None, false).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = call(&s, "GET", "/v1/admin/expiring?days=-1", None, true).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // The gauge.
    let (_, v) = call(&s, "GET", "/metrics", None, false).await;
    let text = v["text"].as_str().unwrap().to_string();
    for (days, n) in [(0, 0), (30, 2), (90, 2), (365, 5)] {
        let line = format!("sesame_device_certificates_expiring{{within_days=\"{days}\"}} {n}\n");
        assert!(text.contains(&line), "{line} not in {text}");
    }
}
