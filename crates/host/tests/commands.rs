//! Driver ↔ chip for every command over the in-process bus, plus the driver's own checks that
//! happen before the bus (no session, sizes) and init on a chip that is not an A110.
#![allow(clippy::unwrap_used)]

mod common;

use common::{bus, chip, driver, policy, Recorder, Spec, CIPHER_KEY, MAC_KEY};
use sesame_chip::{Bus, ChipConfig, Fab, MemStorage};
use sesame_host::{CommandCode, Error, NoDelay, Protection, Status, Stsafe, ZoneAccess};

#[test]
fn every_command_over_the_in_process_bus() {
    let (bus, slot0) = bus();
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    common::exercise::all_commands(&mut se, &slot0, &mut |addr| {
        bus.power_cycle(addr).unwrap();
    });
}

#[test]
fn init_loads_the_command_table() {
    let spec = Spec {
        policy: policy(
            &[CommandCode::UPDATE, CommandCode::ECHO],
            &[CommandCode::GENERATE_RANDOM],
        ),
        ..Spec::default()
    };
    let (bus, _) = common::bus_with(&spec);
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    // Before init every command is plain.
    assert_eq!(se.protection(CommandCode::ECHO), Protection::Plain);
    se.init().unwrap();
    assert_eq!(se.protection(CommandCode::ECHO), Protection::Mac);
    assert_eq!(se.protection(CommandCode::READ), Protection::Plain);
    assert_eq!(
        se.protection(CommandCode::GENERATE_RANDOM),
        Protection::Encrypted {
            command: true,
            response: true
        }
    );
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    let mut r = [0u8; 300];
    se.generate_random(&mut r).unwrap();
    let mut out = [0u8; 3];
    se.echo(b"abc", &mut out).unwrap();
    se.update(1, 0, b"abc").unwrap();
    assert_eq!(se.session_counter(), Some(4), "two randoms, echo, update");
}

#[test]
fn protected_command_without_session_never_touches_the_bus() {
    let spec = Spec {
        policy: policy(&[CommandCode::ECHO], &[CommandCode::GENERATE_RANDOM]),
        ..Spec::default()
    };
    let (bus, _) = common::bus_with(&spec);
    let rec = Recorder::new(bus.device());
    let mut se = Stsafe::new(rec.clone(), NoDelay, 0x20);
    se.init().unwrap();
    rec.take();
    let mut out = [0u8; 8];
    assert_eq!(se.echo(b"hi", &mut out), Err(Error::NoSession));
    assert_eq!(se.generate_random(&mut out), Err(Error::NoSession));
    assert_eq!(
        se.read_with(1, 0, &mut out, ZoneAccess::MAC),
        Err(Error::NoSession)
    );
    assert!(rec.take().is_empty(), "no transaction at all");
    // Plain commands still work.
    se.read(1, 0, &mut out).unwrap();
    assert_eq!(rec.take().len(), 3, "write, read 5, read 3+LEN");
}

#[test]
fn open_session_needs_host_keys() {
    let (bus, _) = common::bus_with(&Spec {
        host_keys: false,
        ..Spec::default()
    });
    let mut se = driver(&bus);
    assert_eq!(
        se.open_session(&MAC_KEY, &CIPHER_KEY),
        Err(Error::NoSession)
    );
    assert_eq!(se.session_counter(), None);
}

#[test]
fn wrong_session_keys_are_refused_by_the_chip_and_the_counter_stays() {
    let (bus, _) = common::bus_with(&Spec {
        policy: policy(&[CommandCode::ECHO], &[]),
        ..Spec::default()
    });
    let mut se = driver(&bus);
    se.open_session(&[0u8; 16], &CIPHER_KEY).unwrap();
    let n = se.session_counter().unwrap();
    let mut out = [0u8; 1];
    assert_eq!(
        se.echo(&[1], &mut out),
        Err(Error::Status(Status::INVALID_CMAC))
    );
    assert_eq!(se.session_counter(), Some(n), "0x16 leaves N alone (§6.1)");
    assert_eq!(se.query_host_key().unwrap().counter, n);
}

#[test]
fn failed_protected_commands_still_count() {
    // §6.1: any chip status other than 0x16 and 0x01 means the chip took the C-MAC.
    let (bus, _) = common::bus_with(&Spec {
        policy: policy(&[CommandCode::UPDATE], &[]),
        ..Spec::default()
    });
    let mut se = driver(&bus);
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    let n = se.session_counter().unwrap();
    assert_eq!(
        se.update(4, 0, b"x"),
        Err(Error::Status(Status::WRONG_ZONE_TYPE))
    );
    assert_eq!(se.session_counter(), Some(n + 1));
    se.update(1, 0, b"x").unwrap();
    assert_eq!(se.query_host_key().unwrap().counter, n + 2);
}

#[test]
fn init_refuses_a_chip_that_is_not_an_a110() {
    for (mask, expected) in [
        ([0x00, 0x60, 0x01], Err(Error::NotA110)), // A120
        ([0x00, 0x40, 0x00], Err(Error::NotA110)), // A100
        ([0x00, 0x46, 0x00], Ok(())),
    ] {
        let mut config = ChipConfig::new([1; 9]);
        config.mask_id = mask;
        let fab = Fab::new(config, Box::new(MemStorage::new()), Default::default()).unwrap();
        let bus = Bus::new();
        bus.attach(fab.finish().unwrap()).unwrap();
        let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
        assert_eq!(se.init().map(|_| ()), expected, "mask {mask:02X?}");
    }
}

#[test]
fn caller_errors_are_caught_before_the_bus() {
    let (bus, _) = bus();
    let rec = Recorder::new(bus.device());
    let mut se = Stsafe::new(rec.clone(), NoDelay, 0x20);
    let big = [0u8; 600];
    let mut out = [0u8; 600];
    assert_eq!(se.echo(&big, &mut out), Err(Error::RequestTooLarge));
    assert_eq!(se.unwrap(0, &[0u8; 4], &mut out), Err(Error::InvalidInput));
    assert_eq!(
        se.wrap(0, &[0u8; 16], &mut out[..8]),
        Err(Error::BufferTooSmall)
    );
    assert!(rec.take().is_empty());
    drop(chip(&Spec::default()));
}

#[test]
fn release_gives_the_bus_back() {
    let (bus, _) = bus();
    let se = driver(&bus);
    let (mut dev, _delay) = se.release();
    use embedded_hal::i2c::I2c;
    dev.write(0x20, &[0x00, 0x01, 0x02, 0x03, 0xA7, 0x29])
        .unwrap();
}

#[test]
fn every_command_encrypted_both_ways() {
    // Every command but Query with AC host and command + response encryption (Query must stay
    // free: the session is opened with a plain Query 0x17).
    let all: Vec<CommandCode> = CommandCode::A110
        .iter()
        .copied()
        .filter(|c| *c != CommandCode::QUERY)
        .collect();
    let (bus, slot0) = common::bus_with(&Spec {
        policy: policy(&[], &all),
        ..Spec::default()
    });
    let mut se = driver(&bus);
    let mut out = [0u8; 64];
    assert_eq!(se.echo(b"x", &mut out), Err(Error::NoSession));
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    let n0 = se.session_counter().unwrap();

    // 16 bytes: the plaintext gains a whole padding block.
    let sixteen = [0x61u8; 16];
    assert_eq!(se.echo(&sixteen, &mut out).unwrap(), 16);
    assert_eq!(out[..16], sixteen);
    se.generate_random(&mut out).unwrap();
    se.update(3, 0, b"enc").unwrap(); // no answer data: not encrypted, R-MAC only
    let mut three = [0u8; 3];
    se.read(3, 0, &mut three).unwrap();
    assert_eq!(&three, b"enc");
    assert_eq!(se.decrement(4, 0, 5, &[]).unwrap(), 999_995);
    let sig = se.generate_signature(0, &[9u8; 32]).unwrap();
    let key = sesame_host::EccPublicKey::from_xy(sesame_host::Curve::P256, &slot0.to_sec1()[1..])
        .unwrap();
    assert!(se.verify_signature(&key, sig.rs(), &[9u8; 32]).unwrap());
    let secret = se.establish_key(0, &key).unwrap();
    assert_eq!(secret.as_bytes().len(), 32);
    se.generate_envelope_key(0, sesame_host::EnvelopeKeyType::Aes256)
        .unwrap();
    let mut env = [0u8; 40];
    se.wrap(0, &[7u8; 32], &mut env).unwrap();
    let mut back = [0u8; 32];
    se.unwrap(0, &env, &mut back).unwrap();
    assert_eq!(back, [7u8; 32]);
    se.lock(&common::PASSWORD).unwrap();
    se.unlock(&common::PASSWORD).unwrap();
    se.reset().unwrap(); // empty payload: one encrypted padding block
    se.hibernate(sesame_host::WakeMode::I2cStartOrReset)
        .unwrap();
    se.echo(b"awake", &mut out).unwrap();
    let used = se.session_counter().unwrap() - n0;
    assert_eq!(used, 18);
    assert_eq!(se.query_host_key().unwrap().counter, n0 + used);
}

#[test]
fn an_exhausted_counter_is_reported() {
    let (mut fab, _) = common::fab(&Spec {
        policy: policy(&[CommandCode::ECHO], &[]),
        ..Spec::default()
    });
    fab.set_host_counter_for_tests(0xFF_FFFE).unwrap();
    let bus = Bus::new();
    bus.attach(fab.finish().unwrap()).unwrap();
    let mut se = driver(&bus);
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    let mut out = [0u8; 1];
    se.echo(&[1], &mut out).unwrap();
    assert_eq!(se.session_counter(), Some(0xFF_FFFF));
    assert_eq!(
        se.echo(&[1], &mut out),
        Err(Error::Status(Status::CMAC_COUNTER_MAX))
    );
}
