//! Where the module finds the chip: environment variables, else a small TOML file.
//!
//! - `SESAME_PKCS11_BUS`: `127.0.0.1:7020` or `unix:/path` (a `sesame chip serve`), or
//!   `/dev/i2c-N[:ADDR]` (a chip on a Linux I2C adapter);
//! - `SESAME_PKCS11_ADDRESS`: the chip's 7-bit address (default 0x20, or the one in the bus
//!   string);
//! - `SESAME_PKCS11_CONFIG`: a file with `bus = "..."` and optionally `address = "0x20"`, read
//!   when `SESAME_PKCS11_BUS` is not set.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sesame_host::bus::{parse_address, BusTarget, BusTargetError};

/// The module's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The bus.
    pub bus: BusTarget,
    /// The chip's address on it.
    pub address: u8,
}

/// Why the settings could not be read.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither `SESAME_PKCS11_BUS` nor `SESAME_PKCS11_CONFIG` is set.
    Missing,
    /// The config file could not be read or parsed.
    File(String),
    /// A bus string or address was refused (or the two name different addresses).
    Bus(BusTargetError),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str(
                "set SESAME_PKCS11_BUS (e.g. unix:/run/sesame-bus.sock or /dev/i2c-1:0x20) or SESAME_PKCS11_CONFIG",
            ),
            Self::File(e) => write!(f, "config file: {e}"),
            Self::Bus(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    bus: String,
    address: Option<String>,
}

impl Config {
    /// From a bus string and an optional address setting.
    pub fn new(bus: &str, address: Option<&str>) -> Result<Self, ConfigError> {
        let bus: BusTarget = bus.parse().map_err(ConfigError::Bus)?;
        let setting = address
            .map(|a| parse_address(a.trim()))
            .transpose()
            .map_err(ConfigError::Bus)?;
        let address = bus.resolve_address(setting).map_err(ConfigError::Bus)?;
        Ok(Self { bus, address })
    }

    /// From a TOML file: `bus = "..."`, `address = "0x20"` (optional).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::File(format!("{}: {e}", path.display())))?;
        let f: File = toml::from_str(&text)
            .map_err(|e| ConfigError::File(format!("{}: {e}", path.display())))?;
        Self::new(&f.bus, f.address.as_deref())
    }

    /// From the environment (see the module docs), with `get` reading a variable.
    pub fn from_env_with(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match (get("SESAME_PKCS11_BUS"), get("SESAME_PKCS11_CONFIG")) {
            (Some(bus), _) => Self::new(&bus, get("SESAME_PKCS11_ADDRESS").as_deref()),
            (None, Some(path)) => Self::from_file(Path::new(&path)),
            (None, None) => Err(ConfigError::Missing),
        }
    }

    /// From the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }
}
