//! Transport-wide congestion control feedback between two cores: alice sends audio and
//! video with the transport-wide sequence extension, an on-path dropper loses every
//! twentieth of her RTP packets (by transport sequence, read from the clear RTP header),
//! bob records what arrives and sends feedback, and alice's `TransportFeedback` events
//! report exactly the dropped packets lost and every other one delivered, with arrival
//! times that keep the send spacing (the link has a fixed latency).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::rtp::{self, RtpHeader};
use sansrtc::{Event, MediaKind};
use sansrtc_tests::{Captured, Network, Verdict};

const PACKETS: u16 = 400;

#[test]
fn feedback_reports_what_the_network_dropped() {
    let alice_addr = "10.0.0.1:5000".parse().expect("addr");
    let mut net = Network::new(9);
    // Both configured without RFC 8888, which an answer would otherwise prefer.
    let without_ccfb = |seed| {
        let mut c = sansrtc_tests::seeded_config(seed);
        for codec in c.audio_codecs.iter_mut().chain(c.video_codecs.iter_mut()) {
            codec.rtcp_feedback.retain(|f| f != "ack ccfb");
        }
        c
    };
    let (a, b) = net.two_peers_with(
        without_ccfb(9),
        without_ccfb(10),
        &[alice_addr],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    let tracks: Vec<_> = net
        .peer(a)
        .transceivers()
        .iter()
        .map(|t| {
            let twcc = t
                .header_extensions
                .iter()
                .find(|(_, uri)| uri.contains("transport-wide-cc"))
                .map(|(id, _)| *id as u8)
                .expect("transport-cc extension negotiated");
            assert!(
                t.codecs[0]
                    .rtcp_feedback
                    .iter()
                    .any(|f| f == "transport-cc"),
                "{:?}",
                t.codecs[0]
            );
            (t.id, t.kind, twcc)
        })
        .collect();
    let twcc_id = tracks[0].2;
    assert!(tracks.iter().all(|t| t.2 == twcc_id));

    let dropped: Rc<RefCell<BTreeSet<u16>>> = Rc::default();
    let sent: Rc<RefCell<u32>> = Rc::default();
    {
        let (dropped, sent) = (dropped.clone(), sent.clone());
        net.set_interceptor(move |c: &Captured| {
            let rtp_packet = c.from == alice_addr
                && c.data.first().is_some_and(|b| (128..192).contains(b))
                && !rtp::is_rtcp(&c.data);
            let seq = rtp_packet
                .then(|| RtpHeader::parse(&c.data).ok())
                .flatten()
                .and_then(|h| {
                    h.extension(twcc_id)
                        .map(|v| u16::from_be_bytes([v[0], v[1]]))
                });
            let Some(seq) = seq else {
                return Verdict::Deliver;
            };
            *sent.borrow_mut() += 1;
            if seq % 20 == 7 {
                dropped.borrow_mut().insert(seq);
                Verdict::Drop
            } else {
                Verdict::Deliver
            }
        });
    }
    for i in 0..PACKETS {
        // The send time of a packet is the last `now` the PeerConnection was given, as a
        // runtime gives it before sending.
        let now = net.now();
        net.peer(a).handle_timeout(now);
        for (id, kind, _) in &tracks {
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
    net.clear_interceptor();

    // The last word on each sequence number: arrival (µs on bob's clock) or lost.
    let mut status: BTreeMap<i64, (Option<i64>, std::time::Instant)> = BTreeMap::new();
    let mut feedbacks = 0;
    for ev in net.events_of(a) {
        if let Event::TransportFeedback(f) = ev {
            feedbacks += 1;
            for p in &f.packets {
                let e = status.entry(p.sequence).or_insert((None, p.sent_at));
                e.0 = e.0.or(p.arrival_us);
            }
        }
    }
    let sent = *sent.borrow();
    let dropped = dropped.borrow().clone();
    let lost: BTreeSet<u16> = status
        .iter()
        .filter(|(_, (arrival, _))| arrival.is_none())
        .map(|(s, _)| *s as u16)
        .collect();
    let delivered = status.values().filter(|(a, _)| a.is_some()).count();
    eprintln!(
        "twcc: {feedbacks} feedbacks, {sent} sent, {} dropped, {delivered} delivered, {} lost; alice {:?}; bob {:?}",
        dropped.len(),
        lost.len(),
        net.peer(a).stats().loss_recovery,
        net.peer(b).stats().loss_recovery,
    );
    assert!(sent >= u32::from(PACKETS) * 2, "{sent}");
    assert!(feedbacks >= 30, "feedback about every 100 ms: {feedbacks}");
    // Packets after the last one received cannot be reported lost yet; none here.
    assert_eq!(lost, dropped, "lost = what the network dropped");
    assert_eq!(delivered as u32 + dropped.len() as u32, sent);
    let (alice, bob) = (net.peer(a).stats(), net.peer(b).stats());
    assert_eq!(alice.loss_recovery.twcc_delivered, delivered as u64);
    assert_eq!(alice.loss_recovery.twcc_lost, dropped.len() as u64);
    assert_eq!(bob.loss_recovery.twcc_packets_recorded, delivered as u64);
    assert_eq!(
        bob.loss_recovery.twcc_feedback_sent,
        alice.loss_recovery.twcc_feedback_received
    );

    // A fixed 10 ms latency: arrival minus send time is the same for every packet, to
    // the feedback's 250 µs resolution.
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
    let mut by_offset: BTreeMap<i64, usize> = BTreeMap::new();
    for o in &offsets {
        *by_offset.entry(*o).or_default() += 1;
    }
    assert!(
        max - min <= 500,
        "arrival - send spread {min}..{max} µs: {by_offset:?}"
    );
}
