//! The media session: everything between the SRTP keys and the application's RTP.
//!
//! A [`MediaSession`] owns the SRTP contexts, the demultiplexing state of received
//! streams (SSRC to transceiver, SSRC to rid), the queue of protected packets waiting
//! for `poll_transmit`, the pool received payloads are copied into, the RTCP counters and
//! report timer, and the mute tracking of remote tracks. It has the shape of every
//! stateful module of the core: `handle_*` inputs, `poll_transmit`, `poll_timeout`,
//! `handle_timeout`, `poll_event`. The PeerConnection classifies datagrams, hands
//! SRTP/SRTCP here, forwards what comes out, and gives each call the transceivers that
//! negotiation settled (the media session never negotiates).
//!
//! The concerns live in their own files: `receive.rs` (unprotect, demux, the receive
//! hook), `send.rs` (header build, protect, the send hook), `rtcp.rs` (reports,
//! feedback, keyframe requests, BYE) and `track.rs` (track announcement and mute).
//!
//! Hook points for per-packet bookkeeping (loss recovery, congestion feedback):
//! - [`MediaSession::on_rtp_received`]: each received RTP packet that reached a
//!   transceiver, before its `Event::Rtp`;
//! - [`MediaSession::on_rtp_sent`]: each sent RTP packet, after its header is built and
//!   before it is protected;
//! - [`MediaSession::on_sender_feedback`]: each received RTCP feedback packet (NACK,
//!   transport-wide feedback, REMB...);
//! - [`MediaSession::handle_timeout`] / [`MediaSession::poll_timeout`]: the media timers;
//! - [`MediaSession::queue_rtcp`] and [`MediaSession::protect_and_queue_rtp`]: extra RTCP
//!   or RTP packets a timer or a hook decides to send.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::media::recovery::Recovery;
use crate::media::reports::{ReceiveCounters, RttEstimator, SendCounters};
use crate::media::twcc::TransportFeedback;
use crate::media::{RtpPacket, TrackInfo, Transceiver, TransceiverId};
use crate::peer::SendError;
use crate::rng::Rng;
use crate::rtp::pool::{PacketQueue, PayloadPool};
use crate::rtp::ssrc_map::{ssrc_map, SsrcMap};
use crate::rtp::RtcpPacket;
use crate::srtp::{SrtpContext, SrtpStats};

/// Most protected media packets waiting for `poll_transmit`.
pub(crate) const MAX_MEDIA_QUEUE: usize = 4096;
/// Most remote SSRCs remembered for demultiplexing.
pub(crate) const MAX_SSRCS: usize = 1024;
/// Most media events kept before new ones are dropped (and counted). The PeerConnection
/// drains them after every call, so this bound is a backstop.
const MAX_MEDIA_EVENTS: usize = 4096;
/// The largest datagram the session protects or unprotects (received ones are dropped
/// above it, sent ones refused as too large).
const SCRATCH_LEN: usize = 2048;

/// What the media session reports to the PeerConnection, which forwards each as the
/// [`Event`](crate::Event) of the same name, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaEvent {
    /// A transceiver began receiving a remote track.
    Track(TrackInfo),
    /// The remote track of a transceiver ended.
    TrackEnded(TransceiverId),
    /// No packet arrived on a remote track for a while.
    TrackMuted(TransceiverId),
    /// Packets arrive again on a muted track.
    TrackUnmuted(TransceiverId),
    /// A received RTP packet, decrypted, with the transceiver and rid it belongs to.
    Rtp {
        /// The receiving transceiver.
        track: TransceiverId,
        /// Its simulcast stream.
        rid: Option<String>,
        /// The packet.
        packet: RtpPacket,
    },
    /// A received RTCP compound, decrypted.
    Rtcp(Bytes),
    /// The remote asked for a keyframe on this transceiver's sender.
    KeyframeRequest(TransceiverId),
    /// Transport-wide feedback about what we sent.
    TransportFeedback(TransportFeedback),
    /// The remote's REMB: its receive-side estimate for the streams named.
    RemoteBitrateEstimate {
        /// Bits per second.
        bitrate_bps: u64,
        /// The SSRCs (ours) it names.
        ssrcs: Vec<u32>,
    },
    /// An RTCP BYE ended the last stream the remote sent us.
    AllRemoteStreamsEnded,
}

/// Counters of the media session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MediaStats {
    /// RTP packets delivered as events.
    pub(crate) rtp_received: u64,
    /// RTP packets that matched no transceiver.
    pub(crate) rtp_unmatched: u64,
    /// RTP packets sent.
    pub(crate) rtp_sent: u64,
    /// Events dropped because the queue was full.
    pub(crate) events_dropped: u64,
}

/// The media plane of one PeerConnection. See the module docs.
pub(crate) struct MediaSession {
    pub(super) srtp_in: Option<SrtpContext>,
    pub(super) srtp_out: Option<SrtpContext>,
    /// Protected RTP/RTCP waiting for `poll_transmit`, in reused buffers.
    pub(super) outgoing: PacketQueue,
    /// Received RTP payloads and RTCP, handed out as slices of reused chunks.
    pub(super) payloads: PayloadPool,
    /// The transceiver each remote SSRC was demultiplexed to.
    pub(super) ssrc_map: SsrcMap<TransceiverId>,
    /// The rid each remote SSRC announced (browsers stop sending the rid extension once
    /// the stream is known, so later packets inherit it from here).
    pub(super) ssrc_rids: SsrcMap<String>,
    /// Transceivers whose remote track was announced with `Track` and has not ended.
    pub(super) announced_tracks: Vec<TransceiverId>,
    /// Where packets are built, protected and unprotected.
    pub(super) scratch: Vec<u8>,
    /// The (Instant, SystemTime) pair that maps `now` to wall-clock time for SR NTP times.
    clock_origin: (Instant, SystemTime),
    pub(super) send_counters: SsrcMap<SendCounters>,
    pub(super) recv_counters: SsrcMap<ReceiveCounters>,
    pub(super) rtt: RttEstimator,
    /// When the next RTCP report is due, once SRTP is keyed.
    pub(super) next_report: Option<Instant>,
    /// The next transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc).
    pub(super) transport_seq: u16,
    /// Per receiving transceiver: when its last packet arrived and whether it is muted.
    /// Kept sorted by id.
    pub(super) media_activity: Vec<(TransceiverId, Instant, bool)>,
    /// No unmuted track can go quiet for `MUTE_AFTER` before this. It may be early (a
    /// packet only moves its own track's instant later, and is not rescanned for); the
    /// scan in `check_muted` makes it exact again, so `poll_timeout` need not walk every
    /// receiving track, as the Endpoint has it do after each packet.
    pub(super) mute_deadline: Option<Instant>,
    events: VecDeque<MediaEvent>,
    pub(super) stats: MediaStats,
    /// NACK generators, retransmission histories, transport-wide feedback.
    pub(super) recovery: Recovery,
}

impl MediaSession {
    /// A session with no keys yet. `ssrc_key` keys the SSRC hash maps (so a peer cannot
    /// pick colliding SSRCs); `clock_origin` maps `Instant`s to wall-clock time.
    pub(crate) fn new(ssrc_key: u64, clock_origin: (Instant, SystemTime)) -> MediaSession {
        MediaSession {
            srtp_in: None,
            srtp_out: None,
            outgoing: PacketQueue::default(),
            payloads: PayloadPool::default(),
            ssrc_map: ssrc_map(ssrc_key),
            ssrc_rids: ssrc_map(ssrc_key),
            announced_tracks: Vec::new(),
            scratch: vec![0u8; SCRATCH_LEN],
            clock_origin,
            send_counters: ssrc_map(ssrc_key),
            recv_counters: ssrc_map(ssrc_key),
            rtt: RttEstimator::default(),
            next_report: None,
            transport_seq: 0,
            media_activity: Vec::new(),
            mute_deadline: None,
            events: VecDeque::new(),
            stats: MediaStats::default(),
            recovery: Recovery::new(ssrc_key),
        }
    }

    // ------------------------------------------------------------ getters

    /// Round-trip time measured from RTCP reports (LSR/DLSR), once known.
    pub(crate) fn rtt(&self) -> Option<std::time::Duration> {
        self.rtt.rtt()
    }

    /// The session's counters.
    pub(crate) fn stats(&self) -> MediaStats {
        self.stats
    }

    /// Inbound and outbound SRTP counters (zero before keying).
    pub(crate) fn srtp_stats(&self) -> (SrtpStats, SrtpStats) {
        let of = |c: &Option<SrtpContext>| c.as_ref().map(SrtpContext::stats).unwrap_or_default();
        (of(&self.srtp_in), of(&self.srtp_out))
    }

    /// The wall-clock time of `now`, from the configured (Instant, SystemTime) origin.
    pub(super) fn wall_clock(&self, now: Instant) -> SystemTime {
        let (origin, wall) = self.clock_origin;
        wall + now.saturating_duration_since(origin)
    }

    // ------------------------------------------------------------ inputs

    /// DTLS exported the keys: protect and unprotect from now on, and start the RTCP
    /// report timer.
    pub(crate) fn install_keys(
        &mut self,
        now: Instant,
        outbound: SrtpContext,
        inbound: SrtpContext,
        rng: &mut Rng,
    ) {
        self.srtp_out = Some(outbound);
        self.srtp_in = Some(inbound);
        self.schedule_report(now, rng);
    }

    /// Time passed: RTCP reports when due, tracks that went quiet. Calling it early or
    /// often is harmless. Media timers of later layers (NACK retries, feedback
    /// intervals) are checked here and join the minimum in [`Self::poll_timeout`].
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        transceivers: &[Transceiver],
        rng: &mut Rng,
    ) {
        if self.next_report.is_some_and(|t| now >= t) {
            self.send_reports(now, transceivers, rng);
        }
        self.recovery_timeout(now, transceivers);
        self.check_muted(now);
    }

    // ------------------------------------------------------------ outputs

    /// The next protected packet, written into `buf`; its length.
    pub(crate) fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.outgoing.pop_into(buf)
    }

    /// When `handle_timeout` should be called next: the minimum of the media timers.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_report,
            self.mute_deadline,
            self.recovery.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next media event.
    pub(crate) fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------ internals

    pub(super) fn push_event(&mut self, event: MediaEvent) {
        if self.events.len() >= MAX_MEDIA_EVENTS {
            self.stats.events_dropped += 1;
        } else {
            self.events.push_back(event);
        }
    }

    /// Queue one protected RTCP compound made of `packets`. Nothing is queued before
    /// keying, when the compound does not fit, or when the queue is full. Reports, BYE
    /// and any feedback a media timer or hook produces leave through here.
    pub(crate) fn queue_rtcp(&mut self, packets: &[RtcpPacket]) {
        let Some(srtp) = self.srtp_out.as_mut() else {
            return;
        };
        let mut len = 0;
        for p in packets {
            match p.write(self.scratch.get_mut(len..).unwrap_or_default()) {
                Ok(n) => len += n,
                Err(_) => return,
            }
        }
        if len == 0 || self.outgoing.len() >= MAX_MEDIA_QUEUE {
            return;
        }
        if let Ok(n) = srtp.protect_rtcp(&mut self.scratch, len) {
            self.outgoing
                .push(self.scratch.get(..n).unwrap_or_default());
        }
    }

    /// Protect the plain RTCP compound in the first `len` bytes of the scratch buffer and
    /// queue it; nothing before keying or when the queue is full.
    pub(super) fn protect_and_queue_rtcp(&mut self, len: usize) {
        let Some(srtp) = self.srtp_out.as_mut() else {
            return;
        };
        if self.outgoing.len() >= MAX_MEDIA_QUEUE {
            return;
        }
        if let Ok(n) = srtp.protect_rtcp(&mut self.scratch, len) {
            self.outgoing
                .push(self.scratch.get(..n).unwrap_or_default());
        }
    }

    /// Protect the plain RTP packet in the first `len` bytes of the scratch buffer and
    /// queue it for `poll_transmit`. The send path builds into the scratch buffer and
    /// ends here; a retransmission would too.
    pub(super) fn protect_and_queue_rtp(&mut self, len: usize) -> Result<(), SendError> {
        let srtp = self.srtp_out.as_mut().ok_or(SendError::NotConnected)?;
        if self.outgoing.len() >= MAX_MEDIA_QUEUE {
            return Err(SendError::QueueFull);
        }
        let n = srtp
            .protect_rtp(&mut self.scratch, len)
            .map_err(|_| SendError::TooLarge)?;
        self.outgoing
            .push(self.scratch.get(..n).unwrap_or_default());
        Ok(())
    }

    /// Test hook: SRTP keys as DTLS would export them, without a handshake or a report
    /// timer.
    #[cfg(test)]
    pub(crate) fn install_keys_for_test(
        &mut self,
        profile: crate::srtp::SrtpProfile,
        material: &[u8],
        is_client: bool,
    ) {
        let (out, inb) = SrtpContext::pair_from_keying_material(profile, material, is_client)
            .expect("keying material");
        self.srtp_out = Some(out);
        self.srtp_in = Some(inb);
    }

    /// The protected packets waiting for `poll_transmit`, oldest first.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.outgoing.iter()
    }
}

/// A transceiver by id without a scan in the usual case: ids are handed out in order,
/// so a transceiver usually sits at its id's index; otherwise search.
pub(super) fn transceiver_by_id(
    transceivers: &[Transceiver],
    id: TransceiverId,
) -> Option<&Transceiver> {
    transceivers
        .get(id.0 as usize)
        .filter(|t| t.id == id)
        .or_else(|| transceivers.iter().find(|t| t.id == id))
}

/// The one-byte header extension id negotiated on a transceiver for `uri`.
pub(super) fn extension_id(t: &Transceiver, uri: &str) -> Option<u8> {
    t.header_extensions
        .iter()
        .find(|(_, u)| u == uri)
        .and_then(|(i, _)| u8::try_from(*i).ok())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Negotiated transceivers and keyed sessions for the media tests.

    use super::*;
    use crate::srtp::SrtpProfile;
    use crate::{Config, PeerConnection, SessionDescription};

    /// Chromium's offer with three simulcast streams (`a=rid:q/h/f send`,
    /// `a=simulcast:send q;h;f`) and no `a=ssrc` lines.
    pub(crate) const SIMULCAST_OFFER: &str =
        include_str!("../../tests/fixtures/sdp/chromium-simulcast-offer.sdp");

    /// The extension id the simulcast offer gives `uri`.
    pub(crate) fn simulcast_offer_extension_id(uri: &str) -> u8 {
        let sdp = crate::sdp::Sdp::parse(SIMULCAST_OFFER).expect("offer parses");
        let id = sdp.media[0]
            .extmaps
            .iter()
            .find(|x| x.uri == uri)
            .expect("offered")
            .id;
        u8::try_from(id).expect("one-byte id")
    }

    /// One SRTP packet of the offerer: VP8 (pt 96), with the given mid and rid extensions.
    pub(crate) fn simulcast_packet(
        sender: &mut SrtpContext,
        ssrc: u32,
        seq: u16,
        mid: Option<&str>,
        rid: Option<&str>,
    ) -> Vec<u8> {
        simulcast_packet_with(sender, ssrc, seq, mid, rid, &seq.to_be_bytes())
    }

    /// [`simulcast_packet`] with the given payload.
    pub(crate) fn simulcast_packet_with(
        sender: &mut SrtpContext,
        ssrc: u32,
        seq: u16,
        mid: Option<&str>,
        rid: Option<&str>,
        payload: &[u8],
    ) -> Vec<u8> {
        let (mid_id, rid_id) = (
            simulcast_offer_extension_id(crate::media::receive::MID_URI),
            simulcast_offer_extension_id(crate::media::receive::RID_URI),
        );
        let mut exts: Vec<(u8, &[u8])> = Vec::new();
        if let Some(m) = mid {
            exts.push((mid_id, m.as_bytes()));
        }
        if let Some(r) = rid {
            exts.push((rid_id, r.as_bytes()));
        }
        let mut buf = vec![0u8; 1500];
        let n = crate::rtp::write_rtp(
            &crate::rtp::RtpWrite {
                marker: false,
                payload_type: 96,
                sequence_number: seq,
                timestamp: u32::from(seq) * 3000,
                ssrc,
                extensions: &exts,
                payload,
            },
            &mut buf,
        )
        .expect("write");
        let n = sender.protect_rtp(&mut buf, n).expect("protect");
        buf.truncate(n);
        buf
    }

    /// Alice offers these kinds, bob (seeded `seed + 1`) answers: alice's transceivers as
    /// negotiation settled them. Both are configured without RFC 8888 `ack ccfb`, which an
    /// answer prefers, so these transceivers negotiate `transport-cc`.
    pub(crate) fn negotiated_transceivers(
        now: Instant,
        kinds: &[crate::media::MediaKind],
        seed: u64,
    ) -> Vec<crate::media::Transceiver> {
        let config = |seed| {
            let mut c = Config {
                rng_seed: Some(seed),
                ..Default::default()
            };
            for codec in c.audio_codecs.iter_mut().chain(c.video_codecs.iter_mut()) {
                codec.rtcp_feedback.retain(|f| f != "ack ccfb");
            }
            c
        };
        let mut alice = PeerConnection::new(config(seed), now).expect("alice");
        let mut bob = PeerConnection::new(config(seed + 1), now).expect("bob");
        for kind in kinds {
            alice.add_track(*kind, vec!["s".into()]).expect("track");
        }
        let offer = alice
            .create_offer(crate::OfferOptions::default())
            .expect("offer");
        alice
            .set_local_description(now, offer.clone())
            .expect("local");
        bob.set_remote_description(now, offer).expect("remote");
        let answer = bob.create_answer().expect("answer");
        bob.set_local_description(now, answer.clone())
            .expect("local");
        alice.set_remote_description(now, answer).expect("remote");
        alice.transceivers().to_vec()
    }

    /// The profile every media test keys with.
    pub(crate) const PROFILE: SrtpProfile = SrtpProfile::AeadAes128Gcm;

    /// Keying material both ends derive their contexts from.
    pub(crate) fn material() -> Vec<u8> {
        (0..PROFILE.keying_material_len())
            .map(|i| (i * 7) as u8)
            .collect()
    }

    /// A session keyed as the DTLS client (`is_client`) or server would be, with the
    /// peer's contexts: (the peer's outbound, the peer's inbound).
    pub(crate) fn keyed(now: Instant, is_client: bool) -> (MediaSession, SrtpContext, SrtpContext) {
        let mut media = MediaSession::new(0x5eed, (now, std::time::UNIX_EPOCH));
        media.install_keys_for_test(PROFILE, &material(), is_client);
        let (peer_out, peer_in) =
            SrtpContext::pair_from_keying_material(PROFILE, &material(), !is_client).expect("keys");
        (media, peer_out, peer_in)
    }

    /// A PeerConnection that answered `offer` (its transceivers are what negotiation
    /// settled).
    pub(crate) fn answerer(now: Instant, offer: &str) -> PeerConnection {
        let mut pc = PeerConnection::new(
            Config {
                rng_seed: Some(7),
                ..Default::default()
            },
            now,
        )
        .expect("pc");
        pc.set_remote_description(now, SessionDescription::offer(offer))
            .expect("remote offer");
        let answer = pc.create_answer().expect("answer");
        pc.set_local_description(now, answer).expect("local answer");
        while pc.poll_event().is_some() {}
        pc
    }

    /// Every event the session has queued.
    pub(crate) fn drain(media: &mut MediaSession) -> Vec<MediaEvent> {
        std::iter::from_fn(|| media.poll_event()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn nothing_is_sent_or_scheduled_before_keys() {
        let now = Instant::now();
        let mut media = MediaSession::new(1, (now, std::time::UNIX_EPOCH));
        media.queue_rtcp(&[RtcpPacket::Bye {
            ssrcs: vec![1],
            reason: None,
        }]);
        let mut buf = [0u8; 1500];
        assert_eq!(media.poll_transmit(&mut buf), None);
        assert_eq!(media.poll_timeout(), None);
        assert_eq!(
            media.protect_and_queue_rtp(12),
            Err(SendError::NotConnected)
        );
    }

    #[test]
    fn keys_start_the_report_timer_within_half_to_one_and_a_half_seconds() {
        let now = Instant::now();
        let mut media = MediaSession::new(1, (now, std::time::UNIX_EPOCH));
        let (out, inb) =
            SrtpContext::pair_from_keying_material(PROFILE, &material(), true).expect("keys");
        media.install_keys(now, out, inb, &mut Rng::from_seed(3));
        let due = media.poll_timeout().expect("report timer");
        let after = due - now;
        assert!(
            after >= std::time::Duration::from_millis(500)
                && after <= std::time::Duration::from_millis(1500),
            "{after:?}"
        );
    }

    #[test]
    fn the_queue_is_bounded() {
        let now = Instant::now();
        let (mut media, _, _) = keyed(now, true);
        // An empty RTP packet (version 2, no extension) in the scratch buffer.
        media.scratch[..12].copy_from_slice(&[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9]);
        for _ in 0..MAX_MEDIA_QUEUE {
            media.protect_and_queue_rtp(12).expect("room");
        }
        assert_eq!(media.protect_and_queue_rtp(12), Err(SendError::QueueFull));
        let mut buf = [0u8; 1500];
        assert!(media.poll_transmit(&mut buf).is_some());
        assert_eq!(media.protect_and_queue_rtp(12), Ok(()));
    }
}
