//! Forged TURN error responses (issue 13 item 8). Alice and Bob both relay through the
//! TURN server model (`TurnNode`) with a 60 s lifetime, so Allocate, Refresh,
//! CreatePermission and ChannelBind all happen within the run. An attacker who sees the
//! wire (`start_capture`) answers every request sent with credentials at once, before
//! the server's answer arrives, with forged error responses on its transaction id:
//! 437, 486, 508, 403, 401, 500, a 438 that names another realm and five 438s with the
//! right realm but nonces of the attacker's choice (more than the client retries). None carries a valid
//! MESSAGE-INTEGRITY (the attacker does not know the key). The allocations survive, the
//! channels stay bound, the relayed session keeps carrying data for ten minutes, and the
//! clients count what they discarded.
//!
//! The first Allocate is sent without credentials (RFC 8489 9.2: the client learns the
//! realm and nonce from the server's 401), so there is nothing to check its answer
//! against: the attacker leaves that one alone, as the RFC cannot protect it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use sansrtc::stun::{Attribute, Class, Message, Method, TransactionId};
use sansrtc::turn::TurnError;
use sansrtc::{Config, DataChannelInit, Event, IceServer, IceTransportPolicy};
use sansrtc_tests::{seeded_config, Network, NodeId, TurnNode};

const USER: &str = "alice";
const PASS: &str = "secret";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn relay_config(seed: u64, server: SocketAddr) -> Config {
    let mut c = seeded_config(seed);
    c.ice_servers = vec![IceServer {
        urls: vec![format!("turn:{server}?transport=udp")],
        username: Some(USER.into()),
        credential: Some(PASS.into()),
    }];
    c.ice_transport_policy = IceTransportPolicy::Relay;
    c
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

/// The attacker's view and what it forged so far.
#[derive(Default)]
struct Attacker {
    /// The realm, learned from the server's 401 on the wire.
    realm: Option<String>,
    answered: HashSet<TransactionId>,
    forged_per_method: Vec<(Method, usize)>,
}

impl Attacker {
    fn forged(&mut self, method: Method) {
        match self
            .forged_per_method
            .iter_mut()
            .find(|(m, _)| *m == method)
        {
            Some((_, n)) => *n += 1,
            None => self.forged_per_method.push((method, 1)),
        }
    }

    fn count(&self, method: Method) -> usize {
        self.forged_per_method
            .iter()
            .find(|(m, _)| *m == method)
            .map_or(0, |(_, n)| *n)
    }

    /// Look at what crossed the wire since the last call and inject forgeries.
    fn act(&mut self, net: &mut Network, turn: SocketAddr) {
        for c in net.take_captured() {
            if c.injected {
                continue;
            }
            let Ok(msg) = Message::parse(&c.data) else {
                continue;
            };
            if c.from == turn && msg.class == Class::Error {
                if let Some(realm) = msg.realm() {
                    self.realm = Some(realm.to_string());
                }
                continue;
            }
            let turn_method = [
                Method::ALLOCATE,
                Method::REFRESH,
                Method::CREATE_PERMISSION,
                Method::CHANNEL_BIND,
            ]
            .contains(&msg.method);
            let with_credentials = msg
                .attributes
                .iter()
                .any(|a| matches!(a, Attribute::MessageIntegrity(_)));
            if c.to != turn
                || msg.class != Class::Request
                || !turn_method
                || !with_credentials
                || !self.answered.insert(msg.transaction_id)
            {
                continue;
            }
            let realm = self.realm.clone().unwrap_or_default();
            let forgeries: [(u16, Option<(&str, &str)>); 12] = [
                (437, None),
                (486, None),
                (508, None),
                (403, None),
                (401, Some(("evil.example", "n401"))),
                (500, None),
                (438, Some(("evil.example", "evil-nonce"))),
                // More stale-nonce answers with the right realm than the client retries.
                (438, Some((realm.as_str(), "attacker-nonce-1"))),
                (438, Some((realm.as_str(), "attacker-nonce-2"))),
                (438, Some((realm.as_str(), "attacker-nonce-3"))),
                (438, Some((realm.as_str(), "attacker-nonce-4"))),
                (438, Some((realm.as_str(), "attacker-nonce-5"))),
            ];
            for (code, challenge) in forgeries {
                let mut m = Message::new(Class::Error, msg.method, msg.transaction_id).with(
                    Attribute::ErrorCode {
                        code,
                        reason: "forged".into(),
                    },
                );
                if let Some((realm, nonce)) = challenge {
                    m = m
                        .with(Attribute::Realm(realm.into()))
                        .with(Attribute::Nonce(nonce.into()));
                }
                net.inject(turn, c.from, m.encode_to_vec(None, true));
            }
            self.forged(msg.method);
        }
    }
}

#[test]
fn forged_unauthenticated_turn_errors_do_not_break_a_relayed_session() {
    let seed = 140;
    let mut net = Network::new(seed);
    let turn = addr("198.51.100.1:3478");
    let mut node = TurnNode::new(turn, 4, USER, PASS, seed);
    node.default_lifetime = 60;
    let addresses = node.addresses();
    let server = net.add_node("turn", node, &addresses);
    let (a, b) = net.two_peers_with(
        relay_config(seed, turn),
        relay_config(seed + 1, turn),
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
    net.start_capture();
    let mut attacker = Attacker::default();
    net.negotiate(a, b).expect("negotiate");
    assert!(
        net.run_until(Duration::from_secs(30), |n| {
            attacker.act(n, turn);
            n.connected(a, b)
                && n.events_of(a)
                    .any(|e| matches!(e, Event::DataChannelOpen(c) if *c == channel))
        }),
        "{}",
        net.timeline().join("\n")
    );
    // Ten minutes under attack (a Refresh every 45 s, permissions every 4 min, channels
    // every 5 min), with a message every 30 s.
    for round in 0..20 {
        net.run_until(Duration::from_secs(30), |n| {
            attacker.act(n, turn);
            false
        });
        let now = net.now();
        let text = format!("round {round}");
        net.peer(a).send_text(now, channel, &text).expect("send");
        assert!(
            net.run_until(Duration::from_secs(5), |n| {
                attacker.act(n, turn);
                messages(n, b).contains(&text)
            }),
            "round {round} did not arrive"
        );
    }
    for method in [
        Method::ALLOCATE,
        Method::REFRESH,
        Method::CREATE_PERMISSION,
        Method::CHANNEL_BIND,
    ] {
        assert!(attacker.count(method) > 0, "no forgery for {method:?}");
    }
    assert!(attacker.count(Method::REFRESH) >= 20, "refreshes attacked");
    for node in [a, b] {
        let errors: Vec<TurnError> = net
            .events_of(node)
            .filter_map(|e| match e {
                Event::IceCandidateError { error, .. } => Some(error.clone()),
                _ => None,
            })
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        let stats = net.peer(node).stats().turn;
        assert!(
            stats[0].unauthenticated_discarded > 0,
            "forgeries discarded and counted: {stats:?}"
        );
        assert!(net.connected(a, b));
    }
    // Both allocations are alive on the server, and the channels still carry the data:
    // what Alice sends to the server is ChannelData (first byte 0x40..=0x4F), not Send
    // indications, so no forged error undid a ChannelBind.
    let now = net.now();
    let turn_node = net.node_mut::<TurnNode>(server).expect("turn");
    assert_eq!(turn_node.live_allocations(now), 2);
    net.take_captured();
    let now = net.now();
    net.peer(a)
        .send_text(now, channel, "through the channel")
        .expect("send");
    assert!(net.run_until(Duration::from_secs(5), |n| messages(n, b)
        .iter()
        .any(|m| m == "through the channel")));
    let alice = addr("10.0.0.1:5000");
    let channel_data = net
        .captured()
        .iter()
        .filter(|c| c.from == alice && c.to == turn)
        .filter(|c| matches!(c.data.first(), Some(0x40..=0x4F)))
        .count();
    assert!(channel_data > 0, "alice relays with ChannelData");
    eprintln!(
        "forged answers to {:?}; alice discarded {}, bob {}",
        attacker.forged_per_method,
        net.peer(a).stats().turn[0].unauthenticated_discarded,
        net.peer(b).stats().turn[0].unauthenticated_discarded
    );
}
