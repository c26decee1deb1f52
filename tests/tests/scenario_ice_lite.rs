//! ICE-lite: a server-style PeerConnection with `Config::ice_lite` writes `a=ice-lite`,
//! never sends checks of its own, and connects with a full-ICE browser-style peer, which
//! takes the controlling role (whichever side offers).

use std::time::Duration;

use sansrtc::sdp::Sdp;
use sansrtc_tests::{seeded_config, Network};

fn lite_config(seed: u64) -> sansrtc::Config {
    let mut c = seeded_config(seed);
    c.ice_lite = true;
    c
}

#[test]
fn full_offerer_lite_answerer() {
    let mut net = Network::new(40);
    let (a, b) = net.two_peers_with(
        seeded_config(40),
        lite_config(41),
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(
        Sdp::parse(&net.peer(b).local_description().expect("answer").sdp)
            .expect("sdp")
            .ice_lite
    );
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(a, b)),
        "{}",
        net.timeline().join("\n")
    );
    assert_eq!(net.peer(b).stats().ice.checks_sent, 0, "lite never checks");
}

#[test]
fn lite_offerer_full_answerer() {
    let mut net = Network::new(42);
    let (a, b) = net.two_peers_with(
        lite_config(42),
        seeded_config(43),
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(a, b)),
        "{}",
        net.timeline().join("\n")
    );
    assert_eq!(net.peer(a).stats().ice.checks_sent, 0, "lite never checks");
    assert!(net.peer(b).stats().ice.checks_sent > 0);
}
