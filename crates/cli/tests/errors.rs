//! Bad input named with its fix: binary files where PEM is expected, the wrong key for
//! firmware, relative URLs.
#![allow(clippy::unwrap_used)]

mod common;

use common::{fails, operator, text};

#[test]
fn files_of_the_wrong_kind_are_named() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    std::fs::write(d.join("image.bin"), [0xffu8, 0x00, 0x81, 0x7f].repeat(300)).unwrap();
    // The image given as the key (the arguments swapped).
    fails(
        operator(
            &[
                "firmware",
                "sign",
                "--key",
                "image.bin",
                "--version",
                "2",
                "f/root.pem",
            ],
            d,
        ),
        "image.bin is binary data, not a PEM file; expected the firmware-signing key",
    );
    fails(
        operator(&["cloud", "trust-root", "image.bin"], d),
        "image.bin is neither a PEM nor a DER certificate",
    );
    fails(
        operator(
            &[
                "cloud",
                "enroll-family",
                "--bundle",
                "f/families/family-1/ca.pem",
                "--key",
                "image.bin",
            ],
            d,
        ),
        "expected the family CA's private key",
    );
    fails(
        operator(
            &[
                "fleet",
                "run",
                "--cloud",
                "http://127.0.0.1:9",
                "--token",
                "t",
                "--command-pub",
                "image.bin",
            ],
            d,
        ),
        "expected the cloud's command public key",
    );
    fails(
        operator(&["cloud", "serve", "--config", "image.bin"], d),
        "image.bin is binary data",
    );
}

#[test]
fn firmware_is_signed_only_with_the_factory_firmware_key() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    assert!(operator(&["factory", "init", "--dir", "g"], d)
        .status
        .success());
    std::fs::write(d.join("fw.bin"), b"firmware").unwrap();
    let sign = |key: &str, extra: &[&str]| {
        let mut a = vec!["firmware", "sign", "--key", key, "--version", "2", "fw.bin"];
        a.extend(extra);
        operator(&a, d)
    };
    fails(sign("f/command.key.pem", &[]), "is the cloud's command key");
    fails(sign("f/root.key.pem", &[]), "is the root CA's key");
    // Another factory's firmware key, checked against this factory.
    fails(
        sign("g/firmware.key.pem", &["--factory", "f"]),
        "is not the factory's firmware key",
    );
    let o = sign("f/firmware.key.pem", &[]);
    assert!(o.status.success(), "{}", text(&o));
    // A key away from its factory: signed, with a warning that it could not be checked.
    std::fs::copy(d.join("f/firmware.key.pem"), d.join("fw.key.pem")).unwrap();
    let o = sign("fw.key.pem", &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("pass --factory DIR"), "{}", text(&o));
}
