//! Every client reaches a cloud whose TLS certificate comes from a private CA (here the
//! factory's own root): `--cacert`, `$SESAME_CACERT`, or the system store (`$SSL_CERT_FILE`).
//! Without them the refusal names the fix. `cloud serve` refuses a TLS key of another
//! certificate, a database that is not one and a command key that is not one before it listens.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{operator, personalize_one, text, Server};
use serde_json::Value;

fn tls_cloud(d: &Path) -> Server {
    let o = operator(&["factory", "tls", "--dir", "f", "--name", "127.0.0.1"], d);
    assert!(o.status.success(), "{}", text(&o));
    let args: Vec<String> = [
        "--db",
        "sqlite://cloud.db",
        "--tls-cert",
        "f/tls/127.0.0.1.pem",
        "--tls-key",
        "f/tls/127.0.0.1.key.pem",
        "--command-key",
        "f/command.key.pem",
    ]
    .map(String::from)
    .to_vec();
    Server::start_with(d, &args)
}

fn with_env(d: &Path, args: &[&str], var: &str, value: &str) -> Output {
    common::command(d)
        .args(args)
        .env("SESAME_CLOUD_ADMIN_TOKEN", common::TOKEN)
        .env(var, value)
        .output()
        .unwrap()
}

#[test]
fn every_client_trusts_a_private_ca_when_told() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    let cloud = tls_cloud(d);
    assert!(
        cloud.url.starts_with("https://127.0.0.1:"),
        "{}",
        cloud.banner
    );
    assert!(cloud.banner.contains("(TLS on; "), "{}", cloud.banner);
    assert!(
        cloud.banner.contains("command key loaded, sha256 "),
        "{}",
        cloud.banner
    );
    let url = cloud.url.as_str();
    // Not trusted: the refusal says what to pass.
    let o = operator(&["cloud", "devices", "--url", url], d);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--cacert"), "{}", text(&o));
    // --cacert, $SESAME_CACERT and the system store's $SSL_CERT_FILE each work.
    let o = operator(
        &[
            "cloud",
            "trust-root",
            "f/root.pem",
            "--url",
            url,
            "--cacert",
            "f/root.pem",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = with_env(
        d,
        &[
            "cloud",
            "enroll-family",
            "--bundle",
            "f/families/family-1/ca.pem",
            "--key",
            "f/families/family-1/ca.key.pem",
            "--url",
            url,
        ],
        "SESAME_CACERT",
        "f/root.pem",
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = with_env(
        d,
        &["cloud", "devices", "--url", url, "--json"],
        "SSL_CERT_FILE",
        "f/root.pem",
    );
    assert!(o.status.success(), "{}", text(&o));
    // A device logs in over TLS.
    let (_, image) = personalize_one(d);
    let login = |extra: &[&str]| {
        let mut a = vec![
            "device",
            "--image",
            &image,
            "--key-file",
            "f/chip.key",
            "login",
            "--cloud",
            url,
        ];
        a.extend(extra);
        operator(&a, d)
    };
    let o = login(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--cacert"), "{}", text(&o));
    let o = login(&["--cacert", "f/root.pem"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("telemetry key established"),
        "{}",
        text(&o)
    );
    // A fleet over TLS, with the command key's public half: no error.
    let o = operator(
        &[
            "fleet",
            "run",
            "--cloud",
            url,
            "--cacert",
            "f/root.pem",
            "--command-pub",
            "f/command.pub.pem",
            "--devices",
            "3",
            "--duration",
            "2",
            "--json",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error_total"], 0, "{v}");
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
    // It cleaned up: its family is revoked (no --keep).
    assert!(
        text(&o).contains("cleaned up: the run's family fleet-"),
        "{}",
        text(&o)
    );
    let o = operator(
        &[
            "cloud",
            "audit",
            "--url",
            url,
            "--cacert",
            "f/root.pem",
            "--json",
        ],
        d,
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let revoked = v["events"].as_array().unwrap().iter().any(|e| {
        e["event"] == "revoke_family" && e["detail"].as_str().unwrap().starts_with("fleet-")
    });
    assert!(revoked, "{v}");
    let o = operator(
        &["cloud", "families", "--url", url, "--cacert", "f/root.pem"],
        d,
    );
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.starts_with("NAME "), "{out}");
    let fleet = out.lines().find(|l| l.starts_with("fleet-")).unwrap();
    assert!(fleet.contains(" revoked "), "{out}");
    let own = out.lines().find(|l| l.starts_with("family-1 ")).unwrap();
    assert!(own.contains(" active "), "{out}");
}

/// `cloud serve ARGS` that must fail before listening, with `msg` in what it says.
fn refused(d: &Path, args: &[&str], msg: &str) {
    let o = common::command(d)
        .args(["cloud", "serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("SESAME_CLOUD_ADMIN_TOKEN", common::TOKEN)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(msg), "expected '{msg}' in: {}", text(&o));
    assert!(!text(&o).contains("sesame cloud on"), "{}", text(&o));
}

#[test]
fn cloud_serve_names_bad_settings_before_listening() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    for name in ["127.0.0.1", "other.example"] {
        let o = operator(&["factory", "tls", "--dir", "f", "--name", name], d);
        assert!(o.status.success(), "{}", text(&o));
    }
    refused(
        d,
        &[
            "--db",
            "sqlite://c.db",
            "--tls-cert",
            "f/tls/127.0.0.1.pem",
            "--tls-key",
            "f/tls/other.example.key.pem",
        ],
        "does not belong to the certificate",
    );
    refused(
        d,
        &["--db", "sqlite://f/root.pem"],
        "not an SQLite database",
    );
    refused(
        d,
        &["--db", "sqlite://nowhere/c.db"],
        "directory nowhere does not exist",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    refused(
        d,
        &[
            "--db",
            &format!("postgres://sesame@127.0.0.1:{port}/sesame"),
        ],
        &format!("cannot connect to PostgreSQL at 127.0.0.1:{port}"),
    );
    refused(
        d,
        &["--db", "sqlite://c.db", "--command-key", "f/root.pem"],
        "command key f/root.pem is not a P-256 private key",
    );
}
