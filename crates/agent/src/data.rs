//! The data path of a logged-in device: encrypted, chip-signed telemetry; commands verified by
//! the chip against the command key in its read-only zone; usage reports; firmware updates and
//! boot verification with an anti-rollback counter.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use sesame_host::Curve;
use sesame_proto::messages;
use sha2::Digest;

use crate::{chip, layout, post_json, Agent, AgentError};

pub use sesame_proto::data::{Command, Manifest};
use sesame_proto::data::{
    FirmwarePublished, PendingCommands, ReceiptRequest, TelemetryRequest, UsageRequest,
};

/// What the device did with a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Verified and executed; the handler's status.
    Executed(String),
    /// Refused, with the reason (nothing was executed).
    Refused(&'static str),
}

/// Why a firmware image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareRefusal {
    /// The image does not match its manifest.
    Mismatch,
    /// The chip says the signature is not the firmware key's.
    BadSignature,
    /// Older than the anti-rollback counter allows.
    Downgrade,
    /// Nothing installed.
    Missing,
}

impl FirmwareRefusal {
    /// A short code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Mismatch => "image does not match its manifest",
            Self::BadSignature => "signature rejected by the secure element",
            Self::Downgrade => "version below the anti-rollback counter",
            Self::Missing => "no firmware installed",
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn get_json<T: serde::de::DeserializeOwned>(
    http: &ureq::Agent,
    url: &str,
    token: &str,
) -> Result<T, AgentError> {
    match http
        .get(url)
        .set("authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => r
            .into_json()
            .map_err(|e| AgentError::Protocol(e.to_string())),
        Err(ureq::Error::Status(status, r)) => {
            let v: serde_json::Value = r.into_json().unwrap_or_default();
            Err(AgentError::Refused {
                status,
                code: v["error"].as_str().unwrap_or("unknown").into(),
                message: v["message"].as_str().unwrap_or("").into(),
            })
        }
        Err(e) => Err(AgentError::Transport(e.to_string())),
    }
}

fn refused(status: u16, r: ureq::Response) -> AgentError {
    let v: serde_json::Value = r.into_json().unwrap_or_default();
    AgentError::Refused {
        status,
        code: v["error"].as_str().unwrap_or("unknown").into(),
        message: v["message"].as_str().unwrap_or("").into(),
    }
}

/// Largest firmware image a device downloads, bytes.
pub const FIRMWARE_MAX: u64 = 64 * 1024 * 1024;

fn get_bytes(http: &ureq::Agent, url: &str, token: &str) -> Result<Vec<u8>, AgentError> {
    use std::io::Read;
    match http
        .get(url)
        .set("authorization", &format!("Bearer {token}"))
        .call()
    {
        Ok(r) => {
            let mut out = Vec::new();
            r.into_reader()
                .take(FIRMWARE_MAX + 1)
                .read_to_end(&mut out)
                .map_err(|e| AgentError::Transport(e.to_string()))?;
            if out.len() as u64 > FIRMWARE_MAX {
                return Err(AgentError::Protocol(
                    "firmware image over the size limit".into(),
                ));
            }
            Ok(out)
        }
        Err(ureq::Error::Status(status, r)) => Err(refused(status, r)),
        Err(e) => Err(AgentError::Transport(e.to_string())),
    }
}

/// Operator side: publishes a signed release (the image as bytes, its manifest in the
/// `sesame-manifest` header). The cloud accepts it only if the manifest verifies under its
/// firmware key.
pub fn publish_firmware(
    http: &ureq::Agent,
    cloud: &str,
    admin_token: &str,
    manifest: &Manifest,
    image: &[u8],
) -> Result<FirmwarePublished, AgentError> {
    let m = serde_json::to_string(manifest).map_err(|e| AgentError::Protocol(e.to_string()))?;
    match http
        .post(&format!(
            "{}/v1/admin/firmware",
            cloud.trim_end_matches('/')
        ))
        .set("authorization", &format!("Bearer {admin_token}"))
        .set("content-type", "application/octet-stream")
        .set("sesame-manifest", &m)
        .send_bytes(image)
    {
        Ok(r) => r
            .into_json()
            .map_err(|e| AgentError::Protocol(e.to_string())),
        Err(ureq::Error::Status(status, r)) => Err(refused(status, r)),
        Err(e) => Err(AgentError::Transport(e.to_string())),
    }
}

impl<I2C: I2c, D: DelayNs> Agent<I2C, D> {
    fn token(&self) -> Result<String, AgentError> {
        self.session
            .as_ref()
            .map(|s| s.token.clone())
            .ok_or_else(|| AgentError::Protocol("not logged in".into()))
    }

    /// Has the chip verify a signature over SHA-256(`message`) with a P-256 key kept in `zone`.
    pub fn chip_verifies(
        &mut self,
        zone: u8,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, AgentError> {
        let digest = sha2::Sha256::digest(message);
        self.se
            .verify_with_zone_key(zone, 0, Curve::P256, signature, &digest)
            .map_err(chip)
    }

    /// Builds a telemetry message for `payload`: encrypted under the session key, chip-signed.
    pub fn telemetry_body(&mut self, payload: &[u8]) -> Result<TelemetryRequest, AgentError> {
        let key = self.telemetry_key.ok_or_else(|| {
            AgentError::Protocol(
                "no telemetry key: the cloud did not complete the key exchange".into(),
            )
        })?;
        self.telemetry_seq += 1;
        let (seq, time) = (self.telemetry_seq, unix_now());
        let mut nonce = [0u8; 12];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let ct = messages::seal_payload(
            &key,
            &nonce,
            &messages::telemetry_aad(&self.serial, seq, time),
            payload,
        );
        let m = messages::telemetry_message(&self.identity, &self.serial, seq, time, &nonce, &ct);
        let sig = self.sign_message(&m)?;
        Ok(TelemetryRequest {
            seq,
            time,
            nonce: nonce.to_vec(),
            ciphertext: ct,
            signature: sig,
        })
    }

    /// Sends a telemetry message body (see [`Agent::telemetry_body`]).
    pub fn post_telemetry(&mut self, body: &TelemetryRequest) -> Result<(), AgentError> {
        let token = self.token()?;
        let _: serde_json::Value = post_json(
            &self.http,
            &format!("{}/v1/telemetry", self.cloud),
            Some(&token),
            body,
        )?;
        Ok(())
    }

    /// Encrypts, signs and sends one telemetry payload; returns its sequence number.
    pub fn send_telemetry(&mut self, payload: &[u8]) -> Result<u64, AgentError> {
        let body = self.telemetry_body(payload)?;
        self.post_telemetry(&body)?;
        Ok(self.telemetry_seq)
    }

    fn last_command(&mut self) -> Result<u64, AgentError> {
        let mut b = [0u8; 8];
        self.se.read(layout::DATA, 0, &mut b).map_err(chip)?;
        Ok(u64::from_be_bytes(b))
    }

    /// Checks one command: addressed here, unexpired, newer than the last executed, and signed
    /// by the cloud's command key as the chip verifies it.
    pub fn check_command(&mut self, c: &Command) -> Result<Result<(), &'static str>, AgentError> {
        if c.serial != self.serial {
            return Ok(Err("addressed to another device"));
        }
        if c.expires <= unix_now() {
            return Ok(Err("expired"));
        }
        if c.seq <= 0 || (c.seq as u64) <= self.last_command()? {
            return Ok(Err("not newer than the last executed"));
        }
        let sig = B64.decode(&c.signature).unwrap_or_default();
        let m = messages::command_message(
            &self.identity,
            &c.serial,
            c.seq as u64,
            c.expires,
            c.body.as_bytes(),
        );
        if !self.chip_verifies(layout::COMMAND_KEY, &m, &sig)? {
            return Ok(Err("signature rejected by the secure element"));
        }
        Ok(Ok(()))
    }

    /// Runs one command through `execute` if it checks out, records it as the last executed,
    /// and returns a chip-signed receipt to the cloud.
    pub fn handle_command(
        &mut self,
        c: &Command,
        execute: &mut dyn FnMut(&str) -> String,
    ) -> Result<CommandOutcome, AgentError> {
        let outcome = match self.check_command(c)? {
            Ok(()) => {
                let status = execute(&c.body);
                self.se
                    .update(layout::DATA, 0, &(c.seq as u64).to_be_bytes())
                    .map_err(chip)?;
                CommandOutcome::Executed(status)
            }
            Err(why) => CommandOutcome::Refused(why),
        };
        // The cloud takes `executed`/`refused`/`failed` with a short printable detail.
        let detail = |d: &str| -> String {
            d.chars()
                .filter(|c| !c.is_control())
                .scan(0usize, |n, c| {
                    *n += c.len_utf8();
                    (*n <= 200).then_some(c)
                })
                .collect()
        };
        let status = match &outcome {
            CommandOutcome::Executed(s) => format!("executed:{}", detail(s)),
            CommandOutcome::Refused(r) => format!("refused:{}", detail(r)),
        };
        if c.serial == self.serial && c.seq > 0 {
            let sig = self.sign_message(&messages::receipt_message(
                &self.identity,
                &self.serial,
                c.seq as u64,
                &status,
            ))?;
            let token = self.token()?;
            let r: Result<serde_json::Value, _> = post_json(
                &self.http,
                &format!("{}/v1/commands/{}/receipt", self.cloud, c.seq),
                Some(&token),
                &ReceiptRequest {
                    status: status.clone(),
                    signature: sig,
                },
            );
            // A receipt for a command that is not pending (e.g. a replayed one) is refused by
            // the cloud; the outcome on the device stands.
            if let Err(e) = r {
                if !matches!(e, AgentError::Refused { status: 409, .. }) {
                    return Err(e);
                }
            }
        }
        Ok(outcome)
    }

    /// Fetches the pending commands and handles each.
    pub fn poll_commands(
        &mut self,
        execute: &mut dyn FnMut(&str) -> String,
    ) -> Result<Vec<(Command, CommandOutcome)>, AgentError> {
        let token = self.token()?;
        let pending: PendingCommands =
            get_json(&self.http, &format!("{}/v1/commands", self.cloud), &token)?;
        let mut out = Vec::new();
        for c in pending.commands {
            let o = self.handle_command(&c, execute)?;
            out.push((c, o));
        }
        Ok(out)
    }

    /// One use of the consumable: decrements the chip's one-way counter (refused by the chip
    /// once it is exhausted) and sends a chip-signed usage report. Returns the uses left.
    pub fn use_consumable(&mut self) -> Result<u32, AgentError> {
        let remaining = self
            .se
            .decrement(layout::USAGE, 0, 1, &[])
            .map_err(crate::decrement_error)?;
        let seq = u64::from(layout::USAGE_INITIAL.saturating_sub(remaining));
        let sig = self.sign_message(&messages::usage_message(
            &self.identity,
            &self.serial,
            seq,
            remaining,
        ))?;
        let token = self.token()?;
        let _: serde_json::Value = post_json(
            &self.http,
            &format!("{}/v1/usage", self.cloud),
            Some(&token),
            &UsageRequest {
                seq,
                remaining,
                signature: sig,
            },
        )?;
        Ok(remaining)
    }

    /// The lowest firmware version the chip's anti-rollback counter allows.
    pub fn rollback_floor(&mut self) -> Result<u32, AgentError> {
        let mut none = [0u8; 0];
        let counter = self
            .se
            .read_counter(layout::ROLLBACK, 0, &mut none)
            .map_err(chip)?;
        Ok(layout::ROLLBACK_BASE - counter)
    }

    /// Verifies an image against its manifest through the chip, and against the rollback floor.
    pub fn verify_firmware(
        &mut self,
        m: &Manifest,
        image: &[u8],
    ) -> Result<Result<(), FirmwareRefusal>, AgentError> {
        let sha = sha2::Sha256::digest(image);
        if hex::encode(sha) != m.sha256 || image.len() as u64 != m.size {
            return Ok(Err(FirmwareRefusal::Mismatch));
        }
        let sig = B64.decode(&m.signature).unwrap_or_default();
        if !self.chip_verifies(
            layout::FIRMWARE_KEY,
            &messages::firmware_message(m.version, &sha, m.size),
            &sig,
        )? {
            return Ok(Err(FirmwareRefusal::BadSignature));
        }
        if m.version < self.rollback_floor()? {
            return Ok(Err(FirmwareRefusal::Downgrade));
        }
        Ok(Ok(()))
    }

    /// Installs a verified image into `dir` and raises the anti-rollback counter to its version.
    pub fn install_firmware(
        &mut self,
        dir: &std::path::Path,
        m: &Manifest,
        image: &[u8],
    ) -> Result<Result<u32, FirmwareRefusal>, AgentError> {
        if let Err(r) = self.verify_firmware(m, image)? {
            return Ok(Err(r));
        }
        let io =
            |e: std::io::Error| AgentError::Chip(format!("firmware store {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let (tmp_img, tmp_man) = (
            dir.join("installed.bin.tmp"),
            dir.join("installed.json.tmp"),
        );
        std::fs::write(&tmp_img, image).map_err(io)?;
        std::fs::write(&tmp_man, serde_json::to_vec(m).unwrap_or_default()).map_err(io)?;
        std::fs::rename(&tmp_img, dir.join("installed.bin")).map_err(io)?;
        std::fs::rename(&tmp_man, dir.join("installed.json")).map_err(io)?;
        let floor = self.rollback_floor()?;
        if m.version > floor {
            self.se
                .decrement(layout::ROLLBACK, 0, m.version - floor, &[])
                .map_err(crate::decrement_error)?;
        }
        Ok(Ok(m.version))
    }

    /// Checks the cloud for a newer release and installs it. `Ok(None)`: up to date.
    pub fn update_firmware(
        &mut self,
        dir: &std::path::Path,
    ) -> Result<Option<Result<u32, FirmwareRefusal>>, AgentError> {
        let token = self.token()?;
        let latest: Manifest = get_json(
            &self.http,
            &format!("{}/v1/firmware/latest", self.cloud),
            &token,
        )?;
        let installed = std::fs::read(dir.join("installed.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
        if installed.is_some_and(|i| i.version >= latest.version) {
            return Ok(None);
        }
        let image = get_bytes(
            &self.http,
            &format!("{}/v1/firmware/{}", self.cloud, latest.version),
            &token,
        )?;
        self.install_firmware(dir, &latest, &image).map(Some)
    }

    /// At each start: the installed image must verify through the chip and not be below the
    /// anti-rollback counter. Returns the running version.
    pub fn boot(
        &mut self,
        dir: &std::path::Path,
    ) -> Result<Result<u32, FirmwareRefusal>, AgentError> {
        let (Ok(image), Ok(man)) = (
            std::fs::read(dir.join("installed.bin")),
            std::fs::read(dir.join("installed.json")),
        ) else {
            return Ok(Err(FirmwareRefusal::Missing));
        };
        let Ok(m) = serde_json::from_slice::<Manifest>(&man) else {
            return Ok(Err(FirmwareRefusal::Mismatch));
        };
        Ok(self.verify_firmware(&m, &image)?.map(|()| m.version))
    }
}
