//! A chip: NVM, volatile state and the engine behind a transaction interface that any bus
//! adapter drives. Time comes in as a parameter (`now`), so the same chip runs on a real clock
//! or on simulated time.

use core::time::Duration;

use sesame_wire::resp::I2cParameters;
use sesame_wire::{CommandCode, LifeCycle};

use crate::engine::{Engine, Volatile};
use crate::image::{self, ImageError};
use crate::inspect::Inspection;
use crate::lease::{ClientId, Lease, LOCAL_CLIENT};
use crate::rng::ChipRng;
use crate::state::Nvm;
use crate::timing::processing_time;
use crate::Storage;

/// How a chip behaves beyond the protocol.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChipOptions {
    /// NACK reads until the real A110's processing time of the last command has passed.
    pub realistic_timing: bool,
    /// Seed the chip's random generator (tests and reproducible simulations); `None` seeds from
    /// the operating system.
    pub rng_seed: Option<u64>,
    /// Test vectors only: random bytes count up from 0 (feature `test-keys`).
    #[cfg(feature = "test-keys")]
    pub counting_rng: bool,
}

/// Why the chip did not acknowledge a transaction (an I2C NACK on its address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nack {
    /// Still processing the last command (realistic timing).
    Busy,
    /// Hibernating; a write wakes it if the wake mode allows.
    Asleep,
    /// Nothing to read: no command has been sent since power-on or wake-up.
    NoResponse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sleep {
    Awake,
    /// Hibernating; wake mode 1 wakes on an I2C start, 2 only on reset/power.
    Hibernating(u8),
}

/// A software STSAFE-A110.
pub struct Chip {
    nvm: Nvm,
    vol: Volatile,
    rng: ChipRng,
    storage: Box<dyn Storage>,
    options: ChipOptions,
    pending: Vec<u8>,
    busy_until: Duration,
    sleep: Sleep,
    address: u8,
    /// After a Reset moved the chip to a new address, its answer is still read at the old one
    /// (the host reads where it wrote), until the next write.
    answer_address: Option<u8>,
    lease: Lease,
    storage_failure: Option<StorageFailure>,
    /// The command the last write ran, for a transaction log.
    ran: Option<crate::trace::Ran>,
}

/// A command whose new state could not be stored: the chip answered an error status (0x05, or
/// 0x01 for a C-MAC counter) and kept its old state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageFailure {
    /// The command.
    pub command: CommandCode,
    /// The storage's error (with the OS error).
    pub error: String,
}

impl core::fmt::Debug for Chip {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Chip")
            .field("serial", &hex(&self.nvm.product.serial))
            .field("address", &self.address)
            .field("life_cycle", &self.nvm.life_cycle())
            .finish_non_exhaustive()
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

impl Chip {
    /// Opens the chip whose image is in `storage`. A missing, corrupted or unreadable image is an
    /// error, never a fresh chip.
    pub fn open(mut storage: Box<dyn Storage>, options: ChipOptions) -> Result<Self, ImageError> {
        let bytes = storage
            .load()
            .map_err(|e| match e.kind {
                crate::StorageErrorKind::Corrupted => ImageError::Corrupted(e.message),
                crate::StorageErrorKind::Io => ImageError::Storage(e.message),
                crate::StorageErrorKind::WrongChip => ImageError::WrongChip(e.message),
            })?
            .ok_or(ImageError::Missing)?;
        let nvm = image::decode(&bytes)?;
        Ok(Self::from_nvm(nvm, storage, options))
    }

    pub(crate) fn from_nvm(nvm: Nvm, storage: Box<dyn Storage>, options: ChipOptions) -> Self {
        let address = I2cParameters::from_bytes(nvm.i2c).address;
        Self {
            rng: ChipRng::new(&options),
            nvm,
            vol: Volatile::default(),
            storage,
            options,
            pending: Vec::new(),
            busy_until: Duration::ZERO,
            sleep: Sleep::Awake,
            address,
            answer_address: None,
            lease: Lease::default(),
            storage_failure: None,
            ran: None,
        }
    }

    /// The content of zone `index` if anyone may read it (read AC "always"): public data such as
    /// the certificate. Zones with any other read AC are not shown.
    pub fn public_zone(&self, index: usize) -> Option<&[u8]> {
        self.nvm
            .zones
            .get(index)
            .filter(|z| z.read_ac == crate::state::zone_ac::ALWAYS)
            .map(|z| z.data.as_slice())
    }

    pub(crate) fn nvm_mut(&mut self) -> &mut Nvm {
        &mut self.nvm
    }

    pub(crate) fn rng_mut(&mut self) -> &mut ChipRng {
        &mut self.rng
    }

    pub(crate) fn persist(&mut self) -> Result<(), crate::StorageError> {
        self.storage.store(&image::encode(&self.nvm))
    }

    /// The 7-bit I2C address the chip answers on now.
    pub fn address(&self) -> u8 {
        self.address
    }

    /// The unique serial (9 bytes).
    pub fn serial(&self) -> [u8; 9] {
        self.nvm.product.serial
    }

    /// The life-cycle state.
    pub fn life_cycle(&self) -> LifeCycle {
        self.nvm.life_cycle()
    }

    /// Public facts about the chip (never a private key).
    pub fn inspect(&self) -> Inspection {
        Inspection::of(&self.nvm)
    }

    /// Runs one command frame and returns the response frame, ignoring timing and sleep: the
    /// engine seen directly, for benchmarks and tools.
    pub fn transceive(&mut self, frame: &[u8]) -> Vec<u8> {
        self.execute(frame);
        self.pending.clone()
    }

    fn execute(&mut self, frame: &[u8]) -> CommandCode {
        let outcome = Engine {
            nvm: &mut self.nvm,
            vol: &mut self.vol,
            rng: &mut self.rng,
            storage: self.storage.as_mut(),
        }
        .process(frame);
        self.pending = outcome.response;
        if let Some(error) = self.vol.storage_failure.take() {
            self.storage_failure = Some(StorageFailure {
                command: outcome.code,
                error,
            });
        }
        if self.vol.reset {
            self.vol.reset = false;
            let new = I2cParameters::from_bytes(self.nvm.i2c).address;
            if new != self.address {
                self.answer_address = Some(self.address);
                self.address = new;
            }
        }
        if let Some(mode) = self.vol.hibernate.take() {
            self.sleep = Sleep::Hibernating(mode);
        }
        outcome.code
    }

    /// True if the chip acknowledges `address` for a read (`read`) or a write.
    pub fn answers(&self, address: u8, read: bool) -> bool {
        address == self.address || (read && self.answer_address == Some(address))
    }

    /// One I2C write transaction carrying a command frame, at time `now`, from the local client
    /// ([`LOCAL_CLIENT`]).
    pub fn write(&mut self, frame: &[u8], now: Duration) -> Result<(), Nack> {
        self.write_as(LOCAL_CLIENT, frame, now)
    }

    /// One I2C write transaction from bus client `client`. While another client's answer is
    /// leased to it (protocol.md §10.2) the write is NACKed as busy.
    pub fn write_as(&mut self, client: ClientId, frame: &[u8], now: Duration) -> Result<(), Nack> {
        self.ran = None;
        self.lease.check_write(client, now)?;
        self.answer_address = None;
        match self.sleep {
            Sleep::Hibernating(1) => {
                // The start condition wakes the chip; this first try is NACKed.
                self.wake();
                self.busy_until = now + crate::timing::WAKE_UP;
                return Err(Nack::Asleep);
            }
            Sleep::Hibernating(_) => return Err(Nack::Asleep),
            Sleep::Awake => {}
        }
        if self.options.realistic_timing && now < self.busy_until {
            return Err(Nack::Busy);
        }
        let code = self.execute(frame);
        self.ran = Some(crate::trace::Ran {
            command: code,
            request_len: frame.len(),
            response_len: self.pending.len(),
            status: self.pending.first().map(|r| sesame_wire::Status(r & 0x1F)),
        });
        if self.options.realistic_timing {
            self.busy_until = now + processing_time(code);
        }
        self.lease.granted(client, code, now);
        Ok(())
    }

    /// One I2C read transaction from the local client ([`LOCAL_CLIENT`]): fills `buf` from
    /// byte 0 of the pending response (bytes past its end read as 0xFF, as an idle bus does).
    /// Re-reads return the same bytes.
    pub fn read(&mut self, buf: &mut [u8], now: Duration) -> Result<(), Nack> {
        self.read_as(LOCAL_CLIENT, buf, now)
    }

    /// One I2C read transaction from bus client `client`: only the client whose command produced
    /// the pending answer reads it (protocol.md §10.2); others are NACKed.
    pub fn read_as(&mut self, client: ClientId, buf: &mut [u8], now: Duration) -> Result<(), Nack> {
        self.lease.check_read(client, now)?;
        if let Sleep::Hibernating(_) = self.sleep {
            // The hibernate answer stays readable until the next write.
            if self.pending.is_empty() {
                return Err(Nack::Asleep);
            }
        }
        if self.options.realistic_timing && now < self.busy_until {
            return Err(Nack::Busy);
        }
        if self.pending.is_empty() {
            return Err(Nack::NoResponse);
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        buf[n..].fill(0xFF);
        self.lease.was_read(buf.len(), self.pending.len());
        Ok(())
    }

    /// Would a write from `client` be refused because another client's answer is leased?
    pub(crate) fn check_write(&self, client: ClientId, now: Duration) -> Result<(), Nack> {
        self.lease.check_write(client, now)
    }

    /// How long a client's answer is held for it beyond [`LEASE_FACTOR`](crate::LEASE_FACTOR)
    /// times the command's processing time (protocol.md §10.2).
    pub fn set_lease_base(&mut self, base: Duration) {
        self.lease.set_base(base);
    }

    /// The lease base in force.
    pub fn lease_base(&self) -> Duration {
        self.lease.base()
    }

    /// What the last write ran, if it ran a command (taken once).
    pub fn take_ran(&mut self) -> Option<crate::trace::Ran> {
        self.ran.take()
    }

    /// The last storage failure not yet taken, for the bus to log.
    pub fn take_storage_failure(&mut self) -> Option<StorageFailure> {
        self.storage_failure.take()
    }

    /// Loses the pending response (fault injection: the answer never reaches the host).
    pub fn drop_response(&mut self) {
        self.pending.clear();
    }

    fn wake(&mut self) {
        self.sleep = Sleep::Awake;
        self.vol = Volatile::default();
        self.pending.clear();
        self.lease.clear();
    }

    /// Power cycle: volatile state (ephemeral key, verified password, pending response) is lost,
    /// NVM is kept, the I2C address is reloaded.
    pub fn power_cycle(&mut self) {
        self.wake();
        self.answer_address = None;
        self.busy_until = Duration::ZERO;
        self.address = I2cParameters::from_bytes(self.nvm.i2c).address;
    }

    /// The time at which the chip stops NACKing (realistic timing), for simulated-time harnesses.
    pub fn busy_until(&self) -> Duration {
        self.busy_until
    }
}
