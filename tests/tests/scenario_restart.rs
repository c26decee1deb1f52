//! ICE restart: after connecting, `restart_ice()` raises negotiation-needed; the next offer
//! carries new credentials, the answer does too, and the peers connect again. Also after
//! consent was lost (the way an application recovers from `failed`).

use std::time::Duration;

use sansrtc::peer::IceConnectionState;
use sansrtc::sdp::Sdp;
use sansrtc::Event;
use sansrtc_tests::Network;

fn ufrag(sdp: &str) -> String {
    let s = Sdp::parse(sdp).expect("sdp");
    s.ice_ufrag_of(&s.media[0]).expect("ufrag").to_string()
}

#[test]
fn restart_reconnects_with_new_credentials() {
    let mut net = Network::new(20);
    let (a, b) = net.two_peers(
        20,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a, b)));
    let old_a = ufrag(&net.peer(a).local_description().expect("a").sdp);
    let old_b = ufrag(&net.peer(b).local_description().expect("b").sdp);
    // Lose consent first, so the restart is what brings the connection back.
    net.set_cut(a, b, true);
    assert!(net.run_until(Duration::from_secs(40), |n| n
        .peer(a)
        .ice_connection_state()
        == IceConnectionState::Failed));
    net.set_cut(a, b, false);
    let before = net
        .events_of(a)
        .filter(|e| matches!(e, Event::NegotiationNeeded))
        .count();
    net.peer(a).restart_ice();
    net.run_for(Duration::from_millis(1));
    let after = net
        .events_of(a)
        .filter(|e| matches!(e, Event::NegotiationNeeded))
        .count();
    assert_eq!(after, before + 1, "restart_ice raises negotiationneeded");
    net.negotiate(a, b).expect("renegotiate");
    assert_ne!(
        ufrag(&net.peer(a).local_description().expect("a").sdp),
        old_a
    );
    assert_ne!(
        ufrag(&net.peer(b).local_description().expect("b").sdp),
        old_b
    );
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
        "{}",
        net.timeline().join("\n")
    );
}
