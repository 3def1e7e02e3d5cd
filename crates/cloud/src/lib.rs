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
mod extract;
mod guard;
mod metrics;
mod openapi;
mod server;
mod service;
mod store;
mod store_data;
mod store_trust;
pub mod trust;

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

/// Serves HTTP on `listener` until `shutdown` resolves, then drains in-flight requests. Runs the
/// retention job meanwhile.
pub async fn serve(
    service: std::sync::Arc<Service>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(service, listener, None, shutdown).await
}

/// TLS settings from PEM files: the certificate chain and its private key, checked to match.
pub fn tls_config(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
) -> Result<std::sync::Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_pem)
        .and_then(|i| i.collect())
        .map_err(|e| format!("TLS certificate {}: {e}", cert_pem.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "TLS certificate {}: no CERTIFICATE block",
            cert_pem.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_pem)
        .map_err(|e| format!("TLS key {}: {e}", key_pem.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "TLS key {} does not go with certificate {}: {e}",
                key_pem.display(),
                cert_pem.display()
            )
        })?;
    Ok(std::sync::Arc::new(config))
}

/// Serves HTTPS with rustls on `listener` until `shutdown` resolves, then drains.
pub async fn serve_tls(
    service: std::sync::Arc<Service>,
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run(
        service,
        listener,
        Some(tokio_rustls::TlsAcceptor::from(tls)),
        shutdown,
    )
    .await
}

async fn run(
    service: std::sync::Arc<Service>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = server::Limits::of(&service.config);
    let every = std::time::Duration::from_secs(service.config.housekeeping_secs.max(1));
    let keeper = service.clone();
    let housekeeping = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match keeper.housekeeping().await {
                Ok(n) => tracing::debug!(removed = n, "retention"),
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            }
        }
    });
    let r = server::run(app(service.clone()), listener, tls, limits, shutdown).await;
    housekeeping.abort();
    // What was aggregated but not yet written still reaches the audit log.
    if let Err(e) = service.flush_audit().await {
        tracing::warn!(error = %e, "audit flush at shutdown failed");
    }
    r
}
