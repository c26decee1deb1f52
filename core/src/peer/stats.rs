//! The PeerConnection's counters: its own (what it dropped and why) and each layer's,
//! gathered when asked.

use super::PeerConnection;
use crate::dtls::{DtlsEndpoint, DtlsStats};
use crate::ice::IceStats;
use crate::srtp::SrtpStats;

/// Counters of what the PeerConnection dropped or handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams_received: u64,
    /// Datagrams dropped because no layer could use them.
    pub datagrams_dropped: u64,
    /// Events dropped because the application did not drain `poll_event`.
    pub events_dropped: u64,
    /// Remote candidates that did not parse or were over the limit.
    pub remote_candidates_dropped: u64,
    /// ICE server URLs the core did not use itself: host names it cannot resolve, TURN
    /// over TCP or TLS (the runtime opens those and calls `add_stun_server` /
    /// `add_turn_server`), URLs that do not parse, TURN servers past [`MAX_RELAYS`](super::MAX_RELAYS).
    pub ice_servers_skipped: u64,
    /// Datagrams for a relayed pair that the TURN client could not send (no allocation
    /// any more, too large); dropped.
    pub relay_send_failed: u64,
    /// Datagrams dropped because they arrived outside a relay under the relay policy.
    pub relay_policy_dropped: u64,
    /// DTLS datagrams dropped because ICE had not validated their source (no check with
    /// MESSAGE-INTEGRITY passed on that local and remote address): a stranger's
    /// ClientHello or records. Also counted in `datagrams_dropped`.
    pub dtls_unvalidated_dropped: u64,
    /// Each TURN client's counters, in the order the servers were added.
    pub turn: Vec<crate::turn::TurnStats>,
    /// The ICE agent's counters.
    pub ice: IceStats,
    /// The DTLS association's counters.
    pub dtls: DtlsStats,
    /// Inbound SRTP counters (authentication failures, replays...).
    pub srtp_in: SrtpStats,
    /// Outbound SRTP counters.
    pub srtp_out: SrtpStats,
    /// RTP packets delivered as events.
    pub rtp_received: u64,
    /// RTP packets that matched no transceiver.
    pub rtp_unmatched: u64,
    /// RTP packets sent.
    pub rtp_sent: u64,
    /// NACK, retransmission, RTX and transport-wide feedback counters.
    pub loss_recovery: crate::media::recovery::LossRecoveryStats,
}

impl PeerConnection {
    /// Counters.
    pub fn stats(&self) -> PeerStats {
        let mut s = self.stats.clone();
        s.ice = self.ice.stats();
        s.turn = self.relays.stats();
        s.dtls = self
            .dtls
            .as_ref()
            .map(DtlsEndpoint::stats)
            .unwrap_or_default();
        (s.srtp_in, s.srtp_out) = self.media.srtp_stats();
        let media = self.media.stats();
        s.rtp_received = media.rtp_received;
        s.rtp_unmatched = media.rtp_unmatched;
        s.rtp_sent = media.rtp_sent;
        s.loss_recovery = self.media.loss_recovery_stats();
        s.events_dropped += media.events_dropped;
        s
    }
}
