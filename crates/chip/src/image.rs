//! The NVM image format: `MAGIC | version(2) | postcard(Nvm)`, checked on load.

use sesame_wire::LifeCycle;

use crate::state::Nvm;

/// First bytes of every image.
pub const MAGIC: &[u8; 8] = b"SESAMEA1";
/// Format version.
pub const VERSION: u16 = 1;
/// Configurable NVM of an A110 (DS13039: 6 KB): the zones' data must fit in it.
pub const NVM_SIZE: usize = 6144;
/// Most zones a chip may have (the partition query counts them in one byte).
pub const MAX_ZONES: usize = 255;

/// Why an image could not be opened. Never a silent reset: the caller decides.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageError {
    /// There is no image.
    Missing,
    /// The bytes are not a sesame chip image, or it is damaged.
    Corrupted(String),
    /// An image of a format this build cannot read.
    UnsupportedVersion(u16),
    /// The storage failed.
    Storage(String),
    /// The image is another chip's.
    WrongChip(String),
}

impl core::fmt::Display for ImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Missing => f.write_str("no chip image"),
            Self::Corrupted(why) => write!(f, "corrupted chip image: {why}"),
            Self::UnsupportedVersion(v) => write!(f, "chip image format {v} is not supported"),
            Self::Storage(why) => write!(f, "cannot read chip image: {why}"),
            Self::WrongChip(why) => write!(f, "refused chip image: {why}"),
        }
    }
}

impl std::error::Error for ImageError {}

pub(crate) fn encode(nvm: &Nvm) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    // postcard fails only on writers that run out of room, and a Vec never does; an empty
    // result would in any case be refused as corrupted when loaded.
    postcard::to_extend(nvm, out).unwrap_or_default()
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Nvm, ImageError> {
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(ImageError::Corrupted("not a sesame chip image".into()));
    }
    let version = u16::from_be_bytes([bytes[8], bytes[9]]);
    if version != VERSION {
        return Err(ImageError::UnsupportedVersion(version));
    }
    let (nvm, rest): (Nvm, &[u8]) = postcard::take_from_bytes(&bytes[10..])
        .map_err(|e| ImageError::Corrupted(format!("undecodable state ({e})")))?;
    if !rest.is_empty() {
        return Err(ImageError::Corrupted("trailing bytes".into()));
    }
    validate(&nvm).map_err(|why| ImageError::Corrupted(why.into()))?;
    Ok(nvm)
}

/// The serial of the chip in a plain image, if it decodes.
pub(crate) fn serial_of(bytes: &[u8]) -> Option<[u8; 9]> {
    decode(bytes).ok().map(|n| n.product.serial)
}

/// The invariants every image, and every state the engine reaches, must keep.
pub(crate) fn validate(nvm: &Nvm) -> Result<(), &'static str> {
    if LifeCycle(nvm.life_cycle).name().is_none() {
        return Err("unknown life-cycle state");
    }
    if nvm.zones.len() > MAX_ZONES {
        return Err("too many zones");
    }
    let total: usize = nvm.zones.iter().map(|z| z.data.len()).sum();
    if total > NVM_SIZE {
        return Err("zones exceed the NVM size");
    }
    for z in &nvm.zones {
        if z.data.len() > u16::MAX as usize {
            return Err("zone too large");
        }
        if !z.counter_zone && z.counter != 0 {
            return Err("plain zone with a counter");
        }
        if z.read_ac > 7 || z.update_ac > 7 {
            return Err("invalid access condition");
        }
    }
    if let Some(h) = &nvm.host {
        if h.counter > sesame_wire::secure::COUNTER_MAX {
            return Err("host C-MAC counter out of range");
        }
    }
    if let Some(p) = &nvm.password {
        if p.tries_left > p.max_tries {
            return Err("password tries out of range");
        }
    }
    for k in nvm.envelope.iter().flatten() {
        if k.0.len() != 16 && k.0.len() != 32 {
            return Err("invalid envelope key length");
        }
    }
    Ok(())
}
