//! `sesame cloud …`: run the service, and the operator API from the command line.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

/// `sesame cloud` subcommands.
#[derive(Subcommand, Debug)]
pub enum CloudCommand {
    /// Run the service (SQLite by default, PostgreSQL by URL).
    Serve {
        /// TOML configuration file (`db`, `listen`, `admin_token`, `identity`, `tls_cert`, …).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Database URL (overrides the file): sqlite://FILE or postgres://…
        #[arg(long)]
        db: Option<String>,
        /// Listen address (overrides the file).
        #[arg(long)]
        listen: Option<String>,
        /// Command-signing key, PKCS#8 PEM (`fab/command.key.pem`): signs commands and the
        /// telemetry key exchange. Without it: no commands, no encrypted telemetry.
        #[arg(long)]
        command_key: Option<PathBuf>,
        /// Firmware public key, PEM (`fab/firmware.pub.pem`): releases must verify under it.
        #[arg(long)]
        firmware_key: Option<PathBuf>,
    },
    /// Trust a root CA.
    TrustRoot {
        #[command(flatten)]
        op: Operator,
        /// Root certificate (PEM or DER).
        root: PathBuf,
    },
    /// Enroll a family CA, proving possession of its key with a cloud-issued code.
    EnrollFamily {
        #[command(flatten)]
        op: Operator,
        /// Family CA certificate or the factory's family bundle (first certificate is the family).
        #[arg(long)]
        bundle: PathBuf,
        /// The family CA private key (PKCS#8 PEM): signs the verification code, never sent.
        #[arg(long)]
        key: PathBuf,
    },
    /// Enroll one device certificate.
    EnrollDevice {
        #[command(flatten)]
        op: Operator,
        /// Device certificate (PEM or DER).
        cert: PathBuf,
    },
    /// List devices, or show one.
    Devices {
        #[command(flatten)]
        op: Operator,
        /// Serial to show.
        serial: Option<String>,
    },
    /// Revoke a device (serial or fingerprint) or a family.
    Revoke {
        #[command(flatten)]
        op: Operator,
        #[arg(long)]
        serial: Option<String>,
        #[arg(long)]
        fingerprint: Option<String>,
        #[arg(long)]
        family: Option<String>,
    },
    /// Publish a signed firmware release (`sesame firmware sign`) for devices to fetch.
    PublishFirmware {
        #[command(flatten)]
        op: Operator,
        /// The manifest JSON.
        #[arg(long)]
        manifest: PathBuf,
        /// The image.
        image: PathBuf,
    },
    /// The audit log, by device and time.
    Audit {
        #[command(flatten)]
        op: Operator,
        #[arg(long)]
        serial: Option<String>,
        /// Unix seconds.
        #[arg(long)]
        since: Option<i64>,
    },
}

/// Where the operator API is and how to authenticate to it.
#[derive(Args, Debug)]
pub struct Operator {
    /// Cloud base URL.
    #[arg(long, default_value = "http://127.0.0.1:8443")]
    url: String,
    /// Operator token (default: $SESAME_CLOUD_ADMIN_TOKEN).
    #[arg(long, env = "SESAME_CLOUD_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Operator {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let req = ureq::request(method, &format!("{}{path}", self.url.trim_end_matches('/')))
            .set("authorization", &format!("Bearer {}", self.token));
        let r = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match r {
            Ok(rsp) => Ok(rsp.into_json()?),
            Err(ureq::Error::Status(code, rsp)) => {
                let v: Value = rsp.into_json().unwrap_or_default();
                bail!(
                    "cloud refused ({code} {}): {}",
                    v["error"].as_str().unwrap_or("?"),
                    v["message"].as_str().unwrap_or("")
                )
            }
            Err(e) => Err(anyhow!("cannot reach {}: {e}", self.url)),
        }
    }

    fn print(&self, v: &Value, human: impl FnOnce(&Value)) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v)?);
        } else {
            human(v);
        }
        Ok(())
    }
}

fn cert_file(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match std::str::from_utf8(&bytes) {
        Ok(text) if text.contains("-----BEGIN") => Ok(sesame_pki::cert_from_pem(text)?),
        _ => Ok(bytes),
    }
}

fn serve(
    config: Option<PathBuf>,
    db: Option<String>,
    listen: Option<String>,
    command_key: Option<PathBuf>,
    firmware_key: Option<PathBuf>,
) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .json()
        .try_init();
    let mut cfg = sesame_cloud::Config::load(config.as_deref()).map_err(|e| anyhow!(e))?;
    if let Some(d) = db {
        cfg.db = d;
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(k) = command_key {
        cfg.command_key = Some(k.display().to_string());
    }
    if let Some(k) = firmware_key {
        cfg.firmware_key = Some(k.display().to_string());
    }
    // A TLS key that does not match its certificate is an error before anything listens.
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(
            sesame_cloud::tls_config(Path::new(cert), Path::new(key)).map_err(|e| anyhow!(e))?,
        ),
        _ => None,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listen = cfg.listen.clone();
        let summary = format!(
            "database {}, command key {}, firmware key {}",
            redact_db(&cfg.db),
            if cfg.command_key.is_some() {
                "loaded"
            } else {
                "none (no commands, no encrypted telemetry)"
            },
            if cfg.firmware_key.is_some() {
                "loaded"
            } else {
                "none (no firmware releases)"
            },
        );
        let service = sesame_cloud::build(cfg).await.map_err(|e| anyhow!("{e}"))?;
        let l = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!(
            "sesame cloud on {scheme}://{} (TLS {}), {summary}",
            l.local_addr()?,
            if tls.is_some() { "on" } else { "off" }
        );
        match tls {
            Some(tls) => sesame_cloud::serve_tls(service, l, tls, stop_signal()).await?,
            None => sesame_cloud::serve(service, l, stop_signal()).await?,
        }
        eprintln!("sesame cloud stopped (drained)");
        Ok(())
    })
}

/// SIGINT or SIGTERM: stop accepting, finish what is in flight.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// A database URL without its password.
fn redact_db(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// An operator API call: method, path, body.
pub type OperatorCall<'a> = dyn Fn(&str, &str, Option<Value>) -> Result<Value> + 'a;

/// Enrolls a family: get a code, sign it with the family key (P-256 or P-384), post.
pub fn enroll_family(
    op_call: &OperatorCall<'_>,
    family_der: &[u8],
    key_pem: &str,
) -> Result<Value> {
    use p256::pkcs8::DecodePrivateKey;
    let code = op_call("POST", "/v1/admin/families/code", None)?["code"]
        .as_str()
        .ok_or_else(|| anyhow!("no code in answer"))?
        .to_string();
    let sig = if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem) {
        let s: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&k, code.as_bytes());
        s.to_der().as_bytes().to_vec()
    } else {
        let k = p384::ecdsa::SigningKey::from_pkcs8_pem(key_pem)
            .map_err(|e| anyhow!("family key: {e}"))?;
        let s: p384::ecdsa::Signature = p384::ecdsa::signature::Signer::sign(&k, code.as_bytes());
        s.to_der().as_bytes().to_vec()
    };
    op_call(
        "POST",
        "/v1/admin/families",
        Some(
            json!({ "certificate": B64.encode(family_der), "code": code, "signature": B64.encode(sig) }),
        ),
    )
}

/// Runs a `sesame cloud` subcommand.
pub fn run(cmd: CloudCommand) -> Result<()> {
    match cmd {
        CloudCommand::Serve {
            config,
            db,
            listen,
            command_key,
            firmware_key,
        } => serve(config, db, listen, command_key, firmware_key),
        CloudCommand::TrustRoot { op, root } => {
            let v = op.call(
                "POST",
                "/v1/admin/roots",
                Some(json!({ "certificate": B64.encode(cert_file(&root)?) })),
            )?;
            op.print(&v, |v| {
                println!("trusted root {} ({})", v["subject"], v["fingerprint"])
            })
        }
        CloudCommand::EnrollFamily { op, bundle, key } => {
            let der = cert_file(&bundle)?;
            let key = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            let v = enroll_family(&|m, p, b| op.call(m, p, b), &der, &key)?;
            op.print(&v, |v| {
                println!("enrolled family {} ({})", v["name"], v["fingerprint"])
            })
        }
        CloudCommand::EnrollDevice { op, cert } => {
            let v = op.call(
                "POST",
                "/v1/admin/devices",
                Some(json!({ "certificate": B64.encode(cert_file(&cert)?) })),
            )?;
            op.print(&v, |v| {
                println!("enrolled device {} ({})", v["serial"], v["fingerprint"])
            })
        }
        CloudCommand::Devices { op, serial } => {
            let v = match &serial {
                Some(s) => op.call("GET", &format!("/v1/admin/devices/{s}"), None)?,
                None => op.call("GET", "/v1/admin/devices", None)?,
            };
            op.print(&v, |v| {
                let list = v["devices"]
                    .as_array()
                    .or_else(|| v["certificates"].as_array())
                    .cloned()
                    .unwrap_or_default();
                for d in list {
                    println!(
                        "{}  {}  {}{}",
                        d["serial"].as_str().unwrap_or(""),
                        if d["enrolled"] == true {
                            "enrolled"
                        } else {
                            "family"
                        },
                        if d["revoked"] == true { "REVOKED " } else { "" },
                        d["fingerprint"].as_str().unwrap_or("")
                    );
                }
            })
        }
        CloudCommand::Revoke {
            op,
            serial,
            fingerprint,
            family,
        } => {
            let v = op.call(
                "POST",
                "/v1/admin/revoke",
                Some(json!({ "serial": serial, "fingerprint": fingerprint, "family": family })),
            )?;
            op.print(&v, |v| println!("revoked {}", v["revoked"]))
        }
        CloudCommand::PublishFirmware {
            op,
            manifest,
            image,
        } => {
            let m: sesame_agent::data::Manifest = serde_json::from_slice(
                &std::fs::read(&manifest)
                    .with_context(|| format!("cannot read {}", manifest.display()))?,
            )
            .with_context(|| format!("{} is not a manifest", manifest.display()))?;
            let img = std::fs::read(&image)
                .with_context(|| format!("cannot read {}", image.display()))?;
            let v = sesame_agent::data::publish_firmware(
                &ureq::Agent::new(),
                &op.url,
                &op.token,
                &m,
                &img,
            )
            .map_err(|e| anyhow!("{e}"))?;
            op.print(&v, |v| {
                println!("released firmware version {}", v["version"])
            })
        }
        CloudCommand::Audit { op, serial, since } => {
            let mut q = format!("/v1/admin/audit?since={}", since.unwrap_or(0));
            if let Some(s) = serial {
                q.push_str(&format!("&serial={s}"));
            }
            let v = op.call("GET", &q, None)?;
            op.print(&v, |v| {
                for e in v["events"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "{}  {:<22} {}  {}",
                        e["at"],
                        e["event"].as_str().unwrap_or(""),
                        e["serial"].as_str().unwrap_or(""),
                        e["reason"].as_str().unwrap_or("")
                    );
                }
            })
        }
    }
}
