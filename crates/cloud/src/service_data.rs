//! The data path as service operations: chip-signed, encrypted telemetry up; command-key-signed
//! commands down with chip-signed receipts; firmware releases; chip-signed usage reports. A
//! device operation takes the [`DeviceSession`] it acts for, an operator's the [`Admin`] proof.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use sesame_proto::data::{
    Command, CommandList, FirmwarePublished, Manifest, PendingCommands, QueueRequest,
    ReceiptRecorded, ReceiptRequest, TelemetryAccepted, TelemetryLog, TelemetryMessage,
    TelemetryRequest, UsageRecorded, UsageReport, UsageRequest, MANIFEST_HEADER,
};
use sesame_proto::messages;
use sha2::Digest;

use crate::access::{Admin, DeviceSession};
use crate::auth;
use crate::error::{Failure, Kind};
use crate::service::Service;
use crate::service_admin::serial_arg;
use crate::store::StoreError;
use crate::store_data::CommandRow;

type R<T> = Result<T, Failure>;

/// Longest command body, bytes.
const COMMAND_MAX: usize = 4096;

/// Outcomes a receipt may report, each optionally followed by `:detail`.
pub const RECEIPT_OUTCOMES: [&str; 3] = ["executed", "refused", "failed"];
/// Longest receipt detail, bytes.
const RECEIPT_DETAIL_MAX: usize = 200;

fn refused(kind: Kind, code: &'static str, message: &str) -> Failure {
    Failure::new(kind, code, message)
}

/// Checks that `message` was signed (`R || S`) by the chip behind this session.
fn signed_by_chip(dev: &DeviceSession, message: &[u8], sig: &[u8], what: &str) -> R<()> {
    let pk = hex::decode(&dev.0.public_key).unwrap_or_default();
    if auth::verify(&pk, message, sig) {
        Ok(())
    } else {
        Err(refused(
            Kind::Unauthenticated,
            "bad_signature",
            &format!("the {what} is not signed by the device's chip"),
        ))
    }
}

/// A receipt status is `OUTCOME` or `OUTCOME:detail`, with OUTCOME from [`RECEIPT_OUTCOMES`] and
/// a short printable detail: a receipt always settles its command. Returns the outcome.
fn receipt_outcome(status: &str) -> R<&'static str> {
    let (outcome, detail) = status.split_once(':').unwrap_or((status, ""));
    let detail_ok = detail.len() <= RECEIPT_DETAIL_MAX && !detail.chars().any(char::is_control);
    match RECEIPT_OUTCOMES.iter().find(|o| **o == outcome) {
        Some(o) if detail_ok && (detail.is_empty() != status.contains(':')) => Ok(o),
        _ => Err(Failure::invalid(
            "bad_receipt_status",
            format!(
                "a receipt status is one of {} optionally followed by ':' and up to {RECEIPT_DETAIL_MAX} printable characters",
                RECEIPT_OUTCOMES.join(", ")
            ),
        )),
    }
}

fn command(c: CommandRow) -> Command {
    Command {
        serial: c.serial,
        seq: c.seq,
        expires: c.expires,
        body: c.body,
        signature: c.signature,
        receipt: c.receipt,
    }
}

impl Service {
    /// Accepts a telemetry message: signed by the session's chip, decrypting under the
    /// session's key, with a sequence above the last accepted (committed before the answer).
    pub async fn ingest_telemetry(
        &self,
        dev: &DeviceSession,
        r: &TelemetryRequest,
    ) -> R<TelemetryAccepted> {
        let result = self.ingest(dev, r).await;
        match &result {
            Ok(_) => self.metrics.telemetry_accepted(),
            Err(e) => self.metrics.telemetry_refused(e.code),
        }
        result
    }

    async fn ingest(&self, dev: &DeviceSession, r: &TelemetryRequest) -> R<TelemetryAccepted> {
        let serial = dev.serial();
        let m = messages::telemetry_message(
            &self.config.identity,
            serial,
            r.seq,
            r.time,
            &r.nonce,
            &r.ciphertext,
        );
        if let Err(e) = signed_by_chip(dev, &m, &r.signature, "message") {
            let _ = self
                .audit(serial, "telemetry_refused", "bad_signature", "")
                .await;
            return Err(e);
        }
        let key: [u8; 32] = hex::decode(&dev.0.telemetry_key)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| {
                refused(
                    Kind::Conflict,
                    "no_session_key",
                    "log in with a key exchange first",
                )
            })?;
        let aad = messages::telemetry_aad(serial, r.seq, r.time);
        let Some(plain) = messages::open_payload(&key, &r.nonce, &aad, &r.ciphertext) else {
            let _ = self.audit(serial, "telemetry_refused", "bad_tag", "").await;
            return Err(refused(
                Kind::Unauthenticated,
                "bad_tag",
                "the payload does not decrypt under the session key",
            ));
        };
        let seq = i64::try_from(r.seq)
            .map_err(|_| Failure::invalid("malformed_request", "seq out of range"))?;
        let payload = String::from_utf8(plain)
            .ok()
            .filter(|p| !p.contains('\0'))
            .ok_or_else(|| {
                Failure::invalid(
                    "unstorable_input",
                    "the decrypted payload must be UTF-8 text without NUL",
                )
            })?;
        // Committed before the acknowledgement; a sequence not above the last accepted is a replay.
        let stored = self
            .timed(
                "put_telemetry",
                self.store
                    .put_telemetry(serial, seq, r.time, &payload, self.now()),
            )
            .await?;
        if !stored {
            let _ = self
                .audit(serial, "telemetry_refused", "replay", &seq.to_string())
                .await;
            return Err(refused(
                Kind::Conflict,
                "replay",
                "sequence number not above the last accepted",
            ));
        }
        Ok(TelemetryAccepted { accepted: seq })
    }

    /// A device's accepted telemetry, decrypted (the newest 10,000 messages at most).
    pub async fn telemetry_log(&self, _: &Admin, serial: &str) -> R<TelemetryLog> {
        let serial = serial_arg(serial)?;
        let rows = self
            .timed("telemetry", self.store.telemetry(&serial, 10_000))
            .await?;
        let messages = rows
            .into_iter()
            .map(serde_json::from_value::<TelemetryMessage>)
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Corrupt(format!("telemetry row: {e}")))?;
        Ok(TelemetryLog { serial, messages })
    }

    /// Signs a command for a device with the command key and queues it.
    pub async fn queue_command(&self, _: &Admin, serial: &str, r: &QueueRequest) -> R<Command> {
        let serial = serial_arg(serial)?;
        if r.body.is_empty() || r.body.len() > COMMAND_MAX {
            return Err(Failure::invalid(
                "malformed_request",
                format!("a command body is 1 to {COMMAND_MAX} bytes"),
            ));
        }
        if self.command_key.is_none() {
            return Err(refused(
                Kind::Conflict,
                "no_command_key",
                "the cloud has no command-signing key configured",
            ));
        }
        // Two operators may take the same sequence: the store keeps one, the other retries.
        for _ in 0..3 {
            let seq = self
                .timed("next_command_seq", self.store.next_command_seq(&serial))
                .await?;
            let expires = self.now() + r.ttl.unwrap_or(3600).clamp(1, 30 * 86_400);
            let m = messages::command_message(
                &self.config.identity,
                &serial,
                seq as u64,
                expires,
                r.body.as_bytes(),
            );
            let sig = self
                .sign_command(&m)
                .ok_or_else(|| refused(Kind::Unavailable, "unavailable", "signing failed"))?;
            let c = CommandRow {
                serial: serial.clone(),
                seq,
                expires,
                body: r.body.clone(),
                signature: B64.encode(sig),
                receipt: String::new(),
            };
            if self
                .timed("put_command", self.store.put_command(&c))
                .await?
            {
                self.audit(&serial, "command_queued", "", &seq.to_string())
                    .await?;
                self.metrics.command_issued();
                return Ok(command(c));
            }
        }
        Err(refused(
            Kind::Conflict,
            "busy",
            "concurrent commands for this device; retry",
        ))
    }

    /// A device's commands with their receipts.
    pub async fn command_log(&self, _: &Admin, serial: &str) -> R<CommandList> {
        let serial = serial_arg(serial)?;
        let rows = self
            .timed("commands", self.store.commands(&serial, false))
            .await?;
        Ok(CommandList {
            commands: rows.into_iter().map(command).collect(),
        })
    }

    /// The session's device's pending commands.
    pub async fn pending_commands(&self, dev: &DeviceSession) -> R<PendingCommands> {
        let rows = self
            .timed("commands", self.store.commands(dev.serial(), true))
            .await?;
        Ok(PendingCommands {
            identity: self.config.identity.clone(),
            commands: rows.into_iter().map(command).collect(),
        })
    }

    /// Records the chip-signed receipt of a pending command.
    pub async fn record_receipt(
        &self,
        dev: &DeviceSession,
        seq: i64,
        r: &ReceiptRequest,
    ) -> R<ReceiptRecorded> {
        if seq < 0 {
            return Err(Failure::invalid("malformed_request", "negative sequence"));
        }
        let outcome = receipt_outcome(&r.status)?;
        let serial = dev.serial();
        let m = messages::receipt_message(&self.config.identity, serial, seq as u64, &r.status);
        signed_by_chip(dev, &m, &r.signature, "receipt")?;
        if !self
            .timed(
                "put_receipt",
                self.store.put_receipt(serial, seq, &r.status, self.now()),
            )
            .await?
        {
            return Err(refused(
                Kind::Conflict,
                "no_pending_command",
                "no pending command with this sequence",
            ));
        }
        self.audit(serial, "command_receipt", &r.status, &seq.to_string())
            .await?;
        self.metrics.receipt(outcome);
        Ok(ReceiptRecorded { recorded: seq })
    }

    /// Publishes a release: accepted only if `manifest` (compact JSON) describes the image and
    /// its signature verifies under the configured firmware key, so no version is spent on a
    /// release that devices would refuse.
    pub async fn publish_firmware(
        &self,
        _: &Admin,
        manifest: Option<&str>,
        image: &[u8],
    ) -> R<FirmwarePublished> {
        let Some(fw_key) = self.firmware_key.as_ref() else {
            return Err(refused(
                Kind::Conflict,
                "no_firmware_key",
                "the cloud has no firmware public key configured (firmware_key)",
            ));
        };
        let manifest: Manifest = manifest
            .and_then(|v| serde_json::from_str(v).ok())
            .ok_or_else(|| {
                Failure::invalid(
                    "malformed_request",
                    format!(
                        "send the signed manifest as compact JSON in the {MANIFEST_HEADER} header"
                    ),
                )
            })?;
        let sha = sha2::Sha256::digest(image);
        if manifest.sha256 != hex::encode(sha) || manifest.size != image.len() as u64 {
            return Err(Failure::invalid(
                "manifest_mismatch",
                "the manifest does not describe this image",
            ));
        }
        let sig = B64
            .decode(manifest.signature.trim())
            .map_err(|_| Failure::invalid("malformed_request", "signature is not valid base64"))?;
        let m = messages::firmware_message(manifest.version, &sha, manifest.size);
        if !auth::verify(fw_key, &m, &sig) {
            let _ = self
                .audit(
                    "",
                    "firmware_refused",
                    "bad_signature",
                    &manifest.version.to_string(),
                )
                .await;
            return Err(refused(
                Kind::Unprocessable,
                "bad_signature",
                "the manifest is not signed by the firmware key",
            ));
        }
        let version = i64::from(manifest.version);
        let manifest_json = serde_json::to_string(&manifest).unwrap_or_default();
        if !self
            .timed(
                "put_firmware",
                self.store
                    .put_firmware(version, &manifest_json, &B64.encode(image), self.now()),
            )
            .await?
        {
            return Err(refused(
                Kind::Conflict,
                "exists",
                "this version is already released",
            ));
        }
        self.audit("", "firmware_release", "", &version.to_string())
            .await?;
        self.metrics.firmware_published();
        Ok(FirmwarePublished {
            version,
            size: image.len() as u64,
        })
    }

    /// The newest release's manifest.
    pub async fn latest_firmware(&self, _: &DeviceSession) -> R<Manifest> {
        let Some((m, _)) = self.timed("firmware", self.store.firmware(None)).await? else {
            return Err(Failure::not_found("no firmware released"));
        };
        let m = serde_json::from_str(&m)
            .map_err(|e| StoreError::Corrupt(format!("stored manifest: {e}")))?;
        self.metrics.firmware_fetched("manifest");
        Ok(m)
    }

    /// A release's manifest (compact JSON, as signed) and image.
    pub async fn firmware_image(&self, _: &DeviceSession, version: i64) -> R<(String, Vec<u8>)> {
        let Some((m, image)) = self
            .timed("firmware", self.store.firmware(Some(version)))
            .await?
        else {
            return Err(Failure::not_found(format!("no firmware {version}")));
        };
        let bytes = B64
            .decode(image)
            .map_err(|_| StoreError::Corrupt("stored image is not base64".into()))?;
        self.metrics.firmware_fetched("image");
        Ok((m, bytes))
    }

    /// Records a chip-signed usage report with a sequence above the last.
    pub async fn report_usage(&self, dev: &DeviceSession, r: &UsageRequest) -> R<UsageRecorded> {
        let serial = dev.serial();
        let m = messages::usage_message(&self.config.identity, serial, r.seq, r.remaining);
        signed_by_chip(dev, &m, &r.signature, "report")?;
        let seq = i64::try_from(r.seq)
            .map_err(|_| Failure::invalid("malformed_request", "seq out of range"))?;
        if !self
            .timed(
                "put_usage",
                self.store
                    .put_usage(serial, seq, i64::from(r.remaining), self.now()),
            )
            .await?
        {
            return Err(refused(
                Kind::Conflict,
                "replay",
                "sequence number not above the last report",
            ));
        }
        Ok(UsageRecorded {
            remaining: r.remaining,
        })
    }

    /// A device's last usage report.
    pub async fn usage_report(&self, _: &Admin, serial: &str) -> R<UsageReport> {
        let serial = serial_arg(serial)?;
        match self.timed("usage", self.store.usage(&serial)).await? {
            Some((remaining, at)) => Ok(UsageReport {
                serial,
                remaining,
                reported_at: at,
            }),
            None => Err(Failure::not_found(format!("no usage report from {serial}"))),
        }
    }
}
