//! Sealed images: the NVM image at rest is AES-256-GCM encrypted under a key given to the chip
//! at start (`SESAME_CHIP_KEY` as 64 hex digits, or a key file), so a copied image file reveals
//! no key and cannot be altered undetected.
//!
//! Format: `"SESAMES1" | nonce(12) | ciphertext || tag(16)`, the magic as associated data. A
//! fresh random nonce per write.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::{Storage, StorageError};

/// Magic of a sealed image.
pub const SEALED_MAGIC: &[u8; 8] = b"SESAMES1";
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

/// Seals a plain image.
pub fn seal(key: &SealKey, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    OsRng.fill_bytes(&mut nonce);
    let payload = Payload {
        msg: plain,
        aad: SEALED_MAGIC,
    };
    // Encryption with a valid key and in-memory buffers cannot fail.
    let ct = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), payload)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(8 + NONCE + ct.len());
    out.extend_from_slice(SEALED_MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Opens a sealed image: truncated, altered or foreign bytes are all [`StorageError::corrupted`].
pub fn unseal(key: &SealKey, sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
    if sealed.len() < 8 + NONCE + 16 {
        return Err(StorageError::corrupted(
            "image truncated (shorter than its seal)",
        ));
    }
    if &sealed[..8] != SEALED_MAGIC {
        return Err(StorageError::corrupted("not a sealed sesame chip image"));
    }
    let payload = Payload {
        msg: &sealed[8 + NONCE..],
        aad: SEALED_MAGIC,
    };
    key.cipher()
        .decrypt(Nonce::from_slice(&sealed[8..8 + NONCE]), payload)
        .map_err(|_| {
            StorageError::corrupted("image fails authentication: damaged, truncated or wrong key")
        })
}

/// A storage whose images are sealed under a key.
#[derive(Debug)]
pub struct Sealed<S> {
    inner: S,
    key: SealKey,
}

impl<S: Storage> Sealed<S> {
    /// Seals what `inner` stores.
    pub fn new(inner: S, key: SealKey) -> Self {
        Self { inner, key }
    }
}

impl<S: Storage> Storage for Sealed<S> {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        match self.inner.load()? {
            Some(sealed) => unseal(&self.key, &sealed).map(Some),
            None => Ok(None),
        }
    }

    fn store(&mut self, image: &[u8]) -> Result<(), StorageError> {
        self.inner.store(&seal(&self.key, image))
    }
}
