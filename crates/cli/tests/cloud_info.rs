//! The cloud publishes its command key at `/v1/info`; `fleet run --command-key-sha256` fetches
//! it and uses it only if it matches the pin. `cloud serve`'s startup line (address, TLS,
//! database without its password, command key and its fingerprint) and `cloud info` show the
//! fingerprint to pin.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fingerprint, operator, personalize_one, text, usage_error, Server};
use serde_json::Value;
use std::path::Path;

fn factory(d: &Path) {
    assert!(operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
}

fn fleet(d: &Path, url: &str, pin: &str) -> std::process::Output {
    operator(
        &[
            "fleet",
            "run",
            "--cloud",
            url,
            "--command-key-sha256",
            pin,
            "--devices",
            "3",
            "--duration",
            "2",
            "--json",
        ],
        d,
    )
}

/// The names of the families and roots the cloud knows.
fn enrolled(d: &Path, url: &str) -> (Value, Value) {
    let get = |what: &[&str]| -> Value {
        let mut a = vec!["cloud"];
        a.extend(what);
        a.extend(["--url", url, "--json"]);
        let o = operator(&a, d);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    (
        get(&["families"])["families"].clone(),
        get(&["roots", "list"])["roots"].clone(),
    )
}

#[test]
fn a_pinned_command_key_gives_encrypted_telemetry() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    factory(d);
    let pin = fingerprint(&d.join("f/command.pub.pem"));
    let cloud = Server::start(d, Some(&d.join("f/command.key.pem")));
    // The operator reads the fingerprint from the startup line or from `cloud info`.
    assert!(
        cloud
            .banner
            .contains(&format!("command key loaded, sha256 {pin}")),
        "{}",
        cloud.banner
    );
    let o = operator(&["cloud", "info", "--url", &cloud.url, "--json"], d);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["command_key"]["sha256"], pin.as_str(), "{v}");
    assert!(v["command_key"]["public_key_pem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(v["identity"], "sesame-cloud", "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert_eq!(
        v["firmware_key_sha256"],
        fingerprint(&d.join("f/firmware.pub.pem")).as_str(),
        "{v}"
    );
    let o = operator(&["cloud", "info", "--url", &cloud.url], d);
    assert!(
        text(&o).contains(&format!("command key sha256:   {pin}")),
        "{}",
        text(&o)
    );
    // With the pin (upper case, with colons, as some tools print it): every message is
    // encrypted under a key the chips accepted.
    let spaced = hex::decode(&pin)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let o = fleet(d, &cloud.url, &spaced);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("matches the pin"), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error_total"], 0, "{v}");
    assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["logged_in"], 3, "{v}");
}

#[test]
fn a_wrong_pin_is_refused_before_anything_is_sent() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    factory(d);
    let cloud = Server::start(d, Some(&d.join("f/command.key.pem")));
    // Another key's fingerprint: the firmware key's.
    let wrong = fingerprint(&d.join("f/firmware.pub.pem"));
    let o = fleet(d, &cloud.url, &wrong);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains(&format!("not the pinned {wrong}")), "{out}");
    assert!(out.contains("nothing was sent"), "{out}");
    assert!(out.contains("sesame cloud info"), "{out}");
    // Nothing reached the cloud: no root trusted, no family enrolled.
    let (families, roots) = enrolled(d, &cloud.url);
    assert_eq!(families, serde_json::json!([]), "{families}");
    assert_eq!(roots, serde_json::json!([]), "{roots}");
    // A pin that is not a fingerprint is a usage error.
    usage_error(fleet(d, &cloud.url, "abc"), "64 hex digits");
}

#[test]
fn a_pin_against_a_cloud_without_command_key_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    factory(d);
    let cloud = Server::start(d, None);
    assert!(cloud.banner.contains("no command key"), "{}", cloud.banner);
    let o = operator(&["cloud", "info", "--url", &cloud.url, "--json"], d);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["command_key"], Value::Null, "{v}");
    let pin = fingerprint(&d.join("f/command.pub.pem"));
    let o = fleet(d, &cloud.url, &pin);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("publishes no command key") && text(&o).contains("--command-key"),
        "{}",
        text(&o)
    );
    let (families, _) = enrolled(d, &cloud.url);
    assert_eq!(families, serde_json::json!([]), "{families}");
}

#[test]
fn the_startup_line_says_address_tls_database_and_command_key() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let cloud = Server::start(d, None);
    let addr = cloud.url.strip_prefix("http://").unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{}", cloud.banner);
    assert!(
        cloud.banner.starts_with(&format!(
            "sesame cloud on http://{addr} (TLS off; database sqlite://cloud.db; no command key: "
        )),
        "{}",
        cloud.banner
    );
    drop(cloud);
    // A password in the database URL never shows, neither when the database cannot be reached
    // nor on the startup line.
    let secret = "pw-never-printed";
    let o = common::operator(
        &[
            "cloud",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--db",
            &format!("postgres://sesame:{secret}@127.0.0.1:1/sesame"),
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("127.0.0.1:1"), "{}", text(&o));
    assert!(!text(&o).contains(secret), "{}", text(&o));
    let Some(db) = common::postgres() else { return };
    let mut u = url::Url::parse(&db).unwrap();
    u.set_password(Some(secret)).unwrap();
    let cloud = Server::start_with(d, &["--db".into(), u.to_string()]);
    assert!(!cloud.banner.contains(secret), "{}", cloud.banner);
    u.set_password(Some("***")).unwrap();
    assert!(
        cloud
            .banner
            .contains(&format!("; database {u}; no command key")),
        "{}",
        cloud.banner
    );
}

#[test]
fn a_device_checks_the_pin_against_the_cloud_and_its_chip() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    factory(d);
    // A second factory, whose command key no chip of the first holds.
    assert!(operator(&["factory", "init", "--dir", "g"], d)
        .status
        .success());
    let (serial, image) = personalize_one(d);
    let ours = Server::start(d, Some(&d.join("f/command.key.pem")));
    let theirs = Server::start_with(
        &d.join("g"),
        &[
            "--db".into(),
            "sqlite://cloud.db".into(),
            "--command-key".into(),
            "command.key.pem".into(),
        ],
    );
    for (cloud, bundle, key) in [
        (
            &ours,
            "f/families/family-1/ca.pem",
            "f/families/family-1/ca.key.pem",
        ),
        (
            &theirs,
            "f/families/family-1/ca.pem",
            "f/families/family-1/ca.key.pem",
        ),
    ] {
        for a in [
            vec!["cloud", "trust-root", "f/root.pem", "--url", &cloud.url],
            vec![
                "cloud",
                "enroll-family",
                "--bundle",
                bundle,
                "--key",
                key,
                "--url",
                &cloud.url,
            ],
        ] {
            let o = operator(&a, d);
            assert!(o.status.success(), "{}", text(&o));
        }
    }
    let login = |url: &str, pin: &str| {
        operator(
            &[
                "device",
                "--image",
                &image,
                "--key-file",
                "f/chip.key",
                "login",
                "--cloud",
                url,
                "--command-key-sha256",
                pin,
            ],
            d,
        )
    };
    let logins = |url: &str| -> usize {
        let o = operator(&["cloud", "audit", "--url", url, "--json"], d);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["serial"] == serial.as_str())
            .count()
    };
    let pin = fingerprint(&d.join("f/command.pub.pem"));
    // The right pin: the chip holds that key, the session carries a telemetry key.
    let o = login(&ours.url, &pin);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("matches the pin and the chip"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("telemetry key established"),
        "{}",
        text(&o)
    );
    assert!(logins(&ours.url) > 0);
    // The other cloud, pinned as ours: refused before the device says anything to it.
    let o = login(&theirs.url, &pin);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not the pinned"), "{}", text(&o));
    // The other cloud, pinned as itself: it is, but this chip holds another key.
    let o = login(&theirs.url, &fingerprint(&d.join("g/command.pub.pem")));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("this chip holds another one"),
        "{}",
        text(&o)
    );
    assert_eq!(
        logins(&theirs.url),
        0,
        "the device spoke to the other cloud"
    );
}
