//! Storage of the data path: sessions with their telemetry keys, telemetry, commands,
//! firmware releases, usage. Same portable SQL as `store.rs`.

use sqlx::Row;

use crate::store::{Store, StoreError};

type R<T> = Result<T, StoreError>;

/// A command for a device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CommandRow {
    /// Target.
    pub serial: String,
    /// Per-device sequence number.
    pub seq: i64,
    /// Unix seconds.
    pub expires: i64,
    /// Body (UTF-8 text).
    pub body: String,
    /// Command-key signature `R || S`, base64.
    pub signature: String,
    /// Receipt status reported by the device ("" = none yet).
    pub receipt: String,
}

impl Store {
    /// Stores a message only if its sequence is above every accepted one of the device, in one
    /// statement (atomic on both engines). True if stored.
    pub(crate) async fn put_telemetry(
        &self,
        serial: &str,
        seq: i64,
        at: i64,
        payload: &str,
        now: i64,
    ) -> R<bool> {
        let n = sqlx::query(
            "INSERT INTO telemetry (serial, seq, at, payload, received)
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM telemetry WHERE serial = $6 AND seq >= $7)",
        )
        .bind(serial)
        .bind(seq)
        .bind(at)
        .bind(payload)
        .bind(now)
        .bind(serial)
        .bind(seq)
        .execute(&self.pool)
        .await;
        match n {
            Ok(r) => Ok(r.rows_affected() == 1),
            // Two instances racing on the same sequence: the primary key refuses the second.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn telemetry(&self, serial: &str, limit: i64) -> R<Vec<serde_json::Value>> {
        let rows = sqlx::query("SELECT seq, at, payload, received FROM telemetry WHERE serial = $1 ORDER BY seq LIMIT $2")
            .bind(serial)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "seq": r.try_get::<i64, _>("seq")?, "time": r.try_get::<i64, _>("at")?,
                    "payload": r.try_get::<String, _>("payload")?, "received": r.try_get::<i64, _>("received")?,
                }))
            })
            .collect()
    }

    pub(crate) async fn next_command_seq(&self, serial: &str) -> R<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS m FROM commands WHERE serial = $1")
            .bind(serial)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("m")? + 1)
    }

    pub(crate) async fn put_command(&self, c: &CommandRow) -> R<bool> {
        let r = sqlx::query("INSERT INTO commands (serial, seq, expires, body, signature, receipt, receipt_at) VALUES ($1, $2, $3, $4, $5, '', 0)")
            .bind(&c.serial)
            .bind(c.seq)
            .bind(c.expires)
            .bind(&c.body)
            .bind(&c.signature)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn commands(&self, serial: &str, pending_only: bool) -> R<Vec<CommandRow>> {
        let sql = if pending_only {
            "SELECT serial, seq, expires, body, signature, receipt FROM commands WHERE serial = $1 AND receipt = '' ORDER BY seq"
        } else {
            "SELECT serial, seq, expires, body, signature, receipt FROM commands WHERE serial = $1 ORDER BY seq"
        };
        let rows = sqlx::query(sql).bind(serial).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(CommandRow {
                    serial: r.try_get("serial")?,
                    seq: r.try_get("seq")?,
                    expires: r.try_get("expires")?,
                    body: r.try_get("body")?,
                    signature: r.try_get("signature")?,
                    receipt: r.try_get("receipt")?,
                })
            })
            .collect()
    }

    pub(crate) async fn put_receipt(
        &self,
        serial: &str,
        seq: i64,
        status: &str,
        now: i64,
    ) -> R<bool> {
        let n = sqlx::query("UPDATE commands SET receipt = $1, receipt_at = $2 WHERE serial = $3 AND seq = $4 AND receipt = ''")
            .bind(status)
            .bind(now)
            .bind(serial)
            .bind(seq)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn put_firmware(
        &self,
        version: i64,
        manifest: &str,
        image: &str,
        now: i64,
    ) -> R<bool> {
        let n = sqlx::query("INSERT INTO firmware (version, manifest, image, created) VALUES ($1, $2, $3, $4) ON CONFLICT (version) DO NOTHING")
            .bind(version)
            .bind(manifest)
            .bind(image)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// The newest release, or a given version: (manifest JSON, image base64).
    pub(crate) async fn firmware(&self, version: Option<i64>) -> R<Option<(String, String)>> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT manifest, image FROM firmware WHERE version = $1")
                    .bind(v)
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT manifest, image FROM firmware ORDER BY version DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.map(|r| Ok((r.try_get("manifest")?, r.try_get("image")?)))
            .transpose()
    }

    /// Records a usage report if its sequence is newer. True if recorded.
    pub(crate) async fn put_usage(
        &self,
        serial: &str,
        seq: i64,
        remaining: i64,
        now: i64,
    ) -> R<bool> {
        let n = sqlx::query(
            "INSERT INTO usage (serial, seq, remaining, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (serial) DO UPDATE SET seq = $5, remaining = $6, at = $7 WHERE usage.seq < $8",
        )
        .bind(serial)
        .bind(seq)
        .bind(remaining)
        .bind(now)
        .bind(seq)
        .bind(remaining)
        .bind(now)
        .bind(seq)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn usage(&self, serial: &str) -> R<Option<(i64, i64)>> {
        let row = sqlx::query("SELECT remaining, at FROM usage WHERE serial = $1")
            .bind(serial)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("remaining")?, r.try_get("at")?)))
            .transpose()
    }
}
