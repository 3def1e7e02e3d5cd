//! A public view of a chip for tools: zones, counters, life cycle, public keys. By construction
//! it holds no secret: only public keys, counts and flags are copied in.

use serde::Serialize;
use sesame_wire::resp::I2cParameters;

use crate::chip::hex;
use crate::keys::PublicKeyBytes;
use crate::state::{CommandPolicy, Nvm, UNLIMITED};

/// What `sesame chip inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Serial, hex.
    pub serial: String,
    /// Mask id, hex.
    pub mask_id: String,
    /// Life-cycle state name.
    pub life_cycle: String,
    /// 7-bit I2C address (as stored; effective after reset).
    pub i2c_address: u8,
    /// Zones.
    pub zones: Vec<ZoneView>,
    /// Private key slots 0 and 1.
    pub private_keys: Vec<KeyView>,
    /// Remaining uses across private keys (`None` = unlimited).
    pub global_uses_left: Option<u16>,
    /// Local envelope key sizes in bits, per slot.
    pub envelope_keys: Vec<Option<usize>>,
    /// Host keys provisioned.
    pub host_keys: bool,
    /// The host C-MAC counter.
    pub host_counter: u32,
    /// A password is set; tries left.
    pub password_tries: Option<u8>,
    /// The command authorization table.
    pub command_policy: Vec<CommandPolicy>,
}

/// One zone.
#[derive(Debug, Clone, Serialize)]
pub struct ZoneView {
    /// Index.
    pub index: usize,
    /// "plain" or "counter".
    pub kind: &'static str,
    /// Data segment size.
    pub size: usize,
    /// Read AC and whether it may change.
    pub read_ac: (u8, bool),
    /// Update AC and whether it may change.
    pub update_ac: (u8, bool),
    /// Counter value of a counter zone.
    pub counter: Option<u32>,
}

/// One private key slot.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// Slot number.
    pub slot: u8,
    /// Public key, when a key is present.
    pub public_key: Option<PublicKeyBytes>,
    /// Mode of operation.
    pub mode: u16,
    /// Remaining uses (`None` = unlimited).
    pub uses_left: Option<u16>,
}

fn limit(v: u16) -> Option<u16> {
    (v != UNLIMITED).then_some(v)
}

impl Inspection {
    pub(crate) fn of(nvm: &Nvm) -> Self {
        Self {
            serial: hex(&nvm.product.serial),
            mask_id: hex(&nvm.product.mask_id),
            life_cycle: format!("{:?}", nvm.life_cycle()),
            i2c_address: I2cParameters::from_bytes(nvm.i2c).address,
            zones: nvm
                .zones
                .iter()
                .enumerate()
                .map(|(index, z)| ZoneView {
                    index,
                    kind: if z.counter_zone { "counter" } else { "plain" },
                    size: z.data.len(),
                    read_ac: (z.read_ac, z.read_right),
                    update_ac: (z.update_ac, z.update_right),
                    counter: z.counter_zone.then_some(z.counter),
                })
                .collect(),
            private_keys: nvm
                .private
                .iter()
                .enumerate()
                .map(|(slot, s)| KeyView {
                    slot: slot as u8,
                    public_key: s.as_ref().map(|s| s.key.public()),
                    mode: s.as_ref().map_or(0, |s| s.mode),
                    uses_left: s.as_ref().and_then(|s| limit(s.uses_left)),
                })
                .collect(),
            global_uses_left: limit(nvm.global_uses_left),
            envelope_keys: nvm
                .envelope
                .iter()
                .map(|k| k.as_ref().map(|k| k.0.len() * 8))
                .collect(),
            host_keys: nvm.host.is_some(),
            host_counter: nvm.host.as_ref().map_or(0, |h| h.counter),
            password_tries: nvm.password.as_ref().map(|p| p.tries_left),
            command_policy: nvm.policy.clone(),
        }
    }

    /// The certificate stored in zone 0, if it starts with a long-form DER SEQUENCE header.
    pub fn certificate_len(zone0: &[u8]) -> Option<usize> {
        match zone0 {
            [0x30, 0x82, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo]) as usize + 4),
            _ => None,
        }
    }
}
