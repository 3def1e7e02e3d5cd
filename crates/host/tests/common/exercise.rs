//! Every chip command through the driver, with its effect checked: run over the in-process bus
//! and over the socket bus. Expects a chip built by `common::chip(&Spec::default())`.

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256_nostd as p256;
use sesame_chip::PublicKeyBytes;
use sesame_host::{
    ChipModel, CommandCode, Curve, EccPublicKey, EnvelopeKeyType, Error, I2cParameters, LifeCycle,
    Status, Stsafe, WakeMode, ZoneAccess,
};
use sha2::Digest;
use sha2_nostd as sha2;

use super::{zone_signer, CIPHER_KEY, MAC_KEY, PASSWORD};

/// The error of a call that must fail, without the bus error type.
fn err<T: core::fmt::Debug, E: core::fmt::Debug>(r: Result<T, Error<E>>) -> Error<()> {
    r.unwrap_err().map_bus(|_| ())
}

/// Runs every command once; `slot0` is the chip's slot-0 public key, `power_cycle` power-cycles
/// the chip at an address through another handle on the same bus.
pub fn all_commands<I: I2c, D: DelayNs>(
    se: &mut Stsafe<I, D>,
    slot0: &PublicKeyBytes,
    power_cycle: &mut dyn FnMut(u8),
) {
    general(se);
    queries(se);
    data(se);
    session_and_protected_zone(se);
    keys_and_signatures(se, slot0);
    envelopes(se);
    password_and_life_cycle(se);
    address_change(se, power_cycle);
    power_states(se);
}

fn general<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>) {
    let info = se.init().unwrap();
    assert_eq!(info.mask_id, [0x00, 0x46, 0x01]);
    assert_eq!(info.model, Some(ChipModel::A110));
    assert_eq!(info.io_buffer_size, Some(507));
    assert!(info.st_number.is_some());

    let data: Vec<u8> = (0..16).collect();
    let mut out = [0u8; 16];
    assert_eq!(se.echo(&data, &mut out).unwrap(), 16);
    assert_eq!(out[..], data[..]);
    assert_eq!(err(se.echo(&data, &mut [0u8; 4])), Error::BufferTooSmall);

    let (mut a, mut b) = ([0u8; 600], [0u8; 600]);
    se.generate_random(&mut a).unwrap();
    se.generate_random(&mut b).unwrap();
    assert_ne!(a, b);
    assert!(
        a[255..].iter().any(|&x| x != 0),
        "the split chunks are filled"
    );
    se.generate_random(&mut []).unwrap();
}

fn queries<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>) {
    assert_eq!(se.query_life_cycle().unwrap(), LifeCycle::OPERATIONAL);
    let i2c = se.query_i2c_parameters().unwrap();
    assert_eq!((i2c.address, i2c.locked), (0x20, false));

    let zones: Vec<_> = se.query_data_partition().unwrap().collect();
    assert_eq!(zones.len(), 7);
    assert_eq!(zones[4].counter, Some(1_000_000));
    assert_eq!((zones[5].read_ac(), zones[5].update_ac()), (1, 1));
    assert_eq!(zones[0].data_len, 1024);

    let (header, slots) = se.query_private_keys().unwrap();
    let slots: Vec<_> = slots.collect();
    assert_eq!((header.count as usize, slots.len()), (3, 3));
    assert!(slots[0].present && slots[0].curve == Some(Curve::P256));
    assert!(!slots[1].present);

    let env: Vec<_> = se.query_envelope_keys().unwrap().collect();
    assert_eq!(env.len(), 2);
    assert!(env.iter().all(|e| e.key_len.is_none()));

    assert!(se.query_host_key().unwrap().present);

    let (_cr, records) = se.query_command_authorization().unwrap();
    assert_eq!(records.len(), CommandCode::A110.len());
}

fn data<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>) {
    let mut out = [0u8; 16];
    se.read(1, 0, &mut out).unwrap();
    assert_eq!(out.to_vec(), (0..16).collect::<Vec<u8>>());

    se.update(3, 8, b"sesame").unwrap();
    let mut six = [0u8; 6];
    se.read(3, 8, &mut six).unwrap();
    assert_eq!(&six, b"sesame");

    // Whole zone 2 (256 bytes) in 253-byte chunks both ways.
    let pattern: Vec<u8> = (0..256).map(|i| (i * 7) as u8).collect();
    se.update_zone(2, 0, &pattern).unwrap();
    let mut back = [0u8; 256];
    se.read_zone(2, 0, &mut back).unwrap();
    assert_eq!(back.to_vec(), pattern);
    let mut past_end = [0u8; 8];
    assert_eq!(
        err(se.read(2, 250, &mut past_end)),
        Error::Status(Status::BOUNDARY_EXCEEDED)
    );

    assert_eq!(se.decrement(4, 0, 10, b"used").unwrap(), 999_990);
    let mut used = [0u8; 4];
    assert_eq!(se.read_counter(4, 0, &mut used).unwrap(), 999_990);
    assert_eq!(&used, b"used");
    assert_eq!(
        err(se.decrement(4, 0, 2_000_000, &[])),
        Error::Status(Status::COUNTER_LIMIT_EXCEEDED)
    );
    // A counter zone read as a plain one: four bytes too many.
    assert_eq!(err(se.read(4, 0, &mut used)), Error::UnexpectedLength);

    // Certificate zone: 30 82 01 00 → 260 bytes; device id at offset 15.
    assert_eq!(se.certificate_size(0).unwrap(), 260);
    let mut cert = [0u8; 300];
    assert_eq!(se.read_certificate(0, &mut cert).unwrap(), 260);
    assert_eq!(cert[..4], [0x30, 0x82, 0x01, 0x00]);
    assert_eq!(
        err(se.read_certificate(0, &mut [0u8; 100])),
        Error::BufferTooSmall
    );
    assert_eq!(se.device_id(0).unwrap(), [0u8; 11]);
}

fn session_and_protected_zone<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>) {
    let mut out = [0u8; 8];
    // Zone 5 needs a host C-MAC; without a session the driver refuses before the bus.
    assert_eq!(
        err(se.read_with(5, 0, &mut out, ZoneAccess::MAC)),
        Error::NoSession
    );
    assert_eq!(
        err(se.read(5, 0, &mut out)),
        Error::Status(Status::ACCESS_CONDITION_NOT_SATISFIED)
    );
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    let n = se.session_counter().unwrap();
    se.update_with(5, 0, b"secret!!", ZoneAccess::MAC).unwrap();
    se.read_with(5, 0, &mut out, ZoneAccess::MAC).unwrap();
    assert_eq!(&out, b"secret!!");
    assert_eq!(se.session_counter(), Some(n + 2));
    assert_eq!(se.query_host_key().unwrap().counter, n + 2);

    // New host keys under the session; the session follows them.
    let (mac2, cipher2) = ([0xA5; 16], [0x5A; 16]);
    se.put_host_key(&mac2, &cipher2).unwrap();
    se.read_with(5, 0, &mut out, ZoneAccess::MAC).unwrap();
    se.put_host_key(&MAC_KEY, &CIPHER_KEY).unwrap();
    se.reopen_session().unwrap();
    se.read_with(5, 0, &mut out, ZoneAccess::MAC).unwrap();
    se.close_session();
    assert_eq!(se.session_counter(), None);
    assert_eq!(err(se.reopen_session()), Error::NoSession);
}

fn keys_and_signatures<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>, slot0: &PublicKeyBytes) {
    let digest: [u8; 32] = sha2::Sha256::digest(b"firmware image").into();

    // Slot 0, checked on the host against the key the fab reported.
    let sig = se.generate_signature(0, &digest).unwrap();
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&slot0.to_sec1()).unwrap();
    let s = p256::ecdsa::Signature::from_slice(sig.rs()).unwrap();
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    vk.verify_prehash(&digest, &s).unwrap();

    // Slot 1 generated by the host, P-384; the chip verifies its own signature.
    let pk1 = se.generate_private_key(1, Curve::P384, 0xFFFF).unwrap();
    assert_eq!(pk1.xy().len(), 96);
    let d48: [u8; 48] = sha2::Sha384::digest(b"telemetry").into();
    let sig1 = se.generate_signature(1, &d48).unwrap();
    assert_eq!(sig1.rs().len(), 96);
    assert!(se.verify_signature(&pk1, sig1.rs(), &d48).unwrap());
    let mut other = d48;
    other[0] ^= 1;
    assert!(!se.verify_signature(&pk1, sig1.rs(), &other).unwrap());
    assert_eq!(
        err(se.verify_signature(&pk1, &sig1.rs()[..64], &d48)),
        Error::InvalidInput
    );

    // A signature by the key stored in zone 6, verified by the chip.
    let host_sig: p256::ecdsa::Signature = zone_signer().sign_prehash(&digest).unwrap();
    let rs = host_sig.to_bytes();
    assert!(se
        .verify_with_zone_key(6, 0, Curve::P256, &rs, &digest)
        .unwrap());
    assert!(!se
        .verify_with_zone_key(6, 0, Curve::P256, &rs, &[0u8; 32])
        .unwrap());

    // ECDH with slot 0, compared with the host's side.
    let host = p256::ecdh::EphemeralSecret::random(&mut rand_core::OsRng);
    let host_pub = host.public_key().to_encoded_point(false);
    let peer = EccPublicKey::from_xy(Curve::P256, &host_pub.as_bytes()[1..]).unwrap();
    let secret = se.establish_key(0, &peer).unwrap();
    let chip_pub = p256::PublicKey::from_sec1_bytes(&slot0.to_sec1()).unwrap();
    let expected = host.diffie_hellman(&chip_pub);
    assert_eq!(secret.as_bytes(), expected.raw_secret_bytes().as_slice());

    // ECDH with a fresh ephemeral key (slot 0xFF, single use).
    let (eph, secret) = se.ecdh_ephemeral(&peer).unwrap();
    let eph_pub = p256::PublicKey::from_sec1_bytes(&[&[4u8][..], eph.xy()].concat()).unwrap();
    assert_eq!(
        secret.as_bytes(),
        host.diffie_hellman(&eph_pub).raw_secret_bytes().as_slice()
    );
    assert_eq!(
        err(se.establish_key(0xFF, &peer).map(|_| ())),
        Error::Status(Status::KEY_NOT_FOUND)
    );
}

fn envelopes<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>) {
    se.generate_envelope_key(0, EnvelopeKeyType::Aes128)
        .unwrap();
    se.generate_envelope_key(1, EnvelopeKeyType::Aes256)
        .unwrap();
    let env: Vec<_> = se.query_envelope_keys().unwrap().collect();
    assert_eq!((env[0].key_len, env[1].key_len), (Some(16), Some(32)));
    let secret = [0x3Cu8; 32];
    let mut envelope = [0u8; 40];
    assert_eq!(se.wrap(1, &secret, &mut envelope).unwrap(), 40);
    let mut back = [0u8; 32];
    assert_eq!(se.unwrap(1, &envelope, &mut back).unwrap(), 32);
    assert_eq!(back, secret);
    envelope[5] ^= 1;
    assert_eq!(
        err(se.unwrap(1, &envelope, &mut back)),
        Error::Status(Status::INCONSISTENT_COMMAND_DATA)
    );
}

fn password_and_life_cycle<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>) {
    let r = se.verify_password(&[0u8; 16]).unwrap();
    assert_eq!((r.ok, r.remaining), (false, 2));
    assert_eq!(
        err(se.lock(&[1u8; 16])),
        Error::PasswordRejected { remaining: 1 }
    );
    se.lock(&PASSWORD).unwrap();
    assert_eq!(
        se.query_life_cycle().unwrap(),
        LifeCycle::OPERATIONAL_LOCKED
    );
    assert_eq!(
        err(se.update(3, 0, b"x")),
        Error::Status(Status::INVALID_LIFE_CYCLE_STATE)
    );
    se.unlock(&PASSWORD).unwrap();
    assert_eq!(se.query_life_cycle().unwrap(), LifeCycle::OPERATIONAL);
    se.update(3, 0, b"x").unwrap();

    // Delete needs the password verified since the last reset.
    se.reset().unwrap();
    assert_eq!(
        err(se.delete_password()),
        Error::Status(Status::ACCESS_CONDITION_NOT_SATISFIED)
    );
    assert!(se.verify_password(&PASSWORD).unwrap().ok);
    se.delete_password().unwrap();
    assert_eq!(
        err(se.verify_password(&PASSWORD)),
        Error::Status(Status::ENTRY_NOT_FOUND)
    );
    // Without a password, the life cycle changes without one.
    se.put_life_cycle(LifeCycle::OPERATIONAL_LOCKED).unwrap();
    se.put_life_cycle(LifeCycle::OPERATIONAL).unwrap();
}

/// The new address takes effect at the next power-on (or reset: but sesame's chip moves to the
/// new address before the host reads the Reset answer, so a power cycle is used here).
fn address_change<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>, power_cycle: &mut dyn FnMut(u8)) {
    let params = I2cParameters {
        address: 0x2A,
        locked: false,
        low_power: 0,
        idle_time: 5, // forced to 0 on an A110
    };
    se.put_i2c_parameters(params).unwrap();
    assert_eq!(se.query_i2c_parameters().unwrap().idle_time, 0);
    power_cycle(0x20);
    se.set_address(0x2A);
    let mut out = [0u8; 1];
    se.echo(&[9], &mut out).unwrap();
    se.put_i2c_parameters(I2cParameters {
        address: 0x20,
        ..params
    })
    .unwrap();
    power_cycle(0x2A);
    se.set_address(0x20);
    se.echo(&[9], &mut out).unwrap();
}

fn power_states<I: I2c, D: DelayNs>(se: &mut Stsafe<I, D>) {
    se.hibernate(WakeMode::I2cStartOrReset).unwrap();
    // The chip NACKs the first try while it wakes; the driver polls.
    let mut out = [0u8; 2];
    se.echo(&[1, 2], &mut out).unwrap();
    assert_eq!(out, [1, 2]);
    se.reset().unwrap();
}
