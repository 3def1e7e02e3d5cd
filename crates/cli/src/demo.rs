//! `sesame demo`: the whole story in a temporary directory on embedded SQLite, with no other
//! set-up. Factory → cloud → devices (a security camera, a water pump, a heart monitor), then the
//! refusals. Prints each step with its outcome, ends with a summary, and exits non-zero if any
//! step misbehaves.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::Value;
use sesame_agent::data::{CommandOutcome, FirmwareRefusal};
use sesame_agent::{Agent, AgentError};
use sesame_chip::{Bus, BusDevice, ChipOptions, CurveName, Fab, FileStorage, SealKey, Sealed};
use sesame_host::{NoDelay, Stsafe};
use sesame_proto::admin::CertificateRequest;
use sesame_proto::data::QueueRequest;

use crate::factory::{self, FactoryDir};

type Device = Agent<BusDevice, NoDelay>;

struct Report {
    ok: usize,
    failed: Vec<String>,
}

impl Report {
    fn step(&mut self, what: &str, r: Result<String>) {
        match r {
            Ok(detail) => {
                self.ok += 1;
                outln!("  ✔ {what}: {detail}");
            }
            Err(e) => {
                outln!("  ✘ {what}: {e:#}");
                self.failed.push(what.to_string());
            }
        }
    }
}

const ADMIN: &str = "sesame-demo-operator-token";

/// Starts the cloud on a loopback port in its own runtime thread; returns its URL.
fn start_cloud(dir: &Path, command_key: &Path, firmware_pub: &Path) -> Result<String> {
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.join("cloud.db").display()),
        admin_token: ADMIN.into(),
        identity: "demo.sesame.cloud".into(),
        command_key: Some(command_key.display().to_string()),
        firmware_key: Some(firmware_pub.display().to_string()),
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let run = || -> Result<()> {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let service = sesame_cloud::build(cfg).await.map_err(|e| anyhow!("{e}"))?;
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let _ = tx.send(Ok(format!("http://{}", l.local_addr()?)));
                sesame_cloud::serve(service, l, std::future::pending()).await?;
                Ok(())
            })
        };
        if let Err(e) = run() {
            eprintln!("cloud stopped: {e:#}");
        }
    });
    rx.recv().map_err(|_| anyhow!("the cloud did not start"))?
}

fn admin(url: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let req = ureq::request(method, &format!("{url}{path}"))
        .set("authorization", &format!("Bearer {ADMIN}"));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match r {
        Ok(r) => Ok(r.into_json()?),
        Err(ureq::Error::Status(s, r)) => bail!("{s}: {}", r.into_string().unwrap_or_default()),
        Err(e) => bail!("{e}"),
    }
}

fn open_device(image: &Path, key: &SealKey, url: &str) -> Result<Device> {
    let chip = sesame_chip::Chip::open(
        Box::new(Sealed::new(FileStorage::new(image), key.clone())),
        ChipOptions::default(),
    )?;
    let bus = Bus::new();
    bus.attach(chip).map_err(|_| anyhow!("bus address taken"))?;
    Ok(Agent::new(Stsafe::new(bus.device(), NoDelay, 0x20), url)?)
}

fn expect_refusal<T>(r: Result<T, AgentError>, status: u16, code: &str) -> Result<String> {
    match r {
        Err(AgentError::Refused {
            status: s,
            code: c,
            message,
        }) if s == status && c == code => Ok(format!("refused ({s} {c}: {message})")),
        Err(e) => bail!("refused, but not as expected: {e}"),
        Ok(_) => bail!("accepted — it must not be"),
    }
}

pub fn run() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    outln!("sesame demo in {}", dir.display());
    let mut report = Report {
        ok: 0,
        failed: vec![],
    };
    let fdir = dir.join("factory");
    let batch = dir.join("batch");

    outln!("\n1. factory: root CA, family CA, command and firmware keys; personalize three chips");
    report.step(
        "factory",
        factory::init(&fdir, "home-devices", sesame_pki::KeyAlg::P256, None)
            .and_then(|_| factory::personalize(&fdir, "home-devices", 3, &batch, "p256", None, false))
            .map(|r| format!("3 chips, keys generated inside each, certificates by family 'home-devices' ({:.2} s)", r.seconds)),
    );
    let f = FactoryDir(fdir.clone());
    let chip_key = SealKey::from_file(&f.chip_key()).map_err(|e| anyhow!("{e}"))?;
    let manifest = std::fs::read_to_string(batch.join("manifest.jsonl")).unwrap_or_default();
    let serials: Vec<String> = manifest
        .lines()
        .filter_map(|l| sesame_pki::ManifestLine::parse(l).ok())
        .map(|l| l.serial)
        .collect();
    if serials.len() != 3 {
        bail!("the factory did not produce three chips");
    }

    outln!("\n2. cloud: start on embedded SQLite, trust the root, enroll the family (proof of possession)");
    let url = start_cloud(dir, &f.command_key(), &f.firmware_pub())?;
    let family_der =
        sesame_pki::cert_from_pem(&std::fs::read_to_string(batch.join("family-bundle.pem"))?)?;
    let family_key = std::fs::read_to_string(f.family("home-devices").join("ca.key.pem"))?;
    report.step(
        "enrollment",
        (|| {
            let root = sesame_pki::cert_from_pem(&std::fs::read_to_string(f.root())?)?;
            admin(
                &url,
                "POST",
                "/v1/admin/roots",
                Some(serde_json::to_value(CertificateRequest {
                    certificate: B64.encode(root),
                })?),
            )?;
            let v = crate::cloud_cmd::enroll_family(
                &|m, p, b| admin(&url, m, p, b),
                &family_der,
                &family_key,
            )?;
            Ok(format!("cloud at {url}; family {} enrolled", v["name"]))
        })(),
    );

    outln!("\n3. devices authenticate (certificate, challenge, chip signature) and send encrypted, signed telemetry");
    let names = ["security camera", "water pump", "heart monitor"];
    let readings = [
        "motion=none frames=1800",
        "flow=12.5l/min pressure=2.1bar",
        "bpm=72 spo2=98",
    ];
    let mut devices: Vec<Device> = Vec::new();
    for (i, serial) in serials.iter().enumerate() {
        let r = (|| -> Result<String> {
            let mut d = open_device(
                &batch.join("chips").join(format!("{serial}.chip")),
                &chip_key,
                &url,
            )?;
            d.login()?;
            let seq = d.send_telemetry(readings[i].as_bytes())?;
            devices.push(d);
            Ok(format!("{serial} authenticated; telemetry #{seq} accepted"))
        })();
        report.step(names[i], r);
    }
    if devices.len() != 3 {
        bail!("devices could not log in; stopping");
    }
    report.step(
        "cloud telemetry",
        admin(
            &url,
            "GET",
            &format!("/v1/admin/devices/{}/telemetry", serials[2]),
            None,
        )
        .map(|v| format!("decrypted in the cloud: {}", v["messages"][0]["payload"])),
    );

    outln!("\n4. a signed command to the actuator (water pump), verified by its chip");
    let pump = &mut devices[1];
    report.step(
        "command",
        (|| {
            admin(
                &url,
                "POST",
                &format!("/v1/admin/devices/{}/commands", serials[1]),
                Some(serde_json::to_value(QueueRequest {
                    body: "valve=open".into(),
                    ttl: None,
                })?),
            )?;
            let done = pump.poll_commands(&mut |body| format!("{body} done"))?;
            match done.first().map(|d| &d.1) {
                Some(CommandOutcome::Executed(s)) => {
                    Ok(format!("executed '{s}', chip-signed receipt recorded"))
                }
                other => bail!("not executed: {other:?}"),
            }
        })(),
    );
    report.step(
        "usage counter",
        pump.use_consumable()
            .map(|left| format!("filter use recorded, {left} uses left (one-way counter)"))
            .map_err(Into::into),
    );

    outln!("\n5. firmware update: signed release, verified by the chip, installed, verified again at boot");
    let fw_dir = dir.join("pump-firmware");
    let fw_key = std::fs::read_to_string(f.firmware_key())?;
    let (v1, v2) = (
        b"pump firmware 1.0".to_vec(),
        b"pump firmware 2.0 with leak detection".to_vec(),
    );
    report.step(
        "update",
        (|| {
            for (v, img) in [(1, &v1), (2, &v2)] {
                let m = crate::firmware::sign_release(&fw_key, v, img)?;
                sesame_agent::data::publish_firmware(&ureq::Agent::new(), &url, ADMIN, &m, img)
                    .map_err(|e| anyhow!("{e}"))?;
            }
            match pump.update_firmware(&fw_dir)? {
                Some(Ok(v)) => Ok(format!(
                    "version {v} installed; anti-rollback counter raised"
                )),
                other => bail!("update failed: {other:?}"),
            }
        })(),
    );
    report.step(
        "boot",
        pump.boot(&fw_dir).map_err(Into::into).and_then(|r| {
            r.map(|v| format!("version {v} verified by the chip"))
                .map_err(|e| anyhow!(e.code()))
        }),
    );

    outln!("\n6. refusals");
    report.step(
        "cloned device",
        (|| {
            // The camera's genuine certificate, copied onto another chip with its own key.
            let cert = devices[0].certificate().to_vec();
            let clone = dir.join("clone.chip");
            let storage = Box::new(Sealed::new(FileStorage::new(&clone), chip_key.clone()));
            let mut fab = Fab::new(
                sesame_chip::ChipConfig::new([0x02, 0xC1, 0, 0, 0, 0, 0, 0, 1]),
                storage,
                ChipOptions::default(),
            )?;
            fab.generate_key(0, CurveName::P256)?;
            fab.write_zone(0, 0, &cert)?;
            fab.finish()?;
            let mut d = open_device(&clone, &chip_key, &url)?;
            expect_refusal(d.login(), 401, "bad_signature")
        })(),
    );
    report.step(
        "tampered command",
        (|| {
            admin(
                &url,
                "POST",
                &format!("/v1/admin/devices/{}/commands", serials[1]),
                Some(serde_json::to_value(QueueRequest {
                    body: "valve=close".into(),
                    ttl: None,
                })?),
            )?;
            let log = admin(
                &url,
                "GET",
                &format!("/v1/admin/devices/{}/commands", serials[1]),
                None,
            )?;
            let mut c: sesame_agent::data::Command =
                serde_json::from_value(log["commands"][1].clone())?;
            c.body = "valve=open;pressure=max".into();
            match devices[1].handle_command(&c, &mut |_| "should not run".into())? {
                CommandOutcome::Refused(why) => Ok(format!("not executed: {why}")),
                CommandOutcome::Executed(_) => bail!("a tampered command ran"),
            }
        })(),
    );
    report.step(
        "replayed message",
        (|| {
            let body = devices[2].telemetry_body(b"bpm=73")?;
            devices[2].post_telemetry(&body)?;
            expect_refusal(devices[2].post_telemetry(&body), 409, "replay")
        })(),
    );
    report.step(
        "downgraded firmware",
        (|| {
            let m = crate::firmware::sign_release(&fw_key, 1, &v1)?;
            match devices[1].install_firmware(&fw_dir, &m, &v1)? {
                Err(FirmwareRefusal::Downgrade) => {
                    Ok("properly signed version 1 refused: below the anti-rollback counter".into())
                }
                other => bail!("expected a downgrade refusal, got {other:?}"),
            }
        })(),
    );
    report.step(
        "tampered image",
        (|| {
            std::fs::write(
                fw_dir.join("installed.bin"),
                b"pump firmware 2.0 with leak detectioN",
            )?;
            match devices[1].boot(&fw_dir)? {
                Err(e) => Ok(format!("does not boot: {}", e.code())),
                Ok(v) => bail!("a tampered image booted as version {v}"),
            }
        })(),
    );

    outln!(
        "\nsummary: {} steps ok, {} failed",
        report.ok,
        report.failed.len()
    );
    if !report.failed.is_empty() {
        bail!("demo steps failed: {}", report.failed.join(", "));
    }
    Ok(())
}
