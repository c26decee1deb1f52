//! DTLS 1.2 key schedule (RFC 5246 section 5 PRF with SHA-256, RFC 7627 extended master
//! secret, RFC 5705 exporter) and AES-128-GCM record protection (RFC 5288).

use ring::aead;
use ring::hmac;

/// P_SHA256 (RFC 5246 section 5): `out.len()` bytes of PRF(secret, label, seed).
pub fn prf(secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut label_seed = Vec::with_capacity(label.len() + seed.len());
    label_seed.extend_from_slice(label);
    label_seed.extend_from_slice(seed);
    // A(1) = HMAC(secret, label + seed)
    let mut a = hmac::sign(&key, &label_seed);
    let mut written = 0;
    while written < out.len() {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(&label_seed);
        let block = ctx.sign();
        let n = (out.len() - written).min(block.as_ref().len());
        if let (Some(dst), Some(src)) = (out.get_mut(written..written + n), block.as_ref().get(..n))
        {
            dst.copy_from_slice(src);
        }
        written += n;
        a = hmac::sign(&key, a.as_ref());
    }
}

/// The extended master secret (RFC 7627): PRF(pre_master, "extended master secret", session_hash).
pub fn extended_master_secret(pre_master: &[u8], session_hash: &[u8]) -> [u8; 48] {
    let mut ms = [0u8; 48];
    prf(pre_master, b"extended master secret", session_hash, &mut ms);
    ms
}

/// Finished verify_data: PRF(master, label, Hash(handshake_messages))[..12].
pub fn verify_data(master: &[u8; 48], client: bool, transcript_hash: &[u8]) -> [u8; 12] {
    let mut out = [0u8; 12];
    let label: &[u8] = if client {
        b"client finished"
    } else {
        b"server finished"
    };
    prf(master, label, transcript_hash, &mut out);
    out
}

/// The RFC 5705 exporter without context: PRF(master, label, client_random + server_random).
pub fn export(
    master: &[u8; 48],
    label: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    out: &mut [u8],
) {
    let mut seed = [0u8; 64];
    seed[..32].copy_from_slice(client_random);
    seed[32..].copy_from_slice(server_random);
    prf(master, label, &seed, out);
}

/// The keys of one direction of AES-128-GCM record protection.
pub struct RecordKey {
    key: aead::LessSafeKey,
    salt: [u8; 4],
}

impl std::fmt::Debug for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKey(..)")
    }
}

/// Both directions, from the key block.
#[derive(Debug)]
pub struct RecordKeys {
    /// For records we send.
    pub write: RecordKey,
    /// For records we receive.
    pub read: RecordKey,
}

impl RecordKeys {
    /// Derive from the master secret: key block = PRF(master, "key expansion",
    /// server_random + client_random) = client key, server key, client IV, server IV.
    pub fn derive(
        master: &[u8; 48],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        is_client: bool,
    ) -> Option<RecordKeys> {
        let mut seed = [0u8; 64];
        seed[..32].copy_from_slice(server_random);
        seed[32..].copy_from_slice(client_random);
        let mut block = [0u8; 40];
        prf(master, b"key expansion", &seed, &mut block);
        let make = |key: &[u8], iv: &[u8]| -> Option<RecordKey> {
            let unbound = aead::UnboundKey::new(&aead::AES_128_GCM, key).ok()?;
            let mut salt = [0u8; 4];
            salt.copy_from_slice(iv);
            Some(RecordKey {
                key: aead::LessSafeKey::new(unbound),
                salt,
            })
        };
        let client = make(&block[0..16], &block[32..36])?;
        let server = make(&block[16..32], &block[36..40])?;
        Some(if is_client {
            RecordKeys {
                write: client,
                read: server,
            }
        } else {
            RecordKeys {
                write: server,
                read: client,
            }
        })
    }
}

fn aad(epoch: u16, sequence: u64, content_type: u8, version: u16, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..2].copy_from_slice(&epoch.to_be_bytes());
    a[2..8].copy_from_slice(&sequence.to_be_bytes()[2..]);
    a[8] = content_type;
    a[9..11].copy_from_slice(&version.to_be_bytes());
    a[11..13].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// Explicit nonce bytes (8) + tag (16) added to every protected record.
pub const GCM_OVERHEAD: usize = 8 + 16;

impl RecordKey {
    /// Encrypt `plaintext` into the record fragment: explicit nonce, ciphertext, tag.
    pub fn seal(
        &self,
        epoch: u16,
        sequence: u64,
        content_type: u8,
        version: u16,
        plaintext: &[u8],
    ) -> Option<Vec<u8>> {
        let mut explicit = [0u8; 8];
        explicit[..2].copy_from_slice(&epoch.to_be_bytes());
        explicit[2..].copy_from_slice(&sequence.to_be_bytes()[2..]);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(&explicit);
        let mut out = Vec::with_capacity(plaintext.len() + GCM_OVERHEAD);
        out.extend_from_slice(&explicit);
        let mut body = plaintext.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(epoch, sequence, content_type, version, plaintext.len())),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// Authenticate and decrypt a record fragment. `None` when the tag does not verify.
    pub fn open(
        &self,
        epoch: u16,
        sequence: u64,
        content_type: u8,
        version: u16,
        fragment: &[u8],
    ) -> Option<Vec<u8>> {
        if fragment.len() < GCM_OVERHEAD {
            return None;
        }
        let (explicit, rest) = fragment.split_at(8);
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&self.salt);
        nonce[4..].copy_from_slice(explicit);
        let plain_len = rest.len() - 16;
        let mut body = rest.to_vec();
        let plain = self
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad(epoch, sequence, content_type, version, plain_len)),
                &mut body,
            )
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_sha256_known_answer() {
        // The widely published TLS 1.2 PRF (SHA-256) test vector.
        let secret = [
            0x9b, 0xbe, 0x43, 0x6b, 0xa9, 0x40, 0xf0, 0x17, 0xb1, 0x76, 0x52, 0x84, 0x9a, 0x71,
            0xdb, 0x35,
        ];
        let seed = [
            0xa0, 0xba, 0x9f, 0x93, 0x6c, 0xda, 0x31, 0x18, 0x27, 0xa6, 0xf7, 0x96, 0xff, 0xd5,
            0x19, 0x8c,
        ];
        let mut out = [0u8; 100];
        prf(&secret, b"test label", &seed, &mut out);
        let expected: [u8; 100] = [
            0xe3, 0xf2, 0x29, 0xba, 0x72, 0x7b, 0xe1, 0x7b, 0x8d, 0x12, 0x26, 0x20, 0x55, 0x7c,
            0xd4, 0x53, 0xc2, 0xaa, 0xb2, 0x1d, 0x07, 0xc3, 0xd4, 0x95, 0x32, 0x9b, 0x52, 0xd4,
            0xe6, 0x1e, 0xdb, 0x5a, 0x6b, 0x30, 0x17, 0x91, 0xe9, 0x0d, 0x35, 0xc9, 0xc9, 0xa4,
            0x6b, 0x4e, 0x14, 0xba, 0xf9, 0xaf, 0x0f, 0xa0, 0x22, 0xf7, 0x07, 0x7d, 0xef, 0x17,
            0xab, 0xfd, 0x37, 0x97, 0xc0, 0x56, 0x4b, 0xab, 0x4f, 0xbc, 0x91, 0x66, 0x6e, 0x9d,
            0xef, 0x9b, 0x97, 0xfc, 0xe3, 0x4f, 0x79, 0x67, 0x89, 0xba, 0xa4, 0x80, 0x82, 0xd1,
            0x22, 0xee, 0x42, 0xc5, 0xa7, 0x2e, 0x5a, 0x51, 0x10, 0xff, 0xf7, 0x01, 0x87, 0x34,
            0x7b, 0x66,
        ];
        assert_eq!(out, expected);
    }

    #[test]
    fn seal_open_and_tamper() {
        let master = [7u8; 48];
        let (cr, sr) = ([1u8; 32], [2u8; 32]);
        let client = RecordKeys::derive(&master, &cr, &sr, true).expect("keys");
        let server = RecordKeys::derive(&master, &cr, &sr, false).expect("keys");
        let sealed = client.write.seal(1, 5, 23, 0xFEFD, b"hello").expect("seal");
        assert_eq!(
            server.read.open(1, 5, 23, 0xFEFD, &sealed).as_deref(),
            Some(&b"hello"[..])
        );
        assert!(
            server.read.open(1, 6, 23, 0xFEFD, &sealed).is_none(),
            "wrong sequence"
        );
        let mut bad = sealed.clone();
        bad[10] ^= 1;
        assert!(
            server.read.open(1, 5, 23, 0xFEFD, &bad).is_none(),
            "tampered"
        );
        assert!(
            client.read.open(1, 5, 23, 0xFEFD, &sealed).is_none(),
            "wrong direction"
        );
    }
}
