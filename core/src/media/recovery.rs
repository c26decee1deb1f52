//! Loss recovery and congestion feedback wired into the media session.
//!
//! The glue between the media session's hooks and the standalone state machines:
//! - **receive**: a [`NackGenerator`] per remote SSRC whose codec negotiated
//!   `a=rtcp-fb:<pt> nack`, fed from the receive hook; its NACKs (reduced-size RTPFB
//!   generic NACK) and keyframe requests (PLI) leave from the media timers. Received RTX
//!   packets (RFC 4588) are unwrapped to the original SSRC, sequence number and payload
//!   type (the original SSRC from `a=ssrc-group:FID`, the `repaired-rid` extension, or the
//!   one stream of the transceiver), delivered once, and a duplicate is dropped and
//!   counted.
//! - **send**: a [`RetransmitHistory`] per sending SSRC whose codec negotiated `nack`
//!   (a `Bytes` clone per packet, no copy); a received NACK is answered from it, as RTX on
//!   the sender's RTX SSRC and the codec's RTX payload type when one is negotiated, plain
//!   otherwise.
//! - **transport-wide feedback**: one [`TwccReceiver`] for the PeerConnection (the
//!   sequence is transport-wide) records every packet carrying the extension on a
//!   transceiver that negotiated `transport-cc`, and its feedback leaves from the media
//!   timers; a [`TwccSender`] logs what we send with the extension and turns received
//!   feedback into a [`TransportFeedback`] event.
//! - **RFC 8888 feedback**: on a transceiver that negotiated `a=rtcp-fb:* ack ccfb` and
//!   not `transport-cc` (our answers never keep both; when a peer answers our offer with
//!   both, only transport-wide feedback is sent: it carries the same information for the
//!   whole transport), a [`CcfbReceiver`] records
//!   every received RTP packet per SSRC and its feedback leaves from the media timers; a
//!   [`CcfbSendLog`] logs what we send on a transceiver that negotiated `ack ccfb` and
//!   turns received RFC 8888 feedback into the same [`TransportFeedback`] event.
//! - **REMB**: where it is the only congestion feedback negotiated, a receive-side
//!   estimator and REMB schedule, and received REMB as an event (`remb.rs`).

use std::time::{Duration, Instant};

use crate::media::ccfb::{CcfbReceiver, CcfbSendLog};
use crate::media::nack::{NackConfig, NackGenerator, PacketArrival};
use crate::media::receive::ReceivedRtp;
use crate::media::remb::RembState;
use crate::media::reports::ntp_time;
use crate::media::retransmit::{write_rtx_payload, RetransmitConfig, RetransmitHistory};
use crate::media::session::{extension_id, transceiver_by_id, MediaSession, MAX_SSRCS};
use crate::media::twcc::{TransportFeedback, TwccReceiver, TwccReceiverConfig, TwccSender};
use crate::media::{RtpPacket, Transceiver};
use crate::rtp::extensions::ExtensionKind;
use crate::rtp::ssrc_map::{ssrc_map, SsrcMap};
use crate::rtp::transport_cc::TransportCcFeedback;
use crate::rtp::{self, RtpHeader, RtpWrite};

/// Most remote streams with a NACK generator (each holds a missing list of 1,000 entries).
const MAX_NACK_STREAMS: usize = 64;
/// Most sending streams with a retransmission history (each holds up to 1 MB of payload
/// references).
const MAX_HISTORIES: usize = 64;
/// Most `(pid, blp)` pairs in one NACK packet.
const MAX_NACK_PAIRS: usize = 64;
/// Sent packets remembered for transport-wide feedback.
const TWCC_SENT_LOG: usize = 4096;
/// The largest transport-wide feedback packet we write (room for SRTCP's trailer in
/// a datagram below the usual MTU).
const MAX_FEEDBACK_LEN: usize = 1200;
/// The repaired-rid header extension (RFC 8852): the rid an RTX packet repairs.
pub(crate) const REPAIRED_RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";

/// Loss-recovery and congestion-feedback counters of a PeerConnection's media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LossRecoveryStats {
    /// NACK packets we sent.
    pub nacks_sent: u64,
    /// Packets those NACKs asked for (retries included).
    pub packets_nacked: u64,
    /// Missing packets that arrived after we NACKed them (plain or RTX).
    pub packets_recovered: u64,
    /// Missing packets we gave up on.
    pub packets_given_up: u64,
    /// Keyframe requests (PLI) sent because packets were given up.
    pub keyframe_requests_sent: u64,
    /// NACK packets received about our senders.
    pub nacks_received: u64,
    /// Packets the remote's NACKs asked for.
    pub packets_requested: u64,
    /// Packets we resent (plain or RTX).
    pub packets_retransmitted: u64,
    /// Packets we resent as RTX.
    pub rtx_packets_sent: u64,
    /// RTX payload bytes we sent (OSN included).
    pub rtx_bytes_sent: u64,
    /// Requested packets no longer in the history.
    pub retransmit_not_found: u64,
    /// Requested packets resent less than an RTT before, not resent again.
    pub retransmit_suppressed: u64,
    /// RTX packets received (padding included).
    pub rtx_packets_received: u64,
    /// RTX payload bytes received (OSN included).
    pub rtx_bytes_received: u64,
    /// RTX packets without a payload (bandwidth probing padding), dropped.
    pub rtx_padding_received: u64,
    /// RTX packets whose original stream was not found, dropped.
    pub rtx_unmatched: u64,
    /// Retransmitted packets we already had, dropped.
    pub duplicates_dropped: u64,
    /// Transport-wide feedback packets we sent.
    pub twcc_feedback_sent: u64,
    /// Packets recorded for transport-wide feedback.
    pub twcc_packets_recorded: u64,
    /// Transport-wide feedback packets received.
    pub twcc_feedback_received: u64,
    /// Our packets the remote's feedback reported received.
    pub twcc_delivered: u64,
    /// Our packets the remote's feedback reported lost (and not received since).
    pub twcc_lost: u64,
    /// Received transport-wide feedback that did not parse.
    pub twcc_feedback_malformed: u64,
    /// RFC 8888 feedback packets we sent.
    pub ccfb_feedback_sent: u64,
    /// Packets recorded for RFC 8888 feedback.
    pub ccfb_packets_recorded: u64,
    /// RFC 8888 feedback packets received.
    pub ccfb_feedback_received: u64,
    /// Our packets the remote's RFC 8888 feedback reported received.
    pub ccfb_delivered: u64,
    /// Our packets the remote's RFC 8888 feedback reported lost (and not received since).
    pub ccfb_lost: u64,
    /// Received RFC 8888 feedback that did not parse.
    pub ccfb_feedback_malformed: u64,
    /// REMB packets we sent (only on transceivers that negotiated `goog-remb` and
    /// neither `transport-cc` nor `ack ccfb`).
    pub remb_sent: u64,
    /// The bitrate (bit/s) of the last REMB we sent: our receive-side estimate.
    pub remb_last_sent_bps: u64,
    /// Received packets measured by the receive-side estimator (those with abs-send-time).
    pub remb_packets_measured: u64,
    /// Times the receive-side estimator detected a growing queue (overuse).
    pub remb_overuse_signals: u64,
    /// REMB packets received (each also an `Event::RemoteBitrateEstimate`).
    pub remb_received: u64,
    /// The bitrate (bit/s) of the last REMB received: the remote's cap on what we send.
    pub remb_last_received_bps: u64,
}

/// The loss-recovery and feedback state of one media session.
pub(crate) struct Recovery {
    nack: SsrcMap<NackGenerator>,
    /// No NACK generator has anything due before this.
    nack_deadline: Option<Instant>,
    histories: SsrcMap<RetransmitHistory>,
    /// The next sequence number of each of our RTX SSRCs.
    rtx_sequences: SsrcMap<u16>,
    /// The original SSRC of each remote RTX SSRC seen.
    rtx_origins: SsrcMap<u32>,
    twcc_in: Option<Box<TwccReceiver>>,
    /// The media SSRC written in our transport-wide feedback.
    twcc_media: u32,
    twcc_out: Option<Box<TwccSender>>,
    ccfb_in: Option<Box<CcfbReceiver>>,
    ccfb_out: Option<Box<CcfbSendLog>>,
    /// REMB both ways (`remb.rs`).
    pub(super) remb: RembState,
    /// Reused buffers: NACK pairs, packets to resend, an RTX payload, SSRCs to visit.
    pairs: Vec<(u16, u16)>,
    resend: Vec<RtpPacket>,
    rtx_payload: Vec<u8>,
    ssrcs: Vec<u32>,
    stats: LossRecoveryStats,
}

impl Recovery {
    pub(crate) fn new(ssrc_key: u64) -> Recovery {
        Recovery {
            nack: ssrc_map(ssrc_key),
            nack_deadline: None,
            histories: ssrc_map(ssrc_key),
            rtx_sequences: ssrc_map(ssrc_key),
            rtx_origins: ssrc_map(ssrc_key),
            twcc_in: None,
            twcc_media: 0,
            twcc_out: None,
            ccfb_in: None,
            ccfb_out: None,
            remb: RembState::default(),
            pairs: Vec::with_capacity(256),
            resend: Vec::with_capacity(64),
            rtx_payload: vec![0u8; 2048],
            ssrcs: Vec::with_capacity(MAX_NACK_STREAMS),
            stats: LossRecoveryStats::default(),
        }
    }

    /// When the media timers must run for loss recovery or feedback.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let twcc = self.twcc_in.as_ref().and_then(|t| t.poll_timeout());
        let ccfb = self.ccfb_in.as_ref().and_then(|t| t.poll_timeout());
        [self.nack_deadline, twcc, ccfb, self.remb.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether `ssrc` is a remote RTX stream (not to be asked for keyframes).
    pub(crate) fn is_remote_rtx(&self, ssrc: u32) -> bool {
        self.rtx_origins.contains_key(&ssrc)
    }

    /// The remote RTX SSRCs that repair one of `primaries`, forgotten.
    pub(crate) fn remote_rtx_of(&mut self, primaries: &[u32]) -> Vec<u32> {
        let rtx: Vec<u32> = self
            .rtx_origins
            .iter()
            .filter(|(r, o)| primaries.contains(o) && !primaries.contains(r))
            .map(|(r, _)| *r)
            .collect();
        for r in &rtx {
            self.rtx_origins.remove(r);
        }
        rtx
    }

    /// The counters, gathered from every generator and history.
    pub(crate) fn stats(&self) -> LossRecoveryStats {
        let mut s = self.stats;
        for g in self.nack.values() {
            let n = g.stats();
            s.nacks_sent += n.nacks_sent;
            s.packets_nacked += n.packets_requested;
            s.packets_recovered += n.recovered;
            s.packets_given_up += n.given_up;
        }
        for h in self.histories.values() {
            let r = h.stats();
            s.nacks_received += r.nacks_received;
            s.packets_requested += r.packets_requested;
            s.packets_retransmitted += r.packets_retransmitted;
            s.retransmit_not_found += r.not_found;
            s.retransmit_suppressed += r.suppressed;
        }
        if let Some(t) = &self.twcc_in {
            s.twcc_feedback_sent = t.stats().feedbacks;
            s.twcc_packets_recorded = t.stats().packets;
        }
        if let Some(t) = &self.twcc_out {
            let o = t.stats();
            s.twcc_feedback_received = o.feedbacks;
            s.twcc_delivered = o.delivered;
            s.twcc_lost = o.lost;
        }
        if let Some(c) = &self.ccfb_in {
            s.ccfb_feedback_sent = c.stats().feedbacks;
            s.ccfb_packets_recorded = c.stats().packets;
        }
        if let Some(c) = &self.ccfb_out {
            let o = c.stats();
            s.ccfb_feedback_received = o.feedbacks;
            s.ccfb_delivered = o.delivered;
            s.ccfb_lost = o.lost;
        }
        let remb = self.remb.stats;
        s.remb_sent = remb.sent;
        s.remb_last_sent_bps = remb.last_sent_bps;
        s.remb_received = remb.received;
        s.remb_last_received_bps = remb.last_received_bps;
        if let Some(g) = &self.remb.generator {
            let e = g.estimator_stats();
            s.remb_packets_measured = e.packets;
            s.remb_overuse_signals = e.overuse_signals;
        }
        s
    }
}

/// Write a reduced-size generic NACK (RFC 4585 6.2.1: RTPFB, FMT 1) into `out`.
fn write_nack(sender: u32, media: u32, pairs: &[(u16, u16)], out: &mut [u8]) -> Option<usize> {
    let len = 12 + 4 * pairs.len();
    let buf = out.get_mut(..len)?;
    let words = u16::try_from(len / 4 - 1).ok()?;
    buf[0] = 0x81;
    buf[1] = 205;
    buf[2..4].copy_from_slice(&words.to_be_bytes());
    buf[4..8].copy_from_slice(&sender.to_be_bytes());
    buf[8..12].copy_from_slice(&media.to_be_bytes());
    for (i, (pid, blp)) in pairs.iter().enumerate() {
        let at = 12 + 4 * i;
        buf[at..at + 2].copy_from_slice(&pid.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&blp.to_be_bytes());
    }
    Some(len)
}

/// The RTX payload type's `apt` when `payload_type` is an RTX format of `t`.
pub(crate) fn rtx_apt_of(t: &Transceiver, payload_type: u8) -> Option<u8> {
    t.codecs
        .iter()
        .find(|c| c.payload_type == payload_type)
        .and_then(|c| c.rtx_apt())
}

/// Whether any codec of `t` negotiated `a=rtcp-fb:<pt> transport-cc`.
pub(crate) fn negotiated_transport_cc(t: &Transceiver) -> bool {
    t.codecs.iter().any(|c| c.has_feedback("transport-cc"))
}

/// Whether any codec of `t` negotiated RFC 8888 feedback (`a=rtcp-fb:* ack ccfb`).
pub(crate) fn negotiated_ccfb(t: &Transceiver) -> bool {
    t.codecs.iter().any(|c| c.has_feedback("ack ccfb"))
}

/// Whether we send RFC 8888 feedback for what `t` receives: negotiated, and transport-cc
/// (preferred) not.
pub(crate) fn sends_ccfb(t: &Transceiver) -> bool {
    negotiated_ccfb(t) && !negotiated_transport_cc(t)
}

impl MediaSession {
    // ------------------------------------------------------------ receive side

    /// The original SSRC an RTX packet of `t` repairs: remembered, signalled
    /// (`a=ssrc-group:FID`), by `repaired-rid` against the rids of the streams seen, or
    /// the one stream `t` receives.
    pub(super) fn rtx_original(&mut self, t: &Transceiver, header: &RtpHeader<'_>) -> Option<u32> {
        let rtx_ssrc = header.ssrc();
        if let Some(o) = self.recovery.rtx_origins.get(&rtx_ssrc) {
            return Some(*o);
        }
        let signalled = t
            .remote
            .rtx_ssrcs
            .iter()
            .find(|(_, r)| *r == rtx_ssrc)
            .map(|(p, _)| *p);
        let by_rid = || {
            let rid = header.extension(extension_id(t, REPAIRED_RID_URI)?)?;
            self.ssrc_rids
                .iter()
                .find(|(s, r)| r.as_bytes() == rid && self.ssrc_map.get(*s) == Some(&t.id))
                .map(|(s, _)| *s)
        };
        let sole = || {
            let mut streams = self.ssrc_map.iter().filter(|(s, id)| {
                **id == t.id && **s != rtx_ssrc && !self.recovery.rtx_origins.contains_key(*s)
            });
            let first = streams.next().map(|(s, _)| *s);
            streams.next().is_none().then_some(first).flatten()
        };
        let found = signalled.or_else(by_rid).or_else(sole)?;
        if self.recovery.rtx_origins.len() < MAX_SSRCS {
            self.recovery.rtx_origins.insert(rtx_ssrc, found);
        }
        Some(found)
    }

    /// Count a received RTX packet; false when it carries no original packet.
    pub(super) fn note_rtx_received(&mut self, payload_len: usize) -> bool {
        let s = &mut self.recovery.stats;
        s.rtx_packets_received += 1;
        s.rtx_bytes_received += payload_len as u64;
        if payload_len <= 2 {
            s.rtx_padding_received += 1;
            return false;
        }
        true
    }

    /// An RTX packet whose original stream is unknown.
    pub(super) fn note_rtx_unmatched(&mut self) {
        self.recovery.stats.rtx_unmatched += 1;
    }

    /// Record a packet carrying the transport-wide sequence number for feedback.
    pub(super) fn record_transport_cc(&mut self, ssrc: u32, sequence: u16, now: Instant) {
        let twcc = self
            .recovery
            .twcc_in
            .get_or_insert_with(|| Box::new(TwccReceiver::new(TwccReceiverConfig::default())));
        twcc.on_packet(sequence, now);
        self.recovery.twcc_media = ssrc;
    }

    /// Record a received RTP packet (as it came on the wire) for RFC 8888 feedback.
    pub(super) fn record_ccfb(&mut self, ssrc: u32, sequence: u16, now: Instant) {
        self.recovery
            .ccfb_in
            .get_or_insert_with(|| Box::new(CcfbReceiver::new()))
            .on_packet(ssrc, sequence, now);
    }

    /// The NACK bookkeeping of a received packet (original or unwrapped RTX); false when
    /// it is a retransmission of a packet we already had (dropped and counted).
    pub(super) fn nack_on_packet(&mut self, packet: &ReceivedRtp) -> bool {
        if !packet.nack {
            return true;
        }
        let room = self.recovery.nack.len() < MAX_NACK_STREAMS;
        let generator = match self.recovery.nack.get_mut(&packet.ssrc) {
            Some(g) => g,
            None if room => self
                .recovery
                .nack
                .entry(packet.ssrc)
                .or_insert_with(|| NackGenerator::new(NackConfig::default())),
            None => return true,
        };
        let keyframes = generator.stats().keyframe_requests;
        let arrival = generator.on_packet(packet.sequence_number, packet.arrival);
        let due = if generator.stats().keyframe_requests != keyframes {
            Some(packet.arrival)
        } else if generator.missing_len() > 0 {
            generator.poll_timeout()
        } else {
            None
        };
        if let Some(due) = due {
            let d = &mut self.recovery.nack_deadline;
            *d = Some(d.map_or(due, |t| t.min(due)));
        }
        if packet.retransmission && arrival == PacketArrival::Duplicate {
            self.recovery.stats.duplicates_dropped += 1;
            return false;
        }
        true
    }

    /// Media timers of loss recovery and feedback: NACKs and PLIs due, transport-wide
    /// feedback due.
    pub(super) fn recovery_timeout(&mut self, now: Instant, transceivers: &[Transceiver]) {
        if self.recovery.nack_deadline.is_some_and(|t| now >= t) {
            self.send_nacks(now, transceivers);
        }
        if self
            .recovery
            .twcc_in
            .as_ref()
            .and_then(|t| t.poll_timeout())
            .is_some_and(|t| now >= t)
        {
            self.send_transport_feedback(now, transceivers);
        }
        if self
            .recovery
            .ccfb_in
            .as_ref()
            .and_then(|c| c.poll_timeout())
            .is_some_and(|t| now >= t)
        {
            self.send_ccfb(now, transceivers);
        }
        self.send_remb_if_due(now, transceivers);
    }

    fn send_ccfb(&mut self, now: Instant, transceivers: &[Transceiver]) {
        let sender = transceivers.first().map_or(1, |t| t.sender_ssrc);
        let report_timestamp = (ntp_time(self.wall_clock(now)) >> 16) as u32;
        // A split feedback is due again at once; a bounded number per call.
        for _ in 0..16 {
            let Some(ccfb) = self.recovery.ccfb_in.as_mut() else {
                return;
            };
            let out = self.scratch.get_mut(..MAX_FEEDBACK_LEN).unwrap_or_default();
            match ccfb.poll_feedback(now, sender, report_timestamp, out) {
                Ok(Some(n)) => self.protect_and_queue_rtcp(n),
                _ => return,
            }
        }
    }

    fn send_nacks(&mut self, now: Instant, transceivers: &[Transceiver]) {
        let mut deadline: Option<Instant> = None;
        let rtt = self.rtt.rtt();
        let mut ssrcs = std::mem::take(&mut self.recovery.ssrcs);
        let mut pairs = std::mem::take(&mut self.recovery.pairs);
        ssrcs.clear();
        ssrcs.extend(self.recovery.nack.keys().copied());
        ssrcs.sort_unstable();
        for &media in &ssrcs {
            let sender = self
                .ssrc_map
                .get(&media)
                .and_then(|id| transceiver_by_id(transceivers, *id))
                .or(transceivers.first())
                .map_or(1, |t| t.sender_ssrc);
            let Some(generator) = self.recovery.nack.get_mut(&media) else {
                continue;
            };
            if let Some(rtt) = rtt {
                generator.set_rtt(rtt);
            }
            pairs.clear();
            if generator.poll_timeout().is_some_and(|t| t <= now) {
                generator.poll_nack(now, &mut pairs);
            }
            let keyframe = generator.take_keyframe_request();
            if let Some(next) = generator.poll_timeout() {
                // Never a deadline in the past: the generator acts on it at the latest a
                // millisecond later.
                let next = next.max(now + Duration::from_millis(1));
                deadline = Some(deadline.map_or(next, |d| d.min(next)));
            }
            for chunk in pairs.chunks(MAX_NACK_PAIRS) {
                if let Some(n) = write_nack(sender, media, chunk, &mut self.scratch) {
                    self.protect_and_queue_rtcp(n);
                }
            }
            if keyframe {
                self.recovery.stats.keyframe_requests_sent += 1;
                if let Some(n) = rtp::write_pli(sender, media, &mut self.scratch) {
                    self.protect_and_queue_rtcp(n);
                }
            }
        }
        self.recovery.ssrcs = ssrcs;
        self.recovery.pairs = pairs;
        self.recovery.nack_deadline = deadline;
    }

    fn send_transport_feedback(&mut self, now: Instant, transceivers: &[Transceiver]) {
        let sender = transceivers.first().map_or(1, |t| t.sender_ssrc);
        let media = self.recovery.twcc_media;
        // A split feedback is due again at once; a bounded number per call.
        for _ in 0..16 {
            let Some(twcc) = self.recovery.twcc_in.as_mut() else {
                return;
            };
            let out = self.scratch.get_mut(..MAX_FEEDBACK_LEN).unwrap_or_default();
            match twcc.poll_feedback(now, sender, media, out) {
                Ok(Some(n)) => self.protect_and_queue_rtcp(n),
                _ => return,
            }
        }
    }

    // ------------------------------------------------------------ send side

    /// Keep a sent packet for retransmission (a `Bytes` clone, no copy).
    pub(super) fn remember_sent(
        &mut self,
        ssrc: u32,
        payload_type: u8,
        packet: &RtpPacket,
        now: Instant,
    ) {
        let room = self.recovery.histories.len() < MAX_HISTORIES;
        let history =
            match self.recovery.histories.get_mut(&ssrc) {
                Some(h) => h,
                None if room => self.recovery.histories.entry(ssrc).or_insert_with(|| {
                    RetransmitHistory::new(RetransmitConfig::default(), ssrc, None)
                }),
                None => return,
            };
        let stored = RtpPacket {
            payload_type,
            sequence_number: packet.sequence_number,
            timestamp: packet.timestamp,
            marker: packet.marker,
            ssrc,
            payload: packet.payload.clone(),
        };
        history.store(&stored, now);
    }

    /// Log a packet sent with a transport-wide sequence number.
    pub(super) fn log_transport_cc(&mut self, sequence: u16, size: usize, now: Instant) {
        self.recovery
            .twcc_out
            .get_or_insert_with(|| Box::new(TwccSender::new(TWCC_SENT_LOG)))
            .on_sent(sequence, size, now);
    }

    /// Log an RTP packet sent on a transceiver that negotiated RFC 8888 feedback.
    pub(super) fn log_ccfb(&mut self, ssrc: u32, sequence: u16, size: usize, now: Instant) {
        self.recovery
            .ccfb_out
            .get_or_insert_with(|| Box::new(CcfbSendLog::new()))
            .on_sent(ssrc, sequence, size, now);
    }

    /// A received RFC 8888 feedback packet (the body of RTPFB FMT=11).
    pub(super) fn on_ccfb_feedback(&mut self, body: &[u8]) -> Option<TransportFeedback> {
        let log = self.recovery.ccfb_out.as_mut()?;
        match crate::rtp::ccfb::CcfbFeedback::parse(body) {
            Ok(feedback) => Some(log.on_feedback(&feedback)),
            Err(_) => {
                self.recovery.stats.ccfb_feedback_malformed += 1;
                None
            }
        }
    }

    /// A received transport-wide feedback packet about what we sent.
    pub(super) fn on_transport_feedback(&mut self, fci: &[u8]) -> Option<TransportFeedback> {
        let sender = self.recovery.twcc_out.as_mut()?;
        match TransportCcFeedback::parse(fci) {
            Ok(feedback) => Some(sender.on_feedback(&feedback)),
            Err(_) => {
                self.recovery.stats.twcc_feedback_malformed += 1;
                None
            }
        }
    }

    /// A received generic NACK about our sender `media`: the packets the history holds
    /// are queued for [`MediaSession::flush_retransmissions`] (the receive path holds the
    /// scratch buffer while it reads RTCP).
    pub(super) fn on_nack(&mut self, now: Instant, media: u32, pairs: &[(u16, u16)]) {
        let rtt = self.rtt.rtt();
        let Some(history) = self.recovery.histories.get_mut(&media) else {
            return;
        };
        if let Some(rtt) = rtt {
            history.set_rtt(rtt);
        }
        history.on_nack(pairs, now, &mut self.recovery.resend);
    }

    /// Send the retransmissions NACKs asked for, on the transceiver whose sender SSRC
    /// they carry.
    pub(super) fn flush_retransmissions(&mut self, now: Instant, transceivers: &[Transceiver]) {
        if self.recovery.resend.is_empty() {
            return;
        }
        let mut resend = std::mem::take(&mut self.recovery.resend);
        for p in &resend {
            if let Some(t) = transceivers.iter().find(|t| t.sender_ssrc == p.ssrc) {
                // A full queue drops the resend; the remote asks again.
                let _ = self.send_retransmission(now, t, p);
            }
        }
        resend.clear();
        self.recovery.resend = resend;
    }

    /// Send one packet again: as RTX when `t` negotiated an RTX format for its payload
    /// type, as is otherwise; with the mid and a new transport-wide sequence number.
    fn send_retransmission(
        &mut self,
        now: Instant,
        t: &Transceiver,
        p: &RtpPacket,
    ) -> Result<(), crate::peer::SendError> {
        let one_byte = |i: &u8| (1..=14).contains(i);
        let mid_ext = extension_id(t, crate::media::receive::MID_URI).filter(one_byte);
        let twcc_ext = extension_id(t, ExtensionKind::TransportCc.uri()).filter(one_byte);
        let abs_ext = extension_id(t, ExtensionKind::AbsSendTime.uri()).filter(one_byte);
        let mid: &str = t.mid.as_deref().unwrap_or_default();
        let twcc = self.transport_seq.to_be_bytes();
        let abs = crate::media::send::abs_send_time(self.wall_clock(now));
        let mut exts: [(u8, &[u8]); 3] = [(0, &[]); 3];
        let mut n_exts = 0;
        if let Some(id) = mid_ext.filter(|_| !mid.is_empty() && mid.len() <= 16) {
            exts[n_exts] = (id, mid.as_bytes());
            n_exts += 1;
        }
        if let Some(id) = twcc_ext {
            exts[n_exts] = (id, &twcc);
            n_exts += 1;
        }
        if let Some(id) = abs_ext {
            exts[n_exts] = (id, &abs);
            n_exts += 1;
        }
        let rtx = t
            .codecs
            .iter()
            .find(|c| c.rtx_apt() == Some(p.payload_type));
        let (ssrc, payload_type, sequence_number, payload_len) = match rtx {
            Some(rtx) => {
                let n = write_rtx_payload(
                    p.sequence_number,
                    &p.payload,
                    &mut self.recovery.rtx_payload,
                )
                .ok_or(crate::peer::SendError::TooLarge)?;
                let seq = self
                    .recovery
                    .rtx_sequences
                    .entry(t.sender_rtx_ssrc)
                    .or_insert(t.sender_rtx_ssrc as u16);
                let s = *seq;
                *seq = seq.wrapping_add(1);
                (t.sender_rtx_ssrc, rtx.payload_type, s, n)
            }
            None => (p.ssrc, p.payload_type, p.sequence_number, p.payload.len()),
        };
        let payload: &[u8] = if rtx.is_some() {
            self.recovery
                .rtx_payload
                .get(..payload_len)
                .unwrap_or_default()
        } else {
            &p.payload
        };
        let n = rtp::write_rtp(
            &RtpWrite {
                marker: p.marker,
                payload_type,
                sequence_number,
                timestamp: p.timestamp,
                ssrc,
                extensions: exts.get(..n_exts).unwrap_or_default(),
                payload,
            },
            &mut self.scratch,
        )
        .map_err(|_| crate::peer::SendError::TooLarge)?;
        self.protect_and_queue_rtp(n)?;
        if rtx.is_some() {
            self.recovery.stats.rtx_packets_sent += 1;
            self.recovery.stats.rtx_bytes_sent += payload_len as u64;
        }
        if negotiated_ccfb(t) {
            self.log_ccfb(ssrc, sequence_number, n, now);
        }
        if twcc_ext.is_some() {
            if negotiated_transport_cc(t) {
                self.log_transport_cc(self.transport_seq, n, now);
            }
            self.transport_seq = self.transport_seq.wrapping_add(1);
        }
        Ok(())
    }

    /// Loss-recovery and feedback counters.
    pub(crate) fn loss_recovery_stats(&self) -> LossRecoveryStats {
        self.recovery.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::session::testing::*;
    use crate::media::session::MediaEvent;
    use crate::media::MediaKind;
    use crate::rtp::RtcpPacket;
    use crate::srtp::SrtpContext;

    /// Chromium's offer with three simulcast streams, no `a=ssrc` lines, VP8 with
    /// `nack` and RTX 97 (apt=96), and the repaired-rid extension.
    const OFFER: &str = include_str!("../../tests/fixtures/sdp/chromium-simulcast-offer.sdp");

    /// One SRTP packet of the remote with the mid and the given rid-like extension.
    fn remote_packet(
        peer_out: &mut SrtpContext,
        t: &Transceiver,
        (ssrc, pt, seq): (u32, u8, u16),
        rid: (&str, &str),
        payload: &[u8],
    ) -> Vec<u8> {
        let mid = extension_id(t, crate::media::receive::MID_URI).expect("mid");
        let rid_id = extension_id(t, rid.0).expect("rid extension");
        let mut buf = vec![0u8; 1500];
        let n = rtp::write_rtp(
            &RtpWrite {
                marker: false,
                payload_type: pt,
                sequence_number: seq,
                timestamp: 0,
                ssrc,
                extensions: &[(mid, b"0"), (rid_id, rid.1.as_bytes())],
                payload,
            },
            &mut buf,
        )
        .expect("write");
        let n = peer_out.protect_rtp(&mut buf, n).expect("protect");
        buf.truncate(n);
        buf
    }

    /// Every RTCP packet the session queued, decrypted by the remote.
    fn rtcp_sent(media: &MediaSession, peer_in: &mut SrtpContext) -> Vec<RtcpPacket> {
        let mut out = Vec::new();
        for p in media.queued() {
            let mut b = p.clone();
            let n = b.len();
            if let Ok(m) = peer_in.unprotect_rtcp(&mut b, n) {
                out.extend(RtcpPacket::parse_compound(&b[..m]).flatten());
            }
        }
        out
    }

    #[test]
    fn a_gap_is_nacked_and_unsignalled_rtx_is_unwrapped_by_repaired_rid_once() {
        let now = Instant::now();
        let ts = answerer(now, OFFER).transceivers().to_vec();
        assert!(ts[0].codecs.iter().any(|c| c.rtx_apt() == Some(96)));
        let (mut media, mut peer_out, mut peer_in) = keyed(now, true);
        media.announce_tracks(&ts);
        let rid = crate::media::receive::RID_URI;
        // Stream "q" loses 12; stream "h" is complete.
        for seq in 10u16..=14 {
            if seq != 12 {
                let p = remote_packet(&mut peer_out, &ts[0], (0x1111, 96, seq), (rid, "q"), b"q");
                assert!(media.handle_srtp(now, &p, &ts));
            }
            let p = remote_packet(&mut peer_out, &ts[0], (0x2222, 96, seq), (rid, "h"), b"h");
            assert!(media.handle_srtp(now, &p, &ts));
        }
        let due = media.poll_timeout().expect("a NACK is due");
        assert!(due <= now + Duration::from_millis(10), "{:?}", due - now);
        media.handle_timeout(due, &ts, &mut crate::rng::Rng::from_seed(1));
        let nacks: Vec<_> = rtcp_sent(&media, &mut peer_in)
            .into_iter()
            .filter(|p| matches!(p, RtcpPacket::Nack { .. }))
            .collect();
        assert!(
            matches!(&nacks[..], [RtcpPacket::Nack { media: 0x1111, pairs, .. }] if pairs == &[(12, 0)]),
            "{nacks:?}"
        );
        drain(&mut media);
        // The RTX packet names the stream it repairs by repaired-rid only.
        let mut rtx_payload = vec![0, 12];
        rtx_payload.extend_from_slice(b"twelve");
        for rtx_seq in [500u16, 501] {
            let p = remote_packet(
                &mut peer_out,
                &ts[0],
                (0x9999, 97, rtx_seq),
                (REPAIRED_RID_URI, "q"),
                &rtx_payload,
            );
            assert!(media.handle_srtp(now, &p, &ts));
        }
        let delivered: Vec<_> = drain(&mut media)
            .into_iter()
            .filter_map(|e| match e {
                MediaEvent::Rtp { rid, packet, .. } => Some((rid, packet)),
                _ => None,
            })
            .collect();
        assert_eq!(delivered.len(), 1, "delivered once: {delivered:?}");
        let (rid, packet) = &delivered[0];
        assert_eq!(rid.as_deref(), Some("q"));
        assert_eq!(
            (packet.ssrc, packet.payload_type, packet.sequence_number),
            (0x1111, 96, 12)
        );
        assert_eq!(&packet.payload[..], b"twelve");
        let s = media.loss_recovery_stats();
        assert_eq!(s.rtx_packets_received, 2);
        assert_eq!(s.duplicates_dropped, 1);
        assert_eq!(s.packets_recovered, 1);
        assert_eq!((s.nacks_sent, s.packets_nacked), (1, 1));
        // A keyframe request goes to the streams, not to the RTX stream.
        media.outgoing = Default::default();
        media.request_keyframe(&ts, ts[0].id).expect("pli");
        let plis: Vec<u32> = rtcp_sent(&media, &mut peer_in)
            .into_iter()
            .filter_map(|p| match p {
                RtcpPacket::Pli { media, .. } => Some(media),
                _ => None,
            })
            .collect();
        assert_eq!(plis, vec![0x1111, 0x2222]);
    }

    /// Alice (offering video with RTX) and bob negotiated: alice's transceivers and a
    /// keyed session with bob's contexts.
    fn sender() -> (MediaSession, Vec<Transceiver>, SrtpContext, SrtpContext) {
        let now = Instant::now();
        let transceivers = negotiated_transceivers(now, &[MediaKind::Video], 31);
        let (media, bob_out, bob_in) = keyed(now, false);
        (media, transceivers, bob_out, bob_in)
    }

    #[test]
    fn a_nack_is_answered_with_rtx_once_per_rtt() {
        let now = Instant::now();
        let (mut media, ts, mut bob_out, mut bob_in) = sender();
        let t = &ts[0];
        let rtx_pt = t
            .codecs
            .iter()
            .find(|c| c.rtx_apt() == Some(96))
            .expect("rtx negotiated")
            .payload_type;
        for seq in 1..=5u16 {
            let packet = RtpPacket {
                payload_type: 96,
                sequence_number: seq,
                timestamp: 90 * u32::from(seq),
                marker: false,
                ssrc: 0,
                payload: bytes::Bytes::from(vec![seq as u8; 10]),
            };
            media.send_rtp(now, &ts, t.id, &packet).expect("send");
        }
        media.outgoing = Default::default();
        let nack = RtcpPacket::Nack {
            sender: 1,
            media: t.sender_ssrc,
            pairs: vec![(3, 0b10)], // 3 and 5
        };
        let mut buf = vec![0u8; 1500];
        let n = nack.write(&mut buf).expect("write");
        let n = bob_out.protect_rtcp(&mut buf, n).expect("protect");
        assert!(media.handle_srtp(now, &buf[..n], &ts));
        let resent: Vec<Vec<u8>> = media
            .queued()
            .map(|p| {
                let mut b = p.clone();
                let len = b.len();
                let m = bob_in.unprotect_rtp(&mut b, len).expect("srtp");
                b.truncate(m);
                b
            })
            .collect();
        assert_eq!(resent.len(), 2);
        for (raw, original) in resent.iter().zip([3u16, 5]) {
            let h = RtpHeader::parse(raw).expect("rtp");
            assert_eq!(h.ssrc(), t.sender_rtx_ssrc);
            assert_eq!(h.payload_type(), rtx_pt);
            let (osn, payload) =
                crate::media::retransmit::parse_rtx_payload(h.payload()).expect("osn");
            assert_eq!(osn, original);
            assert_eq!(payload, &[original as u8; 10][..]);
        }
        // The same NACK again within the RTT resends nothing.
        media.outgoing = Default::default();
        let mut buf = vec![0u8; 1500];
        let n = nack.write(&mut buf).expect("write");
        let n = bob_out.protect_rtcp(&mut buf, n).expect("protect");
        assert!(media.handle_srtp(now, &buf[..n], &ts));
        assert_eq!(media.queued().count(), 0);
        let s = media.loss_recovery_stats();
        assert_eq!((s.nacks_received, s.packets_requested), (2, 4));
        assert_eq!((s.packets_retransmitted, s.rtx_packets_sent), (2, 2));
        assert_eq!(s.retransmit_suppressed, 2);
        assert_eq!(s.rtx_bytes_sent, 24);
    }

    #[test]
    fn nack_is_written_as_rtcp_parses_it() {
        let mut buf = [0u8; 64];
        let n = write_nack(7, 9, &[(100, 0b101), (300, 0)], &mut buf).expect("fits");
        let (packet, len) = rtp::RtcpPacket::parse_one(&buf[..n]).expect("parses");
        assert_eq!(len, n);
        assert_eq!(
            packet,
            rtp::RtcpPacket::Nack {
                sender: 7,
                media: 9,
                pairs: vec![(100, 0b101), (300, 0)],
            }
        );
        assert_eq!(write_nack(7, 9, &[(1, 0); 20], &mut buf), None);
    }
}
