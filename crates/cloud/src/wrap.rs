//! The keys that wrap session telemetry keys at rest, so that a copy of the database alone does
//! not decrypt telemetry.
//!
//! They are the cloud's own keys (`session_keys`: a file of 32-byte keys in hex, one per line,
//! the first one current), independent of the command key, so either can be rotated alone.
//! Rotation: put a new key first and keep the old ones below it while sessions wrapped under
//! them may live (a session's lifetime); a key no longer listed makes its sessions' telemetry
//! key unreadable (the device logs in again). A value is stored as `k1:<key id>:<hex>` where the
//! key id is the first 4 bytes of the key's SHA-256. Without `session_keys`, the wrapping key is
//! derived from the command key, as before (values without a prefix); those stay readable while
//! the command key is configured.

use sha2::Digest;

/// A wrapping key and its id.
#[derive(Clone)]
pub(crate) struct WrapKey {
    id: String,
    key: [u8; 32],
}

impl std::fmt::Debug for WrapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WrapKey({})", self.id)
    }
}

impl WrapKey {
    fn new(key: [u8; 32]) -> Self {
        Self {
            id: hex::encode(&sha2::Sha256::digest(key)[..4]),
            key,
        }
    }
}

/// The wrapping keys in use.
#[derive(Clone, Debug, Default)]
pub(crate) struct Wrapping {
    /// `session_keys`, the first one current.
    keys: Vec<WrapKey>,
    /// Derived from the command key (the old scheme), when there is one.
    legacy: Option<[u8; 32]>,
}

impl Wrapping {
    /// Reads `session_keys` (if set) and derives the legacy key from the command key's PKCS#8
    /// DER (if any).
    pub(crate) fn load(path: Option<&str>, command_der: Option<&[u8]>) -> Result<Self, String> {
        let legacy = command_der.map(|der| {
            let hk =
                hkdf::Hkdf::<sha2::Sha256>::new(Some(b"sesame/cloud/session-key-wrap/v1"), der);
            let mut wrap = [0u8; 32];
            let _ = hk.expand(b"aes-256-gcm", &mut wrap);
            wrap
        });
        let mut keys = Vec::new();
        if let Some(path) = path {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("session keys {path}: {e}"))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let key: [u8; 32] = hex::decode(line)
                    .ok()
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| {
                        format!(
                            "session keys {path}, line {}: expected 64 hex digits (make one with `openssl rand -hex 32`)",
                            n + 1
                        )
                    })?;
                keys.push(WrapKey::new(key));
            }
            if keys.is_empty() {
                return Err(format!(
                    "session keys {path}: no key (one line of 64 hex digits, e.g. `openssl rand -hex 32`)"
                ));
            }
        }
        Ok(Self { keys, legacy })
    }

    /// `key` wrapped for storage, bound to `aad` (the session's token hash).
    pub(crate) fn wrap(&self, key: &[u8; 32], nonce: &[u8; 12], aad: &[u8]) -> Option<String> {
        let seal = |k: &[u8; 32]| sesame_proto::messages::seal_payload(k, nonce, aad, key);
        match self.keys.first() {
            Some(k) => Some(format!(
                "k1:{}:{}",
                k.id,
                hex::encode([&nonce[..], &seal(&k.key)].concat())
            )),
            None => Some(hex::encode(
                [&nonce[..], &seal(self.legacy.as_ref()?)].concat(),
            )),
        }
    }

    /// A stored value unwrapped, if a key that wrapped it is still configured.
    pub(crate) fn unwrap(&self, stored: &str, aad: &[u8]) -> Option<[u8; 32]> {
        let (key, body) = match stored.strip_prefix("k1:") {
            Some(rest) => {
                let (id, body) = rest.split_once(':')?;
                (&self.keys.iter().find(|k| k.id == id)?.key, body)
            }
            None => (self.legacy.as_ref()?, stored),
        };
        let raw = hex::decode(body).ok()?;
        if raw.len() < 12 {
            return None;
        }
        sesame_proto::messages::open_payload(key, &raw[..12], aad, &raw[12..])?
            .try_into()
            .ok()
    }
}
