//! Read, Update and Decrement (protocol.md §3.6, §4). One command each; the chunked flows
//! over whole zones are in `flows`.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_wire::{Request, ZoneOption};

use crate::{Error, Stsafe, ZoneAccess};

impl<I2C: I2c, D: DelayNs> Stsafe<I2C, D> {
    /// Read 0x05 from a plain zone: `out.len()` bytes at `offset`; returns the length read.
    pub fn read(
        &mut self,
        zone: u8,
        offset: u16,
        out: &mut [u8],
    ) -> Result<usize, Error<I2C::Error>> {
        self.read_with(zone, offset, out, ZoneAccess::default())
    }

    /// Read 0x05 with options: an access-condition change in the option byte (a read of length
    /// 0 only changes the AC), or C-MAC + R-MAC for a zone whose read AC is "host".
    pub fn read_with(
        &mut self,
        zone: u8,
        offset: u16,
        out: &mut [u8],
        access: ZoneAccess,
    ) -> Result<usize, Error<I2C::Error>> {
        let range = self.read_raw(zone, offset, out.len(), access)?;
        if range.len() != out.len() {
            return Err(Error::UnexpectedLength);
        }
        self.copy_out(range, out)
    }

    /// Read 0x05 from a one-way-counter zone: returns the counter and writes `out.len()` bytes
    /// of the data segment at `offset` to `out`.
    pub fn read_counter(
        &mut self,
        zone: u8,
        offset: u16,
        out: &mut [u8],
    ) -> Result<u32, Error<I2C::Error>> {
        self.read_counter_with(zone, offset, out, ZoneAccess::default())
    }

    /// [`Stsafe::read_counter`] with options.
    pub fn read_counter_with(
        &mut self,
        zone: u8,
        offset: u16,
        out: &mut [u8],
        access: ZoneAccess,
    ) -> Result<u32, Error<I2C::Error>> {
        let range = self.read_raw(zone, offset, out.len(), access)?;
        if range.len() != out.len() + 4 {
            return Err(Error::UnexpectedLength);
        }
        let data = &self.io[range];
        out.copy_from_slice(&data[4..]);
        Ok(u32::from_be_bytes([data[0], data[1], data[2], data[3]]))
    }

    fn read_raw(
        &mut self,
        zone: u8,
        offset: u16,
        len: usize,
        access: ZoneAccess,
    ) -> Result<core::ops::Range<usize>, Error<I2C::Error>> {
        let len = u16::try_from(len).map_err(|_| Error::InvalidInput)?;
        let req = Request::Read {
            option: access.option,
            zone,
            offset,
            len,
        };
        self.call_mac(&req, access.mac)
    }

    /// Update 0x06: writes `data` at `offset` of a plain zone.
    pub fn update(&mut self, zone: u8, offset: u16, data: &[u8]) -> Result<(), Error<I2C::Error>> {
        self.update_with(zone, offset, data, ZoneAccess::default())
    }

    /// Update 0x06 with options: atomicity (option bit 7; at most 64 bytes on an A110), an
    /// update-AC change, or C-MAC + R-MAC.
    pub fn update_with(
        &mut self,
        zone: u8,
        offset: u16,
        data: &[u8],
        access: ZoneAccess,
    ) -> Result<(), Error<I2C::Error>> {
        let req = Request::Update {
            option: access.option,
            zone,
            offset,
            data,
        };
        let range = self.call_mac(&req, access.mac)?;
        if range.is_empty() {
            Ok(())
        } else {
            Err(Error::UnexpectedLength)
        }
    }

    /// Decrement 0x04: subtracts `amount` (not 0) from a counter zone, writing `data` (may be
    /// empty) at `offset` of its data segment in the same operation; returns the new counter.
    pub fn decrement(
        &mut self,
        zone: u8,
        offset: u16,
        amount: u32,
        data: &[u8],
    ) -> Result<u32, Error<I2C::Error>> {
        self.decrement_with(zone, offset, amount, data, ZoneAccess::default())
    }

    /// [`Stsafe::decrement`] with options (update-AC change, C-MAC + R-MAC). The atomicity bit
    /// does not exist for Decrement and is cleared.
    pub fn decrement_with(
        &mut self,
        zone: u8,
        offset: u16,
        amount: u32,
        data: &[u8],
        access: ZoneAccess,
    ) -> Result<u32, Error<I2C::Error>> {
        let req = Request::Decrement {
            option: ZoneOption(access.option.0 & 0x1F),
            zone,
            offset,
            amount,
            data,
        };
        let range = self.call_mac(&req, access.mac)?;
        self.decode(range, |r| r.u32())
    }
}
