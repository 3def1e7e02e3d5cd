//! Where the chip is, in one string every program takes (feature `std`): the virtual bus of
//! `sesame chip serve` (`127.0.0.1:7020`, `unix:/path`) or a Linux I2C adapter
//! (`/dev/i2c-1`, `/dev/i2c-1:0x20`; feature `linux-i2c`), opened as one [`AnyBus`].
//!
//! ```
//! use sesame_host::bus::BusTarget;
//! let t: BusTarget = "/dev/i2c-1:0x20".parse()?;
//! assert_eq!(t, BusTarget::I2cDev { path: "/dev/i2c-1".into(), address: Some(0x20) });
//! assert!("/dev/i2c-1:0x80".parse::<BusTarget>().is_err()); // not a 7-bit address
//! # Ok::<(), sesame_host::bus::BusTargetError>(())
//! ```

use core::fmt;
use core::str::FromStr;
use std::io;
use std::string::{String, ToString};
use std::time::Duration;

#[cfg(all(feature = "linux-i2c", target_os = "linux"))]
use embedded_hal::i2c::NoAcknowledgeSource;
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, Operation};

use crate::socket::{SocketBus, SocketError};

/// The A110's default 7-bit address.
pub const DEFAULT_ADDRESS: u8 = 0x20;

/// A `DelayNs` on the operating system's clock: what a real chip (or a served chip with
/// `--timing`) needs between polls.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDelay;

impl embedded_hal::delay::DelayNs for StdDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(ns.into()));
    }
}

/// A parsed bus string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusTarget {
    /// A virtual-bus server: `host:port` or `unix:PATH`, as [`SocketBus::connect`] takes it.
    Socket(String),
    /// A Linux I2C adapter `/dev/i2c-N`, and the chip's address when the string gives one.
    I2cDev {
        /// The device node.
        path: String,
        /// The 7-bit address after the `:`.
        address: Option<u8>,
    },
}

/// Why a bus string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BusTargetError {
    /// Nothing given.
    Empty,
    /// A `/dev/` path that is not `/dev/i2c-N`.
    NotAnI2cDevice(String),
    /// An address that is not a number in 0x08..=0x77 (7-bit, not reserved).
    BadAddress(String),
    /// Neither `host:port`, `unix:PATH` nor `/dev/i2c-N[:ADDR]`.
    Unrecognized(String),
    /// The bus string and a separate address setting name different addresses.
    AddressConflict {
        /// In the bus string.
        bus: u8,
        /// Given separately.
        given: u8,
    },
}

impl fmt::Display for BusTargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("no bus given"),
            Self::NotAnI2cDevice(p) => write!(f, "{p} is not an I2C adapter (/dev/i2c-N)"),
            Self::BadAddress(a) => write!(
                f,
                "I2C address {a:?}: give a 7-bit address in 0x08..=0x77 (e.g. 0x20)"
            ),
            Self::AddressConflict { bus, given } => write!(
                f,
                "the bus names address 0x{bus:02X} and the address setting 0x{given:02X}: give one"
            ),
            Self::Unrecognized(s) => write!(
                f,
                "bus {s:?}: expected HOST:PORT or unix:PATH (sesame chip serve), or /dev/i2c-N[:ADDR]"
            ),
        }
    }
}

impl std::error::Error for BusTargetError {}

/// A 7-bit I2C address, hex (`0x20`) or decimal (`32`), outside the reserved ranges.
pub fn parse_address(s: &str) -> Result<u8, BusTargetError> {
    let bad = || BusTargetError::BadAddress(s.to_string());
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| bad())?;
    if (0x08..=0x77).contains(&v) {
        Ok(v)
    } else {
        Err(bad())
    }
}

impl FromStr for BusTarget {
    type Err = BusTargetError;

    fn from_str(s: &str) -> Result<Self, BusTargetError> {
        if s.is_empty() {
            return Err(BusTargetError::Empty);
        }
        if s.starts_with("/dev/") {
            let (path, address) = match s.split_once(':') {
                Some((p, a)) => (p, Some(parse_address(a)?)),
                None => (s, None),
            };
            let n = path.strip_prefix("/dev/i2c-").unwrap_or_default();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BusTargetError::NotAnI2cDevice(path.to_string()));
            }
            return Ok(Self::I2cDev {
                path: path.to_string(),
                address,
            });
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(BusTargetError::Unrecognized(s.to_string()));
            }
            return Ok(Self::Socket(s.to_string()));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Self::Socket(s.to_string()))
            }
            _ => Err(BusTargetError::Unrecognized(s.to_string())),
        }
    }
}

impl fmt::Display for BusTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(s) => f.write_str(s),
            Self::I2cDev {
                path,
                address: Some(a),
            } => write!(f, "{path}:0x{a:02X}"),
            Self::I2cDev {
                path,
                address: None,
            } => f.write_str(path),
        }
    }
}

impl BusTarget {
    /// The address the string gives (`/dev/i2c-N:ADDR`), if any.
    pub fn address(&self) -> Option<u8> {
        match self {
            Self::I2cDev { address, .. } => *address,
            Self::Socket(_) => None,
        }
    }

    /// The chip's address: the one in the bus string or `given` (they must agree), else
    /// [`DEFAULT_ADDRESS`].
    pub fn resolve_address(&self, given: Option<u8>) -> Result<u8, BusTargetError> {
        match (self.address(), given) {
            (Some(bus), Some(given)) if bus != given => {
                Err(BusTargetError::AddressConflict { bus, given })
            }
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) => Ok(DEFAULT_ADDRESS),
        }
    }

    /// Opens the bus. A socket server that does not answer, or an adapter that cannot be
    /// opened, is an error naming what was tried.
    pub fn open(&self) -> Result<AnyBus, OpenError> {
        let target = match self {
            Self::Socket(s) => s.clone(),
            Self::I2cDev { path, .. } => path.clone(),
        };
        let fail = |e: io::Error| OpenError { target, error: e };
        match self {
            Self::Socket(s) => SocketBus::connect(s).map(AnyBus::Socket).map_err(fail),
            #[cfg(all(feature = "linux-i2c", target_os = "linux"))]
            Self::I2cDev { path, .. } => linux_embedded_hal::I2cdev::new(path)
                .map(AnyBus::Linux)
                .map_err(|e| fail(e.into())),
            #[cfg(not(all(feature = "linux-i2c", target_os = "linux")))]
            Self::I2cDev { .. } => Err(fail(io::Error::new(
                io::ErrorKind::Unsupported,
                "built without Linux I2C support (feature linux-i2c)",
            ))),
        }
    }
}

/// A bus that could not be opened.
#[derive(Debug)]
pub struct OpenError {
    /// What was tried.
    pub target: String,
    /// Why it failed.
    pub error: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.target.starts_with("/dev/") {
            let hint = match self.error.kind() {
                io::ErrorKind::NotFound => {
                    " (no such adapter: is I2C enabled, e.g. dtparam=i2c_arm=on on a Raspberry Pi, and i2c-dev loaded?)"
                }
                io::ErrorKind::PermissionDenied => {
                    " (permission denied: add yourself to the i2c group)"
                }
                _ => "",
            };
            write!(f, "cannot open {}: {}{hint}", self.target, self.error)
        } else {
            write!(
                f,
                "cannot connect to the virtual bus {} (is `sesame chip serve` running?): {}",
                self.target, self.error
            )
        }
    }
}

// The message already carries the I/O error: no `source`, so that chains print it once.
impl std::error::Error for OpenError {}

/// Any bus a [`BusTarget`] opens.
#[non_exhaustive]
pub enum AnyBus {
    /// The virtual bus.
    Socket(SocketBus),
    /// A Linux I2C adapter.
    #[cfg(all(feature = "linux-i2c", target_os = "linux"))]
    Linux(linux_embedded_hal::I2cdev),
}

impl fmt::Debug for AnyBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(b) => b.fmt(f),
            #[cfg(all(feature = "linux-i2c", target_os = "linux"))]
            Self::Linux(_) => f.write_str("I2cdev"),
        }
    }
}

/// A transaction on an [`AnyBus`] that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AnyBusError {
    /// On the virtual bus.
    Socket(SocketError),
    /// On a Linux adapter: the kind the driver acts on, and the kernel's message.
    Linux {
        /// NACKs are polled; anything else ends the command.
        kind: ErrorKind,
        /// The error as the kernel reported it.
        message: String,
    },
}

impl fmt::Display for AnyBusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket(e) => e.fmt(f),
            Self::Linux { message, .. } => write!(f, "I2C adapter: {message}"),
        }
    }
}

impl std::error::Error for AnyBusError {}

impl embedded_hal::i2c::Error for AnyBusError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Socket(e) => e.kind(),
            Self::Linux { kind, .. } => *kind,
        }
    }
}

/// How a Linux adapter's error reaches the driver. Adapters report a NACK as ENXIO (address
/// phase) or EREMOTEIO (data; what i2c-bcm2835 on a Raspberry Pi returns for both): the A110
/// NACKs while it computes, so both must read as NACK for the driver to poll, where
/// `linux-embedded-hal` calls EREMOTEIO "other".
#[cfg(all(feature = "linux-i2c", target_os = "linux"))]
fn linux_error(e: linux_embedded_hal::I2CError) -> AnyBusError {
    use embedded_hal::i2c::Error as _;
    const ENXIO: i32 = 6;
    const EREMOTEIO: i32 = 121;
    let errno = match e.inner() {
        linux_embedded_hal::i2cdev::linux::LinuxI2CError::Errno(n) => Some(*n),
        linux_embedded_hal::i2cdev::linux::LinuxI2CError::Io(io) => io.raw_os_error(),
    };
    let kind = match errno {
        Some(ENXIO) => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
        Some(EREMOTEIO) => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
        _ => e.kind(),
    };
    AnyBusError::Linux {
        kind,
        message: e.to_string(),
    }
}

impl ErrorType for AnyBus {
    type Error = AnyBusError;
}

impl I2c for AnyBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), AnyBusError> {
        match self {
            Self::Socket(b) => b
                .transaction(address, operations)
                .map_err(AnyBusError::Socket),
            #[cfg(all(feature = "linux-i2c", target_os = "linux"))]
            Self::Linux(b) => b.transaction(address, operations).map_err(linux_error),
        }
    }
}
