//! `cargo bench -p sesame-chip --bench nvm`: the cost of persistence, to compare later changes.
//! For one persisted Update (64 B) and one Decrement: file writes and bytes written per
//! operation (counted on the simulated disk, the same steps as the real one), and operations
//! per second on the real file system with sealing and fsync. Unpersisted Read is the baseline.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use sesame_chip::{
    Chip, ChipConfig, ChipOptions, CurveName, Fab, FileStorage, Fs, SealKey, Sealed, SimFs, Storage,
};
use sesame_wire::{CommandFrame, Header, Request, Status, ZoneOption};

fn frame(req: &Request<'_>) -> Vec<u8> {
    let mut payload = vec![0u8; 600];
    let n = req.encode(&mut payload).unwrap();
    let mut out = vec![0u8; 620];
    let n = CommandFrame {
        header: Header::plain(req.code()),
        payload: &payload[..n],
        cmac: None,
    }
    .encode(&mut out)
    .unwrap();
    out.truncate(n);
    out
}

fn chip_on<F: Fs + 'static>(fs: F, path: &std::path::Path, key: &SealKey) -> Chip {
    let storage: Box<dyn Storage> =
        Box::new(Sealed::new(FileStorage::with_fs(path, fs), key.clone()));
    let mut fab = Fab::new(
        ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0, 9]),
        storage,
        ChipOptions::default(),
    )
    .unwrap();
    fab.generate_key(0, CurveName::P256).unwrap();
    fab.finish().unwrap()
}

fn run(chip: &mut Chip, f: &[u8]) {
    let rsp = chip.transceive(f);
    assert_eq!(rsp[0], Status::OK.0);
}

fn main() {
    let key = SealKey::generate();
    let update = frame(&Request::Update {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        data: &[0xA5; 64],
    });
    let decrement = frame(&Request::Decrement {
        option: ZoneOption::NONE,
        zone: 4,
        offset: 0,
        amount: 1,
        data: &[],
    });
    let read = frame(&Request::Read {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        len: 64,
    });

    // Wear: counted on the simulated disk.
    let sim = SimFs::new();
    let mut chip = chip_on(sim.clone(), std::path::Path::new("/nvm/c.img"), &key);
    println!("== wear per operation (sealed image, write-temp + fsync + rename + dir fsync)");
    for (name, f) in [
        ("update 64 B", &update),
        ("decrement", &decrement),
        ("read 64 B", &read),
    ] {
        let (w0, b0) = sim.wear();
        let s0 = sim.steps();
        let n = 100;
        for _ in 0..n {
            run(&mut chip, f);
        }
        let (w1, b1) = sim.wear();
        println!(
            "{name:<12} file writes/op {:.1}  bytes written/op {:.0}  fs steps/op {:.1}",
            (w1 - w0) as f64 / n as f64,
            (b1 - b0) as f64 / n as f64,
            (sim.steps() - s0) as f64 / n as f64
        );
    }

    // Speed on the real file system.
    let dir = tempfile::tempdir().unwrap();
    let mut chip = chip_on(sesame_chip::StdFs, &dir.path().join("bench.img"), &key);
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(300));
    c.bench_function("nvm/update_64B_sealed_fsync", |b| {
        b.iter(|| run(&mut chip, black_box(&update)))
    });
    c.bench_function("nvm/decrement_sealed_fsync", |b| {
        b.iter(|| run(&mut chip, black_box(&decrement)))
    });
    c.bench_function("nvm/read_64B_baseline", |b| {
        b.iter(|| run(&mut chip, black_box(&read)))
    });
    c.final_summary();
    let rate = |chip: &mut Chip, f: &[u8], n: u32| {
        let t = Instant::now();
        for _ in 0..n {
            run(chip, f);
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let r = rate(&mut chip, &read, 20_000);
    let u = rate(&mut chip, &update, 300);
    let d = rate(&mut chip, &decrement, 300);
    println!("\n== persisted operations per second (same run)");
    println!("read 64 B (no write):      {r:>10.0} /s");
    println!(
        "update 64 B (persisted):   {u:>10.0} /s   ratio to read {:.4}",
        u / r
    );
    println!(
        "decrement (persisted):     {d:>10.0} /s   ratio to read {:.4}",
        d / r
    );
}
