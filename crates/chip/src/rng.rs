//! The chip's random source: a ChaCha20 DRBG seeded from the OS (or from a seed, for
//! reproducible simulations). With feature `test-keys`, a counting source reproduces the
//! published frame vectors whose random bytes are `00 01 02 ..`.

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};

pub(crate) enum ChipRng {
    Drbg(Box<ChaCha20Rng>),
    #[cfg(feature = "test-keys")]
    Counting(u8),
}

impl ChipRng {
    pub(crate) fn new(options: &crate::ChipOptions) -> Self {
        #[cfg(feature = "test-keys")]
        if options.counting_rng {
            return Self::Counting(0);
        }
        Self::Drbg(Box::new(match options.rng_seed {
            Some(seed) => ChaCha20Rng::seed_from_u64(seed),
            None => ChaCha20Rng::from_entropy(),
        }))
    }
}

impl RngCore for ChipRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match self {
            Self::Drbg(r) => r.fill_bytes(dest),
            #[cfg(feature = "test-keys")]
            Self::Counting(n) => {
                for b in dest {
                    *b = *n;
                    *n = n.wrapping_add(1);
                }
            }
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// The DRBG is a CSPRNG; the counting source exists only under the test-vector feature.
impl CryptoRng for ChipRng {}
