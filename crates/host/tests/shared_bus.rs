//! Two chips (0x20 and 0x21) on one I2C bus shared by two drivers through `embedded-hal-bus`:
//! a `RefCellDevice` on one thread, and a `MutexDevice` from two threads.
#![allow(clippy::unwrap_used)]

mod common;

use std::cell::RefCell;
use std::sync::Mutex;

use common::{Spec, CIPHER_KEY, MAC_KEY};
use embedded_hal_bus::i2c::{MutexDevice, RefCellDevice};
use p256_nostd::ecdsa::signature::hazmat::PrehashVerifier;
use sesame_chip::{Bus, PublicKeyBytes};
use sesame_host::{NoDelay, Stsafe, ZoneAccess};

fn two_chips() -> (Bus, PublicKeyBytes, PublicKeyBytes) {
    let bus = Bus::new();
    let (a, pa) = common::chip(&Spec::default());
    let (b, pb) = common::chip(&Spec {
        address: 0x21,
        seed: 8,
        ..Spec::default()
    });
    bus.attach(a).unwrap();
    bus.attach(b).unwrap();
    (bus, pa, pb)
}

fn signs_with<I: embedded_hal::i2c::I2c>(se: &mut Stsafe<I, NoDelay>, key: &PublicKeyBytes) {
    let digest = [0x5Au8; 32];
    let sig = se.generate_signature(0, &digest).unwrap();
    let vk = p256_nostd::ecdsa::VerifyingKey::from_sec1_bytes(&key.to_sec1()).unwrap();
    let s = p256_nostd::ecdsa::Signature::from_slice(sig.rs()).unwrap();
    vk.verify_prehash(&digest, &s).unwrap();
}

#[test]
fn two_drivers_share_one_bus_with_refcell_devices() {
    let (bus, pa, pb) = two_chips();
    let shared = RefCell::new(bus.device());
    let mut a = Stsafe::new(RefCellDevice::new(&shared), NoDelay, 0x20);
    let mut b = Stsafe::new(RefCellDevice::new(&shared), NoDelay, 0x21);
    let ia = a.init().unwrap();
    let ib = b.init().unwrap();
    assert_ne!(ia.st_number, ib.st_number, "two different chips");
    a.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    b.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    for i in 0..20u8 {
        // Interleaved commands, each driver with its own session and counter.
        a.update_with(5, 0, &[i; 4], ZoneAccess::MAC).unwrap();
        b.update_with(5, 0, &[!i; 4], ZoneAccess::MAC).unwrap();
        let (mut ra, mut rb) = ([0u8; 4], [0u8; 4]);
        a.read_with(5, 0, &mut ra, ZoneAccess::MAC).unwrap();
        b.read_with(5, 0, &mut rb, ZoneAccess::MAC).unwrap();
        assert_eq!((ra, rb), ([i; 4], [!i; 4]));
    }
    signs_with(&mut a, &pa);
    signs_with(&mut b, &pb);
    assert_eq!(a.session_counter(), b.session_counter());
}

#[test]
fn two_threads_share_one_bus_with_mutex_devices() {
    let (bus, pa, pb) = two_chips();
    let shared = Mutex::new(bus.device());
    std::thread::scope(|s| {
        for (addr, key) in [(0x20, &pa), (0x21, &pb)] {
            let shared = &shared;
            s.spawn(move || {
                let mut se = Stsafe::new(MutexDevice::new(shared), NoDelay, addr);
                se.init().unwrap();
                for i in 0..50u8 {
                    let mut out = [0u8; 2];
                    se.echo(&[addr, i], &mut out).unwrap();
                    assert_eq!(out, [addr, i]);
                }
                signs_with(&mut se, key);
            });
        }
    });
}
