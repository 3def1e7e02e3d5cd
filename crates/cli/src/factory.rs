//! `sesame factory`: the secure fab. `init` makes the root CA, the first family CA, the cloud's
//! command-signing key, the firmware-signing key and the chip sealing key; `family new` adds a
//! family; `personalize` produces a batch of chip images with a manifest.
//!
//! Batch consistency: each chip is written as its sealed image (`chips/SERIAL.chip`), then its
//! host keys (one JSON line in `host-keys.jsonl`, mode 0600, for the devices' MCU firmware), then
//! its manifest line. A crash can leave an image without its lines, a torn image or a torn last
//! line; rerunning first reconciles the directory (a sealed image that opens, is finished and has
//! its host keys gets its manifest line back; anything torn or unmatched is removed; a line
//! without its image is dropped), then resumes. Images are not written through a temporary file:
//! the seal already makes a torn one detectable, and one file operation per chip is what keeps a
//! batch fast. The batch is synced to disk once at the end.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sesame_chip::{ChipConfig, ChipOptions, CurveName, Fab, MemStorage, SealKey, ZoneSpec};
use sesame_pki::{
    cert_from_pem, fingerprint, to_pem, Authority, DeviceKey, KeyAlg, ManifestLine, PEM_CERT,
};

use crate::chip_cmd::write_private;

/// Organization name written into every certificate the factory issues.
pub const ORG: &str = "sesame";

/// Zone layout of a personalized chip: the one the device agent relies on.
pub use sesame_agent::layout as zones;

/// The zones of a personalized chip, in the order of [`zones`].
pub(crate) fn layout() -> Vec<ZoneSpec> {
    vec![
        ZoneSpec::read_only(1024),
        ZoneSpec::read_only(128),
        ZoneSpec::read_only(128),
        ZoneSpec::counter(32, zones::USAGE_INITIAL),
        ZoneSpec::counter(16, zones::ROLLBACK_BASE),
        ZoneSpec::plain(256),
    ]
}

/// Paths of a factory directory.
pub struct FactoryDir(pub PathBuf);

impl FactoryDir {
    fn p(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn root(&self) -> PathBuf {
        self.p("root.pem")
    }
    pub fn chip_key(&self) -> PathBuf {
        self.p("chip.key")
    }
    pub fn command_pub(&self) -> PathBuf {
        self.p("command.pub.pem")
    }
    pub fn command_key(&self) -> PathBuf {
        self.p("command.key.pem")
    }
    pub fn firmware_pub(&self) -> PathBuf {
        self.p("firmware.pub.pem")
    }
    pub fn firmware_key(&self) -> PathBuf {
        self.p("firmware.key.pem")
    }
    pub fn family(&self, name: &str) -> PathBuf {
        self.p("families").join(name)
    }
}

fn write_public(path: &Path, text: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn check_family_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        bail!("family name '{name}' must be 1-64 letters, digits, '-' or '_'");
    }
    Ok(())
}

/// `factory init`: refuses a non-empty directory.
pub fn init(dir: &Path, family: &str, alg: KeyAlg) -> Result<()> {
    check_family_name(family)?;
    if dir.exists() && fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty; refusing to overwrite a factory",
            dir.display()
        );
    }
    fs::create_dir_all(dir)?;
    let d = FactoryDir(dir.to_path_buf());
    let root = Authority::new_root(ORG, "sesame Root CA", alg)?;
    write_private(&d.p("root.key.pem"), root.key_pem().as_bytes())?;
    write_public(&d.root(), &to_pem(PEM_CERT, &root.der))?;
    write_private(&d.chip_key(), SealKey::generate().to_hex().as_bytes())?;
    for (key, public) in [
        (d.command_key(), d.command_pub()),
        (d.firmware_key(), d.firmware_pub()),
    ] {
        let sk = p256::SecretKey::random(&mut OsRng);
        write_private(&key, sk.to_pkcs8_pem(LineEnding::LF)?.as_bytes())?;
        write_public(&public, &sk.public_key().to_public_key_pem(LineEnding::LF)?)?;
    }
    family_new(dir, family, alg)
}

fn load_root(d: &FactoryDir) -> Result<Authority> {
    let der = cert_from_pem(
        &fs::read_to_string(d.root())
            .with_context(|| format!("{} is not a factory (no root.pem)", d.0.display()))?,
    )?;
    let key = fs::read_to_string(d.p("root.key.pem")).context("cannot read root.key.pem")?;
    Authority::load(&der, &key).context("root CA key is unreadable or corrupt")
}

/// `factory family new NAME`.
pub fn family_new(dir: &Path, name: &str, alg: KeyAlg) -> Result<()> {
    check_family_name(name)?;
    let d = FactoryDir(dir.to_path_buf());
    let root = load_root(&d)?;
    let fdir = d.family(name);
    if fdir.exists() {
        bail!("family '{name}' already exists");
    }
    fs::create_dir_all(&fdir)?;
    let fam = root.new_family(ORG, name, alg)?;
    write_private(&fdir.join("ca.key.pem"), fam.key_pem().as_bytes())?;
    write_public(&fdir.join("ca.pem"), &to_pem(PEM_CERT, &fam.der))?;
    Ok(())
}

fn load_family(d: &FactoryDir, name: &str) -> Result<Authority> {
    check_family_name(name)?;
    let fdir = d.family(name);
    if !fdir.exists() {
        bail!("unknown family '{name}' (make it with `sesame factory family new {name}`)");
    }
    let der = cert_from_pem(&fs::read_to_string(fdir.join("ca.pem"))?)?;
    let key =
        fs::read_to_string(fdir.join("ca.key.pem")).context("cannot read the family CA key")?;
    Authority::load(&der, &key).context("family CA key is unreadable or corrupt")
}

fn public_point(pem_path: &Path) -> Result<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let text = fs::read_to_string(pem_path)
        .with_context(|| format!("cannot read {}", pem_path.display()))?;
    let pk = p256::PublicKey::from_public_key_pem(&text)
        .map_err(|e| anyhow!("{}: {e}", pem_path.display()))?;
    Ok(pk.to_encoded_point(false).as_bytes().to_vec())
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct BatchInfo {
    family: String,
    profile: String,
    count: usize,
}

/// Everything one chip needs, loaded once per batch.
struct Material {
    family_name: String,
    family: Authority,
    chip_key: SealKey,
    command_key: Vec<u8>,
    firmware_key: Vec<u8>,
    curve: CurveName,
    /// Encrypting command table (`*-encrypted` profiles).
    encrypted: bool,
}

/// The host keys of one chip, as the device maker's MCU firmware needs them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HostKeyLine {
    pub serial: String,
    pub mac: String,
    pub cipher: String,
}

/// Makes one chip entirely in memory; returns (serial, sealed image, host keys, line).
fn make_chip(m: &Material) -> Result<(String, Vec<u8>, HostKeyLine, ManifestLine)> {
    let mut serial = [0u8; 9];
    serial[0] = 0x02;
    OsRng.fill_bytes(&mut serial[1..]);
    let serial_hex = hex::encode_upper(serial);
    let mut config = ChipConfig::new(serial);
    config.zones = layout();
    if m.encrypted {
        config.policy = sesame_chip::encrypted_command_policy();
    }
    let mem = MemStorage::new();
    let mut fab = Fab::new(config, Box::new(mem.clone()), ChipOptions::default())?;
    let public = fab.generate_key(0, m.curve)?;
    let point = public.to_sec1();
    let der = m
        .family
        .issue_device(&serial_hex, &DeviceKey::from_sec1(&point)?, ORG, None)?;
    fab.write_zone(zones::CERT, 0, &der)?;
    for (zone, key) in [
        (zones::COMMAND_KEY, &m.command_key),
        (zones::FIRMWARE_KEY, &m.firmware_key),
    ] {
        fab.write_zone(zone, 0, key)?;
    }
    let (mut mac, mut cipher) = ([0u8; 16], [0u8; 16]);
    OsRng.fill_bytes(&mut mac);
    OsRng.fill_bytes(&mut cipher);
    fab.set_host_keys(mac, cipher)?;
    fab.finish()?;
    let image = mem
        .image()
        .ok_or_else(|| anyhow!("chip produced no image"))?;
    let sealed = sesame_chip::seal(&m.chip_key, &serial, &image);
    let host_keys = HostKeyLine {
        serial: serial_hex.clone(),
        mac: hex::encode(mac),
        cipher: hex::encode(cipher),
    };
    let line = ManifestLine {
        serial: serial_hex.clone(),
        cert_sha256: fingerprint(&der),
        family: m.family_name.clone(),
        public_key: hex::encode(&point),
    };
    Ok((serial_hex, sealed, host_keys, line))
}

/// The largest batch `personalize` accepts: ten million chips is already a few tens of GB.
pub const MAX_BATCH: usize = 10_000_000;

/// Refuses to start a batch that cannot fit on the disk of `out`: the size of one chip (its
/// sealed image plus its host-key and manifest lines, measured on a chip made now and thrown
/// away) times `todo`, with 10 % to spare.
fn enough_space(out: &Path, todo: usize, m: &Material, disk: &dyn Disk) -> Result<()> {
    if todo == 0 {
        return Ok(());
    }
    let (_, sealed, keys, line) = make_chip(m)?;
    let per_chip = sealed.len() + serde_json::to_string(&keys)?.len() + line.to_json().len() + 2;
    let need = (todo as u128 * per_chip as u128 * 11 / 10) as u64;
    // The batch directory, or the nearest directory above it that exists yet.
    let on = out
        .ancestors()
        .find(|a| a.is_dir())
        .filter(|a| !a.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let free = disk
        .free_bytes(on)
        .with_context(|| format!("cannot check free space on {}", on.display()))?;
    if need > free {
        bail!(
            "{todo} chips need about {} MB in {} ({per_chip} bytes each), but only {} MB are free; free space or give a smaller --count",
            need.div_ceil(1 << 20),
            out.display(),
            free / (1 << 20)
        );
    }
    Ok(())
}

/// The manifest line an existing image should have, if it is a good, finished chip.
fn line_of_image(m: &Material, path: &Path) -> Option<ManifestLine> {
    let storage = sesame_chip::Sealed::new(sesame_chip::FileStorage::new(path), m.chip_key.clone());
    let chip = sesame_chip::Chip::open(Box::new(storage), ChipOptions::default()).ok()?;
    if chip.life_cycle() != sesame_wire::LifeCycle::OPERATIONAL {
        return None;
    }
    let zone0 = chip.public_zone(0)?;
    let len = sesame_chip::Inspection::certificate_len(zone0)?;
    let der = zone0.get(..len)?;
    let id = sesame_pki::device_identity(der).ok()?;
    Some(ManifestLine {
        serial: id.serial,
        cert_sha256: fingerprint(der),
        family: m.family_name.clone(),
        public_key: hex::encode(id.public_key),
    })
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> (String, Vec<T>) {
    let text = fs::read_to_string(path).unwrap_or_default();
    // A torn last line does not parse and is dropped; its chip is recovered or removed below.
    let items = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (text, items)
}

fn rewrite<T: Serialize>(path: &Path, old: &str, items: &[T], private: bool) -> Result<()> {
    let mut body = String::new();
    for it in items {
        body.push_str(&serde_json::to_string(it)?);
        body.push('\n');
    }
    if body != old {
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        RealDisk.write(&tmp, body.as_bytes(), private)?;
        fs::rename(&tmp, path)?;
    }
    Ok(())
}

/// Brings a batch directory back to "every chip has its image, its host keys and its manifest
/// line, and nothing else is there".
fn reconcile(out: &Path, m: &Material) -> Result<Vec<ManifestLine>> {
    let chips = out.join("chips");
    let (mtext, listed): (String, Vec<ManifestLine>) = read_lines(&out.join("manifest.jsonl"));
    let (ktext, keys): (String, Vec<HostKeyLine>) = read_lines(&out.join("host-keys.jsonl"));
    let mut good: Vec<ManifestLine> = Vec::new();
    for entry in fs::read_dir(&chips)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let keep = name.strip_suffix(".chip").and_then(|serial| {
            let line = line_of_image(m, &path).filter(|l| l.serial == serial)?;
            keys.iter().any(|k| k.serial == serial).then_some(line)
        });
        match keep {
            Some(line) if !good.iter().any(|g| g.serial == line.serial) => good.push(line),
            _ => fs::remove_file(&path)?,
        }
    }
    // Keep the manifest's order for lines that were there, then the recovered ones.
    let mut lines: Vec<ManifestLine> = listed.into_iter().filter(|l| good.contains(l)).collect();
    for g in good {
        if !lines.contains(&g) {
            lines.push(g);
        }
    }
    let mut kept_keys: Vec<HostKeyLine> = Vec::new();
    for k in keys {
        if lines.iter().any(|l| l.serial == k.serial)
            && !kept_keys.iter().any(|x| x.serial == k.serial)
        {
            kept_keys.push(k);
        }
    }
    rewrite(&out.join("host-keys.jsonl"), &ktext, &kept_keys, true)?;
    rewrite(&out.join("manifest.jsonl"), &mtext, &lines, false)?;
    Ok(lines)
}

fn sync_filesystem(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir)?;
    rustix::fs::syncfs(&f).map_err(|e| anyhow!("sync {}: {e}", dir.display()))
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

/// What a personalize run did.
pub struct BatchReport {
    pub made: usize,
    pub resumed_from: usize,
    pub seconds: f64,
}

/// `factory personalize`.
pub fn personalize(
    dir: &Path,
    family: &str,
    count: usize,
    out: &Path,
    profile: &str,
    disk: &dyn Disk,
    progress: bool,
) -> Result<BatchReport> {
    if count == 0 {
        return Err(crate::out::usage("--count must be at least 1"));
    }
    if count > MAX_BATCH {
        return Err(crate::out::usage(format!(
            "--count {count} is more than one batch may hold ({MAX_BATCH}); split the order into batches"
        )));
    }
    let (curve, encrypted) = match profile {
        "p256" | "default" => (CurveName::P256, false),
        "p384" => (CurveName::P384, false),
        "p256-encrypted" | "encrypted" => (CurveName::P256, true),
        "p384-encrypted" => (CurveName::P384, true),
        _ => bail!("unknown profile '{profile}' (p256, p384, p256-encrypted, p384-encrypted)"),
    };
    let d = FactoryDir(dir.to_path_buf());
    let m = Material {
        family_name: family.to_string(),
        family: load_family(&d, family)?,
        chip_key: SealKey::from_file(&d.chip_key()).map_err(|e| anyhow!("chip key: {e}"))?,
        command_key: public_point(&d.command_pub())?,
        firmware_key: public_point(&d.firmware_pub())?,
        curve,
        encrypted,
    };
    let info = BatchInfo {
        family: family.into(),
        profile: profile.into(),
        count,
    };
    let info_path = out.join("batch.json");
    if out.exists() {
        let existing: BatchInfo = fs::read(&info_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                anyhow!(
                    "{} exists and is not a batch; refusing to overwrite",
                    out.display()
                )
            })?;
        if existing != info {
            bail!("{} holds a batch of {} x '{}' ({}); this run asks for {count} x '{family}' ({profile})", out.display(), existing.count, existing.family, existing.profile);
        }
    } else {
        // Checked before anything is written: a refused batch leaves nothing behind.
        enough_space(out, count, &m, disk)?;
        fs::create_dir_all(out.join("chips"))?;
        fs::write(&info_path, serde_json::to_vec_pretty(&info)?)?;
    }
    let bundle = format!(
        "{}{}",
        to_pem(PEM_CERT, &m.family.der),
        fs::read_to_string(d.root())?
    );
    fs::write(out.join("family-bundle.pem"), bundle)?;
    let have = reconcile(out, &m)?;
    let resumed_from = have.len();
    let todo = count.saturating_sub(resumed_from);
    enough_space(out, todo, &m, disk)?;
    let started = std::time::Instant::now();
    let bar = if progress {
        indicatif::ProgressBar::new(count as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} chips  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(resumed_from as u64);
    let append = |name: &str, private: bool| -> Result<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        Ok(fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(if private { 0o600 } else { 0o644 })
            .open(out.join(name))?)
    };
    let files = Mutex::new((
        append("host-keys.jsonl", true)?,
        append("manifest.jsonl", false)?,
    ));
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let chips = out.join("chips");
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < todo {
                    if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                        return;
                    }
                    let r = (|| -> Result<()> {
                        let (serial, sealed, keys, line) = make_chip(&m)?;
                        let img = chips.join(format!("{serial}.chip"));
                        if let Err(e) = disk.write(&img, &sealed, false) {
                            let _ = fs::remove_file(&img);
                            return Err(anyhow!("writing chip {serial}: {e}"));
                        }
                        let mut f = files.lock().map_err(|_| anyhow!("batch files lock"))?;
                        let (keys_file, manifest) = &mut *f;
                        keys_file
                            .write_all(format!("{}\n", serde_json::to_string(&keys)?).as_bytes())
                            .context("writing host keys")?;
                        manifest
                            .write_all(format!("{}\n", line.to_json()).as_bytes())
                            .context("writing the manifest")?;
                        Ok(())
                    })();
                    match r {
                        Ok(()) => bar.inc(1),
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failure.into_inner().ok().flatten() {
        // Leave the batch consistent for a rerun: drop anything half done.
        reconcile(out, &m)?;
        return Err(e.context("personalization stopped; rerun the same command to resume"));
    }
    let before_sync = started.elapsed();
    sync_filesystem(out)?;
    if std::env::var_os("SESAME_TIMING").is_some() {
        eprintln!(
            "make+write {:?}, sync {:?}",
            before_sync,
            started.elapsed() - before_sync
        );
    }
    Ok(BatchReport {
        made: todo,
        resumed_from,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A disk that fills up after `room` chip images.
    struct FullDisk {
        room: usize,
        used: AtomicUsize,
    }

    impl Disk for FullDisk {
        fn write(&self, path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
            if self.used.fetch_add(1, Ordering::SeqCst) >= self.room {
                // Half a file, then the error a full disk gives.
                let _ = RealDisk.write(path, &bytes[..bytes.len() / 2], private);
                return Err(std::io::Error::from_raw_os_error(28));
            }
            RealDisk.write(path, bytes, private)
        }
    }

    /// A disk with 1 MB free.
    struct SmallDisk;

    impl Disk for SmallDisk {
        fn write(&self, path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
            RealDisk.write(path, bytes, private)
        }
        fn free_bytes(&self, _: &Path) -> std::io::Result<u64> {
            Ok(1 << 20)
        }
    }

    #[test]
    fn a_batch_that_cannot_fit_or_is_absurd_is_refused_before_writing() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = t.path().join("f");
        init(&f, "fam", KeyAlg::P256).unwrap_or_else(|e| panic!("{e}"));
        let out = t.path().join("b");
        let err = personalize(&f, "fam", 5000, &out, "p256", &SmallDisk, false)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.contains("5000 chips need about") && err.contains("MB are free"),
            "{err}"
        );
        assert!(!out.exists(), "a refused batch wrote {}", out.display());
        let err = personalize(&f, "fam", 100_000_000_000, &out, "p256", &RealDisk, false)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("split the order"), "{err}");
        assert!(!out.exists());
        // What fits goes ahead.
        let r = personalize(&f, "fam", 3, &out, "p256", &SmallDisk, false)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(r.made, 3);
    }

    #[test]
    fn a_full_disk_stops_cleanly_and_a_rerun_completes() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = t.path().join("f");
        init(&f, "fam", KeyAlg::P256).unwrap_or_else(|e| panic!("{e}"));
        let out = t.path().join("b");
        let full = FullDisk {
            room: 7,
            used: AtomicUsize::new(0),
        };
        let err = personalize(&f, "fam", 20, &out, "p256", &full, false)
            .err()
            .map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(
            err.contains("No space left on device") && err.contains("rerun"),
            "{err}"
        );
        // Consistent: every manifest line has its image and host keys, and nothing else is there.
        let lines = fs::read_to_string(out.join("manifest.jsonl")).unwrap_or_default();
        let keys = fs::read_to_string(out.join("host-keys.jsonl")).unwrap_or_default();
        let images = fs::read_dir(out.join("chips"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(lines.lines().count(), images);
        assert_eq!(keys.lines().count(), images);
        assert!(images <= 7);
        let r = personalize(&f, "fam", 20, &out, "p256", &RealDisk, false)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(r.resumed_from + r.made, 20);
        let lines = fs::read_to_string(out.join("manifest.jsonl")).unwrap_or_default();
        assert_eq!(lines.lines().count(), 20);
    }
}
