//! What an association reports: events, send errors, close reasons, state and counters.

use super::ReceivedMessage;

/// Why [`Association::new`](super::Association::new) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssociationError {
    /// The operating system gave no randomness for the cookie key.
    #[error("no secret randomness for the cookie key")]
    NoRandomness,
}

/// Why [`Association::send`](super::Association::send) refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The association is closing or closed.
    #[error("association is not open for sending")]
    NotOpen,
    /// Larger than the maximum message size.
    #[error("message larger than the maximum message size")]
    MessageTooLarge,
    /// The send buffer is full; wait for the buffered amount to fall.
    #[error("send buffer full")]
    BufferFull,
    /// SCTP cannot carry an empty message (send one zero byte, RFC 8831 6.6).
    #[error("empty message")]
    EmptyMessage,
    /// The stream is beyond the negotiated count or being reset.
    #[error("invalid or resetting stream")]
    InvalidStream,
}

/// Why the association ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Graceful SHUTDOWN completed.
    Shutdown,
    /// The peer sent ABORT.
    AbortedByPeer,
    /// We aborted (API call or protocol violation).
    Aborted,
    /// Too many retransmissions without answer.
    Timeout,
}

/// Something the application should know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SctpEvent {
    /// The handshake completed.
    Connected,
    /// A whole message arrived.
    Message(ReceivedMessage),
    /// The peer reset its outgoing stream (our incoming one).
    IncomingStreamReset(u16),
    /// Our reset of an outgoing stream completed.
    OutgoingStreamReset(u16),
    /// The stream's buffered amount fell to its low threshold.
    BufferedAmountLow(u16),
    /// The association ended.
    Closed(CloseReason),
}

/// Counters of what happened, including every packet that was dropped and why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SctpStats {
    /// Packets given to `handle_packet`.
    pub packets_received: u64,
    /// Packets produced by `poll_transmit`.
    pub packets_sent: u64,
    /// Packets dropped for a bad CRC32c.
    pub bad_checksum: u64,
    /// Packets dropped for a wrong verification tag.
    pub wrong_tag: u64,
    /// Packets dropped for wrong ports.
    pub wrong_port: u64,
    /// Packets that belong to no association (before the handshake or after the end).
    pub out_of_the_blue: u64,
    /// Chunks that could not be parsed or broke a rule.
    pub malformed_chunks: u64,
    /// Chunks of unknown type.
    pub unknown_chunks: u64,
    /// COOKIE ECHOs whose signature did not verify.
    pub forged_cookies: u64,
    /// COOKIE ECHOs older than the cookie lifetime.
    pub stale_cookies: u64,
    /// DATA / I-DATA chunks received.
    pub data_chunks_received: u64,
    /// DATA chunks received more than once.
    pub duplicate_data: u64,
    /// DATA chunks dropped for lack of buffer.
    pub data_dropped_no_room: u64,
    /// Chunks retransmitted.
    pub retransmissions: u64,
    /// Fast retransmissions (three missing reports).
    pub fast_retransmits: u64,
    /// T3-rtx expiries.
    pub retransmission_timeouts: u64,
    /// Messages given up under a partial-reliability policy.
    pub abandoned_messages: u64,
    /// FORWARD-TSN / I-FORWARD-TSN chunks sent.
    pub forward_tsns_sent: u64,
    /// Duplicate TSNs the peer reported.
    pub duplicate_tsns_reported: u64,
    /// Control chunks dropped because the control queue was full.
    pub control_overflow: u64,
}

/// A snapshot of the association's state, for stats and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssociationState {
    /// No association yet (a server waits for INIT here).
    Closed,
    /// INIT sent.
    CookieWait,
    /// COOKIE ECHO sent.
    CookieEchoed,
    /// Data flows.
    Established,
    /// Shutdown requested; waiting for our data to be acknowledged.
    ShutdownPending,
    /// SHUTDOWN sent.
    ShutdownSent,
    /// SHUTDOWN received; finishing our data.
    ShutdownReceived,
    /// SHUTDOWN ACK sent.
    ShutdownAckSent,
    /// Ended; nothing more happens.
    Terminated,
}
