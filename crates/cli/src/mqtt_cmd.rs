//! `cloud serve --mqtt …`: the options that make the cloud take device telemetry from an MQTT
//! broker as well as over HTTP.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use sesame_cloud::mqtt::{MqttClient, MqttConfig};

/// The broker and the cloud's credentials for it.
#[derive(Args, Debug, Default)]
pub struct MqttArgs {
    /// Also take device telemetry from this MQTT broker: mqtts://HOST[:PORT] (port 8883 by
    /// default). The cloud subscribes to sesame/v1/devices/+/telemetry with QoS 1.
    #[arg(long, value_name = "URL", requires_all = ["mqtt_ca", "mqtt_cert", "mqtt_key"])]
    pub mqtt: Option<String>,
    /// CA certificate(s), PEM, that the broker's server certificate chains to.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_ca: Option<PathBuf>,
    /// The cloud's client certificate for the broker, PEM (its CN is the cloud's user name in
    /// the broker's ACL).
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_cert: Option<PathBuf>,
    /// The private key of --mqtt-cert, PEM.
    #[arg(long, value_name = "FILE", requires = "mqtt")]
    pub mqtt_key: Option<PathBuf>,
    /// MQTT client id (default: the cloud's identity). Keep it fixed: the broker holds the
    /// cloud's unacknowledged messages under it while the cloud is away.
    #[arg(long, value_name = "ID", requires = "mqtt")]
    pub mqtt_client_id: Option<String>,
}

impl MqttArgs {
    /// The checked client (certificates read, key matched), if a broker is given: by these
    /// options, or else by the configuration file's `mqtt*` keys.
    pub fn client(self, cfg: &sesame_cloud::Config) -> Result<Option<(String, MqttClient)>> {
        let from_file = |v: &Option<String>| v.as_ref().map(PathBuf::from);
        let (url, ca, cert, key) = match self.mqtt {
            Some(url) => (url, self.mqtt_ca, self.mqtt_cert, self.mqtt_key),
            None => match &cfg.mqtt {
                Some(url) => (
                    url.clone(),
                    from_file(&cfg.mqtt_ca),
                    from_file(&cfg.mqtt_cert),
                    from_file(&cfg.mqtt_key),
                ),
                None => return Ok(None),
            },
        };
        let (Some(ca), Some(cert), Some(key)) = (ca, cert, key) else {
            return Err(anyhow!(
                "{url}: the broker needs --mqtt-ca, --mqtt-cert and --mqtt-key (or mqtt_ca, mqtt_cert, mqtt_key in the configuration file)"
            ));
        };
        let config = MqttConfig {
            url: url.clone(),
            ca,
            cert,
            key,
            client_id: self
                .mqtt_client_id
                .or_else(|| cfg.mqtt_client_id.clone())
                .unwrap_or_else(|| cfg.identity.clone()),
        };
        let client = MqttClient::new(&config).map_err(|e| anyhow!("--mqtt: {e}"))?;
        Ok(Some((url, client)))
    }
}
