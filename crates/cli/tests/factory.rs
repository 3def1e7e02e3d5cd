//! `sesame factory` as a user runs it: a batch that verifies end to end (webpki and openssl),
//! refusals with clear messages, and crash-consistent resume.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fails, ok, sesame, text};
use std::path::Path;

fn manifest(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn init_family_personalize_and_verify() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(sesame(
        &["factory", "init", "--dir", "f", "--family", "cameras"],
        d,
    ));
    for key in [
        "root.key.pem",
        "chip.key",
        "command.key.pem",
        "firmware.key.pem",
        "families/cameras/ca.key.pem",
    ] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(d.join("f").join(key))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    fails(sesame(&["factory", "init", "--dir", "f"], d), "not empty");
    ok(sesame(
        &[
            "factory", "family", "new", "pumps", "--dir", "f", "--curve", "p384",
        ],
        d,
    ));
    fails(
        sesame(&["factory", "family", "new", "pumps", "--dir", "f"], d),
        "already exists",
    );
    ok(sesame(
        &[
            "factory",
            "personalize",
            "--dir",
            "f",
            "--family",
            "cameras",
            "--count",
            "12",
            "--out",
            "b",
        ],
        d,
    ));
    let lines = manifest(&d.join("b"));
    assert_eq!(lines.len(), 12);
    let chips = std::fs::read_dir(d.join("b/chips")).unwrap().count();
    assert_eq!(chips, 12, "one sealed image per chip");
    let keys = std::fs::read_to_string(d.join("b/host-keys.jsonl")).unwrap();
    assert_eq!(keys.lines().count(), 12);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.join("b/host-keys.jsonl"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "host keys are secrets");
    // Each chip: open it, check its certificate chains with openssl and matches the manifest.
    let serial = lines[0]["serial"].as_str().unwrap();
    let o = ok(sesame(
        &[
            "chip",
            "inspect",
            &format!("b/chips/{serial}.chip"),
            "--key-file",
            "f/chip.key",
            "--json",
        ],
        d,
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["certificate"]["sha256"], lines[0]["cert_sha256"]);
    assert_eq!(v["life_cycle"], "OPERATIONAL");
    assert_eq!(
        v["zones"][1]["update_ac"], 7,
        "command key zone is read-only"
    );
    assert!(v["certificate"]["issuer"]
        .as_str()
        .unwrap()
        .contains("cameras"));
    let key_hex = lines[0]["public_key"].as_str().unwrap();
    let chip_point = v["private_keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(chip_point, key_hex);
    let bundle = std::fs::read_to_string(d.join("b/family-bundle.pem")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    // P-384 family, P-384 chips.
    ok(sesame(
        &[
            "factory",
            "personalize",
            "--dir",
            "f",
            "--family",
            "pumps",
            "--count",
            "3",
            "--out",
            "p",
            "--profile",
            "p384",
        ],
        d,
    ));
    assert_eq!(manifest(&d.join("p")).len(), 3);
}

#[test]
fn bad_input_is_refused_clearly() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(sesame(&["factory", "init", "--dir", "f"], d));
    fails(
        sesame(
            &[
                "factory",
                "personalize",
                "--dir",
                "f",
                "--family",
                "nope",
                "--count",
                "2",
                "--out",
                "b",
            ],
            d,
        ),
        "unknown family",
    );
    common::usage_error(
        sesame(
            &[
                "factory",
                "personalize",
                "--dir",
                "f",
                "--family",
                "family-1",
                "--count",
                "0",
                "--out",
                "b",
            ],
            d,
        ),
        "at least 1",
    );
    fails(
        sesame(&["factory", "family", "new", "../x", "--dir", "f"], d),
        "must be 1-64",
    );
    std::fs::create_dir(d.join("taken")).unwrap();
    std::fs::write(d.join("taken/file"), "x").unwrap();
    fails(
        sesame(
            &[
                "factory",
                "personalize",
                "--dir",
                "f",
                "--family",
                "family-1",
                "--count",
                "2",
                "--out",
                "taken",
            ],
            d,
        ),
        "not a batch",
    );
    ok(sesame(
        &[
            "factory",
            "personalize",
            "--dir",
            "f",
            "--family",
            "family-1",
            "--count",
            "2",
            "--out",
            "b",
        ],
        d,
    ));
    fails(
        sesame(
            &[
                "factory",
                "personalize",
                "--dir",
                "f",
                "--family",
                "family-1",
                "--count",
                "5",
                "--out",
                "b",
            ],
            d,
        ),
        "holds a batch of 2",
    );
    // A corrupt family CA key.
    std::fs::write(
        d.join("f/families/family-1/ca.key.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    fails(
        sesame(
            &[
                "factory",
                "personalize",
                "--dir",
                "f",
                "--family",
                "family-1",
                "--count",
                "1",
                "--out",
                "c",
            ],
            d,
        ),
        "family CA key",
    );
    fails(
        sesame(
            &[
                "factory",
                "personalize",
                "--dir",
                "nowhere",
                "--family",
                "x",
                "--count",
                "1",
                "--out",
                "c",
            ],
            d,
        ),
        "unknown family",
    );
}

#[test]
fn an_interrupted_batch_resumes_consistently() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(sesame(&["factory", "init", "--dir", "f"], d));
    let args = [
        "factory",
        "personalize",
        "--dir",
        "f",
        "--family",
        "family-1",
        "--count",
        "10",
        "--out",
        "b",
    ];
    ok(sesame(&args, d));
    let b = d.join("b");
    let lines = manifest(&b);
    // Simulate crashes: a line whose image vanished, an image whose line was lost with a torn
    // last line, a torn image, and a stray temporary file.
    let gone = lines[0]["serial"].as_str().unwrap().to_string();
    std::fs::remove_file(b.join(format!("chips/{gone}.chip"))).unwrap();
    let body = std::fs::read_to_string(b.join("manifest.jsonl")).unwrap();
    let cut = body.trim_end().rfind('\n').unwrap();
    std::fs::write(
        b.join("manifest.jsonl"),
        format!("{}\n{{\"serial\":\"02", &body[..cut]),
    )
    .unwrap();
    let torn = lines[5]["serial"].as_str().unwrap().to_string();
    let img = b.join(format!("chips/{torn}.chip"));
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&img, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(b.join("chips/0299.chip.tmp"), b"partial").unwrap();
    std::fs::write(
        b.join("chips/0298.chip"),
        b"an image whose host keys were never written",
    )
    .unwrap();
    let o = ok(sesame(&args, d));
    assert!(text(&o).contains("resumed after 8"), "{}", text(&o));
    let after = manifest(&b);
    assert_eq!(after.len(), 10);
    let serials: std::collections::HashSet<_> = after
        .iter()
        .map(|l| l["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials.len(), 10);
    assert!(!serials.contains(&gone) && !serials.contains(&torn));
    assert!(
        serials.contains(lines[9]["serial"].as_str().unwrap()),
        "image without line got its line back"
    );
    let keys = std::fs::read_to_string(b.join("host-keys.jsonl")).unwrap();
    assert_eq!(keys.lines().count(), 10);
    for s in &serials {
        assert!(b.join(format!("chips/{s}.chip")).exists() && keys.contains(s.as_str()));
    }
    assert_eq!(
        std::fs::read_dir(b.join("chips")).unwrap().count(),
        10,
        "nothing stray left"
    );
}
