//! IPv6: peers with only IPv6 addresses connect; a peer with only IPv4 and a peer with only
//! IPv6 cannot pair anything, and ICE fails once both sides signalled end of candidates.

use std::time::Duration;

use sansrtc::peer::IceConnectionState;
use sansrtc_tests::Network;

#[test]
fn ipv6_only_peers_connect() {
    let mut net = Network::new(3);
    let (a, b) = net.two_peers(
        3,
        &["[2001:db8::1]:5000".parse().expect("addr")],
        &["[2001:db8::2]:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a, b)));
    let pair = net.peer(a).selected_pair().expect("pair");
    assert!(pair.local.is_ipv6() && pair.remote.is_ipv6());
}

#[test]
fn mismatched_families_fail() {
    let mut net = Network::new(4);
    let (a, b) = net.two_peers(
        4,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["[2001:db8::2]:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    let failed = net.run_until(Duration::from_secs(30), |n| {
        n.peer(a).ice_connection_state() == IceConnectionState::Failed
            && n.peer(b).ice_connection_state() == IceConnectionState::Failed
    });
    assert!(failed, "{}", net.timeline().join("\n"));
}
