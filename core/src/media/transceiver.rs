//! A transceiver's negotiation-relevant state: kind, mid, directions, sender identity and
//! what the last offer/answer settled (codecs, header extensions, remote streams).

use crate::media::{Direction, MediaKind};

/// Opaque id of a transceiver within one PeerConnection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransceiverId(pub(crate) u32);

impl NegotiatedCodec {
    /// The payload type this RTX format repairs (`apt=`); `None` for other formats.
    pub fn rtx_apt(&self) -> Option<u8> {
        crate::sdp::jsep::rtx_apt(&self.name, self.fmtp.as_deref())
    }

    /// Whether `a=rtcp-fb:<pt> <feedback>` was negotiated for this codec.
    pub fn has_feedback(&self, feedback: &str) -> bool {
        self.rtcp_feedback
            .iter()
            .any(|f| f.eq_ignore_ascii_case(feedback))
    }
}

impl TransceiverId {
    /// The numeric value (stable for the PeerConnection's life).
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Options for `add_transceiver` (`RTCRtpTransceiverInit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransceiverInit {
    /// Initial direction.
    pub direction: Direction,
    /// MediaStream ids the sender's track belongs to.
    pub stream_ids: Vec<String>,
}

/// A codec settled by offer/answer, with the payload type both sides use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    /// Payload type (the offerer's).
    pub payload_type: u8,
    /// Encoding name.
    pub name: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Audio channels.
    pub channels: Option<u16>,
    /// Format parameters.
    pub fmtp: Option<String>,
    /// RTCP feedback both sides support.
    pub rtcp_feedback: Vec<String>,
}

/// What the remote side told us about the stream it sends on this transceiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteTrackInfo {
    /// Remote MediaStream ids (`a=msid`).
    pub stream_ids: Vec<String>,
    /// Remote track id, if signalled.
    pub track_id: Option<String>,
    /// Signalled SSRCs (`a=ssrc`).
    pub ssrcs: Vec<u32>,
    /// Signalled rids (`a=rid ... send` from the remote's point of view).
    pub rids: Vec<String>,
    /// Signalled retransmission streams (`a=ssrc-group:FID <primary> <rtx>`): (primary
    /// SSRC, RTX SSRC).
    pub rtx_ssrcs: Vec<(u32, u32)>,
}

/// One transceiver as the PeerConnection sees it.
#[derive(Debug, Clone)]
pub struct Transceiver {
    /// Its id.
    pub id: TransceiverId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The mid, once the transceiver is associated with an m-line.
    pub mid: Option<String>,
    /// The index of its m-line, once associated.
    pub mline_index: Option<usize>,
    /// Preferred direction (`RTCRtpTransceiver.direction`).
    pub direction: Direction,
    /// Negotiated direction (`currentDirection`), after an answer.
    pub current_direction: Option<Direction>,
    /// Stream ids of the local track.
    pub stream_ids: Vec<String>,
    /// Whether a local track is attached (add_track / remove_track).
    pub has_track: bool,
    /// Local track id (`a=msid` application data).
    pub track_id: String,
    /// The SSRC our sender uses.
    pub sender_ssrc: u32,
    /// The SSRC our sender's retransmissions use when RTX is negotiated (RFC 4588,
    /// `a=ssrc-group:FID <sender_ssrc> <sender_rtx_ssrc>`).
    pub sender_rtx_ssrc: u32,
    /// `stop()` was called.
    pub stopping: bool,
    /// Stopped: its m-line is rejected (port 0) and may be recycled.
    pub stopped: bool,
    /// Created by applying a remote offer (so rollback removes it).
    pub created_by_remote_offer: bool,
    /// Codecs settled by the last offer/answer, in preference order.
    pub codecs: Vec<NegotiatedCodec>,
    /// Header extensions settled by the last offer/answer: (id, uri).
    pub header_extensions: Vec<(u16, String)>,
    /// The remote sender's stream as described by the remote description.
    pub remote: RemoteTrackInfo,
}
