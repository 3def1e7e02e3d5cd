//! The agent's mutual-TLS client against a plain rustls server that requires client
//! certificates from the family CA: a genuine chip completes TLS 1.3 and the server sees its
//! zone-0 certificate; a clone (genuine certificate, other key) and a device of an unenrolled
//! family fail the handshake.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, StreamOwned};
use sesame_agent::mtls;
use sesame_chip::{Bus, BusDevice, ChipConfig, ChipOptions, CurveName, Fab, MemStorage};
use sesame_host::signer::SharedStsafe;
use sesame_host::{NoDelay, Stsafe};

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca(cn: &str) -> Ca {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

struct Subject(Vec<u8>);

impl rcgen::PublicKeyData for Subject {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A chip (seeded) whose zone 0 holds a certificate from `family` for `cert_key`, or for its
/// own key; returns the shared driver and the certificate.
fn chip(
    family: &Ca,
    seed: u64,
    cert_key: Option<Vec<u8>>,
) -> (SharedStsafe<BusDevice, NoDelay>, Vec<u8>, Vec<u8>) {
    let options = ChipOptions {
        rng_seed: Some(seed),
        ..Default::default()
    };
    let config = ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0x20, seed as u8]);
    let mut fab = Fab::new(config, Box::new(MemStorage::new()), options).unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap().to_sec1();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("device {seed}"));
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let subject = Subject(cert_key.unwrap_or_else(|| pk.clone()));
    let cert = p
        .signed_by(&subject, &family.cert, &family.key)
        .unwrap()
        .der()
        .to_vec();
    fab.write_zone(0, 0, &cert).unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    se.init().unwrap();
    (SharedStsafe::new(se), cert, pk)
}

/// A server on loopback requiring client certificates from `family`; the thread returns the
/// client certificate it saw, or the handshake error.
fn server(family: &Ca, server_ca: &Ca) -> (u16, std::thread::JoinHandle<Result<Vec<u8>, String>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = p.signed_by(&key, &server_ca.cert, &server_ca.key).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(family.cert.der().clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut s = StreamOwned::new(conn, sock);
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        s.write_all(b"pong").map_err(|e| e.to_string())?;
        s.flush().map_err(|e| e.to_string())?;
        Ok(s.conn.peer_certificates().unwrap()[0].to_vec())
    });
    (port, t)
}

fn roots(server_ca: &Ca) -> RootCertStore {
    let mut r = RootCertStore::empty();
    r.add(server_ca.cert.der().clone()).unwrap();
    r
}

/// Connects and exchanges a message; the client's error, if any.
fn talk(se: &SharedStsafe<BusDevice, NoDelay>, server_ca: &Ca, port: u16) -> Result<(), String> {
    let config = mtls::client_config(se, &[], roots(server_ca)).map_err(|e| e.to_string())?;
    let mut s = mtls::connect(Arc::new(config), "localhost", port).map_err(|e| e.to_string())?;
    s.write_all(b"ping").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"pong");
    assert_eq!(
        s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    Ok(())
}

#[test]
fn a_genuine_chip_completes_mutual_tls() {
    let (family, server_ca) = (ca("family"), ca("cloud CA"));
    let (se, cert, _) = chip(&family, 1, None);
    let (port, srv) = server(&family, &server_ca);
    talk(&se, &server_ca, port).unwrap();
    assert_eq!(srv.join().unwrap().unwrap(), cert);
}

#[test]
fn a_clone_and_an_unenrolled_family_fail_the_handshake() {
    let (family, server_ca) = (ca("family"), ca("cloud CA"));
    // A clone: the genuine device's certificate on a chip with another key.
    let (_, _, genuine_key) = chip(&family, 2, None);
    let (clone, _, _) = chip(&family, 3, Some(genuine_key));
    let (port, srv) = server(&family, &server_ca);
    let _ = talk(&clone, &server_ca, port);
    let e = srv.join().unwrap().unwrap_err();
    assert!(e.to_lowercase().contains("signature"), "{e}");
    // A device of a family the server does not trust.
    let (stranger, _, _) = chip(&ca("other family"), 4, None);
    let (port, srv) = server(&family, &server_ca);
    let _ = talk(&stranger, &server_ca, port);
    let e = srv.join().unwrap().unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
}
