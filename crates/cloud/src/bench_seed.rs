//! Registry-scale benchmarks: seeding the registry with placeholder rows, fast.

use sha2::Digest;
use sqlx::Row;

use crate::store::{Store, StoreError};

/// Rows per `INSERT` statement: two bound parameters each, far under SQLite's 32,766 bound
/// parameters per statement (and PostgreSQL's 65,535). Not more: SQLite looks up each named
/// parameter (`$N`, the form both engines accept) by a linear scan of the ones before it, so a
/// statement's parse time grows with the square of its parameters (10,000 rows per statement
/// made seeding 8x slower).
const ROWS_PER_STATEMENT: usize = 500;

/// Serial prefix of placeholder rows; real serials are hex, so they never collide.
pub const SEED_SERIAL_PREFIX: &str = "SEED";

fn seed_row(i: u64) -> (String, String) {
    let mut h = sha2::Sha256::new();
    h.update(b"sesame registry seed");
    h.update(i.to_be_bytes());
    (
        hex::encode(h.finalize()),
        format!("{SEED_SERIAL_PREFIX}{i:012}"),
    )
}

impl Store {
    /// Number of placeholder rows made by [`Store::seed_enrolled_devices`].
    pub async fn seeded_devices(&self) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM registry WHERE serial >= 'SEED' AND serial < 'SEEE'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// Benchmarks only: makes sure the registry holds `n` placeholder, individually enrolled
    /// devices (fingerprint = hex SHA-256 of a counter, serial `SEED…`, no certificate), adding
    /// the missing ones in transactions of `batch` rows with multi-row `INSERT`s. Portable SQL
    /// (SQLite and PostgreSQL); rows that already exist are left alone.
    ///
    /// Each transaction's rows go in fingerprint order, so the primary-key index is walked
    /// once per transaction instead of at random (1,000,000 rows in ≈ 15 s on SQLite here).
    /// On SQLite the write-ahead log is checkpointed at the end, leaving the database as a
    /// long-running registry would be rather than with a log of everything just seeded.
    pub async fn seed_enrolled_devices(&self, n: u64, batch: u64) -> Result<(), StoreError> {
        let batch = batch.max(1);
        let now = crate::service::now();
        let mut next = self.seeded_devices().await?;
        if next >= n {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await?;
        while next < n {
            let end = next.saturating_add(batch).min(n);
            let mut rows: Vec<(String, String)> = (next..end).map(seed_row).collect();
            rows.sort_unstable_by(|a, b| a.1.cmp(&b.1));
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                insert_rows(&mut tx, chunk, now).await?;
            }
            tx.commit().await?;
            next = end;
        }
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    rows: &[(String, String)],
    now: i64,
) -> Result<(), StoreError> {
    let mut sql = String::with_capacity(rows.len() * 40 + 200);
    sql.push_str("INSERT INTO registry (cert_id, serial, owner, key_id, der_hash, der, enrolled, created, last_auth) VALUES ");
    for k in 0..rows.len() {
        if k > 0 {
            sql.push(',');
        }
        // `now` is a number this function made, not input: safe to inline.
        sql.push_str(&format!(
            "(${}, ${}, 'cert:seed', '', '', '', 1, {now}, 0)",
            2 * k + 1,
            2 * k + 2
        ));
    }
    sql.push_str(" ON CONFLICT (serial) DO NOTHING");
    let mut q = sqlx::query(&sql).persistent(false);
    for (fp, serial) in rows {
        q = q.bind(fp.as_str()).bind(serial.as_str());
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seeding_adds_only_the_missing_rows() {
        let t = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let url = format!("sqlite://{}", t.path().join("s.db").display());
        let s = Store::connect(&url).await.unwrap_or_else(|e| panic!("{e}"));
        s.seed_enrolled_devices(25_000, 7_000)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.seeded_devices().await.unwrap_or_default(), 25_000);
        s.seed_enrolled_devices(30_000, 10_000)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.seeded_devices().await.unwrap_or_default(), 30_000);
        let (_, serial) = seed_row(29_999);
        let row = s.device(&serial).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(row.is_some_and(|r| r.enrolled));
    }
}
