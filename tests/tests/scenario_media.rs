//! Media between two cores over the virtual network: after ICE and DTLS, alice's audio and
//! video packets (SRTP, AES-GCM by default) reach bob under 5 % loss with payloads intact
//! and bob gets a `Track` per transceiver; then alice adds a track after the connection is
//! up, renegotiates, and the new track's packets arrive on bob's new transceiver. A keyframe
//! request from bob reaches alice as `KeyframeRequest`; sender and receiver reports flow
//! and give alice the RTT; silence mutes and a packet unmutes a remote track; `close()` sends RTCP BYE and bob reports `TrackEnded`; its close_notify closes bob's DTLS.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sansrtc::dtls::DtlsState;
use sansrtc::media::RtpPacket;
use sansrtc::rtp::RtcpPacket;
use sansrtc::{Event, MediaKind, TransceiverId};
use sansrtc_tests::{Network, NodeId};

fn send_burst(net: &mut Network, a: NodeId, tracks: &[TransceiverId], count: u16, start_seq: u16) {
    for i in 0..count {
        for (k, t) in tracks.iter().enumerate() {
            let seq = start_seq.wrapping_add(i);
            let payload = Bytes::from(format!("track {k} packet {seq}").into_bytes());
            let packet = RtpPacket {
                payload_type: 0,
                sequence_number: seq,
                timestamp: u32::from(seq) * 960,
                marker: false,
                ssrc: 0,
                payload,
            };
            net.peer(a).send_rtp(*t, &packet).expect("send_rtp");
        }
        net.run_for(Duration::from_millis(20));
    }
}

fn received(net: &Network, b: NodeId) -> HashMap<TransceiverId, Vec<RtpPacket>> {
    let mut out: HashMap<TransceiverId, Vec<RtpPacket>> = HashMap::new();
    for ev in net.events_of(b) {
        if let Event::Rtp { track, packet, .. } = ev {
            out.entry(*track).or_default().push(packet.clone());
        }
    }
    out
}

#[test]
fn media_under_loss_and_after_renegotiation() {
    let mut net = Network::new(77);
    let (a, b) = net.two_peers(
        77,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    net.conditions.loss = 0.05;
    let tracks: Vec<TransceiverId> = net.peer(a).transceivers().iter().map(|t| t.id).collect();
    assert_eq!(tracks.len(), 2);
    send_burst(&mut net, a, &tracks, 300, 1000);
    let got = received(&net, b);
    let tracks_b = net
        .events_of(b)
        .filter(|e| matches!(e, Event::Track(_)))
        .count();
    assert_eq!(tracks_b, 2, "bob saw both tracks");
    assert_eq!(got.len(), 2, "packets on both of bob's transceivers");
    for (t, packets) in &got {
        assert!(
            packets.len() >= 255 && packets.len() <= 300,
            "{t:?}: {} of 300",
            packets.len()
        );
        for p in packets {
            let text = String::from_utf8(p.payload.to_vec()).expect("utf8");
            assert!(
                text.ends_with(&format!("packet {}", p.sequence_number)),
                "payload intact: {text}"
            );
        }
    }
    let s = net.peer(b).stats();
    assert_eq!(s.srtp_in.auth_failures, 0);
    // Sender reports went out on the RFC 3550 schedule, bob answered with receiver
    // reports, and alice measured the round trip from LSR/DLSR (2 x 10 ms latency).
    let srs = net
        .events_of(b)
        .filter_map(|e| match e {
            Event::Rtcp(p) => Some(p.clone()),
            _ => None,
        })
        .flat_map(|p| RtcpPacket::parse_compound(&p).flatten().collect::<Vec<_>>())
        .filter(|p| matches!(p, RtcpPacket::SenderReport { packets, .. } if *packets > 0))
        .count();
    assert!(srs >= 3, "bob got {srs} sender reports in 6 s");
    let rtt = net.peer(a).rtt().expect("rtt measured");
    assert!(
        rtt >= Duration::from_millis(19) && rtt <= Duration::from_millis(25),
        "rtt {rtt:?}"
    );

    // Silence mutes bob's remote tracks; the next packet unmutes that one.
    net.run_for(Duration::from_secs(4));
    let muted = net
        .events_of(b)
        .filter(|e| matches!(e, Event::TrackMuted(_)))
        .count();
    assert_eq!(muted, 2, "both remote tracks muted after 3 s of silence");
    // One packet unmutes; no loss for it (the loss above is about delivery, not this).
    net.conditions.loss = 0.0;
    send_burst(&mut net, a, &tracks[..1], 1, 2000);
    net.run_for(Duration::from_millis(50));
    let unmuted: Vec<_> = net
        .events_of(b)
        .filter_map(|e| match e {
            Event::TrackUnmuted(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(unmuted.len(), 1, "{unmuted:?}");

    // Keyframe request from bob reaches alice.
    let video_b = net
        .peer(b)
        .transceivers()
        .iter()
        .find(|t| t.kind == MediaKind::Video)
        .map(|t| t.id)
        .expect("video");
    net.peer(b).request_keyframe(video_b).expect("pli");
    net.conditions.loss = 0.0;
    net.run_for(Duration::from_millis(100));
    assert!(
        net.events_of(a)
            .any(|e| matches!(e, Event::KeyframeRequest(_))),
        "alice got the PLI"
    );

    // Renegotiation: a new track after the connection is up.
    let new_track = net
        .peer(a)
        .add_track(MediaKind::Video, vec!["screen".into()])
        .expect("track");
    net.negotiate(a, b).expect("renegotiate");
    net.run_for(Duration::from_millis(50));
    assert!(net.connected(a, b));
    send_burst(&mut net, a, &[new_track], 50, 1);
    let got = received(&net, b);
    assert_eq!(
        got.len(),
        3,
        "the new track's packets arrive on a third transceiver"
    );
    assert_eq!(
        net.events_of(b)
            .filter(|e| matches!(e, Event::Track(_)))
            .count(),
        3
    );

    // Sender reports went out on the RFC 3550 schedule, bob answered with receiver
    // reports, and alice measured the round trip from LSR/DLSR (2 x 10 ms latency).
    let rtcp: Vec<RtcpPacket> = net
        .events_of(b)
        .filter_map(|e| match e {
            Event::Rtcp(p) => Some(p.clone()),
            _ => None,
        })
        .flat_map(|p| RtcpPacket::parse_compound(&p).flatten().collect::<Vec<_>>())
        .collect();
    let srs = rtcp
        .iter()
        .filter(|p| matches!(p, RtcpPacket::SenderReport { packets, .. } if *packets > 0))
        .count();
    assert!(srs >= 3, "bob got {srs} sender reports");
    let rtt = net.peer(a).rtt().expect("rtt measured");
    assert!(
        rtt >= Duration::from_millis(19) && rtt <= Duration::from_millis(25),
        "rtt {rtt:?}"
    );

    // close() sends RTCP BYE for every SSRC alice sent on; bob ends those tracks.
    let now = net.now();
    net.peer(a).close(now);
    net.run_for(Duration::from_millis(100));
    let byes: Vec<RtcpPacket> = net
        .events_of(b)
        .filter_map(|e| match e {
            Event::Rtcp(p) => Some(p.clone()),
            _ => None,
        })
        .flat_map(|p| RtcpPacket::parse_compound(&p).flatten().collect::<Vec<_>>())
        .filter(|p| matches!(p, RtcpPacket::Bye { .. }))
        .collect();
    assert!(
        matches!(byes.first(), Some(RtcpPacket::Bye { ssrcs, .. }) if ssrcs.len() == 3),
        "{byes:?}"
    );
    let ended = net
        .events_of(b)
        .filter(|e| matches!(e, Event::TrackEnded(_)))
        .count();
    assert_eq!(ended, 3, "bob ended the three remote tracks on BYE");
    // ... and the close_notify that followed the BYE closed bob's DTLS association.
    assert_eq!(net.peer(b).dtls_state(), DtlsState::Closed);
}
