//! Typed values the driver hands back or takes: keys, signatures, shared secrets, product data,
//! and small option types. All fixed-size: no allocation.

use core::fmt;

use sesame_wire::resp::ChipModel;
use sesame_wire::{Curve, PublicKey, Signature, ZoneOption};
use zeroize::Zeroize;

/// Largest coordinate (and R, S, shared secret) the A110 produces: 48 bytes (P-384, BP-384).
pub const MAX_COORDINATE: usize = 48;

/// An ECC public key as the host API exchanges it: `X || Y`, fixed-width big-endian.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EccPublicKey {
    curve: Curve,
    xy: [u8; 2 * MAX_COORDINATE],
}

impl EccPublicKey {
    /// A key from raw `X || Y`; `None` unless `xy` is exactly twice the curve's coordinate size
    /// (and the curve has coordinates of at most 48 bytes).
    pub fn from_xy(curve: Curve, xy: &[u8]) -> Option<Self> {
        let n = curve.coordinate_len();
        if n > MAX_COORDINATE || xy.len() != 2 * n {
            return None;
        }
        let mut out = [0u8; 2 * MAX_COORDINATE];
        out[..2 * n].copy_from_slice(xy);
        Some(Self { curve, xy: out })
    }

    pub(crate) fn from_wire(curve: Curve, pk: &PublicKey<'_>) -> Option<Self> {
        let n = curve.coordinate_len();
        if pk.x.len() != n || pk.y.len() != n || n > MAX_COORDINATE {
            return None;
        }
        let mut out = [0u8; 2 * MAX_COORDINATE];
        out[..n].copy_from_slice(pk.x);
        out[n..2 * n].copy_from_slice(pk.y);
        Some(Self { curve, xy: out })
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// `X || Y`.
    pub fn xy(&self) -> &[u8] {
        &self.xy[..2 * self.curve.coordinate_len()]
    }

    /// X.
    pub fn x(&self) -> &[u8] {
        &self.xy[..self.curve.coordinate_len()]
    }

    /// Y.
    pub fn y(&self) -> &[u8] {
        let n = self.curve.coordinate_len();
        &self.xy[n..2 * n]
    }

    pub(crate) fn wire(&self) -> PublicKey<'_> {
        PublicKey {
            x: self.x(),
            y: self.y(),
        }
    }
}

impl fmt::Debug for EccPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EccPublicKey({:?}, ", self.curve)?;
        for b in self.xy() {
            write!(f, "{b:02X}")?;
        }
        f.write_str(")")
    }
}

/// An ECDSA signature as the host API exchanges it: `R || S`, fixed-width big-endian.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EccSignature {
    half: usize,
    rs: [u8; 2 * MAX_COORDINATE],
}

impl EccSignature {
    pub(crate) fn from_wire(sig: &Signature<'_>) -> Option<Self> {
        let n = sig.r.len();
        if sig.s.len() != n || !(n == 32 || n == MAX_COORDINATE) {
            return None;
        }
        let mut rs = [0u8; 2 * MAX_COORDINATE];
        rs[..n].copy_from_slice(sig.r);
        rs[n..2 * n].copy_from_slice(sig.s);
        Some(Self { half: n, rs })
    }

    /// `R || S`.
    pub fn rs(&self) -> &[u8] {
        &self.rs[..2 * self.half]
    }

    /// R.
    pub fn r(&self) -> &[u8] {
        &self.rs[..self.half]
    }

    /// S.
    pub fn s(&self) -> &[u8] {
        &self.rs[self.half..2 * self.half]
    }
}

impl fmt::Debug for EccSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EccSignature(")?;
        for b in self.rs() {
            write!(f, "{b:02X}")?;
        }
        f.write_str(")")
    }
}

/// An ECDH shared secret (the X coordinate of the shared point). Zeroized on drop; `Debug`
/// does not show it.
#[derive(Clone)]
pub struct SharedSecret {
    len: usize,
    x: [u8; MAX_COORDINATE],
}

impl SharedSecret {
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        if !(bytes.len() == 32 || bytes.len() == MAX_COORDINATE) {
            return None;
        }
        let mut x = [0u8; MAX_COORDINATE];
        x[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            len: bytes.len(),
            x,
        })
    }

    /// The secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.x[..self.len]
    }
}

impl Drop for SharedSecret {
    fn drop(&mut self) {
        self.x.zeroize();
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedSecret({} bytes, <secret>)", self.len)
    }
}

/// What Query 0x11 (product data) says about the chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProductInfo {
    /// Mask id (first TLV).
    pub mask_id: [u8; 3],
    /// The family the mask id names.
    pub model: Option<ChipModel>,
    /// ST number (9 bytes; sesame chips put their serial here).
    pub st_number: Option<[u8; 9]>,
    /// The chip's I/O buffer size.
    pub io_buffer_size: Option<u16>,
    /// The atomicity buffer size.
    pub atomicity_buffer_size: Option<u16>,
    /// The NVM size.
    pub nvm_size: Option<u16>,
}

/// How a hibernating chip wakes up (Hibernate 0x0D).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeMode {
    /// Wake on an I2C start condition or a reset (1).
    I2cStartOrReset = 1,
    /// Wake on a reset only (2).
    ResetOnly = 2,
}

/// Local envelope key types (Generate Key tag 0x07).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeKeyType {
    /// AES-128 (0).
    Aes128 = 0,
    /// AES-256 (1).
    Aes256 = 1,
}

/// Options of the data-partition commands (Read, Update, Decrement).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneAccess {
    /// The option byte: access-condition change, atomicity (protocol.md §3.6).
    pub option: ZoneOption,
    /// Send the command with C-MAC and R-MAC even when the command table says plain, as
    /// STSELib's `STSE_HOST_C_MAC_R_MAC` protection does: needed for zones whose access
    /// condition is "host". Needs an open session.
    pub mac: bool,
}

impl ZoneAccess {
    /// C-MAC + R-MAC, no option.
    pub const MAC: Self = Self {
        option: ZoneOption::NONE,
        mac: true,
    };
}
