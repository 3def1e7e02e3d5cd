//! The login: a challenge that is not stored, and a response that costs one read and one write.
//!
//! The 32 bytes a chip signs are the challenge's expiry (8 bytes, big-endian Unix seconds) and
//! 24 random bytes. The challenge id carries them with the SHA-256 of the certificate they were
//! issued to, under an HMAC whose key every instance shares (kept in the database), so any
//! instance can take the response. The response is spent by the login's one write, the session
//! insert: its `nonce` column is unique, so a second use fails on every instance.
//!
//! A reader of the database can mint challenge ids; that gains nothing without the chip's
//! signature, and a captured response cannot be replayed after its expiry because the expiry is
//! inside the bytes the chip signed (before it, the nonce index refuses it).

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::hmac;
use sha2::Digest;

use crate::auth::{self, Reason};
use crate::service::{judge, Accepted, Challenge, EcdhOffer, Fail, Refusal, Service, Session};
use crate::sessions::{NewSession, SessionWriter};
use crate::store::StoreError;
use crate::store_trust::{Bind, Registration, SessionRow};
use crate::trust::Trust;

const MAC_LABEL: &[u8] = b"sesame/challenge/v1";
/// The database row holding the challenge MAC key.
const MAC_SECRET: &str = "challenge_mac";
/// Most parsed certificates kept in memory.
const ACCEPTED_MAX: usize = 100_000;

/// A challenge id, opened.
struct Token {
    challenge: [u8; 32],
    der_hash: [u8; 32],
}

impl Token {
    fn expires(&self) -> i64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.challenge[..8]);
        i64::from_be_bytes(b)
    }

    fn mac_input(&self) -> Vec<u8> {
        [MAC_LABEL, &self.challenge[..], &self.der_hash[..]].concat()
    }

    fn seal(&self, key: &hmac::Key) -> String {
        let tag = hmac::sign(key, &self.mac_input());
        URL_SAFE_NO_PAD.encode([&self.challenge[..], &self.der_hash[..], tag.as_ref()].concat())
    }

    fn open(key: &hmac::Key, id: &str) -> Option<Self> {
        let raw = URL_SAFE_NO_PAD.decode(id.trim()).ok()?;
        if raw.len() != 96 {
            return None;
        }
        let t = Self {
            challenge: raw[..32].try_into().ok()?,
            der_hash: raw[32..64].try_into().ok()?,
        };
        hmac::verify(key, &t.mac_input(), &raw[64..]).ok()?;
        Some(t)
    }
}

impl Service {
    /// The challenge MAC key, created by the first instance that needs it.
    async fn challenge_key(&self) -> Result<&hmac::Key, StoreError> {
        self.challenge_key
            .get_or_try_init(|| async {
                let fresh = self.random(32);
                if fresh.len() != 32 {
                    return Err(StoreError::Random);
                }
                let stored = self.store.secret(MAC_SECRET, &hex::encode(fresh)).await?;
                let bytes = hex::decode(stored)
                    .map_err(|_| StoreError::Corrupt("the challenge key is not hex".into()))?;
                Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
            })
            .await
    }

    pub(crate) fn cached(&self, der_hash: &[u8; 32]) -> Option<Arc<Accepted>> {
        self.accepted.lock().ok()?.get(der_hash).cloned()
    }

    /// A device certificate checked against trust: parsed and chained once per instance, judged
    /// (validity, revocation) every time. The in-memory snapshot is used as it is; only a
    /// refusal that trust decides makes the cloud look for a newer one (a family enrolled, or a
    /// device unrevoked, on another instance a moment ago).
    pub(crate) async fn accept(&self, der: &[u8], t: u64) -> Result<Arc<Accepted>, Fail> {
        let h: [u8; 32] = sha2::Sha256::digest(der).into();
        let snapshot = self.snapshot();
        match self.accept_on(der, &h, &snapshot, t).await {
            Err(Fail::Auth(
                Reason::NotEnrolled | Reason::Revoked | Reason::FamilyRevoked | Reason::Expired,
                _,
            )) => {
                let fresh = self.trust().await?;
                self.accept_on(der, &h, &fresh, t).await
            }
            r => r,
        }
    }

    async fn accept_on(
        &self,
        der: &[u8],
        h: &[u8; 32],
        trust: &Trust,
        t: u64,
    ) -> Result<Arc<Accepted>, Fail> {
        let acc = match self.cached(h) {
            Some(a) => a,
            None => {
                let leaf =
                    sesame_pki::profile::device_leaf(der).map_err(|e| Reason::of_profile(&e))?;
                let owner = match self.family_of(&leaf, der, trust, t)? {
                    Some(f) => f,
                    None => match self.store.enrolled_cert(&hex::encode(leaf.cert_id)).await? {
                        Some(d) if d.serial == leaf.serial => d.owner,
                        _ => return Err(Reason::NotEnrolled.into()),
                    },
                };
                let a = Arc::new(Accepted {
                    leaf,
                    owner,
                    der: der.to_vec(),
                });
                if let Ok(mut c) = self.accepted.lock() {
                    // Bounded: a cache, not a registry (a miss costs a parse and a lookup).
                    if c.len() >= ACCEPTED_MAX {
                        c.clear();
                    }
                    c.insert(*h, a.clone());
                }
                a
            }
        };
        match judge(&acc.leaf, &acc.owner, trust, t) {
            Ok(()) => Ok(acc),
            // Untrusted after all: the one anonymous answer.
            Err(Reason::NotEnrolled) => Err(Reason::NotEnrolled.into()),
            // The certificate is trusted: its serial may name the refusal.
            Err(r) => Err(Fail::Auth(r, Some(acc.leaf.serial.clone()))),
        }
    }

    /// Steps 1–3: certificate in, challenge out. `client` is the caller's address (refusals are
    /// throttled by it). No database statement for a certificate this instance has seen.
    pub async fn challenge(&self, der: &[u8], client: IpAddr) -> Result<Challenge, Refusal> {
        self.challenge_inner(der, client)
            .await
            .map_err(|f| self.refused(f, client))
    }

    async fn challenge_inner(&self, der: &[u8], client: IpAddr) -> Result<Challenge, Fail> {
        if self.client_throttled(client) {
            return Err(Reason::Throttled.into());
        }
        let t = self.now();
        let acc = self.accept(der, t as u64).await?;
        let key = self.challenge_key().await?;
        let random = self.random(24);
        if random.len() != 24 {
            return Err(Fail::Store(StoreError::Random));
        }
        let expires = t + self.config.challenge_ttl;
        let mut challenge = [0u8; 32];
        challenge[..8].copy_from_slice(&expires.to_be_bytes());
        challenge[8..].copy_from_slice(&random);
        let token = Token {
            challenge,
            der_hash: acc.leaf.der_hash,
        };
        Ok(Challenge {
            challenge_id: token.seal(key),
            challenge: B64.encode(challenge),
            expires_at: expires,
            identity: self.config.identity.clone(),
        })
    }

    /// Steps 5–7: the signature in, a session out. `cert` is the certificate the device answers
    /// for: optional on the instance that issued the challenge, required on the others, and it
    /// must be the one the challenge was issued to.
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
        let key = self.challenge_key().await?;
        let Some(token) = Token::open(key, challenge_id) else {
            return Err(Reason::UnknownChallenge.into());
        };
        let t = self.now();
        if token.expires() > t + self.config.challenge_ttl {
            // Not one this cloud issued under its current settings.
            return Err(Reason::UnknownChallenge.into());
        }
        if let Some(c) = cert {
            if sha2::Sha256::digest(c).as_slice() != token.der_hash {
                let serial = self.cached(&token.der_hash).map(|a| a.leaf.serial.clone());
                return Err(Fail::Auth(Reason::CertificateMismatch, serial));
            }
        }
        let acc = match (self.cached(&token.der_hash), cert) {
            (Some(a), _) => a,
            (None, Some(c)) => self.accept(c, t as u64).await?,
            (None, None) => return Err(Reason::CertificateRequired.into()),
        };
        let fail = |r: Reason| Fail::Auth(r, Some(acc.leaf.serial.clone()));
        if token.expires() <= t {
            return Err(fail(Reason::ChallengeExpired));
        }
        let (trust, registered) = self.login_view(&acc, t as u64).await?;
        let message =
            auth::message_with_cert_hash(&self.config.identity, &token.challenge, &token.der_hash);
        if !auth::verify(&acc.leaf.public_key, &message, signature) {
            return Err(fail(Reason::BadSignature));
        }
        // Only now is the caller the device: per-device limits start here.
        let c = &self.config;
        if self
            .guard
            .login_over(&acc.leaf.serial, t, c.rate_window, c.max_logins_per_device)
        {
            return Err(fail(Reason::Throttled));
        }
        // Without a command key the cloud cannot sign its half: the session has no telemetry key.
        let (telemetry_key, cloud_ecdh) = match ecdh {
            Some(offer) if self.command_key.is_some() => self
                .key_exchange(
                    &acc.leaf.serial,
                    &acc.leaf.public_key,
                    &token.challenge,
                    offer,
                )
                .ok_or_else(|| fail(Reason::BadSignature))
                .map(|(k, c)| (Some(k), c))?,
            _ => (None, None),
        };
        let (token, expires_at) = self
            .open_session(
                &acc,
                registered,
                &trust,
                Some(hex::encode(token.challenge)),
                telemetry_key,
                client,
                t,
            )
            .await?;
        Ok(Session {
            token,
            expires_at,
            serial: acc.leaf.serial.clone(),
            ecdh: cloud_ecdh,
        })
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
        let t = self.now();
        let acc = self.accept(der, t as u64).await?;
        let fail = |r: Reason| Fail::Auth(r, Some(acc.leaf.serial.clone()));
        let (trust, registered) = self.login_view(&acc, t as u64).await?;
        let c = &self.config;
        if self
            .guard
            .login_over(&acc.leaf.serial, t, c.rate_window, c.max_logins_per_device)
        {
            return Err(fail(Reason::Throttled));
        }
        let (token, expires_at) = self
            .open_session(&acc, registered, &trust, None, None, client, t)
            .await?;
        Ok(Session {
            token,
            expires_at,
            serial: acc.leaf.serial.clone(),
            ecdh: None,
        })
    }

    /// The trust state a login is judged on, and the serial's binding (owner, DER hash). For a
    /// serial this instance has bound before, this reads nothing: the snapshot in memory is
    /// used, and the session insert checks that it is still the newest. Otherwise one read
    /// gives the trust version and the binding.
    async fn login_view(
        &self,
        acc: &Accepted,
        t: u64,
    ) -> Result<(Arc<Trust>, Option<(String, String)>), Fail> {
        let fail = |r: Reason| Fail::Auth(r, Some(acc.leaf.serial.clone()));
        let bound = self
            .bindings
            .lock()
            .ok()
            .and_then(|b| b.get(&acc.leaf.serial).cloned());
        if let Some(b) = bound {
            let snapshot = self.snapshot();
            if judge(&acc.leaf, &acc.owner, &snapshot, t).is_ok() {
                return Ok((snapshot, Some(b)));
            }
            // Refused on a snapshot that may be old: decide on the newest.
            let fresh = self.trust().await?;
            judge(&acc.leaf, &acc.owner, &fresh, t).map_err(fail)?;
            return Ok((fresh, Some(b)));
        }
        let state = self
            .timed("login_state", self.store.login_state(&acc.leaf.serial))
            .await?;
        let trust = self.trust_at(state.version).await?;
        judge(&acc.leaf, &acc.owner, &trust, t).map_err(fail)?;
        Ok((trust, state.registered))
    }

    fn remember_binding(&self, serial: &str, owner: &str, der_hash: &str) {
        if let Ok(mut b) = self.bindings.lock() {
            // Bounded: a miss costs one read. A binding's owner never changes once written.
            if b.len() >= ACCEPTED_MAX {
                b.clear();
            }
            b.insert(
                serial.to_string(),
                (owner.to_string(), der_hash.to_string()),
            );
        }
    }

    /// Binds the serial to its owner if it is not yet (refusing a serial another owner holds),
    /// then stores the session, which spends `nonce` (a TLS login has none), provided trust has
    /// not moved since `trust` (else the login is judged again on the newest). Returns the token
    /// and its expiry. A device already bound costs this one write.
    #[allow(clippy::too_many_arguments)]
    async fn open_session(
        &self,
        acc: &Accepted,
        registered: Option<(String, String)>,
        trust: &Arc<Trust>,
        nonce: Option<String>,
        telemetry_key: Option<[u8; 32]>,
        client: IpAddr,
        t: i64,
    ) -> Result<(String, i64), Fail> {
        let leaf = &acc.leaf;
        let conflict = || Fail::Auth(Reason::SerialConflict, Some(leaf.serial.clone()));
        let cert_id = hex::encode(leaf.cert_id);
        let der_hash = hex::encode(leaf.der_hash);
        match registered {
            Some((owner, _)) if owner != acc.owner => return Err(conflict()),
            Some((_, bound)) if bound == der_hash => {
                self.remember_binding(&leaf.serial, &acc.owner, &der_hash);
            }
            // First login, or another certificate (or encoding of it) for the device: (re)bind,
            // so revocation by what the device last showed finds it.
            _ => {
                let reg = Registration {
                    serial: &leaf.serial,
                    owner: &acc.owner,
                    cert_id: &cert_id,
                    key_id: &hex::encode(leaf.key_id),
                    der_hash: &der_hash,
                    der: &B64.encode(&acc.der),
                };
                if self.timed("bind_serial", self.store.seen(&reg, t)).await? == Bind::Conflict {
                    return Err(conflict());
                }
                self.remember_binding(&leaf.serial, &acc.owner, &der_hash);
            }
        }
        let token_bytes = self.random(32);
        if token_bytes.len() != 32 {
            return Err(Fail::Store(StoreError::Random));
        }
        let token = URL_SAFE_NO_PAD.encode(token_bytes);
        let expires_at = t + self.config.session_ttl;
        let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let via = if nonce.is_some() { "challenge" } else { "tls" };
        let row = SessionRow {
            serial: leaf.serial.clone(),
            telemetry_key: telemetry_key
                .and_then(|k| self.wrap_session_key(&k, &hash))
                .unwrap_or_default(),
            public_key: hex::encode(&leaf.public_key),
            cert_id,
            key_id: hex::encode(leaf.key_id),
            owner: acc.owner.clone(),
        };
        let nonce = nonce.unwrap_or_else(|| format!("tls:{hash}"));
        let detail = format!("via={via} client={client}");
        let mut version = trust.version;
        // Trust may move between the judgement and the write (on any instance): then the
        // login is judged again on the newest state. Bounded, so a storm of changes cannot
        // hold a login forever.
        let writer = self
            .sessions
            .get_or_init(|| async { SessionWriter::start(self.store.clone()) })
            .await;
        for _ in 0..3 {
            let session = NewSession {
                token_hash: hash.clone(),
                row: row.clone(),
                expires: expires_at,
                nonce: nonce.clone(),
                created: t,
                detail: detail.clone(),
                version,
            };
            if self.timed("put_session", writer.put(session)).await? {
                self.metrics.success();
                return Ok((token, expires_at));
            }
            let now = self
                .timed("trust_version", self.store.trust_version())
                .await?;
            if now == version {
                // Another response to this challenge won, here or on another instance. A
                // replay is not a login: it does not count against the device.
                self.guard.login_refund(&leaf.serial);
                return Err(Fail::Auth(
                    Reason::UnknownChallenge,
                    Some(leaf.serial.clone()),
                ));
            }
            let fresh = self.trust_at(now).await?;
            judge(leaf, &acc.owner, &fresh, t as u64)
                .map_err(|r| Fail::Auth(r, Some(leaf.serial.clone())))?;
            version = now;
        }
        Err(Fail::Store(StoreError::Database(
            "trust state kept changing during the login".into(),
        )))
    }
}
