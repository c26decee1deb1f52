//! RFC 8888 congestion control feedback between two cores configured without
//! transport-cc (and without NACK, so every RTP packet alice sends is an original): an
//! on-path dropper loses every twentieth of alice's RTP packets (identified by SSRC and
//! sequence number from the clear RTP header), bob records every RTP packet per SSRC and
//! sends RFC 8888 feedback, and alice's `TransportFeedback` events report exactly the
//! dropped packets lost and every other one delivered, with arrival times that keep the
//! send spacing (the link has a fixed latency). Without `ack ccfb` in the configuration
//! no feedback flows; with both `transport-cc` and `ack ccfb` configured on both sides the
//! answer keeps RFC 8888 alone (as libwebrtc answers) and only RFC 8888 feedback flows.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::twcc::FeedbackFormat;
use sansrtc::media::RtpPacket;
use sansrtc::rtp::{self, RtpHeader};
use sansrtc::{Config, Event, MediaKind};
use sansrtc_tests::{seeded_config, Captured, Network, NodeId, Verdict};

const PACKETS: u16 = 300;

/// A seeded configuration whose codecs keep only the feedback `keep` allows.
fn config(seed: u64, keep: &dyn Fn(&str) -> bool) -> Config {
    let mut c = seeded_config(seed);
    for codec in c.audio_codecs.iter_mut().chain(c.video_codecs.iter_mut()) {
        codec.rtcp_feedback.retain(|f| keep(f));
    }
    c
}

/// Connect alice and bob with these configurations.
fn connected(alice: Config, bob: Config) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(11);
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
    (net, a, b)
}

/// Alice sends `PACKETS` audio and video packets 10 ms apart, then the network runs a
/// second longer.
fn send_media(net: &mut Network, a: NodeId) {
    let tracks: Vec<_> = net
        .peer(a)
        .transceivers()
        .iter()
        .map(|t| (t.id, t.kind))
        .collect();
    for i in 0..PACKETS {
        let now = net.now();
        net.peer(a).handle_timeout(now);
        for (id, kind) in &tracks {
            let packet = RtpPacket {
                payload_type: if *kind == MediaKind::Video { 96 } else { 111 },
                sequence_number: i,
                timestamp: u32::from(i) * 900,
                marker: false,
                ssrc: 0,
                payload: Bytes::from_static(&[0u8; 200]),
            };
            net.peer(a).send_rtp(*id, &packet).expect("send_rtp");
        }
        net.run_for(Duration::from_millis(10));
    }
    net.run_for(Duration::from_secs(1));
}

#[test]
fn ccfb_reports_what_the_network_dropped() {
    let ccfb_only = |f: &str| !["transport-cc", "nack", "nack pli"].contains(&f);
    let (mut net, a, b) = connected(config(11, &ccfb_only), config(12, &ccfb_only));
    for t in net.peer(a).transceivers() {
        let fb = &t.codecs[0].rtcp_feedback;
        assert!(fb.iter().any(|f| f == "ack ccfb"), "{fb:?}");
        assert!(!fb.iter().any(|f| f == "transport-cc"), "{fb:?}");
    }
    let alice_addr = net.addrs(a)[0];
    let dropped: Rc<RefCell<BTreeSet<(u32, u16)>>> = Rc::default();
    let sent: Rc<RefCell<BTreeSet<(u32, u16)>>> = Rc::default();
    {
        let (dropped, sent) = (dropped.clone(), sent.clone());
        let mut count = 0u32;
        net.set_interceptor(move |c: &Captured| {
            let rtp_packet = c.from == alice_addr
                && c.data.first().is_some_and(|b| (128..192).contains(b))
                && !rtp::is_rtcp(&c.data);
            let Some(h) = rtp_packet.then(|| RtpHeader::parse(&c.data).ok()).flatten() else {
                return Verdict::Deliver;
            };
            let id = (h.ssrc(), h.sequence_number());
            sent.borrow_mut().insert(id);
            count += 1;
            if count % 20 == 7 {
                dropped.borrow_mut().insert(id);
                Verdict::Drop
            } else {
                Verdict::Deliver
            }
        });
    }
    send_media(&mut net, a);
    net.clear_interceptor();

    // The last word on each packet: arrival (µs on bob's clock) or lost.
    let mut status: BTreeMap<(u32, u16), (Option<i64>, Instant)> = BTreeMap::new();
    let mut feedbacks = 0;
    for ev in net.events_of(a) {
        if let Event::TransportFeedback(f) = ev {
            assert_eq!(f.format, FeedbackFormat::Rfc8888);
            feedbacks += 1;
            for p in &f.packets {
                let id = p.rtp_packet.expect("RFC 8888 names the packet");
                let e = status.entry(id).or_insert((None, p.sent_at));
                e.0 = e.0.or(p.arrival_us);
            }
        }
    }
    let sent = sent.borrow().clone();
    let dropped = dropped.borrow().clone();
    let lost: BTreeSet<(u32, u16)> = status
        .iter()
        .filter(|(_, (arrival, _))| arrival.is_none())
        .map(|(id, _)| *id)
        .collect();
    let delivered = status.values().filter(|(a, _)| a.is_some()).count();
    let (alice, bob) = (net.peer(a).stats(), net.peer(b).stats());
    eprintln!(
        "ccfb: {feedbacks} feedbacks, {} sent, {} dropped, {delivered} delivered, {} lost; alice {:?}; bob {:?}",
        sent.len(),
        dropped.len(),
        lost.len(),
        alice.loss_recovery,
        bob.loss_recovery,
    );
    assert_eq!(sent.len(), usize::from(PACKETS) * 2);
    assert!(dropped.len() >= 25, "{}", dropped.len());
    assert!(feedbacks >= 50, "feedback about every 50 ms: {feedbacks}");
    assert_eq!(lost, dropped, "lost = what the network dropped");
    assert_eq!(delivered + dropped.len(), sent.len());
    assert_eq!(alice.loss_recovery.ccfb_delivered, delivered as u64);
    assert_eq!(alice.loss_recovery.ccfb_lost, dropped.len() as u64);
    assert_eq!(alice.loss_recovery.twcc_feedback_received, 0);
    assert_eq!(bob.loss_recovery.twcc_feedback_sent, 0);
    assert_eq!(bob.loss_recovery.ccfb_packets_recorded, delivered as u64);
    assert_eq!(
        bob.loss_recovery.ccfb_feedback_sent,
        alice.loss_recovery.ccfb_feedback_received
    );

    // A fixed latency: arrival minus send time is the same for every packet, to the
    // feedback's 1/1024 s resolution (each report rounds by half a unit).
    let first_sent = status.values().map(|(_, s)| *s).min().expect("sent");
    let offsets: Vec<i64> = status
        .values()
        .filter_map(|(arrival, sent_at)| {
            Some((*arrival)? - sent_at.duration_since(first_sent).as_micros() as i64)
        })
        .collect();
    let (min, max) = (
        offsets.iter().min().expect("some"),
        offsets.iter().max().expect("some"),
    );
    assert!(max - min <= 1100, "arrival - send spread {min}..{max} µs");
}

#[test]
fn without_ack_ccfb_no_feedback_flows() {
    let neither = |f: &str| !["transport-cc", "ack ccfb"].contains(&f);
    let (mut net, a, b) = connected(config(11, &neither), config(12, &neither));
    send_media(&mut net, a);
    let feedbacks = net
        .events_of(a)
        .filter(|e| matches!(e, Event::TransportFeedback(_)))
        .count();
    let (alice, bob) = (net.peer(a).stats(), net.peer(b).stats());
    assert_eq!(feedbacks, 0);
    assert_eq!(bob.loss_recovery.ccfb_feedback_sent, 0);
    assert_eq!(bob.loss_recovery.ccfb_packets_recorded, 0);
    assert_eq!(alice.loss_recovery.ccfb_feedback_received, 0);
    assert!(bob.rtp_received >= u64::from(PACKETS), "media flowed");
}

#[test]
fn with_both_configured_the_answer_settles_on_rfc8888_alone() {
    let (mut net, a, b) = connected(seeded_config(11), seeded_config(12));
    for t in net.peer(a).transceivers() {
        let fb = &t.codecs[0].rtcp_feedback;
        assert!(fb.iter().any(|f| f == "ack ccfb"), "{fb:?}");
        assert!(!fb.iter().any(|f| f == "transport-cc"), "{fb:?}");
    }
    send_media(&mut net, a);
    let formats: BTreeSet<_> = net
        .events_of(a)
        .filter_map(|e| match e {
            Event::TransportFeedback(f) => Some(format!("{:?}", f.format)),
            _ => None,
        })
        .collect();
    let bob = net.peer(b).stats();
    assert_eq!(formats, BTreeSet::from(["Rfc8888".to_string()]));
    assert!(bob.loss_recovery.ccfb_feedback_sent > 0);
    assert_eq!(bob.loss_recovery.twcc_feedback_sent, 0);
    assert_eq!(bob.loss_recovery.twcc_packets_recorded, 0);
}
