//! Trickled candidates versus all-at-once. With trickle the offer and answer travel as
//! created, with no candidates, and every candidate follows as its own JSON
//! `RTCIceCandidateInit` over a 200 ms signaling channel (the remote description then
//! grows them). All-at-once waits until gathering is complete and sends
//! `local_description()`, which lists every candidate and `a=end-of-candidates`, and no
//! candidate message is sent. Both connect.

use std::time::Duration;

use sansrtc::sdp::Sdp;
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
        net.timeline_text()
    );
    let sent = net.sent_descriptions();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|d| d.candidate_count() == 0), "{sent:?}");
    // Two descriptions plus, each way, one host candidate and end-of-candidates.
    assert!(net.stats.signaling_messages >= 6, "{:?}", net.stats);
    // The candidates went through signaling: bob's remote description grew them.
    let remote = net.peer(b).remote_description().expect("remote");
    let remote = Sdp::parse(&remote.sdp).expect("sdp");
    assert_eq!(remote.media[0].candidates.len(), 1);
    assert!(
        net.signaling_errors().is_empty(),
        "{:?}",
        net.signaling_errors()
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
    net.signaling_delay(a, b, Duration::from_millis(200));
    net.signaling_delay(b, a, Duration::from_millis(200));
    net.negotiate(a, b).expect("negotiate");
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
    assert_eq!(net.stats.signaling_messages, 2, "only the two descriptions");
    for sent in net.sent_descriptions() {
        let sdp = Sdp::parse(&sent.description.sdp).expect("sdp");
        assert!(
            sdp.media[0].end_of_candidates && sdp.media[0].candidates.len() == 1,
            "{}",
            sent.description.sdp
        );
    }
    assert!(
        net.signaling_errors().is_empty(),
        "{:?}",
        net.signaling_errors()
    );
}
