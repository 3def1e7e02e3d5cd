//! `sesame chip new | inspect | serve`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand_core::{OsRng, RngCore};
use sesame_chip::server::{Listener, ServeOptions};
use sesame_chip::{
    Bus, Chip, ChipConfig, ChipOptions, CurveName, Fab, Faults, FileStorage, Inspection, SealKey,
    Sealed,
};

use crate::selfcert;

/// Where the host keys of a chip image are exported (for the device's MCU firmware).
pub fn host_keys_path(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".host-keys.json");
    PathBuf::from(p)
}

/// Writes a file readable by its owner only, refusing to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The image sealing key: `--key-file`, else `SESAME_CHIP_KEY`.
pub fn chip_key(key_file: Option<&Path>) -> Result<SealKey> {
    match key_file {
        Some(p) => Ok(SealKey::from_file(p)?),
        None => SealKey::from_env().map_err(|e| {
            anyhow::anyhow!("no chip key: {e}; pass --key-file FILE (make one with `sesame chip key --out FILE`)")
        }),
    }
}

/// Writes a fresh sealing key file (64 hex digits, mode 0600).
pub fn new_key(out: &Path) -> Result<()> {
    let key = SealKey::generate();
    write_private(out, key.to_hex().as_bytes())
}

fn storage(path: &Path, key: &SealKey) -> Box<Sealed<FileStorage>> {
    Box::new(Sealed::new(FileStorage::new(path), key.clone()))
}

/// What `chip new` made.
pub struct NewChip {
    pub serial: String,
}

/// Builds a ready chip image at `out`: slot-0 key generated inside, a self-signed certificate
/// (signed by the chip) in zone 0, a one-way counter zone and plain zones, random host keys
/// (exported beside the image, 0600), life cycle operational.
pub fn new_chip(out: &Path, curve: CurveName, address: u8, key: &SealKey) -> Result<NewChip> {
    if out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a chip",
            out.display()
        );
    }
    let keys_path = host_keys_path(out);
    if keys_path.exists() {
        bail!("{} already exists", keys_path.display());
    }
    let mut serial = [0u8; 9];
    serial[0] = 0x02;
    OsRng.fill_bytes(&mut serial[1..]);
    let serial_hex = hex::encode_upper(serial);
    let mut config = ChipConfig::new(serial);
    config.i2c_address = address;
    let mut fab = Fab::new(config, storage(out, key), ChipOptions::default())?;
    let public = fab.generate_key(0, curve)?;
    let (mut fab, der) = selfcert::self_signed(fab, &public, &serial_hex)?;
    fab.write_zone(0, 0, &der)?;
    let (mut mac, mut cipher) = ([0u8; 16], [0u8; 16]);
    OsRng.fill_bytes(&mut mac);
    OsRng.fill_bytes(&mut cipher);
    fab.set_host_keys(mac, cipher)?;
    let host_keys = HostKeys {
        mac: hex::encode(mac),
        cipher: hex::encode(cipher),
    };
    write_private(
        &keys_path,
        serde_json::to_string_pretty(&host_keys)?.as_bytes(),
    )?;
    fab.finish()?;
    Ok(NewChip { serial: serial_hex })
}

pub fn open(path: &Path, options: ChipOptions, key: &SealKey) -> Result<Chip> {
    Chip::open(storage(path, key), options)
        .with_context(|| format!("cannot open chip image {}", path.display()))
}

/// The summary of the certificate in zone 0 (the vocabulary of `device info`).
pub fn certificate_summary(chip: &Chip) -> Option<serde_json::Value> {
    let zone0 = chip.public_zone(0)?;
    let len = Inspection::certificate_len(zone0)?;
    crate::device_cmd::view::certificate_summary(zone0.get(..len)?).ok()
}

pub fn inspect(path: &Path, json: bool, key: &SealKey) -> Result<()> {
    let chip = open(path, ChipOptions::default(), key)?;
    let info = chip.inspect();
    let cert = certificate_summary(&chip);
    if json {
        let v = crate::vocab::chip_inspection(&info, cert);
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    outln!("chip {}  (mask {}, STSAFE-A110)", info.serial, info.mask_id);
    outln!("  life cycle   {}", info.life_cycle);
    outln!("  I2C address  0x{:02X}", info.i2c_address);
    outln!("  zones");
    for z in &info.zones {
        let counter = z
            .counter
            .map(|c| format!(", counter {c}"))
            .unwrap_or_default();
        outln!(
            "    {:>2} {:<7} {:>5} bytes  read AC {}{}  update AC {}{}{}",
            z.index,
            z.kind,
            z.size,
            z.read_ac.0,
            if z.read_ac.1 { "" } else { " (fixed)" },
            z.update_ac.0,
            if z.update_ac.1 { "" } else { " (fixed)" },
            counter
        );
    }
    outln!("  private keys");
    for k in &info.private_keys {
        match &k.public_key {
            Some(pk) => outln!(
                "    slot {}: {} public {}  mode {:04X}  uses {}",
                k.slot,
                pk.curve,
                hex::encode(pk.to_sec1()),
                k.mode,
                k.uses_left.map_or("unlimited".into(), |u| u.to_string())
            ),
            None => outln!("    slot {}: empty", k.slot),
        }
    }
    outln!(
        "  host keys    {} (C-MAC counter {})",
        if info.host_keys {
            "provisioned"
        } else {
            "none"
        },
        info.host_counter
    );
    if let Some(c) = cert {
        outln!(
            "  certificate  {} bytes, subject {}",
            c["bytes"],
            c["subject"]
        );
        outln!("               issuer {}", c["issuer"]);
        outln!(
            "               valid {} .. {}",
            c["not_before"],
            c["not_after"]
        );
    }
    Ok(())
}

/// The server's resource limits (protocol.md §10.1).
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: std::time::Duration,
}

pub fn serve(
    images: &[PathBuf],
    listen: &str,
    timing: bool,
    faults: Option<Faults>,
    limits: Limits,
    key: &SealKey,
) -> Result<()> {
    if images.is_empty() {
        bail!("give at least one --image");
    }
    let bus = Bus::new();
    let options = ChipOptions {
        realistic_timing: timing,
        ..Default::default()
    };
    for path in images {
        let chip = open(path, options, key)?;
        let (addr, serial) = (chip.address(), chip.inspect().serial);
        if bus.attach(chip).is_err() {
            bail!(
                "{}: another chip already uses address 0x{addr:02X}",
                path.display()
            );
        }
        eprintln!("chip {serial} at 0x{addr:02X} ({})", path.display());
    }
    if let Some(f) = faults {
        eprintln!("fault injection on: {f:?}");
    }
    bus.set_faults(faults);
    let listener = Listener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "virtual I2C bus on {} (at most {} connections, idle timeout {} s)",
        listener.local_addr()?,
        limits.max_connections,
        limits.idle_timeout.as_secs()
    );
    let options = ServeOptions {
        max_connections: limits.max_connections,
        idle_timeout: limits.idle_timeout,
        ..ServeOptions::default()
    };
    listener.exit_on_signals(&bus, options.log.clone())?;
    listener.serve_with(&bus, &options)?;
    Ok(())
}

/// Host keys for the secure channel, as exported beside a chip image.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct HostKeys {
    /// Hex of the 16-byte MAC key.
    pub mac: String,
    /// Hex of the 16-byte cipher key.
    pub cipher: String,
}
