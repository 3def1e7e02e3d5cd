//! The driver's cost per command: a round trip through `Stsafe` on sesame's in-process bus
//! (encode, frame, CRC, NACK polling, the two-read response, decode; plus the secure channel
//! for the protected echo) against the chip engine alone (`Chip::transceive` with a frame built
//! once). Prints the ratio at the end of the run.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sesame_chip::{Bus, BusDevice, Chip, ChipConfig, ChipOptions, CurveName, Fab, MemStorage};
use sesame_host::{NoDelay, Stsafe, ZoneAccess};
use sesame_wire::{CommandFrame, Header, Request, ZoneOption};

const MAC_KEY: [u8; 16] = [0x10; 16];
const CIPHER_KEY: [u8; 16] = [0x20; 16];

fn chip() -> Chip {
    let options = ChipOptions {
        rng_seed: Some(1),
        ..Default::default()
    };
    let mut fab = Fab::new(
        ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0, 1]),
        Box::new(MemStorage::new()),
        options,
    )
    .unwrap();
    fab.generate_key(0, CurveName::P256).unwrap();
    fab.set_host_keys(MAC_KEY, CIPHER_KEY).unwrap();
    fab.write_zone(1, 0, &[0xA5; 128]).unwrap();
    fab.finish().unwrap()
}

fn frame(req: &Request<'_>) -> Vec<u8> {
    let mut payload = [0u8; 128];
    let n = req.encode(&mut payload).unwrap();
    let f = CommandFrame {
        header: Header::plain(req.code()),
        payload: &payload[..n],
        cmac: None,
    };
    let mut out = vec![0u8; 160];
    let n = f.encode(&mut out).unwrap();
    out.truncate(n);
    out
}

type Driver = Stsafe<BusDevice, NoDelay>;

struct Case {
    name: &'static str,
    driver: Box<dyn FnMut(&mut Driver)>,
    frame: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let echo = [0x42u8; 16];
    let digest = [0x17u8; 32];
    vec![
        Case {
            name: "echo 16 B",
            driver: Box::new(move |se| {
                let mut out = [0u8; 16];
                se.echo(&echo, &mut out).unwrap();
                black_box(out);
            }),
            frame: frame(&Request::Echo(&echo)),
        },
        Case {
            name: "read 64 B",
            driver: Box::new(|se| {
                let mut out = [0u8; 64];
                se.read(1, 0, &mut out).unwrap();
                black_box(out);
            }),
            frame: frame(&Request::Read {
                option: ZoneOption::NONE,
                zone: 1,
                offset: 0,
                len: 64,
            }),
        },
        Case {
            name: "generate signature",
            driver: Box::new(move |se| {
                black_box(se.generate_signature(0, &digest).unwrap());
            }),
            frame: frame(&Request::GenerateSignature {
                slot: 0,
                digest: &digest,
            }),
        },
        Case {
            // The driver's side of the secure channel (C-MAC, R-MAC check): the engine gets the
            // plain frame, since a pre-built protected frame is good for one counter value only.
            name: "read 64 B MAC (engine plain)",
            driver: Box::new(|se| {
                let mut out = [0u8; 64];
                se.read_with(1, 0, &mut out, ZoneAccess::MAC).unwrap();
                black_box(out);
            }),
            frame: frame(&Request::Read {
                option: ZoneOption::NONE,
                zone: 1,
                offset: 0,
                len: 64,
            }),
        },
    ]
}

fn per_op(mut f: impl FnMut(), budget: Duration) -> Duration {
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn bench(c: &mut Criterion) {
    let bus = Bus::new();
    bus.attach(chip()).unwrap();
    let mut se = Stsafe::new(bus.device(), NoDelay, 0x20);
    se.init().unwrap();
    se.open_session(&MAC_KEY, &CIPHER_KEY).unwrap();
    let mut engine = chip();
    let mut cases = cases();

    for case in cases.iter_mut() {
        let mut g = c.benchmark_group(case.name);
        g.measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        g.bench_function("driver", |b| b.iter(|| (case.driver)(&mut se)));
        g.bench_function("chip engine", |b| {
            b.iter(|| black_box(engine.transceive(black_box(&case.frame))))
        });
        g.finish();
    }

    println!(
        "\n{:<28} {:>12} {:>12} {:>8}",
        "command", "driver", "engine", "ratio"
    );
    for case in cases.iter_mut() {
        let d = per_op(|| (case.driver)(&mut se), Duration::from_millis(400));
        let e = per_op(
            || {
                black_box(engine.transceive(&case.frame));
            },
            Duration::from_millis(400),
        );
        println!(
            "{:<28} {:>10.1}µs {:>10.1}µs {:>7.2}x",
            case.name,
            d.as_secs_f64() * 1e6,
            e.as_secs_f64() * 1e6,
            d.as_secs_f64() / e.as_secs_f64()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
