//! Test fixtures: a PKI, chips that sign through their command interface, and an in-process
//! cloud driven through its router (no socket).
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sesame_chip::{Chip, ChipConfig, ChipOptions, CurveName, Fab, MemStorage};
use sesame_cloud::{auth, Config, Service};
use sesame_pki::{Authority, DeviceKey, KeyAlg};
use sesame_wire::{CommandFrame, Header, Reader, ResponseFrame, Signature};
use tower::ServiceExt;

pub const ADMIN: &str = "test-admin-token-0123456789";

pub fn config(db: &str) -> Config {
    Config {
        db: db.into(),
        admin_token: ADMIN.into(),
        identity: "cloud.test".into(),
        ..Config::default()
    }
}

/// A database URL for this test: a fresh SQLite file, or a fresh schema-less PostgreSQL database.
pub struct Db {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cloud.db").display());
    Db {
        url,
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL database on the server `SESAME_TEST_PG` points to (CI starts one).
pub async fn postgres() -> Option<Db> {
    let base = match std::env::var("SESAME_TEST_PG") {
        Ok(u) => u,
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL suite: set SESAME_TEST_PG"
            );
            eprintln!("SESAME_TEST_PG not set: PostgreSQL suite skipped on this machine");
            return None;
        }
    };
    sqlx::any::install_default_drivers();
    let name = format!("sesame_test_{}", hex::encode(rand_bytes(6)));
    let mut admin = <sqlx::AnyConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = match base.rfind('/') {
        Some(i) if base[..i].contains("://") && i > base.find("://").unwrap() + 2 => {
            format!("{}/{name}", &base[..i])
        }
        _ => format!("{base}/{name}"),
    };
    Some(Db { url, _dir: None })
}

pub fn rand_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut v).unwrap();
    v
}

pub async fn cloud(db: &Db) -> Arc<Service> {
    sesame_cloud::build(config(&db.url)).await.unwrap()
}

/// A cloud on a clock the test moves (expiry without sleeping).
pub async fn cloud_on(
    db: &Db,
    clock: Arc<sesame_cloud::clock::ManualClock>,
    f: impl FnOnce(&mut Config),
) -> Arc<Service> {
    let mut c = config(&db.url);
    f(&mut c);
    sesame_cloud::build_with(
        c,
        clock,
        Arc::new(sesame_cloud::clock::SystemRandom::default()),
    )
    .await
    .unwrap()
}

pub async fn cloud_with(db: &Db, f: impl FnOnce(&mut Config)) -> Arc<Service> {
    let mut c = config(&db.url);
    f(&mut c);
    sesame_cloud::build(c).await.unwrap()
}

/// Asserts a refusal: status, reason code, and no token.
pub fn refused(r: &(StatusCode, Value), status: StatusCode, reason: &str) {
    assert_eq!(r.0, status, "{}", r.1);
    assert_eq!(r.1["error"], reason, "{}", r.1);
    assert!(r.1.get("token").is_none());
}

/// Asserts a 200.
pub fn ok(r: &(StatusCode, Value)) {
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
}

/// A call through the router from a client address.
pub async fn call_from(
    s: &Arc<Service>,
    ip: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    raw(s, req).await
}

pub async fn challenge_from(s: &Arc<Service>, ip: &str, cert: &[u8]) -> (StatusCode, Value) {
    call_from(
        s,
        ip,
        "POST",
        "/v1/auth/challenge",
        json!({ "certificate": B64.encode(cert) }),
    )
    .await
}

pub async fn respond_from(
    s: &Arc<Service>,
    ip: &str,
    id: &Value,
    sig: &[u8],
) -> (StatusCode, Value) {
    call_from(
        s,
        ip,
        "POST",
        "/v1/auth/response",
        json!({ "challenge_id": id, "signature": B64.encode(sig) }),
    )
    .await
}

/// A call through the router: (status, JSON body).
pub async fn call(
    s: &Arc<Service>,
    method: &str,
    path: &str,
    body: Option<Value>,
    admin: bool,
) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(path);
    if admin {
        b = b.header("authorization", format!("Bearer {ADMIN}"));
    }
    let req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    raw(s, req).await
}

pub async fn raw(s: &Arc<Service>, req: Request<Body>) -> (StatusCode, Value) {
    let rsp = sesame_cloud::app(s.clone()).oneshot(req).await.unwrap();
    let status = rsp.status();
    let bytes = axum::body::to_bytes(rsp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({ "text": String::from_utf8_lossy(&bytes) }));
    (status, v)
}

/// A root, a family under it, and the family key for proofs of possession.
pub struct Pki {
    pub root: Authority,
    pub family: Authority,
}

impl Pki {
    pub fn new(alg: KeyAlg) -> Self {
        let root = Authority::new_root("sesame test", "Test Root", alg).unwrap();
        let family = root.new_family("sesame test", "cameras", alg).unwrap();
        Self { root, family }
    }

    /// Trusts the root and enrolls the family with a proof of possession.
    pub async fn enroll(&self, s: &Arc<Service>) {
        let (st, _) = call(
            s,
            "POST",
            "/v1/admin/roots",
            Some(json!({ "certificate": B64.encode(&self.root.der) })),
            true,
        )
        .await;
        assert!(st.is_success(), "{st}");
        enroll_family(s, &self.family).await;
    }
}

pub async fn enroll_family(s: &Arc<Service>, family: &Authority) -> (StatusCode, Value) {
    let (_, code) = call(s, "POST", "/v1/admin/families/code", None, true).await;
    let code = code["code"].as_str().unwrap().to_string();
    let sig = sign_der(&family.key_pem(), code.as_bytes());
    call(s, "POST", "/v1/admin/families", Some(json!({ "certificate": B64.encode(&family.der), "code": code, "signature": B64.encode(sig) })), true).await
}

/// ECDSA (DER) with a PKCS#8 PEM key, P-256 or P-384.
pub fn sign_der(key_pem: &str, msg: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem) {
        let s: p256::ecdsa::Signature = k.sign(msg);
        return s.to_der().as_bytes().to_vec();
    }
    let k = p384::ecdsa::SigningKey::from_pkcs8_pem(key_pem).unwrap();
    let s: p384::ecdsa::Signature = k.sign(msg);
    s.to_der().as_bytes().to_vec()
}

/// A device: a chip with a key generated inside and its certificate.
pub struct Device {
    pub chip: Chip,
    pub cert: Vec<u8>,
    pub serial: String,
}

impl Device {
    pub fn new(issuer: &Authority, curve: CurveName) -> Self {
        Self::with_serial(issuer, curve, &hex::encode_upper(rand_bytes(9)))
    }

    /// A device whose certificate names `serial`.
    pub fn with_serial(issuer: &Authority, curve: CurveName, serial: &str) -> Self {
        let serial = serial.to_string();
        let mut fab = Fab::new(
            ChipConfig::new(rand_bytes(9).try_into().unwrap()),
            Box::new(MemStorage::new()),
            ChipOptions::default(),
        )
        .unwrap();
        let pk = fab.generate_key(0, curve).unwrap();
        let cert = issuer
            .issue_device(
                &serial,
                &DeviceKey::from_sec1(&pk.to_sec1()).unwrap(),
                "sesame test",
                None,
            )
            .unwrap();
        Self {
            chip: fab.finish().unwrap(),
            cert,
            serial,
        }
    }

    /// Generate Signature (slot 0) over a digest, through the chip's frames.
    pub fn sign_digest(&mut self, digest: &[u8]) -> Vec<u8> {
        let req = sesame_wire::Request::GenerateSignature { slot: 0, digest };
        let mut payload = vec![0u8; 64];
        let n = req.encode(&mut payload).unwrap();
        let mut out = vec![0u8; 80];
        let n = CommandFrame {
            header: Header::plain(req.code()),
            payload: &payload[..n],
            cmac: None,
        }
        .encode(&mut out)
        .unwrap();
        let rsp = self.chip.transceive(&out[..n]);
        let r = ResponseFrame::decode(&rsp, false).unwrap();
        let sig = Signature::read(&mut Reader::new(r.data)).unwrap();
        [sig.r, sig.s].concat()
    }

    /// Answers a challenge as a device does.
    pub fn answer(&mut self, challenge: &Value) -> Vec<u8> {
        let c = B64
            .decode(challenge["challenge"].as_str().unwrap())
            .unwrap();
        let identity = challenge["identity"].as_str().unwrap();
        let msg = auth::auth_message(identity, &c, &self.cert);
        let pk = sesame_pki::device_identity(&self.cert).unwrap().public_key;
        let digest = auth::auth_digest(&msg, &pk).unwrap();
        self.sign_digest(&digest)
    }
}

pub async fn challenge(s: &Arc<Service>, cert: &[u8]) -> (StatusCode, Value) {
    call(
        s,
        "POST",
        "/v1/auth/challenge",
        Some(json!({ "certificate": B64.encode(cert) })),
        false,
    )
    .await
}

pub async fn respond(
    s: &Arc<Service>,
    id: &Value,
    sig: &[u8],
    cert: Option<&[u8]>,
) -> (StatusCode, Value) {
    let mut body = json!({ "challenge_id": id, "signature": B64.encode(sig) });
    if let Some(c) = cert {
        body["certificate"] = json!(B64.encode(c));
    }
    call(s, "POST", "/v1/auth/response", Some(body), false).await
}

/// The whole flow; returns the response.
pub async fn login(s: &Arc<Service>, d: &mut Device) -> (StatusCode, Value) {
    let (st, c) = challenge(s, &d.cert).await;
    if !st.is_success() {
        return (st, c);
    }
    let sig = d.answer(&c);
    respond(s, &c["challenge_id"], &sig, Some(&d.cert.clone())).await
}

/// `der` with its TBSCertificate changed by `tweak` and signed again by `ca` (P-256 or P-384):
/// a properly signed certificate with whatever content a careless or hostile CA would put in.
pub fn resign(
    der: &[u8],
    ca: &Authority,
    tweak: impl FnOnce(&mut x509_cert::TbsCertificate),
) -> Vec<u8> {
    use x509_cert::der::{Decode, Encode};
    let mut c = x509_cert::Certificate::from_der(der).unwrap();
    tweak(&mut c.tbs_certificate);
    let tbs = c.tbs_certificate.to_der().unwrap();
    let sig = sign_der(&ca.key_pem(), &tbs);
    c.signature = x509_cert::der::asn1::BitString::from_bytes(&sig).unwrap();
    c.to_der().unwrap()
}

/// The same certificate with its (P-256) ECDSA signature's `s` replaced by `n − s`: still a
/// valid signature, other DER bytes.
pub fn malleate(der: &[u8]) -> Vec<u8> {
    use x509_cert::der::{Decode, Encode};
    let mut c = x509_cert::Certificate::from_der(der).unwrap();
    let sig = p256::ecdsa::Signature::from_der(c.signature.raw_bytes()).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-s).to_bytes()).unwrap();
    c.signature = x509_cert::der::asn1::BitString::from_bytes(flipped.to_der().as_bytes()).unwrap();
    let out = c.to_der().unwrap();
    assert_ne!(out, der);
    out
}

/// Validity from now − 1 day to now + `secs`.
pub fn validity_for(secs: u64) -> x509_cert::time::Validity {
    let now = std::time::SystemTime::now();
    x509_cert::time::Validity {
        not_before: x509_cert::time::Time::try_from(now - std::time::Duration::from_secs(86_400))
            .unwrap(),
        not_after: x509_cert::time::Time::try_from(now + std::time::Duration::from_secs(secs))
            .unwrap(),
    }
}

/// Revokes (or with `un`, unrevokes) as the operator.
pub async fn revoke(s: &Arc<Service>, body: Value) -> (StatusCode, Value) {
    call(s, "POST", "/v1/admin/revoke", Some(body), true).await
}

/// Runs each named async test twice: on a fresh SQLite file and on a fresh PostgreSQL database
/// (skipped only outside CI when `SESAME_TEST_PG` is not set).
#[allow(unused_macros)] // not every test file runs on both databases
macro_rules! on_both {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(super::sqlite()).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { if let Some(db) = super::postgres().await { super::$name(db).await } } )* }
    };
}

/// The status of `GET /v1/session` with `token`.
pub async fn session_status(s: &Arc<Service>, token: &str) -> StatusCode {
    let req = Request::builder()
        .uri("/v1/session")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    raw(s, req).await.0
}

/// Logs in with the telemetry key exchange, as the agent does; returns the token and the key.
pub async fn login_with_key(s: &Arc<Service>, dev: &mut Device) -> (String, [u8; 32]) {
    let (st, c) = challenge(s, &dev.cert).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let ch = B64.decode(c["challenge"].as_str().unwrap()).unwrap();
    let sig = dev.answer(&c);
    let eph = p256::SecretKey::random(&mut rand_core::OsRng);
    let eph_pub = {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        eph.public_key().to_encoded_point(false).as_bytes().to_vec()
    };
    let pk = sesame_pki::device_identity(&dev.cert).unwrap().public_key;
    let m = sesame_proto::messages::ecdh_device_message("cloud.test", &ch, &eph_pub);
    let eph_sig = dev.sign_digest(&sesame_proto::messages::digest_for_key(&m, &pk).unwrap());
    let body = json!({
        "challenge_id": c["challenge_id"], "signature": B64.encode(sig),
        "ecdh": { "public": hex::encode(&eph_pub), "signature": B64.encode(eph_sig) },
    });
    let (st, session) = call(s, "POST", "/v1/auth/response", Some(body), false).await;
    assert_eq!(st, StatusCode::OK, "{session}");
    let cloud = hex::decode(session["ecdh"]["public"].as_str().unwrap()).unwrap();
    let cloud = p256::PublicKey::from_sec1_bytes(&cloud).unwrap();
    let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), cloud.as_affine());
    let key = sesame_proto::messages::telemetry_key(shared.raw_secret_bytes(), &ch, &dev.serial);
    (session["token"].as_str().unwrap().to_string(), key)
}
