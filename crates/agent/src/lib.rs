//! `sesame-agent`: what runs on the device's MCU (or Linux board) next to the secure element.
//!
//! It drives the chip with [`sesame_host::Stsafe`] and talks HTTP to the cloud. Login is the
//! seed's seven steps: the certificate read from zone 0 goes up, a challenge comes down, the
//! chip signs the domain-separated digest ([`sesame_proto::messages`]), the cloud answers with a
//! session token. The private key never leaves the chip; the agent only ever sees digests and
//! signatures.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod data;
pub mod layout;
pub mod mqtt;
pub mod mtls;
pub mod pin;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_host::Stsafe;

/// A `DelayNs` on the operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDelay;

impl DelayNs for StdDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(ns as u64));
    }
}

/// The chip on the bus `bus` names (`127.0.0.1:PORT`, `unix:PATH`, `/dev/i2c-N[:ADDR]`), at
/// the address the string gives or `address` (default 0x20): what an agent on a Linux board
/// passes to [`Agent::new`].
pub fn open_chip(
    bus: &str,
    address: Option<u8>,
) -> Result<Stsafe<sesame_host::bus::AnyBus, StdDelay>, AgentError> {
    let target: sesame_host::bus::BusTarget =
        bus.parse().map_err(|e| AgentError::Chip(format!("{e}")))?;
    let address = target
        .resolve_address(address)
        .map_err(|e| AgentError::Chip(format!("{e}")))?;
    let i2c = target.open().map_err(|e| AgentError::Chip(e.to_string()))?;
    Ok(Stsafe::new(i2c, StdDelay, address))
}

/// Why an agent operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum AgentError {
    /// The secure element failed or refused.
    Chip(String),
    /// The cloud refused, with its status and reason code.
    Refused {
        /// HTTP status.
        status: u16,
        /// The cloud's reason code.
        code: String,
        /// The cloud's message.
        message: String,
    },
    /// The cloud could not be reached.
    Transport(String),
    /// The cloud's answer did not make sense.
    Protocol(String),
    /// A state-changing command was sent but its answer was lost or damaged: it may have run.
    /// The string says what may have changed.
    OutcomeUnknown(&'static str),
    /// The cloud's command key does not match the pinned fingerprint, or it has none.
    Pin(pin::PinError),
}

impl core::fmt::Display for AgentError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Chip(e) => write!(f, "secure element: {e}"),
            Self::Refused {
                status,
                code,
                message,
            } => write!(f, "cloud refused ({status} {code}): {message}"),
            Self::Transport(e) => write!(f, "cannot reach the cloud: {e}"),
            Self::Protocol(e) => write!(f, "unexpected answer from the cloud: {e}"),
            Self::OutcomeUnknown(what) => {
                write!(f, "outcome unknown: {what}; read it before retrying")
            }
            Self::Pin(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AgentError {}

pub(crate) fn chip<E: core::fmt::Debug>(e: E) -> AgentError {
    AgentError::Chip(format!("{e:?}"))
}

/// The error of a Decrement: an unknown outcome is not a failure.
pub(crate) fn decrement_error<E: core::fmt::Debug>(e: sesame_host::Error<E>) -> AgentError {
    if e.outcome_unknown() {
        AgentError::OutcomeUnknown("the counter may have been decremented")
    } else {
        chip(e)
    }
}

/// Re-reads of a corrupted response before the agent gives up on it (the chip keeps its answer
/// readable, so a re-read never runs a command twice).
pub const CRC_REREADS: u8 = 3;

use sesame_proto::auth::{Challenge, ChallengeRequest, EcdhOffer, ResponseRequest};
pub use sesame_proto::auth::{CloudEcdh, Session};

/// A JSON POST; a 4xx/5xx with the cloud's JSON error becomes [`AgentError::Refused`].
pub fn post_json<T: serde::de::DeserializeOwned, B: serde::Serialize + ?Sized>(
    http: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    body: &B,
) -> Result<T, AgentError> {
    let mut req = http.post(url);
    if let Some(t) = token {
        req = req.set("authorization", &format!("Bearer {t}"));
    }
    match req.send_json(body) {
        Ok(rsp) => rsp
            .into_json()
            .map_err(|e| AgentError::Protocol(e.to_string())),
        Err(ureq::Error::Status(status, rsp)) => {
            let v: serde_json::Value = rsp.into_json().unwrap_or_default();
            Err(AgentError::Refused {
                status,
                code: v["error"].as_str().unwrap_or("unknown").to_string(),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            })
        }
        Err(e) => Err(AgentError::Transport(e.to_string())),
    }
}

/// The device agent.
pub struct Agent<I2C, D> {
    se: Stsafe<I2C, D>,
    http: ureq::Agent,
    cloud: String,
    cert: Vec<u8>,
    public_key: Vec<u8>,
    serial: String,
    session: Option<Session>,
    identity: String,
    telemetry_key: Option<[u8; 32]>,
    telemetry_seq: u64,
}

impl<I2C: I2c, D: DelayNs> Agent<I2C, D> {
    /// Initializes the chip (A110 check, command table) and reads its certificate from zone 0.
    pub fn new(mut se: Stsafe<I2C, D>, cloud: &str) -> Result<Self, AgentError> {
        // A response that fails its CRC is read again (unless the caller chose otherwise).
        if se.config().crc_rereads == 0 {
            let mut config = se.config();
            config.crc_rereads = CRC_REREADS;
            se.set_config(config);
        }
        se.init().map_err(chip)?;
        let mut buf = vec![0u8; 2048];
        let n = se.read_certificate(0, &mut buf).map_err(chip)?;
        buf.truncate(n);
        // Kept for the agent's life: a fleet simulation holds 100,000 of them.
        buf.shrink_to_fit();
        let id = sesame_pki::device_identity(&buf)
            .map_err(|e| AgentError::Chip(format!("zone 0 certificate: {e}")))?;
        let http = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(15))
            .build();
        Ok(Self {
            se,
            http,
            cloud: cloud.trim_end_matches('/').to_string(),
            cert: buf,
            public_key: id.public_key,
            serial: id.serial,
            session: None,
            identity: String::new(),
            telemetry_key: None,
            telemetry_seq: 0,
        })
    }

    /// The device's serial (certificate CN).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The device certificate (DER).
    pub fn certificate(&self) -> &[u8] {
        &self.cert
    }

    /// The secure element.
    pub fn chip(&mut self) -> &mut Stsafe<I2C, D> {
        &mut self.se
    }

    /// The HTTP client and the cloud's base URL.
    pub fn http(&self) -> (&ureq::Agent, &str) {
        (&self.http, &self.cloud)
    }

    /// The current session, if logged in.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Has the chip sign `message`'s digest (SHA-256 or SHA-384, by key size) with slot 0.
    pub fn sign_message(&mut self, message: &[u8]) -> Result<Vec<u8>, AgentError> {
        let digest = sesame_proto::messages::digest_for_key(message, &self.public_key)
            .ok_or_else(|| AgentError::Chip("slot 0 key is neither P-256 nor P-384".into()))?;
        Ok(self
            .se
            .generate_signature(0, &digest)
            .map_err(chip)?
            .rs()
            .to_vec())
    }

    /// The seven steps: certificate up, challenge down, chip signature up, session down.
    pub fn login(&mut self) -> Result<&Session, AgentError> {
        let c: Challenge = post_json(
            &self.http,
            &format!("{}/v1/auth/challenge", self.cloud),
            None,
            &ChallengeRequest {
                certificate: self.cert.clone(),
                chain: Vec::new(),
            },
        )?;
        let challenge = B64
            .decode(&c.challenge)
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        if challenge.len() != 32 {
            return Err(AgentError::Protocol("challenge is not 32 bytes".into()));
        }
        let message = sesame_proto::messages::auth_message(&c.identity, &challenge, &self.cert);
        let signature = self.sign_message(&message)?;
        // The telemetry key exchange rides along: a fresh single-use key in slot 0xFF, signed
        // with slot 0 so the cloud knows it is this chip's.
        let eph = self
            .se
            .generate_private_key(0xFF, sesame_host::Curve::P256, 1)
            .map_err(chip)?;
        let eph_sec1 = [&[0x04u8][..], eph.xy()].concat();
        let eph_sig = self.sign_message(&sesame_proto::messages::ecdh_device_message(
            &c.identity,
            &challenge,
            &eph_sec1,
        ))?;
        let session: Session = post_json(
            &self.http,
            &format!("{}/v1/auth/response", self.cloud),
            None,
            &ResponseRequest {
                challenge_id: c.challenge_id.clone(),
                signature,
                certificate: Some(self.cert.clone()),
                ecdh: Some(EcdhOffer {
                    public: hex::encode(&eph_sec1),
                    signature: B64.encode(eph_sig),
                }),
            },
        )?;
        if session.serial != self.serial {
            return Err(AgentError::Protocol(
                "session issued for another serial".into(),
            ));
        }
        self.identity = c.identity.clone();
        self.telemetry_key = match &session.ecdh {
            Some(e) => Some(self.finish_key_exchange(e, &eph_sec1, &challenge)?),
            None => None,
        };
        // Sequence numbers only go up: start above anything sent before (seconds-based).
        self.telemetry_seq = self.telemetry_seq.max(
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64))
                << 8,
        );
        Ok(self.session.insert(session))
    }
}

impl<I2C: I2c, D: DelayNs> Agent<I2C, D> {
    /// Checks the cloud's ECDH key against the command key in the chip, then has the chip
    /// compute the shared secret with its ephemeral key.
    fn finish_key_exchange(
        &mut self,
        e: &CloudEcdh,
        eph: &[u8],
        challenge: &[u8],
    ) -> Result<[u8; 32], AgentError> {
        let cloud =
            hex::decode(&e.public).map_err(|_| AgentError::Protocol("bad ECDH key".into()))?;
        let sig = B64
            .decode(&e.signature)
            .map_err(|_| AgentError::Protocol("bad ECDH signature".into()))?;
        let m =
            sesame_proto::messages::ecdh_cloud_message(&self.identity, &self.serial, eph, &cloud);
        if !self.chip_verifies(layout::COMMAND_KEY, &m, &sig)? {
            return Err(AgentError::Protocol(
                "the cloud's ECDH key is not signed by the command key in the chip".into(),
            ));
        }
        let peer = cloud
            .get(1..)
            .and_then(|xy| sesame_host::EccPublicKey::from_xy(sesame_host::Curve::P256, xy))
            .ok_or_else(|| AgentError::Protocol("bad ECDH key".into()))?;
        let secret = self.se.establish_key(0xFF, &peer).map_err(chip)?;
        Ok(sesame_proto::messages::telemetry_key(
            secret.as_bytes(),
            challenge,
            &self.serial,
        ))
    }
}

impl<I2C, D> Agent<I2C, D> {
    /// Replaces the HTTP client, e.g. with one shared by many simulated devices so they share
    /// one connection pool (a fleet simulation cannot hold one socket per device).
    pub fn set_http(&mut self, http: ureq::Agent) {
        self.http = http;
    }
}
