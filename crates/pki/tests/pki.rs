//! The three profiles issue real X.509 that rustls-webpki and the openssl CLI both accept, and
//! that every wrong chain is refused.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use sesame_pki::{
    fingerprint, to_pem, verify_device, Authority, DeviceKey, KeyAlg, VerifyError, PEM_CERT,
};

fn device_key(alg: KeyAlg) -> DeviceKey {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let mut rng = p256::elliptic_curve::rand_core::OsRng;
    let point = match alg {
        KeyAlg::P256 => p256::SecretKey::random(&mut rng)
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
        KeyAlg::P384 => p384::SecretKey::random(&mut rng)
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec(),
    };
    DeviceKey::from_sec1(&point).unwrap()
}

/// Verification time: now (the CAs are issued from yesterday on).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let o = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI is installed by .ci/run");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn chain_verifies_with_webpki_and_openssl_for_both_curves() {
    for alg in [KeyAlg::P256, KeyAlg::P384] {
        let root = Authority::new_root("sesame test", "Root CA", alg).unwrap();
        let family = root.new_family("sesame test", "cameras", alg).unwrap();
        let key = device_key(alg);
        let dev = family
            .issue_device("02AABBCCDDEEFF0011", &key, "sesame test", None)
            .unwrap();
        assert_eq!(&dev[..2], &[0x30, 0x82], "long length form for STSELib");
        let id = verify_device(
            &dev,
            std::slice::from_ref(&family.der),
            std::slice::from_ref(&root.der),
            now(),
        )
        .unwrap();
        assert_eq!(id.serial, "02AABBCCDDEEFF0011");
        assert_eq!(fingerprint(&dev).len(), 64);

        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str, der: &[u8]| {
            let path = dir.path().join(n);
            std::fs::write(&path, to_pem(PEM_CERT, der)).unwrap();
            path.to_str().unwrap().to_string()
        };
        let (r, f, d) = (
            p("root.pem", &root.der),
            p("family.pem", &family.der),
            p("dev.pem", &dev),
        );
        let (ok, out) = openssl(&["verify", "-CAfile", &r, "-untrusted", &f, &d]);
        assert!(ok, "openssl verify: {out}");
        for (file, must) in [
            (&r, "CA:TRUE"),
            (&f, "pathlen:0"),
            (&d, "TLS Web Client Authentication"),
        ] {
            let (ok, text) = openssl(&["x509", "-in", file, "-noout", "-text"]);
            assert!(ok && text.contains(must), "{file}: {text}");
        }
        let (_, text) = openssl(&["x509", "-in", &d, "-noout", "-text"]);
        assert!(text.contains("Digital Signature, Key Agreement"), "{text}");
        assert!(
            text.contains("Not After : Dec 31 23:59:59 9999 GMT"),
            "{text}"
        );
        // openssl refuses the device without its family CA.
        let (ok, _) = openssl(&["verify", "-CAfile", &r, &d]);
        assert!(!ok);
    }
}

#[test]
fn wrong_chains_are_refused() {
    let root = Authority::new_root("sesame", "Root", KeyAlg::P256).unwrap();
    let family = root.new_family("sesame", "pumps", KeyAlg::P256).unwrap();
    let other_root = Authority::new_root("evil", "Root", KeyAlg::P256).unwrap();
    let other_family = other_root
        .new_family("evil", "pumps", KeyAlg::P256)
        .unwrap();
    let key = device_key(KeyAlg::P256);
    let dev = family.issue_device("02", &key, "sesame", None).unwrap();
    let foreign = other_family.issue_device("02", &key, "evil", None).unwrap();
    assert!(matches!(
        verify_device(
            &foreign,
            std::slice::from_ref(&other_family.der),
            std::slice::from_ref(&root.der),
            now()
        ),
        Err(VerifyError::Untrusted(_))
    ));
    assert!(matches!(
        verify_device(&dev, &[], std::slice::from_ref(&root.der), now()),
        Err(VerifyError::Untrusted(_))
    ));
    // A device certificate cannot act as a CA for another device.
    let dev_as_ca = Authority::load(
        &dev,
        &Authority::new_root("x", "x", KeyAlg::P256)
            .unwrap()
            .key_pem(),
    );
    assert!(dev_as_ca.is_err(), "key does not match the certificate");
    // Expired: a device certificate with a two-day life, checked ten days later.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(2);
    let short = family
        .issue_device("03", &key, "sesame", Some(soon))
        .unwrap();
    let chain = std::slice::from_ref(&family.der);
    let roots = std::slice::from_ref(&root.der);
    verify_device(&short, chain, roots, now()).unwrap();
    assert_eq!(
        verify_device(&short, chain, roots, now() + 10 * 86_400),
        Err(VerifyError::Expired)
    );
    // Truncated DER.
    assert!(matches!(
        verify_device(
            &dev[..100],
            std::slice::from_ref(&family.der),
            std::slice::from_ref(&root.der),
            now()
        ),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn authorities_reload_from_pem_and_keep_issuing() {
    let root = Authority::new_root("sesame", "Root", KeyAlg::P256).unwrap();
    let family = root.new_family("sesame", "monitors", KeyAlg::P384).unwrap();
    let reloaded = Authority::load(&family.der, &family.key_pem()).unwrap();
    assert_eq!(reloaded.alg(), KeyAlg::P384);
    let dev = reloaded
        .issue_device("04", &device_key(KeyAlg::P256), "sesame", None)
        .unwrap();
    verify_device(
        &dev,
        std::slice::from_ref(&family.der),
        std::slice::from_ref(&root.der),
        now(),
    )
    .unwrap();
    // A mismatched key/certificate pair and garbage are refused.
    assert!(Authority::load(&family.der, &root.key_pem()).is_err());
    assert!(Authority::load(&family.der, "not a key").is_err());
    assert!(Authority::load(&[0x30, 0x03, 1, 2, 3], &family.key_pem()).is_err());
}
