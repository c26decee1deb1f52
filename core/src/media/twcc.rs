//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01),
//! both sides, for one transport.
//!
//! - [`TwccReceiver`]: records the transport-wide sequence number and arrival time of every
//!   received packet that carries the extension (a window of [`TwccReceiver::WINDOW`]
//!   packets, allocated once) and writes feedback packets every
//!   [`TwccReceiverConfig::interval`], sooner after [`TwccReceiverConfig::packets_threshold`]
//!   packets, split when one would report more than [`TwccReceiverConfig::max_per_feedback`]
//!   packets or a delta does not fit.
//! - [`TwccSender`]: a bounded log of what we sent (transport sequence number, send time,
//!   size) and the reading of received feedback into per-packet results
//!   ([`TransportFeedback`]) matched to send times, with cumulative delivered/lost counters:
//!   the input of a bandwidth estimator.
//!
//! Wire format: [`crate::rtp::transport_cc`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtp::transport_cc::{
    max_fci_len, write_transport_cc, TransportCcFeedback, TransportCcWrite, DELTA_TICK_US,
    REFERENCE_TICK_US,
};
use crate::rtp::RtcpError;

/// Extend a 16-bit sequence number against the last extended one.
fn extend(last: Option<i64>, sequence: u16) -> i64 {
    match last {
        None => i64::from(sequence),
        Some(last) => last + i64::from(sequence.wrapping_sub(last as u16) as i16),
    }
}

/// Timing of a [`TwccReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TwccReceiverConfig {
    /// Feedback interval (100 ms, libwebrtc's default for video is 100 ms; 50-250 ms are
    /// usual).
    pub interval: Duration,
    /// Feedback is due at once after this many received packets (100).
    pub packets_threshold: usize,
    /// The most packets one feedback reports (1,000: about 2.3 KB at worst).
    pub max_per_feedback: usize,
}

impl Default for TwccReceiverConfig {
    fn default() -> Self {
        TwccReceiverConfig {
            interval: Duration::from_millis(100),
            packets_threshold: 100,
            max_per_feedback: 1000,
        }
    }
}

/// Counters of a [`TwccReceiver`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwccReceiverStats {
    /// Packets recorded.
    pub packets: u64,
    /// Feedback packets written.
    pub feedbacks: u64,
    /// Packets that arrived after the feedback covering them (not reported).
    pub late: u64,
    /// Packets dropped unreported because the window overflowed.
    pub overflowed: u64,
}

/// The receive side: arrivals waiting for feedback.
#[derive(Debug, Clone)]
pub struct TwccReceiver {
    config: TwccReceiverConfig,
    /// Arrival times from `window_start` on.
    window: VecDeque<Option<Instant>>,
    /// Extended sequence number of `window[0]`.
    window_start: i64,
    newest: Option<i64>,
    /// Received packets in the window.
    received: usize,
    /// The clock origin of reference times.
    epoch: Option<Instant>,
    last_feedback: Option<Instant>,
    /// The last feedback was split: the rest is due at once.
    split: bool,
    feedback_count: u8,
    deltas: Vec<Option<i16>>,
    stats: TwccReceiverStats,
}

impl TwccReceiver {
    /// Packets recorded and not yet reported, at most.
    pub const WINDOW: usize = 8192;

    /// A receiver with its window allocated.
    pub fn new(config: TwccReceiverConfig) -> TwccReceiver {
        TwccReceiver {
            config,
            window: VecDeque::with_capacity(Self::WINDOW),
            window_start: 0,
            newest: None,
            received: 0,
            epoch: None,
            last_feedback: None,
            split: false,
            feedback_count: 0,
            deltas: Vec::with_capacity(config.max_per_feedback.min(0xFFFF)),
            stats: TwccReceiverStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> TwccReceiverStats {
        self.stats
    }

    /// Record a packet carrying transport-wide sequence number `sequence`, arrived `now`.
    pub fn on_packet(&mut self, sequence: u16, now: Instant) {
        let extended = extend(self.newest, sequence);
        if self.newest.is_none() {
            self.window_start = extended;
            self.epoch = Some(now);
        }
        self.newest = Some(self.newest.map_or(extended, |n| n.max(extended)));
        self.stats.packets += 1;
        if extended < self.window_start {
            self.stats.late += 1;
            return;
        }
        // Too far ahead: report nothing older than fits the window.
        let limit = Self::WINDOW as i64;
        while extended - self.window_start >= limit {
            if let Some(Some(_)) = self.window.pop_front() {
                self.received -= 1;
                self.stats.overflowed += 1;
            }
            self.window_start += 1;
            if self.window.is_empty() {
                self.window_start = extended;
            }
        }
        let index = (extended - self.window_start) as usize;
        while self.window.len() <= index {
            self.window.push_back(None);
        }
        if self.window[index].is_none() {
            self.received += 1;
        }
        self.window[index] = Some(now);
    }

    /// When feedback is next due: `None` with nothing to report.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.received == 0 {
            return None;
        }
        let since = self.last_feedback.or(self.epoch)?;
        if self.split || self.received >= self.config.packets_threshold {
            return Some(since);
        }
        Some(since + self.config.interval)
    }

    /// Write the next feedback packet into `out` if one is due at `now`; returns its length.
    /// Call again while it returns `Some`: a large backlog is split over several packets.
    pub fn poll_feedback(
        &mut self,
        now: Instant,
        sender: u32,
        media: u32,
        out: &mut [u8],
    ) -> Result<Option<usize>, RtcpError> {
        match self.poll_timeout() {
            Some(due) if due <= now => {}
            _ => return Ok(None),
        }
        let Some(epoch) = self.epoch else {
            return Ok(None);
        };
        // Skip leading lost packets and report up to the last received one.
        let (Some(first), Some(last)) = (
            self.window.iter().position(Option::is_some),
            self.window.iter().rposition(Option::is_some),
        ) else {
            return Ok(None);
        };
        let Some(Some(first_arrival)) = self.window.get(first).copied() else {
            return Ok(None);
        };
        let room = out.len().saturating_sub(12);
        let mut count = (last - first + 1)
            .min(self.config.max_per_feedback)
            .clamp(1, 0xFFFF);
        while count > 1 && max_fci_len(count) > room {
            count /= 2;
        }
        let since_epoch = first_arrival.saturating_duration_since(epoch).as_micros() as i64;
        let reference_ticks = since_epoch / REFERENCE_TICK_US;
        let mut clock = reference_ticks * REFERENCE_TICK_US;
        self.deltas.clear();
        for arrival in self.window.iter().skip(first).take(count) {
            let delta = match arrival {
                None => None,
                Some(at) => {
                    let us = at.saturating_duration_since(epoch).as_micros() as i64;
                    let ticks = (us - clock).div_euclid(DELTA_TICK_US);
                    let Ok(d) = i16::try_from(ticks) else { break };
                    clock += i64::from(d) * DELTA_TICK_US;
                    Some(d)
                }
            };
            self.deltas.push(delta);
        }
        let reported = self.deltas.len();
        let reference_time = (((reference_ticks & 0xFF_FFFF) << 40) >> 40) as i32;
        let w = TransportCcWrite {
            base_sequence: (self.window_start + first as i64) as u16,
            reference_time,
            feedback_count: self.feedback_count,
            deltas: &self.deltas,
        };
        let n = write_transport_cc(sender, media, &w, out)?;
        let reported_received = self.deltas.iter().flatten().count();
        self.split = reported < last - first + 1;
        self.window.drain(..first + reported);
        self.window_start += (first + reported) as i64;
        self.received -= reported_received;
        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.last_feedback = Some(now);
        self.stats.feedbacks += 1;
        Ok(Some(n))
    }
}

/// The sender's record of one packet and what the feedback said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacketResult {
    /// Extended transport-wide sequence number.
    pub sequence: i64,
    /// When we sent it.
    pub sent_at: Instant,
    /// Its size in bytes.
    pub size: usize,
    /// Its arrival in microseconds on the remote's feedback clock (only differences
    /// between arrivals mean something), `None` when reported lost.
    pub arrival_us: Option<i64>,
    /// RFC 8888 feedback: the SSRC and RTP sequence number reported (`sequence` is then
    /// our send order over all streams). `None` for transport-wide feedback.
    pub rtp_packet: Option<(u32, u16)>,
}

/// The feedback format a [`TransportFeedback`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedbackFormat {
    /// Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01).
    TransportCc,
    /// RTP congestion control feedback (RFC 8888).
    Rfc8888,
}

/// One feedback packet read against the send log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportFeedback {
    /// The remote's feedback packet counter (transport-cc); for RFC 8888, which has none,
    /// our count of feedback packets read.
    pub feedback_count: u8,
    /// The format it was read from.
    pub format: FeedbackFormat,
    /// The reported packets we have a record of, in sequence order.
    pub packets: Vec<PacketResult>,
}

/// Counters of a [`TwccSender`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TwccSenderStats {
    /// Feedback packets read.
    pub feedbacks: u64,
    /// Packets reported received (each counted once).
    pub delivered: u64,
    /// Packets reported lost and not reported received since.
    pub lost: u64,
    /// Reported packets missing from the send log (too old or never sent).
    pub unknown: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sent {
    sequence: i64,
    sent_at: Instant,
    size: usize,
    /// `None` until reported; then whether it was received.
    received: Option<bool>,
}

/// The send side: what we sent, and what feedback says about it.
#[derive(Debug, Clone)]
pub struct TwccSender {
    log: VecDeque<Sent>,
    capacity: usize,
    newest: Option<i64>,
    stats: TwccSenderStats,
}

impl TwccSender {
    /// A sender logging the last `capacity` packets (allocated once; 4,096 covers a second
    /// at about 30 Mbit/s of 1,000-byte packets).
    pub fn new(capacity: usize) -> TwccSender {
        TwccSender {
            log: VecDeque::with_capacity(capacity),
            capacity,
            newest: None,
            stats: TwccSenderStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> TwccSenderStats {
        self.stats
    }

    /// Log a sent packet carrying transport-wide sequence number `sequence`. A sequence
    /// number going back restarts the log.
    pub fn on_sent(&mut self, sequence: u16, size: usize, now: Instant) {
        let extended = extend(self.newest, sequence);
        if self.newest.is_some_and(|n| extended <= n) {
            self.log.clear();
        }
        self.newest = Some(extended);
        if self.capacity == 0 {
            return;
        }
        if self.log.len() >= self.capacity {
            self.log.pop_front();
        }
        self.log.push_back(Sent {
            sequence: extended,
            sent_at: now,
            size,
            received: None,
        });
    }

    /// Read one feedback: the reported packets matched to their send records.
    pub fn on_feedback(&mut self, feedback: &TransportCcFeedback<'_>) -> TransportFeedback {
        self.stats.feedbacks += 1;
        let mut packets = Vec::with_capacity(usize::from(feedback.status_count));
        let newest = self.newest;
        for (sequence, arrival_us) in feedback.arrivals() {
            let extended = extend(newest, sequence);
            let Ok(i) = self.log.binary_search_by_key(&extended, |s| s.sequence) else {
                self.stats.unknown += 1;
                continue;
            };
            let sent = &mut self.log[i];
            match (sent.received, arrival_us.is_some()) {
                (None, true) => self.stats.delivered += 1,
                (None, false) => self.stats.lost += 1,
                (Some(false), true) => {
                    self.stats.lost -= 1;
                    self.stats.delivered += 1;
                }
                _ => {}
            }
            if sent.received != Some(true) {
                sent.received = Some(arrival_us.is_some());
            }
            packets.push(PacketResult {
                sequence: extended,
                sent_at: sent.sent_at,
                size: sent.size,
                arrival_us,
                rtp_packet: None,
            });
        }
        TransportFeedback {
            feedback_count: feedback.feedback_count,
            format: FeedbackFormat::TransportCc,
            packets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtcpPacket;

    const MS: Duration = Duration::from_millis(1);

    /// A parsed feedback: its count and `(sequence, arrival)` per packet.
    type Parsed = (u8, Vec<(u16, Option<i64>)>);

    /// Every feedback due at `now`, parsed back.
    fn feedbacks(r: &mut TwccReceiver, now: Instant) -> Vec<Parsed> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        while let Some(n) = r.poll_feedback(now, 1, 2, &mut buf).expect("write") {
            let (p, used) = RtcpPacket::parse_one(&buf[..n]).expect("rtcp");
            assert_eq!(used, n);
            let RtcpPacket::TransportCc { fci, .. } = p else {
                panic!("not transport-cc")
            };
            let fb = TransportCcFeedback::parse(&fci).expect("fci");
            out.push((fb.feedback_count, fb.arrivals().collect()));
            assert!(out.len() < 100, "feedback loop ends");
        }
        out
    }

    #[test]
    fn feedback_every_interval_reports_arrivals_and_losses() {
        let t0 = Instant::now();
        let mut r = TwccReceiver::new(TwccReceiverConfig::default());
        assert_eq!(r.poll_timeout(), None);
        for s in 0..10u16 {
            if s != 4 {
                r.on_packet(s, t0 + u32::from(s) * MS);
            }
        }
        assert_eq!(r.poll_timeout(), Some(t0 + 100 * MS));
        assert!(feedbacks(&mut r, t0 + 99 * MS).is_empty());
        let fbs = feedbacks(&mut r, t0 + 100 * MS);
        assert_eq!(fbs.len(), 1);
        let (count, packets) = &fbs[0];
        assert_eq!(*count, 0);
        assert_eq!(packets.len(), 10);
        assert_eq!(packets[4], (4, None));
        let first = packets[0].1.expect("received");
        for (s, at) in packets {
            if *s != 4 {
                assert_eq!(at.expect("received") - first, i64::from(*s) * 1000);
            }
        }
        assert_eq!(r.poll_timeout(), None, "all reported");
        r.on_packet(10, t0 + 150 * MS);
        assert_eq!(r.poll_timeout(), Some(t0 + 200 * MS));
        let fbs = feedbacks(&mut r, t0 + 200 * MS);
        assert_eq!((fbs[0].0, fbs[0].1[0].0), (1, 10));
        assert_eq!(r.stats().feedbacks, 2);
    }

    #[test]
    fn many_packets_make_feedback_due_at_once_and_split() {
        let t0 = Instant::now();
        let cfg = TwccReceiverConfig {
            max_per_feedback: 40,
            ..TwccReceiverConfig::default()
        };
        let mut r = TwccReceiver::new(cfg);
        for s in 0..100u16 {
            r.on_packet(s.wrapping_add(65500), t0);
        }
        assert_eq!(r.poll_timeout(), Some(t0), "threshold reached");
        let fbs = feedbacks(&mut r, t0);
        let shape: Vec<(u8, u16, usize)> = fbs.iter().map(|(c, p)| (*c, p[0].0, p.len())).collect();
        assert_eq!(shape, vec![(0, 65500, 40), (1, 4, 40), (2, 44, 20)]);
    }

    #[test]
    fn a_delta_too_large_for_two_bytes_splits_the_feedback() {
        let t0 = Instant::now();
        let mut r = TwccReceiver::new(TwccReceiverConfig::default());
        r.on_packet(0, t0);
        r.on_packet(1, t0 + 9000 * MS);
        let fbs = feedbacks(&mut r, t0 + 9100 * MS);
        assert_eq!(fbs.len(), 2);
        let a = fbs[0].1[0].1.expect("received");
        let b = fbs[1].1[0].1.expect("received");
        assert_eq!(b - a, 9_000_000, "reference times carry the jump");
    }

    #[test]
    fn late_and_far_ahead_packets_are_bounded() {
        let t0 = Instant::now();
        let mut r = TwccReceiver::new(TwccReceiverConfig::default());
        r.on_packet(10, t0);
        r.on_packet(11, t0);
        assert_eq!(feedbacks(&mut r, t0 + 100 * MS).len(), 1);
        r.on_packet(9, t0 + 101 * MS);
        assert_eq!(r.stats().late, 1);
        assert_eq!(r.poll_timeout(), None);
        // A window's worth ahead: the old ones go unreported, the window stays bounded.
        r.on_packet(12, t0 + 102 * MS);
        r.on_packet(12 + TwccReceiver::WINDOW as u16, t0 + 103 * MS);
        assert_eq!(r.stats().overflowed, 1);
        assert!(r.window.len() <= TwccReceiver::WINDOW);
        assert_eq!(r.window.capacity(), TwccReceiver::WINDOW);
    }

    #[test]
    fn sender_matches_feedback_to_send_times() {
        let t0 = Instant::now();
        let mut tx = TwccSender::new(4096);
        let mut rx = TwccReceiver::new(TwccReceiverConfig::default());
        let mut buf = [0u8; 1500];
        for s in 0..20u16 {
            tx.on_sent(s, 1000 + usize::from(s), t0 + u32::from(s) * MS);
            // Every fifth packet is lost (19, the last, is not reported: nothing after it
            // says it is lost rather than late); the rest take 30 ms, plus 1 ms per packet of
            // queueing from the tenth on.
            if s % 5 != 4 {
                let queue = u32::from(s.saturating_sub(9));
                rx.on_packet(s, t0 + (u32::from(s) + 30 + queue) * MS);
            }
        }
        let n = rx
            .poll_feedback(t0 + 200 * MS, 1, 2, &mut buf)
            .expect("write")
            .expect("due");
        let (RtcpPacket::TransportCc { fci, .. }, _) =
            RtcpPacket::parse_one(&buf[..n]).expect("rtcp")
        else {
            panic!("not transport-cc")
        };
        let fb = tx.on_feedback(&TransportCcFeedback::parse(&fci).expect("fci"));
        assert_eq!(fb.packets.len(), 19);
        let lost: Vec<i64> = fb
            .packets
            .iter()
            .filter(|p| p.arrival_us.is_none())
            .map(|p| p.sequence)
            .collect();
        assert_eq!(lost, vec![4, 9, 14]);
        let p0 = fb.packets[0];
        assert_eq!((p0.sent_at, p0.size), (t0, 1000));
        let base = p0.arrival_us.expect("received");
        for p in fb.packets.iter().filter(|p| p.arrival_us.is_some()) {
            let one_way = p.arrival_us.expect("received") - base;
            let sent = p.sent_at.duration_since(t0).as_micros() as i64;
            let queue = (p.sequence - 9).max(0) * 1000;
            assert_eq!(one_way - sent, queue, "packet {}", p.sequence);
        }
        let s = tx.stats();
        assert_eq!((s.feedbacks, s.delivered, s.lost, s.unknown), (1, 16, 3, 0));
    }

    #[test]
    fn sender_counts_a_late_arrival_once_and_unknown_packets() {
        let t0 = Instant::now();
        let mut tx = TwccSender::new(4);
        for s in 0..6u16 {
            tx.on_sent(s, 100, t0);
        }
        let mut fci = [0u8; 64];
        let lost_then = [None, Some(4i16)];
        let write = |deltas: &[Option<i16>], base: u16, fci: &mut [u8]| {
            let w = TransportCcWrite {
                base_sequence: base,
                reference_time: 0,
                feedback_count: 0,
                deltas,
            };
            crate::rtp::transport_cc::write_transport_cc_fci(&w, fci).expect("write")
        };
        let n = write(&lost_then, 4, &mut fci);
        tx.on_feedback(&TransportCcFeedback::parse(&fci[..n]).expect("fci"));
        assert_eq!((tx.stats().delivered, tx.stats().lost), (1, 1));
        let n = write(&[Some(1), Some(1)], 4, &mut fci);
        tx.on_feedback(&TransportCcFeedback::parse(&fci[..n]).expect("fci"));
        assert_eq!(
            (tx.stats().delivered, tx.stats().lost),
            (2, 0),
            "4 arrived late"
        );
        // 0 and 1 fell out of the 4-packet log.
        let n = write(&[Some(1), Some(1), Some(1)], 0, &mut fci);
        let fb = tx.on_feedback(&TransportCcFeedback::parse(&fci[..n]).expect("fci"));
        assert_eq!(fb.packets.len(), 1);
        assert_eq!(tx.stats().unknown, 2);
    }
}
