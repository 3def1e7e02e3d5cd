//! Sealed images: the NVM image at rest is AES-256-GCM encrypted under a key given to the chip
//! at start (`SESAME_CHIP_KEY` as 64 hex digits, or a key file), so a copied image file reveals
//! no key and cannot be altered undetected.
//!
//! Format: `"SESAMES2" | serial(9) | nonce(12) | ciphertext || tag(16)`; the associated data is
//! the magic, the NVM format version and the chip's serial, so an image is bound to its chip: a
//! file copied over another chip's image is refused ([`Sealed::for_chip`]), and the serial in
//! the clear cannot be edited. A fresh random nonce per write.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::{Storage, StorageError, StorageErrorKind};

/// Magic of a sealed image.
pub const SEALED_MAGIC: &[u8; 8] = b"SESAMES2";
/// Magic of images sealed before the seal named the chip.
const LEGACY_MAGIC: &[u8; 8] = b"SESAMES1";
const NONCE: usize = 12;

/// The environment variable holding the sealing key (64 hex digits).
pub const KEY_ENV: &str = "SESAME_CHIP_KEY";

/// A 256-bit image sealing key. `Debug` never shows it.
#[derive(Clone)]
pub struct SealKey(Zeroizing<[u8; 32]>);

impl core::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SealKey(<secret>)")
    }
}

/// A sealing key that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl SealKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(k.as_mut());
        Self(k)
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyError("a chip key is 64 hex digits (256 bits)".into()));
        }
        let mut k = Zeroizing::new([0u8; 32]);
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| KeyError("invalid hex in chip key".into()))?;
        }
        Ok(Self(k))
    }

    /// The key as 64 hex digits (to write a key file).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Reads the key from `SESAME_CHIP_KEY`.
    pub fn from_env() -> Result<Self, KeyError> {
        let v = std::env::var(KEY_ENV)
            .map_err(|_| KeyError(format!("{KEY_ENV} is not set (64 hex digits)")))?;
        Self::from_hex(&v)
    }

    /// Reads a key file: 64 hex digits or 32 raw bytes.
    pub fn from_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(|e| KeyError(format!("{}: {e}", path.display())))?,
        );
        if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(Self::from_bytes(raw));
        }
        let text = core::str::from_utf8(&bytes)
            .map_err(|_| KeyError(format!("{}: not a chip key", path.display())))?;
        Self::from_hex(text)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

/// The associated data of a version-2 seal: the magic, the NVM format version and the serial.
fn aad(serial: &[u8; 9]) -> [u8; 19] {
    let mut a = [0u8; 19];
    a[..8].copy_from_slice(SEALED_MAGIC);
    a[8..10].copy_from_slice(&crate::image::VERSION.to_be_bytes());
    a[10..].copy_from_slice(serial);
    a
}

fn hex9(s: &[u8; 9]) -> String {
    crate::chip::hex(s)
}

/// Seals a plain image of the chip `serial`: `"SESAMES2" | serial(9) | nonce(12) | ct || tag`,
/// with the magic, the NVM format version and the serial as associated data, so the serial in
/// the clear cannot be changed and an image cannot pass for another chip's.
pub fn seal(key: &SealKey, serial: &[u8; 9], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    OsRng.fill_bytes(&mut nonce);
    let aad = aad(serial);
    let payload = Payload {
        msg: plain,
        aad: &aad,
    };
    // Encryption with a valid key and in-memory buffers cannot fail.
    let ct = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), payload)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(8 + 9 + NONCE + ct.len());
    out.extend_from_slice(SEALED_MAGIC);
    out.extend_from_slice(serial);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// The chip serial a sealed image names in its header (not yet authenticated), if any.
pub fn sealed_serial(sealed: &[u8]) -> Option<[u8; 9]> {
    (sealed.get(..8) == Some(SEALED_MAGIC.as_slice()))
        .then(|| sealed.get(8..17)?.try_into().ok())
        .flatten()
}

/// Opens a sealed image: truncated, altered or foreign bytes are all [`StorageError::corrupted`];
/// an image of another chip than `expected` is [`StorageErrorKind::WrongChip`]. Images sealed by
/// earlier versions (`"SESAMES1"`, magic-only associated data) still open; the next write
/// seals them in the current format.
pub fn unseal(
    key: &SealKey,
    sealed: &[u8],
    expected: Option<&[u8; 9]>,
) -> Result<Vec<u8>, StorageError> {
    let legacy = sealed.get(..8) == Some(LEGACY_MAGIC.as_slice());
    let header = if legacy { 8 } else { 8 + 9 };
    if sealed.len() < header + NONCE + 16 {
        return Err(StorageError::corrupted(
            "image truncated (shorter than its seal)",
        ));
    }
    if !legacy && &sealed[..8] != SEALED_MAGIC {
        return Err(StorageError::corrupted("not a sealed sesame chip image"));
    }
    let named: Option<[u8; 9]> = sealed_serial(sealed);
    if let (Some(named), Some(expected)) = (named, expected) {
        if &named != expected {
            return Err(wrong_chip(&named, expected));
        }
    }
    let aad = match &named {
        Some(serial) => aad(serial).to_vec(),
        None => LEGACY_MAGIC.to_vec(),
    };
    let payload = Payload {
        msg: &sealed[header + NONCE..],
        aad: &aad,
    };
    let plain = key
        .cipher()
        .decrypt(Nonce::from_slice(&sealed[header..header + NONCE]), payload)
        .map_err(|_| {
            StorageError::corrupted(
                "image fails authentication: damaged, truncated, altered or wrong key",
            )
        })?;
    // The sealed serial is the chip's own (checked for legacy images, which name none).
    let inner = crate::image::serial_of(&plain);
    if let (Some(inner), Some(want)) = (inner, named.as_ref().or(expected)) {
        if &inner != want {
            return Err(wrong_chip(&inner, want));
        }
    }
    Ok(plain)
}

fn wrong_chip(found: &[u8; 9], expected: &[u8; 9]) -> StorageError {
    StorageError {
        kind: StorageErrorKind::WrongChip,
        message: format!(
            "this is chip {}'s image, not chip {}'s (a swapped or copied image)",
            hex9(found),
            hex9(expected)
        ),
    }
}

/// A storage whose images are sealed under a key, bound to one chip.
#[derive(Debug)]
pub struct Sealed<S> {
    inner: S,
    key: SealKey,
    /// The chip this storage holds: given, or learned from the first image loaded or stored.
    serial: Option<[u8; 9]>,
}

impl<S: Storage> Sealed<S> {
    /// Seals what `inner` stores; the chip is the one whose image is loaded (or stored) first.
    pub fn new(inner: S, key: SealKey) -> Self {
        Self {
            inner,
            key,
            serial: None,
        }
    }

    /// Like [`Sealed::new`], but an image of any chip other than `serial` is refused
    /// ([`StorageErrorKind::WrongChip`]).
    pub fn for_chip(inner: S, key: SealKey, serial: [u8; 9]) -> Self {
        Self {
            inner,
            key,
            serial: Some(serial),
        }
    }
}

impl<S: Storage> Storage for Sealed<S> {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        match self.inner.load()? {
            Some(sealed) => {
                let plain = unseal(&self.key, &sealed, self.serial.as_ref())?;
                if self.serial.is_none() {
                    self.serial = crate::image::serial_of(&plain);
                }
                Ok(Some(plain))
            }
            None => Ok(None),
        }
    }

    fn store(&mut self, image: &[u8]) -> Result<(), StorageError> {
        let serial = crate::image::serial_of(image)
            .ok_or_else(|| StorageError::corrupted("refusing to seal an undecodable image"))?;
        match &self.serial {
            Some(s) if s != &serial => return Err(wrong_chip(&serial, s)),
            Some(_) => {}
            None => self.serial = Some(serial),
        }
        self.inner.store(&seal(&self.key, &serial, image))
    }
}
