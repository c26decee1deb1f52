//! Data channels between two cores over the simulated network (SCTP over DTLS, the data
//! section negotiated in SDP):
//! - a channel created before the first offer opens on both sides (`DataChannel` on the
//!   remote, `DataChannelOpen` on both); messages of many sizes, text and binary, empty
//!   ones included, arrive identical and in order both ways; closing on one side closes it
//!   on the other;
//! - the first channel added after a media-only connection makes negotiation needed, and
//!   the renegotiation that follows opens it without leaving `connected`;
//! - a pre-negotiated channel (`negotiated` + `id`) carries messages without DCEP;
//! - under 10 % loss a reliable channel still delivers everything in order;
//! - an echo of 300 messages of up to 256 KiB on an ordered and an unordered channel, both
//!   directions busy at once, under 5 % loss, 3 % reordering and jitter, finishes for
//!   several seeds: every echo identical, the ordered ones in order (the shape of the
//!   Chromium echo test, where a transfer once stalled).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use sansrtc::datachannel::DataChannelError;
use sansrtc::{ChannelId, DataChannelInit, Event};
use sansrtc_tests::{LinkConditions, Network, NodeId};

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("addr")
}

fn connected_pair(seed: u64) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(seed);
    let (a, b) = net.two_peers(seed, &[addr("10.0.0.1:5000")], &[addr("10.0.0.2:6000")]);
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    (net, a, b)
}

/// Messages `node` received on `channel`, in order.
fn received(net: &Network, node: NodeId, channel: Option<ChannelId>) -> Vec<(Bytes, bool)> {
    net.events_of(node)
        .filter_map(|e| match e {
            Event::DataChannelMessage {
                channel: c,
                data,
                binary,
            } if channel.is_none_or(|want| *c == want) => Some((data.clone(), *binary)),
            _ => None,
        })
        .collect()
}

fn remote_channel(net: &Network, node: NodeId) -> Option<(ChannelId, String)> {
    net.events_of(node).find_map(|e| match e {
        Event::DataChannel { channel, label, .. } => Some((*channel, label.clone())),
        _ => None,
    })
}

fn opened(net: &Network, node: NodeId, channel: ChannelId) -> bool {
    net.events_of(node)
        .any(|e| matches!(e, Event::DataChannelOpen(c) if *c == channel))
}

fn closed(net: &Network, node: NodeId, channel: ChannelId) -> bool {
    net.events_of(node)
        .any(|e| matches!(e, Event::DataChannelClose(c) if *c == channel))
}

/// Deterministic messages: sizes from 0 to ~200 KiB, text and binary.
fn messages(n: usize) -> Vec<(Bytes, bool)> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|i| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = match i % 5 {
                0 => 0,
                1 => (state >> 40) as usize % 100,
                2 => (state >> 40) as usize % 5_000,
                3 => (state >> 40) as usize % 60_000,
                _ => (state >> 40) as usize % 200_000,
            };
            let binary = i % 2 == 0;
            let data: Vec<u8> = if binary {
                (0..len).map(|k| (k as u64 ^ state) as u8).collect()
            } else {
                (0..len).map(|k| b'a' + ((k + i) % 26) as u8).collect()
            };
            (Bytes::from(data), binary)
        })
        .collect()
}

#[test]
fn channel_opens_carries_messages_both_ways_and_closes() {
    let (mut net, a, b) = connected_pair(70);
    let now = net.now();
    let chat = net
        .peer(a)
        .create_data_channel(now, "chat", DataChannelInit::default())
        .expect("channel");
    net.negotiate(a, b).expect("negotiate");
    let offer = net.peer(a).local_description().expect("offer").sdp;
    assert!(
        offer.contains("m=application 9 UDP/DTLS/SCTP webrtc-datachannel"),
        "{offer}"
    );
    assert!(offer.contains("a=sctp-port:5000") && offer.contains("a=max-message-size:"));
    assert!(net.run_until(Duration::from_secs(10), |n| {
        opened(n, a, chat) && remote_channel(n, b).is_some()
    }));
    let (remote, label) = remote_channel(&net, b).expect("remote channel");
    assert_eq!(label, "chat");
    assert!(opened(&net, b, remote));

    let sent = messages(60);
    for (data, binary) in &sent {
        let now = net.now();
        net.peer(a)
            .send_data(now, chat, data.clone(), *binary)
            .expect("send");
    }
    assert!(
        net.run_until(Duration::from_secs(30), |n| received(n, b, Some(remote))
            .len()
            >= sent.len())
    );
    assert_eq!(
        received(&net, b, Some(remote)),
        sent,
        "identical and in order"
    );

    let now = net.now();
    net.peer(b).send_text(now, remote, "pong").expect("reply");
    assert!(
        net.run_until(Duration::from_secs(5), |n| !received(n, a, Some(chat))
            .is_empty())
    );
    assert_eq!(
        received(&net, a, Some(chat)),
        vec![(Bytes::from_static(b"pong"), false)]
    );
    assert_eq!(
        net.peer(a).buffered_amount(chat),
        0,
        "everything acknowledged"
    );

    let now = net.now();
    net.peer(b).close_data_channel(now, remote);
    assert!(net.run_until(Duration::from_secs(5), |n| closed(n, a, chat)
        && closed(n, b, remote)));
    assert!(
        net.connected(a, b),
        "closing a channel leaves the connection up"
    );
}

#[test]
fn first_channel_by_renegotiation() {
    let (mut net, a, b) = connected_pair(71);
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a, b)));
    let before = net.peer(a).local_description().expect("a").sdp;
    assert!(!before.contains("m=application"));
    let now = net.now();
    let ch = net
        .peer(b)
        .create_data_channel(now, "late", DataChannelInit::default())
        .expect("channel");
    net.run_for(Duration::from_millis(1));
    assert!(net
        .events_of(b)
        .any(|e| matches!(e, Event::NegotiationNeeded)));
    net.negotiate(b, a).expect("bob offers the data section");
    assert!(net.run_until(Duration::from_secs(10), |n| opened(n, b, ch)
        && remote_channel(n, a).is_some()));
    let (remote, _) = remote_channel(&net, a).expect("remote channel");
    let now = net.now();
    net.peer(b)
        .send_text(now, ch, "after renegotiation")
        .expect("send");
    assert!(
        net.run_until(Duration::from_secs(5), |n| !received(n, a, Some(remote))
            .is_empty())
    );
    assert!(net.connected(a, b));
    assert!(
        !net.connection_states(a)
            .iter()
            .skip_while(|(_, s)| *s != sansrtc::ConnectionState::Connected)
            .any(|(_, s)| *s != sansrtc::ConnectionState::Connected),
        "never left connected"
    );
}

#[test]
fn pre_negotiated_channel_without_dcep() {
    let (mut net, a, b) = connected_pair(72);
    let now = net.now();
    let init = DataChannelInit {
        negotiated: true,
        id: Some(7),
        ..Default::default()
    };
    let ca = net
        .peer(a)
        .create_data_channel(now, "game", init.clone())
        .expect("a");
    let cb = net
        .peer(b)
        .create_data_channel(now, "game", init)
        .expect("b");
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| opened(n, a, ca)
        && opened(n, b, cb)));
    assert!(
        remote_channel(&net, b).is_none(),
        "no DataChannel event: nothing was announced"
    );
    let now = net.now();
    net.peer(a)
        .send_data(now, ca, Bytes::from_static(&[1, 2, 3]), true)
        .expect("send");
    assert!(
        net.run_until(Duration::from_secs(5), |n| !received(n, b, Some(cb))
            .is_empty())
    );
    assert_eq!(
        net.peer(b).data_channel(cb).expect("info").stream_id,
        Some(7)
    );
}

#[test]
fn reliable_channel_under_ten_percent_loss() {
    let (mut net, a, b) = connected_pair(73);
    let lossy = LinkConditions {
        loss: 0.10,
        ..net.link(a, b).clone()
    };
    net.set_link(a, b, lossy.clone());
    net.set_link(b, a, lossy);
    let now = net.now();
    let ch = net
        .peer(a)
        .create_data_channel(now, "bulk", DataChannelInit::default())
        .expect("channel");
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(30), |n| opened(n, a, ch)
        && remote_channel(n, b).is_some()));
    let sent = messages(40);
    for (data, binary) in &sent {
        let now = net.now();
        net.peer(a)
            .send_data(now, ch, data.clone(), *binary)
            .expect("send");
    }
    assert!(
        net.run_until(Duration::from_secs(120), |n| received(n, b, None).len()
            >= sent.len())
    );
    assert_eq!(received(&net, b, None), sent);
    let stats = net.peer(a).stats();
    assert!(stats.datagrams_received > 0);
}

/// One seed of the echo under loss: `Ok` when every echo came back, else what stalled.
fn echo_under_loss(seed: u64) -> Result<(), String> {
    let (mut net, a, b) = connected_pair(seed);
    let lossy = LinkConditions {
        loss: 0.05,
        reorder: 0.03,
        jitter: Duration::from_millis(3),
        latency: Duration::from_millis(2),
        ..net.link(a, b).clone()
    };
    net.set_link(a, b, lossy.clone());
    net.set_link(b, a, lossy);
    let now = net.now();
    let ordered = net
        .peer(a)
        .create_data_channel(now, "ordered", DataChannelInit::default())
        .expect("channel");
    let unordered_init = DataChannelInit {
        ordered: false,
        ..Default::default()
    };
    let unordered = net
        .peer(a)
        .create_data_channel(now, "unordered", unordered_init)
        .expect("channel");
    net.negotiate(a, b).expect("negotiate");
    let mut sizes = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let sent: Vec<(ChannelId, Bytes)> = (0..300usize)
        .map(|i| {
            sizes ^= sizes << 13;
            sizes ^= sizes >> 7;
            sizes ^= sizes << 17;
            let len = match sizes % 10 {
                0 => 0,
                1..=3 => (sizes >> 20) as usize % 1000,
                4..=6 => (sizes >> 20) as usize % 65_536,
                _ => (sizes >> 20) as usize % (256 * 1024 + 1),
            };
            let channel = if i % 2 == 0 { ordered } else { unordered };
            (channel, Bytes::from(vec![(i % 251) as u8; len]))
        })
        .collect();
    let mut to_send: VecDeque<(ChannelId, Bytes)> = sent.iter().cloned().collect();
    let mut to_echo: VecDeque<(ChannelId, Bytes, bool)> = VecDeque::new();
    let mut back: Vec<(ChannelId, Bytes)> = Vec::new();
    let (mut seen, mut open) = (0usize, 0);
    let start = net.now();
    while back.len() < sent.len() {
        if net.now() - start > Duration::from_secs(300) {
            return Err(format!(
                "seed {seed}: {} to send, {} to echo, {} back; alice {:?}, bob {:?}",
                to_send.len(),
                to_echo.len(),
                back.len(),
                net.peer(a).sctp_stats(),
                net.peer(b).sctp_stats()
            ));
        }
        if !net.step() {
            net.run_for(Duration::from_millis(5));
        }
        let fresh: Vec<_> = net.events()[seen..]
            .iter()
            .map(|e| (e.node, e.event.clone()))
            .collect();
        seen += fresh.len();
        for (node, event) in fresh {
            match event {
                Event::DataChannelOpen(_) if node == a => open += 1,
                Event::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } if node == b => to_echo.push_back((channel, data, binary)),
                Event::DataChannelMessage { channel, data, .. } if node == a => {
                    back.push((channel, data))
                }
                _ => {}
            }
        }
        let now = net.now();
        while let Some((channel, data)) = to_send.front().filter(|_| open >= 2).cloned() {
            match net.peer(a).send_data(now, channel, data, true) {
                Ok(()) => drop(to_send.pop_front()),
                Err(DataChannelError::BufferFull) => break,
                Err(e) => return Err(format!("send: {e}")),
            }
        }
        while let Some((channel, data, binary)) = to_echo.front().cloned() {
            match net.peer(b).send_data(now, channel, data, binary) {
                Ok(()) => drop(to_echo.pop_front()),
                Err(DataChannelError::BufferFull) => break,
                Err(e) => return Err(format!("echo: {e}")),
            }
        }
    }
    let on = |list: &[(ChannelId, Bytes)], channel| -> Vec<Bytes> {
        list.iter()
            .filter(|(c, _)| *c == channel)
            .map(|(_, d)| d.clone())
            .collect()
    };
    if on(&back, ordered) != on(&sent, ordered) {
        return Err(format!(
            "seed {seed}: ordered echoes differ or came out of order"
        ));
    }
    let (mut got, mut want) = (on(&back, unordered), on(&sent, unordered));
    got.sort();
    want.sort();
    if got != want {
        return Err(format!("seed {seed}: unordered echoes differ"));
    }
    Ok(())
}

#[test]
fn echo_both_ways_under_loss_and_reordering() {
    let failures: Vec<String> = (1..=3)
        .filter_map(|seed| echo_under_loss(seed).err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
