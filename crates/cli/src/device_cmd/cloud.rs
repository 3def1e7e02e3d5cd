//! `sesame device login | update | boot`: the device agent from the command line.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use embedded_hal::i2c::I2c;
use serde_json::json;
use std::time::Duration;

use sesame_agent::{Agent, AgentError};

use crate::client::Trust;

use super::Device;

fn agent<I>(
    d: Device<I>,
    cloud: &str,
    pin: Option<&str>,
    trust: &Trust,
) -> Result<(Agent<I, super::StdDelay>, bool)>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    let json = d.json;
    let url = crate::client::base_url(cloud, "--cloud")?;
    if let Some(p) = pin {
        sesame_agent::pin::parse_pin(p)
            .map_err(|e| crate::out::usage(format!("--command-key-sha256: {e}")))?;
    }
    let mut a = Agent::new(d.se, &url)?;
    a.set_http(trust.agent(Duration::from_secs(15))?);
    if let Some(p) = pin {
        let k = a
            .check_command_key(p)
            .map_err(|e| anyhow!("{url}: {}", hint(e)))?;
        eprintln!(
            "command key {} of {url} matches the pin and the chip",
            k.sha256
        );
    }
    Ok((a, json))
}

/// An agent error with the fix for a TLS trust problem.
fn hint(e: AgentError) -> anyhow::Error {
    match e {
        AgentError::Transport(m) => AgentError::Transport(crate::client::transport_hint(&m)).into(),
        e => e.into(),
    }
}

/// The seven steps against `cloud`.
pub(super) fn login<I>(d: Device<I>, cloud: &str, pin: Option<&str>, trust: &Trust) -> Result<()>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    let (mut a, json) = agent(d, cloud, pin, trust)?;
    let s = a.login().map_err(hint)?.clone();
    if json {
        outln!(
            "{}",
            json!({ "serial": s.serial, "token": s.token, "expires_at": crate::vocab::rfc3339(s.expires_at), "telemetry_key": s.ecdh.is_some() })
        );
    } else {
        outln!(
            "authenticated as {} (session until {}, telemetry key {})",
            s.serial,
            crate::vocab::local(s.expires_at),
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
pub(super) fn update<I>(
    d: Device<I>,
    cloud: &str,
    pin: Option<&str>,
    dir: &Path,
    trust: &Trust,
) -> Result<()>
where
    I: I2c,
    I::Error: Send + Sync + 'static,
{
    let (mut a, json) = agent(d, cloud, pin, trust)?;
    a.login().map_err(hint)?;
    // No release published at all is "nothing to update" too, not a failure.
    let outcome = match a.update_firmware(dir) {
        Err(AgentError::Refused { status: 404, .. }) => None,
        r => r.map_err(hint)?,
    };
    let (status, version) = match outcome {
        None => ("up to date", None),
        Some(Ok(v)) => ("installed", Some(v)),
        Some(Err(r)) => bail!("release refused: {}", r.code()),
    };
    if json {
        outln!("{}", json!({ "status": status, "version": version }));
    } else {
        outln!(
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
    let (mut a, json) = agent(d, "http://unused.invalid", None, &Trust::default())?;
    match a.boot(dir)? {
        Ok(v) => {
            if json {
                outln!("{}", json!({ "boot": true, "version": v }));
            } else {
                outln!("firmware version {v} verified by the secure element: boot");
            }
            Ok(())
        }
        Err(r) => Err(anyhow!("refusing to boot: {}", r.code())),
    }
}
