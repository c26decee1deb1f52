//! Renegotiation, as the seed's "modifying the session": after connecting, bob adds a track
//! and gets negotiation-needed, offers, alice answers; the m-line count grows, the old
//! m-lines keep their mids, the connection stays up throughout. Then a transceiver is
//! stopped (its m-line goes to port 0) and a new one recycles the slot. Neither side ever
//! leaves `connected` and no signaling message is rejected.

use std::time::Duration;

use sansrtc::peer::ConnectionState;
use sansrtc::sdp::Sdp;
use sansrtc::{Event, MediaKind, SignalingState};
use sansrtc_tests::Network;

fn mids(sdp: &str) -> Vec<(Option<String>, u16)> {
    Sdp::parse(sdp)
        .expect("sdp")
        .media
        .iter()
        .map(|m| (m.mid.clone(), m.port))
        .collect()
}

#[test]
fn add_then_stop_and_recycle() {
    let mut net = Network::new(30);
    let (a, b) = net.two_peers(
        30,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a, b)));
    assert_eq!(
        mids(&net.peer(b).local_description().expect("b").sdp).len(),
        2
    );

    // Bob's add_track reuses the recvonly transceivers alice's offer created (W3C addTrack),
    // which is only a direction change; a second video track needs a new m-line.
    let reused_video = net
        .peer(b)
        .add_track(MediaKind::Video, vec!["bob".into()])
        .expect("video");
    let reused_audio = net
        .peer(b)
        .add_track(MediaKind::Audio, vec!["bob".into()])
        .expect("audio");
    assert_eq!(net.peer(b).transceivers().len(), 2, "both reused");
    let added = net
        .peer(b)
        .add_track(MediaKind::Video, vec!["bob".into()])
        .expect("video 2");
    assert!(![reused_video, reused_audio].contains(&added));
    net.run_for(Duration::from_millis(1));
    assert!(net
        .events_of(b)
        .any(|e| matches!(e, Event::NegotiationNeeded)));
    net.negotiate(b, a).expect("bob offers");
    let m = mids(&net.peer(a).local_description().expect("a").sdp);
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[0].0.as_deref(), Some("0"));
    assert_eq!(m[1].0.as_deref(), Some("1"));
    assert!(net.connected(a, b));
    assert_eq!(
        net.peer(a).transceivers().len(),
        3,
        "alice got a transceiver for bob's new track"
    );
    assert_eq!(net.peer(a).signaling_state(), SignalingState::Stable);

    let sending: Vec<_> = net
        .peer(b)
        .transceivers()
        .iter()
        .map(|t| t.current_direction)
        .collect();
    assert!(
        sending.iter().all(|d| d.is_some_and(|d| d.sends())),
        "{sending:?}"
    );

    // Stop bob's second video: rejected (port 0) after the next exchange.
    net.peer(b).stop_transceiver(added).expect("stop");
    net.negotiate(b, a).expect("bob offers again");
    let m = mids(&net.peer(b).local_description().expect("b").sdp);
    assert_eq!(m[2].1, 0, "stopped m-line rejected: {m:?}");
    assert!(net.peer(b).transceiver(added).expect("t").stopped);

    // A new track recycles the rejected slot with a new mid.
    net.peer(b)
        .add_track(MediaKind::Video, vec!["bob".into()])
        .expect("video 2");
    net.negotiate(b, a).expect("recycle");
    let m = mids(&net.peer(b).local_description().expect("b").sdp);
    assert_eq!(m.len(), 3, "recycled, not appended: {m:?}");
    assert_ne!(m[2].0.as_deref(), Some("2"));
    assert_ne!(m[2].1, 0);
    net.run_for(Duration::from_secs(5));
    assert!(net.connected(a, b));
    for n in [a, b] {
        let states = net.connection_states(n);
        let after_connect: Vec<_> = states
            .iter()
            .skip_while(|(_, s)| *s != ConnectionState::Connected)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(after_connect, [ConnectionState::Connected], "{states:?}");
    }
    assert!(
        net.signaling_errors().is_empty(),
        "{:?}",
        net.signaling_errors()
    );
}
