//! Storage of identity and trust: the device registry (one row per serial, bound to its owner),
//! revocations, the trust version, challenges and sessions, and retention.

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::store::{DeviceRow, Store, StoreError};
use crate::trust::{cert_target, key_target, CERT_OWNER};

type R<T> = Result<T, StoreError>;

/// A session as the data path sees it.
#[derive(Clone, Debug)]
pub struct SessionRow {
    /// The device's serial.
    pub serial: String,
    /// Wrapped telemetry key as stored (unwrapped by the service), or empty.
    pub telemetry_key: String,
    /// The device's SEC1 public key, hex.
    pub public_key: String,
    /// Certificate id of the login.
    pub cert_id: String,
    /// Key id of the login.
    pub key_id: String,
    /// Owner of the serial at login.
    pub owner: String,
}

/// Outcome of writing a registry row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Written (new, or the same owner).
    Bound,
    /// The serial belongs to another owner: nothing written.
    Conflict,
}

pub(crate) fn device(r: &AnyRow) -> R<DeviceRow> {
    Ok(DeviceRow {
        serial: r.try_get("serial")?,
        owner: r.try_get("owner")?,
        cert_id: r.try_get("cert_id")?,
        key_id: r.try_get("key_id")?,
        fingerprint: r.try_get("der_hash")?,
        enrolled: r.try_get::<i64, _>("enrolled")? != 0,
        revoked: false,
        last_auth: r.try_get("last_auth")?,
    })
}

/// A device's last login is its newest session (kept for the audit retention period), else the
/// time its serial was bound.
const DEVICE_COLS: &str = "serial, owner, cert_id, key_id, der_hash, enrolled, COALESCE((SELECT MAX(s.created) FROM sessions s WHERE s.serial = registry.serial), registry.last_auth) AS last_auth";

/// What a login reads, in one statement: the trust version and the serial's binding.
pub(crate) struct LoginState {
    /// The trust version.
    pub version: i64,
    /// The serial's owner and the SHA-256 of its last certificate's DER, if the serial is bound.
    pub registered: Option<(String, String)>,
}

/// A registry row to write.
pub struct Registration<'a> {
    /// Canonical serial.
    pub serial: &'a str,
    /// Owner (family fingerprint or `cert:<cert id>`).
    pub owner: &'a str,
    /// Certificate id, hex.
    pub cert_id: &'a str,
    /// Key id, hex.
    pub key_id: &'a str,
    /// DER hash, hex.
    pub der_hash: &'a str,
    /// DER, base64.
    pub der: &'a str,
}

/// Tables whose size operators (and retention tests) look at.
pub const COUNTED_TABLES: [&str; 6] = [
    "audit",
    "rates",
    "sessions",
    "challenges",
    "codes",
    "registry",
];

impl Store {
    /// Rows in one of [`COUNTED_TABLES`] (`None` for any other name).
    pub async fn table_rows(&self, table: &str) -> R<Option<i64>> {
        if !COUNTED_TABLES.contains(&table) {
            return Ok(None);
        }
        // The name is one of a fixed set, never input.
        let row = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(row.try_get("n")?))
    }

    /// The trust version (bumped by every change to roots, families or revocations).
    pub(crate) async fn trust_version(&self) -> R<i64> {
        let row = sqlx::query("SELECT version FROM trust_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("version")?)
    }

    pub(crate) async fn bump_trust(&self) -> R<()> {
        sqlx::query("UPDATE trust_version SET version = version + 1 WHERE id = 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every revocation target.
    pub(crate) async fn revocations(&self) -> R<Vec<String>> {
        let rows = sqlx::query("SELECT target FROM revocations")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("target").map_err(Into::into))
            .collect()
    }

    /// Adds revocation targets; returns how many were new.
    pub(crate) async fn revoke(&self, targets: &[String], now: i64) -> R<u64> {
        let mut n = 0;
        for t in targets {
            n += sqlx::query("INSERT INTO revocations (target, created) VALUES ($1, $2) ON CONFLICT (target) DO NOTHING")
                .bind(t).bind(now).execute(&self.pool).await?.rows_affected();
        }
        self.bump_trust().await?;
        Ok(n)
    }

    /// Removes revocation targets; returns how many existed.
    pub(crate) async fn unrevoke(&self, targets: &[String]) -> R<u64> {
        let mut n = 0;
        for t in targets {
            n += sqlx::query("DELETE FROM revocations WHERE target = $1")
                .bind(t)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        if n > 0 {
            self.bump_trust().await?;
        }
        Ok(n)
    }

    /// Binds (or refreshes) a serial for its owner after a verified login; refuses a serial
    /// that another owner holds. One statement.
    pub(crate) async fn seen(&self, r: &Registration<'_>, now: i64) -> R<Bind> {
        let row = sqlx::query(
            "INSERT INTO registry (serial, owner, cert_id, key_id, der_hash, der, enrolled, created, last_auth)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8)
             ON CONFLICT (serial) DO UPDATE SET cert_id = $9, key_id = $10, der_hash = $11, der = $12, last_auth = $13
             WHERE registry.owner = $14
             RETURNING serial",
        )
        .bind(r.serial).bind(r.owner).bind(r.cert_id).bind(r.key_id).bind(r.der_hash).bind(r.der).bind(now).bind(now)
        .bind(r.cert_id).bind(r.key_id).bind(r.der_hash).bind(r.der).bind(now)
        .bind(r.owner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(if row.is_some() {
            Bind::Bound
        } else {
            Bind::Conflict
        })
    }

    /// Enrolls one certificate as a device of its own.
    pub(crate) async fn enroll_device(&self, r: &Registration<'_>, now: i64) -> R<Bind> {
        let row = sqlx::query(
            "INSERT INTO registry (serial, owner, cert_id, key_id, der_hash, der, enrolled, created, last_auth)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, 0)
             ON CONFLICT (serial) DO UPDATE SET enrolled = 1
             WHERE registry.owner = $8
             RETURNING serial",
        )
        .bind(r.serial).bind(r.owner).bind(r.cert_id).bind(r.key_id).bind(r.der_hash).bind(r.der).bind(now)
        .bind(r.owner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(if row.is_some() {
            Bind::Bound
        } else {
            Bind::Conflict
        })
    }

    /// The individually enrolled device with this certificate id.
    pub(crate) async fn enrolled_cert(&self, cert_id: &str) -> R<Option<DeviceRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM registry WHERE owner = $1 AND enrolled = 1"
        ))
        .bind(format!("{CERT_OWNER}{cert_id}"))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device).transpose()
    }

    /// One device by serial.
    pub(crate) async fn device(&self, serial: &str) -> R<Option<DeviceRow>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM registry WHERE serial = $1"
        ))
        .bind(serial)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device).transpose()
    }

    /// Devices whose last certificate has this id, key id or DER hash.
    pub(crate) async fn devices_by_hash(&self, h: &str) -> R<Vec<DeviceRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM registry WHERE cert_id = $1 OR der_hash = $2 OR key_id = $3"
        ))
        .bind(h)
        .bind(h)
        .bind(h)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device).collect()
    }

    /// Devices, oldest first.
    pub(crate) async fn devices(&self, limit: i64) -> R<Vec<DeviceRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLS} FROM registry ORDER BY created, serial LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device).collect()
    }

    /// The trust version and the serial's registry binding (one statement).
    pub(crate) async fn login_state(&self, serial: &str) -> R<LoginState> {
        let row = sqlx::query(
            "SELECT t.version AS version, r.owner AS owner, r.der_hash AS der_hash FROM trust_version t LEFT JOIN registry r ON r.serial = $1 WHERE t.id = 1",
        )
        .bind(serial)
        .fetch_one(&self.pool)
        .await?;
        let owner: Option<String> = row.try_get("owner")?;
        let der_hash: Option<String> = row.try_get("der_hash")?;
        Ok(LoginState {
            version: row.try_get("version")?,
            registered: owner.zip(der_hash),
        })
    }

    /// A secret shared by every instance: the stored one, or `fresh` if there was none.
    pub(crate) async fn secret(&self, name: &str, fresh: &str) -> R<String> {
        sqlx::query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }

    /// A live session, with the trust version (one statement). Sessions from before the
    /// registry (no owner) are not honoured.
    pub(crate) async fn session_row(&self, hash: &str, now: i64) -> R<Option<(SessionRow, i64)>> {
        let row = sqlx::query("SELECT serial, telemetry_key, public_key, cert_id, key_id, owner, (SELECT version FROM trust_version WHERE id = 1) AS version FROM sessions WHERE token_hash = $1 AND expires > $2 AND owner <> ''")
            .bind(hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok((
                SessionRow {
                    serial: r.try_get("serial")?,
                    telemetry_key: r.try_get("telemetry_key")?,
                    public_key: r.try_get("public_key")?,
                    cert_id: r.try_get("cert_id")?,
                    key_id: r.try_get("key_id")?,
                    owner: r.try_get("owner")?,
                },
                r.try_get("version")?,
            ))
        })
        .transpose()
    }

    /// Retention: removes expired challenges and codes, the old rate rows, and audit rows and
    /// expired sessions (which record logins) older than `audit_before` (none when it is
    /// `None`). Returns the rows removed.
    pub(crate) async fn sweep(&self, now: i64, audit_before: Option<i64>) -> R<u64> {
        // Sessions from before they recorded logins (created = 0) go when they expire.
        let mut n = sqlx::query("DELETE FROM sessions WHERE expires <= $1 AND created < $2")
            .bind(now)
            .bind(audit_before.unwrap_or(1))
            .execute(&self.pool)
            .await?
            .rows_affected();
        for sql in [
            "DELETE FROM challenges WHERE expires <= $1",
            "DELETE FROM codes WHERE expires <= $1",
            // Per-name rate rows are no longer written; old ones go.
            "DELETE FROM rates WHERE window_start <= $1",
        ] {
            n += sqlx::query(sql)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        if let Some(before) = audit_before {
            n += sqlx::query("DELETE FROM audit WHERE at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}

/// Carries what the first schema knew into the registry: individually enrolled certificates,
/// and revocations by DER fingerprint as certificate and key revocations.
pub(crate) async fn backfill_v3(tx: &mut Transaction<'static, Any>) -> R<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let rows = sqlx::query("SELECT fingerprint, der, enrolled, created FROM devices")
        .fetch_all(&mut **tx)
        .await?;
    let revoked: Vec<String> =
        sqlx::query("SELECT target FROM revocations WHERE target LIKE 'fp:%'")
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .filter_map(|r| r.try_get::<String, _>("target").ok())
            .collect();
    for r in &rows {
        let fp: String = r.try_get("fingerprint")?;
        let der_b64: String = r.try_get("der")?;
        let Ok(der) = b64.decode(&der_b64) else {
            continue;
        };
        let Ok(leaf) = sesame_pki::profile::device_leaf(&der) else {
            continue;
        };
        let (cert_id, key_id) = (hex::encode(leaf.cert_id), hex::encode(leaf.key_id));
        if revoked.contains(&format!("fp:{fp}")) {
            for t in [cert_target(&cert_id), key_target(&key_id)] {
                sqlx::query("INSERT INTO revocations (target, created) VALUES ($1, 0) ON CONFLICT (target) DO NOTHING")
                    .bind(t).execute(&mut **tx).await?;
            }
        }
        if r.try_get::<i64, _>("enrolled")? != 0 {
            sqlx::query("INSERT INTO registry (serial, owner, cert_id, key_id, der_hash, der, enrolled, created, last_auth) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, 0) ON CONFLICT (serial) DO NOTHING")
                .bind(&leaf.serial).bind(format!("{CERT_OWNER}{cert_id}")).bind(&cert_id).bind(&key_id).bind(&fp).bind(&der_b64).bind(r.try_get::<i64, _>("created")?)
                .execute(&mut **tx).await?;
        }
    }
    Ok(())
}
