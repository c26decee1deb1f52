//! The send path: an application packet becomes an RTP packet of the transceiver's
//! sender (its SSRC, a negotiated payload type, the mid and transport-wide sequence
//! header extensions), is counted for sender reports, protected and queued.

use std::time::Instant;

use crate::media::receive::MID_URI;
use crate::media::recovery::{negotiated_ccfb, negotiated_transport_cc};
use crate::media::session::{extension_id, transceiver_by_id, MediaSession};
use crate::media::{Direction, RtpPacket, Transceiver, TransceiverId};
use crate::peer::SendError;
use crate::rtp::extensions::ExtensionKind;
use crate::rtp::{self, RtpWrite};

/// What the send path knows of an RTP packet it built, for the per-packet bookkeeping
/// in [`MediaSession::on_rtp_sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SentRtp {
    /// Our sender's SSRC.
    pub(crate) ssrc: u32,
    /// The payload type written.
    pub(crate) payload_type: u8,
    /// The RTP timestamp.
    pub(crate) timestamp: u32,
    /// Payload octets.
    pub(crate) payload_len: usize,
    /// The transport-wide sequence number written, when the extension is negotiated.
    pub(crate) transport_sequence: Option<u16>,
    /// The RTP clock rate of its codec.
    pub(crate) clock_rate: u32,
    /// The whole packet's length (header included), for transport-wide feedback.
    pub(crate) packet_len: usize,
    /// Its transceiver negotiated `transport-cc` feedback: its send time is logged.
    pub(crate) transport_cc: bool,
    /// Its RTP sequence number and whether its transceiver negotiated RFC 8888 feedback
    /// (`ack ccfb`): its send time is logged per SSRC and sequence number.
    pub(crate) ccfb: Option<u16>,
    /// When it was sent.
    pub(crate) at: Instant,
}

impl MediaSession {
    /// Send an RTP packet on a transceiver: set the SSRC, the payload type (when the
    /// given one is not negotiated, the first negotiated codec's) and the mid and
    /// transport-cc header extensions, protect it with SRTP and queue it for
    /// `poll_transmit`. No allocation.
    pub(crate) fn send_rtp(
        &mut self,
        now: Instant,
        transceivers: &[Transceiver],
        transceiver: TransceiverId,
        packet: &RtpPacket,
    ) -> Result<(), SendError> {
        let t =
            transceiver_by_id(transceivers, transceiver).ok_or(SendError::UnknownTransceiver)?;
        if !t.current_direction.is_some_and(Direction::sends) || t.stopped {
            return Err(SendError::NotSending);
        }
        let codec = t
            .codecs
            .iter()
            .find(|c| c.payload_type == packet.payload_type)
            .or(t.codecs.first())
            .ok_or(SendError::NotSending)?;
        let (pt, clock_rate) = (codec.payload_type, codec.clock_rate);
        let nack = codec.has_feedback("nack");
        let one_byte = |i: &u8| (1..=14).contains(i);
        let mid_ext = extension_id(t, MID_URI).filter(one_byte);
        let twcc_ext = extension_id(t, ExtensionKind::TransportCc.uri()).filter(one_byte);
        let mid: &str = t.mid.as_deref().unwrap_or_default();
        if self.srtp_out.is_none() {
            return Err(SendError::NotConnected);
        }
        if self.outgoing.len() >= crate::media::session::MAX_MEDIA_QUEUE {
            return Err(SendError::QueueFull);
        }
        let twcc = self.transport_seq.to_be_bytes();
        // At most two extensions, on the stack (no allocation per packet).
        let mut exts: [(u8, &[u8]); 2] = [(0, &[]); 2];
        let mut n_exts = 0;
        if let Some(id) = mid_ext.filter(|_| !mid.is_empty() && mid.len() <= 16) {
            exts[n_exts] = (id, mid.as_bytes());
            n_exts += 1;
        }
        if let Some(id) = twcc_ext {
            exts[n_exts] = (id, &twcc);
            n_exts += 1;
        }
        let n = rtp::write_rtp(
            &RtpWrite {
                marker: packet.marker,
                payload_type: pt,
                sequence_number: packet.sequence_number,
                timestamp: packet.timestamp,
                ssrc: t.sender_ssrc,
                extensions: exts.get(..n_exts).unwrap_or_default(),
                payload: &packet.payload,
            },
            &mut self.scratch,
        )
        .map_err(|_| SendError::TooLarge)?;
        let sent = SentRtp {
            ssrc: t.sender_ssrc,
            payload_type: pt,
            timestamp: packet.timestamp,
            payload_len: packet.payload.len(),
            transport_sequence: twcc_ext.map(|_| self.transport_seq),
            clock_rate,
            packet_len: n,
            transport_cc: negotiated_transport_cc(t),
            ccfb: negotiated_ccfb(t).then_some(packet.sequence_number),
            at: now,
        };
        self.protect_and_queue_rtp(n)?;
        if nack {
            self.remember_sent(t.sender_ssrc, pt, packet, now);
        }
        self.on_rtp_sent(sent);
        Ok(())
    }

    /// Hook: an RTP packet was built into the scratch buffer (its plain form is still
    /// there, unprotected, until the next packet is built) and queued. Advances the
    /// transport-wide sequence and counts it for sender reports; a retransmission
    /// history stores the packet here and a transport-wide feedback reader records its
    /// send time per transport sequence.
    pub(crate) fn on_rtp_sent(&mut self, sent: SentRtp) {
        self.stats.rtp_sent += 1;
        if let Some(seq) = sent.transport_sequence {
            if sent.transport_cc {
                self.log_transport_cc(seq, sent.packet_len, sent.at);
            }
            self.transport_seq = self.transport_seq.wrapping_add(1);
        }
        if let Some(seq) = sent.ccfb {
            self.log_ccfb(sent.ssrc, seq, sent.packet_len, sent.at);
        }
        let counters = self.send_counters.entry(sent.ssrc).or_default();
        counters.packets = counters.packets.wrapping_add(1);
        counters.octets = counters.octets.wrapping_add(sent.payload_len as u32);
        counters.last = Some((sent.timestamp, sent.at));
        counters.clock_rate = sent.clock_rate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::session::testing::*;
    use crate::media::MediaKind;
    use crate::rtp::RtpHeader;
    use crate::srtp::SrtpContext;

    /// Alice offers audio and video, bob answers: alice's transceivers as settled, and
    /// alice's keyed session with bob's inbound context.
    fn negotiated() -> (MediaSession, Vec<Transceiver>, SrtpContext) {
        let now = Instant::now();
        let transceivers = negotiated_transceivers(now, &[MediaKind::Audio, MediaKind::Video], 21);
        let (media, _, bob_in) = keyed(now, false);
        (media, transceivers, bob_in)
    }

    fn unprotect_last(media: &MediaSession, peer_in: &mut SrtpContext) -> Vec<u8> {
        let mut b = media.queued().last().expect("queued").clone();
        let n = b.len();
        let m = peer_in.unprotect_rtp(&mut b, n).expect("srtp");
        b.truncate(m);
        b
    }

    #[test]
    fn send_rtp_sets_ssrc_payload_type_mid_and_transport_cc() {
        let (mut media, ts, mut bob_in) = negotiated();
        let now = Instant::now();
        let mut twcc_seqs = Vec::new();
        for (i, t) in ts.iter().enumerate() {
            let packet = RtpPacket {
                payload_type: 127, // not negotiated: the first negotiated codec is used
                sequence_number: 500 + i as u16,
                timestamp: 9,
                marker: true,
                ssrc: 0xDEAD, // ignored: the sender's own SSRC is used
                payload: bytes::Bytes::from_static(b"media"),
            };
            media.send_rtp(now, &ts, t.id, &packet).expect("send");
            let plain = unprotect_last(&media, &mut bob_in);
            let h = RtpHeader::parse(&plain).expect("rtp");
            assert_eq!(h.ssrc(), t.sender_ssrc, "{:?}", t.kind);
            assert_eq!(h.payload_type(), t.codecs[0].payload_type, "{:?}", t.kind);
            assert!(h.marker());
            assert_eq!(h.payload(), b"media");
            let ext = |uri: &str| extension_id(t, uri).expect("negotiated");
            assert_eq!(
                h.extension(ext(MID_URI)),
                t.mid.as_deref().map(str::as_bytes),
                "{:?}",
                t.kind
            );
            let twcc = h
                .extension(ext(ExtensionKind::TransportCc.uri()))
                .expect("transport-cc extension");
            twcc_seqs.push(u16::from_be_bytes([twcc[0], twcc[1]]));
        }
        // One transport-wide sequence across both tracks.
        assert_eq!(twcc_seqs, vec![twcc_seqs[0], twcc_seqs[0].wrapping_add(1)]);
        // A packet with a negotiated payload type keeps it.
        let video = ts
            .iter()
            .find(|t| t.kind == MediaKind::Video)
            .expect("video");
        let pt = video.codecs.last().expect("codec").payload_type;
        let packet = RtpPacket {
            payload_type: pt,
            sequence_number: 600,
            timestamp: 1,
            marker: false,
            ssrc: 0,
            payload: bytes::Bytes::from_static(b"x"),
        };
        media.send_rtp(now, &ts, video.id, &packet).expect("send");
        let plain = unprotect_last(&media, &mut bob_in);
        assert_eq!(RtpHeader::parse(&plain).expect("rtp").payload_type(), pt);
        assert_eq!(media.stats().rtp_sent, 3);
    }

    #[test]
    fn sent_packets_are_counted_for_sender_reports() {
        let (mut media, ts, _) = negotiated();
        let now = Instant::now();
        let audio = &ts[0];
        for seq in 0..3u16 {
            let packet = RtpPacket {
                payload_type: audio.codecs[0].payload_type,
                sequence_number: seq,
                timestamp: 960 * u32::from(seq),
                marker: false,
                ssrc: 0,
                payload: bytes::Bytes::from_static(b"opus!"),
            };
            media.send_rtp(now, &ts, audio.id, &packet).expect("send");
        }
        let c = media
            .send_counters
            .get(&audio.sender_ssrc)
            .expect("counted");
        assert_eq!((c.packets, c.octets), (3, 15));
        assert_eq!(c.last, Some((1920, now)));
        assert_eq!(c.clock_rate, audio.codecs[0].clock_rate);
    }

    #[test]
    fn refused_sends_queue_nothing() {
        let (mut media, ts, _) = negotiated();
        let now = Instant::now();
        let packet = RtpPacket {
            payload_type: 0,
            sequence_number: 1,
            timestamp: 1,
            marker: false,
            ssrc: 0,
            payload: bytes::Bytes::from(vec![0u8; 4000]),
        };
        assert_eq!(
            media.send_rtp(now, &ts, ts[0].id, &packet),
            Err(SendError::TooLarge)
        );
        assert_eq!(
            media.send_rtp(now, &ts, TransceiverId(99), &packet),
            Err(SendError::UnknownTransceiver)
        );
        let mut unkeyed = MediaSession::new(1, (now, std::time::UNIX_EPOCH));
        assert_eq!(
            unkeyed.send_rtp(now, &ts, ts[0].id, &packet),
            Err(SendError::NotConnected)
        );
        assert_eq!(media.queued().count(), 0);
        assert_eq!(media.stats().rtp_sent, 0);
        assert_eq!(media.transport_seq, 0, "no transport-wide sequence used");
    }
}
