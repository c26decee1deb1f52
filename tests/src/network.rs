//! The virtual network: nodes that own addresses, a virtual clock that jumps to the
//! earliest thing that happens, links with seeded conditions, cuts (now or scheduled),
//! one-to-one NATs, and the event log and readable timeline.
//!
//! One step:
//! ```text
//!   drain every node's poll_transmit -> route (cut? MTU? loss? duplicate? delay) -> in flight
//!   now := min(next delivery, next signaling message, next link change, next node deadline)
//!   apply link changes due -> deliver datagrams due -> deliver signaling due -> fire deadlines due
//!   drain transmits again, drain PeerConnection events into the log
//! ```
//! Everything is ordered by `(time, sequence number)` and all randomness comes from one
//! seeded generator, so the same seed and script give the same timeline.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sansrtc::peer::{ConnectionState, Event, IceConnectionState};
use sansrtc::rng::Rng;
use sansrtc::{Datagram, PeerConnection, Protocol, Transmit};

use crate::link::{LinkConditions, NetStats};
use crate::node::Node;
use crate::signaling::{Channel, Signal};
use crate::timeline::describe_datagram;

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

/// A node that can also be looked at as its concrete type.
pub(crate) trait AnyNode: Node {
    fn as_node(&mut self) -> &mut dyn Node;
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<T: Node + 'static> AnyNode for T {
    fn as_node(&mut self) -> &mut dyn Node {
        self
    }
    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

pub(crate) enum Body {
    Peer(Box<PeerConnection>),
    Other(Box<dyn AnyNode>),
}

impl Body {
    fn node(&mut self) -> &mut dyn Node {
        match self {
            Body::Peer(p) => p.as_mut(),
            Body::Other(n) => n.as_node(),
        }
    }
    fn timeout(&self) -> Option<Instant> {
        match self {
            Body::Peer(p) => p.poll_timeout(),
            Body::Other(n) => n.poll_timeout(),
        }
    }
}

pub(crate) struct Slot {
    pub(crate) name: String,
    pub(crate) body: Body,
    addrs: Vec<SocketAddr>,
}

struct InFlight {
    /// The sending node; `None` for a datagram the attacker injected (no link applies).
    from_node: Option<NodeId>,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// One datagram as the on-path attacker sees it, at the moment it reaches its destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Virtual time since the network started.
    pub at: Duration,
    /// The source address the receiver sees (after NAT; spoofed for injected datagrams).
    pub from: SocketAddr,
    /// The destination address.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
    /// Whether the attacker injected it ([`Network::inject`]) rather than a node sending it.
    pub injected: bool,
}

/// What an on-path attacker ([`Network::set_interceptor`]) does with a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through unchanged.
    Deliver,
    /// Drop it.
    Drop,
    /// Deliver these bytes instead.
    Replace(Vec<u8>),
}

/// The on-path attacker's hook: sees each datagram before delivery and decides its fate.
pub type Interceptor = Box<dyn FnMut(&Captured) -> Verdict>;

/// A scheduled change of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkChange {
    Cut { from: NodeId, to: NodeId },
    Restore { from: NodeId, to: NodeId },
}

/// Most datagrams in flight at once; more are dropped (and counted as lost).
const MAX_IN_FLIGHT: usize = 100_000;
/// Steps in a row without the clock moving before the harness calls it a livelock.
const MAX_STEPS_WITHOUT_PROGRESS: u32 = 100_000;
/// The largest datagram a node may send (the transmit buffer's size).
const MAX_DATAGRAM: usize = 65_536;

/// The virtual network.
pub struct Network {
    base: Instant,
    now: Instant,
    rng: Rng,
    /// Conditions of every link that has no per-direction override.
    pub conditions: LinkConditions,
    overrides: HashMap<(NodeId, NodeId), LinkConditions>,
    /// Per direction with a bottleneck rate: when its queue is empty again.
    link_busy_until: HashMap<(NodeId, NodeId), Instant>,
    pub(crate) nodes: Vec<Slot>,
    routes: HashMap<SocketAddr, NodeId>,
    in_flight: BTreeMap<(Instant, u64), InFlight>,
    pub(crate) seq: u64,
    cut: BTreeSet<(NodeId, NodeId)>,
    link_schedule: BTreeMap<(Instant, u64), LinkChange>,
    /// One-to-one NAT: inside address -> public address.
    nat_out: HashMap<SocketAddr, SocketAddr>,
    /// Public address -> inside address.
    nat_in: HashMap<SocketAddr, SocketAddr>,
    pub(crate) signaling: BTreeMap<(Instant, u64), Signal>,
    pub(crate) channels: BTreeMap<(NodeId, NodeId), Channel>,
    pub(crate) early_candidates: Vec<(NodeId, sansrtc::sdp::IceCandidateInit)>,
    pub(crate) pending_descriptions: usize,
    pub(crate) signaling_errors: Vec<String>,
    pub(crate) description_errors: Vec<String>,
    pub(crate) sent_descriptions: Vec<crate::signaling::SentDescription>,
    log: Vec<LoggedEvent>,
    timeline: Vec<String>,
    /// Also write every STUN datagram (gathering, checks, responses, consent) into the timeline.
    pub log_stun: bool,
    /// Also write every other datagram (DTLS, SRTP, ...) into the timeline.
    pub log_datagrams: bool,
    /// Counters.
    pub stats: NetStats,
    buf: Vec<u8>,
    steps_without_progress: u32,
    /// Datagrams seen by the attacker, when capturing.
    capture: Option<Vec<Captured>>,
    interceptor: Option<Interceptor>,
}

impl Network {
    /// An empty network whose randomness is all derived from `seed`. The virtual clock
    /// starts at one `Instant` taken now; every later time is that plus a `Duration`.
    pub fn new(seed: u64) -> Network {
        let now = Instant::now();
        Network {
            base: now,
            now,
            rng: Rng::from_seed(seed),
            conditions: LinkConditions::default(),
            overrides: HashMap::new(),
            link_busy_until: HashMap::new(),
            nodes: Vec::new(),
            routes: HashMap::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            link_schedule: BTreeMap::new(),
            nat_out: HashMap::new(),
            nat_in: HashMap::new(),
            signaling: BTreeMap::new(),
            channels: BTreeMap::new(),
            early_candidates: Vec::new(),
            pending_descriptions: 0,
            signaling_errors: Vec::new(),
            description_errors: Vec::new(),
            sent_descriptions: Vec::new(),
            log: Vec::new(),
            timeline: Vec::new(),
            log_stun: false,
            log_datagrams: false,
            stats: NetStats::default(),
            buf: vec![0; MAX_DATAGRAM],
            steps_without_progress: 0,
            capture: None,
            interceptor: None,
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

    /// The instant `at` after the start.
    pub fn at(&self, at: Duration) -> Instant {
        self.base + at
    }

    // ---- nodes ----

    /// Add a PeerConnection owning `addrs` (each given to it with `add_local_address`).
    pub fn add_peer(&mut self, name: &str, mut pc: PeerConnection, addrs: &[SocketAddr]) -> NodeId {
        for a in addrs {
            pc.add_local_address(self.now, *a, Protocol::Udp);
        }
        self.add(name, Body::Peer(Box::new(pc)), addrs)
    }

    /// Create a PeerConnection from `config` at the virtual now and add it.
    pub fn add_peer_with_config(
        &mut self,
        name: &str,
        config: sansrtc::Config,
        addrs: &[SocketAddr],
    ) -> NodeId {
        let pc = PeerConnection::new(config, self.now).expect("PeerConnection::new");
        self.add_peer(name, pc, addrs)
    }

    /// Add any other node (a STUN server model, a raw ICE agent, a probe).
    pub fn add_node<N: Node + 'static>(
        &mut self,
        name: &str,
        node: N,
        addrs: &[SocketAddr],
    ) -> NodeId {
        self.add(name, Body::Other(Box::new(node)), addrs)
    }

    /// A node added with [`Network::add_node`], as its own type (`None` if it is another).
    pub fn node_mut<N: Node + 'static>(&mut self, id: NodeId) -> Option<&mut N> {
        match self.nodes.get_mut(id.0).map(|s| &mut s.body) {
            Some(Body::Other(n)) => n.as_any().downcast_mut::<N>(),
            _ => None,
        }
    }

    fn add(&mut self, name: &str, body: Body, addrs: &[SocketAddr]) -> NodeId {
        let id = NodeId(self.nodes.len());
        for a in addrs {
            self.routes.insert(*a, id);
        }
        self.nodes.push(Slot {
            name: name.to_string(),
            body,
            addrs: addrs.to_vec(),
        });
        id
    }

    /// The PeerConnection of a node (panics if the node is not a PeerConnection).
    pub fn peer(&mut self, id: NodeId) -> &mut PeerConnection {
        self.try_peer(id)
            .unwrap_or_else(|| panic!("node {id:?} is not a PeerConnection"))
    }

    /// The PeerConnection of a node, if it is one.
    pub fn try_peer(&mut self, id: NodeId) -> Option<&mut PeerConnection> {
        match self.nodes.get_mut(id.0).map(|s| &mut s.body) {
            Some(Body::Peer(p)) => Some(p),
            _ => None,
        }
    }

    /// The node's name.
    pub fn name(&self, id: NodeId) -> &str {
        self.nodes.get(id.0).map(|s| s.name.as_str()).unwrap_or("?")
    }

    /// The addresses the node was added with.
    pub fn addrs(&self, id: NodeId) -> &[SocketAddr] {
        self.nodes
            .get(id.0)
            .map(|s| s.addrs.as_slice())
            .unwrap_or(&[])
    }

    // ---- links ----

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

    /// Set the conditions of the direction `from -> to` (overrides [`Network::conditions`]).
    pub fn set_link(&mut self, from: NodeId, to: NodeId, conditions: LinkConditions) {
        self.overrides.insert((from, to), conditions);
    }

    /// The conditions datagrams from `from` to `to` meet.
    pub fn link(&self, from: NodeId, to: NodeId) -> &LinkConditions {
        self.overrides.get(&(from, to)).unwrap_or(&self.conditions)
    }

    /// Cut (or restore) the link between two nodes, both directions, now.
    pub fn set_cut(&mut self, a: NodeId, b: NodeId, cut: bool) {
        self.set_cut_one_way(a, b, cut);
        self.set_cut_one_way(b, a, cut);
    }

    /// Cut (or restore) only the direction `from -> to`, now.
    pub fn set_cut_one_way(&mut self, from: NodeId, to: NodeId, cut: bool) {
        let change = if cut {
            LinkChange::Cut { from, to }
        } else {
            LinkChange::Restore { from, to }
        };
        self.apply_link_change(change);
    }

    /// Cut both directions between `a` and `b` at virtual time `at` (since the start).
    pub fn cut_at(&mut self, at: Duration, a: NodeId, b: NodeId) {
        self.schedule(at, LinkChange::Cut { from: a, to: b });
        self.schedule(at, LinkChange::Cut { from: b, to: a });
    }

    /// Restore both directions between `a` and `b` at virtual time `at` (since the start).
    pub fn restore_at(&mut self, at: Duration, a: NodeId, b: NodeId) {
        self.schedule(at, LinkChange::Restore { from: a, to: b });
        self.schedule(at, LinkChange::Restore { from: b, to: a });
    }

    /// Whether the direction `from -> to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    fn schedule(&mut self, at: Duration, change: LinkChange) {
        self.seq += 1;
        self.link_schedule
            .insert((self.base + at, self.seq), change);
    }

    fn apply_link_change(&mut self, change: LinkChange) {
        let (from, to, cut) = match change {
            LinkChange::Cut { from, to } => (from, to, true),
            LinkChange::Restore { from, to } => (from, to, false),
        };
        let changed = if cut {
            self.cut.insert((from, to))
        } else {
            self.cut.remove(&(from, to))
        };
        if changed {
            let what = if cut { "cut" } else { "restored" };
            let text = format!("link {} -> {} {what}", self.name(from), self.name(to));
            self.note(None, text);
        }
    }

    // ---- log ----

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

    /// The connection-state changes of one node with their virtual times.
    pub fn connection_states(&self, id: NodeId) -> Vec<(Duration, ConnectionState)> {
        self.log
            .iter()
            .filter(|e| e.node == id)
            .filter_map(|e| match e.event {
                Event::ConnectionStateChange(s) => Some((e.at, s)),
                _ => None,
            })
            .collect()
    }

    /// The ICE connection-state changes of one node with their virtual times.
    pub fn ice_states(&self, id: NodeId) -> Vec<(Duration, IceConnectionState)> {
        self.log
            .iter()
            .filter(|e| e.node == id)
            .filter_map(|e| match e.event {
                Event::IceConnectionStateChange(s) => Some((e.at, s)),
                _ => None,
            })
            .collect()
    }

    /// The readable timeline, one line per event, signaling message, link change and
    /// (with [`Network::log_stun`] / [`Network::log_datagrams`]) datagram.
    pub fn timeline(&self) -> &[String] {
        &self.timeline
    }

    pub(crate) fn push_event(&mut self, node: NodeId, event: Event) {
        let at = self.elapsed();
        self.log.push(LoggedEvent { at, node, event });
    }

    /// The timeline as one string (for assertion messages).
    pub fn timeline_text(&self) -> String {
        self.timeline.join("\n")
    }

    pub(crate) fn note(&mut self, node: Option<NodeId>, text: String) {
        let t = self.elapsed().as_secs_f64();
        let name = node.map(|n| self.name(n)).unwrap_or("net");
        let line = format!("{t:>9.3}s  {name:<6} {text}");
        self.timeline.push(line);
    }

    // ---- driving ----

    /// Advance to the next thing that happens and do it. False when nothing is left.
    ///
    /// Panics when the clock stops moving for 100,000 steps in a
    /// row (a node whose deadline stays in the past: a livelock in the code under test).
    pub fn step(&mut self) -> bool {
        self.flush();
        let next = [
            self.in_flight.keys().next().map(|k| k.0),
            self.signaling.keys().next().map(|k| k.0),
            self.link_schedule.keys().next().map(|k| k.0),
            self.nodes.iter().filter_map(|s| s.body.timeout()).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
            return false;
        };
        if next > self.now {
            self.now = next;
            self.steps_without_progress = 0;
        } else {
            self.steps_without_progress += 1;
            if self.steps_without_progress > MAX_STEPS_WITHOUT_PROGRESS {
                let stuck: Vec<&str> = self
                    .nodes
                    .iter()
                    .filter(|s| s.body.timeout().is_some_and(|t| t <= self.now))
                    .map(|s| s.name.as_str())
                    .collect();
                panic!(
                    "livelock at {:?}: the clock does not advance; deadlines in the past: {stuck:?}\n{}",
                    self.elapsed(),
                    self.timeline_tail(40)
                );
            }
        }
        let now = self.now;
        while let Some(entry) = self.link_schedule.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let change = entry.remove();
            self.apply_link_change(change);
        }
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let f = entry.remove();
            self.deliver(f);
        }
        self.deliver_signaling_due();
        for slot in &mut self.nodes {
            if slot.body.timeout().is_some_and(|t| t <= now) {
                slot.body.node().handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Drain every node's transmits into the network and every peer's events into the log.
    pub fn flush(&mut self) {
        let now = self.now;
        let mut buf = std::mem::take(&mut self.buf);
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
        self.buf = buf;
        self.collect();
    }

    fn timeline_tail(&self, n: usize) -> String {
        let start = self.timeline.len().saturating_sub(n);
        self.timeline.get(start..).unwrap_or_default().join("\n")
    }

    fn route(&mut self, from_node: NodeId, t: Transmit, data: Vec<u8>) {
        self.stats.sent += 1;
        let is_stun = sansrtc::stun::is_stun(&data);
        if is_stun {
            self.stats.stun += 1;
        }
        // A socket of one family cannot send to an address of the other.
        let to_node = self
            .routes
            .get(&t.remote)
            .copied()
            .filter(|_| t.local.is_ipv4() == t.remote.is_ipv4());
        let fate = self.fate(from_node, to_node, &data);
        if (is_stun && self.log_stun) || (!is_stun && self.log_datagrams) {
            let on_selected_pair = self
                .try_peer(from_node)
                .and_then(|p| p.selected_pair())
                .is_some_and(|p| p.local == t.local && p.remote == t.remote);
            let what = describe_datagram(&data, on_selected_pair);
            let suffix = match fate {
                Fate::Deliver(_) => "",
                Fate::Unroutable => " (unroutable)",
                Fate::Cut => " (link cut)",
                Fate::TooBig => " (too big)",
                Fate::Lost => " (lost)",
            };
            let text = format!("{what} {} -> {}{suffix}", t.local, t.remote);
            self.note(Some(from_node), text);
        }
        let Fate::Deliver(to_node) = fate else {
            return;
        };
        let link = self.link(from_node, to_node).clone();
        let Some(queued) = self.bottleneck(from_node, to_node, &link, data.len()) else {
            self.stats.queue_dropped += 1;
            return;
        };
        let copies = if self.rng.unit_f64() < link.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let from = self.nat_out.get(&t.local).copied().unwrap_or(t.local);
        let from_node = Some(from_node);
        for _ in 0..copies {
            let jitter_ns = u64::try_from(link.jitter.as_nanos()).unwrap_or(u64::MAX);
            let mut delay = queued + link.latency + Duration::from_nanos(self.rng.below(jitter_ns));
            if self.rng.unit_f64() < link.reorder {
                self.stats.reordered += 1;
                delay += link.reorder_delay;
            }
            self.seq += 1;
            self.in_flight.insert(
                (self.now + delay, self.seq),
                InFlight {
                    from_node,
                    from,
                    to: t.remote,
                    data: data.clone(),
                },
            );
        }
    }

    /// The time a datagram of `len` bytes spends in the bottleneck of a link (waiting
    /// and being serialized), or `None` when its queue is full; zero without a rate.
    fn bottleneck(
        &mut self,
        from: NodeId,
        to: NodeId,
        link: &LinkConditions,
        len: usize,
    ) -> Option<Duration> {
        let Some(rate) = link.rate_bps.filter(|r| *r > 0) else {
            return Some(Duration::ZERO);
        };
        let now = self.now;
        let busy = self.link_busy_until.entry((from, to)).or_insert(now);
        let start = (*busy).max(now);
        if start - now > link.queue_limit {
            return None;
        }
        let bits = len as u128 * 8;
        let transmission = Duration::from_nanos(
            u64::try_from(bits * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX),
        );
        *busy = start + transmission;
        Some(*busy - now)
    }

    /// Decide what happens to a datagram (and count it).
    fn fate(&mut self, from_node: NodeId, to_node: Option<NodeId>, data: &[u8]) -> Fate {
        let Some(to_node) = to_node else {
            self.stats.unroutable += 1;
            return Fate::Unroutable;
        };
        if self.cut.contains(&(from_node, to_node)) {
            self.stats.cut += 1;
            return Fate::Cut;
        }
        let (mtu, loss) = {
            let link = self.link(from_node, to_node);
            (link.mtu, link.loss)
        };
        if data.len() > mtu {
            self.stats.too_big += 1;
            return Fate::TooBig;
        }
        if self.rng.unit_f64() < loss || self.in_flight.len() >= MAX_IN_FLIGHT {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        Fate::Deliver(to_node)
    }

    fn deliver(&mut self, f: InFlight) {
        let Some(&to) = self.routes.get(&f.to) else {
            self.stats.unroutable += 1;
            return;
        };
        // A cut also drops what was already on the wire when it happened.
        if f.from_node
            .is_some_and(|from| self.cut.contains(&(from, to)))
        {
            self.stats.cut += 1;
            return;
        }
        let mut f = f;
        if self.capture.is_some() || self.interceptor.is_some() {
            let seen = Captured {
                at: self.elapsed(),
                from: f.from,
                to: f.to,
                data: f.data,
                injected: f.from_node.is_none(),
            };
            let verdict = match self.interceptor.as_mut() {
                // The attacker's own datagrams pass its hook unchanged.
                Some(hook) if !seen.injected => hook(&seen),
                _ => Verdict::Deliver,
            };
            let data = match verdict {
                Verdict::Deliver => seen.data.clone(),
                Verdict::Drop => {
                    self.stats.lost += 1;
                    if let Some(log) = self.capture.as_mut() {
                        log.push(seen);
                    }
                    return;
                }
                Verdict::Replace(bytes) => bytes,
            };
            if let Some(log) = self.capture.as_mut() {
                log.push(seen);
            }
            f.data = data;
        }
        self.stats.delivered += 1;
        let local = self.nat_in.get(&f.to).copied().unwrap_or(f.to);
        let now = self.now;
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

    /// Start recording every datagram delivered from now on (the on-path attacker's view).
    pub fn start_capture(&mut self) {
        self.capture.get_or_insert_with(Vec::new);
    }

    /// The datagrams recorded since [`Network::start_capture`], in delivery order.
    pub fn captured(&self) -> &[Captured] {
        self.capture.as_deref().unwrap_or_default()
    }

    /// Take the recorded datagrams, leaving the capture running and empty.
    pub fn take_captured(&mut self) -> Vec<Captured> {
        self.capture
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// An on-path attacker: `hook` sees every datagram a node sent just before it is
    /// delivered and may let it through, drop it or replace its bytes. Injected
    /// datagrams bypass it. Replaces any earlier hook.
    pub fn set_interceptor(&mut self, hook: impl FnMut(&Captured) -> Verdict + 'static) {
        self.interceptor = Some(Box::new(hook));
    }

    /// Remove the on-path hook.
    pub fn clear_interceptor(&mut self) {
        self.interceptor = None;
    }

    /// The attacker sends `data` to `to` with any source address it likes (spoofing
    /// `from` is allowed: an off-path attacker can forge UDP sources). Delivered at the
    /// next step, bypassing links (no loss, cut or MTU).
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.inject_after(Duration::ZERO, from, to, data);
    }

    /// [`Network::inject`] after `delay` of virtual time.
    pub fn inject_after(
        &mut self,
        delay: Duration,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) {
        self.seq += 1;
        self.in_flight.insert(
            (self.now + delay, self.seq),
            InFlight {
                from_node: None,
                from,
                to,
                data,
            },
        );
    }

    /// Step until `cond` holds or `limit` of virtual time passes. Returns whether it held.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut cond: impl FnMut(&mut Network) -> bool,
    ) -> bool {
        let end = self.now + limit;
        self.flush();
        loop {
            if cond(self) {
                return true;
            }
            if self.next_event_time().is_none_or_after(end) || !self.step() {
                self.now = self.now.max(end);
                return cond(self);
            }
        }
    }

    /// Step for `duration` of virtual time (the clock ends exactly `duration` later).
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        self.flush();
        while !self.next_event_time().is_none_or_after(end) && self.step() {}
        self.now = self.now.max(end);
    }

    /// Step until no datagram and no signaling message is in flight (timers may still be
    /// armed), or `limit` of virtual time passes. Returns whether it went quiet.
    pub fn run_until_quiet(&mut self, limit: Duration) -> bool {
        self.run_until(limit, |n| {
            n.in_flight.is_empty() && n.signaling.is_empty() && n.pending_descriptions == 0
        })
    }

    fn next_event_time(&self) -> NextTime {
        NextTime(
            [
                self.in_flight.keys().next().map(|k| k.0),
                self.signaling.keys().next().map(|k| k.0),
                self.link_schedule.keys().next().map(|k| k.0),
                self.nodes.iter().filter_map(|s| s.body.timeout()).min(),
            ]
            .into_iter()
            .flatten()
            .min(),
        )
    }

    // ---- two-peer conveniences ----

    /// Add "alice" (with an audio and a video track) and "bob", seeded from `seed` and
    /// `seed + 1`, owning the given addresses. Signaling is left to the caller.
    pub fn two_peers(
        &mut self,
        seed: u64,
        alice: &[SocketAddr],
        bob: &[SocketAddr],
    ) -> (NodeId, NodeId) {
        self.two_peers_with(
            crate::seeded_config(seed),
            crate::seeded_config(seed.wrapping_add(1)),
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

    /// Whether both peers report ICE connected (or completed) and connection state connected.
    pub fn connected(&mut self, a: NodeId, b: NodeId) -> bool {
        [a, b].into_iter().all(|n| {
            self.try_peer(n).is_some_and(|p| {
                p.connection_state() == ConnectionState::Connected
                    && matches!(
                        p.ice_connection_state(),
                        IceConnectionState::Connected | IceConnectionState::Completed
                    )
            })
        })
    }
}

/// What happens to a datagram handed to the network.
enum Fate {
    Deliver(NodeId),
    Unroutable,
    Cut,
    TooBig,
    Lost,
}

/// The time of the next thing that happens, if any.
struct NextTime(Option<Instant>);

impl NextTime {
    fn is_none_or_after(&self, end: Instant) -> bool {
        match self.0 {
            Some(t) => t > end,
            None => true,
        }
    }
}
