//! The attack suite of the identity and trust model, on SQLite and PostgreSQL. Each test is
//! one finding from an outside review: the attacker's version is refused, the genuine device
//! keeps working, and nothing a stranger sends grows the database or locks a device out.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::str::FromStr;

use std::sync::Arc;

use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use serde_json::json;
use sesame_chip::CurveName;
use sesame_pki::KeyAlg;
use x509_cert::der::asn1::{BitString, ObjectIdentifier, OctetString};
use x509_cert::der::{Any, Encode};
use x509_cert::ext::pkix::{KeyUsage, KeyUsages};

/// Finding 1: re-encoding the family's signature (s → n − s) does not undo a revocation.
async fn reencoded_certificate_stays_revoked(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let original = dev.cert.clone();
    let twin = malleate(&original);
    // The re-encoded certificate is valid and is the same device.
    dev.cert = twin.clone();
    ok(&login(&s, &mut dev).await);
    dev.cert = original.clone();
    ok(&login(&s, &mut dev).await);
    let r = revoke(
        &s,
        json!({ "fingerprint": sesame_pki::fingerprint(&original) }),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    for cert in [&original, &twin] {
        dev.cert = cert.clone();
        refused(
            &login(&s, &mut dev).await,
            StatusCode::UNAUTHORIZED,
            "revoked",
        );
    }
}

/// Finding 2: a certificate from another enrolled family with the same serial is not that device.
async fn serial_is_scoped_by_family(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let other_family = pki
        .root
        .new_family("sesame test", "pumps", KeyAlg::P256)
        .unwrap();
    assert!(enroll_family(&s, &other_family).await.0.is_success());
    let mut victim = Device::new(&pki.family, CurveName::P256);
    ok(&login(&s, &mut victim).await);
    let mut impostor = Device::with_serial(&other_family, CurveName::P256, &victim.serial);
    refused(
        &login(&s, &mut impostor).await,
        StatusCode::UNAUTHORIZED,
        "serial_conflict",
    );
    // The genuine device is untouched.
    ok(&login(&s, &mut victim).await);
    let (_, d) = call(
        &s,
        "GET",
        &format!("/v1/admin/devices/{}", victim.serial),
        None,
        true,
    )
    .await;
    assert_eq!(
        d["certificates"][0]["owner"],
        sesame_pki::fingerprint(&pki.family.der)
    );
}

/// Finding 3: nothing an unauthenticated caller sends throttles or audits a named device.
async fn strangers_cannot_lock_a_device_out(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut victim = Device::new(&pki.family, CurveName::P256);
    let attacker = "198.51.100.9";
    // Self-signed certificates naming the victim, and challenges for its public certificate
    // answered with garbage, all from one address.
    for _ in 0..5 {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, victim.serial.as_str());
        p.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let fake = p.self_signed(&key).unwrap();
        refused(
            &challenge_from(&s, attacker, fake.der()).await,
            StatusCode::UNAUTHORIZED,
            "not_enrolled",
        );
    }
    let mut throttled = 0;
    for _ in 0..60 {
        let (st, c) = challenge_from(&s, attacker, &victim.cert).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            throttled += 1;
            continue;
        }
        respond_from(&s, attacker, &c["challenge_id"], &[7u8; 64]).await;
    }
    assert!(throttled > 0, "the attacking address is throttled");
    // The victim, from its own address, logs in at once.
    let (st, c) = challenge_from(&s, "203.0.113.5", &victim.cert).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    let sig = victim.answer(&c);
    let (st, body) = respond_from(&s, "203.0.113.5", &c["challenge_id"], &sig).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // The audit log holds aggregated rows, not one per attempt.
    s.flush_audit().await.unwrap();
    let (_, log) = call(&s, "GET", "/v1/admin/audit", None, true).await;
    let failures: Vec<_> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "auth_failure")
        .collect();
    assert!(failures.len() <= 3, "{failures:?}");
    assert!(failures
        .iter()
        .all(|e| e["serial"] == "" || e["serial"] == victim.serial.as_str()));
    assert_eq!(s.store.table_rows("rates").await.unwrap(), Some(0));
}

/// Finding 4: validity is checked at every login, cached chain or not, for the leaf and its
/// family CA.
async fn expiry_holds_after_a_cached_login(db: Db) {
    let clock = Arc::new(sesame_cloud::clock::ManualClock::new());
    let s = cloud_on(&db, clock.clone(), |_| {}).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    // A leaf that expires in 3 s, and a family CA that does.
    let mut leaf = Device::new(&pki.family, CurveName::P256);
    leaf.cert = resign(&leaf.cert, &pki.family, |t| t.validity = validity_for(3));
    let brief = pki
        .root
        .new_family("sesame test", "brief", KeyAlg::P256)
        .unwrap();
    let short_der = resign(&brief.der, &pki.root, |t| t.validity = validity_for(3));
    let short = sesame_pki::Authority::load(&short_der, &brief.key_pem()).unwrap();
    let mut late = Device::new(&short, CurveName::P256);
    assert!(enroll_family(&s, &short).await.0.is_success());
    ok(&login(&s, &mut leaf).await);
    ok(&login(&s, &mut late).await);
    clock.advance(4);
    refused(
        &login(&s, &mut leaf).await,
        StatusCode::UNAUTHORIZED,
        "expired",
    );
    refused(
        &challenge(&s, &late.cert).await,
        StatusCode::UNAUTHORIZED,
        "expired",
    );
}

fn ku(flags: flagset::FlagSet<KeyUsages>) -> x509_cert::ext::Extension {
    x509_cert::ext::Extension {
        extn_id: ObjectIdentifier::new_unwrap("2.5.29.15"),
        critical: true,
        extn_value: OctetString::new(KeyUsage(flags).to_der().unwrap()).unwrap(),
    }
}

fn without(t: &mut x509_cert::TbsCertificate, oid: &str) {
    let oid = ObjectIdentifier::new_unwrap(oid);
    if let Some(e) = t.extensions.as_mut() {
        e.retain(|x| x.extn_id != oid);
    }
}

fn with_ku(t: &mut x509_cert::TbsCertificate, flags: flagset::FlagSet<KeyUsages>) {
    without(t, "2.5.29.15");
    t.extensions.get_or_insert_with(Vec::new).push(ku(flags));
}

fn curve(t: &mut x509_cert::TbsCertificate, alg: &str, named: Option<&str>) {
    let spki = &mut t.subject_public_key_info;
    spki.algorithm.oid = ObjectIdentifier::new_unwrap(alg);
    spki.algorithm.parameters =
        named.map(|n| Any::encode_from(&ObjectIdentifier::new_unwrap(n)).unwrap());
}

/// Finding 5: the device profile, checked at the challenge with a reason.
async fn profile_is_enforced(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let p256_dev = Device::new(&pki.family, CurveName::P256);
    let p384_dev = Device::new(&pki.family, CurveName::P384);
    type Tweak = Box<dyn Fn(&mut x509_cert::TbsCertificate)>;
    let cases: Vec<(&str, &[u8], Tweak, &str)> = vec![
        (
            "no EKU",
            &p256_dev.cert,
            Box::new(|t| without(t, "2.5.29.37")),
            "wrong_key_usage",
        ),
        (
            "no keyUsage",
            &p256_dev.cert,
            Box::new(|t| without(t, "2.5.29.15")),
            "wrong_key_usage",
        ),
        (
            "keyUsage without digitalSignature",
            &p256_dev.cert,
            Box::new(|t| with_ku(t, KeyUsages::KeyAgreement.into())),
            "wrong_key_usage",
        ),
        (
            "keyCertSign on a leaf",
            &p256_dev.cert,
            Box::new(|t| with_ku(t, KeyUsages::DigitalSignature | KeyUsages::KeyCertSign)),
            "not_end_entity",
        ),
        (
            "zero serial",
            &p256_dev.cert,
            Box::new(|t| {
                t.serial_number = x509_cert::serial_number::SerialNumber::new(&[0]).unwrap()
            }),
            "invalid_serial_number",
        ),
        (
            "secp384r1 SPKI holding a P-256 point",
            &p256_dev.cert,
            Box::new(|t| curve(t, "1.2.840.10045.2.1", Some("1.3.132.0.34"))),
            "curve_mismatch",
        ),
        (
            "prime256v1 SPKI holding a P-384 point",
            &p384_dev.cert,
            Box::new(|t| curve(t, "1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7"))),
            "curve_mismatch",
        ),
        (
            "P-521",
            &p384_dev.cert,
            Box::new(|t| curve(t, "1.2.840.10045.2.1", Some("1.3.132.0.35"))),
            "unsupported_key",
        ),
        (
            "Ed25519",
            &p256_dev.cert,
            Box::new(|t| {
                curve(t, "1.3.101.112", None);
                t.subject_public_key_info.subject_public_key =
                    BitString::from_bytes(&[9u8; 32]).unwrap();
            }),
            "unsupported_key",
        ),
        (
            "RSA",
            &p256_dev.cert,
            Box::new(|t| curve(t, "1.2.840.113549.1.1.1", None)),
            "unsupported_key",
        ),
        (
            "lower-case CN",
            &p256_dev.cert,
            Box::new(|t| t.subject = x509_cert::name::Name::from_str("CN=abc").unwrap()),
            "bad_serial",
        ),
        (
            "40 kB CN",
            &p256_dev.cert,
            Box::new(|t| {
                t.subject =
                    x509_cert::name::Name::from_str(&format!("CN={}", "A".repeat(40_000))).unwrap()
            }),
            "bad_serial",
        ),
    ];
    let n = cases.len();
    for (what, der, tweak, reason) in cases {
        let bad = resign(der, &pki.family, tweak);
        let r = challenge(&s, &bad).await;
        assert_eq!(r.1["error"], reason, "{what}: {}", r.1);
        refused(&r, StatusCode::UNAUTHORIZED, reason);
    }
    assert_eq!(n, 12);
    // A negative serial cannot even be parsed as a certificate by a strict decoder, or is
    // refused by the profile: never a session.
    let neg = resign(&p256_dev.cert, &pki.family, |t| {
        use x509_cert::der::Decode;
        t.serial_number =
            x509_cert::serial_number::SerialNumber::from_der(&[0x02, 0x02, 0xff, 0x01]).unwrap()
    });
    let r = challenge(&s, &neg).await;
    assert!(
        r.1["error"] == "invalid_serial_number" || r.1["error"] == "malformed_certificate",
        "{}",
        r.1
    );
    assert_eq!(r.0, StatusCode::UNAUTHORIZED);
}

/// Finding 6: a family revoked between challenge and response gets no token.
async fn family_revoked_mid_login(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (_, c) = challenge(&s, &dev.cert).await;
    let sig = dev.answer(&c);
    assert!(revoke(&s, json!({ "family": "cameras" }))
        .await
        .0
        .is_success());
    refused(
        &respond(&s, &c["challenge_id"], &sig, None).await,
        StatusCode::UNAUTHORIZED,
        "family_revoked",
    );
    // And unrevoking lets it back in.
    let r = call(
        &s,
        "POST",
        "/v1/admin/unrevoke",
        Some(json!({ "family": "cameras" })),
        true,
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    ok(&login(&s, &mut dev).await);
}

/// Finding 7: revocation input is normalized; what matches nothing is a 404.
async fn revocation_names_what_it_matched(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    ok(&login(&s, &mut dev).await);
    let unknown = revoke(&s, json!({ "serial": "NEVER-SEEN-1" })).await;
    assert_eq!(unknown.0, StatusCode::NOT_FOUND, "{}", unknown.1);
    let fp = revoke(&s, json!({ "fingerprint": "ab".repeat(32) })).await;
    assert_eq!(fp.0, StatusCode::NOT_FOUND, "{}", fp.1);
    let bad = revoke(&s, json!({ "fingerprint": "xyz" })).await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);
    // Wrong case and spaces: the same device.
    let r = revoke(
        &s,
        json!({ "serial": format!(" {} ", dev.serial.to_lowercase()) }),
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    assert_eq!(r.1["revoked"][0]["serial"], dev.serial);
    refused(
        &login(&s, &mut dev).await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
    let r = call(
        &s,
        "POST",
        "/v1/admin/unrevoke",
        Some(json!({ "serial": dev.serial })),
        true,
    )
    .await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    ok(&login(&s, &mut dev).await);
    let again = call(
        &s,
        "POST",
        "/v1/admin/unrevoke",
        Some(json!({ "serial": dev.serial })),
        true,
    )
    .await;
    assert_eq!(again.0, StatusCode::NOT_FOUND, "{}", again.1);
    // Pre-revoking a serial not yet seen takes an explicit flag, and holds when it shows up.
    let mut fresh = Device::new(&pki.family, CurveName::P256);
    let r = revoke(&s, json!({ "serial": fresh.serial, "pre_revoke": true })).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    refused(
        &login(&s, &mut fresh).await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
    // A certificate can be revoked before it is ever used, by giving it.
    let mut cert_dev = Device::new(&pki.family, CurveName::P256);
    let r = revoke(&s, json!({ "certificate": B64.encode(&cert_dev.cert) })).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    refused(
        &login(&s, &mut cert_dev).await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
}

/// Finding 8: unauthenticated requests do not grow the database; retention removes what expired.
async fn refusals_do_not_grow_storage(db: Db) {
    let s = cloud_with(&db, |c| {
        c.challenge_ttl = 1;
        c.session_ttl = 1;
        c.max_refusals_per_client = 1_000;
    })
    .await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let dev = Device::new(&pki.family, CurveName::P256);
    s.flush_audit().await.unwrap();
    let before = s.store.table_rows("audit").await.unwrap().unwrap();
    for i in 0..100 {
        let big = resign(&dev.cert, &pki.family, |t| {
            t.subject =
                x509_cert::name::Name::from_str(&format!("CN={i}{}", "Q".repeat(40_000))).unwrap()
        });
        refused(
            &challenge(&s, &big).await,
            StatusCode::UNAUTHORIZED,
            "bad_serial",
        );
        let stranger = Pki::new(KeyAlg::P256);
        let alien = Device::new(&stranger.family, CurveName::P256);
        refused(
            &challenge(&s, &alien.cert).await,
            StatusCode::UNAUTHORIZED,
            "not_enrolled",
        );
    }
    s.flush_audit().await.unwrap();
    let after = s.store.table_rows("audit").await.unwrap().unwrap();
    assert!(
        after - before <= 2,
        "{before} → {after} audit rows for 200 refusals"
    );
    // An unanswered challenge stores nothing; a login is one session row, which records the
    // login for the audit log until the retention period ends.
    let mut d2 = Device::new(&pki.family, CurveName::P256);
    for _ in 0..20 {
        let _ = challenge(&s, &d2.cert).await;
    }
    assert_eq!(s.store.table_rows("challenges").await.unwrap(), Some(0));
    assert_eq!(s.store.table_rows("sessions").await.unwrap(), Some(0));
    ok(&login(&s, &mut d2).await);
    assert_eq!(s.store.table_rows("sessions").await.unwrap(), Some(1));
    s.housekeeping().await.unwrap();
    assert_eq!(s.store.table_rows("sessions").await.unwrap(), Some(1));
}

/// Finding 10: no session for a revoked device, no revocation oracle, no 5xx for NUL.
async fn no_leaks_and_no_5xx(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (_, ok_login) = login(&s, &mut dev).await;
    let token = ok_login["token"].as_str().unwrap().to_string();
    assert!(revoke(&s, json!({ "serial": dev.serial }))
        .await
        .0
        .is_success());
    let req = axum::http::Request::builder()
        .uri("/v1/session")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let r = raw(&s, req).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{}", r.1);
    // An untrusted certificate naming a revoked serial and one naming nothing known: one answer.
    let stranger = Pki::new(KeyAlg::P256);
    let named = Device::with_serial(&stranger.family, CurveName::P256, &dev.serial);
    let anon = Device::new(&stranger.family, CurveName::P256);
    let a = challenge(&s, &named.cert).await;
    let b = challenge(&s, &anon.cert).await;
    refused(&a, StatusCode::UNAUTHORIZED, "not_enrolled");
    assert_eq!(a, b);
    // NUL in a path, a query and a JSON string: 400, never 5xx, on both databases.
    for path in ["/v1/admin/devices/A%00B", "/v1/admin/audit?serial=%00"] {
        let r = call(&s, "GET", path, None, true).await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{path}: {}", r.1);
        assert_eq!(r.1["error"], "unstorable_input");
    }
    let r = call(
        &s,
        "POST",
        "/v1/admin/revoke",
        Some(json!({ "serial": "A\u{0}B" })),
        true,
    )
    .await;
    assert_eq!(r.0, StatusCode::BAD_REQUEST, "{}", r.1);
    let r = call(
        &s,
        "POST",
        "/v1/admin/devices",
        Some(json!({ "certificate": "\u{0}" })),
        true,
    )
    .await;
    assert_eq!(r.0, StatusCode::BAD_REQUEST, "{}", r.1);
    let nul_cn = resign(&anon.cert, &stranger.family, |t| {
        t.subject = x509_cert::name::Name::from_str("CN=A\\00B").unwrap()
    });
    let r = challenge(&s, &nul_cn).await;
    assert!(r.0.is_client_error(), "{}", r.1);
}

/// Operator mistakes: a leaf or a family CA as a root, a root as a family; untrusting a root
/// refuses its devices.
async fn operator_mistakes_are_refused(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    let dev = Device::new(&pki.family, CurveName::P256);
    for (what, der) in [("a leaf", &dev.cert), ("a family CA", &pki.family.der)] {
        let r = call(
            &s,
            "POST",
            "/v1/admin/roots",
            Some(json!({ "certificate": B64.encode(der) })),
            true,
        )
        .await;
        assert_eq!(r.0, StatusCode::BAD_REQUEST, "{what}: {}", r.1);
        assert_eq!(r.1["error"], "not_a_root");
    }
    pki.enroll(&s).await;
    let r = enroll_family(&s, &pki.root).await;
    assert_eq!(r.1["error"], "is_root", "{}", r.1);
    let mut dev = dev;
    ok(&login(&s, &mut dev).await);
    let fp = sesame_pki::fingerprint(&pki.root.der).to_uppercase();
    let r = call(&s, "DELETE", &format!("/v1/admin/roots/{fp}"), None, true).await;
    assert_eq!(r.0, StatusCode::OK, "{}", r.1);
    refused(
        &login(&s, &mut dev).await,
        StatusCode::UNAUTHORIZED,
        "not_enrolled",
    );
    let r = call(&s, "DELETE", &format!("/v1/admin/roots/{fp}"), None, true).await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.1);
}

/// A certificate that names an enrolled family as its issuer (its name and its authority key
/// id, the index the family is found by) but is signed by someone else is untrusted.
async fn a_borrowed_authority_key_id_is_not_trust(db: Db) {
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut genuine = Device::new(&pki.family, CurveName::P256);
    ok(&login(&s, &mut genuine).await);
    let stranger = Pki::new(KeyAlg::P256);
    let mut forged = Device::new(&pki.family, CurveName::P256);
    // Same issuer name and authority key id as the family's devices, signed by a stranger.
    forged.cert = resign(&forged.cert, &stranger.family, |t| {
        t.serial_number = x509_cert::serial_number::SerialNumber::new(&[0x42, 1]).unwrap();
    });
    refused(
        &challenge(&s, &forged.cert).await,
        StatusCode::UNAUTHORIZED,
        "not_enrolled",
    );
    ok(&login(&s, &mut genuine).await);
}

on_both!(
    a_borrowed_authority_key_id_is_not_trust,
    reencoded_certificate_stays_revoked,
    serial_is_scoped_by_family,
    strangers_cannot_lock_a_device_out,
    expiry_holds_after_a_cached_login,
    profile_is_enforced,
    family_revoked_mid_login,
    revocation_names_what_it_matched,
    refusals_do_not_grow_storage,
    no_leaks_and_no_5xx,
    operator_mistakes_are_refused
);
