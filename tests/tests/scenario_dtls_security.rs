//! DTLS and SRTP rejections at the PeerConnection level: a remote description whose
//! fingerprint does not match the peer's certificate makes the connection fail with
//! `DtlsFailed(FingerprintMismatch)` and `connectionState` `failed`, and no media is
//! accepted; a replayed SRTP packet is dropped and counted.

use std::time::Duration;

use bytes::Bytes;
use sansrtc::dtls::DtlsError;
use sansrtc::media::RtpPacket;
use sansrtc::sdp::{Sdp, SessionDescription};
use sansrtc::{ConnectionState, Event, OfferOptions};
use sansrtc_tests::{opus_packet, Network};

#[test]
fn fingerprint_mismatch_fails_the_connection() {
    let mut net = Network::new(90);
    let (a, b) = net.two_peers(
        90,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    let now = net.now();
    let offer = net
        .peer(a)
        .create_offer(OfferOptions::default())
        .expect("offer");
    net.peer(a)
        .set_local_description(now, offer.clone())
        .expect("local");
    // A man in the middle swaps the fingerprint: bob expects another certificate from alice.
    let mut sdp = Sdp::parse(&offer.sdp).expect("sdp");
    for m in &mut sdp.media {
        for f in &mut m.fingerprints {
            f.value = vec![0xAB; 32];
        }
    }
    net.peer(b)
        .set_remote_description(now, SessionDescription::offer(sdp.to_string()))
        .expect("remote");
    let answer = net.peer(b).create_answer().expect("answer");
    net.peer(b)
        .set_local_description(now, answer.clone())
        .expect("local");
    net.peer(a)
        .set_remote_description(now, answer)
        .expect("remote");
    net.trickle(a, b, Duration::from_millis(10));
    net.trickle(b, a, Duration::from_millis(10));
    // Candidates were gathered before trickling was wired: send them through the descriptions.
    for (from, to) in [(a, b), (b, a)] {
        let cands: Vec<_> = net
            .events_of(from)
            .filter_map(|e| match e {
                Event::IceCandidate(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let now = net.now();
        for c in cands {
            let _ = net.peer(to).add_ice_candidate(now, c);
        }
    }
    let failed = net.run_until(Duration::from_secs(20), |n| {
        n.peer(b).connection_state() == ConnectionState::Failed
    });
    assert!(failed, "{}", net.timeline().join("\n"));
    assert!(net
        .events_of(b)
        .any(|e| matches!(e, Event::DtlsFailed(DtlsError::FingerprintMismatch))));
    assert!(net.peer(b).srtp_profile().is_none(), "no keys exported");
    // Alice learns from the alert and fails too; nothing can be sent.
    assert!(
        net.run_until(Duration::from_secs(5), |n| n.peer(a).connection_state()
            == ConnectionState::Failed)
    );
    let t = net.peer(a).transceivers()[0].id;
    let packet = RtpPacket {
        payload_type: 111,
        sequence_number: 1,
        timestamp: 1,
        marker: false,
        ssrc: 0,
        payload: Bytes::from_static(b"x"),
    };
    assert!(net.peer(a).send_rtp(t, &packet).is_err());
}

#[test]
fn replayed_srtp_is_dropped_and_counted() {
    let mut net = Network::new(91);
    net.conditions.duplicate = 1.0; // every datagram arrives twice
    let (a, b) = net.two_peers(
        91,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(10));
    net.trickle(b, a, Duration::from_millis(10));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    let t = net.peer(a).transceivers()[0].id;
    for seq in 0..20u16 {
        net.peer(a).send_rtp(t, &opus_packet(seq)).expect("send");
        net.run_for(Duration::from_millis(20));
    }
    let delivered = net
        .events_of(b)
        .filter(|e| matches!(e, Event::Rtp { .. }))
        .count();
    assert_eq!(delivered, 20, "each packet delivered once");
    assert!(net.stats.duplicated > 0, "{:?}", net.stats);
    assert_eq!(
        net.peer(b).stats().srtp_in.replays,
        20,
        "each duplicate dropped as a replay: {:?}",
        net.stats
    );
}
