//! REMB in the media session, both ways.
//!
//! - **receive side**: on a transceiver that negotiated `a=rtcp-fb:<pt> goog-remb` and
//!   neither `transport-cc` nor `ack ccfb` (those are preferred: with them the sender
//!   estimates the bandwidth itself, which works better), every received RTP packet that
//!   carries the negotiated abs-send-time extension feeds a [`DelayBasedEstimator`]. Its
//!   estimate leaves as REMB (RTCP PSFB FMT 15, naming the SSRCs measured) once it
//!   exists, then once a second, and sooner, though at most every 200 ms, when it fell
//!   3 % or more below the last value sent: libwebrtc's figures (its REMB throttler's
//!   200 ms interval and its 97 % threshold; it repeats REMB with each RTCP report,
//!   about once a second for video).
//! - **send side**: a REMB from the remote becomes a `RemoteBitrateEstimate` event and
//!   is counted (the last value too), whatever was negotiated: it is the remote's cap
//!   on what we send.

use std::time::{Duration, Instant};

use crate::media::bwe::{DelayBasedEstimator, EstimatorStats};
use crate::media::recovery::{negotiated_ccfb, negotiated_transport_cc};
use crate::media::session::{MediaEvent, MediaSession};
use crate::media::Transceiver;
use crate::rtp::remb::{remb_len, write_remb};

/// Most SSRCs one REMB names (streams measured together).
const MAX_REMB_SSRCS: usize = 16;
/// REMB is repeated this often.
const REMB_INTERVAL: Duration = Duration::from_secs(1);
/// A dropped estimate is sent at most this often.
const REMB_MIN_INTERVAL: Duration = Duration::from_millis(200);
/// An estimate below this percentage of the last one sent is sent early.
const REMB_DROP_PERCENT: u64 = 97;
/// A stream not seen for this long is no longer named in REMB.
const SSRC_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether any codec of `t` negotiated `a=rtcp-fb:<pt> goog-remb`.
pub(crate) fn negotiated_remb(t: &Transceiver) -> bool {
    t.codecs.iter().any(|c| c.has_feedback("goog-remb"))
}

/// Whether we estimate the bandwidth of what `t` receives and send REMB: `goog-remb`
/// negotiated, and neither transport-wide nor RFC 8888 feedback (preferred).
pub(crate) fn sends_remb(t: &Transceiver) -> bool {
    negotiated_remb(t) && !negotiated_transport_cc(t) && !negotiated_ccfb(t)
}

/// The estimator and REMB schedule of the streams we receive.
#[derive(Debug)]
pub(crate) struct RembGenerator {
    estimator: DelayBasedEstimator,
    /// The SSRCs measured and when each was last seen (at most [`MAX_REMB_SSRCS`]).
    ssrcs: Vec<(u32, Instant)>,
    /// When the estimator first had an estimate.
    ready_at: Option<Instant>,
    /// When the last REMB left and what it said.
    last_sent: Option<(Instant, u64)>,
    /// Reused list of the SSRCs written in a REMB.
    scratch: Vec<u32>,
}

impl RembGenerator {
    fn new() -> RembGenerator {
        RembGenerator {
            estimator: DelayBasedEstimator::new(),
            ssrcs: Vec::with_capacity(MAX_REMB_SSRCS),
            ready_at: None,
            last_sent: None,
            scratch: Vec::with_capacity(MAX_REMB_SSRCS),
        }
    }

    fn on_packet(&mut self, ssrc: Option<u32>, abs_send_time: u32, size: usize, now: Instant) {
        self.estimator.on_packet(now, abs_send_time, size);
        if self.ready_at.is_none() && self.estimator.estimate_bps().is_some() {
            self.ready_at = Some(now);
        }
        let Some(ssrc) = ssrc else {
            return;
        };
        let room = self.ssrcs.len() < MAX_REMB_SSRCS;
        match self.ssrcs.iter_mut().find(|(s, _)| *s == ssrc) {
            Some(entry) => entry.1 = now,
            None if room => self.ssrcs.push((ssrc, now)),
            None => {}
        }
    }

    /// When the next REMB is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let estimate = self.estimator.estimate_bps()?;
        let Some((at, sent)) = self.last_sent else {
            return self.ready_at;
        };
        if estimate.saturating_mul(100) < sent.saturating_mul(REMB_DROP_PERCENT) {
            Some(at + REMB_MIN_INTERVAL)
        } else {
            Some(at + REMB_INTERVAL)
        }
    }

    /// The estimator's counters.
    pub(crate) fn estimator_stats(&self) -> EstimatorStats {
        self.estimator.stats()
    }
}

/// REMB state of a media session: the generator once a REMB stream arrived, and the
/// counters of both directions.
#[derive(Debug, Default)]
pub(crate) struct RembState {
    pub(crate) generator: Option<Box<RembGenerator>>,
    pub(crate) stats: RembStats,
}

/// REMB counters, merged into `LossRecoveryStats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RembStats {
    pub(crate) sent: u64,
    pub(crate) last_sent_bps: u64,
    pub(crate) received: u64,
    pub(crate) last_received_bps: u64,
}

impl RembState {
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.generator.as_ref().and_then(|g| g.poll_timeout())
    }
}

impl MediaSession {
    /// A received packet on a transceiver that sends REMB, with its abs-send-time value
    /// and whole size; `ssrc` is the stream to name in REMB (none for RTX).
    pub(super) fn record_remb(
        &mut self,
        ssrc: Option<u32>,
        abs_send_time: u32,
        size: usize,
        now: Instant,
    ) {
        self.recovery
            .remb
            .generator
            .get_or_insert_with(|| Box::new(RembGenerator::new()))
            .on_packet(ssrc, abs_send_time, size, now);
    }

    /// Send REMB when due (the media timers call it).
    pub(super) fn send_remb_if_due(&mut self, now: Instant, transceivers: &[Transceiver]) {
        let sender = transceivers.first().map_or(1, |t| t.sender_ssrc);
        let Some(generator) = self.recovery.remb.generator.as_mut() else {
            return;
        };
        if generator.poll_timeout().is_none_or(|t| now < t) {
            return;
        }
        let Some(estimate) = generator.estimator.estimate_bps() else {
            return;
        };
        generator
            .ssrcs
            .retain(|(_, seen)| now.saturating_duration_since(*seen) < SSRC_TIMEOUT);
        generator.scratch.clear();
        generator
            .scratch
            .extend(generator.ssrcs.iter().map(|(s, _)| *s));
        generator.last_sent = Some((now, estimate));
        let ssrcs = std::mem::take(&mut generator.scratch);
        let written = self
            .scratch
            .get_mut(..remb_len(ssrcs.len()))
            .and_then(|out| write_remb(sender, estimate, &ssrcs, out));
        if let Some(generator) = self.recovery.remb.generator.as_mut() {
            generator.scratch = ssrcs;
        }
        if let Some(n) = written {
            self.protect_and_queue_rtcp(n);
            let stats = &mut self.recovery.remb.stats;
            stats.sent += 1;
            stats.last_sent_bps = estimate;
        }
    }

    /// A REMB from the remote: counted and reported as an event.
    pub(super) fn on_remb(&mut self, bitrate_bps: u64, ssrcs: &[u32]) {
        let stats = &mut self.recovery.remb.stats;
        stats.received += 1;
        stats.last_received_bps = bitrate_bps;
        self.push_event(MediaEvent::RemoteBitrateEstimate {
            bitrate_bps,
            ssrcs: ssrcs.to_vec(),
        });
    }
}
