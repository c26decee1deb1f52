//! Send-side retransmission history for one SSRC, and RTX (RFC 4588) packets.
//!
//! [`RetransmitHistory`] keeps the packets recently sent on a stream so a NACK can be
//! answered: a ring allocated once, bounded by packet count, total payload bytes and age
//! ([`RetransmitConfig`]: 512 packets, 1 MB, 1 s by default; the oldest go first). Storing
//! a packet clones its `Bytes` payload (a reference count, no copy, no allocation).
//!
//! A NACK's sequence numbers are looked up; each packet found is resent at most once per
//! `max(RTT, min_resend_interval)` (a flood of NACKs cannot multiply our sending), either
//! as is (plain retransmission, when RTX is not negotiated) or wrapped in RTX: its own
//! SSRC and payload type (`a=fmtp:<rtx> apt=<original>`), its own sequence counter, and a
//! payload of the original sequence number (OSN) followed by the original payload.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::RtpPacket;
use crate::rtp::generic_nack::nack_sequences;

/// Bounds and timing of a [`RetransmitHistory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetransmitConfig {
    /// Packets kept (512; the ring is allocated with this many slots).
    pub max_packets: usize,
    /// Payload bytes kept (1,000,000).
    pub max_bytes: usize,
    /// Packets older than this are dropped (1 s).
    pub max_age: Duration,
    /// The shortest time between two resends of one packet while the RTT is smaller
    /// (10 ms).
    pub min_resend_interval: Duration,
    /// The RTT assumed before [`RetransmitHistory::set_rtt`] gives one (100 ms).
    pub initial_rtt: Duration,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        RetransmitConfig {
            max_packets: 512,
            max_bytes: 1_000_000,
            max_age: Duration::from_secs(1),
            min_resend_interval: Duration::from_millis(10),
            initial_rtt: Duration::from_millis(100),
        }
    }
}

/// The RTX stream of a sender (RFC 4588 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtxConfig {
    /// The RTX SSRC.
    pub ssrc: u32,
    /// The RTX payload type (whose `apt` is the original's).
    pub payload_type: u8,
    /// The first RTX sequence number (random, like any RTP stream's).
    pub first_sequence: u16,
}

/// Counters of a [`RetransmitHistory`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetransmitStats {
    /// NACK packets received.
    pub nacks_received: u64,
    /// Packets asked for by those NACKs.
    pub packets_requested: u64,
    /// Packets resent (plain or RTX).
    pub packets_retransmitted: u64,
    /// Payload bytes resent as RTX (OSN included).
    pub rtx_bytes: u64,
    /// Requested packets no longer (or never) in the history.
    pub not_found: u64,
    /// Requested packets resent too recently to resend again.
    pub suppressed: u64,
}

/// A packet kept for retransmission.
#[derive(Debug, Clone)]
struct Slot {
    /// Extended sequence number.
    sequence: i64,
    timestamp: u32,
    marker: bool,
    payload_type: u8,
    payload: Bytes,
    sent_at: Instant,
    resent_at: Option<Instant>,
}

/// The retransmission history of one sent SSRC.
#[derive(Debug, Clone)]
pub struct RetransmitHistory {
    config: RetransmitConfig,
    ssrc: u32,
    rtx: Option<RtxConfig>,
    rtx_sequence: u16,
    /// Packets in increasing extended sequence order.
    ring: VecDeque<Slot>,
    bytes: usize,
    rtt: Duration,
    stats: RetransmitStats,
}

/// Why a requested packet was not resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResendRefused {
    /// Not in the history (too old, or never sent).
    NotFound,
    /// Resent less than an RTT ago.
    TooSoon,
}

impl RetransmitHistory {
    /// A history for `ssrc` with its ring allocated; `rtx` when RTX is negotiated.
    pub fn new(config: RetransmitConfig, ssrc: u32, rtx: Option<RtxConfig>) -> RetransmitHistory {
        RetransmitHistory {
            config,
            ssrc,
            rtx,
            rtx_sequence: rtx.map_or(0, |r| r.first_sequence),
            ring: VecDeque::with_capacity(config.max_packets),
            bytes: 0,
            rtt: config.initial_rtt,
            stats: RetransmitStats::default(),
        }
    }

    /// Set the round-trip time (from RTCP reports).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// The counters.
    pub fn stats(&self) -> RetransmitStats {
        self.stats
    }

    /// Packets kept now.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Payload bytes kept now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_front(&mut self) {
        if let Some(old) = self.ring.pop_front() {
            self.bytes -= old.payload.len();
        }
    }

    /// Keep a sent packet (its SSRC is this stream's). A packet older than the newest but
    /// not older than the oldest kept (a forwarder passing on a retransmission late) is
    /// kept in order; one already kept is not kept twice; one older than everything kept
    /// (a sequence number going back: a new sender on the SSRC) restarts the history.
    pub fn store(&mut self, packet: &RtpPacket, now: Instant) {
        let size = packet.payload.len();
        if size > self.config.max_bytes || self.config.max_packets == 0 {
            return;
        }
        let sequence = match (self.ring.front(), self.ring.back()) {
            (Some(first), Some(last)) => {
                let step =
                    i64::from(packet.sequence_number.wrapping_sub(last.sequence as u16) as i16);
                let extended = last.sequence + step;
                if step > 0 {
                    extended
                } else if extended >= first.sequence {
                    if self
                        .ring
                        .binary_search_by_key(&extended, |s| s.sequence)
                        .is_ok()
                    {
                        return;
                    }
                    extended
                } else {
                    self.ring.clear();
                    self.bytes = 0;
                    i64::from(packet.sequence_number)
                }
            }
            _ => i64::from(packet.sequence_number),
        };
        self.expire(now);
        while self.ring.len() >= self.config.max_packets
            || self.bytes + size > self.config.max_bytes
        {
            self.pop_front();
        }
        self.bytes += size;
        let slot = Slot {
            sequence,
            timestamp: packet.timestamp,
            marker: packet.marker,
            payload_type: packet.payload_type,
            payload: packet.payload.clone(),
            sent_at: now,
            resent_at: None,
        };
        // In order: at the back unless passed on late.
        let at = self.ring.partition_point(|s| s.sequence < sequence);
        self.ring.insert(at, slot);
    }

    /// Drop the packets older than the age bound.
    fn expire(&mut self, now: Instant) {
        while self
            .ring
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.sent_at) > self.config.max_age)
        {
            self.pop_front();
        }
    }

    fn find(&self, sequence: u16) -> Option<usize> {
        let newest = self.ring.back()?.sequence;
        let extended = newest + i64::from(sequence.wrapping_sub(newest as u16) as i16);
        self.ring
            .binary_search_by_key(&extended, |s| s.sequence)
            .ok()
    }

    /// Resend packet `sequence` if kept and not resent within the last RTT: the packet to
    /// send (RTX-wrapped when RTX is negotiated). Allocates the RTX payload (OSN + payload).
    pub fn resend(&mut self, sequence: u16, now: Instant) -> Result<RtpPacket, ResendRefused> {
        self.expire(now);
        let Some(i) = self.find(sequence) else {
            self.stats.not_found += 1;
            return Err(ResendRefused::NotFound);
        };
        let interval = self.rtt.max(self.config.min_resend_interval);
        let slot = &mut self.ring[i];
        if slot.resent_at.is_some_and(|t| now < t + interval) {
            self.stats.suppressed += 1;
            return Err(ResendRefused::TooSoon);
        }
        slot.resent_at = Some(now);
        self.stats.packets_retransmitted += 1;
        let slot = &self.ring[i];
        let original = RtpPacket {
            payload_type: slot.payload_type,
            sequence_number: slot.sequence as u16,
            timestamp: slot.timestamp,
            marker: slot.marker,
            ssrc: self.ssrc,
            payload: slot.payload.clone(),
        };
        let Some(rtx) = self.rtx else {
            return Ok(original);
        };
        let mut payload = BytesMut::with_capacity(2 + original.payload.len());
        payload.put_u16(original.sequence_number);
        payload.put_slice(&original.payload);
        self.stats.rtx_bytes += payload.len() as u64;
        let sequence_number = self.rtx_sequence;
        self.rtx_sequence = self.rtx_sequence.wrapping_add(1);
        Ok(RtpPacket {
            payload_type: rtx.payload_type,
            sequence_number,
            timestamp: original.timestamp,
            marker: original.marker,
            ssrc: rtx.ssrc,
            payload: payload.freeze(),
        })
    }

    /// Answer a generic NACK's `(pid, blp)` pairs: the packets to send, appended to `out`.
    pub fn on_nack(&mut self, pairs: &[(u16, u16)], now: Instant, out: &mut Vec<RtpPacket>) {
        self.stats.nacks_received += 1;
        for sequence in nack_sequences(pairs) {
            self.stats.packets_requested += 1;
            if let Ok(p) = self.resend(sequence, now) {
                out.push(p);
            }
        }
    }
}

/// Write an RTX payload (RFC 4588 section 4: the original sequence number, then the
/// original payload) into `out`; returns its length, `None` when `out` is too small.
pub fn write_rtx_payload(original_sequence: u16, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let buf = out.get_mut(..2 + payload.len())?;
    buf[..2].copy_from_slice(&original_sequence.to_be_bytes());
    buf[2..].copy_from_slice(payload);
    Some(buf.len())
}

/// Split a received RTX payload into the original sequence number and payload.
pub fn parse_rtx_payload(payload: &[u8]) -> Option<(u16, &[u8])> {
    let osn = payload.get(..2)?;
    Some((u16::from_be_bytes([osn[0], osn[1]]), &payload[2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn packet(sequence: u16, len: usize) -> RtpPacket {
        RtpPacket {
            payload_type: 96,
            sequence_number: sequence,
            timestamp: u32::from(sequence) * 3000,
            marker: sequence % 2 == 0,
            ssrc: 0,
            payload: Bytes::from(vec![sequence as u8; len]),
        }
    }

    #[test]
    fn plain_retransmission_resends_the_original() {
        let t0 = Instant::now();
        let mut h = RetransmitHistory::new(RetransmitConfig::default(), 0xAA, None);
        for s in 100..110 {
            h.store(&packet(s, 50), t0);
        }
        let mut out = Vec::new();
        h.on_nack(&[(103, 0b101)], t0 + MS, &mut out);
        let seqs: Vec<u16> = out.iter().map(|p| p.sequence_number).collect();
        assert_eq!(seqs, vec![103, 104, 106]);
        let expect = RtpPacket {
            ssrc: 0xAA,
            ..packet(103, 50)
        };
        assert_eq!(out[0], expect);
        let s = h.stats();
        assert_eq!(
            (
                s.nacks_received,
                s.packets_requested,
                s.packets_retransmitted
            ),
            (1, 3, 3)
        );
        assert_eq!(s.rtx_bytes, 0);
    }

    #[test]
    fn rtx_wraps_with_osn_and_its_own_sequence() {
        let t0 = Instant::now();
        let rtx = RtxConfig {
            ssrc: 0xBB,
            payload_type: 97,
            first_sequence: 65535,
        };
        let mut h = RetransmitHistory::new(RetransmitConfig::default(), 0xAA, Some(rtx));
        h.store(&packet(7, 10), t0);
        h.store(&packet(8, 10), t0);
        let a = h.resend(7, t0).expect("kept");
        let b = h.resend(8, t0).expect("kept");
        assert_eq!(
            (a.ssrc, a.payload_type, a.sequence_number),
            (0xBB, 97, 65535)
        );
        assert_eq!(b.sequence_number, 0, "RTX sequence wraps");
        assert_eq!((a.timestamp, a.marker), (7 * 3000, false));
        let (osn, original) = parse_rtx_payload(&a.payload).expect("rtx payload");
        assert_eq!((osn, original), (7, &[7u8; 10][..]));
        assert_eq!(h.stats().rtx_bytes, 24);
        let mut buf = [0u8; 12];
        assert_eq!(write_rtx_payload(7, &[7u8; 10], &mut buf), Some(12));
        assert_eq!(&buf[..], &a.payload[..]);
        assert_eq!(write_rtx_payload(7, &[7u8; 11], &mut buf), None);
    }

    #[test]
    fn a_nack_flood_resends_once_per_rtt() {
        let t0 = Instant::now();
        let mut h = RetransmitHistory::new(RetransmitConfig::default(), 1, None);
        h.set_rtt(40 * MS);
        h.store(&packet(1, 10), t0);
        let mut out = Vec::new();
        for i in 0..100 {
            h.on_nack(&[(1, 0)], t0 + i * MS / 4, &mut out);
        }
        assert_eq!(out.len(), 1, "100 NACKs within 25 ms: one resend");
        assert_eq!(h.stats().suppressed, 99);
        assert_eq!(h.resend(1, t0 + 39 * MS), Err(ResendRefused::TooSoon));
        assert!(h.resend(1, t0 + 40 * MS).is_ok(), "an RTT later");
        // A tiny RTT is floored.
        h.set_rtt(MS);
        assert_eq!(h.resend(1, t0 + 49 * MS), Err(ResendRefused::TooSoon));
        assert!(h.resend(1, t0 + 50 * MS).is_ok());
    }

    #[test]
    fn bounded_by_count_bytes_and_age() {
        let t0 = Instant::now();
        let cfg = RetransmitConfig {
            max_packets: 4,
            max_bytes: 250,
            ..RetransmitConfig::default()
        };
        let mut h = RetransmitHistory::new(cfg, 1, None);
        for s in 0..10 {
            h.store(&packet(s, 10), t0);
        }
        assert_eq!((h.len(), h.bytes()), (4, 40));
        assert_eq!(h.resend(5, t0), Err(ResendRefused::NotFound));
        assert!(h.resend(6, t0).is_ok());
        h.store(&packet(10, 100), t0);
        assert_eq!((h.len(), h.bytes()), (4, 130), "count bound dropped 6");
        h.store(&packet(11, 150), t0);
        assert_eq!(
            (h.len(), h.bytes()),
            (2, 250),
            "bytes bound dropped 7, 8, 9"
        );
        assert_eq!(h.resend(8, t0), Err(ResendRefused::NotFound));
        h.store(&packet(12, 300), t0);
        assert_eq!(h.len(), 2, "a packet over the byte bound is not kept");
        h.store(&packet(13, 10), t0 + 1001 * MS);
        assert_eq!(h.len(), 1, "older than 1 s: dropped");
        assert_eq!(h.resend(11, t0 + 1001 * MS), Err(ResendRefused::NotFound));
        assert_eq!(h.stats().not_found, 3);
    }

    #[test]
    fn sequence_wrap_and_restart() {
        let t0 = Instant::now();
        let mut h = RetransmitHistory::new(RetransmitConfig::default(), 1, None);
        for s in [65534u16, 65535, 0, 1] {
            h.store(&packet(s, 5), t0);
        }
        assert!(h.resend(65535, t0).is_ok());
        assert!(h.resend(0, t0).is_ok());
        // A packet passed on late (older than the newest, not older than the oldest kept)
        // is kept in order, once.
        h.store(&packet(500, 5), t0);
        h.store(&packet(400, 5), t0);
        h.store(&packet(400, 5), t0);
        assert_eq!(h.len(), 6);
        assert!(h.resend(400, t0).is_ok());
        assert!(h.resend(500, t0).is_ok());
        // A jump back past everything kept (a new sender with the same SSRC) starts over.
        h.store(&packet(65000, 5), t0);
        assert_eq!(h.len(), 1);
        assert!(h.resend(65000, t0).is_ok());
    }

    #[test]
    fn ring_is_allocated_once() {
        let t0 = Instant::now();
        let mut h = RetransmitHistory::new(RetransmitConfig::default(), 1, None);
        let cap = h.ring.capacity();
        let p = packet(0, 100);
        for s in 0..5000u16 {
            let q = RtpPacket {
                sequence_number: s,
                ..p.clone()
            };
            h.store(&q, t0);
        }
        assert_eq!(h.ring.capacity(), cap);
        assert_eq!(h.len(), 512);
    }
}
