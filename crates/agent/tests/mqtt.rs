//! Telemetry over a real Mosquitto: devices connect with their chip-signed certificate and
//! publish QoS 1; the cloud, subscribed with its own certificate, verifies and stores through
//! the same service method as `POST /v1/telemetry`. With the attacks: another serial's topic
//! (refused by the broker's ACL, and by the cloud when a broker lets it through), a stolen
//! session token with the device's own signature, a duplicate, a revoked device.
#![allow(clippy::unwrap_used)]

mod broker;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use broker::Broker;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use sesame_agent::mqtt::MqttLink;
use sesame_agent::{layout, mtls, Agent, StdDelay};
use sesame_chip::{Bus, BusDevice, ChipConfig, ChipOptions, CurveName, Fab, MemStorage, ZoneSpec};
use sesame_cloud::mqtt::{MqttClient, MqttStats};
use sesame_host::signer::SharedStsafe;
use sesame_host::Stsafe;
use sesame_pki::{Authority, DeviceKey, KeyAlg};
use sesame_proto::mqtt::telemetry_topic;

const ADMIN: &str = "mqtt-test-admin-token";

/// A cloud (HTTP for logins and the operator), its device CAs, and a broker it subscribes to.
struct World {
    url: String,
    root: Authority,
    family: Authority,
    command: p256::ecdsa::SigningKey,
    broker: Broker,
    service: Arc<sesame_cloud::Service>,
    stats: Arc<MqttStats>,
    mqtt: tokio::task::JoinHandle<()>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn admin(
    w: &World,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let req = ureq::request(method, &format!("{}{path}", w.url))
        .set("authorization", &format!("Bearer {ADMIN}"));
    match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    }
    .unwrap()
    .into_json()
    .unwrap()
}

/// Stored telemetry payloads of `serial`.
fn stored(w: &World, serial: &str) -> Vec<String> {
    admin(
        w,
        "GET",
        &format!("/v1/admin/devices/{serial}/telemetry"),
        None,
    )["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap().to_string())
        .collect()
}

/// Messages the cloud has finished with (stored, duplicate or refused).
fn handled(s: &MqttStats) -> u64 {
    s.stored.load(Ordering::Relaxed)
        + s.duplicates.load(Ordering::Relaxed)
        + s.refused.lock().unwrap().values().sum::<u64>()
}

/// Waits until the cloud has handled `n` messages in all (a readiness wait, not a deadline
/// under test: it only bounds a hang).
fn wait_handled(w: &World, n: u64) {
    for _ in 0..1500 {
        if handled(&w.stats) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "the cloud handled {} of {n} messages; broker log:\n{}",
        handled(&w.stats),
        w.broker.log()
    );
}

/// `None` when Mosquitto is missing outside CI (the test is skipped).
fn world(acl: bool) -> Option<World> {
    let root = Authority::new_root("t", "root", KeyAlg::P256).unwrap();
    let family = root.new_family("t", "pumps", KeyAlg::P256).unwrap();
    let broker = Broker::start(&[&root.der, &family.der], acl)?;
    let dir = tempfile::tempdir().unwrap();
    let command = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let key_path = dir.path().join("command.key.pem");
    std::fs::write(
        &key_path,
        command.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let cfg = sesame_cloud::Config {
        db: format!("sqlite://{}", dir.path().join("c.db").display()),
        admin_token: ADMIN.into(),
        command_key: Some(key_path.display().to_string()),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (url, service) = rt.block_on(async {
        let service = sesame_cloud::build(cfg).await.unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(sesame_cloud::serve(
            service.clone(),
            l,
            std::future::pending(),
        ));
        (url, service)
    });
    let mut w = World {
        url,
        root,
        family,
        command,
        broker,
        service,
        stats: Arc::default(),
        mqtt: rt.spawn(async {}),
        rt,
        _dir: dir,
    };
    start_mqtt(&mut w);
    admin(
        &w,
        "POST",
        "/v1/admin/roots",
        Some(serde_json::json!({ "certificate": B64.encode(&w.root.der) })),
    );
    let code = admin(&w, "POST", "/v1/admin/families/code", None)["code"]
        .as_str()
        .unwrap()
        .to_string();
    use p256::ecdsa::signature::Signer;
    let k = p256::ecdsa::SigningKey::from_pkcs8_pem(&w.family.key_pem()).unwrap();
    let s: p256::ecdsa::Signature = k.sign(code.as_bytes());
    admin(
        &w,
        "POST",
        "/v1/admin/families",
        Some(
            serde_json::json!({ "certificate": B64.encode(&w.family.der), "code": code, "signature": B64.encode(s.to_der().as_bytes()) }),
        ),
    );
    Some(w)
}

/// Starts the cloud's MQTT adapter (again), with fresh counters, and waits until it is
/// subscribed, so that no device publishes before.
fn start_mqtt(w: &mut World) {
    let mqtt = MqttClient::new(&w.broker.cloud).unwrap();
    w.stats = mqtt.stats.clone();
    w.mqtt =
        w.rt.spawn(mqtt.run(w.service.clone(), std::future::pending()));
    wait_subscribed(w, 1);
}

fn wait_subscribed(w: &World, n: u64) {
    for _ in 0..1500 {
        if w.stats.subscribed.load(Ordering::Relaxed) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "the cloud did not subscribe ({n}) at the broker:\n{}",
        w.broker.log()
    );
}

/// A device as the factory makes it, logged in over HTTP, and connected to the broker with its
/// chip signing the TLS handshake.
struct Device {
    agent: Agent<BusDevice, StdDelay>,
    link: MqttLink,
    bus: Bus,
}

fn device(w: &World, serial: &str) -> Device {
    let mut config = ChipConfig::new([2, 7, 7, 7, 7, 7, 7, 7, serial.len() as u8]);
    config.zones = vec![
        ZoneSpec::read_only(1024),
        ZoneSpec::read_only(128),
        ZoneSpec::read_only(128),
        ZoneSpec::counter(16, 10),
        ZoneSpec::counter(16, layout::ROLLBACK_BASE),
        ZoneSpec::plain(64),
    ];
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
    let command = w.command.verifying_key().to_encoded_point(false);
    fab.write_zone(layout::COMMAND_KEY, 0, command.as_bytes())
        .unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    let mut agent = Agent::new(Stsafe::new(bus.device(), StdDelay, 0x20), &w.url).unwrap();
    agent.login().unwrap();
    let link = connect(w, &bus, serial);
    Device { agent, link, bus }
}

/// An MQTT connection whose TLS client key is the chip on `bus`.
fn connect(w: &World, bus: &Bus, client_id: &str) -> MqttLink {
    let mut se = Stsafe::new(bus.device(), StdDelay, 0x20);
    se.init().unwrap();
    let chip = SharedStsafe::new(se);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(w.broker.server_ca.clone().into()).unwrap();
    let tls = mtls::client_config(&chip, &[], roots).unwrap();
    MqttLink::connect(&w.broker.url, client_id, tls)
        .unwrap_or_else(|e| panic!("{e}; broker log:\n{}", w.broker.log()))
}

#[test]
fn telemetry_over_the_broker_is_stored_once() {
    let Some(w) = world(true) else { return };
    let mut d = device(&w, "02CC0001");
    for reading in ["temp=20.1", "temp=20.2", "temp=20.3"] {
        d.agent
            .publish_telemetry(&mut d.link, reading.as_bytes())
            .unwrap();
    }
    wait_handled(&w, 3);
    assert_eq!(w.stats.stored.load(Ordering::Relaxed), 3);
    assert_eq!(
        stored(&w, "02CC0001"),
        ["temp=20.1", "temp=20.2", "temp=20.3"]
    );
    // The same message twice (a redelivery, or a device resending what it thinks was lost):
    // stored once, and the copy acknowledged as a duplicate.
    let p = d.agent.telemetry_publish(b"temp=20.4").unwrap();
    let bytes = serde_json::to_vec(&p).unwrap();
    let topic = telemetry_topic("02CC0001");
    d.link.publish(&topic, bytes.clone()).unwrap();
    d.link.publish(&topic, bytes).unwrap();
    wait_handled(&w, 5);
    assert_eq!(w.stats.stored.load(Ordering::Relaxed), 4);
    assert_eq!(w.stats.duplicates.load(Ordering::Relaxed), 1);
    assert_eq!(stored(&w, "02CC0001").len(), 4);
}

#[test]
fn the_broker_keeps_a_device_to_its_own_topics() {
    let Some(w) = world(true) else { return };
    let mut a = device(&w, "02CC0011");
    let mut b = device(&w, "02CC0012");
    // Under B's topic: the broker drops it (MQTT 3.1.1 still acknowledges the publish).
    let spoof = serde_json::to_vec(&a.agent.telemetry_publish(b"spoof").unwrap()).unwrap();
    a.link.publish(&telemetry_topic("02CC0012"), spoof).unwrap();
    // Then under its own: the cloud gets this one, and only this one.
    a.agent.publish_telemetry(&mut a.link, b"own").unwrap();
    wait_handled(&w, 1);
    // The broker handles one client's publishes in order: had the first been delivered, the
    // cloud would have handled it before the second.
    assert_eq!(handled(&w.stats), 1);
    assert_eq!(w.stats.refused("topic_mismatch"), 0);
    assert_eq!(stored(&w, "02CC0011"), ["own"]);
    assert!(stored(&w, "02CC0012").is_empty());
    assert!(
        w.broker.log().contains("Denied PUBLISH from 02CC0011"),
        "{}",
        w.broker.log()
    );
    // Nor does it receive another device's messages. Mosquitto grants the subscription
    // (MQTT 3.1.1) and checks the ACL at each delivery: B's telemetry goes to the cloud only.
    a.link
        .subscribe("sesame/v1/devices/02CC0012/telemetry")
        .unwrap();
    a.link.subscribe("sesame/v1/devices/+/telemetry").unwrap();
    assert!(a.link.subscribe("sesame/v1/devices/02CC0011/echo").unwrap());
    b.agent.publish_telemetry(&mut b.link, b"b's").unwrap();
    wait_handled(&w, 2);
    assert_eq!(stored(&w, "02CC0012"), ["b's"]);
    // The broker has sent A everything it would before this: had B's message been for A, it
    // would come first.
    a.link
        .publish("sesame/v1/devices/02CC0011/echo", b"echo".to_vec())
        .unwrap();
    let (topic, _) = a.link.next_message().unwrap();
    assert_eq!(topic, "sesame/v1/devices/02CC0011/echo");
}

#[test]
fn a_broker_that_lets_a_spoof_through_still_gets_it_refused() {
    // No ACL: the broker lets any authenticated client use any topic.
    let Some(w) = world(false) else { return };
    let mut a = device(&w, "02CC0021");
    let b = device(&w, "02CC0022");
    // A's own session on B's topic: the topic's serial is not the session's.
    let spoof = serde_json::to_vec(&a.agent.telemetry_publish(b"spoof").unwrap()).unwrap();
    a.link.publish(&telemetry_topic("02CC0022"), spoof).unwrap();
    wait_handled(&w, 1);
    assert_eq!(w.stats.refused("topic_mismatch"), 1);
    // B's session token (stolen) with a message A's chip signed: the signature check refuses.
    let mut stolen = a.agent.telemetry_publish(b"spoof").unwrap();
    stolen.session = b.agent.session().unwrap().token.clone();
    let stolen = serde_json::to_vec(&stolen).unwrap();
    a.link
        .publish(&telemetry_topic("02CC0022"), stolen)
        .unwrap();
    wait_handled(&w, 2);
    assert_eq!(w.stats.refused("bad_signature"), 1);
    // Not even well-formed, or no session at all: refused, and the adapter carries on.
    a.link
        .publish(&telemetry_topic("02CC0021"), b"{\"session\":".to_vec())
        .unwrap();
    let mut nobody = a.agent.telemetry_publish(b"x").unwrap();
    nobody.session = "not-a-session".into();
    a.link
        .publish(
            &telemetry_topic("02CC0021"),
            serde_json::to_vec(&nobody).unwrap(),
        )
        .unwrap();
    wait_handled(&w, 4);
    assert_eq!(w.stats.refused("malformed_request"), 1);
    assert_eq!(w.stats.refused("unauthorized"), 1);
    assert_eq!(w.stats.stored.load(Ordering::Relaxed), 0);
    assert!(stored(&w, "02CC0021").is_empty());
    assert!(stored(&w, "02CC0022").is_empty());
}

#[test]
fn a_revoked_device_is_refused_by_the_cloud() {
    let Some(w) = world(true) else { return };
    let mut d = device(&w, "02CC0031");
    d.agent.publish_telemetry(&mut d.link, b"before").unwrap();
    wait_handled(&w, 1);
    admin(
        &w,
        "POST",
        "/v1/admin/revoke",
        Some(serde_json::json!({ "serial": "02CC0031" })),
    );
    d.agent.publish_telemetry(&mut d.link, b"after").unwrap();
    wait_handled(&w, 2);
    assert_eq!(w.stats.refused("revoked"), 1);
    assert_eq!(stored(&w, "02CC0031"), ["before"]);
}

#[test]
fn the_cloud_subscribes_again_after_a_broker_restart() {
    let Some(mut w) = world(true) else { return };
    let mut d = device(&w, "02CC0041");
    d.agent.publish_telemetry(&mut d.link, b"before").unwrap();
    wait_handled(&w, 1);
    // Killed: the broker forgets the cloud's session and subscription.
    w.broker.restart();
    wait_subscribed(&w, 2);
    assert_eq!(w.stats.connections.load(Ordering::Relaxed), 2);
    // The device's connection died with the broker: it connects again and goes on.
    assert!(d.agent.publish_telemetry(&mut d.link, b"lost").is_err());
    d.link = connect(&w, &d.bus, "02CC0041");
    d.agent.publish_telemetry(&mut d.link, b"after").unwrap();
    wait_handled(&w, 2);
    assert_eq!(stored(&w, "02CC0041"), ["before", "after"]);
}

#[test]
fn nothing_the_broker_acknowledged_is_lost_while_the_cloud_is_down() {
    let Some(mut w) = world(true) else { return };
    let mut d = device(&w, "02CC0051");
    let mut acknowledged = Vec::new();
    acknowledged.push(d.agent.publish_telemetry(&mut d.link, b"m0").unwrap());
    // The cloud's MQTT side dies at whatever point it has reached with m0: before taking it,
    // after storing it but before acknowledging it, or after.
    w.mqtt.abort();
    for m in ["m1", "m2", "m3"] {
        acknowledged.push(
            d.agent
                .publish_telemetry(&mut d.link, m.as_bytes())
                .unwrap(),
        );
    }
    // Back with the same client id: the broker kept its session and delivers what it has not
    // acknowledged; a message stored but not acknowledged comes again and is stored once.
    start_mqtt(&mut w);
    let rows = || {
        admin(&w, "GET", "/v1/admin/devices/02CC0051/telemetry", None)["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    for _ in 0..1500 {
        if rows().len() >= acknowledged.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(rows(), acknowledged, "{}", w.broker.log());
    assert!(w.stats.stored.load(Ordering::Relaxed) >= 3);
}

#[test]
fn many_messages_in_flight_are_all_stored() {
    // More than the cloud's request queue holds (64): the acknowledgements must keep flowing
    // while messages keep coming.
    const DEVICES: usize = 4;
    const MESSAGES: usize = 100;
    let Some(w) = world(true) else { return };
    let mut devices: Vec<Device> = (0..DEVICES)
        .map(|i| device(&w, &format!("02CC01{i:02}")))
        .collect();
    let made: Vec<Vec<Vec<u8>>> = devices
        .iter_mut()
        .map(|d| {
            (0..MESSAGES)
                .map(|i| {
                    let p = d.agent.telemetry_publish(format!("n={i}").as_bytes());
                    serde_json::to_vec(&p.unwrap()).unwrap()
                })
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for (d, payloads) in devices.iter_mut().zip(made) {
            s.spawn(move || {
                let topic = telemetry_topic(d.agent.serial());
                for p in payloads {
                    d.link.publish(&topic, p).unwrap();
                }
            });
        }
    });
    wait_handled(&w, (DEVICES * MESSAGES) as u64);
    assert_eq!(
        w.stats.stored.load(Ordering::Relaxed),
        (DEVICES * MESSAGES) as u64
    );
    for i in 0..DEVICES {
        let rows = stored(&w, &format!("02CC01{i:02}"));
        let expected: Vec<String> = (0..MESSAGES).map(|n| format!("n={n}")).collect();
        assert_eq!(rows, expected);
    }
}

/// Messages/s through broker → cloud → database against the same messages posted over HTTP, in
/// one run. The messages are made (encrypted, chip-signed) before the clock starts, so what is
/// measured is transport and ingestion. Goal: MQTT at least half the HTTP rate.
/// `cargo test --release -p sesame-agent --test mqtt -- --ignored --nocapture`
#[test]
#[ignore = "benchmark"]
fn benchmark_mqtt_against_http() {
    const DEVICES: usize = 4;
    const MESSAGES: usize = 250;
    const GOAL: f64 = 0.5;
    let Some(w) = world(true) else { return };
    let mut devices: Vec<Device> = (0..DEVICES)
        .map(|i| device(&w, &format!("02DD{i:04}")))
        .collect();
    // Sequence numbers only go up: the HTTP batch first, then the MQTT batch.
    let made: Vec<_> = devices
        .iter_mut()
        .map(|d| {
            let http: Vec<_> = (0..MESSAGES)
                .map(|i| d.agent.telemetry_body(format!("h{i}").as_bytes()).unwrap())
                .collect();
            let mqtt: Vec<_> = (0..MESSAGES)
                .map(|i| {
                    serde_json::to_vec(
                        &d.agent
                            .telemetry_publish(format!("m{i}").as_bytes())
                            .unwrap(),
                    )
                    .unwrap()
                })
                .collect();
            (http, mqtt)
        })
        .collect();
    let total = (DEVICES * MESSAGES) as f64;
    let (mut http, mut mqtt): (Vec<_>, Vec<_>) = made.into_iter().unzip();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for (d, bodies) in devices.iter_mut().zip(http.drain(..)) {
            s.spawn(move || {
                for b in &bodies {
                    d.agent.post_telemetry(b).unwrap();
                }
            });
        }
    });
    let http_rate = total / start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for (d, payloads) in devices.iter_mut().zip(mqtt.drain(..)) {
            s.spawn(move || {
                let topic = telemetry_topic(d.agent.serial());
                for p in payloads {
                    d.link.publish(&topic, p).unwrap();
                }
            });
        }
    });
    wait_handled(&w, (DEVICES * MESSAGES) as u64);
    let mqtt_rate = total / start.elapsed().as_secs_f64();
    assert_eq!(
        w.stats.stored.load(Ordering::Relaxed),
        (DEVICES * MESSAGES) as u64
    );
    let ratio = mqtt_rate / http_rate;
    println!(
        "telemetry, {DEVICES} devices x {MESSAGES} messages: HTTP {http_rate:.0} msg/s, MQTT (broker -> cloud -> database) {mqtt_rate:.0} msg/s, ratio {ratio:.2} (goal >= {GOAL}): {}",
        if ratio >= GOAL { "PASS" } else { "FAIL" }
    );
    assert!(ratio >= GOAL, "MQTT at {ratio:.2} of the HTTP rate");
}
