//! Peer-chip authentication against a CA certificate (protocol.md §7): a valid chip passes; a
//! certificate from another CA, an expired or not-yet-valid certificate (with a time), a
//! non-CA issuer, and a chip whose key does not match its certificate each fail with their own
//! error. Certificates are issued with rcgen for the chip's slot-0 public key.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Recorder, Spec};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SignatureAlgorithm,
};
use sesame_chip::{Bus, CurveName, PublicKeyBytes};
use sesame_host::auth::{verify_chain, AuthError, AuthOptions, ChainError};
use sesame_host::{Curve, NoDelay, Stsafe};

/// 2026-05-28, inside the test certificates' validity.
const NOW: u64 = 1_780_000_000;

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "NL");
    dn.push(DnType::OrganizationName, "sesame test fab");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_with(cn: &str, alg: &'static SignatureAlgorithm, is_ca: IsCa) -> Ca {
    let key = KeyPair::generate_for(alg).unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = dn(cn);
    p.is_ca = is_ca;
    p.not_before = date_time_ymd(2024, 1, 1);
    p.not_after = date_time_ymd(2048, 1, 1);
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn ca(cn: &str) -> Ca {
    ca_with(
        cn,
        &rcgen::PKCS_ECDSA_P256_SHA256,
        IsCa::Ca(BasicConstraints::Unconstrained),
    )
}

/// A public key held elsewhere (the chip), for rcgen to certify.
struct ForeignKey {
    sec1: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl ForeignKey {
    fn of(pk: &PublicKeyBytes) -> Self {
        let alg = match pk.curve {
            CurveName::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CurveName::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        Self {
            sec1: pk.to_sec1(),
            alg,
        }
    }
}

impl PublicKeyData for ForeignKey {
    fn der_bytes(&self) -> &[u8] {
        &self.sec1
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        self.alg
    }
}

/// A device certificate for `key` issued by `ca`, valid from..until (years), DER ≥ 256 bytes.
fn leaf(key: &ForeignKey, ca: &Ca, from: i32, until: i32) -> Vec<u8> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "NL");
    dn.push(DnType::StateOrProvinceName, "Noord-Holland");
    dn.push(DnType::LocalityName, "Amsterdam");
    dn.push(DnType::OrganizationName, "sesame devices");
    dn.push(
        DnType::OrganizationalUnitName,
        "secure elements, test batch",
    );
    dn.push(DnType::CommonName, "0200000000000020");
    p.distinguished_name = dn;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.not_before = date_time_ymd(from, 1, 1);
    p.not_after = date_time_ymd(until, 1, 1);
    let der = p.signed_by(key, &ca.cert, &ca.key).unwrap().der().to_vec();
    assert!(
        der.len() >= 256 && der[..2] == [0x30, 0x82],
        "protocol.md §4"
    );
    der
}

/// A chip (slot-0 key on `curve`) whose zone 0 holds `make_cert(its public key)`.
fn chip_with(curve: CurveName, make_cert: impl FnOnce(&PublicKeyBytes) -> Vec<u8>) -> Bus {
    let (mut fab, pk) = common::fab(&Spec {
        curve,
        ..Spec::default()
    });
    fab.write_zone(0, 0, &make_cert(&pk)).unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    bus
}

fn authenticate(bus: &Bus, ca_der: &[u8], now: Option<u64>) -> Result<Curve, AuthError<()>> {
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    se.init().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut cert = [0u8; 1024];
    let options = AuthOptions {
        now,
        ..AuthOptions::default()
    };
    match se.authenticate_peer(ca_der, &options, &mut rng, &mut cert) {
        Ok(key) => Ok(key.curve()),
        Err(AuthError::Driver(e)) => Err(AuthError::Driver(e.map_bus(|_| ()))),
        Err(AuthError::Chain(e)) => Err(AuthError::Chain(e)),
        Err(AuthError::KeyMismatch) => Err(AuthError::KeyMismatch),
        Err(e) => panic!("{e:?}"),
    }
}

#[test]
fn a_genuine_chip_is_authenticated_with_a_challenge_sized_to_its_key() {
    let fab_ca = ca("sesame test CA");
    for (curve, challenge) in [(CurveName::P256, 32usize), (CurveName::P384, 48)] {
        let bus = chip_with(curve, |pk| leaf(&ForeignKey::of(pk), &fab_ca, 2025, 2045));
        let rec = Recorder::new(bus.device());
        let mut se = Stsafe::new(rec.clone(), NoDelay, 0x20);
        se.init().unwrap();
        rec.take();
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let mut cert = [0u8; 1024];
        let options = AuthOptions {
            now: Some(NOW),
            ..Default::default()
        };
        let key = se
            .authenticate_peer(&fab_ca.der(), &options, &mut rng, &mut cert)
            .unwrap();
        let expected = if curve == CurveName::P256 { 64 } else { 96 };
        assert_eq!(key.xy().len(), expected);
        // The certificate was read in chunks of at most 253 bytes, then the challenge signed.
        let writes = rec.writes();
        let reads: Vec<u16> = writes
            .iter()
            .filter(|w| w[0] == 0x05)
            .map(|w| u16::from_be_bytes([w[5], w[6]]))
            .collect();
        assert_eq!(reads[0], 2, "size first: 2 bytes at offset 2");
        assert!(reads[1..].iter().all(|&n| n <= 253) && reads.len() >= 3);
        let sign = writes.iter().find(|w| w[0] == 0x16).unwrap();
        assert_eq!(sign[1], 0, "slot 0");
        assert_eq!(u16::from_be_bytes([sign[2], sign[3]]) as usize, challenge);
    }
}

#[test]
fn a_p384_ca_signs_with_sha384() {
    let p384_ca = ca_with(
        "sesame P-384 CA",
        &rcgen::PKCS_ECDSA_P384_SHA384,
        IsCa::Ca(BasicConstraints::Unconstrained),
    );
    let bus = chip_with(CurveName::P256, |pk| {
        leaf(&ForeignKey::of(pk), &p384_ca, 2025, 2045)
    });
    assert_eq!(
        authenticate(&bus, &p384_ca.der(), Some(NOW)),
        Ok(Curve::P256)
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let fab_ca = ca("sesame test CA");
    let bus = chip_with(CurveName::P256, |pk| {
        leaf(&ForeignKey::of(pk), &fab_ca, 2025, 2045)
    });
    assert_eq!(authenticate(&bus, &fab_ca.der(), None), Ok(Curve::P256));
    // Another CA: its name differs.
    let other = ca("someone else's CA");
    assert_eq!(
        authenticate(&bus, &other.der(), None),
        Err(AuthError::Chain(ChainError::WrongIssuer))
    );
    // An impostor CA with the same name and another key.
    let impostor = ca("sesame test CA");
    assert_eq!(
        authenticate(&bus, &impostor.der(), None),
        Err(AuthError::Chain(ChainError::BadCertificateSignature))
    );
    assert_eq!(
        authenticate(&bus, b"not a certificate", None),
        Err(AuthError::Chain(ChainError::MalformedCa))
    );
}

#[test]
fn dates_are_checked_only_when_the_caller_gives_the_time() {
    let fab_ca = ca("sesame test CA");
    let expired = chip_with(CurveName::P256, |pk| {
        leaf(&ForeignKey::of(pk), &fab_ca, 2015, 2020)
    });
    assert_eq!(
        authenticate(&expired, &fab_ca.der(), Some(NOW)),
        Err(AuthError::Chain(ChainError::Expired))
    );
    // Without a time, as STSELib: no date check.
    assert_eq!(authenticate(&expired, &fab_ca.der(), None), Ok(Curve::P256));
    let future = chip_with(CurveName::P256, |pk| {
        leaf(&ForeignKey::of(pk), &fab_ca, 2030, 2040)
    });
    assert_eq!(
        authenticate(&future, &fab_ca.der(), Some(NOW)),
        Err(AuthError::Chain(ChainError::NotYetValid))
    );
}

#[test]
fn an_issuer_that_is_not_a_ca_is_refused() {
    for is_ca in [IsCa::NoCa, IsCa::ExplicitNoCa] {
        let not_ca = ca_with("sesame test CA", &rcgen::PKCS_ECDSA_P256_SHA256, is_ca);
        let bus = chip_with(CurveName::P256, |pk| {
            leaf(&ForeignKey::of(pk), &not_ca, 2025, 2045)
        });
        assert_eq!(
            authenticate(&bus, &not_ca.der(), Some(NOW)),
            Err(AuthError::Chain(ChainError::IssuerNotCa))
        );
    }
}

#[test]
fn a_chip_without_the_certified_key_is_refused() {
    let fab_ca = ca("sesame test CA");
    // A certificate for some other key (e.g. copied from a genuine chip) in this chip's zone.
    let stranger = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let bus = chip_with(CurveName::P256, |_| {
        let key = ForeignKey {
            sec1: stranger.public_key_raw().to_vec(),
            alg: &rcgen::PKCS_ECDSA_P256_SHA256,
        };
        leaf(&key, &fab_ca, 2025, 2045)
    });
    assert_eq!(
        authenticate(&bus, &fab_ca.der(), Some(NOW)),
        Err(AuthError::KeyMismatch)
    );
}

#[test]
fn an_altered_certificate_is_refused() {
    let fab_ca = ca("sesame test CA");
    let bus = chip_with(CurveName::P256, |pk| {
        let mut der = leaf(&ForeignKey::of(pk), &fab_ca, 2025, 2045);
        // "Amsterdam" → "Amsterdan": still DER, no longer what the CA signed.
        let at = der.windows(9).position(|w| w == b"Amsterdam").unwrap();
        der[at + 8] = b'n';
        der
    });
    assert_eq!(
        authenticate(&bus, &fab_ca.der(), None),
        Err(AuthError::Chain(ChainError::BadCertificateSignature))
    );
}

#[test]
fn issuer_names_compare_ignoring_case() {
    // Two CA certificates over the same key whose names differ only in case.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let make = |cn: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = dn(cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap()
    };
    let lower = Ca {
        cert: make("sesame test ca"),
        key: KeyPair::from_pem(&key.serialize_pem()).unwrap(),
    };
    let upper = make("SESAME TEST CA");
    let device = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let fk = ForeignKey {
        sec1: device.public_key_raw().to_vec(),
        alg: &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let der = leaf(&fk, &lower, 2025, 2045);
    assert!(verify_chain(upper.der(), &der, Some(NOW)).is_ok());
    assert_eq!(
        verify_chain(upper.der(), &der[..der.len() - 1], None),
        Err(ChainError::MalformedCertificate)
    );
}
