//! The deterministic simulation harness shared by scenario tests and the `simulation` example.
//!
//! A [`Network`] holds nodes (sansrtc `PeerConnection`s, or any [`Node`] such as the
//! [`StunServer`] model or a raw `IceAgent`) that own IPv4 and IPv6 addresses, a virtual
//! clock that jumps to the earliest deadline or delivery, and links with seeded latency,
//! jitter, loss, duplication, reordering and an MTU, per direction or global, which can be
//! cut and restored now or at a scheduled virtual time. Signaling between peers goes
//! through JSON strings exactly as in the seed tutorial, trickled or all-at-once, with a
//! delay. Everything is driven by one seed: the same seed and script give the same event
//! log and timeline, timestamps included. No real time passes and no socket is opened.
//!
//! ```no_run
//! use std::time::Duration;
//! use sansrtc_tests::Network;
//!
//! let mut net = Network::new(7);
//! net.conditions.loss = 0.1;
//! let (a, b) = net.two_peers(7, &["10.0.0.1:5000".parse().unwrap()], &["10.0.0.2:6000".parse().unwrap()]);
//! net.trickle(a, b, Duration::from_millis(30));
//! net.trickle(b, a, Duration::from_millis(30));
//! net.negotiate(a, b).unwrap();
//! assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
//! println!("{}", net.timeline_text());
//! ```

pub mod browser;
pub mod coturn;
pub mod endpoint_setup;
pub mod link;
pub mod network;
pub mod node;
pub mod signaling;
pub mod timeline;
pub mod turn;

#[cfg(test)]
mod harness_tests;

pub use link::{LinkConditions, NetStats};
pub use network::{Captured, Interceptor, LoggedEvent, Network, NodeId, Verdict};
pub use node::{Node, Probe, Received, StunServer};
pub use signaling::SentDescription;
pub use timeline::{describe, describe_datagram};
pub use turn::TurnNode;

/// A PeerConnection configuration with a fixed seed, for deterministic tests.
pub fn seeded_config(seed: u64) -> sansrtc::Config {
    sansrtc::Config {
        rng_seed: Some(seed),
        ..Default::default()
    }
}

/// A small Opus RTP packet (payload type 111, 20 ms timestamps) with sequence number
/// `seq`, for tests that only need media to flow; the core sets the SSRC when sending.
pub fn opus_packet(seq: u16) -> sansrtc::media::RtpPacket {
    sansrtc::media::RtpPacket {
        payload_type: 111,
        sequence_number: seq,
        timestamp: u32::from(seq) * 960,
        marker: false,
        ssrc: 0,
        payload: bytes::Bytes::from_static(b"opus"),
    }
}
