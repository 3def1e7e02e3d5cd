//! The file-system steps an image write is made of, behind a trait, so that a simulated file
//! system can cut power after any single step and show what a real disk may hold afterwards.
//!
//! [`FileStorage`](crate::FileStorage) replaces an image in four steps: write a temporary file,
//! fsync it, rename it over the image, fsync the directory. A cut before the rename leaves the
//! old image (the temporary file is ignored); after it, the new one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The steps of an atomic file replacement.
pub trait Fs: Send {
    /// Reads a whole file; `Ok(None)` if it does not exist.
    fn read(&mut self, path: &Path) -> std::io::Result<Option<Vec<u8>>>;
    /// Creates (mode 0600) or truncates `path` and writes `data` (not yet durable).
    fn write(&mut self, path: &Path, data: &[u8]) -> std::io::Result<()>;
    /// Gives `new` the permissions of `old` if `old` exists (a replaced image keeps its mode).
    fn keep_mode(&mut self, _old: &Path, _new: &Path) -> std::io::Result<()> {
        Ok(())
    }
    /// Makes a file's data durable.
    fn sync(&mut self, path: &Path) -> std::io::Result<()>;
    /// Atomically renames `from` over `to` (durable once the directory is synced).
    fn rename(&mut self, from: &Path, to: &Path) -> std::io::Result<()>;
    /// Makes the directory's entries (creations, renames) durable.
    fn sync_dir(&mut self, dir: &Path) -> std::io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

impl Fs for StdFs {
    fn read(&mut self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&mut self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // A new image holds a chip's secrets (sealed): owner only.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?
            .write_all(data)
    }

    fn keep_mode(&mut self, old: &Path, new: &Path) -> std::io::Result<()> {
        match std::fs::metadata(old) {
            Ok(m) => std::fs::set_permissions(new, m.permissions()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn sync(&mut self, path: &Path) -> std::io::Result<()> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)?
            .sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> std::io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Write(PathBuf, Vec<u8>),
    Sync(PathBuf),
    Rename(PathBuf, PathBuf),
    SyncDir,
}

#[derive(Debug, Default)]
struct SimState {
    /// What survives any power cut.
    durable: HashMap<PathBuf, Vec<u8>>,
    /// Operations since the last point where everything was durable.
    pending: Vec<Op>,
    /// Steps performed so far (each write, sync, rename, dir sync is one).
    steps: u64,
    /// Power fails when `steps` reaches this.
    cut_at: Option<u64>,
    cut: bool,
    writes: u64,
    bytes: u64,
}

/// A simulated disk that can lose power after any step, shared between clones.
///
/// Crash model (pessimistic POSIX): file data not fsynced may be torn (only a prefix survives);
/// a rename not followed by a directory fsync may or may not survive. [`SimFs::crash_states`]
/// enumerates every disk that can be found after the cut.
#[derive(Debug, Default, Clone)]
pub struct SimFs {
    inner: Arc<Mutex<SimState>>,
}

fn view(
    durable: &HashMap<PathBuf, Vec<u8>>,
    ops: &[Op],
    torn: bool,
    renames: bool,
) -> HashMap<PathBuf, Vec<u8>> {
    let mut files = durable.clone();
    let mut synced: Vec<PathBuf> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Write(p, d) => {
                let later_sync = ops[i + 1..]
                    .iter()
                    .any(|o| matches!(o, Op::Sync(q) if q == p));
                let data = if torn && !later_sync {
                    d[..d.len() / 2].to_vec()
                } else {
                    d.clone()
                };
                files.insert(p.clone(), data);
            }
            Op::Sync(p) => synced.push(p.clone()),
            Op::Rename(from, to) => {
                let later_dir_sync = ops[i + 1..].iter().any(|o| matches!(o, Op::SyncDir));
                if renames || later_dir_sync {
                    if let Some(d) = files.remove(from) {
                        files.insert(to.clone(), d);
                    }
                }
            }
            Op::SyncDir => {}
        }
    }
    files
}

impl SimFs {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts power when the step counter reaches `step` (the step is not performed).
    pub fn cut_at(&self, step: Option<u64>) {
        let mut s = self.lock();
        s.cut_at = step;
        s.cut = false;
    }

    /// Steps performed so far.
    pub fn steps(&self) -> u64 {
        self.lock().steps
    }

    /// True once power has been cut.
    pub fn was_cut(&self) -> bool {
        self.lock().cut
    }

    /// File writes and bytes written so far.
    pub fn wear(&self) -> (u64, u64) {
        let s = self.lock();
        (s.writes, s.bytes)
    }

    /// A copy of this disk as it is now (all operations applied), powered and independent.
    pub fn fork(&self) -> SimFs {
        SimFs {
            inner: Arc::new(Mutex::new(SimState {
                durable: self.current(),
                ..Default::default()
            })),
        }
    }

    /// Every disk content possible after the cut: torn or whole unsynced data, and unsynced
    /// renames lost or kept. Each is a fresh, powered `SimFs`.
    pub fn crash_states(&self) -> Vec<SimFs> {
        let s = self.lock();
        let mut out: Vec<HashMap<PathBuf, Vec<u8>>> = Vec::new();
        for torn in [false, true] {
            for renames in [false, true] {
                let v = view(&s.durable, &s.pending, torn, renames);
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
        out.into_iter()
            .map(|durable| SimFs {
                inner: Arc::new(Mutex::new(SimState {
                    durable,
                    ..Default::default()
                })),
            })
            .collect()
    }

    fn step(&self, op: Op) -> std::io::Result<()> {
        let mut s = self.lock();
        if s.cut || s.cut_at == Some(s.steps) {
            s.cut = true;
            return Err(std::io::Error::other("power cut (simulated)"));
        }
        s.steps += 1;
        if let Op::Write(_, d) = &op {
            s.writes += 1;
            s.bytes += d.len() as u64;
        }
        let done = matches!(op, Op::SyncDir);
        s.pending.push(op);
        if done {
            // Everything before a directory sync of synced files is durable.
            let v = view(&s.durable, &s.pending, false, true);
            s.durable = v;
            s.pending.clear();
        }
        Ok(())
    }

    fn current(&self) -> HashMap<PathBuf, Vec<u8>> {
        let s = self.lock();
        view(&s.durable, &s.pending, false, true)
    }
}

impl Fs for SimFs {
    fn read(&mut self, path: &Path) -> std::io::Result<Option<Vec<u8>>> {
        if self.lock().cut {
            return Err(std::io::Error::other("power cut (simulated)"));
        }
        Ok(self.current().get(path).cloned())
    }

    fn write(&mut self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        self.step(Op::Write(path.to_path_buf(), data.to_vec()))
    }

    fn sync(&mut self, path: &Path) -> std::io::Result<()> {
        self.step(Op::Sync(path.to_path_buf()))
    }

    fn rename(&mut self, from: &Path, to: &Path) -> std::io::Result<()> {
        if !self.current().contains_key(from) {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        }
        self.step(Op::Rename(from.to_path_buf(), to.to_path_buf()))
    }

    fn sync_dir(&mut self, _dir: &Path) -> std::io::Result<()> {
        self.step(Op::SyncDir)
    }
}
