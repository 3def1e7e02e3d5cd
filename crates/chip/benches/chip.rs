//! `cargo bench -p sesame-chip`: the chip's command path against raw crypto, in one run.
//!
//! Generate Signature goes the whole way: frame bytes in, over the in-process I2C bus with
//! STSELib's read pattern (5 bytes, then 3 + LEN), response bytes out. The baseline signs the
//! same digest with the same library (RustCrypto p256) directly. The ratio path/raw is printed
//! at the end (goal >= 0.9). Verify Signature, Establish Key, Read and Update (persisted to a
//! file with fsync) are reported in operations per second.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{black_box, Criterion};
use p256::ecdsa::signature::hazmat::RandomizedPrehashSigner;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sesame_chip::{
    Bus, BusDevice, ChipConfig, ChipOptions, CurveName, Fab, FileStorage, MemStorage,
};
use sesame_wire::{
    CommandFrame, Curve, Header, PublicKey, Request, ResponseFrame, Signature, Status, ZoneOption,
};

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

/// One command over the bus as a host library does it.
fn exchange(dev: &mut BusDevice, frame: &[u8], buf: &mut [u8; 600]) -> usize {
    use embedded_hal::i2c::I2c;
    dev.write(0x20, frame).unwrap();
    dev.read(0x20, &mut buf[..5]).unwrap();
    let total = ResponseFrame::total_len(&buf[..3]).unwrap();
    if total > 5 {
        dev.read(0x20, &mut buf[..total]).unwrap();
    }
    assert_eq!(buf[0], Status::OK.0);
    total
}

fn bus_with_chip(
    storage: Box<dyn sesame_chip::Storage>,
) -> (BusDevice, sesame_chip::PublicKeyBytes) {
    let mut fab = Fab::new(
        ChipConfig::new([2, 0, 0, 0, 0, 0, 0, 0, 1]),
        storage,
        ChipOptions::default(),
    )
    .unwrap();
    let pk = fab.generate_key(0, CurveName::P256).unwrap();
    let chip = fab.finish().unwrap();
    let bus = Bus::new();
    bus.attach(chip).unwrap();
    (bus.device(), pk)
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let digest = [0x5Au8; 32];

    let (mut dev, pk) = bus_with_chip(Box::new(MemStorage::new()));
    let sign_frame = frame(&Request::GenerateSignature {
        slot: 0,
        digest: &digest,
    });
    let mut buf = [0u8; 600];
    c.bench_function("generate_signature/frame_path", |b| {
        b.iter(|| exchange(&mut dev, black_box(&sign_frame), &mut buf))
    });
    let raw_key = p256::ecdsa::SigningKey::random(&mut ChaCha20Rng::seed_from_u64(1));
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    c.bench_function("generate_signature/raw_p256", |b| {
        b.iter(|| {
            let s: p256::ecdsa::Signature = raw_key
                .sign_prehash_with_rng(&mut rng, black_box(&digest))
                .unwrap();
            s
        })
    });

    // A valid signature to verify, made by the chip itself.
    let n = exchange(&mut dev, &sign_frame, &mut buf);
    let mut r = sesame_wire::Reader::new(&buf[3..n - 2]);
    let sig = Signature::read(&mut r).unwrap();
    let (sig_r, sig_s) = (sig.r.to_vec(), sig.s.to_vec());
    let verify_frame = frame(&Request::VerifySignature {
        curve: Curve::P256,
        key: PublicKey { x: &pk.x, y: &pk.y },
        signature: Signature {
            r: &sig_r,
            s: &sig_s,
        },
        digest: &digest,
    });
    c.bench_function("verify_signature/frame_path", |b| {
        b.iter(|| exchange(&mut dev, black_box(&verify_frame), &mut buf))
    });
    let peer = p256::SecretKey::random(&mut ChaCha20Rng::seed_from_u64(3)).public_key();
    let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&peer, false);
    let ecdh_frame = frame(&Request::EstablishKey {
        slot: 0,
        peer: PublicKey {
            x: point.x().unwrap(),
            y: point.y().unwrap(),
        },
    });
    c.bench_function("establish_key/frame_path", |b| {
        b.iter(|| exchange(&mut dev, black_box(&ecdh_frame), &mut buf))
    });

    let dir = tempfile::tempdir().unwrap();
    let (mut fdev, _) = bus_with_chip(Box::new(FileStorage::new(dir.path().join("bench.chip"))));
    let read_frame = frame(&Request::Read {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        len: 64,
    });
    c.bench_function("read_64B/frame_path", |b| {
        b.iter(|| exchange(&mut fdev, black_box(&read_frame), &mut buf))
    });
    let update_frame = frame(&Request::Update {
        option: ZoneOption::NONE,
        zone: 1,
        offset: 0,
        data: &[0xA5; 64],
    });
    c.bench_function("update_64B_persisted/frame_path", |b| {
        b.iter(|| exchange(&mut fdev, black_box(&update_frame), &mut buf))
    });
    c.final_summary();

    // Ratios from a direct interleaved measurement in this same run, so both sides see the same
    // machine load.
    let rounds = 5;
    let per = 400;
    let (mut path_t, mut raw_t) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per {
            exchange(&mut dev, &sign_frame, &mut buf);
        }
        path_t += t.elapsed();
        let t = Instant::now();
        for _ in 0..per {
            let s: p256::ecdsa::Signature =
                raw_key.sign_prehash_with_rng(&mut rng, &digest).unwrap();
            black_box(s);
        }
        raw_t += t.elapsed();
    }
    let ops = (rounds * per) as f64;
    let path_rate = ops / path_t.as_secs_f64();
    let raw_rate = ops / raw_t.as_secs_f64();
    println!("\n== sesame-chip summary (same run)");
    println!("generate signature, full frame path over the I2C bus: {path_rate:>9.0} /s");
    println!("raw p256 sign_prehash (same library):                 {raw_rate:>9.0} /s");
    println!("ratio path/raw: {:.3} (goal >= 0.9)", path_rate / raw_rate);
    let rate = |f: &[u8], dev: &mut BusDevice, buf: &mut [u8; 600], n: usize| {
        let t = Instant::now();
        for _ in 0..n {
            exchange(dev, f, buf);
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    println!(
        "verify signature:         {:>9.0} /s",
        rate(&verify_frame, &mut dev, &mut buf, 1000)
    );
    println!(
        "establish key (ECDH):     {:>9.0} /s",
        rate(&ecdh_frame, &mut dev, &mut buf, 1000)
    );
    println!(
        "read 64 B:                {:>9.0} /s",
        rate(&read_frame, &mut fdev, &mut buf, 5000)
    );
    println!(
        "update 64 B (fsync'd):    {:>9.0} /s",
        rate(&update_frame, &mut fdev, &mut buf, 300)
    );
}
