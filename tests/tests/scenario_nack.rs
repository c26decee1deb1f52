//! Loss recovery between two cores under 5 % random loss: alice sends video (VP8, 10 ms
//! apart) and audio (Opus, which negotiates no NACK) to bob.
//! - With NACK and RTX negotiated (the default codecs), bob NACKs what is missing, alice
//!   resends as RTX on her RTX SSRC, bob unwraps it: nearly every video packet is
//!   delivered, with intact payloads, each once; audio keeps its loss (the control).
//! - With NACK but no RTX (bob configures no `rtx` format), alice resends plainly on the
//!   original SSRC and the video is recovered the same way.
//! - Without NACK (no `nack` feedback configured), nothing is asked for or resent and
//!   the loss stays.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::peer::PeerStats;
use sansrtc::{Config, Event, MediaKind};
use sansrtc_tests::{seeded_config, Network, NodeId};

const PACKETS: u16 = 1000;

/// Connect alice and bob with these configurations, send `PACKETS` video and audio packets
/// under 5 % loss, let retransmissions finish; (alice, bob, network).
fn run(alice: Config, bob: Config) -> (NodeId, NodeId, Network) {
    let mut net = Network::new(41);
    let (a, b) = net.two_peers_with(
        alice,
        bob,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    net.conditions.loss = 0.05;
    let tracks: Vec<_> = net
        .peer(a)
        .transceivers()
        .iter()
        .map(|t| (t.id, t.kind))
        .collect();
    for i in 0..PACKETS {
        let seq = 5000u16.wrapping_add(i);
        for (id, kind) in &tracks {
            let packet = RtpPacket {
                payload_type: if *kind == MediaKind::Video { 96 } else { 111 },
                sequence_number: seq,
                timestamp: u32::from(i) * 900,
                marker: i % 10 == 9,
                ssrc: 0,
                payload: Bytes::from(format!("{kind:?} packet {seq}").into_bytes()),
            };
            net.peer(a).send_rtp(*id, &packet).expect("send_rtp");
        }
        net.run_for(Duration::from_millis(10));
    }
    net.run_for(Duration::from_secs(2));
    (a, b, net)
}

/// Per kind at bob: (packets delivered, distinct sequence numbers).
fn delivered(net: &mut Network, b: NodeId) -> HashMap<MediaKind, (usize, usize)> {
    let kinds: HashMap<_, _> = net
        .peer(b)
        .transceivers()
        .iter()
        .map(|t| (t.id, t.kind))
        .collect();
    let mut seen: HashMap<MediaKind, (usize, HashSet<u16>)> = HashMap::new();
    for ev in net.events_of(b) {
        if let Event::Rtp { track, packet, .. } = ev {
            let kind = kinds[track];
            let text = String::from_utf8(packet.payload.to_vec()).expect("utf8");
            assert_eq!(
                text,
                format!("{kind:?} packet {}", packet.sequence_number),
                "payload intact"
            );
            let e = seen.entry(kind).or_default();
            e.0 += 1;
            e.1.insert(packet.sequence_number);
        }
    }
    seen.into_iter()
        .map(|(k, (n, set))| (k, (n, set.len())))
        .collect()
}

fn percent(n: usize) -> f64 {
    100.0 * n as f64 / f64::from(PACKETS)
}

fn report(
    label: &str,
    got: &HashMap<MediaKind, (usize, usize)>,
    alice: &PeerStats,
    bob: &PeerStats,
) {
    eprintln!(
        "{label}: video {:.1} % delivered, audio {:.1} %; bob {:?}; alice {:?}",
        percent(got[&MediaKind::Video].1),
        percent(got[&MediaKind::Audio].1),
        bob.loss_recovery,
        alice.loss_recovery
    );
}

/// The default codecs without some of the video feedback or formats.
fn video_without(seed: u64, drop_rtx: bool, drop_nack: bool) -> Config {
    let mut c = seeded_config(seed);
    c.video_codecs.retain(|codec| !(drop_rtx && codec.is_rtx()));
    for codec in &mut c.video_codecs {
        if drop_nack {
            codec.rtcp_feedback.retain(|f| f != "nack");
        }
    }
    c
}

#[test]
fn rtx_recovers_video_under_loss() {
    let (a, b, mut net) = run(seeded_config(41), seeded_config(42));
    let got = delivered(&mut net, b);
    let (alice, bob) = (net.peer(a).stats(), net.peer(b).stats());
    report("nack+rtx", &got, &alice, &bob);
    let (video_n, video_distinct) = got[&MediaKind::Video];
    assert_eq!(video_n, video_distinct, "each video packet delivered once");
    assert!(
        percent(video_distinct) > 99.5,
        "video recovered: {video_distinct}"
    );
    let audio = got[&MediaKind::Audio].1;
    assert!(
        percent(audio) < 98.5,
        "audio (no NACK) keeps its loss: {audio}"
    );
    let (bs, as_) = (bob.loss_recovery, alice.loss_recovery);
    assert!(bs.nacks_sent > 0 && bs.packets_nacked >= 30, "{bs:?}");
    assert!(
        bs.rtx_packets_received > 0 && bs.packets_recovered >= 30,
        "{bs:?}"
    );
    assert!(
        as_.nacks_received > 0 && as_.packets_requested > 0,
        "{as_:?}"
    );
    assert!(
        as_.rtx_packets_sent >= 30 && as_.rtx_bytes_sent > 0,
        "{as_:?}"
    );
    assert_eq!(as_.rtx_packets_sent, as_.packets_retransmitted);
}

#[test]
fn plain_retransmission_without_rtx() {
    let (a, b, mut net) = run(seeded_config(41), video_without(42, true, false));
    let got = delivered(&mut net, b);
    let (alice, bob) = (net.peer(a).stats(), net.peer(b).stats());
    report("nack, no rtx", &got, &alice, &bob);
    let video = net
        .peer(a)
        .transceivers()
        .iter()
        .find(|t| t.kind == MediaKind::Video)
        .map(|t| t.codecs.clone())
        .expect("video");
    assert!(!video.iter().any(|c| c.name == "rtx"), "{video:?}");
    let (_, video_distinct) = got[&MediaKind::Video];
    assert!(
        percent(video_distinct) > 99.5,
        "video recovered: {video_distinct}"
    );
    let (bs, as_) = (bob.loss_recovery, alice.loss_recovery);
    assert!(bs.nacks_sent > 0 && bs.packets_recovered >= 30, "{bs:?}");
    assert_eq!(bs.rtx_packets_received, 0);
    assert!(as_.packets_retransmitted >= 30, "{as_:?}");
    assert_eq!(as_.rtx_packets_sent, 0);
}

#[test]
fn without_nack_loss_stays() {
    let (a, b, mut net) = run(
        video_without(41, false, true),
        video_without(42, false, true),
    );
    let got = delivered(&mut net, b);
    let (alice, bob) = (net.peer(a).stats(), net.peer(b).stats());
    report("no nack", &got, &alice, &bob);
    let (_, video_distinct) = got[&MediaKind::Video];
    assert!(
        percent(video_distinct) < 98.5,
        "nothing recovers the loss: {video_distinct}"
    );
    assert_eq!(bob.loss_recovery.nacks_sent, 0);
    assert_eq!(alice.loss_recovery.packets_retransmitted, 0);
}
