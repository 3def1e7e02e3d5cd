//! `sesame cloud serve`: checks what it can before opening anything, then runs the service over
//! HTTP or HTTPS (and MQTT when a broker is given) until Ctrl-C or SIGTERM, then drains.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

/// `cloud serve` options that override the configuration file.
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub db: Option<String>,
    pub listen: Option<String>,
    pub command_key: Option<PathBuf>,
    pub firmware_key: Option<PathBuf>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub mqtt: crate::mqtt_cmd::MqttArgs,
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM). The SIGTERM handler is
/// installed by this call, not at the first poll, so a SIGTERM right after the startup line
/// drains the service instead of killing it.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let term = async {
            match term {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    }
}

pub fn serve(a: ServeArgs) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .json()
        .try_init();
    if let Some(c) = &a.config {
        crate::files::text(c, "a TOML configuration such as cloud.example.toml")?;
    }
    let mut cfg = sesame_cloud::Config::load(a.config.as_deref())
        .map_err(|e| anyhow!("configuration: {e}"))?;
    if let Some(d) = a.db {
        cfg.db = d;
    }
    if let Some(l) = a.listen {
        cfg.listen = l;
    }
    if let Some(k) = a.command_key {
        cfg.command_key = Some(k.display().to_string());
    }
    if let Some(k) = a.firmware_key {
        cfg.firmware_key = Some(k.display().to_string());
    }
    if let Some((c, k)) = a.tls {
        cfg.tls_cert = Some(c.display().to_string());
        cfg.tls_key = Some(k.display().to_string());
    }
    // Everything that can be checked before opening anything, so a mistake is named at once.
    if let Some(k) = &cfg.command_key {
        crate::serve_check::command_key(k)?;
    }
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => {
            crate::serve_check::tls(c, k)?;
            Some(sesame_cloud::tls_config(Path::new(c), Path::new(k)).map_err(|e| anyhow!(e))?)
        }
        _ => None,
    };
    crate::serve_check::database(&cfg.db)?;
    let mqtt = a.mqtt.client(&cfg)?;
    let (command_path, firmware_path) = (cfg.command_key.clone(), cfg.firmware_key.clone());
    let db_name = redact(&cfg.db);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listen = cfg.listen.clone();
        let db = cfg.db.clone();
        let service =
            tokio::time::timeout(crate::serve_check::DB_CONNECT * 2, sesame_cloud::build(cfg))
                .await
                .map_err(|_| {
                    anyhow!(
                        "database {db_name} did not answer within {} s",
                        (crate::serve_check::DB_CONNECT * 2).as_secs()
                    )
                })?
                .map_err(|e| {
                    anyhow!(
                        "database {}: {}",
                        redact(&db),
                        e.to_string().trim_start_matches("database: ")
                    )
                })?;
        let l = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = l.local_addr()?;
        let (scheme, on) = if tls.is_some() { ("https", "on") } else { ("http", "off") };
        // The fingerprints are of the keys as loaded, the ones `/v1/info` publishes.
        let info = service.info();
        let command = match (&command_path, &info.command_key) {
            (Some(k), Some(pk)) => format!(
                "command key loaded, sha256 {} ({k}): commands and encrypted telemetry on",
                pk.sha256
            ),
            _ => "no command key: no commands, no encrypted telemetry (--command-key FILE)".into(),
        };
        let firmware = match (&firmware_path, &info.firmware_key_sha256) {
            (Some(k), Some(h)) => format!("firmware key sha256 {h} ({k}): releases verified"),
            _ => "no firmware key: no releases (--firmware-key FILE)".into(),
        };
        let (stop, mqtt_stop) = (stop_signal(), stop_signal());
        let broker = mqtt.as_ref().map_or_else(String::new, |(u, _)| format!("; telemetry also from MQTT {u}"));
        eprintln!(
            "sesame cloud on {scheme}://{addr} (TLS {on}; database {db_name}; {command}; {firmware}{broker})"
        );
        let mqtt = mqtt.map(|(_, m)| tokio::spawn(m.run(service.clone(), mqtt_stop)));
        match tls {
            Some(tls) => sesame_cloud::serve_tls(service, l, tls, stop).await?,
            None => sesame_cloud::serve(service, l, stop).await?,
        }
        if let Some(m) = mqtt {
            // Stopped by the same signal; it leaves the broker cleanly.
            let _ = m.await;
        }
        Ok(())
    })
}

/// A database URL without its password, for messages.
fn redact(db: &str) -> String {
    match url::Url::parse(db) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => db.to_string(),
    }
}
