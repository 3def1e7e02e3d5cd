//! `sesame device …`: a host talking to a chip through the host driver (`sesame-host`), either
//! over the virtual I2C bus of `sesame chip serve` (`--bus`) or to a chip image opened in this
//! process and attached to an in-process bus (`--image`). Every subcommand prints a human summary,
//! or JSON with `--json`; failures exit 1 with the driver's precise reason (e.g. the chip's
//! status name).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use embedded_hal::i2c::I2c;
use serde_json::{json, Value};
use sesame_chip::{Bus, ChipOptions};
use sesame_host::auth::{AuthError, AuthOptions};
use sesame_host::bus::BusTarget;
use sesame_host::{ProductInfo, Stsafe, ZoneAccess};

use crate::chip_cmd;

mod cloud;
mod mqtt;
pub(crate) mod view;
mod zones;

use view::hex_arg;
use zones::{CounterCommand, ZoneCommand};

/// `sesame device`: where the chip is (global options), then what to do with it.
#[derive(Args, Debug)]
pub struct DeviceArgs {
    #[command(flatten, next_help_heading = "Chip and output")]
    target: Target,
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Args, Debug)]
struct Target {
    /// Where the chip is: the virtual I2C bus of `sesame chip serve` (`127.0.0.1:PORT`,
    /// `unix:PATH`), or a Linux I2C adapter (`/dev/i2c-N`, `/dev/i2c-N:ADDR`).
    #[arg(long, global = true, value_name = "BUS", value_parser = parse_bus)]
    bus: Option<BusTarget>,
    /// A chip image, opened in this process (needs the chip key).
    #[arg(long, global = true, value_name = "FILE")]
    image: Option<PathBuf>,
    /// With --image: file with the image sealing key; default: $SESAME_CHIP_KEY.
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// 7-bit I2C address of the chip [default: 0x20; with --image, the image's].
    #[arg(long, global = true, value_parser = crate::parse_address)]
    address: Option<u8>,
    /// Host keys for the secure channel: JSON {"mac", "cipher"} as `chip new` writes it, or
    /// the factory's host-keys.jsonl (picked by serial). With --image, default:
    /// IMAGE.host-keys.json, or the batch's host-keys.jsonl for chips/*.chip.
    #[arg(long, global = true, value_name = "FILE")]
    host_keys: Option<PathBuf>,
    /// Machine-readable output (JSON on stdout).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Product data, life cycle, I2C parameters, zones, key slots, host keys, certificate.
    Info,
    /// Save the certificate of zone 0.
    Cert {
        /// Output file (DER unless --pem).
        #[arg(long)]
        out: PathBuf,
        /// Write PEM instead of DER.
        #[arg(long)]
        pem: bool,
    },
    /// Authenticate the chip against a CA: chain check (with today's date), random challenge,
    /// signature check. Exits 1 when the chip is not authentic.
    Authenticate {
        /// CA certificate, PEM or DER; of a PEM bundle the first certificate (the issuer).
        #[arg(long)]
        ca: PathBuf,
    },
    /// Random bytes from the chip, hex.
    Random {
        /// Number of bytes (one command per 255).
        n: usize,
    },
    /// Have the chip sign a digest (as is, no hashing) with a private key slot.
    Sign {
        /// The digest, hex: 32 bytes (SHA-256) or 48 bytes (SHA-384).
        #[arg(long)]
        digest: String,
        /// Private key slot.
        #[arg(long, default_value_t = 0)]
        slot: u8,
    },
    /// Read and write data zones.
    #[command(subcommand)]
    Zone(ZoneCommand),
    /// One-way counters.
    #[command(subcommand)]
    Counter(CounterCommand),
    /// Authenticate to the cloud (certificate, challenge, chip signature) and get a session.
    Login {
        /// Cloud base URL.
        #[arg(long)]
        cloud: String,
        /// The SHA-256 of the cloud's command public key (SPKI DER, hex, as `sesame cloud
        /// info` shows it): checked against the key the cloud publishes and the one in the
        /// chip before anything else is sent.
        #[arg(long, env = "SESAME_COMMAND_KEY_SHA256", value_name = "HEX")]
        command_key_sha256: Option<String>,
        #[command(flatten)]
        trust: crate::client::Trust,
    },
    /// Log in over HTTP, then publish encrypted, chip-signed telemetry to an MQTT broker (QoS 1),
    /// authenticated to it by the chip's certificate (the chip signs the TLS handshake).
    Telemetry {
        /// Cloud base URL (for the login and the telemetry key exchange).
        #[arg(long)]
        cloud: String,
        /// The broker: mqtts://HOST[:PORT].
        #[arg(long, value_name = "URL")]
        mqtt: String,
        /// CA certificate(s), PEM, of the broker's server certificate.
        #[arg(long, value_name = "FILE")]
        mqtt_ca: PathBuf,
        #[command(flatten)]
        trust: crate::client::Trust,
        /// The readings to send, one message each.
        #[arg(required = true)]
        payloads: Vec<String>,
    },
    /// Log in, then install a newer firmware release if the cloud has one (chip-verified).
    Update {
        /// Cloud base URL.
        #[arg(long)]
        cloud: String,
        /// The SHA-256 of the cloud's command public key (SPKI DER, hex, as `sesame cloud
        /// info` shows it): checked against the key the cloud publishes and the one in the
        /// chip before anything else is sent.
        #[arg(long, env = "SESAME_COMMAND_KEY_SHA256", value_name = "HEX")]
        command_key_sha256: Option<String>,
        /// Where the device keeps its installed firmware.
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        trust: crate::client::Trust,
    },
    /// Verify the installed firmware through the chip, as at each start; exit 1 if it must
    /// not boot (tampered, wrong key, below the anti-rollback counter, missing).
    Boot {
        /// Where the device keeps its installed firmware.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// `DelayNs` on the thread's sleep: `sesame-host` only offers `NoDelay`, and a served chip may
/// run with `--timing`.
#[derive(Clone, Copy, Debug, Default)]
struct StdDelay;

impl embedded_hal::delay::DelayNs for StdDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(ns.into()));
    }
}

/// Runs `sesame device …`.
pub fn run(args: DeviceArgs) -> Result<()> {
    let DeviceArgs { target, command } = args;
    let Target {
        bus,
        image,
        key_file,
        address,
        host_keys,
        json,
    } = target;
    match (bus, image) {
        (Some(bus), None) => {
            if key_file.is_some() {
                bail!("--key-file goes with --image (a served chip is opened by `chip serve`)");
            }
            let address = bus.resolve_address(address)?;
            let i2c = bus.open()?;
            Device::start(i2c, address, bus.to_string(), host_keys, json)?.run(command)
        }
        (None, Some(image)) => {
            let key = chip_cmd::chip_key(key_file.as_deref())?;
            let chip = chip_cmd::open(&image, ChipOptions::default(), &key)?;
            let address = address.unwrap_or(chip.address());
            let bus = Bus::new();
            bus.attach(chip)
                .map_err(|_| anyhow!("cannot attach the chip to the in-process bus"))?;
            let host_keys = host_keys.or_else(|| default_host_keys(&image));
            let place = image.display().to_string();
            Device::start(bus.device(), address, place, host_keys, json)?.run(command)
        }
        (Some(_), Some(_)) => bail!("give either --bus or --image, not both"),
        (None, None) => {
            bail!("where is the chip? pass --bus ADDR (a `sesame chip serve`) or --image FILE")
        }
    }
}

fn parse_bus(s: &str) -> Result<BusTarget, String> {
    s.parse()
        .map_err(|e: sesame_host::bus::BusTargetError| e.to_string())
}

/// The host keys beside an image: `IMAGE.host-keys.json` (`chip new`), else the factory batch's
/// `host-keys.jsonl` for an image in its `chips/` directory.
fn default_host_keys(image: &Path) -> Option<PathBuf> {
    let beside = chip_cmd::host_keys_path(image);
    if beside.exists() {
        return Some(beside);
    }
    let dir = image.parent()?;
    if dir.file_name()? != "chips" {
        return None;
    }
    let batch = dir.parent()?.join("host-keys.jsonl");
    batch.exists().then_some(batch)
}

/// A started driver, the host keys for `--mac`, and the output format.
struct Device<I: I2c> {
    se: Stsafe<I, StdDelay>,
    product: ProductInfo,
    host_keys: Option<PathBuf>,
    json: bool,
}

impl<I> Device<I>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    /// `init`: product data (an A110?) and the command authorization table.
    fn start(
        i2c: I,
        address: u8,
        place: String,
        host_keys: Option<PathBuf>,
        json: bool,
    ) -> Result<Self> {
        // A response that fails its CRC is read again: the chip keeps it readable, so a re-read
        // never runs a command twice, and a decrement is not reported lost for a bit flip.
        let config = sesame_host::Config {
            crc_rereads: sesame_agent::CRC_REREADS,
            ..sesame_host::Config::default()
        };
        let mut se = Stsafe::with_config(i2c, StdDelay, address, config);
        let product = se
            .init()
            .with_context(|| format!("no STSAFE-A110 answers at 0x{address:02X} on {place}"))?;
        Ok(Self {
            se,
            product,
            host_keys,
            json,
        })
    }

    fn serial(&self) -> String {
        self.product
            .st_number
            .map_or_else(|| "unknown".into(), hex::encode_upper)
    }

    /// Prints `value` as JSON with `--json`, else `human`.
    fn emit(&self, value: Value, human: impl FnOnce() -> String) -> Result<()> {
        if self.json {
            outln!("{}", serde_json::to_string_pretty(&value)?);
        } else {
            outln!("{}", human());
        }
        Ok(())
    }

    /// Opens a host session when `mac`, and gives the zone access to use.
    fn access(&mut self, mac: bool) -> Result<ZoneAccess> {
        if !mac {
            return Ok(ZoneAccess::default());
        }
        let path = self
            .host_keys
            .clone()
            .ok_or_else(|| anyhow!("--mac needs the chip's host keys: pass --host-keys FILE"))?;
        let (mac_key, cipher_key) = view::load_host_keys(&path, &self.serial())?;
        self.se
            .open_session(&mac_key, &cipher_key)
            .context("cannot open the host session")?;
        Ok(ZoneAccess::MAC)
    }

    fn run(mut self, command: DeviceCommand) -> Result<()>
    where
        I: Send + 'static,
    {
        match command {
            DeviceCommand::Info => self.info(),
            DeviceCommand::Cert { out, pem } => self.cert(&out, pem),
            DeviceCommand::Authenticate { ca } => self.authenticate(&ca),
            DeviceCommand::Random { n } => self.random(n),
            DeviceCommand::Sign { digest, slot } => self.sign(&digest, slot),
            DeviceCommand::Zone(ZoneCommand::Read {
                zone,
                offset,
                len,
                mac,
            }) => self.zone_read(zone, offset, len, mac),
            DeviceCommand::Zone(ZoneCommand::Write {
                zone,
                offset,
                data,
                mac,
            }) => self.zone_write(zone, offset, &data, mac),
            DeviceCommand::Login {
                cloud,
                command_key_sha256,
                trust,
            } => cloud::login(self, &cloud, command_key_sha256.as_deref(), &trust),
            DeviceCommand::Update {
                cloud,
                command_key_sha256,
                dir,
                trust,
            } => cloud::update(self, &cloud, command_key_sha256.as_deref(), &dir, &trust),
            DeviceCommand::Boot { dir } => cloud::boot(self, &dir),
            DeviceCommand::Telemetry {
                cloud,
                mqtt,
                mqtt_ca,
                trust,
                payloads,
            } => mqtt::telemetry(
                self,
                &mqtt::Telemetry {
                    cloud: &cloud,
                    mqtt: &mqtt,
                    mqtt_ca: &mqtt_ca,
                    trust: &trust,
                    payloads: &payloads,
                },
            ),
            DeviceCommand::Counter(CounterCommand::Decrement {
                zone,
                amount,
                data,
                offset,
                mac,
            }) => self.decrement(zone, offset, amount, data.as_deref(), mac),
        }
    }

    /// The DER certificate in zone 0 (size from offset 2, read in 253-byte chunks).
    fn certificate(&mut self) -> Result<Vec<u8>> {
        let size = self
            .se
            .certificate_size(0)
            .context("cannot read the certificate size in zone 0")?;
        let mut der = vec![0u8; size];
        self.se
            .read_zone(0, 0, &mut der)
            .context("cannot read the certificate in zone 0")?;
        if size < 256 || der[..2] != [0x30, 0x82] {
            bail!("zone 0 does not hold a DER certificate");
        }
        Ok(der)
    }

    fn info(&mut self) -> Result<()> {
        let life_cycle = self.se.query_life_cycle()?;
        let i2c = self.se.query_i2c_parameters()?;
        let zones: Vec<_> = self.se.query_data_partition()?.collect();
        let (header, slots) = self.se.query_private_keys()?;
        let slots: Vec<_> = slots.collect();
        let host = self.se.query_host_key()?;
        let certificate = self
            .certificate()
            .and_then(|der| view::certificate_summary(&der))
            .map_err(|e| format!("{e:#}"));
        let info = view::Info {
            address: self.se.address(),
            serial: self.serial(),
            product: &self.product,
            life_cycle,
            i2c,
            zones: &zones,
            key_usage_limit: header.global_usage_limit,
            slots: &slots,
            host,
            certificate: &certificate,
        };
        self.emit(info.json(), || info.human())
    }

    fn cert(&mut self, out: &Path, pem: bool) -> Result<()> {
        let der = self.certificate()?;
        let bytes = if pem {
            sesame_pki::to_pem(sesame_pki::PEM_CERT, &der).into_bytes()
        } else {
            der.clone()
        };
        std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        let sha = sesame_pki::fingerprint(&der);
        let format = if pem { "pem" } else { "der" };
        self.emit(
            json!({"out": out.display().to_string(), "format": format,
                   "bytes": der.len(), "sha256": sha}),
            || {
                format!(
                    "certificate of chip {} ({} bytes, SHA-256 {sha}) written to {} ({format})",
                    self.serial(),
                    der.len(),
                    out.display()
                )
            },
        )
    }

    fn authenticate(&mut self, ca_path: &Path) -> Result<()> {
        let ca = view::load_ca(ca_path)?;
        let ca_subject = view::subject(&ca).unwrap_or_else(|| ca_path.display().to_string());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let options = AuthOptions {
            zone: 0,
            slot: 0,
            now: Some(now),
        };
        let mut cert = vec![0u8; 4096];
        let result = self
            .se
            .authenticate_peer(&ca, &options, &mut rand_core::OsRng, &mut cert);
        let serial = self.serial();
        match result {
            Ok(key) => {
                let public_key = hex::encode([&[0x04], key.xy()].concat());
                self.emit(
                    json!({"authenticated": true, "serial": serial, "ca": ca_subject,
                           "public_key": public_key}),
                    || format!("OK: chip {serial} is authentic (certificate issued by {ca_subject}, valid now, challenge signed with its key)"),
                )
            }
            Err(e) => {
                let reason = match e {
                    AuthError::Chain(c) => format!("{c:?}"),
                    AuthError::KeyMismatch => "KeyMismatch".into(),
                    AuthError::Driver(_) => "Driver".into(),
                    _ => "Other".into(),
                };
                if self.json {
                    let v = json!({"authenticated": false, "serial": serial, "ca": ca_subject,
                                   "reason": reason, "error": e.to_string()});
                    outln!("{}", serde_json::to_string_pretty(&v)?);
                }
                // Under --json the verdict above is the output; no second JSON document.
                Err(crate::out::Reported(format!(
                    "authentication of chip {serial} against {ca_subject} failed: {e}"
                ))
                .into())
            }
        }
    }

    fn random(&mut self, n: usize) -> Result<()> {
        const MAX: usize = 1 << 20;
        if n > MAX {
            bail!("at most {MAX} random bytes at a time");
        }
        let mut bytes = vec![0u8; n];
        self.se.generate_random(&mut bytes)?;
        let h = hex::encode(&bytes);
        self.emit(json!({"len": n, "random": h}), || h.clone())
    }

    fn sign(&mut self, digest: &str, slot: u8) -> Result<()> {
        let digest = hex_arg("--digest", digest)?;
        if digest.len() != 32 && digest.len() != 48 {
            bail!(
                "--digest must be 32 bytes (SHA-256) or 48 bytes (SHA-384), not {}",
                digest.len()
            );
        }
        let sig = self
            .se
            .generate_signature(slot, &digest)
            .with_context(|| format!("the chip did not sign with slot {slot}"))?;
        let der = view::signature_der(sig.rs())?;
        let (rs, der) = (hex::encode(sig.rs()), hex::encode(der));
        self.emit(
            json!({"slot": slot, "digest": hex::encode(&digest), "signature": rs,
                   "r": hex::encode(sig.r()), "s": hex::encode(sig.s()), "der": der}),
            || format!("{rs}\nDER {der}"),
        )
    }
}
