//! The token's objects and their attributes, encoded as PKCS#11 gives them to applications
//! (CK_BBOOL one byte, CK_ULONG native-endian, DER where the standard says DER).

use cryptoki_sys::*;
use sesame_host::Curve;
use x509_cert::der::asn1::{ObjectIdentifier, OctetString};
use x509_cert::der::{Decode, Encode};
use x509_cert::Certificate;
use zeroize::Zeroizing;

const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// An attribute's value.
#[derive(Clone, Debug)]
pub enum Value {
    /// Readable bytes.
    Bytes(Vec<u8>),
    /// Exists but is never revealed (CKR_ATTRIBUTE_SENSITIVE).
    Sensitive,
    /// A derived secret, readable when its object is not sensitive; wiped on drop.
    Secret(Zeroizing<Vec<u8>>),
}

/// What an object can do, beyond its attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A private key in chip slot `slot`.
    PrivateKey {
        /// The chip's key slot.
        slot: u8,
        /// Its curve.
        curve: Curve,
    },
    /// A public key (of a chip slot).
    PublicKey,
    /// The certificate in zone 0.
    Certificate,
    /// A secret derived by ECDH, kept in the module for the session.
    Secret,
}

/// One object.
#[derive(Clone, Debug)]
pub struct Object {
    /// Its handle.
    pub handle: CK_OBJECT_HANDLE,
    /// What it is.
    pub kind: Kind,
    /// Its attributes.
    pub attrs: Vec<(CK_ATTRIBUTE_TYPE, Value)>,
}

/// CK_BBOOL.
pub fn bool_(v: bool) -> Value {
    Value::Bytes(vec![if v { CK_TRUE } else { CK_FALSE }])
}

/// CK_ULONG.
pub fn ulong(v: CK_ULONG) -> Value {
    Value::Bytes(v.to_ne_bytes().to_vec())
}

/// Raw bytes.
pub fn bytes(v: &[u8]) -> Value {
    Value::Bytes(v.to_vec())
}

/// CKA_EC_PARAMS: the DER of the curve's OID.
pub fn ec_params(curve: Curve) -> Vec<u8> {
    let oid = if curve == Curve::P384 {
        SECP384R1
    } else {
        SECP256R1
    };
    oid.to_der().unwrap_or_default()
}

/// CKA_EC_POINT: the SEC1 point in a DER OCTET STRING.
pub fn ec_point(sec1: &[u8]) -> Vec<u8> {
    OctetString::new(sec1)
        .and_then(|o| o.to_der())
        .unwrap_or_default()
}

/// A peer's point as CKM_ECDH1_DERIVE gives it: raw SEC1 or SEC1 in a DER OCTET STRING.
pub fn peer_point(data: &[u8], curve: Curve) -> Option<Vec<u8>> {
    let n = 1 + 2 * curve.coordinate_len();
    if data.len() == n && data[0] == 0x04 {
        return Some(data.to_vec());
    }
    let inner = OctetString::from_der(data).ok()?;
    let raw = inner.as_bytes();
    (raw.len() == n && raw[0] == 0x04).then(|| raw.to_vec())
}

fn common_key(id: u8, label: &str, class: CK_OBJECT_CLASS, curve: Curve) -> Vec<(u64, Value)> {
    vec![
        (CKA_CLASS, ulong(class)),
        (CKA_KEY_TYPE, ulong(CKK_EC)),
        (CKA_ID, bytes(&[id])),
        (CKA_LABEL, bytes(label.as_bytes())),
        (CKA_TOKEN, bool_(true)),
        (CKA_PRIVATE, bool_(false)),
        (CKA_MODIFIABLE, bool_(false)),
        (CKA_LOCAL, bool_(true)),
        (CKA_KEY_GEN_MECHANISM, ulong(CKM_EC_KEY_PAIR_GEN)),
        (CKA_EC_PARAMS, bytes(&ec_params(curve))),
    ]
}

/// The private key in chip slot `slot`: never extractable, never readable, signs and derives.
pub fn private_key(handle: CK_OBJECT_HANDLE, slot: u8, curve: Curve, subject: &[u8]) -> Object {
    let mut attrs = common_key(slot, &format!("key slot {slot}"), CKO_PRIVATE_KEY, curve);
    attrs.extend([
        (CKA_SUBJECT, bytes(subject)),
        (CKA_SENSITIVE, bool_(true)),
        (CKA_ALWAYS_SENSITIVE, bool_(true)),
        (CKA_EXTRACTABLE, bool_(false)),
        (CKA_NEVER_EXTRACTABLE, bool_(true)),
        (CKA_SIGN, bool_(true)),
        (CKA_DERIVE, bool_(true)),
        (CKA_DECRYPT, bool_(false)),
        (CKA_UNWRAP, bool_(false)),
        (CKA_SIGN_RECOVER, bool_(false)),
        (CKA_ALWAYS_AUTHENTICATE, bool_(false)),
        (CKA_VALUE, Value::Sensitive),
    ]);
    Object {
        handle,
        kind: Kind::PrivateKey { slot, curve },
        attrs,
    }
}

/// The public key of chip slot `slot` (SEC1 `04 || X || Y`).
pub fn public_key(
    handle: CK_OBJECT_HANDLE,
    slot: u8,
    curve: Curve,
    sec1: &[u8],
    subject: &[u8],
) -> Object {
    let mut attrs = common_key(slot, &format!("key slot {slot}"), CKO_PUBLIC_KEY, curve);
    attrs.extend([
        (CKA_SUBJECT, bytes(subject)),
        (CKA_EC_POINT, bytes(&ec_point(sec1))),
        (CKA_VERIFY, bool_(false)),
        (CKA_ENCRYPT, bool_(false)),
        (CKA_WRAP, bool_(false)),
        (CKA_DERIVE, bool_(false)),
    ]);
    Object {
        handle,
        kind: Kind::PublicKey,
        attrs,
    }
}

/// Subject, issuer and serial number of a certificate, DER.
pub struct CertFields {
    /// Subject name.
    pub subject: Vec<u8>,
    /// Issuer name.
    pub issuer: Vec<u8>,
    /// Serial number (DER INTEGER).
    pub serial: Vec<u8>,
}

/// The fields CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER take; `None` if `der` is not a
/// certificate.
pub fn cert_fields(der: &[u8]) -> Option<CertFields> {
    let c = Certificate::from_der(der).ok()?;
    let tbs = &c.tbs_certificate;
    Some(CertFields {
        subject: tbs.subject.to_der().ok()?,
        issuer: tbs.issuer.to_der().ok()?,
        serial: tbs.serial_number.to_der().ok()?,
    })
}

/// The certificate of slot `id`'s key.
pub fn certificate(handle: CK_OBJECT_HANDLE, id: u8, der: &[u8], f: &CertFields) -> Object {
    let attrs = vec![
        (CKA_CLASS, ulong(CKO_CERTIFICATE)),
        (CKA_CERTIFICATE_TYPE, ulong(CKC_X_509)),
        (CKA_ID, bytes(&[id])),
        (CKA_LABEL, bytes(b"device certificate")),
        (CKA_TOKEN, bool_(true)),
        (CKA_PRIVATE, bool_(false)),
        (CKA_MODIFIABLE, bool_(false)),
        (CKA_TRUSTED, bool_(false)),
        (CKA_CERTIFICATE_CATEGORY, ulong(1)), // token user
        (CKA_SUBJECT, bytes(&f.subject)),
        (CKA_ISSUER, bytes(&f.issuer)),
        (CKA_SERIAL_NUMBER, bytes(&f.serial)),
        (CKA_VALUE, bytes(der)),
    ];
    Object {
        handle,
        kind: Kind::Certificate,
        attrs,
    }
}

impl Object {
    /// The value of attribute `t`.
    pub fn get(&self, t: CK_ATTRIBUTE_TYPE) -> Option<&Value> {
        self.attrs.iter().find(|(k, _)| *k == t).map(|(_, v)| v)
    }

    /// True when the boolean attribute `t` is present and true.
    pub fn flag(&self, t: CK_ATTRIBUTE_TYPE) -> bool {
        matches!(self.get(t), Some(Value::Bytes(b)) if b.as_slice() == [CK_TRUE])
    }

    /// True when every attribute of `template` has exactly this value here. Sensitive values
    /// never match (matching would reveal them bit by bit).
    pub fn matches(&self, template: &[(CK_ATTRIBUTE_TYPE, &[u8])]) -> bool {
        template.iter().all(|(t, want)| match self.get(*t) {
            Some(Value::Bytes(b)) => b.as_slice() == *want,
            _ => false,
        })
    }
}
