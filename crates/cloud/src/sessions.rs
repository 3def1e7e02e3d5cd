//! Group commit of logins: the session inserts of concurrent logins go to the database as one
//! statement (and one commit), instead of one each. Under load a commit is most of what a login
//! costs the database; alone, a login waits for nobody (its batch is itself).
//!
//! Each row keeps its own guarantees: it is written only if the trust version is still the one
//! its login was judged on, and only if no session spent its nonce before (the unique index
//! decides across instances; within a batch the first of two equal nonces wins).

use std::collections::HashSet;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError};
use crate::store_trust::SessionRow;

/// Most logins written by one statement (11 parameters each).
const BATCH_MAX: usize = 64;

/// A session to insert.
#[derive(Debug)]
pub(crate) struct NewSession {
    pub token_hash: String,
    pub row: SessionRow,
    pub expires: i64,
    pub nonce: String,
    pub created: i64,
    pub detail: String,
    /// The trust version the login was judged on.
    pub version: i64,
}

type Reply = oneshot::Sender<Result<bool, StoreError>>;

/// The handle logins send their session to; the writer task runs on the runtime that first
/// needed it.
#[derive(Debug)]
pub(crate) struct SessionWriter {
    tx: mpsc::Sender<(NewSession, Reply)>,
}

impl SessionWriter {
    pub(crate) fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(4 * BATCH_MAX);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Writes `s` (with whatever other logins are waiting): true if it was stored, false if its
    /// nonce was already spent or the trust version moved.
    pub(crate) async fn put(&self, s: NewSession) -> Result<bool, StoreError> {
        let stopped = || StoreError::Database("the session writer stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((s, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<(NewSession, Reply)>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // Whatever arrived while the last batch was written goes in this one.
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        write(&store, batch).await;
    }
}

async fn write(store: &Store, batch: Vec<(NewSession, Reply)>) {
    // One statement per trust version in the batch (nearly always one), and a nonce twice in
    // a batch is a replay racing itself: the second loses without reaching the database.
    let mut seen = HashSet::new();
    let mut groups: Vec<(i64, Vec<(NewSession, Reply)>)> = Vec::new();
    for (s, reply) in batch {
        if !seen.insert(s.nonce.clone()) {
            let _ = reply.send(Ok(false));
            continue;
        }
        match groups.iter_mut().find(|(v, _)| *v == s.version) {
            Some((_, g)) => g.push((s, reply)),
            None => groups.push((s.version, vec![(s, reply)])),
        }
    }
    for (version, group) in groups {
        let rows: Vec<&NewSession> = group.iter().map(|(s, _)| s).collect();
        match insert(store, &rows, version).await {
            Ok(stored) => {
                for (s, reply) in group {
                    let _ = reply.send(Ok(stored.contains(&s.nonce)));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for (_, reply) in group {
                    let _ = reply.send(Err(StoreError::Database(text.clone())));
                }
            }
        }
    }
}

/// One multi-row insert; returns the nonces stored.
async fn insert(
    store: &Store,
    rows: &[&NewSession],
    version: i64,
) -> Result<HashSet<String>, StoreError> {
    let mut sql = String::from(
        "INSERT INTO sessions (token_hash, serial, expires, telemetry_key, public_key, cert_id, key_id, owner, nonce, created, detail) \
         SELECT * FROM (VALUES ",
    );
    for i in 0..rows.len() {
        let b = i * 11;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for k in 1..=11 {
            if k > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", b + k));
        }
        sql.push(')');
    }
    sql.push_str(&format!(
        ") AS v WHERE (SELECT version FROM trust_version WHERE id = 1) = ${} ON CONFLICT (nonce) DO NOTHING RETURNING nonce",
        rows.len() * 11 + 1
    ));
    let mut q = sqlx::query(&sql);
    for s in rows {
        q = q
            .bind(&s.token_hash)
            .bind(&s.row.serial)
            .bind(s.expires)
            .bind(&s.row.telemetry_key)
            .bind(&s.row.public_key)
            .bind(&s.row.cert_id)
            .bind(&s.row.key_id)
            .bind(&s.row.owner)
            .bind(&s.nonce)
            .bind(s.created)
            .bind(&s.detail);
    }
    let out = q.bind(version).fetch_all(&store.pool).await?;
    out.iter()
        .map(|r| r.try_get::<String, _>("nonce").map_err(StoreError::from))
        .collect()
}
