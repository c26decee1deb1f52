//! What the TURN client reports: events, the classification of received datagrams,
//! and the typed errors of its operations.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Why an allocation failed or was lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TurnError {
    /// 401 after the authenticated retry: wrong username or password.
    #[error("TURN server rejected the credentials (401)")]
    Unauthorized,
    /// 401 without REALM and NONCE: the challenge cannot be answered.
    #[error("TURN server sent a 401 without realm and nonce")]
    BadChallenge,
    /// 403 Forbidden.
    #[error("TURN server forbids the request (403)")]
    Forbidden,
    /// 486 Allocation Quota Reached.
    #[error("TURN allocation quota reached (486)")]
    AllocationQuotaReached,
    /// 508 Insufficient Capacity.
    #[error("TURN server has insufficient capacity (508)")]
    InsufficientCapacity,
    /// 437 Allocation Mismatch (e.g. the allocation expired on the server).
    #[error("TURN allocation mismatch (437)")]
    AllocationMismatch,
    /// 438 Stale Nonce too many times in a row.
    #[error("TURN server keeps answering 438 Stale Nonce")]
    StaleNonceLoop,
    /// Any other error response.
    #[error("TURN server error {code}")]
    ServerError {
        /// The ERROR-CODE number.
        code: u16,
    },
    /// A success response without XOR-RELAYED-ADDRESS.
    #[error("TURN Allocate success without XOR-RELAYED-ADDRESS")]
    MissingRelayedAddress,
    /// No valid response within the transaction timeout (unreachable, silent or
    /// answering garbage), or the lifetime ran out before a refresh succeeded.
    #[error("TURN server did not answer in time")]
    Timeout,
    /// The runtime could not resolve or connect to the server (host name, refused by
    /// the network configuration, TCP or TLS failure).
    #[error("TURN server unreachable (name, connection or TLS failure)")]
    Unreachable,
    /// The request timed out after only error responses without a valid
    /// MESSAGE-INTEGRITY came (RFC 8489 9.2.5: integrity protection violated). They were
    /// discarded, since anyone on the path could have sent them; `code` is the last one.
    #[error("TURN request answered only by unauthenticated error {code}")]
    UnauthenticatedError {
        /// The ERROR-CODE number of the last discarded response.
        code: u16,
    },
}

impl TurnError {
    pub(crate) fn from_code(code: u16) -> TurnError {
        match code {
            401 => TurnError::Unauthorized,
            403 => TurnError::Forbidden,
            437 => TurnError::AllocationMismatch,
            438 => TurnError::StaleNonceLoop,
            486 => TurnError::AllocationQuotaReached,
            508 => TurnError::InsufficientCapacity,
            code => TurnError::ServerError { code },
        }
    }

    /// What a transaction reports when it timed out after discarding unauthenticated
    /// error responses with `code`. A 401 there means the server refused our credentials
    /// (it cannot sign with a key it does not share with us) and a 438 that the server
    /// kept answering Stale Nonce, so those keep their usual meaning.
    pub(crate) fn unauthenticated(code: u16) -> TurnError {
        match code {
            401 => TurnError::Unauthorized,
            438 => TurnError::StaleNonceLoop,
            code => TurnError::UnauthenticatedError { code },
        }
    }
}

/// Why a permission or channel could not be requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// No allocation (yet, or any more).
    #[error("no TURN allocation")]
    NotAllocated,
    /// The peer's address family differs from the relayed address's.
    #[error("peer address family differs from the relayed address")]
    FamilyMismatch,
    /// [`MAX_PERMISSIONS`](crate::turn::MAX_PERMISSIONS) or [`MAX_CHANNELS`](crate::turn::MAX_CHANNELS) reached, or channel numbers exhausted.
    #[error("too many TURN permissions or channels")]
    TooMany,
}

/// Why data could not be sent through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TurnSendError {
    /// No allocation (yet, or any more).
    #[error("no TURN allocation")]
    NotAllocated,
    /// No permission was requested for the peer's IP address.
    #[error("no TURN permission for the peer")]
    NoPermission,
    /// The data does not fit one message.
    #[error("data too large for one TURN message")]
    TooLarge,
    /// The caller's buffer is too small.
    #[error("buffer too small")]
    BufferTooSmall,
    /// The transmit queue is full.
    #[error("TURN transmit queue full")]
    QueueFull,
}

/// What a datagram from the network was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnInput<'a> {
    /// From the server and handled here (a response, or dropped as invalid).
    Consumed,
    /// A peer's datagram relayed by the server (Data indication or ChannelData): hand
    /// `data` to ICE/DTLS as if it arrived from `peer` on the relayed address.
    PeerData {
        /// The peer it came from.
        peer: SocketAddr,
        /// Its payload.
        data: &'a [u8],
    },
    /// Not for this client: from another address, or a STUN response to a transaction
    /// it did not start (e.g. ICE's Binding request to the same server). Pass it on.
    NotTurn,
}

/// What the client tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnEvent {
    /// The allocation exists: `relayed` is the relay candidate's address.
    Allocated {
        /// XOR-RELAYED-ADDRESS.
        relayed: SocketAddr,
        /// XOR-MAPPED-ADDRESS (our server-reflexive address), if the server sent it.
        mapped: Option<SocketAddr>,
        /// The lifetime the server granted.
        lifetime: Duration,
    },
    /// Allocating failed, or an existing allocation was lost. Terminal.
    AllocationFailed(TurnError),
    /// A Refresh succeeded.
    Refreshed {
        /// The lifetime the server granted.
        lifetime: Duration,
    },
    /// A permission was installed (first time only, not on refreshes).
    PermissionCreated(IpAddr),
    /// A CreatePermission failed; sending to that IP will not get through.
    PermissionFailed(IpAddr, TurnError),
    /// A channel was bound (first time only); data to `peer` now uses ChannelData.
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// Its channel number.
        channel: u16,
    },
    /// A ChannelBind failed; data to that peer keeps using Send indications.
    ChannelBindFailed(SocketAddr, TurnError),
    /// The allocation was released after [`TurnClient::close`](crate::turn::TurnClient::close). Terminal.
    Deallocated,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TurnStats {
    /// Requests sent (first transmissions, including authenticated retries).
    pub requests_sent: u64,
    /// Retransmissions.
    pub retransmits: u64,
    /// Responses accepted.
    pub responses: u64,
    /// Datagrams from the server dropped (malformed, unknown transaction, bad integrity).
    pub dropped: u64,
    /// Transmits or events dropped because a queue was full.
    pub queue_overflows: u64,
    /// Responses to requests sent with credentials that were discarded for lacking a
    /// valid MESSAGE-INTEGRITY (also counted in `dropped`), and 438s beyond the retries.
    pub unauthenticated_discarded: u64,
}
