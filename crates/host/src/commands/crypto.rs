//! Generate Key, Generate Signature, Verify Signature, Establish Key, Wrap and Unwrap
//! (protocol.md §3.7). Keys and signatures cross the API as raw `X || Y` and `R || S`.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_wire::{Curve, KeyGeneration, PublicKey, Request, Signature};

use crate::{EccPublicKey, EccSignature, EnvelopeKeyType, Error, SharedSecret, Stsafe};

impl<I2C: I2c, D: DelayNs> Stsafe<I2C, D> {
    /// Generate Key 0x11, tag 0x13: a private key in `slot` (1, or 0xFF for the ephemeral ECDH
    /// key) on `curve`, usable `usage_limit` times; returns its public key. The mode of
    /// operation is sent as `00 00`, as STSELib does (the chip's default for the slot).
    pub fn generate_private_key(
        &mut self,
        slot: u8,
        curve: Curve,
        usage_limit: u16,
    ) -> Result<EccPublicKey, Error<I2C::Error>> {
        let req = Request::GenerateKey(KeyGeneration::Private {
            slot,
            usage_limit,
            mode: 0,
            curve,
        });
        let range = self.call(&req)?;
        let mut r = sesame_wire::Reader::new(&self.io[range]);
        let pk = PublicKey::read(&mut r)?;
        r.finish()?;
        EccPublicKey::from_wire(curve, &pk).ok_or(Error::UnexpectedLength)
    }

    /// Generate Key 0x11, tag 0x07: a local envelope key in `slot` (0 or 1).
    pub fn generate_envelope_key(
        &mut self,
        slot: u8,
        key_type: EnvelopeKeyType,
    ) -> Result<(), Error<I2C::Error>> {
        self.expect_empty(&Request::GenerateKey(KeyGeneration::LocalEnvelope {
            slot,
            key_type: key_type as u8,
        }))
    }

    /// Generate Signature 0x16: the chip signs `digest` (32 or 48 bytes) as is, with the key in
    /// `slot`.
    pub fn generate_signature(
        &mut self,
        slot: u8,
        digest: &[u8],
    ) -> Result<EccSignature, Error<I2C::Error>> {
        let range = self.call(&Request::GenerateSignature { slot, digest })?;
        let mut r = sesame_wire::Reader::new(&self.io[range]);
        let sig = Signature::read(&mut r)?;
        r.finish()?;
        EccSignature::from_wire(&sig).ok_or(Error::UnexpectedLength)
    }

    /// Verify Signature 0x17 (message signature): does `signature` (`R || S`) over `digest`
    /// verify with `key`? An invalid signature is `Ok(false)`, not an error.
    pub fn verify_signature(
        &mut self,
        key: &EccPublicKey,
        signature: &[u8],
        digest: &[u8],
    ) -> Result<bool, Error<I2C::Error>> {
        let n = key.curve().coordinate_len();
        if signature.len() != 2 * n {
            return Err(Error::InvalidInput);
        }
        let (r, s) = signature.split_at(n);
        let req = Request::VerifySignature {
            curve: key.curve(),
            key: key.wire(),
            signature: Signature { r, s },
            digest,
        };
        let range = self.call(&req)?;
        match self.decode(range, |r| r.u8())? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Decode(sesame_wire::Error::InvalidValue { at: 0 })),
        }
    }

    /// Establish Key 0x18: ECDH between the key in `slot` and `peer`; returns the shared
    /// secret. Slot 0xFF's ephemeral key is erased by this use.
    pub fn establish_key(
        &mut self,
        slot: u8,
        peer: &EccPublicKey,
    ) -> Result<SharedSecret, Error<I2C::Error>> {
        let req = Request::EstablishKey {
            slot,
            peer: peer.wire(),
        };
        let range = self.call(&req)?;
        let mut r = sesame_wire::Reader::new(&self.io[range]);
        let x = r.len16_prefixed()?;
        r.finish()?;
        if x.len() != peer.curve().coordinate_len() {
            return Err(Error::UnexpectedLength);
        }
        SharedSecret::from_slice(x).ok_or(Error::UnexpectedLength)
    }

    /// Wrap Local Envelope 0x0E: wraps `data` (a multiple of 8 bytes, 16..=480) with the
    /// envelope key in `slot`; writes the envelope (8 bytes longer) to `out` and returns its
    /// length.
    pub fn wrap(
        &mut self,
        slot: u8,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error<I2C::Error>> {
        if out.len() < data.len() + 8 {
            return Err(Error::BufferTooSmall);
        }
        let range = self.call(&Request::Wrap { slot, data })?;
        if range.len() != data.len() + 8 {
            return Err(Error::UnexpectedLength);
        }
        self.copy_out(range, out)
    }

    /// Unwrap Local Envelope 0x0F: writes the data inside `envelope` (8 bytes shorter) to
    /// `out` and returns its length.
    pub fn unwrap(
        &mut self,
        slot: u8,
        envelope: &[u8],
        out: &mut [u8],
    ) -> Result<usize, Error<I2C::Error>> {
        let expected = envelope.len().checked_sub(8).ok_or(Error::InvalidInput)?;
        if out.len() < expected {
            return Err(Error::BufferTooSmall);
        }
        let range = self.call(&Request::Unwrap { slot, envelope })?;
        if range.len() != expected {
            return Err(Error::UnexpectedLength);
        }
        self.copy_out(range, out)
    }
}
