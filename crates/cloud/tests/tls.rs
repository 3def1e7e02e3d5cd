//! The service over TLS (rustls): an HTTPS client that trusts the server certificate gets
//! answers; a plain-HTTP client gets nothing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

#[test]
fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cp, cert.pem()).unwrap();
    std::fs::write(&kp, key.serialize_pem()).unwrap();
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.path().join("c.db").display()),
        admin_token: "tls-test-admin-token".into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = sesame_cloud::tls_config(&cp, &kp).unwrap();
    let server = rt.spawn(async move {
        let service = sesame_cloud::build(cfg).await.unwrap();
        sesame_cloud::serve_tls(service, listener, tls, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let agent = ureq::AgentBuilder::new().tls_config(Arc::new(tls)).build();
    let mut ok = None;
    for _ in 0..100 {
        match agent
            .get(&format!("https://localhost:{port}/healthz"))
            .call()
        {
            Ok(r) => {
                ok = Some(r.into_json::<serde_json::Value>().unwrap());
                break;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    assert_eq!(ok.unwrap()["status"], "ok");
    assert!(
        ureq::get(&format!("http://localhost:{port}/healthz"))
            .call()
            .is_err(),
        "no plain HTTP on the TLS port"
    );
    stop.send(()).unwrap();
    rt.block_on(server).unwrap();
}
