//! `sesame cloud …`: run the service, and the operator API from the command line.

use sesame_proto::admin::{CertificateRequest, FamilyRequest, RevokeRequest};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::{Args, Subcommand};
use serde_json::Value;

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
        /// The command-signing key (PKCS#8 PEM, the factory's command.key.pem; overrides the
        /// file): signs commands and the cloud's half of the encrypted-telemetry key exchange.
        #[arg(long, value_name = "FILE")]
        command_key: Option<PathBuf>,
        /// Firmware public key, PEM (the factory's firmware.pub.pem; overrides the file): a
        /// release is accepted only if its manifest verifies under it.
        #[arg(long, value_name = "FILE")]
        firmware_key: Option<PathBuf>,
        /// TLS certificate chain, PEM (overrides the file; goes with --tls-key).
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key, PEM (overrides the file; goes with --tls-cert).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        #[command(flatten)]
        mqtt: crate::mqtt_cmd::MqttArgs,
    },
    /// What the cloud publishes to anyone (no token): its identity, version, and the
    /// fingerprints of its command and firmware keys (SHA-256 of the SPKI DER), e.g. the
    /// command key's to pin with `fleet run --command-key-sha256`.
    Info {
        /// Cloud base URL.
        #[arg(
            long,
            env = "SESAME_CLOUD_URL",
            default_value = "http://127.0.0.1:8443"
        )]
        url: String,
        #[command(flatten)]
        trust: crate::client::Trust,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    /// List the enrolled families: name, state, fingerprint, the root they chain to.
    Families {
        #[command(flatten)]
        op: Operator,
    },
    /// Trusted roots: list them, or stop trusting one (its families' devices are refused).
    Roots {
        #[command(subcommand)]
        action: RootsAction,
    },
    /// List devices, or show one.
    Devices {
        #[command(flatten)]
        op: Operator,
        /// Serial to show.
        #[arg(conflicts_with = "expiring_within")]
        serial: Option<String>,
        /// Only devices of imported batches whose certificate ends within DAYS days, soonest
        /// first.
        #[arg(long, value_name = "DAYS")]
        expiring_within: Option<u32>,
    },
    /// Import a factory batch: verify its signed manifest against the factory's batch key and
    /// pre-register its devices (bound to their family before their first login).
    ImportBatch {
        #[command(flatten)]
        op: Operator,
        /// The batch's manifest.jsonl.
        #[arg(long, value_name = "FILE")]
        manifest: PathBuf,
        /// Its signature (default: the manifest's path with `.jws` appended).
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// The factory's batch-signing public key you trust (its batch.pub.pem).
        #[arg(long, value_name = "PUB.pem")]
        factory_key: PathBuf,
    },
    /// Revoke a device (serial), a certificate and its key (fingerprint or file), or a family:
    /// give exactly one. Naming something the cloud does not know is an error.
    Revoke {
        #[command(flatten)]
        op: Operator,
        #[command(flatten)]
        target: RevokeTarget,
        /// Revoke a serial the cloud has never seen (a device not yet in the field).
        #[arg(long, requires = "serial")]
        pre_revoke: bool,
    },
    /// Undo a revocation (same selectors as `revoke`).
    Unrevoke {
        #[command(flatten)]
        op: Operator,
        #[command(flatten)]
        target: RevokeTarget,
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
        /// Only events of this device serial.
        #[arg(long)]
        serial: Option<String>,
        /// Only events since this time: RFC 3339 (2026-01-31T12:00:00Z) or Unix seconds.
        #[arg(long, value_parser = crate::vocab::parse_since)]
        since: Option<i64>,
    },
    /// A device's accepted telemetry, decrypted (its newest 10,000 messages).
    Telemetry {
        #[command(flatten)]
        op: Operator,
        /// The device serial.
        #[arg(long)]
        serial: String,
    },
}

/// `cloud roots` actions.
#[derive(Subcommand, Debug)]
pub enum RootsAction {
    /// List the trusted roots.
    List {
        #[command(flatten)]
        op: Operator,
    },
    /// Stop trusting a root, by fingerprint (as `roots list` shows it).
    Untrust {
        #[command(flatten)]
        op: Operator,
        /// SHA-256 fingerprint of the root certificate (hex; colons allowed).
        fingerprint: String,
    },
}

/// What a revocation names: exactly one of these.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct RevokeTarget {
    /// The device with this serial (its certificate CN; any case), whatever certificate it shows.
    #[arg(long)]
    serial: Option<String>,
    /// A certificate and its key, by the SHA-256 fingerprint of a certificate the cloud has seen
    /// (as `openssl x509 -fingerprint -sha256` prints it, or as `cloud devices` shows it), its
    /// cert id or its key id.
    #[arg(long)]
    fingerprint: Option<String>,
    /// A certificate and its key, given as a file (PEM or DER), seen by the cloud or not.
    #[arg(long, value_name = "FILE")]
    certificate: Option<PathBuf>,
    /// A whole family, by name or fingerprint: every device it issued.
    #[arg(long)]
    family: Option<String>,
}

impl RevokeTarget {
    fn body(&self) -> Result<RevokeRequest> {
        let certificate = match &self.certificate {
            Some(p) => Some(B64.encode(crate::files::certificate(
                p,
                "a device certificate, e.g. from `sesame device cert`",
            )?)),
            None => None,
        };
        Ok(RevokeRequest {
            serial: self.serial.clone(),
            fingerprint: self.fingerprint.clone(),
            certificate,
            family: self.family.clone(),
            pre_revoke: false,
        })
    }
}

/// One line per thing a revocation matched.
fn print_matched(verb: &str, list: &Value) {
    for m in list.as_array().cloned().unwrap_or_default() {
        let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
        match s("kind").as_str() {
            "serial" => outln!("{verb} device {}", s("serial")),
            "certificate" => outln!("{verb} certificate {} of {}", s("cert_id"), s("serial")),
            "key" => outln!("{verb} key {} of {}", s("key_id"), s("serial")),
            "family" => outln!("{verb} family {} ({})", s("name"), s("fingerprint")),
            other => outln!("{verb} {other}"),
        }
    }
}

/// Where the operator API is and how to authenticate to it.
#[derive(Args, Debug)]
pub struct Operator {
    /// Cloud base URL.
    #[arg(
        long,
        env = "SESAME_CLOUD_URL",
        default_value = "http://127.0.0.1:8443"
    )]
    url: String,
    /// Operator token (default: $SESAME_CLOUD_ADMIN_TOKEN).
    #[arg(long, env = "SESAME_CLOUD_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    #[command(flatten)]
    trust: crate::client::Trust,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Operator {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let base = crate::client::base_url(&self.url, "--url")?;
        let http = self.trust.agent(std::time::Duration::from_secs(30))?;
        crate::client::call(&http, &base, Some(&self.token), method, path, body)
    }

    fn print(&self, v: &Value, human: impl FnOnce(&Value)) -> Result<()> {
        if self.json {
            let mut v = v.clone();
            crate::vocab::times_to_rfc3339(&mut v);
            outln!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            human(v);
        }
        Ok(())
    }
}

/// `sesame cloud info`.
fn info(url: &str, trust: &crate::client::Trust, json: bool) -> Result<()> {
    let base = crate::client::base_url(url, "--url")?;
    let http = trust.agent(std::time::Duration::from_secs(30))?;
    let v = crate::client::call(&http, &base, None, "GET", "/v1/info", None)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    outln!("identity:             {}", text(&v["identity"]));
    outln!("version:              {}", text(&v["version"]));
    match v["command_key"]["sha256"].as_str() {
        Some(h) => outln!("command key sha256:   {h}"),
        None => outln!("command key sha256:   none (the cloud runs without --command-key)"),
    }
    match v["firmware_key_sha256"].as_str() {
        Some(h) => outln!("firmware key sha256:  {h}"),
        None => outln!("firmware key sha256:  none (the cloud runs without --firmware-key)"),
    }
    Ok(())
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
        Some(serde_json::to_value(FamilyRequest {
            certificate: B64.encode(family_der),
            code: code.to_string(),
            signature: sig,
        })?),
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
            tls_cert,
            tls_key,
            mqtt,
        } => crate::cloud_serve::serve(crate::cloud_serve::ServeArgs {
            config,
            db,
            listen,
            command_key,
            firmware_key,
            tls: tls_cert.zip(tls_key),
            mqtt,
        }),
        CloudCommand::Info { url, trust, json } => info(&url, &trust, json),
        CloudCommand::TrustRoot { op, root } => {
            let v = op.call(
                "POST",
                "/v1/admin/roots",
                Some(serde_json::to_value(CertificateRequest {
                    certificate: B64.encode(crate::files::certificate(
                        &root,
                        "the root CA certificate, e.g. the factory's root.pem",
                    )?),
                })?),
            )?;
            op.print(&v, |v| {
                outln!(
                    "trusted root {} ({})",
                    v["subject"].as_str().unwrap_or("?"),
                    v["fingerprint"].as_str().unwrap_or("?")
                )
            })
        }
        CloudCommand::EnrollFamily { op, bundle, key } => {
            let der = crate::files::certificate(
                &bundle,
                "the family CA certificate or the batch's family-bundle.pem",
            )?;
            let key = crate::files::pem_text(
                &key,
                "the family CA's private key (PKCS#8 PEM, the factory's families/NAME/ca.key.pem)",
            )?;
            let v = enroll_family(&|m, p, b| op.call(m, p, b), &der, &key)?;
            op.print(&v, |v| {
                outln!("enrolled family {} ({})", v["name"], v["fingerprint"])
            })
        }
        CloudCommand::EnrollDevice { op, cert } => {
            let v = op.call(
                "POST",
                "/v1/admin/devices",
                Some(serde_json::to_value(CertificateRequest {
                    certificate: B64.encode(crate::files::certificate(
                        &cert,
                        "a device certificate, e.g. from `sesame device cert`",
                    )?),
                })?),
            )?;
            op.print(&v, |v| {
                outln!("enrolled device {} ({})", v["serial"], v["fingerprint"])
            })
        }
        CloudCommand::Roots {
            action: RootsAction::List { op },
        } => {
            let v = op.call("GET", "/v1/admin/roots", None)?;
            op.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["roots"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|r| {
                        let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                        vec![text("subject"), text("fingerprint")]
                    })
                    .collect();
                outln!(
                    "{}",
                    crate::vocab::table(&["SUBJECT", "FINGERPRINT"], &rows)
                );
            })
        }
        CloudCommand::Roots {
            action: RootsAction::Untrust { op, fingerprint },
        } => {
            let v = op.call(
                "DELETE",
                &format!("/v1/admin/roots/{}", fingerprint.replace(':', "")),
                None,
            )?;
            op.print(&v, |v| {
                outln!("untrusted root {}", v["untrusted"].as_str().unwrap_or("?"))
            })
        }
        CloudCommand::Families { op } => {
            let v = op.call("GET", "/v1/admin/families", None)?;
            op.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["families"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|f| {
                        let text = |k: &str| f[k].as_str().unwrap_or("-").to_string();
                        vec![
                            text("name"),
                            if f["revoked"] == true {
                                "revoked"
                            } else {
                                "active"
                            }
                            .into(),
                            text("fingerprint"),
                            text("root"),
                        ]
                    })
                    .collect();
                outln!(
                    "{}",
                    crate::vocab::table(&["NAME", "STATE", "FINGERPRINT", "ROOT"], &rows)
                );
            })
        }
        CloudCommand::Devices {
            op,
            expiring_within: Some(days),
            ..
        } => {
            let v = op.call("GET", &format!("/v1/admin/expiring?days={days}"), None)?;
            op.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["devices"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|d| {
                        let text = |k: &str| d[k].as_str().unwrap_or("-").to_string();
                        vec![
                            text("serial"),
                            text("family"),
                            crate::vocab::local_of(&d["not_after"]),
                            text("batch"),
                        ]
                    })
                    .collect();
                outln!(
                    "{}",
                    crate::vocab::table(&["SERIAL", "FAMILY", "NOT_AFTER", "BATCH"], &rows)
                );
                outln!("{} device(s) expire within {days} days", v["total"]);
            })
        }
        CloudCommand::ImportBatch {
            op,
            manifest,
            signature,
            factory_key,
        } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
            };
            let sig_path = signature.unwrap_or_else(|| {
                let mut p = manifest.clone().into_os_string();
                p.push(".jws");
                PathBuf::from(p)
            });
            let body = serde_json::to_value(sesame_proto::admin::BatchImportRequest {
                manifest: read(&manifest)?,
                signature: read(&sig_path)?,
                factory_key: read(&factory_key)?,
            })?;
            let base = crate::client::base_url(&op.url, "--url")?;
            let http = op.trust.agent(std::time::Duration::from_secs(600))?;
            let v = crate::client::call(
                &http,
                &base,
                Some(&op.token),
                "POST",
                "/v1/admin/batches",
                Some(body),
            )?;
            op.print(&v, |v| {
                if v["already_imported"] == true {
                    outln!(
                        "batch {} was already imported: nothing changed",
                        v["batch"].as_str().unwrap_or("-")
                    );
                } else {
                    outln!(
                        "batch {} imported: {} chips of family '{}', {} pre-registered ({} ms)",
                        v["batch"].as_str().unwrap_or("-"),
                        v["chips"],
                        v["family"].as_str().unwrap_or("-"),
                        v["registered"],
                        v["ms"]
                    );
                }
            })
        }
        CloudCommand::Devices { op, serial, .. } => {
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
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|d| {
                        let text = |k: &str| d[k].as_str().unwrap_or("-").to_string();
                        vec![
                            text("serial"),
                            text("family"),
                            if d["enrolled"] == true {
                                "device"
                            } else {
                                "family"
                            }
                            .into(),
                            if d["revoked"] == true {
                                "revoked"
                            } else {
                                "active"
                            }
                            .into(),
                            crate::vocab::local_of(&d["last_auth"]),
                            text("fingerprint"),
                        ]
                    })
                    .collect();
                outln!(
                    "{}",
                    crate::vocab::table(
                        &[
                            "SERIAL",
                            "FAMILY",
                            "ENROLLED_AS",
                            "STATE",
                            "LAST_LOGIN",
                            "FINGERPRINT"
                        ],
                        &rows
                    )
                );
            })
        }
        CloudCommand::Revoke {
            op,
            target,
            pre_revoke,
        } => {
            let mut body = target.body()?;
            body.pre_revoke = pre_revoke;
            let v = op.call(
                "POST",
                "/v1/admin/revoke",
                Some(serde_json::to_value(body)?),
            )?;
            op.print(&v, |v| print_matched("revoked", &v["revoked"]))
        }
        CloudCommand::Unrevoke { op, target } => {
            let v = op.call(
                "POST",
                "/v1/admin/unrevoke",
                Some(serde_json::to_value(target.body()?)?),
            )?;
            op.print(&v, |v| print_matched("unrevoked", &v["unrevoked"]))
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
            let base = crate::client::base_url(&op.url, "--url")?;
            let http = op.trust.agent(std::time::Duration::from_secs(300))?;
            let v = sesame_agent::data::publish_firmware(&http, &base, &op.token, &m, &img)
                .map_err(|e| anyhow!("{e}"))?;
            op.print(&serde_json::to_value(&v)?, |v| {
                outln!("released firmware version {}", v["version"])
            })
        }
        CloudCommand::Audit { op, serial, since } => {
            let mut q = format!("/v1/admin/audit?since={}", since.unwrap_or(0));
            if let Some(s) = serial {
                q.push_str(&format!("&serial={s}"));
            }
            let v = op.call("GET", &q, None)?;
            op.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|e| {
                        let text = |k: &str| e[k].as_str().unwrap_or("-").to_string();
                        vec![
                            crate::vocab::local_of(&e["at"]),
                            text("event"),
                            text("serial"),
                            text("reason"),
                        ]
                    })
                    .collect();
                outln!(
                    "{}",
                    crate::vocab::table(&["TIME", "EVENT", "SERIAL", "REASON"], &rows)
                );
            })
        }
        CloudCommand::Telemetry { op, serial } => {
            if serial.is_empty() || !serial.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(crate::out::usage("--serial: letters and digits only"));
            }
            let v = op.call(
                "GET",
                &format!("/v1/admin/devices/{serial}/telemetry"),
                None,
            )?;
            op.print(&v, |v| {
                let rows: Vec<Vec<String>> = v["messages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|m| {
                        vec![
                            m["seq"].to_string(),
                            crate::vocab::local_of(&m["time"]),
                            m["payload"].as_str().unwrap_or("-").to_string(),
                        ]
                    })
                    .collect();
                outln!(
                    "{}",
                    crate::vocab::table(&["SEQ", "DEVICE TIME", "PAYLOAD"], &rows)
                );
            })
        }
    }
}
