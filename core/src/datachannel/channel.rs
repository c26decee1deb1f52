//! One data channel: its parameters, its state, and how its messages map onto SCTP
//! (stream, PPID, ordering, PR-SCTP policy).
//!
//! ```text
//!   Connecting ──(association up; DCEP OPEN queued, or pre-negotiated)──> Open
//!   Open ──(close(), or the peer resets its stream)──> Closing
//!   Closing ──(our outgoing reset done and the peer's incoming reset seen)──> Closed
//! ```

use std::time::Duration;

use bytes::BytesMut;

use super::dcep::{ChannelReliability, DataChannelOpen};
use crate::sctp::Reliability;

/// An opaque handle to a data channel, stable for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId(pub(crate) u64);

/// Options of `create_data_channel` (the W3C `RTCDataChannelInit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelInit {
    /// Deliver in order (default true).
    pub ordered: bool,
    /// Partial reliability: at most this many retransmissions.
    pub max_retransmits: Option<u16>,
    /// Partial reliability: give up after this many milliseconds.
    pub max_packet_life_time: Option<u16>,
    /// Sub-protocol name.
    pub protocol: String,
    /// Negotiated out of band: no DCEP; `id` is required and both sides create it.
    pub negotiated: bool,
    /// The SCTP stream id (required when `negotiated`; otherwise chosen by DTLS role).
    pub id: Option<u16>,
    /// DCEP priority (256 is normal).
    pub priority: u16,
}

impl Default for DataChannelInit {
    fn default() -> Self {
        DataChannelInit {
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
            protocol: String::new(),
            negotiated: false,
            id: None,
            priority: 256,
        }
    }
}

/// Where a channel is in its life (the W3C `RTCDataChannelState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataChannelState {
    /// Waiting for the association (or for a stream id).
    Connecting,
    /// Messages flow.
    Open,
    /// Its streams are being reset.
    Closing,
    /// Gone.
    Closed,
}

/// What a channel is, as reported by `DataChannels::channel`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelInfo {
    /// Label.
    pub label: String,
    /// Sub-protocol.
    pub protocol: String,
    /// SCTP stream id, once assigned.
    pub stream_id: Option<u16>,
    /// In-order delivery.
    pub ordered: bool,
    /// Retransmission policy.
    pub reliability: ChannelReliability,
    /// Negotiated out of band.
    pub negotiated: bool,
    /// State.
    pub state: DataChannelState,
}

#[derive(Debug)]
pub(crate) struct Channel {
    pub label: String,
    pub protocol: String,
    pub stream_id: Option<u16>,
    pub ordered: bool,
    pub reliability: ChannelReliability,
    pub priority: u16,
    pub negotiated: bool,
    pub state: DataChannelState,
    /// Until the peer's DATA_CHANNEL_ACK, messages go ordered (RFC 8832 6).
    pub acked: bool,
    /// We opened it with DCEP and the OPEN is not yet sent.
    pub open_pending: bool,
    pub outgoing_reset_done: bool,
    pub incoming_reset_done: bool,
    /// Parts of a message sent with the deprecated partial PPIDs.
    pub partial: BytesMut,
    /// The W3C `bufferedAmountLowThreshold`.
    pub low_threshold: usize,
}

impl Channel {
    pub(crate) fn local(
        label: &str,
        init: &DataChannelInit,
        reliability: ChannelReliability,
    ) -> Self {
        Channel {
            label: label.to_owned(),
            protocol: init.protocol.clone(),
            stream_id: init.id,
            ordered: init.ordered,
            reliability,
            priority: init.priority,
            negotiated: init.negotiated,
            state: DataChannelState::Connecting,
            acked: init.negotiated,
            open_pending: !init.negotiated,
            outgoing_reset_done: false,
            incoming_reset_done: false,
            partial: BytesMut::new(),
            low_threshold: 0,
        }
    }

    pub(crate) fn remote(stream_id: u16, open: DataChannelOpen) -> Self {
        Channel {
            label: open.label,
            protocol: open.protocol,
            stream_id: Some(stream_id),
            ordered: open.ordered,
            reliability: open.reliability,
            priority: open.priority,
            negotiated: false,
            state: DataChannelState::Open,
            acked: true,
            open_pending: false,
            outgoing_reset_done: false,
            incoming_reset_done: false,
            partial: BytesMut::new(),
            low_threshold: 0,
        }
    }

    pub(crate) fn open_message(&self) -> DataChannelOpen {
        DataChannelOpen {
            ordered: self.ordered,
            reliability: self.reliability,
            priority: self.priority,
            label: self.label.clone(),
            protocol: self.protocol.clone(),
        }
    }

    /// Whether user messages go unordered now.
    pub(crate) fn sends_unordered(&self) -> bool {
        !self.ordered && self.acked
    }

    /// The SCTP policy of the channel's user messages.
    pub(crate) fn sctp_reliability(&self) -> Reliability {
        match self.reliability {
            ChannelReliability::Reliable => Reliability::Reliable,
            ChannelReliability::MaxRetransmits(n) => {
                Reliability::MaxRetransmits(u16::try_from(n).unwrap_or(u16::MAX))
            }
            ChannelReliability::MaxLifetimeMs(ms) => {
                Reliability::MaxLifetime(Duration::from_millis(u64::from(ms)))
            }
        }
    }

    pub(crate) fn info(&self) -> DataChannelInfo {
        DataChannelInfo {
            label: self.label.clone(),
            protocol: self.protocol.clone(),
            stream_id: self.stream_id,
            ordered: self.ordered,
            reliability: self.reliability,
            negotiated: self.negotiated,
            state: self.state,
        }
    }
}
