//! The OpenAPI document describes every route the service answers, and the health and metrics
//! endpoints answer.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn openapi_lists_the_routes_and_health_answers() {
    let db = sqlite();
    let s = cloud(&db).await;
    let (st, doc) = call(&s, "GET", "/openapi.json", None, false).await;
    assert!(st.is_success());
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/auth/challenge",
        "/v1/auth/response",
        "/v1/admin/families",
        "/v1/admin/revoke",
        "/v1/admin/audit",
        "/v1/telemetry",
        "/v1/devices/{serial}/telemetry",
        "/v1/commands/{seq}/receipt",
        "/v1/firmware/latest",
        "/v1/usage",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert_eq!(
        call(&s, "GET", "/healthz", None, false).await.1["status"],
        "ok"
    );
    // Unknown routes and data-path calls without a session are refused, not 5xx.
    assert_eq!(call(&s, "GET", "/v1/commands", None, false).await.0, 401);
    assert_eq!(
        call(&s, "GET", "/v1/devices/X/telemetry", None, false)
            .await
            .0,
        401
    );
}

/// The generated document passes `openapi-spec-validator`, an implementation that shares
/// nothing with the generator. CI must have it (`.ci/run` installs it); elsewhere the test
/// says it skipped.
#[tokio::test]
async fn generated_document_passes_openapi_spec_validator() {
    let db = sqlite();
    let s = cloud(&db).await;
    let (st, doc) = call(&s, "GET", "/openapi.json", None, false).await;
    assert!(st.is_success());
    // Every operation says what it answers and who may call it.
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            assert!(op["responses"]["4XX"].is_object(), "{method} {path}");
            let protected = path.starts_with("/v1/admin") || path.starts_with("/v1/devices");
            if protected {
                assert_eq!(op["security"][0]["admin"], json!([]), "{method} {path}");
            }
        }
    }
    assert!(operations >= 31, "{operations} operations");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = match std::process::Command::new("openapi-spec-validator")
        .arg(&file)
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must validate the OpenAPI document: install openapi-spec-validator"
            );
            eprintln!("openapi-spec-validator not installed: validation skipped");
            return;
        }
        Err(e) => panic!("openapi-spec-validator: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the document does not validate:\n{text}"
    );
    assert!(text.contains("OK"), "{text}");
}

/// The validator is not a rubber stamp: the document as it was written by hand before
/// (`required: []`, a path parameter not declared) fails it.
#[test]
fn the_validator_refuses_a_broken_document() {
    let broken = json!({
        "openapi": "3.0.3",
        "info": { "title": "t", "version": "1" },
        "paths": { "/v1/admin/devices/{serial}": { "get": { "responses": { "200": {
            "description": "ok",
            "content": { "application/json": { "schema": { "type": "object", "required": [] } } }
        } } } } }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, broken.to_string()).unwrap();
    match std::process::Command::new("openapi-spec-validator")
        .arg(&file)
        .output()
    {
        Ok(o) => assert!(!o.status.success(), "a broken document passed"),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must have openapi-spec-validator"
            );
            eprintln!("openapi-spec-validator not installed: check skipped");
        }
    }
}

/// Every operation the document lists is public on purpose (a short fixed list) or refuses a
/// caller without the right credential: none, a wrong token, or the other kind of token (a
/// device session on the operator API, the operator token on the device API).
#[tokio::test]
async fn every_protected_operation_refuses_the_wrong_caller() {
    let db = sqlite();
    let s = cloud(&db).await;
    let pki = Pki::new(sesame_pki::KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, sesame_chip::CurveName::P256);
    let (st, session) = login(&s, &mut dev).await;
    assert!(st.is_success(), "{session}");
    let device_token = format!("Bearer {}", session["token"].as_str().unwrap());
    let (_, doc) = call(&s, "GET", "/openapi.json", None, false).await;
    let public = [
        "get /healthz",
        "get /metrics",
        "get /openapi.json",
        "get /v1/info",
        "post /v1/auth/challenge",
        "post /v1/auth/response",
        "post /v1/auth/tls",
    ];
    let (mut open, mut checked) = (Vec::new(), 0);
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(scheme) = op["security"][0].as_object().and_then(|o| o.keys().next()) else {
                open.push(format!("{method} {path}"));
                continue;
            };
            let other = match scheme.as_str() {
                "admin" => device_token.clone(),
                "device" => format!("Bearer {ADMIN}"),
                s => panic!("unknown scheme {s}"),
            };
            let uri = path
                .replace("{serial}", &dev.serial)
                .replace("{seq}", "1")
                .replace("{version}", "1")
                .replace("{fingerprint}", &"ab".repeat(32));
            for auth in [None, Some("Bearer not-a-token".to_string()), Some(other)] {
                let mut req = axum::http::Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .header("content-type", "application/json");
                if let Some(a) = &auth {
                    req = req.header("authorization", a);
                }
                let r = raw(&s, req.body(axum::body::Body::from("{}")).unwrap()).await;
                assert_eq!(r.0, 401, "{method} {uri} with {auth:?}: {}", r.1);
                assert_eq!(r.1["error"], "unauthorized", "{method} {uri}: {}", r.1);
            }
            checked += 1;
        }
    }
    open.sort();
    let mut want: Vec<String> = public.iter().map(|p| p.to_string()).collect();
    want.sort();
    assert_eq!(open, want, "operations without authentication");
    assert!(checked >= 25, "{checked} protected operations");
}
