//! Maps keyed by SSRC for the per-packet paths (SRTP stream state, media demux, counters).
//!
//! std's `HashMap` hashes with SipHash-1-3, which costs about 60 instructions for a 4-byte
//! key; a lookup per packet, several times over, was a measurable part of an SRTP unprotect.
//! An SSRC is 32 bits, so one multiply by a keyed odd constant and a fold of the high half
//! spreads it over the whole word (hashbrown takes its bucket from the low bits and its tag
//! from the top seven). The key comes from the owner's secret or seeded state, so a remote
//! peer cannot pick SSRCs that collide on purpose, and every map is capped by its owner.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A `HashMap` from SSRC to `V` with the cheap keyed hash below.
pub(crate) type SsrcMap<V> = HashMap<u32, V, SsrcHash>;

/// A new, empty map whose hash is keyed by `key`.
pub(crate) fn ssrc_map<V>(key: u64) -> SsrcMap<V> {
    HashMap::with_hasher(SsrcHash::new(key))
}

/// Builds [`SsrcHasher`]s with one key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SsrcHash {
    key: u64,
}

impl SsrcHash {
    /// A hash keyed by `key` (any value: the multiplier is forced odd).
    pub(crate) fn new(key: u64) -> SsrcHash {
        SsrcHash { key: key | 1 }
    }
}

impl Default for SsrcHash {
    fn default() -> SsrcHash {
        SsrcHash::new(0x9E37_79B9_7F4A_7C15)
    }
}

impl BuildHasher for SsrcHash {
    type Hasher = SsrcHasher;

    fn build_hasher(&self) -> SsrcHasher {
        SsrcHasher {
            key: self.key,
            state: 0,
        }
    }
}

/// The hasher of one lookup. Built for `u32` keys; other writes are folded in byte by byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SsrcHasher {
    key: u64,
    state: u64,
}

impl Hasher for SsrcHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state = (self.state << 8 | u64::from(b)).rotate_left(5);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.state = (self.state << 32) ^ u64::from(n);
    }

    fn finish(&self) -> u64 {
        let h = (self.state ^ (self.key >> 7)).wrapping_mul(self.key);
        h ^ (h >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_spread() {
        let mut m: SsrcMap<u32> = ssrc_map(12345);
        for i in 0..1000u32 {
            m.insert(i.wrapping_mul(7919), i);
        }
        for i in 0..1000u32 {
            assert_eq!(m.get(&i.wrapping_mul(7919)), Some(&i));
        }
        assert_eq!(m.get(&1), None);
        // Sequential SSRCs land in distinct low bits and distinct top-seven-bit tags.
        let h = SsrcHash::default();
        let tags: std::collections::HashSet<u64> =
            (0..128u32).map(|s| h.hash_one(s) >> 57).collect();
        assert!(tags.len() > 64, "{}", tags.len());
    }
}
