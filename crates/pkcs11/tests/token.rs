//! The token's answers to bad input, as PKCS#11 v2.40 prescribes them: not initialized, bad
//! slot, bad session, unknown object, a certificate used as a key, a buffer too small (with the
//! size written and the operation kept), sensitive attributes, wrong mechanism or parameters,
//! a PIN on a token without one; and the settings the module reads.
#![allow(clippy::unwrap_used)]

mod common;

use cryptoki_sys::*;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use sesame_chip::CurveName;
use sesame_host::bus::{BusTarget, BusTargetError};
use sesame_pkcs11::config::{Config, ConfigError};
use sesame_pkcs11::token::{AttrReq, Module, Param, UNAVAILABLE};

const PRIV0: CK_OBJECT_HANDLE = 1;
const PUB0: CK_OBJECT_HANDLE = 2;
const CERT0: CK_OBJECT_HANDLE = 3;

fn module(chip: &common::Served) -> Module {
    let m = Module::new();
    assert_eq!(m.initialize(Config::new(&chip.bus, None).unwrap()), CKR_OK);
    m
}

fn open(m: &Module) -> CK_SESSION_HANDLE {
    m.open_session(0, CKF_SERIAL_SESSION).unwrap()
}

fn req(kind: CK_ATTRIBUTE_TYPE, buf: Option<&mut [u8]>) -> AttrReq<'_> {
    AttrReq { kind, buf, len: 0 }
}

fn ecdsa() -> Param<'static> {
    Param::Bytes(&[])
}

#[test]
fn lifecycle_slots_and_sessions() {
    let chip = common::serve(CurveName::P256, false, 11);
    let m = Module::new();
    assert_eq!(
        m.open_session(0, CKF_SERIAL_SESSION),
        Err(CKR_CRYPTOKI_NOT_INITIALIZED)
    );
    assert_eq!(m.finalize(), CKR_CRYPTOKI_NOT_INITIALIZED);
    let config = Config::new(&chip.bus, None).unwrap();
    assert_eq!(m.initialize(config.clone()), CKR_OK);
    assert_eq!(m.initialize(config), CKR_CRYPTOKI_ALREADY_INITIALIZED);
    assert_eq!(m.slots(true).unwrap(), vec![0]);
    assert_eq!(m.slot_info(1).unwrap_err(), CKR_SLOT_ID_INVALID);
    assert_eq!(m.token_info(7).unwrap_err(), CKR_SLOT_ID_INVALID);
    assert_eq!(
        m.open_session(0, 0),
        Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED)
    );
    assert_eq!(
        m.open_session(3, CKF_SERIAL_SESSION),
        Err(CKR_SLOT_ID_INVALID)
    );
    let h = open(&m);
    assert_eq!(m.close_session(h + 100), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(
        m.session_info(h + 100).unwrap_err(),
        CKR_SESSION_HANDLE_INVALID
    );
    assert_eq!(m.session_info(h).unwrap().state, CKS_RO_PUBLIC_SESSION);
    assert_eq!(m.close_session(h), CKR_OK);
    assert_eq!(m.close_session(h), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(m.finalize(), CKR_OK);
}

#[test]
fn a_bus_without_a_chip_is_a_slot_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let gone = format!("unix:{}", dir.path().join("none.sock").display());
    let m = Module::new();
    assert_eq!(m.initialize(Config::new(&gone, None).unwrap()), CKR_OK);
    assert_eq!(m.slots(false).unwrap(), vec![0]);
    assert!(m.slots(true).unwrap().is_empty());
    assert_eq!(m.slot_info(0).unwrap().flags & CKF_TOKEN_PRESENT, 0);
    assert_eq!(m.token_info(0).unwrap_err(), CKR_TOKEN_NOT_PRESENT);
    assert_eq!(
        m.open_session(0, CKF_SERIAL_SESSION),
        Err(CKR_TOKEN_NOT_PRESENT)
    );
}

#[test]
fn sign_two_calls_buffer_too_small_and_wrong_keys() {
    let chip = common::serve(CurveName::P256, false, 12);
    let m = module(&chip);
    let h = open(&m);
    let digest = [0x42u8; 32];
    // No operation yet.
    assert_eq!(m.sign(h, &digest, None).0, CKR_OPERATION_NOT_INITIALIZED);
    // Keys that cannot sign, handles that name nothing, mechanisms the token lacks.
    assert_eq!(
        m.sign_init(h, CKM_ECDSA, ecdsa(), 999),
        CKR_KEY_HANDLE_INVALID
    );
    assert_eq!(
        m.sign_init(h, CKM_ECDSA, ecdsa(), CERT0),
        CKR_KEY_HANDLE_INVALID
    );
    assert_eq!(
        m.sign_init(h, CKM_ECDSA, ecdsa(), PUB0),
        CKR_KEY_FUNCTION_NOT_PERMITTED
    );
    assert_eq!(
        m.sign_init(h, CKM_RSA_PKCS, ecdsa(), PRIV0),
        CKR_MECHANISM_INVALID
    );
    assert_eq!(
        m.sign_init(h, CKM_ECDSA, Param::Bytes(&[1]), PRIV0),
        CKR_MECHANISM_PARAM_INVALID
    );
    assert_eq!(
        m.sign_init(h + 9, CKM_ECDSA, ecdsa(), PRIV0),
        CKR_SESSION_HANDLE_INVALID
    );
    // Size query, then a buffer too small: the size is reported, the operation survives.
    assert_eq!(m.sign_init(h, CKM_ECDSA, ecdsa(), PRIV0), CKR_OK);
    assert_eq!(
        m.sign_init(h, CKM_ECDSA, ecdsa(), PRIV0),
        CKR_OPERATION_ACTIVE
    );
    assert_eq!(m.sign(h, &digest, None), (CKR_OK, 64));
    let mut small = [0u8; 63];
    assert_eq!(
        m.sign(h, &digest, Some(&mut small)),
        (CKR_BUFFER_TOO_SMALL, 64)
    );
    let mut sig = [0u8; 80];
    assert_eq!(m.sign(h, &digest, Some(&mut sig)), (CKR_OK, 64));
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&chip.slot0.to_sec1()).unwrap();
    let s = p256::ecdsa::Signature::from_slice(&sig[..64]).unwrap();
    vk.verify_prehash(&digest, &s).unwrap();
    // The operation ended with the signature.
    assert_eq!(
        m.sign(h, &digest, Some(&mut sig)).0,
        CKR_OPERATION_NOT_INITIALIZED
    );
    // A digest too short for ECDSA ends the operation with CKR_DATA_LEN_RANGE.
    assert_eq!(m.sign_init(h, CKM_ECDSA, ecdsa(), PRIV0), CKR_OK);
    assert_eq!(m.sign(h, &[1; 8], Some(&mut sig)).0, CKR_DATA_LEN_RANGE);
    assert_eq!(
        m.sign(h, &digest, Some(&mut sig)).0,
        CKR_OPERATION_NOT_INITIALIZED
    );
    // Multi-part with a hashing mechanism; CKM_ECDSA is single-part only.
    assert_eq!(m.sign_init(h, CKM_ECDSA_SHA256, ecdsa(), PRIV0), CKR_OK);
    assert_eq!(m.sign_update(h, b"hello "), CKR_OK);
    assert_eq!(m.sign_update(h, b"world"), CKR_OK);
    assert_eq!(m.sign_final(h, Some(&mut sig)), (CKR_OK, 64));
    let s = p256::ecdsa::Signature::from_slice(&sig[..64]).unwrap();
    use sha2::Digest;
    vk.verify_prehash(&sha2::Sha256::digest(b"hello world"), &s)
        .unwrap();
    assert_eq!(m.sign_init(h, CKM_ECDSA, ecdsa(), PRIV0), CKR_OK);
    assert_eq!(m.sign_update(h, b"x"), CKR_FUNCTION_NOT_SUPPORTED);
}

#[test]
fn attributes_sizes_sensitive_and_unknown() {
    let chip = common::serve(CurveName::P256, false, 13);
    let m = module(&chip);
    let h = open(&m);
    // Size first, then the value: the certificate.
    let mut r = [req(CKA_VALUE, None)];
    assert_eq!(m.get_attributes(h, CERT0, &mut r), CKR_OK);
    assert_eq!(r[0].len as usize, chip.cert.len());
    let mut buf = vec![0u8; chip.cert.len()];
    let mut small = [0u8; 10];
    let mut r = [req(CKA_VALUE, Some(&mut small[..]))];
    assert_eq!(m.get_attributes(h, CERT0, &mut r), CKR_BUFFER_TOO_SMALL);
    assert_eq!(r[0].len, UNAVAILABLE);
    let mut r = [req(CKA_VALUE, Some(&mut buf[..]))];
    assert_eq!(m.get_attributes(h, CERT0, &mut r), CKR_OK);
    assert_eq!(buf, chip.cert);
    // The private key's value is sensitive; every other attribute is still answered.
    let mut class = [0u8; 8];
    let mut r = [req(CKA_VALUE, None), req(CKA_CLASS, Some(&mut class[..]))];
    assert_eq!(m.get_attributes(h, PRIV0, &mut r), CKR_ATTRIBUTE_SENSITIVE);
    assert_eq!(r[0].len, UNAVAILABLE);
    assert_eq!(r[1].len, 8);
    assert_eq!(CK_ULONG::from_ne_bytes(class), CKO_PRIVATE_KEY);
    let mut b = [0u8; 1];
    let mut r = [req(CKA_EXTRACTABLE, Some(&mut b[..]))];
    assert_eq!(m.get_attributes(h, PRIV0, &mut r), CKR_OK);
    assert_eq!(b, [CK_FALSE]);
    // An attribute the object does not have, an object that does not exist.
    let mut r = [req(CKA_MODULUS, None)];
    assert_eq!(
        m.get_attributes(h, PRIV0, &mut r),
        CKR_ATTRIBUTE_TYPE_INVALID
    );
    assert_eq!(r[0].len, UNAVAILABLE);
    assert_eq!(m.get_attributes(h, 77, &mut []), CKR_OBJECT_HANDLE_INVALID);
    assert_eq!(
        m.get_attributes(h + 5, CERT0, &mut []),
        CKR_SESSION_HANDLE_INVALID
    );
    // Token objects cannot be destroyed.
    assert_eq!(m.destroy(h, PRIV0), CKR_ACTION_PROHIBITED);
    assert_eq!(m.destroy(h, 77), CKR_OBJECT_HANDLE_INVALID);
}

#[test]
fn find_by_template() {
    let chip = common::serve(CurveName::P384, true, 14);
    let m = module(&chip);
    let h = open(&m);
    assert_eq!(m.find(h, 10).unwrap_err(), CKR_OPERATION_NOT_INITIALIZED);
    let class = CKO_PRIVATE_KEY.to_ne_bytes();
    assert_eq!(m.find_init(h, &[(CKA_CLASS, &class)]), CKR_OK);
    assert_eq!(m.find_init(h, &[]), CKR_OPERATION_ACTIVE);
    assert_eq!(m.find(h, 1).unwrap(), vec![1]);
    assert_eq!(m.find(h, 10).unwrap(), vec![4]); // slot 1's key
    assert!(m.find(h, 10).unwrap().is_empty());
    assert_eq!(m.find_final(h), CKR_OK);
    assert_eq!(m.find_final(h), CKR_OPERATION_NOT_INITIALIZED);
    // Matching on a sensitive value finds nothing (it would leak the value).
    assert_eq!(m.find_init(h, &[(CKA_VALUE, &[0u8; 48])]), CKR_OK);
    assert!(m.find(h, 10).unwrap().is_empty());
    assert_eq!(m.find_final(h), CKR_OK);
    assert_eq!(m.find_init(h, &[(CKA_ID, &[0u8])]), CKR_OK);
    assert_eq!(m.find(h, 10).unwrap(), vec![1, 2, 3]);
}

#[test]
fn ecdh_derive_and_its_refusals() {
    let chip = common::serve(CurveName::P256, false, 15);
    let m = module(&chip);
    let h = open(&m);
    let peer = p256::SecretKey::from_slice(&[0x11; 32]).unwrap();
    let point = peer.public_key().to_sec1_bytes().to_vec();
    let ecdh = |public| Param::Ecdh1 {
        kdf: CKD_NULL,
        shared: &[],
        public,
    };
    let key = m
        .derive(h, CKM_ECDH1_DERIVE, ecdh(&point), PRIV0, &[])
        .unwrap();
    let mut v = [0u8; 32];
    let mut r = [AttrReq {
        kind: CKA_VALUE,
        buf: Some(&mut v[..]),
        len: 0,
    }];
    assert_eq!(m.get_attributes(h, key, &mut r), CKR_OK);
    let chip_pk = p256::PublicKey::from_sec1_bytes(&chip.slot0.to_sec1()).unwrap();
    let expect = p256::ecdh::diffie_hellman(peer.to_nonzero_scalar(), chip_pk.as_affine());
    assert_eq!(&v[..], expect.raw_secret_bytes().as_slice());
    // A sensitive derived key cannot be read.
    let t = [(CKA_SENSITIVE, &[CK_TRUE][..])];
    let k2 = m
        .derive(h, CKM_ECDH1_DERIVE, ecdh(&point), PRIV0, &t)
        .unwrap();
    let mut r = [AttrReq {
        kind: CKA_VALUE,
        buf: None,
        len: 0,
    }];
    assert_eq!(m.get_attributes(h, k2, &mut r), CKR_ATTRIBUTE_SENSITIVE);
    assert_eq!(m.destroy(h, k2), CKR_OK);
    // Refusals: a point off the curve, a KDF, the wrong mechanism or key, a token object.
    let mut off = point.clone();
    off[64] ^= 1;
    let r = m.derive(h, CKM_ECDH1_DERIVE, ecdh(&off), PRIV0, &[]);
    assert_eq!(r, Err(CKR_MECHANISM_PARAM_INVALID));
    let kdf = Param::Ecdh1 {
        kdf: CKD_SHA256_KDF,
        shared: &[],
        public: &point,
    };
    let r = m.derive(h, CKM_ECDH1_DERIVE, kdf, PRIV0, &[]);
    assert_eq!(r, Err(CKR_MECHANISM_PARAM_INVALID));
    let r = m.derive(h, CKM_ECDH1_DERIVE, Param::Bytes(&point), PRIV0, &[]);
    assert_eq!(r, Err(CKR_MECHANISM_PARAM_INVALID));
    let r = m.derive(h, CKM_ECDSA, ecdh(&point), PRIV0, &[]);
    assert_eq!(r, Err(CKR_MECHANISM_INVALID));
    let r = m.derive(h, CKM_ECDH1_DERIVE, ecdh(&point), CERT0, &[]);
    assert_eq!(r, Err(CKR_KEY_HANDLE_INVALID));
    let r = m.derive(h, CKM_ECDH1_DERIVE, ecdh(&point), key, &[]);
    assert_eq!(r, Err(CKR_KEY_TYPE_INCONSISTENT));
    let token = [(CKA_TOKEN, &[CK_TRUE][..])];
    let r = m.derive(h, CKM_ECDH1_DERIVE, ecdh(&point), PRIV0, &token);
    assert_eq!(r, Err(CKR_TEMPLATE_INCONSISTENT));
    // Session objects go with their session.
    assert_eq!(m.close_session(h), CKR_OK);
    let h2 = open(&m);
    assert_eq!(
        m.get_attributes(h2, key, &mut []),
        CKR_OBJECT_HANDLE_INVALID
    );
}

#[test]
fn random_login_and_mechanisms() {
    let chip = common::serve(CurveName::P256, false, 16);
    let m = module(&chip);
    let h = open(&m);
    let (mut a, mut b) = ([0u8; 300], [0u8; 300]);
    assert_eq!(m.random(h, &mut a), CKR_OK);
    assert_eq!(m.random(h, &mut b), CKR_OK);
    assert_ne!(a, b);
    assert_eq!(m.random(h + 1, &mut a), CKR_SESSION_HANDLE_INVALID);
    assert_eq!(m.seed_random(h), CKR_RANDOM_SEED_NOT_SUPPORTED);
    // No PIN on this token: a PIN is refused, an empty one logs in.
    assert_eq!(m.logout(h), CKR_USER_NOT_LOGGED_IN);
    assert_eq!(m.login(h, CKU_USER, b"1234"), CKR_PIN_INCORRECT);
    assert_eq!(m.login(h, CKU_SO, b""), CKR_USER_TYPE_INVALID);
    assert_eq!(m.login(h, 42, b""), CKR_USER_TYPE_INVALID);
    assert_eq!(m.login(h, CKU_USER, b""), CKR_OK);
    assert_eq!(m.login(h, CKU_USER, b""), CKR_USER_ALREADY_LOGGED_IN);
    assert_eq!(m.logout(h), CKR_OK);
    assert_eq!(m.mechanisms(0).unwrap().len(), 4);
    assert_eq!(
        m.mechanism_info(0, CKM_SHA256).unwrap_err(),
        CKR_MECHANISM_INVALID
    );
    let i = m.mechanism_info(0, CKM_ECDH1_DERIVE).unwrap();
    assert_ne!(i.flags & CKF_DERIVE, 0);
}

#[test]
fn settings_from_the_environment_and_a_file() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(Config::from_env_with(env(&[])), Err(ConfigError::Missing));
    let c = Config::from_env_with(env(&[("SESAME_PKCS11_BUS", "/dev/i2c-1:0x21")])).unwrap();
    assert_eq!(c.address, 0x21);
    assert!(matches!(c.bus, BusTarget::I2cDev { .. }));
    let c = Config::from_env_with(env(&[
        ("SESAME_PKCS11_BUS", "127.0.0.1:7020"),
        ("SESAME_PKCS11_ADDRESS", "0x22"),
    ]))
    .unwrap();
    assert_eq!(
        (c.address, c.bus),
        (0x22, BusTarget::Socket("127.0.0.1:7020".into()))
    );
    let c = Config::from_env_with(env(&[("SESAME_PKCS11_BUS", "unix:/x")])).unwrap();
    assert_eq!(c.address, 0x20);
    let bad = Config::from_env_with(env(&[
        ("SESAME_PKCS11_BUS", "/dev/i2c-1:0x21"),
        ("SESAME_PKCS11_ADDRESS", "0x22"),
    ]));
    assert!(matches!(
        bad,
        Err(ConfigError::Bus(BusTargetError::AddressConflict {
            bus: 0x21,
            given: 0x22
        }))
    ));
    assert!(matches!(
        Config::new("/dev/sda", None),
        Err(ConfigError::Bus(_))
    ));
    assert!(matches!(
        Config::new("unix:/x", Some("0x80")),
        Err(ConfigError::Bus(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pkcs11.toml");
    std::fs::write(&f, "bus = \"/dev/i2c-3\"\naddress = \"0x2A\"\n").unwrap();
    let c = Config::from_file(&f).unwrap();
    assert_eq!(c.address, 0x2A);
    std::fs::write(&f, "bus = \"/dev/i2c-3\"\nadress = \"0x2A\"\n").unwrap();
    assert!(matches!(Config::from_file(&f), Err(ConfigError::File(m)) if m.contains("adress")));
    let missing = dir.path().join("none.toml");
    assert!(matches!(
        Config::from_file(&missing),
        Err(ConfigError::File(_))
    ));
}
