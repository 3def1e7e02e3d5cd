//! The cloud as an MQTT service: it subscribes (QoS 1) to every device's telemetry topic on a
//! broker and hands each message to the same service method as `POST /v1/telemetry`.
//!
//! [`Service::mqtt_telemetry`] is the adapter: it finds the session the envelope names, refuses
//! a topic whose serial is not the session's, and calls [`Service::ingest_telemetry`], which
//! verifies, replay-checks and stores. [`MqttClient`] is the transport: it connects with the
//! cloud's client certificate, resubscribes on every connection, and acknowledges a message
//! only once its fate is final (stored, already stored, or refused for good), so a message the
//! database could not take is delivered again after a reconnect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sesame_proto::data::{TelemetryAccepted, TelemetryRequest};
use sesame_proto::mqtt::{self, TelemetryPublish};

use crate::access::DeviceSession;
use crate::auth::Reason;
use crate::error::{Failure, Kind};
use crate::service::Service;
use crate::trust::Standing;

/// Largest MQTT packet taken or sent, bytes (a telemetry envelope is well under it).
const PACKET_MAX: usize = 64 * 1024;

impl Service {
    /// A telemetry message published on `topic`: the envelope's session must be live and its
    /// device the topic's serial; then it is ingested exactly as over HTTP.
    pub async fn mqtt_telemetry(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<TelemetryAccepted, Failure> {
        match self.mqtt_adapt(topic, payload).await {
            Ok((dev, request)) => self.ingest_telemetry(&dev, &request).await,
            Err(e) => {
                self.metrics.telemetry_refused(e.code);
                Err(e)
            }
        }
    }

    async fn mqtt_adapt(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<(DeviceSession, TelemetryRequest), Failure> {
        let serial = mqtt::telemetry_serial(topic)
            .ok_or_else(|| Failure::invalid("bad_topic", "not a telemetry topic"))?;
        let envelope: TelemetryPublish = serde_json::from_slice(payload).map_err(|e| {
            Failure::invalid("malformed_request", format!("telemetry envelope: {e}"))
        })?;
        let refused = |r: Reason| Failure::new(Kind::Unauthenticated, r.code(), r.message());
        let dev = match self.session(&envelope.session).await? {
            Some(Ok(row)) => DeviceSession(row),
            Some(Err(Standing::FamilyRevoked)) => return Err(refused(Reason::FamilyRevoked)),
            Some(Err(Standing::Revoked)) => return Err(refused(Reason::Revoked)),
            Some(Err(_)) => return Err(refused(Reason::NotEnrolled)),
            None => {
                return Err(Failure::new(
                    Kind::Unauthenticated,
                    "unauthorized",
                    "no valid session",
                ))
            }
        };
        if dev.serial() != serial {
            let _ = self
                .audit(dev.serial(), "telemetry_refused", "topic_mismatch", serial)
                .await;
            return Err(Failure::new(
                Kind::Unauthenticated,
                "topic_mismatch",
                "the topic names another device than the session's",
            ));
        }
        Ok((dev, envelope.telemetry))
    }
}

/// Where the broker is and how the cloud authenticates to it.
#[derive(Clone, Debug)]
pub struct MqttConfig {
    /// `mqtts://HOST[:PORT]`.
    pub url: String,
    /// The CA certificate(s) the broker's server certificate must chain to (PEM).
    pub ca: PathBuf,
    /// The cloud's client certificate chain (PEM); its CN is the cloud's broker user name.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// MQTT client id: fixed, so that the broker keeps the cloud's session (subscription and
    /// unacknowledged messages) while it is away.
    pub client_id: String,
}

/// What the MQTT adapter did since it started.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Messages stored.
    pub stored: AtomicU64,
    /// Messages already stored (a redelivery or a duplicate): acknowledged, not stored again.
    pub duplicates: AtomicU64,
    /// Messages refused for good, by code (acknowledged: delivering them again changes nothing).
    pub refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Connections to the broker (1 + reconnects).
    pub connections: AtomicU64,
    /// Times the broker granted the telemetry subscription (once per connection).
    pub subscribed: AtomicU64,
}

impl MqttStats {
    /// Messages refused with `code`.
    pub fn refused(&self, code: &str) -> u64 {
        self.refused
            .lock()
            .map_or(0, |m| m.get(code).copied().unwrap_or(0))
    }
}

/// The cloud's MQTT connection, checked and ready to run.
#[derive(Debug)]
pub struct MqttClient {
    options: MqttOptions,
    /// Counters, shared with whoever wants to watch.
    pub stats: Arc<MqttStats>,
}

fn pem_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|i| i.collect())
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no CERTIFICATE block", path.display()));
    }
    Ok(certs)
}

impl MqttClient {
    /// Reads the certificates and key and checks that they go together (nothing connects yet).
    pub fn new(c: &MqttConfig) -> Result<Self, String> {
        let (host, port) = mqtt::broker_address(&c.url)?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in pem_certs(&c.ca, "broker CA")? {
            roots
                .add(ca)
                .map_err(|e| format!("broker CA {}: {e}", c.ca.display()))?;
        }
        let certs = pem_certs(&c.cert, "MQTT client certificate")?;
        let key = PrivateKeyDer::from_pem_file(&c.key)
            .map_err(|e| format!("MQTT client key {}: {e}", c.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| {
                format!(
                    "MQTT client key {} does not go with certificate {}: {e}",
                    c.key.display(),
                    c.cert.display()
                )
            })?;
        if c.client_id.is_empty() || c.client_id.len() > 128 {
            return Err("the MQTT client id must be 1 to 128 characters".into());
        }
        let mut options = MqttOptions::new(c.client_id.clone(), host, port);
        options
            .set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(tls))))
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(PACKET_MAX, PACKET_MAX);
        Ok(Self {
            options,
            stats: Arc::default(),
        })
    }

    /// Takes telemetry from the broker until `shutdown` resolves. Connection failures are
    /// logged and retried (after a second), so a broker restart costs a reconnect, not the
    /// service.
    pub async fn run(
        self,
        service: Arc<Service>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let (client, mut events) = AsyncClient::new(self.options, 64);
        let stats = self.stats;
        // The event loop keeps turning while a message is stored (acknowledgements go out
        // through it); the worker takes messages one at a time, in order, so a device's
        // sequence numbers arrive in the order it sent them and acknowledgements leave in the
        // order MQTT requires. The broker's in-flight window bounds the queue.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Publish>();
        let worker = tokio::spawn({
            let (client, stats) = (client.clone(), stats.clone());
            async move {
                while let Some(p) = rx.recv().await {
                    take(&service, &stats, &client, p).await;
                }
            }
        });
        tokio::pin!(shutdown);
        loop {
            let event = tokio::select! {
                () = &mut shutdown => break,
                e = events.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("MQTT connected; subscribing to {}", mqtt::TELEMETRY_FILTER);
                    // Again on every connection: a broker that lost its state forgot it.
                    if let Err(e) = client.try_subscribe(mqtt::TELEMETRY_FILTER, QoS::AtLeastOnce) {
                        tracing::warn!(error = %e, "MQTT subscribe failed");
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(a))) => {
                    if a.return_codes.iter().all(|c| {
                        matches!(c, rumqttc::SubscribeReasonCode::Success(QoS::AtLeastOnce))
                    }) {
                        stats.subscribed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        tracing::error!(codes = ?a.return_codes, "the broker refused the telemetry subscription");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "MQTT connection lost; retrying");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        // A message being stored now is not acknowledged: the broker delivers it again.
        worker.abort();
        if client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(e) = events.poll().await {
                    if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}

/// Stores one message and acknowledges it once its fate is final.
async fn take(service: &Service, stats: &MqttStats, client: &AsyncClient, p: Publish) {
    let ack = match service.mqtt_telemetry(&p.topic, &p.payload).await {
        Ok(_) => {
            stats.stored.fetch_add(1, Ordering::Relaxed);
            true
        }
        // Already stored (a redelivery or a copy), or older than what is: not again.
        Err(e) if e.code == "replay" => {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(e) if e.kind == Kind::Unavailable => {
            // Not acknowledged: the broker delivers it again after a reconnect.
            tracing::warn!(topic = %p.topic, error = %e.message, "MQTT telemetry not stored");
            false
        }
        Err(e) => {
            tracing::info!(topic = %p.topic, code = e.code, "MQTT telemetry refused");
            if let Ok(mut m) = stats.refused.lock() {
                *m.entry(e.code).or_default() += 1;
            }
            true
        }
    };
    if ack {
        if let Err(e) = client.ack(&p).await {
            tracing::warn!(error = %e, "MQTT acknowledgement failed");
        }
    }
}
