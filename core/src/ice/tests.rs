//! Agents wired back to back through an in-memory queue with virtual time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::config::IceConfig;
use crate::rng::Rng;
use crate::stun::{Attribute, Class, Message, Method, TransactionId};
use crate::transmit::Protocol;

struct Net {
    now: Instant,
    agents: Vec<IceAgent>,
    addrs: Vec<SocketAddr>,
    /// (deliver at, to agent, from, to addr, bytes)
    flight: VecDeque<(Instant, usize, SocketAddr, SocketAddr, Vec<u8>)>,
    cut: bool,
    log: Vec<(usize, Vec<u8>)>,
    events: Vec<Vec<IceEvent>>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

impl Net {
    fn new(a: IceAgent, b: IceAgent, addr_a: SocketAddr, addr_b: SocketAddr) -> Net {
        Net {
            now: Instant::now(),
            agents: vec![a, b],
            addrs: vec![addr_a, addr_b],
            flight: VecDeque::new(),
            cut: false,
            log: Vec::new(),
            events: vec![Vec::new(), Vec::new()],
        }
    }

    fn exchange_candidates(&mut self) {
        let now = self.now;
        for i in 0..2 {
            let a = self.addrs[i];
            self.agents[i].add_local_address(now, a, Protocol::Udp);
            self.agents[i].start_gathering(now);
        }
        let creds: Vec<IceCredentials> = self
            .agents
            .iter()
            .map(|a| a.local_credentials().clone())
            .collect();
        for i in 0..2 {
            let o = 1 - i;
            self.agents[i].set_remote_credentials(now, &creds[o].ufrag, &creds[o].pwd);
        }
        self.drain_events();
        for i in 0..2 {
            let o = 1 - i;
            let cands: Vec<Candidate> = self.events[o]
                .iter()
                .filter_map(|e| match e {
                    IceEvent::LocalCandidate(c) => Some(c.clone()),
                    _ => None,
                })
                .collect();
            for c in cands {
                let text = c.to_string();
                self.agents[i]
                    .add_remote_candidate(now, Candidate::parse(&text).expect("candidate"));
            }
        }
    }

    fn drain_events(&mut self) {
        for i in 0..2 {
            while let Some(e) = self.agents[i].poll_event() {
                self.events[i].push(e);
            }
        }
    }

    fn step(&mut self) -> bool {
        let mut buf = [0u8; 1500];
        for i in 0..2 {
            while let Some(t) = self.agents[i].poll_transmit(self.now, &mut buf) {
                let data = buf[..t.len].to_vec();
                self.log.push((i, data.clone()));
                if self.cut {
                    continue;
                }
                let to = self.addrs.iter().position(|a| *a == t.remote);
                if let Some(to) = to {
                    self.flight.push_back((
                        self.now + Duration::from_millis(10),
                        to,
                        t.local,
                        t.remote,
                        data,
                    ));
                }
            }
        }
        self.drain_events();
        let next_packet = self.flight.front().map(|f| f.0);
        let next_timer = self.agents.iter().filter_map(|a| a.poll_timeout()).min();
        let next = match (next_packet, next_timer) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return false,
            },
        };
        self.now = self.now.max(next);
        while self.flight.front().is_some_and(|f| f.0 <= self.now) {
            let Some((_, to, from, dst, data)) = self.flight.pop_front() else {
                break;
            };
            self.agents[to].handle_stun(self.now, dst, from, Protocol::Udp, &data);
        }
        for a in &mut self.agents {
            if a.poll_timeout().is_some_and(|t| t <= self.now) {
                a.handle_timeout(self.now);
            }
        }
        self.drain_events();
        true
    }

    fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if cond(self) {
                return true;
            }
            if !self.step() {
                return cond(self);
            }
        }
        cond(self)
    }

    fn connected(&self) -> bool {
        self.agents.iter().all(|a| {
            a.connection_state() == IceConnectionState::Connected && a.selected_pair().is_some()
        })
    }
}

fn agent(seed: u64, controlling: bool) -> IceAgent {
    let mut a = IceAgent::new(&IceConfig::default(), Rng::from_seed(seed), false);
    a.set_controlling(controlling);
    a
}

#[test]
fn two_agents_connect() {
    let mut net = Net::new(
        agent(1, true),
        agent(2, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(5), Net::connected));
    let a = net.agents[0].selected_pair().expect("pair");
    assert_eq!(
        (a.local, a.remote),
        (addr("10.0.0.1:5000"), addr("10.0.0.2:6000"))
    );
    let b = net.agents[1].selected_pair().expect("pair");
    assert_eq!(
        (b.local, b.remote),
        (addr("10.0.0.2:6000"), addr("10.0.0.1:5000"))
    );
    // Gathering completed and the host candidate was announced.
    assert!(net.events[0].contains(&IceEvent::GatheringStateChange(IceGatheringState::Complete)));
    // Consent keeps it connected for a long quiet time.
    net.run_until(Duration::from_secs(120), |_| false);
    assert!(
        net.connected(),
        "{:?} {:?} {:?}",
        net.agents[0].connection_state(),
        net.agents[1].connection_state(),
        net.agents[0].stats()
    );
}

#[test]
fn role_conflict_resolves() {
    let mut net = Net::new(
        agent(3, true),
        agent(4, true),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(10), Net::connected));
    assert_ne!(
        net.agents[0].is_controlling(),
        net.agents[1].is_controlling()
    );
    assert!(
        net.agents
            .iter()
            .map(|a| a.stats().role_conflicts)
            .sum::<u64>()
            > 0
    );
    // Both controlled also resolves.
    let mut net = Net::new(
        agent(5, false),
        agent(6, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(10), Net::connected));
    assert_ne!(
        net.agents[0].is_controlling(),
        net.agents[1].is_controlling()
    );
}

#[test]
fn consent_loss_disconnects_then_fails() {
    let mut net = Net::new(
        agent(7, true),
        agent(8, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(5), Net::connected));
    net.cut = true;
    let cut_at = net.now;
    assert!(
        net.run_until(Duration::from_secs(15), |n| n.agents[0].connection_state()
            == IceConnectionState::Disconnected)
    );
    assert!(
        net.run_until(Duration::from_secs(40), |n| n.agents[0].connection_state()
            == IceConnectionState::Failed)
    );
    let failed_after = net.now - cut_at;
    assert!(
        failed_after >= Duration::from_secs(25) && failed_after <= Duration::from_secs(37),
        "{failed_after:?}"
    );
}

#[test]
fn brief_loss_recovers() {
    let mut net = Net::new(
        agent(9, true),
        agent(10, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(5), Net::connected));
    net.cut = true;
    assert!(
        net.run_until(Duration::from_secs(15), |n| n.agents[0].connection_state()
            == IceConnectionState::Disconnected)
    );
    net.cut = false;
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.agents[0].connection_state()
            == IceConnectionState::Connected)
    );
}

#[test]
fn bad_integrity_and_unknown_ufrag_are_dropped_not_answered() {
    let mut a = agent(11, false);
    let now = Instant::now();
    let local = addr("10.0.0.1:5000");
    let remote = addr("10.0.0.9:9999");
    a.add_local_address(now, local, Protocol::Udp);
    a.set_remote_credentials(now, "rem", "remotepasswordremotepass");
    let ufrag = a.local_credentials().ufrag.clone();
    let mut rng = Rng::from_seed(1);
    let req = |user: String| {
        Message::new(
            Class::Request,
            Method::BINDING,
            TransactionId::random(&mut Rng::from_seed(2)),
        )
        .with(Attribute::Username(user))
        .with(Attribute::Priority(1))
        .with(Attribute::IceControlling(5))
    };
    let wrong_key = req(format!("{ufrag}:rem")).encode_to_vec(Some(b"not-the-password"), true);
    assert!(a.handle_stun(now, local, remote, Protocol::Udp, &wrong_key));
    let unknown = req("someoneelse:rem".into())
        .encode_to_vec(Some(a.local_credentials().pwd.clone().as_bytes()), true);
    assert!(a.handle_stun(now, local, remote, Protocol::Udp, &unknown));
    let no_fp = req(format!("{ufrag}:rem"))
        .encode_to_vec(Some(a.local_credentials().pwd.clone().as_bytes()), false);
    assert!(a.handle_stun(now, local, remote, Protocol::Udp, &no_fp));
    // A FINGERPRINT that is present but wrong (the CRC is the last attribute, after
    // MESSAGE-INTEGRITY, so the integrity itself still verifies).
    let mut bad_fp = req(format!("{ufrag}:rem"))
        .encode_to_vec(Some(a.local_credentials().pwd.clone().as_bytes()), true);
    let last = bad_fp.len() - 1;
    bad_fp[last] ^= 0x01;
    assert!(a.handle_stun(now, local, remote, Protocol::Udp, &bad_fp));
    let mut buf = [0u8; 1500];
    assert!(a.poll_transmit(now, &mut buf).is_none(), "nothing answered");
    let s = a.stats();
    assert_eq!(
        (
            s.dropped_bad_integrity,
            s.dropped_unknown_ufrag,
            s.dropped_bad_fingerprint
        ),
        (1, 1, 2)
    );
    // A good one is answered, with a response whose integrity uses our password.
    let good = req(format!("{ufrag}:rem"))
        .encode_to_vec(Some(a.local_credentials().pwd.clone().as_bytes()), true);
    assert!(a.handle_stun(now, local, remote, Protocol::Udp, &good));
    let t = a.poll_transmit(now, &mut buf).expect("answered");
    assert!(crate::stun::verify_integrity(
        &buf[..t.len],
        a.local_credentials().pwd.as_bytes()
    ));
    let resp = Message::parse(&buf[..t.len]).expect("response");
    assert_eq!(resp.xor_mapped_address(), Some(remote));
    let _ = rng.next_u64();
}

#[test]
fn restart_gives_new_credentials_and_reconnects() {
    let mut net = Net::new(
        agent(12, true),
        agent(13, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(5), Net::connected));
    let old = net.agents[0].local_credentials().clone();
    let now = net.now;
    net.agents[0].restart(now);
    net.agents[1].restart(now);
    assert_ne!(net.agents[0].local_credentials(), &old);
    net.events = vec![Vec::new(), Vec::new()];
    let creds: Vec<IceCredentials> = net
        .agents
        .iter()
        .map(|a| a.local_credentials().clone())
        .collect();
    for i in 0..2 {
        net.agents[i].set_remote_credentials(now, &creds[1 - i].ufrag, &creds[1 - i].pwd);
    }
    net.drain_events();
    for i in 0..2 {
        let cands: Vec<Candidate> = net.events[1 - i]
            .iter()
            .filter_map(|e| match e {
                IceEvent::LocalCandidate(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        assert!(!cands.is_empty(), "host candidates announced again");
        for c in cands {
            net.agents[i].add_remote_candidate(now, c);
        }
    }
    assert!(net.run_until(Duration::from_secs(5), Net::connected));
}

#[test]
fn lite_agent_connects_with_full_agent() {
    let full = agent(14, false);
    let lite = IceAgent::new(&IceConfig::default(), Rng::from_seed(15), true);
    let mut net = Net::new(full, lite, addr("10.0.0.1:5000"), addr("10.0.0.2:6000"));
    net.agents[0].set_remote_lite(true);
    net.exchange_candidates();
    assert!(net.agents[0].is_controlling());
    assert!(!net.agents[1].is_controlling());
    assert!(net.run_until(Duration::from_secs(5), Net::connected));
    // The lite agent never sent a request of its own.
    assert!(net
        .log
        .iter()
        .filter(|(who, _)| *who == 1)
        .all(|(_, d)| Message::parse(d)
            .map(|m| m.class != Class::Request)
            .unwrap_or(true)));
}

#[test]
fn mdns_candidates_surface_as_events() {
    let mut a = agent(16, true);
    let now = Instant::now();
    let c =
        Candidate::parse("candidate:1 1 udp 2113937151 abc-def.local 5000 typ host").expect("mdns");
    a.add_remote_candidate(now, c.clone());
    assert_eq!(a.poll_event(), Some(IceEvent::MdnsCandidate(c)));
}

#[test]
fn all_pairs_failing_with_end_of_candidates_fails() {
    let mut a = agent(17, true);
    let now = Instant::now();
    a.add_local_address(now, addr("10.0.0.1:5000"), Protocol::Udp);
    a.set_remote_credentials(now, "rem", "remotepasswordremotepass");
    a.add_remote_candidate(
        now,
        Candidate::parse("candidate:1 1 udp 2122260223 10.0.0.2 6000 typ host").expect("c"),
    );
    a.end_of_remote_candidates(now);
    let mut t = now;
    let mut buf = [0u8; 1500];
    for _ in 0..1000 {
        while a.poll_transmit(t, &mut buf).is_some() {}
        match a.poll_timeout() {
            Some(d) => t = t.max(d),
            None => break,
        }
        a.handle_timeout(t);
        if a.connection_state() == IceConnectionState::Failed {
            break;
        }
    }
    assert_eq!(a.connection_state(), IceConnectionState::Failed);
    assert!(t - now < Duration::from_secs(60));
}

#[test]
fn same_seed_same_bytes() {
    let run = || {
        let mut net = Net::new(
            agent(20, true),
            agent(21, false),
            addr("10.0.0.1:5000"),
            addr("[2001:db8::2]:6000"),
        );
        net.agents[0].add_local_address(net.now, addr("[2001:db8::1]:5000"), Protocol::Udp);
        net.agents[1].add_local_address(net.now, addr("10.0.0.2:6000"), Protocol::Udp);
        net.exchange_candidates();
        net.run_until(Duration::from_secs(20), |_| false);
        net.log
            .iter()
            .map(|(w, d)| {
                (
                    *w,
                    d.iter().filter(|_| true).count(),
                    d.get(..20).map(<[u8]>::to_vec),
                )
            })
            .collect::<Vec<_>>()
    };
    let a = run();
    assert!(!a.is_empty());
    assert_eq!(a, run());
}

/// RFC 8445 7.3.1.3: bob's candidates never reach alice (only a wrong one does), so the
/// address bob's checks come from is learned as a peer-reflexive remote candidate, answered
/// by a triggered check, and nominated.
#[test]
fn peer_reflexive_remote_candidate_is_learned_and_used() {
    let mut net = Net::new(
        agent(31, true),
        agent(32, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    let now = net.now;
    for i in 0..2 {
        let a = net.addrs[i];
        net.agents[i].add_local_address(now, a, Protocol::Udp);
        net.agents[i].start_gathering(now);
    }
    let creds: Vec<IceCredentials> = net
        .agents
        .iter()
        .map(|a| a.local_credentials().clone())
        .collect();
    for i in 0..2 {
        let o = 1 - i;
        net.agents[i].set_remote_credentials(now, &creds[o].ufrag, &creds[o].pwd);
    }
    net.drain_events();
    let alice_host = net.events[0]
        .iter()
        .find_map(|e| match e {
            IceEvent::LocalCandidate(c) => Some(c.to_string()),
            _ => None,
        })
        .expect("alice's host candidate");
    net.agents[1].add_remote_candidate(now, Candidate::parse(&alice_host).expect("parse"));
    // Alice only hears of an address bob does not send from.
    let bogus = "candidate:9 1 udp 2122260223 10.0.0.99 7000 typ host";
    net.agents[0].add_remote_candidate(
        now,
        Candidate::parse(bogus.trim_start_matches("candidate:")).expect("parse"),
    );
    assert!(
        net.run_until(Duration::from_secs(10), Net::connected),
        "{:?} {:?}",
        net.agents[0].connection_state(),
        net.agents[1].connection_state()
    );
    let a = net.agents[0].selected_pair().expect("pair");
    assert_eq!(
        (a.local, a.remote),
        (addr("10.0.0.1:5000"), addr("10.0.0.2:6000")),
        "alice uses the address bob's checks came from"
    );
}

/// A request for `agent` (its ufrag and password) as a remote agent would send it.
fn request_for(agent: &IceAgent, remote_ufrag: &str, key: &[u8], seed: u64) -> Vec<u8> {
    let ufrag = agent.local_credentials().ufrag.clone();
    Message::new(
        Class::Request,
        Method::BINDING,
        TransactionId::random(&mut Rng::from_seed(seed)),
    )
    .with(Attribute::Username(format!("{ufrag}:{remote_ufrag}")))
    .with(Attribute::Priority(1))
    .with(if agent.is_controlling() {
        Attribute::IceControlled(5)
    } else {
        Attribute::IceControlling(5)
    })
    .encode_to_vec(Some(key), true)
}

/// Only a source that proved it knows the password on a pair is validated: an
/// integrity-checked request we answered, or an integrity-checked success response to
/// our own check that came back on the pair it left on. A listed candidate we only sent
/// checks to, a request with the wrong key or ufrag, a forged or misdirected response:
/// none of these validates anything.
#[test]
fn only_integrity_checked_sources_are_validated() {
    let mut a = agent(41, true);
    let now = Instant::now();
    let local = addr("10.0.0.1:5000");
    let listed = addr("10.0.0.7:7000");
    let remote_pwd = "remotepasswordremotepass";
    a.add_local_address(now, local, Protocol::Udp);
    a.set_remote_credentials(now, "rem", remote_pwd);
    a.add_remote_candidate(
        now,
        Candidate::parse(&format!(
            "1 1 udp 2122260223 {} {} typ host",
            listed.ip(),
            listed.port()
        ))
        .expect("candidate"),
    );
    a.handle_timeout(now);
    let mut buf = [0u8; 1500];
    let check = a
        .poll_transmit(now, &mut buf)
        .expect("a check to the listed candidate");
    assert_eq!((check.local, check.remote), (local, listed));
    let check_id = crate::stun::peek_transaction_id(&buf[..check.len]).expect("id");
    assert!(
        !a.is_validated(local, listed),
        "sending a check proves nothing"
    );

    // Requests: wrong key, wrong ufrag, then a good one.
    let pwd = a.local_credentials().pwd.clone();
    let stranger = addr("10.0.0.8:8000");
    let wrong_key = request_for(&a, "rem", b"not-the-password", 1);
    a.handle_stun(now, local, stranger, Protocol::Udp, &wrong_key);
    let mut other_ufrag = Message::parse(&request_for(&a, "rem", pwd.as_bytes(), 2)).expect("m");
    other_ufrag
        .attributes
        .retain(|at| !matches!(at, Attribute::Username(_)));
    let other_ufrag = other_ufrag
        .with(Attribute::Username("someoneelse:rem".into()))
        .encode_to_vec(Some(pwd.as_bytes()), true);
    a.handle_stun(now, local, stranger, Protocol::Udp, &other_ufrag);
    assert!(!a.is_validated(local, stranger));
    let good = request_for(&a, "rem", pwd.as_bytes(), 3);
    a.handle_stun(now, local, stranger, Protocol::Udp, &good);
    assert!(
        a.is_validated(local, stranger),
        "an answered request validates"
    );
    assert!(
        !a.is_validated(addr("10.0.0.1:5001"), stranger),
        "per local address"
    );

    // Responses to the check to `listed`: forged key, wrong source, then the real one.
    let response = |key: &[u8]| {
        Message::new(Class::Success, Method::BINDING, check_id)
            .with(Attribute::XorMappedAddress(local))
            .encode_to_vec(Some(key), true)
    };
    a.handle_stun(now, local, listed, Protocol::Udp, &response(b"forged-key"));
    assert!(
        !a.is_validated(local, listed),
        "a response without our key's integrity"
    );
    let elsewhere = addr("10.0.0.9:9000");
    a.handle_stun(
        now,
        local,
        elsewhere,
        Protocol::Udp,
        &response(remote_pwd.as_bytes()),
    );
    assert!(
        !a.is_validated(local, elsewhere),
        "a response from elsewhere"
    );
    assert!(!a.is_validated(local, listed));
    assert_eq!(a.validated_count(), 1);
    // The misdirected response failed that pair; a second listed candidate gets its
    // check answered properly.
    let listed2 = addr("10.0.0.6:6000");
    a.add_remote_candidate(
        now,
        Candidate::parse(&format!(
            "2 1 udp 2122260222 {} {} typ host",
            listed2.ip(),
            listed2.port()
        ))
        .expect("candidate"),
    );
    let mut later = now;
    let id = loop {
        later += Duration::from_millis(50);
        a.handle_timeout(later);
        let mut found = None;
        while let Some(t) = a.poll_transmit(later, &mut buf) {
            if t.remote == listed2 && buf[0] == 0 && buf[1] == 1 {
                found = crate::stun::peek_transaction_id(&buf[..t.len]);
            }
        }
        if let Some(id) = found {
            break id;
        }
        assert!(
            later < now + Duration::from_secs(5),
            "no check to {listed2}"
        );
    };
    assert!(!a.is_validated(local, listed2));
    let real = Message::new(Class::Success, Method::BINDING, id)
        .with(Attribute::XorMappedAddress(local))
        .encode_to_vec(Some(remote_pwd.as_bytes()), true);
    a.handle_stun(later, local, listed2, Protocol::Udp, &real);
    assert!(
        a.is_validated(local, listed2),
        "an authenticated answer validates"
    );
    assert!(!a.is_validated(local, listed));
}

/// Valid requests from ever new source ports (a flood, or a NAT rebinding every few
/// seconds) keep the validated set within its bound, and the selected pair stays in it.
#[test]
fn the_validated_set_is_bounded_and_keeps_the_selected_pair() {
    let mut net = Net::new(
        agent(42, true),
        agent(43, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(10), Net::connected));
    let selected = net.agents[1].selected_pair().expect("selected");
    assert!(net.agents[1].is_validated(selected.local, selected.remote));
    assert!(net.agents[0].is_validated(
        net.agents[0].selected_pair().expect("pair").local,
        net.agents[0].selected_pair().expect("pair").remote
    ));
    let now = net.now;
    let a_ufrag = net.agents[0].local_credentials().ufrag.clone();
    let b_pwd = net.agents[1].local_credentials().pwd.clone();
    let b_local = net.addrs[1];
    for port in 0..500u16 {
        let req = request_for(&net.agents[1], &a_ufrag, b_pwd.as_bytes(), u64::from(port));
        let from = SocketAddr::from(([10, 0, 0, 3], 10_000 + port));
        net.agents[1].handle_stun(now, b_local, from, Protocol::Udp, &req);
        assert!(net.agents[1].is_validated(b_local, from));
        assert!(net.agents[1].validated_count() <= agent::MAX_VALIDATED);
    }
    assert!(net.agents[1].stats().validated_evicted > 0);
    assert!(
        net.agents[1].is_validated(selected.local, selected.remote),
        "the selected pair is never forgotten"
    );
    assert!(!net.agents[1].is_validated(b_local, SocketAddr::from(([10, 0, 0, 3], 10_000))));
}

#[test]
fn the_controlled_agent_uses_its_first_valid_pair_before_any_nomination() {
    // RFC 8445 12.1: data may flow on a valid pair before selection. libwebrtc, as the
    // controlling agent, nominates only with a later check; the controlled side must not
    // hold DTLS back until then.
    let mut net = Net::new(
        agent(1, true),
        agent(2, false),
        addr("10.0.0.1:5000"),
        addr("10.0.0.2:6000"),
    );
    net.exchange_candidates();
    assert!(net.run_until(Duration::from_secs(5), |n| {
        n.agents[1].connection_state() == IceConnectionState::Connected
    }));
    let nominations = |net: &Net| {
        net.log
            .iter()
            .filter(|(from, data)| {
                *from == 0 && Message::parse(data).is_ok_and(|m| m.use_candidate())
            })
            .count()
    };
    assert_eq!(nominations(&net), 0, "connected before the nomination");
    let provisional = net.agents[1].selected_pair().expect("a pair in use");
    assert_eq!(
        (provisional.local, provisional.remote),
        (addr("10.0.0.2:6000"), addr("10.0.0.1:5000"))
    );
    // The nomination then comes, on the same pair, and both sides agree.
    assert!(net.run_until(Duration::from_secs(5), Net::connected));
    net.run_until(Duration::from_secs(1), |_| false);
    assert!(nominations(&net) > 0);
    assert_eq!(net.agents[1].selected_pair(), Some(provisional));
}
