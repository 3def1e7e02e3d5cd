//! Fault injection on the bus, for device makers to see how their host code copes with a
//! misbehaving I2C line: NACK bursts, corrupted response bytes, dropped responses and power cuts,
//! drawn from a seeded generator so the same seed and the same traffic give the same faults.
//!
//! Spec string (for `sesame chip serve --faults`): comma-separated `key=value` with keys
//! `seed` (u64), `nack` (probability a transaction starts a NACK burst), `burst` (longest burst,
//! default 3), `corrupt` (probability a read has one bit flipped), `drop` (probability a
//! command's response is lost), `cut` (probability the chip loses power around a command:
//! half the time before executing it, half after, so the host never sees the answer).

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Fault rates (probabilities in 0..=1) and the seed.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Faults {
    /// Seed of the fault generator.
    pub seed: u64,
    /// Probability that a transaction starts a NACK burst.
    pub nack: f64,
    /// Longest NACK burst (transactions).
    pub burst: u32,
    /// Probability that a read returns one flipped bit.
    pub corrupt: f64,
    /// Probability that a command's response is lost.
    pub drop: f64,
    /// Probability of a power cut around a command.
    pub cut: f64,
}

impl Faults {
    /// Parses `seed=1,nack=0.05,burst=3,corrupt=0.01,drop=0.01,cut=0.001`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut f = Faults {
            burst: 3,
            ..Default::default()
        };
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("fault '{part}' is not key=value"))?;
            let prob = || -> Result<f64, String> {
                let p: f64 = v
                    .parse()
                    .map_err(|_| format!("{k}: '{v}' is not a number"))?;
                if (0.0..=1.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(format!("{k}: probability {p} is not in 0..=1"))
                }
            };
            match k {
                "seed" => f.seed = v.parse().map_err(|_| format!("seed: '{v}' is not a u64"))?,
                "burst" => {
                    f.burst = v
                        .parse()
                        .map_err(|_| format!("burst: '{v}' is not a u32"))?
                }
                "nack" => f.nack = prob()?,
                "corrupt" => f.corrupt = prob()?,
                "drop" => f.drop = prob()?,
                "cut" => f.cut = prob()?,
                _ => {
                    return Err(format!(
                        "unknown fault '{k}' (seed, nack, burst, corrupt, drop, cut)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// How many faults of each kind were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Transactions NACKed.
    pub nacks: u64,
    /// Reads with a flipped bit.
    pub corrupted: u64,
    /// Responses dropped.
    pub dropped: u64,
    /// Power cuts before a command ran.
    pub cuts_before: u64,
    /// Power cuts after a command ran.
    pub cuts_after: u64,
}

/// What to do with one write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteFault {
    None,
    Nack,
    CutBefore,
    CutAfter,
    Drop,
}

pub(crate) struct FaultState {
    cfg: Faults,
    rng: ChaCha20Rng,
    burst_left: u32,
    pub stats: FaultStats,
}

impl FaultState {
    pub fn new(cfg: Faults) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed),
            cfg,
            burst_left: 0,
            stats: FaultStats::default(),
        }
    }

    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < p
    }

    fn nack(&mut self) -> bool {
        if self.burst_left > 0 {
            self.burst_left -= 1;
            self.stats.nacks += 1;
            return true;
        }
        if self.roll(self.cfg.nack) {
            self.burst_left = self.rng.next_u32() % self.cfg.burst.max(1);
            self.stats.nacks += 1;
            return true;
        }
        false
    }

    pub fn on_write(&mut self) -> WriteFault {
        if self.nack() {
            return WriteFault::Nack;
        }
        if self.roll(self.cfg.cut) {
            return if self.rng.next_u32() & 1 == 0 {
                self.stats.cuts_before += 1;
                WriteFault::CutBefore
            } else {
                self.stats.cuts_after += 1;
                WriteFault::CutAfter
            };
        }
        if self.roll(self.cfg.drop) {
            self.stats.dropped += 1;
            return WriteFault::Drop;
        }
        WriteFault::None
    }

    /// Before a read: NACK or not.
    pub fn on_read(&mut self) -> bool {
        self.nack()
    }

    /// After a read: maybe flip one bit.
    pub fn corrupt(&mut self, buf: &mut [u8]) {
        if !buf.is_empty() && self.roll(self.cfg.corrupt) {
            let bit = (self.rng.next_u64() % (buf.len() as u64 * 8)) as usize;
            buf[bit / 8] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }
    }
}
