//! One line per command a chip ran, for an operator watching a served bus (`chip serve -v`):
//! which chip, which command, how many bytes went in and out, the status and how long it took.
//! Codes and lengths only, never a payload: no key, digest, random, plaintext or MAC can reach
//! a log through it.

use core::time::Duration;
use std::sync::Arc;

use sesame_wire::{CommandCode, Status};

/// What the chip ran for one command write (recorded by the chip, timed by the bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ran {
    /// The command, from the frame's header.
    pub command: CommandCode,
    /// Bytes of the command frame (header, payload, MAC, CRC).
    pub request_len: usize,
    /// Bytes of the response frame.
    pub response_len: usize,
    /// The response's status (`None`: no response, as after Hibernate).
    pub status: Option<Status>,
}

/// One transaction of a served chip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The chip's serial.
    pub serial: [u8; 9],
    /// What it ran.
    pub ran: Ran,
    /// From the write reaching the chip to its answer being ready.
    pub duration: Duration,
}

impl core::fmt::Display for Transaction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let r = &self.ran;
        write!(
            f,
            "chip {} {:?} (0x{:02X}): request {} B, response {} B, status ",
            crate::chip::hex(&self.serial),
            r.command,
            r.command.0,
            r.request_len,
            r.response_len
        )?;
        match r.status {
            Some(s) => write!(f, "{s:?} (0x{:02X})", s.0)?,
            None => f.write_str("none")?,
        }
        write!(f, ", {} us", self.duration.as_micros())
    }
}

/// Where a bus reports its transactions.
pub type TraceLog = Arc<dyn Fn(&Transaction) + Send + Sync>;
