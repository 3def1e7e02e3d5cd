//! One owner per image: an exclusive advisory lock (`flock`) on `IMAGE.lock` for as long as a
//! process has the image open for writing. The image itself cannot carry the lock, because every
//! write replaces its file by a rename. The lock file holds the owner's pid, for the message a
//! second opener gets; it is never removed (removing a lock file races with its next taker).

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{flock, FlockOperation};

use crate::StorageError;

/// A held image lock; released when the last clone is dropped (the file is closed).
#[derive(Debug, Clone)]
pub struct ImageLock {
    _file: Arc<std::fs::File>,
    path: PathBuf,
}

impl ImageLock {
    /// The lock file beside `image`.
    pub fn path_for(image: &Path) -> PathBuf {
        let mut p = image.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Takes the lock of `image`, or says who holds it.
    pub fn acquire(image: &Path) -> Result<Self, StorageError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path_for(image);
        let io = |e: std::io::Error| StorageError::io(format!("{}: {e}", path.display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = match owner.trim() {
                    "" => String::new(),
                    pid => format!(" (process {pid})"),
                };
                return Err(StorageError::io(format!(
                    "chip image {} is in use: another process{owner} holds its lock {}",
                    image.display(),
                    path.display()
                )));
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self {
            _file: Arc::new(file),
            path,
        })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
