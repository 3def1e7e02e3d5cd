//! Where a batch is written: the seam tests use to make the disk fail or fill up, the free-space
//! check before a batch starts, and the one sync at its end.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{io, Ctx, Error, Kind, Result};

/// Refuses `todo` chips of `per_chip` bytes each (with 10 % to spare) if they do not fit on the
/// file system of `out`.
pub(crate) fn check_space(out: &Path, todo: usize, per_chip: usize, disk: &dyn Disk) -> Result<()> {
    let need = (todo as u128 * per_chip as u128 * 11 / 10) as u64;
    // The batch directory, or the nearest directory above it that exists yet.
    let on = out
        .ancestors()
        .find(|a| a.is_dir())
        .filter(|a| !a.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let free = io(disk.free_bytes(on), || {
        format!("cannot check free space on {}", on.display())
    })?;
    if need > free {
        return Err(Error::refused(format!(
            "{todo} chips need about {} MB in {} ({per_chip} bytes each), but only {} MB are free; free space or give a smaller --count",
            need.div_ceil(1 << 20),
            out.display(),
            free / (1 << 20)
        )));
    }
    Ok(())
}

pub(crate) fn sync_filesystem(dir: &Path) -> Result<()> {
    let f = io(fs::File::open(dir), || {
        format!("cannot open {}", dir.display())
    })?;
    rustix::fs::syncfs(&f).ctx(Kind::Io, || format!("sync {}", dir.display()))
}

/// Where a personalize run writes; a seam so tests can make the disk fail.
pub trait Disk: Sync {
    /// Writes a whole file (created or replaced).
    fn write(&self, path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()>;

    /// Bytes an unprivileged writer may still use on the file system of `dir`.
    fn free_bytes(&self, dir: &Path) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
}

/// The real disk.
pub struct RealDisk;

impl Disk for RealDisk {
    fn write(&self, path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(path)?;
        f.write_all(bytes)
    }
}
