//! Events the PeerConnection reports (the W3C `RTCPeerConnection` events and the messages
//! the seed's controlling process receives), and the states they carry.

use crate::sdp::IceCandidateInit;

pub use crate::ice::{IceConnectionState, IceGatheringState};

/// `RTCSignalingState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalingState {
    /// No offer/answer exchange in progress.
    Stable,
    /// A local offer was set.
    HaveLocalOffer,
    /// A remote offer was set.
    HaveRemoteOffer,
    /// A local provisional answer was set.
    HaveLocalPranswer,
    /// A remote provisional answer was set.
    HaveRemotePranswer,
    /// The PeerConnection is closed.
    Closed,
}

/// `RTCPeerConnectionState`: the aggregate of ICE and DTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Nothing started.
    New,
    /// ICE or DTLS in progress.
    Connecting,
    /// Connected.
    Connected,
    /// Connectivity lost for a while (may come back).
    Disconnected,
    /// Failed for good.
    Failed,
    /// Closed by `close()`.
    Closed,
}

/// How the remote peer said it was done ([`Event::RemoteClosed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteClose {
    /// A DTLS close_notify alert (in an authenticated epoch-1 record).
    CloseNotify,
    /// An SCTP ABORT (data channels) inside DTLS.
    SctpAbort,
    /// A graceful SCTP SHUTDOWN the peer started, inside DTLS.
    SctpShutdown,
    /// SRTCP BYE for every stream the peer sent, in a session without data channels.
    RtcpBye,
}

/// Something the application should know or act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A local ICE candidate to send to the remote peer. The last one of a gathering
    /// round has an empty `candidate` string (end of candidates), which browsers accept
    /// in `addIceCandidate`.
    IceCandidate(IceCandidateInit),
    /// A remote candidate names an mDNS `.local` host: resolve `hostname` and call
    /// `add_ice_candidate` again with the address in place of the name.
    UnresolvedCandidate {
        /// The `.local` host name to resolve.
        hostname: String,
        /// The candidate as received.
        candidate: IceCandidateInit,
    },
    /// `icegatheringstatechange`.
    IceGatheringStateChange(IceGatheringState),
    /// `iceconnectionstatechange`.
    IceConnectionStateChange(IceConnectionState),
    /// `connectionstatechange`.
    ConnectionStateChange(ConnectionState),
    /// `signalingstatechange`.
    SignalingStateChange(SignalingState),
    /// `negotiationneeded`: create and send a new offer.
    NegotiationNeeded,
    /// A remote track: the remote side sends on this transceiver (after negotiation).
    Track(crate::media::TrackInfo),
    /// A remote track ended: the remote sent RTCP BYE for it, or a renegotiation stopped
    /// it or made it stop sending.
    TrackEnded(crate::media::TransceiverId),
    /// No packets arrived on this remote track for 3 s (W3C `mute`).
    TrackMuted(crate::media::TransceiverId),
    /// Packets arrive again on a muted remote track (W3C `unmute`).
    TrackUnmuted(crate::media::TransceiverId),
    /// The remote opened a data channel (W3C `datachannel`); `DataChannelOpen` follows.
    DataChannel {
        /// The new channel.
        channel: crate::datachannel::ChannelId,
        /// Its label.
        label: String,
        /// Its sub-protocol.
        protocol: String,
    },
    /// A data channel is open (W3C `open`), ours or the remote's.
    DataChannelOpen(crate::datachannel::ChannelId),
    /// A data channel message (W3C `message`).
    DataChannelMessage {
        /// The channel.
        channel: crate::datachannel::ChannelId,
        /// The message (empty for an empty message).
        data: bytes::Bytes,
        /// Binary rather than text.
        binary: bool,
    },
    /// A data channel closed (W3C `close`); its id is no longer valid.
    DataChannelClose(crate::datachannel::ChannelId),
    /// A channel's buffered amount fell to its low threshold (W3C `bufferedamountlow`).
    BufferedAmountLow(crate::datachannel::ChannelId),
    /// A received RTP packet, decrypted.
    Rtp {
        /// The remote track (the transceiver receiving it) it belongs to.
        track: crate::media::TransceiverId,
        /// Its simulcast stream: the rid the packet or, earlier, its SSRC announced.
        rid: Option<String>,
        /// The packet.
        packet: crate::media::RtpPacket,
    },
    /// A received RTCP compound packet, decrypted.
    Rtcp(bytes::Bytes),
    /// The remote asked for a keyframe (PLI or FIR) on this transceiver's sender.
    KeyframeRequest(crate::media::TransceiverId),
    /// Congestion control feedback about the packets we sent: transport-wide
    /// (draft-holmer-rmcat-transport-wide-cc-extensions-01, when `transport-cc` is
    /// negotiated) or RFC 8888 (when `ack ccfb` is; `format` says which): each reported
    /// packet's send time, size and arrival or loss, for a bandwidth estimator. At most
    /// 65,535 packets per feedback (4,096 for RFC 8888).
    TransportFeedback(crate::media::twcc::TransportFeedback),
    /// The remote's Receiver Estimated Maximum Bitrate (REMB,
    /// draft-alvestrand-rmcat-remb-03): the rate its receive-side bandwidth estimator
    /// says it can take for the streams named, ours. A sender should keep the total of
    /// those streams at or below it (a bandwidth estimator of ours would read it as a
    /// cap next to transport-wide feedback). Chromium sends it about once a second (sooner
    /// when its estimate drops) whenever `transport-cc` is not negotiated, even without
    /// `goog-remb`; its estimate needs the abs-send-time extension, which we write when
    /// negotiated. Also counted in `PeerStats::loss_recovery` (`remb_received`,
    /// `remb_last_received_bps`).
    RemoteBitrateEstimate {
        /// Bits per second (the 18-bit mantissa and exponent as carried).
        bitrate_bps: u64,
        /// The SSRCs of our senders it applies to (may be empty).
        ssrcs: Vec<u32>,
    },
    /// DTLS failed (for example the peer's certificate does not match its SDP
    /// fingerprint); `connectionState` becomes `failed`.
    DtlsFailed(crate::dtls::DtlsError),
    /// The DTLS transport's state changed (W3C `RTCDtlsTransport` `statechange`):
    /// `Connecting` when the handshake starts, `Connected`, then `Failed`, or `Closed` when
    /// the peer sent an authenticated close_notify. Our own `close()` fires nothing, as in
    /// the W3C API.
    DtlsStateChange(crate::dtls::DtlsState),
    /// The remote peer ended the session, authenticated (nothing unauthenticated can cause
    /// it): fired once, for the first of its goodbyes. Every data channel has closed
    /// (`DataChannelClose`) when the transport went. The session is over: release it
    /// (`close()`, or `Endpoint::close_peer`) rather than wait for ICE consent to expire.
    RemoteClosed(RemoteClose),
    /// A TURN server gave no relay candidate, or lost the allocation (W3C
    /// `icecandidateerror`): wrong credentials, quota, an unreachable or garbled server.
    /// Other candidates keep working; gathering no longer waits for this one.
    IceCandidateError {
        /// The server's URL as configured.
        url: String,
        /// Our socket (or stream) the allocation was made from.
        local: std::net::SocketAddr,
        /// What went wrong.
        error: crate::turn::TurnError,
    },
}
