//! `sesame chip new | inspect | serve`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand_core::{OsRng, RngCore};
use sesame_chip::server::{Listener, ServeOptions};
use sesame_chip::{
    Bus, Chip, ChipConfig, ChipOptions, CurveName, Fab, Faults, FileStorage, Inspection, SealKey,
    Sealed,
};

use sesame_pki::{to_pem, Authority, DeviceKey, KeyAlg, PEM_CERT};
use sesame_wire::resp::{command_ac, ENC_COMMAND, ENC_RESPONSE};
use sesame_wire::CommandCode;

/// Where the host keys of a chip image are exported (for the device's MCU firmware).
pub fn host_keys_path(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".host-keys.json");
    PathBuf::from(p)
}

/// Where `chip new` writes the certificate of the CA that issued the chip's certificate.
pub fn ca_path(image: &Path) -> PathBuf {
    let mut p = image.as_os_str().to_owned();
    p.push(".ca.pem");
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

/// The image at `path`, owned by this process alone while it is open (its lock file is
/// `PATH.lock`): a second server, or `device --image` on a served image, is refused. When the
/// file tells which chip it must hold, an image of any other chip is refused.
fn storage(path: &Path, key: &SealKey) -> Result<Box<Sealed<FileStorage>>> {
    let file = FileStorage::exclusive(path)?;
    Ok(Box::new(match expected_serial(path) {
        Some(serial) => Sealed::for_chip(file, key.clone(), serial),
        None => Sealed::new(file, key.clone()),
    }))
}

/// The chip an image file must hold: a factory image is named after its serial
/// (`chips/SERIAL.chip`); `chip new` writes the serial into `IMAGE.host-keys.json`.
pub fn expected_serial(path: &Path) -> Option<[u8; 9]> {
    let parse = |s: &str| -> Option<[u8; 9]> { hex::decode(s).ok()?.try_into().ok() };
    if let Some(serial) = path.file_stem().and_then(|s| s.to_str()).and_then(parse) {
        return Some(serial);
    }
    let text = std::fs::read_to_string(host_keys_path(path)).ok()?;
    let keys: HostKeys = serde_json::from_str(&text).ok()?;
    parse(keys.serial.as_deref()?)
}

/// What `chip new` made.
pub struct NewChip {
    pub serial: String,
}

/// Builds a ready chip image at `out`: slot-0 key generated inside, a certificate issued by a
/// CA of the chip's own (written beside the image as `OUT.ca.pem`) in zone 0, a one-way counter zone and plain zones, random host keys
/// (exported beside the image, 0600), life cycle operational.
pub fn new_chip(
    out: &Path,
    curve: CurveName,
    address: u8,
    encrypted: bool,
    key: &SealKey,
) -> Result<NewChip> {
    if out.exists() {
        bail!(
            "{} already exists; refusing to overwrite a chip",
            out.display()
        );
    }
    let keys_path = host_keys_path(out);
    let ca_path = ca_path(out);
    for p in [&keys_path, &ca_path] {
        if p.exists() {
            bail!("{} already exists", p.display());
        }
    }
    let mut serial = [0u8; 9];
    serial[0] = 0x02;
    OsRng.fill_bytes(&mut serial[1..]);
    let serial_hex = hex::encode_upper(serial);
    let mut config = ChipConfig::new(serial);
    config.i2c_address = address;
    if encrypted {
        config.policy = sesame_chip::encrypted_command_policy();
    }
    let mut fab = Fab::new(config, storage(out, key)?, ChipOptions::default())?;
    let public = fab.generate_key(0, curve)?;
    // A CA of this chip's own issues its certificate, so hosts that check the chain against a
    // CA (as ST's library does) accept it; its key is dropped here, so it can issue nothing else.
    let ca = Authority::new_root("sesame", &format!("chip {serial_hex} CA"), KeyAlg::P256)?;
    let der = ca.issue_device(
        &serial_hex,
        &DeviceKey::from_sec1(&public.to_sec1())?,
        "sesame",
        None,
    )?;
    fab.write_zone(0, 0, &der)?;
    let (mut mac, mut cipher) = ([0u8; 16], [0u8; 16]);
    OsRng.fill_bytes(&mut mac);
    OsRng.fill_bytes(&mut cipher);
    fab.set_host_keys(mac, cipher)?;
    let host_keys = HostKeys {
        serial: Some(serial_hex.clone()),
        mac: hex::encode(mac),
        cipher: hex::encode(cipher),
    };
    write_private(
        &keys_path,
        serde_json::to_string_pretty(&host_keys)?.as_bytes(),
    )?;
    std::fs::write(&ca_path, to_pem(PEM_CERT, &ca.der))
        .with_context(|| format!("cannot write {}", ca_path.display()))?;
    fab.finish()?;
    Ok(NewChip { serial: serial_hex })
}

pub fn open(path: &Path, options: ChipOptions, key: &SealKey) -> Result<Chip> {
    if !path.exists() {
        bail!("cannot open chip image {}: no such file", path.display());
    }
    Chip::open(storage(path, key)?, options)
        .with_context(|| format!("cannot open chip image {}", path.display()))
}

/// Opens an image to look at it, without its lock: a served image can be inspected (every
/// write replaces the file whole, so a reader sees one state or the next).
pub fn open_to_read(path: &Path, key: &SealKey) -> Result<Chip> {
    let storage = Box::new(Sealed::new(FileStorage::new(path), key.clone()));
    Chip::open(storage, ChipOptions::default())
        .with_context(|| format!("cannot open chip image {}", path.display()))
}

/// The summary of the certificate in zone 0 (the vocabulary of `device info`).
pub fn certificate_summary(chip: &Chip) -> Option<serde_json::Value> {
    let zone0 = chip.public_zone(0)?;
    let len = Inspection::certificate_len(zone0)?;
    crate::device_cmd::view::certificate_summary(zone0.get(..len)?).ok()
}

pub fn inspect(path: &Path, json: bool, key: &SealKey) -> Result<()> {
    let chip = open_to_read(path, key)?;
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
    println!("  command table (commands not free and in clear; all others are)");
    let mut special = 0;
    for p in &info.command_policy {
        if p.ac == command_ac::FREE && p.encryption == 0 {
            continue;
        }
        special += 1;
        let enc = match (
            p.encryption & ENC_COMMAND != 0,
            p.encryption & ENC_RESPONSE != 0,
        ) {
            (true, true) => "command + response encrypted",
            (true, false) => "command encrypted",
            (false, true) => "response encrypted",
            (false, false) => "in clear",
        };
        let ac = match p.ac {
            command_ac::NEVER => "never",
            command_ac::FREE => "free",
            command_ac::ADMIN => "admin",
            command_ac::HOST => "host C-MAC",
            _ => "other",
        };
        println!(
            "    {:<18} AC {:<10} {enc}",
            format!("{:?}", CommandCode(p.code)),
            ac
        );
    }
    if special == 0 {
        println!("    (none)");
    }
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
    /// Log every transaction (`-v`).
    pub verbose: bool,
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
    bus.set_log(Some(options.log.clone()));
    if limits.verbose {
        bus.set_trace(Some(std::sync::Arc::new(|t| eprintln!("debug: {t}"))));
    }
    listener.serve_with(&bus, &options)?;
    Ok(())
}

/// Host keys for the secure channel, as exported beside a chip image.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct HostKeys {
    /// The chip's serial (hex), which also tells which chip the image beside must hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Hex of the 16-byte MAC key.
    pub mac: String,
    /// Hex of the 16-byte cipher key.
    pub cipher: String,
}
