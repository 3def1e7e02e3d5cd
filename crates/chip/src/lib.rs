//! `sesame-chip`: a software STSAFE-A110 secure element.
//!
//! Bit-faithful to the A110's I2C protocol (`docs/protocol.md`): frames and CRC, command and
//! status codes, the data partition with one-way counters, private key slots 0, 1 and 0xFF, local
//! envelope keys, the password, the command authorization table, and the host secure channel
//! (C-MAC, R-MAC, command and response encryption). The engine is sans-IO; [`Bus`] puts chips on
//! an in-process `embedded_hal::i2c::I2c` bus and [`server`] on a socket (protocol.md §10).
//!
//! Private keys never leave a chip: no command, accessor, `Debug` output or export carries them.
//!
//! Status codes the protocol sheet leaves open are chosen and documented where they are
//! returned: [`engine`](crate) (frame level), `commands::data`, `commands::admin`,
//! `commands::crypto`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod bus;
mod chip;
mod commands;
mod engine;
mod faults;
pub mod fs;
mod image;
mod inspect;
mod keys;
mod lease;
mod lock;
mod perso;
mod rng;
mod seal;
pub mod server;
mod state;
mod storage;
mod timing;
pub mod trace;
#[cfg(feature = "test-keys")]
pub mod vectors;

pub use bus::{Bus, BusDevice, BusError, Clock, Log, SharedChip, SimClock, SystemClock};
pub use chip::{Chip, ChipOptions, Nack, StorageFailure};
pub use faults::{FaultStats, Faults};
pub use fs::{Fs, SimFs, StdFs};
pub use image::{ImageError, NVM_SIZE};
pub use inspect::{Inspection, KeyView, ZoneView};
pub use keys::{CurveName, PublicKeyBytes};
pub use lease::{ClientId, DEFAULT_LEASE_BASE, LEASE_FACTOR, LOCAL_CLIENT};
pub use lock::ImageLock;
pub use perso::{ChipConfig, Fab, PersoError, ZoneSpec};
pub use seal::{seal, sealed_serial, unseal, KeyError, SealKey, Sealed, KEY_ENV, SEALED_MAGIC};
pub use state::{
    default_command_policy, encrypted_command_policy, zone_ac, CommandPolicy, ProductData,
    UNLIMITED,
};
pub use storage::{FileStorage, MemStorage, Storage, StorageError, StorageErrorKind};
pub use timing::processing_time;

/// The default 7-bit I2C address of an STSAFE-A110.
pub const DEFAULT_ADDRESS: u8 = 0x20;
