//! The service's sources of time and randomness, injected so that tests run expiry on simulated
//! time (no sleeps) and can make the generator fail.

use std::sync::atomic::{AtomicI64, Ordering};

/// Unix seconds as the service sees them.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix seconds.
    fn now(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at the system's current time.
    pub fn new() -> Self {
        Self(AtomicI64::new(SystemClock.now()))
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Random bytes for challenges, tokens and ids.
pub trait Random: Send + Sync + std::fmt::Debug {
    /// Fills `dest`; an error leaves the request failing, never a predictable value.
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError>;
}

/// The generator failed.
#[derive(Debug, Clone, Copy)]
pub struct RandomError;

/// The operating system's generator (through ring).
#[derive(Debug)]
pub struct SystemRandom(ring::rand::SystemRandom);

impl Default for SystemRandom {
    fn default() -> Self {
        Self(ring::rand::SystemRandom::new())
    }
}

impl Random for SystemRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        ring::rand::SecureRandom::fill(&self.0, dest).map_err(|_| RandomError)
    }
}
