//! Hostile networks: duplication (30 %), reordering (jitter far above the packet spacing
//! and 20 % of datagrams held back 150 ms) and a small MTU (576) still connect and stay
//! connected (the core is told the 500-byte path MTU so DTLS fragments its flights);
//! strongly asymmetric loss (60 % one way, none the other) still connects; an
//! MTU below the size of a check stops everything and ICE fails cleanly.

use std::time::Duration;

use sansrtc::peer::IceConnectionState;
use sansrtc_tests::{LinkConditions, Network};

#[test]
fn duplication_reordering_and_small_mtu() {
    for seed in 0..10 {
        let mut net = Network::new(seed);
        net.conditions.duplicate = 0.3;
        net.conditions.jitter = Duration::from_millis(300);
        net.conditions.reorder = 0.2;
        net.conditions.reorder_delay = Duration::from_millis(150);
        net.conditions.mtu = 576;
        // The application tells the core the path MTU; DTLS fragments its flights to fit.
        let mut ca = sansrtc_tests::seeded_config(seed);
        ca.mtu = 500;
        let mut cb = sansrtc_tests::seeded_config(seed + 1);
        cb.mtu = 500;
        let (a, b) = net.two_peers_with(
            ca,
            cb,
            &["10.0.0.1:5000".parse().expect("addr")],
            &["10.0.0.2:6000".parse().expect("addr")],
        );
        net.trickle(a, b, Duration::from_millis(20));
        net.trickle(b, a, Duration::from_millis(20));
        net.negotiate(a, b).expect("negotiate");
        assert!(
            net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
            "seed {seed}:\n{}",
            net.timeline_text()
        );
        net.run_for(Duration::from_secs(30));
        assert!(net.connected(a, b), "seed {seed}:\n{}", net.timeline_text());
        assert!(
            net.stats.duplicated > 0 && net.stats.reordered > 0,
            "{:?}",
            net.stats
        );
    }
}

#[test]
fn asymmetric_loss_connects() {
    for seed in 50..60 {
        let mut net = Network::new(seed);
        net.log_stun = true;
        let (a, b) = net.two_peers(
            seed,
            &["10.0.0.1:5000".parse().expect("addr")],
            &["10.0.0.2:6000".parse().expect("addr")],
        );
        net.set_link(
            a,
            b,
            LinkConditions {
                loss: 0.6,
                ..LinkConditions::with_latency(Duration::from_millis(30))
            },
        );
        net.set_link(
            b,
            a,
            LinkConditions::with_latency(Duration::from_millis(30)),
        );
        net.trickle(a, b, Duration::from_millis(20));
        net.trickle(b, a, Duration::from_millis(20));
        net.negotiate(a, b).expect("negotiate");
        // 60 s: at 60% loss, alice's last DTLS flight (one datagram, retransmitted at
        // most every 3 s) can be lost seven times in a row (0.6^7 = 2.8%).
        assert!(
            net.run_until(Duration::from_secs(60), |n| n.connected(a, b)),
            "seed {seed}:\n{}",
            net.timeline_text()
        );
        assert!(net.stats.lost > 0);
    }
}

#[test]
fn mtu_below_a_check_fails() {
    let mut net = Network::new(7);
    net.conditions.mtu = 60;
    let (a, b) = net.two_peers(
        7,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(60), |n| {
        n.peer(a).ice_connection_state() == IceConnectionState::Failed
            && n.peer(b).ice_connection_state() == IceConnectionState::Failed
    }));
    assert!(net.stats.too_big > 0);
    assert_eq!(net.stats.delivered, 0);
}
