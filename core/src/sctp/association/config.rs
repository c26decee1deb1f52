//! Configuration of an association and per-message reliability.

use std::time::Duration;

/// Which side sends INIT. Over WebRTC the DTLS client is the SCTP client; a server
/// that receives an INIT first, or both sending INIT at once, also works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SctpRole {
    /// Sends INIT on [`Association::connect`](super::Association::connect).
    Client,
    /// Waits for INIT.
    Server,
}

/// Configuration of an association. `Default` gives the WebRTC profile.
#[derive(Debug, Clone)]
pub struct SctpConfig {
    /// Our SCTP port (5000 over WebRTC unless the SDP says otherwise).
    pub local_port: u16,
    /// The peer's SCTP port (its `a=sctp-port`).
    pub remote_port: u16,
    /// Largest SCTP packet we send, common header included.
    pub mtu: usize,
    /// Largest message we accept or send.
    pub max_message_size: usize,
    /// Receive buffer: bytes held for reassembly and for the application; the window we
    /// advertise is what is left of it.
    pub receive_buffer: usize,
    /// Most bytes queued or in flight for all streams; [`Association::send`](super::Association::send) fails beyond.
    pub send_buffer: usize,
    /// RTO before any measurement (RFC 9260: 1 s).
    pub rto_initial: Duration,
    /// Lower bound of the RTO (RFC 9260: 1 s; WebRTC stacks often use less).
    pub rto_min: Duration,
    /// Upper bound of the RTO (RFC 9260: 60 s).
    pub rto_max: Duration,
    /// INIT / COOKIE ECHO attempts before giving up.
    pub max_init_retransmits: u32,
    /// Consecutive timeouts before the association is declared dead.
    pub max_retransmits: u32,
    /// Idle time before a HEARTBEAT.
    pub heartbeat_interval: Duration,
    /// Longest wait before acknowledging data.
    pub delayed_ack: Duration,
    /// How long a state cookie stays valid.
    pub cookie_lifetime: Duration,
    /// Streams we ask for in each direction.
    pub streams: u16,
    /// Offer I-DATA (RFC 8260) so large messages on one stream do not hold up others.
    pub interleaving: bool,
    /// With I-DATA, the most bytes of fragmented messages started and not yet sent to
    /// their end (one message is always allowed); the others wait to start. `None`: half
    /// the window the peer advertised in the handshake (its receive buffer), so the peer
    /// can always hold whole every message it is reassembling, and finish one. A peer
    /// given more than its buffer can hold of interleaved messages cannot finish any.
    pub interleaved_message_budget: Option<usize>,
}

impl Default for SctpConfig {
    fn default() -> Self {
        SctpConfig {
            local_port: 5000,
            remote_port: 5000,
            mtu: 1200,
            max_message_size: 262_144,
            receive_buffer: 1024 * 1024,
            send_buffer: 16 * 1024 * 1024,
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_secs(1),
            rto_max: Duration::from_secs(60),
            max_init_retransmits: 8,
            max_retransmits: 10,
            heartbeat_interval: Duration::from_secs(30),
            delayed_ack: Duration::from_millis(200),
            cookie_lifetime: Duration::from_secs(60),
            streams: u16::MAX,
            interleaving: true,
            interleaved_message_budget: None,
        }
    }
}

/// Per-message reliability (RFC 3758 PR-SCTP policies as WebRTC uses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reliability {
    /// Retransmit until acknowledged.
    #[default]
    Reliable,
    /// Give up after this many retransmissions.
    MaxRetransmits(u16),
    /// Give up once this long has passed since the message was queued.
    MaxLifetime(Duration),
}
