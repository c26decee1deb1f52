//! Link conditions (latency, jitter, loss, duplication, reordering, MTU, a bottleneck
//! rate with a drop-tail queue) and the network's counters.

use std::time::Duration;

/// Conditions of one direction of a link (or of every link, as the network default).
///
/// Each datagram is, in this order: dropped if the link is cut; dropped if larger than
/// `mtu`; lost with probability `loss`; with a `rate_bps`, queued behind the datagrams
/// still being serialized at that rate (dropped when the queue already holds more than
/// `queue_limit` of transmission time); sent twice with probability `duplicate`; each
/// copy delayed by its queueing and transmission time, `latency`, a uniform `0..jitter`,
/// and `reorder_delay` with probability `reorder`. Jitter larger than the spacing of
/// datagrams reorders them too.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConditions {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra uniform random delay in `0..jitter`.
    pub jitter: Duration,
    /// Probability (0..=1) a datagram is lost.
    pub loss: f64,
    /// Probability (0..=1) a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability (0..=1) a datagram is held back by `reorder_delay`.
    pub reorder: f64,
    /// How long a reordered datagram is held back.
    pub reorder_delay: Duration,
    /// Datagrams larger than this many bytes are dropped.
    pub mtu: usize,
    /// A bottleneck: datagrams leave one after the other at this many bits per second
    /// (none: no rate limit, no queue).
    pub rate_bps: Option<u64>,
    /// The bottleneck's drop-tail queue: a datagram that would wait longer than this
    /// behind the ones queued before it is dropped.
    pub queue_limit: Duration,
}

impl Default for LinkConditions {
    fn default() -> Self {
        LinkConditions {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(50),
            mtu: 1500,
            rate_bps: None,
            queue_limit: Duration::from_millis(500),
        }
    }
}

impl LinkConditions {
    /// A perfect link with the given one-way latency.
    pub fn with_latency(latency: Duration) -> Self {
        LinkConditions {
            latency,
            ..Default::default()
        }
    }
}

/// Counters of what the network did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent by nodes.
    pub sent: u64,
    /// Datagrams delivered to a node.
    pub delivered: u64,
    /// Lost by the loss setting (or because too many were in flight).
    pub lost: u64,
    /// Duplicated.
    pub duplicated: u64,
    /// Held back by the reorder setting.
    pub reordered: u64,
    /// Dropped for exceeding the MTU.
    pub too_big: u64,
    /// Dropped because a link was cut.
    pub cut: u64,
    /// Dropped because a bottleneck's queue was full.
    pub queue_dropped: u64,
    /// Addressed to nobody.
    pub unroutable: u64,
    /// STUN datagrams sent (gathering, checks, responses, consent).
    pub stun: u64,
    /// Candidates and descriptions carried by signaling.
    pub signaling_messages: u64,
}
