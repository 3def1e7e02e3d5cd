//! The same suite on SQLite and PostgreSQL: enrollment, the seven steps, and the attack suite
//! (every attack refused with its status and reason, never a 5xx, never a token).
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use serde_json::json;
use sesame_chip::CurveName;
use sesame_pki::{Authority, KeyAlg};

async fn happy_path_and_attacks(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);

    // The seven steps.
    let (st, c) = challenge(&s, &dev.cert).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(
        B64.decode(c["challenge"].as_str().unwrap()).unwrap().len(),
        32
    );
    let sig = dev.answer(&c);
    let (st, ok) = respond(&s, &c["challenge_id"], &sig, Some(&dev.cert.clone())).await;
    assert_eq!(st, StatusCode::OK, "{ok}");
    assert_eq!(ok["serial"], dev.serial);
    let token = ok["token"].as_str().unwrap();
    let req = axum::http::Request::builder()
        .uri("/v1/session")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(raw(&s, req).await.1["serial"], dev.serial);

    // Replayed response.
    refused(
        &respond(&s, &c["challenge_id"], &sig, None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_challenge",
    );
    // Signature from another chip (same family, valid certificate of its own).
    let mut other = Device::new(&pki.family, CurveName::P256);
    let (_, c2) = challenge(&s, &dev.cert).await;
    let forged = other.answer(&json!({ "challenge": c2["challenge"], "identity": c2["identity"] }));
    refused(
        &respond(&s, &c2["challenge_id"], &forged, None).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    // A signature for another cloud identity.
    let (_, c3) = challenge(&s, &dev.cert).await;
    let wrong_id = dev.answer(&json!({ "challenge": c3["challenge"], "identity": "evil.cloud" }));
    refused(
        &respond(&s, &c3["challenge_id"], &wrong_id, None).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    // Certificate swapped between challenge and response.
    let (_, c4) = challenge(&s, &dev.cert).await;
    let sig4 = dev.answer(&c4);
    refused(
        &respond(&s, &c4["challenge_id"], &sig4, Some(&other.cert.clone())).await,
        StatusCode::UNAUTHORIZED,
        "certificate_mismatch",
    );
    // A family never enrolled; a self-signed and a wrong-CA certificate.
    let stranger = Pki::new(KeyAlg::P256);
    let alien = Device::new(&stranger.family, CurveName::P256);
    refused(
        &challenge(&s, &alien.cert).await,
        StatusCode::UNAUTHORIZED,
        "not_enrolled",
    );
    let lone_root = Authority::new_root("x", "self", KeyAlg::P256).unwrap();
    refused(
        &challenge(&s, &lone_root.der).await,
        StatusCode::UNAUTHORIZED,
        "not_end_entity",
    );
    let direct = Device::new(&pki.root, CurveName::P256);
    refused(
        &challenge(&s, &direct.cert).await,
        StatusCode::UNAUTHORIZED,
        "not_enrolled",
    );
    // Truncated and malformed DER; malformed base64 and JSON.
    refused(
        &challenge(&s, &dev.cert[..dev.cert.len() / 2]).await,
        StatusCode::UNAUTHORIZED,
        "malformed_certificate",
    );
    refused(
        &challenge(&s, b"not a certificate").await,
        StatusCode::UNAUTHORIZED,
        "malformed_certificate",
    );
    refused(
        &call(
            &s,
            "POST",
            "/v1/auth/challenge",
            Some(json!({ "certificate": "***" })),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
    refused(
        &call(
            &s,
            "POST",
            "/v1/auth/challenge",
            Some(json!({ "cert": "x" })),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
    refused(
        &call(
            &s,
            "POST",
            "/v1/auth/response",
            Some(json!({ "challenge_id": "x", "signature": "%%" })),
            false,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
    // Over the size limit.
    let big = json!({ "certificate": "A".repeat(200_000) });
    refused(
        &call(&s, "POST", "/v1/auth/challenge", Some(big), false).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    // Revocation of the device, then of the family: effective on the next request, including
    // between challenge and response.
    let mut dev2 = Device::new(&pki.family, CurveName::P256);
    assert_eq!(login(&s, &mut dev2).await.0, StatusCode::OK);
    let (_, c5) = challenge(&s, &dev2.cert).await;
    let sig5 = dev2.answer(&c5);
    assert!(call(
        &s,
        "POST",
        "/v1/admin/revoke",
        Some(json!({ "serial": dev2.serial })),
        true
    )
    .await
    .0
    .is_success());
    refused(
        &respond(&s, &c5["challenge_id"], &sig5, None).await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
    refused(
        &challenge(&s, &dev2.cert).await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
    // A fingerprint as openssl prints it (upper case, colons) names the certificate the device
    // logged in with; its key and certificate are revoked.
    assert_eq!(login(&s, &mut other).await.0, StatusCode::OK);
    let fp = sesame_pki::fingerprint(&other.cert)
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert!(call(
        &s,
        "POST",
        "/v1/admin/revoke",
        Some(json!({ "fingerprint": fp })),
        true
    )
    .await
    .0
    .is_success());
    refused(
        &login(&s, &mut other).await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
    assert!(call(
        &s,
        "POST",
        "/v1/admin/revoke",
        Some(json!({ "family": "cameras" })),
        true
    )
    .await
    .0
    .is_success());
    refused(
        &login(&s, &mut dev).await,
        StatusCode::UNAUTHORIZED,
        "family_revoked",
    );

    // The audit log has every decision for the device, queryable by time.
    let (_, log) = call(
        &s,
        "GET",
        &format!("/v1/admin/audit?serial={}", dev2.serial),
        None,
        true,
    )
    .await;
    let events: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"auth_success")
            && events.contains(&"revoke_device")
            && events.contains(&"auth_failure"),
        "{events:?}"
    );
    let (_, later) = call(
        &s,
        "GET",
        &format!(
            "/v1/admin/audit?serial={}&since={}",
            dev2.serial,
            i64::MAX - 1
        ),
        None,
        true,
    )
    .await;
    assert!(later["events"].as_array().unwrap().is_empty());
    // Operator API needs the token.
    assert_eq!(
        call(&s, "GET", "/v1/admin/devices", None, false).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, list) = call(&s, "GET", "/v1/admin/devices", None, true).await;
    assert!(list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["serial"] == dev2.serial && d["revoked"] == true));
    let metrics = raw(
        &s,
        axum::http::Request::builder()
            .uri("/metrics")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .1;
    let text = metrics["text"].as_str().unwrap();
    assert!(
        text.contains("sesame_auth_success_total 3")
            && text.contains("reason=\"bad_signature\"} 2"),
        "{text}"
    );
}

async fn p384_and_single_device(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P384);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P384);
    assert_eq!(login(&s, &mut dev).await.0, StatusCode::OK);
    // A P-384 certificate answered with a P-256-size signature.
    let (_, c) = challenge(&s, &dev.cert).await;
    let mut p256 = Device::new(&pki.family, CurveName::P256);
    let sig = p256.sign_digest(&[1; 32]);
    refused(
        &respond(&s, &c["challenge_id"], &sig, None).await,
        StatusCode::UNAUTHORIZED,
        "bad_signature",
    );
    // One device enrolled by its own (self-signed) certificate, without any family.
    let lone = Pki::new(KeyAlg::P256);
    let mut single = Device::new(&lone.root, CurveName::P256);
    refused(
        &login(&s, &mut single).await,
        StatusCode::UNAUTHORIZED,
        "not_enrolled",
    );
    let (st, _) = call(
        &s,
        "POST",
        "/v1/admin/devices",
        Some(json!({ "certificate": B64.encode(&single.cert) })),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(login(&s, &mut single).await.0, StatusCode::OK);
    // Family enrollment needs a trusted root and a proof of possession.
    let untrusted = Pki::new(KeyAlg::P256);
    let (st, body) = enroll_family(&s, &untrusted.family).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("untrusted_family"))
    );
    let (_, code) = call(&s, "POST", "/v1/admin/families/code", None, true).await;
    let wrong = sign_der(
        &pki.root.key_pem(),
        code["code"].as_str().unwrap().as_bytes(),
    );
    let r = call(&s, "POST", "/v1/admin/families", Some(json!({ "certificate": B64.encode(&pki.family.der), "code": code["code"], "signature": B64.encode(wrong) })), true).await;
    assert_eq!(r.1["error"], "proof_of_possession", "{}", r.1);
    let r = call(&s, "POST", "/v1/admin/families", Some(json!({ "certificate": B64.encode(&pki.family.der), "code": code["code"], "signature": "AAAA" })), true).await;
    assert_eq!(r.1["error"], "bad_code", "a code is single-use: {}", r.1);
}

async fn expiry_and_floods(db: Db) {
    let clock = Arc::new(sesame_cloud::clock::ManualClock::new());
    let s = cloud_on(&db, clock.clone(), |c| {
        c.challenge_ttl = 1;
        c.max_refusals_per_client = 5;
        c.max_logins_per_device = 3;
    })
    .await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (_, c) = challenge(&s, &dev.cert).await;
    let sig = dev.answer(&c);
    clock.advance(1);
    refused(
        &respond(&s, &c["challenge_id"], &sig, None).await,
        StatusCode::UNAUTHORIZED,
        "challenge_expired",
    );
    // Failures throttle the address they come from (429), never the device they name: the
    // device, from its own address, still logs in.
    let attacker = "198.51.100.7";
    for _ in 0..5 {
        let (_, c) = challenge_from(&s, attacker, &dev.cert).await;
        respond_from(&s, attacker, &c["challenge_id"], &[0u8; 64]).await;
    }
    refused(
        &challenge_from(&s, attacker, &dev.cert).await,
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
    );
    assert_eq!(login(&s, &mut dev).await.0, StatusCode::OK);
    // Verified logins of one device are limited per window.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(login(&s, &mut dev).await.0);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// Two cloud instances on one database: a challenge from one is redeemable exactly once across
/// both, under concurrent attempts. The challenge is not stored: the instance that did not issue
/// it needs the certificate with the response.
async fn two_instances_single_use(db: Db) {
    let a = cloud(&db).await;
    let b = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&a).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (_, c) = challenge(&a, &dev.cert).await;
    let sig = dev.answer(&c);
    refused(
        &respond(&b, &c["challenge_id"], &sig, None).await,
        StatusCode::UNAUTHORIZED,
        "certificate_required",
    );
    for _ in 0..5 {
        let (_, c) = challenge(&a, &dev.cert).await;
        let sig = dev.answer(&c);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let s = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (id, sig, cert) = (c["challenge_id"].clone(), sig.clone(), dev.cert.clone());
            tasks.push(tokio::spawn(async move {
                respond(&s, &id, &sig, Some(&cert)).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            let (st, body) = t.await.unwrap();
            match st {
                StatusCode::OK => ok += 1,
                _ => refused(&(st, body), StatusCode::UNAUTHORIZED, "unknown_challenge"),
            }
        }
        assert_eq!(ok, 1, "exactly one redemption");
    }
}

on_both!(
    happy_path_and_attacks,
    p384_and_single_device,
    expiry_and_floods,
    two_instances_single_use
);
