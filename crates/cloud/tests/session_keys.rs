//! The keys that wrap session telemetry keys at rest are the cloud's own (`session_keys`),
//! independent of the command key and rotatable: a session opened under one configuration keeps
//! its telemetry key when the command key changes or a new session key is put first, loses it
//! when its wrapping key is dropped, and the database holds no telemetry key in the clear.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use sesame_chip::CurveName;
use sesame_cloud::Service;
use sesame_pki::KeyAlg;

fn command_key(dir: &Path, name: &str) -> PathBuf {
    let k = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let p = dir.join(name);
    std::fs::write(&p, k.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    p
}

fn keys_file(dir: &Path, name: &str, keys: &[[u8; 32]]) -> PathBuf {
    let p = dir.join(name);
    let mut text = String::from("# session keys, current first\n");
    for k in keys {
        text.push_str(&hex::encode(k));
        text.push('\n');
    }
    std::fs::write(&p, text).unwrap();
    p
}

async fn with(db: &Db, command: &Path, keys: Option<&Path>) -> Arc<Service> {
    let (command, keys) = (
        command.display().to_string(),
        keys.map(|k| k.display().to_string()),
    );
    cloud_with(db, |c| {
        c.command_key = Some(command);
        c.session_keys = keys;
    })
    .await
}

/// The telemetry key the cloud recovers for a session (hex; empty if it cannot).
async fn recovered(s: &Arc<Service>, token: &str) -> String {
    match s.session(token).await.unwrap() {
        Some(Ok(row)) => row.telemetry_key,
        other => panic!("no live session: {other:?}"),
    }
}

#[tokio::test]
async fn session_keys_are_independent_of_the_command_key_and_rotate() {
    let db = sqlite();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (k1, k2) = (command_key(d, "k1.pem"), command_key(d, "k2.pem"));
    let (s1, s2) = (
        rand_bytes(32).try_into().unwrap(),
        rand_bytes(32).try_into().unwrap(),
    );
    let only_s1 = keys_file(d, "s1.keys", &[s1]);

    let a = with(&db, &k1, Some(&only_s1)).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&a).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (token, key) = login_with_key(&a, &mut dev).await;
    assert_eq!(recovered(&a, &token).await, hex::encode(key));

    // The database holds the wrapped key, named by its wrapping key's id, never the key.
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    let stored: String = sqlx::Row::get(
        &sqlx::query("SELECT telemetry_key FROM sessions")
            .fetch_one(&pool)
            .await
            .unwrap(),
        "telemetry_key",
    );
    assert!(stored.starts_with("k1:"), "{stored}");
    assert!(!stored.contains(&hex::encode(key)));

    // Another command key, the same session keys: the session keeps its telemetry key.
    let b = with(&db, &k2, Some(&only_s1)).await;
    assert_eq!(recovered(&b, &token).await, hex::encode(key));
    // A new session key first, the old one kept: still readable; new sessions use the new one.
    let rotated = keys_file(d, "s2s1.keys", &[s2, s1]);
    let c = with(&db, &k2, Some(&rotated)).await;
    assert_eq!(recovered(&c, &token).await, hex::encode(key));
    let (token2, key2) = login_with_key(&c, &mut dev).await;
    assert_eq!(recovered(&c, &token2).await, hex::encode(key2));
    // The old key dropped: its sessions' telemetry keys are gone, the new ones stay.
    let only_s2 = keys_file(d, "s2.keys", &[s2]);
    let e = with(&db, &k2, Some(&only_s2)).await;
    assert_eq!(recovered(&e, &token).await, "");
    assert_eq!(recovered(&e, &token2).await, hex::encode(key2));
}

#[tokio::test]
async fn sessions_wrapped_the_old_way_stay_readable_and_bad_key_files_are_refused() {
    let db = sqlite();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let k1 = command_key(d, "k1.pem");
    // Before session keys existed: wrapped under a key derived from the command key.
    let old = with(&db, &k1, None).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&old).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);
    let (token, key) = login_with_key(&old, &mut dev).await;
    let keys = keys_file(d, "s.keys", &[rand_bytes(32).try_into().unwrap()]);
    let new = with(&db, &k1, Some(&keys)).await;
    assert_eq!(recovered(&new, &token).await, hex::encode(key));

    // A key file that is not one is refused at start, naming the fix.
    for (name, text) in [
        ("empty.keys", "# nothing\n"),
        ("short.keys", "abcd\n"),
        ("nothex.keys", &"zz".repeat(32)),
    ] {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        let mut c = config(&db.url);
        c.command_key = Some(k1.display().to_string());
        c.session_keys = Some(p.display().to_string());
        let e = sesame_cloud::build(c).await.unwrap_err().to_string();
        assert!(e.contains("openssl rand -hex 32"), "{name}: {e}");
    }
}
