//! Storage on sqlx's `Any` driver: one schema and portable SQL for SQLite (file, WAL) and
//! PostgreSQL. Binary values are stored as base64/hex text, times as Unix seconds, so the same
//! statements run on both. Single-use challenges are consumed with `DELETE … RETURNING`, which
//! is atomic on both engines, also across several cloud instances sharing one PostgreSQL.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Numbered migrations, applied in order at start and recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
    "CREATE TABLE roots (fingerprint TEXT PRIMARY KEY, der TEXT NOT NULL, subject TEXT NOT NULL, created BIGINT NOT NULL);
     CREATE TABLE families (fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, der TEXT NOT NULL, root TEXT NOT NULL, revoked BIGINT NOT NULL, created BIGINT NOT NULL);
     CREATE TABLE devices (fingerprint TEXT PRIMARY KEY, serial TEXT NOT NULL, der TEXT NOT NULL, family TEXT NOT NULL, enrolled BIGINT NOT NULL, revoked BIGINT NOT NULL, created BIGINT NOT NULL, last_auth BIGINT NOT NULL);
     CREATE INDEX devices_serial ON devices (serial);
     CREATE TABLE revocations (target TEXT PRIMARY KEY, created BIGINT NOT NULL);
     CREATE TABLE codes (code TEXT PRIMARY KEY, expires BIGINT NOT NULL);
     CREATE TABLE challenges (id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, serial TEXT NOT NULL, public_key TEXT NOT NULL, challenge TEXT NOT NULL, family TEXT NOT NULL, expires BIGINT NOT NULL);
     CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, serial TEXT NOT NULL, expires BIGINT NOT NULL);
     CREATE TABLE rates (rkey TEXT PRIMARY KEY, window_start BIGINT NOT NULL, count BIGINT NOT NULL);
     CREATE TABLE audit (id TEXT PRIMARY KEY, at BIGINT NOT NULL, serial TEXT NOT NULL, event TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL);
     CREATE INDEX audit_serial_at ON audit (serial, at);
     CREATE INDEX audit_at ON audit (at);",
    ),
    (
        2,
        "ALTER TABLE sessions ADD COLUMN telemetry_key TEXT NOT NULL DEFAULT '';
     ALTER TABLE sessions ADD COLUMN public_key TEXT NOT NULL DEFAULT '';
     CREATE TABLE telemetry (serial TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, payload TEXT NOT NULL, received BIGINT NOT NULL, PRIMARY KEY (serial, seq));
     CREATE TABLE commands (serial TEXT NOT NULL, seq BIGINT NOT NULL, expires BIGINT NOT NULL, body TEXT NOT NULL, signature TEXT NOT NULL, receipt TEXT NOT NULL, receipt_at BIGINT NOT NULL, PRIMARY KEY (serial, seq));
     CREATE TABLE firmware (version BIGINT PRIMARY KEY, manifest TEXT NOT NULL, image TEXT NOT NULL, created BIGINT NOT NULL);
     CREATE TABLE usage (serial TEXT PRIMARY KEY, seq BIGINT NOT NULL, remaining BIGINT NOT NULL, at BIGINT NOT NULL);",
    ),
];

/// A storage failure (always a 5xx; details go to the log, not the client).
#[derive(Debug)]
pub struct StoreError(pub String);

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "database: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.to_string())
    }
}

type R<T> = Result<T, StoreError>;

/// The database.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
}

/// A trusted root.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RootRow {
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// Subject name.
    pub subject: String,
    /// DER, base64.
    #[serde(skip)]
    pub der: String,
}

/// An enrolled family.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FamilyRow {
    /// Fingerprint of the family CA certificate.
    pub fingerprint: String,
    /// Family name (the CA's CN).
    pub name: String,
    /// Fingerprint of the root it chains to.
    pub root: String,
    /// Revoked.
    pub revoked: bool,
    /// DER, base64.
    #[serde(skip)]
    pub der: String,
}

/// A device the cloud knows: enrolled one by one, or seen through its family.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceRow {
    /// Certificate fingerprint.
    pub fingerprint: String,
    /// Serial (certificate CN).
    pub serial: String,
    /// Family fingerprint, empty for an individually enrolled device.
    pub family: String,
    /// Enrolled individually.
    pub enrolled: bool,
    /// Revoked (by fingerprint, serial or family).
    pub revoked: bool,
    /// Unix time of the last successful authentication (0 = never).
    pub last_auth: i64,
}

/// A consumed challenge.
#[derive(Clone, Debug)]
pub struct ChallengeRow {
    /// Certificate fingerprint the challenge is bound to.
    pub fingerprint: String,
    /// Serial.
    pub serial: String,
    /// SEC1 public key, hex.
    pub public_key: String,
    /// The challenge, hex.
    pub challenge: String,
    /// Family fingerprint (empty for an individually enrolled device).
    pub family: String,
    /// Expiry (Unix seconds).
    pub expires: i64,
}

/// One audit event.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AuditRow {
    /// Unix time.
    pub at: i64,
    /// Device serial or operator target.
    pub serial: String,
    /// What happened.
    pub event: String,
    /// Reason code (failures).
    pub reason: String,
    /// Free text.
    pub detail: String,
}

fn device(r: &AnyRow) -> R<DeviceRow> {
    Ok(DeviceRow {
        fingerprint: r.try_get("fingerprint")?,
        serial: r.try_get("serial")?,
        family: r.try_get("family")?,
        enrolled: r.try_get::<i64, _>("enrolled")? != 0,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        last_auth: r.try_get("last_auth")?,
    })
}

fn family(r: &AnyRow) -> R<FamilyRow> {
    Ok(FamilyRow {
        fingerprint: r.try_get("fingerprint")?,
        name: r.try_get("name")?,
        root: r.try_get("root")?,
        revoked: r.try_get::<i64, _>("revoked")? != 0,
        der: r.try_get("der")?,
    })
}

impl Store {
    /// Connects (`sqlite://PATH` creates the file; `postgres://…`) and applies migrations.
    pub async fn connect(url: &str) -> R<Self> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains('?') && !url.contains(":memory:") {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // WAL: readers never block the writer; wait rather than fail on a lock.
                        sqlx::query("PRAGMA journal_mode=WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout=5000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous=NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let s = Self { pool };
        s.migrate().await?;
        Ok(s)
    }

    async fn migrate(&self) -> R<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")
            .execute(&self.pool)
            .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            // Claiming the version first makes concurrent starts of several instances safe:
            // only one inserts it, the others see a conflict and skip.
            let claimed = sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT (version) DO NOTHING")
                .bind(*version)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 1 {
                for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// True when the database answers.
    pub async fn healthy(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub(crate) async fn add_root(
        &self,
        fp: &str,
        der_b64: &str,
        subject: &str,
        now: i64,
    ) -> R<bool> {
        let n = sqlx::query("INSERT INTO roots (fingerprint, der, subject, created) VALUES ($1, $2, $3, $4) ON CONFLICT (fingerprint) DO NOTHING")
            .bind(fp).bind(der_b64).bind(subject).bind(now)
            .execute(&self.pool).await?.rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn roots(&self) -> R<Vec<RootRow>> {
        let rows = sqlx::query("SELECT fingerprint, der, subject FROM roots ORDER BY created")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RootRow {
                    fingerprint: r.try_get("fingerprint")?,
                    der: r.try_get("der")?,
                    subject: r.try_get("subject")?,
                })
            })
            .collect()
    }

    pub(crate) async fn new_code(&self, code: &str, expires: i64) -> R<()> {
        sqlx::query("INSERT INTO codes (code, expires) VALUES ($1, $2)")
            .bind(code)
            .bind(expires)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Consumes a verification code; true if it existed and had not expired.
    pub(crate) async fn take_code(&self, code: &str, now: i64) -> R<bool> {
        let row = sqlx::query("DELETE FROM codes WHERE code = $1 RETURNING expires")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("expires")? > now,
            None => false,
        })
    }

    pub(crate) async fn add_family(&self, f: &FamilyRow, now: i64) -> R<bool> {
        let n = sqlx::query("INSERT INTO families (fingerprint, name, der, root, revoked, created) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (fingerprint) DO NOTHING")
            .bind(&f.fingerprint).bind(&f.name).bind(&f.der).bind(&f.root).bind(now)
            .execute(&self.pool).await?.rows_affected();
        Ok(n == 1)
    }

    pub(crate) async fn families(&self) -> R<Vec<FamilyRow>> {
        let rows = sqlx::query(
            "SELECT fingerprint, name, der, root, revoked FROM families ORDER BY created",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(family).collect()
    }

    pub(crate) async fn revoke_family(&self, key: &str) -> R<u64> {
        Ok(
            sqlx::query("UPDATE families SET revoked = 1 WHERE fingerprint = $1 OR name = $2")
                .bind(key)
                .bind(key)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    pub(crate) async fn enroll_device(
        &self,
        fp: &str,
        serial: &str,
        der_b64: &str,
        now: i64,
    ) -> R<bool> {
        let n = sqlx::query("INSERT INTO devices (fingerprint, serial, der, family, enrolled, revoked, created, last_auth) VALUES ($1, $2, $3, '', 1, 0, $4, 0) ON CONFLICT (fingerprint) DO UPDATE SET enrolled = 1")
            .bind(fp).bind(serial).bind(der_b64).bind(now)
            .execute(&self.pool).await?.rows_affected();
        Ok(n == 1)
    }

    /// Records a successful authentication (creating the row for a family device).
    pub(crate) async fn seen(
        &self,
        fp: &str,
        serial: &str,
        der_b64: &str,
        family: &str,
        now: i64,
    ) -> R<()> {
        sqlx::query("INSERT INTO devices (fingerprint, serial, der, family, enrolled, revoked, created, last_auth) VALUES ($1, $2, $3, $4, 0, 0, $5, $6) ON CONFLICT (fingerprint) DO UPDATE SET last_auth = $7")
            .bind(fp).bind(serial).bind(der_b64).bind(family).bind(now).bind(now).bind(now)
            .execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn enrolled_device(&self, fp: &str) -> R<Option<DeviceRow>> {
        let row = sqlx::query("SELECT fingerprint, serial, family, enrolled, revoked, last_auth FROM devices WHERE fingerprint = $1 AND enrolled = 1")
            .bind(fp).fetch_optional(&self.pool).await?;
        row.as_ref().map(device).transpose()
    }

    pub(crate) async fn devices(&self, serial: Option<&str>, limit: i64) -> R<Vec<DeviceRow>> {
        let rows = match serial {
            Some(s) => sqlx::query("SELECT fingerprint, serial, family, enrolled, revoked, last_auth FROM devices WHERE serial = $1 ORDER BY created")
                .bind(s).fetch_all(&self.pool).await?,
            None => sqlx::query("SELECT fingerprint, serial, family, enrolled, revoked, last_auth FROM devices ORDER BY created LIMIT $1")
                .bind(limit).fetch_all(&self.pool).await?,
        };
        let mut out: Vec<DeviceRow> = rows.iter().map(device).collect::<R<_>>()?;
        for d in &mut out {
            d.revoked |= self.is_revoked(&d.serial, &d.fingerprint).await?;
        }
        Ok(out)
    }

    pub(crate) async fn revoke(&self, target: &str, now: i64) -> R<()> {
        sqlx::query("INSERT INTO revocations (target, created) VALUES ($1, $2) ON CONFLICT (target) DO NOTHING")
            .bind(target).bind(now).execute(&self.pool).await?;
        Ok(())
    }

    /// Revoked by serial or by certificate fingerprint.
    pub(crate) async fn is_revoked(&self, serial: &str, fp: &str) -> R<bool> {
        let row = sqlx::query("SELECT target FROM revocations WHERE target = $1 OR target = $2")
            .bind(format!("serial:{serial}"))
            .bind(format!("fp:{fp}"))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub(crate) async fn put_challenge(&self, id: &str, c: &ChallengeRow) -> R<()> {
        sqlx::query("INSERT INTO challenges (id, fingerprint, serial, public_key, challenge, family, expires) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(id).bind(&c.fingerprint).bind(&c.serial).bind(&c.public_key).bind(&c.challenge).bind(&c.family).bind(c.expires)
            .execute(&self.pool).await?;
        Ok(())
    }

    /// Deletes challenges that expired before `before` (never answered).
    pub(crate) async fn sweep_challenges(&self, before: i64) -> R<u64> {
        Ok(sqlx::query("DELETE FROM challenges WHERE expires < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Consumes a challenge atomically: of any number of concurrent callers, on any number of
    /// instances, exactly one gets the row.
    pub(crate) async fn take_challenge(&self, id: &str) -> R<Option<ChallengeRow>> {
        let row = sqlx::query("DELETE FROM challenges WHERE id = $1 RETURNING fingerprint, serial, public_key, challenge, family, expires")
            .bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(ChallengeRow {
                fingerprint: r.try_get("fingerprint")?,
                serial: r.try_get("serial")?,
                public_key: r.try_get("public_key")?,
                challenge: r.try_get("challenge")?,
                family: r.try_get("family")?,
                expires: r.try_get("expires")?,
            })
        })
        .transpose()
    }

    /// Counts an event in a fixed window; returns the count including this one.
    pub(crate) async fn bump(&self, key: &str, now: i64, window: i64) -> R<i64> {
        let start = now - window;
        let row = sqlx::query(
            "INSERT INTO rates (rkey, window_start, count) VALUES ($1, $2, 1)
             ON CONFLICT (rkey) DO UPDATE SET
               count = CASE WHEN rates.window_start <= $3 THEN 1 ELSE rates.count + 1 END,
               window_start = CASE WHEN rates.window_start <= $4 THEN $5 ELSE rates.window_start END
             RETURNING count",
        )
        .bind(key)
        .bind(now)
        .bind(start)
        .bind(start)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("count")?)
    }

    /// The current count of a window (0 if none or expired).
    pub(crate) async fn rate(&self, key: &str, now: i64, window: i64) -> R<i64> {
        let row = sqlx::query("SELECT count FROM rates WHERE rkey = $1 AND window_start > $2")
            .bind(key)
            .bind(now - window)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("count")?,
            None => 0,
        })
    }

    pub(crate) async fn put_session(
        &self,
        hash: &str,
        serial: &str,
        expires: i64,
        key: &str,
        public_key: &str,
    ) -> R<()> {
        sqlx::query("INSERT INTO sessions (token_hash, serial, expires, telemetry_key, public_key) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(serial)
            .bind(expires)
            .bind(key)
            .bind(public_key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The serial of a live session.
    pub async fn session(&self, hash: &str, now: i64) -> R<Option<String>> {
        let row = sqlx::query("SELECT serial FROM sessions WHERE token_hash = $1 AND expires > $2")
            .bind(hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("serial").map_err(Into::into))
            .transpose()
    }

    pub(crate) async fn audit(&self, e: &AuditRow) -> R<()> {
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| StoreError("rng".into()))?;
        sqlx::query("INSERT INTO audit (id, at, serial, event, reason, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(hex::encode(id)).bind(e.at).bind(&e.serial).bind(&e.event).bind(&e.reason).bind(&e.detail)
            .execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) async fn audit_log(
        &self,
        serial: Option<&str>,
        since: i64,
        until: i64,
        limit: i64,
    ) -> R<Vec<AuditRow>> {
        let rows = match serial {
            Some(s) => sqlx::query("SELECT at, serial, event, reason, detail FROM audit WHERE serial = $1 AND at >= $2 AND at <= $3 ORDER BY at LIMIT $4")
                .bind(s).bind(since).bind(until).bind(limit).fetch_all(&self.pool).await?,
            None => sqlx::query("SELECT at, serial, event, reason, detail FROM audit WHERE at >= $1 AND at <= $2 ORDER BY at LIMIT $3")
                .bind(since).bind(until).bind(limit).fetch_all(&self.pool).await?,
        };
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    at: r.try_get("at")?,
                    serial: r.try_get("serial")?,
                    event: r.try_get("event")?,
                    reason: r.try_get("reason")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
