//! The authentication and enrollment logic, independent of HTTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Digest;

use crate::auth::{self, Reason};
use crate::guard::Guard;
use crate::metrics::Metrics;
use crate::store::{AuditRow, ChallengeRow, Store, StoreError};
use crate::store_trust::{Bind, Registration, SessionRow};
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
    rng: SystemRandom,
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
    /// Wraps session telemetry keys at rest (derived from the command key), so a copy of the
    /// database alone does not decrypt telemetry.
    session_wrap: Option<[u8; 32]>,
}

pub use sesame_proto::auth::EcdhOffer;

/// A certificate that passed every check at the challenge step.
pub struct Accepted {
    /// The parsed certificate.
    pub leaf: sesame_pki::profile::Leaf,
    /// Owner: the family fingerprint, or `cert:<cert id>`.
    pub owner: String,
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
enum Fail {
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
        let firmware_key = match &config.firmware_key {
            Some(path) => Some(firmware_public_key(path).map_err(StoreError)?),
            None => None,
        };
        Ok(Arc::new(Self {
            firmware_key,
            config,
            store,
            metrics: Metrics::default(),
            rng,
            chains: Mutex::new(HashMap::new()),
            trust: RwLock::new(Arc::new(Trust::default())),
            guard: Guard::default(),
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

    /// The trust snapshot, reloaded if any instance changed roots, families or revocations
    /// since it was loaded (one small read per call).
    pub async fn trust(&self) -> Result<Arc<Trust>, StoreError> {
        let version = self.store.trust_version().await?;
        let current = self.trust.read().map(|t| t.clone()).unwrap_or_default();
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

    /// Checks a device certificate: the profile, then trust (a path to an enrolled family, or
    /// an individually enrolled certificate), then validity of the leaf, its family and root,
    /// then revocation. An untrusted certificate gets `not_enrolled` whatever it names, so the
    /// answer says nothing about other devices.
    async fn check_certificate(&self, der: &[u8], t: u64) -> Result<Accepted, Fail> {
        let leaf = sesame_pki::profile::device_leaf(der).map_err(|e| Reason::of_profile(&e))?;
        let trust = self.trust().await?;
        let owner = match self.family_of(&leaf, der, &trust, t)? {
            Some(f) => f,
            None => match self.store.enrolled_cert(&hex::encode(leaf.cert_id)).await? {
                Some(d) if d.serial == leaf.serial => d.owner,
                _ => return Err(Reason::NotEnrolled.into()),
            },
        };
        match judge(&leaf, &owner, &trust, t) {
            Ok(()) => Ok(Accepted { leaf, owner }),
            // Untrusted after all: the one anonymous answer.
            Err(Reason::NotEnrolled) => Err(Reason::NotEnrolled.into()),
            // The certificate is trusted: its serial may name the refusal.
            Err(r) => Err(Fail::Auth(r, Some(leaf.serial))),
        }
    }

    /// The enrolled family that issued `leaf`, found by issuer name and checked by signature
    /// once per certificate id.
    fn family_of(
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
        for f in trust.issuers(&leaf.issuer) {
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
    fn refused(&self, fail: Fail, client: IpAddr) -> Refusal {
        match fail {
            Fail::Store(e) => Refusal::Store(e),
            Fail::Auth(reason, serial) => {
                let t = now();
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

    fn client_throttled(&self, client: IpAddr) -> bool {
        let c = &self.config;
        self.guard
            .client_throttled(client, now(), c.rate_window, c.max_refusals_per_client)
    }

    /// Steps 1–3: certificate in, challenge out. `client` is the caller's address (refusals are
    /// throttled by it).
    pub async fn challenge(&self, der: &[u8], client: IpAddr) -> Result<Challenge, Refusal> {
        self.challenge_inner(der, client)
            .await
            .map_err(|f| self.refused(f, client))
    }

    async fn challenge_inner(&self, der: &[u8], client: IpAddr) -> Result<Challenge, Fail> {
        if self.client_throttled(client) {
            return Err(Reason::Throttled.into());
        }
        let t = now();
        let ok = self.check_certificate(der, t as u64).await?;
        let challenge = self.random(32);
        let id = hex::encode(self.random(16));
        if challenge.len() != 32 || id.len() != 32 {
            return Err(Fail::Store(StoreError("random generator failed".into())));
        }
        let expires = t + self.config.challenge_ttl;
        self.store
            .put_challenge(
                &id,
                &ChallengeRow {
                    fingerprint: hex::encode(ok.leaf.der_hash),
                    cert_id: hex::encode(ok.leaf.cert_id),
                    key_id: hex::encode(ok.leaf.key_id),
                    serial: ok.leaf.serial,
                    public_key: hex::encode(&ok.leaf.public_key),
                    challenge: hex::encode(&challenge),
                    family: ok.owner,
                    expires,
                },
            )
            .await?;
        Ok(Challenge {
            challenge_id: id,
            challenge: B64.encode(&challenge),
            expires_at: expires,
            identity: self.config.identity.clone(),
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
        client: IpAddr,
    ) -> Result<Session, Refusal> {
        self.respond_inner(challenge_id, signature, cert, ecdh, client)
            .await
            .map_err(|f| self.refused(f, client))
    }

    async fn respond_inner(
        &self,
        challenge_id: &str,
        signature: &[u8],
        cert: Option<&[u8]>,
        ecdh: Option<&EcdhOffer>,
        client: IpAddr,
    ) -> Result<Session, Fail> {
        if self.client_throttled(client) {
            return Err(Reason::Throttled.into());
        }
        let Some(row) = self.store.take_challenge(challenge_id).await? else {
            return Err(Reason::UnknownChallenge.into());
        };
        let t = now();
        let fail = |r: Reason| Fail::Auth(r, Some(row.serial.clone()));
        if row.expires <= t {
            return Err(fail(Reason::ChallengeExpired));
        }
        let der = cert.map(<[u8]>::to_vec).unwrap_or_default();
        if cert.is_some() && hex::encode(sha2::Sha256::digest(&der)) != row.fingerprint {
            return Err(fail(Reason::CertificateMismatch));
        }
        // Revocation (of the device, its certificate, key or family) between challenge and
        // response takes effect now.
        let standing = self.trust().await?.standing(
            &row.serial,
            &row.cert_id,
            &row.key_id,
            &row.family,
            t as u64,
        );
        if let Some(r) = standing.refusal() {
            return Err(fail(r));
        }
        let public_key = hex::decode(&row.public_key).unwrap_or_default();
        let challenge = hex::decode(&row.challenge).unwrap_or_default();
        // The message binds the certificate by the hash of the bytes the device presented.
        let message = auth::message_with_cert_hash(
            &self.config.identity,
            &challenge,
            &hex::decode(&row.fingerprint).unwrap_or_default(),
        );
        if !auth::verify(&public_key, &message, signature) {
            return Err(fail(Reason::BadSignature));
        }
        // Only now is the caller the device: per-device limits start here.
        let c = &self.config;
        if self
            .guard
            .login_over(&row.serial, t, c.rate_window, c.max_logins_per_device)
        {
            return Err(fail(Reason::Throttled));
        }
        // Without a command key the cloud cannot sign its half: the session has no telemetry key.
        let (key, cloud_ecdh) = match ecdh {
            Some(offer) if self.command_key.is_some() => self
                .key_exchange(&row, &public_key, &challenge, offer)
                .ok_or_else(|| fail(Reason::BadSignature))
                .map(|(k, c)| (Some(k), c))?,
            _ => (None, None),
        };
        let (token, expires_at) = self
            .open_session(
                &Registration {
                    serial: &row.serial,
                    owner: &row.family,
                    cert_id: &row.cert_id,
                    key_id: &row.key_id,
                    der_hash: &row.fingerprint,
                    der: &B64.encode(&der),
                },
                &row.public_key,
                key,
                t,
            )
            .await?;
        Ok(Session {
            token,
            expires_at,
            serial: row.serial,
            ecdh: cloud_ecdh,
        })
    }

    /// Binds the serial to its owner (refusing a serial another owner holds), then stores a new
    /// session. Returns the token and its expiry.
    async fn open_session(
        &self,
        reg: &Registration<'_>,
        public_key_hex: &str,
        telemetry_key: Option<[u8; 32]>,
        t: i64,
    ) -> Result<(String, i64), Fail> {
        let token_bytes = self.random(32);
        if token_bytes.len() != 32 {
            return Err(Fail::Store(StoreError("random generator failed".into())));
        }
        // The serial is bound to its owner before any session exists for it.
        if self.store.seen(reg, t).await? == Bind::Conflict {
            return Err(Fail::Auth(
                Reason::SerialConflict,
                Some(reg.serial.to_string()),
            ));
        }
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token_bytes);
        let expires_at = t + self.config.session_ttl;
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        self.store
            .put_session(
                &hash,
                &SessionRow {
                    serial: reg.serial.to_string(),
                    telemetry_key: telemetry_key
                        .and_then(|k| self.wrap_session_key(&k, &hash))
                        .unwrap_or_default(),
                    public_key: public_key_hex.to_string(),
                    cert_id: reg.cert_id.to_string(),
                    key_id: reg.key_id.to_string(),
                    owner: reg.owner.to_string(),
                },
                expires_at,
            )
            .await?;
        self.metrics.success();
        self.audit(reg.serial, "auth_success", "", "").await?;
        Ok((token, expires_at))
    }

    /// The handshake-time check of a TLS client certificate, on the trust snapshot in memory
    /// (no database): profile, a path to an enrolled family, validity, revocation.
    pub fn check_tls_certificate(&self, der: &[u8], now: u64) -> Result<(), Reason> {
        let leaf = sesame_pki::profile::device_leaf(der).map_err(|e| Reason::of_profile(&e))?;
        let trust = self.trust.read().map(|t| t.clone()).unwrap_or_default();
        let owner = match self.family_of(&leaf, der, &trust, now) {
            Ok(Some(f)) => f,
            _ => return Err(Reason::NotEnrolled),
        };
        judge(&leaf, &owner, &trust, now)
    }

    /// A login for a device that proved its key in the TLS handshake (`der` is the client
    /// certificate the handshake verified): checked again on fresh trust state, no challenge.
    pub async fn tls_login(&self, der: &[u8], client: IpAddr) -> Result<Session, Refusal> {
        self.tls_login_inner(der, client)
            .await
            .map_err(|f| self.refused(f, client))
    }

    async fn tls_login_inner(&self, der: &[u8], client: IpAddr) -> Result<Session, Fail> {
        if self.client_throttled(client) {
            return Err(Reason::Throttled.into());
        }
        let t = now();
        let ok = self.check_certificate(der, t as u64).await?;
        let leaf = &ok.leaf;
        let c = &self.config;
        if self
            .guard
            .login_over(&leaf.serial, t, c.rate_window, c.max_logins_per_device)
        {
            return Err(Fail::Auth(Reason::Throttled, Some(leaf.serial.clone())));
        }
        let (token, expires_at) = self
            .open_session(
                &Registration {
                    serial: &leaf.serial,
                    owner: &ok.owner,
                    cert_id: &hex::encode(leaf.cert_id),
                    key_id: &hex::encode(leaf.key_id),
                    der_hash: &hex::encode(leaf.der_hash),
                    der: &B64.encode(der),
                },
                &hex::encode(&leaf.public_key),
                None,
                t,
            )
            .await?;
        Ok(Session {
            token,
            expires_at,
            serial: leaf.serial.clone(),
            ecdh: None,
        })
    }

    /// The device behind a session token: `None` if there is no live session, the device's
    /// standing if it is no longer good (revoked since, or its family), else the session with its
    /// telemetry key unwrapped (hex, or empty).
    pub async fn session(
        &self,
        token: &str,
    ) -> Result<Option<Result<SessionRow, Standing>>, StoreError> {
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let Some(mut row) = self.store.session_row(&hash, now()).await? else {
            return Ok(None);
        };
        let standing = self.trust().await?.standing(
            &row.serial,
            &row.cert_id,
            &row.key_id,
            &row.owner,
            now() as u64,
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
        let t = now();
        self.flush_audit().await?;
        self.guard.sweep(t, self.config.rate_window);
        let audit_before = (self.config.audit_retention_days > 0)
            .then(|| t - self.config.audit_retention_days * 86_400);
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
fn judge(
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
