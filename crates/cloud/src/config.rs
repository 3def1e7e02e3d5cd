//! Service configuration: a TOML file, then `SESAME_CLOUD_*` environment overrides.

use serde::Deserialize;

/// Everything the service needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`.
    pub db: String,
    /// Listen address.
    pub listen: String,
    /// Bearer token of the operator API.
    pub admin_token: String,
    /// The cloud's name, bound into every authentication signature.
    pub identity: String,
    /// Challenge lifetime, seconds.
    pub challenge_ttl: i64,
    /// Session token lifetime, seconds.
    pub session_ttl: i64,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Failures per device within `rate_window` before it is throttled.
    pub max_failures: i64,
    /// Challenges per device within `rate_window` before it is throttled.
    pub max_challenges: i64,
    /// Rate window, seconds.
    pub rate_window: i64,
    /// The cloud's command-signing key (PKCS#8 PEM, P-256), made by `sesame factory init`:
    /// signs commands and the cloud's ECDH key. Without it, no commands and no encrypted telemetry.
    pub command_key: Option<String>,
    /// TLS certificate chain (PEM); TLS is on when both this and `tls_key` are set.
    pub tls_cert: Option<String>,
    /// TLS private key (PEM).
    pub tls_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            db: "sqlite://sesame-cloud.db".into(),
            listen: "127.0.0.1:8443".into(),
            admin_token: String::new(),
            identity: "sesame-cloud".into(),
            challenge_ttl: 30,
            session_ttl: 900,
            body_limit: 64 * 1024,
            max_failures: 5,
            max_challenges: 60,
            rate_window: 60,
            command_key: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Config {
    /// Reads a TOML file (if given) and applies `SESAME_CLOUD_DB`, `_LISTEN`, `_ADMIN_TOKEN`,
    /// `_IDENTITY`, `_TLS_CERT`, `_TLS_KEY`.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, String> {
        let mut c: Config = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => Config::default(),
        };
        let env = |k: &str| std::env::var(format!("SESAME_CLOUD_{k}")).ok();
        if let Some(v) = env("DB") {
            c.db = v;
        }
        if let Some(v) = env("LISTEN") {
            c.listen = v;
        }
        if let Some(v) = env("ADMIN_TOKEN") {
            c.admin_token = v;
        }
        if let Some(v) = env("IDENTITY") {
            c.identity = v;
        }
        if let Some(v) = env("COMMAND_KEY") {
            c.command_key = Some(v);
        }
        if let Some(v) = env("TLS_CERT") {
            c.tls_cert = Some(v);
        }
        if let Some(v) = env("TLS_KEY") {
            c.tls_key = Some(v);
        }
        c.validate()?;
        Ok(c)
    }

    /// Refuses settings that would make the service unsafe.
    pub fn validate(&self) -> Result<(), String> {
        if self.admin_token.len() < 16 {
            return Err("admin_token must be set (at least 16 characters)".into());
        }
        if self.challenge_ttl <= 0 || self.session_ttl <= 0 || self.rate_window <= 0 {
            return Err("lifetimes must be positive".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        Ok(())
    }
}
