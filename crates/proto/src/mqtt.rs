//! Telemetry over MQTT: the topics, the broker URL, and the envelope a device publishes.
//!
//! A device publishes to `sesame/v1/devices/{serial}/telemetry` (QoS 1) the same chip-signed,
//! encrypted [`TelemetryRequest`] it would `POST /v1/telemetry`, wrapped with the session token
//! it got from the HTTP login (the challenge–response and the telemetry key exchange stay on
//! HTTP). The broker lets a device use only topics under its own serial; the cloud checks again
//! that the topic's serial is the session's.

use serde::{Deserialize, Serialize};

use crate::data::TelemetryRequest;

/// Every sesame topic starts with this.
pub const TOPIC_ROOT: &str = "sesame/v1/devices/";
/// What the cloud subscribes to: every device's telemetry.
pub const TELEMETRY_FILTER: &str = "sesame/v1/devices/+/telemetry";
/// Port of MQTT over TLS when the URL names none.
pub const DEFAULT_PORT: u16 = 8883;

/// The telemetry topic of `serial`.
pub fn telemetry_topic(serial: &str) -> String {
    format!("{TOPIC_ROOT}{serial}/telemetry")
}

/// The serial of a telemetry topic, if `topic` is one (one non-empty level, no wildcard).
pub fn telemetry_serial(topic: &str) -> Option<&str> {
    let serial = topic.strip_prefix(TOPIC_ROOT)?.strip_suffix("/telemetry")?;
    let bad = serial.is_empty() || serial.contains(['/', '+', '#', '\0']);
    (!bad).then_some(serial)
}

/// The payload of a telemetry publish.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryPublish {
    /// The session token from the device's HTTP login (its telemetry key belongs to it).
    pub session: String,
    /// The message, exactly as `POST /v1/telemetry` takes it.
    pub telemetry: TelemetryRequest,
}

/// Host and port of an `mqtts://HOST[:PORT]` URL (only TLS: devices and the cloud authenticate
/// to the broker with certificates).
pub fn broker_address(url: &str) -> Result<(String, u16), String> {
    let bad = || format!("{url}: the broker URL must be mqtts://HOST[:PORT]");
    let rest = url.strip_prefix("mqtts://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (h, None),
                _ => (h, Some(after.strip_prefix(':').ok_or_else(bad)?)),
            }
        }
        None => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#', '[', ']']) {
        return Err(bad());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{url}: bad port {p:?}"))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(telemetry_topic("02AB"), "sesame/v1/devices/02AB/telemetry");
        assert_eq!(
            telemetry_serial("sesame/v1/devices/02AB/telemetry"),
            Some("02AB")
        );
        for bad in [
            "sesame/v1/devices//telemetry",
            "sesame/v1/devices/a/b/telemetry",
            "sesame/v1/devices/+/telemetry",
            "sesame/v1/devices/02AB/commands",
            "other/02AB/telemetry",
        ] {
            assert_eq!(telemetry_serial(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            broker_address("mqtts://localhost:8884").unwrap(),
            ("localhost".into(), 8884)
        );
        assert_eq!(
            broker_address("mqtts://broker.example").unwrap(),
            ("broker.example".into(), DEFAULT_PORT)
        );
        assert_eq!(
            broker_address("mqtts://[::1]:1").unwrap(),
            ("::1".into(), 1)
        );
        assert_eq!(
            broker_address("mqtts://[::1]").unwrap(),
            ("::1".into(), DEFAULT_PORT)
        );
        for bad in [
            "mqtt://h:1",
            "mqtts://",
            "mqtts://h:0",
            "mqtts://h:x",
            "mqtts://u@h",
            "mqtts://[::1]x",
        ] {
            assert!(broker_address(bad).is_err(), "{bad}");
        }
    }
}
