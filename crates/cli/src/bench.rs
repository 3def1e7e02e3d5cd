//! `sesame bench …`: rates with a baseline measured in the same run.

use std::time::Instant;

use anyhow::Result;
use sesame_pki::{Authority, DeviceKey, KeyAlg};

/// Personalizing a chip may cost at most twice the irreducible work (key generation and
/// certificate signing): the rest (chip engine, sealing, files) must stay the smaller part.
const FACTORY_GOAL: f64 = 0.5;

/// Which side of its goal a ratio must be on.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

/// Prints `ratio NAME: R (goal …): PASS|FAIL`; a miss is a failure of the command (exit 1).
pub fn verdict(name: &str, ratio: f64, goal: Goal) -> Result<()> {
    let (pass, goal_text) = match goal {
        Goal::AtLeast(g) => (ratio >= g, format!(">= {g}")),
        Goal::AtMost(g) => (ratio <= g, format!("<= {g}")),
    };
    let word = if pass { "PASS" } else { "FAIL" };
    outln!("ratio {name}: {ratio:.3} (goal {goal_text}): {word}");
    if pass {
        Ok(())
    } else {
        Err(crate::out::Reported(format!(
            "benchmark missed its goal: ratio {name} {ratio:.3}, goal {goal_text}"
        ))
        .into())
    }
}

/// Personalizes `count` chips in a temporary factory and compares the rate with raw key
/// generation + certificate signing (the irreducible work) on the same number of threads.
pub fn factory(count: usize, base: Option<&std::path::Path>) -> Result<()> {
    let dir = match base {
        Some(b) => tempfile::tempdir_in(b)?,
        None => tempfile::tempdir()?,
    };
    let fdir = dir.path().join("factory");
    crate::factory::init(&fdir, "bench", KeyAlg::P256, None)?;
    let family = Authority::new_root("b", "b", KeyAlg::P256)?.new_family("b", "b", KeyAlg::P256)?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let raw_n = count.min(5000);
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..workers {
            let family = &family;
            s.spawn(move || {
                for i in (w..raw_n).step_by(workers) {
                    let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
                    let point = sk.verifying_key().to_encoded_point(false);
                    let key = DeviceKey::from_sec1(point.as_bytes()).ok();
                    if let Some(key) = key {
                        let _ = family.issue_device(&format!("{i:018X}"), &key, "b", None);
                    }
                }
            });
        }
    });
    let raw_rate = raw_n as f64 / t.elapsed().as_secs_f64();
    let r = crate::factory::personalize(
        &fdir,
        "bench",
        count,
        &dir.path().join("batch"),
        "p256",
        None,
        false,
    )?;
    let rate = r.made as f64 / r.seconds;
    outln!(
        "personalized {} chips in {:.2} s on {workers} threads: {rate:.0} chips/s",
        r.made,
        r.seconds
    );
    outln!("raw P-256 key generation + device certificate signing: {raw_rate:.0} /s (same run, {workers} threads)");
    verdict(
        "personalize/raw",
        rate / raw_rate,
        Goal::AtLeast(FACTORY_GOAL),
    )
}
