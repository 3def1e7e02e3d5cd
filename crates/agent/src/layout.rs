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

/// Access condition: anyone (no authentication).
pub const AC_ALWAYS: u8 = 0;
/// Access condition: never (after personalization).
pub const AC_NEVER: u8 = 7;

/// One zone as the factory personalizes it: its size and access conditions. The chip's own
/// personalization type is built from this, so the factory and the agent cannot disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Zone {
    /// Zone index.
    pub index: u8,
    /// Data segment size in bytes.
    pub size: u16,
    /// `Some(initial value)` for a one-way counter zone.
    pub counter: Option<u32>,
    /// Read access condition.
    pub read_ac: u8,
    /// Update access condition.
    pub update_ac: u8,
    /// The read AC may still be tightened later.
    pub read_right: bool,
    /// The update AC may still be tightened later.
    pub update_right: bool,
}

const fn read_only(index: u8, size: u16) -> Zone {
    Zone {
        index,
        size,
        counter: None,
        read_ac: AC_ALWAYS,
        update_ac: AC_NEVER,
        read_right: false,
        update_right: false,
    }
}

const fn plain(index: u8, size: u16, counter: Option<u32>) -> Zone {
    Zone {
        index,
        size,
        counter,
        read_ac: AC_ALWAYS,
        update_ac: AC_ALWAYS,
        read_right: true,
        update_right: true,
    }
}

/// The zones of a personalized chip, in index order.
pub const ZONES: [Zone; 6] = [
    read_only(CERT, 1024),
    read_only(COMMAND_KEY, 128),
    read_only(FIRMWARE_KEY, 128),
    plain(USAGE, 32, Some(USAGE_INITIAL)),
    plain(ROLLBACK, 16, Some(ROLLBACK_BASE)),
    plain(DATA, 256, None),
];
