//! Mutual TLS for devices: a rustls client-certificate verifier over the in-memory trust
//! snapshot, so a device whose chip signs the TLS handshake is authenticated by the handshake
//! itself (no second challenge).
//!
//! The verifier runs inside the handshake and cannot wait for the database: it uses the snapshot
//! the service last loaded, which the server refreshes every second and every trust change on
//! this instance refreshes at once. The login endpoint checks the device again against a fresh
//! snapshot, so a revocation made on another instance holds for logins at once and for
//! handshakes within a second.
//!
//! Client certificates are optional on the port: operators and challenge-response devices
//! connect without one.

use std::sync::{Arc, Weak};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use crate::service::Service;

/// The certificate a client presented in its TLS handshake (verified by [`DeviceVerifier`]).
#[derive(Clone, Debug)]
pub struct PeerCertificate(pub Vec<u8>);

/// Accepts client certificates of enrolled, unrevoked devices (family-issued), by the same rules
/// as the challenge-response login.
#[derive(Debug)]
pub struct DeviceVerifier {
    service: Weak<Service>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl DeviceVerifier {
    /// A verifier over `service`'s trust state.
    pub fn new(service: &Arc<Service>) -> Self {
        Self {
            service: Arc::downgrade(service),
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

fn refuse(e: CertificateError) -> Error {
    Error::InvalidCertificate(e)
}

impl ClientCertVerifier for DeviceVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let service = self
            .service
            .upgrade()
            .ok_or(refuse(CertificateError::ApplicationVerificationFailure))?;
        match service.check_tls_certificate(end_entity.as_ref(), now.as_secs()) {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            Err(crate::auth::Reason::Expired) => Err(refuse(CertificateError::Expired)),
            Err(crate::auth::Reason::Revoked | crate::auth::Reason::FamilyRevoked) => {
                Err(refuse(CertificateError::Revoked))
            }
            Err(crate::auth::Reason::NotEnrolled) => Err(refuse(CertificateError::UnknownIssuer)),
            Err(_) => Err(refuse(CertificateError::BadEncoding)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server's share of `n` full mutual-TLS 1.3 handshakes, in memory (no sockets): a fresh
/// self-signed server certificate, the device presenting `cert` (its key `key_pkcs8`, P-256
/// PKCS#8 DER) and the server checking it with [`DeviceVerifier`] over `service`. Only the
/// server's half is timed. For benchmarks: the cost a challenge-response login is compared with.
pub fn server_handshake_time(
    service: &Arc<Service>,
    cert: &[u8],
    key_pkcs8: &[u8],
    n: u32,
) -> Result<std::time::Duration, String> {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let server_key = rcgen::KeyPair::generate().map_err(|x| e(&x))?;
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .and_then(|p| p.self_signed(&server_key))
        .map_err(|x| e(&x))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|x| e(&x))?
            .with_client_cert_verifier(Arc::new(DeviceVerifier::new(service)))
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .map_err(|x| e(&x))?,
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_cert.der().clone()).map_err(|x| e(&x))?;
    let client_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|x| e(&x))?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(cert.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8.to_vec())),
            )
            .map_err(|x| e(&x))?,
    );
    let name = ServerName::try_from("localhost").map_err(|x| e(&x))?;
    let mut server_time = std::time::Duration::ZERO;
    for _ in 0..n {
        let mut client = rustls::ClientConnection::new(client_config.clone(), name.clone())
            .map_err(|x| e(&x))?;
        let mut server = rustls::ServerConnection::new(server_config.clone()).map_err(|x| e(&x))?;
        let mut buf = Vec::new();
        while client.is_handshaking() || server.is_handshaking() {
            buf.clear();
            client.write_tls(&mut buf).map_err(|x| e(&x))?;
            let t = std::time::Instant::now();
            if !buf.is_empty() {
                server.read_tls(&mut buf.as_slice()).map_err(|x| e(&x))?;
                server.process_new_packets().map_err(|x| e(&x))?;
            }
            buf.clear();
            server.write_tls(&mut buf).map_err(|x| e(&x))?;
            server_time += t.elapsed();
            if !buf.is_empty() {
                client.read_tls(&mut buf.as_slice()).map_err(|x| e(&x))?;
                client.process_new_packets().map_err(|x| e(&x))?;
            }
        }
        if server.peer_certificates().is_none() {
            return Err("the server saw no client certificate".into());
        }
    }
    Ok(server_time)
}
