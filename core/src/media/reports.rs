//! RTCP sender and receiver reports (RFC 3550 section 6.4): what the PeerConnection counts
//! per sent and received SSRC, the report blocks built from it, and RTT from the
//! LSR/DLSR fields of the peer's reports.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::rtp::ReportBlock;

/// Seconds between 1900 (NTP) and 1970 (UNIX).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// SR times remembered for RTT (one per report interval).
const MAX_SR_HISTORY: usize = 16;

/// 64-bit NTP time of a wall-clock instant.
pub fn ntp_time(wall: SystemTime) -> u64 {
    let d = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// What we sent on one SSRC.
#[derive(Debug, Clone, Default)]
pub struct SendCounters {
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
    /// The RTP timestamp of the last packet and when it was sent.
    pub last: Option<(u32, Instant)>,
    /// The RTP clock rate.
    pub clock_rate: u32,
}

impl SendCounters {
    /// The RTP timestamp corresponding to `now`, extrapolated from the last packet.
    pub fn rtp_timestamp_at(&self, now: Instant) -> u32 {
        match self.last {
            Some((ts, at)) => {
                let ticks =
                    now.saturating_duration_since(at).as_secs_f64() * f64::from(self.clock_rate);
                ts.wrapping_add(ticks as u32)
            }
            None => 0,
        }
    }
}

/// What we received on one remote SSRC.
#[derive(Debug, Clone, Default)]
pub struct ReceiveCounters {
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Middle 32 bits of the last SR from this source and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiveCounters {
    /// Count a received packet (RFC 3550 appendix A.1, simplified: no probation).
    pub fn on_packet(&mut self, seq: u16) {
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
        } else if seq.wrapping_sub(self.max_seq) < 0x8000 {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        }
        self.received = self.received.wrapping_add(1);
    }

    /// Remember an SR from this source.
    pub fn on_sender_report(&mut self, ntp: u64, now: Instant) {
        self.last_sr = Some(((ntp >> 16) as u32, now));
    }

    /// The report block about this source, advancing the "since last report" counters.
    pub fn report_block(&mut self, ssrc: u32, now: Instant) -> ReportBlock {
        let extended_max = self.cycles.wrapping_add(u32::from(self.max_seq));
        let expected = extended_max.wrapping_sub(self.base_seq).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, dlsr) = match self.last_sr {
            Some((mid, at)) => (
                mid,
                (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
            ),
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost: fraction,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_sequence: extended_max,
            jitter: 0,
            last_sr,
            delay_since_last_sr: dlsr,
        }
    }
}

/// RTT from our sender reports and the peer's report blocks.
#[derive(Debug, Default)]
pub struct RttEstimator {
    sent: VecDeque<(u32, Instant)>,
    rtt: Option<Duration>,
}

impl RttEstimator {
    /// We sent an SR with this NTP time.
    pub fn on_sr_sent(&mut self, ntp: u64, now: Instant) {
        if self.sent.len() >= MAX_SR_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back(((ntp >> 16) as u32, now));
    }

    /// A report block about one of our SSRCs arrived: RTT = now - SR sent - DLSR.
    pub fn on_report_block(&mut self, block: &ReportBlock, now: Instant) {
        if block.last_sr == 0 {
            return;
        }
        if let Some((_, sent)) = self.sent.iter().find(|(mid, _)| *mid == block.last_sr) {
            let dlsr = Duration::from_secs_f64(f64::from(block.delay_since_last_sr) / 65536.0);
            if let Some(rtt) = now.saturating_duration_since(*sent).checked_sub(dlsr) {
                self.rtt = Some(rtt);
            }
        }
    }

    /// The latest RTT.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_wraparound() {
        let now = Instant::now();
        let mut r = ReceiveCounters::default();
        for seq in (65530u16..=65535).chain(0..10) {
            if seq != 2 && seq != 65533 {
                r.on_packet(seq);
            }
        }
        let b = r.report_block(7, now);
        assert_eq!(b.highest_sequence, (1 << 16) + 9);
        assert_eq!(b.cumulative_lost, 2);
        assert_eq!(b.fraction_lost, (2 * 256 / 16) as u8);
        // Nothing new: fraction 0 next time.
        assert_eq!(r.report_block(7, now).fraction_lost, 0);
    }

    #[test]
    fn rtt_from_lsr_and_dlsr() {
        let t0 = Instant::now();
        let mut e = RttEstimator::default();
        let ntp = 0x1234_5678_9ABC_DEF0;
        e.on_sr_sent(ntp, t0);
        let block = ReportBlock {
            ssrc: 1,
            fraction_lost: 0,
            cumulative_lost: 0,
            highest_sequence: 0,
            jitter: 0,
            last_sr: (ntp >> 16) as u32,
            delay_since_last_sr: 65536 / 2,
        };
        e.on_report_block(&block, t0 + Duration::from_millis(600));
        let rtt = e.rtt().expect("rtt");
        assert!(
            rtt >= Duration::from_millis(99) && rtt <= Duration::from_millis(101),
            "{rtt:?}"
        );
        assert_eq!(ntp_time(UNIX_EPOCH) >> 32, NTP_UNIX_OFFSET);
    }
}
