//! Test support: a personalized software chip (slot-0 key with a CA-issued certificate in
//! zone 0, optionally a slot-1 key) served on a Unix socket by `sesame_chip::server` (what
//! `sesame chip serve` runs), and the path of the built module.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use sesame_chip::server::Listener;
use sesame_chip::{Bus, ChipConfig, ChipOptions, CurveName, Fab, MemStorage, PublicKeyBytes};

/// A chip on a virtual bus, and what the test knows about it.
pub struct Served {
    /// `unix:PATH`.
    pub bus: String,
    /// The slot-0 public key.
    pub slot0: PublicKeyBytes,
    /// The slot-1 public key, when one was made.
    pub slot1: Option<PublicKeyBytes>,
    /// The zone-0 certificate (DER).
    pub cert: Vec<u8>,
    /// The issuing CA (DER).
    pub ca: Vec<u8>,
    _dir: tempfile::TempDir,
}

struct Subject(Vec<u8>, &'static rcgen::SignatureAlgorithm);

impl rcgen::PublicKeyData for Subject {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &rcgen::SignatureAlgorithm {
        self.1
    }
}

/// Personalizes a chip on `curve` (seeded: same seed, same keys) and serves it.
pub fn serve(curve: CurveName, slot1: bool, seed: u64) -> Served {
    let mut config = ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0x20, seed as u8]);
    config.i2c_address = 0x20;
    let options = ChipOptions {
        rng_seed: Some(seed),
        ..Default::default()
    };
    let mut fab = Fab::new(config, Box::new(MemStorage::new()), options).unwrap();
    let slot0 = fab.generate_key(0, curve).unwrap();
    let slot1 = slot1.then(|| fab.generate_key(1, curve).unwrap());
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "sesame test family");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = p.self_signed(&ca_key).unwrap();
    let alg = match curve {
        CurveName::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        CurveName::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("02000000000000200{seed}"),
    );
    let cert = p
        .signed_by(&Subject(slot0.to_sec1(), alg), &ca, &ca_key)
        .unwrap()
        .der()
        .to_vec();
    fab.write_zone(0, 0, &cert).unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("unix:{}", dir.path().join("bus.sock").display());
    let listener = Listener::bind(&spec).unwrap();
    std::thread::spawn(move || listener.serve(&bus));
    Served {
        bus: spec,
        slot0,
        slot1,
        cert,
        ca: ca.der().to_vec(),
        _dir: dir,
    }
}

/// `libsesame_pkcs11.so` beside the test binaries (target/<profile>/), built from the current
/// sources. Cargo builds only the rlib for integration tests, so the module is built here
/// when it is missing or older than the rlib the tests were linked with.
pub fn module_path() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_module).clone()
}

fn build_module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let profile_dir = deps.parent().unwrap();
    let lib = profile_dir.join("libsesame_pkcs11.so");
    let rlib = profile_dir.join("libsesame_pkcs11.rlib");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = matches!((modified(&lib), modified(&rlib)), (Some(l), Some(r)) if l >= r);
    if !fresh {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cargo = std::process::Command::new(env!("CARGO"));
        cargo.args(["build", "-p", "sesame-pkcs11", "--lib"]);
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().unwrap();
        assert!(status.success(), "cannot build the PKCS#11 module");
    }
    assert!(lib.exists(), "{} not built", lib.display());
    lib
}
