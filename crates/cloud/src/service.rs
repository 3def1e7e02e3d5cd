//! The authentication and enrollment logic, independent of HTTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use sha2::Digest;

use crate::auth::{self, Reason};
use crate::clock::{Clock, Random};
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::store::{AuditRow, Store, StoreError};
use crate::store_trust::SessionRow;
use crate::trust::{Standing, Trust};
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
    /// Signing nonces for the command key (ring needs its own generator type).
    rng: SystemRandom,
    /// Time, injected (simulated in tests).
    clock: Arc<dyn Clock>,
    /// Challenges, tokens and ids, injected.
    random: Arc<dyn Random>,
    /// Chain checks already done: certificate id (TBS hash) → family fingerprint. A chain check
    /// costs a signature verification; validity and revocation are still checked every time.
    chains: Mutex<HashMap<[u8; 32], String>>,
    /// Roots, families and revocations, reloaded when the trust version moves.
    trust: RwLock<Arc<Trust>>,
    /// Throttles and the refusal audit aggregate.
    pub(crate) guard: Guard,
    /// The command-signing key (ring, P-256, fixed-width signatures).
    pub(crate) command_key: Option<ring::signature::EcdsaKeyPair>,
    /// The firmware-signing public key (SEC1), which every published release must verify under.
    pub(crate) firmware_key: Option<Vec<u8>>,
    /// Wraps session telemetry keys at rest (the cloud's own rotatable keys), so a copy of the
    /// database alone does not decrypt telemetry.
    session_wrap: crate::wrap::Wrapping,
    /// Certificates already parsed and chained, by SHA-256 of their DER.
    pub(crate) accepted: Mutex<HashMap<[u8; 32], Arc<Accepted>>>,
    /// Writes the sessions of concurrent logins together (started on first use).
    pub(crate) sessions: tokio::sync::OnceCell<crate::sessions::SessionWriter>,
    /// Serials this instance has seen bound: serial → (owner, DER hash of the last certificate).
    pub(crate) bindings: Mutex<HashMap<String, (String, String)>>,
    /// The challenge MAC key, shared by every instance through the database.
    pub(crate) challenge_key: tokio::sync::OnceCell<ring::hmac::Key>,
}

pub use sesame_proto::auth::EcdhOffer;

/// A device certificate that is parsed and chains to its owner (judged again at every use).
#[derive(Debug)]
pub struct Accepted {
    /// The parsed certificate.
    pub leaf: sesame_pki::profile::Leaf,
    /// Owner: the family fingerprint, or `cert:<cert id>`.
    pub owner: String,
    /// The certificate.
    pub der: Vec<u8>,
}

pub use sesame_proto::auth::{Challenge, CloudEcdh, Session};

/// A refusal, or a storage failure.
#[derive(Debug)]
pub enum Refusal {
    /// Refused with a reason (already counted, logged and audited by the service).
    Auth(Reason),
    /// The database failed.
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// A refusal before it is recorded: the reason, and the serial of a certificate that chained
/// to an enrolled family (never a name a stranger chose).
pub(crate) enum Fail {
    Auth(Reason, Option<String>),
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<Reason> for Fail {
    fn from(r: Reason) -> Self {
        Self::Auth(r, None)
    }
}

impl Service {
    /// A service over an open store, on the system's clock and generator. Fails if the
    /// configured command key cannot be loaded.
    pub fn new(config: Config, store: Store) -> Result<Arc<Self>, StoreError> {
        Self::with_sources(
            config,
            store,
            Arc::new(crate::clock::SystemClock),
            Arc::new(crate::clock::SystemRandom::default()),
        )
    }

    /// A service on the given clock and generator.
    pub fn with_sources(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Result<Arc<Self>, StoreError> {
        let rng = SystemRandom::new();
        let mut command_der = None;
        let command_key = match &config.command_key {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| StoreError::Config(format!("command key {path}: {e}")))?;
                let der = pem_der(&text).ok_or_else(|| {
                    StoreError::Config(format!("command key {path}: not a PEM private key"))
                })?;
                let key = Some(
                    ring::signature::EcdsaKeyPair::from_pkcs8(
                        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        &der,
                        &rng,
                    )
                    .map_err(|e| StoreError::Config(format!("command key {path}: {e}")))?,
                );
                command_der = Some(der);
                key
            }
            None => None,
        };
        let session_wrap =
            crate::wrap::Wrapping::load(config.session_keys.as_deref(), command_der.as_deref())
                .map_err(StoreError::Config)?;
        if command_der.is_some() && config.session_keys.is_none() {
            tracing::warn!(
                "no session_keys: session telemetry keys are wrapped under a key derived from the command key, so rotating the command key loses them; set session_keys"
            );
        }
        let firmware_key = match &config.firmware_key {
            Some(path) => Some(firmware_public_key(path).map_err(StoreError::Config)?),
            None => None,
        };
        Ok(Arc::new(Self {
            firmware_key,
            config,
            store,
            metrics: Metrics::default(),
            rng,
            clock,
            random,
            chains: Mutex::new(HashMap::new()),
            trust: RwLock::new(Arc::new(Trust::default())),
            guard: Guard::default(),
            command_key,
            session_wrap,
            accepted: Mutex::new(HashMap::new()),
            bindings: Mutex::new(HashMap::new()),
            sessions: tokio::sync::OnceCell::new(),
            challenge_key: tokio::sync::OnceCell::new(),
        }))
    }

    /// A session's telemetry key as stored, bound to the session by its token hash (see
    /// [`crate::wrap`]).
    pub(crate) fn wrap_session_key(&self, key: &[u8; 32], token_hash: &str) -> Option<String> {
        let nonce: [u8; 12] = self.random(12).try_into().ok()?;
        self.session_wrap.wrap(key, &nonce, token_hash.as_bytes())
    }

    /// The telemetry key of a session, if it has one and its wrapping key is still configured.
    pub(crate) fn unwrap_session_key(&self, stored: &str, token_hash: &str) -> Option<[u8; 32]> {
        self.session_wrap.unwrap(stored, token_hash.as_bytes())
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
        // An all-zero value would be caught nowhere, so a failure fails the request: callers
        // check the length.
        if self.random.fill(&mut v).is_err() {
            v.clear();
        }
        v
    }

    /// Now, in Unix seconds, on the service's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
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
                at: self.now(),
                serial: serial.into(),
                event: event.into(),
                reason: reason.into(),
                detail: detail.into(),
            })
            .await
    }

    /// The trust snapshot, reloaded if any instance changed roots, families or revocations
    /// since it was loaded (one small read per call).
    pub async fn trust(&self) -> Result<Arc<Trust>, StoreError> {
        self.trust_at(self.store.trust_version().await?).await
    }

    /// The trust snapshot in memory, as it is (kept at most a second behind by the server).
    pub(crate) fn snapshot(&self) -> Arc<Trust> {
        self.trust.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// The trust snapshot at `version` (read from the database), reloaded if it moved.
    pub(crate) async fn trust_at(&self, version: i64) -> Result<Arc<Trust>, StoreError> {
        let current = self.snapshot();
        if current.version == version {
            return Ok(current);
        }
        let fresh = Arc::new(Trust::new(
            version,
            self.store.roots().await?,
            self.store.families().await?,
            self.store.revocations().await?,
        ));
        if let Ok(mut t) = self.trust.write() {
            if t.version < fresh.version {
                *t = fresh.clone();
            }
        }
        Ok(fresh)
    }

    /// The enrolled family that issued `leaf`, found by issuer name and checked by signature
    /// once per certificate id.
    pub(crate) fn family_of(
        &self,
        leaf: &sesame_pki::profile::Leaf,
        der: &[u8],
        trust: &Trust,
        t: u64,
    ) -> Result<Option<String>, Fail> {
        let cached = self
            .chains
            .lock()
            .ok()
            .and_then(|c| c.get(&leaf.cert_id).cloned());
        if let Some(f) = cached.filter(|f| trust.family(f).is_some()) {
            return Ok(Some(f));
        }
        for f in trust.issuers(leaf) {
            // The family CA is the anchor: the device must be issued by it. The check runs at
            // a time inside both validities, so an expired certificate is still recognised as
            // this family's (and refused as expired, not as unknown).
            let at = t
                .clamp(leaf.not_before, leaf.not_after)
                .clamp(f.ca.not_before, f.ca.not_after);
            if sesame_pki::verify_device(der, &[], std::slice::from_ref(&f.ca.der), at).is_ok() {
                if let Ok(mut c) = self.chains.lock() {
                    // Bounded: a cache, not a registry (a miss costs one verification).
                    if c.len() >= CHAIN_CACHE_MAX {
                        c.clear();
                    }
                    c.insert(leaf.cert_id, f.row.fingerprint.clone());
                }
                return Ok(Some(f.row.fingerprint.clone()));
            }
        }
        Ok(None)
    }

    /// Records a refusal: counted against the client address, aggregated into the audit log,
    /// logged and measured. Returns what the transport answers.
    pub(crate) fn refused(&self, fail: Fail, client: IpAddr) -> Refusal {
        match fail {
            Fail::Store(e) => Refusal::Store(e),
            Fail::Auth(reason, serial) => {
                let t = self.now();
                if reason != Reason::Throttled {
                    self.guard.refused(client, t, self.config.rate_window);
                }
                self.metrics.failure(reason);
                let serial = serial.unwrap_or_default();
                tracing::info!(%client, serial, reason = reason.code(), "authentication refused");
                self.guard.audit_refusal(&serial, reason.code());
                Refusal::Auth(reason)
            }
        }
    }

    pub(crate) fn client_throttled(&self, client: IpAddr) -> bool {
        let c = &self.config;
        self.guard
            .client_throttled(client, self.now(), c.rate_window, c.max_refusals_per_client)
    }

    /// The handshake-time check of a TLS client certificate, on the trust snapshot in memory
    /// (no database): profile, a path to an enrolled family, validity, revocation.
    pub fn check_tls_certificate(&self, der: &[u8], now: u64) -> Result<(), Reason> {
        let trust = self.snapshot();
        if let Some(a) = self.cached(&sha2::Sha256::digest(der).into()) {
            return judge(&a.leaf, &a.owner, &trust, now);
        }
        let leaf = sesame_pki::profile::device_leaf(der).map_err(|e| Reason::of_profile(&e))?;
        let owner = match self.family_of(&leaf, der, &trust, now) {
            Ok(Some(f)) => f,
            _ => return Err(Reason::NotEnrolled),
        };
        judge(&leaf, &owner, &trust, now)
    }

    /// The device behind a session token: `None` if there is no live session, the device's
    /// standing if it is no longer good (revoked since, or its family), else the session with its
    /// telemetry key unwrapped (hex, or empty).
    pub async fn session(
        &self,
        token: &str,
    ) -> Result<Option<Result<SessionRow, Standing>>, StoreError> {
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let Some((mut row, version)) = self
            .timed("session", self.store.session_row(&hash, self.now()))
            .await?
        else {
            return Ok(None);
        };
        let standing = self.trust_at(version).await?.standing(
            &row.serial,
            &row.cert_id,
            &row.key_id,
            &row.owner,
            self.now() as u64,
        );
        if standing != Standing::Good {
            return Ok(Some(Err(standing)));
        }
        row.telemetry_key = self
            .unwrap_session_key(&row.telemetry_key, &hash)
            .map(hex::encode)
            .unwrap_or_default();
        Ok(Some(Ok(row)))
    }

    /// Retention and the audit aggregate: writes aggregated refusals, removes expired sessions,
    /// challenges and codes, and audit rows past the configured retention. Returns rows removed.
    pub async fn housekeeping(&self) -> Result<u64, StoreError> {
        let t = self.now();
        self.flush_audit().await?;
        self.guard.sweep(t, self.config.rate_window);
        // A session spends its challenge: it stays at least as long as the challenge could be
        // answered.
        let audit_before = (self.config.audit_retention_days > 0).then(|| {
            (t - self.config.audit_retention_days * 86_400).min(t - self.config.challenge_ttl)
        });
        self.store.sweep(t, audit_before).await
    }

    /// Writes the aggregated refusals to the audit log (one row per reason and verified serial).
    pub async fn flush_audit(&self) -> Result<(), StoreError> {
        for p in self.guard.take_audit() {
            self.audit(
                &p.serial,
                "auth_failure",
                p.reason,
                &format!("count={}", p.count),
            )
            .await?;
        }
        Ok(())
    }
}

/// The checks every login makes once the certificate's owner is known, on any trust snapshot:
/// the leaf's validity, then the standing of its serial, certificate, key and family.
pub(crate) fn judge(
    leaf: &sesame_pki::profile::Leaf,
    owner: &str,
    trust: &Trust,
    now: u64,
) -> Result<(), Reason> {
    if !leaf.valid_at(now) {
        return Err(Reason::Expired);
    }
    trust
        .standing(
            &leaf.serial,
            &hex::encode(leaf.cert_id),
            &hex::encode(leaf.key_id),
            owner,
            now,
        )
        .refusal()
        .map_or(Ok(()), Err)
}

/// Reads a P-256 public key (SPKI PEM) as an uncompressed SEC1 point.
fn firmware_public_key(path: &str) -> Result<Vec<u8>, String> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    let text = std::fs::read_to_string(path).map_err(|e| format!("firmware key {path}: {e}"))?;
    let key = p256::PublicKey::from_public_key_pem(&text).map_err(|e| {
        format!("firmware key {path}: not a P-256 public key in PEM (fab/firmware.pub.pem): {e}")
    })?;
    Ok(key.to_encoded_point(false).as_bytes().to_vec())
}

fn pem_der(text: &str) -> Option<Vec<u8>> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(body.trim()).ok()
}

impl Service {
    /// Checks the chip's signed ephemeral key, makes the cloud's, derives the telemetry key.
    pub(crate) fn key_exchange(
        &self,
        serial: &str,
        device_key: &[u8],
        challenge: &[u8],
        offer: &EcdhOffer,
    ) -> Option<([u8; 32], Option<CloudEcdh>)> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let e = hex::decode(&offer.public).ok()?;
        let sig = B64.decode(&offer.signature).ok()?;
        let m = sesame_proto::messages::ecdh_device_message(&self.config.identity, challenge, &e);
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
            sesame_proto::messages::telemetry_key(shared.raw_secret_bytes(), challenge, serial);
        let cloud_sig = self.sign_command(&sesame_proto::messages::ecdh_cloud_message(
            &self.config.identity,
            serial,
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
