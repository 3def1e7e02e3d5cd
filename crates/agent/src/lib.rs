//! `sesame-agent`: what runs on the device's MCU (or Linux board) next to the secure element.
//!
//! It drives the chip with [`sesame_host::Stsafe`] and talks HTTP to the cloud. Login is the
//! seed's seven steps: the certificate read from zone 0 goes up, a challenge comes down, the
//! chip signs the domain-separated digest ([`sesame_pki::protocol`]), the cloud answers with a
//! session token. The private key never leaves the chip; the agent only ever sees digests and
//! signatures.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use serde::Deserialize;
use sesame_host::Stsafe;

/// A `DelayNs` on the operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdDelay;

impl DelayNs for StdDelay {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(ns as u64));
    }
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
        }
    }
}

impl std::error::Error for AgentError {}

fn chip<E: core::fmt::Debug>(e: E) -> AgentError {
    AgentError::Chip(format!("{e:?}"))
}

/// A session token from the cloud.
#[derive(Clone, Debug, Deserialize)]
pub struct Session {
    /// Bearer token.
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The serial the cloud authenticated.
    pub serial: String,
}

#[derive(Deserialize)]
struct ChallengeAnswer {
    challenge_id: String,
    challenge: String,
    identity: String,
}

/// A JSON POST; a 4xx/5xx with the cloud's JSON error becomes [`AgentError::Refused`].
pub fn post_json<T: serde::de::DeserializeOwned>(
    http: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    body: &serde_json::Value,
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
}

impl<I2C: I2c, D: DelayNs> Agent<I2C, D> {
    /// Initializes the chip (A110 check, command table) and reads its certificate from zone 0.
    pub fn new(mut se: Stsafe<I2C, D>, cloud: &str) -> Result<Self, AgentError> {
        se.init().map_err(chip)?;
        let mut buf = vec![0u8; 2048];
        let n = se.read_certificate(0, &mut buf).map_err(chip)?;
        buf.truncate(n);
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
        let digest = sesame_pki::protocol::digest_for_key(message, &self.public_key)
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
        let c: ChallengeAnswer = post_json(
            &self.http,
            &format!("{}/v1/auth/challenge", self.cloud),
            None,
            &serde_json::json!({ "certificate": B64.encode(&self.cert) }),
        )?;
        let challenge = B64
            .decode(&c.challenge)
            .map_err(|e| AgentError::Protocol(e.to_string()))?;
        if challenge.len() != 32 {
            return Err(AgentError::Protocol("challenge is not 32 bytes".into()));
        }
        let message = sesame_pki::protocol::auth_message(&c.identity, &challenge, &self.cert);
        let signature = self.sign_message(&message)?;
        let session: Session = post_json(
            &self.http,
            &format!("{}/v1/auth/response", self.cloud),
            None,
            &serde_json::json!({
                "challenge_id": c.challenge_id,
                "signature": B64.encode(signature),
                "certificate": B64.encode(&self.cert),
            }),
        )?;
        if session.serial != self.serial {
            return Err(AgentError::Protocol(
                "session issued for another serial".into(),
            ));
        }
        Ok(self.session.insert(session))
    }
}
