//! Command and response frames (protocol.md §1.2–§1.5).

use crate::codec::Writer;
use crate::crc16::{crc16, crc16_digest};
use crate::{CommandCode, Error, Status};

/// Largest command frame STSELib sends: header + payload (+ C-MAC), without the CRC.
pub const MAX_COMMAND_FRAME: usize = 507;
/// Largest I2C write the chip accepts (507 + CRC; the older middleware counted the CRC in 507).
pub const MAX_WRITE: usize = MAX_COMMAND_FRAME + 2;
/// Largest response: R + data (+ R-MAC), without LEN and CRC.
pub const MAX_RESPONSE_FRAME: usize = 507;
/// Largest response on the wire: R + LEN + data + CRC.
pub const MAX_RESPONSE_BYTES: usize = MAX_RESPONSE_FRAME + 4;
/// Length of a C-MAC or R-MAC.
pub const MAC_LEN: usize = 4;

/// The command header byte: three flags over a 5-bit command code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Header(pub u8);

impl Header {
    /// Bit 7: a 4-byte C-MAC follows the payload.
    pub const CMAC: u8 = 0x80;
    /// Bit 6: the host asks for an R-MAC on the response.
    pub const RMAC: u8 = 0x40;
    /// Bit 5: the secure channel uses the host keys (0 would be a session MAC).
    pub const HOST: u8 = 0x20;

    /// A plain command header.
    pub fn plain(code: CommandCode) -> Self {
        Self(code.0 & 0x1F)
    }

    /// A host-protected header as STSELib sends it: C-MAC, R-MAC, host keys (`0xE0 | code`).
    pub fn protected(code: CommandCode) -> Self {
        Self(0xE0 | (code.0 & 0x1F))
    }

    /// The command code.
    pub fn code(self) -> CommandCode {
        CommandCode(self.0 & 0x1F)
    }

    /// True when a C-MAC follows the payload.
    pub fn has_cmac(self) -> bool {
        self.0 & Self::CMAC != 0
    }

    /// True when the host asks for an R-MAC.
    pub fn wants_rmac(self) -> bool {
        self.0 & Self::RMAC != 0
    }

    /// True when the secure channel is the host-key channel.
    pub fn host_channel(self) -> bool {
        self.0 & Self::HOST != 0
    }
}

/// A decoded command frame; the payload borrows from the I2C write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct CommandFrame<'a> {
    /// Header byte with flags.
    pub header: Header,
    /// Payload as sent (ciphertext when the command is encrypted).
    pub payload: &'a [u8],
    /// The C-MAC, when the header says one is present.
    pub cmac: Option<[u8; MAC_LEN]>,
}

impl<'a> CommandFrame<'a> {
    /// Decodes one I2C write: checks the CRC (over everything but the last two bytes) and splits
    /// off the C-MAC when bit 7 of the header is set.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, Error> {
        if bytes.len() < 3 {
            return Err(Error::Truncated { at: bytes.len() });
        }
        if bytes.len() > MAX_WRITE {
            return Err(Error::TooLong { len: bytes.len() });
        }
        let (body, crc) = bytes.split_at(bytes.len() - 2);
        let found = u16::from_be_bytes([crc[0], crc[1]]);
        let expected = crc16(body);
        if found != expected {
            return Err(Error::Crc { expected, found });
        }
        let header = Header(body[0]);
        let rest = &body[1..];
        if header.has_cmac() {
            if rest.len() < MAC_LEN {
                return Err(Error::Truncated { at: bytes.len() });
            }
            let (payload, mac) = rest.split_at(rest.len() - MAC_LEN);
            let mut cmac = [0u8; MAC_LEN];
            cmac.copy_from_slice(mac);
            Ok(Self {
                header,
                payload,
                cmac: Some(cmac),
            })
        } else {
            Ok(Self {
                header,
                payload: rest,
                cmac: None,
            })
        }
    }

    /// Encodes the frame with its CRC into `out`; returns the length written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mut w = Writer::new(out);
        w.u8(self.header.0).put(self.payload);
        if let Some(mac) = &self.cmac {
            w.put(mac);
        }
        let n = w.finish()?;
        if n > MAX_COMMAND_FRAME {
            return Err(Error::TooLong { len: n });
        }
        let crc = crc16(w.written());
        w.u16(crc);
        w.finish()
    }
}

/// A decoded response frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ResponseFrame<'a> {
    /// The first byte exactly as sent (the R-MAC covers it as is).
    pub r: u8,
    /// Response data as sent (ciphertext when encrypted), without the R-MAC.
    pub data: &'a [u8],
    /// The R-MAC, when one was expected and the status is OK.
    pub rmac: Option<[u8; MAC_LEN]>,
}

impl<'a> ResponseFrame<'a> {
    /// The status: bits 4..0 of R, as STSELib reads it.
    pub fn status(&self) -> Status {
        Status(self.r & 0x1F)
    }

    /// Total frame length announced by the first three bytes (`3 + LEN`).
    pub fn total_len(first3: &[u8]) -> Result<usize, Error> {
        if first3.len() < 3 {
            return Err(Error::Truncated { at: first3.len() });
        }
        Ok(3 + u16::from_be_bytes([first3[1], first3[2]]) as usize)
    }

    /// Decodes a complete response. `rmac_expected` says whether the command asked for an R-MAC;
    /// it is split off only when the status is OK (error responses carry none).
    pub fn decode(bytes: &'a [u8], rmac_expected: bool) -> Result<Self, Error> {
        let total = Self::total_len(bytes)?;
        if total < 5 {
            return Err(Error::BadLength { at: 1 });
        }
        if bytes.len() < total {
            return Err(Error::Truncated { at: bytes.len() });
        }
        if bytes.len() > total {
            return Err(Error::TrailingBytes { at: total });
        }
        let r = bytes[0];
        let body = &bytes[3..total - 2];
        let found = u16::from_be_bytes([bytes[total - 2], bytes[total - 1]]);
        let mut d = crc16_digest();
        d.update(&bytes[..1]);
        d.update(body);
        let expected = d.finalize();
        if found != expected {
            return Err(Error::Crc { expected, found });
        }
        if Status(r & 0x1F) == Status::OK && rmac_expected {
            if body.len() < MAC_LEN {
                return Err(Error::Truncated { at: total - 2 });
            }
            let (data, mac) = body.split_at(body.len() - MAC_LEN);
            let mut rmac = [0u8; MAC_LEN];
            rmac.copy_from_slice(mac);
            Ok(Self {
                r,
                data,
                rmac: Some(rmac),
            })
        } else {
            Ok(Self {
                r,
                data: body,
                rmac: None,
            })
        }
    }

    /// Encodes `[R][LEN][data][R-MAC][CRC]`; the CRC covers R, data and R-MAC, not LEN.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Error> {
        let mac_len = if self.rmac.is_some() { MAC_LEN } else { 0 };
        let body_len = self.data.len() + mac_len;
        if 1 + body_len > MAX_RESPONSE_FRAME {
            return Err(Error::TooLong { len: 1 + body_len });
        }
        let mut d = crc16_digest();
        d.update(&[self.r]);
        d.update(self.data);
        let mut w = Writer::new(out);
        w.u8(self.r).u16((body_len + 2) as u16).put(self.data);
        if let Some(mac) = &self.rmac {
            d.update(mac);
            w.put(mac);
        }
        w.u16(d.finalize());
        w.finish()
    }

    /// The 5-byte frame of an error status without data: `[status] 00 02 [CRC]`.
    pub fn error(status: Status) -> [u8; 5] {
        let crc = crc16(&[status.0]).to_be_bytes();
        [status.0, 0x00, 0x02, crc[0], crc[1]]
    }
}
