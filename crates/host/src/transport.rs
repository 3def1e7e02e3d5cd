//! Frame transport (protocol.md §1): one I2C write per command, NACK polling with bounded
//! retries, and STSELib's read pattern — 5 bytes, then `3 + LEN` bytes from offset 0 — with the
//! CRC checked on every response.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::{ErrorKind, I2c};
use sesame_wire::ResponseFrame;

use crate::Error;

/// Polling and timing parameters (STSELib's configuration macros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Tries of one I2C transaction while the chip NACKs (`STSE_MAX_POLLING_RETRY`, 100). At
    /// least one try is always made.
    pub retries: u16,
    /// Wait between two tries, in ms (`STSE_POLLING_RETRY_INTERVAL`, 10).
    pub interval_ms: u32,
    /// Wait between a command and the first read of its response, in ms
    /// (`STSE_FIRST_POLLING_INTERVAL`, 1 here; busy chips NACK and are polled anyway).
    pub first_wait_ms: u32,
    /// Wait before [`Stsafe::init`](crate::Stsafe::init) talks to the chip: its boot time, in ms
    /// (10, protocol.md §1.6).
    pub boot_wait_ms: u32,
    /// How many times a response that fails its CRC is read again before
    /// [`Error::Crc`] is reported. The chip keeps its response readable until the next command
    /// (protocol.md §1.3), so a re-read never runs a command twice. STSELib does not re-read:
    /// the default, 0, behaves like it.
    pub crc_rereads: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            retries: 100,
            interval_ms: 10,
            first_wait_ms: 1,
            boot_wait_ms: 10,
            crc_rereads: 0,
        }
    }
}

/// Size of the driver's frame buffer: the largest response on the wire (511) rounded up. A LEN
/// announcing more than fits is a corrupted LEN.
pub(crate) const IO_BUF: usize = 512;

/// The bus, the delay and the chip's address.
pub(crate) struct Link<I2C, D> {
    pub i2c: I2C,
    pub delay: D,
    pub address: u8,
    pub config: Config,
}

fn is_nack<E: embedded_hal::i2c::Error>(e: &E) -> bool {
    matches!(e.kind(), ErrorKind::NoAcknowledge(_))
}

impl<I2C: I2c, D: DelayNs> Link<I2C, D> {
    /// Runs `op` until it is acknowledged, at most `config.retries` times.
    fn poll(
        &mut self,
        mut op: impl FnMut(&mut I2C, u8) -> Result<(), I2C::Error>,
    ) -> Result<(), Error<I2C::Error>> {
        let tries = self.config.retries.max(1);
        for attempt in 1..=tries {
            match op(&mut self.i2c, self.address) {
                Ok(()) => return Ok(()),
                Err(e) if is_nack(&e) => {
                    if attempt < tries {
                        self.delay.delay_ms(self.config.interval_ms);
                    }
                }
                Err(e) => return Err(Error::Bus(e)),
            }
        }
        Err(Error::NackTimeout)
    }

    /// Sends one command frame (one write transaction), then waits `first_wait_ms`.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), Error<I2C::Error>> {
        self.poll(|i2c, addr| i2c.write(addr, frame))?;
        self.delay.delay_ms(self.config.first_wait_ms);
        Ok(())
    }

    /// Reads the pending response into `buf` and returns its total length; the CRC has been
    /// checked. Re-reads up to `config.crc_rereads` times on a corrupted frame.
    pub fn receive(&mut self, buf: &mut [u8]) -> Result<usize, Error<I2C::Error>> {
        let mut rereads = self.config.crc_rereads;
        loop {
            match self.receive_once(buf) {
                Err(Error::Crc) if rereads > 0 => rereads -= 1,
                other => return other,
            }
        }
    }

    fn receive_once(&mut self, buf: &mut [u8]) -> Result<usize, Error<I2C::Error>> {
        if buf.len() < 5 {
            return Err(Error::BufferTooSmall);
        }
        // Read #1: R, LEN and two more bytes (the whole frame when LEN = 2).
        self.poll(|i2c, addr| i2c.read(addr, &mut buf[..5]))?;
        let len = u16::from_be_bytes([buf[1], buf[2]]);
        let total = 3 + len as usize;
        // LEN counts at least the CRC; more than the largest frame means LEN itself is corrupt.
        if len < 2 || total > buf.len() {
            return Err(Error::Crc);
        }
        if total > 5 {
            // Read #2: the whole frame again from its first byte.
            self.poll(|i2c, addr| i2c.read(addr, &mut buf[..total]))?;
            // LEN is outside the CRC: both reads must agree on it.
            if u16::from_be_bytes([buf[1], buf[2]]) != len {
                return Err(Error::Crc);
            }
        }
        match ResponseFrame::decode(&buf[..total], false) {
            Ok(_) => Ok(total),
            Err(_) => Err(Error::Crc),
        }
    }
}
