//! The driver on a misbehaving bus (sesame-chip's seeded fault injection): NACK bursts are
//! polled through, corrupted responses are reported as CRC (or R-MAC) errors and never handed
//! out as data, lost responses end in a NACK timeout, and the host session recovers by reading
//! the chip's counter again.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{policy, Recorder, SimDelay, Spec, Tx, CIPHER_KEY, MAC_KEY};
use sesame_chip::{Bus, Faults, SimClock};
use sesame_host::{CommandCode, Config, Error, Stsafe, ZoneAccess};

fn faulty_bus(spec: &Spec) -> (Bus, SimClock) {
    let (chip, _) = common::chip(spec);
    let clock = SimClock::default();
    let bus = Bus::with_clock(Arc::new(clock.clone()));
    bus.attach(chip).unwrap();
    (bus, clock)
}

#[derive(Debug, Default)]
struct Outcomes {
    ok: u32,
    crc: u32,
    rmac: u32,
    nack_timeout: u32,
    reopened: u32,
}

#[test]
fn corrupted_data_is_never_handed_out_and_the_session_recovers() {
    let spec = Spec {
        policy: policy(&[CommandCode::ECHO], &[CommandCode::GENERATE_RANDOM]),
        ..Spec::default()
    };
    let (bus, clock) = faulty_bus(&spec);
    let mut se = Stsafe::new(bus.device(), SimDelay::new(clock), 0x20);
    se.init().unwrap();
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    bus.set_faults(Some(
        Faults::parse("seed=11,nack=0.08,burst=4,corrupt=0.08,drop=0.03,cut=0.01").unwrap(),
    ));

    let zone1: Vec<u8> = (0..128).collect();
    let mut seen = Outcomes::default();
    for i in 0..600u32 {
        let payload = i.to_be_bytes();
        let result = match i % 4 {
            // Plain read of known content.
            0 => {
                let mut out = [0u8; 64];
                se.read(1, 0, &mut out)
                    .map(|_| assert_eq!(out[..], zone1[..64], "corrupted data accepted"))
            }
            // Protected echo (C-MAC + R-MAC).
            1 => {
                let mut out = [0u8; 4];
                se.echo(&payload, &mut out)
                    .map(|_| assert_eq!(out, payload, "corrupted data accepted"))
            }
            // Encrypted random: only its length can be checked, the R-MAC vouches for the rest.
            2 => {
                let mut out = [0u8; 40];
                se.generate_random(&mut out).map(|_| ())
            }
            // Protected read of the host zone, written below.
            _ => {
                let mut out = [0u8; 4];
                se.update_with(5, 0, &payload, ZoneAccess::MAC)
                    .and_then(|()| se.read_with(5, 0, &mut out, ZoneAccess::MAC))
                    .map(|_| assert_eq!(out, payload, "corrupted data accepted"))
            }
        };
        match result {
            Ok(()) => seen.ok += 1,
            Err(Error::Crc) => seen.crc += 1,
            Err(Error::RmacMismatch) => seen.rmac += 1,
            Err(Error::NackTimeout) => {
                seen.nack_timeout += 1;
                // The response was lost: read the chip's counter again (this can meet faults
                // too, so try a few times).
                if i % 4 != 0 && (0..10).any(|_| se.reopen_session().is_ok()) {
                    seen.reopened += 1;
                }
            }
            Err(e) => panic!("unexpected error {e:?} at {i}"),
        }
    }
    let stats = bus.fault_stats();
    println!("{stats:?} {seen:?}");
    assert!(stats.nacks > 50 && stats.corrupted > 20 && stats.dropped > 5);
    assert!(seen.ok > 400, "NACK bursts are polled through");
    assert!(seen.crc > 0 && seen.nack_timeout > 0 && seen.reopened > 0);

    // Without faults, the session is in step (or gets there by itself) and works.
    bus.set_faults(None);
    let mut out = [0u8; 2];
    se.echo(b"ok", &mut out).unwrap();
    assert_eq!(
        se.session_counter(),
        Some(se.query_host_key().unwrap().counter)
    );
}

#[test]
fn nack_bursts_are_polled_with_the_configured_interval() {
    let (bus, clock) = faulty_bus(&Spec::default());
    let delay = SimDelay::new(clock);
    let mut se = Stsafe::new(bus.device(), delay.clone(), 0x20);
    se.init().unwrap();
    bus.set_faults(Some(Faults::parse("seed=5,nack=0.5,burst=5").unwrap()));
    for i in 0..100u8 {
        let mut out = [0u8; 1];
        se.echo(&[i], &mut out).unwrap();
        assert_eq!(out, [i]);
    }
    let nacks = bus.fault_stats().nacks;
    assert!(nacks > 50);
    // One 1 ms first wait per command, one 10 ms wait per NACK (every burst ends in time).
    let expected_ms = 100 * u64::from(se.config().first_wait_ms) + nacks * 10;
    let init_ms = 10 + 2; // boot wait + two first waits of init, before the faults
    assert_eq!(delay.total().as_millis() as u64, expected_ms + init_ms);
}

#[test]
fn a_lost_response_is_a_nack_timeout_after_exactly_the_configured_tries() {
    let (bus, clock) = faulty_bus(&Spec::default());
    let delay = SimDelay::new(clock);
    let rec = Recorder::new(bus.device());
    let config = Config {
        retries: 7,
        interval_ms: 3,
        first_wait_ms: 2,
        ..Config::default()
    };
    let mut se = Stsafe::with_config(rec.clone(), delay.clone(), 0x20, config);
    bus.set_faults(Some(Faults::parse("seed=1,drop=1").unwrap()));
    let before = delay.total();
    let mut out = [0u8; 1];
    assert_eq!(se.echo(&[1], &mut out), Err(Error::NackTimeout));
    let log = rec.take();
    assert!(matches!(log[0], Tx::Write(..)));
    assert_eq!(log[1..], vec![Tx::Failed; 7]);
    assert_eq!((delay.total() - before).as_millis(), 2 + 6 * 3);
}

#[test]
fn an_absent_chip_is_a_nack_timeout() {
    let (bus, clock) = faulty_bus(&Spec::default());
    let mut se = Stsafe::new(bus.device(), SimDelay::new(clock), 0x33);
    assert_eq!(se.init().map(|_| ()), Err(Error::NackTimeout));
}
