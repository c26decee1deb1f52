//! ICE restart (RFC 8445 section 9, JSEP `restartIce()`):
//! - after consent was lost (the way an application recovers from `failed`):
//!   `restart_ice()` raises negotiation-needed, the next offer and its answer carry new
//!   ufrags, and the peers connect again;
//! - while connected: the same exchange keeps or regains the connection and never fails;
//! - the candidates each side trickles after a restart belong to the new generation and
//!   are accepted by the other side (none arrives before the description it belongs to).

use std::time::Duration;

use sansrtc::peer::{ConnectionState, IceConnectionState};
use sansrtc::sdp::Sdp;
use sansrtc::Event;
use sansrtc_tests::{Network, NodeId};

fn ufrag(sdp: &str) -> String {
    let s = Sdp::parse(sdp).expect("sdp");
    s.ice_ufrag_of(&s.media[0]).expect("ufrag").to_string()
}

fn connected_pair(seed: u64) -> (Network, NodeId, NodeId) {
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

fn negotiation_needed_count(net: &Network, n: NodeId) -> usize {
    net.events_of(n)
        .filter(|e| matches!(e, Event::NegotiationNeeded))
        .count()
}

/// Restart from `a`, check the new ufrags and that both connect again.
fn restart_and_reconnect(net: &mut Network, a: NodeId, b: NodeId) {
    let old_a = ufrag(&net.peer(a).local_description().expect("a").sdp);
    let old_b = ufrag(&net.peer(b).local_description().expect("b").sdp);
    let before = negotiation_needed_count(net, a);
    net.peer(a).restart_ice();
    net.run_for(Duration::from_millis(1));
    assert_eq!(
        negotiation_needed_count(net, a),
        before + 1,
        "restart_ice raises negotiationneeded"
    );
    if let Err(e) = net.negotiate(a, b) {
        panic!("renegotiate: {e}\n{}", net.timeline_text());
    }
    let sent = net.sent_descriptions();
    let (offer, answer) = (&sent[sent.len() - 2], &sent[sent.len() - 1]);
    assert_ne!(
        ufrag(&offer.description.sdp),
        old_a,
        "offer has a new ufrag"
    );
    assert_ne!(
        ufrag(&answer.description.sdp),
        old_b,
        "answer has a new ufrag"
    );
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
}

#[test]
fn restart_after_failure_reconnects_with_new_credentials() {
    let (mut net, a, b) = connected_pair(20);
    net.set_cut(a, b, true);
    assert!(net.run_until(Duration::from_secs(40), |n| n
        .peer(a)
        .ice_connection_state()
        == IceConnectionState::Failed));
    net.set_cut(a, b, false);
    restart_and_reconnect(&mut net, a, b);
}

#[test]
fn restart_while_connected_never_fails() {
    let (mut net, a, b) = connected_pair(21);
    net.run_for(Duration::from_secs(3));
    restart_and_reconnect(&mut net, a, b);
    net.run_for(Duration::from_secs(30));
    assert!(net.connected(a, b));
    for n in [a, b] {
        let states = net.connection_states(n);
        assert!(
            !states.iter().any(|(_, s)| *s == ConnectionState::Failed),
            "{states:?}"
        );
    }
}

#[test]
fn restart_candidates_belong_to_the_new_generation() {
    let (mut net, a, b) = connected_pair(22);
    restart_and_reconnect(&mut net, a, b);
    assert!(
        net.signaling_errors().is_empty(),
        "{:?}\n{}",
        net.signaling_errors(),
        net.timeline_text()
    );
    // Each side gathered exactly one new round: one host candidate and one end marker.
    for n in [a, b] {
        let ends = net
            .events_of(n)
            .filter(|e| matches!(e, Event::IceCandidate(c) if c.is_end_of_candidates()))
            .count();
        assert_eq!(ends, 2, "{} gathered {ends} rounds", net.name(n));
    }
}
