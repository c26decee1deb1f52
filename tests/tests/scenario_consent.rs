//! Consent freshness (RFC 7675) on a connected pair:
//! - the link is cut (both ways, at a scheduled virtual time): each side goes
//!   `disconnected` within 10 s and `failed` when consent expires (30 s after the last
//!   response, so 24-40 s after the cut); failed is final even when the link comes back;
//! - a brief cut (3 s) never fails, and both sides are `connected` again afterwards
//!   without renegotiation, and stay so for a minute;
//! - a longer cut goes `disconnected`, then back to `connected` when the link returns;
//! - a one-way cut (only alice -> bob) loses consent on both sides: alice's requests
//!   and her responses to bob's requests never arrive.

use std::time::Duration;

use sansrtc::peer::{ConnectionState, IceConnectionState};
use sansrtc_tests::{Network, NodeId};

fn connected_pair(seed: u64) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(seed);
    net.conditions.latency = Duration::from_millis(20);
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

fn first_time(states: &[(Duration, ConnectionState)], state: ConnectionState) -> Option<Duration> {
    states.iter().find(|(_, s)| *s == state).map(|(t, _)| *t)
}

#[test]
fn lost_consent_disconnects_then_fails() {
    let (mut net, a, b) = connected_pair(10);
    net.run_for(Duration::from_secs(2));
    let cut = net.elapsed() + Duration::from_millis(500);
    net.cut_at(cut, a, b);
    assert!(
        net.run_until(Duration::from_secs(45), |n| {
            n.peer(a).ice_connection_state() == IceConnectionState::Failed
                && n.peer(b).ice_connection_state() == IceConnectionState::Failed
        }),
        "{}",
        net.timeline_text()
    );
    for n in [a, b] {
        let states = net.connection_states(n);
        let disconnected =
            first_time(&states, ConnectionState::Disconnected).expect("disconnected");
        let failed = first_time(&states, ConnectionState::Failed).expect("failed");
        assert!(
            disconnected > cut && disconnected - cut <= Duration::from_secs(10),
            "{states:?}"
        );
        // Consent expires 30 s after the last response, which came at most one consent
        // interval (5 s, +-20 %) before the cut.
        assert!(
            failed - cut >= Duration::from_secs(24) && failed - cut <= Duration::from_secs(40),
            "failed {:?} after the cut: {states:?}",
            failed - cut
        );
        let order: Vec<ConnectionState> = states.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            order,
            [
                ConnectionState::Connecting,
                ConnectionState::Connected,
                ConnectionState::Disconnected,
                ConnectionState::Failed
            ]
        );
    }
    // Failed is final: restoring the link does not revive it without an ICE restart.
    net.set_cut(a, b, false);
    net.run_for(Duration::from_secs(10));
    assert_eq!(
        net.peer(a).ice_connection_state(),
        IceConnectionState::Failed
    );
    assert_eq!(net.peer(b).connection_state(), ConnectionState::Failed);
}

#[test]
fn three_second_cut_recovers() {
    for seed in 11..16 {
        let (mut net, a, b) = connected_pair(seed);
        net.run_for(Duration::from_secs(5));
        let cut = net.elapsed();
        net.cut_at(cut, a, b);
        net.restore_at(cut + Duration::from_secs(3), a, b);
        net.run_for(Duration::from_secs(3));
        assert!(
            net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
            "seed {seed}:\n{}",
            net.timeline_text()
        );
        net.run_for(Duration::from_secs(60));
        assert!(net.connected(a, b), "seed {seed}:\n{}", net.timeline_text());
        assert!(net.stats.cut > 0, "seed {seed}: the cut dropped nothing");
        for n in [a, b] {
            let states = net.connection_states(n);
            assert!(
                first_time(&states, ConnectionState::Failed).is_none(),
                "seed {seed}: {states:?}"
            );
        }
    }
}

#[test]
fn longer_cut_disconnects_and_recovers() {
    let (mut net, a, b) = connected_pair(17);
    net.run_for(Duration::from_secs(5));
    net.set_cut(a, b, true);
    assert!(net.run_until(Duration::from_secs(15), |n| {
        n.peer(a).ice_connection_state() == IceConnectionState::Disconnected
    }));
    net.run_for(Duration::from_secs(1));
    net.set_cut(a, b, false);
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
    let states = net.connection_states(a);
    assert!(first_time(&states, ConnectionState::Disconnected).is_some());
    assert!(first_time(&states, ConnectionState::Failed).is_none());
    assert_eq!(states.last().map(|s| s.1), Some(ConnectionState::Connected));
}

#[test]
fn one_way_cut_loses_consent_on_both_sides() {
    let (mut net, a, b) = connected_pair(18);
    net.run_for(Duration::from_secs(2));
    net.set_cut_one_way(a, b, true);
    assert!(
        net.run_until(Duration::from_secs(45), |n| {
            n.peer(a).ice_connection_state() == IceConnectionState::Failed
                && n.peer(b).ice_connection_state() == IceConnectionState::Failed
        }),
        "{}",
        net.timeline_text()
    );
}
