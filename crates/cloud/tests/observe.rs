//! Observability: `/metrics` counts what happened (by route template, never by the raw path a
//! stranger chose), and every answer carries a request id that is logged at info level.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

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
use sesame_proto::messages;
use sha2::Digest;
use tower::ServiceExt;

/// A cloud with a command key and a firmware key; returns the firmware signing key.
async fn keyed_cloud(db: &Db) -> (Arc<Service>, p256::ecdsa::SigningKey, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let command = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let firmware = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let cmd = dir.path().join("command.key.pem");
    let fw = dir.path().join("firmware.pub.pem");
    std::fs::write(
        &cmd,
        command.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(
        &fw,
        firmware
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let s = cloud_with(db, |c| {
        c.command_key = Some(cmd.display().to_string());
        c.firmware_key = Some(fw.display().to_string());
    })
    .await;
    (s, firmware, dir)
}

async fn device_call(
    s: &Arc<Service>,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    raw(s, req).await
}

/// One telemetry message, sealed and signed by the chip (`forge` breaks the signature).
fn telemetry(dev: &mut Device, key: &[u8; 32], seq: u64, forge: bool) -> Value {
    let nonce = [7u8; 12];
    let aad = messages::telemetry_aad(&dev.serial, seq, 1_700_000_000);
    let ct = messages::seal_payload(key, &nonce, &aad, b"{\"t\":21}");
    let m = messages::telemetry_message("cloud.test", &dev.serial, seq, 1_700_000_000, &nonce, &ct);
    let pk = sesame_pki::device_identity(&dev.cert).unwrap().public_key;
    let mut sig = dev.sign_digest(&messages::digest_for_key(&m, &pk).unwrap());
    if forge {
        sig[10] ^= 1;
    }
    json!({ "seq": seq, "time": 1_700_000_000, "nonce": B64.encode(nonce),
            "ciphertext": B64.encode(ct), "signature": B64.encode(sig) })
}

async fn scrape(s: &Arc<Service>) -> String {
    let rsp = sesame_cloud::app(s.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    assert!(rsp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let b = axum::body::to_bytes(rsp.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(b.to_vec()).unwrap()
}

/// The value of the sample named exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_routes_outcomes_and_the_data_path() {
    let _ = log();
    let db = sqlite();
    let (s, firmware, _keys) = keyed_cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (token, key) = login_with_key(&s, &mut dev).await;

    // Telemetry: two accepted, one forged, one replayed.
    for (seq, forge, want) in [
        (10, false, StatusCode::OK),
        (11, false, StatusCode::OK),
        (12, true, StatusCode::UNAUTHORIZED),
        (11, false, StatusCode::CONFLICT),
    ] {
        let body = telemetry(&mut dev, &key, seq, forge);
        let r = device_call(&s, &token, "POST", "/v1/telemetry", body).await;
        assert_eq!(r.0, want, "{}", r.1);
    }

    // A command and its receipt.
    let path = format!("/v1/admin/devices/{}/commands", dev.serial);
    let (st, cmd) = call(&s, "POST", &path, Some(json!({ "body": "led=on" })), true).await;
    assert_eq!(st, StatusCode::CREATED, "{cmd}");
    let seq = cmd["seq"].as_u64().unwrap();
    let m = messages::receipt_message("cloud.test", &dev.serial, seq, "executed");
    let pk = sesame_pki::device_identity(&dev.cert).unwrap().public_key;
    let sig = dev.sign_digest(&messages::digest_for_key(&m, &pk).unwrap());
    let body = json!({ "status": "executed", "signature": B64.encode(sig) });
    let r = device_call(
        &s,
        &token,
        "POST",
        &format!("/v1/commands/{seq}/receipt"),
        body,
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);

    // A release, published and fetched.
    let image = b"firmware image v5".to_vec();
    let sha = sha2::Sha256::digest(&image);
    let fsig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(
        &firmware,
        &messages::firmware_message(5, &sha, image.len() as u64),
    );
    let manifest = json!({ "version": 5, "sha256": hex::encode(sha), "size": image.len(),
                           "signature": B64.encode(fsig.to_bytes()) });
    let req = Request::post("/v1/admin/firmware")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("sesame-manifest", manifest.to_string())
        .body(Body::from(image.clone()))
        .unwrap();
    assert_eq!(raw(&s, req).await.0, StatusCode::CREATED);
    let r = device_call(&s, &token, "GET", "/v1/firmware/latest", json!(null)).await;
    assert_eq!(r.1["version"], 5, "{}", r.1);

    // Two unknown serials on one route, and paths no route matches: the attacker's text never
    // becomes a label.
    for serial in ["NOPE-1", "NOPE-2"] {
        let r = call(
            &s,
            "GET",
            &format!("/v1/admin/devices/{serial}"),
            None,
            true,
        )
        .await;
        assert_eq!(r.0, StatusCode::NOT_FOUND);
    }
    for junk in ["/attacker-chosen-1", "/attacker-chosen-2/x"] {
        assert_eq!(call(&s, "GET", junk, None, false).await.0, 404);
    }

    let text = scrape(&s).await;
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));
    assert_eq!(
        v(
            r#"sesame_http_requests_total{method="GET",route="/v1/admin/devices/{serial}",status="404"}"#
        ),
        2.0
    );
    assert_eq!(
        v(r#"sesame_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        2.0
    );
    assert_eq!(
        v(r#"sesame_http_requests_total{method="POST",route="/v1/telemetry",status="200"}"#),
        2.0
    );
    assert_eq!(
        v(r#"sesame_http_request_seconds_count{method="POST",route="/v1/telemetry"}"#),
        4.0
    );
    assert!(
        !text.contains("attacker") && !text.contains("NOPE"),
        "{text}"
    );
    assert_eq!(v("sesame_auth_success_total"), 1.0);
    assert_eq!(
        v(r#"sesame_auth_failure_total{reason="not_enrolled"}"#),
        0.0
    );
    assert_eq!(v("sesame_telemetry_accepted_total"), 2.0);
    assert_eq!(
        v(r#"sesame_telemetry_refused_total{reason="bad_signature"}"#),
        1.0
    );
    assert_eq!(v(r#"sesame_telemetry_refused_total{reason="replay"}"#), 1.0);
    assert_eq!(v("sesame_commands_issued_total"), 1.0);
    assert_eq!(
        v(r#"sesame_command_receipts_total{outcome="executed"}"#),
        1.0
    );
    assert_eq!(v("sesame_firmware_published_total"), 1.0);
    assert_eq!(v(r#"sesame_firmware_fetched_total{what="manifest"}"#), 1.0);
    assert_eq!(v(r#"sesame_store_seconds_count{op="put_telemetry"}"#), 3.0);
    assert_eq!(v(r#"sesame_store_seconds_count{op="put_command"}"#), 1.0);
    let build = format!(
        r#"sesame_build_info{{version="{}",commit=""#,
        env!("CARGO_PKG_VERSION")
    );
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix(&build)?.split('"').next())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "commit label {commit:?}"
    );
    eprintln!("build commit {commit}");
    assert!(text.trim_end().ends_with("# EOF"));
}

/// Log lines written by the code under test, kept in memory.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log (global: `tracing` caches per call site whether anyone listens, so a
/// subscriber set for one thread misses spans another test's thread met first).
fn log() -> Log {
    static LOG: std::sync::OnceLock<Log> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = Log::default();
        let sink = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .init();
        log
    })
    .clone()
}

async fn id_of(s: &Arc<Service>, sent: &[&[u8]]) -> String {
    let mut req = Request::get("/healthz");
    for v in sent {
        req = req.header(
            "x-request-id",
            axum::http::HeaderValue::from_bytes(v).unwrap(),
        );
    }
    let rsp = sesame_cloud::app(s.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(rsp.status(), StatusCode::OK);
    let ids: Vec<_> = rsp.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].to_str().unwrap().to_string()
}

fn made_here(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test]
async fn request_ids_are_echoed_kept_only_if_plain_and_logged() {
    let log = log();
    let db = sqlite();
    let s = cloud(&db).await;

    // None sent: one is made, a new one each time.
    let (a, b) = (id_of(&s, &[]).await, id_of(&s, &[]).await);
    assert!(made_here(&a) && made_here(&b) && a != b, "{a} {b}");
    // A plain one is kept and echoed.
    assert_eq!(id_of(&s, &[b"req-42.trace:7_A"]).await, "req-42.trace:7_A");
    let longest = "x".repeat(sesame_cloud::REQUEST_ID_MAX);
    assert_eq!(id_of(&s, &[longest.as_bytes()]).await, longest);
    // The attacker's: too long, spaces, quotes, tabs, non-ASCII, empty, two of them. Each is
    // replaced, never echoed or logged.
    let too_long = "y".repeat(sesame_cloud::REQUEST_ID_MAX + 1);
    for bad in [
        too_long.as_bytes(),
        b"a b",
        b"forged\" level=ERROR",
        b"tab\there",
        "caf\u{e9}".as_bytes(),
        b"",
    ] {
        let got = id_of(&s, &[bad]).await;
        assert!(made_here(&got), "{bad:?} -> {got}");
    }
    let got = id_of(&s, &[b"one", b"two"]).await;
    assert!(made_here(&got), "{got}");

    // The request log: info level, with the id and the route template.
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("req-42.trace:7_A"))
        .unwrap_or_else(|| panic!("no log line with the id:\n{text}"));
    assert!(
        line.contains("INFO") && line.contains(r#"route="/healthz""#),
        "{line}"
    );
    assert!(line.contains("status=200"), "{line}");
    assert!(
        !text.contains("forged") && !text.contains(&too_long),
        "{text}"
    );
}
