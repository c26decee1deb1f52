//! SRTP and SRTCP protection contexts (RFC 3711, RFC 7714): key derivation, rollover
//! counters, replay windows and the four profiles. One context protects one direction for
//! every SSRC of a session. Packets are transformed in place in the caller's buffer; the
//! AES and HMAC key schedules are computed once (the AES-CM keystream runs on the expanded
//! key by reference, the HMAC state keyed once is cloned per packet), the salt is kept as an
//! integer so an IV or nonce is three XORs, and a packet finds its stream with one cheap
//! hash of its SSRC, so the per-packet path does little beyond the cipher and does not
//! allocate.

use aes::cipher::{InnerIvInit, KeyInit, KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use ring::aead;
use sha1::Sha1;

use super::profile::SrtpProfile;
use crate::rtp::ssrc_map::{ssrc_map, SsrcMap};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha1 = Hmac<Sha1>;

/// Most SSRCs tracked by one context; packets of further SSRCs are refused.
pub const MAX_STREAMS: usize = 1024;
/// Replay window size in packets (RFC 3711 asks for at least 64).
const WINDOW: u64 = 128;

/// Why a packet was not protected or unprotected. The caller drops the packet and counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SrtpError {
    /// Shorter than a header plus tag, or a header that does not parse.
    #[error("SRTP packet too short or malformed")]
    Malformed,
    /// The authentication tag does not verify.
    #[error("SRTP authentication failed")]
    AuthenticationFailed,
    /// Already received (or older than the replay window).
    #[error("SRTP replay")]
    Replay,
    /// The caller's buffer has no room for the tag.
    #[error("no room in the buffer for the SRTP tag")]
    BufferTooSmall,
    /// Too many SSRCs in this context.
    #[error("too many SSRCs")]
    TooManyStreams,
    /// A key or salt of the wrong length.
    #[error("bad SRTP key material")]
    BadKey,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SrtpStats {
    /// Packets protected.
    pub protected: u64,
    /// Packets unprotected.
    pub unprotected: u64,
    /// Authentication failures.
    pub auth_failures: u64,
    /// Replays.
    pub replays: u64,
    /// Malformed packets.
    pub malformed: u64,
}

// One per context, never moved per packet: keeping the AES and HMAC states inline (instead
// of boxed) keeps the per-packet path free of allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Cipher {
    /// AES-CM (only AES-128 is negotiated for SRTP) and the keyed HMAC-SHA1 state.
    Cm {
        aes: aes::Aes128Enc,
        auth: HmacSha1,
    },
    Gcm(aead::LessSafeKey),
}

#[derive(Clone)]
struct SessionKeys {
    cipher: Cipher,
    /// The session salt as an integer, placed where the IV (AES-CM: the 14 bytes shifted
    /// left by 16 bits, RFC 3711 4.1.1) or the nonce (GCM: the first 12 bytes, RFC 7714 8.1)
    /// wants it, so that building one is three XORs.
    salt: u128,
}

#[derive(Debug, Clone, Default)]
struct Stream {
    roc: u32,
    highest_seq: u16,
    started: bool,
    /// Replay window over the 48-bit index: `max` and a bitmap of the WINDOW below it.
    max_index: u64,
    window: u128,
    /// SRTCP: next index to send / replay state for receive.
    rtcp_send_index: u32,
    rtcp_max: u32,
    rtcp_window: u128,
    rtcp_started: bool,
}

/// One direction of SRTP and SRTCP.
pub struct SrtpContext {
    profile: SrtpProfile,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    /// Per-SSRC state; a stream is added by the first packet that protects or verifies.
    streams: SsrcMap<Stream>,
    stats: SrtpStats,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("streams", &self.streams.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// AES-128 in counter mode over `data` with the 16-byte IV, on a key expanded once.
fn aes_cm(aes: &aes::Aes128Enc, iv: [u8; 16], data: &mut [u8]) {
    ctr::Ctr128BE::from_core(ctr::CtrCore::inner_iv_init(aes, &iv.into())).apply_keystream(data);
}

/// AES in counter mode over `data` with the 16-byte IV (key derivation only).
fn aes_ctr(key: &[u8], iv: &[u8; 16], data: &mut [u8]) {
    match key.len() {
        16 => {
            if let Ok(mut c) = Aes128Ctr::new_from_slices(key, iv) {
                c.apply_keystream(data);
            }
        }
        _ => {
            if let Ok(mut c) = Aes256Ctr::new_from_slices(key, iv) {
                c.apply_keystream(data);
            }
        }
    }
}

/// RFC 3711 4.3.1 key derivation with kdr = 0: AES-CM keystream of the master key with
/// IV = (master salt XOR label at byte 7) || 0x0000.
pub(crate) fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    let n = master_salt.len().min(14);
    iv[..n].copy_from_slice(&master_salt[..n]);
    iv[7] ^= label;
    out.iter_mut().for_each(|b| *b = 0);
    aes_ctr(master_key, &iv, out);
}

fn session_keys(
    profile: SrtpProfile,
    key: &[u8],
    salt: &[u8],
    rtcp: bool,
) -> Result<SessionKeys, SrtpError> {
    let base = if rtcp { 3 } else { 0 };
    let key_len = profile.master_key_len();
    let salt_len = profile.master_salt_len();
    let mut enc = [0u8; 32];
    derive(key, salt, base, &mut enc[..key_len]);
    let mut s = [0u8; 16];
    derive(key, salt, base + 2, &mut s[..salt_len]);
    // 14 bytes (AES-CM) or 12 (GCM), zero-padded to 16: the AES-CM IV wants the salt in
    // its first 14 bytes, the GCM nonce (bytes 4..16 of the integer) in its first 12.
    let salt_int = u128::from_be_bytes(s);
    let (cipher, salt) = match profile {
        SrtpProfile::Aes128CmHmacSha1_80 | SrtpProfile::Aes128CmHmacSha1_32 => {
            let mut auth_key = [0u8; 20];
            derive(key, salt, base + 1, &mut auth_key);
            let auth =
                <HmacSha1 as Mac>::new_from_slice(&auth_key).map_err(|_| SrtpError::BadKey)?;
            let aes =
                aes::Aes128Enc::new_from_slice(&enc[..key_len]).map_err(|_| SrtpError::BadKey)?;
            (Cipher::Cm { aes, auth }, salt_int)
        }
        SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => {
            let alg = if key_len == 16 {
                &aead::AES_128_GCM
            } else {
                &aead::AES_256_GCM
            };
            let unbound =
                aead::UnboundKey::new(alg, &enc[..key_len]).map_err(|_| SrtpError::BadKey)?;
            (Cipher::Gcm(aead::LessSafeKey::new(unbound)), salt_int >> 32)
        }
    };
    Ok(SessionKeys { cipher, salt })
}

/// The RTP header length (with CSRCs and extension), checked against the packet.
pub fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let first = *packet.first()?;
    if first >> 6 != 2 || packet.len() < 12 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(first & 0x0F);
    if first & 0x10 != 0 {
        let words = u16::from_be_bytes([*packet.get(len + 2)?, *packet.get(len + 3)?]);
        len += 4 + 4 * usize::from(words);
    }
    (len <= packet.len()).then_some(len)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        v.copy_from_slice(s);
    }
    u32::from_be_bytes(v)
}

fn window_check(max: u64, window: u128, started: bool, index: u64) -> bool {
    if !started || index > max {
        return true;
    }
    let back = max - index;
    back < WINDOW && window & (1u128 << back) == 0
}

fn window_mark(max: &mut u64, window: &mut u128, started: &mut bool, index: u64) {
    if !*started {
        *started = true;
        *max = index;
        *window = 1;
    } else if index > *max {
        let shift = index - *max;
        *window = if shift >= WINDOW {
            1
        } else {
            (*window << shift) | 1
        };
        *max = index;
    } else {
        let back = *max - index;
        if back < WINDOW {
            *window |= 1u128 << back;
        }
    }
}

impl SrtpContext {
    /// A context from a master key and salt.
    pub fn new(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> Result<SrtpContext, SrtpError> {
        if key.len() != profile.master_key_len() || salt.len() != profile.master_salt_len() {
            return Err(SrtpError::BadKey);
        }
        let rtp = session_keys(profile, key, salt, false)?;
        // Key the SSRC hash with secret state, so a peer cannot choose colliding SSRCs.
        let hash_key = (rtp.salt as u64) ^ ((rtp.salt >> 64) as u64);
        Ok(SrtpContext {
            profile,
            rtp,
            rtcp: session_keys(profile, key, salt, true)?,
            streams: ssrc_map(hash_key),
            stats: SrtpStats::default(),
        })
    }

    /// The outbound and inbound contexts from DTLS keying material (RFC 5764 4.2:
    /// client key, server key, client salt, server salt). `is_client` is our DTLS role.
    pub fn pair_from_keying_material(
        profile: SrtpProfile,
        material: &[u8],
        is_client: bool,
    ) -> Result<(SrtpContext, SrtpContext), SrtpError> {
        let k = profile.master_key_len();
        let s = profile.master_salt_len();
        if material.len() < 2 * (k + s) {
            return Err(SrtpError::BadKey);
        }
        let client_key = &material[..k];
        let server_key = &material[k..2 * k];
        let client_salt = &material[2 * k..2 * k + s];
        let server_salt = &material[2 * k + s..2 * (k + s)];
        let client = SrtpContext::new(profile, client_key, client_salt)?;
        let server = SrtpContext::new(profile, server_key, server_salt)?;
        Ok(if is_client {
            (client, server)
        } else {
            (server, client)
        })
    }

    /// The profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    /// Counters.
    pub fn stats(&self) -> SrtpStats {
        self.stats
    }

    fn rtp_tag_len(&self) -> usize {
        match self.profile {
            SrtpProfile::Aes128CmHmacSha1_80 => 10,
            SrtpProfile::Aes128CmHmacSha1_32 => 4,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => 16,
        }
    }

    /// Bytes `protect_rtp` adds.
    pub fn rtp_overhead(&self) -> usize {
        self.rtp_tag_len()
    }

    /// Bytes `protect_rtcp` adds.
    pub fn rtcp_overhead(&self) -> usize {
        4 + match self.profile {
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => 16,
            _ => 10,
        }
    }

    /// The state of `ssrc`, added if new and there is room.
    fn stream(streams: &mut SsrcMap<Stream>, ssrc: u32) -> Result<&mut Stream, SrtpError> {
        let full = streams.len() >= MAX_STREAMS;
        match streams.entry(ssrc) {
            std::collections::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(_) if full => Err(SrtpError::TooManyStreams),
            std::collections::hash_map::Entry::Vacant(e) => Ok(e.insert(Stream::default())),
        }
    }

    /// The AES-CM IV (RFC 3711 4.1.1): (salt << 16) XOR (SSRC << 64) XOR (index << 16).
    fn cm_iv(salt: u128, ssrc: u32, index: u64) -> [u8; 16] {
        (salt ^ (u128::from(ssrc) << 64) ^ (u128::from(index) << 16)).to_be_bytes()
    }

    /// The GCM nonce (RFC 7714 8.1 and 9.1): 00 00 || SSRC || the 48-bit packet index (SRTP:
    /// ROC || SEQ; SRTCP: 00 00 || 0 || SRTCP index), XOR the 96-bit salt.
    fn gcm_nonce(salt: u128, ssrc: u32, index: u64) -> aead::Nonce {
        let value = salt ^ (u128::from(ssrc) << 48) ^ u128::from(index & 0xFFFF_FFFF_FFFF);
        let bytes = value.to_be_bytes();
        let mut n = [0u8; 12];
        n.copy_from_slice(&bytes[4..]);
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Encrypt and authenticate the RTP packet in `buf[..len]` in place; returns the new length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.rtp_tag_len();
        let packet = buf.get(..len).ok_or(SrtpError::Malformed)?;
        let header_len = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        if buf.len() < len + tag_len {
            return Err(SrtpError::BufferTooSmall);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = be32(buf, 8);
        let stream = Self::stream(&mut self.streams, ssrc)?;
        // Sender ROC: increments when the sequence number wraps.
        if stream.started
            && seq < stream.highest_seq
            && stream.highest_seq.wrapping_sub(seq) > 0x8000
        {
            stream.roc = stream.roc.wrapping_add(1);
        }
        if !stream.started || seq.wrapping_sub(stream.highest_seq) < 0x8000 {
            stream.highest_seq = seq;
        }
        stream.started = true;
        let roc = stream.roc;
        let index = (u64::from(roc) << 16) | u64::from(seq);
        match &self.rtp.cipher {
            Cipher::Cm { aes, auth } => {
                let iv = Self::cm_iv(self.rtp.salt, ssrc, index);
                aes_cm(aes, iv, &mut buf[header_len..len]);
                let mut mac = auth.clone();
                mac.update(&buf[..len]);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                buf[len..len + tag_len].copy_from_slice(&tag[..tag_len]);
            }
            Cipher::Gcm(key) => {
                let nonce = Self::gcm_nonce(self.rtp.salt, ssrc, index);
                let (head, rest) = buf.split_at_mut(header_len);
                let tag = key
                    .seal_in_place_separate_tag(
                        nonce,
                        aead::Aad::from(&head[..]),
                        &mut rest[..len - header_len],
                    )
                    .map_err(|_| SrtpError::Malformed)?;
                buf[len..len + tag_len].copy_from_slice(tag.as_ref());
            }
        }
        self.stats.protected += 1;
        Ok(len + tag_len)
    }

    /// Count the outcome of an unprotect in the stats.
    fn count(&mut self, result: Result<usize, SrtpError>) -> Result<usize, SrtpError> {
        match result {
            Ok(_) => self.stats.unprotected += 1,
            Err(SrtpError::AuthenticationFailed) => self.stats.auth_failures += 1,
            Err(SrtpError::Replay) => self.stats.replays += 1,
            Err(_) => self.stats.malformed += 1,
        }
        result
    }

    /// Authenticate and decrypt the SRTP packet in `buf[..len]` in place; returns the plain
    /// length. On error nothing changes (ROC and replay state advance only on success).
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.rtp_tag_len();
        let result = self.unprotect_rtp_inner(buf, len, tag_len);
        self.count(result)
    }

    fn unprotect_rtp_inner(
        &mut self,
        buf: &mut [u8],
        len: usize,
        tag_len: usize,
    ) -> Result<usize, SrtpError> {
        let packet = buf.get(..len).ok_or(SrtpError::Malformed)?;
        if len < 12 + tag_len {
            return Err(SrtpError::Malformed);
        }
        let body_len = len - tag_len;
        let header_len = rtp_header_len(&packet[..body_len]).ok_or(SrtpError::Malformed)?;
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = be32(buf, 8);
        // One lookup; a new SSRC is inserted only once its first packet verifies.
        let full = self.streams.len() >= MAX_STREAMS;
        let mut stream = self.streams.get_mut(&ssrc);
        if stream.is_none() && full {
            return Err(SrtpError::TooManyStreams);
        }
        let (started, max_index, window) = stream
            .as_deref()
            .map_or((false, 0, 0), |s| (s.started, s.max_index, s.window));
        // RFC 3711 appendix A: guess the ROC from the highest sequence seen.
        let roc = match stream.as_deref() {
            Some(state) if state.started => {
                let s_l = state.highest_seq;
                if s_l < 0x8000 {
                    if seq > s_l && seq - s_l > 0x8000 {
                        state.roc.wrapping_sub(1)
                    } else {
                        state.roc
                    }
                } else if s_l - 0x8000 > seq {
                    state.roc.wrapping_add(1)
                } else {
                    state.roc
                }
            }
            _ => 0,
        };
        let index = (u64::from(roc) << 16) | u64::from(seq);
        if !window_check(max_index, window, started, index) {
            return Err(SrtpError::Replay);
        }
        match &self.rtp.cipher {
            Cipher::Cm { aes, auth } => {
                let mut mac = auth.clone();
                mac.update(&buf[..body_len]);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                let ok = tag[..tag_len]
                    .iter()
                    .zip(&buf[body_len..len])
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0;
                if !ok {
                    return Err(SrtpError::AuthenticationFailed);
                }
                let iv = Self::cm_iv(self.rtp.salt, ssrc, index);
                aes_cm(aes, iv, &mut buf[header_len..body_len]);
            }
            Cipher::Gcm(key) => {
                let nonce = Self::gcm_nonce(self.rtp.salt, ssrc, index);
                // Decrypt in place: ring wants ciphertext || tag contiguous, which it is.
                let (head, rest) = buf.split_at_mut(header_len);
                let sealed = &mut rest[..len - header_len];
                key.open_in_place(nonce, aead::Aad::from(&head[..]), sealed)
                    .map_err(|_| SrtpError::AuthenticationFailed)?;
            }
        }
        let stream = match stream.take() {
            Some(stream) => stream,
            None => Self::stream(&mut self.streams, ssrc)?,
        };
        window_mark(
            &mut stream.max_index,
            &mut stream.window,
            &mut stream.started,
            index,
        );
        // The highest index seen defines s_l and the ROC for the next guess.
        stream.roc = (stream.max_index >> 16) as u32;
        stream.highest_seq = (stream.max_index & 0xFFFF) as u16;
        Ok(body_len)
    }

    /// Protect the RTCP compound packet in `buf[..len]` in place; returns the new length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < 8 {
            return Err(SrtpError::Malformed);
        }
        let overhead = self.rtcp_overhead();
        if buf.len() < len + overhead {
            return Err(SrtpError::BufferTooSmall);
        }
        let ssrc = be32(buf, 4);
        let stream = Self::stream(&mut self.streams, ssrc)?;
        let index = stream.rtcp_send_index & 0x7FFF_FFFF;
        stream.rtcp_send_index = stream.rtcp_send_index.wrapping_add(1) & 0x7FFF_FFFF;
        let e_index = 0x8000_0000 | index;
        match &self.rtcp.cipher {
            Cipher::Cm { aes, auth } => {
                let iv = Self::cm_iv(self.rtcp.salt, ssrc, u64::from(index));
                aes_cm(aes, iv, &mut buf[8..len]);
                buf[len..len + 4].copy_from_slice(&e_index.to_be_bytes());
                let mut mac = auth.clone();
                mac.update(&buf[..len + 4]);
                let tag = mac.finalize().into_bytes();
                buf[len + 4..len + 14].copy_from_slice(&tag[..10]);
                self.stats.protected += 1;
                Ok(len + 14)
            }
            Cipher::Gcm(key) => {
                let nonce = Self::gcm_nonce(self.rtcp.salt, ssrc, u64::from(index));
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index.to_be_bytes());
                let tag = key
                    .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), &mut buf[8..len])
                    .map_err(|_| SrtpError::Malformed)?;
                buf[len..len + 16].copy_from_slice(tag.as_ref());
                buf[len + 16..len + 20].copy_from_slice(&e_index.to_be_bytes());
                self.stats.protected += 1;
                Ok(len + 20)
            }
        }
    }

    /// Authenticate and decrypt the SRTCP packet in `buf[..len]`; returns the plain length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let result = self.unprotect_rtcp_inner(buf, len);
        self.count(result)
    }

    fn unprotect_rtcp_inner(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let overhead = self.rtcp_overhead();
        if len < 8 + overhead || buf.len() < len {
            return Err(SrtpError::Malformed);
        }
        let ssrc = be32(buf, 4);
        let full = self.streams.len() >= MAX_STREAMS;
        let mut stream = self.streams.get_mut(&ssrc);
        if stream.is_none() && full {
            return Err(SrtpError::TooManyStreams);
        }
        let (e_index, plain_len) = match &self.rtcp.cipher {
            Cipher::Cm { .. } => (be32(buf, len - 14), len - 14),
            Cipher::Gcm(_) => (be32(buf, len - 4), len - 20),
        };
        let index = e_index & 0x7FFF_FFFF;
        let (max, window, started) = stream.as_deref().map_or((0, 0, false), |s| {
            (s.rtcp_max, s.rtcp_window, s.rtcp_started)
        });
        if !window_check(u64::from(max), window, started, u64::from(index)) {
            return Err(SrtpError::Replay);
        }
        let encrypted = e_index & 0x8000_0000 != 0;
        match &self.rtcp.cipher {
            Cipher::Cm { aes, auth } => {
                let mut mac = auth.clone();
                mac.update(&buf[..len - 10]);
                let tag = mac.finalize().into_bytes();
                let ok = tag[..10]
                    .iter()
                    .zip(&buf[len - 10..len])
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0;
                if !ok {
                    return Err(SrtpError::AuthenticationFailed);
                }
                if encrypted {
                    let iv = Self::cm_iv(self.rtcp.salt, ssrc, u64::from(index));
                    aes_cm(aes, iv, &mut buf[8..plain_len]);
                }
            }
            Cipher::Gcm(key) if encrypted => {
                let nonce = Self::gcm_nonce(self.rtcp.salt, ssrc, u64::from(index));
                let mut aad = [0u8; 12];
                aad[..8].copy_from_slice(&buf[..8]);
                aad[8..].copy_from_slice(&e_index.to_be_bytes());
                key.open_in_place(nonce, aead::Aad::from(aad), &mut buf[8..len - 4])
                    .map_err(|_| SrtpError::AuthenticationFailed)?;
            }
            Cipher::Gcm(key) => {
                // RFC 7714 9.3: tagged but not encrypted (E = 0). The associated data is the
                // whole RTCP packet followed by the ESRTCP word, and the cipher is the tag
                // alone. Move the tag out so that packet and ESRTCP word are contiguous, and
                // put it back if it does not verify.
                let nonce = Self::gcm_nonce(self.rtcp.salt, ssrc, u64::from(index));
                let mut tag = [0u8; 16];
                tag.copy_from_slice(&buf[plain_len..plain_len + 16]);
                buf[plain_len..plain_len + 4].copy_from_slice(&e_index.to_be_bytes());
                let mut opened = tag;
                let verified = key
                    .open_in_place(nonce, aead::Aad::from(&buf[..plain_len + 4]), &mut opened)
                    .is_ok();
                if !verified {
                    buf[plain_len..plain_len + 16].copy_from_slice(&tag);
                    return Err(SrtpError::AuthenticationFailed);
                }
            }
        }
        let stream = match stream.take() {
            Some(stream) => stream,
            None => Self::stream(&mut self.streams, ssrc)?,
        };
        let mut max = u64::from(stream.rtcp_max);
        window_mark(
            &mut max,
            &mut stream.rtcp_window,
            &mut stream.rtcp_started,
            u64::from(index),
        );
        stream.rtcp_max = max as u32;
        Ok(plain_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn rfc3711_b2_aes_cm_keystream() {
        let key = hex("2B7E151628AED2A6ABF7158809CF4F3C");
        let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")
            .try_into()
            .expect("iv");
        let mut out = [0u8; 48];
        aes_ctr(&key, &iv, &mut out);
        assert_eq!(out[..16], hex("E03EAD0935C95E80E166B16DD92B4EB4")[..]);
        assert_eq!(out[16..32], hex("D23513162B02D0F72A43A2FE4A5F97AB")[..]);
        assert_eq!(out[32..48], hex("41E95B3BB0A2E8DD477901E4FCA894C0")[..]);
        // The per-packet path: the salt as an integer, the IV from it, the expanded key.
        let mut salt = [0u8; 16];
        salt[..14].copy_from_slice(&iv[..14]);
        let salt = u128::from_be_bytes(salt);
        assert_eq!(SrtpContext::cm_iv(salt, 0, 0), iv);
        let aes = aes::Aes128Enc::new_from_slice(&key).expect("key");
        let mut again = [0u8; 48];
        aes_cm(&aes, iv, &mut again);
        assert_eq!(again, out);
        // RFC 3711 4.1.1 byte by byte: IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16).
        let (ssrc, index) = (0x1234_5678u32, 0x0000_9abc_def0_1357u64);
        let mut expected = iv;
        for (b, x) in expected[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= x;
        }
        for (b, x) in expected[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= x;
        }
        assert_eq!(SrtpContext::cm_iv(salt, ssrc, index), expected);
    }

    #[test]
    fn rfc3711_b3_key_derivation() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut enc = [0u8; 16];
        derive(&key, &salt, 0, &mut enc);
        assert_eq!(enc[..], hex("C61E7A93744F39EE10734AFE3FF7A087")[..]);
        let mut s = [0u8; 14];
        derive(&key, &salt, 2, &mut s);
        assert_eq!(s[..], hex("30CBBC08863D8C85D49DB34A9AE1")[..]);
        let mut auth = [0u8; 20];
        derive(&key, &salt, 1, &mut auth);
        assert_eq!(
            auth[..],
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")[..]
        );
    }

    /// A context keyed with RFC 7714's *session* key and salt for both RTP and RTCP, skipping
    /// key derivation: sections 16 and 17 publish session keys and no master key, so no input
    /// to `SrtpContext::new` would produce them. Everything after key derivation is the
    /// production path.
    fn rfc7714_context(profile: SrtpProfile) -> SrtpContext {
        let key: Vec<u8> = (0..profile.master_key_len() as u8).collect();
        let mut salt = [0u8; 14];
        salt[..12].copy_from_slice(b"Quid pro quo");
        let keys = || {
            let alg = if key.len() == 16 {
                &aead::AES_128_GCM
            } else {
                &aead::AES_256_GCM
            };
            let unbound = aead::UnboundKey::new(alg, &key).expect("key");
            let mut padded = [0u8; 16];
            padded[..14].copy_from_slice(&salt);
            SessionKeys {
                cipher: Cipher::Gcm(aead::LessSafeKey::new(unbound)),
                salt: u128::from_be_bytes(padded) >> 32,
            }
        };
        SrtpContext {
            profile,
            rtp: keys(),
            rtcp: keys(),
            streams: ssrc_map(0),
            stats: SrtpStats::default(),
        }
    }

    // RFC 7714 section 16: the RTP packet of every RTP vector (SSRC 0x5501a0b2, SEQ 0xf17b,
    // ROC 0), payload "Gallia est omnis divisa in partes tres".
    const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c
                               69612065 7374206f 6d6e6973 20646976
                               69736120 696e2070 61727465 73207472
                               6573";
    // 16.1.1 "Encrypted and tagged packet" (AEAD_AES_128_GCM).
    const RFC7714_SRTP_128: &str = "8040f17b 8041f8d3 5501a0b2 f24de3a3
                                    fb34de6c acba861c 9d7e4bca be633bd5
                                    0d294e6f 42a5f47a 51c7d19b 36de3adf
                                    8833899d 7f27beb1 6a9152cf 765ee439
                                    0cce";
    // 16.2.1 "Encrypted and tagged packet" (AEAD_AES_256_GCM).
    const RFC7714_SRTP_256: &str = "8040f17b 8041f8d3 5501a0b2 32b1de78
                                    a822fe12 ef9f78fa 332e33aa b1801238
                                    9a58e2f3 b50b2a02 76ffae0f 1ba63799
                                    b87b7aa3 db36dfff d6b0f9bb 7878d7a7
                                    6c13";
    // RFC 7714 sections 17.1 to 17.4: the RTCP packet (SSRC "Mars", SRTCP index 0x5d4).
    const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032
                                52545020 0000042a 0000e930 4c756e61
                                deadbeef deadbeef deadbeef deadbeef
                                deadbeef";
    // 17.1 "Encrypted and tagged packet" (AEAD_AES_128_GCM, E = 1).
    const RFC7714_SRTCP_128: &str = "81c8000d 4d617273 63e94885 dcdab67c
                                     a727d766 2f6b7e99 7ff5c0f7 6c06f32d
                                     c676a5f1 730d6fda 4ce09b46 86303ded
                                     0bb9275b c84aa458 96cf4d2f c5abf872
                                     45d9eade 800005d4";
    // 17.2 "Decrypting the following packet" (AEAD_AES_256_GCM, E = 1).
    const RFC7714_SRTCP_256: &str = "81c8000d 4d617273 d50ae4d1 f5ce5d30
                                     4ba297e4 7d470c28 2c3ece5d bffe0a50
                                     a2eaa5c1 110555be 8415f658 c61de047
                                     6f1b6fad 1d1eb30c 4446839f 57ff6f6c
                                     b26ac3be 800005d4";
    // 17.3 "Tagged packet" (AEAD_AES_128_GCM, tagged only, E = 0).
    const RFC7714_SRTCP_128_TAG_ONLY: &str = "81c8000d 4d617273 4e545031 4e545032
                                              52545020 0000042a 0000e930 4c756e61
                                              deadbeef deadbeef deadbeef deadbeef
                                              deadbeef 841dd968 3dd78ec9 2ae58790
                                              125f62b3 000005d4";
    // 17.4 "Verifying the following packet" (AEAD_AES_256_GCM, tagged only, E = 0).
    const RFC7714_SRTCP_256_TAG_ONLY: &str = "81c8000d 4d617273 4e545031 4e545032
                                              52545020 0000042a 0000e930 4c756e61
                                              deadbeef deadbeef deadbeef deadbeef
                                              deadbeef 91db4afb feee5a97 8fab4393
                                              ed2615fe 000005d4";

    #[test]
    fn rfc7714_16_srtp_protect_and_unprotect() {
        for (profile, sealed) in [
            (SrtpProfile::AeadAes128Gcm, RFC7714_SRTP_128),
            (SrtpProfile::AeadAes256Gcm, RFC7714_SRTP_256),
        ] {
            let plain = hex(RFC7714_RTP);
            let sealed = hex(sealed);
            // 16.x.1: protecting the packet gives the RFC's octets exactly.
            let mut tx = rfc7714_context(profile);
            let mut buf = plain.clone();
            buf.resize(plain.len() + 16, 0);
            let n = tx.protect_rtp(&mut buf, plain.len()).expect("protect");
            assert_eq!(&buf[..n], &sealed[..], "{profile:?} 16.x.1 encryption");
            // 16.x.2: unprotecting the RFC's packet gives the plaintext back.
            let mut rx = rfc7714_context(profile);
            let mut buf = sealed.clone();
            let m = rx.unprotect_rtp(&mut buf, sealed.len()).expect("unprotect");
            assert_eq!(&buf[..m], &plain[..], "{profile:?} 16.x.2 decryption");
            // A flipped bit anywhere (header = AAD, ciphertext, tag) fails authentication.
            for at in [1, 11, 12, 40, sealed.len() - 1] {
                let mut rx = rfc7714_context(profile);
                let mut bad = sealed.clone();
                bad[at] ^= 0x01;
                assert_eq!(
                    rx.unprotect_rtp(&mut bad, sealed.len()),
                    Err(SrtpError::AuthenticationFailed),
                    "{profile:?} byte {at}"
                );
                assert_eq!(rx.stats().auth_failures, 1);
            }
        }
    }

    #[test]
    fn rfc7714_17_srtcp_protect_and_unprotect() {
        for (profile, sealed) in [
            (SrtpProfile::AeadAes128Gcm, RFC7714_SRTCP_128),
            (SrtpProfile::AeadAes256Gcm, RFC7714_SRTCP_256),
        ] {
            let plain = hex(RFC7714_RTCP);
            let sealed = hex(sealed);
            // 17.1 (and the encryption that 17.2's input came from), at SRTCP index 0x5d4.
            let mut tx = rfc7714_context(profile);
            SrtpContext::stream(&mut tx.streams, 0x4d61_7273)
                .expect("stream")
                .rtcp_send_index = 0x5d4;
            let mut buf = plain.clone();
            buf.resize(plain.len() + 20, 0);
            let n = tx.protect_rtcp(&mut buf, plain.len()).expect("protect");
            assert_eq!(&buf[..n], &sealed[..], "{profile:?} encryption");
            // 17.2 (and the decryption of 17.1's output).
            let mut rx = rfc7714_context(profile);
            let mut buf = sealed.clone();
            let m = rx
                .unprotect_rtcp(&mut buf, sealed.len())
                .expect("unprotect");
            assert_eq!(&buf[..m], &plain[..], "{profile:?} decryption");
            // The ESRTCP word is authenticated: clearing the E flag or changing the index fails.
            for at in [5, 20, sealed.len() - 5, sealed.len() - 4, sealed.len() - 1] {
                let mut rx = rfc7714_context(profile);
                let mut bad = sealed.clone();
                bad[at] ^= if at == sealed.len() - 4 { 0x80 } else { 0x01 };
                assert_eq!(
                    rx.unprotect_rtcp(&mut bad, sealed.len()),
                    Err(SrtpError::AuthenticationFailed),
                    "{profile:?} byte {at}"
                );
            }
        }
    }

    #[test]
    fn rfc7714_17_srtcp_tagged_only_verifies() {
        for (profile, tagged) in [
            (SrtpProfile::AeadAes128Gcm, RFC7714_SRTCP_128_TAG_ONLY),
            (SrtpProfile::AeadAes256Gcm, RFC7714_SRTCP_256_TAG_ONLY),
        ] {
            let plain = hex(RFC7714_RTCP);
            let tagged = hex(tagged);
            // 17.3 / 17.4: a packet tagged but not encrypted (E = 0) verifies and comes back
            // unchanged.
            let mut rx = rfc7714_context(profile);
            let mut buf = tagged.clone();
            let m = rx.unprotect_rtcp(&mut buf, tagged.len()).expect("verify");
            assert_eq!(&buf[..m], &plain[..], "{profile:?}");
            // Replayed: refused.
            let mut again = tagged.clone();
            assert_eq!(
                rx.unprotect_rtcp(&mut again, tagged.len()),
                Err(SrtpError::Replay)
            );
            // Any flipped bit of the clear packet or the tag fails, and leaves the bytes alone.
            for at in [0, 9, 40, tagged.len() - 6] {
                let mut rx = rfc7714_context(profile);
                let mut bad = tagged.clone();
                bad[at] ^= 0x01;
                let before = bad.clone();
                assert_eq!(
                    rx.unprotect_rtcp(&mut bad, tagged.len()),
                    Err(SrtpError::AuthenticationFailed),
                    "{profile:?} byte {at}"
                );
                assert_eq!(bad, before, "a refused packet is left as it came");
            }
        }
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x90, 96, 0, 0, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 0xBE, 0xDE, 0, 1, 0x10, 0xAA, 0, 0,
        ];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair(profile: SrtpProfile) -> (SrtpContext, SrtpContext) {
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| i as u8)
            .collect();
        let (tx, _) =
            SrtpContext::pair_from_keying_material(profile, &material, true).expect("client");
        let (_, rx) =
            SrtpContext::pair_from_keying_material(profile, &material, false).expect("server");
        (tx, rx)
    }

    #[test]
    fn every_profile_round_trips_rtp_and_rtcp() {
        for profile in SrtpProfile::ALL {
            let (mut tx, mut rx) = pair(profile);
            let plain = rtp(1, 0x1234_5678, b"hello srtp payload");
            let mut buf = plain.clone();
            buf.resize(plain.len() + 32, 0);
            let n = tx.protect_rtp(&mut buf, plain.len()).expect("protect");
            assert_eq!(n, plain.len() + tx.rtp_overhead());
            assert_ne!(&buf[20..plain.len()], &plain[20..], "{profile:?} encrypts");
            let m = rx.unprotect_rtp(&mut buf, n).expect("unprotect");
            assert_eq!(&buf[..m], &plain[..], "{profile:?}");
            let rtcp_plain = vec![
                0x80, 200, 0, 6, 0x12, 0x34, 0x56, 0x78, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
            ];
            let mut b = rtcp_plain.clone();
            b.resize(rtcp_plain.len() + 32, 0);
            let n = tx
                .protect_rtcp(&mut b, rtcp_plain.len())
                .expect("protect rtcp");
            let m = rx.unprotect_rtcp(&mut b, n).expect("unprotect rtcp");
            assert_eq!(&b[..m], &rtcp_plain[..], "{profile:?} rtcp");
        }
    }

    #[test]
    fn rejections_change_nothing() {
        for profile in SrtpProfile::ALL {
            let (mut tx, mut rx) = pair(profile);
            let plain = rtp(7, 42, &[1; 100]);
            let mut good = plain.clone();
            good.resize(plain.len() + 16, 0);
            let n = tx.protect_rtp(&mut good, plain.len()).expect("protect");
            for at in [0usize, 5, 30, n - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x01;
                if at == 0 {
                    // Version bits broken: malformed, not even authenticated.
                    assert!(rx.unprotect_rtp(&mut bad, n).is_err());
                } else {
                    assert_eq!(
                        rx.unprotect_rtp(&mut bad, n),
                        Err(SrtpError::AuthenticationFailed),
                        "{profile:?} byte {at}"
                    );
                }
            }
            assert!(
                rx.unprotect_rtp(&mut good.clone(), n - 1).is_err(),
                "truncated"
            );
            let mut copy = good.clone();
            assert!(
                rx.unprotect_rtp(&mut copy, n).is_ok(),
                "genuine packet still accepted after rejections"
            );
            let mut replay = good.clone();
            assert_eq!(rx.unprotect_rtp(&mut replay, n), Err(SrtpError::Replay));
            let s = rx.stats();
            assert_eq!((s.replays, s.unprotected), (1, 1));
            assert!(s.auth_failures >= 3);
        }
    }

    #[test]
    fn rollover_and_reordering() {
        for profile in [SrtpProfile::Aes128CmHmacSha1_80, SrtpProfile::AeadAes128Gcm] {
            let (mut tx, mut rx) = pair(profile);
            let mut packets = Vec::new();
            for i in 0..200u32 {
                let seq = (65_500u32 + i) as u16;
                let plain = rtp(seq, 9, &i.to_be_bytes());
                let mut b = plain.clone();
                b.resize(plain.len() + 16, 0);
                let n = tx.protect_rtp(&mut b, plain.len()).expect("protect");
                b.truncate(n);
                packets.push((plain, b));
            }
            // Deliver with local reordering (swap neighbours).
            for pair in packets
                .chunks(2)
                .rev()
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                for (plain, sealed) in pair.iter().rev() {
                    let mut b = sealed.clone();
                    let n = b.len();
                    let m = rx
                        .unprotect_rtp(&mut b, n)
                        .expect("unprotect across rollover");
                    assert_eq!(&b[..m], &plain[..]);
                }
            }
            assert_eq!(rx.stats().unprotected, 200);
        }
    }

    #[test]
    fn quickcheck_protect_then_unprotect() {
        fn prop(payload: Vec<u8>, seq: u16, ssrc: u32, which: u8) -> TestResult {
            let profile = SrtpProfile::ALL[usize::from(which) % 4];
            let (mut tx, mut rx) = pair(profile);
            let plain = rtp(seq, ssrc, &payload);
            let mut b = plain.clone();
            b.resize(plain.len() + 16, 0);
            let Ok(n) = tx.protect_rtp(&mut b, plain.len()) else {
                return TestResult::failed();
            };
            let Ok(m) = rx.unprotect_rtp(&mut b, n) else {
                return TestResult::failed();
            };
            TestResult::from_bool(b[..m] == plain[..])
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<u8>, u16, u32, u8) -> TestResult);
    }

    #[test]
    fn quickcheck_garbage_never_panics() {
        fn prop(data: Vec<u8>, which: u8) -> bool {
            let profile = SrtpProfile::ALL[usize::from(which) % 4];
            let (_, mut rx) = pair(profile);
            let mut b = data.clone();
            let n = b.len();
            let _ = rx.unprotect_rtp(&mut b, n);
            let mut b = data;
            let _ = rx.unprotect_rtcp(&mut b, n);
            true
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>, u8) -> bool);
    }
}
