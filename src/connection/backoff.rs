//! Exponential backoff with full jitter, on a small seeded generator.
//!
//! "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter"): the
//! delay of retry `n` is uniform in `[0, min(cap, base * 2^n)]`, so clients that
//! lost the same broker at the same moment spread out instead of returning in
//! waves.

/// A xorshift64 generator: not cryptographic, only for spreading retries. The
/// caller seeds it (the boundary from `crypto.getRandomValues`, tests with
/// constants), so the core draws no randomness of its own.
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        // splitmix64 of the seed, so that nearby seeds (1, 2, 3...) start far
        // apart; xorshift must never hold 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Jitter {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// A number in `[0, max]`, both ends included.
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(span) => self.next() % span,
            None => self.next(),
        }
    }
}

/// The upper bound of the delay before retry `attempt` (0 for the first):
/// `min(cap, base * 2^attempt)`, saturating instead of overflowing.
pub fn bound(base_ms: u64, cap_ms: u64, attempt: u32) -> u64 {
    let factor = 1u64.checked_shl(attempt).unwrap_or(u64::MAX);
    base_ms.saturating_mul(factor).min(cap_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_doubles_then_caps() {
        let bounds: Vec<u64> = (0..8).map(|n| bound(1_000, 30_000, n)).collect();
        assert_eq!(
            bounds,
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(bound(1_000, 30_000, 63), 30_000);
        assert_eq!(bound(1_000, 30_000, 64), 30_000);
        assert_eq!(bound(1_000, 30_000, u32::MAX), 30_000);
        assert_eq!(bound(u64::MAX, u64::MAX, u32::MAX), u64::MAX);
        assert_eq!(bound(0, 30_000, 5), 0);
    }

    #[test]
    fn draws_stay_in_range_and_cover_it() {
        for seed in [0, 1, 2, 42, u64::MAX] {
            let mut jitter = Jitter::new(seed);
            let mut low = false;
            let mut high = false;
            for _ in 0..2_000 {
                let draw = jitter.up_to(100);
                assert!(draw <= 100);
                low |= draw < 10;
                high |= draw > 90;
            }
            assert!(low && high, "seed {seed}");
            assert_eq!(jitter.up_to(0), 0);
            let _ = jitter.up_to(u64::MAX);
        }
    }

    #[test]
    fn nearby_seeds_differ() {
        let firsts: std::collections::HashSet<u64> = (0..100)
            .map(|seed| Jitter::new(seed).up_to(1_000))
            .collect();
        assert!(firsts.len() > 80, "{}", firsts.len());
    }
}
