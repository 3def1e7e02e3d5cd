//! Mutual TLS with the key in the chip: a rustls client configuration (TLS 1.3 only) whose
//! client certificate is the zone-0 certificate and whose `CertificateVerify` is signed by the
//! chip's slot-0 key, and a connection over TCP. The cloud's side (a client-certificate
//! verifier over its trust snapshot) is the cloud's; any rustls server that requires client
//! certificates from the family CA accepts this client.

use std::net::TcpStream;
use std::sync::Arc;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, SignatureScheme, StreamOwned};
use sesame_host::signer::SharedStsafe;

use crate::AgentError;

#[derive(Debug)]
struct ChipCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for ChipCertificate {
    fn resolve(&self, _: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        // Only when the server accepts the chip's scheme; otherwise no certificate is sent
        // and the server decides.
        self.0.key.choose_scheme(schemes).map(|_| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS 1.3 client that authenticates with the chip: the zone-0 certificate (and `chain`,
/// the issuers to send after it), signed for by slot 0; the server is checked against
/// `server_roots`.
pub fn client_config<I2C, D>(
    chip: &SharedStsafe<I2C, D>,
    chain: &[CertificateDer<'static>],
    server_roots: RootCertStore,
) -> Result<ClientConfig, AgentError>
where
    I2C: I2c + Send + 'static,
    D: DelayNs + Send + 'static,
{
    let key = sesame_host::tls::certified_key(chip, 0, 0, chain)
        .map_err(|e| AgentError::Chip(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AgentError::Transport(e.to_string()))?
        .with_root_certificates(server_roots)
        .with_client_cert_resolver(Arc::new(ChipCertificate(Arc::new(key))));
    Ok(config)
}

/// Connects to `host:port` and completes the handshake (the chip signs during it).
pub fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    port: u16,
) -> Result<StreamOwned<ClientConnection, TcpStream>, AgentError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| AgentError::Transport(format!("{host}: {e}")))?;
    let mut conn =
        ClientConnection::new(config, name).map_err(|e| AgentError::Transport(e.to_string()))?;
    let mut sock = TcpStream::connect((host, port))
        .map_err(|e| AgentError::Transport(format!("{host}:{port}: {e}")))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| AgentError::Transport(format!("TLS handshake: {e}")))?;
    }
    Ok(StreamOwned::new(conn, sock))
}
