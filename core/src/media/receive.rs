//! The receive path: unprotect SRTP/SRTCP, find the transceiver of each RTP packet
//! (SSRC, mid, rid, signalled SSRC, payload type) and hand it out as an event.

use std::time::Instant;

use crate::media::recovery::{negotiated_transport_cc, rtx_apt_of, sends_ccfb};
use crate::media::remb::sends_remb;
use crate::media::retransmit::parse_rtx_payload;
use crate::media::session::{extension_id, transceiver_by_id, MediaEvent, MediaSession, MAX_SSRCS};
use crate::media::{Direction, RtpPacket, Transceiver, TransceiverId};
use crate::rtp::extensions::ExtensionKind;
use crate::rtp::{self, RtpHeader};

/// The mid header extension (RFC 8843).
pub(crate) const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// The rid header extension (RFC 8852).
pub(crate) const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// What the receive path knows of an RTP packet that reached a transceiver, for the
/// per-packet bookkeeping in [`MediaSession::on_rtp_received`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReceivedRtp {
    /// The sender's SSRC.
    pub(crate) ssrc: u32,
    /// The RTP sequence number.
    pub(crate) sequence_number: u16,
    /// The transport-wide sequence number, when the packet carries the negotiated
    /// transport-cc extension.
    pub(crate) transport_sequence: Option<u16>,
    /// When it arrived.
    pub(crate) arrival: Instant,
    /// Its codec negotiated `a=rtcp-fb:<pt> nack`: lost packets are asked for.
    pub(crate) nack: bool,
    /// It was unwrapped from an RTX packet (RFC 4588).
    pub(crate) retransmission: bool,
}

impl MediaSession {
    /// An SRTP or SRTCP datagram: unprotect, demultiplex, report. False when there are
    /// no keys yet or it is larger than any datagram we take (the caller counts it as
    /// dropped); a packet that fails authentication or does not parse is consumed and
    /// counted by the SRTP context.
    pub(crate) fn handle_srtp(
        &mut self,
        now: Instant,
        data: &[u8],
        transceivers: &[Transceiver],
    ) -> bool {
        let mut scratch = std::mem::take(&mut self.scratch);
        let handled = self.handle_srtp_in(now, data, &mut scratch, transceivers);
        self.scratch = scratch;
        self.flush_retransmissions(now, transceivers);
        handled
    }

    fn handle_srtp_in(
        &mut self,
        now: Instant,
        data: &[u8],
        scratch: &mut [u8],
        transceivers: &[Transceiver],
    ) -> bool {
        let Some(srtp) = self.srtp_in.as_mut() else {
            return false;
        };
        let Some(buf) = scratch.get_mut(..data.len()) else {
            return false;
        };
        buf.copy_from_slice(data);
        if rtp::is_rtcp(data) {
            let Ok(n) = srtp.unprotect_rtcp(scratch, data.len()) else {
                return true;
            };
            let plain = self.payloads.copy(scratch.get(..n).unwrap_or_default());
            self.handle_rtcp(now, plain, transceivers);
            return true;
        }
        let Ok(n) = srtp.unprotect_rtp(scratch, data.len()) else {
            return true;
        };
        let Some(plain) = scratch.get(..n) else {
            return true;
        };
        let Ok(header) = RtpHeader::parse(plain) else {
            return true;
        };
        self.handle_rtp(now, &header, n, transceivers);
        true
    }

    /// A decrypted RTP packet: find its transceiver and rid, unwrap it when it is RTX,
    /// count it, deliver it.
    fn handle_rtp(
        &mut self,
        now: Instant,
        header: &RtpHeader<'_>,
        len: usize,
        transceivers: &[Transceiver],
    ) {
        let Some(id) = self.demux(header, transceivers) else {
            self.stats.rtp_unmatched += 1;
            return;
        };
        let transceiver = transceiver_by_id(transceivers, id);
        let transport_sequence = transceiver
            .and_then(|t| extension_id(t, ExtensionKind::TransportCc.uri()))
            .and_then(|i| header.extension(i))
            .and_then(|v| Some(u16::from_be_bytes([*v.first()?, *v.get(1)?])));
        if let Some(seq) =
            transport_sequence.filter(|_| transceiver.is_some_and(negotiated_transport_cc))
        {
            // Every packet counts for congestion control, RTX padding included.
            self.record_transport_cc(header.ssrc(), seq, now);
        }
        if transceiver.is_some_and(sends_ccfb) {
            self.record_ccfb(header.ssrc(), header.sequence_number(), now);
        }
        if let Some(t) = transceiver.filter(|t| sends_remb(t)) {
            let abs_send_time = extension_id(t, ExtensionKind::AbsSendTime.uri())
                .and_then(|i| header.extension(i))
                .and_then(|v| Some(u32::from_be_bytes([0, *v.first()?, *v.get(1)?, *v.get(2)?])));
            if let Some(abs_send_time) = abs_send_time {
                // RTX and padding count for the rate; REMB names the media streams.
                let stream = rtx_apt_of(t, header.payload_type())
                    .is_none()
                    .then_some(header.ssrc());
                self.record_remb(stream, abs_send_time, len, now);
            }
        }
        let (mut ssrc, mut sequence_number, mut payload_type, mut payload) = (
            header.ssrc(),
            header.sequence_number(),
            header.payload_type(),
            header.payload(),
        );
        let rtx = transceiver.and_then(|t| Some((t, rtx_apt_of(t, payload_type)?)));
        if let Some((t, apt)) = rtx {
            if !self.note_rtx_received(payload.len()) {
                return;
            }
            let Some(original) = self.rtx_original(t, header) else {
                self.note_rtx_unmatched();
                return;
            };
            let Some((osn, rest)) = parse_rtx_payload(payload) else {
                return;
            };
            (ssrc, sequence_number, payload_type, payload) = (original, osn, apt, rest);
        }
        let rid = match transceiver.and_then(|t| packet_rid(t, header)) {
            Some(rid) => {
                if self.ssrc_rids.get(&ssrc) != Some(&rid)
                    && (self.ssrc_rids.len() < MAX_SSRCS || self.ssrc_rids.contains_key(&ssrc))
                {
                    self.ssrc_rids.insert(ssrc, rid.clone());
                }
                Some(rid)
            }
            None => self.ssrc_rids.get(&ssrc).cloned(),
        };
        let nack = transceiver
            .and_then(|t| t.codecs.iter().find(|c| c.payload_type == payload_type))
            .is_some_and(|c| c.has_feedback("nack"));
        let fresh = self.on_rtp_received(ReceivedRtp {
            ssrc,
            sequence_number,
            transport_sequence,
            arrival: now,
            nack,
            retransmission: rtx.is_some(),
        });
        if !fresh {
            return;
        }
        let packet = RtpPacket {
            payload_type,
            sequence_number,
            timestamp: header.timestamp(),
            marker: header.marker(),
            ssrc,
            payload: self.payloads.copy(payload),
        };
        self.stats.rtp_received += 1;
        self.note_media(now, id);
        self.push_event(MediaEvent::Rtp {
            track: id,
            rid,
            packet,
        });
    }

    /// Hook: an RTP packet reached a transceiver (an RTX packet unwrapped to its
    /// original), before its `Event::Rtp`. Feeds the NACK generator of its stream, then
    /// counts it for the receiver reports (up to [`MAX_SSRCS`] sources). False for a
    /// retransmission of a packet we already had: it is dropped, not delivered again.
    pub(crate) fn on_rtp_received(&mut self, packet: ReceivedRtp) -> bool {
        if !self.nack_on_packet(&packet) {
            return false;
        }
        let room = self.recv_counters.len() < MAX_SSRCS;
        match self.recv_counters.get_mut(&packet.ssrc) {
            Some(counters) => counters.on_packet(packet.sequence_number),
            None if room => {
                self.recv_counters
                    .entry(packet.ssrc)
                    .or_default()
                    .on_packet(packet.sequence_number);
            }
            None => {}
        }
        true
    }

    /// Which transceiver an RTP packet belongs to: known SSRC, then the mid header
    /// extension, then the rid header extension against the signalled rids, then a
    /// signalled `a=ssrc`, then the payload type when only one receiving transceiver uses
    /// it (an SSRC first seen without a signalled ssrc line).
    fn demux(
        &mut self,
        header: &RtpHeader<'_>,
        transceivers: &[Transceiver],
    ) -> Option<TransceiverId> {
        let ssrc = header.ssrc();
        if let Some(id) = self.ssrc_map.get(&ssrc) {
            return Some(*id);
        }
        let receiving = || {
            transceivers
                .iter()
                .filter(|t| !t.stopped && t.current_direction.is_some_and(Direction::receives))
        };
        let mid_of = |t: &Transceiver| extension_id(t, MID_URI).and_then(|i| header.extension(i));
        let by_mid = receiving().find(|t| {
            matches!((mid_of(t), t.mid.as_deref()), (Some(m), Some(ours)) if m == ours.as_bytes())
        });
        // RFC 8843 section 9.2: a packet that names a mid we do not receive on is not
        // guessed onto another transceiver by its SSRC or payload type.
        if by_mid.is_none() && receiving().any(|t| mid_of(t).is_some()) {
            return None;
        }
        let by_rid = || {
            receiving().find(|t| {
                let rid = extension_id(t, RID_URI).and_then(|i| header.extension(i));
                rid.is_some_and(|r| t.remote.rids.iter().any(|ours| ours.as_bytes() == r))
            })
        };
        let found = by_mid
            .or_else(by_rid)
            .or_else(|| receiving().find(|t| t.remote.ssrcs.contains(&ssrc)))
            .or_else(|| {
                // Only a payload type that one receiving transceiver alone uses decides.
                let mut by_pt = receiving().filter(|t| {
                    t.codecs
                        .iter()
                        .any(|c| c.payload_type == header.payload_type())
                });
                let first = by_pt.next();
                by_pt.next().is_none().then_some(first).flatten()
            })
            .map(|t| t.id)?;
        if self.ssrc_map.len() < MAX_SSRCS {
            self.ssrc_map.insert(ssrc, found);
        }
        Some(found)
    }
}

/// The rid header extension of a packet, as negotiated on its transceiver.
fn packet_rid(t: &Transceiver, header: &RtpHeader<'_>) -> Option<String> {
    let value = header.extension(extension_id(t, RID_URI)?)?;
    std::str::from_utf8(value)
        .ok()
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::session::testing::*;
    use crate::srtp::SrtpContext;

    fn rtp_events(events: &[MediaEvent]) -> Vec<(TransceiverId, Option<String>, u32, u16)> {
        events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Rtp { track, rid, packet } => {
                    Some((*track, rid.clone(), packet.ssrc, packet.sequence_number))
                }
                _ => None,
            })
            .collect()
    }

    /// The answerer's session (the offerer is the DTLS server here), its transceivers,
    /// the offerer's outbound context and the video transceiver's id.
    fn simulcast() -> (MediaSession, Vec<Transceiver>, SrtpContext, TransceiverId) {
        let now = Instant::now();
        let pc = answerer(now, SIMULCAST_OFFER);
        let transceivers = pc.transceivers().to_vec();
        let (mut media, sender, _) = keyed(now, true);
        media.announce_tracks(&transceivers);
        drain(&mut media);
        let track = transceivers[0].id;
        (media, transceivers, sender, track)
    }

    fn deliver(media: &mut MediaSession, ts: &[Transceiver], data: &[u8]) -> Vec<MediaEvent> {
        assert!(media.handle_srtp(Instant::now(), data, ts));
        drain(media)
    }

    #[test]
    fn simulcast_streams_demux_by_mid_rid_and_unsignalled_ssrc() {
        let (mut media, ts, mut sender, track) = simulcast();
        // Three SSRCs never signalled in the SDP: the first packet of each names mid and rid.
        let mut got = Vec::new();
        for (ssrc, rid) in [(0x1111, "q"), (0x2222, "h"), (0x3333, "f")] {
            let p = simulcast_packet(&mut sender, ssrc, 100, Some("0"), Some(rid));
            got.extend(rtp_events(&deliver(&mut media, &ts, &p)));
        }
        // Later packets carry no extensions (browsers stop once the stream is known): the
        // SSRC alone finds the transceiver and the rid it announced.
        for ssrc in [0x3333, 0x1111, 0x2222] {
            let p = simulcast_packet(&mut sender, ssrc, 101, None, None);
            got.extend(rtp_events(&deliver(&mut media, &ts, &p)));
        }
        let rid = |r: &str| Some(r.to_string());
        assert_eq!(
            got,
            vec![
                (track, rid("q"), 0x1111, 100),
                (track, rid("h"), 0x2222, 100),
                (track, rid("f"), 0x3333, 100),
                (track, rid("f"), 0x3333, 101),
                (track, rid("q"), 0x1111, 101),
                (track, rid("h"), 0x2222, 101),
            ]
        );
        // A new SSRC with a signalled rid but no mid is found by its rid.
        let p = simulcast_packet(&mut sender, 0x4444, 7, None, Some("h"));
        assert_eq!(
            rtp_events(&deliver(&mut media, &ts, &p)),
            vec![(track, rid("h"), 0x4444, 7)]
        );
        // A new SSRC naming a mid we do not have is dropped and counted, not guessed onto
        // the video transceiver by its payload type.
        let before = media.stats().rtp_unmatched;
        let p = simulcast_packet(&mut sender, 0x5555, 1, Some("9"), Some("q"));
        assert!(rtp_events(&deliver(&mut media, &ts, &p)).is_empty());
        assert_eq!(media.stats().rtp_unmatched, before + 1);
        // With neither mid nor rid nor a signalled ssrc, the payload type decides.
        let p = simulcast_packet(&mut sender, 0x6666, 1, None, None);
        assert_eq!(
            rtp_events(&deliver(&mut media, &ts, &p)),
            vec![(track, None, 0x6666, 1)]
        );
        assert_eq!(media.stats().rtp_received, 8);
    }

    #[test]
    fn received_packets_are_counted_per_source_for_reports() {
        let (mut media, ts, mut sender, _) = simulcast();
        for seq in [10, 11, 13] {
            let p = simulcast_packet(&mut sender, 0x1111, seq, Some("0"), Some("q"));
            deliver(&mut media, &ts, &p);
        }
        let block = media
            .recv_counters
            .get_mut(&0x1111)
            .expect("counted")
            .report_block(0x1111, Instant::now());
        assert_eq!(block.highest_sequence, 13);
        assert_eq!(block.cumulative_lost, 1, "seq 12 is missing");
        // A packet that matches no transceiver is not reported on.
        let p = simulcast_packet(&mut sender, 0x5555, 1, Some("9"), None);
        deliver(&mut media, &ts, &p);
        assert!(!media.recv_counters.contains_key(&0x5555));
    }

    #[test]
    fn tampered_or_unkeyed_packets_deliver_nothing() {
        let (mut media, ts, mut sender, _) = simulcast();
        let mut p = simulcast_packet(&mut sender, 0x1111, 100, Some("0"), Some("q"));
        let last = p.len() - 1;
        p[last] ^= 1;
        assert!(deliver(&mut media, &ts, &p).is_empty());
        assert_eq!(media.srtp_stats().0.auth_failures, 1);
        let mut unkeyed = MediaSession::new(1, (Instant::now(), std::time::UNIX_EPOCH));
        assert!(!unkeyed.handle_srtp(Instant::now(), &p, &ts));
        // Larger than any datagram: not taken.
        assert!(!media.handle_srtp(Instant::now(), &[0x80; 4096], &ts));
    }
}
