//! RTCP of the media session: what received compounds teach (SR times, RTT, remote BYE,
//! keyframe requests, feedback about our senders), and what we send (sender and
//! receiver reports on a randomized interval, PLI, BYE on close).

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::reports::{ntp_time, SendCounters};
use crate::media::session::{transceiver_by_id, MediaEvent, MediaSession, MAX_MEDIA_QUEUE};
use crate::media::{Transceiver, TransceiverId};
use crate::peer::SendError;
use crate::rng::Rng;
use crate::rtp::{self, RtcpPacket};

/// Most report blocks (and BYE sources) one RTCP packet carries: its 5-bit count.
const MAX_RTCP_COUNT: usize = 31;

impl MediaSession {
    /// A decrypted RTCP compound: learn from it, then hand it out (keyframe requests for
    /// our senders first, then the compound itself).
    pub(super) fn handle_rtcp(&mut self, now: Instant, plain: Bytes, transceivers: &[Transceiver]) {
        for packet in RtcpPacket::parse_compound(&plain).flatten() {
            match &packet {
                RtcpPacket::SenderReport { ssrc, ntp, .. } => {
                    if let Some(c) = self.recv_counters.get_mut(ssrc) {
                        c.on_sender_report(*ntp, now);
                    }
                    self.on_sender_feedback(now, &packet);
                }
                RtcpPacket::Bye { ssrcs, .. } => self.on_remote_bye(ssrcs),
                _ => self.on_sender_feedback(now, &packet),
            }
        }
        for media_ssrc in rtp::keyframe_requests(&plain) {
            if let Some(t) = transceivers.iter().find(|t| t.sender_ssrc == media_ssrc) {
                self.push_event(MediaEvent::KeyframeRequest(t.id));
            }
        }
        self.push_event(MediaEvent::Rtcp(plain));
    }

    /// Hook: an RTCP packet from the remote that may be about our senders. Report blocks
    /// about our SSRCs give the RTT (LSR/DLSR); generic NACK, transport-wide feedback
    /// and REMB about our senders are read here by the loss-recovery and congestion
    /// layers: a NACK is answered from the retransmission history, transport-wide
    /// feedback and RFC 8888 feedback become a `TransportFeedback` event, REMB a
    /// `RemoteBitrateEstimate` event. Keyframe requests (PLI, FIR) become events in
    /// `handle_rtcp`.
    pub(crate) fn on_sender_feedback(&mut self, now: Instant, packet: &RtcpPacket) {
        match packet {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => {
                for b in reports {
                    if self.send_counters.contains_key(&b.ssrc) {
                        self.rtt.on_report_block(b, now);
                    }
                }
            }
            RtcpPacket::Nack { media, pairs, .. } => self.on_nack(now, *media, pairs),
            RtcpPacket::TransportCc { fci, .. } => {
                if let Some(feedback) = self.on_transport_feedback(fci) {
                    self.push_event(MediaEvent::TransportFeedback(feedback));
                }
            }
            RtcpPacket::Remb { bitrate, ssrcs, .. } => self.on_remb(*bitrate, ssrcs),
            RtcpPacket::Unknown {
                count: 11,
                packet_type: 205,
                body,
            } => {
                if let Some(feedback) = self.on_ccfb_feedback(body) {
                    self.push_event(MediaEvent::TransportFeedback(feedback));
                }
            }
            _ => {}
        }
    }

    /// The remote said BYE for these sources: forget them, end the tracks whose last
    /// stream left, and say so when no stream of the remote is left.
    fn on_remote_bye(&mut self, ssrcs: &[u32]) {
        let mut ended = false;
        // A primary stream that leaves takes its RTX stream along.
        let rtx = self.recovery.remote_rtx_of(ssrcs);
        for ssrc in ssrcs.iter().chain(&rtx) {
            self.ssrc_rids.remove(ssrc);
            // A source that left gets no more reception reports (RFC 3550 6.6).
            ended |= self.recv_counters.remove(ssrc).is_some();
            if let Some(t) = self.ssrc_map.remove(ssrc) {
                // A simulcast track ends with its last stream.
                if !self.ssrc_map.values().any(|other| *other == t) {
                    self.end_track(t);
                }
            }
        }
        if ended && self.recv_counters.is_empty() {
            self.push_event(MediaEvent::AllRemoteStreamsEnded);
        }
    }

    /// The next report in [0.5, 1.5] times the 1 s minimum interval we use (RFC 3550 6.3
    /// randomizes the interval so that reports of many members do not synchronize).
    pub(super) fn schedule_report(&mut self, now: Instant, rng: &mut Rng) {
        let factor = 0.5 + rng.unit_f64();
        self.next_report = Some(now + Duration::from_secs_f64(factor));
    }

    /// Sender reports for every SSRC we sent on (the first carrying the receiver report
    /// blocks), or one receiver report when we only receive; and the next one scheduled.
    pub(super) fn send_reports(
        &mut self,
        now: Instant,
        transceivers: &[Transceiver],
        rng: &mut Rng,
    ) {
        self.schedule_report(now, rng);
        let mut blocks: Vec<rtp::ReportBlock> = Vec::new();
        let mut ssrcs: Vec<u32> = self.recv_counters.keys().copied().collect();
        ssrcs.sort_unstable();
        for ssrc in ssrcs.into_iter().take(MAX_RTCP_COUNT) {
            if let Some(c) = self.recv_counters.get_mut(&ssrc) {
                blocks.push(c.report_block(ssrc, now));
            }
        }
        let ntp = ntp_time(self.wall_clock(now));
        let mut senders: Vec<(u32, SendCounters)> = self
            .send_counters
            .iter()
            .map(|(s, c)| (*s, c.clone()))
            .collect();
        senders.sort_unstable_by_key(|(s, _)| *s);
        let mut packets = Vec::new();
        for (i, (ssrc, c)) in senders.iter().enumerate() {
            packets.push(RtcpPacket::SenderReport {
                ssrc: *ssrc,
                ntp,
                rtp_timestamp: c.rtp_timestamp_at(now),
                packets: c.packets,
                octets: c.octets,
                reports: if i == 0 {
                    std::mem::take(&mut blocks)
                } else {
                    Vec::new()
                },
            });
        }
        if !packets.is_empty() {
            self.rtt.on_sr_sent(ntp, now);
        }
        if packets.is_empty() && !blocks.is_empty() {
            let reporter = transceivers.first().map_or(1, |t| t.sender_ssrc);
            packets.push(RtcpPacket::ReceiverReport {
                ssrc: reporter,
                reports: blocks,
            });
        }
        if !packets.is_empty() {
            self.queue_rtcp(&packets);
        }
    }

    /// RTCP BYE for every SSRC we sent on (queued; `close` sends it before DTLS's
    /// close_notify).
    pub(crate) fn send_bye(&mut self) {
        let mut ssrcs: Vec<u32> = self.send_counters.keys().copied().collect();
        ssrcs.sort_unstable();
        if !ssrcs.is_empty() {
            ssrcs.truncate(MAX_RTCP_COUNT);
            self.queue_rtcp(&[RtcpPacket::Bye {
                ssrcs,
                reason: None,
            }]);
        }
    }

    /// Ask the remote sender of this transceiver's track for a keyframe: one
    /// reduced-size (RFC 5506) PLI per stream, so each simulcast layer gets its own.
    pub(crate) fn request_keyframe(
        &mut self,
        transceivers: &[Transceiver],
        transceiver: TransceiverId,
    ) -> Result<(), SendError> {
        let t =
            transceiver_by_id(transceivers, transceiver).ok_or(SendError::UnknownTransceiver)?;
        let sender = t.sender_ssrc;
        let mut media: Vec<u32> = self
            .ssrc_map
            .iter()
            .filter(|(s, id)| **id == transceiver && !self.recovery.is_remote_rtx(**s))
            .map(|(s, _)| *s)
            .collect();
        media.sort_unstable();
        if media.is_empty() {
            media.extend(t.remote.ssrcs.first().copied());
        }
        if media.is_empty() {
            return Err(SendError::NotSending);
        }
        let srtp = self.srtp_out.as_mut().ok_or(SendError::NotConnected)?;
        if self.outgoing.len() + media.len() > MAX_MEDIA_QUEUE {
            return Err(SendError::QueueFull);
        }
        for ssrc in media {
            let n = rtp::write_pli(sender, ssrc, &mut self.scratch).ok_or(SendError::TooLarge)?;
            let n = srtp
                .protect_rtcp(&mut self.scratch, n)
                .map_err(|_| SendError::TooLarge)?;
            self.outgoing
                .push(self.scratch.get(..n).unwrap_or_default());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::session::testing::*;
    use crate::srtp::SrtpContext;

    const OFFER: &str = include_str!("../../tests/fixtures/sdp/chromium-simulcast-offer.sdp");

    /// Protect an RTCP compound of `packets` as the remote would.
    fn sealed(peer_out: &mut SrtpContext, packets: &[RtcpPacket]) -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let mut len = 0;
        for p in packets {
            len += p.write(&mut buf[len..]).expect("write");
        }
        let n = peer_out.protect_rtcp(&mut buf, len).expect("protect");
        buf.truncate(n);
        buf
    }

    /// Every RTCP packet the session queued, decrypted by the remote.
    fn sent(media: &MediaSession, peer_in: &mut SrtpContext) -> Vec<RtcpPacket> {
        let mut out = Vec::new();
        for p in media.queued() {
            let mut b = p.clone();
            let n = b.len();
            let m = peer_in.unprotect_rtcp(&mut b, n).expect("srtcp");
            out.extend(RtcpPacket::parse_compound(&b[..m]).flatten());
        }
        out
    }

    /// The answerer of Chromium's simulcast offer, receiving its three streams.
    fn receiving() -> (MediaSession, Vec<Transceiver>, SrtpContext, SrtpContext) {
        let now = Instant::now();
        let pc = answerer(now, OFFER);
        let ts = pc.transceivers().to_vec();
        let (mut media, mut peer_out, peer_in) = keyed(now, true);
        media.announce_tracks(&ts);
        let mid_id = crate::media::session::extension_id(&ts[0], crate::media::receive::MID_URI)
            .expect("mid negotiated");
        for ssrc in [0x1111u32, 0x2222, 0x3333] {
            let mut buf = vec![0u8; 1500];
            let n = rtp::write_rtp(
                &rtp::RtpWrite {
                    marker: false,
                    payload_type: 96,
                    sequence_number: 1,
                    timestamp: 0,
                    ssrc,
                    extensions: &[(mid_id, b"0")],
                    payload: b"x",
                },
                &mut buf,
            )
            .expect("write");
            let n = peer_out.protect_rtp(&mut buf, n).expect("protect");
            assert!(media.handle_srtp(now, &buf[..n], &ts));
        }
        drain(&mut media);
        (media, ts, peer_out, peer_in)
    }

    #[test]
    fn a_keyframe_request_reaches_every_simulcast_stream() {
        let (mut media, ts, _, mut peer_in) = receiving();
        media.request_keyframe(&ts, ts[0].id).expect("pli");
        let asked: Vec<u32> = sent(&media, &mut peer_in)
            .into_iter()
            .filter_map(|p| match p {
                RtcpPacket::Pli { sender, media } => {
                    assert_eq!(sender, ts[0].sender_ssrc);
                    Some(media)
                }
                _ => None,
            })
            .collect();
        assert_eq!(asked, vec![0x1111, 0x2222, 0x3333]);
    }

    #[test]
    fn a_remote_keyframe_request_names_our_transceiver_before_the_compound() {
        let (mut media, ts, mut peer_out, _) = receiving();
        let ours = ts[0].sender_ssrc;
        let pli = sealed(
            &mut peer_out,
            &[RtcpPacket::Pli {
                sender: 0x1111,
                media: ours,
            }],
        );
        assert!(media.handle_srtp(Instant::now(), &pli, &ts));
        let events = drain(&mut media);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0], MediaEvent::KeyframeRequest(ts[0].id));
        assert!(matches!(events[1], MediaEvent::Rtcp(_)));
        // About an SSRC that is not ours: only the compound.
        let other = sealed(
            &mut peer_out,
            &[RtcpPacket::Pli {
                sender: 0x1111,
                media: ours.wrapping_add(1),
            }],
        );
        media.handle_srtp(Instant::now(), &other, &ts);
        assert!(matches!(drain(&mut media)[..], [MediaEvent::Rtcp(_)]));
    }

    #[test]
    fn bye_of_every_stream_ends_the_track_and_the_remote_session() {
        let (mut media, ts, mut peer_out, _) = receiving();
        let bye = |ssrcs: Vec<u32>| RtcpPacket::Bye {
            ssrcs,
            reason: None,
        };
        let p = sealed(&mut peer_out, &[bye(vec![0x1111, 0x2222])]);
        media.handle_srtp(Instant::now(), &p, &ts);
        let events = drain(&mut media);
        assert!(matches!(events[..], [MediaEvent::Rtcp(_)]), "{events:?}");
        let p = sealed(&mut peer_out, &[bye(vec![0x3333])]);
        media.handle_srtp(Instant::now(), &p, &ts);
        let events = drain(&mut media);
        assert_eq!(events[0], MediaEvent::TrackEnded(ts[0].id), "{events:?}");
        assert_eq!(events[1], MediaEvent::AllRemoteStreamsEnded);
        assert!(media.recv_counters.is_empty());
    }

    #[test]
    fn reports_are_due_on_the_timer_and_give_the_rtt() {
        let (mut media, ts, mut peer_out, mut peer_in) = receiving();
        let t0 = Instant::now();
        let mut rng = Rng::from_seed(1);
        // A receiver only: one RR with a block per stream, from the first transceiver.
        media.send_reports(t0, &ts, &mut rng);
        let next = media.poll_timeout().expect("next report");
        assert!(next > t0 && next <= t0 + Duration::from_millis(1500));
        let packets = sent(&media, &mut peer_in);
        let [RtcpPacket::ReceiverReport { ssrc, reports }] = &packets[..] else {
            panic!("{packets:?}");
        };
        assert_eq!(*ssrc, ts[0].sender_ssrc);
        let sources: Vec<u32> = reports.iter().map(|b| b.ssrc).collect();
        assert_eq!(sources, vec![0x1111, 0x2222, 0x3333]);
        // Once we send, an SR; the remote's block about it 100 ms later, with 40 ms of
        // DLSR, gives an RTT of 60 ms.
        media
            .send_counters
            .entry(ts[0].sender_ssrc)
            .or_default()
            .packets = 1;
        let mut buf = [0u8; 1500];
        while media.poll_transmit(&mut buf).is_some() {}
        media.handle_timeout(next, &ts, &mut rng);
        let packets = sent(&media, &mut peer_in);
        let Some(RtcpPacket::SenderReport { ntp, .. }) = packets.first() else {
            panic!("{packets:?}");
        };
        let block = rtp::ReportBlock {
            ssrc: ts[0].sender_ssrc,
            fraction_lost: 0,
            cumulative_lost: 0,
            highest_sequence: 0,
            jitter: 0,
            last_sr: (*ntp >> 16) as u32,
            delay_since_last_sr: 65536 * 40 / 1000,
        };
        let rr = sealed(
            &mut peer_out,
            &[RtcpPacket::ReceiverReport {
                ssrc: 0x1111,
                reports: vec![block],
            }],
        );
        media.handle_srtp(next + Duration::from_millis(100), &rr, &ts);
        let rtt = media.rtt().expect("rtt");
        assert!(
            rtt >= Duration::from_millis(59) && rtt <= Duration::from_millis(61),
            "{rtt:?}"
        );
    }

    #[test]
    fn bye_on_close_lists_our_senders() {
        let (mut media, ts, _, mut peer_in) = receiving();
        media.send_bye();
        assert!(media.queued().next().is_none(), "nothing sent, no BYE");
        media.send_counters.entry(ts[0].sender_ssrc).or_default();
        media.send_bye();
        assert_eq!(
            sent(&media, &mut peer_in),
            vec![RtcpPacket::Bye {
                ssrcs: vec![ts[0].sender_ssrc],
                reason: None
            }]
        );
    }
}
