//! `sesame cloud` as an operator runs it: serve (child process, SQLite), trust the factory's
//! root, enroll its family with a proof of possession, list, revoke, read the audit log.
#![allow(clippy::unwrap_used)]

mod common;

use common::{personalize_one, text};
use std::path::Path;
use std::process::{Command, Output};

use common::Server;

fn sesame(args: &[&str], dir: &Path) -> Output {
    common::operator(args, dir)
}

#[test]
fn serve_enroll_revoke_audit() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(
        sesame(&["factory", "init", "--dir", "f", "--family", "cams"], d)
            .status
            .success()
    );
    let cloud = Server::start(d, None);
    let url = cloud.url.clone();
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--url", &url]);
        sesame(&a, d)
    };
    let o = run(&["cloud", "trust-root", "f/root.pem"]);
    assert!(o.status.success(), "{}", text(&o));
    // The wrong key for the family: the proof of possession fails.
    let o = run(&[
        "cloud",
        "enroll-family",
        "--bundle",
        "f/families/cams/ca.pem",
        "--key",
        "f/root.key.pem",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("proof_of_possession"), "{}", text(&o));
    let o = run(&[
        "cloud",
        "enroll-family",
        "--bundle",
        "f/families/cams/ca.pem",
        "--key",
        "f/families/cams/ca.key.pem",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("enrolled family \"cams\""),
        "{}",
        text(&o)
    );
    // A device enrolled one by one, listed, revoked, and the audit trail.
    assert!(sesame(&["chip", "key", "--out", "k"], d).status.success());
    assert!(
        sesame(&["chip", "new", "--out", "c.chip", "--key-file", "k"], d)
            .status
            .success()
    );
    let o = sesame(
        &["chip", "inspect", "c.chip", "--key-file", "k", "--json"],
        d,
    );
    let serial = serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let o = sesame(
        &[
            "device",
            "cert",
            "--image",
            "c.chip",
            "--key-file",
            "k",
            "--out",
            "c.der",
        ],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["cloud", "enroll-device", "c.der"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["cloud", "devices", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["devices"][0]["serial"], serial.as_str());
    // Any case names the device; what matched is listed; unknown serials are an error.
    let o = run(&["cloud", "revoke", "--serial", &serial.to_lowercase()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("revoked device {serial}")),
        "{}",
        text(&o)
    );
    let o = run(&["cloud", "devices", &serial, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["certificates"][0]["revoked"], true);
    let o = run(&["cloud", "revoke", "--serial", "NO-SUCH-DEVICE"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("not_found"), "{}", text(&o));
    let o = run(&["cloud", "unrevoke", "--serial", &serial]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["cloud", "devices", &serial, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["certificates"][0]["revoked"], false);
    assert!(run(&["cloud", "revoke", "--certificate", "c.der"])
        .status
        .success());
    let o = run(&["cloud", "devices", &serial, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["certificates"][0]["revoked"], true);
    // The roots: listed, and untrusting one refuses its devices; an unknown one is an error.
    let o = run(&["cloud", "roots", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let root_fp = v["roots"][0]["fingerprint"].as_str().unwrap().to_string();
    let o = run(&["cloud", "roots", "untrust", &"0".repeat(64)]);
    assert!(!o.status.success(), "{}", text(&o));
    let o = run(&["cloud", "roots", "untrust", &root_fp]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["cloud", "roots", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["roots"].as_array().unwrap().len(), 0);
    let o = run(&["cloud", "audit", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let events: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for e in [
        "trust_root",
        "enroll_family_refused",
        "enroll_family",
        "enroll_device",
        "revoke_device",
        "unrevoke_device",
        "untrust_root",
    ] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    // Without the token: a clear refusal.
    let o = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args(["cloud", "devices", "--url", &url, "--token", "wrong"])
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("401"), "{}", text(&o));
    drop(cloud);
}

#[test]
fn device_login_update_and_boot_from_the_command_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(sesame(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    let (serial, image) = personalize_one(d);
    let cloud = Server::start(d, Some(&d.join("f/command.key.pem")));
    let url = cloud.url.clone();
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--url", &url]);
        sesame(&a, d)
    };
    let dev = |args: &[&str]| {
        let mut a = vec!["device", "--image", &image, "--key-file", "f/chip.key"];
        a.extend(args);
        sesame(&a, d)
    };
    // Not enrolled yet: refused, exit 1.
    let o = dev(&["login", "--cloud", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not_enrolled"), "{}", text(&o));
    assert!(run(&["cloud", "trust-root", "f/root.pem"]).status.success());
    assert!(run(&[
        "cloud",
        "enroll-family",
        "--bundle",
        "b/family-bundle.pem",
        "--key",
        "f/families/family-1/ca.key.pem"
    ])
    .status
    .success());
    let o = dev(&["--json", "login", "--cloud", &url]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["serial"].as_str(), v["telemetry_key"].as_bool()),
        (Some(serial.as_str()), Some(true))
    );
    // Nothing released yet: nothing to update is a success.
    let o = dev(&["update", "--cloud", &url, "--dir", "installed"]);
    assert!(
        o.status.success() && text(&o).contains("up to date"),
        "{}",
        text(&o)
    );
    // A release signed with the factory's firmware key, published, installed, booted.
    std::fs::write(d.join("fw.bin"), b"firmware 3").unwrap();
    assert!(sesame(
        &[
            "firmware",
            "sign",
            "--key",
            "f/firmware.key.pem",
            "--version",
            "3",
            "fw.bin",
            "--out",
            "fw.json"
        ],
        d
    )
    .status
    .success());
    let o = run(&[
        "cloud",
        "publish-firmware",
        "--manifest",
        "fw.json",
        "fw.bin",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = dev(&["update", "--cloud", &url, "--dir", "installed"]);
    assert!(
        o.status.success() && text(&o).contains("installed: version 3"),
        "{}",
        text(&o)
    );
    let o = dev(&["boot", "--dir", "installed"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = dev(&["update", "--cloud", &url, "--dir", "installed"]);
    assert!(
        o.status.success() && text(&o).contains("up to date"),
        "{}",
        text(&o)
    );
    std::fs::write(d.join("installed/installed.bin"), b"firmware 4").unwrap();
    let o = dev(&["boot", "--dir", "installed"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("refusing to boot"), "{}", text(&o));
    // Another factory signs a release.
    assert!(sesame(&["factory", "init", "--dir", "g"], d)
        .status
        .success());
    std::fs::write(d.join("fw5.bin"), b"firmware 5").unwrap();
    assert!(sesame(
        &[
            "firmware",
            "sign",
            "--key",
            "g/firmware.key.pem",
            "--version",
            "5",
            "fw5.bin",
            "--out",
            "fw5.json"
        ],
        d
    )
    .status
    .success());
    // A release signed with another key is refused by the cloud before any device sees it.
    let o = run(&[
        "cloud",
        "publish-firmware",
        "--manifest",
        "fw5.json",
        "fw5.bin",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("bad_signature"), "{}", text(&o));
    drop(cloud);
}
