//! Two cores negotiate by JSON (offer/answer, trickled candidates) and connect over a
//! virtual network with 0 %, 10 % and 30 % loss; the selected pairs match each other.

use std::net::SocketAddr;
use std::time::Duration;

use sansrtc::{MediaKind, PeerConnection};
use sansrtc_tests::{seeded_config, Network};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn connect_with_loss(loss: f64, seed: u64, limit: Duration) -> Network {
    let mut net = Network::new(seed);
    net.conditions.loss = loss;
    net.conditions.latency = Duration::from_millis(20);
    net.conditions.jitter = Duration::from_millis(20);
    let mut pa = PeerConnection::new(seeded_config(seed), net.now()).expect("pc");
    pa.add_track(MediaKind::Audio, vec!["s".into()])
        .expect("audio");
    pa.add_track(MediaKind::Video, vec!["s".into()])
        .expect("video");
    let pb = PeerConnection::new(seeded_config(seed + 1), net.now()).expect("pc");
    let a = net.add_peer("alice", pa, &[addr("10.0.0.1:5000")]);
    let b = net.add_peer("bob", pb, &[addr("10.0.0.2:6000")]);
    net.trickle(a, b, Duration::from_millis(30));
    net.trickle(b, a, Duration::from_millis(30));
    net.negotiate(a, b).expect("negotiate");
    assert!(
        net.run_until(limit, |n| n.connected(a, b)),
        "not connected with {loss} loss after {limit:?}:\n{}",
        net.timeline().join("\n")
    );
    let pa = net.peer(a).selected_pair().expect("pair a");
    let pb = net.peer(b).selected_pair().expect("pair b");
    assert_eq!((pa.local, pa.remote), (pb.remote, pb.local));
    net
}

#[test]
fn connects_without_loss() {
    let net = connect_with_loss(0.0, 1, Duration::from_secs(3));
    assert!(
        net.elapsed() < Duration::from_secs(1),
        "took {:?}",
        net.elapsed()
    );
}

#[test]
fn connects_with_ten_percent_loss() {
    for seed in 10..20 {
        connect_with_loss(0.10, seed, Duration::from_secs(10));
    }
}

#[test]
fn connects_with_thirty_percent_loss() {
    for seed in 30..40 {
        connect_with_loss(0.30, seed, Duration::from_secs(30));
    }
}
