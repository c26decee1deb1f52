//! Attacks on who gets a datagram (issue 13, items 4 and 5):
//! - a raced ClientHello: a stranger sends a ClientHello to the DTLS server before and
//!   while the real client does; the server only hears DTLS from addresses ICE validated,
//!   so the real handshake completes and the stranger's datagrams are dropped and counted;
//! - a route hijack through a listed candidate: on an `Endpoint` serving a victim and an
//!   attacker, the attacker's client lists the victim's address as its candidate, so the
//!   attacker's server peer sends checks there; the victim's media still reaches the
//!   victim's server peer, and the attacker's gets none of it;
//! - spoofed authenticated checks: a client knows its own session's password, so it can
//!   make its server peer validate the victim's address with a forged source; that does
//!   not take a live victim's route, and a route claimed that way before the victim
//!   connects goes to the victim's peer once the victim answers its checks;
//! - a flood of new source ports and ICE restarts by an authenticated client: its server
//!   peer's route table stays within its bound, and the victim's route is untouched.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::dtls::DtlsRole;
use sansrtc::endpoint::MAX_ROUTES_PER_PEER;
use sansrtc::media::RtpPacket;
use sansrtc::stun::{Attribute, Class, Message, Method, TransactionId};
use sansrtc::{
    ConnectionState, Datagram, Endpoint, Event, IceCandidateInit, MediaKind, OfferOptions,
    PeerConnection, PeerId, Protocol, SessionDescription, Transmit,
};
use sansrtc_tests::{opus_packet, seeded_config, Network, Node, NodeId};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// A ClientHello from another session (another DTLS client's first flight): what a
/// stranger would send. Taken from a throwaway connection on its own network.
fn foreign_client_hello() -> Vec<u8> {
    let mut net = Network::new(501);
    let (a, b) = net.two_peers(501, &[addr("10.9.0.1:5000")], &[addr("10.9.0.2:6000")]);
    net.trickle(a, b, Duration::from_millis(10));
    net.trickle(b, a, Duration::from_millis(10));
    net.start_capture();
    net.negotiate(a, b).expect("negotiate");
    assert!(net.run_until(Duration::from_secs(5), |n| n.connected(a, b)));
    net.captured()
        .iter()
        .find(|c| c.data.len() > 13 && c.data[0] == 22 && c.data[13] == 1)
        .map(|c| c.data.clone())
        .expect("a ClientHello was sent")
}

/// A stranger's ClientHello every 10 ms, from before the answer arrives until well after
/// the handshake: the DTLS server never hears it, the real handshake completes, and every
/// one of the stranger's datagrams is dropped and counted.
#[test]
fn a_raced_client_hello_from_another_address_is_dropped() {
    let hello = foreign_client_hello();
    let mut net = Network::new(502);
    let alice_addr = addr("10.0.0.1:5000");
    let (a, b) = net.two_peers(502, &[alice_addr], &[addr("10.0.0.2:6000")]);
    net.conditions.latency = Duration::from_millis(15);
    net.trickle(a, b, Duration::from_millis(30));
    net.trickle(b, a, Duration::from_millis(30));
    let stranger = addr("10.0.0.66:6666");
    let mut injected = 0u64;
    for i in 0..150u64 {
        net.inject_after(
            Duration::from_millis(10 * i),
            stranger,
            alice_addr,
            hello.clone(),
        );
        injected += 1;
    }
    net.negotiate(a, b).expect("negotiate");
    assert_eq!(net.peer(a).dtls_role(), Some(DtlsRole::Server));
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
    // Let the rest of the injected datagrams arrive, then some more after connecting.
    net.run_for(Duration::from_millis(1600));
    for i in 0..20u64 {
        net.inject_after(
            Duration::from_millis(5 * i),
            stranger,
            alice_addr,
            hello.clone(),
        );
        injected += 1;
    }
    net.run_for(Duration::from_secs(2));
    assert!(net.connected(a, b), "{}", net.timeline_text());
    assert!(net.peer(a).srtp_profile().is_some());
    assert_eq!(net.peer(a).srtp_profile(), net.peer(b).srtp_profile());
    // Both ends derived the same keys: media from alice decrypts at bob.
    let t = net.peer(a).transceivers()[0].id;
    for seq in 0..5u16 {
        net.peer(a).send_rtp(t, &opus_packet(seq)).expect("send");
    }
    net.run_for(Duration::from_millis(200));
    let received = net
        .events_of(b)
        .filter(|e| matches!(e, Event::Rtp { .. }))
        .count();
    assert_eq!(received, 5, "alice's media decrypts at bob");
    assert!(!net
        .events_of(a)
        .chain(net.events_of(b))
        .any(|e| matches!(e, Event::DtlsFailed(_))));
    let stats = net.peer(a).stats();
    assert_eq!(
        stats.dtls_unvalidated_dropped, injected,
        "every stranger datagram"
    );
    assert_eq!(net.peer(b).stats().dtls_unvalidated_dropped, 0);
}

// ---------------------------------------------------------------- Endpoint attacks

/// An `Endpoint` as a node of the virtual network; it keeps its peers' events.
struct Server {
    endpoint: Endpoint,
    events: Vec<(PeerId, Event)>,
}

impl Server {
    fn drain(&mut self) {
        while let Some(e) = self.endpoint.poll_event() {
            self.events.push(e);
        }
    }
}

impl Node for Server {
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        self.endpoint.handle_datagram(now, datagram);
        self.drain();
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.drain();
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let t = self.endpoint.poll_transmit(now, buf).map(|(_, t)| t);
        self.drain();
        t
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout()
    }
}

const SERVER: &str = "10.1.0.1:4000";

/// A client node and its server peer, with the credentials the client got in the answer
/// (a malicious client knows them: they are its own session's).
struct Session {
    client: NodeId,
    peer: PeerId,
    server_ufrag: String,
    server_pwd: String,
    candidates_forwarded: usize,
    events_forwarded: usize,
}

struct World {
    net: Network,
    server: NodeId,
}

impl World {
    fn new(seed: u64) -> World {
        let mut net = Network::new(seed);
        net.conditions.latency = Duration::from_millis(5);
        let server = net.add_node(
            "server",
            Server {
                endpoint: Endpoint::new(vec![(addr(SERVER), Protocol::Udp)]),
                events: Vec::new(),
            },
            &[addr(SERVER)],
        );
        World { net, server }
    }

    fn server(&mut self) -> &mut Server {
        let id = self.server;
        self.net.node_mut::<Server>(id).expect("server")
    }

    /// A client at `at` (publishing audio when `publishes`) negotiates with a new server
    /// peer; candidates are not exchanged yet (see `signal`).
    fn session(&mut self, name: &str, seed: u64, at: SocketAddr, publishes: bool) -> Session {
        let client = self
            .net
            .add_peer_with_config(name, seeded_config(seed), &[at]);
        let now = self.net.now();
        let pc = self.net.peer(client);
        if publishes {
            pc.add_track(MediaKind::Audio, vec![name.into()])
                .expect("track");
        } else {
            pc.add_transceiver(MediaKind::Audio, Default::default())
                .expect("transceiver");
        }
        let offer = pc.create_offer(OfferOptions::default()).expect("offer");
        pc.set_local_description(now, offer.clone()).expect("local");
        let server_pc = PeerConnection::new(seeded_config(seed + 1000), now).expect("pc");
        let peer = self.server().endpoint.insert(now, server_pc);
        let answer = self.answer(peer, offer);
        let (server_ufrag, server_pwd) = credentials(&answer);
        self.net
            .peer(client)
            .set_remote_description(now, answer)
            .expect("remote");
        Session {
            client,
            peer,
            server_ufrag,
            server_pwd,
            candidates_forwarded: 0,
            events_forwarded: 0,
        }
    }

    fn answer(&mut self, peer: PeerId, offer: SessionDescription) -> SessionDescription {
        let now = self.net.now();
        self.server()
            .endpoint
            .with_peer(peer, |p| {
                p.set_remote_description(now, offer)?;
                let answer = p.create_answer()?;
                p.set_local_description(now, answer.clone())?;
                Ok::<_, sansrtc::peer::NegotiationError>(answer)
            })
            .expect("peer")
            .expect("answer")
    }

    /// Forward the candidates both sides gathered since the last call; `extra` is added
    /// to what the client signals (the attacker's listed candidate).
    fn signal(&mut self, s: &mut Session, extra: Option<&str>) {
        let now = self.net.now();
        let from_client: Vec<_> = self
            .net
            .events_of(s.client)
            .filter_map(|e| match e {
                Event::IceCandidate(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let mut new: Vec<_> = from_client
            .get(s.candidates_forwarded..)
            .unwrap_or_default()
            .to_vec();
        s.candidates_forwarded = from_client.len();
        if let Some(extra) = extra {
            new.insert(
                0,
                IceCandidateInit {
                    candidate: extra.to_string(),
                    sdp_mid: Some("0".into()),
                    sdp_m_line_index: Some(0),
                    username_fragment: None,
                },
            );
        }
        let peer = s.peer;
        for c in new.into_iter().filter(|c| !c.candidate.is_empty()) {
            let _ = self
                .server()
                .endpoint
                .with_peer(peer, |p| p.add_ice_candidate(now, c));
        }
        let from_server: Vec<_> = self
            .server()
            .events
            .iter()
            .filter(|(id, _)| *id == peer)
            .filter_map(|(_, e)| match e {
                Event::IceCandidate(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        for c in from_server.get(s.events_forwarded..).unwrap_or_default() {
            let _ = self.net.peer(s.client).add_ice_candidate(now, c.clone());
        }
        s.events_forwarded = from_server.len();
    }

    fn server_connected(&mut self, peer: PeerId) -> bool {
        self.server()
            .endpoint
            .peer(peer)
            .is_some_and(|p| p.connection_state() == ConnectionState::Connected)
    }

    fn connect(&mut self, s: &mut Session, extra: Option<&str>) {
        for _ in 0..500 {
            self.signal(s, extra);
            let client_up =
                self.net.peer(s.client).connection_state() == ConnectionState::Connected;
            if client_up && self.server_connected(s.peer) {
                return;
            }
            self.net.run_for(Duration::from_millis(20));
        }
        panic!("not connected:\n{}", self.net.timeline_text());
    }

    /// RTP payloads each server peer received.
    fn received(&mut self, peer: PeerId) -> Vec<Bytes> {
        self.server()
            .events
            .iter()
            .filter(|(id, _)| *id == peer)
            .filter_map(|(_, e)| match e {
                Event::Rtp { packet, .. } => Some(packet.payload.clone()),
                _ => None,
            })
            .collect()
    }

    fn send_audio(&mut self, client: NodeId, n: u16) {
        let pc = self.net.peer(client);
        let track = pc.transceivers()[0].id;
        let packet = RtpPacket {
            payload_type: 111,
            sequence_number: n,
            timestamp: u32::from(n) * 960,
            marker: false,
            ssrc: 0,
            payload: Bytes::from(format!("victim {n}").into_bytes()),
        };
        pc.send_rtp(track, &packet).expect("send_rtp");
    }
}

fn credentials(answer: &SessionDescription) -> (String, String) {
    let find = |prefix: &str| {
        answer
            .sdp
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .expect("ice credentials")
            .trim()
            .to_string()
    };
    (find("a=ice-ufrag:"), find("a=ice-pwd:"))
}

/// The attacker's client lists the victim's address as its candidate: its server peer
/// checks that address for seconds while the victim publishes. Every victim packet
/// reaches the victim's server peer; the attacker's server peer gets none, and the route
/// stays the victim's.
#[test]
fn a_listed_candidate_does_not_hijack_the_victims_route() {
    let mut w = World::new(503);
    let victim_addr = addr("10.0.0.2:6000");
    let mut victim = w.session("victim", 503, victim_addr, true);
    w.connect(&mut victim, None);
    let listed = format!(
        "candidate:1 1 udp 2122260223 {} {} typ host",
        victim_addr.ip(),
        victim_addr.port()
    );
    let mut attacker = w.session("attacker", 603, addr("10.0.0.3:7000"), false);
    w.signal(&mut attacker, Some(&listed));
    w.net.start_capture();
    let mut sent = 0u16;
    for _ in 0..150 {
        w.signal(&mut attacker, None);
        w.send_audio(victim.client, sent);
        sent += 1;
        w.net.run_for(Duration::from_millis(20));
    }
    w.net.run_for(Duration::from_millis(200));
    let server = addr(SERVER);
    let checks_to_victim = w
        .net
        .captured()
        .iter()
        .filter(|c| c.from == server && c.to == victim_addr && c.data.first() == Some(&0))
        .filter(|c| {
            Message::parse(&c.data).is_ok_and(|m| {
                m.class == Class::Request
                    && m.username()
                        .is_some_and(|u| u.ends_with(&format!(":{}", attacker.server_ufrag)))
            })
        })
        .count();
    assert!(
        checks_to_victim > 0,
        "the attacker's peer checked the victim's address"
    );
    assert!(
        w.server_connected(attacker.peer),
        "the attacker's session works"
    );
    let victim_got = w.received(victim.peer);
    assert_eq!(
        victim_got.len(),
        usize::from(sent),
        "every victim packet reached the victim"
    );
    assert!(w.received(attacker.peer).is_empty());
    let owner = w.server().endpoint.route_owner(server, victim_addr);
    assert_eq!(owner, Some(victim.peer));
    let attacker_stats = w
        .server()
        .endpoint
        .peer(attacker.peer)
        .expect("peer")
        .stats();
    assert_eq!(
        attacker_stats.srtp_in.auth_failures, 0,
        "no victim SRTP reached it"
    );
    assert!(w.server_connected(victim.peer));
}

/// A binding request for a server peer, authenticated with its password (which the
/// client of that session knows).
fn authenticated_check(s: &Session, client_ufrag: &str, n: u32) -> Vec<u8> {
    let mut id = [0x5A; 12];
    id[..4].copy_from_slice(&n.to_be_bytes());
    Message::new(Class::Request, Method::BINDING, TransactionId(id))
        .with(Attribute::Username(format!(
            "{}:{client_ufrag}",
            s.server_ufrag
        )))
        .with(Attribute::Priority(1_000))
        .with(Attribute::IceControlling(7))
        .encode_to_vec(Some(s.server_pwd.as_bytes()), true)
}

/// The attacker knows its own session's password, so it can send its server peer a
/// check that passes MESSAGE-INTEGRITY with the victim's address as a spoofed source:
/// the peer answers it and counts the address as validated, but the route is the
/// victim's peer's, which is alive, so it is refused (and counted) and the victim's media
/// keeps reaching the victim.
#[test]
fn a_spoofed_authenticated_check_does_not_take_a_live_route() {
    let mut w = World::new(505);
    let server = addr(SERVER);
    let victim_addr = addr("10.0.0.2:6000");
    let mut victim = w.session("victim", 505, victim_addr, true);
    w.connect(&mut victim, None);
    let mut attacker = w.session("attacker", 605, addr("10.0.0.3:7000"), false);
    w.connect(&mut attacker, None);
    let client_ufrag = w.net.peer(attacker.client).local_ice_ufrag().to_string();
    let mut sent = 0u16;
    for i in 0..100u32 {
        let check = authenticated_check(&attacker, &client_ufrag, i);
        w.net.inject(victim_addr, server, check);
        w.send_audio(victim.client, sent);
        sent += 1;
        w.net.run_for(Duration::from_millis(20));
    }
    w.net.run_for(Duration::from_millis(200));
    let endpoint = &w.server().endpoint;
    assert!(endpoint
        .peer(attacker.peer)
        .expect("peer")
        .is_address_validated(server, victim_addr));
    assert_eq!(endpoint.route_owner(server, victim_addr), Some(victim.peer));
    assert!(
        endpoint.stats().routes_refused >= 100,
        "{:?}",
        endpoint.stats()
    );
    assert_eq!(w.received(victim.peer).len(), usize::from(sent));
    assert!(w.received(attacker.peer).is_empty());
    assert!(w.server_connected(victim.peer));
}

/// The attacker claims the victim's address first: before the victim connects, it
/// sends its own server peer authenticated checks with the victim's (future) address as
/// a spoofed source, so its peer owns that route on a request proof alone. When the
/// victim connects from there, the victim's server peer checks the victim and is answered
/// at that address, a firmer proof: the route moves to it, the victim connects and its
/// media reaches its own peer.
#[test]
fn a_route_claimed_by_spoofed_checks_goes_to_the_peer_answered_there() {
    let mut w = World::new(506);
    let server = addr(SERVER);
    let victim_addr = addr("10.0.0.2:6000");
    let mut attacker = w.session("attacker", 606, addr("10.0.0.3:7000"), false);
    w.connect(&mut attacker, None);
    let client_ufrag = w.net.peer(attacker.client).local_ice_ufrag().to_string();
    for i in 0..10u32 {
        let check = authenticated_check(&attacker, &client_ufrag, i);
        w.net.inject(victim_addr, server, check);
        w.net.run_for(Duration::from_millis(20));
    }
    assert_eq!(
        w.server().endpoint.route_owner(server, victim_addr),
        Some(attacker.peer),
        "the spoofed checks claimed the unowned address"
    );
    let mut victim = w.session("victim", 506, victim_addr, true);
    w.connect(&mut victim, None);
    let mut sent = 0u16;
    for _ in 0..50 {
        w.send_audio(victim.client, sent);
        sent += 1;
        w.net.run_for(Duration::from_millis(20));
    }
    w.net.run_for(Duration::from_millis(200));
    let endpoint = &w.server().endpoint;
    assert_eq!(endpoint.route_owner(server, victim_addr), Some(victim.peer));
    assert!(
        endpoint.stats().routes_taken_over >= 1,
        "{:?}",
        endpoint.stats()
    );
    assert_eq!(w.received(victim.peer).len(), usize::from(sent));
    assert!(w.received(attacker.peer).is_empty());
}

/// An authenticated client sends checks from hundreds of new source ports (spoofed, with
/// its own session's password) and restarts ICE several times: its server peer never owns
/// more than `MAX_ROUTES_PER_PEER` routes, and the victim keeps its route and its media.
#[test]
fn a_flood_of_source_ports_and_restarts_stays_within_the_route_bound() {
    let mut w = World::new(504);
    let server = addr(SERVER);
    let victim_addr = addr("10.0.0.2:6000");
    let mut victim = w.session("victim", 504, victim_addr, true);
    w.connect(&mut victim, None);
    let mut attacker = w.session("attacker", 604, addr("10.0.0.3:7000"), false);
    w.connect(&mut attacker, None);
    let mut port = 20_000u16;
    let mut max_routes = 0;
    for restart in 0..4u32 {
        if restart > 0 {
            // ICE restart: new credentials on both sides.
            let now = w.net.now();
            let pc = w.net.peer(attacker.client);
            pc.restart_ice();
            let offer = pc.create_offer(OfferOptions::default()).expect("offer");
            pc.set_local_description(now, offer.clone()).expect("local");
            let answer = w.answer(attacker.peer, offer);
            (attacker.server_ufrag, attacker.server_pwd) = credentials(&answer);
            w.net
                .peer(attacker.client)
                .set_remote_description(now, answer)
                .expect("remote");
            attacker.events_forwarded = w
                .server()
                .events
                .iter()
                .filter(|(id, e)| *id == attacker.peer && matches!(e, Event::IceCandidate(_)))
                .count();
            w.net.run_for(Duration::from_millis(50));
            w.signal(&mut attacker, None);
        }
        let client_ufrag = w.net.peer(attacker.client).local_ice_ufrag().to_string();
        for i in 0..150u32 {
            let request = authenticated_check(&attacker, &client_ufrag, restart * 1000 + i + 1);
            let from = SocketAddr::from(([10, 0, 0, 3], port));
            port += 1;
            w.net.inject(from, server, request);
            if i % 10 == 0 {
                w.send_audio(victim.client, (restart * 150 + i) as u16);
            }
            w.net.run_for(Duration::from_millis(2));
            let routes = w
                .server()
                .endpoint
                .route_count(attacker.peer)
                .expect("peer");
            max_routes = max_routes.max(routes);
        }
        w.net.run_for(Duration::from_millis(300));
    }
    assert!(max_routes <= MAX_ROUTES_PER_PEER, "{max_routes} routes");
    assert_eq!(
        max_routes, MAX_ROUTES_PER_PEER,
        "the flood filled the table"
    );
    let stats = w.server().endpoint.stats();
    assert!(
        stats.routes_evicted >= 600 - MAX_ROUTES_PER_PEER as u64,
        "{stats:?}"
    );
    assert_eq!(
        w.server().endpoint.route_owner(server, victim_addr),
        Some(victim.peer)
    );
    assert_eq!(
        w.received(victim.peer).len(),
        60,
        "the victim's media kept flowing"
    );
    assert!(w.server_connected(victim.peer));
    let attacker_addr = addr("10.0.0.3:7000");
    assert_eq!(
        w.server().endpoint.route_owner(server, attacker_addr),
        Some(attacker.peer),
        "the flooder's own selected route is never the one evicted"
    );
}
