//! `sesame device` as a user runs it: every subcommand on an image opened in-process, peer
//! authentication against factory CAs, and the same driver over `sesame chip serve`'s socket.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fails, ok, sesame, text};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use serde_json::Value;

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `sesame device ARGS --image c.chip --key-file k [--json]` in `d`.
fn dev(d: &Path, args: &[&str], as_json: bool) -> Output {
    let mut all = vec!["device"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--image", "c.chip", "--key-file", "k"]);
    if as_json {
        all.push("--json");
    }
    sesame(&all, d)
}

fn new_chip(d: &Path) {
    ok(sesame(&["chip", "key", "--out", "k"], d));
    ok(sesame(
        &["chip", "new", "--out", "c.chip", "--key-file", "k"],
        d,
    ));
}

#[test]
fn every_subcommand_on_an_image() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);

    let info = json(&ok(dev(d, &["info"], true)));
    let serial = info["serial"].as_str().unwrap().to_string();
    assert_eq!(serial.len(), 18);
    assert_eq!(info["product"]["mask_id"], "004601");
    assert_eq!(info["product"]["model"], "A110");
    assert_eq!(info["life_cycle"], "OPERATIONAL");
    assert_eq!(info["i2c"]["address"], 0x20);
    assert_eq!(info["zones"].as_array().unwrap().len(), 5);
    assert_eq!(info["zones"][0]["update_ac_name"], "never");
    assert_eq!(info["zones"][4]["kind"], "counter");
    assert_eq!(info["zones"][4]["counter"], 1_000_000);
    assert_eq!(info["private_keys"][0]["curve"], "P256");
    assert_eq!(info["host_keys"]["present"], true);
    let cert = &info["certificate"];
    assert!(cert["subject"].as_str().unwrap().contains(&serial));
    assert_eq!(cert["issuer"], format!("CN=chip {serial} CA,O=sesame"));
    let human = text(&ok(dev(d, &["info"], false)));
    assert!(
        human.contains(&serial) && human.contains("OPERATIONAL"),
        "{human}"
    );

    // Certificate out, DER and PEM; its hash is the one info shows.
    let o = json(&ok(dev(d, &["cert", "--out", "c.der"], true)));
    assert_eq!(o["sha256"], cert["sha256"]);
    let der = std::fs::read(d.join("c.der")).unwrap();
    assert_eq!(der.len() as u64, cert["bytes"].as_u64().unwrap());
    ok(dev(d, &["cert", "--out", "c.pem", "--pem"], false));
    let pem = std::fs::read_to_string(d.join("c.pem")).unwrap();
    assert_eq!(sesame_pki::cert_from_pem(&pem).unwrap(), der);

    // Random: more than one command's worth.
    let r = json(&ok(dev(d, &["random", "300"], true)));
    assert_eq!(r["random"].as_str().unwrap().len(), 600);
    let r = ok(dev(d, &["random", "300"], false));
    assert_eq!(String::from_utf8(r.stdout).unwrap().trim().len(), 600);

    // Sign, and verify with the certificate's public key from info.
    let digest = [0x5Au8; 32];
    let s = json(&ok(dev(
        d,
        &["sign", "--digest", &hex::encode(digest)],
        true,
    )));
    let rs = hex::decode(s["signature"].as_str().unwrap()).unwrap();
    let key = hex::decode(cert["public_key"].as_str().unwrap()).unwrap();
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&rs).unwrap();
    key.verify_prehash(&digest, &sig).unwrap();
    let der_sig = hex::decode(s["der"].as_str().unwrap()).unwrap();
    assert_eq!(p256::ecdsa::Signature::from_der(&der_sig).unwrap(), sig);
    fails(dev(d, &["sign", "--digest", "0102"], false), "32 bytes");

    // Zone write, read back (more than one 253-byte chunk).
    let data: Vec<u8> = (0..=255u8).collect();
    ok(dev(
        d,
        &[
            "zone",
            "write",
            "--zone",
            "2",
            "--data",
            &hex::encode(&data),
        ],
        false,
    ));
    let back = ok(dev(
        d,
        &[
            "zone", "read", "--zone", "2", "--offset", "0", "--len", "256",
        ],
        false,
    ));
    assert_eq!(
        String::from_utf8(back.stdout).unwrap().trim(),
        hex::encode(&data)
    );

    // With C-MAC + R-MAC (host keys beside the image): the chip's C-MAC counter moves.
    let w = json(&ok(dev(
        d,
        &[
            "zone", "write", "--zone", "1", "--offset", "4", "--data", "c0ffee", "--mac",
        ],
        true,
    )));
    assert_eq!(w["written"], 3);
    let r = json(&ok(dev(
        d,
        &[
            "zone", "read", "--zone", "1", "--offset", "4", "--len", "3", "--mac",
        ],
        true,
    )));
    assert_eq!(r["data"], "c0ffee");
    let after = json(&ok(dev(d, &["info"], true)));
    assert_eq!(after["host_keys"]["counter"], 2);
    let o = sesame(
        &[
            "device",
            "zone",
            "write",
            "--zone",
            "1",
            "--data",
            "00",
            "--mac",
            "--image",
            "c.chip",
            "--key-file",
            "k",
            "--host-keys",
            "missing.json",
        ],
        d,
    );
    fails(o, "missing.json");

    // One-way counter: strictly decreasing, data written with it.
    let dec = |data: &str| {
        let o = ok(dev(
            d,
            &[
                "counter",
                "decrement",
                "--zone",
                "4",
                "--amount",
                "3",
                "--data",
                data,
            ],
            true,
        ));
        json(&o)["counter"].as_u64().unwrap()
    };
    let (a, b) = (dec("01"), dec("02"));
    assert_eq!((a, b), (999_997, 999_994));
    let r = json(&ok(dev(
        d,
        &["zone", "read", "--zone", "4", "--len", "1"],
        true,
    )));
    assert_eq!(
        (r["counter"].as_u64(), r["data"].as_str()),
        (Some(b), Some("02"))
    );

    // Refusals: chip status by name, bad hex, missing files, no target.
    fails(
        dev(d, &["zone", "write", "--zone", "0", "--data", "00"], false),
        "ACCESS_CONDITION_NOT_SATISFIED (0x11)",
    );
    fails(
        dev(
            d,
            &["zone", "write", "--zone", "1", "--data", "0xzz"],
            false,
        ),
        "--data is not valid hex",
    );
    fails(
        dev(
            d,
            &["counter", "decrement", "--zone", "1", "--amount", "1"],
            false,
        ),
        "WRONG_ZONE_TYPE",
    );
    fails(
        sesame(
            &["device", "info", "--image", "none.chip", "--key-file", "k"],
            d,
        ),
        "none.chip",
    );
    fails(sesame(&["device", "info"], d), "--bus");
    fails(
        dev(d, &["authenticate", "--ca", "none.pem"], false),
        "none.pem",
    );

    // The chip's own certificate does not vouch for itself; its CA (beside the image) does.
    let o = fails(
        dev(d, &["authenticate", "--ca", "c.der"], true),
        "not issued by this CA",
    );
    assert_eq!(json(&o)["reason"], "WrongIssuer");
    let o = ok(dev(d, &["authenticate", "--ca", "c.chip.ca.pem"], true));
    assert_eq!(json(&o)["authenticated"], true);
}

#[test]
fn authenticate_against_factory_cas() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(sesame(&["factory", "init", "--dir", "f"], d));
    ok(sesame(&["factory", "init", "--dir", "g"], d));
    ok(sesame(
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
            "b",
        ],
        d,
    ));
    let image = std::fs::read_dir(d.join("b/chips"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "chip"))
        .unwrap();
    let image = image.to_str().unwrap();
    let auth = |ca: &str| {
        sesame(
            &[
                "device",
                "authenticate",
                "--ca",
                ca,
                "--image",
                image,
                "--key-file",
                "f/chip.key",
                "--json",
            ],
            d,
        )
    };
    for ca in ["b/family-bundle.pem", "f/families/family-1/ca.pem"] {
        let v = json(&ok(auth(ca)));
        assert_eq!(v["authenticated"], true, "{ca}");
        assert_eq!(v["ca"], "CN=family-1,O=sesame");
    }
    let human = sesame(
        &[
            "device",
            "authenticate",
            "--ca",
            "b/family-bundle.pem",
            "--image",
            image,
            "--key-file",
            "f/chip.key",
        ],
        d,
    );
    assert!(text(&ok(human)).starts_with("OK"));
    // Same family name in another factory: the name matches, the signature does not.
    let v = json(&fails(auth("g/families/family-1/ca.pem"), "signature"));
    assert_eq!(v["authenticated"], false);
    assert_eq!(v["reason"], "BadCertificateSignature");
    // The root did not issue the device certificate directly.
    let v = json(&fails(auth("f/root.pem"), "not issued by this CA"));
    assert_eq!(v["reason"], "WrongIssuer");

    // --mac finds the chip's host keys in the batch's host-keys.jsonl by serial.
    ok(sesame(
        &[
            "device",
            "zone",
            "write",
            "--zone",
            "5",
            "--data",
            "aa55",
            "--mac",
            "--image",
            image,
            "--key-file",
            "f/chip.key",
        ],
        d,
    ));
}

#[test]
fn info_over_the_virtual_bus() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    new_chip(d);
    let local = json(&ok(dev(d, &["info"], true)));
    let sock = d.join("bus.sock");
    let target = format!("unix:{}", sock.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .args(["chip", "serve", "--image", "c.chip", "--key-file", "k"])
        .args(["--listen", &target])
        .current_dir(d)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..250 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let remote = sesame(&["device", "info", "--bus", &target, "--json"], d);
    let random = sesame(&["device", "random", "20", "--bus", &target], d);
    child.kill().unwrap();
    child.wait().unwrap();
    let remote = json(&ok(remote));
    assert_eq!(remote["serial"], local["serial"]);
    assert_eq!(remote["certificate"], local["certificate"]);
    assert_eq!(remote["zones"], local["zones"]);
    assert_eq!(
        String::from_utf8(ok(random).stdout).unwrap().trim().len(),
        40
    );
}
