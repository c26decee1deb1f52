//! REMB between two cores over a bottleneck: alice sends video to bob, both configured
//! with `goog-remb` as the only congestion feedback (no `transport-cc`, no `ack ccfb`,
//! no transport-wide extension). Bob estimates the bandwidth of what arrives from the
//! abs-send-time alice writes and sends REMB; alice reads it as
//! `Event::RemoteBitrateEstimate`.
//! - A sender above the link's rate makes the bottleneck's queue (and the delay) grow:
//!   the REMB values fall below the link rate.
//! - A sender well under the link's rate sees the REMB values rise.
//! - A sender that follows the REMB values settles below the link's rate, and the
//!   bottleneck's queue stays short of dropping much.

use std::time::Duration;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{Event, MediaKind};
use sansrtc_tests::{LinkConditions, Network, NodeId};

/// A config with `goog-remb` the only congestion feedback and no transport-wide
/// extension.
fn remb_only(seed: u64) -> sansrtc::Config {
    let mut c = sansrtc_tests::seeded_config(seed);
    for codec in c.audio_codecs.iter_mut().chain(c.video_codecs.iter_mut()) {
        codec
            .rtcp_feedback
            .retain(|f| f != "transport-cc" && f != "ack ccfb");
    }
    c.header_extensions
        .retain(|e| !e.uri.contains("transport-wide-cc"));
    c
}

/// Alice and bob connected with video from alice, alice -> bob through a bottleneck of
/// `link_bps` (20 ms latency, a queue of `queue_limit`); alice's video transceiver.
fn connected(
    seed: u64,
    link_bps: u64,
    queue_limit: Duration,
) -> (Network, NodeId, NodeId, sansrtc::media::TransceiverId) {
    let mut net = Network::new(seed);
    let (a, b) = net.two_peers_with(
        remb_only(seed),
        remb_only(seed + 1),
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    // Alice has audio and video; only video is sent, so the estimate is about one stream.
    let t = net
        .peer(a)
        .transceivers()
        .iter()
        .find(|t| t.kind == MediaKind::Video)
        .expect("video")
        .clone();
    let fb = &t.codecs[0].rtcp_feedback;
    assert!(fb.iter().any(|f| f == "goog-remb"), "{fb:?}");
    assert!(
        !fb.iter().any(|f| f == "transport-cc" || f == "ack ccfb"),
        "{fb:?}"
    );
    assert!(t
        .header_extensions
        .iter()
        .any(|(_, uri)| uri.contains("abs-send-time")));
    net.set_link(
        a,
        b,
        LinkConditions {
            rate_bps: Some(link_bps),
            queue_limit,
            ..LinkConditions::with_latency(Duration::from_millis(20))
        },
    );
    (net, a, b, t.id)
}

/// Send video from alice for `duration`: 1,000-byte payloads every 5 ms, each 5 ms
/// sending as many as `rate_bps` allows (a pacer); `rate_bps` may follow the REMB values.
fn send(
    net: &mut Network,
    a: NodeId,
    track: sansrtc::media::TransceiverId,
    duration: Duration,
    seq: &mut u16,
    mut rate_bps: impl FnMut(&mut Network) -> u64,
) -> u64 {
    let mut credit = 0.0f64;
    let mut bytes = 0u64;
    let steps = duration.as_millis() / 5;
    for _ in 0..steps {
        let now = net.now();
        net.peer(a).handle_timeout(now);
        credit += rate_bps(net) as f64 * 0.005 / 8.0;
        while credit >= 1000.0 {
            credit -= 1000.0;
            let packet = RtpPacket {
                payload_type: 96,
                sequence_number: *seq,
                timestamp: u32::from(*seq) * 300,
                marker: false,
                ssrc: 0,
                payload: Bytes::from_static(&[0u8; 1000]),
            };
            *seq = seq.wrapping_add(1);
            net.peer(a).send_rtp(track, &packet).expect("send_rtp");
            bytes += 1000;
        }
        net.run_for(Duration::from_millis(5));
    }
    bytes
}

/// The REMB values alice received, with when.
fn rembs(net: &Network, a: NodeId) -> Vec<(Duration, u64)> {
    net.events()
        .iter()
        .filter(|e| e.node == a)
        .filter_map(|e| match &e.event {
            Event::RemoteBitrateEstimate { bitrate_bps, .. } => Some((e.at, *bitrate_bps)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sender_above_the_link_rate_gets_remb_below_it() {
    let link = 1_000_000;
    // A deep queue: 1.3 Mbit/s into 1 Mbit/s adds 0.3 s of delay every second and
    // drops nothing in 8 s (a shallow queue that stays full keeps the delay constant and
    // loses instead: that is for the sender's loss-based control, not a delay-based
    // estimator).
    let (mut net, a, b, track) = connected(41, link, Duration::from_secs(3));
    let start = net.elapsed();
    let mut seq = 0;
    send(&mut net, a, track, Duration::from_secs(8), &mut seq, |_| {
        1_300_000
    });
    let values = rembs(&net, a);
    let bob = net.peer(b).stats().loss_recovery;
    eprintln!(
        "over the link: REMB {:?}; bob {bob:?}; queue drops {}",
        values
            .iter()
            .map(|(t, v)| ((*t - start).as_millis(), v / 1000))
            .collect::<Vec<_>>(),
        net.stats.queue_dropped
    );
    assert!(bob.remb_sent >= 5, "{bob:?}");
    assert_eq!(
        net.peer(a).stats().loss_recovery.remb_received,
        bob.remb_sent
    );
    assert!(bob.remb_overuse_signals >= 1, "{bob:?}");
    // Once the queue has built (after the first seconds), every REMB is below the link.
    let late: Vec<u64> = values
        .iter()
        .filter(|(t, _)| *t - start > Duration::from_secs(4))
        .map(|(_, v)| *v)
        .collect();
    assert!(late.len() >= 3, "{values:?}");
    assert!(late.iter().all(|v| *v < link), "{late:?}");
}

#[test]
fn a_sender_under_the_link_rate_gets_rising_remb() {
    let (mut net, a, b, track) = connected(43, 5_000_000, Duration::from_millis(300));
    let start = net.elapsed();
    let mut seq = 0;
    send(&mut net, a, track, Duration::from_secs(6), &mut seq, |_| {
        500_000
    });
    let values = rembs(&net, a);
    let bob = net.peer(b).stats().loss_recovery;
    eprintln!(
        "under the link: REMB {:?}; bob {bob:?}",
        values
            .iter()
            .map(|(t, v)| ((*t - start).as_millis(), v / 1000))
            .collect::<Vec<_>>(),
    );
    assert_eq!(bob.remb_overuse_signals, 0, "{bob:?}");
    assert!(values.len() >= 4, "{values:?}");
    for pair in values.windows(2) {
        assert!(pair[1].1 >= pair[0].1, "never falls: {values:?}");
    }
    let (first, last) = (values[0].1, values[values.len() - 1].1);
    // The first estimate is what arrives (500 kbit/s of payload plus headers); it grows
    // towards 1.5 times that.
    assert!(last > first && last > 600_000, "{first} -> {last}");
}

#[test]
fn a_sender_following_remb_settles_below_the_link_rate() {
    let link = 1_000_000;
    let (mut net, a, b, track) = connected(47, link, Duration::from_millis(300));
    let mut seq = 0;
    // Start at 300 kbit/s, then send at the last REMB value (a pacer a bandwidth
    // estimator would drive).
    let follow = |net: &mut Network| rembs(net, a).last().map_or(300_000, |(_, v)| *v);
    send(
        &mut net,
        a,
        track,
        Duration::from_secs(20),
        &mut seq,
        follow,
    );
    let drops_before = net.stats.queue_dropped;
    let sent = send(
        &mut net,
        a,
        track,
        Duration::from_secs(10),
        &mut seq,
        follow,
    );
    let rate = sent * 8 / 10;
    let values = rembs(&net, a);
    let bob = net.peer(b).stats().loss_recovery;
    eprintln!(
        "following REMB: last 10 s at {} kbit/s (payload) on a {} kbit/s link; REMB {:?}; queue drops {} then {}; bob {bob:?}",
        rate / 1000,
        link / 1000,
        values.iter().map(|(_, v)| v / 1000).collect::<Vec<_>>(),
        drops_before,
        net.stats.queue_dropped - drops_before,
    );
    // Near the link, not above it, and the queue drops little.
    assert!(rate > link / 2 && rate < link, "{rate}");
    assert!(net.stats.queue_dropped - drops_before < 20);
}
