//! An attacker on the bus flips one bit of a protected exchange — in the C-MAC, in the command
//! ciphertext, in the R-MAC, in the response ciphertext — and fixes the CRC so that only the
//! secure channel can notice. The driver reports the right error, hands out no data, keeps its
//! counter in step with the chip's, and the next command works.
#![allow(clippy::unwrap_used)]

mod common;

use common::{policy, Attack, Spec, Tamper, CIPHER_KEY, MAC_KEY};
use sesame_chip::{Bus, BusDevice};
use sesame_host::{CommandCode, Error, NoDelay, Status, Stsafe};

type Driver = Stsafe<Tamper<BusDevice>, NoDelay>;

fn setup() -> (Driver, Tamper<BusDevice>, Bus) {
    let spec = Spec {
        policy: policy(&[CommandCode::ECHO], &[CommandCode::GENERATE_RANDOM]),
        ..Spec::default()
    };
    let (bus, _) = common::bus_with(&spec);
    let tamper = Tamper::new(bus.device());
    let mut se = Stsafe::new(tamper.clone(), NoDelay, 0x20);
    se.init().unwrap();
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    (se, tamper, bus)
}

/// The driver's counter equals the chip's, and protected commands of both kinds work.
fn still_works(se: &mut Driver) {
    let mut out = [0u8; 4];
    se.echo(b"next", &mut out).unwrap();
    assert_eq!(&out, b"next");
    let mut r = [0u8; 32];
    se.generate_random(&mut r).unwrap();
    let chip = se.query_host_key().unwrap().counter;
    assert_eq!(
        se.session_counter(),
        Some(chip),
        "driver and chip counters agree"
    );
}

#[test]
fn flipped_cmac_is_refused_by_the_chip() {
    let (mut se, tamper, _bus) = setup();
    let n = se.session_counter().unwrap();
    tamper.arm(Attack::CommandMac);
    let mut out = [0u8; 4];
    assert_eq!(
        se.echo(b"abcd", &mut out),
        Err(Error::Status(Status::INVALID_CMAC))
    );
    assert!(!tamper.armed());
    assert_eq!(se.session_counter(), Some(n), "0x16: neither side counts");
    still_works(&mut se);
}

#[test]
fn flipped_command_ciphertext_is_refused_by_the_chip() {
    let (mut se, tamper, _bus) = setup();
    tamper.arm(Attack::CommandPayload);
    let mut r = [0u8; 20];
    assert_eq!(
        se.generate_random(&mut r),
        Err(Error::Status(Status::INVALID_CMAC)),
        "the C-MAC covers the ciphertext"
    );
    assert!(!tamper.armed());
    still_works(&mut se);
}

#[test]
fn flipped_rmac_is_caught_by_the_driver() {
    let (mut se, tamper, _bus) = setup();
    let n = se.session_counter().unwrap();
    tamper.arm(Attack::ResponseMac);
    let mut out = [0u8; 4];
    assert_eq!(se.echo(b"abcd", &mut out), Err(Error::RmacMismatch));
    assert_eq!(out, [0; 4], "no data handed out");
    assert!(!tamper.armed());
    assert_eq!(
        se.session_counter(),
        Some(n + 1),
        "status 00: the chip counted"
    );
    still_works(&mut se);
}

#[test]
fn flipped_response_ciphertext_is_caught_by_the_driver() {
    let (mut se, tamper, _bus) = setup();
    tamper.arm(Attack::ResponseData);
    let mut r = [0u8; 20];
    assert_eq!(se.generate_random(&mut r), Err(Error::RmacMismatch));
    assert_eq!(r, [0; 20], "no data handed out");
    assert!(!tamper.armed());
    still_works(&mut se);
}

#[test]
fn corrupted_protected_response_resynchronizes_the_session() {
    let (mut se, tamper, _bus) = setup();
    tamper.arm(Attack::ResponseNoFix);
    let mut out = [0u8; 4];
    assert_eq!(se.echo(b"abcd", &mut out), Err(Error::Crc));
    assert!(!tamper.armed());
    // The driver cannot know whether the chip counted; it reads the counter again before the
    // next protected command.
    still_works(&mut se);
}

#[test]
fn crc_rereads_recover_a_corrupted_read_without_running_the_command_twice() {
    let (mut se, tamper, _bus) = setup();
    se.set_config(sesame_host::Config {
        crc_rereads: 1,
        ..se.config()
    });
    let n = se.session_counter().unwrap();
    tamper.arm(Attack::ResponseNoFix);
    let mut out = [0u8; 4];
    se.echo(b"abcd", &mut out).unwrap();
    assert_eq!(&out, b"abcd");
    assert!(!tamper.armed());
    assert_eq!(se.session_counter(), Some(n + 1));
    still_works(&mut se);
}
