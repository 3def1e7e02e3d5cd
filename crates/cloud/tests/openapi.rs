//! The OpenAPI document describes every route the service answers, and the health and metrics
//! endpoints answer.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[tokio::test]
async fn openapi_lists_the_routes_and_health_answers() {
    let db = sqlite();
    let s = cloud(&db).await;
    let (st, doc) = call(&s, "GET", "/openapi.json", None, false).await;
    assert!(st.is_success());
    assert_eq!(doc["openapi"], "3.0.3");
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
