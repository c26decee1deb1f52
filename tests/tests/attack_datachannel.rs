//! A malicious authenticated peer against data channels (issue 13 item 6): on a connected
//! pair, the attacker (alice) opens thousands of channels with DCEP, many with labels or
//! protocols far over the caps, then sends large messages on many streams at once, so the
//! victim (bob) reassembles many partial messages in parallel. Throughout:
//! - the victim never holds more than `Config::data_channels.max_channels` channels, and
//!   refuses (resets, counts) every OPEN over a cap; the attacker sees those channels close;
//! - the bytes the victim holds for its data channels stay under the bound it states
//!   (`max_data_channel_bytes_held`), checked after every step of the simulation;
//! - the victim's own channel keeps carrying messages both ways, and nothing panics.
//!
//! An honest peer sending large messages on many channels at once (fragments interleaved
//! with I-DATA, far more in total than the victim's buffer) gets every one through: our
//! sender starts only as many as the peer can hold whole. The attacker above turns that
//! off, which only stalls its own direction.

use std::time::Duration;

use bytes::Bytes;
use sansrtc::{ChannelId, DataChannelInit, Event};
use sansrtc_tests::{seeded_config, Network, NodeId};

fn addr(s: &str) -> std::net::SocketAddr {
    s.parse().expect("addr")
}

fn connected_pair(seed: u64) -> (Network, NodeId, NodeId) {
    connected_pair_with(seed, seeded_config(seed))
}

/// Like [`connected_pair`], with alice's configuration given.
fn connected_pair_with(seed: u64, alice: sansrtc::Config) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(seed);
    let (a, b) = net.two_peers_with(
        alice,
        seeded_config(seed + 1),
        &[addr("10.0.0.1:5000")],
        &[addr("10.0.0.2:6000")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    (net, a, b)
}

fn remote_channel(net: &Network, node: NodeId, label: &str) -> Option<ChannelId> {
    net.events_of(node).find_map(|e| match e {
        Event::DataChannel {
            channel, label: l, ..
        } if l == label => Some(*channel),
        _ => None,
    })
}

fn texts(net: &Network, node: NodeId, channel: ChannelId) -> Vec<String> {
    net.events_of(node)
        .filter_map(|e| match e {
            Event::DataChannelMessage {
                channel: c, data, ..
            } if *c == channel => Some(String::from_utf8_lossy(data).into_owned()),
            _ => None,
        })
        .collect()
}

fn closed(net: &Network, node: NodeId, channel: ChannelId) -> bool {
    net.events_of(node)
        .any(|e| matches!(e, Event::DataChannelClose(c) if *c == channel))
}

/// Run for `d`, checking the victim's caps after every step; returns the largest number
/// of channels and of bytes held seen.
fn run_checked(net: &mut Network, victim: NodeId, d: Duration, peak: &mut (usize, usize)) {
    let max_channels = sansrtc::Config::default().data_channels.max_channels;
    net.run_until(d, |n| {
        let pc = n.peer(victim);
        let (count, held, bound) = (
            pc.data_channel_count(),
            pc.data_channel_bytes_held(),
            pc.max_data_channel_bytes_held(),
        );
        assert!(count <= max_channels, "{count} channels");
        assert!(held <= bound, "{held} bytes held, bound {bound}");
        peak.0 = peak.0.max(count);
        peak.1 = peak.1.max(held);
        false
    });
}

#[test]
fn a_dcep_open_flood_and_many_partial_messages_stay_under_the_caps() {
    // A hostile sender: every message starts at once, whatever the victim can hold.
    let mut hostile = seeded_config(130);
    hostile.data_channels.interleaved_send_budget = Some(usize::MAX);
    let (mut net, attacker, victim) = connected_pair_with(130, hostile);
    let now = net.now();
    let mine = net
        .peer(victim)
        .create_data_channel(now, "mine", DataChannelInit::default())
        .expect("channel");
    net.negotiate(victim, attacker).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.connected(attacker, victim) && remote_channel(n, attacker, "mine").is_some()
    }));
    let mine_at_attacker = remote_channel(&net, attacker, "mine").expect("mine");
    let mut peak = (0, 0);

    // Wave 1: OPENs whose label or protocol is over the caps (2 KiB and 60 KiB).
    let long = "L".repeat(60_000);
    let mut refused_by_name = Vec::new();
    for batch in 0..6 {
        for i in 0..100 {
            let now = net.now();
            let (label, protocol) = match (batch * 100 + i) % 50 {
                // A few with a 60 KB label: each OPEN is a 55-fragment message.
                0 => (long.as_str(), String::new()),
                n if n % 2 == 0 => (&long[..2_000], String::new()),
                _ => ("p", long[..1_500].to_string()),
            };
            let init = DataChannelInit {
                protocol,
                ..DataChannelInit::default()
            };
            let id = net
                .peer(attacker)
                .create_data_channel(now, label, init)
                .expect("create");
            refused_by_name.push(id);
        }
        run_checked(&mut net, victim, Duration::from_millis(500), &mut peak);
    }
    // Wave 2: thousands of well-formed OPENs, far more than the channel cap.
    let mut flood = Vec::new();
    for batch in 0..6 {
        for i in 0..500 {
            let now = net.now();
            let id = net
                .peer(attacker)
                .create_data_channel(now, &format!("f{batch}-{i}"), DataChannelInit::default())
                .expect("create");
            flood.push(id);
        }
        run_checked(&mut net, victim, Duration::from_millis(500), &mut peak);
    }
    run_checked(&mut net, victim, Duration::from_secs(5), &mut peak);

    let max = sansrtc::Config::default().data_channels.max_channels;
    let stats = net.peer(victim).data_channel_stats();
    let accepted = 3_000 - (net.peer(victim).data_channel_count() - 1);
    assert_eq!(
        net.peer(victim).data_channel_count(),
        max,
        "victim at the cap"
    );
    assert_eq!(
        stats.refused_channel_opens,
        600 + accepted as u64,
        "every OPEN over a cap refused and counted"
    );
    // The refused channels close at the attacker (the stream was reset).
    assert!(refused_by_name.iter().all(|id| closed(&net, attacker, *id)));
    let open_at_attacker: Vec<ChannelId> = flood
        .iter()
        .copied()
        .filter(|id| !closed(&net, attacker, *id))
        .collect();
    assert_eq!(open_at_attacker.len(), max - 1);

    // The victim's own channel still works both ways.
    let now = net.now();
    net.peer(victim)
        .send_text(now, mine, "ping")
        .expect("victim sends");
    let now = net.now();
    net.peer(attacker)
        .send_text(now, mine_at_attacker, "pong")
        .expect("attacker answers");
    run_checked(&mut net, victim, Duration::from_secs(5), &mut peak);
    assert_eq!(texts(&net, attacker, mine_at_attacker), ["ping"]);
    assert_eq!(texts(&net, victim, mine), ["pong"]);

    // Large messages on 256 streams at once, interleaved fragment by fragment (I-DATA):
    // the victim holds many partial messages in parallel, more than its buffer can
    // complete. It stays under its bound; the attacker only jams its own direction
    // (its window stays shut by its own partial messages), and the victim keeps sending.
    let big = Bytes::from(vec![0x5a; 128 * 1024]);
    for id in open_at_attacker.iter().take(256) {
        let now = net.now();
        let _ = net.peer(attacker).send_data(now, *id, big.clone(), true);
    }
    run_checked(&mut net, victim, Duration::from_secs(20), &mut peak);
    let now = net.now();
    net.peer(victim)
        .send_text(now, mine, "still here")
        .expect("victim sends");
    run_checked(&mut net, victim, Duration::from_secs(5), &mut peak);
    assert_eq!(
        texts(&net, attacker, mine_at_attacker),
        ["ping", "still here"]
    );
    assert!(net.connected(attacker, victim));
    assert!(
        peak.1 > 1024 * 1024,
        "the flood filled the receive buffer ({} bytes at most)",
        peak.1
    );
    eprintln!(
        "peak: {} channels, {} bytes held (bound {}); refused {}",
        peak.0,
        peak.1,
        net.peer(victim).max_data_channel_bytes_held(),
        stats.refused_channel_opens
    );
}

#[test]
fn an_honest_sender_of_large_interleaved_messages_on_many_channels_completes() {
    let (mut net, alice, bob) = connected_pair(131);
    let channels = 48;
    let mut ids = Vec::new();
    for i in 0..channels {
        let now = net.now();
        let id = net
            .peer(alice)
            .create_data_channel(now, &format!("bulk{i}"), DataChannelInit::default())
            .expect("channel");
        ids.push(id);
    }
    net.negotiate(alice, bob).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(10), |n| {
        n.connected(alice, bob)
            && (0..channels).all(|i| remote_channel(n, bob, &format!("bulk{i}")).is_some())
    }));
    assert!(net.peer(alice).sctp_interleaving(), "I-DATA negotiated");
    // 48 messages of 128 KiB and more, all queued at once: six times bob's buffer.
    let sent: Vec<Bytes> = (0..channels)
        .map(|i| Bytes::from(vec![i as u8; 128 * 1024 + 997 * i]))
        .collect();
    for (id, m) in ids.iter().zip(&sent) {
        let now = net.now();
        net.peer(alice)
            .send_data(now, *id, m.clone(), true)
            .expect("queued");
    }
    let mut peak = (0, 0);
    let at_bob: Vec<ChannelId> = (0..channels)
        .map(|i| remote_channel(&net, bob, &format!("bulk{i}")).expect("at bob"))
        .collect();
    let received = |n: &Network, c: ChannelId| -> Vec<Bytes> {
        n.events_of(bob)
            .filter_map(|e| match e {
                Event::DataChannelMessage { channel, data, .. } if *channel == c => {
                    Some(data.clone())
                }
                _ => None,
            })
            .collect()
    };
    let mut all_arrived = false;
    for _ in 0..60 {
        run_checked(&mut net, bob, Duration::from_millis(500), &mut peak);
        if at_bob.iter().all(|c| received(&net, *c).len() == 1) {
            all_arrived = true;
            break;
        }
    }
    let arrived = at_bob
        .iter()
        .filter(|c| !received(&net, **c).is_empty())
        .count();
    assert!(all_arrived, "{arrived} of {channels} messages arrived");
    for (c, m) in at_bob.iter().zip(&sent) {
        assert_eq!(received(&net, *c), std::slice::from_ref(m), "intact, once");
    }
    assert!(net.connected(alice, bob));
    eprintln!(
        "honest interleaved: {} bytes held at most (bound {})",
        peak.1,
        net.peer(bob).max_data_channel_bytes_held()
    );
}
