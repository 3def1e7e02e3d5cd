//! Issuing: root CA, family CA, device certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::Error;

/// RFC 5280 §4.1.2.5: `99991231235959Z` means "no well-defined expiration date", the right
/// notAfter for a device identity that must outlive any planned lifetime.
pub const DEVICE_NOT_AFTER_NONE: (i32, u8, u8) = (9999, 12, 31);

/// Key algorithm of a CA or device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyAlg {
    /// ECDSA P-256 with SHA-256.
    #[default]
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
}

impl KeyAlg {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// The algorithm of an uncompressed SEC1 public key, by its length.
    pub fn of_sec1(point: &[u8]) -> Option<Self> {
        match point.len() {
            65 => Some(Self::P256),
            97 => Some(Self::P384),
            _ => None,
        }
    }
}

fn end_of_day(y: i32, m: u8, d: u8) -> OffsetDateTime {
    rcgen::date_time_ymd(y, m, d) + time::Duration::seconds(23 * 3600 + 59 * 60 + 59)
}

fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    // A positive 127-bit serial from the OS generator, as RFC 5280 §4.1.2.2 recommends.
    p256::elliptic_curve::rand_core::RngCore::fill_bytes(
        &mut p256::elliptic_curve::rand_core::OsRng,
        &mut b,
    );
    b[0] &= 0x7F;
    b[0] |= 0x01;
    SerialNumber::from_slice(&b)
}

fn name(org: &str, cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    dn
}

/// A CA: its certificate and its private key (root or family).
pub struct Authority {
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    key: KeyPair,
    /// rcgen's view of the CA, used as the issuer of what it signs.
    issuer: rcgen::Certificate,
    alg: KeyAlg,
}

impl core::fmt::Debug for Authority {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Authority")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed root CA (valid 25 years from now).
    pub fn new_root(organization: &str, common_name: &str, alg: KeyAlg) -> Result<Self, Error> {
        let key = KeyPair::generate_for(alg.rcgen())?;
        let mut p = CertificateParams::default();
        p.distinguished_name = name(organization, common_name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(365 * 25);
        let cert = p.self_signed(&key)?;
        Ok(Self {
            der: cert.der().to_vec(),
            issuer: cert,
            key,
            alg,
        })
    }

    /// A family CA signed by this (root) CA: an intermediate with pathLen 0 and keyCertSign,
    /// so it can sign devices and nothing else.
    pub fn new_family(&self, organization: &str, family: &str, alg: KeyAlg) -> Result<Self, Error> {
        let key = KeyPair::generate_for(alg.rcgen())?;
        let mut p = CertificateParams::default();
        p.distinguished_name = name(organization, family);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::days(1);
        p.not_after = now + time::Duration::days(365 * 20);
        let cert = p.signed_by(&key, &self.issuer, &self.key)?;
        Ok(Self {
            der: cert.der().to_vec(),
            issuer: cert,
            key,
            alg,
        })
    }

    /// Loads a CA from its certificate (DER) and private key (PKCS#8 PEM).
    pub fn load(der: &[u8], key_pem: &str) -> Result<Self, Error> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| Error::Parse(format!("CA key: {e}")))?;
        let alg = if key.is_compatible(&rcgen::PKCS_ECDSA_P384_SHA384) {
            KeyAlg::P384
        } else if key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            KeyAlg::P256
        } else {
            return Err(Error::Parse("CA key is not ECDSA P-256 or P-384".into()));
        };
        let params = CertificateParams::from_ca_cert_der(&CertificateDer::from(der.to_vec()))
            .map_err(|e| Error::Parse(format!("CA certificate: {e}")))?;
        let spki = crate::verify::spki_point(der)?;
        if spki != key.public_key_raw() {
            return Err(Error::Parse(
                "CA key does not match the CA certificate".into(),
            ));
        }
        // rcgen needs a Certificate object as the issuer; re-signing the parsed parameters
        // reproduces the CA's name and key identifier (the DER we keep is the original).
        let issuer = params.self_signed(&key)?;
        Ok(Self {
            der: der.to_vec(),
            issuer,
            key,
            alg,
        })
    }

    /// The private key as PKCS#8 PEM (to write a 0600 file).
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The CA's key algorithm.
    pub fn alg(&self) -> KeyAlg {
        self.alg
    }

    /// Issues a device certificate for a public key that lives in a chip. `not_after` defaults
    /// to "no well-defined expiration". The DER is checked to use the `30 82` length form.
    pub fn issue_device(
        &self,
        serial_hex: &str,
        device: &DeviceKey,
        organization: &str,
        not_after: Option<OffsetDateTime>,
    ) -> Result<Vec<u8>, Error> {
        let mut p = CertificateParams::default();
        p.distinguished_name = name(organization, serial_hex);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(random_serial());
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        let (y, m, d) = DEVICE_NOT_AFTER_NONE;
        p.not_after = not_after.unwrap_or_else(|| end_of_day(y, m, d));
        let der = p.signed_by(device, &self.issuer, &self.key)?.der().to_vec();
        if der.len() < 256 || der[..2] != [0x30, 0x82] {
            return Err(Error::ShortForm);
        }
        Ok(der)
    }
}

/// A device's public key (uncompressed SEC1 point), as a chip returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceKey {
    point: Vec<u8>,
    alg: KeyAlg,
}

impl DeviceKey {
    /// From `04 || X || Y` (65 bytes for P-256, 97 for P-384).
    pub fn from_sec1(point: &[u8]) -> Result<Self, Error> {
        let alg = KeyAlg::of_sec1(point)
            .filter(|_| point.first() == Some(&0x04))
            .ok_or_else(|| Error::Parse("not an uncompressed P-256/P-384 point".into()))?;
        Ok(Self {
            point: point.to_vec(),
            alg,
        })
    }
}

impl PublicKeyData for DeviceKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        self.alg.rcgen()
    }
}
