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
    /// Refused authentication attempts per client address (IPv6: per /64) within
    /// `rate_window` before that address is throttled (429). Nothing a caller sends can throttle
    /// a named device.
    pub max_refusals_per_client: u32,
    /// Verified logins per device within `rate_window` before the device is throttled.
    pub max_logins_per_device: u32,
    /// Rate window, seconds.
    pub rate_window: i64,
    /// Audit rows older than this many days are deleted (0 keeps them forever).
    pub audit_retention_days: i64,
    /// Seconds between retention runs (expired sessions, challenges, codes; old audit rows;
    /// aggregated refusals written to the audit log).
    pub housekeeping_secs: u64,
    /// The firmware-signing public key (PEM, P-256 SPKI, `fab/firmware.pub.pem`): a release is
    /// accepted only if its manifest verifies under it. Without it, no release can be published.
    pub firmware_key: Option<String>,
    /// Largest firmware image accepted, bytes.
    pub firmware_limit: usize,
    /// Seconds a client has to send a request's headers (also the TLS handshake, and the
    /// longest a kept-alive connection may wait for its next request).
    pub header_timeout_secs: u64,
    /// Seconds a request (body included) has to complete; slower ones get 408.
    pub request_timeout_secs: u64,
    /// Seconds a connection may stay open with no bytes moving either way.
    pub idle_timeout_secs: u64,
    /// Most connections served at once (0: derived from the open-file limit); past it, new
    /// connections wait in the listen backlog.
    pub max_connections: usize,
    /// The cloud's command-signing key (PKCS#8 PEM, P-256), made by `sesame factory init`:
    /// signs commands and the cloud's ECDH key. Without it, no commands and no encrypted telemetry.
    pub command_key: Option<String>,
    /// The keys that wrap session telemetry keys at rest: a file of 32-byte keys in hex, one
    /// per line, the first one current, the others still accepted (rotation). Independent of
    /// the command key; without it, the wrapping key is derived from the command key.
    pub session_keys: Option<String>,
    /// Also take device telemetry from this MQTT broker: `mqtts://HOST[:PORT]` (with
    /// `mqtt_ca`, `mqtt_cert`, `mqtt_key`; `cloud serve --mqtt` and its options override).
    pub mqtt: Option<String>,
    /// CA certificate(s), PEM, that the broker's server certificate chains to.
    pub mqtt_ca: Option<String>,
    /// The cloud's client certificate for the broker, PEM.
    pub mqtt_cert: Option<String>,
    /// Its private key, PEM.
    pub mqtt_key: Option<String>,
    /// MQTT client id (default: the identity); keep it fixed.
    pub mqtt_client_id: Option<String>,
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
            max_refusals_per_client: 30,
            max_logins_per_device: 30,
            rate_window: 60,
            audit_retention_days: 365,
            housekeeping_secs: 60,
            firmware_key: None,
            firmware_limit: 64 * 1024 * 1024,
            header_timeout_secs: 10,
            request_timeout_secs: 60,
            idle_timeout_secs: 60,
            max_connections: 0,
            command_key: None,
            session_keys: None,
            mqtt: None,
            mqtt_ca: None,
            mqtt_cert: None,
            mqtt_key: None,
            mqtt_client_id: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Config {
    /// Reads a TOML file (if given) and applies `SESAME_CLOUD_DB`, `_LISTEN`, `_ADMIN_TOKEN`,
    /// `_IDENTITY`, `_COMMAND_KEY`, `_SESSION_KEYS`, `_FIRMWARE_KEY`, `_TLS_CERT`, `_TLS_KEY`.
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
        if let Some(v) = env("SESSION_KEYS") {
            c.session_keys = Some(v);
        }
        if let Some(v) = env("FIRMWARE_KEY") {
            c.firmware_key = Some(v);
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
        if self.header_timeout_secs == 0
            || self.request_timeout_secs == 0
            || self.idle_timeout_secs == 0
        {
            return Err("timeouts must be positive".into());
        }
        if self.max_refusals_per_client == 0 || self.max_logins_per_device == 0 {
            return Err("rate limits must be positive".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        if self.mqtt.is_some()
            && (self.mqtt_ca.is_none() || self.mqtt_cert.is_none() || self.mqtt_key.is_none())
        {
            return Err("mqtt needs mqtt_ca, mqtt_cert and mqtt_key".into());
        }
        Ok(())
    }
}
