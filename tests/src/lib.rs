//! The deterministic simulation harness shared by scenario tests and the `simulation` example.
//!
//! A [`Network`] holds nodes (sansrtc `PeerConnection`s, or any [`Node`] such as the STUN
//! server model) that own addresses, a virtual clock that jumps to the earliest deadline,
//! and links with seeded latency, jitter, loss, duplication, reordering and an MTU. Signaling
//! between peers goes through JSON strings exactly as in the seed tutorial, with an optional
//! delay. Everything is driven by one seed: the same seed and the same script give the same
//! timeline, byte for byte.

pub mod browser;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sansrtc::peer::{ConnectionState, Event, IceConnectionState, OfferOptions};
use sansrtc::rng::Rng;
use sansrtc::sdp::{IceCandidateInit, SessionDescription};
use sansrtc::stun::{Attribute, Class, Message, Method};
use sansrtc::{Datagram, PeerConnection, Protocol, Transmit};

/// Anything that speaks the sans-IO shape and can sit on the virtual network.
pub trait Node {
    /// A datagram arrived.
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>);
    /// Time passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl Node for PeerConnection {
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        PeerConnection::handle_datagram(self, now, datagram)
    }
    fn handle_timeout(&mut self, now: Instant) {
        PeerConnection::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        PeerConnection::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        PeerConnection::poll_timeout(self)
    }
}

impl Node for sansrtc::ice::IceAgent {
    fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        self.handle_stun(now, d.local, d.remote, d.protocol, d.data);
    }
    fn handle_timeout(&mut self, now: Instant) {
        sansrtc::ice::IceAgent::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        sansrtc::ice::IceAgent::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        sansrtc::ice::IceAgent::poll_timeout(self)
    }
}

/// A STUN server model: answers Binding requests with the source address.
#[derive(Debug, Default)]
pub struct StunServer {
    queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Requests answered.
    pub answered: u64,
}

impl Node for StunServer {
    fn handle_datagram(&mut self, _now: Instant, d: Datagram<'_>) {
        let Ok(req) = Message::parse(d.data) else {
            return;
        };
        if req.class != Class::Request || req.method != Method::BINDING {
            return;
        }
        let resp = Message::new(Class::Success, Method::BINDING, req.transaction_id)
            .with(Attribute::XorMappedAddress(d.remote))
            .encode_to_vec(None, true);
        self.answered += 1;
        self.queue.push_back((d.local, d.remote, resp));
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let (local, remote, data) = self.queue.pop_front()?;
        buf.get_mut(..data.len())?.copy_from_slice(&data);
        Some(Transmit {
            local,
            remote,
            protocol: Protocol::Udp,
            len: data.len(),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// Conditions of the links between nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConditions {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra uniform random delay in `0..jitter` (reorders datagrams when larger than their spacing).
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Datagrams larger than this are dropped.
    pub mtu: usize,
}

impl Default for LinkConditions {
    fn default() -> Self {
        LinkConditions {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            mtu: 1500,
        }
    }
}

/// A node's handle in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub usize);

/// One logged PeerConnection event.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// Virtual time since the network started.
    pub at: Duration,
    /// The node.
    pub node: NodeId,
    /// The event.
    pub event: Event,
}

enum Body {
    Peer(Box<PeerConnection>),
    Other(Box<dyn Node>),
}

impl Body {
    fn node(&mut self) -> &mut dyn Node {
        match self {
            Body::Peer(p) => p.as_mut(),
            Body::Other(n) => n.as_mut(),
        }
    }
    fn timeout(&self) -> Option<Instant> {
        match self {
            Body::Peer(p) => p.poll_timeout(),
            Body::Other(n) => n.poll_timeout(),
        }
    }
}

struct Slot {
    name: String,
    body: Body,
}

struct InFlight {
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// Counters of what the network did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams sent by nodes.
    pub sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Lost by the loss setting.
    pub lost: u64,
    /// Duplicated.
    pub duplicated: u64,
    /// Dropped for exceeding the MTU.
    pub too_big: u64,
    /// Dropped because a link was cut.
    pub cut: u64,
    /// Addressed to nobody.
    pub unroutable: u64,
    /// STUN datagrams sent (checks, responses, consent).
    pub stun: u64,
}

/// Most datagrams in flight at once; more are dropped (and counted as lost).
const MAX_IN_FLIGHT: usize = 100_000;

/// The virtual network.
pub struct Network {
    base: Instant,
    now: Instant,
    rng: Rng,
    /// Link conditions for every datagram.
    pub conditions: LinkConditions,
    nodes: Vec<Slot>,
    routes: HashMap<SocketAddr, NodeId>,
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    cut: Vec<(NodeId, NodeId)>,
    /// One-to-one NAT: inside address -> public address.
    nat_out: HashMap<SocketAddr, SocketAddr>,
    /// Public address -> inside address.
    nat_in: HashMap<SocketAddr, SocketAddr>,
    signaling: BTreeMap<(Instant, u64), (NodeId, String)>,
    trickle: Vec<(NodeId, NodeId, Duration)>,
    log: Vec<LoggedEvent>,
    timeline: Vec<String>,
    /// Also write every STUN datagram (checks, responses, consent) into the timeline.
    pub log_stun: bool,
    /// Counters.
    pub stats: NetStats,
}

impl Network {
    /// An empty network whose randomness is all derived from `seed`.
    pub fn new(seed: u64) -> Network {
        let now = Instant::now();
        Network {
            base: now,
            now,
            rng: Rng::from_seed(seed),
            conditions: LinkConditions::default(),
            nodes: Vec::new(),
            routes: HashMap::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            cut: Vec::new(),
            nat_out: HashMap::new(),
            nat_in: HashMap::new(),
            signaling: BTreeMap::new(),
            trickle: Vec::new(),
            log: Vec::new(),
            timeline: Vec::new(),
            log_stun: false,
            stats: NetStats::default(),
        }
    }

    /// The virtual now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    /// Add a PeerConnection owning `addrs` (each given to it with `add_local_address`).
    pub fn add_peer(&mut self, name: &str, mut pc: PeerConnection, addrs: &[SocketAddr]) -> NodeId {
        for a in addrs {
            pc.add_local_address(self.now, *a, Protocol::Udp);
        }
        self.add(name, Body::Peer(Box::new(pc)), addrs)
    }

    /// Add any other node.
    pub fn add_node(&mut self, name: &str, node: Box<dyn Node>, addrs: &[SocketAddr]) -> NodeId {
        self.add(name, Body::Other(node), addrs)
    }

    fn add(&mut self, name: &str, body: Body, addrs: &[SocketAddr]) -> NodeId {
        let id = NodeId(self.nodes.len());
        for a in addrs {
            self.routes.insert(*a, id);
        }
        self.nodes.push(Slot {
            name: name.to_string(),
            body,
        });
        id
    }

    /// The PeerConnection of a node (panics in tests if the node is not a peer).
    pub fn peer(&mut self, id: NodeId) -> &mut PeerConnection {
        match self.nodes.get_mut(id.0).map(|s| &mut s.body) {
            Some(Body::Peer(p)) => p,
            _ => panic!("node {id:?} is not a PeerConnection"),
        }
    }

    /// The node's name.
    pub fn name(&self, id: NodeId) -> &str {
        self.nodes.get(id.0).map(|s| s.name.as_str()).unwrap_or("?")
    }

    /// Put `inside` (an address of a node) behind a one-to-one NAT that maps it to
    /// `public`: what it sends appears to come from `public`, and what is sent to `public`
    /// reaches it. Its inside address stops being routable from outside.
    pub fn add_nat(&mut self, inside: SocketAddr, public: SocketAddr) {
        if let Some(id) = self.routes.remove(&inside) {
            self.routes.insert(public, id);
        }
        self.nat_out.insert(inside, public);
        self.nat_in.insert(public, inside);
    }

    /// Cut (or restore) the link between two nodes, both directions.
    pub fn set_cut(&mut self, a: NodeId, b: NodeId, cut: bool) {
        self.cut
            .retain(|&(x, y)| !((x, y) == (a, b) || (x, y) == (b, a)));
        if cut {
            self.cut.push((a, b));
        }
        self.note(
            None,
            if cut { "link cut" } else { "link restored" }.to_string(),
        );
    }

    /// Forward every `IceCandidate` event of `from` to `to` through JSON after `delay`.
    pub fn trickle(&mut self, from: NodeId, to: NodeId, delay: Duration) {
        self.trickle.push((from, to, delay));
    }

    /// Every event logged so far.
    pub fn events(&self) -> &[LoggedEvent] {
        &self.log
    }

    /// The events of one node.
    pub fn events_of(&self, id: NodeId) -> impl Iterator<Item = &Event> {
        self.log
            .iter()
            .filter(move |e| e.node == id)
            .map(|e| &e.event)
    }

    /// The readable timeline.
    pub fn timeline(&self) -> &[String] {
        &self.timeline
    }

    fn note(&mut self, node: Option<NodeId>, text: String) {
        let t = self.elapsed().as_secs_f64();
        let name = node
            .map(|n| self.name(n).to_string())
            .unwrap_or_else(|| "net".into());
        self.timeline.push(format!("{t:>9.3}s  {name:<6} {text}"));
    }

    /// Offer from `a`, answer from `b`, both through JSON strings. Candidates gathered
    /// so far are in the descriptions (all-at-once when gathering is complete).
    pub fn negotiate(&mut self, a: NodeId, b: NodeId) -> Result<(), String> {
        let now = self.now;
        self.collect();
        let offer = self
            .peer(a)
            .create_offer(OfferOptions::default())
            .map_err(|e| e.to_string())?;
        self.peer(a)
            .set_local_description(now, offer)
            .map_err(|e| e.to_string())?;
        self.send_description(a, b)?;
        let answer = self.peer(b).create_answer().map_err(|e| e.to_string())?;
        self.peer(b)
            .set_local_description(now, answer)
            .map_err(|e| e.to_string())?;
        self.collect();
        self.send_description(b, a)?;
        self.collect();
        Ok(())
    }

    /// Send `from`'s current local description to `to` as JSON and apply it there.
    pub fn send_description(&mut self, from: NodeId, to: NodeId) -> Result<(), String> {
        self.collect();
        let now = self.now;
        let desc = self
            .peer(from)
            .local_description()
            .ok_or("no local description")?;
        let json = serde_json::to_string(&desc).map_err(|e| e.to_string())?;
        let parsed: SessionDescription = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        let kind = parsed.kind.as_str();
        let lines = parsed.sdp.lines().count();
        self.note(
            Some(from),
            format!("sends {kind} ({lines} SDP lines) to {}", self.name(to)),
        );
        self.peer(to)
            .set_remote_description(now, parsed)
            .map_err(|e| e.to_string())
    }

    /// Drain every peer's events into the log, queueing trickled candidates.
    fn collect(&mut self) {
        for i in 0..self.nodes.len() {
            loop {
                let ev = match self.nodes.get_mut(i).map(|s| &mut s.body) {
                    Some(Body::Peer(p)) => p.poll_event(),
                    _ => None,
                };
                let Some(ev) = ev else { break };
                let id = NodeId(i);
                self.note(Some(id), describe(&ev));
                if let Event::IceCandidate(c) = &ev {
                    let json = serde_json::to_string(c).unwrap_or_default();
                    for (from, to, delay) in self.trickle.clone() {
                        if from == id {
                            self.seq += 1;
                            self.signaling
                                .insert((self.now + delay, self.seq), (to, json.clone()));
                        }
                    }
                }
                self.log.push(LoggedEvent {
                    at: self.elapsed(),
                    node: id,
                    event: ev,
                });
            }
        }
    }

    fn route(&mut self, from_node: NodeId, t: Transmit, data: Vec<u8>) {
        self.stats.sent += 1;
        if sansrtc::stun::is_stun(&data) {
            self.stats.stun += 1;
            if self.log_stun {
                let what = match sansrtc::stun::Message::parse(&data) {
                    Ok(m) if m.class == Class::Request && m.use_candidate() => {
                        "check (USE-CANDIDATE)"
                    }
                    Ok(m) if m.class == Class::Request => "check",
                    Ok(m) if m.class == Class::Success => "check response",
                    Ok(m) if m.class == Class::Error => "check error response",
                    _ => "STUN",
                };
                self.note(
                    Some(from_node),
                    format!("{what} {} -> {}", t.local, t.remote),
                );
            }
        }
        let Some(&to_node) = self.routes.get(&t.remote) else {
            self.stats.unroutable += 1;
            return;
        };
        if self
            .cut
            .iter()
            .any(|&(x, y)| (x, y) == (from_node, to_node) || (y, x) == (from_node, to_node))
        {
            self.stats.cut += 1;
            return;
        }
        if data.len() > self.conditions.mtu {
            self.stats.too_big += 1;
            return;
        }
        if self.rng.unit_f64() < self.conditions.loss || self.in_flight.len() >= MAX_IN_FLIGHT {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.rng.unit_f64() < self.conditions.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_ns = self.conditions.jitter.as_nanos() as u64;
            let extra = Duration::from_nanos(self.rng.below(jitter_ns.max(1)));
            let at = self.now + self.conditions.latency + extra;
            self.seq += 1;
            let from = self.nat_out.get(&t.local).copied().unwrap_or(t.local);
            self.in_flight.insert(
                (at, self.seq),
                InFlight {
                    from,
                    to: t.remote,
                    data: data.clone(),
                },
            );
        }
    }

    /// Advance to the next thing that happens and do it. False when nothing is left.
    pub fn step(&mut self) -> bool {
        let mut buf = vec![0u8; 2048];
        let now = self.now;
        for i in 0..self.nodes.len() {
            while let Some(t) = self
                .nodes
                .get_mut(i)
                .and_then(|slot| slot.body.node().poll_transmit(now, &mut buf))
            {
                let data = buf.get(..t.len).unwrap_or_default().to_vec();
                self.route(NodeId(i), t, data);
            }
        }
        self.collect();
        let next_packet = self.in_flight.keys().next().map(|k| k.0);
        let next_signal = self.signaling.keys().next().map(|k| k.0);
        let next_timer = self.nodes.iter().filter_map(|s| s.body.timeout()).min();
        let Some(next) = [next_packet, next_signal, next_timer]
            .into_iter()
            .flatten()
            .min()
        else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let f = entry.remove();
            let Some(&to) = self.routes.get(&f.to) else {
                continue;
            };
            self.stats.delivered += 1;
            let local = self.nat_in.get(&f.to).copied().unwrap_or(f.to);
            if let Some(slot) = self.nodes.get_mut(to.0) {
                slot.body.node().handle_datagram(
                    now,
                    Datagram {
                        local,
                        remote: f.from,
                        protocol: Protocol::Udp,
                        data: &f.data,
                    },
                );
            }
        }
        while let Some(entry) = self.signaling.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (to, json) = entry.remove();
            match serde_json::from_str::<IceCandidateInit>(&json) {
                Ok(c) => {
                    if let Err(e) = self.peer(to).add_ice_candidate(now, c) {
                        self.note(Some(to), format!("add_ice_candidate failed: {e}"));
                    }
                }
                Err(e) => self.note(Some(to), format!("bad candidate JSON: {e}")),
            }
        }
        for slot in &mut self.nodes {
            if slot.body.timeout().is_some_and(|t| t <= now) {
                slot.body.node().handle_timeout(now);
            }
        }
        self.collect();
        true
    }

    /// Step until `cond` holds or `limit` of virtual time passes. Returns whether it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&mut Network) -> bool,
    ) -> bool {
        let end = self.now + limit;
        loop {
            if cond(self) {
                return true;
            }
            if self.now >= end || !self.step() {
                return cond(self);
            }
        }
    }

    /// Step for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end && self.step() {}
    }

    /// Add "alice" (with an audio and a video track) and "bob", seeded from `seed`, owning
    /// the given addresses. Signaling is left to the caller.
    pub fn two_peers(
        &mut self,
        seed: u64,
        alice: &[SocketAddr],
        bob: &[SocketAddr],
    ) -> (NodeId, NodeId) {
        self.two_peers_with(
            seeded_config(seed),
            seeded_config(seed.wrapping_add(1)),
            alice,
            bob,
        )
    }

    /// As [`Network::two_peers`] with explicit configurations.
    pub fn two_peers_with(
        &mut self,
        alice_config: sansrtc::Config,
        bob_config: sansrtc::Config,
        alice: &[SocketAddr],
        bob: &[SocketAddr],
    ) -> (NodeId, NodeId) {
        let mut pa = PeerConnection::new(alice_config, self.now).expect("alice");
        pa.add_track(sansrtc::MediaKind::Audio, vec!["stream".into()])
            .expect("audio");
        pa.add_track(sansrtc::MediaKind::Video, vec!["stream".into()])
            .expect("video");
        let pb = PeerConnection::new(bob_config, self.now).expect("bob");
        let a = self.add_peer("alice", pa, alice);
        let b = self.add_peer("bob", pb, bob);
        (a, b)
    }

    /// Whether both peers report ICE and connection state connected.
    pub fn connected(&mut self, a: NodeId, b: NodeId) -> bool {
        [a, b].into_iter().all(|n| {
            let p = self.peer(n);
            p.connection_state() == ConnectionState::Connected
                && matches!(
                    p.ice_connection_state(),
                    IceConnectionState::Connected | IceConnectionState::Completed
                )
        })
    }
}

/// One line describing an event for the timeline.
pub fn describe(ev: &Event) -> String {
    match ev {
        Event::IceCandidate(c) if c.candidate.is_empty() => {
            "IceCandidate end-of-candidates".to_string()
        }
        Event::IceCandidate(c) => {
            let parts: Vec<&str> = c.candidate.split(' ').collect();
            let (addr, port, typ) = (
                parts.get(4).copied().unwrap_or("?"),
                parts.get(5).copied().unwrap_or("?"),
                parts.get(7).copied().unwrap_or("?"),
            );
            format!("IceCandidate {typ} {addr}:{port}")
        }
        Event::UnresolvedCandidate { hostname, .. } => format!("UnresolvedCandidate {hostname}"),
        Event::IceGatheringStateChange(s) => format!("IceGatheringState {s:?}"),
        Event::IceConnectionStateChange(s) => format!("IceConnectionState {s:?}"),
        Event::ConnectionStateChange(s) => format!("ConnectionState {s:?}"),
        Event::SignalingStateChange(s) => format!("SignalingState {s:?}"),
        Event::NegotiationNeeded => "NegotiationNeeded".to_string(),
        other => {
            let mut s = String::new();
            let _ = write!(s, "{other:?}");
            s
        }
    }
}

/// A config with a fixed seed for deterministic tests.
pub fn seeded_config(seed: u64) -> sansrtc::Config {
    sansrtc::Config {
        rng_seed: Some(seed),
        ..Default::default()
    }
}
