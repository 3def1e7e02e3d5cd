//! The authentication and enrollment logic, independent of HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Digest;

use crate::auth::{self, Reason};
use crate::metrics::Metrics;
use crate::store::{AuditRow, ChallengeRow, FamilyRow, Store, StoreError};
use crate::Config;

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Shared state of one cloud instance.
#[derive(Debug)]
pub struct Service {
    /// Configuration.
    pub config: Config,
    /// Database.
    pub store: Store,
    /// Metrics.
    pub metrics: Metrics,
    rng: SystemRandom,
    /// Chain checks already done: leaf fingerprint → family fingerprint. A chain check costs
    /// two signature verifications; revocation is still checked on every request.
    chains: Mutex<HashMap<String, String>>,
}

/// A certificate that passed every check.
pub struct Accepted {
    /// Fingerprint.
    pub fingerprint: String,
    /// Serial.
    pub serial: String,
    /// SEC1 public key.
    pub public_key: Vec<u8>,
    /// Family fingerprint, empty for an individually enrolled device.
    pub family: String,
}

/// What the device gets back for a challenge request.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Challenge {
    /// Identifier to answer with.
    pub challenge_id: String,
    /// 32 random bytes, base64.
    pub challenge: String,
    /// Unix seconds after which the challenge is refused.
    pub expires_at: i64,
    /// The identity bound into the message.
    pub identity: String,
}

/// A session after a successful authentication.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Session {
    /// Bearer token (stored by the cloud only as a hash).
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The device's serial.
    pub serial: String,
}

/// A refusal, or a storage failure.
pub enum Refusal {
    /// Refused with a reason.
    Auth(Reason),
    /// The database failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<Reason> for Refusal {
    fn from(r: Reason) -> Self {
        Self::Auth(r)
    }
}

fn fingerprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

impl Service {
    /// A service over an open store.
    pub fn new(config: Config, store: Store) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            metrics: Metrics::default(),
            rng: SystemRandom::new(),
            chains: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn random(&self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        // The OS generator does not fail on Linux; an all-zero value would be caught nowhere,
        // so treat a failure as fatal for this request by returning an empty value.
        if self.rng.fill(&mut v).is_err() {
            v.clear();
        }
        v
    }

    pub(crate) async fn audit(
        &self,
        serial: &str,
        event: &str,
        reason: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.store
            .audit(&AuditRow {
                at: now(),
                serial: serial.into(),
                event: event.into(),
                reason: reason.into(),
                detail: detail.into(),
            })
            .await
    }

    /// Checks a device certificate: enrolled family path (or exact enrolled certificate),
    /// revocation, validity and key usage.
    pub async fn check_certificate(&self, der: &[u8]) -> Result<Accepted, Refusal> {
        let id = sesame_pki::device_identity(der).map_err(|_| Reason::MalformedCertificate)?;
        let fp = fingerprint(der);
        if self.store.is_revoked(&id.serial, &fp).await? {
            return Err(Reason::Revoked.into());
        }
        let families = self.store.families().await?;
        let cached = self.chains.lock().ok().and_then(|c| c.get(&fp).cloned());
        let family = match cached.and_then(|f| families.iter().find(|x| x.fingerprint == f)) {
            Some(f) => Some(f.clone()),
            None => self.find_family(der, &fp, &families).await?,
        };
        match family {
            Some(f) if f.revoked => Err(Reason::FamilyRevoked.into()),
            Some(f) => Ok(Accepted {
                fingerprint: fp,
                serial: id.serial,
                public_key: id.public_key,
                family: f.fingerprint,
            }),
            None => match self.store.enrolled_device(&fp).await? {
                Some(d) if d.revoked => Err(Reason::Revoked.into()),
                Some(_) => {
                    sesame_pki::check_validity(der, now() as u64).map_err(|_| Reason::Expired)?;
                    Ok(Accepted {
                        fingerprint: fp,
                        serial: id.serial,
                        public_key: id.public_key,
                        family: String::new(),
                    })
                }
                None => Err(Reason::NotEnrolled.into()),
            },
        }
    }

    async fn find_family(
        &self,
        der: &[u8],
        fp: &str,
        families: &[FamilyRow],
    ) -> Result<Option<FamilyRow>, Refusal> {
        let mut refusal = None;
        let t = now() as u64;
        for f in families {
            let Ok(fder) = B64.decode(&f.der) else {
                continue;
            };
            // The family CA is the anchor: the device must be issued by it, not merely by
            // something under the same root. The family itself was checked against its root
            // when it was enrolled; its own validity is checked here.
            match sesame_pki::verify_device(der, &[], std::slice::from_ref(&fder), t) {
                Ok(_) => {
                    sesame_pki::check_validity(&fder, t).map_err(|_| Reason::Expired)?;
                    if let Ok(mut c) = self.chains.lock() {
                        c.insert(fp.to_string(), f.fingerprint.clone());
                    }
                    return Ok(Some(f.clone()));
                }
                Err(sesame_pki::VerifyError::Expired) => refusal = Some(Reason::Expired),
                Err(sesame_pki::VerifyError::WrongUsage) => refusal = Some(Reason::WrongKeyUsage),
                Err(_) => {}
            }
        }
        match refusal {
            Some(r) => Err(r.into()),
            None => Ok(None),
        }
    }

    /// Steps 1–3: certificate in, challenge out.
    pub async fn challenge(&self, der: &[u8]) -> Result<Challenge, Refusal> {
        let ok = self.check_certificate(der).await?;
        let c = &self.config;
        let t = now();
        if self
            .store
            .rate(&format!("fail:{}", ok.serial), t, c.rate_window)
            .await?
            >= c.max_failures
            || self
                .store
                .bump(&format!("chal:{}", ok.serial), t, c.rate_window)
                .await?
                > c.max_challenges
        {
            return Err(Reason::Throttled.into());
        }
        let challenge = self.random(32);
        let id = hex::encode(self.random(16));
        if challenge.len() != 32 || id.len() != 32 {
            return Err(Refusal::Store(StoreError("random generator failed".into())));
        }
        let expires = t + c.challenge_ttl;
        self.store
            .put_challenge(
                &id,
                &ChallengeRow {
                    fingerprint: ok.fingerprint,
                    serial: ok.serial,
                    public_key: hex::encode(&ok.public_key),
                    challenge: hex::encode(&challenge),
                    family: ok.family,
                    expires,
                },
            )
            .await?;
        Ok(Challenge {
            challenge_id: id,
            challenge: B64.encode(&challenge),
            expires_at: expires,
            identity: c.identity.clone(),
        })
    }

    /// Steps 5–7: the signature in, a session out. `cert` is the certificate the device says it
    /// answers for (optional, must match the one the challenge was issued to).
    pub async fn respond(
        &self,
        challenge_id: &str,
        signature: &[u8],
        cert: Option<&[u8]>,
    ) -> Result<Session, (Refusal, String)> {
        let fail = |r: Reason, serial: &str| (Refusal::Auth(r), serial.to_string());
        let row = self
            .store
            .take_challenge(challenge_id)
            .await
            .map_err(|e| (e.into(), String::new()))?;
        let Some(row) = row else {
            return Err(fail(Reason::UnknownChallenge, ""));
        };
        let t = now();
        if row.expires <= t {
            return Err(fail(Reason::ChallengeExpired, &row.serial));
        }
        self.finish(row, signature, cert, t).await
    }

    async fn finish(
        &self,
        row: ChallengeRow,
        signature: &[u8],
        cert: Option<&[u8]>,
        t: i64,
    ) -> Result<Session, (Refusal, String)> {
        let serial = row.serial.clone();
        let fail = |r: Reason| (Refusal::Auth(r), serial.clone());
        let cert = match cert {
            Some(c) if fingerprint(c) != row.fingerprint => {
                return Err(fail(Reason::CertificateMismatch))
            }
            Some(c) => c.to_vec(),
            None => Vec::new(),
        };
        // Revocation between challenge and response takes effect now.
        if self
            .store
            .is_revoked(&row.serial, &row.fingerprint)
            .await
            .map_err(|e| (e.into(), serial.clone()))?
        {
            return Err(fail(Reason::Revoked));
        }
        let public_key = hex::decode(&row.public_key).unwrap_or_default();
        let challenge = hex::decode(&row.challenge).unwrap_or_default();
        // The message binds the certificate by its hash; the row keeps the fingerprint, which is
        // that hash, so the message is rebuilt from it.
        let message = auth::message_with_cert_hash(
            &self.config.identity,
            &challenge,
            &hex::decode(&row.fingerprint).unwrap_or_default(),
        );
        if !auth::verify(&public_key, &message, signature) {
            return Err(fail(Reason::BadSignature));
        }
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.random(32));
        let expires_at = t + self.config.session_ttl;
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let st = |e: StoreError| (Refusal::Store(e), serial.clone());
        self.store
            .put_session(&hash, &row.serial, expires_at)
            .await
            .map_err(st)?;
        self.store
            .seen(
                &row.fingerprint,
                &row.serial,
                &B64.encode(&cert),
                &row.family,
                t,
            )
            .await
            .map_err(st)?;
        Ok(Session {
            token,
            expires_at,
            serial: row.serial,
        })
    }
}
