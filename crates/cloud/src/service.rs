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

/// Most chain-check results kept in memory.
const CHAIN_CACHE_MAX: usize = 100_000;

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
    /// The command-signing key (ring, P-256, fixed-width signatures).
    pub(crate) command_key: Option<ring::signature::EcdsaKeyPair>,
    /// Wraps session telemetry keys at rest (derived from the command key), so a copy of the
    /// database alone does not decrypt telemetry.
    session_wrap: Option<[u8; 32]>,
}

/// The device's half of the telemetry key exchange, sent with its login response.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct EcdhOffer {
    /// The chip's ephemeral P-256 public key (SEC1, hex).
    pub public: String,
    /// The chip's slot-0 signature (base64 `R || S`) over `ecdh_device_message`.
    pub signature: String,
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
    /// The cloud's half of the telemetry key exchange, when the device offered one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ecdh: Option<CloudEcdh>,
}

/// The cloud's ephemeral ECDH key, signed with its command key.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct CloudEcdh {
    /// SEC1 P-256 public key, hex.
    pub public: String,
    /// Command-key signature (`R || S`, base64) over `ecdh_cloud_message`.
    pub signature: String,
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
    /// A service over an open store. Fails if the configured command key cannot be loaded.
    pub fn new(config: Config, store: Store) -> Result<Arc<Self>, StoreError> {
        let rng = SystemRandom::new();
        let mut session_wrap = None;
        let command_key = match &config.command_key {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| StoreError(format!("command key {path}: {e}")))?;
                let der = pem_der(&text).ok_or_else(|| {
                    StoreError(format!("command key {path}: not a PEM private key"))
                })?;
                let hk = hkdf::Hkdf::<sha2::Sha256>::new(
                    Some(b"sesame/cloud/session-key-wrap/v1"),
                    &der,
                );
                let mut wrap = [0u8; 32];
                let _ = hk.expand(b"aes-256-gcm", &mut wrap);
                session_wrap = Some(wrap);
                Some(
                    ring::signature::EcdsaKeyPair::from_pkcs8(
                        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &der,
                        &rng,
                    )
                    .map_err(|e| StoreError(format!("command key {path}: {e}")))?,
                )
            }
            None => None,
        };
        Ok(Arc::new(Self {
            config,
            store,
            metrics: Metrics::default(),
            rng,
            chains: Mutex::new(HashMap::new()),
            command_key,
            session_wrap,
        }))
    }

    /// A session's telemetry key as stored: `hex(nonce || AES-256-GCM(key))`, bound to the
    /// session by its token hash.
    fn wrap_session_key(&self, key: &[u8; 32], token_hash: &str) -> Option<String> {
        let wrap = self.session_wrap.as_ref()?;
        let nonce: [u8; 12] = self.random(12).try_into().ok()?;
        let ct = sesame_pki::protocol::seal_payload(wrap, &nonce, token_hash.as_bytes(), key);
        Some(hex::encode([&nonce[..], &ct].concat()))
    }

    /// The telemetry key of a session, if it has one.
    pub(crate) fn unwrap_session_key(&self, stored: &str, token_hash: &str) -> Option<[u8; 32]> {
        let wrap = self.session_wrap.as_ref()?;
        let raw = hex::decode(stored).ok()?;
        if raw.len() < 12 {
            return None;
        }
        let key = sesame_pki::protocol::open_payload(
            wrap,
            &raw[..12],
            token_hash.as_bytes(),
            &raw[12..],
        )?;
        key.try_into().ok()
    }

    /// Signs `message` with the command key: `R || S` over SHA-256(message).
    pub(crate) fn sign_command(&self, message: &[u8]) -> Option<Vec<u8>> {
        let key = self.command_key.as_ref()?;
        key.sign(&self.rng, message)
            .ok()
            .map(|s| s.as_ref().to_vec())
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
                        // Bounded: a cache, not a registry (a miss costs one verification).
                        if c.len() >= CHAIN_CACHE_MAX {
                            c.clear();
                        }
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
        // Now and then, drop challenges that were never answered (one request in 256 pays).
        if self.random(1).first() == Some(&0) {
            self.store.sweep_challenges(t).await?;
        }
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
        ecdh: Option<&EcdhOffer>,
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
        self.finish(row, signature, cert, ecdh, t).await
    }

    async fn finish(
        &self,
        row: ChallengeRow,
        signature: &[u8],
        cert: Option<&[u8]>,
        ecdh: Option<&EcdhOffer>,
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
        // Without a command key the cloud cannot sign its half: the session has no telemetry key.
        let (key, cloud_ecdh) = match ecdh {
            Some(offer) if self.command_key.is_some() => self
                .key_exchange(&row, &public_key, &challenge, offer)
                .ok_or_else(|| fail(Reason::BadSignature))
                .map(|(k, c)| (Some(k), c))?,
            _ => (None, None),
        };
        let token_bytes = self.random(32);
        if token_bytes.len() != 32 {
            return Err((
                Refusal::Store(StoreError("random generator failed".into())),
                serial.clone(),
            ));
        }
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token_bytes);
        let expires_at = t + self.config.session_ttl;
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let st = |e: StoreError| (Refusal::Store(e), serial.clone());
        self.store
            .put_session(
                &hash,
                &row.serial,
                expires_at,
                &key.and_then(|k| self.wrap_session_key(&k, &hash))
                    .unwrap_or_default(),
                &row.public_key,
            )
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
            ecdh: cloud_ecdh,
        })
    }
}

fn pem_der(text: &str) -> Option<Vec<u8>> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(body.trim()).ok()
}

impl Service {
    /// Checks the chip's signed ephemeral key, makes the cloud's, derives the telemetry key.
    fn key_exchange(
        &self,
        row: &ChallengeRow,
        device_key: &[u8],
        challenge: &[u8],
        offer: &EcdhOffer,
    ) -> Option<([u8; 32], Option<CloudEcdh>)> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let e = hex::decode(&offer.public).ok()?;
        let sig = B64.decode(&offer.signature).ok()?;
        let m = sesame_pki::protocol::ecdh_device_message(&self.config.identity, challenge, &e);
        if !auth::verify(device_key, &m, &sig) {
            return None;
        }
        let peer = p256::PublicKey::from_sec1_bytes(&e).ok()?;
        let mut seed = self.random(32);
        let secret = p256::NonZeroScalar::try_from(seed.as_slice()).ok()?;
        seed.iter_mut().for_each(|b| *b = 0);
        let c = p256::PublicKey::from_secret_scalar(&secret)
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        let shared = p256::ecdh::diffie_hellman(secret, peer.as_affine());
        let key =
            sesame_pki::protocol::telemetry_key(shared.raw_secret_bytes(), challenge, &row.serial);
        let cloud_sig = self.sign_command(&sesame_pki::protocol::ecdh_cloud_message(
            &self.config.identity,
            &row.serial,
            &e,
            &c,
        ))?;
        Some((
            key,
            Some(CloudEcdh {
                public: hex::encode(c),
                signature: B64.encode(cloud_sig),
            }),
        ))
    }
}
