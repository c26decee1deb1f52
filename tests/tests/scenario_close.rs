//! The peer's close is honoured (issue 14 item 1): when the authenticated peer says it is
//! done, with SCTP ABORT, DTLS close_notify or RTCP BYE on its last stream, the
//! application learns it at once (`Event::RemoteClosed`, `DtlsStateChange(Closed)`, every
//! data channel closing) instead of when ICE consent expires 30 s later. What an attacker
//! forges cannot do this (see `attack_dtls.rs` for spoofed plaintext alerts).

use std::time::Duration;

use sansrtc::dtls::DtlsState;
use sansrtc::{DataChannelInit, Event, RemoteClose};
use sansrtc_tests::{opus_packet, Network, NodeId};

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("addr")
}

/// Two connected peers, 10 ms apart; with a data channel opened by alice when asked.
fn connected(seed: u64, data_channel: bool) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(seed);
    net.conditions.latency = Duration::from_millis(10);
    let (a, b) = net.two_peers(seed, &[addr("10.0.0.1:5000")], &[addr("10.0.0.2:6000")]);
    net.trickle(a, b, Duration::from_millis(10));
    net.trickle(b, a, Duration::from_millis(10));
    if data_channel {
        let now = net.now();
        net.peer(a)
            .create_data_channel(now, "chat", DataChannelInit::default())
            .expect("channel");
    }
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    if data_channel {
        assert!(net.run_until(Duration::from_secs(5), |n| n
            .events_of(b)
            .any(|e| matches!(e, Event::DataChannelOpen(_)))));
    }
    (net, a, b)
}

fn remote_closes(net: &Network, node: NodeId) -> Vec<RemoteClose> {
    net.events_of(node)
        .filter_map(|e| match e {
            Event::RemoteClosed(how) => Some(*how),
            _ => None,
        })
        .collect()
}

/// Alice closes; returns how long bob took to see it, with bob's goodbyes.
fn close_alice(net: &mut Network, a: NodeId, b: NodeId) -> (Duration, Vec<RemoteClose>) {
    assert!(remote_closes(net, b).is_empty(), "nothing closed yet");
    let start = net.elapsed();
    let now = net.now();
    net.peer(a).close(now);
    assert!(
        net.run_until(Duration::from_secs(5), |n| !remote_closes(n, b).is_empty()),
        "bob never saw alice go\n{}",
        net.timeline_text()
    );
    let took = net.elapsed() - start;
    // Whatever else arrives, the event fires once.
    net.run_for(Duration::from_secs(1));
    (took, remote_closes(net, b))
}

#[test]
fn a_closing_peer_with_data_channels_is_seen_at_once() {
    let (mut net, a, b) = connected(140, true);
    let (took, closes) = close_alice(&mut net, a, b);
    // Alice's close sends SCTP ABORT before close_notify: the ABORT ends it, one way trip.
    assert_eq!(closes, vec![RemoteClose::SctpAbort]);
    assert!(took <= Duration::from_millis(20), "took {took:?}");
    let events: Vec<&Event> = net.events_of(b).collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::DataChannelClose(_))));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::DtlsStateChange(DtlsState::Closed))));
    assert_eq!(net.peer(b).dtls_state(), DtlsState::Closed);
}

#[test]
fn close_notify_ends_a_session_without_data_or_media() {
    let (mut net, a, b) = connected(141, false);
    let (took, closes) = close_alice(&mut net, a, b);
    assert_eq!(closes, vec![RemoteClose::CloseNotify]);
    assert!(took <= Duration::from_millis(20), "took {took:?}");
    assert_eq!(net.peer(b).dtls_state(), DtlsState::Closed);
}

#[test]
fn bye_on_the_last_stream_ends_a_media_session() {
    let (mut net, a, b) = connected(142, false);
    let t = net.peer(a).transceivers()[0].id;
    for seq in 0..10u16 {
        net.peer(a).send_rtp(t, &opus_packet(seq)).expect("send");
    }
    net.run_for(Duration::from_millis(100));
    assert!(net.events_of(b).any(|e| matches!(e, Event::Rtp { .. })));
    let (took, closes) = close_alice(&mut net, a, b);
    // The BYE leaves first; close_notify right behind it fires nothing more.
    assert_eq!(
        closes,
        vec![RemoteClose::RtcpBye],
        "{}",
        net.timeline_text()
    );
    assert!(took <= Duration::from_millis(20), "took {took:?}");
    assert!(net.events_of(b).any(|e| matches!(e, Event::TrackEnded(_))));
}

#[test]
fn the_dtls_transport_reports_its_states() {
    let (net, _a, b) = connected(143, false);
    let states: Vec<DtlsState> = net
        .events_of(b)
        .filter_map(|e| match e {
            Event::DtlsStateChange(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(states, vec![DtlsState::Connecting, DtlsState::Connected]);
}
