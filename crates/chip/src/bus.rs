//! The in-process I2C bus: chips attached at their addresses, driven through
//! `embedded_hal::i2c::I2c`. The same bus backs the socket server.

use core::time::Duration;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use embedded_hal::i2c::{
    ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation, SevenBitAddress,
};

use crate::chip::{Chip, Nack};
use crate::faults::{FaultState, FaultStats, Faults, WriteFault};
use crate::lease::{ClientId, DEFAULT_LEASE_BASE, LOCAL_CLIENT};

/// Where the bus gets `now` from.
pub trait Clock: Send + Sync {
    /// Time since an arbitrary, fixed origin.
    fn now(&self) -> Duration;
}

/// Wall-clock time since the clock was made.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Simulated time that moves only when told to, so timing paths are fast and deterministic.
#[derive(Debug, Default, Clone)]
pub struct SimClock(Arc<AtomicU64>);

impl SimClock {
    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::SeqCst))
    }
}

/// A bus transaction that was not acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// No chip answers at this address.
    NoDevice,
    /// The chip NACKed (busy, asleep, nothing to read).
    Nack(Nack),
}

impl core::fmt::Display for BusError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoDevice => f.write_str("no device at this address"),
            Self::Nack(n) => write!(f, "NACK ({n:?})"),
        }
    }
}

impl std::error::Error for BusError {}

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    }
}

/// Where a bus or server reports what an operator should know (one line each).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// A chip shared between the bus and whoever else holds it (tools, tests).
pub type SharedChip = Arc<Mutex<Chip>>;

fn lock(chip: &SharedChip) -> MutexGuard<'_, Chip> {
    // A poisoned chip lock means a panic elsewhere; the chip's state is still consistent
    // because every command commits or rolls back as a whole.
    chip.lock().unwrap_or_else(|e| e.into_inner())
}

struct Inner {
    chips: Mutex<Vec<SharedChip>>,
    clock: Arc<dyn Clock>,
    faults: Mutex<Option<FaultState>>,
    lease_base: Mutex<Duration>,
    next_client: AtomicU64,
    log: Mutex<Option<Log>>,
    trace: Mutex<Option<crate::trace::TraceLog>>,
}

/// An I2C bus with chips on it. Cloning gives another handle to the same bus.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl core::fmt::Debug for Bus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Bus").finish_non_exhaustive()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// A bus on the wall clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock::default()))
    }

    /// A bus on the given clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Inner {
                chips: Mutex::new(Vec::new()),
                clock,
                faults: Mutex::new(None),
                lease_base: Mutex::new(DEFAULT_LEASE_BASE),
                // Ids handed out by the bus have the top bit set, apart from identities that
                // clients choose themselves (protocol.md §10.2).
                next_client: AtomicU64::new(1 << 63),
                log: Mutex::new(None),
                trace: Mutex::new(None),
            }),
        }
    }

    /// Turns on fault injection (see [`Faults`]); `None` turns it off.
    pub fn set_faults(&self, faults: Option<Faults>) {
        *self.faults() = faults.map(FaultState::new);
    }

    /// Faults injected so far.
    pub fn fault_stats(&self) -> FaultStats {
        self.faults().as_ref().map(|f| f.stats).unwrap_or_default()
    }

    fn faults(&self) -> MutexGuard<'_, Option<FaultState>> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn chips(&self) -> MutexGuard<'_, Vec<SharedChip>> {
        self.inner.chips.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh client id: each client that shares a chip needs its own (protocol.md §10.2).
    pub fn new_client(&self) -> ClientId {
        self.inner.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets how long a client's answer is held for it, on every chip now and later attached:
    /// this base plus [`LEASE_FACTOR`](crate::LEASE_FACTOR) times the command's processing time.
    pub fn set_lease_base(&self, base: Duration) {
        *self
            .inner
            .lease_base
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = base;
        for chip in self.chips().iter() {
            lock(chip).set_lease_base(base);
        }
    }

    /// Reports storage failures (which chip, which command, the OS error) to `log`.
    pub fn set_log(&self, log: Option<Log>) {
        *self.inner.log.lock().unwrap_or_else(|e| e.into_inner()) = log;
    }

    /// Reports every command a chip on this bus runs (codes and lengths, never payloads) to
    /// `trace`; `None` stops it.
    pub fn set_trace(&self, trace: Option<crate::trace::TraceLog>) {
        *self.inner.trace.lock().unwrap_or_else(|e| e.into_inner()) = trace;
    }

    fn report(&self, chip: &mut Chip) {
        if let Some(f) = chip.take_storage_failure() {
            if let Some(log) = self
                .inner
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                log(&format!(
                    "chip {}: {:?} not stored, error status answered: {}",
                    crate::chip::hex(&chip.serial()),
                    f.command,
                    f.error
                ));
            }
        }
    }

    /// Every chip on the bus.
    pub fn all_chips(&self) -> Vec<SharedChip> {
        self.chips().clone()
    }

    /// Attaches a chip; fails, handing the chip back, if another chip already answers at its
    /// address.
    pub fn attach(&self, mut chip: Chip) -> Result<SharedChip, Box<Chip>> {
        chip.set_lease_base(
            *self
                .inner
                .lease_base
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut chips = self.chips();
        let addr = chip.address();
        if chips.iter().any(|c| lock(c).address() == addr) {
            return Err(Box::new(chip));
        }
        let shared = Arc::new(Mutex::new(chip));
        chips.push(shared.clone());
        Ok(shared)
    }

    /// The chip at `address`, if any.
    pub fn chip(&self, address: u8) -> Option<SharedChip> {
        self.find(address, false)
    }

    fn find(&self, address: u8, read: bool) -> Option<SharedChip> {
        self.chips()
            .iter()
            .find(|c| lock(c).answers(address, read))
            .cloned()
    }

    /// One write transaction from the local client ([`LOCAL_CLIENT`]).
    pub fn write(&self, address: u8, bytes: &[u8]) -> Result<(), BusError> {
        self.write_as(LOCAL_CLIENT, address, bytes)
    }

    /// One read transaction from the local client ([`LOCAL_CLIENT`]).
    pub fn read(&self, address: u8, buf: &mut [u8]) -> Result<(), BusError> {
        self.read_as(LOCAL_CLIENT, address, buf)
    }

    /// One write transaction from `client`.
    pub fn write_as(&self, client: ClientId, address: u8, bytes: &[u8]) -> Result<(), BusError> {
        let chip = self.chip(address).ok_or(BusError::NoDevice)?;
        let now = self.inner.clock.now();
        let fault = self
            .faults()
            .as_mut()
            .map_or(WriteFault::None, FaultState::on_write);
        let trace = self
            .inner
            .trace
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut chip = lock(&chip);
        let started = trace.as_ref().map(|_| Instant::now());
        // A client holding another's answer makes the chip busy before any fault is drawn.
        if fault != WriteFault::Nack && fault != WriteFault::CutBefore {
            chip.check_write(client, now).map_err(BusError::Nack)?;
        }
        let r = match fault {
            WriteFault::Nack => Err(BusError::Nack(Nack::Busy)),
            WriteFault::CutBefore => {
                chip.power_cycle();
                Err(BusError::Nack(Nack::Asleep))
            }
            WriteFault::CutAfter => {
                let r = chip.write_as(client, bytes, now);
                chip.power_cycle();
                r.map_err(BusError::Nack)
            }
            WriteFault::Drop => {
                let r = chip.write_as(client, bytes, now);
                chip.drop_response();
                r.map_err(BusError::Nack)
            }
            WriteFault::None => chip.write_as(client, bytes, now).map_err(BusError::Nack),
        };
        self.report(&mut chip);
        let ran = chip.take_ran();
        let serial = chip.serial();
        drop(chip);
        if let (Some(trace), Some(ran), Some(t0)) = (trace, ran, started) {
            trace(&crate::trace::Transaction {
                serial,
                ran,
                duration: t0.elapsed(),
            });
        }
        r
    }

    /// One read transaction from `client`.
    pub fn read_as(&self, client: ClientId, address: u8, buf: &mut [u8]) -> Result<(), BusError> {
        let chip = self.find(address, true).ok_or(BusError::NoDevice)?;
        let now = self.inner.clock.now();
        let mut faults = self.faults();
        if faults.as_mut().is_some_and(FaultState::on_read) {
            return Err(BusError::Nack(Nack::Busy));
        }
        lock(&chip)
            .read_as(client, buf, now)
            .map_err(BusError::Nack)?;
        if let Some(f) = faults.as_mut() {
            f.corrupt(buf);
        }
        Ok(())
    }

    /// Power-cycles the chip at `address`.
    pub fn power_cycle(&self, address: u8) -> Result<(), BusError> {
        let chip = self.chip(address).ok_or(BusError::NoDevice)?;
        lock(&chip).power_cycle();
        Ok(())
    }

    /// An `embedded_hal::i2c::I2c` device on this bus.
    /// Each device is its own bus client (clones share its id).
    pub fn device(&self) -> BusDevice {
        BusDevice {
            bus: self.clone(),
            client: self.new_client(),
        }
    }
}

/// The bus as seen by a host driver: an `embedded_hal::i2c::I2c` implementation.
#[derive(Clone, Debug)]
pub struct BusDevice {
    bus: Bus,
    client: ClientId,
}

impl ErrorType for BusDevice {
    type Error = BusError;
}

impl I2c<SevenBitAddress> for BusDevice {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        for op in operations {
            match op {
                Operation::Write(bytes) => self.bus.write_as(self.client, address, bytes)?,
                Operation::Read(buf) => self.bus.read_as(self.client, address, buf)?,
            }
        }
        Ok(())
    }
}
