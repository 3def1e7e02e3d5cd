//! Personalization: the secure fab's API. Not reachable over I2C. A [`Fab`] holds a chip in the
//! BORN state; [`Fab::finish`] sets it operational and hands back the [`Chip`], after which the
//! fab API can no longer touch it.

use sesame_wire::resp::I2cParameters;
use sesame_wire::LifeCycle;

use crate::chip::{Chip, ChipOptions};
use crate::image::{self, ImageError, NVM_SIZE};
use crate::keys::{CurveName, PrivateKey, PublicKeyBytes};
use crate::state::{
    default_command_policy, mode, CommandPolicy, HostKeys, Nvm, Password, PrivateSlot, ProductData,
    Zone, UNLIMITED,
};
use crate::Storage;

/// How one zone is laid out at personalization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneSpec {
    /// Data segment size in bytes.
    pub size: u16,
    /// `Some(initial value)` makes a one-way-counter zone.
    pub counter: Option<u32>,
    /// Read access condition (0 always, 1 host, 7 never).
    pub read_ac: u8,
    /// Update access condition.
    pub update_ac: u8,
    /// The read AC may be changed later (only to a stricter one).
    pub read_right: bool,
    /// The update AC may be changed later (only to a stricter one).
    pub update_right: bool,
}

impl ZoneSpec {
    /// A plain zone anyone may read and update, with both change rights.
    pub fn plain(size: u16) -> Self {
        Self {
            size,
            counter: None,
            read_ac: 0,
            update_ac: 0,
            read_right: true,
            update_right: true,
        }
    }

    /// A one-way counter zone starting at `initial`, with a data segment of `size` bytes.
    pub fn counter(size: u16, initial: u32) -> Self {
        Self {
            counter: Some(initial),
            ..Self::plain(size)
        }
    }

    /// A zone readable by anyone and never writable after personalization.
    pub fn read_only(size: u16) -> Self {
        Self {
            update_ac: 7,
            read_right: false,
            update_right: false,
            ..Self::plain(size)
        }
    }
}

/// What a chip is built from.
#[derive(Clone, Debug)]
pub struct ChipConfig {
    /// Unique serial.
    pub serial: [u8; 9],
    /// Mask id (default `00 46 01`, an A110).
    pub mask_id: [u8; 3],
    /// Batch id.
    pub batch_id: [u8; 3],
    /// Personalization date `YY MM DD`.
    pub perso_date: [u8; 3],
    /// 7-bit I2C address (default 0x20).
    pub i2c_address: u8,
    /// Zone layout; zone 0 holds the certificate.
    pub zones: Vec<ZoneSpec>,
    /// Command authorization table (default: every command free, in plain).
    pub policy: Vec<CommandPolicy>,
}

impl ChipConfig {
    /// A chip with `serial` and the default layout: zone 0 for the certificate (1 KB, read by
    /// anyone, written at personalization only), zones 1–3 plain (128, 256, 64 bytes), zone 4 a
    /// one-way counter starting at 1,000,000 with a 32-byte data segment.
    pub fn new(serial: [u8; 9]) -> Self {
        Self {
            serial,
            mask_id: [0x00, 0x46, 0x01],
            batch_id: [0; 3],
            perso_date: [0; 3],
            i2c_address: 0x20,
            zones: vec![
                ZoneSpec::read_only(1024),
                ZoneSpec::plain(128),
                ZoneSpec::plain(256),
                ZoneSpec::plain(64),
                ZoneSpec::counter(32, 1_000_000),
            ],
            policy: default_command_policy(),
        }
    }
}

/// A personalization step refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PersoError {
    /// The layout is impossible (too big, bad AC, bad address).
    Layout(&'static str),
    /// No such zone or slot, or data past its end.
    OutOfRange,
    /// The storage failed.
    Storage(String),
    /// The image could not be opened or is not in the BORN state.
    Image(ImageError),
}

impl core::fmt::Display for PersoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Layout(why) => write!(f, "invalid chip layout: {why}"),
            Self::OutOfRange => f.write_str("zone or slot out of range"),
            Self::Storage(why) => write!(f, "storage: {why}"),
            Self::Image(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PersoError {}

/// A chip on the personalization bench.
#[derive(Debug)]
pub struct Fab {
    chip: Chip,
}

impl Fab {
    /// Builds a blank chip (life cycle BORN) and stores its first image.
    pub fn new(
        config: ChipConfig,
        storage: Box<dyn Storage>,
        options: ChipOptions,
    ) -> Result<Self, PersoError> {
        let total: usize = config.zones.iter().map(|z| z.size as usize).sum();
        if total > NVM_SIZE {
            return Err(PersoError::Layout("zones exceed the 6 KB NVM"));
        }
        if config.zones.len() > image::MAX_ZONES {
            return Err(PersoError::Layout("too many zones"));
        }
        if config
            .zones
            .iter()
            .any(|z| z.read_ac > 7 || z.update_ac > 7)
        {
            return Err(PersoError::Layout("access conditions are 3 bits"));
        }
        if !(0x08..=0x77).contains(&config.i2c_address) {
            return Err(PersoError::Layout("I2C address must be in 0x08..=0x77"));
        }
        let nvm = Nvm {
            product: ProductData {
                mask_id: config.mask_id,
                serial: config.serial,
                batch_id: config.batch_id,
                perso_date: config.perso_date,
            },
            life_cycle: LifeCycle::BORN.0,
            i2c: I2cParameters {
                address: config.i2c_address,
                locked: false,
                low_power: 0,
                idle_time: 0,
            }
            .to_bytes(),
            zones: config
                .zones
                .iter()
                .map(|z| Zone {
                    counter_zone: z.counter.is_some(),
                    read_ac: z.read_ac,
                    read_right: z.read_right,
                    update_ac: z.update_ac,
                    update_right: z.update_right,
                    counter: z.counter.unwrap_or(0),
                    data: vec![0; z.size as usize],
                })
                .collect(),
            private: [None, None],
            global_uses_left: UNLIMITED,
            envelope: [None, None],
            host: None,
            password: None,
            policy_rights: 0,
            policy: config.policy,
        };
        // Nothing is stored until `finish`: a chip whose personalization is interrupted does
        // not exist, rather than existing half made.
        Ok(Self {
            chip: Chip::from_nvm(nvm, storage, options),
        })
    }

    fn save(&mut self) -> Result<(), PersoError> {
        self.chip
            .persist()
            .map_err(|e| PersoError::Storage(e.message))
    }

    /// Generates a key pair inside the chip in slot 0 or 1 and returns only its public key.
    /// Slot 0 gets signature + key establishment and no change right: it cannot be regenerated.
    pub fn generate_key(
        &mut self,
        slot: u8,
        curve: CurveName,
    ) -> Result<PublicKeyBytes, PersoError> {
        if slot > 1 {
            return Err(PersoError::OutOfRange);
        }
        let key = PrivateKey::generate(curve, self.chip.rng_mut());
        self.install(slot, key)
    }

    fn install(&mut self, slot: u8, key: PrivateKey) -> Result<PublicKeyBytes, PersoError> {
        let public = key.public();
        let m = mode::KEY_ESTABLISHMENT | mode::SIGN_EXTERNAL;
        let m = if slot == 0 { m } else { m | mode::CHANGE_RIGHT };
        self.chip.nvm_mut().private[slot as usize] = Some(PrivateSlot {
            key,
            mode: m,
            uses_left: UNLIMITED,
        });
        Ok(public)
    }

    /// **Test vectors only** (feature `test-keys`): installs a known private scalar, so that
    /// external ECDH vectors can run through Establish Key. Never enable it in a product.
    #[cfg(feature = "test-keys")]
    pub fn import_private_key_for_tests(
        &mut self,
        slot: u8,
        curve: CurveName,
        scalar: &[u8],
    ) -> Result<PublicKeyBytes, PersoError> {
        if slot > 1 {
            return Err(PersoError::OutOfRange);
        }
        let key = PrivateKey::from_scalar(curve, scalar).ok_or(PersoError::OutOfRange)?;
        self.install(slot, key)
    }

    /// Sets the remaining uses of a private key slot (0xFFFF = unlimited) and the global limit.
    pub fn set_usage_limits(&mut self, slot: u8, uses: u16, global: u16) -> Result<(), PersoError> {
        let s = self
            .chip
            .nvm_mut()
            .private
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .ok_or(PersoError::OutOfRange)?;
        s.uses_left = uses;
        self.chip.nvm_mut().global_uses_left = global;
        Ok(())
    }

    /// Writes `data` into a zone at `offset`, whatever its access conditions.
    pub fn write_zone(&mut self, zone: u8, offset: u16, data: &[u8]) -> Result<(), PersoError> {
        let z = self
            .chip
            .nvm_mut()
            .zones
            .get_mut(zone as usize)
            .ok_or(PersoError::OutOfRange)?;
        let end = offset as usize + data.len();
        if end > z.data.len() {
            return Err(PersoError::OutOfRange);
        }
        z.data[offset as usize..end].copy_from_slice(data);
        Ok(())
    }

    /// Provisions the host MAC and cipher keys (counter 0).
    pub fn set_host_keys(&mut self, mac: [u8; 16], cipher: [u8; 16]) -> Result<(), PersoError> {
        self.chip.nvm_mut().host = Some(HostKeys {
            mac,
            cipher,
            counter: 0,
        });
        Ok(())
    }

    /// **Tests only** (feature `test-keys`): sets the host C-MAC counter, to reach its end
    /// without 16 million commands.
    #[cfg(feature = "test-keys")]
    pub fn set_host_counter_for_tests(&mut self, counter: u32) -> Result<(), PersoError> {
        match self.chip.nvm_mut().host.as_mut() {
            Some(h) => h.counter = counter & sesame_wire::secure::COUNTER_MAX,
            None => return Err(PersoError::OutOfRange),
        }
        Ok(())
    }

    /// Sets the password and its number of tries.
    pub fn set_password(&mut self, value: [u8; 16], tries: u8) -> Result<(), PersoError> {
        if tries == 0 {
            return Err(PersoError::Layout("a password needs at least one try"));
        }
        self.chip.nvm_mut().password = Some(Password {
            value,
            tries_left: tries,
            max_tries: tries,
        });
        Ok(())
    }

    /// The chip's command interface while on the bench, e.g. to have it sign its own
    /// certificate through Generate Signature.
    pub fn chip(&mut self) -> &mut Chip {
        &mut self.chip
    }

    /// Locks personalization: the life cycle becomes OPERATIONAL and the chip is handed over.
    pub fn finish(mut self) -> Result<Chip, PersoError> {
        self.chip.nvm_mut().life_cycle = LifeCycle::OPERATIONAL.0;
        self.save()?;
        Ok(self.chip)
    }
}
