//! RTP congestion control feedback (RFC 8888), both sides, for one media session.
//!
//! - [`CcfbReceiver`]: records the sequence number and arrival time of every received RTP
//!   packet per SSRC (at most [`CcfbReceiver::MAX_STREAMS`] streams, each a window of
//!   [`CcfbReceiver::WINDOW`] packets allocated when the stream is first seen) and writes
//!   one feedback packet every [`CcfbReceiver::INTERVAL`] covering every packet since the
//!   previous one (lost ones with R=0), split over several packets when one would not fit
//!   the caller's buffer. ECN is not available to the core: every packet is reported
//!   "not ECT" (0). Arrival time offsets count back from the report timestamp in 1/1024 s,
//!   [`ATO_OVERRANGE`] beyond 8 s.
//! - [`CcfbSendLog`]: per sending SSRC, a ring of what we sent (RTP sequence number, send
//!   time, size, a send-order number), read against received feedback into the same
//!   [`TransportFeedback`] the transport-wide reader produces, with
//!   [`FeedbackFormat::Rfc8888`] and the SSRC and sequence number of each packet.
//!
//! Wire format: [`crate::rtp::ccfb`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::twcc::{FeedbackFormat, PacketResult, TransportFeedback};
use crate::rtp::ccfb::{
    write_ccfb, CcfbArrival, CcfbBlockWrite, CcfbFeedback, ATO_OVERRANGE, MAX_REPORTS_PER_BLOCK,
};
use crate::rtp::RtcpError;

/// Extend a 16-bit sequence number against the last extended one.
fn extend(last: Option<i64>, sequence: u16) -> i64 {
    match last {
        None => i64::from(sequence),
        Some(last) => last + i64::from(sequence.wrapping_sub(last as u16) as i16),
    }
}

/// Counters of a [`CcfbReceiver`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CcfbReceiverStats {
    /// Packets recorded.
    pub packets: u64,
    /// Feedback packets written.
    pub feedbacks: u64,
    /// Packets that arrived after the feedback covering them (not reported again).
    pub late: u64,
    /// Packets dropped unreported because a window overflowed or no stream slot was free.
    pub overflowed: u64,
}

#[derive(Debug, Clone)]
struct ReceiveStream {
    ssrc: u32,
    /// Arrival times from `start` on; the last entry is always a received packet.
    window: VecDeque<Option<Instant>>,
    /// Extended sequence number of `window[0]`.
    start: i64,
    newest: Option<i64>,
}

/// The receive side: arrivals per SSRC waiting for feedback.
#[derive(Debug, Clone, Default)]
pub struct CcfbReceiver {
    streams: Vec<ReceiveStream>,
    /// When the oldest unreported packet arrived (feedback is due an interval later).
    pending_since: Option<Instant>,
    last_feedback: Option<Instant>,
    /// The last feedback was split: the rest is due at once.
    split: bool,
    metrics: Vec<Option<CcfbArrival>>,
    stats: CcfbReceiverStats,
}

impl CcfbReceiver {
    /// Packets per stream recorded and not yet reported, at most.
    pub const WINDOW: usize = 2048;
    /// Remote streams reported, at most.
    pub const MAX_STREAMS: usize = 16;
    /// Feedback interval (RFC 8888 section 3.1 leaves it to the congestion controller;
    /// 50-200 ms is usual).
    pub const INTERVAL: Duration = Duration::from_millis(50);

    /// An empty receiver; stream windows are allocated when a stream is first seen.
    pub fn new() -> CcfbReceiver {
        CcfbReceiver::default()
    }

    /// The counters.
    pub fn stats(&self) -> CcfbReceiverStats {
        self.stats
    }

    /// Record an RTP packet of `ssrc` with sequence number `sequence`, arrived `now`.
    pub fn on_packet(&mut self, ssrc: u32, sequence: u16, now: Instant) {
        self.stats.packets += 1;
        let stream = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut self.streams[i],
            None if self.streams.len() < Self::MAX_STREAMS => {
                self.streams.push(ReceiveStream {
                    ssrc,
                    window: VecDeque::with_capacity(Self::WINDOW),
                    start: i64::from(sequence),
                    newest: None,
                });
                let last = self.streams.len() - 1;
                &mut self.streams[last]
            }
            None => {
                self.stats.overflowed += 1;
                return;
            }
        };
        let extended = extend(stream.newest, sequence);
        stream.newest = Some(stream.newest.map_or(extended, |n| n.max(extended)));
        if extended < stream.start {
            if stream.start - extended <= Self::WINDOW as i64 {
                self.stats.late += 1;
                return;
            }
            // Far behind what was reported: the sender restarted its sequence.
            stream.window.clear();
            stream.start = extended;
            stream.newest = Some(extended);
        }
        let limit = Self::WINDOW as i64;
        while extended - stream.start >= limit {
            if let Some(Some(_)) = stream.window.pop_front() {
                self.stats.overflowed += 1;
            }
            stream.start += 1;
            if stream.window.is_empty() {
                stream.start = extended;
            }
        }
        let index = (extended - stream.start) as usize;
        while stream.window.len() <= index {
            stream.window.push_back(None);
        }
        stream.window[index] = Some(now);
        if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
    }

    /// When feedback is next due: `None` with nothing to report.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let since = self.pending_since?;
        if self.split {
            return Some(since);
        }
        // One interval after the last feedback, or after the first packet when none was
        // sent yet.
        Some(match self.last_feedback {
            Some(last) => (last + Self::INTERVAL).max(since),
            None => since + Self::INTERVAL,
        })
    }

    /// Write the next feedback packet into `out` if one is due at `now`; returns its
    /// length. `report_timestamp` is `now` as the middle 32 bits of an NTP time. Call
    /// again while it returns `Some`: a large backlog is split over several packets.
    pub fn poll_feedback(
        &mut self,
        now: Instant,
        sender: u32,
        report_timestamp: u32,
        out: &mut [u8],
    ) -> Result<Option<usize>, RtcpError> {
        match self.poll_timeout() {
            Some(due) if due <= now => {}
            _ => return Ok(None),
        }
        // Header (8) and report timestamp (4); each block 8 plus its padded metrics.
        let mut room = out.len().saturating_sub(12);
        let mut counts = [0usize; Self::MAX_STREAMS];
        let mut split = false;
        self.metrics.clear();
        for (i, s) in self.streams.iter().enumerate() {
            if s.window.is_empty() {
                continue;
            }
            if room < 12 {
                split = true;
                break;
            }
            let fits = (room - 8) / 4 * 2;
            let n = s.window.len().min(fits).min(MAX_REPORTS_PER_BLOCK);
            split |= n < s.window.len();
            room -= 8 + (2 * n).div_ceil(4) * 4;
            counts[i] = n;
            for arrival in s.window.iter().take(n) {
                self.metrics.push(arrival.map(|at| CcfbArrival {
                    ecn: 0,
                    offset: arrival_time_offset(now.saturating_duration_since(at)),
                }));
            }
        }
        let mut blocks = [CcfbBlockWrite {
            ssrc: 0,
            begin_sequence: 0,
            packets: &[],
        }; Self::MAX_STREAMS];
        let mut n_blocks = 0;
        let mut at = 0;
        for (i, s) in self.streams.iter().enumerate() {
            if counts[i] == 0 {
                continue;
            }
            blocks[n_blocks] = CcfbBlockWrite {
                ssrc: s.ssrc,
                begin_sequence: s.start as u16,
                packets: self.metrics.get(at..at + counts[i]).unwrap_or_default(),
            };
            at += counts[i];
            n_blocks += 1;
        }
        if n_blocks == 0 {
            self.pending_since = None;
            return Ok(None);
        }
        let written = write_ccfb(sender, report_timestamp, &blocks[..n_blocks], out)?;
        for (i, s) in self.streams.iter_mut().enumerate() {
            s.window.drain(..counts[i]);
            s.start += counts[i] as i64;
        }
        self.split = split;
        self.pending_since = self
            .streams
            .iter()
            .any(|s| !s.window.is_empty())
            .then_some(now);
        self.last_feedback = Some(now);
        self.stats.feedbacks += 1;
        Ok(Some(written))
    }
}

/// A duration before the report in 1/1024 s, [`ATO_OVERRANGE`] when it does not fit.
fn arrival_time_offset(before: Duration) -> u16 {
    let units = (before.as_micros() * 1024 + 500_000) / 1_000_000;
    u16::try_from(units)
        .ok()
        .filter(|u| *u < ATO_OVERRANGE)
        .unwrap_or(ATO_OVERRANGE)
}

/// Counters of a [`CcfbSendLog`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CcfbSendStats {
    /// Feedback packets read.
    pub feedbacks: u64,
    /// Packets reported received (each counted once).
    pub delivered: u64,
    /// Packets reported lost and not reported received since.
    pub lost: u64,
    /// Reported packets missing from the send log (too old, never sent, other SSRC).
    pub unknown: u64,
}

#[derive(Debug, Clone, Copy)]
struct SentPacket {
    sequence: u16,
    order: i64,
    sent_at: Instant,
    size: usize,
    /// `None` until reported; then whether it was received.
    received: Option<bool>,
}

#[derive(Debug, Clone)]
struct SendStream {
    ssrc: u32,
    /// Indexed by sequence number modulo [`CcfbSendLog::RING`].
    ring: Vec<Option<SentPacket>>,
}

/// The send side: what we sent per SSRC, and what feedback says about it.
#[derive(Debug, Clone, Default)]
pub struct CcfbSendLog {
    streams: Vec<SendStream>,
    /// Send-order number of the next packet (all streams).
    next_order: i64,
    stats: CcfbSendStats,
}

impl CcfbSendLog {
    /// Packets remembered per sending SSRC.
    pub const RING: usize = 2048;
    /// Sending SSRCs logged, at most.
    pub const MAX_STREAMS: usize = 32;
    /// Packet results one feedback yields, at most.
    pub const MAX_RESULTS: usize = 4096;

    /// An empty log; a stream's ring is allocated when it first sends.
    pub fn new() -> CcfbSendLog {
        CcfbSendLog::default()
    }

    /// The counters.
    pub fn stats(&self) -> CcfbSendStats {
        self.stats
    }

    /// Log a sent RTP packet.
    pub fn on_sent(&mut self, ssrc: u32, sequence: u16, size: usize, now: Instant) {
        let stream = match self.streams.iter().position(|s| s.ssrc == ssrc) {
            Some(i) => &mut self.streams[i],
            None if self.streams.len() < Self::MAX_STREAMS => {
                self.streams.push(SendStream {
                    ssrc,
                    ring: vec![None; Self::RING],
                });
                let last = self.streams.len() - 1;
                &mut self.streams[last]
            }
            None => return,
        };
        stream.ring[usize::from(sequence) % Self::RING] = Some(SentPacket {
            sequence,
            order: self.next_order,
            sent_at: now,
            size,
            received: None,
        });
        self.next_order += 1;
    }

    /// Read one feedback: the reported packets we sent, matched to their send records,
    /// in report order. Packets reported received with an over-range arrival time count
    /// as delivered but are left out of the result (their arrival is unknown).
    pub fn on_feedback(&mut self, feedback: &CcfbFeedback<'_>) -> TransportFeedback {
        self.stats.feedbacks += 1;
        // 1/65536 s to microseconds: * 1e6 / 65536 = * 15625 / 1024.
        let report_us = i64::from(feedback.report_timestamp) * 15625 / 1024;
        let mut packets = Vec::new();
        for block in feedback.blocks() {
            let Some(stream) = self.streams.iter_mut().find(|s| s.ssrc == block.ssrc) else {
                self.stats.unknown += block.len() as u64;
                continue;
            };
            for (sequence, arrival) in block.packets() {
                let slot = &mut stream.ring[usize::from(sequence) % Self::RING];
                let Some(sent) = slot.as_mut().filter(|s| s.sequence == sequence) else {
                    self.stats.unknown += 1;
                    continue;
                };
                let received = arrival.is_some();
                match (sent.received, received) {
                    (None, true) => self.stats.delivered += 1,
                    (None, false) => self.stats.lost += 1,
                    (Some(false), true) => {
                        self.stats.lost -= 1;
                        self.stats.delivered += 1;
                    }
                    _ => {}
                }
                if sent.received != Some(true) {
                    sent.received = Some(received);
                }
                let arrival_us = match arrival {
                    Some(a) if a.offset >= ATO_OVERRANGE => continue,
                    Some(a) => Some(report_us - i64::from(a.offset) * 15625 / 16),
                    None => None,
                };
                if packets.len() < Self::MAX_RESULTS {
                    packets.push(PacketResult {
                        sequence: sent.order,
                        sent_at: sent.sent_at,
                        size: sent.size,
                        arrival_us,
                        rtp_packet: Some((block.ssrc, sequence)),
                    });
                }
            }
        }
        TransportFeedback {
            feedback_count: self.stats.feedbacks as u8,
            format: FeedbackFormat::Rfc8888,
            packets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtcpPacket;

    const MS: Duration = Duration::from_millis(1);

    /// Every feedback due at `now`, parsed back: per block `(ssrc, [(seq, offset)])`.
    fn feedbacks(r: &mut CcfbReceiver, now: Instant, buf_len: usize) -> Vec<Vec<Block>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; buf_len];
        while let Some(n) = r
            .poll_feedback(now, 7, 0x0001_0000, &mut buf)
            .expect("write")
        {
            let (p, used) = RtcpPacket::parse_one(&buf[..n]).expect("rtcp");
            assert_eq!(used, n);
            let fb = p.congestion_control_feedback().expect("ccfb").expect("ok");
            assert_eq!((fb.sender, fb.report_timestamp), (7, 0x0001_0000));
            out.push(
                fb.blocks()
                    .map(|b| {
                        (
                            b.ssrc,
                            b.packets().map(|(s, a)| (s, a.map(|a| a.offset))).collect(),
                        )
                    })
                    .collect(),
            );
            assert!(out.len() < 100, "feedback loop ends");
        }
        out
    }

    type Block = (u32, Vec<(u16, Option<u16>)>);

    #[test]
    fn feedback_reports_each_stream_with_losses_and_offsets() {
        let t0 = Instant::now();
        let mut r = CcfbReceiver::new();
        assert_eq!(r.poll_timeout(), None);
        for s in [65534u16, 65535, 1] {
            r.on_packet(0xA, s, t0);
        }
        r.on_packet(0xB, 10, t0 + 10 * MS);
        let due = r.poll_timeout().expect("due");
        assert_eq!(due, t0 + CcfbReceiver::INTERVAL);
        assert!(feedbacks(&mut r, due - MS, 1500).is_empty(), "not early");
        let got = feedbacks(&mut r, due, 1500);
        // 50 ms = 51.2 units, rounded; 40 ms = 40.96.
        assert_eq!(
            got,
            vec![vec![
                (
                    0xA,
                    vec![
                        (65534, Some(51)),
                        (65535, Some(51)),
                        (0, None),
                        (1, Some(51))
                    ]
                ),
                (0xB, vec![(10, Some(41))]),
            ]]
        );
        assert_eq!(r.poll_timeout(), None);
        // The next report starts after the last reported packet: 2 is reported lost.
        r.on_packet(0xA, 3, due + 20 * MS);
        let due2 = r.poll_timeout().expect("due");
        assert_eq!(due2, due + CcfbReceiver::INTERVAL);
        let got = feedbacks(&mut r, due2, 1500);
        assert_eq!(got, vec![vec![(0xA, vec![(2, None), (3, Some(31))])]]);
        // Late packet: counted, not reported.
        r.on_packet(0xA, 2, due2);
        assert_eq!(r.stats().late, 1);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn a_backlog_is_split_to_fit_and_offsets_saturate() {
        let t0 = Instant::now();
        let mut r = CcfbReceiver::new();
        for s in 0..1000u16 {
            r.on_packet(1, s, t0);
        }
        let got = feedbacks(&mut r, t0 + 9 * Duration::from_secs(1), 200);
        let total: usize = got.iter().map(|f| f[0].1.len()).sum();
        assert_eq!(total, 1000);
        assert!(got.len() > 5, "{}", got.len());
        assert!(got
            .iter()
            .flat_map(|f| f[0].1.iter())
            .all(|(_, o)| *o == Some(ATO_OVERRANGE)));
        // Consecutive, no gap, no overlap.
        let seqs: Vec<u16> = got
            .iter()
            .flat_map(|f| f[0].1.iter().map(|p| p.0))
            .collect();
        assert_eq!(seqs, (0..1000).collect::<Vec<u16>>());
    }

    #[test]
    fn streams_and_windows_are_bounded() {
        let t0 = Instant::now();
        let mut r = CcfbReceiver::new();
        for ssrc in 0..(CcfbReceiver::MAX_STREAMS as u32 + 5) {
            r.on_packet(ssrc, 0, t0);
        }
        assert_eq!(r.streams.len(), CcfbReceiver::MAX_STREAMS);
        assert_eq!(r.stats().overflowed, 5);
        r.on_packet(0, 30_000, t0);
        assert!(r.streams[0].window.len() <= CcfbReceiver::WINDOW);
        // A sequence restart far behind is followed, not counted late forever.
        let mut buf = [0u8; 1500];
        assert!(r
            .poll_feedback(t0 + Duration::from_secs(1), 1, 0, &mut buf)
            .expect("write")
            .is_some());
        let late = r.stats().late;
        r.on_packet(0, 20_000, t0);
        r.on_packet(0, 20_001, t0);
        assert_eq!(r.stats().late, late);
        assert_eq!(r.streams[0].start, r.streams[0].newest.expect("seen") - 1);
    }

    #[test]
    fn the_send_log_reads_feedback_into_results() {
        let t0 = Instant::now();
        let mut log = CcfbSendLog::new();
        for s in 0..4u16 {
            log.on_sent(0x51, s, 100 + usize::from(s), t0 + u32::from(s) * MS);
        }
        let mut receiver = CcfbReceiver::new();
        for s in [0u16, 1, 3] {
            receiver.on_packet(0x51, s, t0 + 10 * MS);
        }
        receiver.on_packet(0x99, 5, t0 + 10 * MS);
        let mut buf = [0u8; 1500];
        let n = receiver
            .poll_feedback(t0 + 60 * MS, 1, 0x0002_0000, &mut buf)
            .expect("write")
            .expect("due");
        let (p, _) = RtcpPacket::parse_one(&buf[..n]).expect("rtcp");
        let fb = p.congestion_control_feedback().expect("ccfb").expect("ok");
        let result = log.on_feedback(&fb);
        assert_eq!(result.format, FeedbackFormat::Rfc8888);
        let got: Vec<_> = result
            .packets
            .iter()
            .map(|p| (p.rtp_packet, p.sequence, p.size, p.arrival_us))
            .collect();
        // Report at 2 s; arrivals 50 ms (51 units = 49.8 ms) before it.
        let at = 2_000_000 - 51 * 15625 / 16;
        assert_eq!(
            got,
            vec![
                (Some((0x51, 0)), 0, 100, Some(at)),
                (Some((0x51, 1)), 1, 101, Some(at)),
                (Some((0x51, 2)), 2, 102, None),
                (Some((0x51, 3)), 3, 103, Some(at)),
            ]
        );
        let s = log.stats();
        assert_eq!((s.delivered, s.lost, s.unknown), (3, 1, 1));
    }

    #[test]
    fn offsets_round_to_1024ths() {
        assert_eq!(arrival_time_offset(Duration::ZERO), 0);
        assert_eq!(arrival_time_offset(Duration::from_secs(1)), 1024);
        assert_eq!(arrival_time_offset(Duration::from_millis(7990)), 8182);
        assert_eq!(arrival_time_offset(Duration::from_secs(8)), ATO_OVERRANGE);
    }
}
