//! What a login costs the database, counted from the statements sqlx reports executing (its
//! `sqlx::query` events), on SQLite and PostgreSQL: a login of a device the instance knows is one
//! write (the session insert, which also checks the trust version), a device's first login at
//! most three statements, an unanswered challenge none.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use common::*;
use serde_json::json;
use sesame_chip::CurveName;
use sesame_pki::KeyAlg;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Every statement sqlx executed in this process, in order.
fn statements() -> &'static Arc<Mutex<Vec<String>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        tracing_subscriber::registry()
            .with(Statements(log.clone()))
            .init();
        log
    })
}

struct Statements(Arc<Mutex<Vec<String>>>);

struct Sql(String);

impl tracing::field::Visit for Sql {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        if f.name() == "db.statement" {
            self.0 = v.to_string();
        }
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        if f.name() == "db.statement" && self.0.is_empty() {
            self.0 = format!("{v:?}");
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if e.metadata().target() == "sqlx::query" {
            let mut sql = Sql(String::new());
            e.record(&mut sql);
            self.0.lock().unwrap().push(sql.0);
        }
    }
}

/// Runs `f` and returns the statements it executed.
async fn counted<T>(f: impl std::future::Future<Output = T>) -> (T, Vec<String>) {
    let log = statements();
    let start = log.lock().unwrap().len();
    let out = f.await;
    let all = log.lock().unwrap();
    (out, all[start..].to_vec())
}

fn writes(stmts: &[String]) -> usize {
    stmts
        .iter()
        .filter(|s| {
            let head = s.trim_start().to_ascii_uppercase();
            ["INSERT", "UPDATE", "DELETE"]
                .iter()
                .any(|w| head.starts_with(w))
        })
        .count()
}

async fn login_cost(db: Db, engine: &str) {
    statements();
    let s = cloud(&db).await;
    let pki = Pki::new(KeyAlg::P256);
    pki.enroll(&s).await;
    let mut dev = Device::new(&pki.family, CurveName::P256);

    // The first login binds the serial to its family.
    let (r, first) = counted(login(&s, &mut dev)).await;
    ok(&r);
    println!("{engine}: first login: {first:#?}");
    assert!(first.len() <= 3 + 2, "{first:#?}"); // + the challenge key, once per instance

    // A known device: the challenge touches nothing, the response writes once.
    let (c, at_challenge) = counted(challenge(&s, &dev.cert)).await;
    assert_eq!(c.0, StatusCode::OK);
    assert_eq!(at_challenge, Vec::<String>::new());
    let sig = dev.answer(&c.1);
    let (r, at_response) = counted(respond(
        &s,
        &c.1["challenge_id"],
        &sig,
        Some(&dev.cert.clone()),
    ))
    .await;
    ok(&r);
    println!("{engine}: login: {at_response:#?}");
    assert_eq!(at_response.len(), 1, "{at_response:#?}");
    assert_eq!(writes(&at_response), 1, "{at_response:#?}");

    // A request on the session: one statement (the session and the trust version).
    let token = r.1["token"].as_str().unwrap().to_string();
    let req = axum::http::Request::builder()
        .uri("/v1/session")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let (r2, on_session) = counted(raw(&s, req)).await;
    assert_eq!(r2.0, StatusCode::OK);
    assert_eq!(on_session.len(), 1, "{on_session:#?}");

    // Ten more logins: the same cost each.
    let (_, ten) = counted(async {
        for _ in 0..10 {
            ok(&login(&s, &mut dev).await);
        }
    })
    .await;
    assert_eq!(ten.len(), 10, "{ten:#?}");
    assert_eq!(writes(&ten), 10);

    // A second instance on the same database takes the response to the first one's challenge:
    // it parses the certificate sent with it; the serial's binding it has seen, so one write.
    let other = cloud(&db).await;
    let _ = counted(login(&other, &mut dev)).await; // its challenge key and trust, once
    let c = challenge(&s, &dev.cert).await.1;
    let sig = dev.answer(&c);
    let (r, cross) = counted(respond(
        &other,
        &c["challenge_id"],
        &sig,
        Some(&dev.cert.clone()),
    ))
    .await;
    ok(&r);
    assert_eq!(cross.len(), 1, "{cross:#?}");
    assert_eq!(writes(&cross), 1, "{cross:#?}");

    // A revocation on the other instance between challenge and response: the write finds the
    // trust version moved, and the login is judged again (refused), not let through.
    let c = challenge(&s, &dev.cert).await.1;
    let sig = dev.answer(&c);
    assert_eq!(
        revoke(&other, json!({ "serial": dev.serial })).await.0,
        StatusCode::OK
    );
    refused(
        &respond(&s, &c["challenge_id"], &sig, Some(&dev.cert.clone())).await,
        StatusCode::UNAUTHORIZED,
        "revoked",
    );
    println!(
        "{engine}: first login {} statements, login {} ({} write), 10 logins {}, response on another instance {}",
        first.len(),
        at_response.len(),
        writes(&at_response),
        ten.len(),
        cross.len()
    );
}

// One test: the statement log is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_is_one_write() {
    login_cost(sqlite(), "sqlite").await;
    if let Some(db) = postgres().await {
        login_cost(db, "postgres").await;
    }
}
