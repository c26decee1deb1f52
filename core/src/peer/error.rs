//! Typed errors of the PeerConnection API. A bad packet from the network is never an error
//! to the caller: it is dropped and counted in stats.

use crate::dtls::cert::CertificateError;
use crate::peer::event::SignalingState;
use crate::sdp::{SdpError, SdpType};

/// `PeerConnection::new` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The certificate could not be generated.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// The operating system's random source failed (no session starts with a known key).
    #[error(transparent)]
    Randomness(#[from] crate::rng::NoRandomness),
}

/// An offer/answer operation that is not allowed or a description that cannot be applied.
/// On error nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The operation is not allowed in the current signaling state (W3C `InvalidStateError`).
    #[error("cannot {operation} in signaling state {state:?}")]
    InvalidState {
        /// What was attempted.
        operation: Operation,
        /// The state it was attempted in.
        state: SignalingState,
    },
    /// The PeerConnection is closed.
    #[error("the PeerConnection is closed")]
    Closed,
    /// The SDP text does not parse.
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// `pranswer`/`rollback` type where it cannot be used, or an unexpected type.
    #[error("a description of type {0:?} cannot be used here")]
    UnexpectedType(SdpType),
    /// An accepted m-line has no `a=ice-ufrag`/`a=ice-pwd`.
    #[error("m-line {index} has no ICE credentials")]
    MissingIceCredentials {
        /// The m-line index.
        index: usize,
    },
    /// An accepted m-line has no usable `a=fingerprint`.
    #[error("m-line {index} has no sha-256 DTLS fingerprint")]
    MissingFingerprint {
        /// The m-line index.
        index: usize,
    },
    /// An accepted m-line has a missing or invalid `a=setup` for its role.
    #[error("m-line {index} has an invalid a=setup")]
    InvalidSetup {
        /// The m-line index.
        index: usize,
    },
    /// An accepted m-line has no `a=mid`.
    #[error("m-line {index} has no a=mid")]
    MissingMid {
        /// The m-line index.
        index: usize,
    },
    /// Two m-lines carry the same mid.
    #[error("m-line {index} repeats a mid")]
    DuplicateMid {
        /// The m-line index.
        index: usize,
    },
    /// An accepted RTP m-line does not offer rtcp-mux, which we require.
    #[error("m-line {index} does not use rtcp-mux")]
    RtcpMuxRequired {
        /// The m-line index.
        index: usize,
    },
    /// The accepted m-lines use different ICE credentials: we only support BUNDLE on one transport.
    #[error("m-line {index} is not bundled on the same ICE transport")]
    NotBundled {
        /// The m-line index.
        index: usize,
    },
    /// The answer's m-lines do not match our offer (count, kind or mid).
    #[error("answer m-line {index} does not match the offer")]
    AnswerMismatch {
        /// The m-line index.
        index: usize,
    },
    /// A remote offer removed m-lines of the previous negotiation or changed their kind or mid.
    #[error("remote offer m-line {index} does not match the previous negotiation")]
    OfferMismatch {
        /// The m-line index.
        index: usize,
    },
    /// `set_local_description` was given a description other than the one last created.
    #[error("the local description is not the one last created by create_offer/create_answer")]
    ModifiedLocalDescription,
}

/// The operation a [`NegotiationError::InvalidState`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Operation {
    /// `create_offer`.
    CreateOffer,
    /// `create_answer`.
    CreateAnswer,
    /// `set_local_description` with this type.
    SetLocal(SdpType),
    /// `set_remote_description` with this type.
    SetRemote(SdpType),
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operation::CreateOffer => f.write_str("create an offer"),
            Operation::CreateAnswer => f.write_str("create an answer"),
            Operation::SetLocal(t) => write!(f, "set a local {}", t.as_str()),
            Operation::SetRemote(t) => write!(f, "set a remote {}", t.as_str()),
        }
    }
}

/// `add_ice_candidate` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddCandidateError {
    /// No remote description yet (W3C `InvalidStateError`).
    #[error("no remote description")]
    NoRemoteDescription,
    /// Neither `sdpMid` nor `sdpMLineIndex` names an m-line of the remote description.
    #[error("the candidate names no m-line of the remote description")]
    UnknownMediaSection,
    /// The `usernameFragment` is not the remote description's (a candidate of an old ICE generation).
    #[error("the candidate belongs to another ICE generation")]
    UfragMismatch,
    /// The candidate string does not parse.
    #[error("malformed candidate: {0}")]
    Malformed(#[from] crate::ice::CandidateError),
    /// The PeerConnection is closed.
    #[error("the PeerConnection is closed")]
    Closed,
}

/// `send_rtp` / `request_keyframe` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// DTLS (and so SRTP) is not connected yet.
    #[error("media transport not connected")]
    NotConnected,
    /// No such transceiver.
    #[error("unknown transceiver")]
    UnknownTransceiver,
    /// The transceiver does not send (by negotiation) or has no codec.
    #[error("the transceiver does not send")]
    NotSending,
    /// The packet does not fit the MTU.
    #[error("packet too large")]
    TooLarge,
    /// The outgoing queue is full (the application sends faster than it polls).
    #[error("outgoing queue full")]
    QueueFull,
}
