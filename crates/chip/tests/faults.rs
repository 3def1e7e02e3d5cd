//! Bus fault injection: reproducible from a seed, and every injected fault is one a careful host
//! can detect (NACK, CRC mismatch, missing answer), never silently wrong data.
#![allow(clippy::unwrap_used)]

mod common;

use common::{chip, frame};
use sesame_chip::{Bus, BusError, Faults, Nack};
use sesame_wire::{Request, ResponseFrame, Status, ZoneOption};

/// One exchange as STSELib does it; every bus outcome is recorded.
fn exchange(bus: &Bus, f: &[u8], log: &mut Vec<String>) -> Option<Vec<u8>> {
    if let Err(e) = bus.write(0x20, f) {
        log.push(format!("write {e:?}"));
        return None;
    }
    let mut head = [0u8; 5];
    if let Err(e) = bus.read(0x20, &mut head) {
        log.push(format!("read {e:?}"));
        return None;
    }
    let total = ResponseFrame::total_len(&head).unwrap();
    let mut all = vec![0u8; total.max(5)];
    if total > 5 {
        if let Err(e) = bus.read(0x20, &mut all) {
            log.push(format!("read2 {e:?}"));
            return None;
        }
    } else {
        all[..5].copy_from_slice(&head);
        all.truncate(total);
    }
    log.push(format!("ok {}", hex::encode(&all)));
    Some(all)
}

fn traffic(faults: Faults) -> (Vec<String>, sesame_chip::FaultStats, usize, usize) {
    let (c, _, _) = chip(3);
    let bus = Bus::new();
    bus.attach(c).unwrap();
    bus.set_faults(Some(faults));
    let mut log = Vec::new();
    let (mut good, mut detected) = (0, 0);
    for i in 0..400u32 {
        let payload = i.to_be_bytes();
        let f = frame(&Request::Echo(&payload));
        if let Some(rsp) = exchange(&bus, &f, &mut log) {
            match ResponseFrame::decode(&rsp, false) {
                // A frame that passes its CRC must carry exactly what the chip sent.
                Ok(r) => {
                    assert_eq!(
                        (r.status(), r.data),
                        (Status::OK, &payload[..]),
                        "corrupted data accepted"
                    );
                    good += 1;
                }
                Err(_) => detected += 1,
            }
        }
    }
    (log, bus.fault_stats(), good, detected)
}

#[test]
fn same_seed_same_faults_and_corruption_is_always_detected() {
    let spec = "seed=42,nack=0.05,burst=4,corrupt=0.2,drop=0.05,cut=0.02";
    let f = Faults::parse(spec).unwrap();
    let (log1, stats1, good, detected) = traffic(f);
    let (log2, stats2, _, _) = traffic(f);
    assert_eq!(log1, log2, "same seed, same traffic: same faults");
    assert_eq!(stats1, stats2);
    println!("{stats1:?}; {good} good answers, {detected} corrupted answers detected");
    assert!(stats1.nacks > 0 && stats1.corrupted > 0 && stats1.dropped > 0);
    assert!(stats1.cuts_before + stats1.cuts_after > 0);
    assert!(detected > 0 && good > 200);
    let (log3, _, _, _) = traffic(Faults { seed: 43, ..f });
    assert_ne!(log1, log3, "another seed gives other faults");
}

#[test]
fn dropped_answers_and_power_cuts_behave_like_hardware() {
    let (c, _, _) = chip(4);
    let bus = Bus::new();
    bus.attach(c).unwrap();
    bus.set_faults(Some(Faults::parse("seed=1,drop=1").unwrap()));
    let dec = frame(&Request::Decrement {
        option: ZoneOption::NONE,
        zone: 4,
        offset: 0,
        amount: 1,
        data: &[],
    });
    bus.write(0x20, &dec).unwrap();
    let mut buf = [0u8; 9];
    // The command ran (the counter moved) but its answer is gone.
    assert_eq!(
        bus.read(0x20, &mut buf),
        Err(BusError::Nack(Nack::NoResponse))
    );
    let chip = bus.chip(0x20).unwrap();
    assert_eq!(
        chip.lock().unwrap().inspect().zones[4].counter,
        Some(999_999)
    );

    bus.set_faults(Some(Faults::parse("seed=2,cut=1").unwrap()));
    let eph = frame(&Request::GenerateKey(sesame_wire::KeyGeneration::Private {
        slot: 0xFF,
        usage_limit: 1,
        mode: 0,
        curve: sesame_wire::Curve::P256,
    }));
    for _ in 0..8 {
        let _ = bus.write(0x20, &eph);
        // Whether the cut came before or after the command, nothing is left to read.
        assert!(bus.read(0x20, &mut buf).is_err());
    }
    let s = bus.fault_stats();
    assert_eq!(s.cuts_before + s.cuts_after, 8);
    assert!(s.cuts_before > 0 && s.cuts_after > 0);
    assert!(chip.lock().unwrap().inspect().zones[4].counter == Some(999_999));
    bus.set_faults(None);
    assert!(exchange(&bus, &frame(&Request::Echo(&[1])), &mut vec![]).is_some());
}

#[test]
fn fault_specs_are_validated() {
    assert_eq!(Faults::parse("seed=9,nack=0.5").unwrap().burst, 3);
    for bad in ["nack=2", "nack=x", "seed=-1", "speed=1", "nack"] {
        assert!(Faults::parse(bad).is_err(), "{bad}");
    }
}
