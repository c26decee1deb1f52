//! Server-reflexive gathering: alice sits behind a one-to-one NAT and has a STUN server in
//! her configuration (`stun:IP:PORT`); she gathers a srflx candidate with her public address
//! and related address, and the peers connect through the NAT.

use std::time::Duration;

use sansrtc::{Event, IceServer};
use sansrtc_tests::{seeded_config, Network, StunServer};

#[test]
fn srflx_candidate_is_gathered_and_used() {
    let mut net = Network::new(5);
    net.log_stun = true;
    let stun = "198.51.100.1:3478".parse().expect("addr");
    let server = net.add_node("stun", StunServer::default(), &[stun]);
    let mut alice = seeded_config(5);
    alice.ice_servers = vec![IceServer::url(format!("stun:{stun}"))];
    let inside = "10.0.0.1:5000".parse().expect("addr");
    let public = "203.0.113.1:40000".parse().expect("addr");
    let (a, b) = net.two_peers_with(
        alice,
        seeded_config(6),
        &[inside],
        &["198.51.100.2:6000".parse().expect("addr")],
    );
    net.add_nat(inside, public);
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
        "{}",
        net.timeline().join("\n")
    );
    let srflx: Vec<String> = net
        .events_of(a)
        .filter_map(|e| match e {
            Event::IceCandidate(c) if c.candidate.contains("typ srflx") => {
                Some(c.candidate.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(srflx.len(), 1, "{srflx:?}");
    assert!(
        srflx[0].contains("203.0.113.1 40000 typ srflx raddr 10.0.0.1 rport 5000"),
        "{}",
        srflx[0]
    );
    let pair = net.peer(b).selected_pair().expect("pair");
    assert_eq!(pair.remote, public);
    let pair = net.peer(a).selected_pair().expect("pair");
    assert_eq!(pair.local, inside, "alice sends from her own socket");
    assert!(net
        .timeline()
        .iter()
        .any(|l| l.contains("alice  binding request 10.0.0.1:5000 -> 198.51.100.1:3478")));
    assert!(net.timeline().iter().any(|l| l.contains("stun   response")));
    let answered = net.node_mut::<StunServer>(server).expect("server").answered;
    assert!(answered >= 1);
}
