//! Seedable, non-cryptographic randomness for everything that is not a secret.
//!
//! ICE ufrags, SSRCs, tie-breakers, transaction ids and SCTP tags come from [`Rng`],
//! so that the same seed and the same inputs give the same behaviour. Secrets
//! (ICE passwords, DTLS randoms, keys) never come from here: they come from
//! ring's `SystemRandom`.

/// A small, fast, seedable generator (xoshiro256**), seeded through SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut st = seed;
        let s = [
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
            splitmix64(&mut st),
        ];
        Rng { s }
    }

    /// A generator seeded from the operating system (used when no seed is configured).
    pub fn from_os() -> Self {
        let mut b = [0u8; 8];
        // SystemRandom only fails on broken platforms; fall back to a fixed seed there.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
        Self::from_seed(u64::from_le_bytes(b))
    }

    /// An independent child generator, so that sub-modules draw from their own stream
    /// and adding a draw in one module does not shift every other module's numbers.
    pub fn fork(&mut self) -> Rng {
        Rng::from_seed(self.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A uniform value in `0..bound` (`bound` > 0; returns 0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Lemire's multiply-shift; the tiny bias is irrelevant for non-secret uses.
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fill `out` with random bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    /// A random string of `len` characters from the ICE character set (`ALPHA / DIGIT / "+" / "/"`).
    pub fn ice_chars(&mut self, len: usize) -> String {
        const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..len)
            .map(|_| SET[self.below(SET.len() as u64) as usize] as char)
            .collect()
    }
}

/// Fill `out` with secret random bytes from the operating system (ring's `SystemRandom`).
pub fn secret_bytes(out: &mut [u8]) -> Result<(), ring::error::Unspecified> {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), out)
}

/// A secret random string from the ICE character set, e.g. an ICE password.
pub fn secret_ice_chars(len: usize) -> String {
    const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut raw = vec![0u8; len];
    if secret_bytes(&mut raw).is_err() {
        // Unreachable on supported platforms; keep the string valid even then.
        raw.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    raw.iter()
        .map(|b| SET[(*b & 63) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Rng::from_seed(42);
        let mut b = Rng::from_seed(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut c = Rng::from_seed(43);
        assert_ne!(Rng::from_seed(42).next_u64(), c.next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::from_seed(1);
        for bound in [1u64, 2, 3, 7, 1000] {
            for _ in 0..1000 {
                assert!(r.below(bound) < bound);
            }
        }
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn ice_chars_are_valid() {
        let mut r = Rng::from_seed(7);
        let s = r.ice_chars(24);
        assert_eq!(s.len(), 24);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
        let p = secret_ice_chars(24);
        assert_eq!(p.len(), 24);
        assert!(p
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/'));
    }
}
