//! Telemetry over MQTT: a connection to the broker whose TLS client identity is the device
//! certificate, the handshake signed by the chip ([`crate::mtls::client_config`]), and QoS 1
//! publishes that return once the broker has acknowledged them.
//!
//! The login (challenge–response and the telemetry key exchange) stays on HTTP; a publish
//! carries the session token beside the same chip-signed, encrypted message as
//! `POST /v1/telemetry` ([`TelemetryPublish`]).

use std::time::{Duration, Instant};

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use rumqttc::{
    Client, Connection, Event, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use sesame_proto::mqtt::{self, TelemetryPublish};

use crate::{Agent, AgentError};

/// How long the broker has to answer a connect or a publish.
const ANSWER: Duration = Duration::from_secs(15);

/// A connection to the broker.
pub struct MqttLink {
    client: Client,
    connection: Connection,
    /// Messages received on subscriptions, oldest first, not yet taken.
    inbox: std::collections::VecDeque<(String, Vec<u8>)>,
}

impl core::fmt::Debug for MqttLink {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MqttLink")
    }
}

fn transport(e: impl core::fmt::Display) -> AgentError {
    AgentError::Transport(format!("MQTT: {e}"))
}

impl MqttLink {
    /// Connects to `url` (`mqtts://HOST[:PORT]`) as `client_id` over `tls` and waits for the
    /// broker to accept the connection.
    pub fn connect(
        url: &str,
        client_id: &str,
        tls: rustls::ClientConfig,
    ) -> Result<Self, AgentError> {
        let (host, port) = mqtt::broker_address(url).map_err(AgentError::Transport)?;
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_transport(Transport::Tls(TlsConfiguration::Rustls(
                std::sync::Arc::new(tls),
            )))
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true);
        let (client, connection) = Client::new(options, 16);
        let mut link = Self {
            client,
            connection,
            inbox: Default::default(),
        };
        link.until(|e| matches!(e, Event::Incoming(Packet::ConnAck(_))))?;
        Ok(link)
    }

    /// Drives the connection until `done` holds for an event; a connection error ends it.
    fn until(&mut self, mut done: impl FnMut(&Event) -> bool) -> Result<(), AgentError> {
        let end = Instant::now() + ANSWER;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.connection.recv_timeout(left) {
                Ok(Ok(e)) => {
                    if let Event::Incoming(Packet::Publish(p)) = &e {
                        self.inbox.push_back((p.topic.clone(), p.payload.to_vec()));
                    }
                    if done(&e) {
                        return Ok(());
                    }
                }
                Ok(Err(e)) => return Err(transport(e)),
                Err(_) => return Err(transport("the broker did not answer in time")),
            }
        }
    }

    /// Publishes `payload` on `topic` with QoS 1 and waits for the broker's acknowledgement.
    /// (A broker that refuses the topic by its ACL may still acknowledge under MQTT 3.1.1:
    /// it drops the message instead of delivering it.)
    pub fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<(), AgentError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(transport)?;
        let mut pkid = None;
        self.until(|e| match e {
            Event::Outgoing(Outgoing::Publish(id)) => {
                pkid = Some(*id);
                false
            }
            Event::Incoming(Packet::PubAck(a)) => Some(a.pkid) == pkid,
            _ => false,
        })
    }

    /// The next message received on a subscription (topic, payload), waiting for one.
    pub fn next_message(&mut self) -> Result<(String, Vec<u8>), AgentError> {
        if self.inbox.is_empty() {
            self.until(|e| matches!(e, Event::Incoming(Packet::Publish(_))))?;
        }
        self.inbox
            .pop_front()
            .ok_or_else(|| transport("no message"))
    }

    /// Subscribes to `filter` with QoS 1; `Ok(false)` if the broker refuses it (e.g. its ACL).
    pub fn subscribe(&mut self, filter: &str) -> Result<bool, AgentError> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .map_err(transport)?;
        let mut granted = false;
        self.until(|e| match e {
            Event::Incoming(Packet::SubAck(a)) => {
                granted = a
                    .return_codes
                    .iter()
                    .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)));
                true
            }
            _ => false,
        })?;
        Ok(granted)
    }

    /// Says goodbye to the broker.
    pub fn disconnect(mut self) -> Result<(), AgentError> {
        self.client.disconnect().map_err(transport)?;
        self.until(|e| matches!(e, Event::Outgoing(Outgoing::Disconnect)))
    }
}

impl<I2C: I2c, D: DelayNs> Agent<I2C, D> {
    /// A telemetry publish for `payload`: the message of [`Agent::telemetry_body`] with the
    /// session token.
    pub fn telemetry_publish(&mut self, payload: &[u8]) -> Result<TelemetryPublish, AgentError> {
        let session = self
            .session()
            .map(|s| s.token.clone())
            .ok_or_else(|| AgentError::Protocol("not logged in".into()))?;
        Ok(TelemetryPublish {
            session,
            telemetry: self.telemetry_body(payload)?,
        })
    }

    /// Encrypts, signs and publishes one telemetry payload on this device's topic; returns its
    /// sequence number once the broker has it.
    pub fn publish_telemetry(
        &mut self,
        link: &mut MqttLink,
        payload: &[u8],
    ) -> Result<u64, AgentError> {
        let p = self.telemetry_publish(payload)?;
        let seq = p.telemetry.seq;
        let body = serde_json::to_vec(&p).map_err(|e| AgentError::Protocol(e.to_string()))?;
        link.publish(&mqtt::telemetry_topic(self.serial()), body)?;
        Ok(seq)
    }
}
