//! TURN relays between cores on the simulated network, against the TURN server model
//! (`sansrtc_tests::TurnNode`):
//! - both peers under `iceTransportPolicy: relay` connect through the server: only relay
//!   candidates are announced, both selected pairs are relayed, the selected pair gets a
//!   channel, and a data channel and media flow;
//! - one peer relayed and one not: the relayed one reaches the other's host address;
//! - a wrong password gives an `IceCandidateError` (Unauthorized) after two Allocates
//!   (the second one's unauthenticated 401s discarded until it times out), and gathering
//!   still completes;
//! - a silent server fails within bounded time while the host path connects;
//! - an hour of virtual time with a 60 s lifetime: the allocations are refreshed (about
//!   80 times each) and the relayed connection still carries data at the end.

use std::net::SocketAddr;
use std::time::Duration;

use sansrtc::ice::CandidateKind;
use sansrtc::stun::Method;
use sansrtc::turn::TurnError;
use sansrtc::{ChannelId, Config, DataChannelInit, Event, IceServer, IceTransportPolicy};
use sansrtc_tests::{seeded_config, Network, NodeId, Probe, TurnNode};

const USER: &str = "alice";
const PASS: &str = "secret";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn turn_config(seed: u64, server: SocketAddr, password: &str, relay: bool) -> Config {
    let mut c = seeded_config(seed);
    c.ice_servers = vec![IceServer {
        urls: vec![format!("turn:{server}?transport=udp")],
        username: Some(USER.into()),
        credential: Some(password.into()),
    }];
    if relay {
        c.ice_transport_policy = IceTransportPolicy::Relay;
    }
    c
}

fn candidates(net: &Network, node: NodeId) -> Vec<String> {
    net.events_of(node)
        .filter_map(|e| match e {
            Event::IceCandidate(c) if !c.candidate.is_empty() => Some(c.candidate.clone()),
            _ => None,
        })
        .collect()
}

fn gathering_done(net: &Network, node: NodeId) -> bool {
    net.events_of(node)
        .any(|e| matches!(e, Event::IceCandidate(c) if c.candidate.is_empty()))
}

fn messages(net: &Network, node: NodeId) -> Vec<String> {
    net.events_of(node)
        .filter_map(|e| match e {
            Event::DataChannelMessage { data, .. } => {
                Some(String::from_utf8_lossy(data).into_owned())
            }
            _ => None,
        })
        .collect()
}

fn remote_channel(net: &Network, node: NodeId) -> Option<ChannelId> {
    net.events_of(node).find_map(|e| match e {
        Event::DataChannel { channel, .. } => Some(*channel),
        _ => None,
    })
}

struct Setup {
    net: Network,
    a: NodeId,
    b: NodeId,
    server: NodeId,
    turn: SocketAddr,
    channel: ChannelId,
}

/// Alice and Bob with a TURN server at 198.51.100.1:3478; `relay` says which of them use
/// the relay policy. Alice opens a data channel before the offer.
fn setup(seed: u64, relay: (bool, bool), lifetime: u32) -> Setup {
    let mut net = Network::new(seed);
    net.log_stun = true;
    let turn = addr("198.51.100.1:3478");
    let mut node = TurnNode::new(turn, 4, USER, PASS, seed);
    node.default_lifetime = lifetime;
    let addresses = node.addresses();
    let server = net.add_node("turn", node, &addresses);
    let (a, b) = net.two_peers_with(
        turn_config(seed, turn, PASS, relay.0),
        turn_config(seed + 1, turn, PASS, relay.1),
        &[addr("10.0.0.1:5000")],
        &[addr("10.0.0.2:6000")],
    );
    let now = net.now();
    let channel = net
        .peer(a)
        .create_data_channel(now, "chat", DataChannelInit::default())
        .expect("channel");
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    Setup {
        net,
        a,
        b,
        server,
        turn,
        channel,
    }
}

/// Send `text` from Alice and run until Bob has it.
/// Run until both peers are connected (20 s of virtual time at most); the timeline is
/// the failure message.
fn connect(s: &mut Setup) {
    let (a, b) = (s.a, s.b);
    assert!(
        s.net
            .run_until(Duration::from_secs(20), |n| n.connected(a, b)),
        "{}",
        s.net.timeline().join("\n")
    );
}

fn exchange(s: &mut Setup, text: &str) -> bool {
    let (a, channel) = (s.a, s.channel);
    let open = s.net.run_until(Duration::from_secs(5), |n| {
        n.events_of(a)
            .any(|e| matches!(e, Event::DataChannelOpen(c) if *c == channel))
    });
    if !open {
        return false;
    }
    let now = s.net.now();
    if s.net.peer(s.a).send_text(now, s.channel, text).is_err() {
        return false;
    }
    let (b, want) = (s.b, text.to_string());
    s.net
        .run_until(Duration::from_secs(5), |n| messages(n, b).contains(&want))
}

#[test]
fn both_relayed_connect_through_the_server_and_carry_data() {
    let mut s = setup(41, (true, true), 600);
    connect(&mut s);
    let (a, b) = (s.a, s.b);
    eprintln!(
        "connected through TURN after {:?} (virtual)",
        s.net.elapsed()
    );
    for node in [a, b] {
        let cands = candidates(&s.net, node);
        assert!(!cands.is_empty());
        assert!(
            cands.iter().all(|c| c.contains(" typ relay ")),
            "only relay candidates under the relay policy: {cands:?}"
        );
        assert!(
            cands.iter().all(|c| !c.contains("10.0.0.")),
            "no host address revealed: {cands:?}"
        );
        let pair = s.net.peer(node).selected_pair().expect("pair");
        assert_eq!(pair.local_kind, CandidateKind::Relay);
        assert_eq!(
            pair.local.ip(),
            s.turn.ip(),
            "the local side is the relayed address"
        );
        assert!(gathering_done(&s.net, node));
    }
    // The data channel opens and carries messages both ways through the relay.
    assert!(exchange(&mut s, "hello through the relay"));
    let bob_channel = remote_channel(&s.net, b).expect("bob's channel");
    let now = s.net.now();
    s.net
        .peer(b)
        .send_text(now, bob_channel, "and back")
        .expect("send");
    assert!(s.net.run_until(Duration::from_secs(5), |n| messages(n, a)
        .iter()
        .any(|m| m == "and back")));
    // The selected pairs got channels: traffic after the bind is ChannelData.
    let turn = s.net.node_mut::<TurnNode>(s.server).expect("turn");
    assert!(turn.total_requests(Method::CHANNEL_BIND) >= 2);
    assert!(turn.total_requests(Method::CREATE_PERMISSION) >= 2);
    let timeline = s.net.timeline().join("\n");
    assert!(
        !timeline.contains("alice  binding request 10.0.0.1:5000 -> 10.0.0.2"),
        "no direct check under the relay policy"
    );
    let stats = s.net.peer(a).stats();
    assert_eq!(stats.turn.len(), 1);
    assert_eq!(stats.relay_policy_dropped, 0);
    // Someone who learned Alice's host address anyway gets nothing back from it: under
    // the relay policy only relayed datagrams are taken.
    let (mut probe, log) = Probe::new();
    let prober = addr("10.0.0.9:7000");
    let request = sansrtc::stun::Message::new(
        sansrtc::stun::Class::Request,
        Method::BINDING,
        sansrtc::stun::TransactionId::random(&mut sansrtc::rng::Rng::from_seed(1)),
    )
    .encode_to_vec(None, true);
    probe.send_at(s.net.now(), prober, addr("10.0.0.1:5000"), request);
    s.net.add_node("probe", probe, &[prober]);
    s.net.run_for(Duration::from_secs(1));
    assert!(log.borrow().is_empty(), "no answer from the host socket");
    assert_eq!(s.net.peer(a).stats().relay_policy_dropped, 1);
}

#[test]
fn a_relayed_peer_reaches_a_host_candidate() {
    let mut s = setup(43, (true, false), 600);
    connect(&mut s);
    let (a, b) = (s.a, s.b);
    let alice = s.net.peer(a).selected_pair().expect("pair");
    assert_eq!(alice.local_kind, CandidateKind::Relay);
    assert_eq!(alice.remote, addr("10.0.0.2:6000"));
    let bob = s.net.peer(b).selected_pair().expect("pair");
    assert_eq!(bob.local, addr("10.0.0.2:6000"));
    assert_eq!(
        bob.remote.ip(),
        s.turn.ip(),
        "bob talks to alice's relayed address"
    );
    assert!(exchange(&mut s, "mixed"));
}

#[test]
fn wrong_password_is_a_clear_error_without_a_retry_storm() {
    let mut net = Network::new(45);
    let turn = addr("198.51.100.1:3478");
    let node = TurnNode::new(turn, 2, USER, PASS, 45);
    let addresses = node.addresses();
    let server = net.add_node("turn", node, &addresses);
    let (a, b) = net.two_peers_with(
        turn_config(45, turn, "wrong", false),
        seeded_config(46),
        &[addr("10.0.0.1:5000")],
        &[addr("10.0.0.2:6000")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    // The server's 401 to the authenticated Allocate has no integrity, so it is discarded
    // (RFC 8489 9.2.5) and the failure comes when that request times out (13.75 s).
    assert!(net.run_until(Duration::from_secs(20), |n| n.connected(a, b)
        && gathering_done(n, a)));
    let errors: Vec<TurnError> = net
        .events_of(a)
        .filter_map(|e| match e {
            Event::IceCandidateError { error, url, .. } => {
                assert_eq!(url, &format!("turn:{turn}?transport=udp"));
                Some(error.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(errors, vec![TurnError::Unauthorized]);
    net.run_for(Duration::from_secs(60));
    let turn_node = net.node_mut::<TurnNode>(server).expect("turn");
    assert_eq!(
        turn_node.total_requests(Method::ALLOCATE),
        2,
        "one challenge, one authenticated try, then nothing"
    );
    assert!(candidates(&net, a).iter().all(|c| !c.contains("typ relay")));
    assert_eq!(
        net.peer(a).selected_pair().expect("pair").local_kind,
        CandidateKind::Host
    );
}

#[test]
fn a_silent_server_fails_in_bounded_time_and_host_paths_work() {
    let mut net = Network::new(47);
    let turn = addr("198.51.100.1:3478");
    let mut node = TurnNode::new(turn, 2, USER, PASS, 47);
    node.silent = true;
    let addresses = node.addresses();
    net.add_node("turn", node, &addresses);
    let (a, b) = net.two_peers_with(
        turn_config(47, turn, PASS, false),
        seeded_config(48),
        &[addr("10.0.0.1:5000")],
        &[addr("10.0.0.2:6000")],
    );
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a, b)));
    assert!(!gathering_done(&net, a), "gathering waits for the relay");
    assert!(net.run_until(Duration::from_secs(30), |n| gathering_done(n, a)));
    let failed_at = net.elapsed();
    eprintln!("silent TURN server given up after {failed_at:?} (virtual)");
    assert!(failed_at < Duration::from_secs(20));
    assert!(net.events_of(a).any(|e| matches!(
        e,
        Event::IceCandidateError {
            error: TurnError::Timeout,
            ..
        }
    )));
    assert!(net.connected(a, b), "the host path is unaffected");
}

#[test]
fn an_hour_with_a_60_second_lifetime_keeps_the_relay() {
    let mut s = setup(49, (true, true), 60);
    connect(&mut s);
    let (a, b) = (s.a, s.b);
    assert!(exchange(&mut s, "first"));
    let start = s.net.elapsed();
    // An hour, with a message every ten minutes.
    for i in 1..=6 {
        s.net.run_for(Duration::from_secs(600));
        assert!(s.net.connected(a, b), "connected after {i}0 minutes");
        assert!(exchange(&mut s, &format!("minute {i}0")));
    }
    let hour = s.net.elapsed() - start;
    assert!(hour >= Duration::from_secs(3600));
    let now = s.net.now();
    let client_a = addr("10.0.0.1:5000");
    let client_b = addr("10.0.0.2:6000");
    let turn = s.net.node_mut::<TurnNode>(s.server).expect("turn");
    for client in [client_a, client_b] {
        let refreshes = turn.requests(client, Method::REFRESH);
        // Every 45 s (3/4 of 60 s) over the hour: about 80.
        assert!(
            (78..=84).contains(&refreshes),
            "{client}: {refreshes} refreshes"
        );
    }
    assert_eq!(turn.live_allocations(now), 2);
    for node in [a, b] {
        let pair = s.net.peer(node).selected_pair().expect("pair");
        assert_eq!(pair.local_kind, CandidateKind::Relay);
    }
}

/// A TURN URL the core leaves to the runtime (a host name) holds gathering: until the
/// runtime hands the server over (its relay candidate then comes before
/// end-of-candidates), reports it unreachable, or the wait runs out.
#[test]
fn gathering_waits_for_servers_left_to_the_runtime() {
    let turn = addr("198.51.100.1:3478");
    let url = "turn:turn.example.org?transport=udp".to_string();
    for outcome in ["handed over", "unreachable", "never"] {
        let mut net = Network::new(51);
        let node = TurnNode::new(turn, 2, USER, PASS, 51);
        let addresses = node.addresses();
        net.add_node("turn", node, &addresses);
        let mut alice = seeded_config(51);
        alice.ice_servers = vec![IceServer {
            urls: vec![url.clone()],
            username: Some(USER.into()),
            credential: Some(PASS.into()),
        }];
        let (a, b) = net.two_peers_with(
            alice,
            seeded_config(52),
            &[addr("10.0.0.1:5000")],
            &[addr("10.0.0.2:6000")],
        );
        assert_eq!(
            net.peer(a).stats().ice_servers_skipped,
            1,
            "left to the runtime"
        );
        net.trickle(a, b, Duration::from_millis(20));
        net.trickle(b, a, Duration::from_millis(20));
        net.negotiate(a, b).expect("negotiate");
        assert!(net.run_until(Duration::from_secs(3), |n| n.connected(a, b)));
        assert!(
            !gathering_done(&net, a),
            "{outcome}: gathering waits for the runtime"
        );
        let now = net.now();
        match outcome {
            "handed over" => net.peer(a).add_turn_server(
                now,
                sansrtc::TurnServer {
                    url: url.clone(),
                    local: addr("10.0.0.1:5000"),
                    server: turn,
                    protocol: sansrtc::Protocol::Udp,
                    username: USER.into(),
                    password: PASS.into(),
                },
            ),
            "unreachable" => net.peer(a).turn_server_unreachable(now, &url),
            _ => {}
        }
        assert!(net.run_until(Duration::from_secs(15), |n| gathering_done(n, a)));
        let done_at = net.elapsed();
        let cands = candidates(&net, a);
        let errors: Vec<TurnError> = net
            .events_of(a)
            .filter_map(|e| match e {
                Event::IceCandidateError { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect();
        match outcome {
            "handed over" => {
                assert!(cands.iter().any(|c| c.contains(" typ relay ")), "{cands:?}");
                assert!(errors.is_empty(), "{errors:?}");
            }
            "unreachable" => {
                assert_eq!(errors, vec![TurnError::Unreachable]);
                assert!(done_at < Duration::from_secs(4));
            }
            _ => {
                assert_eq!(errors, vec![TurnError::Timeout]);
                assert!(done_at >= sansrtc::peer::RUNTIME_TURN_WAIT);
            }
        }
        // Nothing is trickled after end-of-candidates.
        let last = net
            .events_of(a)
            .filter_map(|e| match e {
                Event::IceCandidate(c) => Some(c.candidate.clone()),
                _ => None,
            })
            .last();
        assert_eq!(last.as_deref(), Some(""), "{outcome}");
        net.run_for(Duration::from_secs(20));
        let last = net
            .events_of(a)
            .filter_map(|e| match e {
                Event::IceCandidate(c) => Some(c.candidate.clone()),
                _ => None,
            })
            .last();
        assert_eq!(last.as_deref(), Some(""), "{outcome}: still last");
    }
}
