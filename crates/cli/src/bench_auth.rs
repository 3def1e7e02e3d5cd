//! `sesame bench auth`: concurrent simulated devices authenticate in a loop against an embedded
//! cloud (SQLite, loopback HTTP), compared with the raw P-256 verify rate of the cloud's backend
//! measured in the same run; `--registry` compares authentication latency with 1,000 and
//! 1,000,000 individually enrolled devices in the registry.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;

use crate::sim::{self, Counters, EmbeddedCloud, Pki};

/// `sesame bench auth` options.
#[derive(Args, Debug)]
pub struct AuthArgs {
    /// Concurrent simulated devices (one thread each).
    #[arg(long, default_value_t = 64)]
    devices: usize,
    /// Seconds of authentications.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Registry scale: p50 authentication latency with 1,000 vs 1,000,000 enrolled devices.
    #[arg(long)]
    registry: bool,
}

/// Registry rows to reach, and the time allowed for seeding them.
const REGISTRY_SMALL: u64 = 1_000;
const REGISTRY_LARGE: u64 = 1_000_000;
const SEED_BUDGET: Duration = Duration::from_secs(120);
/// Rows per seeding transaction (and per step between checks of the time budget).
const SEED_BATCH: u64 = 100_000;
/// Logins per second of the cloud's own CPU, against raw verifications per second of the same
/// backend on one core: a login is one verify, two HTTP requests and two database statements,
/// so it should reach this share of a bare verify.
const AUTH_GOAL: f64 = 0.6;
/// Full mutual-TLS handshakes measured for the bar a login is compared with.
const TLS_HANDSHAKES: u32 = 300;
/// Login latency with 1,000,000 enrolled devices may exceed that with 1,000 by at most 20 %.
const REGISTRY_GOAL: f64 = 1.2;
/// Real devices enrolled one by one whose logins are timed in the registry bench.
const REGISTRY_DEVICES: usize = 8;

/// Runs `sesame bench auth`.
pub fn run(a: AuthArgs) -> Result<()> {
    if a.devices == 0 || a.seconds == 0 {
        bail!("--devices and --seconds must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // No command key: a login is exactly the challenge and the response (one verify in the
    // cloud), without the telemetry key exchange.
    let cloud = EmbeddedCloud::start(false)?;
    let pki = Pki::new()?;
    pki.enroll(&cloud.url, sim::ADMIN)?;
    let (devices, _) = sim::personalize(a.devices, &pki, None, &cloud.url, false)?;
    let counters = Counters::default();
    // The cloud runs on its own named threads (and SQLite's workers): their CPU time over the
    // run is the cloud's, apart from the devices signing in this process.
    let (cpu_before, _) = crate::cputime::threads(&sim::CLOUD_THREADS)?;
    let (db_before, _) = crate::cputime::threads(&sim::CLOUD_THREADS[1..])?;
    let (mut out, secs) = sim::run_workers(
        devices,
        a.devices,
        Duration::from_secs(a.seconds),
        false,
        &counters,
        &crate::client::tls_config(None)?,
        &mut |_| {},
    );
    let (cpu_after, threads) = crate::cputime::threads(&sim::CLOUD_THREADS)?;
    let (db_after, _) = crate::cputime::threads(&sim::CLOUD_THREADS[1..])?;
    let db_cpu = db_after.saturating_sub(db_before).as_secs_f64();
    let cloud_cpu = cpu_after.saturating_sub(cpu_before).as_secs_f64();
    let auths = out.login_us.len() as f64;
    let auth_rate = auths / secs.max(1e-9);
    let (p50, p99) = (
        sim::percentile_ms(&mut out.login_us, 50.0),
        sim::percentile_ms(&mut out.login_us, 99.0),
    );
    outln!(
        "bench auth: {} devices on {} threads, embedded cloud on SQLite over loopback HTTP, {cores} cores",
        a.devices, a.devices
    );
    outln!(
        "authentications: {} in {secs:.2} s = {auth_rate:.0} /s",
        out.login_us.len()
    );
    outln!("latency: p50 {p50:.2} ms, p99 {p99:.2} ms");
    outln!("errors: {}", out.error_total());
    for (kind, n) in &out.errors {
        outln!("  {n:>8}  {kind}");
    }
    // Ticks of 10 ms: below a tenth of a second the figure is noise.
    if cloud_cpu < 0.1 || auths < 1.0 {
        bail!(
            "the cloud used {cloud_cpu:.2} s of CPU for {auths} logins: too little to measure; run longer (--seconds)"
        );
    }
    let per_login_us = cloud_cpu * 1e6 / auths;
    let logins_per_cpu = auths / cloud_cpu;
    outln!(
        "cloud CPU: {cloud_cpu:.2} s on {threads} threads = {per_login_us:.0} µs per login = {logins_per_cpu:.0} logins per cloud-CPU-second (SQLite's threads: {:.0} µs)",
        db_cpu * 1e6 / auths
    );
    let window = Duration::from_secs_f64((a.seconds as f64).clamp(0.5, 2.0));
    let (ring, rust) = verify_rates(window)?;
    outln!(
        "raw P-256 ECDSA verify, 1 thread, {:.1} s each: ring (the cloud's backend) {ring:.0} /s, RustCrypto p256 {rust:.0} /s (ring {:.1}x faster)",
        window.as_secs_f64(),
        ring / rust.max(1e-9)
    );
    let handshake = tls_handshake_us(&cloud, &pki)?;
    let tls_ratio = 1e6 / handshake / ring.max(1e-9);
    outln!(
        "mTLS 1.3 handshake (rustls, device certificate), server side: {handshake:.0} µs = {:.0} per CPU-second; ÷ ring verify/s: {tls_ratio:.3}",
        1e6 / handshake
    );
    let ratio = logins_per_cpu / ring.max(1e-9);
    outln!(
        "login vs the mTLS bar: {:.2}x the handshakes per CPU-second: {}",
        ratio / tls_ratio.max(1e-9),
        if ratio >= tls_ratio { "PASS" } else { "FAIL" }
    );
    let own = crate::bench::verdict(
        "logins per cloud-CPU-second ÷ ring verify/s",
        ratio,
        crate::bench::Goal::AtLeast(AUTH_GOAL),
    );
    if a.registry {
        drop(cloud);
        registry(a.seconds)?;
    }
    own
}

/// Server-side µs of one full mutual-TLS handshake with a device certificate of the bench's
/// family (a software key), checked by the cloud's own verifier.
fn tls_handshake_us(cloud: &EmbeddedCloud, pki: &Pki) -> Result<f64> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::EncodePrivateKey;
    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let point = key.public_key().to_encoded_point(false);
    let cert = pki
        .family
        .issue_device(
            "02BE7150",
            &sesame_pki::DeviceKey::from_sec1(point.as_bytes())?,
            crate::factory::ORG,
            None,
        )
        .map_err(|e| anyhow!("bench TLS device certificate: {e}"))?;
    let pkcs8 = key.to_pkcs8_der()?;
    let t = sesame_cloud::mtls::server_handshake_time(
        &cloud.service,
        &cert,
        pkcs8.as_bytes(),
        TLS_HANDSHAKES,
    )
    .map_err(|e| anyhow!("mTLS handshake: {e}"))?;
    Ok(t.as_secs_f64() * 1e6 / f64::from(TLS_HANDSHAKES))
}

/// Verifications per second of ring (through the cloud's own `auth::verify`, which is
/// `ring::signature::UnparsedPublicKey::verify` with `ECDSA_P256_SHA256_FIXED`) and of
/// RustCrypto's p256, each on one thread for `window`, the key parsed at every call as the cloud does.
fn verify_rates(window: Duration) -> Result<(f64, f64)> {
    use p256::ecdsa::signature::{Signer, Verifier};
    let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let public = sk
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let message =
        b"sesame verify benchmark: context || challenge || identity || certificate hash".to_vec();
    let sig: p256::ecdsa::Signature = sk.sign(&message);
    let rs = sig.to_bytes().to_vec();
    if !sesame_cloud::auth::verify(&public, &message, &rs) {
        bail!("ring does not verify the benchmark signature");
    }
    let rate = |f: &dyn Fn() -> bool| -> Result<f64> {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < window {
            for _ in 0..64 {
                if !f() {
                    bail!("a verification failed");
                }
            }
            n += 64;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    };
    let ring = rate(&|| sesame_cloud::auth::verify(&public, &message, &rs))?;
    let rust = rate(&|| {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&public)
            .ok()
            .and_then(|k| {
                p256::ecdsa::Signature::from_slice(&rs)
                    .ok()
                    .map(|s| k.verify(&message, &s).is_ok())
            })
            .unwrap_or(false)
    })?;
    Ok((ring, rust))
}

/// Login latencies (µs) of `devices`, one login at a time, round-robin, for `window`.
fn logins(devices: &mut [sim::Device], window: Duration, us: &mut Vec<u32>) -> Result<()> {
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        for d in devices.iter_mut() {
            let t = Instant::now();
            d.login()
                .map_err(|e| anyhow!("registry device login: {e}"))?;
            us.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        }
    }
    Ok(())
}

/// A cloud with no family enrolled (every device is found by its own row, the lookup that
/// grows) and `REGISTRY_DEVICES` real devices enrolled one by one through the operator API.
fn registry_cloud(pki: &Pki) -> Result<(EmbeddedCloud, Vec<sim::Device>)> {
    let cloud = EmbeddedCloud::start(false)?;
    let (mut devices, _) = sim::personalize(REGISTRY_DEVICES, pki, None, &cloud.url, false)?;
    for d in &mut devices {
        let cert = serde_json::to_value(sesame_proto::admin::CertificateRequest {
            certificate: B64.encode(d.certificate()),
        })?;
        sim::admin(
            &cloud.url,
            sim::ADMIN,
            "POST",
            "/v1/admin/devices",
            Some(cert),
        )?;
        // Warm up: connection, caches, the device's rows.
        for _ in 0..3 {
            d.login()
                .map_err(|e| anyhow!("registry device login: {e}"))?;
        }
    }
    Ok((cloud, devices))
}

fn seed(cloud: &EmbeddedCloud, n: u64) -> Result<u64> {
    let store = &cloud.service.store;
    let err = |e: sesame_cloud::StoreError| anyhow!("{e}");
    cloud
        .rt
        .block_on(store.seed_enrolled_devices(n, SEED_BATCH))
        .map_err(err)?;
    cloud.rt.block_on(store.seeded_devices()).map_err(err)
}

/// Two registries side by side, one of 1,000 rows and one seeded towards 1,000,000; their
/// login latencies are measured in alternating slices so that whatever else the machine does
/// weighs on both alike.
fn registry(seconds: u64) -> Result<()> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let pki = Pki::new()?;
    let (small_cloud, mut small_devices) = registry_cloud(&pki)?;
    let (large_cloud, mut large_devices) = registry_cloud(&pki)?;
    let small = seed(&small_cloud, REGISTRY_SMALL)?;
    let started = Instant::now();
    let mut reached = 0;
    while reached < REGISTRY_LARGE && started.elapsed() < SEED_BUDGET {
        reached = seed(&large_cloud, (reached + SEED_BATCH).min(REGISTRY_LARGE))?;
        if tty {
            eprint!(
                "\rseeding the registry: {reached} rows ({:.0} rows/s)   ",
                reached as f64 / started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    }
    if tty {
        eprintln!();
    }
    let seed_s = started.elapsed().as_secs_f64();
    outln!(
        "registry: seeded {reached} rows in {seed_s:.1} s ({:.0} rows/s; transactions of {SEED_BATCH} rows, multi-row INSERTs)",
        reached as f64 / seed_s.max(1e-9)
    );
    if reached < REGISTRY_LARGE {
        outln!(
            "NOTE: seeding 1,000,000 rows did not finish within {} s; measured with {reached} rows instead",
            SEED_BUDGET.as_secs()
        );
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let slice = Duration::from_millis(250);
    let rounds = (seconds.max(2) * 1000 / 250).max(1);
    for _ in 0..rounds {
        logins(&mut small_devices, slice, &mut a)?;
        logins(&mut large_devices, slice, &mut b)?;
    }
    let (p_small, p_large) = (
        sim::percentile_ms(&mut a, 50.0),
        sim::percentile_ms(&mut b, 50.0),
    );
    for (rows, p, n) in [(small, p_small, a.len()), (reached, p_large, b.len())] {
        outln!(
            "registry: {rows} seeded + {REGISTRY_DEVICES} real individually enrolled devices: login p50 {p:.2} ms ({n} logins, one at a time)"
        );
    }
    crate::bench::verdict(
        &format!("p50({reached} rows) / p50({small} rows)"),
        p_large / p_small.max(1e-9),
        crate::bench::Goal::AtMost(REGISTRY_GOAL),
    )
}
