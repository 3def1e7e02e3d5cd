//! A factory batch from `factory personalize` to `cloud import-batch`: the signed manifest is
//! accepted once, and a tampered, truncated or foreign-signed one is refused with its reason.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fails, ok, operator, text, Server};

#[test]
fn personalize_signs_and_the_cloud_imports_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(operator(
        &["factory", "init", "--dir", "f", "--family", "cams"],
        d,
    ));
    ok(operator(
        &["factory", "init", "--dir", "g", "--family", "cams"],
        d,
    ));
    let o = ok(operator(
        &[
            "factory",
            "personalize",
            "--dir",
            "f",
            "--family",
            "cams",
            "--count",
            "4",
            "--out",
            "b",
        ],
        d,
    ));
    assert!(text(&o).contains("manifest.jsonl.jws"), "{}", text(&o));
    assert!(d.join("b/manifest.jsonl.jws").exists());
    let cloud = Server::start(d, None);
    let url = cloud.url.clone();
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--url", &url]);
        operator(&a, d)
    };
    ok(run(&["cloud", "trust-root", "f/root.pem"]));
    ok(run(&[
        "cloud",
        "enroll-family",
        "--bundle",
        "f/families/cams/ca.pem",
        "--key",
        "f/families/cams/ca.key.pem",
    ]));
    let import = |manifest: &str, key: &str, sig: &str| {
        run(&[
            "cloud",
            "import-batch",
            "--manifest",
            manifest,
            "--factory-key",
            key,
            "--signature",
            sig,
        ])
    };
    // Another factory's key is not the one that signed.
    fails(
        import(
            "b/manifest.jsonl",
            "g/batch.pub.pem",
            "b/manifest.jsonl.jws",
        ),
        "wrong_factory_key",
    );
    // One line dropped.
    let manifest = std::fs::read_to_string(d.join("b/manifest.jsonl")).unwrap();
    let cut: String = manifest.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(d.join("cut.jsonl"), cut).unwrap();
    fails(
        import("cut.jsonl", "f/batch.pub.pem", "b/manifest.jsonl.jws"),
        "truncated_manifest",
    );
    // One public key swapped for another chip's.
    let lines: Vec<&str> = manifest.lines().collect();
    let key_of = |l: &str| {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["public_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let swapped = manifest.replacen(&key_of(lines[0]), &key_of(lines[1]), 1);
    std::fs::write(d.join("swapped.jsonl"), swapped).unwrap();
    fails(
        import("swapped.jsonl", "f/batch.pub.pem", "b/manifest.jsonl.jws"),
        "tampered_manifest",
    );
    // The real batch, then the same again.
    let o = ok(run(&[
        "cloud",
        "import-batch",
        "--manifest",
        "b/manifest.jsonl",
        "--factory-key",
        "f/batch.pub.pem",
    ]));
    assert!(
        text(&o).contains("4 chips of family 'cams', 4 pre-registered"),
        "{}",
        text(&o)
    );
    let o = ok(run(&[
        "cloud",
        "import-batch",
        "--manifest",
        "b/manifest.jsonl",
        "--factory-key",
        "f/batch.pub.pem",
    ]));
    assert!(text(&o).contains("already imported"), "{}", text(&o));
    let o = ok(run(&["cloud", "devices", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["devices"].as_array().map(Vec::len), Some(4), "{v}");
    // A pre-registered device can be revoked by serial before its first login.
    let serial = serde_json::from_str::<serde_json::Value>(lines[2]).unwrap()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    ok(run(&["cloud", "revoke", "--serial", &serial]));
    // A batch of short-lived certificates shows up as expiring; the 15-year one does not.
    ok(operator(
        &[
            "factory",
            "personalize",
            "--dir",
            "f",
            "--family",
            "cams",
            "--count",
            "2",
            "--out",
            "short",
            "--validity-days",
            "20",
        ],
        d,
    ));
    ok(run(&[
        "cloud",
        "import-batch",
        "--manifest",
        "short/manifest.jsonl",
        "--factory-key",
        "f/batch.pub.pem",
    ]));
    let o = ok(run(&["cloud", "devices", "--expiring-within", "30"]));
    assert!(
        text(&o).contains("2 device(s) expire within 30 days"),
        "{}",
        text(&o)
    );
    let short = std::fs::read_to_string(d.join("short/manifest.jsonl")).unwrap();
    for l in short.lines() {
        let s = serde_json::from_str::<serde_json::Value>(l).unwrap()["serial"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text(&o).contains(&s), "{s} missing: {}", text(&o));
    }
    let o = ok(run(&[
        "cloud",
        "devices",
        "--expiring-within",
        "30",
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["total"], 2, "{v}");
    let o = ok(run(&["cloud", "devices", "--expiring-within", "5500"]));
    assert!(
        text(&o).contains("6 device(s) expire within 5500 days"),
        "{}",
        text(&o)
    );
    // The factory's default is finite and refuses nonsense.
    common::usage_error(
        operator(
            &[
                "factory",
                "init",
                "--dir",
                "h",
                "--device-validity-days",
                "0",
            ],
            d,
        ),
        "validity is 1 to 36500 days",
    );
}
