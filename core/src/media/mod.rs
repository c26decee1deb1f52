//! The media layer: kinds, directions and transceivers shared by the SDP model and the
//! PeerConnection API, and the media session that carries RTP and RTCP for them.
//!
//! - `transceiver.rs`: a transceiver's negotiated state (the PeerConnection's negotiation
//!   owns the transceivers; the media session reads them).
//! - `session.rs`: the `MediaSession` (SRTP contexts, outgoing queue, receive pool,
//!   timers, events, hook points), with `receive.rs` (unprotect, demux by SSRC, mid, rid,
//!   payload type), `send.rs` (header build, protect, queue), `rtcp.rs` (reports,
//!   feedback, keyframe requests, BYE) and `track.rs` (track announcement, mute).
//! - `reports.rs`: RTCP counters per SSRC and the RTT estimator.
//! - `forward.rs`: for SFUs, one outgoing stream fed by a chosen source (simulcast layer
//!   switches at keyframes with continuous numbering) and a bounded keyframe cache.
//! - `nack.rs`, `retransmit.rs`, `twcc.rs`: the receive-side NACK generator, the send-side
//!   retransmission history (RTX), transport-wide feedback both ways; `recovery.rs` wires
//!   them into the media session's hooks and timers.

pub mod ccfb;
pub mod forward;
pub mod jitter_buffer;
pub mod nack;
pub(crate) mod receive;
pub mod recovery;
pub mod reports;
pub mod retransmit;
mod rtcp;
mod send;
pub(crate) mod session;
mod track;
pub mod transceiver;
pub mod twcc;

pub use transceiver::{
    NegotiatedCodec, RemoteTrackInfo, Transceiver, TransceiverId, TransceiverInit,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A received (decrypted) or to-be-sent RTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Payload type (as negotiated; `send_rtp` uses the first negotiated codec when it is
    /// not one of the transceiver's).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// Marker bit.
    pub marker: bool,
    /// SSRC (set by the core when sending).
    pub ssrc: u32,
    /// Payload (padding removed).
    pub payload: Bytes,
}

/// A remote track announced by negotiation (the W3C `track` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// The transceiver that receives it.
    pub transceiver: TransceiverId,
    /// Audio or video.
    pub kind: MediaKind,
    /// The transceiver's mid.
    pub mid: Option<String>,
    /// The remote MediaStream ids.
    pub stream_ids: Vec<String>,
    /// The rids of the simulcast streams the remote sends (`a=rid:<id> send`), empty
    /// without simulcast. Each `Event::Rtp` says which one its packet belongs to.
    pub rids: Vec<String>,
}

/// The kind of a media track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

impl MediaKind {
    /// The SDP media type token (`audio` / `video`).
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// A transceiver's or m-line's direction (`RTCRtpTransceiverDirection`, `a=sendrecv` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Send and receive.
    #[default]
    SendRecv,
    /// Send only.
    SendOnly,
    /// Receive only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// The SDP attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Parse an SDP direction attribute name.
    pub fn from_sdp(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// Whether this direction includes sending.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this direction includes receiving.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Build a direction from its send and receive halves.
    pub fn from_parts(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The direction as seen from the other side (sendonly <-> recvonly).
    pub fn reverse(self) -> Direction {
        Direction::from_parts(self.receives(), self.sends())
    }
}
