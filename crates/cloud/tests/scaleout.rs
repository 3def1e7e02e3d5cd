//! Three cloud instances on one database, sharing nothing else (each has its own trust snapshot,
//! certificate cache, throttles and challenge key cache): logins, enrollments and revocations
//! interleaved across them, and every change made on one holds on the others by their next
//! request. Runs on PostgreSQL (required under CI) and on one SQLite file.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::Engine;
use common::*;
use serde_json::json;
use sesame_chip::CurveName;
use sesame_cloud::Service;
use sesame_pki::KeyAlg;

/// A login whose challenge comes from `a` and whose response goes to `b` (with the certificate,
/// as devices send it).
async fn login_across(
    a: &Arc<Service>,
    b: &Arc<Service>,
    d: &mut Device,
) -> (StatusCode, serde_json::Value) {
    let (st, c) = challenge(a, &d.cert).await;
    if !st.is_success() {
        return (st, c);
    }
    let sig = d.answer(&c);
    respond(b, &c["challenge_id"], &sig, Some(&d.cert.clone())).await
}

async fn three_instances(db: Db) {
    let n = [cloud(&db).await, cloud(&db).await, cloud(&db).await];
    let pki = Pki::new(KeyAlg::P256);
    // The root is trusted on instance 0, the family enrolled on instance 1 with a code from 2.
    let (st, _) = call(
        &n[0],
        "POST",
        "/v1/admin/roots",
        Some(json!({ "certificate": base64_of(&pki.root.der) })),
        true,
    )
    .await;
    assert!(st.is_success());
    let (_, code) = call(&n[2], "POST", "/v1/admin/families/code", None, true).await;
    let code = code["code"].as_str().unwrap().to_string();
    let sig = sign_der(&pki.family.key_pem(), code.as_bytes());
    let (st, body) = call(&n[1], "POST", "/v1/admin/families", Some(json!({ "certificate": base64_of(&pki.family.der), "code": code, "signature": base64_of(&sig) })), true).await;
    assert!(st.is_success(), "{body}");

    // Devices log in on every instance at once, and across instances.
    let mut devices: Vec<Device> = (0..6)
        .map(|_| Device::new(&pki.family, CurveName::P256))
        .collect();
    for (i, d) in devices.iter_mut().enumerate() {
        ok(&login(&n[i % 3], d).await);
        ok(&login_across(&n[i % 3], &n[(i + 1) % 3], d).await);
    }

    // A session opened on 0 works on 1 and 2.
    let (_, s0) = login(&n[0], &mut devices[0]).await;
    let token = s0["token"].as_str().unwrap().to_string();
    for s in &n {
        assert_eq!(session_status(s, &token).await, StatusCode::OK);
    }

    // Revoked on 2: the next login on 0 and 1 is refused, and so is the open session there.
    let victim = devices[0].serial.clone();
    assert_eq!(
        revoke(&n[2], json!({ "serial": victim })).await.0,
        StatusCode::OK
    );
    for s in &n {
        refused(
            &login(s, &mut devices[0]).await,
            StatusCode::UNAUTHORIZED,
            "revoked",
        );
        assert_eq!(session_status(s, &token).await, StatusCode::UNAUTHORIZED);
    }
    // A challenge issued on 1 before a revocation on 0 is refused at the response on 2.
    let (_, c) = challenge(&n[1], &devices[1].cert).await;
    let sig = devices[1].answer(&c);
    assert_eq!(
        revoke(&n[0], json!({ "serial": devices[1].serial }))
            .await
            .0,
        StatusCode::OK
    );
    refused(
        &respond(
            &n[2],
            &c["challenge_id"],
            &sig,
            Some(&devices[1].cert.clone()),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
    // The others are untouched, everywhere.
    for (i, d) in devices.iter_mut().enumerate().skip(2) {
        ok(&login(&n[i % 3], d).await);
    }

    // Unrevoked on 1: logins on 0 and 2 work again.
    let (st, body) = call(
        &n[1],
        "POST",
        "/v1/admin/unrevoke",
        Some(json!({ "serial": victim })),
        true,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    ok(&login(&n[0], &mut devices[0]).await);
    ok(&login_across(&n[2], &n[0], &mut devices[0]).await);

    // A second family enrolled on 2 is trusted on 0 by the next request.
    let second = pki
        .root
        .new_family("sesame test", "pumps", KeyAlg::P256)
        .unwrap();
    let (st, body) = enroll_family(&n[2], &second).await;
    assert!(st.is_success(), "{body}");
    let mut pump = Device::new(&second, CurveName::P256);
    ok(&login(&n[0], &mut pump).await);
    ok(&login_across(&n[1], &n[2], &mut pump).await);

    // The family revoked on 0: refused on 1 and 2 at once; the first family is untouched.
    let fp = sesame_pki::fingerprint(&second.der);
    assert_eq!(
        revoke(&n[0], json!({ "family": fp })).await.0,
        StatusCode::OK
    );
    for s in &n[1..] {
        refused(
            &login(s, &mut pump).await,
            StatusCode::UNAUTHORIZED,
            "family_revoked",
        );
    }
    ok(&login(&n[1], &mut devices[3]).await);

    // One serial, one owner, whichever instance sees it first: the same serial from the second
    // family is refused on every instance.
    let mut clash = Device::with_serial(&second, CurveName::P256, &devices[4].serial);
    for s in &n {
        let r = login(s, &mut clash).await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{}", r.1);
    }
    ok(&login(&n[2], &mut devices[4]).await);
}

fn base64_of(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

on_both!(three_instances);
