//! The TURN client against the server model on a virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quickcheck::{QuickCheck, TestResult};

use super::server_model::ServerModel;
use super::*;
use crate::rng::Rng;
use crate::stun::{self, Class, Method};
use crate::transmit::Protocol;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct Net {
    now: Instant,
    start: Instant,
    client: TurnClient,
    server: ServerModel,
    client_addr: SocketAddr,
    /// Peer datagrams the client got out of the relay.
    received: Vec<(SocketAddr, Vec<u8>)>,
    /// Every datagram the client sent, in order.
    wire: Vec<Vec<u8>>,
    events: Vec<TurnEvent>,
    rng: Rng,
}

impl Net {
    fn new(password: &str, config: TurnConfig, transport: Protocol) -> Net {
        let now = Instant::now();
        let server_addr = addr("192.0.2.1:3478");
        let mut server = ServerModel::new(server_addr, addr("192.0.2.1:50000"), "alice", "secret");
        server.pad_channel_data = transport == Protocol::Tcp;
        let client = TurnClient::with_config(
            server_addr,
            transport,
            "alice",
            password,
            Rng::from_seed(7),
            now,
            config,
        );
        Net {
            now,
            start: now,
            client,
            server,
            client_addr: addr("10.0.0.2:40000"),
            received: Vec::new(),
            wire: Vec::new(),
            events: Vec::new(),
            rng: Rng::from_seed(99),
        }
    }

    fn default() -> Net {
        Net::new("secret", TurnConfig::default(), Protocol::Udp)
    }

    /// Exchange datagrams until both sides are quiet.
    fn pump(&mut self) {
        let mut buf = vec![0u8; 2048];
        for _ in 0..1000 {
            let mut progress = false;
            while let Some((to, n)) = self.client.poll_transmit(self.now, &mut buf) {
                assert_eq!(to, self.server.addr);
                self.wire.push(buf[..n].to_vec());
                self.server.handle(self.now, self.client_addr, &buf[..n]);
                progress = true;
            }
            while let Some(msg) = self.server.to_client.pop_front() {
                let from = self.server.addr;
                if let TurnInput::PeerData { peer, data } =
                    self.client.handle_datagram(self.now, from, &msg)
                {
                    self.received.push((peer, data.to_vec()));
                }
                progress = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if !progress {
                return;
            }
        }
        panic!("no quiescence");
    }

    /// Advance the virtual clock deadline by deadline until `end`.
    fn run_until(&mut self, end: Instant) {
        self.pump();
        while let Some(d) = self.client.poll_timeout() {
            if d > end {
                break;
            }
            assert!(d >= self.now, "deadline in the past");
            self.now = d;
            self.client.handle_timeout(self.now);
            self.pump();
        }
        self.now = self.now.max(end);
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    fn allocated(&mut self) -> SocketAddr {
        self.pump();
        assert!(self.client.is_allocated(), "events: {:?}", self.events);
        self.client.relayed_address().expect("relayed")
    }

    fn count_events(&self, f: impl Fn(&TurnEvent) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }

    fn peer_sends(&mut self, peer: SocketAddr, data: &[u8]) {
        self.server
            .relay_from_peer(self.now, peer, data, &mut self.rng);
        self.pump();
    }
}

#[test]
fn allocation_succeeds_after_the_challenge() {
    let mut net = Net::default();
    let relayed = net.allocated();
    assert_eq!(relayed, net.server.relayed);
    assert_eq!(net.client.mapped_address(), Some(net.client_addr));
    assert_eq!(
        net.events,
        vec![TurnEvent::Allocated {
            relayed,
            mapped: Some(net.client_addr),
            lifetime: Duration::from_secs(600),
        }]
    );
    // First Allocate without credentials (401), then one with them.
    let seen: Vec<(Method, bool)> = net
        .server
        .seen
        .iter()
        .map(|s| (s.method, s.authenticated))
        .collect();
    assert_eq!(
        seen,
        vec![(Method::ALLOCATE, false), (Method::ALLOCATE, true)]
    );
    // Requests carry a correct FINGERPRINT; the authenticated one REQUESTED-TRANSPORT UDP.
    for raw in &net.wire {
        assert!(stun::verify_fingerprint(raw));
    }
    let second = stun::Message::parse(&net.wire[1]).expect("parse");
    assert!(second
        .attributes
        .contains(&stun::Attribute::RequestedTransport(17)));
    assert_eq!(second.username(), Some("alice"));
    assert!(net.server.allocation.is_some());
    // Next deadline is the refresh at 3/4 of the lifetime.
    assert_eq!(
        net.client.poll_timeout(),
        Some(net.now + Duration::from_secs(450))
    );
}

#[test]
fn data_flows_through_send_indications_then_channel_data() {
    for transport in [Protocol::Udp, Protocol::Tcp] {
        let mut net = Net::new("secret", TurnConfig::default(), transport);
        net.allocated();
        let peer = addr("203.0.113.5:6000");
        assert_eq!(
            net.client.send_to(net.now, peer, b"x"),
            Err(TurnSendError::NoPermission)
        );
        net.client
            .create_permission(net.now, peer.ip())
            .expect("permission");
        net.pump();
        assert!(net.client.has_permission(peer.ip()));
        assert_eq!(
            net.count_events(|e| *e == TurnEvent::PermissionCreated(peer.ip())),
            1
        );

        // Before a channel: a Send indication carries the data.
        net.client
            .send_to(net.now, peer, b"hello peer")
            .expect("send");
        net.pump();
        let last = net.wire.last().expect("sent");
        assert_eq!(
            stun::peek_class_method(last),
            Some((Class::Indication, Method::SEND))
        );
        assert_eq!(net.server.to_peers, vec![(peer, b"hello peer".to_vec())]);
        net.peer_sends(peer, b"hello client");
        assert_eq!(net.received, vec![(peer, b"hello client".to_vec())]);

        // After ChannelBind: ChannelData both ways.
        let channel = net.client.bind_channel(net.now, peer).expect("bind");
        assert_eq!(channel, 0x4000);
        assert_eq!(net.client.bind_channel(net.now, peer), Ok(channel));
        net.pump();
        assert_eq!(net.client.channel_of(peer), Some(channel));
        assert_eq!(
            net.count_events(|e| *e == TurnEvent::ChannelBound { peer, channel }),
            1
        );
        net.client.send_to(net.now, peer, b"abcde").expect("send");
        net.pump();
        let last = net.wire.last().expect("sent");
        assert_eq!(&last[..4], &[0x40, 0x00, 0x00, 0x05]);
        let expected_len = if transport == Protocol::Tcp { 12 } else { 9 };
        assert_eq!(last.len(), expected_len, "{transport:?}");
        assert_eq!(net.server.to_peers.last(), Some(&(peer, b"abcde".to_vec())));
        net.peer_sends(peer, b"fgh");
        assert_eq!(net.received.last(), Some(&(peer, b"fgh".to_vec())));

        // wrap_to writes into the caller's buffer with no queue.
        let mut buf = [0u8; 64];
        let (to, n) = net
            .client
            .wrap_to(net.now, peer, b"zz", &mut buf)
            .expect("wrap");
        assert_eq!(
            (to, &buf[..4]),
            (net.server.addr, &[0x40, 0x00, 0x00, 0x02][..])
        );
        assert!(n >= 6);
        assert_eq!(
            net.client.wrap_to(net.now, peer, b"zz", &mut [0u8; 5]),
            Err(TurnSendError::BufferTooSmall)
        );
        // Another peer without a channel still goes by Send indication.
        let other = addr("203.0.113.6:7000");
        net.client
            .create_permission(net.now, other.ip())
            .expect("permission");
        net.pump();
        net.client.send_to(net.now, other, &[7; 33]).expect("send");
        net.pump();
        assert_eq!(net.server.to_peers.last(), Some(&(other, vec![7; 33])));
    }
}

#[test]
fn api_errors_before_allocation_and_on_family_mismatch() {
    let mut net = Net::default();
    let peer = addr("203.0.113.5:6000");
    assert_eq!(
        net.client.send_to(net.now, peer, b"x"),
        Err(TurnSendError::NotAllocated)
    );
    assert_eq!(
        net.client.create_permission(net.now, peer.ip()),
        Err(PermissionError::NotAllocated)
    );
    assert_eq!(
        net.client.bind_channel(net.now, peer),
        Err(PermissionError::NotAllocated)
    );
    net.allocated();
    assert_eq!(
        net.client.bind_channel(net.now, addr("[2001:db8::1]:5")),
        Err(PermissionError::FamilyMismatch)
    );
}

#[test]
fn refresh_keeps_the_allocation_alive_for_an_hour() {
    let config = TurnConfig {
        lifetime: Some(Duration::from_secs(60)),
        ..TurnConfig::default()
    };
    let mut net = Net::new("secret", config, Protocol::Udp);
    net.server.default_lifetime = 60;
    net.allocated();
    let peer = addr("203.0.113.5:6000");
    net.client.bind_channel(net.now, peer).expect("bind");
    net.pump();
    let hour = net.start + Duration::from_secs(3600);
    net.run_until(hour);
    assert!(net.client.is_allocated(), "{:?}", net.events);
    let refreshes = net.count_events(|e| matches!(e, TurnEvent::Refreshed { .. }));
    // One refresh every 45 s (3/4 of 60 s): 3600 / 45 = 80.
    assert_eq!(refreshes, 80);
    assert_eq!(net.server.count(Method::REFRESH), 80);
    assert!(net
        .server
        .seen
        .iter()
        .filter(|s| s.method == Method::REFRESH)
        .all(|s| s.authenticated && s.lifetime == Some(60)));
    let live = net.server.allocation.as_ref().expect("server allocation");
    assert!(live.expires > net.now);
    // Permission refreshed every 4 min, channel every 5 min, all still valid on the server.
    assert!(live.permissions.iter().all(|(_, e)| *e > net.now));
    assert!(live.channels.iter().all(|(_, _, e)| *e > net.now));
    assert_eq!(net.server.count(Method::CREATE_PERMISSION), 1 + 3600 / 240);
    assert_eq!(net.server.count(Method::CHANNEL_BIND), 1 + 3600 / 300);
    net.peer_sends(peer, b"still here");
    assert_eq!(net.received.last(), Some(&(peer, b"still here".to_vec())));
    assert!(!net
        .events
        .iter()
        .any(|e| matches!(e, TurnEvent::AllocationFailed(_))));
}

#[test]
fn stale_nonce_is_retried_with_the_new_nonce() {
    let mut net = Net::default();
    net.server.stale_nonces = 2;
    net.allocated();
    assert_eq!(net.server.count(Method::ALLOCATE), 4);
    // Later requests use the latest nonce: a stale refresh also recovers.
    net.server.stale_nonces = 1;
    net.run_for(Duration::from_secs(451));
    assert_eq!(
        net.count_events(|e| matches!(e, TurnEvent::Refreshed { .. })),
        1
    );
    assert_eq!(net.server.count(Method::REFRESH), 2);
}

#[test]
fn endless_stale_nonce_fails_after_a_bounded_number_of_retries() {
    let mut net = Net::default();
    net.server.stale_nonces = u32::MAX;
    net.run_for(Duration::from_secs(600));
    assert_eq!(
        net.events,
        vec![TurnEvent::AllocationFailed(TurnError::StaleNonceLoop)]
    );
    // 1 unauthenticated + 1 authenticated + 3 stale-nonce retries.
    assert_eq!(net.server.count(Method::ALLOCATE), 5);
    assert!(net.client.is_terminated());
}

#[test]
fn wrong_password_fails_once_without_a_retry_storm() {
    let mut net = Net::new("wrong", TurnConfig::default(), Protocol::Udp);
    net.run_for(Duration::from_secs(3600));
    assert_eq!(
        net.events,
        vec![TurnEvent::AllocationFailed(TurnError::Unauthorized)]
    );
    // The server's 401 to the authenticated Allocate carries no integrity (it cannot sign
    // with a key it does not share with us), so it is discarded as RFC 8489 9.2.5 says:
    // the request runs its retransmissions (7 in all), then fails with what came.
    assert_eq!(net.server.seen.len(), 2);
    assert_eq!(net.wire.len(), 1 + 7);
    assert_eq!(net.client.stats().unauthenticated_discarded, 7);
    assert_eq!(net.client.poll_timeout(), None);
    assert!(net.client.is_terminated());
}

#[test]
fn quota_error_is_reported() {
    let mut net = Net::default();
    net.server.quota_full = true;
    net.pump();
    assert_eq!(
        net.events,
        vec![TurnEvent::AllocationFailed(
            TurnError::AllocationQuotaReached
        )]
    );
}

#[test]
fn silent_server_fails_within_the_transaction_timeout() {
    let mut net = Net::default();
    net.server.silent = true;
    net.run_for(Duration::from_secs(600));
    assert_eq!(
        net.events,
        vec![TurnEvent::AllocationFailed(TurnError::Timeout)]
    );
    // Rc = 7 requests, then failure at 250 ms · (1+2+4+8) + 3 s · 2 + 4 s = 13.75 s.
    assert_eq!(net.wire.len(), 7);
    assert_eq!(net.client.stats().retransmits, 6);
    assert_eq!(net.client.poll_timeout(), None);
}

#[test]
fn stream_transport_does_not_retransmit() {
    let mut net = Net::new("secret", TurnConfig::default(), Protocol::Tcp);
    net.server.silent = true;
    let mut failed_at = None;
    let end = net.start + Duration::from_secs(100);
    while let Some(d) = net.client.poll_timeout().filter(|d| *d <= end) {
        net.now = d;
        net.client.handle_timeout(d);
        net.pump();
        if failed_at.is_none() && !net.events.is_empty() {
            failed_at = Some(d - net.start);
        }
    }
    assert_eq!(net.wire.len(), 1);
    assert_eq!(failed_at, Some(TurnConfig::default().stream_timeout));
}

#[test]
fn garbage_answers_fail_within_bounded_time() {
    let mut net = Net::default();
    net.server.garbage = Some(Rng::from_seed(5));
    net.run_for(Duration::from_secs(600));
    assert_eq!(
        net.events,
        vec![TurnEvent::AllocationFailed(TurnError::Timeout)]
    );
    assert_eq!(net.wire.len(), 7);
    assert!(net.client.stats().dropped >= 7);
}

#[test]
fn lost_allocation_on_refresh_is_reported() {
    let mut net = Net::default();
    net.allocated();
    net.server.allocation = None;
    net.run_for(Duration::from_secs(451));
    assert_eq!(
        net.events.last(),
        Some(&TurnEvent::AllocationFailed(TurnError::AllocationMismatch))
    );
    assert!(net.client.relayed_address().is_none());
}

#[test]
fn close_deallocates_with_lifetime_zero() {
    let mut net = Net::default();
    net.allocated();
    net.client.close(net.now);
    net.pump();
    let last = net.server.seen.last().expect("refresh");
    assert_eq!(
        (last.method, last.authenticated, last.lifetime),
        (Method::REFRESH, true, Some(0))
    );
    assert!(net.server.allocation.is_none());
    assert_eq!(net.events.last(), Some(&TurnEvent::Deallocated));
    assert!(net.client.is_terminated());
    assert_eq!(net.client.poll_timeout(), None);
    // A silent server: Deallocated after the transaction times out.
    let mut net = Net::default();
    net.allocated();
    net.server.silent = true;
    net.client.close(net.now);
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.events.last(), Some(&TurnEvent::Deallocated));
}

#[test]
fn forged_success_with_a_bad_integrity_is_dropped() {
    let mut net = Net::default();
    // Let the challenge happen but hold the server's success back.
    let mut buf = [0u8; 1500];
    let (_, n) = net
        .client
        .poll_transmit(net.now, &mut buf)
        .expect("allocate");
    net.server.handle(net.now, net.client_addr, &buf[..n]);
    let challenge = net.server.to_client.pop_front().expect("401");
    net.client
        .handle_datagram(net.now, net.server.addr, &challenge);
    let (_, n) = net
        .client
        .poll_transmit(net.now, &mut buf)
        .expect("authenticated");
    let req = stun::Message::parse(&buf[..n]).expect("parse");
    let forged = stun::Message::new(Class::Success, Method::ALLOCATE, req.transaction_id)
        .with(stun::Attribute::XorRelayedAddress(addr("198.51.100.66:1")))
        .encode_to_vec(Some(b"not the key"), true);
    assert_eq!(
        net.client
            .handle_datagram(net.now, net.server.addr, &forged),
        TurnInput::Consumed
    );
    assert!(!net.client.is_allocated());
    assert_eq!(net.client.stats().dropped, 1);
    // From another address it is not even looked at.
    assert_eq!(
        net.client
            .handle_datagram(net.now, addr("198.51.100.66:3478"), &forged),
        TurnInput::NotTurn
    );
    // The real answer still works.
    net.server.handle(net.now, net.client_addr, &buf[..n]);
    net.pump();
    assert_eq!(net.client.relayed_address(), Some(net.server.relayed));
}

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let mut net = Net::default();
        net.allocated();
        net.client
            .bind_channel(net.now, addr("203.0.113.5:6000"))
            .expect("bind");
        net.run_for(Duration::from_secs(1000));
        net.wire
    };
    assert_eq!(run(), run());
}

#[test]
fn quickcheck_arbitrary_datagrams_never_panic() {
    fn prop(datagrams: Vec<Vec<u8>>, stun_like: bool) -> TestResult {
        let mut net = Net::default();
        net.allocated();
        let peer = addr("203.0.113.5:6000");
        let _ = net.client.bind_channel(net.now, peer);
        net.pump();
        let server = net.server.addr;
        for mut d in datagrams {
            if stun_like && d.len() >= 20 {
                let body = ((d.len() - 20) / 4 * 4) as u16;
                d.truncate(20 + usize::from(body));
                d[0] &= 0x01;
                d[2..4].copy_from_slice(&body.to_be_bytes());
                d[4..8].copy_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
            }
            if let TurnInput::PeerData { data, .. } =
                net.client.handle_datagram(net.now, server, &d)
            {
                if data.len() > d.len() {
                    return TestResult::failed();
                }
            }
            net.client.handle_timeout(net.now);
        }
        net.pump();
        // Garbage never takes the allocation down.
        TestResult::from_bool(net.client.is_allocated())
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Vec<Vec<u8>>, bool) -> TestResult);
}

#[test]
fn mutated_server_answers_never_panic() {
    // Flip bytes of every real server answer of a session, one at a time.
    let mut net = Net::default();
    net.allocated();
    let mut answers = Vec::new();
    let mut model = ServerModel::new(net.server.addr, net.server.relayed, "alice", "secret");
    for raw in &net.wire {
        model.handle(net.now, net.client_addr, raw);
    }
    answers.extend(model.to_client.drain(..));
    let server = net.server.addr;
    for a in &answers {
        for i in 0..a.len() {
            let mut bad = a.clone();
            bad[i] ^= 0x5A;
            let mut c = TurnClient::new(
                server,
                Protocol::Udp,
                "alice",
                "secret",
                Rng::from_seed(7),
                net.now,
            );
            let _ = c.handle_datagram(net.now, server, &bad);
            c.handle_timeout(net.now);
        }
    }
    assert!(!answers.is_empty());
}

#[test]
fn a_zero_lifetime_grant_does_not_cause_a_refresh_storm() {
    let mut net = Net::default();
    net.server.default_lifetime = 0;
    net.run_for(Duration::from_secs(60));
    assert!(
        net.server.seen.len() <= 3,
        "{} requests",
        net.server.seen.len()
    );
    assert_eq!(
        net.events.last(),
        Some(&TurnEvent::AllocationFailed(TurnError::Timeout))
    );
}

#[test]
fn lost_requests_are_retransmitted() {
    let mut net = Net::default();
    net.server.drop_requests = 3;
    net.run_for(Duration::from_secs(5));
    assert!(net.client.is_allocated(), "{:?}", net.events);
    assert_eq!(net.client.stats().retransmits, 3);
}

#[test]
fn a_challenge_without_realm_and_nonce_fails_clearly() {
    let mut net = Net::default();
    net.server.bare_challenge = true;
    net.run_for(Duration::from_secs(60));
    assert_eq!(
        net.events,
        vec![TurnEvent::AllocationFailed(TurnError::BadChallenge)]
    );
    assert_eq!(net.wire.len(), 1);
}

#[test]
fn forbidden_peer_fails_its_permission_and_channel_only() {
    let mut net = Net::default();
    net.allocated();
    let bad = addr("203.0.113.9:1");
    let good = addr("203.0.113.5:6000");
    net.server.forbidden_peer = Some(bad.ip());
    net.client
        .create_permission(net.now, bad.ip())
        .expect("request");
    net.client.bind_channel(net.now, good).expect("request");
    net.pump();
    assert_eq!(
        net.count_events(|e| *e == TurnEvent::PermissionFailed(bad.ip(), TurnError::Forbidden)),
        1
    );
    assert_eq!(
        net.client.send_to(net.now, bad, b"x"),
        Err(TurnSendError::NoPermission)
    );
    assert!(net.client.is_allocated());
    assert_eq!(net.client.channel_of(good), Some(0x4000));
    // A failed ChannelBind: the peer keeps its permission and Send indications.
    let other = addr("203.0.113.9:2");
    net.server.forbidden_peer = Some(other.ip());
    net.client.bind_channel(net.now, other).expect("request");
    net.pump();
    assert!(net.events.iter().any(
        |e| matches!(e, TurnEvent::ChannelBindFailed(p, TurnError::Forbidden) if *p == other)
    ));
    assert_eq!(net.client.channel_of(other), None);
}

#[test]
fn queues_are_bounded() {
    let mut net = Net::default();
    net.allocated();
    let peer = addr("203.0.113.5:6000");
    net.client
        .create_permission(net.now, peer.ip())
        .expect("permission");
    net.pump();
    let results: Vec<_> = (0..1000)
        .map(|_| net.client.send_to(net.now, peer, &[1; 100]))
        .collect();
    let queued = results.iter().filter(|r| r.is_ok()).count();
    assert!((100..1000).contains(&queued), "{queued}");
    assert!(results[queued..]
        .iter()
        .all(|r| *r == Err(TurnSendError::QueueFull)));
    // Permissions and channels are bounded too.
    for i in 0..(MAX_PERMISSIONS as u32 + 10) {
        let ip = std::net::Ipv4Addr::from(0xC633_6400 + i).into();
        let r = net.client.create_permission(net.now, ip);
        assert_eq!(r.is_err(), i as usize >= MAX_PERMISSIONS - 1, "{i}");
    }
}

#[test]
fn ipv6_relay_carries_data_both_ways() {
    let mut net = Net::default();
    net.server.relayed = addr("[2001:db8::1]:50000");
    let relayed = net.allocated();
    assert_eq!(relayed, addr("[2001:db8::1]:50000"));
    let peer = addr("[2001:db8:5::9]:6000");
    assert_eq!(
        net.client
            .create_permission(net.now, "203.0.113.5".parse().expect("ip")),
        Err(PermissionError::FamilyMismatch)
    );
    net.client
        .create_permission(net.now, peer.ip())
        .expect("permission");
    net.pump();
    net.client.send_to(net.now, peer, b"v6").expect("send");
    net.pump();
    assert_eq!(net.server.to_peers, vec![(peer, b"v6".to_vec())]);
    net.peer_sends(peer, b"back");
    assert_eq!(net.received, vec![(peer, b"back".to_vec())]);
    net.client.bind_channel(net.now, peer).expect("bind");
    net.pump();
    net.peer_sends(peer, b"channel");
    assert_eq!(net.received.last(), Some(&(peer, b"channel".to_vec())));
}

#[test]
fn other_stun_responses_from_the_server_are_passed_on() {
    let mut net = Net::default();
    net.allocated();
    // ICE's srflx Binding response from the same server, and an unknown transaction.
    let binding = stun::Message::new(
        Class::Success,
        Method::BINDING,
        stun::TransactionId([1; 12]),
    )
    .with(stun::Attribute::XorMappedAddress(net.client_addr))
    .encode_to_vec(None, true);
    let server = net.server.addr;
    assert_eq!(
        net.client.handle_datagram(net.now, server, &binding),
        TurnInput::NotTurn
    );
    let unknown = stun::Message::new(
        Class::Success,
        Method::REFRESH,
        stun::TransactionId([2; 12]),
    )
    .encode_to_vec(None, true);
    assert_eq!(
        net.client.handle_datagram(net.now, server, &unknown),
        TurnInput::NotTurn
    );
    // A ChannelData for a channel never bound is dropped, not passed on.
    assert_eq!(
        net.client
            .handle_datagram(net.now, server, &[0x40, 0x07, 0, 1, 9]),
        TurnInput::Consumed
    );
    assert!(net.client.is_allocated());
}

#[test]
fn debug_output_hides_the_password() {
    let mut net = Net::default();
    net.allocated();
    let shown = format!("{:?}", net.client);
    assert!(shown.contains("alice"));
    assert!(!shown.contains("secret"));
}

#[test]
fn lost_responses_are_recovered_by_retransmission() {
    let mut net = Net::default();
    // Lose the 401 and then the success: the server answers the retransmissions again.
    net.server.lose_answers = [true, false, true, false].into();
    net.run_for(Duration::from_secs(5));
    assert!(net.client.is_allocated(), "{:?}", net.events);
    assert_eq!(net.client.stats().retransmits, 2);
    assert_eq!(
        net.count_events(|e| matches!(e, TurnEvent::Allocated { .. })),
        1
    );
    // A duplicated success (late retransmission answer) changes nothing.
    let peer = addr("203.0.113.5:6000");
    net.client
        .create_permission(net.now, peer.ip())
        .expect("permission");
    let mut buf = [0u8; 1500];
    let (_, n) = net
        .client
        .poll_transmit(net.now, &mut buf)
        .expect("request");
    net.server.handle(net.now, net.client_addr, &buf[..n]);
    let answer = net.server.to_client.pop_front().expect("answer");
    let server = net.server.addr;
    assert_eq!(
        net.client.handle_datagram(net.now, server, &answer),
        TurnInput::Consumed
    );
    assert_eq!(
        net.client.handle_datagram(net.now, server, &answer),
        TurnInput::NotTurn
    );
    assert!(net.client.has_permission(peer.ip()));
}

impl Net {
    /// The client's next datagram, taken off the wire before the server sees it.
    fn intercept(&mut self) -> Vec<u8> {
        let mut buf = vec![0u8; 2048];
        let (_, n) = self
            .client
            .poll_transmit(self.now, &mut buf)
            .expect("a request");
        self.wire.push(buf[..n].to_vec());
        buf[..n].to_vec()
    }

    /// Hand a datagram from the server's address to the client.
    fn hand_to_client(&mut self, data: &[u8]) {
        let from = self.server.addr;
        assert_eq!(
            self.client.handle_datagram(self.now, from, data),
            TurnInput::Consumed
        );
        while let Some(e) = self.client.poll_event() {
            self.events.push(e);
        }
    }

    /// Let the server answer `request`, then exchange until quiet.
    fn deliver(&mut self, request: &[u8]) {
        self.server.handle(self.now, self.client_addr, request);
        self.pump();
    }

    /// Move the clock to the client's next deadline and fire it, without pumping.
    fn next_deadline(&mut self) {
        let d = self.client.poll_timeout().expect("a deadline");
        self.now = self.now.max(d);
        self.client.handle_timeout(self.now);
    }
}

/// An error response for `request` as an attacker on the path forges it: the right
/// transaction id, no MESSAGE-INTEGRITY (it does not know the key).
fn forged_error(request: &[u8], code: u16, challenge: Option<(&str, &str)>) -> Vec<u8> {
    let req = stun::Message::parse(request).expect("request");
    let mut m = stun::Message::new(Class::Error, req.method, req.transaction_id).with(
        stun::Attribute::ErrorCode {
            code,
            reason: "forged".into(),
        },
    );
    if let Some((realm, nonce)) = challenge {
        m = m
            .with(stun::Attribute::Realm(realm.into()))
            .with(stun::Attribute::Nonce(nonce.into()));
    }
    m.encode_to_vec(None, true)
}

fn failures(net: &Net) -> usize {
    net.count_events(|e| {
        matches!(
            e,
            TurnEvent::AllocationFailed(_)
                | TurnEvent::PermissionFailed(..)
                | TurnEvent::ChannelBindFailed(..)
        )
    })
}

#[test]
fn unauthenticated_errors_never_fail_an_authenticated_request() {
    for code in [400, 401, 403, 437, 486, 508, 500] {
        let mut net = Net::default();
        // Allocate: the challenge is taken, a forged error to the authenticated retry is not.
        let first = net.intercept();
        net.server.handle(net.now, net.client_addr, &first);
        let challenge = net.server.to_client.pop_front().expect("401");
        net.hand_to_client(&challenge);
        let allocate = net.intercept();
        net.hand_to_client(&forged_error(&allocate, code, None));
        net.deliver(&allocate);
        let relayed = net.allocated();
        // CreatePermission and ChannelBind.
        let peer = addr("203.0.113.5:6000");
        net.client
            .create_permission(net.now, peer.ip())
            .expect("ok");
        let permission = net.intercept();
        net.hand_to_client(&forged_error(&permission, code, None));
        net.deliver(&permission);
        net.client.bind_channel(net.now, peer).expect("ok");
        let bind = net.intercept();
        net.hand_to_client(&forged_error(&bind, code, None));
        net.deliver(&bind);
        // Refresh, at 3/4 of the lifetime (the first deadline after the permission's).
        while net.count_events(|e| matches!(e, TurnEvent::Refreshed { .. })) == 0 {
            net.next_deadline();
            let request = net.intercept();
            net.hand_to_client(&forged_error(&request, code, None));
            net.deliver(&request);
        }
        assert_eq!(failures(&net), 0, "code {code}: {:?}", net.events);
        assert_eq!(net.client.relayed_address(), Some(relayed));
        assert!(net.client.has_permission(peer.ip()));
        assert_eq!(net.client.channel_of(peer), Some(0x4000));
        assert!(
            net.client.stats().unauthenticated_discarded >= 4,
            "code {code}"
        );
    }
}

#[test]
fn a_forged_stale_nonce_can_change_the_nonce_only() {
    let mut net = Net::default();
    net.allocated();
    let realm = net.server.realm.clone();
    net.next_deadline();
    let refresh = net.intercept();
    // Another realm would change the key: only the 401 challenge may set it.
    net.hand_to_client(&forged_error(&refresh, 438, Some(("evil.example", "n1"))));
    assert_eq!(net.client.stats().unauthenticated_discarded, 1);
    assert!(net
        .client
        .poll_transmit(net.now, &mut [0u8; 2048])
        .is_none());
    // The same realm with a new nonce: retried with it, as RFC 8489 9.2.5 requires.
    net.hand_to_client(&forged_error(&refresh, 438, Some((&realm, "forged-nonce"))));
    let retry = net.intercept();
    let parsed = stun::Message::parse(&retry).expect("retry");
    assert_eq!(parsed.nonce(), Some("forged-nonce"));
    assert_eq!(parsed.realm(), Some(realm.as_str()));
    // The forged nonce goes into that retry only: a request started meanwhile carries
    // the nonce the server last confirmed.
    let confirmed = stun::Message::parse(&refresh).expect("refresh");
    let peer = addr("203.0.113.5:6000");
    net.client
        .create_permission(net.now, peer.ip())
        .expect("ok");
    let permission = net.intercept();
    let parsed = stun::Message::parse(&permission).expect("request");
    assert_eq!(parsed.nonce(), confirmed.nonce());
    // The server's own answer to the first request still completes the refresh.
    net.server.handle(net.now, net.client_addr, &refresh);
    let answer = net.server.to_client.pop_front().expect("success");
    net.hand_to_client(&answer);
    assert_eq!(
        net.count_events(|e| matches!(e, TurnEvent::Refreshed { .. })),
        1
    );
    net.deliver(&retry);
    net.deliver(&permission);
    assert!(net.client.has_permission(peer.ip()));
    net.run_for(Duration::from_secs(1200));
    assert_eq!(failures(&net), 0, "{:?}", net.events);
    assert!(net.client.is_allocated());
}

#[test]
fn forged_stale_nonces_beyond_the_retries_are_discarded() {
    let mut net = Net::default();
    net.allocated();
    net.next_deadline();
    let first = net.intercept();
    let mut request = first.clone();
    for i in 0..10 {
        net.hand_to_client(&forged_error(
            &request,
            438,
            Some((&net.server.realm.clone(), &format!("n{i}"))),
        ));
        let mut buf = vec![0u8; 2048];
        if let Some((_, n)) = net.client.poll_transmit(net.now, &mut buf) {
            request = buf[..n].to_vec();
        }
    }
    assert_eq!(net.client.stats().unauthenticated_discarded, 10 - 3);
    assert_eq!(failures(&net), 0);
    // The server's real answer to the first request (sent with the valid nonce) still
    // completes the refresh: the retries keep the earlier ids.
    net.deliver(&first);
    assert_eq!(
        net.count_events(|e| matches!(e, TurnEvent::Refreshed { .. })),
        1
    );
}

#[test]
fn a_request_answered_only_by_forgeries_times_out_naming_them() {
    let mut net = Net::default();
    net.allocated();
    net.server.silent = true;
    net.next_deadline();
    let refresh = net.intercept();
    net.hand_to_client(&forged_error(&refresh, 437, None));
    assert!(net.client.is_allocated());
    net.run_for(Duration::from_secs(60));
    assert_eq!(
        net.events.last(),
        Some(&TurnEvent::AllocationFailed(
            TurnError::UnauthenticatedError { code: 437 }
        ))
    );
}
