//! `sesame-cloud`: the service that only ever talks to genuine, enrolled devices.
//!
//! Enrollment of roots, families (with proof of possession of the family key) and single
//! devices; the seven-step challenge-response authentication; revocation effective on the next
//! request; an audit log; SQLite by default, PostgreSQL for several instances. See [`auth`] for
//! the exact message a chip signs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod api;
pub mod auth;
mod bench_seed;
mod config;
mod data;
mod error;
mod metrics;
mod openapi;
mod service;
mod store;
mod store_data;

pub use api::app;
pub use config::Config;
pub use error::ApiError;
pub use metrics::Metrics;
pub use service::{now, Challenge, CloudEcdh, EcdhOffer, Service, Session};
pub use store::{Store, StoreError};

/// Opens the database (applying migrations) and builds the service.
pub async fn build(config: Config) -> Result<std::sync::Arc<Service>, StoreError> {
    let store = Store::connect(&config.db).await?;
    Service::new(config, store)
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    service: std::sync::Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(service))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves HTTPS with rustls (ring provider) on `listener` until `handle` is told to shut down.
pub async fn serve_tls(
    service: std::sync::Arc<Service>,
    listener: std::net::TcpListener,
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
    handle: axum_server::Handle,
) -> std::io::Result<()> {
    // One process-wide crypto provider; a second install (tests, several servers) is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert_pem, key_pem).await?;
    listener.set_nonblocking(true)?;
    axum_server::from_tcp_rustls(listener, tls)
        .handle(handle)
        .serve(app(service).into_make_service())
        .await
}

pub use axum_server::Handle;
