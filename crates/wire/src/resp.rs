//! Typed response codecs: the records inside Query answers and the data of crypto commands
//! (protocol.md §3.5–§3.7). Each type reads from a [`Reader`] and writes to a [`Writer`].

use crate::codec::{Reader, Writer};
use crate::ecc::Curve;
use crate::{CommandCode, Error};

/// Product data TLV tags (Query 0x11).
pub mod product_tag {
    /// Mask id (3 bytes).
    pub const MASK_ID: u8 = 0x01;
    /// ST number (9 bytes): sesame puts the chip's unique serial here.
    pub const ST_NUMBER: u8 = 0x02;
    /// I/O buffer size (2, BE).
    pub const IO_BUFFER_SIZE: u8 = 0x03;
    /// Atomicity buffer size (2, BE).
    pub const ATOMICITY_BUFFER_SIZE: u8 = 0x04;
    /// NVM size (2, BE).
    pub const NVM_SIZE: u8 = 0x05;
}

/// One `tag len value` field of the product data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tlv<'a> {
    /// Tag.
    pub tag: u8,
    /// Value.
    pub value: &'a [u8],
}

/// Iterates over product-data TLVs; stops at the first malformed field with an error.
pub fn product_data(data: &[u8]) -> impl Iterator<Item = Result<Tlv<'_>, Error>> {
    let mut r = Reader::new(data);
    core::iter::from_fn(move || {
        if r.remaining() == 0 {
            return None;
        }
        let item = (|| {
            let tag = r.u8()?;
            let n = r.u8()? as usize;
            Ok(Tlv {
                tag,
                value: r.take(n)?,
            })
        })();
        if item.is_err() {
            r.take_rest();
        }
        Some(item)
    })
}

/// The chip family a mask id names, as `stse_init` classifies it (protocol.md §3.5).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChipModel {
    /// STSAFE-A100.
    A100,
    /// STSAFE-A110.
    A110,
    /// STSAFE-A120.
    A120,
}

/// Classifies a 3-byte mask id by bytes 1..2 as a big-endian number.
pub fn chip_model(mask_id: &[u8]) -> Option<ChipModel> {
    if mask_id.len() != 3 {
        return None;
    }
    match u16::from_be_bytes([mask_id[1], mask_id[2]]) {
        m if m >= 0x6000 => Some(ChipModel::A120),
        m if m >= 0x4600 => Some(ChipModel::A110),
        m if m >= 0x4000 => Some(ChipModel::A100),
        _ => None,
    }
}

/// A zone's type in the partition record.
pub const ZONE_PLAIN: u8 = 0x00;
/// A one-way-counter zone.
pub const ZONE_COUNTER: u8 = 0x01;

/// One record of Query 0x12: `index | type | AC byte | data length(2) | counter(4) if type 1`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ZoneRecord {
    /// Zone index.
    pub index: u8,
    /// [`ZONE_PLAIN`] or [`ZONE_COUNTER`].
    pub zone_type: u8,
    /// bit7 read-AC change right, bits6..4 read AC, bit3 update-AC change right, bits2..0 update AC.
    pub ac: u8,
    /// Size of the data segment.
    pub data_len: u16,
    /// The counter of a counter zone.
    pub counter: Option<u32>,
}

impl ZoneRecord {
    /// Reads one record.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let index = r.u8()?;
        let zone_type = r.u8()?;
        let ac = r.u8()?;
        let data_len = r.u16()?;
        let counter = if zone_type == ZONE_COUNTER {
            Some(r.u32()?)
        } else {
            None
        };
        Ok(Self {
            index,
            zone_type,
            ac,
            data_len,
            counter,
        })
    }

    /// Writes one record.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.index)
            .u8(self.zone_type)
            .u8(self.ac)
            .u16(self.data_len);
        if let Some(c) = self.counter {
            w.u32(c);
        }
    }

    /// Read access condition.
    pub fn read_ac(&self) -> u8 {
        (self.ac >> 4) & 0x07
    }

    /// Update access condition.
    pub fn update_ac(&self) -> u8 {
        self.ac & 0x07
    }
}

/// Reads a whole Query 0x12 answer into `out`; returns how many records it held.
pub fn data_partition(data: &[u8], out: &mut [ZoneRecord]) -> Result<usize, Error> {
    let mut r = Reader::new(data);
    let n = r.u8()? as usize;
    if n > out.len() {
        return Err(Error::BufferTooSmall);
    }
    for slot in out.iter_mut().take(n) {
        *slot = ZoneRecord::read(&mut r)?;
    }
    r.finish()?;
    Ok(n)
}

/// One private-key slot of Query 0x14.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeySlotRecord {
    /// Slot number.
    pub slot: u8,
    /// True when a key is present.
    pub present: bool,
    /// Mode of operation.
    pub mode: u16,
    /// Curve of the key, when present.
    pub curve: Option<Curve>,
}

impl KeySlotRecord {
    /// Reads one slot record.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let slot = r.u8()?;
        let present = r.u8()? != 0;
        let mode = r.u16()?;
        let curve = if present { Some(Curve::read(r)?) } else { None };
        Ok(Self {
            slot,
            present,
            mode,
            curve,
        })
    }

    /// Writes one slot record.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.slot).u8(u8::from(self.present)).u16(self.mode);
        if let (true, Some(c)) = (self.present, self.curve) {
            c.write(w);
        }
    }
}

/// Header of Query 0x14: `count | change-right/filler | global usage limit(2)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyTableHeader {
    /// Number of slot records that follow.
    pub count: u8,
    /// Change-right / filler byte.
    pub change_right: u8,
    /// Global usage limit (sesame: remaining uses of the private keys; 0xFFFF = unlimited).
    pub global_usage_limit: u16,
}

impl KeyTableHeader {
    /// Reads the header.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Self {
            count: r.u8()?,
            change_right: r.u8()?,
            global_usage_limit: r.u16()?,
        })
    }

    /// Writes the header.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.count)
            .u8(self.change_right)
            .u16(self.global_usage_limit);
    }
}

/// One local envelope key slot of Query 0x07: `slot | presence | key length if present`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EnvelopeSlotRecord {
    /// Slot number.
    pub slot: u8,
    /// Key length in bytes (16 or 32) when present.
    pub key_len: Option<u8>,
}

impl EnvelopeSlotRecord {
    /// Reads one record.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let slot = r.u8()?;
        let key_len = if r.u8()? != 0 { Some(r.u8()?) } else { None };
        Ok(Self { slot, key_len })
    }

    /// Writes one record.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.slot);
        match self.key_len {
            Some(n) => w.u8(1).u8(n),
            None => w.u8(0),
        };
    }
}

/// Query 0x17: `presence(1) counter(3)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HostKeySlot {
    /// True when host keys are provisioned.
    pub present: bool,
    /// The chip's C-MAC sequence counter.
    pub counter: u32,
}

impl HostKeySlot {
    /// Reads the 4-byte answer.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Self {
            present: r.u8()? != 0,
            counter: r.u24()?,
        })
    }

    /// Writes the 4-byte answer.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(u8::from(self.present)).u24(self.counter);
    }
}

/// Command access conditions in the authorization table (Query 0x24).
pub mod command_ac {
    /// Never allowed.
    pub const NEVER: u8 = 0;
    /// Free.
    pub const FREE: u8 = 1;
    /// Admin (C-MAC under the admin key).
    pub const ADMIN: u8 = 2;
    /// Host (C-MAC under the host key).
    pub const HOST: u8 = 3;
    /// Admin or a verified password.
    pub const ADMIN_OR_PASSWORD: u8 = 4;
    /// Admin or host.
    pub const ADMIN_OR_HOST: u8 = 5;
}

/// Encryption flag: the command payload is encrypted.
pub const ENC_COMMAND: u8 = 0x02;
/// Encryption flag: the response data is encrypted.
pub const ENC_RESPONSE: u8 = 0x01;

/// One record of the command authorization table: `code | AC | encryption flags`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommandAuthRecord {
    /// Command code.
    pub code: CommandCode,
    /// Access condition ([`command_ac`]).
    pub ac: u8,
    /// [`ENC_COMMAND`] | [`ENC_RESPONSE`].
    pub encryption: u8,
}

impl CommandAuthRecord {
    /// Reads one record (the extended-code byte of A120 records is skipped).
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        let code = CommandCode(r.u8()?);
        if code == CommandCode::EXTENDED_PREFIX {
            r.u8()?;
        }
        Ok(Self {
            code,
            ac: r.u8()?,
            encryption: r.u8()?,
        })
    }

    /// Writes one record.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(self.code.0).u8(self.ac).u8(self.encryption);
    }
}

/// I2C parameters (Query/Put Attribute 0x0A).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct I2cParameters {
    /// 7-bit address.
    pub address: u8,
    /// Lock bit: once set, the parameters can no longer change.
    pub locked: bool,
    /// Low-power mode (0 none, 2 standby).
    pub low_power: u8,
    /// Idle-bus time to standby (A120 field).
    pub idle_time: u8,
}

impl I2cParameters {
    /// Parses the two bytes.
    pub fn from_bytes(b: [u8; 2]) -> Self {
        Self {
            address: b[0] >> 1,
            locked: b[1] & 0x01 != 0,
            low_power: (b[1] >> 1) & 0x03,
            idle_time: b[1] >> 3,
        }
    }

    /// The two bytes.
    pub fn to_bytes(self) -> [u8; 2] {
        [
            (self.address & 0x7F) << 1,
            u8::from(self.locked) | ((self.low_power & 0x03) << 1) | (self.idle_time << 3),
        ]
    }
}

/// Verify Password answer: `status(1)` (non-zero = OK), `remaining tries(1)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PasswordResult {
    /// True when the password matched.
    pub ok: bool,
    /// Tries left before the password blocks.
    pub remaining: u8,
}

impl PasswordResult {
    /// Reads the answer.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Self {
            ok: r.u8()? != 0,
            remaining: r.u8()?,
        })
    }

    /// Writes the answer.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.u8(u8::from(self.ok)).u8(self.remaining);
    }
}
