//! The one random generator of a PeerConnection: a ChaCha20 keystream (RFC 8439) with fast
//! key erasure, a cryptographically strong DRBG.
//!
//! Everything a peer or an attacker on the path can see (STUN transaction ids, ICE ufrags,
//! SSRCs, SCTP verification tags and initial TSNs, DTLS randoms) and the secrets we choose
//! ourselves (ICE passwords, cookie keys) come from [`Rng`], so an attacker who sees
//! outputs cannot predict the next ones (RFC 8489 section 6 asks this of transaction ids).
//!
//! Seeding:
//! - [`Rng::from_os`] (the default): a 256-bit key from the operating system.
//! - [`Rng::from_seed`]: a key derived from a 64-bit seed, so that the same seed and the
//!   same inputs give the same bytes out. **For tests and simulation only**: 64 bits can be
//!   searched, so a seeded session's secrets are only as strong as the seed is secret.
//!
//! Each refill makes four ChaCha20 blocks under the current key; the first 32 bytes
//! become the next key and are never handed out, so the state at any moment says nothing
//! about outputs already given (backtracking resistance). [`Rng::fork`] keys a child from
//! 32 bytes of the parent's stream, so that modules draw from their own streams and a new
//! draw in one module does not shift every other module's numbers.
//!
//! Not from here: ECDHE key shares, ECDSA signature nonces and certificate keys, which
//! ring makes with its own `SystemRandom` (ring's `SecureRandom` trait is sealed, so it
//! cannot draw from this generator). A seeded session therefore reproduces every byte
//! except those.

/// ChaCha20 state words 0..4: "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// Blocks made per refill (the first 32 bytes re-key the generator).
const BLOCKS_PER_REFILL: usize = 4;
const REFILL_BYTES: usize = 64 * BLOCKS_PER_REFILL;
/// Bytes of a refill that are handed out.
const OUTPUT_BYTES: usize = REFILL_BYTES - 32;
/// Domain separation of seeded keys from everything else (the key is `seed || label`).
const SEED_LABEL: &[u8; 24] = b"sansrtc seeded test rng\0";

/// The operating system's random source failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random source failed")]
pub struct NoRandomness;

/// A cryptographically strong generator (ChaCha20 with fast key erasure).
#[derive(Clone)]
pub struct Rng {
    key: [u32; 8],
    /// Output not yet handed out; `buf[pos..]` is fresh.
    buf: [u8; OUTPUT_BYTES],
    pos: usize,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key and buffered output are secret.
        f.debug_struct("Rng").finish_non_exhaustive()
    }
}

#[inline(always)]
fn quarter_round(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

/// One ChaCha20 block (RFC 8439 section 2.3) for `key`, block `counter` and `nonce`.
fn chacha20_block(key: &[u32; 8], counter: u32, nonce: &[u32; 3], out: &mut [u8]) {
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&SIGMA);
    init[4..12].copy_from_slice(key);
    init[12] = counter;
    init[13..].copy_from_slice(nonce);
    let mut x = init;
    for _ in 0..10 {
        quarter_round(&mut x, 0, 4, 8, 12);
        quarter_round(&mut x, 1, 5, 9, 13);
        quarter_round(&mut x, 2, 6, 10, 14);
        quarter_round(&mut x, 3, 7, 11, 15);
        quarter_round(&mut x, 0, 5, 10, 15);
        quarter_round(&mut x, 1, 6, 11, 12);
        quarter_round(&mut x, 2, 7, 8, 13);
        quarter_round(&mut x, 3, 4, 9, 14);
    }
    for ((word, start), chunk) in x.iter().zip(init.iter()).zip(out.chunks_exact_mut(4)) {
        chunk.copy_from_slice(&word.wrapping_add(*start).to_le_bytes());
    }
}

fn key_words(bytes: &[u8; 32]) -> [u32; 8] {
    let mut key = [0u32; 8];
    for (word, chunk) in key.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    key
}

impl Rng {
    /// A generator keyed with 32 bytes.
    fn from_key(key: &[u8; 32]) -> Self {
        Rng {
            key: key_words(key),
            buf: [0; OUTPUT_BYTES],
            pos: OUTPUT_BYTES,
        }
    }

    /// A generator whose whole output is determined by `seed`. **Tests and simulation
    /// only** (see the module documentation): use [`Rng::from_os`] for real sessions.
    pub fn from_seed(seed: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(SEED_LABEL);
        Self::from_key(&key)
    }

    /// A generator keyed from the operating system (the default for every session).
    /// Fails only where the platform has no working random source (ring's
    /// `SystemRandom` fails only then): there is nothing safe to fall back to, and a
    /// session must not start with a predictable key.
    pub fn from_os() -> Result<Self, NoRandomness> {
        let mut key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| NoRandomness)?;
        Ok(Self::from_key(&key))
    }

    /// An independent child generator keyed from 32 bytes of this one's stream.
    pub fn fork(&mut self) -> Rng {
        let mut key = [0u8; 32];
        self.fill(&mut key);
        Rng::from_key(&key)
    }

    fn refill(&mut self) {
        let mut block = [0u8; REFILL_BYTES];
        for (i, chunk) in block.chunks_exact_mut(64).enumerate() {
            chacha20_block(&self.key, i as u32, &[0; 3], chunk);
        }
        let mut next_key = [0u8; 32];
        next_key.copy_from_slice(&block[..32]);
        self.key = key_words(&next_key);
        self.buf.copy_from_slice(&block[32..]);
        self.pos = 0;
    }

    /// Fill `out` with random bytes.
    pub fn fill(&mut self, mut out: &mut [u8]) {
        while !out.is_empty() {
            if self.pos == OUTPUT_BYTES {
                self.refill();
            }
            let fresh = &mut self.buf[self.pos..];
            let n = fresh.len().min(out.len());
            let (head, rest) = out.split_at_mut(n);
            head.copy_from_slice(&fresh[..n]);
            // Handed-out bytes do not stay in memory.
            fresh[..n].fill(0);
            self.pos += n;
            out = rest;
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    /// A uniform value in `0..bound` (`bound` > 0; returns 0 when `bound` is 0), without
    /// modulo bias (Lemire's multiply-shift with rejection).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = self.next_u64() as u128 * bound as u128;
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// A uniform float in `[0, 1)`.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A random string of `len` characters from the ICE character set
    /// (`ALPHA / DIGIT / "+" / "/"`): 6 bits per character, so a 24-character ICE
    /// password carries 144 bits.
    pub fn ice_chars(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| ICE_CHARS[self.below(ICE_CHARS.len() as u64) as usize] as char)
            .collect()
    }
}

/// The ICE character set (RFC 8445 `ice-char`), 64 characters.
const ICE_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 8439 section 2.3.2: the ChaCha20 block function's test vector.
    #[test]
    fn chacha20_block_matches_rfc_8439() {
        let key: Vec<u8> = (0u8..32).collect();
        let key = key_words(&key.try_into().expect("32"));
        let nonce = [0x0900_0000, 0x4a00_0000, 0];
        let mut out = [0u8; 64];
        chacha20_block(&key, 1, &nonce, &mut out);
        let expected = hex(concat!(
            "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e",
            "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
        ));
        assert_eq!(out.to_vec(), expected);
    }

    /// The seeded stream as an independent ChaCha20 (Python's `cryptography`) computes
    /// it: key `seed_le || label`, blocks 0..4 with a zero nonce, the first 32 bytes the
    /// next key, the rest handed out; then the same under the next key.
    #[test]
    fn seeded_stream_is_chacha20_with_fast_key_erasure() {
        let mut r = Rng::from_seed(42);
        assert_eq!(r.next_u64(), 0x2ee0_c0e1_f0f3_7c1e);
        assert_eq!(r.next_u64(), 0x0f40_5313_f84d_5cee);
        let mut skip = [0u8; OUTPUT_BYTES - 16];
        r.fill(&mut skip);
        let mut next = [0u8; 8];
        r.fill(&mut next);
        assert_eq!(next.to_vec(), hex("8eeae3d9d93900dd"));
    }

    #[test]
    fn os_generators_differ_and_forks_are_independent() {
        let mut a = Rng::from_os().expect("os randomness");
        let mut b = Rng::from_os().expect("os randomness");
        assert_ne!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
        let mut parent = Rng::from_seed(5);
        let mut child = parent.fork();
        let mut again = Rng::from_seed(5).fork();
        assert_eq!(child.next_u64(), again.next_u64(), "forks are reproducible");
        assert_ne!(child.next_u64(), parent.next_u64());
    }

    #[test]
    fn fill_across_refills_matches_word_draws() {
        let mut bytes = Rng::from_seed(9);
        let mut words = Rng::from_seed(9);
        let mut big = vec![0u8; 8 * 100];
        bytes.fill(&mut big);
        for chunk in big.chunks_exact(8) {
            assert_eq!(
                u64::from_le_bytes(chunk.try_into().expect("8")),
                words.next_u64()
            );
        }
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let text = format!("{:?}", Rng::from_seed(1));
        assert_eq!(text, "Rng { .. }");
    }

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
    }
}
