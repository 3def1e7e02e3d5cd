//! Sharing one chip between several bus clients with I2C semantics (protocol.md §10.2).
//!
//! On a real bus one master drives a write and the reads of its answer; on a shared virtual bus
//! several clients do, and without care one client reads the answer to another's command. So a
//! chip remembers whose command produced its pending answer:
//!
//! - the answer is read only by that client (others are NACKed, as a chip with nothing to say
//!   for them would be);
//! - until that client has read the whole answer, or a lease of a few command times runs out,
//!   another client's write is NACKed as a busy chip's would be, so the answer cannot be lost
//!   before its owner has it.

use core::time::Duration;

use sesame_wire::CommandCode;

use crate::chip::Nack;
use crate::timing::processing_time;

/// Who is talking to a chip on a shared bus: one id per bus client (a socket connection, or an
/// identity a client declared, see protocol.md §10.2).
pub type ClientId = u64;

/// The client of [`Chip::write`](crate::Chip::write) and [`Chip::read`](crate::Chip::read).
pub const LOCAL_CLIENT: ClientId = 0;

/// The lease's allowance for the bus round trips between a command and the read of its answer,
/// added to [`LEASE_FACTOR`] times the command's processing time.
pub const DEFAULT_LEASE_BASE: Duration = Duration::from_millis(250);

/// A lease lasts this many times the command's A110 processing time, plus the base.
pub const LEASE_FACTOR: u32 = 4;

/// Whose the pending answer is, and until when it is held.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    /// The client whose command produced the pending answer.
    owner: Option<ClientId>,
    /// Other clients' writes are NACKed until then, unless the owner has read the whole answer.
    until: Option<Duration>,
    base: Duration,
}

impl Default for Lease {
    fn default() -> Self {
        Self {
            owner: None,
            until: None,
            base: DEFAULT_LEASE_BASE,
        }
    }
}

impl Lease {
    pub fn set_base(&mut self, base: Duration) {
        self.base = base;
    }

    pub fn base(&self) -> Duration {
        self.base
    }

    /// May `client` write now?
    pub fn check_write(&self, client: ClientId, now: Duration) -> Result<(), Nack> {
        match (self.owner, self.until) {
            (Some(owner), Some(until)) if owner != client && now < until => Err(Nack::Busy),
            _ => Ok(()),
        }
    }

    /// `client`'s command `code` was taken at `now`: its answer is now the pending one.
    pub fn granted(&mut self, client: ClientId, code: CommandCode, now: Duration) {
        self.owner = Some(client);
        self.until = Some(now + self.base + processing_time(code) * LEASE_FACTOR);
    }

    /// May `client` read the pending answer now?
    pub fn check_read(&self, client: ClientId, now: Duration) -> Result<(), Nack> {
        match self.owner {
            Some(owner) if owner != client => match self.until {
                Some(until) if now < until => Err(Nack::Busy),
                _ => Err(Nack::NoResponse),
            },
            _ => Ok(()),
        }
    }

    /// The owner read `read` bytes of an answer of `pending` bytes: once it has all of it, the
    /// chip is free for other clients' commands (the owner may still re-read it until then).
    pub fn was_read(&mut self, read: usize, pending: usize) {
        if read >= pending {
            self.until = None;
        }
    }

    /// Power cycle or wake-up: there is no answer any more.
    pub fn clear(&mut self) {
        self.owner = None;
        self.until = None;
    }
}
