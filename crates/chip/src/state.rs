//! The chip's non-volatile state: everything that survives a power cycle.

use serde::{Deserialize, Serialize};
use sesame_wire::resp::{command_ac, CommandAuthRecord, ZONE_COUNTER, ZONE_PLAIN};
use sesame_wire::{CommandCode, LifeCycle};
use zeroize::Zeroize;

use crate::keys::PrivateKey;

/// The usage limit that means "no limit" (sesame choice: the A110 sheet gives no encoding).
pub const UNLIMITED: u16 = 0xFFFF;

/// Zone access conditions (3 bits, protocol.md §4).
pub mod zone_ac {
    /// Always.
    pub const ALWAYS: u8 = 0;
    /// A valid host C-MAC on the command.
    pub const HOST: u8 = 1;
    /// Never.
    pub const NEVER: u8 = 7;
}

/// Mode-of-operation bits (protocol.md §5).
pub mod mode {
    /// byte0 bit7: the slot may be regenerated.
    pub const CHANGE_RIGHT: u16 = 0x8000;
    /// byte1 bit0: key establishment allowed.
    pub const KEY_ESTABLISHMENT: u16 = 0x0001;
    /// byte1 bit2: signature over a host digest allowed.
    pub const SIGN_EXTERNAL: u16 = 0x0004;
    /// byte1 bit3: signature over internal and external data allowed.
    pub const SIGN_INTERNAL: u16 = 0x0008;
}

/// A data-partition zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    /// True for a one-way-counter zone.
    pub counter_zone: bool,
    /// Read access condition.
    pub read_ac: u8,
    /// The read AC may still be changed.
    pub read_right: bool,
    /// Update (and decrement) access condition.
    pub update_ac: u8,
    /// The update AC may still be changed.
    pub update_right: bool,
    /// The one-way counter (counter zones only).
    pub counter: u32,
    /// The data segment.
    pub data: Vec<u8>,
}

impl Zone {
    /// The AC byte of the partition record.
    pub fn ac_byte(&self) -> u8 {
        (u8::from(self.read_right) << 7)
            | ((self.read_ac & 7) << 4)
            | (u8::from(self.update_right) << 3)
            | (self.update_ac & 7)
    }

    /// The partition record type.
    pub fn zone_type(&self) -> u8 {
        if self.counter_zone {
            ZONE_COUNTER
        } else {
            ZONE_PLAIN
        }
    }
}

/// A private key slot's content.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PrivateSlot {
    pub key: PrivateKey,
    pub mode: u16,
    /// Remaining uses; [`UNLIMITED`] never counts down.
    pub uses_left: u16,
}

/// A local envelope key (AES-128 or AES-256).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct EnvelopeKey(pub Vec<u8>);

impl core::fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "EnvelopeKey(AES-{}, <secret>)", self.0.len() * 8)
    }
}

impl Drop for EnvelopeKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The host key slot v1: two AES-128 keys and the 24-bit C-MAC counter.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct HostKeys {
    pub mac: [u8; 16],
    pub cipher: [u8; 16],
    pub counter: u32,
}

impl core::fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "HostKeys(<secret>, counter {})", self.counter)
    }
}

impl Drop for HostKeys {
    fn drop(&mut self) {
        self.mac.zeroize();
        self.cipher.zeroize();
    }
}

/// The password slot.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Password {
    pub value: [u8; 16],
    pub tries_left: u8,
    pub max_tries: u8,
}

impl core::fmt::Debug for Password {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Password(<secret>, {}/{} tries)",
            self.tries_left, self.max_tries
        )
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

/// Product data reported by Query 0x11.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductData {
    /// Mask id (3 bytes); `00 46 01` classifies as an A110.
    pub mask_id: [u8; 3],
    /// The chip's unique serial (the "ST number" TLV).
    pub serial: [u8; 9],
    /// Personalization batch id.
    pub batch_id: [u8; 3],
    /// Personalization date as `YY MM DD`.
    pub perso_date: [u8; 3],
}

/// One command's authorization: access condition and encryption flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandPolicy {
    /// Command code.
    pub code: u8,
    /// Access condition (`sesame_wire::resp::command_ac`).
    pub ac: u8,
    /// Encryption flags (`ENC_COMMAND | ENC_RESPONSE`).
    pub encryption: u8,
}

impl CommandPolicy {
    pub(crate) fn record(&self) -> CommandAuthRecord {
        CommandAuthRecord {
            code: CommandCode(self.code),
            ac: self.ac,
            encryption: self.encryption,
        }
    }
}

/// The default authorization table: every A110 command free and in plain.
pub fn default_command_policy() -> Vec<CommandPolicy> {
    CommandCode::A110
        .iter()
        .map(|c| CommandPolicy {
            code: c.0,
            ac: command_ac::FREE,
            encryption: 0,
        })
        .collect()
}

/// A table that uses the host secure channel's encryption (protocol.md §6.5, §6.6): Generate
/// Random and Read answer encrypted (random bytes and zone contents never cross the bus in the
/// clear), Update takes its data encrypted; each of them needs the host C-MAC. Everything else
/// is free and plain, as in [`default_command_policy`].
pub fn encrypted_command_policy() -> Vec<CommandPolicy> {
    use sesame_wire::resp::{ENC_COMMAND, ENC_RESPONSE};
    let mut table = default_command_policy();
    for p in &mut table {
        let encryption = match CommandCode(p.code) {
            CommandCode::GENERATE_RANDOM | CommandCode::READ => ENC_RESPONSE,
            CommandCode::UPDATE => ENC_COMMAND,
            _ => continue,
        };
        p.ac = command_ac::HOST;
        p.encryption = encryption;
    }
    table
}

/// The whole NVM.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Nvm {
    pub product: ProductData,
    pub life_cycle: u8,
    /// I2C parameters as stored; the address takes effect at the next reset or power-on.
    pub i2c: [u8; 2],
    pub zones: Vec<Zone>,
    pub private: [Option<PrivateSlot>; 2],
    /// Remaining private-key uses across slots; [`UNLIMITED`] never counts down.
    pub global_uses_left: u16,
    pub envelope: [Option<EnvelopeKey>; 2],
    pub host: Option<HostKeys>,
    pub password: Option<Password>,
    /// Command authorization change rights (CR byte of Query 0x24).
    pub policy_rights: u8,
    pub policy: Vec<CommandPolicy>,
}

impl Nvm {
    pub(crate) fn life_cycle(&self) -> LifeCycle {
        LifeCycle(self.life_cycle)
    }

    pub(crate) fn policy_for(&self, code: CommandCode) -> (u8, u8) {
        self.policy
            .iter()
            .find(|p| p.code == code.0)
            .map(|p| (p.ac, p.encryption))
            .unwrap_or((command_ac::FREE, 0))
    }
}
