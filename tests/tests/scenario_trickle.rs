//! Trickled candidates versus all-at-once: with trickle the descriptions carry no
//! candidates and they arrive later as JSON `RTCIceCandidateInit`s (with a signaling
//! delay); all-at-once waits for gathering to complete and sends descriptions that contain
//! every candidate and `a=end-of-candidates`. Both connect.

use std::time::Duration;

use sansrtc::peer::IceGatheringState;
use sansrtc::sdp::Sdp;
use sansrtc::OfferOptions;
use sansrtc_tests::Network;

#[test]
fn trickle_connects() {
    let mut net = Network::new(1);
    let (a, b) = net.two_peers(
        1,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(200));
    net.trickle(b, a, Duration::from_millis(200));
    net.negotiate(a, b).expect("negotiate");
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(a, b)),
        "{}",
        net.timeline().join("\n")
    );
    // The candidates went through signaling: bob's remote description grew them.
    let remote = net.peer(b).remote_description().expect("remote");
    assert!(
        Sdp::parse(&remote.sdp).expect("sdp").media[0]
            .candidates
            .len()
            == 1
    );
}

#[test]
fn all_at_once_connects() {
    let mut net = Network::new(2);
    let (a, b) = net.two_peers(
        2,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    let now = net.now();
    let offer = net
        .peer(a)
        .create_offer(OfferOptions::default())
        .expect("offer");
    net.peer(a)
        .set_local_description(now, offer)
        .expect("local");
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.peer(a).ice_gathering_state()
            == IceGatheringState::Complete)
    );
    let full = net.peer(a).local_description().expect("local");
    let parsed = Sdp::parse(&full.sdp).expect("sdp");
    assert!(parsed.media[0].end_of_candidates && !parsed.media[0].candidates.is_empty());
    net.send_description(a, b).expect("offer to bob");
    let answer = net.peer(b).create_answer().expect("answer");
    let now = net.now();
    net.peer(b)
        .set_local_description(now, answer)
        .expect("local");
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.peer(b).ice_gathering_state()
            == IceGatheringState::Complete)
    );
    net.send_description(b, a).expect("answer to alice");
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(a, b)),
        "{}",
        net.timeline().join("\n")
    );
}
