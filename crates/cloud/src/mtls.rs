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
