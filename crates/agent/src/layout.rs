//! The zone layout sesame's factory personalizes and the agent relies on.

/// Device certificate (read-only), paired with private key slot 0.
pub const CERT: u8 = 0;
/// Cloud command-verification public key, `04 || X || Y` (P-256, read-only).
pub const COMMAND_KEY: u8 = 1;
/// Firmware-verification public key, `04 || X || Y` (P-256, read-only).
pub const FIRMWARE_KEY: u8 = 2;
/// One-way usage counter (one decrement per use of the consumable).
pub const USAGE: u8 = 3;
/// One-way anti-rollback counter: `ROLLBACK_BASE - installed firmware version`.
pub const ROLLBACK: u8 = 4;
/// Plain device data; bytes 0..8 hold the last executed command sequence (BE).
pub const DATA: u8 = 5;
/// Initial value of the usage counter.
pub const USAGE_INITIAL: u32 = 1_000_000;
/// Anti-rollback counter at firmware version 0.
pub const ROLLBACK_BASE: u32 = 0x00FF_FFFF;
