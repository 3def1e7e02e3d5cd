//! Receipts and firmware releases (findings 11 and 12 of the trust review), on SQLite and
//! PostgreSQL: a receipt settles its command once, from a fixed set of outcomes; a release is
//! accepted only if its manifest verifies under the firmware key, travels as bytes, and a refused
//! one spends no version.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use sesame_chip::CurveName;
use sesame_cloud::Service;
use sesame_pki::KeyAlg;
use sha2::Digest;
use tower::ServiceExt;

struct Keys {
    dir: tempfile::TempDir,
    firmware: p256::ecdsa::SigningKey,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let command = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let firmware = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    std::fs::write(
        dir.path().join("command.key.pem"),
        command.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("firmware.pub.pem"),
        firmware
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    Keys { dir, firmware }
}

async fn with_keys(db: &Db, k: &Keys) -> Arc<Service> {
    let p = |n: &str| Some(k.dir.path().join(n).display().to_string());
    cloud_with(db, |c| {
        c.command_key = p("command.key.pem");
        c.firmware_key = p("firmware.pub.pem");
    })
    .await
}

async fn device_call(
    s: &Arc<Service>,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let b = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    raw(
        s,
        b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
            .unwrap(),
    )
    .await
}

/// Finding 11: an empty or free-form status is refused; one receipt per command.
async fn receipts_settle_once(db: Db) {
    let k = keys();
    let s = with_keys(&db, &k).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (_, session) = login(&s, &mut dev).await;
    let token = session["token"].as_str().unwrap().to_string();
    let path = format!("/v1/admin/devices/{}/commands", dev.serial);
    let (st, cmd) = call(
        &s,
        "POST",
        &path,
        Some(json!({ "body": "valve=open" })),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{cmd}");
    let seq = cmd["seq"].as_i64().unwrap();
    let pk = sesame_pki::device_identity(&dev.cert).unwrap().public_key;
    let mut sign = |status: &str| {
        let m =
            sesame_proto::messages::receipt_message("cloud.test", &dev.serial, seq as u64, status);
        B64.encode(dev.sign_digest(&sesame_proto::messages::digest_for_key(&m, &pk).unwrap()))
    };
    let receipt = format!("/v1/commands/{seq}/receipt");
    for bad in ["", "done", "executed:\u{7}bell", "whatever:ok"] {
        let r = device_call(
            &s,
            &token,
            "POST",
            &receipt,
            Some(json!({ "status": bad, "signature": sign(bad) })),
        )
        .await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{bad:?}: {}", r.1);
        assert_eq!(r.1["error"], "bad_receipt_status");
    }
    let good = "executed:opened";
    let r = device_call(
        &s,
        &token,
        "POST",
        &receipt,
        Some(json!({ "status": good, "signature": sign(good) })),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    let again = "failed";
    let r = device_call(
        &s,
        &token,
        "POST",
        &receipt,
        Some(json!({ "status": again, "signature": sign(again) })),
    )
    .await;
    assert_eq!(r.0, StatusCode::CONFLICT, "{}", r.1);
    let (_, list) = call(&s, "GET", &path, None, true).await;
    assert_eq!(list["commands"][0]["receipt"], good);
}

fn manifest(key: &p256::ecdsa::SigningKey, version: u32, image: &[u8]) -> Value {
    use p256::ecdsa::signature::Signer;
    let sha = sha2::Sha256::digest(image);
    let sig: p256::ecdsa::Signature = key.sign(&sesame_proto::messages::firmware_message(
        version,
        &sha,
        image.len() as u64,
    ));
    json!({ "version": version, "sha256": hex::encode(sha), "size": image.len(), "signature": B64.encode(sig.to_bytes()) })
}

async fn publish(s: &Arc<Service>, m: &Value, image: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri("/v1/admin/firmware")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/octet-stream")
        .header("sesame-manifest", m.to_string())
        .body(Body::from(image))
        .unwrap();
    raw(s, req).await
}

/// Finding 12: releases verify before they are accepted; 16 MiB travels as bytes.
async fn releases_verify_and_travel_as_bytes(db: Db) {
    let k = keys();
    let s = with_keys(&db, &k).await;
    let image = b"pump firmware 3".to_vec();
    let stranger = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let forged = manifest(&stranger, 3, &image);
    let r = publish(&s, &forged, image.clone()).await;
    assert_eq!(r.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.1);
    let mut junk = manifest(&k.firmware, 3, &image);
    junk["signature"] = json!("AA==");
    assert_eq!(
        publish(&s, &junk, image.clone()).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let r = publish(
        &s,
        &manifest(&k.firmware, 3, &image),
        b"other bytes".to_vec(),
    )
    .await;
    assert_eq!(r.1["error"], "manifest_mismatch", "{}", r.1);
    // Nothing was spent: version 3 is still free for the genuine release.
    let r = publish(&s, &manifest(&k.firmware, 3, &image), image.clone()).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let r = publish(&s, &manifest(&k.firmware, 3, &image), image.clone()).await;
    assert_eq!(r.0, StatusCode::CONFLICT, "{}", r.1);
    // A 16 MiB image, fetched back byte for byte by a device.
    let big: Vec<u8> = (0..16u32 * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let r = publish(&s, &manifest(&k.firmware, 4, &big), big.clone()).await;
    assert_eq!(r.0, StatusCode::CREATED, "{}", r.1);
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (_, session) = login(&s, &mut dev).await;
    let token = session["token"].as_str().unwrap();
    let (_, latest) = device_call(&s, token, "GET", "/v1/firmware/latest", None).await;
    assert_eq!(latest["version"], 4);
    let req = Request::builder()
        .uri("/v1/firmware/4")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let rsp = sesame_cloud::app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    let got = axum::body::to_bytes(rsp.into_body(), 32 << 20)
        .await
        .unwrap();
    assert_eq!(sha2::Sha256::digest(&got), sha2::Sha256::digest(&big));
    // Over the configured limit: 413, not stored.
    let small = cloud_with(&db, |c| c.firmware_limit = 1024).await;
    let r = publish(&small, &manifest(&k.firmware, 9, &big), big.clone()).await;
    assert_eq!(r.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.1);
}

on_both!(receipts_settle_once, releases_verify_and_travel_as_bytes);
