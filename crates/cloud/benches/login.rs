//! What a device login costs the cloud, server side, in one run:
//! - a mutual-TLS 1.3 handshake whose client certificate is checked by the device verifier
//!   (in memory, no sockets; only the server's half is timed);
//! - the HTTP challenge-response login (challenge + response through the router on SQLite;
//!   the device's signing is not timed);
//! - a raw P-256 verification (ring), the floor of any login.
//!
//! Prints µs per login for each and their ratios. Goal: the mTLS handshake costs the server no
//! more than the challenge-response login (PASS/FAIL).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sesame_pki::{Authority, DeviceKey, KeyAlg};
use tower::ServiceExt;

const ADMIN: &str = "bench-admin-token-0123456789";
const N: u32 = 300;

async fn call(s: &Arc<sesame_cloud::Service>, path: &str, body: Value, admin: bool) -> Value {
    let mut b = Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json");
    if admin {
        b = b.header("authorization", format!("Bearer {ADMIN}"));
    }
    let rsp = sesame_cloud::app(s.clone())
        .oneshot(b.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let bytes = axum::body::to_bytes(rsp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

fn sign(key: &p256::ecdsa::SigningKey, msg: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    let s: p256::ecdsa::Signature = key.sign(msg);
    s.to_bytes().to_vec()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.path().join("c.db").display()),
        admin_token: ADMIN.into(),
        identity: "bench.cloud".into(),
        max_logins_per_device: u32::MAX,
        ..Default::default()
    };
    let s = rt.block_on(sesame_cloud::build(cfg)).unwrap();
    let root = Authority::new_root("b", "root", KeyAlg::P256).unwrap();
    let family = root.new_family("b", "bench", KeyAlg::P256).unwrap();
    let device_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let point = device_key.verifying_key().to_encoded_point(false);
    let cert = family
        .issue_device(
            "02BE0001",
            &DeviceKey::from_sec1(point.as_bytes()).unwrap(),
            "b",
            None,
        )
        .unwrap();
    rt.block_on(async {
        call(&s, "/v1/admin/roots", json!({ "certificate": B64.encode(&root.der) }), true).await;
        let code = call(&s, "/v1/admin/families/code", json!({}), true).await["code"]
            .as_str()
            .unwrap()
            .to_string();
        use p256::pkcs8::DecodePrivateKey;
        let fk = p256::ecdsa::SigningKey::from_pkcs8_pem(&family.key_pem()).unwrap();
        let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&fk, code.as_bytes());
        call(&s, "/v1/admin/families", json!({ "certificate": B64.encode(&family.der), "code": code, "signature": B64.encode(sig.to_der().as_bytes()) }), true).await;
        s.trust().await.unwrap();
    });

    // HTTP challenge-response: only the two server calls are timed.
    let mut http = Duration::ZERO;
    rt.block_on(async {
        for _ in 0..N {
            let t = Instant::now();
            let c = call(
                &s,
                "/v1/auth/challenge",
                json!({ "certificate": B64.encode(&cert) }),
                false,
            )
            .await;
            http += t.elapsed();
            let challenge = B64.decode(c["challenge"].as_str().unwrap()).unwrap();
            let sig = sign(
                &device_key,
                &sesame_proto::messages::auth_message("bench.cloud", &challenge, &cert),
            );
            let t = Instant::now();
            let r = call(
                &s,
                "/v1/auth/response",
                json!({ "challenge_id": c["challenge_id"], "signature": B64.encode(sig) }),
                false,
            )
            .await;
            http += t.elapsed();
            assert!(r["token"].is_string(), "{r}");
        }
    });

    // mTLS handshakes in memory: the server's half is timed.
    use p256::pkcs8::EncodePrivateKey;
    let tls = sesame_cloud::mtls::server_handshake_time(
        &s,
        &cert,
        device_key.to_pkcs8_der().unwrap().as_bytes(),
        N,
    )
    .unwrap();

    // The floor: one raw P-256 verification with the cloud's backend.
    let msg = b"sesame bench verify";
    let sig = sign(&device_key, msg);
    let t = Instant::now();
    for _ in 0..N * 10 {
        assert!(sesame_cloud::auth::verify(point.as_bytes(), msg, &sig));
    }
    let verify = t.elapsed() / 10;

    let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(N);
    println!("server-side cost per login ({N} each, one core):");
    println!("  raw P-256 verify (ring)          {:>8.1} µs", us(verify));
    println!(
        "  HTTP challenge-response login    {:>8.1} µs  ({:.1} verifies)",
        us(http),
        us(http) / us(verify)
    );
    println!(
        "  mTLS 1.3 handshake (device cert) {:>8.1} µs  ({:.1} verifies)",
        us(tls),
        us(tls) / us(verify)
    );
    let ratio = us(tls) / us(http);
    println!(
        "  mTLS / HTTP login = {ratio:.2}  goal ≤ 1.00: {}",
        if ratio <= 1.0 { "PASS" } else { "FAIL" }
    );
}
