//! Honest outcomes: a decrement whose answer is lost is reported as "outcome unknown", never as
//! a failure; a response that fails its CRC is read again by default.
#![allow(clippy::unwrap_used)]

use sesame_agent::{layout, Agent, AgentError, StdDelay};
use sesame_chip::{
    Bus, BusDevice, ChipConfig, ChipOptions, CurveName, Fab, Faults, MemStorage, ZoneSpec,
};
use sesame_host::Stsafe;
use sesame_pki::{Authority, DeviceKey, KeyAlg};

/// A factory-made chip on `bus` and its agent (no cloud is contacted by these paths).
fn device(bus: &Bus) -> Agent<BusDevice, StdDelay> {
    let root = Authority::new_root("t", "root", KeyAlg::P256).unwrap();
    let family = root.new_family("t", "fam", KeyAlg::P256).unwrap();
    let mut config = ChipConfig::new([2, 9, 9, 9, 9, 9, 9, 9, 1]);
    // The layout the factory personalizes (sizes and access conditions), from its one table.
    config.zones = layout::ZONES
        .iter()
        .map(|z| ZoneSpec {
            size: z.size,
            counter: if z.index == layout::USAGE {
                Some(layout::USAGE_INITIAL)
            } else {
                z.counter
            },
            read_ac: z.read_ac,
            update_ac: z.update_ac,
            read_right: z.read_right,
            update_right: z.update_right,
        })
        .collect();
    let mut fab = Fab::new(config, Box::new(MemStorage::new()), ChipOptions::default()).unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap();
    let cert = family
        .issue_device(
            "02090909090909090901",
            &DeviceKey::from_sec1(&pk.to_sec1()).unwrap(),
            "t",
            None,
        )
        .unwrap();
    fab.write_zone(layout::CERT, 0, &cert).unwrap();
    bus.attach(fab.finish().unwrap()).unwrap();
    Agent::new(
        Stsafe::new(bus.device(), StdDelay, 0x20),
        "http://127.0.0.1:9",
    )
    .unwrap()
}

fn counter(a: &mut Agent<BusDevice, StdDelay>) -> u32 {
    a.chip().read_counter(layout::USAGE, 0, &mut []).unwrap()
}

#[test]
fn a_lost_answer_is_an_unknown_outcome_not_a_failure() {
    let bus = Bus::new();
    let mut a = device(&bus);
    let before = counter(&mut a);
    // Every answer from now on is lost after the command ran.
    bus.set_faults(Some(Faults {
        drop: 1.0,
        ..Faults::default()
    }));
    let e = a.use_consumable().unwrap_err();
    assert!(matches!(e, AgentError::OutcomeUnknown(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "outcome unknown: the counter may have been decremented; read it before retrying"
    );
    bus.set_faults(None);
    // It had in fact been decremented: reading it is the way to know.
    assert_eq!(counter(&mut a), before - 1);
}

#[test]
fn corrupted_answers_are_read_again() {
    let bus = Bus::new();
    let mut a = device(&bus);
    assert_eq!(a.chip().config().crc_rereads, sesame_agent::CRC_REREADS);
    let before = counter(&mut a);
    // One read in ten has a flipped bit: without re-reads several of these would fail.
    bus.set_faults(Some(Faults {
        seed: 3,
        corrupt: 0.1,
        ..Faults::default()
    }));
    for i in 1..=50 {
        let v = a.chip().decrement(layout::USAGE, 0, 1, &[]).unwrap();
        assert_eq!(v, before - i);
    }
    let flipped = bus.fault_stats();
    bus.set_faults(None);
    assert_eq!(counter(&mut a), before - 50);
    eprintln!("{flipped:?}");
}
