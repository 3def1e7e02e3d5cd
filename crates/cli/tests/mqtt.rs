//! The command line over a real Mosquitto: `sesame cloud serve --mqtt` takes telemetry that
//! `sesame device telemetry --mqtt` publishes from a factory-made chip (the chip signing the
//! TLS handshake to the broker), and refuses credentials that do not go together.
#![allow(clippy::unwrap_used)]

#[path = "../../agent/tests/broker/mod.rs"]
mod broker;
mod common;

use std::path::Path;

use common::{operator, personalize_one, text, Server};
use serde_json::Value;

fn certs(path: &Path) -> Vec<Vec<u8>> {
    sesame_pki::certs_from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn mqtt_args(b: &broker::Broker) -> Vec<String> {
    let c = &b.cloud;
    [
        "--mqtt",
        &c.url,
        "--mqtt-ca",
        &c.ca.display().to_string(),
        "--mqtt-cert",
        &c.cert.display().to_string(),
        "--mqtt-key",
        &c.key.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn a_factory_chip_publishes_telemetry_through_the_broker() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert!(operator(&["factory", "init", "--dir", "f"], d)
        .status
        .success());
    let (serial, image) = personalize_one(d);
    // The broker takes device certificates from the factory's root and family.
    let cas = [
        certs(&d.join("f/root.pem")),
        certs(&d.join("f/families/family-1/ca.pem")),
    ]
    .concat();
    let refs: Vec<&[u8]> = cas.iter().map(Vec::as_slice).collect();
    let Some(b) = broker::Broker::start(&refs, true) else {
        return;
    };
    // The broker from the configuration file (the refusal test below gives it by options).
    let c = &b.cloud;
    std::fs::write(
        d.join("cloud.toml"),
        format!(
            "mqtt = {:?}\nmqtt_ca = {:?}\nmqtt_cert = {:?}\nmqtt_key = {:?}\n",
            c.url,
            c.ca.display().to_string(),
            c.cert.display().to_string(),
            c.key.display().to_string()
        ),
    )
    .unwrap();
    let args = [
        "--config",
        "cloud.toml",
        "--db",
        "sqlite://cloud.db",
        "--command-key",
        "f/command.key.pem",
    ]
    .map(String::from)
    .to_vec();
    let cloud = Server::start_with(d, &args);
    assert!(
        cloud
            .banner
            .contains(&format!("telemetry also from MQTT {}", b.url)),
        "{}",
        cloud.banner
    );
    for a in [
        vec!["cloud", "trust-root", "f/root.pem", "--url", &cloud.url],
        vec![
            "cloud",
            "enroll-family",
            "--bundle",
            "f/families/family-1/ca.pem",
            "--key",
            "f/families/family-1/ca.key.pem",
            "--url",
            &cloud.url,
        ],
    ] {
        let o = operator(&a, d);
        assert!(o.status.success(), "{}", text(&o));
    }
    let ca = b.dir().join("ca.pem").display().to_string();
    let o = operator(
        &[
            "device",
            "--image",
            &image,
            "--key-file",
            "f/chip.key",
            "telemetry",
            "--cloud",
            &cloud.url,
            "--mqtt",
            &b.url,
            "--mqtt-ca",
            &ca,
            "--json",
            "bpm=71",
            "bpm=72",
        ],
        d,
    );
    assert!(o.status.success(), "{}\n{}", text(&o), b.log());
    let sent: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(sent["serial"], serial.as_str());
    assert_eq!(sent["acknowledged"].as_array().unwrap().len(), 2);
    // Acknowledged by the broker; stored by the cloud once it has taken them.
    let mut payloads = Vec::new();
    for _ in 0..1500 {
        let o = operator(
            &[
                "cloud",
                "telemetry",
                "--serial",
                &serial,
                "--url",
                &cloud.url,
                "--json",
            ],
            d,
        );
        assert!(o.status.success(), "{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        payloads = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["payload"].as_str().unwrap().to_string())
            .collect();
        if payloads.len() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(payloads, ["bpm=71", "bpm=72"], "{}", b.log());
    // A device the broker does not know (no CA for it) cannot even connect.
    let stranger = broker::Broker::start(&[], true).unwrap();
    let ca = stranger.dir().join("ca.pem").display().to_string();
    let o = operator(
        &[
            "device",
            "--image",
            &image,
            "--key-file",
            "f/chip.key",
            "telemetry",
            "--cloud",
            &cloud.url,
            "--mqtt",
            &stranger.url,
            "--mqtt-ca",
            &ca,
            "bpm=1",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&stranger.url), "{}", text(&o));
}

#[test]
fn the_cloud_refuses_mqtt_credentials_that_do_not_go_together() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let Some(b) = broker::Broker::start(&[], true) else {
        return;
    };
    let mut args = mqtt_args(&b);
    // The broker CA's certificate with the cloud's key.
    args[5] = b.cloud.ca.display().to_string();
    let o = operator(
        &[
            &[
                "cloud",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                "sqlite://c.db",
            ][..],
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("does not go with certificate"),
        "{}",
        text(&o)
    );
    // Not mqtts://.
    let mut args = mqtt_args(&b);
    args[1] = b.url.replace("mqtts://", "mqtt://");
    let o = operator(
        &[
            &[
                "cloud",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--db",
                "sqlite://c.db",
            ][..],
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        ]
        .concat(),
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("must be mqtts://"), "{}", text(&o));
}
