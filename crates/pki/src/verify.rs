//! Chain verification with rustls-webpki: device certificate → family CA → root, for client
//! authentication, at a given time.

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_cert::der::Decode;

use crate::Error;

static ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
];

/// Why a device certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not parseable as an X.509 certificate.
    Malformed(String),
    /// No valid path to the given roots (wrong CA, bad signature, not a CA, ...).
    Untrusted(String),
    /// Outside its validity period at the given time.
    Expired,
    /// Missing clientAuth / digitalSignature.
    WrongUsage,
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "malformed certificate: {e}"),
            Self::Untrusted(e) => write!(f, "certificate not trusted: {e}"),
            Self::Expired => f.write_str("certificate expired or not yet valid"),
            Self::WrongUsage => f.write_str("certificate not issued for device authentication"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// What a verified device certificate says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Subject CN (the chip serial).
    pub serial: String,
    /// Uncompressed SEC1 public key.
    pub public_key: Vec<u8>,
}

/// Verifies `device` (DER) through `intermediates` (e.g. the family CA) to one of `roots` at
/// `now_unix` (seconds), for client authentication.
pub fn verify_device(
    device: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now_unix: u64,
) -> Result<DeviceIdentity, VerifyError> {
    let leaf = CertificateDer::from(device);
    let ee =
        EndEntityCert::try_from(&leaf).map_err(|e| VerifyError::Malformed(format!("{e:?}")))?;
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(r)
                .map_err(|e| VerifyError::Malformed(format!("root: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time = UnixTime::since_unix_epoch(core::time::Duration::from_secs(now_unix));
    ee.verify_for_usage(
        ALGS,
        &anchors,
        &inter,
        time,
        KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. } => {
            VerifyError::Expired
        }
        webpki::Error::RequiredEkuNotFoundContext(_) => VerifyError::WrongUsage,
        other => VerifyError::Untrusted(format!("{other:?}")),
    })?;
    device_identity(device).map_err(|e| VerifyError::Malformed(e.to_string()))
}

/// Reads the subject CN and public key of a certificate (no trust decision).
pub fn device_identity(der: &[u8]) -> Result<DeviceIdentity, Error> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| Error::Parse(e.to_string()))?;
    let serial = cert
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == const_oid_cn())
        .and_then(|atv| {
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
        })
        .ok_or_else(|| Error::Parse("certificate has no subject CN".into()))?;
    Ok(DeviceIdentity {
        serial,
        public_key: spki_point(der)?,
    })
}

fn const_oid_cn() -> x509_cert::der::asn1::ObjectIdentifier {
    x509_cert::der::asn1::ObjectIdentifier::new_unwrap("2.5.4.3")
}

/// The raw public key bytes (SEC1 point) of a certificate.
pub(crate) fn spki_point(der: &[u8]) -> Result<Vec<u8>, Error> {
    let cert = x509_cert::Certificate::from_der(der).map_err(|e| Error::Parse(e.to_string()))?;
    Ok(cert
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec())
}

/// Checks only the validity period of a certificate at `now_unix` (for certificates trusted by
/// exact enrollment rather than by a path).
pub fn check_validity(der: &[u8], now_unix: u64) -> Result<(), VerifyError> {
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let v = &cert.tbs_certificate.validity;
    let nb = v.not_before.to_unix_duration().as_secs();
    let na = v.not_after.to_unix_duration().as_secs();
    if now_unix < nb || now_unix > na {
        return Err(VerifyError::Expired);
    }
    Ok(())
}

/// Checks that `child` (DER) is a CA certificate signed by `parent`'s key: used when enrolling a
/// family CA under a trusted root.
pub fn verify_ca_issued_by(child: &[u8], parent: &[u8]) -> Result<(), VerifyError> {
    use x509_cert::der::Encode;
    let c = x509_cert::Certificate::from_der(child)
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let is_ca = c
        .tbs_certificate
        .get::<x509_cert::ext::pkix::BasicConstraints>()
        .ok()
        .flatten()
        .is_some_and(|(_, bc)| bc.ca);
    if !is_ca {
        return Err(VerifyError::Untrusted("not a CA certificate".into()));
    }
    if c.tbs_certificate.issuer
        != x509_cert::Certificate::from_der(parent)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?
            .tbs_certificate
            .subject
    {
        return Err(VerifyError::Untrusted(
            "issuer is not the root's subject".into(),
        ));
    }
    let tbs = c
        .tbs_certificate
        .to_der()
        .map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let sig = c.signature.raw_bytes();
    let key = spki_point(parent).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let alg: &dyn ring::signature::VerificationAlgorithm =
        match (key.len(), c.signature_algorithm.oid.to_string().as_str()) {
            (65, "1.2.840.10045.4.3.2") => &ring::signature::ECDSA_P256_SHA256_ASN1,
            (65, "1.2.840.10045.4.3.3") => &ring::signature::ECDSA_P256_SHA384_ASN1,
            (97, "1.2.840.10045.4.3.3") => &ring::signature::ECDSA_P384_SHA384_ASN1,
            (97, "1.2.840.10045.4.3.2") => &ring::signature::ECDSA_P384_SHA256_ASN1,
            _ => {
                return Err(VerifyError::Untrusted(
                    "unsupported signature algorithm".into(),
                ))
            }
        };
    ring::signature::UnparsedPublicKey::new(alg, &key)
        .verify(&tbs, sig)
        .map_err(|_| VerifyError::Untrusted("signature does not verify under the root".into()))
}
