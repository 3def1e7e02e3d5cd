//! End to end: the agent's chip signs the TLS 1.3 handshake to the sesame cloud, which checks
//! the zone-0 certificate against its enrolled families and revocations and opens a session
//! with no challenge (`POST /v1/auth/tls`); once the device is revoked, the handshake fails.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rustls::RootCertStore;
use serde_json::{json, Value};
use sesame_agent::mtls;
use sesame_chip::{Bus, BusDevice, ChipConfig, ChipOptions, CurveName, Fab, MemStorage};
use sesame_host::signer::SharedStsafe;
use sesame_host::{NoDelay, Stsafe};
use sesame_pki::{Authority, DeviceKey, KeyAlg};

const ADMIN: &str = "mtls-cloud-admin-token";

/// The device: a chip whose slot 0 key was generated inside it, its certificate from `family`
/// in zone 0.
fn device(family: &Authority, serial: &str) -> SharedStsafe<BusDevice, NoDelay> {
    let mut fab = Fab::new(
        ChipConfig::new([2, 0xab, 0, 0, 0, 0, 0, 0, 1]),
        Box::new(MemStorage::new()),
        ChipOptions::default(),
    )
    .unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap().to_sec1();
    let cert = family
        .issue_device(serial, &DeviceKey::from_sec1(&pk).unwrap(), "t", None)
        .unwrap();
    fab.write_zone(0, 0, &cert).unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    se.init().unwrap();
    SharedStsafe::new(se)
}

/// `POST /v1/auth/tls` over a connection whose handshake the chip signs: the JSON answer, or
/// the transport error.
fn tls_login(
    se: &SharedStsafe<BusDevice, NoDelay>,
    roots: RootCertStore,
    port: u16,
) -> Result<Value, String> {
    let config = mtls::client_config(se, &[], roots).map_err(|e| e.to_string())?;
    let mut s = mtls::connect(Arc::new(config), "localhost", port).map_err(|e| e.to_string())?;
    s.write_all(b"POST /v1/auth/tls HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    if !text.starts_with("HTTP/1.1 200") {
        return Err(text);
    }
    Ok(serde_json::from_str(body).unwrap())
}

#[test]
fn the_chip_signs_the_handshake_to_the_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cp, server.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.path().join("c.db").display()),
        admin_token: ADMIN.into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = sesame_cloud::tls_config(&cp, &kp).unwrap();
    rt.spawn(async move {
        let service = sesame_cloud::build(cfg).await.unwrap();
        sesame_cloud::serve_tls(service, listener, tls, std::future::pending())
            .await
            .unwrap();
    });
    let mut roots = RootCertStore::empty();
    roots.add(server.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let http = ureq::AgentBuilder::new()
        .tls_config(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth(),
        ))
        .build();
    let admin = |path: &str, body: Value| -> Value {
        for _ in 0..200 {
            match http
                .post(&format!("https://localhost:{port}{path}"))
                .set("authorization", &format!("Bearer {ADMIN}"))
                .send_json(body.clone())
            {
                Ok(r) => return r.into_json().unwrap(),
                Err(ureq::Error::Status(s, r)) => panic!("{s} {}", r.into_string().unwrap()),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(25)),
            }
        }
        panic!("the cloud did not come up")
    };
    let root = Authority::new_root("t", "root", KeyAlg::P256).unwrap();
    let family = root.new_family("t", "pumps", KeyAlg::P256).unwrap();
    admin(
        "/v1/admin/roots",
        json!({ "certificate": B64.encode(&root.der) }),
    );
    let code = admin("/v1/admin/families/code", json!({}))["code"]
        .as_str()
        .unwrap()
        .to_string();
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    let fk = p256::ecdsa::SigningKey::from_pkcs8_pem(&family.key_pem()).unwrap();
    let sig: p256::ecdsa::Signature = fk.sign(code.as_bytes());
    admin(
        "/v1/admin/families",
        json!({ "certificate": B64.encode(&family.der), "code": code, "signature": B64.encode(sig.to_der().as_bytes()) }),
    );

    let se = device(&family, "02AB00C1");
    let session = tls_login(&se, roots.clone(), port).unwrap();
    assert_eq!(session["serial"], "02AB00C1");
    assert!(session["token"].is_string());

    admin("/v1/admin/revoke", json!({ "serial": "02AB00C1" }));
    let refused = tls_login(&se, roots, port).unwrap_err();
    assert!(
        !refused.starts_with("HTTP/1.1"),
        "the handshake itself fails: {refused}"
    );
}
