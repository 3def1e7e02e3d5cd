//! The module as real PKCS#11 applications load it: `pkcs11-tool` (OpenSC) lists the
//! objects, signs in the chip, reads the certificate, draws random bytes and derives an ECDH
//! secret; OpenSSL 3 through `libengine-pkcs11-openssl` makes a CSR signed by the chip and
//! verifies it. Each runs as its own process against a chip served on a Unix socket; each
//! signature is checked with the certificate's key, each secret against OpenSSL's own ECDH.
//! (`.ci/run` installs opensc and libengine-pkcs11-openssl.)
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{module_path, serve, Served};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sesame_chip::CurveName;
use sha2::Digest;

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `pkcs11-tool --module LIB ARGS` with the bus in the environment, in `dir`.
fn tool(chip: &Served, dir: &Path, args: &[&str]) -> Output {
    run(Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args(args)
        .current_dir(dir)
        .env("SESAME_PKCS11_BUS", &chip.bus))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn pkcs11_tool_lists_signs_reads_and_derives() {
    let chip = serve(CurveName::P256, true, 3);
    let t = tempfile::tempdir().unwrap();
    let d = t.path();

    let listing = stdout(&tool(&chip, d, &["--list-objects"]));
    for want in [
        "Private Key Object; EC",
        "never extractable",
        "Public Key Object; EC",
        "Certificate Object; type = X.509 cert",
        "ID:         00",
        "ID:         01",
    ] {
        assert!(listing.contains(want), "{want:?} missing from:\n{listing}");
    }
    let token = stdout(&tool(&chip, d, &["--list-token-slots"]));
    assert!(
        token.contains("STSAFE-A110") && token.contains("rng"),
        "{token}"
    );

    // Sign a SHA-256 digest with slot 0 (CKM_ECDSA), raw R || S; and a message with
    // CKM_ECDSA_SHA256; slot 1 too. Each verifies with the key the test knows.
    let msg = b"signed through pkcs11-tool";
    std::fs::write(d.join("msg"), msg).unwrap();
    std::fs::write(d.join("digest"), sha2::Sha256::digest(msg)).unwrap();
    let verify = |key: &sesame_chip::PublicKeyBytes, sig_file: &str| {
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.to_sec1()).unwrap();
        let rs = std::fs::read(d.join(sig_file)).unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&rs).unwrap();
        vk.verify_prehash(&sha2::Sha256::digest(msg), &sig)
            .unwrap_or_else(|e| panic!("{sig_file}: {e}"));
    };
    tool(
        &chip,
        d,
        &[
            "--sign", "-m", "ECDSA", "--id", "00", "-i", "digest", "-o", "s0",
        ],
    );
    verify(&chip.slot0, "s0");
    tool(
        &chip,
        d,
        &[
            "--sign",
            "-m",
            "ECDSA-SHA256",
            "--id",
            "00",
            "-i",
            "msg",
            "-o",
            "s1",
        ],
    );
    verify(&chip.slot0, "s1");
    tool(
        &chip,
        d,
        &[
            "--sign", "-m", "ECDSA", "--id", "01", "-i", "digest", "-o", "s2",
        ],
    );
    verify(chip.slot1.as_ref().unwrap(), "s2");

    // The certificate, byte for byte.
    tool(
        &chip,
        d,
        &[
            "--read-object",
            "--type",
            "cert",
            "--id",
            "00",
            "-o",
            "c.der",
        ],
    );
    assert_eq!(std::fs::read(d.join("c.der")).unwrap(), chip.cert);
    // The private key cannot be read out.
    let o = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .args([
            "--read-object",
            "--type",
            "privkey",
            "--id",
            "00",
            "-o",
            "k.der",
        ])
        .current_dir(d)
        .env("SESAME_PKCS11_BUS", &chip.bus)
        .output()
        .unwrap();
    assert!(!o.status.success() || !d.join("k.der").exists());

    // Random from the chip.
    tool(&chip, d, &["--generate-random", "64", "-o", "r"]);
    let r = std::fs::read(d.join("r")).unwrap();
    assert_eq!(r.len(), 64);
    assert!(r.iter().any(|b| *b != 0));

    // ECDH: the chip's secret with a peer key equals OpenSSL's from the peer's side.
    run(Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "peer.pem",
        ])
        .current_dir(d));
    run(Command::new("openssl")
        .args([
            "ec", "-in", "peer.pem", "-pubout", "-outform", "der", "-out", "peer.der",
        ])
        .current_dir(d));
    tool(
        &chip,
        d,
        &[
            "--derive",
            "-m",
            "ECDH1-DERIVE",
            "--id",
            "00",
            "-i",
            "peer.der",
            "-o",
            "secret",
        ],
    );
    std::fs::write(d.join("chip.pem"), pem_public(&chip.slot0.to_sec1())).unwrap();
    let theirs = run(Command::new("openssl")
        .args([
            "pkeyutl", "-derive", "-inkey", "peer.pem", "-peerkey", "chip.pem",
        ])
        .current_dir(d))
    .stdout;
    assert_eq!(std::fs::read(d.join("secret")).unwrap(), theirs);
}

/// A SEC1 P-256 point as a PEM public key, for OpenSSL.
fn pem_public(sec1: &[u8]) -> String {
    use p256::pkcs8::EncodePublicKey;
    p256::PublicKey::from_sec1_bytes(sec1)
        .unwrap()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
}

/// OpenSSL 3 with the pkcs11 engine: `openssl req` makes a CSR whose signature is made in the
/// chip (P-256 and P-384), `openssl req -verify` checks it, and its key is the certificate's.
#[test]
fn openssl_makes_a_csr_signed_by_the_chip() {
    for (curve, seed) in [(CurveName::P256, 4), (CurveName::P384, 5)] {
        let chip = serve(curve, false, seed);
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("cert.der"), &chip.cert).unwrap();
        run(Command::new("openssl")
            .args(["req", "-new", "-engine", "pkcs11", "-keyform", "engine"])
            .args([
                "-key",
                "pkcs11:id=%00;type=private",
                "-subj",
                "/CN=sesame device",
            ])
            .args(["-out", "csr.pem"])
            .current_dir(d)
            .env("PKCS11_MODULE_PATH", module_path())
            .env("SESAME_PKCS11_BUS", &chip.bus));
        let v = run(Command::new("openssl")
            .args(["req", "-in", "csr.pem", "-verify", "-noout"])
            .current_dir(d));
        let said = format!("{}{}", stdout(&v), String::from_utf8_lossy(&v.stderr));
        assert!(said.contains("verify OK"), "{curve:?}: {said}");
        let csr_key = run(Command::new("openssl")
            .args(["req", "-in", "csr.pem", "-pubkey", "-noout"])
            .current_dir(d))
        .stdout;
        let cert_key = run(Command::new("openssl")
            .args([
                "x509", "-inform", "der", "-in", "cert.der", "-pubkey", "-noout",
            ])
            .current_dir(d))
        .stdout;
        assert_eq!(csr_key, cert_key, "{curve:?}");
    }
}

/// Without a bus setting the module refuses to start, and says what to set.
#[test]
fn pkcs11_tool_without_a_bus_is_told_what_to_set() {
    let o = Command::new("pkcs11-tool")
        .arg("--module")
        .arg(module_path())
        .arg("--list-slots")
        .env_remove("SESAME_PKCS11_BUS")
        .env_remove("SESAME_PKCS11_CONFIG")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("SESAME_PKCS11_BUS"), "{err}");
}
