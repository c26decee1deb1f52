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
/// A stream not seen for this long is no longer named in REMB; with no packet measured
/// for this long, no REMB is sent until packets come again.
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
    /// When the last packet was measured.
    last_packet: Option<Instant>,
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
            last_packet: None,
            scratch: Vec::with_capacity(MAX_REMB_SSRCS),
        }
    }

    fn on_packet(&mut self, ssrc: Option<u32>, abs_send_time: u32, size: usize, now: Instant) {
        self.estimator.on_packet(now, abs_send_time, size);
        self.last_packet = Some(now);
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

    /// When the next REMB is due: none once nothing was measured for [`SSRC_TIMEOUT`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let estimate = self.estimator.estimate_bps()?;
        let due = match self.last_sent {
            None => self.ready_at?,
            Some((at, sent))
                if estimate.saturating_mul(100) < sent.saturating_mul(REMB_DROP_PERCENT) =>
            {
                at + REMB_MIN_INTERVAL
            }
            Some((at, _)) => at + REMB_INTERVAL,
        };
        let quiet_from = self.last_packet? + SSRC_TIMEOUT;
        (due <= quiet_from).then_some(due)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::session::testing::*;
    use crate::media::session::{extension_id, MediaEvent};
    use crate::rtp::extensions::ExtensionKind;
    use crate::rtp::{self, RtcpPacket, RtpWrite};
    use crate::srtp::SrtpContext;

    /// The answerer of Chromium's simulcast offer (it receives video with mid and
    /// abs-send-time), keyed; with `feedback` the feedback its codecs negotiated, or as
    /// negotiated when `None`.
    fn receiver(
        feedback: Option<&[&str]>,
    ) -> (MediaSession, Vec<Transceiver>, SrtpContext, SrtpContext) {
        let now = Instant::now();
        let mut ts = answerer(now, SIMULCAST_OFFER).transceivers().to_vec();
        if let Some(feedback) = feedback {
            for c in ts.iter_mut().flat_map(|t| t.codecs.iter_mut()) {
                c.rtcp_feedback = feedback.iter().map(|f| f.to_string()).collect();
            }
        }
        let (mut media, peer_out, peer_in) = keyed(now, true);
        media.announce_tracks(&ts);
        drain(&mut media);
        (media, ts, peer_out, peer_in)
    }

    /// One protected VP8 packet of the remote, with mid "0" and abs-send-time `abs`.
    fn packet(out: &mut SrtpContext, t: &Transceiver, seq: u16, abs: u32) -> Vec<u8> {
        let mid = extension_id(t, crate::media::receive::MID_URI).expect("mid");
        let abs_id = extension_id(t, ExtensionKind::AbsSendTime.uri()).expect("abs-send-time");
        let abs_bytes = [(abs >> 16) as u8, (abs >> 8) as u8, abs as u8];
        let mut buf = vec![0u8; 1500];
        let n = rtp::write_rtp(
            &RtpWrite {
                marker: false,
                payload_type: 96,
                sequence_number: seq,
                timestamp: u32::from(seq) * 3000,
                ssrc: 0x1111,
                extensions: &[(mid, b"0"), (abs_id, &abs_bytes)],
                payload: &[0u8; 1000],
            },
            &mut buf,
        )
        .expect("write");
        let n = out.protect_rtp(&mut buf, n).expect("protect");
        buf.truncate(n);
        buf
    }

    /// Feed `seconds` of packets every 10 ms (about 850 kbit/s) with constant delay,
    /// running the media timers as they come due; the REMBs the remote receives, with
    /// when they left.
    fn stream(
        media: &mut MediaSession,
        ts: &[Transceiver],
        (peer_out, peer_in): (&mut SrtpContext, &mut SrtpContext),
        start: Instant,
        seconds: u64,
    ) -> Vec<(Duration, u64, Vec<u32>)> {
        let mut rembs = Vec::new();
        let mut rng = crate::rng::Rng::from_seed(3);
        for i in 0..seconds * 100 {
            let now = start + Duration::from_millis(10 * i);
            while let Some(due) = media.poll_timeout().filter(|d| *d <= now) {
                media.handle_timeout(due, ts, &mut rng);
                let mut buf = [0u8; 1500];
                while let Some(n) = media.poll_transmit(&mut buf) {
                    let Ok(m) = peer_in.unprotect_rtcp(&mut buf, n) else {
                        continue;
                    };
                    for p in RtcpPacket::parse_compound(&buf[..m]).flatten() {
                        if let RtcpPacket::Remb { bitrate, ssrcs, .. } = p {
                            rembs.push((due - start, bitrate, ssrcs));
                        }
                    }
                }
            }
            let abs = ((i * 10 * (1 << 18) / 1000) & 0xFF_FFFF) as u32;
            let p = packet(peer_out, &ts[0], i as u16, abs);
            assert!(media.handle_srtp(now, &p, ts));
            drain(media);
        }
        rembs
    }

    #[test]
    fn with_goog_remb_alone_remb_leaves_once_a_second_naming_the_stream() {
        let (mut media, ts, mut out, mut peer_in) = receiver(Some(&["goog-remb", "nack"]));
        assert!(sends_remb(&ts[0]));
        let start = Instant::now();
        let rembs = stream(&mut media, &ts, (&mut out, &mut peer_in), start, 5);
        let s = media.loss_recovery_stats();
        // Then the remote stops sending: REMB goes on while the streams are recent, then
        // stops (no timer left for it).
        let mut rng = crate::rng::Rng::from_seed(4);
        let mut after = Vec::new();
        while let Some(due) = media.poll_timeout() {
            if due > start + Duration::from_secs(60) {
                break;
            }
            media.handle_timeout(due, &ts, &mut rng);
            let mut buf = [0u8; 1500];
            while let Some(n) = media.poll_transmit(&mut buf) {
                if let Ok(m) = peer_in.unprotect_rtcp(&mut buf, n) {
                    let remb = RtcpPacket::parse_compound(&buf[..m])
                        .flatten()
                        .any(|p| matches!(p, RtcpPacket::Remb { .. }));
                    if remb {
                        after.push(due - start);
                    }
                }
            }
        }
        let last_packet = Duration::from_millis(4990);
        assert!(!after.is_empty(), "REMB continues a while");
        assert!(
            after.iter().all(|t| *t <= last_packet + SSRC_TIMEOUT),
            "{after:?}"
        );
        // The first once the estimate exists (four steadily spaced packets make a probe
        // cluster), then every second while it grows.
        assert!(rembs.len() >= 4, "{rembs:?}");
        assert!(rembs[0].0 <= Duration::from_millis(50), "{rembs:?}");
        for pair in rembs.windows(2) {
            assert_eq!(pair[1].0 - pair[0].0, REMB_INTERVAL, "{rembs:?}");
            assert!(pair[1].1 > pair[0].1, "the estimate grows: {rembs:?}");
        }
        assert!(rembs.iter().all(|(_, _, ssrcs)| ssrcs == &[0x1111]));
        assert_eq!(s.remb_sent, rembs.len() as u64);
        let (e, m) = crate::rtp::remb::encode_bitrate(s.remb_last_sent_bps);
        assert_eq!(u64::from(m) << e, rembs.last().expect("sent").1);
        assert_eq!(s.remb_packets_measured, 500);
        assert_eq!(s.remb_overuse_signals, 0);
    }

    #[test]
    fn with_transport_wide_or_rfc_8888_feedback_no_remb_is_sent() {
        for feedback in [
            None, // Chromium's offer: goog-remb and transport-cc
            Some(&["goog-remb", "ack ccfb"][..]),
            Some(&["nack"][..]),
        ] {
            let (mut media, ts, mut out, mut peer_in) = receiver(feedback);
            assert!(!sends_remb(&ts[0]), "{feedback:?}");
            let start = Instant::now();
            let rembs = stream(&mut media, &ts, (&mut out, &mut peer_in), start, 2);
            assert!(rembs.is_empty(), "{feedback:?}: {rembs:?}");
            assert_eq!(media.loss_recovery_stats().remb_packets_measured, 0);
        }
    }

    #[test]
    fn a_drop_of_3_percent_is_sent_after_200_ms_not_after_a_second() {
        let start = Instant::now();
        let mut g = RembGenerator::new();
        assert_eq!(g.poll_timeout(), None, "nothing before an estimate");
        for i in 0..100u64 {
            let abs = (i * 10 * (1 << 18) / 1000) as u32;
            g.on_packet(Some(1), abs, 1000, start + Duration::from_millis(10 * i));
        }
        let estimate = g.estimator.estimate_bps().expect("an estimate");
        assert!(g
            .poll_timeout()
            .is_some_and(|t| t <= start + Duration::from_secs(1)));
        // The last REMB said the same: the next is a second later.
        g.last_sent = Some((start, estimate));
        assert_eq!(g.poll_timeout(), Some(start + REMB_INTERVAL));
        // It said 2 % more: still a second.
        g.last_sent = Some((start, estimate * 102 / 100));
        assert_eq!(g.poll_timeout(), Some(start + REMB_INTERVAL));
        // It said 4 % more: the drop leaves after the minimum interval.
        g.last_sent = Some((start, estimate * 104 / 100));
        assert_eq!(g.poll_timeout(), Some(start + REMB_MIN_INTERVAL));
    }

    #[test]
    fn a_received_remb_is_an_event_and_counted() {
        let (mut media, ts, mut out, _) = receiver(None);
        let remb = RtcpPacket::Remb {
            sender: 0x1111,
            bitrate: 1_234_000,
            ssrcs: vec![ts[0].sender_ssrc],
        };
        let mut buf = vec![0u8; 1500];
        let n = remb.write(&mut buf).expect("write");
        let n = out.protect_rtcp(&mut buf, n).expect("protect");
        assert!(media.handle_srtp(Instant::now(), &buf[..n], &ts));
        let carried = 1_234_000u64 >> 3 << 3; // 18 mantissa bits
        let events: Vec<_> = drain(&mut media)
            .into_iter()
            .filter(|e| matches!(e, MediaEvent::RemoteBitrateEstimate { .. }))
            .collect();
        assert_eq!(
            events,
            vec![MediaEvent::RemoteBitrateEstimate {
                bitrate_bps: carried,
                ssrcs: vec![ts[0].sender_ssrc],
            }]
        );
        let s = media.loss_recovery_stats();
        assert_eq!((s.remb_received, s.remb_last_received_bps), (1, carried));
    }
}
