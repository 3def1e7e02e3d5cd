//! The chip's keys wherever software takes a key (feature `std`): [`SharedStsafe`], a driver
//! behind a mutex that several threads (and several keys) share, and [`ChipSigner`], one private
//! key slot as RustCrypto's `PrehashSigner` / `Signer` / `Keypair` for P-256 and P-384.
//!
//! The private key stays in the chip: signing sends the digest over the bus and gets `R || S`
//! back. The public key comes from the caller (slot 1: what Generate Key answered) or from the
//! certificate in zone 0 (slot 0, [`SharedStsafe::certificate_key`]).
//!
//! ```
//! # include!("../doc/chip.rs");
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (bus, _ca) = sesame_chip_doc::chip_with_certificate();
//! use p256_nostd::ecdsa::signature::{Keypair, Signer, Verifier};
//! use sesame_host::signer::{ChipKey, SharedStsafe};
//! use sesame_host::{NoDelay, Stsafe};
//! let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
//! se.init()?;
//! let chip = SharedStsafe::new(se); // Clone + Send + Sync: one per thread, one bus
//! let ChipKey::P256(key) = chip.certificate_key(0, 0)? else { panic!("a P-256 chip") };
//! let signature: p256_nostd::ecdsa::Signature = key.try_sign(b"hello")?; // SHA-256, then the chip
//! key.verifying_key().verify(b"hello", &signature)?;
//! # Ok(()) }
//! ```

use core::fmt;
use core::marker::PhantomData;
use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::vec;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_wire::Curve;
use sha2::Digest;
use signature::hazmat::PrehashSigner;
use signature::{Keypair, Signer};

use crate::auth::{certificate_public_key, ChainError};
use crate::{EccPublicKey, Error, SharedSecret, Stsafe};

/// A driver shared by threads: a mutex around [`Stsafe`] (and so around its bus). Each call
/// holds the lock for one command or one flow, so commands never interleave on the bus.
pub struct SharedStsafe<I2C, D> {
    inner: Arc<Mutex<Stsafe<I2C, D>>>,
}

impl<I2C, D> Clone for SharedStsafe<I2C, D> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<I2C, D> fmt::Debug for SharedStsafe<I2C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedStsafe")
    }
}

impl<I2C: I2c, D: DelayNs> SharedStsafe<I2C, D> {
    /// Shares `se` (call [`Stsafe::init`] first, and open a host session if the chip's command
    /// table protects Generate Signature).
    pub fn new(se: Stsafe<I2C, D>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(se)),
        }
    }

    /// The driver, for as long as the guard lives. The driver never panics; a panic in the
    /// caller's code while it held the lock leaves the driver usable, so a poisoned lock is
    /// taken over rather than reported.
    pub fn lock(&self) -> MutexGuard<'_, Stsafe<I2C, D>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The certificate in `zone` (DER), read in one locked flow.
    pub fn certificate(&self, zone: u8) -> Result<vec::Vec<u8>, KeyError> {
        let mut se = self.lock();
        let size = se.certificate_size(zone).map_err(KeyError::chip)?;
        let mut der = vec![0u8; size];
        se.read_zone(zone, 0, &mut der).map_err(KeyError::chip)?;
        Ok(der)
    }

    /// The key in `slot` whose public key is the one of the certificate in `zone` (slot 0 and
    /// zone 0 on a personalized chip), as a P-256 or P-384 signer.
    pub fn certificate_key(&self, zone: u8, slot: u8) -> Result<ChipKey<I2C, D>, KeyError> {
        let der = self.certificate(zone)?;
        let public = certificate_public_key(&der).map_err(KeyError::Certificate)?;
        ChipKey::new(self.clone(), slot, &public)
    }
}

/// Why a chip key could not be made or used.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The driver failed (bus, chip status, ...): its message.
    Chip(String),
    /// The certificate does not parse or holds no P-256/P-384 key.
    Certificate(ChainError),
    /// The public key is not on this signer's curve, or not a valid point.
    WrongKey,
    /// A digest shorter than half the curve's size (ECDSA refuses it).
    DigestTooShort,
}

impl KeyError {
    fn chip<E: fmt::Debug>(e: Error<E>) -> Self {
        Self::Chip(e.to_string())
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chip(e) => write!(f, "secure element: {e}"),
            Self::Certificate(e) => write!(f, "device certificate: {e}"),
            Self::WrongKey => f.write_str("public key not on the signer's curve"),
            Self::DigestTooShort => f.write_str("digest shorter than half the curve size"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<KeyError> for signature::Error {
    fn from(e: KeyError) -> Self {
        signature::Error::from_source(Box::new(e))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for p256::NistP256 {}
    impl Sealed for p384::NistP384 {}
}

/// A curve the chip signs on, tying sesame's [`Curve`] to RustCrypto's types.
pub trait ChipCurve: sealed::Sealed + Send + Sync + 'static {
    /// The wire curve.
    const CURVE: Curve;
    /// Size of a field element (and of the digest the chip is given), in bytes.
    const FIELD_LEN: usize;
    /// The hash [`Signer`] uses: SHA-256 for P-256, SHA-384 for P-384.
    type Hash: Digest;
    /// RustCrypto's ECDSA signature.
    type Signature: Clone + fmt::Debug;
    /// RustCrypto's ECDSA verifying key.
    type VerifyingKey: Clone + fmt::Debug;
    /// The signature from `R || S`.
    fn signature(rs: &[u8]) -> Option<Self::Signature>;
    /// The verifying key from SEC1 `04 || X || Y`.
    fn verifying_key(sec1: &[u8]) -> Option<Self::VerifyingKey>;
}

impl ChipCurve for p256::NistP256 {
    const CURVE: Curve = Curve::P256;
    const FIELD_LEN: usize = 32;
    type Hash = sha2::Sha256;
    type Signature = p256::ecdsa::Signature;
    type VerifyingKey = p256::ecdsa::VerifyingKey;
    fn signature(rs: &[u8]) -> Option<Self::Signature> {
        p256::ecdsa::Signature::from_slice(rs).ok()
    }
    fn verifying_key(sec1: &[u8]) -> Option<Self::VerifyingKey> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()
    }
}

impl ChipCurve for p384::NistP384 {
    const CURVE: Curve = Curve::P384;
    const FIELD_LEN: usize = 48;
    type Hash = sha2::Sha384;
    type Signature = p384::ecdsa::Signature;
    type VerifyingKey = p384::ecdsa::VerifyingKey;
    fn signature(rs: &[u8]) -> Option<Self::Signature> {
        p384::ecdsa::Signature::from_slice(rs).ok()
    }
    fn verifying_key(sec1: &[u8]) -> Option<Self::VerifyingKey> {
        p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).ok()
    }
}

/// A prehash as ECDSA uses it (SEC 1 §4.1.3 step 5, RustCrypto's `bits2field`): the leftmost
/// `field_len` bytes of a longer hash, a shorter one (at least half the size) padded on the
/// left. The chip only takes a full-size digest; this gives it the value ECDSA would sign.
pub fn digest_for_curve(prehash: &[u8], field_len: usize) -> Result<vec::Vec<u8>, KeyError> {
    if prehash.len() < field_len / 2 {
        return Err(KeyError::DigestTooShort);
    }
    let mut out = vec![0u8; field_len];
    if prehash.len() >= field_len {
        out.copy_from_slice(&prehash[..field_len]);
    } else {
        out[field_len - prehash.len()..].copy_from_slice(prehash);
    }
    Ok(out)
}

/// One private key slot of a shared chip, on curve `C`.
pub struct ChipSigner<C: ChipCurve, I2C, D> {
    chip: SharedStsafe<I2C, D>,
    slot: u8,
    public: C::VerifyingKey,
    xy: EccPublicKey,
    curve: PhantomData<C>,
}

/// A P-256 key in the chip.
pub type P256Signer<I2C, D> = ChipSigner<p256::NistP256, I2C, D>;
/// A P-384 key in the chip.
pub type P384Signer<I2C, D> = ChipSigner<p384::NistP384, I2C, D>;

impl<C: ChipCurve, I2C, D> Clone for ChipSigner<C, I2C, D> {
    fn clone(&self) -> Self {
        Self {
            chip: self.chip.clone(),
            slot: self.slot,
            public: self.public.clone(),
            xy: self.xy,
            curve: PhantomData,
        }
    }
}

impl<C: ChipCurve, I2C, D> fmt::Debug for ChipSigner<C, I2C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChipSigner")
            .field("slot", &self.slot)
            .field("public", &self.xy)
            .finish()
    }
}

impl<C: ChipCurve, I2C: I2c, D: DelayNs> ChipSigner<C, I2C, D> {
    /// The key in `slot` of `chip`, whose public key is `public` (checked to be a point of
    /// `C`; the chip itself is only asked when signing).
    pub fn new(
        chip: SharedStsafe<I2C, D>,
        slot: u8,
        public: &EccPublicKey,
    ) -> Result<Self, KeyError> {
        if public.curve() != C::CURVE {
            return Err(KeyError::WrongKey);
        }
        let sec1 = [&[0x04][..], public.xy()].concat();
        let vk = C::verifying_key(&sec1).ok_or(KeyError::WrongKey)?;
        Ok(Self {
            chip,
            slot,
            public: vk,
            xy: *public,
            curve: PhantomData,
        })
    }

    /// The slot.
    pub fn slot(&self) -> u8 {
        self.slot
    }

    /// The public key as the driver exchanges it.
    pub fn public_key(&self) -> &EccPublicKey {
        &self.xy
    }

    /// The chip this key is in.
    pub fn chip(&self) -> &SharedStsafe<I2C, D> {
        &self.chip
    }

    /// Has the chip sign `prehash` (made the curve's size as ECDSA does); returns `R || S`.
    pub fn sign_digest_raw(&self, prehash: &[u8]) -> Result<vec::Vec<u8>, KeyError> {
        let digest = digest_for_curve(prehash, C::FIELD_LEN)?;
        let sig = self
            .chip
            .lock()
            .generate_signature(self.slot, &digest)
            .map_err(KeyError::chip)?;
        Ok(sig.rs().to_vec())
    }
}

impl<C: ChipCurve, I2C: I2c, D: DelayNs> PrehashSigner<C::Signature> for ChipSigner<C, I2C, D> {
    fn sign_prehash(&self, prehash: &[u8]) -> Result<C::Signature, signature::Error> {
        let rs = self.sign_digest_raw(prehash)?;
        C::signature(&rs).ok_or_else(signature::Error::new)
    }
}

impl<C: ChipCurve, I2C: I2c, D: DelayNs> Signer<C::Signature> for ChipSigner<C, I2C, D> {
    fn try_sign(&self, msg: &[u8]) -> Result<C::Signature, signature::Error> {
        self.sign_prehash(&C::Hash::digest(msg))
    }
}

impl<C: ChipCurve, I2C, D> Keypair for ChipSigner<C, I2C, D> {
    type VerifyingKey = C::VerifyingKey;
    fn verifying_key(&self) -> C::VerifyingKey {
        self.public.clone()
    }
}

/// A chip key whose curve is known at run time (e.g. read from the certificate).
pub enum ChipKey<I2C, D> {
    /// On P-256.
    P256(P256Signer<I2C, D>),
    /// On P-384.
    P384(P384Signer<I2C, D>),
}

impl<I2C, D> Clone for ChipKey<I2C, D> {
    fn clone(&self) -> Self {
        match self {
            Self::P256(k) => Self::P256(k.clone()),
            Self::P384(k) => Self::P384(k.clone()),
        }
    }
}

impl<I2C, D> fmt::Debug for ChipKey<I2C, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::P256(k) => f.debug_tuple("P256").field(k).finish(),
            Self::P384(k) => f.debug_tuple("P384").field(k).finish(),
        }
    }
}

impl<I2C: I2c, D: DelayNs> ChipKey<I2C, D> {
    /// The key in `slot` with public key `public`, on `public`'s curve.
    pub fn new(
        chip: SharedStsafe<I2C, D>,
        slot: u8,
        public: &EccPublicKey,
    ) -> Result<Self, KeyError> {
        match public.curve() {
            Curve::P256 => Ok(Self::P256(ChipSigner::new(chip, slot, public)?)),
            Curve::P384 => Ok(Self::P384(ChipSigner::new(chip, slot, public)?)),
            _ => Err(KeyError::WrongKey),
        }
    }

    /// The public key.
    pub fn public_key(&self) -> &EccPublicKey {
        match self {
            Self::P256(k) => k.public_key(),
            Self::P384(k) => k.public_key(),
        }
    }

    /// The slot.
    pub fn slot(&self) -> u8 {
        match self {
            Self::P256(k) => k.slot(),
            Self::P384(k) => k.slot(),
        }
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.public_key().curve()
    }

    /// Has the chip sign `prehash` (made the curve's size as ECDSA does); returns `R || S`.
    pub fn sign_digest_raw(&self, prehash: &[u8]) -> Result<vec::Vec<u8>, KeyError> {
        match self {
            Self::P256(k) => k.sign_digest_raw(prehash),
            Self::P384(k) => k.sign_digest_raw(prehash),
        }
    }

    /// Hashes `msg` with the curve's hash (SHA-256 / SHA-384) and has the chip sign it;
    /// returns `R || S`.
    pub fn sign_message_raw(&self, msg: &[u8]) -> Result<vec::Vec<u8>, KeyError> {
        match self {
            Self::P256(k) => k.sign_digest_raw(&sha2::Sha256::digest(msg)),
            Self::P384(k) => k.sign_digest_raw(&sha2::Sha384::digest(msg)),
        }
    }

    /// ECDH between this slot's key and `peer`: the shared X coordinate.
    pub fn ecdh(&self, peer: &EccPublicKey) -> Result<SharedSecret, KeyError> {
        if peer.curve() != self.curve() {
            return Err(KeyError::WrongKey);
        }
        let chip = match self {
            Self::P256(k) => k.chip(),
            Self::P384(k) => k.chip(),
        };
        chip.lock()
            .establish_key(self.slot(), peer)
            .map_err(KeyError::chip)
    }
}
