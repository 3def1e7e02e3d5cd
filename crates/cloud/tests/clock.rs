//! Time and randomness come from the service's injected sources: sessions, challenges and
//! certificates expire on simulated time, and a generator that fails makes a request fail
//! cleanly (a 500 with a JSON body, nothing stored), never a predictable challenge.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::json;
use sesame_chip::CurveName;
use sesame_cloud::clock::{ManualClock, Random, RandomError};
use sesame_pki::KeyAlg;

#[tokio::test]
async fn sessions_and_challenges_expire_on_the_services_clock() {
    let db = sqlite();
    let clock = Arc::new(ManualClock::new());
    let s = cloud_on(&db, clock.clone(), |c| {
        c.session_ttl = 600;
        c.challenge_ttl = 30;
    })
    .await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (st, body) = login(&s, &mut dev).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["expires_at"].as_i64().unwrap(), s.now() + 600);

    // A challenge answered one second before its expiry is good, at its expiry refused.
    let (_, c) = challenge(&s, &dev.cert).await;
    let sig = dev.answer(&c);
    clock.advance(29);
    ok(&respond(&s, &c["challenge_id"], &sig, None).await);
    let (_, c) = challenge(&s, &dev.cert).await;
    let sig = dev.answer(&c);
    clock.advance(30);
    refused(
        &respond(&s, &c["challenge_id"], &sig, None).await,
        StatusCode::UNAUTHORIZED,
        "challenge_expired",
    );

    // The challenge id is the cloud's MAC over the challenge (expiry inside) and the
    // certificate hash: any change to it, including a later expiry, is an unknown challenge.
    let (_, c) = challenge(&s, &dev.cert).await;
    let sig = dev.answer(&c);
    let id = c["challenge_id"].as_str().unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(id).unwrap();
    for i in [0usize, 7, 20, 40, 70, 95] {
        let mut bent = raw.clone();
        bent[i] ^= 1;
        refused(
            &respond(&s, &json!(URL_SAFE_NO_PAD.encode(&bent)), &sig, None).await,
            StatusCode::UNAUTHORIZED,
            "unknown_challenge",
        );
    }
    raw.truncate(64);
    refused(
        &respond(&s, &json!(URL_SAFE_NO_PAD.encode(&raw)), &sig, None).await,
        StatusCode::UNAUTHORIZED,
        "unknown_challenge",
    );
    ok(&respond(&s, &c["challenge_id"], &sig, None).await);

    // The session lives 600 s of the service's time, not of the wall clock.
    assert_eq!(session_status(&s, &token).await, StatusCode::OK);
    clock.advance(600 - 59);
    assert_eq!(session_status(&s, &token).await, StatusCode::UNAUTHORIZED);
}

#[derive(Debug)]
struct Broken;

impl Random for Broken {
    fn fill(&self, _: &mut [u8]) -> Result<(), RandomError> {
        Err(RandomError)
    }
}

#[tokio::test]
async fn a_failing_generator_fails_the_request_and_stores_nothing() {
    let db = sqlite();
    let good = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&good).await;
    let s = sesame_cloud::build_with(
        config(&db.url),
        Arc::new(ManualClock::new()),
        Arc::new(Broken),
    )
    .await
    .unwrap();
    let dev = Device::new(&pki.family, CurveName::P256);
    let (st, body) = challenge(&s, &dev.cert).await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert!(body.get("challenge").is_none(), "{body}");
    assert_eq!(s.store.table_rows("sessions").await.unwrap(), Some(0));
}

#[tokio::test]
async fn a_replayed_response_does_not_use_up_the_devices_logins() {
    let db = sqlite();
    let s = cloud_with(&db, |c| c.max_logins_per_device = 2).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (_, c) = challenge(&s, &dev.cert).await;
    let sig = dev.answer(&c);
    ok(&respond(&s, &c["challenge_id"], &sig, None).await);
    // Someone who captured that response replays it, again and again.
    for _ in 0..5 {
        refused(
            &respond(&s, &c["challenge_id"], &sig, None).await,
            StatusCode::UNAUTHORIZED,
            "unknown_challenge",
        );
    }
    // The device's own next login is its second in the window: allowed.
    ok(&login(&s, &mut dev).await);
    // Its third is over the limit.
    refused(
        &login(&s, &mut dev).await,
        StatusCode::TOO_MANY_REQUESTS,
        "throttled",
    );
}
