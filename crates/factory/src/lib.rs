//! `sesame-factory`: the secure fab as a library. [`init`] makes the root CA, the first family
//! CA, the cloud's command-signing key, the firmware-signing key, the chip sealing key and the
//! batch-signing key; [`family_new`] adds a family; [`personalize`] produces a batch of chip
//! images with its manifest (plain JSONL plus a signed copy, see [`signed`]); [`tls::issue`]
//! gives the cloud a server certificate under the factory's root.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod batch;
mod disk;
mod error;
mod signed;
pub mod tls;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand_core::OsRng;
use sesame_chip::{SealKey, ZoneSpec};
use sesame_pki::{cert_from_pem, to_pem, Authority, KeyAlg, PEM_CERT};

pub use batch::{
    personalize, BatchReport, Disk, HostKeyLine, NoProgress, Progress, RealDisk, MAX_BATCH,
};
use error::{io, Ctx};
pub use error::{Error, Kind, Result};
pub use signed::SIGNATURE_FILE;

/// Organization name written into every certificate the factory issues.
pub const ORG: &str = "sesame";

/// Default validity of a device certificate: 15 years (with its leap days). A device lives 10-15
/// years in the field after up to a couple on the shelf; the family CA (20 years) outlives it.
pub const DEFAULT_DEVICE_VALIDITY_DAYS: u32 = 15 * 365 + 4;

/// Longest device validity accepted, in days (100 years).
pub const MAX_DEVICE_VALIDITY_DAYS: u32 = 36_500;

/// A factory's settings (`factory.json`), fixed by `factory init`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// Validity of the device certificates `personalize` issues, in days.
    pub device_validity_days: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            device_validity_days: DEFAULT_DEVICE_VALIDITY_DAYS,
        }
    }
}

/// Refuses a validity of 0 or over [`MAX_DEVICE_VALIDITY_DAYS`].
pub fn check_validity_days(days: u32) -> Result<u32> {
    if days == 0 || days > MAX_DEVICE_VALIDITY_DAYS {
        return Err(Error::usage(format!(
            "a device certificate's validity is 1 to {MAX_DEVICE_VALIDITY_DAYS} days, not {days}"
        )));
    }
    Ok(days)
}

/// The settings of a factory (defaults for a factory made before they existed).
pub fn settings(d: &FactoryDir) -> Result<Settings> {
    match fs::read(d.settings()) {
        Ok(b) => serde_json::from_slice(&b).ctx(Kind::Refused, || {
            format!("{} is corrupt", d.settings().display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
        Err(e) => Err(e).ctx(Kind::Io, || {
            format!("cannot read {}", d.settings().display())
        }),
    }
}

/// Zone layout of a personalized chip: the one the device agent relies on.
pub use sesame_agent::layout as zones;

/// The zones of a personalized chip, as the chip's personalization takes them.
pub fn layout() -> Vec<ZoneSpec> {
    zones::ZONES
        .iter()
        .map(|z| ZoneSpec {
            size: z.size,
            counter: z.counter,
            read_ac: z.read_ac,
            update_ac: z.update_ac,
            read_right: z.read_right,
            update_right: z.update_right,
        })
        .collect()
}

/// Paths of a factory directory.
pub struct FactoryDir(pub PathBuf);

impl FactoryDir {
    fn p(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// The root CA certificate.
    pub fn root(&self) -> PathBuf {
        self.p("root.pem")
    }
    /// The root CA key.
    pub fn root_key(&self) -> PathBuf {
        self.p("root.key.pem")
    }
    /// The chip image sealing key.
    pub fn chip_key(&self) -> PathBuf {
        self.p("chip.key")
    }
    /// The cloud command-verification public key.
    pub fn command_pub(&self) -> PathBuf {
        self.p("command.pub.pem")
    }
    /// The cloud command-signing key.
    pub fn command_key(&self) -> PathBuf {
        self.p("command.key.pem")
    }
    /// The firmware-verification public key.
    pub fn firmware_pub(&self) -> PathBuf {
        self.p("firmware.pub.pem")
    }
    /// The firmware-signing key.
    pub fn firmware_key(&self) -> PathBuf {
        self.p("firmware.key.pem")
    }
    /// The factory's settings.
    pub fn settings(&self) -> PathBuf {
        self.p("factory.json")
    }
    /// A family's directory (`ca.pem`, `ca.key.pem`).
    pub fn family(&self, name: &str) -> PathBuf {
        self.p("families").join(name)
    }
}

/// Creates a new file readable by its owner only (mode 0600), synced; refuses an existing one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = io(
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path),
        || format!("cannot create {}", path.display()),
    )?;
    io(f.write_all(bytes).and_then(|()| f.sync_all()), || {
        format!("cannot write {}", path.display())
    })
}

fn write_public(path: &Path, text: &str) -> Result<()> {
    let mut f = io(
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path),
        || format!("cannot create {}", path.display()),
    )?;
    io(f.write_all(text.as_bytes()), || {
        format!("cannot write {}", path.display())
    })
}

fn check_family_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        // Refused rather than a usage error: the CLI has always exited 1 here.
        return Err(Error::refused(format!(
            "family name '{name}' must be 1-64 letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

fn new_p256_pair(key: &Path, public: &Path) -> Result<()> {
    let sk = p256::SecretKey::random(&mut OsRng);
    let pem = sk
        .to_pkcs8_pem(LineEnding::LF)
        .ctx(Kind::Crypto, || "encoding a P-256 key".into())?;
    write_private(key, pem.as_bytes())?;
    let pubpem = sk
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .ctx(Kind::Crypto, || "encoding a P-256 public key".into())?;
    write_public(public, &pubpem)
}

/// `factory init`: refuses a non-empty directory. `device_validity_days` defaults to
/// [`DEFAULT_DEVICE_VALIDITY_DAYS`].
pub fn init(
    dir: &Path,
    family: &str,
    alg: KeyAlg,
    device_validity_days: Option<u32>,
) -> Result<()> {
    check_family_name(family)?;
    let settings = Settings {
        device_validity_days: check_validity_days(
            device_validity_days.unwrap_or(DEFAULT_DEVICE_VALIDITY_DAYS),
        )?,
    };
    if dir.exists()
        && io(fs::read_dir(dir), || {
            format!("cannot list {}", dir.display())
        })?
        .next()
        .is_some()
    {
        return Err(Error::refused(format!(
            "{} is not empty; refusing to overwrite a factory",
            dir.display()
        )));
    }
    io(fs::create_dir_all(dir), || {
        format!("cannot create {}", dir.display())
    })?;
    let d = FactoryDir(dir.to_path_buf());
    let root = Authority::new_root(ORG, "sesame Root CA", alg)?;
    write_private(&d.root_key(), root.key_pem().as_bytes())?;
    write_public(&d.root(), &to_pem(PEM_CERT, &root.der))?;
    write_private(&d.chip_key(), SealKey::generate().to_hex().as_bytes())?;
    new_p256_pair(&d.command_key(), &d.command_pub())?;
    new_p256_pair(&d.firmware_key(), &d.firmware_pub())?;
    new_p256_pair(&d.batch_key(), &d.batch_pub())?;
    let json = serde_json::to_string_pretty(&settings).ctx(Kind::Io, || "factory.json".into())?;
    write_public(&d.settings(), &format!("{json}\n"))?;
    family_new(dir, family, alg)
}

/// The root CA of a factory.
pub fn load_root(d: &FactoryDir) -> Result<Authority> {
    let pem = io(fs::read_to_string(d.root()), || {
        format!("{} is not a factory (no root.pem)", d.0.display())
    })?;
    let der = cert_from_pem(&pem)?;
    let key = io(fs::read_to_string(d.root_key()), || {
        "cannot read root.key.pem".into()
    })?;
    Authority::load(&der, &key).ctx(Kind::Crypto, || {
        "root CA key is unreadable or corrupt".into()
    })
}

/// `factory family new NAME`.
pub fn family_new(dir: &Path, name: &str, alg: KeyAlg) -> Result<()> {
    check_family_name(name)?;
    let d = FactoryDir(dir.to_path_buf());
    let root = load_root(&d)?;
    let fdir = d.family(name);
    if fdir.exists() {
        return Err(Error::refused(format!("family '{name}' already exists")));
    }
    io(fs::create_dir_all(&fdir), || {
        format!("cannot create {}", fdir.display())
    })?;
    let fam = root.new_family(ORG, name, alg)?;
    write_private(&fdir.join("ca.key.pem"), fam.key_pem().as_bytes())?;
    write_public(&fdir.join("ca.pem"), &to_pem(PEM_CERT, &fam.der))?;
    Ok(())
}

/// A family CA of a factory.
pub fn load_family(d: &FactoryDir, name: &str) -> Result<Authority> {
    check_family_name(name)?;
    let fdir = d.family(name);
    if !fdir.exists() {
        return Err(Error::refused(format!(
            "unknown family '{name}' (make it with `sesame factory family new {name}`)"
        )));
    }
    let pem = io(fs::read_to_string(fdir.join("ca.pem")), || {
        format!("cannot read {}", fdir.join("ca.pem").display())
    })?;
    let der = cert_from_pem(&pem)?;
    let key = io(fs::read_to_string(fdir.join("ca.key.pem")), || {
        "cannot read the family CA key".into()
    })?;
    Authority::load(&der, &key).ctx(Kind::Crypto, || {
        "family CA key is unreadable or corrupt".into()
    })
}

/// The uncompressed SEC1 point of a P-256 public key PEM file.
pub fn public_point(pem_path: &Path) -> Result<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let text = io(fs::read_to_string(pem_path), || {
        format!("cannot read {}", pem_path.display())
    })?;
    let pk = p256::PublicKey::from_public_key_pem(&text)
        .ctx(Kind::Crypto, || pem_path.display().to_string())?;
    Ok(pk.to_encoded_point(false).as_bytes().to_vec())
}
