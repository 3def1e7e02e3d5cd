//! `sesame device telemetry --mqtt …`: log in over HTTP (challenge–response and the telemetry
//! key exchange), then publish encrypted, chip-signed telemetry to an MQTT broker, the chip
//! signing the TLS handshake with which the device authenticates to the broker.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, Result};
use embedded_hal::i2c::I2c;
use embedded_hal_bus::i2c::MutexDevice;
use serde_json::json;
use sesame_agent::mqtt::MqttLink;
use sesame_agent::{mtls, Agent};
use sesame_host::signer::SharedStsafe;
use sesame_host::Stsafe;

use crate::client::Trust;

use super::{Device, StdDelay};

/// What `device telemetry` sends where.
pub(super) struct Telemetry<'a> {
    pub cloud: &'a str,
    pub mqtt: &'a str,
    pub mqtt_ca: &'a Path,
    pub trust: &'a Trust,
    pub payloads: &'a [String],
}

pub(super) fn telemetry<I>(d: Device<I>, t: &Telemetry<'_>) -> Result<()>
where
    I: I2c + Send + 'static,
    I::Error: Send + Sync + 'static,
{
    let json = d.json;
    let url = crate::client::base_url(t.cloud, "--cloud")?;
    let (address, config) = (d.se.address(), d.se.config());
    let serial = d.serial();
    // Two drivers on the one bus, for as long as the process runs: the agent's, and the one
    // behind the TLS key that signs the broker handshake.
    let (i2c, _) = d.se.release();
    let bus: &'static Mutex<I> = Box::leak(Box::new(Mutex::new(i2c)));
    let driver = || Stsafe::with_config(MutexDevice::new(bus), StdDelay, address, config);
    let mut agent = Agent::new(driver(), &url)?;
    agent.set_http(t.trust.agent(Duration::from_secs(15))?);
    agent.login().map_err(|e| anyhow!("{url}: {e}"))?;
    let mut tls_chip = driver();
    tls_chip
        .init()
        .map_err(|e| anyhow!("chip on {serial}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in crate::client::load_cas(t.mqtt_ca)? {
        roots
            .add(ca)
            .map_err(|e| anyhow!("--mqtt-ca {}: {e}", t.mqtt_ca.display()))?;
    }
    let tls = mtls::client_config(&SharedStsafe::new(tls_chip), &[], roots)?;
    let mut link =
        MqttLink::connect(t.mqtt, agent.serial(), tls).map_err(|e| anyhow!("{}: {e}", t.mqtt))?;
    let mut sent = Vec::new();
    for p in t.payloads {
        let seq = agent
            .publish_telemetry(&mut link, p.as_bytes())
            .map_err(|e| anyhow!("{}: {e}", t.mqtt))?;
        if !json {
            outln!("telemetry #{seq} acknowledged by the broker");
        }
        sent.push(seq);
    }
    let _ = link.disconnect();
    if json {
        outln!(
            "{}",
            json!({ "serial": agent.serial(), "broker": t.mqtt, "acknowledged": sent })
        );
    }
    Ok(())
}
