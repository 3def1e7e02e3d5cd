//! Curve identifiers, public keys and signatures as they travel on the wire (protocol.md §3.2).

use crate::codec::{Reader, Writer};
use crate::Error;

/// The curves an STSAFE names by OID. The A110 executes P-256, P-384 and the two brainpool curves;
/// sesame's chip implements P-256 and P-384.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Curve {
    /// NIST P-256 (secp256r1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (A120 only).
    P521,
    /// brainpoolP256r1.
    BrainpoolP256r1,
    /// brainpoolP384r1.
    BrainpoolP384r1,
    /// brainpoolP512r1 (A120 only).
    BrainpoolP512r1,
    /// X25519 (A120 only).
    X25519,
    /// Ed25519 (A120 only).
    Ed25519,
}

impl Curve {
    /// The DER OID content bytes (without tag and length).
    pub fn oid(self) -> &'static [u8] {
        match self {
            Self::P256 => &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07],
            Self::P384 => &[0x2B, 0x81, 0x04, 0x00, 0x22],
            Self::P521 => &[0x2B, 0x81, 0x04, 0x00, 0x23],
            Self::BrainpoolP256r1 => &[0x2B, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x07],
            Self::BrainpoolP384r1 => &[0x2B, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0B],
            Self::BrainpoolP512r1 => &[0x2B, 0x24, 0x03, 0x03, 0x02, 0x08, 0x01, 0x01, 0x0D],
            Self::X25519 => &[0x2B, 0x65, 0x6E],
            Self::Ed25519 => &[0x2B, 0x65, 0x70],
        }
    }

    /// Every curve with a known identifier.
    pub const ALL: [Curve; 8] = [
        Self::P256,
        Self::P384,
        Self::P521,
        Self::BrainpoolP256r1,
        Self::BrainpoolP384r1,
        Self::BrainpoolP512r1,
        Self::X25519,
        Self::Ed25519,
    ];

    /// The curve whose OID content bytes are `oid`.
    pub fn from_oid(oid: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.oid() == oid)
    }

    /// Size of one coordinate, of R or S, and of a full-width digest, in bytes.
    pub fn coordinate_len(self) -> usize {
        match self {
            Self::P256 | Self::BrainpoolP256r1 | Self::X25519 | Self::Ed25519 => 32,
            Self::P384 | Self::BrainpoolP384r1 => 48,
            Self::P521 => 66,
            Self::BrainpoolP512r1 => 64,
        }
    }

    /// Reads `len(2) | OID`; an unknown OID is [`Error::UnknownCurve`].
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let at = r.position();
        let oid = r.len16_prefixed()?;
        Self::from_oid(oid).ok_or(Error::UnknownCurve { at })
    }

    /// Writes `len(2) | OID`.
    pub fn write(self, w: &mut Writer<'_>) {
        w.len16_prefixed(self.oid());
    }
}

/// An uncompressed ECC public key on the wire: `04 | LEN | X | LEN | Y`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PublicKey<'a> {
    /// X coordinate, big-endian.
    pub x: &'a [u8],
    /// Y coordinate, big-endian.
    pub y: &'a [u8],
}

impl<'a> PublicKey<'a> {
    /// Reads `04 | LEN | X | LEN | Y`.
    pub fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let at = r.position();
        if r.u8()? != 0x04 {
            return Err(Error::InvalidValue { at });
        }
        let x = r.len16_prefixed()?;
        let y = r.len16_prefixed()?;
        Ok(Self { x, y })
    }

    /// Writes `04 | LEN | X | LEN | Y`.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(0x04).len16_prefixed(self.x).len16_prefixed(self.y);
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        5 + self.x.len() + self.y.len()
    }
}

/// An ECDSA signature on the wire: `LEN | R | LEN | S`, fixed-width big-endian integers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Signature<'a> {
    /// R, big-endian, left-padded to the curve size.
    pub r: &'a [u8],
    /// S, big-endian, left-padded to the curve size.
    pub s: &'a [u8],
}

impl<'a> Signature<'a> {
    /// Reads `LEN | R | LEN | S`.
    pub fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let rr = r.len16_prefixed()?;
        let s = r.len16_prefixed()?;
        Ok(Self { r: rr, s })
    }

    /// Writes `LEN | R | LEN | S`.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.len16_prefixed(self.r).len16_prefixed(self.s);
    }
}
