//! Address families: peers with only IPv6 addresses connect over IPv6 and signal only
//! IPv6 candidates; a dual-stack peer and an IPv6-only peer connect over IPv6; a peer
//! with only IPv4 and a peer with only IPv6 cannot pair anything (the network cannot
//! carry a datagram between the families), never connect, and ICE fails on both sides
//! within 30 s once both signalled end of candidates.

use std::net::SocketAddr;
use std::time::Duration;

use sansrtc::peer::{Event, IceConnectionState};
use sansrtc_tests::{Network, NodeId};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn setup(seed: u64, alice: &[SocketAddr], bob: &[SocketAddr]) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(seed);
    let (a, b) = net.two_peers(seed, alice, bob);
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    (net, a, b)
}

fn candidate_addresses(net: &Network, n: NodeId) -> Vec<String> {
    net.events_of(n)
        .filter_map(|e| match e {
            Event::IceCandidate(c) if !c.is_end_of_candidates() => {
                c.candidate.split(' ').nth(4).map(str::to_string)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn ipv6_only_peers_connect() {
    let (mut net, a, b) = setup(
        3,
        &[addr("[2001:db8::1]:5000")],
        &[addr("[2001:db8::2]:6000")],
    );
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
    let pair = net.peer(a).selected_pair().expect("pair");
    assert_eq!(
        (pair.local, pair.remote),
        (addr("[2001:db8::1]:5000"), addr("[2001:db8::2]:6000"))
    );
    for n in [a, b] {
        let addrs = candidate_addresses(&net, n);
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.contains(':')),
            "{addrs:?}"
        );
    }
}

#[test]
fn dual_stack_and_ipv6_only_connect_over_ipv6() {
    let (mut net, a, b) = setup(
        5,
        &[addr("10.0.0.1:5000"), addr("[2001:db8::1]:5000")],
        &[addr("[2001:db8::2]:6000")],
    );
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
    let pair = net.peer(a).selected_pair().expect("pair");
    assert!(pair.local.is_ipv6() && pair.remote.is_ipv6(), "{pair:?}");
    assert_eq!(candidate_addresses(&net, a).len(), 2);
}

#[test]
fn mismatched_families_fail() {
    let (mut net, a, b) = setup(4, &[addr("10.0.0.1:5000")], &[addr("[2001:db8::2]:6000")]);
    let failed = net.run_until(Duration::from_secs(30), |n| {
        n.peer(a).ice_connection_state() == IceConnectionState::Failed
            && n.peer(b).ice_connection_state() == IceConnectionState::Failed
    });
    assert!(failed, "{}", net.timeline_text());
    assert_eq!(net.stats.delivered, 0);
    for n in [a, b] {
        let states = net.ice_states(n);
        assert!(
            !states
                .iter()
                .any(|(_, s)| *s == IceConnectionState::Connected),
            "{states:?}"
        );
    }
}
