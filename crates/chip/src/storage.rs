//! The storage seam: where a chip's NVM image lives.
//!
//! **Power-loss contract.** `store` replaces the whole image atomically: if it returns `Ok`, the
//! new image is durable; if power is cut at any point before that, `load` returns the old image
//! or the new one, never a mix. The chip calls `store` before it answers a command that changed
//! NVM, so a host never sees a success that a power cut can undo.

use crate::fs::{Fs, StdFs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A storage failure, with a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// What kind of failure.
    pub kind: StorageErrorKind,
    /// Details.
    pub message: String,
}

/// Kinds of storage failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// The medium failed (I/O error, full disk, power cut).
    Io,
    /// The stored bytes are damaged, truncated or sealed under another key.
    Corrupted,
    /// The image is another chip's (a swapped or copied file).
    WrongChip,
}

impl StorageError {
    /// An I/O failure.
    pub fn io(message: impl Into<String>) -> Self {
        Self {
            kind: StorageErrorKind::Io,
            message: message.into(),
        }
    }

    /// Damaged or foreign content.
    pub fn corrupted(message: impl Into<String>) -> Self {
        Self {
            kind: StorageErrorKind::Corrupted,
            message: message.into(),
        }
    }
}

impl core::fmt::Display for StorageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

/// Where a chip keeps its NVM image. See the module docs for the power-loss contract.
pub trait Storage: Send {
    /// The last image stored, or `None` if there is none yet.
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces the image atomically.
    fn store(&mut self, image: &[u8]) -> Result<(), StorageError>;
}

/// An image in memory, shared so tests can look at (or corrupt) it; optionally fails writes.
#[derive(Clone, Default, Debug)]
pub struct MemStorage {
    inner: Arc<Mutex<MemInner>>,
}

#[derive(Default, Debug)]
struct MemInner {
    image: Option<Vec<u8>>,
    stores: u64,
    bytes: u64,
    fail: bool,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the current image.
    pub fn image(&self) -> Option<Vec<u8>> {
        self.lock().image.clone()
    }

    /// Replaces the image (for tests that corrupt it).
    pub fn set_image(&self, image: Option<Vec<u8>>) {
        self.lock().image = image;
    }

    /// Number of successful stores and bytes written so far.
    pub fn writes(&self) -> (u64, u64) {
        let g = self.lock();
        (g.stores, g.bytes)
    }

    /// Makes every following `store` fail (a full or failing flash).
    pub fn set_failing(&self, fail: bool) {
        self.lock().fail = fail;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        // A panic while holding this lock can only come from a test; keep going with the data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemStorage {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().image.clone())
    }

    fn store(&mut self, image: &[u8]) -> Result<(), StorageError> {
        let mut g = self.lock();
        if g.fail {
            return Err(StorageError::io("write failed (injected)"));
        }
        g.image = Some(image.to_vec());
        g.stores += 1;
        g.bytes += image.len() as u64;
        Ok(())
    }
}

/// An image in a file, replaced by write-to-temporary, fsync, rename, fsync of the directory
/// (see [`crate::fs`]); generic over the file system so the power-cut harness can drive it.
#[derive(Debug, Clone)]
pub struct FileStorage<F: Fs = StdFs> {
    path: PathBuf,
    fs: F,
    lock: Option<crate::lock::ImageLock>,
}

impl FileStorage<StdFs> {
    /// Storage at `path` on the real file system (the file may not exist yet).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self::with_fs(path, StdFs)
    }

    /// Storage at `path` owned by this process alone: holds the image's lock
    /// ([`ImageLock`](crate::ImageLock)) for as long as the storage lives, or fails with a
    /// message naming the lock if another process has it.
    pub fn exclusive(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let lock = crate::lock::ImageLock::acquire(path.as_ref())?;
        Ok(Self {
            lock: Some(lock),
            ..Self::new(path)
        })
    }
}

impl<F: Fs> FileStorage<F> {
    /// Storage at `path` on `fs`.
    pub fn with_fs(path: impl AsRef<Path>, fs: F) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            fs,
            lock: None,
        }
    }

    /// The image file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock held, if the storage was opened [`FileStorage::exclusive`].
    pub fn lock(&self) -> Option<&crate::lock::ImageLock> {
        self.lock.as_ref()
    }

    fn tmp(&self) -> PathBuf {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        PathBuf::from(tmp)
    }

    fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::io(format!("{}: {e}", path.display()))
}

impl<F: Fs> Storage for FileStorage<F> {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path.clone();
        self.fs.read(&path).map_err(|e| io(&path, e))
    }

    fn store(&mut self, image: &[u8]) -> Result<(), StorageError> {
        let (tmp, dir, path) = (self.tmp(), self.dir(), self.path.clone());
        self.fs.write(&tmp, image).map_err(|e| io(&tmp, e))?;
        self.fs.keep_mode(&path, &tmp).map_err(|e| io(&tmp, e))?;
        self.fs.sync(&tmp).map_err(|e| io(&tmp, e))?;
        self.fs.rename(&tmp, &path).map_err(|e| io(&path, e))?;
        self.fs.sync_dir(&dir).map_err(|e| io(&dir, e))
    }
}
