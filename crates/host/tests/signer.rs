//! The chip's keys as RustCrypto signers and a rustls signing key: slot 0 (public key from the
//! zone-0 certificate) and slot 1 (generated), P-256 and P-384; every signature checked by an
//! independent implementation (ring); one shared handle used from several threads at once,
//! with the host secure channel protecting Generate Signature; a TLS 1.3 handshake with client
//! authentication signed in the chip, and a cloned certificate refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use common::{Spec, CIPHER_KEY, MAC_KEY};
use p256_nostd::ecdsa::signature::hazmat::PrehashSigner;
use p256_nostd::ecdsa::signature::{Keypair, Signer};
use ring::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
use sesame_chip::{Bus, BusDevice, CurveName, PublicKeyBytes};
use sesame_host::signer::{digest_for_curve, ChipKey, ChipSigner, KeyError, SharedStsafe};
use sesame_host::{Curve, EccPublicKey, NoDelay, Stsafe};
use sesame_wire::CommandCode;
use sha2_nostd::{Digest, Sha256, Sha384};

type Shared = SharedStsafe<BusDevice, NoDelay>;

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

/// A public key given to rcgen as the subject key of a certificate.
struct Subject(Vec<u8>, &'static rcgen::SignatureAlgorithm);

impl rcgen::PublicKeyData for Subject {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        self.1
    }
}

/// A device certificate (CN = `cn`, clientAuth) for `sec1`, issued by `ca`.
fn device_cert(ca: &Ca, cn: &str, sec1: Vec<u8>, curve: CurveName) -> Vec<u8> {
    let alg = match curve {
        CurveName::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        CurveName::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    p.signed_by(&Subject(sec1, alg), &ca.cert, &ca.key)
        .unwrap()
        .der()
        .to_vec()
}

/// A chip on `curve` whose zone 0 holds a certificate from `ca` for `cert_key` (its own
/// slot-0 key when `None`); `protect_signing` puts Generate Signature under the host C-MAC.
fn chip(
    curve: CurveName,
    ca: &Ca,
    cert_key: Option<Vec<u8>>,
    protect_signing: bool,
) -> (Bus, PublicKeyBytes, Vec<u8>) {
    let mut spec = Spec {
        curve,
        // The chips are deterministic: a clone's chip gets another seed, so another key.
        seed: if cert_key.is_some() { 8 } else { 7 },
        ..Spec::default()
    };
    if protect_signing {
        spec.policy = common::policy(&[CommandCode::GENERATE_SIGNATURE], &[]);
    }
    let (mut fab, pk) = common::fab(&spec);
    let cert = device_cert(
        ca,
        "0200000000000001",
        cert_key.unwrap_or_else(|| pk.to_sec1()),
        curve,
    );
    fab.write_zone(0, 0, &cert).unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    (bus, pk, cert)
}

fn shared(bus: &Bus, session: bool) -> Shared {
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    se.init().unwrap();
    if session {
        se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    }
    SharedStsafe::new(se)
}

/// ring verifies `sig` (`R || S`) over `msg` with the SEC1 key, for the given algorithm.
fn ring_verifies(alg: &'static dyn VerificationAlgorithm, sec1: &[u8], msg: &[u8], der: &[u8]) {
    UnparsedPublicKey::new(alg, sec1)
        .verify(msg, der)
        .expect("ring refuses the chip's signature");
}

fn sec1(k: &EccPublicKey) -> Vec<u8> {
    [&[0x04][..], k.xy()].concat()
}

/// Slot 0 from the certificate and slot 1 freshly generated: hashing signer, prehash signer
/// with a digest of the curve's size, a longer one (truncated) and a shorter one (padded), all
/// checked by ring, on both curves.
#[test]
fn slots_0_and_1_sign_for_ring_on_both_curves() {
    let ca = ca("family");
    let msg = b"a message signed in the chip";
    for curve in [CurveName::P256, CurveName::P384] {
        let (bus, pk0, _) = chip(curve, &ca, None, false);
        let chip = shared(&bus, false);
        let slot0 = chip.certificate_key(0, 0).unwrap();
        assert_eq!(
            sec1(slot0.public_key()),
            pk0.to_sec1(),
            "key of the certificate"
        );
        let wire = if curve == CurveName::P256 {
            Curve::P256
        } else {
            Curve::P384
        };
        let pk1 = chip.lock().generate_private_key(1, wire, 0xFFFF).unwrap();
        let slot1 = ChipKey::new(chip.clone(), 1, &pk1).unwrap();
        for key in [&slot0, &slot1] {
            let public = sec1(key.public_key());
            match (curve, key) {
                (CurveName::P256, ChipKey::P256(k)) => {
                    assert_eq!(
                        k.verifying_key().to_encoded_point(false).as_bytes(),
                        &public[..]
                    );
                    let s: p256_nostd::ecdsa::Signature = k.try_sign(msg).unwrap();
                    ring_verifies(&rs::ECDSA_P256_SHA256_FIXED, &public, msg, &s.to_bytes());
                    // SHA-384 on P-256: the chip gets the leftmost 32 bytes, as ECDSA says.
                    let s: p256_nostd::ecdsa::Signature =
                        k.sign_prehash(&Sha384::digest(msg)).unwrap();
                    let der = s.to_der();
                    ring_verifies(&rs::ECDSA_P256_SHA384_ASN1, &public, msg, der.as_bytes());
                }
                (CurveName::P384, ChipKey::P384(k)) => {
                    assert_eq!(
                        k.verifying_key().to_encoded_point(false).as_bytes(),
                        &public[..]
                    );
                    let s: p384_nostd::ecdsa::Signature = k.try_sign(msg).unwrap();
                    ring_verifies(&rs::ECDSA_P384_SHA384_FIXED, &public, msg, &s.to_bytes());
                    // SHA-256 on P-384: padded on the left to 48 bytes.
                    let s: p384_nostd::ecdsa::Signature =
                        k.sign_prehash(&Sha256::digest(msg)).unwrap();
                    let der = s.to_der();
                    ring_verifies(&rs::ECDSA_P384_SHA256_ASN1, &public, msg, der.as_bytes());
                }
                _ => panic!("a {curve:?} chip gave a key on another curve"),
            }
        }
        assert_ne!(slot0.public_key(), slot1.public_key());
    }
}

#[test]
fn bad_keys_and_digests_are_refused() {
    let ca = ca("family");
    let (bus, pk0, _) = chip(CurveName::P256, &ca, None, false);
    let chip = shared(&bus, false);
    // A P-256 point given as a P-384 signer, and a point off the curve.
    let p256_key = EccPublicKey::from_xy(Curve::P256, &pk0.to_sec1()[1..]).unwrap();
    let e = ChipSigner::<p384_nostd::NistP384, _, _>::new(chip.clone(), 0, &p256_key);
    assert_eq!(e.unwrap_err(), KeyError::WrongKey);
    let mut off = pk0.to_sec1()[1..].to_vec();
    off[63] ^= 1;
    let off = EccPublicKey::from_xy(Curve::P256, &off).unwrap();
    assert_eq!(
        ChipKey::new(chip.clone(), 0, &off).unwrap_err(),
        KeyError::WrongKey
    );
    // A digest shorter than half the field is no ECDSA input; the chip is not asked.
    let key = ChipKey::new(chip.clone(), 0, &p256_key).unwrap();
    assert_eq!(
        key.sign_digest_raw(&[1; 15]).unwrap_err(),
        KeyError::DigestTooShort
    );
    assert_eq!(digest_for_curve(&[7; 16], 32).unwrap()[..16], [0; 16]);
    // An empty slot: the chip's refusal comes back as the driver's message.
    let empty = ChipKey::new(chip.clone(), 1, &p256_key).unwrap();
    let e = empty.sign_digest_raw(&[1; 32]).unwrap_err();
    assert!(matches!(&e, KeyError::Chip(m) if m.contains("0x0A")), "{e}");
    // Zone 1 holds no certificate.
    assert!(matches!(
        chip.certificate_key(1, 0),
        Err(KeyError::Chip(_) | KeyError::Certificate(_))
    ));
}

/// Four threads sign through clones of one handle while a fifth reads zones, with Generate
/// Signature under the host C-MAC: every command takes the session counter in turn, and every
/// signature verifies.
#[test]
fn one_handle_signs_from_several_threads() {
    fn send_sync<T: Send + Sync + Clone>(_: &T) {}
    let ca = ca("family");
    let (bus, pk0, _) = chip(CurveName::P256, &ca, None, true);
    let chip = shared(&bus, true);
    send_sync(&chip);
    let ChipKey::P256(key) = chip.certificate_key(0, 0).unwrap() else {
        panic!("P-256")
    };
    send_sync(&key);
    let start = chip.lock().session_counter().unwrap();
    let (threads, per_thread) = (4usize, 8usize);
    let mut handles = Vec::new();
    let public = pk0.to_sec1();
    for t in 0..threads {
        let (key, public) = (key.clone(), public.clone());
        handles.push(std::thread::spawn(move || {
            for i in 0..per_thread {
                let msg = format!("thread {t} message {i}");
                let s: p256_nostd::ecdsa::Signature = key.try_sign(msg.as_bytes()).unwrap();
                ring_verifies(
                    &rs::ECDSA_P256_SHA256_FIXED,
                    &public,
                    msg.as_bytes(),
                    &s.to_bytes(),
                );
            }
        }));
    }
    let reader = {
        let chip = chip.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                let mut b = [0u8; 16];
                chip.lock().read(1, 0, &mut b).unwrap();
                assert_eq!(b[..4], [0, 1, 2, 3]);
            }
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    reader.join().unwrap();
    // Each signature used one C-MAC: none was lost or sent twice.
    let end = chip.lock().session_counter().unwrap();
    assert_eq!(end - start, (threads * per_thread) as u32);
}

mod tls {
    use super::*;
    use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::server::WebPkiClientVerifier;
    use rustls::sign::CertifiedKey;
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};
    use std::io::{Read, Write};

    #[derive(Debug)]
    struct Chip(Arc<CertifiedKey>);

    impl ResolvesClientCert for Chip {
        fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A TLS server on loopback that requires a client certificate from `family`; returns its
    /// port and a thread that gives the peer certificate it saw (or the handshake error).
    fn server(
        family: &Ca,
        server_ca: &Ca,
    ) -> (u16, std::thread::JoinHandle<Result<Vec<u8>, String>>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = p.signed_by(&key, &server_ca.cert, &server_ca.key).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(family.cert.der().clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let config = ServerConfig::builder_with_provider(provider())
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
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).map_err(|e| e.to_string())?;
            s.write_all(b"hello").map_err(|e| e.to_string())?;
            s.flush().map_err(|e| e.to_string())?;
            assert_eq!(
                s.conn.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            let peer = s.conn.peer_certificates().unwrap()[0].to_vec();
            Ok(peer)
        });
        (port, t)
    }

    fn client(chip: &Shared, server_ca: &Ca, port: u16) -> Result<(), String> {
        let key = sesame_host::tls::certified_key(chip, 0, 0, &[]).map_err(|e| e.to_string())?;
        let mut roots = RootCertStore::empty();
        roots.add(server_ca.cert.der().clone()).unwrap();
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .unwrap();
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_webpki_verifier(server_verifier)
            .with_client_cert_resolver(Arc::new(Chip(Arc::new(key))));
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut s = StreamOwned::new(conn, sock);
        s.write_all(b"hello").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// TLS 1.3 with client authentication: the CertificateVerify is signed in the chip, on
    /// P-256 and P-384; the server sees the zone-0 certificate.
    #[test]
    fn tls13_client_auth_signed_in_the_chip() {
        let (family, server_ca) = (ca("family"), ca("server CA"));
        for curve in [CurveName::P256, CurveName::P384] {
            let (bus, _, cert) = chip(curve, &family, None, false);
            let se = shared(&bus, false);
            let (port, srv) = server(&family, &server_ca);
            client(&se, &server_ca, port).unwrap();
            assert_eq!(srv.join().unwrap().unwrap(), cert, "{curve:?}");
        }
    }

    /// A clone: a genuine certificate copied onto a chip that holds another key. The server
    /// refuses its CertificateVerify.
    #[test]
    fn a_cloned_certificate_fails_the_handshake() {
        let (family, server_ca) = (ca("family"), ca("server CA"));
        let (_, genuine, _) = chip(CurveName::P256, &family, None, false);
        let (bus, _, _) = chip(CurveName::P256, &family, Some(genuine.to_sec1()), false);
        let se = shared(&bus, false);
        let (port, srv) = server(&family, &server_ca);
        let _ = client(&se, &server_ca, port);
        let e = srv.join().unwrap().unwrap_err();
        assert!(e.contains("Signature") || e.contains("signature"), "{e}");
        // A certificate from an unknown CA is refused too.
        let (bus, _, _) = chip(CurveName::P256, &ca("other"), None, false);
        let se = shared(&bus, false);
        let (port, srv) = server(&family, &server_ca);
        let _ = client(&se, &server_ca, port);
        let e = srv.join().unwrap().unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{e}");
    }
}
