//! What `sesame fleet run` and `sesame bench auth` share: an embedded cloud on SQLite, a fleet
//! PKI (root + family CA), in-memory chips personalized like the factory's (each on its own
//! I²C bus with an agent), and the worker loop that logs devices in and sends telemetry.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use serde_json::Value;
use sesame_agent::Agent;
use sesame_chip::{Bus, BusDevice, ChipConfig, ChipOptions, CurveName, Fab, MemStorage};
use sesame_host::{NoDelay, Stsafe};
use sesame_pki::{Authority, DeviceKey, KeyAlg};
use sesame_proto::admin::CertificateRequest;

use crate::factory::{zones, ORG};

mod work;
pub use work::{percentile_ms, run_workers, Counters};

/// A simulated device: an agent driving its own chip on its own bus.
pub type Device = Agent<BusDevice, NoDelay>;

/// Name (prefix) of the threads the embedded cloud runs on; with SQLite's workers, their CPU
/// time is the cloud's.
pub const CLOUD_THREADS: [&str; 2] = ["sesame-cloud", "sqlx-sqlite-wor"];

/// Operator token of the embedded cloud.
pub const ADMIN: &str = "sesame-fleet-operator-token";

/// A cloud on SQLite in a temporary directory, serving loopback HTTP from its own runtime thread.
pub struct EmbeddedCloud {
    pub url: String,
    pub service: Arc<sesame_cloud::Service>,
    pub rt: tokio::runtime::Handle,
    /// The command key's public point (`04 || X || Y`), when the cloud has one.
    pub command_point: Option<Vec<u8>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<()>,
    _dir: tempfile::TempDir,
}

type Started = (String, Arc<sesame_cloud::Service>, tokio::runtime::Handle);

impl EmbeddedCloud {
    /// Starts the cloud; with `command_key`, it gets a fresh P-256 command key (so sessions carry
    /// a telemetry key). Rate limits are lifted: a benchmark logs the same device in many times.
    pub fn start(command_key: bool) -> Result<Self> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::pkcs8::{EncodePrivateKey, LineEnding};
        let dir = tempfile::tempdir()?;
        let (key_path, command_point) = if command_key {
            let sk = p256::SecretKey::random(&mut OsRng);
            let path = dir.path().join("command.key.pem");
            crate::chip_cmd::write_private(&path, sk.to_pkcs8_pem(LineEnding::LF)?.as_bytes())?;
            let point = sk.public_key().to_encoded_point(false).as_bytes().to_vec();
            (Some(path.display().to_string()), Some(point))
        } else {
            (None, None)
        };
        let cfg = sesame_cloud::Config {
            db: format!("sqlite://{}", dir.path().join("cloud.db").display()),
            admin_token: ADMIN.into(),
            identity: "fleet.sesame.cloud".into(),
            command_key: key_path,
            max_logins_per_device: u32::MAX,
            ..Default::default()
        };
        let (tx, rx) = std::sync::mpsc::channel::<Result<Started>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(CLOUD_THREADS[0].into())
            .spawn(move || {
                let run = || -> Result<()> {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .thread_name(CLOUD_THREADS[0])
                        .build()?;
                    let tx = &tx;
                    rt.block_on(async move {
                        let service = sesame_cloud::build(cfg).await.map_err(|e| anyhow!("{e}"))?;
                        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                        let url = format!("http://{}", l.local_addr()?);
                        let _ = tx.send(Ok((
                            url,
                            service.clone(),
                            tokio::runtime::Handle::current(),
                        )));
                        sesame_cloud::serve(service, l, async {
                            let _ = stop_rx.await;
                        })
                        .await?;
                        Ok(())
                    })
                };
                if let Err(e) = run() {
                    let _ = tx.send(Err(anyhow!("cloud stopped: {e:#}")));
                }
                let _ = done_tx.send(());
            })?;
        let (url, service, rt) = rx
            .recv()
            .map_err(|_| anyhow!("the embedded cloud did not start"))??;
        Ok(Self {
            url,
            service,
            rt,
            command_point,
            stop: Some(stop_tx),
            done,
            _dir: dir,
        })
    }
}

impl Drop for EmbeddedCloud {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        // Graceful shutdown waits for open connections; do not hang the command on one.
        let _ = self.done.recv_timeout(Duration::from_secs(5));
    }
}

/// An operator API call (plain HTTP or TLS trusted by the system store).
pub fn admin(
    url: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    crate::client::call(&ureq::agent(), url, Some(token), method, path, body)
}

/// The fleet's certificate authorities and firmware key, made fresh for a run.
pub struct Pki {
    pub root: Authority,
    pub family: Authority,
    /// The family's name (its CA's CN), unique per run.
    pub family_name: String,
    firmware_point: Vec<u8>,
}

impl Pki {
    pub fn new() -> Result<Self> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let root = Authority::new_root(ORG, "sesame fleet root", KeyAlg::P256)?;
        let family_name = format!("fleet-{:08x}", OsRng.next_u32());
        let family = root.new_family(ORG, &family_name, KeyAlg::P256)?;
        let fw = p256::SecretKey::random(&mut OsRng);
        let firmware_point = fw.public_key().to_encoded_point(false).as_bytes().to_vec();
        Ok(Self {
            root,
            family,
            family_name,
            firmware_point,
        })
    }

    /// Trusts the root and enrolls the family (proof of possession) on a cloud.
    pub fn enroll(&self, url: &str, token: &str) -> Result<()> {
        self.enroll_with(&ureq::agent(), url, token)
    }

    /// [`Pki::enroll`] through `http`.
    pub fn enroll_with(&self, http: &ureq::Agent, url: &str, token: &str) -> Result<()> {
        let call = |m: &str, p: &str, b: Option<Value>| {
            crate::client::call(http, url, Some(token), m, p, b)
        };
        call(
            "POST",
            "/v1/admin/roots",
            Some(serde_json::to_value(CertificateRequest {
                certificate: B64.encode(&self.root.der),
            })?),
        )?;
        crate::cloud_cmd::enroll_family(&call, &self.family.der, &self.family.key_pem())?;
        Ok(())
    }
}

/// One chip made in memory like the factory makes it (key generated inside, certificate from
/// the family CA in zone 0, command key in zone 1 if any, firmware key in zone 2), on its own
/// bus at 0x20, with an agent in front.
pub fn make_device(pki: &Pki, command_point: Option<&[u8]>, url: &str) -> Result<Device> {
    let mut serial = [0u8; 9];
    serial[0] = 0x02;
    OsRng.fill_bytes(&mut serial[1..]);
    let serial_hex = hex::encode_upper(serial);
    let mut config = ChipConfig::new(serial);
    config.zones = crate::factory::layout();
    let mut fab = Fab::new(config, Box::new(MemStorage::new()), ChipOptions::default())?;
    let public = fab.generate_key(0, CurveName::P256)?;
    let der = pki.family.issue_device(
        &serial_hex,
        &DeviceKey::from_sec1(&public.to_sec1())?,
        ORG,
        // The factory's default validity, as personalized devices get.
        Some(
            time::OffsetDateTime::now_utc()
                + time::Duration::days(sesame_factory::DEFAULT_DEVICE_VALIDITY_DAYS.into()),
        ),
    )?;
    fab.write_zone(zones::CERT, 0, &der)?;
    if let Some(k) = command_point {
        fab.write_zone(zones::COMMAND_KEY, 0, k)?;
    }
    fab.write_zone(zones::FIRMWARE_KEY, 0, &pki.firmware_point)?;
    let (mut mac, mut cipher) = ([0u8; 16], [0u8; 16]);
    OsRng.fill_bytes(&mut mac);
    OsRng.fill_bytes(&mut cipher);
    fab.set_host_keys(mac, cipher)?;
    let chip = fab.finish()?;
    let bus = Bus::new();
    bus.attach(chip).map_err(|_| anyhow!("bus address taken"))?;
    Ok(Agent::new(
        Stsafe::new(bus.device(), NoDelay, sesame_chip::DEFAULT_ADDRESS),
        url,
    )?)
}

/// Makes `n` devices on all cores; returns them with the seconds it took.
pub fn personalize(
    n: usize,
    pki: &Pki,
    command_point: Option<&[u8]>,
    url: &str,
    progress: bool,
) -> Result<(Vec<Device>, f64)> {
    personalize_over(n, pki, command_point, &[url.to_string()], progress)
}

/// [`personalize`], device `i` talking to `urls[i % urls.len()]` (round robin over the
/// instances of one cloud).
pub fn personalize_over(
    n: usize,
    pki: &Pki,
    command_point: Option<&[u8]>,
    urls: &[String],
    progress: bool,
) -> Result<(Vec<Device>, f64)> {
    if urls.is_empty() {
        return Err(anyhow!("no cloud URL"));
    }
    let started = Instant::now();
    let bar = bar(
        progress,
        n as u64,
        "{bar:40} {pos}/{len} chips personalized  {per_sec}  ETA {eta}",
    );
    let threads = std::thread::available_parallelism()
        .map_or(2, |p| p.get())
        .min(n.max(1));
    let made: Vec<Result<Vec<Device>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let bar = &bar;
                s.spawn(move || {
                    let mut v = Vec::with_capacity(n / threads + 1);
                    for i in (t..n).step_by(threads) {
                        v.push(make_device(pki, command_point, &urls[i % urls.len()])?);
                        bar.inc(1);
                    }
                    Ok(v)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a personalization thread panicked")))
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut all = Vec::with_capacity(n);
    for v in made {
        all.extend(v?);
    }
    Ok((all, started.elapsed().as_secs_f64()))
}

/// A progress bar on stderr, or a hidden one.
pub fn bar(show: bool, len: u64, template: &str) -> indicatif::ProgressBar {
    let b = if show {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    b.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// Peak resident memory of this process, MB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The uncompressed point of a P-256 public key in SPKI PEM.
pub fn point_from_public_pem(text: &str) -> Result<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let pk = p256::PublicKey::from_public_key_pem(text)
        .map_err(|e| anyhow!("not a P-256 public key: {e}"))?;
    Ok(pk.to_encoded_point(false).as_bytes().to_vec())
}

/// The command public key of an external cloud, from a PEM public key file.
pub fn command_point_from_pem(path: &Path) -> Result<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let text = crate::files::pem_text(
        path,
        "the cloud's command public key (PEM, the factory's command.pub.pem)",
    )?;
    let pk = p256::PublicKey::from_public_key_pem(&text).map_err(|e| {
        anyhow!(
            "{}: not a P-256 public key ({e}); expected the factory's command.pub.pem",
            path.display()
        )
    })?;
    Ok(pk.to_encoded_point(false).as_bytes().to_vec())
}
