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
    (
        3,
        // The registry: one row per device (serial), bound to its owner (a family fingerprint,
        // or `cert:<cert id>` for an individually enrolled device); certificates named by the hash
        // of their TBS, keys by the hash of their point. The trust version tells every instance
        // when to reload roots, families and revocations.
        "CREATE TABLE registry (serial TEXT PRIMARY KEY, owner TEXT NOT NULL, cert_id TEXT NOT NULL, key_id TEXT NOT NULL, der_hash TEXT NOT NULL, der TEXT NOT NULL, enrolled BIGINT NOT NULL, created BIGINT NOT NULL, last_auth BIGINT NOT NULL);
     CREATE INDEX registry_cert ON registry (cert_id);
     CREATE INDEX registry_der ON registry (der_hash);
     CREATE INDEX registry_owner ON registry (owner);
     CREATE TABLE trust_version (id BIGINT PRIMARY KEY, version BIGINT NOT NULL);
     INSERT INTO trust_version (id, version) VALUES (1, 1);
     ALTER TABLE challenges ADD COLUMN cert_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE challenges ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE sessions ADD COLUMN cert_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE sessions ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT '';
     CREATE INDEX sessions_expires ON sessions (expires);
     CREATE INDEX challenges_expires ON challenges (expires);
     CREATE INDEX codes_expires ON codes (expires);",
    ),
    (
        4,
        // Challenges are no longer stored: a session row spends its challenge (unique nonce),
        // records the login for the audit log, and gives a device its last login time. Secrets
        // shared by every instance (the challenge MAC key) live in `secrets`.
        "CREATE TABLE secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL);
     ALTER TABLE sessions ADD COLUMN nonce TEXT;
     ALTER TABLE sessions ADD COLUMN created BIGINT NOT NULL DEFAULT 0;
     ALTER TABLE sessions ADD COLUMN detail TEXT NOT NULL DEFAULT '';
     CREATE UNIQUE INDEX sessions_nonce ON sessions (nonce);
     CREATE INDEX sessions_serial ON sessions (serial, created);
     CREATE INDEX sessions_created ON sessions (created);",
    ),
    (
        5,
        // Signed factory batches (see store_batch.rs): a batch id is imported once, a serial
        // belongs to one batch.
        "CREATE TABLE batches (id TEXT PRIMARY KEY, manifest_sha256 TEXT NOT NULL, owner TEXT NOT NULL, family TEXT NOT NULL, factory_key TEXT NOT NULL, count BIGINT NOT NULL, not_after BIGINT NOT NULL, created BIGINT NOT NULL);
     CREATE TABLE batch_devices (serial TEXT PRIMARY KEY, batch TEXT NOT NULL, cert_sha256 TEXT NOT NULL, key_id TEXT NOT NULL, not_after BIGINT NOT NULL);
     CREATE INDEX batch_devices_not_after ON batch_devices (not_after);",
    ),
];

/// Why the service could not do its part (always a 5xx; details go to the log, not the client).
#[derive(Debug)]
pub enum StoreError {
    /// The database failed or could not be reached (503: try again).
    Database(String),
    /// Stored data does not decode: written by something else, or damaged (500).
    Corrupt(String),
    /// The random generator failed (500).
    Random,
    /// The service's own configuration (a key file) is unusable: reported at start.
    Config(String),
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Database(e) => write!(f, "database: {e}"),
            Self::Corrupt(e) => write!(f, "stored data does not decode: {e}"),
            Self::Random => f.write_str("the random generator failed"),
            Self::Config(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match e {
            E::ColumnDecode { .. } | E::Decode(_) | E::ColumnNotFound(_) => {
                Self::Corrupt(e.to_string())
            }
            _ => Self::Database(e.to_string()),
        }
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

/// A device in the registry: one row per serial, bound to its owner.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeviceRow {
    /// Serial (certificate CN, canonical).
    pub serial: String,
    /// The family fingerprint that owns this serial, or `cert:<cert id>` for an individually
    /// enrolled device.
    pub owner: String,
    /// SHA-256 of the TBSCertificate of the last certificate it used, hex.
    pub cert_id: String,
    /// SHA-256 of its public key point, hex.
    pub key_id: String,
    /// SHA-256 of that certificate's DER (as `openssl x509 -fingerprint -sha256` prints it), hex.
    pub fingerprint: String,
    /// Enrolled individually.
    pub enrolled: bool,
    /// Revoked (by serial, certificate, key or family), from the trust state.
    pub revoked: bool,
    /// Unix time of the last successful authentication (0 = never).
    pub last_auth: i64,
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
                if *version == 3 {
                    crate::store_trust::backfill_v3(&mut tx).await?;
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
        if n == 1 {
            self.bump_trust().await?;
        }
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

    /// Stops trusting a root (by fingerprint); its families stay listed but no device of theirs
    /// is accepted. True if it was trusted.
    pub(crate) async fn untrust_root(&self, fp: &str) -> R<bool> {
        let n = sqlx::query("DELETE FROM roots WHERE fingerprint = $1")
            .bind(fp)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n > 0 {
            self.bump_trust().await?;
        }
        Ok(n > 0)
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
        if n == 1 {
            self.bump_trust().await?;
        }
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

    /// Sets or clears a family's revocation (by fingerprint or name); returns the families
    /// it matched, or none.
    pub(crate) async fn set_family_revoked(&self, key: &str, revoked: bool) -> R<Vec<FamilyRow>> {
        let rows = sqlx::query("UPDATE families SET revoked = $1 WHERE fingerprint = $2 OR name = $3 RETURNING fingerprint, name, der, root, revoked")
            .bind(i64::from(revoked))
            .bind(key)
            .bind(key)
            .fetch_all(&self.pool)
            .await?;
        if !rows.is_empty() {
            self.bump_trust().await?;
        }
        rows.iter().map(family).collect()
    }

    pub(crate) async fn audit(&self, e: &AuditRow) -> R<()> {
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| StoreError::Random)?;
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
        // Successful logins are their session rows (written once, by the login itself).
        const EVENTS: &str = "SELECT at, serial, event, reason, detail FROM audit
             UNION ALL SELECT created AS at, serial, 'auth_success' AS event, '' AS reason, detail FROM sessions WHERE created > 0";
        let rows = match serial {
            Some(s) => sqlx::query(&format!("SELECT at, serial, event, reason, detail FROM ({EVENTS}) e WHERE serial = $1 AND at >= $2 AND at <= $3 ORDER BY at LIMIT $4"))
                .bind(s).bind(since).bind(until).bind(limit).fetch_all(&self.pool).await?,
            None => sqlx::query(&format!("SELECT at, serial, event, reason, detail FROM ({EVENTS}) e WHERE at >= $1 AND at <= $2 ORDER BY at LIMIT $3"))
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
