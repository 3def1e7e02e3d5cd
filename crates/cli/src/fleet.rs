//! `sesame fleet run`: a fleet of in-process chips against a cloud. Each device is its own chip
//! (key generated inside, certificate from a fleet family CA, zones as the factory lays them
//! out) on its own I²C bus; workers each own a slice of the devices, log each in once and then
//! send encrypted, chip-signed telemetry round-robin until the duration ends.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::out::{usage, Interrupted, Reported};
use crate::sim::{self, Counters, EmbeddedCloud, Pki};

/// `sesame fleet` subcommands.
#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Simulate a fleet: personalize N chips, authenticate them, send telemetry for a while.
    Run(RunArgs),
}

/// `sesame fleet run` options.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Number of devices (each its own in-process chip).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Seconds to run (logins included).
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Cloud base URL (default: an embedded cloud on SQLite in a temporary directory). Several,
    /// comma-separated (instances of one cloud sharing its database), spread the devices over
    /// them round robin; the summary counts per instance.
    #[arg(long, value_name = "URL[,URL…]")]
    cloud: Option<String>,
    /// Operator token of `--cloud` (default: $SESAME_CLOUD_ADMIN_TOKEN).
    #[arg(long, env = "SESAME_CLOUD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The `--cloud`'s command public key (PEM, e.g. the factory's command.pub.pem), written
    /// to zone 1 so the devices accept its telemetry key exchange.
    #[arg(long, conflicts_with = "command_key_sha256")]
    command_pub: Option<PathBuf>,
    /// Instead of --command-pub: the SHA-256 of the `--cloud`'s command public key (its SPKI
    /// DER, hex, as `sesame cloud info` or the cloud's startup line shows it). The key is
    /// fetched from the cloud's /v1/info and used only if it matches; otherwise the run stops
    /// before anything is sent.
    #[arg(
        long,
        env = "SESAME_COMMAND_KEY_SHA256",
        value_name = "HEX",
        requires = "cloud"
    )]
    command_key_sha256: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Worker threads (each owns a slice of the devices).
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// With --cloud: leave the run's family enrolled at the end (by default it is revoked, so
    /// that nothing the run enrolled can log in afterwards; its CA keys lived only in this run).
    #[arg(long, requires = "cloud")]
    keep: bool,
    #[command(flatten)]
    trust: crate::client::Trust,
}

/// Runs a `sesame fleet` subcommand.
pub fn run(cmd: FleetCommand) -> Result<()> {
    match cmd {
        FleetCommand::Run(a) => fleet_run(a),
    }
}

fn fleet_run(a: RunArgs) -> Result<()> {
    if a.devices == 0 {
        return Err(usage("--devices must be at least 1"));
    }
    if a.workers == 0 {
        return Err(usage("--workers must be at least 1"));
    }
    if let Some(pin) = &a.command_key_sha256 {
        sesame_agent::pin::parse_pin(pin)
            .map_err(|e| usage(format!("--command-key-sha256: {e}")))?;
    }
    // Ctrl-C (or SIGTERM) stops the run and still prints its summary; a second one ends the
    // process at once.
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, interrupted.clone())?;
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    let tls = a.trust.tls()?;
    let http = crate::client::agent_with(tls.clone(), Duration::from_secs(30));
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pki = Pki::new()?;
    let embedded;
    let (urls, token, command_point, cloud_name) = match &a.cloud {
        None => {
            embedded = Some(EmbeddedCloud::start(true)?);
            let c = embedded
                .as_ref()
                .map(|c| (c.url.clone(), c.command_point.clone()));
            let (url, point) = c.unwrap_or_default();
            (
                vec![url],
                sim::ADMIN.to_string(),
                point,
                "embedded (SQLite)".to_string(),
            )
        }
        Some(list) => {
            embedded = None;
            let urls = list
                .split(',')
                .map(|u| crate::client::base_url(u.trim(), "--cloud"))
                .collect::<Result<Vec<_>>>()?;
            let Some(token) = a.token.clone() else {
                bail!("--cloud needs the operator token (--token or $SESAME_CLOUD_ADMIN_TOKEN)");
            };
            let point = match (&a.command_key_sha256, &a.command_pub) {
                // Every instance must publish the pinned key: a device may land on any.
                (Some(pin), _) => {
                    let mut point = None;
                    for url in &urls {
                        let k = sesame_agent::pin::pinned_command_key(&http, url, pin)
                            .map_err(|e| anyhow!("{url}: {e}"))?;
                        eprintln!("command key {} of {url} matches the pin", k.sha256);
                        point = Some(k.point);
                    }
                    point
                }
                (None, Some(path)) => Some(sim::command_point_from_pem(path)?),
                (None, None) => None,
            };
            if point.is_none() {
                eprintln!("note: no --command-key-sha256 or --command-pub: zone 1 stays empty. A cloud with a command key then fails the logins (the chip cannot check its ECDH key); one without cannot take telemetry (no telemetry key).");
            }
            let name = urls.join(", ");
            (urls, token, point, name)
        }
    };
    // Instances of one cloud share its database: enrolling on the first one enrolls on all.
    let url = urls[0].clone();
    pki.enroll_with(&http, &url, &token)?;
    let (devices, perso_s) =
        sim::personalize_over(a.devices, &pki, command_point.as_deref(), &urls, tty)?;
    let workers = a.workers.min(a.devices);
    eprintln!(
        "fleet: {} devices running for {} s against the {cloud_name} cloud (Ctrl-C stops early and prints the summary)",
        a.devices, a.duration
    );
    let counters = Counters::default();
    let bar = sim::bar(tty, a.duration, "{spinner} {pos}/{len} s  {msg}");
    let mut last = (0.0, 0u64, 0u64);
    let mut tick = |t: f64| {
        if interrupted.load(Ordering::Relaxed) {
            counters.stop.store(true, Ordering::Relaxed);
        }
        let (auths, msgs) = (
            counters.auths.load(Ordering::Relaxed),
            counters.messages.load(Ordering::Relaxed),
        );
        let dt = (t - last.0).max(1e-3);
        if dt >= 1.0 || last.0 == 0.0 {
            bar.set_message(format!(
                "auths {auths} ({:.0}/s)  messages {msgs} ({:.0}/s)  errors {}",
                (auths - last.1) as f64 / dt,
                (msgs - last.2) as f64 / dt,
                counters.errors.load(Ordering::Relaxed)
            ));
            last = (t, auths, msgs);
        }
        bar.set_position((t as u64).min(a.duration));
        bar.tick();
    };
    let (mut out, secs) = sim::run_workers(
        devices,
        workers,
        Duration::from_secs(a.duration),
        true,
        &counters,
        &tls,
        &mut tick,
    );
    bar.finish_and_clear();
    drop(embedded);
    let auths = out.login_us.len() as u64;
    let msgs = out.post_us.len() as u64;
    let (l50, l99) = (
        sim::percentile_ms(&mut out.login_us, 50.0),
        sim::percentile_ms(&mut out.login_us, 99.0),
    );
    let (t50, t99) = (
        sim::percentile_ms(&mut out.post_us, 50.0),
        sim::percentile_ms(&mut out.post_us, 99.0),
    );
    let rate = |n: u64| n as f64 / secs.max(1e-9);
    let rss = sim::peak_rss_mb();
    if a.json {
        let v = json!({
            "devices": a.devices,
            "workers": workers,
            "cloud": cloud_name,
            "personalize_seconds": round(perso_s),
            "seconds": round(secs),
            "logged_in": out.logged_in,
            "all_logged_in_seconds": out.all_in.map(|d| round(d.as_secs_f64())),
            "first_login_rate": out.all_in.map(|d| round(a.devices as f64 / d.as_secs_f64().max(1e-9))),
            "authentications": auths,
            "authentications_per_second": round(rate(auths)),
            "messages": msgs,
            "messages_per_second": round(rate(msgs)),
            "login_ms": { "p50": round(l50), "p99": round(l99) },
            "telemetry_ms": { "p50": round(t50), "p99": round(t99) },
            "errors": out.errors,
            "error_total": out.error_total(),
            "interrupted": interrupted.load(Ordering::Relaxed),
            "peak_rss_mb": round(rss),
            "clouds": out.clouds.iter().map(|(url, c)| json!({
                "url": url,
                "devices": c.devices,
                "authentications": c.auths,
                "messages": c.messages,
                "errors": c.errors,
            })).collect::<Vec<_>>(),
        });
        outln!("{v}");
    } else {
        outln!(
            "fleet: {} devices personalized in {perso_s:.2} s ({:.0} chips/s); {workers} workers for {secs:.1} s against the {cloud_name} cloud",
            a.devices,
            a.devices as f64 / perso_s.max(1e-9)
        );
        outln!("logged in at the end: {} of {}", out.logged_in, a.devices);
        match out.all_in {
            Some(d) => outln!(
                "all logged in after: {:.1} s ({:.0} authentications/s while logging in)",
                d.as_secs_f64(),
                a.devices as f64 / d.as_secs_f64().max(1e-9)
            ),
            None => outln!("all logged in after: not all devices logged in within the run"),
        }
        outln!("authentications:    {auths} ({:.0} /s)", rate(auths));
        outln!("messages:           {msgs} ({:.0} /s)", rate(msgs));
        outln!("login latency:      p50 {l50:.2} ms, p99 {l99:.2} ms");
        outln!("telemetry latency:  p50 {t50:.2} ms, p99 {t99:.2} ms");
        outln!("errors:             {}", out.error_total());
        for (kind, n) in &out.errors {
            outln!("  {n:>8}  {kind}");
        }
        if out.clouds.len() > 1 {
            outln!("per cloud instance:");
            for (url, c) in &out.clouds {
                outln!(
                    "  {url}: {} devices, {} authentications, {} messages, {} errors",
                    c.devices,
                    c.auths,
                    c.messages,
                    c.errors
                );
            }
        }
        let what = if a.cloud.is_none() {
            "chips, agents and the embedded cloud"
        } else {
            "chips and agents"
        };
        outln!("peak memory:        {rss:.0} MB (VmHWM of this process: {what})");
    }
    if a.cloud.is_some() && !a.keep {
        crate::client::call(
            &http,
            &url,
            Some(&token),
            "POST",
            "/v1/admin/revoke",
            Some(serde_json::to_value(sesame_proto::admin::RevokeRequest {
                family: Some(pki.family_name.clone()),
                ..Default::default()
            })?),
        )
        .map_err(|e| {
            e.context(format!(
                "cleaning up: revoking the run's family {}",
                pki.family_name
            ))
        })?;
        eprintln!(
            "cleaned up: the run's family {} is revoked on {url} (--keep leaves it enrolled)",
            pki.family_name
        );
    }
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("interrupted: the summary above covers the run until then");
        return Err(Interrupted.into());
    }
    if auths == 0 {
        return Err(Reported("no device authenticated".into()).into());
    }
    if out.error_total() > 0 {
        return Err(Reported(format!(
            "{} errors during the run (by kind in the summary)",
            out.error_total()
        ))
        .into());
    }
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
