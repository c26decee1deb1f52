//! Consent freshness (RFC 7675): a link cut after connecting leads to `disconnected` within
//! seconds and `failed` when consent expires (30 s); a brief cut (3 s) goes to
//! `disconnected` and back to `connected` without renegotiation.

use std::time::Duration;

use sansrtc::peer::{ConnectionState, IceConnectionState};
use sansrtc_tests::Network;

fn connected_pair(seed: u64) -> (Network, sansrtc_tests::NodeId, sansrtc_tests::NodeId) {
    let mut net = Network::new(seed);
    let (a, b) = net.two_peers(
        seed,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a, b)));
    (net, a, b)
}

#[test]
fn lost_consent_fails() {
    let (mut net, a, b) = connected_pair(10);
    net.set_cut(a, b, true);
    let cut_at = net.elapsed();
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.peer(a).connection_state()
            == ConnectionState::Disconnected)
    );
    assert!(net.elapsed() - cut_at <= Duration::from_secs(8));
    assert!(net.run_until(Duration::from_secs(40), |n| {
        n.peer(a).ice_connection_state() == IceConnectionState::Failed
            && n.peer(b).ice_connection_state() == IceConnectionState::Failed
    }));
    let after = net.elapsed() - cut_at;
    assert!(
        after >= Duration::from_secs(28) && after <= Duration::from_secs(36),
        "failed after {after:?}"
    );
    assert_eq!(net.peer(a).connection_state(), ConnectionState::Failed);
    // Failed is final: restoring the link does not revive it without an ICE restart.
    net.set_cut(a, b, false);
    net.run_for(Duration::from_secs(10));
    assert_eq!(
        net.peer(a).ice_connection_state(),
        IceConnectionState::Failed
    );
}

#[test]
fn brief_loss_recovers() {
    let (mut net, a, b) = connected_pair(11);
    net.run_for(Duration::from_secs(5));
    net.set_cut(a, b, true);
    assert!(net.run_until(Duration::from_secs(10), |n| n
        .peer(a)
        .ice_connection_state()
        == IceConnectionState::Disconnected));
    net.run_for(Duration::from_secs(1));
    net.set_cut(a, b, false);
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
        "{}",
        net.timeline().join("\n")
    );
    net.run_for(Duration::from_secs(60));
    assert!(net.connected(a, b));
}
