//! The cloud's command key, fetched from its `GET /v1/info` and checked against a fingerprint
//! given once (the SHA-256 of the key's SubjectPublicKeyInfo DER, as
//! `openssl pkey -pubin -in command.pub.pem -outform DER | sha256sum` prints it), instead of a
//! key file handed to every client. A key that does not match is refused before anything else
//! is sent to that cloud.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use crate::{chip, layout, Agent, AgentError};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

/// What `GET /v1/info` says about a cloud.
pub use sesame_proto::Info as CloudInfo;
/// A public key as the cloud publishes it.
pub use sesame_proto::PublicKeyInfo as PublishedKey;

/// A command key that matched its pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedKey {
    /// The uncompressed P-256 point (`04 || X || Y`), as a chip's command-key zone holds it.
    pub point: Vec<u8>,
    /// Its fingerprint, lowercase hex.
    pub sha256: String,
}

/// Why a pinned command key was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinError {
    /// The pin is not 64 hex digits.
    Malformed(String),
    /// The cloud publishes another key.
    Mismatch {
        /// The fingerprint given.
        pinned: String,
        /// The fingerprint of the key the cloud published.
        published: String,
    },
    /// The cloud publishes no command key.
    NoKey,
    /// The published key is not a P-256 SubjectPublicKeyInfo in PEM.
    BadKey(String),
    /// The cloud publishes the pinned key, but the chip holds another command key.
    NotInChip,
}

impl core::fmt::Display for PinError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Malformed(why) => write!(
                f,
                "the command key fingerprint is not 64 hex digits ({why}); give the SHA-256 of the key's DER, e.g. `openssl pkey -pubin -in fab/command.pub.pem -outform DER | sha256sum`"
            ),
            Self::Mismatch { pinned, published } => write!(
                f,
                "the cloud's command key has fingerprint {published}, not the pinned {pinned}: nothing was sent to it. Check the URL (this may not be your cloud), or pin the fingerprint of the key it should have (`sesame cloud info` on the cloud you trust, or `openssl pkey -pubin -in fab/command.pub.pem -outform DER | sha256sum`)"
            ),
            Self::NoKey => write!(
                f,
                "the cloud publishes no command key, yet a command key fingerprint is pinned: start the cloud with --command-key (the factory's command.key.pem), or drop the pin"
            ),
            Self::NotInChip => write!(
                f,
                "the cloud publishes the pinned command key, but this chip holds another one (zone 1): it was made for another cloud's key and would refuse this cloud's signatures; use the cloud its factory's command key belongs to"
            ),
            Self::BadKey(why) => write!(
                f,
                "the cloud's published command key is not a P-256 public key ({why})"
            ),
        }
    }
}

impl std::error::Error for PinError {}

/// A fingerprint as given: 64 hex digits, colons and case free.
pub fn parse_pin(pin: &str) -> Result<[u8; 32], PinError> {
    let clean: String = pin.trim().chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&clean).map_err(|e| PinError::Malformed(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| PinError::Malformed(format!("{} bytes, not 32", b.len())))
}

/// `GET {base}/v1/info`.
pub fn fetch_info(http: &ureq::Agent, base: &str) -> Result<CloudInfo, AgentError> {
    let url = format!("{}/v1/info", base.trim_end_matches('/'));
    match http.get(&url).call() {
        Ok(rsp) => rsp
            .into_json()
            .map_err(|e| AgentError::Protocol(format!("{url}: not a sesame cloud's info ({e})"))),
        Err(ureq::Error::Status(status, rsp)) => {
            let v: serde_json::Value = rsp.into_json().unwrap_or_default();
            Err(AgentError::Refused {
                status,
                code: v["error"].as_str().unwrap_or("unknown").to_string(),
                message: v["message"]
                    .as_str()
                    .unwrap_or("no /v1/info: is this a sesame cloud of this version?")
                    .to_string(),
            })
        }
        Err(e) => Err(AgentError::Transport(e.to_string())),
    }
}

/// Checks a published key against `pin` and returns its point. The fingerprint is computed
/// here from the DER the cloud sent, and that same DER is what gets parsed.
pub fn check_pinned(info: &CloudInfo, pin: &[u8; 32]) -> Result<PinnedKey, PinError> {
    let key = info.command_key.as_ref().ok_or(PinError::NoKey)?;
    let (label, der) = p256::pkcs8::der::pem::decode_vec(key.public_key_pem.as_bytes())
        .map_err(|e| PinError::BadKey(e.to_string()))?;
    if label != "PUBLIC KEY" {
        return Err(PinError::BadKey(format!("a {label} block, not PUBLIC KEY")));
    }
    let got: [u8; 32] = Sha256::digest(&der).into();
    if &got != pin {
        return Err(PinError::Mismatch {
            pinned: hex::encode(pin),
            published: hex::encode(got),
        });
    }
    let pk =
        p256::PublicKey::from_public_key_der(&der).map_err(|e| PinError::BadKey(e.to_string()))?;
    Ok(PinnedKey {
        point: pk.to_encoded_point(false).as_bytes().to_vec(),
        sha256: hex::encode(got),
    })
}

/// Fetches the cloud's command key and checks it against `pin` (hex): the key to give devices,
/// or why not.
pub fn pinned_command_key(
    http: &ureq::Agent,
    base: &str,
    pin: &str,
) -> Result<PinnedKey, AgentError> {
    let pin = parse_pin(pin).map_err(AgentError::Pin)?;
    let info = fetch_info(http, base)?;
    check_pinned(&info, &pin).map_err(AgentError::Pin)
}

impl<I2C: I2c, D: DelayNs> Agent<I2C, D> {
    /// Before anything else goes to the cloud: checks that it publishes the command key pinned
    /// by `pin` (hex) and that this chip holds that same key, so the chip will accept the
    /// cloud's commands and telemetry key.
    pub fn check_command_key(&mut self, pin: &str) -> Result<PinnedKey, AgentError> {
        let (http, base) = self.http();
        let key = pinned_command_key(http, base, pin)?;
        let mut held = vec![0u8; key.point.len()];
        self.chip()
            .read_zone(layout::COMMAND_KEY, 0, &mut held)
            .map_err(chip)?;
        if held != key.point {
            return Err(AgentError::Pin(PinError::NotInChip));
        }
        Ok(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePublicKey, LineEnding};

    fn published(pk: &p256::PublicKey) -> (CloudInfo, [u8; 32]) {
        let der = pk.to_public_key_der().unwrap();
        let info = CloudInfo {
            identity: "c".into(),
            version: "0".into(),
            command_key: Some(PublishedKey {
                public_key_pem: pk.to_public_key_pem(LineEnding::LF).unwrap(),
                // A liar's claim: the fingerprint is always recomputed.
                sha256: "00".repeat(32),
            }),
            firmware_key_sha256: None,
        };
        (info, Sha256::digest(der.as_bytes()).into())
    }

    #[test]
    fn the_right_pin_gives_the_point_and_any_other_is_refused() {
        let pk = p256::SecretKey::random(&mut rand_core::OsRng).public_key();
        let (info, pin) = published(&pk);
        let k = check_pinned(&info, &pin).unwrap();
        assert_eq!(k.point, pk.to_encoded_point(false).as_bytes());
        let mut wrong = pin;
        wrong[31] ^= 1;
        assert!(matches!(
            check_pinned(&info, &wrong),
            Err(PinError::Mismatch { .. })
        ));
        let none = CloudInfo {
            command_key: None,
            ..info.clone()
        };
        assert_eq!(check_pinned(&none, &pin), Err(PinError::NoKey));
        let mut cert = info;
        if let Some(k) = cert.command_key.as_mut() {
            k.public_key_pem = k.public_key_pem.replace("PUBLIC KEY", "CERTIFICATE");
        }
        assert!(matches!(
            check_pinned(&cert, &pin),
            Err(PinError::BadKey(_))
        ));
    }

    #[test]
    fn pins_are_64_hex_digits_colons_and_case_free() {
        let h = "AB:".repeat(31) + "ab";
        assert_eq!(parse_pin(&h).unwrap(), [0xab; 32]);
        assert!(matches!(
            parse_pin(&"ab".repeat(31)),
            Err(PinError::Malformed(_))
        ));
        assert!(matches!(parse_pin("xyz"), Err(PinError::Malformed(_))));
    }
}
