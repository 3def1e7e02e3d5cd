//! The agent logs in to a real cloud over HTTP, with a chip on an in-process I2C bus.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sesame_agent::{Agent, AgentError, StdDelay};
use sesame_chip::{Bus, ChipConfig, ChipOptions, CurveName, Fab, MemStorage};
use sesame_host::Stsafe;
use sesame_pki::{Authority, DeviceKey, KeyAlg};

const ADMIN: &str = "agent-test-admin-token";

/// Starts a cloud on a loopback port in its own runtime; returns its URL.
fn start_cloud(dir: &std::path::Path) -> String {
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.join("c.db").display()),
        admin_token: ADMIN.into(),
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let service = sesame_cloud::build(cfg).await.unwrap();
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", l.local_addr().unwrap()))
                .unwrap();
            sesame_cloud::serve(service, l, std::future::pending())
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

fn admin(url: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    ureq::post(&format!("{url}{path}"))
        .set("authorization", &format!("Bearer {ADMIN}"))
        .send_json(body)
        .unwrap()
        .into_json()
        .unwrap()
}

fn sign_code(family: &Authority, code: &str) -> String {
    use p256::ecdsa::signature::Signer;
    use p256::pkcs8::DecodePrivateKey;
    let k = p256::ecdsa::SigningKey::from_pkcs8_pem(&family.key_pem()).unwrap();
    let s: p256::ecdsa::Signature = k.sign(code.as_bytes());
    B64.encode(s.to_der().as_bytes())
}

#[test]
fn agent_logs_in_and_is_refused_once_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_cloud(dir.path());
    let root = Authority::new_root("t", "root", KeyAlg::P256).unwrap();
    let family = root.new_family("t", "pumps", KeyAlg::P256).unwrap();
    admin(
        &url,
        "/v1/admin/roots",
        serde_json::json!({ "certificate": B64.encode(&root.der) }),
    );
    let code = admin(&url, "/v1/admin/families/code", serde_json::json!({}))["code"]
        .as_str()
        .unwrap()
        .to_string();
    admin(
        &url,
        "/v1/admin/families",
        serde_json::json!({ "certificate": B64.encode(&family.der), "code": code, "signature": sign_code(&family, &code) }),
    );

    // A chip personalized with a certificate from the family.
    let mut fab = Fab::new(
        ChipConfig::new([2, 1, 2, 3, 4, 5, 6, 7, 8]),
        Box::new(MemStorage::new()),
        ChipOptions::default(),
    )
    .unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap();
    let cert = family
        .issue_device(
            "02010203040506070800",
            &DeviceKey::from_sec1(&pk.to_sec1()).unwrap(),
            "t",
            None,
        )
        .unwrap();
    fab.write_zone(0, 0, &cert).unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();

    let mut agent = Agent::new(Stsafe::new(bus.device(), StdDelay, 0x20), &url).unwrap();
    let serial = agent.login().unwrap().serial.clone();
    assert_eq!(serial, "02010203040506070800");
    let token = agent.session().unwrap().token.clone();
    let who: serde_json::Value = ureq::get(&format!("{url}/v1/session"))
        .set("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(who["serial"], serial.as_str());

    admin(
        &url,
        "/v1/admin/revoke",
        serde_json::json!({ "serial": serial }),
    );
    match agent.login() {
        Err(AgentError::Refused {
            status: 401, code, ..
        }) => assert_eq!(code, "revoked"),
        other => panic!(
            "expected a refusal, got {:?}",
            other.map(|s| s.serial.clone())
        ),
    }
    // An unreachable cloud is a transport error, not a panic.
    let mut offline = Agent::new(
        Stsafe::new(bus.device(), StdDelay, 0x20),
        "http://127.0.0.1:9",
    )
    .unwrap();
    assert!(matches!(offline.login(), Err(AgentError::Transport(_))));
}
