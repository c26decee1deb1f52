//! The media session in the PeerConnection: the media API calls, and the media
//! session's events forwarded as the PeerConnection's. The media plane itself is
//! [`crate::media::session`]; the PeerConnection hands it SRTP/SRTCP datagrams, the
//! transceivers negotiation settled, and its timers.

use super::{Event, PeerConnection, RemoteClose, SendError};
use crate::media::session::MediaEvent;
use crate::media::{RtpPacket, TransceiverId};

impl PeerConnection {
    /// Forward what the media session reported, in order, as the PeerConnection's events.
    pub(super) fn forward_media_events(&mut self) {
        while let Some(event) = self.media.poll_event() {
            let event = match event {
                MediaEvent::Track(info) => Event::Track(info),
                MediaEvent::TrackEnded(id) => Event::TrackEnded(id),
                MediaEvent::TrackMuted(id) => Event::TrackMuted(id),
                MediaEvent::TrackUnmuted(id) => Event::TrackUnmuted(id),
                MediaEvent::Rtp { track, rid, packet } => Event::Rtp { track, rid, packet },
                MediaEvent::Rtcp(compound) => Event::Rtcp(compound),
                MediaEvent::KeyframeRequest(id) => Event::KeyframeRequest(id),
                MediaEvent::TransportFeedback(f) => Event::TransportFeedback(f),
                MediaEvent::AllRemoteStreamsEnded => {
                    // BYE for the last stream the peer sent us, and no data channels:
                    // nothing of the session is left on the peer's side.
                    if !self.data_started {
                        self.remote_closed(RemoteClose::RtcpBye);
                    }
                    continue;
                }
            };
            self.push_event(event);
        }
    }

    /// Test hook: SRTP keys as DTLS would export them, without a handshake.
    #[cfg(test)]
    pub(super) fn install_srtp_for_test(
        &mut self,
        profile: crate::srtp::SrtpProfile,
        material: &[u8],
        is_client: bool,
    ) {
        self.media
            .install_keys_for_test(profile, material, is_client);
    }

    /// Send an RTP packet on a transceiver: the core sets the SSRC, the payload type (when
    /// the given one is not negotiated, the first negotiated codec's) and the mid header
    /// extension, protects it with SRTP and queues it for `poll_transmit`.
    pub fn send_rtp(
        &mut self,
        transceiver: TransceiverId,
        packet: &RtpPacket,
    ) -> Result<(), SendError> {
        self.media
            .send_rtp(self.last_now, self.neg.transceivers(), transceiver, packet)
    }

    /// Ask the remote sender of this transceiver's track for a keyframe (RTCP PLI).
    pub fn request_keyframe(&mut self, transceiver: TransceiverId) -> Result<(), SendError> {
        self.media
            .request_keyframe(self.neg.transceivers(), transceiver)
    }
}
