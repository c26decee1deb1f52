//! Receive-side NACK generation (RFC 4585 generic NACK) for one SSRC.
//!
//! [`NackGenerator`] owns the list of missing packets of one received stream: fed each
//! packet's sequence number and arrival time, it extends the sequence number, turns a gap
//! into missing entries, and says when to ask for them again:
//!
//! - **reordering**: a missing packet is asked for once it is [`NackConfig::reorder_packets`]
//!   packets behind the newest or [`NackConfig::reorder_delay`] old, so a packet that is
//!   only reordered is not NACKed; a clear gap (several packets past it) is asked for at once;
//! - **retries**: asked again every `max(RTT, min_retry_interval)`, at most
//!   [`NackConfig::max_retries`] times;
//! - **giving up**: after the retries, or when older than [`NackConfig::max_age`] or more
//!   than [`NackConfig::max_age_packets`] behind the newest; a packet given up, a gap larger
//!   than the list or a list that overflows sets [`NackGenerator::take_keyframe_request`];
//! - **bounds**: at most [`NackConfig::max_missing`] entries, allocated once.
//!
//! Nothing here reads a clock: time comes in as `now`. The media session calls
//! [`NackGenerator::on_packet`] per received packet, [`NackGenerator::poll_nack`] after it
//! and at [`NackGenerator::poll_timeout`], and sends the pairs it writes as an
//! [`RtcpPacket::Nack`](crate::rtp::RtcpPacket::Nack).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Timing and bounds of a [`NackGenerator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NackConfig {
    /// A missing packet this many packets behind the newest is NACKed at once (2: a packet
    /// overtaken by one other is given [`NackConfig::reorder_delay`] to arrive).
    pub reorder_packets: u16,
    /// A missing packet is NACKed at the latest this long after its gap was seen (10 ms).
    pub reorder_delay: Duration,
    /// The shortest time between two NACKs of one packet, used while the RTT is smaller or
    /// unknown (20 ms).
    pub min_retry_interval: Duration,
    /// The RTT assumed before [`NackGenerator::set_rtt`] gives one (100 ms).
    pub initial_rtt: Duration,
    /// NACKs per packet before giving up on it (10).
    pub max_retries: u8,
    /// A packet missing for longer is given up (1 s).
    pub max_age: Duration,
    /// A packet this many packets behind the newest is given up (1,000).
    pub max_age_packets: u16,
    /// The most missing packets tracked (1,000).
    pub max_missing: usize,
}

impl Default for NackConfig {
    fn default() -> Self {
        NackConfig {
            reorder_packets: 2,
            reorder_delay: Duration::from_millis(10),
            min_retry_interval: Duration::from_millis(20),
            initial_rtt: Duration::from_millis(100),
            max_retries: 10,
            max_age: Duration::from_secs(1),
            max_age_packets: 1000,
            max_missing: 1000,
        }
    }
}

/// Counters of a [`NackGenerator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NackStats {
    /// NACK packets produced (calls of `poll_nack` that wrote at least one pair).
    pub nacks_sent: u64,
    /// Packets asked for, retries included.
    pub packets_requested: u64,
    /// Missing packets that arrived after being NACKed.
    pub recovered: u64,
    /// Missing packets that arrived before any NACK (reordered).
    pub reordered: u64,
    /// Missing packets given up (retries, age, or the list bound).
    pub given_up: u64,
    /// Times a keyframe request was suggested.
    pub keyframe_requests: u64,
}

/// What a received packet was to the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketArrival {
    /// The newest so far (possibly after a gap).
    InOrder,
    /// A packet on the missing list, after a NACK for it.
    Recovered,
    /// A packet on the missing list, before any NACK.
    Reordered,
    /// Older than the newest and not missing: a duplicate or given up.
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    /// Extended sequence number.
    sequence: i64,
    /// When its gap was seen.
    detected: Instant,
    /// When it was last NACKed.
    sent_at: Option<Instant>,
    retries: u8,
}

/// The NACK state of one received SSRC.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    config: NackConfig,
    /// Extended sequence number of the newest packet.
    newest: Option<i64>,
    /// Missing packets in increasing sequence order.
    missing: VecDeque<Missing>,
    rtt: Duration,
    /// No entry needs [`NackGenerator::poll_nack`] before this (a NACK, retry or give-up
    /// due): exact after `poll_nack`, lowered as packets arrive, and never later than the
    /// truth, so `poll_timeout` costs O(1) on the per-packet path.
    next_due: Option<Instant>,
    keyframe_request: bool,
    stats: NackStats,
}

impl NackGenerator {
    /// A generator with its missing list allocated.
    pub fn new(config: NackConfig) -> NackGenerator {
        NackGenerator {
            config,
            newest: None,
            missing: VecDeque::with_capacity(config.max_missing),
            rtt: config.initial_rtt,
            next_due: None,
            keyframe_request: false,
            stats: NackStats::default(),
        }
    }

    /// Set the round-trip time (from RTCP reports); retries wait at least this long.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
        // Retries may now be due earlier: recompute (RTCP reports are rare).
        self.next_due = self.exact_next_due();
    }

    /// The counters.
    pub fn stats(&self) -> NackStats {
        self.stats
    }

    /// How many packets are missing now.
    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }

    /// Whether a keyframe should be requested because packets were given up; clears it.
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    fn retry_interval(&self) -> Duration {
        self.rtt.max(self.config.min_retry_interval)
    }

    fn give_up(&mut self, n: usize) {
        if n > 0 {
            self.stats.given_up += n as u64;
            if !self.keyframe_request {
                self.stats.keyframe_requests += 1;
            }
            self.keyframe_request = true;
        }
    }

    /// Record a received packet.
    pub fn on_packet(&mut self, sequence: u16, now: Instant) -> PacketArrival {
        let Some(newest) = self.newest else {
            self.newest = Some(i64::from(sequence));
            return PacketArrival::InOrder;
        };
        let previous_newest = newest;
        let step = i64::from(sequence.wrapping_sub(newest as u16) as i16);
        let extended = newest + step;
        if step <= 0 {
            let Ok(i) = self.missing.binary_search_by_key(&extended, |m| m.sequence) else {
                return PacketArrival::Duplicate;
            };
            let was_sent = self.missing.remove(i).is_some_and(|m| m.sent_at.is_some());
            return if was_sent {
                self.stats.recovered += 1;
                PacketArrival::Recovered
            } else {
                self.stats.reordered += 1;
                PacketArrival::Reordered
            };
        }
        self.newest = Some(extended);
        let gap = (step - 1) as usize;
        if gap >= self.config.max_missing || gap > usize::from(self.config.max_age_packets) {
            // Too many lost to recover: forget them all and ask for a keyframe.
            let n = self.missing.len() + gap;
            self.missing.clear();
            self.next_due = None;
            self.give_up(n);
            return PacketArrival::InOrder;
        }
        let overflow = (self.missing.len() + gap).saturating_sub(self.config.max_missing);
        self.missing.drain(..overflow);
        self.give_up(overflow);
        for s in newest + 1..extended {
            self.missing.push_back(Missing {
                sequence: s,
                detected: now,
                sent_at: None,
                retries: 0,
            });
        }
        self.drop_old(now);
        // Only the new entries and those the newest packet just overtook past the
        // reordering threshold can fall due earlier than before: they are at the tail.
        let overtaken_from = previous_newest - i64::from(self.config.reorder_packets);
        let retry = self.retry_interval();
        let earliest = self
            .missing
            .iter()
            .rev()
            .take_while(|m| m.sequence > overtaken_from)
            .map(|m| self.deadline_of(m, extended, retry))
            .min();
        if let Some(due) = earliest {
            self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
        }
        PacketArrival::InOrder
    }

    /// When `poll_nack` next has something to do for `m`: its NACK or retry, or, when it
    /// used its retries, its give-up once the last NACK had an RTT to work; at the latest
    /// its age limit.
    fn deadline_of(&self, m: &Missing, newest: i64, retry: Duration) -> Instant {
        let expiry = m.detected + self.config.max_age;
        match self.due_at(m, newest) {
            None => m.sent_at.map_or(expiry, |s| s + retry).min(expiry),
            Some(due) => due.min(expiry),
        }
    }

    /// The next deadline over every entry (a walk of the missing list).
    fn exact_next_due(&self) -> Option<Instant> {
        let newest = self.newest?;
        let retry = self.retry_interval();
        self.missing
            .iter()
            .map(|m| self.deadline_of(m, newest, retry))
            .min()
    }

    /// Give up the entries too far behind the newest or too old.
    fn drop_old(&mut self, now: Instant) {
        let Some(newest) = self.newest else { return };
        let oldest_kept = newest - i64::from(self.config.max_age_packets);
        let max_age = self.config.max_age;
        let n = self
            .missing
            .iter()
            .take_while(|m| {
                m.sequence < oldest_kept || now.saturating_duration_since(m.detected) >= max_age
            })
            .count();
        self.missing.drain(..n);
        self.give_up(n);
    }

    /// When an entry becomes due: `None` when it has used its retries.
    fn due_at(&self, m: &Missing, newest: i64) -> Option<Instant> {
        match m.sent_at {
            None if newest - m.sequence >= i64::from(self.config.reorder_packets) => {
                Some(m.detected)
            }
            None => Some(m.detected + self.config.reorder_delay),
            Some(_) if m.retries >= self.config.max_retries => None,
            Some(sent) => Some(sent + self.retry_interval()),
        }
    }

    /// Write the `(pid, blp)` pairs of the packets due at `now` into `out` (appended) and
    /// return how many packets they ask for. Entries past their retries are given up.
    pub fn poll_nack(&mut self, now: Instant, out: &mut Vec<(u16, u16)>) -> usize {
        self.drop_old(now);
        let Some(newest) = self.newest else { return 0 };
        let mut requested = 0usize;
        let mut pair: Option<(i64, u16)> = None;
        for i in 0..self.missing.len() {
            let m = self.missing[i];
            match self.due_at(&m, newest) {
                Some(due) if due <= now => {}
                _ => continue,
            }
            let entry = &mut self.missing[i];
            entry.sent_at = Some(now);
            entry.retries += 1;
            requested += 1;
            pair = match pair {
                Some((pid, blp)) if (1..=16).contains(&(m.sequence - pid)) => {
                    Some((pid, blp | 1 << (m.sequence - pid - 1)))
                }
                Some((pid, blp)) => {
                    out.push((pid as u16, blp));
                    Some((m.sequence, 0))
                }
                None => Some((m.sequence, 0)),
            };
        }
        if let Some((pid, blp)) = pair {
            out.push((pid as u16, blp));
        }
        // Entries past their retries go once their last NACK has had an RTT to work.
        let (limit, retry) = (self.config.max_retries, self.retry_interval());
        let exhausted =
            |m: &Missing| m.retries >= limit && m.sent_at.is_some_and(|sent| sent + retry <= now);
        let before = self.missing.len();
        self.missing.retain(|m| !exhausted(m));
        self.give_up(before - self.missing.len());
        if requested > 0 {
            self.stats.nacks_sent += 1;
            self.stats.packets_requested += requested as u64;
        }
        self.next_due = self.exact_next_due();
        requested
    }

    /// The next time [`NackGenerator::poll_nack`] has something to do (a NACK or retry due,
    /// a packet to give up), or `None` with nothing missing. O(1): it may be early after
    /// a missing packet arrived (`poll_nack` then finds nothing and recomputes it), never
    /// late.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let oldest = self.missing.front()?;
        // The oldest entry was detected first: its age limit is the earliest.
        let expiry = oldest.detected + self.config.max_age;
        Some(self.next_due.map_or(expiry, |d| d.min(expiry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::generic_nack::nack_sequences;

    const MS: Duration = Duration::from_millis(1);

    fn nacked(g: &mut NackGenerator, now: Instant) -> Vec<u16> {
        let mut pairs = Vec::new();
        let n = g.poll_nack(now, &mut pairs);
        let seqs: Vec<u16> = nack_sequences(&pairs).collect();
        assert_eq!(n, seqs.len());
        seqs
    }

    #[test]
    fn clear_gap_is_nacked_at_once() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.on_packet(10, t0);
        g.on_packet(15, t0);
        // 11, 12, 13 are 2+ behind 15: due now; 14 is only overtaken by one packet.
        assert_eq!(nacked(&mut g, t0), vec![11, 12, 13]);
        assert_eq!(g.missing_len(), 4);
        assert_eq!(g.poll_timeout(), Some(t0 + 10 * MS), "14's reorder delay");
        // Another packet arrives: 14 is now a clear gap.
        g.on_packet(16, t0 + MS);
        assert_eq!(nacked(&mut g, t0 + MS), vec![14]);
        assert_eq!((g.stats().nacks_sent, g.stats().packets_requested), (2, 4));
    }

    #[test]
    fn reordered_packet_is_not_nacked() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.on_packet(1, t0);
        g.on_packet(3, t0);
        assert!(
            nacked(&mut g, t0).is_empty(),
            "one packet of reordering is tolerated"
        );
        assert_eq!(g.on_packet(2, t0 + 2 * MS), PacketArrival::Reordered);
        assert!(nacked(&mut g, t0 + 20 * MS).is_empty());
        assert_eq!(g.poll_timeout(), None);
        assert_eq!(g.stats().reordered, 1);
        assert_eq!(g.stats().nacks_sent, 0);
    }

    #[test]
    fn late_reordering_times_out_into_a_nack() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.on_packet(1, t0);
        g.on_packet(3, t0);
        assert!(nacked(&mut g, t0 + 9 * MS).is_empty());
        assert_eq!(nacked(&mut g, t0 + 10 * MS), vec![2]);
        assert_eq!(g.on_packet(2, t0 + 30 * MS), PacketArrival::Recovered);
        assert_eq!(g.stats().recovered, 1);
        assert_eq!(g.on_packet(2, t0 + 31 * MS), PacketArrival::Duplicate);
    }

    #[test]
    fn retries_wait_an_rtt_and_stop_after_max_retries() {
        let t0 = Instant::now();
        let cfg = NackConfig {
            max_retries: 3,
            ..NackConfig::default()
        };
        let mut g = NackGenerator::new(cfg);
        g.set_rtt(50 * MS);
        g.on_packet(0, t0);
        g.on_packet(5, t0);
        assert_eq!(nacked(&mut g, t0), vec![1, 2, 3]);
        g.on_packet(6, t0);
        assert_eq!(nacked(&mut g, t0), vec![4]);
        assert_eq!(g.poll_timeout(), Some(t0 + 50 * MS));
        assert!(nacked(&mut g, t0 + 49 * MS).is_empty(), "not before an RTT");
        assert_eq!(nacked(&mut g, t0 + 50 * MS), vec![1, 2, 3, 4]);
        // A small RTT is floored at the minimum retry interval.
        g.set_rtt(MS);
        assert!(nacked(&mut g, t0 + 69 * MS).is_empty());
        assert_eq!(nacked(&mut g, t0 + 70 * MS).len(), 4, "third and last try");
        assert_eq!(g.poll_timeout(), Some(t0 + 90 * MS), "give-up time");
        assert!(nacked(&mut g, t0 + 89 * MS).is_empty());
        assert_eq!(g.missing_len(), 4, "the last NACK still has time to work");
        assert!(nacked(&mut g, t0 + 90 * MS).is_empty());
        assert_eq!(g.missing_len(), 0);
        assert_eq!(g.stats().given_up, 4);
        assert!(g.take_keyframe_request());
        assert!(!g.take_keyframe_request(), "taken");
        assert_eq!(g.stats().packets_requested, 12);
    }

    #[test]
    fn too_old_packets_are_given_up() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.set_rtt(600 * MS);
        g.on_packet(0, t0);
        g.on_packet(3, t0);
        assert_eq!(nacked(&mut g, t0), vec![1], "2 waits for its reorder delay");
        assert_eq!(nacked(&mut g, t0 + 10 * MS), vec![2]);
        assert_eq!(nacked(&mut g, t0 + 610 * MS), vec![1, 2]);
        assert_eq!(
            g.poll_timeout(),
            Some(t0 + 1000 * MS),
            "age limit before retry"
        );
        assert!(nacked(&mut g, t0 + 1001 * MS).is_empty());
        assert_eq!((g.missing_len(), g.stats().given_up), (0, 2));
        // Too many packets behind: 1,000 packets after a gap, it is gone.
        g.on_packet(5, t0 + 1001 * MS);
        for s in 6..=1004u16 {
            g.on_packet(s, t0 + 1002 * MS);
        }
        assert_eq!(g.missing_len(), 1, "4 is 1000 behind 1004: still kept");
        g.on_packet(1005, t0 + 1002 * MS);
        assert_eq!(g.missing_len(), 0);
        assert_eq!(g.stats().given_up, 3);
    }

    #[test]
    fn huge_gap_clears_and_suggests_a_keyframe() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.on_packet(0, t0);
        g.on_packet(3000, t0);
        assert_eq!(g.missing_len(), 0);
        assert!(g.take_keyframe_request());
        assert_eq!(g.stats().given_up, 2999);
        assert!(nacked(&mut g, t0).is_empty());
    }

    #[test]
    fn missing_list_is_bounded() {
        let t0 = Instant::now();
        let cfg = NackConfig {
            max_missing: 10,
            ..NackConfig::default()
        };
        let mut g = NackGenerator::new(cfg);
        g.on_packet(0, t0);
        for k in 1..=5u16 {
            // Gaps of 3 packets each: 15 missing overall, 10 kept.
            g.on_packet(4 * k, t0);
        }
        assert_eq!(g.missing_len(), 10);
        assert_eq!(g.stats().given_up, 5);
        assert!(g.take_keyframe_request());
        let first = nacked(&mut g, t0)[0];
        assert_eq!(first, 7, "the oldest (1, 2, 3, 5, 6) were dropped");
    }

    /// The O(1) deadline is never later than a walk of the whole list, and `poll_nack`
    /// at that deadline leaves it exact, whatever the arrivals, RTT changes and polls.
    #[test]
    fn the_cached_deadline_is_never_late() {
        fn check(ops: Vec<(u8, u16)>) -> bool {
            let t0 = Instant::now();
            let mut g = NackGenerator::new(NackConfig::default());
            let (mut now, mut seq) = (t0, 1000u16);
            let mut pairs = Vec::new();
            for (op, arg) in ops {
                match op % 5 {
                    // Forward with a gap of 0-7 packets.
                    0 | 1 => {
                        seq = seq.wrapping_add(1 + arg % 8);
                        g.on_packet(seq, now);
                    }
                    // A late (recovered, reordered or duplicate) packet.
                    2 => {
                        g.on_packet(seq.wrapping_sub(arg % 40), now);
                    }
                    3 => now += Duration::from_millis(u64::from(arg % 120)),
                    _ if arg % 3 == 0 => g.set_rtt(Duration::from_millis(u64::from(arg % 200))),
                    _ => {
                        if g.poll_timeout().is_some_and(|t| t <= now) {
                            g.poll_nack(now, &mut pairs);
                            let exact = g.exact_next_due().map(|d| {
                                d.min(
                                    g.missing
                                        .front()
                                        .map_or(d, |m| m.detected + g.config.max_age),
                                )
                            });
                            if g.poll_timeout() != exact {
                                return false;
                            }
                        }
                    }
                }
                let exact = g.exact_next_due();
                let cached = g.poll_timeout();
                match (cached, exact) {
                    (None, None) | (Some(_), None) if g.missing.is_empty() == cached.is_none() => {}
                    (Some(c), Some(e)) if c <= e => {}
                    _ => return false,
                }
            }
            true
        }
        quickcheck::QuickCheck::new()
            .tests(300)
            .quickcheck(check as fn(Vec<(u8, u16)>) -> bool);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(NackConfig::default());
        g.on_packet(65533, t0);
        g.on_packet(2, t0);
        assert_eq!(nacked(&mut g, t0), vec![65534, 65535, 0]);
        assert_eq!(g.on_packet(65535, t0 + MS), PacketArrival::Recovered);
        assert_eq!(g.on_packet(65530, t0 + MS), PacketArrival::Duplicate);
        assert_eq!(g.missing_len(), 3);
    }
}
