//! The device-certificate profile the cloud accepts, checked once per certificate, and the
//! identifiers that do not depend on how a signature is encoded.
//!
//! A certificate's signature can be re-encoded (ECDSA's `s` and `n − s` both verify), which
//! changes the SHA-256 of the whole DER. Everything that names a certificate for trust —
//! revocation, enrollment, caches — uses [`Leaf::cert_id`] (SHA-256 of the TBSCertificate, the
//! bytes the issuer signed) or [`Leaf::key_id`] (SHA-256 of the public key point).

use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode, Reader, SliceReader};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};

/// Longest device serial (certificate CN) the cloud accepts.
pub const SERIAL_MAX: usize = 64;

const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const P256_OID: &str = "1.2.840.10045.3.1.7";
const P384_OID: &str = "1.3.132.0.34";
const CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";

/// The curve of a device key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
}

/// Why a certificate does not fit the device profile.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileError {
    /// Not DER X.509.
    Malformed(String),
    /// A CA certificate (basicConstraints CA, or keyCertSign / cRLSign) used as a device.
    NotEndEntity,
    /// keyUsage missing or without digitalSignature.
    KeyUsage,
    /// extendedKeyUsage missing or without clientAuth.
    ExtendedKeyUsage,
    /// The certificate serial number is zero or negative.
    SerialNumber,
    /// Not an EC key on P-256 or P-384 (RSA, Ed25519, P-521, …), or a compressed point.
    UnsupportedKey(String),
    /// The SPKI names one curve and holds a point of another, or a point not on the curve.
    CurveMismatch,
    /// The subject CN (the device serial) is missing, too long or has other characters than
    /// `A-Z 0-9 - . _`.
    BadSerial,
}

impl core::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "not a DER X.509 certificate: {e}"),
            Self::NotEndEntity => f.write_str("a CA certificate cannot be a device certificate"),
            Self::KeyUsage => f.write_str("keyUsage must be present with digitalSignature"),
            Self::ExtendedKeyUsage => {
                f.write_str("extendedKeyUsage must be present with clientAuth")
            }
            Self::SerialNumber => f.write_str("the certificate serial number must be positive"),
            Self::UnsupportedKey(k) => {
                write!(
                    f,
                    "unsupported key ({k}): only uncompressed P-256 or P-384 keys"
                )
            }
            Self::CurveMismatch => {
                f.write_str("the public key is not a point of the curve its SPKI names")
            }
            Self::BadSerial => write!(
                f,
                "the subject CN must be 1 to {SERIAL_MAX} characters of A-Z 0-9 - . _"
            ),
        }
    }
}

impl std::error::Error for ProfileError {}

/// A device certificate that fits the profile, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// The device serial (subject CN), in its canonical form.
    pub serial: String,
    /// Uncompressed SEC1 public key.
    pub public_key: Vec<u8>,
    /// The key's curve (agrees with the SPKI and the point).
    pub curve: Curve,
    /// SHA-256 of the TBSCertificate: the certificate's identity, whatever its signature encoding.
    pub cert_id: [u8; 32],
    /// SHA-256 of the public key point: the key's identity across certificates.
    pub key_id: [u8; 32],
    /// SHA-256 of the whole DER (what the device presented; bound into its login signature).
    pub der_hash: [u8; 32],
    /// The issuer name, DER (to find the issuing family).
    pub issuer: Vec<u8>,
    /// The authority key identifier, when the certificate has one: the index by which the
    /// issuing family is found (the name is the fallback).
    pub authority_key_id: Option<Vec<u8>>,
    /// Validity, Unix seconds.
    pub not_before: u64,
    /// Validity, Unix seconds.
    pub not_after: u64,
}

impl Leaf {
    /// True when `now` (Unix seconds) is inside the validity period.
    pub fn valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Normalizes a serial as operators type it (surrounding spaces, lower case) to the canonical
/// form, or `None` if it cannot be a device serial.
pub fn canonical_serial(s: &str) -> Option<String> {
    let s = s.trim().to_ascii_uppercase();
    valid_serial(&s).then_some(s)
}

fn valid_serial(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SERIAL_MAX
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

/// Normalizes a SHA-256 identifier as operators type it (`AB:CD:…` as openssl prints it, any
/// case) to 64 lower-case hex digits.
pub fn canonical_hash(s: &str) -> Option<String> {
    let h: String = s
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

/// SHA-256 of the TBSCertificate bytes exactly as they appear in `der`.
pub fn cert_id(der: &[u8]) -> Result<[u8; 32], ProfileError> {
    let bad = |e: x509_cert::der::Error| ProfileError::Malformed(e.to_string());
    let mut r = SliceReader::new(der).map_err(bad)?;
    let outer = x509_cert::der::Header::decode(&mut r).map_err(bad)?;
    let body = r.read_slice(outer.length).map_err(bad)?;
    let tbs = SliceReader::new(body)
        .map_err(bad)?
        .tlv_bytes()
        .map_err(bad)?;
    Ok(Sha256::digest(tbs).into())
}

/// Checks `der` against the device profile and returns what the cloud needs from it.
pub fn device_leaf(der: &[u8]) -> Result<Leaf, ProfileError> {
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| ProfileError::Malformed(e.to_string()))?;
    let tbs = &cert.tbs_certificate;

    let sn = tbs.serial_number.as_bytes();
    if sn.first().is_none_or(|b| b & 0x80 != 0) || sn.iter().all(|b| *b == 0) {
        return Err(ProfileError::SerialNumber);
    }
    let ext = |e: x509_cert::der::Error| ProfileError::Malformed(e.to_string());
    if tbs
        .get::<BasicConstraints>()
        .map_err(ext)?
        .is_some_and(|(_, bc)| bc.ca)
    {
        return Err(ProfileError::NotEndEntity);
    }
    let ku = tbs.get::<KeyUsage>().map_err(ext)?.map(|(_, ku)| ku);
    match ku {
        Some(ku) if ku.key_cert_sign() || ku.crl_sign() => return Err(ProfileError::NotEndEntity),
        Some(ku) if ku.digital_signature() => {}
        _ => return Err(ProfileError::KeyUsage),
    }
    let eku = tbs.get::<ExtendedKeyUsage>().map_err(ext)?.map(|(_, e)| e);
    if !eku.is_some_and(|e| e.0.iter().any(|o| o.to_string() == CLIENT_AUTH)) {
        return Err(ProfileError::ExtendedKeyUsage);
    }

    let (curve, public_key) = ec_key(&tbs.subject_public_key_info)?;
    let serial = common_name(&tbs.subject).ok_or(ProfileError::BadSerial)?;
    if !valid_serial(&serial) {
        return Err(ProfileError::BadSerial);
    }
    let issuer = tbs.issuer.to_der().map_err(ext)?;
    let authority_key_id = tbs
        .get::<AuthorityKeyIdentifier>()
        .map_err(ext)?
        .and_then(|(_, aki)| aki.key_identifier)
        .map(|k| k.as_bytes().to_vec());
    Ok(Leaf {
        authority_key_id,
        serial,
        key_id: Sha256::digest(&public_key).into(),
        public_key,
        curve,
        cert_id: cert_id(der)?,
        der_hash: Sha256::digest(der).into(),
        issuer,
        not_before: tbs.validity.not_before.to_unix_duration().as_secs(),
        not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
    })
}

/// The curve and the uncompressed point of an EC SPKI, with the point checked against the
/// curve the SPKI names (never inferred from the point's length).
fn ec_key(
    spki: &x509_cert::spki::SubjectPublicKeyInfoOwned,
) -> Result<(Curve, Vec<u8>), ProfileError> {
    let alg = spki.algorithm.oid.to_string();
    if alg != EC_PUBLIC_KEY {
        return Err(ProfileError::UnsupportedKey(format!("algorithm {alg}")));
    }
    let named = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<x509_cert::der::asn1::ObjectIdentifier>().ok())
        .map(|o| o.to_string())
        .ok_or_else(|| ProfileError::UnsupportedKey("no named curve".into()))?;
    let point = spki.subject_public_key.raw_bytes().to_vec();
    if point.first() != Some(&0x04) {
        return Err(ProfileError::UnsupportedKey(
            "compressed or empty point".into(),
        ));
    }
    let curve = match named.as_str() {
        P256_OID => {
            p256::PublicKey::from_sec1_bytes(&point).map_err(|_| ProfileError::CurveMismatch)?;
            Curve::P256
        }
        P384_OID => {
            p384::PublicKey::from_sec1_bytes(&point).map_err(|_| ProfileError::CurveMismatch)?;
            Curve::P384
        }
        other => return Err(ProfileError::UnsupportedKey(format!("curve {other}"))),
    };
    Ok((curve, point))
}

/// The subject's CN as UTF8String or PrintableString.
fn common_name(name: &x509_cert::name::Name) -> Option<String> {
    let cn = x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3");
    let atv = name
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == cn)?;
    atv.value
        .decode_as::<x509_cert::der::asn1::Utf8StringRef<'_>>()
        .ok()
        .map(|s| s.as_str().to_string())
        .or_else(|| {
            atv.value
                .decode_as::<x509_cert::der::asn1::PrintableStringRef<'_>>()
                .ok()
                .map(|s| s.as_str().to_string())
        })
}

/// A CA certificate as the cloud keeps it in memory: its subject (to match issuers), its
/// validity and its DER (the trust anchor for chain checks).
#[derive(Clone, Debug)]
pub struct CaCert {
    /// Subject name, DER.
    pub subject: Vec<u8>,
    /// The subject key identifier, when the certificate has one.
    pub subject_key_id: Option<Vec<u8>>,
    /// Validity, Unix seconds.
    pub not_before: u64,
    /// Validity, Unix seconds.
    pub not_after: u64,
    /// The certificate.
    pub der: Vec<u8>,
}

impl CaCert {
    /// Parses a CA certificate.
    pub fn parse(der: &[u8]) -> Result<Self, ProfileError> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| ProfileError::Malformed(e.to_string()))?;
        let tbs = &cert.tbs_certificate;
        let subject_key_id = tbs
            .get::<SubjectKeyIdentifier>()
            .map_err(|e| ProfileError::Malformed(e.to_string()))?
            .map(|(_, ski)| ski.0.as_bytes().to_vec());
        Ok(Self {
            subject_key_id,
            subject: tbs
                .subject
                .to_der()
                .map_err(|e| ProfileError::Malformed(e.to_string()))?,
            not_before: tbs.validity.not_before.to_unix_duration().as_secs(),
            not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
            der: der.to_vec(),
        })
    }

    /// True when `now` (Unix seconds) is inside the validity period.
    pub fn valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}
