//! `sesame factory`: the secure fab. `init` makes the root CA, the first family CA, the cloud's
//! command-signing key, the firmware-signing key and the chip sealing key; `family new` adds a
//! family; `personalize` produces a batch of chip images with a manifest.
//!
//! Batch consistency: each chip is written as host-keys file, then image (temporary + rename),
//! then its manifest line. A crash can leave an image without its line or a torn last line;
//! rerunning first reconciles the directory (an image that opens and matches gets its line back,
//! anything torn or unmatched is removed, a line without its image is dropped), then resumes.
//! The batch is synced to disk once at the end (and at checkpoints), not per chip.

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

/// Zone layout of a personalized chip (the agent reads the same indices).
#[allow(dead_code)]
pub mod zones {
    /// Device certificate (read-only).
    pub const CERT: u8 = 0;
    /// Cloud command-verification public key: `len(1) | SEC1 point` (read-only).
    pub const COMMAND_KEY: u8 = 1;
    /// Firmware-verification public key: `len(1) | SEC1 point` (read-only).
    pub const FIRMWARE_KEY: u8 = 2;
    /// One-way usage counter.
    pub const USAGE: u8 = 3;
    /// One-way anti-rollback counter: `ROLLBACK_BASE - installed firmware version`.
    pub const ROLLBACK: u8 = 4;
    /// Device data (plain).
    pub const DATA: u8 = 5;
    /// Initial usage counter.
    pub const USAGE_INITIAL: u32 = 1_000_000;
    /// Anti-rollback counter at version 0.
    pub const ROLLBACK_BASE: u32 = 0x00FF_FFFF;
}

fn layout() -> Vec<ZoneSpec> {
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
}

/// Makes one chip entirely in memory; returns (serial, sealed image, host keys JSON, line).
fn make_chip(m: &Material) -> Result<(String, Vec<u8>, String, ManifestLine)> {
    let mut serial = [0u8; 9];
    serial[0] = 0x02;
    OsRng.fill_bytes(&mut serial[1..]);
    let serial_hex = hex::encode_upper(serial);
    let mut config = ChipConfig::new(serial);
    config.zones = layout();
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
        let mut v = vec![key.len() as u8];
        v.extend_from_slice(key);
        fab.write_zone(zone, 0, &v)?;
    }
    let (mut mac, mut cipher) = ([0u8; 16], [0u8; 16]);
    OsRng.fill_bytes(&mut mac);
    OsRng.fill_bytes(&mut cipher);
    fab.set_host_keys(mac, cipher)?;
    fab.finish()?;
    let image = mem
        .image()
        .ok_or_else(|| anyhow!("chip produced no image"))?;
    let sealed = sesame_chip::seal(&m.chip_key, &image);
    let host_keys = serde_json::json!({ "serial": serial_hex, "mac": hex::encode(mac), "cipher": hex::encode(cipher) }).to_string();
    let line = ManifestLine {
        serial: serial_hex.clone(),
        cert_sha256: fingerprint(&der),
        family: m.family_name.clone(),
        public_key: hex::encode(&point),
    };
    Ok((serial_hex, sealed, host_keys, line))
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

/// Brings a batch directory back to "every line has its image and every image its line".
fn reconcile(out: &Path, m: &Material) -> Result<Vec<ManifestLine>> {
    let chips = out.join("chips");
    let manifest_path = out.join("manifest.jsonl");
    let text = fs::read_to_string(&manifest_path).unwrap_or_default();
    let mut lines: Vec<ManifestLine> = Vec::new();
    for l in text.lines() {
        // A torn last line does not parse: its chip is recovered from the image below.
        if let Ok(line) = ManifestLine::parse(l) {
            let img = chips.join(format!("{}.chip", line.serial));
            if line_of_image(m, &img).as_ref() == Some(&line)
                && !lines.iter().any(|x| x.serial == line.serial)
            {
                lines.push(line);
            }
        }
    }
    for entry in fs::read_dir(&chips)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if let Some(serial) = name.strip_suffix(".chip") {
            if lines.iter().any(|l| l.serial == serial) {
                continue;
            }
            match line_of_image(m, &path) {
                Some(line) if line.serial == serial => lines.push(line),
                _ => {
                    fs::remove_file(&path)?;
                    let _ = fs::remove_file(chips.join(format!("{serial}.host-keys.json")));
                }
            }
        } else if let Some(serial) = name.strip_suffix(".host-keys.json") {
            if !chips.join(format!("{serial}.chip")).exists() {
                fs::remove_file(&path)?;
            }
        } else {
            // Temporary files of an interrupted write.
            fs::remove_file(&path)?;
        }
    }
    let mut body = String::new();
    for l in &lines {
        body.push_str(&l.to_json());
        body.push('\n');
    }
    if body != text {
        let tmp = out.join("manifest.jsonl.tmp");
        fs::write(&tmp, &body)?;
        fs::rename(&tmp, &manifest_path)?;
    }
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
        bail!("--count must be at least 1");
    }
    let curve = match profile {
        "p256" | "default" => CurveName::P256,
        "p384" => CurveName::P384,
        _ => bail!("unknown profile '{profile}' (p256, p384)"),
    };
    let d = FactoryDir(dir.to_path_buf());
    let m = Material {
        family_name: family.to_string(),
        family: load_family(&d, family)?,
        chip_key: SealKey::from_file(&d.chip_key()).map_err(|e| anyhow!("chip key: {e}"))?,
        command_key: public_point(&d.command_pub())?,
        firmware_key: public_point(&d.firmware_pub())?,
        curve,
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
    let manifest = Mutex::new(
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(out.join("manifest.jsonl"))?,
    );
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
                        let keys_path = chips.join(format!("{serial}.host-keys.json"));
                        let img = chips.join(format!("{serial}.chip"));
                        let tmp = chips.join(format!("{serial}.chip.tmp"));
                        let written = disk
                            .write(&keys_path, keys.as_bytes(), true)
                            .and_then(|_| disk.write(&tmp, &sealed, false))
                            .and_then(|_| fs::rename(&tmp, &img));
                        if let Err(e) = written {
                            let _ = fs::remove_file(&tmp);
                            let _ = fs::remove_file(&keys_path);
                            return Err(anyhow!("writing chip {serial}: {e}"));
                        }
                        let mut f = manifest.lock().map_err(|_| anyhow!("manifest lock"))?;
                        f.write_all(format!("{}\n", line.to_json()).as_bytes())
                            .with_context(|| "writing the manifest")?;
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
    sync_filesystem(out)?;
    Ok(BatchReport {
        made: todo,
        resumed_from,
        seconds: started.elapsed().as_secs_f64(),
    })
}
