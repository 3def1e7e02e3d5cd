//! `sesame-cloud`: the service that only ever talks to genuine, enrolled devices.
//!
//! Enrollment of roots, families (with proof of possession of the family key) and single
//! devices; the seven-step challenge-response authentication; revocation effective on the next
//! request; an audit log; SQLite by default, PostgreSQL for several instances. See [`auth`] for
//! the exact message a chip signs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod access;
mod api;
pub mod auth;
mod batch;
mod bench_seed;
pub mod clock;
mod config;
mod data;
mod error;
mod extract;
mod guard;
pub mod info;
mod login;
mod metrics;
pub mod mqtt;
pub mod mtls;
mod observe;
mod openapi;
mod server;
mod service;
mod service_admin;
mod service_data;
mod sessions;
mod store;
mod store_batch;
mod store_data;
mod store_trust;
pub mod trust;
mod wrap;

pub use access::{Admin, DeviceSession};
pub use api::app;
pub use config::Config;
pub use error::{ApiError, Failure, Kind};
pub use metrics::Metrics;
pub use observe::{REQUEST_ID, REQUEST_ID_MAX};
pub use service::{now, Challenge, CloudEcdh, EcdhOffer, Service, Session};
pub use sesame_proto as proto;
pub use store::{Store, StoreError};

/// Opens the database (applying migrations) and builds the service.
pub async fn build(config: Config) -> Result<std::sync::Arc<Service>, StoreError> {
    let store = Store::connect(&config.db).await?;
    Service::new(config, store)
}

/// [`build`] on the given clock and generator (tests: simulated time, a failing generator).
pub async fn build_with(
    config: Config,
    clock: std::sync::Arc<dyn clock::Clock>,
    random: std::sync::Arc<dyn clock::Random>,
) -> Result<std::sync::Arc<Service>, StoreError> {
    let store = Store::connect(&config.db).await?;
    Service::with_sources(config, store, clock, random)
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

/// The server's TLS identity: its certificate chain and private key, checked to go together.
#[derive(Debug)]
pub struct TlsIdentity {
    certs: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TlsIdentity {
    fn server_config(
        &self,
        devices: Option<std::sync::Arc<mtls::DeviceVerifier>>,
    ) -> Result<rustls::ServerConfig, rustls::Error> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let builder = match devices {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        builder.with_single_cert(self.certs.clone(), self.key.clone_key())
    }
}

/// Reads the TLS certificate chain and key (PEM) and checks that they go together.
pub fn tls_config(
    cert_pem: &std::path::Path,
    key_pem: &std::path::Path,
) -> Result<TlsIdentity, String> {
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
    let id = TlsIdentity { certs, key };
    id.server_config(None).map_err(|e| {
        format!(
            "TLS key {} does not go with certificate {}: {e}",
            key_pem.display(),
            cert_pem.display()
        )
    })?;
    Ok(id)
}

/// Serves HTTPS with rustls on `listener` until `shutdown` resolves, then drains. Devices may
/// authenticate with their certificate in the handshake (mutual TLS, `POST /v1/auth/tls`);
/// other clients connect without one.
pub async fn serve_tls(
    service: std::sync::Arc<Service>,
    listener: tokio::net::TcpListener,
    tls: TlsIdentity,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let verifier = std::sync::Arc::new(mtls::DeviceVerifier::new(&service));
    let config = tls
        .server_config(Some(verifier))
        .map_err(std::io::Error::other)?;
    run(
        service,
        listener,
        Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))),
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
    // TLS handshakes check client certificates against the trust state in memory: keep it at
    // most a second behind the database.
    let watcher = service.clone();
    let refresh = tokio::spawn(async move {
        loop {
            if let Err(e) = watcher.trust().await {
                tracing::warn!(error = %e, "trust refresh failed");
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    let r = server::run(app(service.clone()), listener, tls, limits, shutdown).await;
    housekeeping.abort();
    refresh.abort();
    // What was aggregated but not yet written still reaches the audit log.
    if let Err(e) = service.flush_audit().await {
        tracing::warn!(error = %e, "audit flush at shutdown failed");
    }
    r
}
