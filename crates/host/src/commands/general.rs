//! Echo, Reset, Generate Random, Hibernate, Query, Put Attribute, Verify Password, Delete
//! (protocol.md §3.3–§3.5).

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_wire::cmd::{DELETE_TAG_PASSWORD, MAX_RANDOM, PASSWORD_LEN};
use sesame_wire::resp::{
    CommandAuthRecord, EnvelopeSlotRecord, HostKeySlot, I2cParameters, KeySlotRecord,
    KeyTableHeader, PasswordResult, ZoneRecord,
};
use sesame_wire::secure::Key128;
use sesame_wire::{Attribute, LifeCycle, QueryTag, Reader, Request};

use super::Records;
use crate::table::CommandTable;
use crate::{Error, Stsafe, WakeMode};

impl<I2C: I2c, D: DelayNs> Stsafe<I2C, D> {
    /// Echo 0x00: the chip returns `data`; it is written to `out` and its length returned.
    pub fn echo(&mut self, data: &[u8], out: &mut [u8]) -> Result<usize, Error<I2C::Error>> {
        if out.len() < data.len() {
            return Err(Error::BufferTooSmall);
        }
        let range = self.call(&Request::Echo(data))?;
        if range.len() != data.len() {
            return Err(Error::UnexpectedLength);
        }
        self.copy_out(range, out)
    }

    /// Reset 0x01: clears the chip's volatile state (ephemeral key, verified password). The
    /// host session stays open: its counter lives in the chip's NVM.
    pub fn reset(&mut self) -> Result<(), Error<I2C::Error>> {
        self.expect_empty(&Request::Reset)
    }

    /// Generate Random 0x02: fills `out` with random bytes from the chip, one command per 255
    /// bytes (`STSAFEA_MAXIMUM_RNG_SIZE`). An empty `out` sends nothing.
    pub fn generate_random(&mut self, out: &mut [u8]) -> Result<(), Error<I2C::Error>> {
        for chunk in out.chunks_mut(MAX_RANDOM) {
            let req = Request::GenerateRandom {
                subject: 0,
                len: chunk.len() as u8,
            };
            let range = self.call(&req)?;
            if range.len() != chunk.len() {
                return Err(Error::UnexpectedLength);
            }
            chunk.copy_from_slice(&self.io[range]);
        }
        Ok(())
    }

    /// Hibernate 0x0D. The chip sleeps after answering; with
    /// [`WakeMode::I2cStartOrReset`] the next command wakes it (its first try is NACKed and
    /// polled like any busy chip).
    pub fn hibernate(&mut self, wake: WakeMode) -> Result<(), Error<I2C::Error>> {
        self.expect_empty(&Request::Hibernate { wake: wake as u8 })
    }

    /// Query 0x08: the life-cycle state.
    pub fn query_life_cycle(&mut self) -> Result<LifeCycle, Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::LIFE_CYCLE))?;
        self.decode(range, |r| Ok(LifeCycle(r.u8()?)))
    }

    /// Query 0x0A: the I2C parameters.
    pub fn query_i2c_parameters(&mut self) -> Result<I2cParameters, Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::I2C_PARAMETERS))?;
        self.decode(range, |r| Ok(I2cParameters::from_bytes(r.array()?)))
    }

    /// Query 0x12: the data partition, one record per zone.
    pub fn query_data_partition(&mut self) -> Result<Records<'_, ZoneRecord>, Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::DATA_PARTITION))?;
        let mut r = Reader::new(&self.io[range]);
        let n = r.u8()? as usize;
        Ok(Records::new(r, n, ZoneRecord::read)?)
    }

    /// Query 0x14: the private key table header and one record per slot.
    pub fn query_private_keys(
        &mut self,
    ) -> Result<(KeyTableHeader, Records<'_, KeySlotRecord>), Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::PRIVATE_KEYS))?;
        let mut r = Reader::new(&self.io[range]);
        let header = KeyTableHeader::read(&mut r)?;
        let records = Records::new(r, header.count as usize, KeySlotRecord::read)?;
        Ok((header, records))
    }

    /// Query 0x07: the local envelope key slots.
    pub fn query_envelope_keys(
        &mut self,
    ) -> Result<Records<'_, EnvelopeSlotRecord>, Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::LOCAL_ENVELOPE_KEYS))?;
        let mut r = Reader::new(&self.io[range]);
        let n = r.u8()? as usize;
        Ok(Records::new(r, n, EnvelopeSlotRecord::read)?)
    }

    /// Query 0x17: host key presence and the chip's C-MAC counter.
    pub fn query_host_key(&mut self) -> Result<HostKeySlot, Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::HOST_KEY))?;
        self.decode(range, HostKeySlot::read)
    }

    /// Query 0x24: the command authorization table (CR byte and records). The driver's own
    /// copy is refreshed from this answer too.
    pub fn query_command_authorization(
        &mut self,
    ) -> Result<(u8, Records<'_, CommandAuthRecord>), Error<I2C::Error>> {
        let range = self.call(&Request::Query(QueryTag::COMMAND_AUTHORIZATION))?;
        let table = CommandTable::parse(&self.io[range.clone()])?;
        self.set_table(table);
        let mut r = Reader::new(&self.io[range]);
        let cr = r.u8()?;
        let n = r.u8()? as usize;
        Ok((cr, Records::new(r, n, CommandAuthRecord::read)?))
    }

    /// Put Attribute 0x10 with any attribute. Host keys go through [`Stsafe::put_host_key`].
    pub fn put_attribute(&mut self, attr: Attribute<'_>) -> Result<(), Error<I2C::Error>> {
        if let Attribute::HostKey { mac, cipher } = attr {
            return self.put_host_key(mac, cipher);
        }
        self.expect_empty(&Request::PutAttribute(attr))
    }

    /// Put Attribute 0x08: a new life-cycle state (needs the password verified first when one
    /// is set; see [`Stsafe::lock`]).
    pub fn put_life_cycle(&mut self, state: LifeCycle) -> Result<(), Error<I2C::Error>> {
        self.put_attribute(Attribute::LifeCycle(state))
    }

    /// Put Attribute 0x0A: new I2C parameters, effective at the chip's next reset or power-on
    /// (then call [`Stsafe::set_address`]). As STSELib does on an A110, the idle-time field is
    /// sent as 0.
    pub fn put_i2c_parameters(&mut self, params: I2cParameters) -> Result<(), Error<I2C::Error>> {
        let p = I2cParameters {
            idle_time: 0,
            ..params
        };
        self.put_attribute(Attribute::I2cParameters(p.to_bytes()))
    }

    /// Put Attribute 0x17: host MAC key then host cipher key. With a session open the command
    /// is sent with C-MAC + R-MAC under the current keys (a chip only replaces provisioned keys
    /// that way), and the session continues with the new keys.
    pub fn put_host_key(
        &mut self,
        mac_key: &Key128,
        cipher_key: &Key128,
    ) -> Result<(), Error<I2C::Error>> {
        let req = Request::PutAttribute(Attribute::HostKey {
            mac: mac_key,
            cipher: cipher_key,
        });
        let mac = self.has_session();
        let range = self.call_mac(&req, mac)?;
        if !range.is_empty() {
            return Err(Error::UnexpectedLength);
        }
        self.replace_session_keys(mac_key, cipher_key);
        Ok(())
    }

    /// Verify Password 0x1A. A wrong password is not an error here: the answer says so and how
    /// many tries are left.
    pub fn verify_password(
        &mut self,
        password: &[u8; PASSWORD_LEN],
    ) -> Result<PasswordResult, Error<I2C::Error>> {
        let range = self.call(&Request::VerifyPassword(password))?;
        self.decode(range, PasswordResult::read)
    }

    /// Delete 0x0C, tag 0x09: removes the password (needs it verified first).
    pub fn delete_password(&mut self) -> Result<(), Error<I2C::Error>> {
        self.expect_empty(&Request::Delete {
            tag: DELETE_TAG_PASSWORD,
        })
    }

    /// Sends a command whose answer carries no data.
    pub(crate) fn expect_empty(&mut self, req: &Request<'_>) -> Result<(), Error<I2C::Error>> {
        let range = self.call(req)?;
        if range.is_empty() {
            Ok(())
        } else {
            Err(Error::UnexpectedLength)
        }
    }
}
