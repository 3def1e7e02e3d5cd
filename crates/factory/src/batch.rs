//! Personalizing a batch.
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
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sesame_chip::{ChipConfig, ChipOptions, CurveName, Fab, MemStorage, SealKey};
use sesame_pki::{fingerprint, to_pem, Authority, DeviceKey, ManifestLine, PEM_CERT};

use crate::disk::sync_filesystem;
pub use crate::disk::{Disk, RealDisk};
use crate::error::{io, Ctx, Error, Kind, Result};
use crate::{layout, load_family, public_point, zones, FactoryDir, ORG};

/// Progress of a batch, for a caller that shows it.
pub trait Progress: Sync {
    /// The batch has `total` chips, `done` of them from an earlier run.
    fn start(&self, total: u64, done: u64) {
        let _ = (total, done);
    }
    /// One more chip is made.
    fn inc(&self) {}
    /// The batch is over (made or failed).
    fn finish(&self) {}
}

/// Shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

fn crypto<T, E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    r: std::result::Result<T, E>,
    what: &str,
) -> Result<T> {
    r.ctx(Kind::Crypto, || what.to_string())
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct BatchInfo {
    family: String,
    profile: String,
    count: usize,
    /// Random id, fixed at the start (absent in batches made before manifests were signed).
    #[serde(default)]
    id: String,
    /// Unix seconds at the start.
    #[serde(default)]
    created: i64,
    /// The devices' certificate notAfter (Unix seconds); absent: no well-defined expiration.
    #[serde(default)]
    not_after: Option<i64>,
    /// The validity in days it was computed from.
    #[serde(default)]
    validity_days: Option<u32>,
}

impl BatchInfo {
    fn same_order(&self, other: &Self) -> bool {
        (&self.family, &self.profile, self.count) == (&other.family, &other.profile, other.count)
    }
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
    /// The device certificates' notAfter.
    not_after: time::OffsetDateTime,
}

/// The host keys of one chip, as the device maker's MCU firmware needs them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct HostKeyLine {
    /// The chip's serial (hex).
    pub serial: String,
    /// Host MAC key (hex).
    pub mac: String,
    /// Host cipher key (hex).
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
    let mut fab = crypto(
        Fab::new(config, Box::new(mem.clone()), ChipOptions::default()),
        "making a chip",
    )?;
    let public = crypto(fab.generate_key(0, m.curve), "generating the chip key")?;
    let point = public.to_sec1();
    let der = m.family.issue_device(
        &serial_hex,
        &DeviceKey::from_sec1(&point)?,
        ORG,
        Some(m.not_after),
    )?;
    crypto(
        fab.write_zone(zones::CERT, 0, &der),
        "writing the certificate",
    )?;
    for (zone, key) in [
        (zones::COMMAND_KEY, &m.command_key),
        (zones::FIRMWARE_KEY, &m.firmware_key),
    ] {
        crypto(fab.write_zone(zone, 0, key), "writing a key zone")?;
    }
    let (mut mac, mut cipher) = ([0u8; 16], [0u8; 16]);
    OsRng.fill_bytes(&mut mac);
    OsRng.fill_bytes(&mut cipher);
    crypto(fab.set_host_keys(mac, cipher), "setting host keys")?;
    crypto(fab.finish(), "finishing the chip")?;
    let image = mem
        .image()
        .ok_or_else(|| Error::new(Kind::Crypto, "chip produced no image"))?;
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
/// away) times `todo`.
fn enough_space(out: &Path, todo: usize, m: &Material, disk: &dyn Disk) -> Result<()> {
    if todo == 0 {
        return Ok(());
    }
    let (_, sealed, keys, line) = make_chip(m)?;
    let per_chip = sealed.len() + host_json(&keys).len() + line.to_json().len() + 2;
    crate::disk::check_space(out, todo, per_chip, disk)
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
        body.push_str(&serde_json::to_string(it).ctx(Kind::Io, || "encoding a line".into())?);
        body.push('\n');
    }
    if body != old {
        let tmp = path.with_extension("tmp");
        let _ = fs::remove_file(&tmp);
        io(
            RealDisk
                .write(&tmp, body.as_bytes(), private)
                .and_then(|()| fs::rename(&tmp, path)),
            || format!("cannot rewrite {}", path.display()),
        )?;
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
    let listing = || format!("cannot list {}", chips.display());
    for entry in io(fs::read_dir(&chips), listing)? {
        let path = io(entry, listing)?.path();
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
            _ => io(fs::remove_file(&path), || {
                format!("cannot remove {}", path.display())
            })?,
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

/// What a personalize run did.
pub struct BatchReport {
    /// Chips made by this run.
    pub made: usize,
    /// Chips that were already there (an earlier, interrupted run).
    pub resumed_from: usize,
    /// Seconds this run took.
    pub seconds: f64,
}

fn host_json(k: &HostKeyLine) -> String {
    // A struct of strings always serializes.
    serde_json::to_string(k).unwrap_or_default()
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn profile_of(profile: &str) -> Result<(CurveName, bool)> {
    Ok(match profile {
        "p256" | "default" => (CurveName::P256, false),
        "p384" => (CurveName::P384, false),
        "p256-encrypted" | "encrypted" => (CurveName::P256, true),
        "p384-encrypted" => (CurveName::P384, true),
        _ => {
            return Err(Error::usage(format!(
                "unknown profile '{profile}' (p256, p384, p256-encrypted, p384-encrypted)"
            )))
        }
    })
}

/// `factory personalize`: makes `count` chips of `family` into `out`, or completes an
/// interrupted batch there.
// The order's terms are plain arguments, as the CLI gives them.
#[allow(clippy::too_many_arguments)]
pub fn personalize(
    dir: &Path,
    family: &str,
    count: usize,
    out: &Path,
    profile: &str,
    validity_days: Option<u32>,
    disk: &dyn Disk,
    progress: &dyn Progress,
) -> Result<BatchReport> {
    if count == 0 {
        return Err(Error::usage("--count must be at least 1"));
    }
    if count > MAX_BATCH {
        return Err(Error::usage(format!(
            "--count {count} is more than one batch may hold ({MAX_BATCH}); split the order into batches"
        )));
    }
    let (curve, encrypted) = profile_of(profile)?;
    let d = FactoryDir(dir.to_path_buf());
    let info_path = out.join("batch.json");
    let mut info = BatchInfo {
        family: family.into(),
        profile: profile.into(),
        count,
        id: random_id(),
        created: time::OffsetDateTime::now_utc().unix_timestamp(),
        not_after: None,
        validity_days: None,
    };
    let existing: Option<BatchInfo> = if out.exists() {
        Some(
            fs::read(&info_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| {
                    Error::refused(format!(
                        "{} exists and is not a batch; refusing to overwrite",
                        out.display()
                    ))
                })?,
        )
    } else {
        None
    };
    if let Some(e) = &existing {
        if !e.same_order(&info) {
            return Err(Error::refused(format!("{} holds a batch of {} x '{}' ({}); this run asks for {count} x '{family}' ({profile})", out.display(), e.count, e.family, e.profile)));
        }
        // A resumed batch keeps its identity and its certificates' validity.
        if !e.id.is_empty() {
            info.id.clone_from(&e.id);
            info.created = e.created;
        }
        if let (Some(asked), Some(had)) = (validity_days, e.validity_days) {
            if asked != had {
                return Err(Error::refused(format!(
                    "{} is a batch of certificates valid {had} days; this run asks for {asked}",
                    out.display()
                )));
            }
        }
        info.not_after = e.not_after;
        info.validity_days = e.validity_days;
    }
    let family_ca = load_family(&d, family)?;
    if existing.is_none() {
        let days = match validity_days {
            Some(v) => crate::check_validity_days(v)?,
            None => crate::settings(&d)?.device_validity_days,
        };
        let end = info.created.saturating_add(i64::from(days) * 86_400);
        let ca = sesame_pki::profile::CaCert::parse(&family_ca.der)
            .ctx(Kind::Crypto, || "family CA certificate".into())?;
        // A certificate that outlives its issuer fails path validation from that day on.
        if end > ca.not_after as i64 {
            return Err(Error::refused(format!(
                "certificates valid {days} days would outlive family '{family}' (its CA ends {}); give a shorter --validity-days or make a new family",
                time::OffsetDateTime::from_unix_timestamp(ca.not_after as i64)
                    .map(|t| t.date().to_string())
                    .unwrap_or_default()
            )));
        }
        info.not_after = Some(end);
        info.validity_days = Some(days);
    }
    let not_after = match info.not_after {
        Some(t) => time::OffsetDateTime::from_unix_timestamp(t).ctx(Kind::Refused, || {
            format!("{} has a bad not_after", info_path.display())
        })?,
        None => {
            let (y, mo, day) = sesame_pki::DEVICE_NOT_AFTER_NONE;
            let date = time::Date::from_calendar_date(
                y,
                time::Month::try_from(mo).ctx(Kind::Crypto, || "month".into())?,
                day,
            )
            .ctx(Kind::Crypto, || "date".into())?;
            date.with_hms(23, 59, 59)
                .ctx(Kind::Crypto, || "date".into())?
                .assume_utc()
        }
    };
    let m = Material {
        family_name: family.to_string(),
        family: family_ca,
        chip_key: SealKey::from_file(&d.chip_key()).ctx(Kind::Crypto, || "chip key".into())?,
        command_key: public_point(&d.command_pub())?,
        firmware_key: public_point(&d.firmware_pub())?,
        curve,
        encrypted,
        not_after,
    };
    let create = |p: &Path| format!("cannot create {}", p.display());
    if existing.is_none() {
        // Checked before anything is written: a refused batch leaves nothing behind.
        enough_space(out, count, &m, disk)?;
        io(fs::create_dir_all(out.join("chips")), || create(out))?;
    }
    crate::signed::ensure_batch_key(&d)?;
    crate::signed::unsign(out)?;
    if existing.as_ref().is_none_or(|e| e.id != info.id) {
        let json = serde_json::to_vec_pretty(&info).ctx(Kind::Io, || "batch.json".into())?;
        let tmp = out.join("batch.json.tmp");
        io(
            fs::write(&tmp, json).and_then(|()| fs::rename(&tmp, &info_path)),
            || create(&info_path),
        )?;
    }
    let root = io(fs::read_to_string(d.root()), || {
        format!("cannot read {}", d.root().display())
    })?;
    let bundle = format!("{}{root}", to_pem(PEM_CERT, &m.family.der));
    let bundle_path = out.join("family-bundle.pem");
    io(fs::write(&bundle_path, bundle), || create(&bundle_path))?;
    let have = reconcile(out, &m)?;
    let resumed_from = have.len();
    let todo = count.saturating_sub(resumed_from);
    enough_space(out, todo, &m, disk)?;
    let started = std::time::Instant::now();
    progress.start(count as u64, resumed_from as u64);
    let append = |name: &str, private: bool| -> Result<fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = out.join(name);
        io(
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(if private { 0o600 } else { 0o644 })
                .open(&path),
            || create(&path),
        )
    };
    let files = Mutex::new((
        append("host-keys.jsonl", true)?,
        append("manifest.jsonl", false)?,
    ));
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
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
                            return Err(e).ctx(Kind::Io, || format!("writing chip {serial}"));
                        }
                        let mut f = files
                            .lock()
                            .map_err(|_| Error::new(Kind::Io, "batch files lock"))?;
                        let (keys_file, manifest) = &mut *f;
                        io(
                            keys_file.write_all(format!("{}\n", host_json(&keys)).as_bytes()),
                            || "writing host keys".into(),
                        )?;
                        io(
                            manifest.write_all(format!("{}\n", line.to_json()).as_bytes()),
                            || "writing the manifest".into(),
                        )?;
                        Ok(())
                    })();
                    match r {
                        Ok(()) => progress.inc(),
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
    progress.finish();
    if let Some(e) = failure.into_inner().ok().flatten() {
        // Leave the batch consistent for a rerun: drop anything half done.
        reconcile(out, &m)?;
        return Err(e.context("personalization stopped; rerun the same command to resume"));
    }
    crate::signed::sign_manifest(&d, out, |manifest_sha256, count| {
        sesame_pki::batch_sig::BatchClaims {
            batch_id: info.id.clone(),
            family: family.into(),
            family_ca_sha256: fingerprint(&m.family.der),
            count,
            manifest_sha256,
            created: info.created,
            device_not_after: m.not_after.unix_timestamp(),
        }
    })?;
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
        crate::init(&f, "fam", sesame_pki::KeyAlg::P256, None).unwrap_or_else(|e| panic!("{e}"));
        let out = t.path().join("b");
        let err = personalize(&f, "fam", 5000, &out, "p256", None, &SmallDisk, &NoProgress)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.contains("5000 chips need about") && err.contains("MB are free"),
            "{err}"
        );
        assert!(!out.exists(), "a refused batch wrote {}", out.display());
        let err = personalize(
            &f,
            "fam",
            100_000_000_000,
            &out,
            "p256",
            None,
            &RealDisk,
            &NoProgress,
        )
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
        assert!(err.contains("split the order"), "{err}");
        assert!(!out.exists());
        // What fits goes ahead.
        let r = personalize(&f, "fam", 3, &out, "p256", None, &SmallDisk, &NoProgress)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(r.made, 3);
    }

    #[test]
    fn a_full_disk_stops_cleanly_and_a_rerun_completes() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = t.path().join("f");
        crate::init(&f, "fam", sesame_pki::KeyAlg::P256, None).unwrap_or_else(|e| panic!("{e}"));
        let out = t.path().join("b");
        let full = FullDisk {
            room: 7,
            used: AtomicUsize::new(0),
        };
        let err = personalize(&f, "fam", 20, &out, "p256", None, &full, &NoProgress)
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
        let r = personalize(&f, "fam", 20, &out, "p256", None, &RealDisk, &NoProgress)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(r.resumed_from + r.made, 20);
        let lines = fs::read_to_string(out.join("manifest.jsonl")).unwrap_or_default();
        assert_eq!(lines.lines().count(), 20);
    }

    #[test]
    fn a_batch_is_signed_once_complete_and_keeps_its_id_when_resumed() {
        use sesame_pki::batch_sig::verify_batch;
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = t.path().join("f");
        crate::init(&f, "fam", sesame_pki::KeyAlg::P256, None).unwrap_or_else(|e| panic!("{e}"));
        let out = t.path().join("b");
        let full = FullDisk {
            room: 2,
            used: AtomicUsize::new(0),
        };
        assert!(personalize(&f, "fam", 5, &out, "p256", None, &full, &NoProgress).is_err());
        // An unfinished batch has no signature.
        assert!(!out.join(crate::SIGNATURE_FILE).exists());
        personalize(&f, "fam", 5, &out, "p256", None, &RealDisk, &NoProgress)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let read = |p: std::path::PathBuf| fs::read_to_string(p).unwrap_or_default();
        let d = FactoryDir(f.clone());
        let manifest = read(out.join("manifest.jsonl"));
        let jws = read(out.join(crate::SIGNATURE_FILE));
        let (claims, lines) = verify_batch(&jws, &read(d.batch_pub()), manifest.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((claims.count, lines.len()), (5, 5));
        let info: BatchInfo =
            serde_json::from_str(&read(out.join("batch.json"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.batch_id, info.id);
        assert_eq!(
            claims.family_ca_sha256,
            fingerprint(&load_family(&d, "fam").unwrap_or_else(|e| panic!("{e}")).der)
        );
        // Another factory's key does not verify it.
        let g = t.path().join("g");
        crate::init(&g, "fam", sesame_pki::KeyAlg::P256, None).unwrap_or_else(|e| panic!("{e}"));
        let other = read(FactoryDir(g).batch_pub());
        assert!(verify_batch(&jws, &other, manifest.as_bytes()).is_err());
    }

    #[test]
    fn device_certificates_end_after_the_configured_validity() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let f = t.path().join("f");
        crate::init(&f, "fam", sesame_pki::KeyAlg::P256, None).unwrap_or_else(|e| panic!("{e}"));
        let not_after_of = |out: &Path| {
            let m = fs::read_to_string(out.join("manifest.jsonl")).unwrap_or_default();
            let serial = ManifestLine::parse(m.lines().next().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}"))
                .serial;
            let d = FactoryDir(f.clone());
            let mat_key = SealKey::from_file(&d.chip_key()).unwrap_or_else(|e| panic!("{e}"));
            let storage = sesame_chip::Sealed::new(
                sesame_chip::FileStorage::new(out.join("chips").join(format!("{serial}.chip"))),
                mat_key,
            );
            let chip = sesame_chip::Chip::open(Box::new(storage), ChipOptions::default())
                .unwrap_or_else(|e| panic!("{e:?}"));
            let zone0 = chip.public_zone(0).unwrap_or_default();
            let len = sesame_chip::Inspection::certificate_len(zone0).unwrap_or_default();
            let leaf =
                sesame_pki::profile::device_leaf(&zone0[..len]).unwrap_or_else(|e| panic!("{e}"));
            let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
            // Whole days left; the batch started up to a second ago.
            (leaf.not_after - now).div_ceil(86_400)
        };
        // The factory default: 15 years.
        let a = t.path().join("a");
        personalize(&f, "fam", 1, &a, "p256", None, &RealDisk, &NoProgress)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            not_after_of(&a),
            u64::from(crate::DEFAULT_DEVICE_VALIDITY_DAYS)
        );
        // Given for one batch.
        let b = t.path().join("b");
        personalize(&f, "fam", 1, &b, "p256", Some(30), &RealDisk, &NoProgress)
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(not_after_of(&b), 30);
        // A resumed batch cannot change it.
        let err = personalize(&f, "fam", 1, &b, "p256", Some(60), &RealDisk, &NoProgress)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("valid 30 days"), "{err}");
        // Longer than the family CA lives (20 years), or absurd: refused before writing.
        let c = t.path().join("c");
        let err = personalize(
            &f,
            "fam",
            1,
            &c,
            "p256",
            Some(365 * 21),
            &RealDisk,
            &NoProgress,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("would outlive family 'fam'"), "{err}");
        assert!(personalize(&f, "fam", 1, &c, "p256", Some(0), &RealDisk, &NoProgress).is_err());
        assert!(!c.exists());
        // Set at init for every batch of the factory.
        let g = t.path().join("g");
        crate::init(&g, "fam", sesame_pki::KeyAlg::P256, Some(400))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            crate::settings(&FactoryDir(g))
                .map(|s| s.device_validity_days)
                .ok(),
            Some(400)
        );
    }
}
