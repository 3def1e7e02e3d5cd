//! `sesame demo`: the chip-level story, end to end, in a temporary directory. Three devices
//! (camera, water pump, heart monitor) each get a chip on one I2C bus; the host reads each
//! certificate, checks it, challenges the chip, checks the signature; then signed telemetry,
//! a usage counter, the host secure channel, and the refusals. Exits non-zero if any step
//! misbehaves.

use anyhow::{anyhow, bail, Result};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rand_core::{OsRng, RngCore};
use sesame_chip::{Bus, ChipOptions, CurveName};
use sesame_wire::{QueryTag, Reader, Request, Signature, Status, ZoneOption};
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, Encode};

use crate::chip_cmd::{host_keys_path, new_chip, open};
use crate::link::{HostKeys, Link};

struct Report {
    ok: usize,
    failed: Vec<String>,
}

impl Report {
    fn step(&mut self, what: &str, r: Result<String>) {
        match r {
            Ok(detail) => {
                self.ok += 1;
                println!("  ✔ {what}: {detail}");
            }
            Err(e) => {
                println!("  ✘ {what}: {e:#}");
                self.failed.push(what.to_string());
            }
        }
    }
}

/// Reads the certificate from zone 0 as STSELib does: size from offset 2, 253-byte chunks.
fn read_certificate(link: &Link) -> Result<Vec<u8>> {
    let read = |offset: u16, len: u16| {
        link.call(&Request::Read {
            option: ZoneOption::NONE,
            zone: 0,
            offset,
            len,
        })?
        .ok()
    };
    let head = read(2, 2)?;
    let size = u16::from_be_bytes([head[0], head[1]]) as usize + 4;
    let mut cert = Vec::with_capacity(size);
    while cert.len() < size {
        let n = (size - cert.len()).min(253);
        cert.extend(read(cert.len() as u16, n as u16)?);
    }
    Ok(cert)
}

/// Parses the certificate, checks its self-signature, and returns its public key.
fn check_certificate(der: &[u8]) -> Result<(String, p256::ecdsa::VerifyingKey)> {
    use p256::ecdsa::signature::Verifier;
    let cert = x509_cert::Certificate::from_der(der)?;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())?;
    let sig = p256::ecdsa::Signature::from_der(cert.signature.raw_bytes())?;
    key.verify(&cert.tbs_certificate.to_der()?, &sig)
        .map_err(|_| anyhow!("certificate signature does not verify"))?;
    Ok((cert.tbs_certificate.subject.to_string(), key))
}

fn sign(link: &Link, digest: &[u8]) -> Result<p256::ecdsa::Signature> {
    let data = link
        .call(&Request::GenerateSignature { slot: 0, digest })?
        .ok()?;
    let mut r = Reader::new(&data);
    let sig = Signature::read(&mut r)?;
    r.finish()?;
    Ok(p256::ecdsa::Signature::from_slice(
        &[sig.r, sig.s].concat(),
    )?)
}

fn authenticate(link: &Link) -> Result<(String, p256::ecdsa::VerifyingKey)> {
    let product = link.call(&Request::Query(QueryTag::PRODUCT_DATA))?.ok()?;
    let mask = sesame_wire::resp::product_data(&product)
        .next()
        .ok_or_else(|| anyhow!("empty product data"))??;
    if sesame_wire::resp::chip_model(mask.value) != Some(sesame_wire::resp::ChipModel::A110) {
        bail!("not an STSAFE-A110 (mask {})", hex::encode(mask.value));
    }
    let cert = read_certificate(link)?;
    let (subject, key) = check_certificate(&cert)?;
    let mut challenge = [0u8; 32];
    OsRng.fill_bytes(&mut challenge);
    let sig = sign(link, &challenge)?;
    key.verify_prehash(&challenge, &sig)
        .map_err(|_| anyhow!("challenge signature does not verify"))?;
    Ok((subject, key))
}

pub fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    println!("sesame demo (chip level) in {}", dir.path().display());
    // The chips' images are sealed under a key that lives only as long as the demo.
    let seal = sesame_chip::SealKey::generate();
    let bus = Bus::new();
    let mut report = Report {
        ok: 0,
        failed: vec![],
    };
    let devices = [
        ("security camera", 0x20u8),
        ("water pump", 0x21),
        ("heart monitor", 0x22),
    ];
    println!("\n1. factory bench: personalize one chip per device");
    let mut paths = Vec::new();
    for (name, addr) in devices {
        let path = dir.path().join(format!("{}.chip", name.replace(' ', "-")));
        let r = new_chip(&path, CurveName::P256, addr, &seal).and_then(|c| {
            let chip = open(&path, ChipOptions::default(), &seal)?;
            bus.attach(chip)
                .map_err(|_| anyhow!("address 0x{addr:02X} taken"))?;
            Ok(format!(
                "chip {} at I2C 0x{addr:02X}, key generated inside",
                c.serial
            ))
        });
        report.step(name, r);
        paths.push(path);
    }

    println!("\n2. authentication: certificate check, fresh challenge, chip signature");
    let mut keys = Vec::new();
    for (name, addr) in devices {
        let link = Link::new(bus.clone(), addr);
        let r = authenticate(&link).map(|(subject, key)| {
            keys.push((addr, key));
            format!("genuine ({subject})")
        });
        report.step(name, r);
    }

    println!("\n3. signed telemetry and a usage counter");
    for (addr, key) in &keys {
        let link = Link::new(bus.clone(), *addr);
        let r = (|| {
            let msg = format!("serial-at-{addr:02x}|seq=1|temp=21.5C");
            let digest = Sha256::digest(msg.as_bytes());
            let sig = sign(&link, &digest)?;
            key.verify_prehash(&digest, &sig)
                .map_err(|_| anyhow!("telemetry signature does not verify"))?;
            let data = link
                .call(&Request::Decrement {
                    option: ZoneOption::NONE,
                    zone: 4,
                    offset: 0,
                    amount: 1,
                    data: &[],
                })?
                .ok()?;
            let left = u32::from_be_bytes(data[..4].try_into()?);
            Ok(format!("\"{msg}\" signed and verified; uses left {left}"))
        })();
        report.step(&format!("device 0x{addr:02X}"), r);
    }

    println!("\n4. host secure channel (C-MAC / R-MAC with the chip's host keys)");
    let link = Link::new(bus.clone(), 0x20);
    let hk: HostKeys = serde_json::from_slice(&std::fs::read(host_keys_path(&paths[0]))?)?;
    let (mac, cipher) = hk.keys()?;
    let mut session = link.open_session(mac, cipher)?;
    let update = Request::Update {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        data: b"calibration=42",
    };
    report.step(
        "protected update",
        link.call_protected(&mut session, &update, (false, false), false)
            .and_then(|a| a.ok())
            .map(|_| "C-MAC accepted, R-MAC verified".into()),
    );

    println!("\n5. refusals");
    report.step(
        "tampered C-MAC",
        link.call_protected(&mut session, &update, (false, false), true)
            .and_then(|a| match a.status {
                Status::INVALID_CMAC => Ok("refused with 0x16, counter unchanged".into()),
                s => Err(anyhow!("expected 0x16, got {s:?}")),
            }),
    );
    report.step(
        "channel after tampering",
        link.call_protected(&mut session, &update, (false, false), false)
            .and_then(|a| a.ok())
            .map(|_| "next protected command accepted".into()),
    );
    report.step(
        "cloned device",
        (|| {
            // A counterfeit: the camera's genuine certificate copied onto another chip.
            let cert = read_certificate(&Link::new(bus.clone(), 0x20))?;
            let path = dir.path().join("clone.chip");
            let storage = Box::new(sesame_chip::Sealed::new(
                sesame_chip::FileStorage::new(&path),
                seal.clone(),
            ));
            let mut config = sesame_chip::ChipConfig::new([0x02, 0xC1, 0, 0, 0, 0, 0, 0, 1]);
            config.i2c_address = 0x23;
            let mut fab = sesame_chip::Fab::new(config, storage, ChipOptions::default())?;
            fab.generate_key(0, CurveName::P256)?;
            fab.write_zone(0, 0, &cert)?;
            bus.attach(fab.finish()?)
                .map_err(|_| anyhow!("address 0x23 taken"))?;
            match authenticate(&Link::new(bus.clone(), 0x23)) {
                Ok(_) => Err(anyhow!("a cloned certificate passed")),
                Err(e) => Ok(format!("copied certificate, foreign key: {e}")),
            }
        })(),
    );
    report.step(
        "certificate overwrite",
        link.call(&Request::Update {
            option: ZoneOption::NONE,
            zone: 0,
            offset: 0,
            data: &[0; 4],
        })
        .and_then(|a| match a.status {
            Status::ACCESS_CONDITION_NOT_SATISFIED => Ok("zone 0 is read-only (0x11)".into()),
            s => Err(anyhow!("expected 0x11, got {s:?}")),
        }),
    );
    report.step(
        "counter past zero",
        link.call(&Request::Decrement {
            option: ZoneOption::NONE,
            zone: 4,
            offset: 0,
            amount: u32::MAX,
            data: &[],
        })
        .and_then(|a| match a.status {
            Status::COUNTER_LIMIT_EXCEEDED => Ok("one-way counter refuses (0x13)".into()),
            s => Err(anyhow!("expected 0x13, got {s:?}")),
        }),
    );

    println!(
        "\nsummary: {} steps ok, {} failed",
        report.ok,
        report.failed.len()
    );
    if !report.failed.is_empty() {
        bail!("demo steps failed: {}", report.failed.join(", "));
    }
    Ok(())
}
