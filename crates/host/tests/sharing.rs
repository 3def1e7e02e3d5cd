//! One chip shared by many hosts over the virtual bus (protocol.md §10.2): each client reads
//! only the answers to its own commands, whatever the others do in between.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use embedded_hal::delay::DelayNs;
use p256_nostd::ecdsa::signature::hazmat::PrehashVerifier;
use sesame_chip::server::Listener;
use sesame_chip::Bus;
use sesame_host::socket::SocketBus;
use sesame_host::{Config, Error, Stsafe};

const CLIENTS: u32 = 8;
const OPS: u32 = 2_000;
const COUNTER_ZONE: u8 = 4;
const COUNTER_START: u32 = 1_000_000;

/// Real sleeps: NACK polling while another client holds the chip.
#[derive(Clone, Copy)]
struct Sleep;

impl DelayNs for Sleep {
    fn delay_ns(&mut self, ns: u32) {
        std::thread::sleep(Duration::from_nanos(ns.into()));
    }
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// Answers that were not the answer to this client's command.
    crossed: u32,
    /// Commands that failed (a spliced answer fails its CRC, a lost one times out).
    failed: Vec<String>,
    /// Counter values this client's successful decrements reported.
    decrements: Vec<u32>,
}

fn client(addr: &str, id: u32, key: &sesame_chip::PublicKeyBytes) -> Tally {
    let config = Config {
        // A busy chip is polled every millisecond for up to a minute: only a stuck server fails.
        retries: 60_000,
        interval_ms: 1,
        first_wait_ms: 0,
        boot_wait_ms: 0,
        crc_rereads: 0,
    };
    let bus = SocketBus::with_timeout(addr, Duration::from_secs(30)).unwrap();
    let mut se = Stsafe::with_config(bus, Sleep, 0x20, config);
    se.init().unwrap();
    let vk = p256_nostd::ecdsa::VerifyingKey::from_sec1_bytes(&key.to_sec1()).unwrap();
    let mut t = Tally::default();
    let fail = |t: &mut Tally, what: &str, e: Error<_>| t.failed.push(format!("{what}: {e}"));
    for i in 0..OPS {
        // Each client's own, recognisable input for this operation.
        let tag = [id.to_be_bytes(), i.to_be_bytes()].concat();
        match (id + i) % 5 {
            0 => {
                let mut out = [0u8; 8];
                match se.echo(&tag, &mut out) {
                    Ok(_) => t.crossed += u32::from(out[..] != tag[..]),
                    Err(e) => fail(&mut t, "echo", e),
                }
            }
            1 => match se.decrement(COUNTER_ZONE, 0, 1, &tag) {
                Ok(v) => t.decrements.push(v),
                Err(e) => fail(&mut t, "decrement", e),
            },
            2 => {
                let digest: [u8; 32] =
                    <sha2_nostd::Sha256 as sha2_nostd::Digest>::digest(&tag).into();
                match se.generate_signature(0, &digest) {
                    Ok(sig) => {
                        let s = p256_nostd::ecdsa::Signature::from_slice(sig.rs()).unwrap();
                        t.crossed += u32::from(vk.verify_prehash(&digest, &s).is_err());
                    }
                    Err(e) => fail(&mut t, "sign", e),
                }
            }
            3 => {
                let mut out = [0u8; 32];
                match se.read(1, 0, &mut out) {
                    Ok(_) => {
                        t.crossed += u32::from(out.iter().enumerate().any(|(k, &b)| b != k as u8))
                    }
                    Err(e) => fail(&mut t, "read", e),
                }
            }
            _ => {
                // A random answer has the asked length; a shorter or longer one is someone else's.
                let mut out = vec![0u8; 1 + (id + i) as usize % 40];
                if let Err(e) = se.generate_random(&mut out) {
                    fail(&mut t, "random", e);
                }
            }
        }
    }
    t
}

/// 8 clients × 2,000 mixed operations (echo, decrement, sign, read, random) on one chip through
/// one socket server: no client ever gets another's answer or a spliced one, and the one-way
/// counter falls by exactly the number of decrements that reported success, each reporting a
/// value no other reported.
#[test]
fn eight_clients_never_get_each_others_answers() {
    let (chip, key) = common::chip(&common::Spec::default());
    let bus = Bus::new();
    // A generous lease: a client that a loaded machine deschedules between its write and its
    // read must not lose its answer (expiry itself is tested on simulated time in sesame-chip).
    bus.set_lease_base(Duration::from_secs(10));
    bus.attach(chip).unwrap();
    let listener = Listener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = bus.clone();
    std::thread::spawn(move || listener.serve(&served));

    let key = Arc::new(key);
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let (addr, key) = (addr.clone(), key.clone());
                s.spawn(move || client(&addr, id, &key))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let crossed: u32 = tallies.iter().map(|t| t.crossed).sum();
    let failed: Vec<&String> = tallies.iter().flat_map(|t| &t.failed).collect();
    let values: Vec<u32> = tallies.iter().flat_map(|t| t.decrements.clone()).collect();
    let distinct: HashSet<u32> = values.iter().copied().collect();
    let mut se = common::driver(&bus);
    let mut data = [0u8; 0];
    let now = se.read_counter(COUNTER_ZONE, 0, &mut data).unwrap();
    eprintln!(
        "{} operations: {crossed} crossed answers, {} failed, {} decrements, counter {} -> {now}",
        CLIENTS * OPS,
        failed.len(),
        values.len(),
        COUNTER_START
    );
    assert_eq!(crossed, 0, "answers crossed between clients");
    assert!(
        failed.is_empty(),
        "failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        distinct.len(),
        values.len(),
        "one counter value reported twice"
    );
    assert_eq!(COUNTER_START - now, values.len() as u32);
    assert_eq!(values.len() as u32, CLIENTS * OPS / 5);
}
