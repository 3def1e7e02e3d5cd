//! Flows built from several commands, as STSELib's API layer does them: the device certificate
//! and id, whole-zone reads and writes in chunks, life-cycle lock and unlock with the password,
//! signature verification against a key stored in a zone, and ECDH with the ephemeral slot.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_wire::cmd::{PASSWORD_LEN, SLOT_EPHEMERAL};
use sesame_wire::{Curve, LifeCycle};

use crate::{EccPublicKey, Error, SharedSecret, Stsafe, ZoneAccess, MAX_COORDINATE};

/// Largest piece of a zone read or written by one command in the chunked flows: 253 bytes, the
/// certificate chunk of `stse_get_device_certificate`.
pub const CHUNK: usize = 253;
/// Offset of the device id in the certificate zone (`stse_get_device_id`).
pub const DEVICE_ID_OFFSET: u16 = 15;
/// Length of the device id.
pub const DEVICE_ID_LEN: usize = 11;

impl<I2C: I2c, D: DelayNs> Stsafe<I2C, D> {
    /// Size of the DER certificate in `zone` (zone 0 on ST chips): 2 bytes read at offset 2
    /// (the `30 82 LL LL` length) plus 4, as `stse_get_device_certificate_size` does.
    pub fn certificate_size(&mut self, zone: u8) -> Result<usize, Error<I2C::Error>> {
        let mut len = [0u8; 2];
        self.read(zone, 2, &mut len)?;
        Ok(u16::from_be_bytes(len) as usize + 4)
    }

    /// Reads the certificate in `zone` into `out` in chunks of [`CHUNK`] bytes; returns its
    /// size. [`Error::BufferTooSmall`] when it does not fit.
    pub fn read_certificate(
        &mut self,
        zone: u8,
        out: &mut [u8],
    ) -> Result<usize, Error<I2C::Error>> {
        let size = self.certificate_size(zone)?;
        let cert = out.get_mut(..size).ok_or(Error::BufferTooSmall)?;
        self.read_zone(zone, 0, cert)?;
        Ok(size)
    }

    /// The 11-byte device id at offset 15 of the certificate zone (`stse_get_device_id`).
    pub fn device_id(&mut self, zone: u8) -> Result<[u8; DEVICE_ID_LEN], Error<I2C::Error>> {
        let mut id = [0u8; DEVICE_ID_LEN];
        self.read(zone, DEVICE_ID_OFFSET, &mut id)?;
        Ok(id)
    }

    /// Fills `out` from `offset` of a plain zone, one Read per [`CHUNK`] bytes.
    pub fn read_zone(
        &mut self,
        zone: u8,
        offset: u16,
        out: &mut [u8],
    ) -> Result<(), Error<I2C::Error>> {
        self.read_zone_with(zone, offset, out, ZoneAccess::default())
    }

    /// [`Stsafe::read_zone`] with options for every chunk.
    pub fn read_zone_with(
        &mut self,
        zone: u8,
        offset: u16,
        out: &mut [u8],
        access: ZoneAccess,
    ) -> Result<(), Error<I2C::Error>> {
        for (i, chunk) in out.chunks_mut(CHUNK).enumerate() {
            let at = chunk_offset(offset, i)?;
            self.read_with(zone, at, chunk, access)?;
        }
        Ok(())
    }

    /// Writes `data` from `offset` of a plain zone, one Update per [`CHUNK`] bytes. Each chunk
    /// is atomic on its own, not the whole write.
    pub fn update_zone(
        &mut self,
        zone: u8,
        offset: u16,
        data: &[u8],
    ) -> Result<(), Error<I2C::Error>> {
        self.update_zone_with(zone, offset, data, ZoneAccess::default())
    }

    /// [`Stsafe::update_zone`] with options for every chunk.
    pub fn update_zone_with(
        &mut self,
        zone: u8,
        offset: u16,
        data: &[u8],
        access: ZoneAccess,
    ) -> Result<(), Error<I2C::Error>> {
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let at = chunk_offset(offset, i)?;
            self.update_with(zone, at, chunk, access)?;
        }
        Ok(())
    }

    /// Locks the life cycle (`stse_device_lock`): Verify Password, then Put Attribute 0x08 with
    /// 0x83 (operational + locked).
    pub fn lock(&mut self, password: &[u8; PASSWORD_LEN]) -> Result<(), Error<I2C::Error>> {
        self.check_password(password)?;
        self.put_life_cycle(LifeCycle::OPERATIONAL_LOCKED)
    }

    /// Unlocks the life cycle (`stse_device_unlock`): Verify Password, then Put Attribute 0x08
    /// with 0x03 (operational).
    pub fn unlock(&mut self, password: &[u8; PASSWORD_LEN]) -> Result<(), Error<I2C::Error>> {
        self.check_password(password)?;
        self.put_life_cycle(LifeCycle::OPERATIONAL)
    }

    fn check_password(&mut self, password: &[u8; PASSWORD_LEN]) -> Result<(), Error<I2C::Error>> {
        let r = self.verify_password(password)?;
        if r.ok {
            Ok(())
        } else {
            Err(Error::PasswordRejected {
                remaining: r.remaining,
            })
        }
    }

    /// Has the chip verify `signature` (`R || S`) over `digest` with a public key stored in a
    /// zone. sesame's layout (protocol.md is silent): the key is an uncompressed SEC1 point
    /// `04 || X || Y` at `offset` (65 bytes for P-256, 97 for P-384), e.g. in a read-only zone
    /// written at personalization.
    pub fn verify_with_zone_key(
        &mut self,
        zone: u8,
        offset: u16,
        curve: Curve,
        signature: &[u8],
        digest: &[u8],
    ) -> Result<bool, Error<I2C::Error>> {
        let n = curve.coordinate_len();
        if n > MAX_COORDINATE {
            return Err(Error::InvalidInput);
        }
        let mut buf = [0u8; 1 + 2 * MAX_COORDINATE];
        let point = &mut buf[..1 + 2 * n];
        self.read(zone, offset, point)?;
        if point[0] != 0x04 {
            return Err(Error::Decode(sesame_wire::Error::InvalidValue { at: 0 }));
        }
        let key = EccPublicKey::from_xy(curve, &point[1..]).ok_or(Error::InvalidInput)?;
        self.verify_signature(&key, signature, digest)
    }

    /// ECDH with a fresh single-use key: Generate Key in slot 0xFF on the peer's curve, then
    /// Establish Key. Returns the chip's ephemeral public key (for the peer) and the secret.
    pub fn ecdh_ephemeral(
        &mut self,
        peer: &EccPublicKey,
    ) -> Result<(EccPublicKey, SharedSecret), Error<I2C::Error>> {
        let own = self.generate_private_key(SLOT_EPHEMERAL, peer.curve(), 1)?;
        let secret = self.establish_key(SLOT_EPHEMERAL, peer)?;
        Ok((own, secret))
    }
}

fn chunk_offset<E>(offset: u16, index: usize) -> Result<u16, Error<E>> {
    index
        .checked_mul(CHUNK)
        .and_then(|d| d.checked_add(offset as usize))
        .and_then(|o| u16::try_from(o).ok())
        .ok_or(Error::InvalidInput)
}
