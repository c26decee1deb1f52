//! Two cores negotiate by JSON (offer/answer, trickled candidates over a 30 ms signaling
//! channel) and connect over a virtual network with 20-40 ms one-way latency and 0 %,
//! 10 % and 30 % loss, across ten seeds each: both reach ICE `connected` and connection
//! state `connected` within a bounded virtual time (1 s, 10 s, 30 s), the selected pairs
//! mirror each other, the network really lost datagrams, and no signaling message was
//! rejected.

use std::net::SocketAddr;
use std::time::Duration;

use sansrtc::peer::{ConnectionState, Event};
use sansrtc_tests::Network;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn connect_with_loss(loss: f64, seed: u64, limit: Duration) -> Network {
    let mut net = Network::new(seed);
    net.conditions.loss = loss;
    net.conditions.latency = Duration::from_millis(20);
    net.conditions.jitter = Duration::from_millis(20);
    let (a, b) = net.two_peers(seed, &[addr("10.0.0.1:5000")], &[addr("10.0.0.2:6000")]);
    net.trickle(a, b, Duration::from_millis(30));
    net.trickle(b, a, Duration::from_millis(30));
    net.negotiate(a, b).expect("negotiate");
    assert!(
        net.run_until(limit, |n| n.connected(a, b)),
        "seed {seed}: not connected with {loss} loss after {limit:?}:\n{}",
        net.timeline_text()
    );
    let pa = net.peer(a).selected_pair().expect("pair a");
    let pb = net.peer(b).selected_pair().expect("pair b");
    assert_eq!((pa.local, pa.remote), (pb.remote, pb.local));
    assert_eq!(pa.local, addr("10.0.0.1:5000"));
    for n in [a, b] {
        assert!(net
            .events_of(n)
            .any(|e| *e == Event::ConnectionStateChange(ConnectionState::Connected)));
    }
    assert!(
        net.signaling_errors().is_empty(),
        "{:?}",
        net.signaling_errors()
    );
    net
}

#[test]
fn connects_without_loss() {
    let net = connect_with_loss(0.0, 1, Duration::from_secs(1));
    assert_eq!(net.stats.lost, 0);
}

#[test]
fn connects_with_ten_percent_loss() {
    let mut lost = 0;
    for seed in 10..20 {
        lost += connect_with_loss(0.10, seed, Duration::from_secs(10))
            .stats
            .lost;
    }
    assert!(lost > 0, "the network never lost anything");
}

#[test]
fn connects_with_thirty_percent_loss() {
    let mut lost = 0;
    for seed in 30..40 {
        lost += connect_with_loss(0.30, seed, Duration::from_secs(30))
            .stats
            .lost;
    }
    assert!(lost > 0, "the network never lost anything");
}
