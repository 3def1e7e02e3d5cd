//! Checking a device certificate against a CA certificate, as `stse_certificate_parse_chain`
//! does, plus validity dates when the caller knows the time. Parsing is RustCrypto's
//! `x509-cert` / `der`; verification `p256` / `p384` with `sha2`.

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sesame_wire::Curve;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Any, Decode, Reader, SliceReader, Tag, Tagged};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::name::Name;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use super::ChainError;
use crate::EccPublicKey;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// Checks that `leaf_der` was issued by the CA in `ca_der` and returns the leaf's public key:
/// 1. both parse as X.509 certificates;
/// 2. the leaf's issuer equals the CA's subject, attribute by attribute, strings compared
///    ignoring ASCII case (as STSELib does);
/// 3. the CA is a CA: basicConstraints with cA set, and keyUsage (when present) allows
///    keyCertSign;
/// 4. the CA's signature over the leaf's TBS verifies (ECDSA with SHA-256 or SHA-384, CA key on
///    P-256 or P-384);
/// 5. with `now` (Unix seconds), both certificates are inside their validity period. STSELib
///    checks no dates; pass `None` to do the same.
///
/// The leaf's key must be on P-256 or P-384 (what the A110 signs with in sesame).
pub fn verify_chain(
    ca_der: &[u8],
    leaf_der: &[u8],
    now: Option<u64>,
) -> Result<EccPublicKey, ChainError> {
    let ca = Certificate::from_der(ca_der).map_err(|_| ChainError::MalformedCa)?;
    let leaf = Certificate::from_der(leaf_der).map_err(|_| ChainError::MalformedCertificate)?;
    let tbs = tbs_bytes(leaf_der).ok_or(ChainError::MalformedCertificate)?;
    if leaf.signature_algorithm != leaf.tbs_certificate.signature {
        return Err(ChainError::MalformedCertificate);
    }

    if !names_match(&leaf.tbs_certificate.issuer, &ca.tbs_certificate.subject) {
        return Err(ChainError::WrongIssuer);
    }
    if !is_ca(&ca) {
        return Err(ChainError::IssuerNotCa);
    }
    let ca_key = public_key(&ca.tbs_certificate.subject_public_key_info)?;
    let signature = leaf
        .signature
        .as_bytes()
        .ok_or(ChainError::MalformedCertificate)?;
    let oid = leaf.signature_algorithm.oid;
    let verified = if oid == ECDSA_WITH_SHA256 {
        verify_prehashed(&ca_key, &sha256(tbs), signature, SigEncoding::Der)
    } else if oid == ECDSA_WITH_SHA384 {
        verify_prehashed(&ca_key, &sha384(tbs), signature, SigEncoding::Der)
    } else {
        return Err(ChainError::UnsupportedAlgorithm);
    };
    if !verified {
        return Err(ChainError::BadCertificateSignature);
    }

    if let Some(now) = now {
        check_validity(&ca.tbs_certificate.validity, now)?;
        check_validity(&leaf.tbs_certificate.validity, now)?;
    }
    public_key(&leaf.tbs_certificate.subject_public_key_info)
}

/// The DER of the certificate's TBS, exactly as signed (not re-encoded).
fn tbs_bytes(der: &[u8]) -> Option<&[u8]> {
    let mut r = SliceReader::new(der).ok()?;
    let tbs = r
        .sequence(|seq| {
            let tbs = seq.tlv_bytes()?;
            seq.tlv_bytes()?; // signatureAlgorithm
            seq.tlv_bytes()?; // signatureValue
            Ok(tbs)
        })
        .ok()?;
    r.finish(tbs).ok()
}

fn names_match(a: &Name, b: &Name) -> bool {
    a.0.len() == b.0.len()
        && a.0.iter().zip(b.0.iter()).all(|(ra, rb)| {
            ra.0.len() == rb.0.len()
                && ra
                    .0
                    .iter()
                    .zip(rb.0.iter())
                    .all(|(x, y)| x.oid == y.oid && values_match(&x.value, &y.value))
        })
}

fn is_string(tag: Tag) -> bool {
    matches!(
        tag,
        Tag::PrintableString
            | Tag::Utf8String
            | Tag::Ia5String
            | Tag::TeletexString
            | Tag::VisibleString
    )
}

fn values_match(a: &Any, b: &Any) -> bool {
    if is_string(a.tag()) && is_string(b.tag()) {
        a.value().eq_ignore_ascii_case(b.value())
    } else {
        a == b
    }
}

fn is_ca(cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    let ca = matches!(tbs.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca);
    let cert_sign = match tbs.get::<KeyUsage>() {
        Ok(Some((_, ku))) => ku.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && cert_sign
}

/// The P-256 or P-384 public key of the certificate `der` (no other check): how a host learns
/// the public key of a chip's slot-0 key from the certificate in zone 0.
pub fn certificate_public_key(der: &[u8]) -> Result<EccPublicKey, ChainError> {
    let cert = Certificate::from_der(der).map_err(|_| ChainError::MalformedCertificate)?;
    public_key(&cert.tbs_certificate.subject_public_key_info)
}

fn public_key(spki: &SubjectPublicKeyInfoOwned) -> Result<EccPublicKey, ChainError> {
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(ChainError::UnsupportedAlgorithm);
    }
    let curve_oid = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .ok_or(ChainError::UnsupportedAlgorithm)?;
    let curve = if curve_oid == SECP256R1 {
        Curve::P256
    } else if curve_oid == SECP384R1 {
        Curve::P384
    } else {
        return Err(ChainError::UnsupportedAlgorithm);
    };
    match spki.subject_public_key.as_bytes() {
        Some([0x04, xy @ ..]) => EccPublicKey::from_xy(curve, xy).ok_or(ChainError::BadPublicKey),
        _ => Err(ChainError::BadPublicKey),
    }
}

fn check_validity(v: &Validity, now: u64) -> Result<(), ChainError> {
    if now < v.not_before.to_unix_duration().as_secs() {
        return Err(ChainError::NotYetValid);
    }
    if now > v.not_after.to_unix_duration().as_secs() {
        return Err(ChainError::Expired);
    }
    Ok(())
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn sha384(data: &[u8]) -> [u8; 48] {
    use sha2::Digest;
    sha2::Sha384::digest(data).into()
}

/// SEC1 `04 || X || Y` of `key` into `buf`.
fn sec1<'b>(key: &EccPublicKey, buf: &'b mut [u8; 97]) -> &'b [u8] {
    let xy = key.xy();
    buf[0] = 0x04;
    buf[1..1 + xy.len()].copy_from_slice(xy);
    &buf[..1 + xy.len()]
}

/// How a signature is encoded.
#[derive(Clone, Copy)]
pub(super) enum SigEncoding {
    /// DER `SEQUENCE { r, s }` (certificates).
    Der,
    /// Fixed-width `R || S` (what the chip returns).
    Raw,
}

/// Verifies an ECDSA signature over a prehashed `digest`.
pub(super) fn verify_prehashed(
    key: &EccPublicKey,
    digest: &[u8],
    sig: &[u8],
    enc: SigEncoding,
) -> bool {
    let mut buf = [0u8; 97];
    let point = sec1(key, &mut buf);
    match key.curve() {
        Curve::P256 => {
            let parsed = match enc {
                SigEncoding::Der => p256::ecdsa::Signature::from_der(sig),
                SigEncoding::Raw => p256::ecdsa::Signature::from_slice(sig),
            };
            let (Ok(k), Ok(s)) = (p256::ecdsa::VerifyingKey::from_sec1_bytes(point), parsed) else {
                return false;
            };
            k.verify_prehash(digest, &s).is_ok()
        }
        Curve::P384 => {
            let parsed = match enc {
                SigEncoding::Der => p384::ecdsa::Signature::from_der(sig),
                SigEncoding::Raw => p384::ecdsa::Signature::from_slice(sig),
            };
            let (Ok(k), Ok(s)) = (p384::ecdsa::VerifyingKey::from_sec1_bytes(point), parsed) else {
                return false;
            };
            k.verify_prehash(digest, &s).is_ok()
        }
        _ => false,
    }
}
