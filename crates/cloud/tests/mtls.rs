//! Mutual TLS: a device whose key signs the TLS 1.3 handshake logs in with no challenge; a clone
//! (genuine certificate, other key), a revoked device and a device of an unenrolled family all
//! fail the handshake itself.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use sesame_pki::{Authority, DeviceKey, KeyAlg};

const ADMIN: &str = "mtls-test-admin-token";

struct Cloud {
    url: String,
    server_ca: CertificateDer<'static>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn cloud() -> Cloud {
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
        admin_token: ADMIN.into(),
        identity: "mtls.test".into(),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = sesame_cloud::tls_config(&cp, &kp).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    rt.spawn(async move {
        let service = sesame_cloud::build(cfg).await.unwrap();
        sesame_cloud::serve_tls(service, listener, tls, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Cloud {
        url: format!("https://localhost:{port}"),
        server_ca: cert.der().clone(),
        stop: Some(stop),
        _rt: rt,
        _dir: dir,
    }
}

/// An HTTPS client, with a client certificate and key when given.
fn client(c: &Cloud, identity: Option<(Vec<u8>, Vec<u8>)>) -> ureq::Agent {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.server_ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let tls = match identity {
        // No consistency check between certificate and key: a clone presents a genuine
        // certificate with a key of its own.
        Some((cert, pkcs8)) => {
            let key = rustls::crypto::ring::sign::any_ecdsa_type(&PrivateKeyDer::Pkcs8(
                PrivatePkcs8KeyDer::from(pkcs8),
            ))
            .unwrap();
            builder.with_client_cert_resolver(Arc::new(Fixed(Arc::new(
                rustls::sign::CertifiedKey::new(vec![CertificateDer::from(cert)], key),
            ))))
        }
        None => builder.with_no_client_auth(),
    };
    ureq::AgentBuilder::new().tls_config(Arc::new(tls)).build()
}

/// Always presents the same certificate and key.
#[derive(Debug)]
struct Fixed(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn admin(c: &Cloud, path: &str, body: Value) -> Value {
    let http = client(c, None);
    let mut last = None;
    // The server may still be starting.
    for _ in 0..200 {
        match http
            .post(&format!("{}{path}", c.url))
            .set("authorization", &format!("Bearer {ADMIN}"))
            .send_json(body.clone())
        {
            Ok(r) => return r.into_json().unwrap(),
            Err(ureq::Error::Status(s, r)) => panic!("{path}: {s} {}", r.into_string().unwrap()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("{path}: {last:?}")
}

fn enroll(c: &Cloud, root: &Authority, family: &Authority) {
    admin(
        c,
        "/v1/admin/roots",
        json!({ "certificate": B64.encode(&root.der) }),
    );
    let code = admin(c, "/v1/admin/families/code", json!({}))["code"]
        .as_str()
        .unwrap()
        .to_string();
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    let k = p256::ecdsa::SigningKey::from_pkcs8_pem(&family.key_pem()).unwrap();
    let s: p256::ecdsa::Signature = k.sign(code.as_bytes());
    admin(
        c,
        "/v1/admin/families",
        json!({ "certificate": B64.encode(&family.der), "code": code, "signature": B64.encode(s.to_der().as_bytes()) }),
    );
}

/// A device: its certificate from `family` and its key (PKCS#8).
fn device(family: &Authority, serial: &str) -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = family
        .issue_device(
            serial,
            &DeviceKey::from_sec1(key.public_key_raw()).unwrap(),
            "t",
            None,
        )
        .unwrap();
    (cert, key.serialize_der())
}

/// `POST /v1/auth/tls` over a connection with this identity: the session, or why not.
fn tls_login(c: &Cloud, id: Option<(Vec<u8>, Vec<u8>)>) -> Result<Value, String> {
    match client(c, id).post(&format!("{}/v1/auth/tls", c.url)).call() {
        Ok(r) => Ok(r.into_json().unwrap()),
        Err(ureq::Error::Status(s, r)) => Err(format!("http {s} {}", r.into_string().unwrap())),
        Err(e) => Err(format!("transport {e}")),
    }
}

#[test]
fn devices_log_in_with_the_handshake_and_strangers_fail_it() {
    let c = cloud();
    let root = Authority::new_root("t", "root", KeyAlg::P256).unwrap();
    let family = root.new_family("t", "pumps", KeyAlg::P256).unwrap();
    enroll(&c, &root, &family);

    // The genuine device: no challenge, a session.
    let good = device(&family, "02AB0001");
    let s = tls_login(&c, Some(good.clone())).unwrap();
    assert_eq!(s["serial"], "02AB0001");
    let me: Value = client(&c, None)
        .get(&format!("{}/v1/session", c.url))
        .set(
            "authorization",
            &format!("Bearer {}", s["token"].as_str().unwrap()),
        )
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(me["serial"], "02AB0001");

    // No client certificate: the connection works, the TLS login does not.
    let e = tls_login(&c, None).unwrap_err();
    assert!(e.contains("no_client_certificate"), "{e}");

    // A clone: the genuine certificate with another key cannot sign the handshake.
    let other = rcgen::KeyPair::generate().unwrap();
    let e = tls_login(&c, Some((good.0.clone(), other.serialize_der()))).unwrap_err();
    assert!(e.starts_with("transport"), "{e}");

    // A device of a family that was never enrolled.
    let stranger = root.new_family("t", "strangers", KeyAlg::P256).unwrap();
    let e = tls_login(&c, Some(device(&stranger, "02AB0002"))).unwrap_err();
    assert!(e.starts_with("transport"), "{e}");

    // Revoked: the handshake fails from then on.
    admin(&c, "/v1/admin/revoke", json!({ "serial": "02AB0001" }));
    let e = tls_login(&c, Some(good.clone())).unwrap_err();
    assert!(e.starts_with("transport"), "{e}");
    admin(&c, "/v1/admin/unrevoke", json!({ "serial": "02AB0001" }));
    tls_login(&c, Some(good)).unwrap();
}
