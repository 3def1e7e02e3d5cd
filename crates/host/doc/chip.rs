// Included by the doc examples (`# include!(...)`): sesame software chips on an in-process bus,
// personalized as a factory would (slot-0 P-256 key, host keys, password, certificate).
#[allow(dead_code, clippy::unwrap_used)]
mod sesame_chip_doc {
    use sesame_chip::{Bus, ChipConfig, ChipOptions, CurveName, Fab, MemStorage, PublicKeyBytes};

    pub const MAC_KEY: [u8; 16] = [0x10; 16];
    pub const CIPHER_KEY: [u8; 16] = [0x20; 16];
    pub const PASSWORD: [u8; 16] = *b"sesame-password!";

    fn fab() -> (Fab, PublicKeyBytes) {
        let mut config = ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0, 1]);
        config.zones[3].size = 128; // zone 3 holds a verification key at offset 0
        let mut fab =
            Fab::new(config, Box::new(MemStorage::new()), ChipOptions::default()).unwrap();
        let pk = fab.generate_key(0, CurveName::P256).unwrap();
        fab.set_host_keys(MAC_KEY, CIPHER_KEY).unwrap();
        fab.set_password(PASSWORD, 3).unwrap();
        fab.write_zone(
            3,
            0,
            &verification_key()
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes(),
        )
        .unwrap();
        (fab, pk)
    }

    /// The signing key whose public key is in zone 3.
    pub fn verification_key() -> p256_nostd::ecdsa::SigningKey {
        p256_nostd::ecdsa::SigningKey::from_slice(&[0x42; 32]).unwrap()
    }

    fn on_bus(fab: Fab) -> Bus {
        let bus = Bus::new();
        bus.attach(fab.finish().unwrap()).unwrap();
        bus
    }

    /// A chip at 0x20 whose zone 0 holds a placeholder certificate header.
    pub fn chip() -> (Bus, PublicKeyBytes) {
        let (mut fab, pk) = fab();
        fab.write_zone(0, 0, &[0x30, 0x82, 0x01, 0x00]).unwrap();
        (on_bus(fab), pk)
    }

    fn ca(cn: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        (p.self_signed(&key).unwrap(), key)
    }

    struct ChipKey(Vec<u8>);

    impl rcgen::PublicKeyData for ChipKey {
        fn der_bytes(&self) -> &[u8] {
            &self.0
        }
        fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
            &rcgen::PKCS_ECDSA_P256_SHA256
        }
    }

    /// A chip whose zone 0 holds a certificate for its slot-0 key, and the issuing CA's DER.
    pub fn chip_with_certificate() -> (Bus, Vec<u8>) {
        let (mut fab, pk) = fab();
        let (ca, ca_key) = ca("sesame doc CA");
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        for (t, v) in [
            (rcgen::DnType::CountryName, "NL"),
            (rcgen::DnType::OrganizationName, "sesame devices"),
            (
                rcgen::DnType::OrganizationalUnitName,
                "documentation examples",
            ),
            (rcgen::DnType::CommonName, "0200000000000001"),
        ] {
            p.distinguished_name.push(t, v);
        }
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let cert = p.signed_by(&ChipKey(pk.to_sec1()), &ca, &ca_key).unwrap();
        fab.write_zone(0, 0, cert.der()).unwrap();
        (on_bus(fab), ca.der().to_vec())
    }

    /// Another CA's certificate.
    pub fn other_ca() -> Vec<u8> {
        ca("another CA").0.der().to_vec()
    }
}
