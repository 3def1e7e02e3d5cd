//! `sesame device login | update | boot`: the device agent from the command line.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use embedded_hal::i2c::I2c;
use serde_json::json;
use sesame_agent::Agent;

use super::Device;

fn agent<I>(d: Device<I>, cloud: &str) -> Result<(Agent<I, super::StdDelay>, bool)>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    let json = d.json;
    Ok((Agent::new(d.se, cloud)?, json))
}

/// The seven steps against `cloud`.
pub(super) fn login<I>(d: Device<I>, cloud: &str) -> Result<()>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    let (mut a, json) = agent(d, cloud)?;
    let s = a.login()?.clone();
    if json {
        println!(
            "{}",
            json!({ "serial": s.serial, "token": s.token, "expires_at": s.expires_at, "telemetry_key": s.ecdh.is_some() })
        );
    } else {
        println!(
            "authenticated as {} (session until {}, telemetry key {})",
            s.serial,
            s.expires_at,
            if s.ecdh.is_some() {
                "established"
            } else {
                "not offered"
            }
        );
    }
    Ok(())
}

/// Login, then install a newer release if there is one.
pub(super) fn update<I>(d: Device<I>, cloud: &str, dir: &Path) -> Result<()>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    let (mut a, json) = agent(d, cloud)?;
    a.login()?;
    let outcome = a.update_firmware(dir)?;
    let (status, version) = match outcome {
        None => ("up to date", None),
        Some(Ok(v)) => ("installed", Some(v)),
        Some(Err(r)) => bail!("release refused: {}", r.code()),
    };
    if json {
        println!("{}", json!({ "status": status, "version": version }));
    } else {
        println!(
            "{status}{}",
            version
                .map(|v| format!(": version {v}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// Verifies the installed image through the chip.
pub(super) fn boot<I>(d: Device<I>, dir: &Path) -> Result<()>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    // The cloud is not contacted at boot.
    let (mut a, json) = agent(d, "http://unused.invalid")?;
    match a.boot(dir)? {
        Ok(v) => {
            if json {
                println!("{}", json!({ "boot": true, "version": v }));
            } else {
                println!("firmware version {v} verified by the secure element: boot");
            }
            Ok(())
        }
        Err(r) => Err(anyhow!("refusing to boot: {}", r.code())),
    }
}
