//! A small host-side link for the CLI's own tools and demo: frames from sesame-wire sent over an
//! in-process bus with STSELib's read pattern (5 bytes, then 3 + LEN from offset 0), plus the
//! host secure channel. (The full no_std host driver is `sesame-host`'s job.)

use anyhow::{anyhow, bail, Context, Result};
use sesame_chip::Bus;
use sesame_wire::secure::{self, Direction};
use sesame_wire::{CommandFrame, Header, Request, ResponseFrame, Status};

/// Host keys for the secure channel, as exported beside a chip image.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct HostKeys {
    /// Hex of the 16-byte MAC key.
    pub mac: String,
    /// Hex of the 16-byte cipher key.
    pub cipher: String,
}

impl HostKeys {
    pub fn keys(&self) -> Result<([u8; 16], [u8; 16])> {
        let k = |s: &str| -> Result<[u8; 16]> {
            hex::decode(s)?
                .try_into()
                .map_err(|_| anyhow!("host key must be 16 bytes"))
        };
        Ok((k(&self.mac)?, k(&self.cipher)?))
    }
}

/// An open secure channel: keys and the counter kept in step with the chip.
pub struct Session {
    mac: [u8; 16],
    cipher: [u8; 16],
    n: u32,
}

pub struct Link {
    bus: Bus,
    addr: u8,
}

/// What came back: the status and the (plaintext) data.
pub struct Answer {
    pub status: Status,
    pub data: Vec<u8>,
}

impl Answer {
    pub fn ok(self) -> Result<Vec<u8>> {
        if self.status == Status::OK {
            Ok(self.data)
        } else {
            bail!("chip answered {:?} (0x{:02X})", self.status, self.status.0)
        }
    }
}

impl Link {
    pub fn new(bus: Bus, addr: u8) -> Self {
        Self { bus, addr }
    }

    /// Writes a raw frame and reads the whole response as STSELib does.
    pub fn raw(&self, frame: &[u8]) -> Result<Vec<u8>> {
        self.bus
            .write(self.addr, frame)
            .map_err(|e| anyhow!("I2C write: {e}"))?;
        let mut head = [0u8; 5];
        self.bus
            .read(self.addr, &mut head)
            .map_err(|e| anyhow!("I2C read: {e}"))?;
        let total = ResponseFrame::total_len(&head)?;
        if total <= head.len() {
            return Ok(head[..total].to_vec());
        }
        let mut all = vec![0u8; total];
        self.bus
            .read(self.addr, &mut all)
            .map_err(|e| anyhow!("I2C read: {e}"))?;
        Ok(all)
    }

    fn encode(req: &Request<'_>) -> Result<Vec<u8>> {
        let mut payload = vec![0u8; 640];
        let n = req.encode(&mut payload)?;
        payload.truncate(n);
        Ok(payload)
    }

    /// A plain command.
    pub fn call(&self, req: &Request<'_>) -> Result<Answer> {
        let payload = Self::encode(req)?;
        let frame = CommandFrame {
            header: Header::plain(req.code()),
            payload: &payload,
            cmac: None,
        };
        let mut out = vec![0u8; 700];
        let n = frame.encode(&mut out)?;
        let rsp = self.raw(&out[..n])?;
        let r = ResponseFrame::decode(&rsp, false).context("response frame")?;
        Ok(Answer {
            status: r.status(),
            data: r.data.to_vec(),
        })
    }

    /// Opens a session from the chip's counter (Query 0x17).
    pub fn open_session(&self, mac: [u8; 16], cipher: [u8; 16]) -> Result<Session> {
        let data = self
            .call(&Request::Query(sesame_wire::QueryTag::HOST_KEY))?
            .ok()?;
        let slot = sesame_wire::resp::HostKeySlot::read(&mut sesame_wire::Reader::new(&data))?;
        if !slot.present {
            bail!("the chip has no host keys");
        }
        Ok(Session {
            mac,
            cipher,
            n: slot.counter,
        })
    }

    /// A protected command (C-MAC + R-MAC, optional encryption both ways); `tamper` flips a bit
    /// of the C-MAC, for demonstrating refusals.
    pub fn call_protected(
        &self,
        s: &mut Session,
        req: &Request<'_>,
        enc: (bool, bool),
        tamper: bool,
    ) -> Result<Answer> {
        let mut payload = Self::encode(req)?;
        if enc.0 {
            let len = payload.len();
            payload.resize(secure::padded_len(len), 0);
            secure::encrypt(&s.cipher, s.n, Direction::Command, &mut payload, len)?;
        }
        let header = Header::protected(req.code());
        let mut mac = secure::command_mac(&s.mac, s.n, header, &payload)?;
        if tamper {
            mac[0] ^= 1;
        }
        let frame = CommandFrame {
            header,
            payload: &payload,
            cmac: Some(mac),
        };
        let mut out = vec![0u8; 700];
        let n = frame.encode(&mut out)?;
        let rsp = self.raw(&out[..n])?;
        let r = ResponseFrame::decode(&rsp, true).context("response frame")?;
        let status = r.status();
        if status == Status::INVALID_CMAC || status == Status::COMMUNICATION_ERROR {
            return Ok(Answer {
                status,
                data: Vec::new(),
            });
        }
        let n_before = s.n;
        s.n = secure::next_counter(s.n);
        if status != Status::OK {
            return Ok(Answer {
                status,
                data: Vec::new(),
            });
        }
        let expected = secure::response_mac(&s.mac, n_before, header, &payload, r.r, r.data)?;
        let rmac = r.rmac.ok_or_else(|| anyhow!("missing R-MAC"))?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &rmac[..])) {
            bail!("R-MAC mismatch: the response was not produced by the chip");
        }
        let mut data = r.data.to_vec();
        if enc.1 && !data.is_empty() {
            let len = secure::decrypt(&s.cipher, n_before, Direction::Response, &mut data)?;
            data.truncate(len);
        }
        Ok(Answer { status, data })
    }
}
