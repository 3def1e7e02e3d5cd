//! Private keys held inside the chip. Nothing in this module hands the scalar out: no accessor,
//! no `Debug` output, no serialization outside the sealed NVM image.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sesame_wire::Curve;
use zeroize::Zeroizing;

/// A private key in a slot.
#[derive(Clone)]
pub(crate) enum PrivateKey {
    // Signing keys cache their public point: converting from a bare scalar on every signature
    // would cost a second scalar multiplication.
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl core::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never print the scalar, not even in debug builds.
        write!(f, "PrivateKey({:?}, <secret>)", self.curve())
    }
}

/// Why a crypto operation failed; each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CryptoError {
    /// The peer or verification key is not a point on the curve.
    InvalidPublicKey,
    /// The digest length is not usable.
    BadDigest,
}

/// An uncompressed public key as coordinates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyBytes {
    /// Curve name as used in sesame's tools ("P-256", "P-384").
    pub curve: CurveName,
    /// X coordinate, big-endian, full width.
    pub x: Vec<u8>,
    /// Y coordinate, big-endian, full width.
    pub y: Vec<u8>,
}

impl PublicKeyBytes {
    /// SEC1 uncompressed encoding `04 || X || Y`.
    pub fn to_sec1(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + self.x.len() + self.y.len());
        v.push(0x04);
        v.extend_from_slice(&self.x);
        v.extend_from_slice(&self.y);
        v
    }
}

/// The curves this chip implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CurveName {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

impl CurveName {
    /// The wire curve.
    pub fn wire(self) -> Curve {
        match self {
            Self::P256 => Curve::P256,
            Self::P384 => Curve::P384,
        }
    }

    /// The chip curve for a wire curve, if implemented.
    pub fn from_wire(c: Curve) -> Option<Self> {
        match c {
            Curve::P256 => Some(Self::P256),
            Curve::P384 => Some(Self::P384),
            _ => None,
        }
    }

    /// Coordinate size in bytes.
    pub fn coordinate_len(self) -> usize {
        self.wire().coordinate_len()
    }
}

impl core::fmt::Display for CurveName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::P256 => "P-256",
            Self::P384 => "P-384",
        })
    }
}

fn sec1_coords(point: &[u8], n: usize) -> (Vec<u8>, Vec<u8>) {
    // An uncompressed SEC1 point is 04 || X || Y with fixed-width coordinates.
    (point[1..1 + n].to_vec(), point[1 + n..1 + 2 * n].to_vec())
}

impl PrivateKey {
    pub(crate) fn generate(curve: CurveName, rng: &mut impl CryptoRngCore) -> Self {
        match curve {
            CurveName::P256 => Self::P256(p256::ecdsa::SigningKey::random(rng)),
            CurveName::P384 => Self::P384(p384::ecdsa::SigningKey::random(rng)),
        }
    }

    /// Builds a key from a big-endian scalar (NVM load and the test-only import path).
    pub(crate) fn from_scalar(curve: CurveName, scalar: &[u8]) -> Option<Self> {
        match curve {
            CurveName::P256 => p256::ecdsa::SigningKey::from_slice(scalar)
                .ok()
                .map(Self::P256),
            CurveName::P384 => p384::ecdsa::SigningKey::from_slice(scalar)
                .ok()
                .map(Self::P384),
        }
    }

    pub(crate) fn scalar(&self) -> Zeroizing<Vec<u8>> {
        match self {
            Self::P256(k) => Zeroizing::new(k.to_bytes().to_vec()),
            Self::P384(k) => Zeroizing::new(k.to_bytes().to_vec()),
        }
    }

    pub(crate) fn curve(&self) -> CurveName {
        match self {
            Self::P256(_) => CurveName::P256,
            Self::P384(_) => CurveName::P384,
        }
    }

    pub(crate) fn public(&self) -> PublicKeyBytes {
        let curve = self.curve();
        let (x, y) = match self {
            Self::P256(k) => sec1_coords(k.verifying_key().to_encoded_point(false).as_bytes(), 32),
            Self::P384(k) => sec1_coords(k.verifying_key().to_encoded_point(false).as_bytes(), 48),
        };
        PublicKeyBytes { curve, x, y }
    }

    /// ECDSA over a digest the host computed (no hashing on the chip); returns `R || S`.
    pub(crate) fn sign_prehash(
        &self,
        digest: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<u8>, CryptoError> {
        use ecdsa::signature::hazmat::RandomizedPrehashSigner;
        match self {
            Self::P256(sk) => {
                let sig: p256::ecdsa::Signature = sk
                    .sign_prehash_with_rng(rng, digest)
                    .map_err(|_| CryptoError::BadDigest)?;
                Ok(sig.to_bytes().to_vec())
            }
            Self::P384(sk) => {
                let sig: p384::ecdsa::Signature = sk
                    .sign_prehash_with_rng(rng, digest)
                    .map_err(|_| CryptoError::BadDigest)?;
                Ok(sig.to_bytes().to_vec())
            }
        }
    }

    /// ECDH: the X coordinate of `d * peer`.
    pub(crate) fn ecdh(&self, x: &[u8], y: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let n = self.curve().coordinate_len();
        if x.len() != n || y.len() != n {
            return Err(CryptoError::InvalidPublicKey);
        }
        let point = sec1(x, y);
        match self {
            Self::P256(k) => {
                let peer = p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| CryptoError::InvalidPublicKey)?;
                let shared = p256::ecdh::diffie_hellman(k.as_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
            Self::P384(k) => {
                let peer = p384::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| CryptoError::InvalidPublicKey)?;
                let shared = p384::ecdh::diffie_hellman(k.as_nonzero_scalar(), peer.as_affine());
                Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
            }
        }
    }
}

fn sec1(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + x.len() + y.len());
    p.push(0x04);
    p.extend_from_slice(x);
    p.extend_from_slice(y);
    p
}

/// Verifies an ECDSA signature `r`, `s` over `digest` with the public key `x`, `y`.
/// `Ok(false)` is a well-formed but wrong signature; `Err` a key that is not on the curve.
pub(crate) fn verify_prehash(
    curve: CurveName,
    x: &[u8],
    y: &[u8],
    r: &[u8],
    s: &[u8],
    digest: &[u8],
) -> Result<bool, CryptoError> {
    use ecdsa::signature::hazmat::PrehashVerifier;
    let n = curve.coordinate_len();
    if x.len() != n || y.len() != n {
        return Err(CryptoError::InvalidPublicKey);
    }
    let point = sec1(x, y);
    let mut rs = Vec::with_capacity(2 * n);
    rs.extend_from_slice(r);
    rs.extend_from_slice(s);
    match curve {
        CurveName::P256 => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| CryptoError::InvalidPublicKey)?;
            let Ok(sig) = p256::ecdsa::Signature::from_slice(&rs) else {
                return Ok(false);
            };
            Ok(vk.verify_prehash(digest, &sig).is_ok())
        }
        CurveName::P384 => {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                .map_err(|_| CryptoError::InvalidPublicKey)?;
            let Ok(sig) = p384::ecdsa::Signature::from_slice(&rs) else {
                return Ok(false);
            };
            Ok(vk.verify_prehash(digest, &sig).is_ok())
        }
    }
}

/// Serialized form of a private key inside the NVM image.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredKey {
    curve: CurveName,
    scalar: Vec<u8>,
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.scalar);
    }
}

impl Serialize for PrivateKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        StoredKey {
            curve: self.curve(),
            scalar: self.scalar().to_vec(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PrivateKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let k = StoredKey::deserialize(d)?;
        PrivateKey::from_scalar(k.curve, &k.scalar)
            .ok_or_else(|| serde::de::Error::custom("invalid private key in image"))
    }
}
