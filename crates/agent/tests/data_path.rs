//! The data path end to end against a real cloud: telemetry (encrypted, signed, replay-proof),
//! commands verified by the chip, usage counters, firmware with anti-rollback — with the
//! attacks of each: wrong signature, wrong key, replay, reordering, expired command, command
//! for another device, downgrade, tampered image, counter exhausted.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use sesame_agent::data::{CommandOutcome, FirmwareRefusal, Manifest};
use sesame_agent::{layout, Agent, AgentError, StdDelay};
use sesame_chip::{Bus, BusDevice, ChipConfig, ChipOptions, CurveName, Fab, MemStorage, ZoneSpec};
use sesame_host::Stsafe;
use sesame_pki::{Authority, DeviceKey, KeyAlg};
use sesame_proto::messages;
use sha2::Digest;

const ADMIN: &str = "data-path-admin-token";

struct World {
    url: String,
    family: Authority,
    command: p256::ecdsa::SigningKey,
    firmware: p256::ecdsa::SigningKey,
    _dir: tempfile::TempDir,
}

fn admin(
    w: &World,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<serde_json::Value, (u16, serde_json::Value)> {
    let req = ureq::request(method, &format!("{}{path}", w.url))
        .set("authorization", &format!("Bearer {ADMIN}"));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match r {
        Ok(r) => Ok(r.into_json().unwrap()),
        Err(ureq::Error::Status(s, r)) => Err((s, r.into_json().unwrap_or_default())),
        Err(e) => panic!("{e}"),
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let command = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let key_path = dir.path().join("command.key.pem");
    std::fs::write(
        &key_path,
        command.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let firmware = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let fw_path = dir.path().join("firmware.pub.pem");
    std::fs::write(
        &fw_path,
        p256::pkcs8::EncodePublicKey::to_public_key_pem(firmware.verifying_key(), LineEnding::LF)
            .unwrap(),
    )
    .unwrap();
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.path().join("c.db").display()),
        admin_token: ADMIN.into(),
        command_key: Some(key_path.display().to_string()),
        firmware_key: Some(fw_path.display().to_string()),
        ..Default::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let service = sesame_cloud::build(cfg).await.unwrap();
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(format!("http://{}", l.local_addr().unwrap()))
                    .unwrap();
                sesame_cloud::serve(service, l, std::future::pending())
                    .await
                    .unwrap();
            });
    });
    let root = Authority::new_root("t", "root", KeyAlg::P256).unwrap();
    let family = root.new_family("t", "pumps", KeyAlg::P256).unwrap();
    let w = World {
        url: rx.recv().unwrap(),
        family,
        command,
        firmware,
        _dir: dir,
    };
    admin(
        &w,
        "POST",
        "/v1/admin/roots",
        Some(serde_json::json!({ "certificate": B64.encode(&root.der) })),
    )
    .unwrap();
    let code = admin(&w, "POST", "/v1/admin/families/code", None).unwrap()["code"]
        .as_str()
        .unwrap()
        .to_string();
    use p256::ecdsa::signature::Signer;
    let k = p256::ecdsa::SigningKey::from_pkcs8_pem(&w.family.key_pem()).unwrap();
    let s: p256::ecdsa::Signature = k.sign(code.as_bytes());
    admin(&w, "POST", "/v1/admin/families", Some(serde_json::json!({ "certificate": B64.encode(&w.family.der), "code": code, "signature": B64.encode(s.to_der().as_bytes()) }))).unwrap();
    w
}

use p256::pkcs8::DecodePrivateKey;

fn point(k: &p256::ecdsa::SigningKey) -> Vec<u8> {
    k.verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

/// A device as the factory makes it, logged in.
fn device(w: &World, serial: &str, uses: u32) -> Agent<BusDevice, StdDelay> {
    let mut config = ChipConfig::new([2, 9, 9, 9, 9, 9, 9, 9, serial.len() as u8]);
    // The layout the factory personalizes (sizes and access conditions), from its one table.
    config.zones = layout::ZONES
        .iter()
        .map(|z| ZoneSpec {
            size: z.size,
            counter: if z.index == layout::USAGE {
                Some(uses)
            } else {
                z.counter
            },
            read_ac: z.read_ac,
            update_ac: z.update_ac,
            read_right: z.read_right,
            update_right: z.update_right,
        })
        .collect();
    let mut fab = Fab::new(config, Box::new(MemStorage::new()), ChipOptions::default()).unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap();
    let cert = w
        .family
        .issue_device(
            serial,
            &DeviceKey::from_sec1(&pk.to_sec1()).unwrap(),
            "t",
            None,
        )
        .unwrap();
    fab.write_zone(layout::CERT, 0, &cert).unwrap();
    fab.write_zone(layout::COMMAND_KEY, 0, &point(&w.command))
        .unwrap();
    fab.write_zone(layout::FIRMWARE_KEY, 0, &point(&w.firmware))
        .unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    let mut a = Agent::new(Stsafe::new(bus.device(), StdDelay, 0x20), &w.url).unwrap();
    a.login().unwrap();
    a
}

fn refused<T: std::fmt::Debug>(r: Result<T, AgentError>, status: u16, code: &str) {
    match r {
        Err(AgentError::Refused {
            status: s, code: c, ..
        }) => assert_eq!((s, c.as_str()), (status, code)),
        other => panic!("expected {status} {code}, got {other:?}"),
    }
}

#[test]
fn telemetry_is_encrypted_signed_and_replay_proof() {
    let w = world();
    let mut a = device(&w, "02AA0001", 10);
    let seq = a.send_telemetry(b"temp=21.5").unwrap();
    let first = a.telemetry_body(b"temp=21.6").unwrap();
    let second = a.telemetry_body(b"temp=21.7").unwrap();
    a.post_telemetry(&second).unwrap();
    // Reordered (an older sequence after a newer one) and replayed messages are refused.
    refused(a.post_telemetry(&first), 409, "replay");
    refused(a.post_telemetry(&second), 409, "replay");
    // Tampered ciphertext: the chip's signature no longer matches.
    let mut bad = a.telemetry_body(b"temp=99").unwrap();
    bad.ciphertext[0] ^= 1;
    refused(a.post_telemetry(&bad), 401, "bad_signature");
    // Another device's message under this session: signed by the wrong key.
    let mut other = device(&w, "02AA0002", 10);
    let foreign = other.telemetry_body(b"spoof").unwrap();
    refused(a.post_telemetry(&foreign), 401, "bad_signature");
    let msgs = admin(&w, "GET", "/v1/devices/02AA0001/telemetry", None).unwrap();
    assert_eq!(
        msgs,
        admin(&w, "GET", "/v1/admin/devices/02AA0001/telemetry", None).unwrap()
    );
    let payloads: Vec<&str> = msgs["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect();
    assert_eq!(payloads, ["temp=21.5", "temp=21.7"]);
    assert_eq!(msgs["messages"][0]["seq"].as_u64().unwrap(), seq);
    // Revoked: refused on the next message.
    admin(
        &w,
        "POST",
        "/v1/admin/revoke",
        Some(serde_json::json!({ "serial": "02AA0001" })),
    )
    .unwrap();
    refused(a.send_telemetry(b"after revocation"), 401, "revoked");
}

#[test]
fn commands_run_only_when_the_chip_verifies_them() {
    let w = world();
    let mut a = device(&w, "02BB0001", 10);
    admin(
        &w,
        "POST",
        "/v1/admin/devices/02BB0001/commands",
        Some(serde_json::json!({ "body": "valve=open" })),
    )
    .unwrap();
    let mut ran = Vec::new();
    let done = a
        .poll_commands(&mut |b| {
            ran.push(b.to_string());
            "ok".into()
        })
        .unwrap();
    assert_eq!(done[0].1, CommandOutcome::Executed("ok".into()));
    assert_eq!(ran, ["valve=open"]);
    let log = admin(&w, "GET", "/v1/admin/devices/02BB0001/commands", None).unwrap();
    assert_eq!(log["commands"][0]["receipt"], "executed:ok");
    // Replayed, tampered, for another device, expired: none runs.
    let c =
        serde_json::from_value::<sesame_agent::data::Command>(log["commands"][0].clone()).unwrap();
    let mut never = |_: &str| -> String { panic!("must not run") };
    assert_eq!(
        a.handle_command(&c, &mut never).unwrap(),
        CommandOutcome::Refused("not newer than the last executed")
    );
    let mut tampered = c.clone();
    tampered.seq = 2;
    tampered.body = "valve=close".into();
    assert_eq!(
        a.handle_command(&tampered, &mut never).unwrap(),
        CommandOutcome::Refused("signature rejected by the secure element")
    );
    let mut elsewhere = c.clone();
    elsewhere.serial = "02BB0002".into();
    assert_eq!(
        a.handle_command(&elsewhere, &mut never).unwrap(),
        CommandOutcome::Refused("addressed to another device")
    );
    admin(
        &w,
        "POST",
        "/v1/admin/devices/02BB0001/commands",
        Some(serde_json::json!({ "body": "reboot", "ttl": 1 })),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let done = a.poll_commands(&mut never).unwrap();
    assert_eq!(done[0].1, CommandOutcome::Refused("expired"));
    let log = admin(&w, "GET", "/v1/admin/devices/02BB0001/commands", None).unwrap();
    assert_eq!(log["commands"][1]["receipt"], "refused:expired");
}

fn sign_release(w: &World, version: u32, image: &[u8]) -> Manifest {
    use p256::ecdsa::signature::Signer;
    let sha = sha2::Sha256::digest(image);
    let sig: p256::ecdsa::Signature = w.firmware.sign(&messages::firmware_message(
        version,
        &sha,
        image.len() as u64,
    ));
    Manifest {
        version,
        sha256: hex::encode(sha),
        size: image.len() as u64,
        signature: B64.encode(sig.to_bytes()),
    }
}

#[test]
fn firmware_updates_verify_and_never_roll_back() {
    let w = world();
    let mut a = device(&w, "02CC0001", 10);
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(a.boot(dir.path()).unwrap(), Err(FirmwareRefusal::Missing));
    let (v1, v2) = (b"firmware one".to_vec(), b"firmware two, better".to_vec());
    for (v, img) in [(1, &v1), (2, &v2)] {
        let m = sign_release(&w, v, img);
        sesame_agent::data::publish_firmware(&ureq::Agent::new(), &w.url, ADMIN, &m, img).unwrap();
    }
    assert_eq!(a.update_firmware(dir.path()).unwrap(), Some(Ok(2)));
    assert_eq!(a.update_firmware(dir.path()).unwrap(), None, "up to date");
    assert_eq!(a.boot(dir.path()).unwrap(), Ok(2));
    assert_eq!(a.rollback_floor().unwrap(), 2);
    // Downgrade to a properly signed older release: refused by the counter.
    assert_eq!(
        a.install_firmware(dir.path(), &sign_release(&w, 1, &v1), &v1)
            .unwrap(),
        Err(FirmwareRefusal::Downgrade)
    );
    // A release signed by another key, and a tampered installed image.
    let forged = Manifest {
        signature: sign_release(&w, 3, &v2).signature,
        ..sign_release(&w, 3, &v2)
    };
    let mut other = forged.clone();
    other.version = 4;
    assert_eq!(
        a.install_firmware(dir.path(), &other, &v2).unwrap(),
        Err(FirmwareRefusal::BadSignature)
    );
    std::fs::write(dir.path().join("installed.bin"), b"firmware two, bettex").unwrap();
    assert_eq!(a.boot(dir.path()).unwrap(), Err(FirmwareRefusal::Mismatch));
}

#[test]
fn usage_counts_down_and_stops_at_zero() {
    let w = world();
    let mut a = device(&w, "02DD0001", 3);
    assert_eq!(
        (
            a.use_consumable().unwrap(),
            a.use_consumable().unwrap(),
            a.use_consumable().unwrap()
        ),
        (2, 1, 0)
    );
    assert!(
        matches!(a.use_consumable(), Err(AgentError::Chip(e)) if e.contains("COUNTER_LIMIT_EXCEEDED"))
    );
    assert_eq!(
        admin(&w, "GET", "/v1/admin/devices/02DD0001/usage", None).unwrap()["remaining"],
        0
    );
}
