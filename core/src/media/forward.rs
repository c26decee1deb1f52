//! Forwarding received media to other peers, the selective forwarding unit's (SFU's)
//! per-viewer work, as two small pure pieces an application composes:
//!
//! - [`StreamForwarder`] turns packets from one of several sources (the simulcast layers
//!   of one track, or any streams the application switches between) into one continuous
//!   outgoing stream. A switch takes effect at the next keyframe of the new source, and
//!   sequence numbers and timestamps are rewritten so the viewer's decoder sees one
//!   stream: no gap, no jump back, no duplicate.
//! - [`KeyframeCache`] keeps the packets of a track since its last keyframe (a bounded
//!   group of pictures), so a viewer that joins can be sent a decodable picture at once
//!   instead of waiting for the publisher's next keyframe.
//!
//! Neither knows a codec: the caller says which packet starts a keyframe (see
//! [`crate::rtp::codec`] for the detection) and, for audio, marks every packet as one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::RtpPacket;

/// How far a sequence number may lie behind the newest one forwarded and still be
/// forwarded (a reordered or retransmitted packet of the current source).
const MAX_REORDER: u16 = 512;

/// Counters of a [`StreamForwarder`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    /// Packets forwarded.
    pub forwarded: u64,
    /// Packets dropped because they came from a source that is not the current one (the
    /// other simulcast layers, or the new one before its keyframe).
    pub dropped_other_source: u64,
    /// Packets of the current source dropped because they belong before the switch to it,
    /// or lie too far behind.
    pub dropped_stale: u64,
    /// Switches completed (the first source counts as one).
    pub switches: u64,
}

/// One outgoing stream fed by a chosen source among several.
///
/// ```
/// use sansrtc::media::forward::StreamForwarder;
/// # use sansrtc::media::RtpPacket;
/// # use std::time::Instant;
/// # let p = |seq: u16, ts: u32| RtpPacket { payload_type: 96, sequence_number: seq, timestamp: ts,
/// #     marker: true, ssrc: 1, payload: bytes::Bytes::new() };
/// let now = Instant::now();
/// let mut f = StreamForwarder::new(90_000);
/// f.select("h");
/// assert_eq!(f.keyframe_wanted(), Some(&"h"));
/// // Nothing passes until the selected source's keyframe.
/// assert!(f.forward(now, &"h", &p(10, 1000), false).is_none());
/// let first = f.forward(now, &"h", &p(11, 4000), true).unwrap();
/// // Switch layers: the new one's packets continue the same numbering.
/// f.select("f");
/// let next = f.forward(now, &"f", &p(7000, 99_000), true).unwrap();
/// assert_eq!(next.sequence_number, first.sequence_number.wrapping_add(1));
/// ```
#[derive(Debug, Clone)]
pub struct StreamForwarder<S> {
    clock_rate: u32,
    current: Option<S>,
    pending: Option<S>,
    /// Added (wrapping) to the current source's sequence numbers and timestamps.
    seq_offset: u16,
    ts_offset: u32,
    /// The current source's first forwarded sequence number: anything before it belongs
    /// to the previous source's part of the output.
    switch_seq: u16,
    /// The newest packet sent: its output sequence number, timestamp and when.
    last_out: Option<(u16, u32, Instant)>,
    stats: ForwardStats,
}

impl<S: Eq + Clone> StreamForwarder<S> {
    /// A forwarder for a codec with this RTP clock rate (90,000 for video, 48,000 for
    /// Opus), with no source selected yet.
    pub fn new(clock_rate: u32) -> Self {
        StreamForwarder {
            clock_rate: clock_rate.max(1),
            current: None,
            pending: None,
            seq_offset: 0,
            ts_offset: 0,
            switch_seq: 0,
            last_out: None,
            stats: ForwardStats::default(),
        }
    }

    /// Forward `source` from its next keyframe on. Selecting the current source cancels a
    /// pending switch.
    pub fn select(&mut self, source: S) {
        if self.current.as_ref() == Some(&source) {
            self.pending = None;
        } else {
            self.pending = Some(source);
        }
    }

    /// The source being forwarded.
    pub fn current(&self) -> Option<&S> {
        self.current.as_ref()
    }

    /// The source a switch waits for, whose publisher should be asked for a keyframe
    /// (the caller rate-limits the requests).
    pub fn keyframe_wanted(&self) -> Option<&S> {
        self.pending.as_ref()
    }

    /// The counters.
    pub fn stats(&self) -> ForwardStats {
        self.stats
    }

    /// The packet to send for `packet` received from `source`, rewritten, or `None` when
    /// it is not to be forwarded. `keyframe_start`: the packet is the first of a keyframe
    /// (every packet, for audio). Only the header fields change: the payload is shared.
    pub fn forward(
        &mut self,
        now: Instant,
        source: &S,
        packet: &RtpPacket,
        keyframe_start: bool,
    ) -> Option<RtpPacket> {
        if keyframe_start && self.pending.as_ref() == Some(source) {
            self.switch_to(now, packet);
        }
        if self.current.as_ref() != Some(source) {
            self.stats.dropped_other_source += 1;
            return None;
        }
        // Before the switch point (a reordered packet of the old picture) or far behind
        // it: its output number would collide with what the previous source used.
        let since_switch = packet.sequence_number.wrapping_sub(self.switch_seq);
        if since_switch > u16::MAX - MAX_REORDER {
            self.stats.dropped_stale += 1;
            return None;
        }
        let seq = packet.sequence_number.wrapping_add(self.seq_offset);
        let timestamp = packet.timestamp.wrapping_add(self.ts_offset);
        match self.last_out {
            Some((last, _, _)) if is_older(seq, last) => {
                if last.wrapping_sub(seq) > MAX_REORDER {
                    self.stats.dropped_stale += 1;
                    return None;
                }
            }
            _ => self.last_out = Some((seq, timestamp, now)),
        }
        self.stats.forwarded += 1;
        Some(RtpPacket {
            sequence_number: seq,
            timestamp,
            ..packet.clone()
        })
    }

    fn switch_to(&mut self, now: Instant, packet: &RtpPacket) {
        self.current = self.pending.take();
        self.stats.switches += 1;
        self.switch_seq = packet.sequence_number;
        let Some((last_seq, last_ts, at)) = self.last_out else {
            // The first source keeps its own numbering.
            self.seq_offset = 0;
            self.ts_offset = 0;
            return;
        };
        // The new source continues right after the last packet sent, its timestamps
        // advanced by the time that passed (at least one tick, so the new picture is
        // never taken for part of the last one).
        let elapsed = now.saturating_duration_since(at);
        let ticks = ticks(elapsed, self.clock_rate).max(1);
        self.seq_offset = last_seq
            .wrapping_add(1)
            .wrapping_sub(packet.sequence_number);
        self.ts_offset = last_ts.wrapping_add(ticks).wrapping_sub(packet.timestamp);
    }
}

/// `a` comes before `b` in RTP sequence order (RFC 3550 wrap-around).
fn is_older(a: u16, b: u16) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000
}

/// RTP clock ticks in `elapsed`, saturating at a quarter of the timestamp space.
fn ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    let t = elapsed.as_micros() * u128::from(clock_rate) / 1_000_000;
    u32::try_from(t).unwrap_or(u32::MAX).min(u32::MAX / 4)
}

/// Limits of a [`KeyframeCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeCacheLimits {
    /// Packets kept at most.
    pub max_packets: usize,
    /// Payload bytes kept at most.
    pub max_bytes: usize,
    /// A group older than this (since its keyframe) is not worth replaying: a joining
    /// viewer would get a burst of stale pictures. Ask for a fresh keyframe instead.
    pub max_age: Duration,
}

impl Default for KeyframeCacheLimits {
    fn default() -> Self {
        KeyframeCacheLimits {
            max_packets: 1024,
            max_bytes: 1024 * 1024,
            max_age: Duration::from_secs(2),
        }
    }
}

/// The packets of one track since its last keyframe, bounded.
///
/// When a group outgrows the limits it is dropped whole (a partial group does not
/// decode); the cache then stays empty until the next keyframe.
#[derive(Debug, Clone)]
pub struct KeyframeCache {
    limits: KeyframeCacheLimits,
    packets: VecDeque<RtpPacket>,
    bytes: usize,
    keyframe_at: Option<Instant>,
}

impl KeyframeCache {
    /// An empty cache with these limits.
    pub fn new(limits: KeyframeCacheLimits) -> Self {
        KeyframeCache {
            limits,
            packets: VecDeque::with_capacity(limits.max_packets.min(4096)),
            bytes: 0,
            keyframe_at: None,
        }
    }

    /// Record a received packet. A keyframe start begins a new group.
    pub fn push(&mut self, now: Instant, packet: &RtpPacket, keyframe_start: bool) {
        if keyframe_start {
            self.clear();
            self.keyframe_at = Some(now);
        } else if self.keyframe_at.is_none() {
            return;
        }
        let size = packet.payload.len();
        if self.packets.len() >= self.limits.max_packets
            || self.bytes.saturating_add(size) > self.limits.max_bytes
        {
            self.clear();
            return;
        }
        self.bytes += size;
        self.packets.push_back(packet.clone());
    }

    /// The group since the last keyframe, in arrival order, if there is one young enough
    /// to replay at `now`.
    pub fn group(&self, now: Instant) -> Option<impl Iterator<Item = &RtpPacket> + '_> {
        let at = self.keyframe_at?;
        (now.saturating_duration_since(at) <= self.limits.max_age && !self.packets.is_empty())
            .then(|| self.packets.iter())
    }

    /// How long ago the cached group's keyframe arrived, if a group is held.
    pub fn keyframe_age(&self, now: Instant) -> Option<Duration> {
        self.keyframe_at
            .filter(|_| !self.packets.is_empty())
            .map(|at| now.saturating_duration_since(at))
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// No group is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forget the group (for example when the publisher leaves).
    pub fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.keyframe_at = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn packet(seq: u16, ts: u32, len: usize) -> RtpPacket {
        RtpPacket {
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            marker: false,
            ssrc: 7,
            payload: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn nothing_passes_before_the_first_keyframe_of_the_selected_source() {
        let now = Instant::now();
        let mut f = StreamForwarder::new(90_000);
        assert!(f.forward(now, &1u8, &packet(1, 0, 10), true).is_none());
        f.select(1u8);
        assert!(f.forward(now, &1, &packet(2, 0, 10), false).is_none());
        assert!(f.forward(now, &2, &packet(3, 0, 10), true).is_none());
        let out = f
            .forward(now, &1, &packet(4, 90, 10), true)
            .expect("forwarded");
        assert_eq!((out.sequence_number, out.timestamp), (4, 90));
        assert_eq!(f.current(), Some(&1));
        assert_eq!(f.keyframe_wanted(), None);
        assert_eq!(f.stats().dropped_other_source, 3);
    }

    #[test]
    fn a_switch_continues_numbering_and_advances_time_by_the_gap() {
        let t0 = Instant::now();
        let mut f = StreamForwarder::new(90_000);
        f.select('q');
        for i in 0..5u16 {
            f.forward(t0, &'q', &packet(100 + i, 3000, 10), i == 0)
                .expect("forwarded");
        }
        f.select('f');
        // The old layer goes on until the new one's keyframe.
        assert_eq!(
            f.forward(t0, &'q', &packet(105, 6000, 10), false)
                .expect("forwarded")
                .sequence_number,
            105
        );
        assert!(f.forward(t0, &'f', &packet(60_000, 1, 10), false).is_none());
        let later = t0 + Duration::from_millis(20);
        let k = f
            .forward(later, &'f', &packet(60_001, 2, 10), true)
            .expect("forwarded");
        assert_eq!(k.sequence_number, 106);
        // 20 ms at 90 kHz after the last packet sent (timestamp 6000).
        assert_eq!(k.timestamp, 6000 + 1800);
        let n = f
            .forward(later, &'f', &packet(60_002, 3002, 10), false)
            .expect("forwarded");
        assert_eq!((n.sequence_number, n.timestamp), (107, 6000 + 1800 + 3000));
        // And the old layer no longer passes.
        assert!(f
            .forward(later, &'q', &packet(106, 9000, 10), false)
            .is_none());
        assert_eq!(f.stats().switches, 2);
    }

    #[test]
    fn a_switch_at_the_same_instant_still_moves_time_forward() {
        let t0 = Instant::now();
        let mut f = StreamForwarder::new(48_000);
        f.select(0u8);
        f.forward(t0, &0, &packet(1, 500, 1), true)
            .expect("forwarded");
        f.select(1);
        let out = f
            .forward(t0, &1, &packet(9, 77, 1), true)
            .expect("forwarded");
        assert_eq!((out.sequence_number, out.timestamp), (2, 501));
    }

    #[test]
    fn reordered_packets_of_the_current_source_pass_but_not_those_before_the_switch() {
        let t0 = Instant::now();
        let mut f = StreamForwarder::new(90_000);
        f.select(0u8);
        f.forward(t0, &0, &packet(10, 0, 1), true)
            .expect("forwarded");
        f.forward(t0, &0, &packet(12, 0, 1), false)
            .expect("forwarded");
        // 11 arrives late: still forwarded, with its own number.
        assert_eq!(
            f.forward(t0, &0, &packet(11, 0, 1), false)
                .expect("forwarded")
                .sequence_number,
            11
        );
        // 9 was before the keyframe that started this source: it would take a number the
        // output never had a picture for.
        assert!(f.forward(t0, &0, &packet(9, 0, 1), false).is_none());
        assert_eq!(f.stats().dropped_stale, 1);
    }

    #[test]
    fn sequence_numbers_wrap_across_a_switch() {
        let t0 = Instant::now();
        let mut f = StreamForwarder::new(90_000);
        f.select(0u8);
        f.forward(t0, &0, &packet(65_534, u32::MAX - 10, 1), true)
            .expect("forwarded");
        let a = f
            .forward(t0, &0, &packet(65_535, u32::MAX - 5, 1), false)
            .expect("forwarded");
        f.select(1);
        let b = f
            .forward(t0, &1, &packet(3, 3, 1), true)
            .expect("forwarded");
        assert_eq!(a.sequence_number, 65_535);
        assert_eq!(b.sequence_number, 0);
        assert_eq!(b.timestamp, (u32::MAX - 5).wrapping_add(1));
        let c = f
            .forward(t0, &1, &packet(4, 3, 1), false)
            .expect("forwarded");
        assert_eq!(c.sequence_number, 1);
    }

    #[test]
    fn output_never_repeats_a_sequence_number_across_many_switches() {
        // Three layers with unrelated numbering, switched round-robin at keyframes: the
        // output is exactly 0, 1, 2, ... from the first packet on.
        let t0 = Instant::now();
        let mut f = StreamForwarder::new(90_000);
        let mut seqs = [1000u16, 40_000, 65_000];
        let mut out = Vec::new();
        for round in 0..30usize {
            let layer = round % 3;
            f.select(layer);
            for i in 0..7 {
                for (l, s) in seqs.iter_mut().enumerate() {
                    let p = packet(*s, 0, 1);
                    *s = s.wrapping_add(1);
                    if let Some(o) = f.forward(t0, &l, &p, i == 0) {
                        out.push(o.sequence_number);
                    }
                }
            }
        }
        assert_eq!(f.stats().switches, 30);
        assert_eq!(out.len() as u64, f.stats().forwarded);
        assert!(out.len() >= 30 * 7);
        for w in out.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
    }

    #[test]
    fn the_cache_keeps_the_group_since_the_last_keyframe() {
        let t0 = Instant::now();
        let mut c = KeyframeCache::new(KeyframeCacheLimits::default());
        c.push(t0, &packet(1, 0, 100), false);
        assert!(c.is_empty(), "nothing before a keyframe");
        c.push(t0, &packet(2, 0, 100), true);
        c.push(t0, &packet(3, 0, 100), false);
        let seqs: Vec<u16> = c
            .group(t0)
            .expect("a group")
            .map(|p| p.sequence_number)
            .collect();
        assert_eq!(seqs, [2, 3]);
        c.push(t0, &packet(4, 0, 100), true);
        let seqs: Vec<u16> = c
            .group(t0)
            .expect("a group")
            .map(|p| p.sequence_number)
            .collect();
        assert_eq!(seqs, [4]);
        assert_eq!(c.bytes(), 100);
    }

    #[test]
    fn the_cache_drops_a_group_that_outgrows_it_or_ages() {
        let t0 = Instant::now();
        let limits = KeyframeCacheLimits {
            max_packets: 4,
            max_bytes: 250,
            max_age: Duration::from_secs(1),
        };
        let mut c = KeyframeCache::new(limits);
        c.push(t0, &packet(1, 0, 100), true);
        c.push(t0, &packet(2, 0, 100), false);
        c.push(t0, &packet(3, 0, 100), false);
        assert!(
            c.is_empty() && c.bytes() == 0,
            "over max_bytes: dropped whole"
        );
        c.push(t0, &packet(4, 0, 100), false);
        assert!(c.is_empty(), "no group until the next keyframe");
        c.push(t0, &packet(5, 0, 10), true);
        for s in 6..9 {
            c.push(t0, &packet(s, 0, 10), false);
        }
        assert_eq!(c.len(), 4);
        c.push(t0, &packet(9, 0, 10), false);
        assert!(c.is_empty(), "over max_packets: dropped whole");
        c.push(t0, &packet(10, 0, 10), true);
        assert!(c.group(t0 + Duration::from_millis(999)).is_some());
        assert!(c.group(t0 + Duration::from_millis(1001)).is_none());
    }
}
