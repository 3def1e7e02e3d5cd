//! Storage of imported factory batches: one row per batch (its signed identity) and one per chip
//! (serial → batch, certificate fingerprint, key id, certificate expiry), and the devices'
//! pre-registration in the registry.

use sqlx::{Any, Row, Transaction};

use crate::store::{Store, StoreError};

type R<T> = Result<T, StoreError>;

/// Rows per multi-row `INSERT` (4 parameters a row, well under both engines' limits).
const ROWS_PER_STATEMENT: usize = 500;

/// A verified batch to record.
pub struct BatchRecord<'a> {
    /// Batch id from the signed manifest.
    pub id: &'a str,
    /// SHA-256 of the manifest bytes.
    pub manifest_sha256: &'a str,
    /// Owner the devices bind to: the family CA fingerprint.
    pub owner: &'a str,
    /// Family name.
    pub family: &'a str,
    /// Id of the factory key that signed it.
    pub factory_key: &'a str,
    /// The devices' certificate notAfter (Unix seconds).
    pub not_after: i64,
}

/// One chip of a batch.
pub struct BatchEntry {
    /// Canonical serial.
    pub serial: String,
    /// SHA-256 of its certificate DER, hex.
    pub cert_sha256: String,
    /// SHA-256 of its public key point, hex.
    pub key_id: String,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    /// New batch: this many devices pre-registered (the rest were already bound to the family).
    New {
        /// Chips recorded.
        chips: u64,
        /// Registry rows created.
        registered: u64,
    },
    /// The same batch (id and manifest) was imported before: nothing changed.
    Again,
    /// The batch id is known with another manifest.
    IdReused,
    /// A serial belongs to another imported batch (an older batch replayed under a new id).
    SerialInBatch {
        /// The serial.
        serial: String,
        /// The batch that has it.
        batch: String,
    },
    /// A serial is bound to another owner in the registry.
    SerialOwned(String),
}

impl Store {
    /// Records a verified batch and pre-registers its devices, all or nothing.
    pub(crate) async fn import_batch(
        &self,
        b: &BatchRecord<'_>,
        entries: &mut [BatchEntry],
        now: i64,
    ) -> R<Imported> {
        let mut tx = self.pool.begin().await?;
        let known = sqlx::query("SELECT manifest_sha256 FROM batches WHERE id = $1")
            .bind(b.id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = known {
            let sha: String = row.try_get("manifest_sha256")?;
            return Ok(if sha == b.manifest_sha256 {
                Imported::Again
            } else {
                Imported::IdReused
            });
        }
        let claimed = sqlx::query(
            "INSERT INTO batches (id, manifest_sha256, owner, family, factory_key, count, not_after, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind(b.id).bind(b.manifest_sha256).bind(b.owner).bind(b.family).bind(b.factory_key)
        .bind(entries.len() as i64).bind(b.not_after).bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            // Another instance imported it a moment ago.
            return Ok(Imported::Again);
        }
        // Serial order walks the primary-key indexes once.
        entries.sort_unstable_by(|x, y| x.serial.cmp(&y.serial));
        let mut registered = 0u64;
        for chunk in entries.chunks(ROWS_PER_STATEMENT) {
            let inserted = insert_chips(&mut tx, b, chunk).await?;
            if inserted.len() < chunk.len() {
                let serial = first_missing(chunk, &inserted);
                let row = sqlx::query("SELECT batch FROM batch_devices WHERE serial = $1")
                    .bind(&serial)
                    .fetch_one(&mut *tx)
                    .await?;
                return Ok(Imported::SerialInBatch {
                    serial,
                    batch: row.try_get("batch")?,
                });
            }
            let bound = pre_register(&mut tx, b.owner, chunk, now).await?;
            registered += bound.len() as u64;
            if bound.len() < chunk.len() {
                for e in chunk.iter().filter(|e| !bound.contains(&e.serial)) {
                    let row = sqlx::query("SELECT owner FROM registry WHERE serial = $1")
                        .bind(&e.serial)
                        .fetch_one(&mut *tx)
                        .await?;
                    let owner: String = row.try_get("owner")?;
                    if owner != b.owner {
                        return Ok(Imported::SerialOwned(e.serial.clone()));
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(Imported::New {
            chips: entries.len() as u64,
            registered,
        })
    }

    /// Chips of imported batches whose certificate expires before `before` (Unix seconds),
    /// soonest first: (serial, batch, family, not_after).
    pub(crate) async fn expiring(&self, before: i64, limit: i64) -> R<Vec<ExpiringRow>> {
        let rows = sqlx::query(
            "SELECT d.serial AS serial, d.batch AS batch, b.family AS family, d.not_after AS not_after
             FROM batch_devices d JOIN batches b ON b.id = d.batch
             WHERE d.not_after < $1 ORDER BY d.not_after, d.serial LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExpiringRow {
                    serial: r.try_get("serial")?,
                    batch: r.try_get("batch")?,
                    family: r.try_get("family")?,
                    not_after: r.try_get("not_after")?,
                })
            })
            .collect()
    }

    /// How many chips of imported batches expire before `before`.
    pub(crate) async fn expiring_count(&self, before: i64) -> R<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM batch_devices WHERE not_after < $1")
            .bind(before)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

/// A device certificate nearing its end.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ExpiringRow {
    /// Serial.
    pub serial: String,
    /// Batch it came in.
    pub batch: String,
    /// Family name.
    pub family: String,
    /// Certificate notAfter (Unix seconds).
    pub not_after: i64,
}

fn first_missing(chunk: &[BatchEntry], inserted: &[String]) -> String {
    chunk
        .iter()
        .find(|e| !inserted.contains(&e.serial))
        .map(|e| e.serial.clone())
        .unwrap_or_default()
}

fn values(rows: usize, per_row: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(rows * per_row * 6);
    for k in 0..rows {
        if k > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..per_row {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", k * per_row + c + 1));
        }
        sql.push_str(tail);
        sql.push(')');
    }
    sql
}

async fn insert_chips(
    tx: &mut Transaction<'_, Any>,
    b: &BatchRecord<'_>,
    chunk: &[BatchEntry],
) -> R<Vec<String>> {
    let sql = format!(
        "INSERT INTO batch_devices (serial, batch, cert_sha256, key_id, not_after) VALUES {} ON CONFLICT (serial) DO NOTHING RETURNING serial",
        // `not_after` is a number the service checked, not text: safe to inline.
        values(chunk.len(), 4, &format!(", {}", b.not_after))
    );
    let mut q = sqlx::query(&sql).persistent(false);
    for e in chunk {
        q = q
            .bind(e.serial.as_str())
            .bind(b.id)
            .bind(e.cert_sha256.as_str())
            .bind(e.key_id.as_str());
    }
    let rows = q.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| r.try_get("serial").map_err(Into::into))
        .collect()
}

/// Binds each serial to the family before its first login. The certificate id and DER stay
/// empty until the device shows its certificate: its first login then fills them in.
async fn pre_register(
    tx: &mut Transaction<'_, Any>,
    owner: &str,
    chunk: &[BatchEntry],
    now: i64,
) -> R<Vec<String>> {
    let sql = format!(
        "INSERT INTO registry (serial, owner, key_id, cert_id, der_hash, der, enrolled, created, last_auth) VALUES {} ON CONFLICT (serial) DO NOTHING RETURNING serial",
        values(chunk.len(), 3, &format!(", '', '', '', 0, {now}, 0"))
    );
    let mut q = sqlx::query(&sql).persistent(false);
    for e in chunk {
        q = q
            .bind(e.serial.as_str())
            .bind(owner)
            .bind(e.key_id.as_str());
    }
    let rows = q.fetch_all(&mut **tx).await?;
    rows.iter()
        .map(|r| r.try_get("serial").map_err(Into::into))
        .collect()
}
