//! Many PeerConnections on one socket: the `Endpoint` routes every received datagram to
//! its PeerConnection in O(1) and merges their outputs, so a server (an SFU, a WHIP/WHEP
//! ingest) serves thousands of peers on one UDP port.
//!
//! Routing (DESIGN.md section 3):
//! - a STUN request goes to the peer whose local ufrag opens its USERNAME (`ours:theirs`);
//! - a STUN response goes to the peer that sent the request (its transaction id is
//!   recorded when the request leaves, and forgotten when the answer arrives or after
//!   40 s, the longest an ICE transaction lives);
//! - everything else (DTLS, SRTP, SRTCP, STUN indications) goes by the pair of local and
//!   remote address, learned from what each peer itself sends. A peer only sends to an
//!   address after a check with valid MESSAGE-INTEGRITY, so a stranger cannot claim one.
//!
//! Timers: one binary heap of `(deadline, peer)` with lazy deletion (an entry whose
//! deadline is no longer the peer's is skipped), so `handle_timeout` touches only the
//! peers that are due.
//!
//! Outputs: peers that may have something to send or report sit in a queue; the
//! endpoint drains the front one until it is empty, then refreshes its deadline. A peer
//! gets its deadline read once per stay in the output queue, not on every call that
//! touches it (asking a PeerConnection for its deadline costs ~300 instructions, and a
//! forwarded packet touched each viewer three times): while a peer waits in the queue
//! its heap entry may be stale, so `poll_timeout` also asks the peers waiting there and
//! `handle_timeout` refreshes them first. Once the transmits are drained (as a driver
//! loop does before it sleeps) the queue is empty and `poll_timeout` is O(1). Nothing
//! scans all peers on any call.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::peer::{Event, PeerConnection};
use crate::stun::{peek_class_method, peek_transaction_id, peek_username, Class};
use crate::transmit::{Datagram, DatagramKind, Protocol, Transmit};

/// How long a sent STUN request's transaction id is kept for routing its response.
const TRANSACTION_TTL: Duration = Duration::from_secs(40);
/// Most transaction ids remembered at once; the oldest are forgotten first.
const MAX_TRANSACTIONS: usize = 1 << 18;

/// A PeerConnection's handle inside an [`Endpoint`]. Handles of removed peers are never
/// reused for another peer (the slot's generation changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId {
    index: u32,
    generation: u32,
}

/// Counters of an [`Endpoint`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Datagrams handed to a peer.
    pub routed: u64,
    /// Datagrams no peer claims (unknown ufrag, transaction or address): dropped.
    pub unroutable: u64,
    /// Transaction ids forgotten early because too many were outstanding.
    pub transactions_evicted: u64,
}

struct Slot {
    generation: u32,
    peer: Option<PeerEntry>,
}

/// The live peer in slot `index`, whatever its generation.
fn peer_at(slots: &[Slot], index: u32) -> Option<&PeerEntry> {
    slots.get(index as usize)?.peer.as_ref()
}

/// [`peer_at`], mutable. A function of the slots rather than a method, so that callers
/// keep using the Endpoint's other fields while they hold the entry.
fn peer_at_mut(slots: &mut [Slot], index: u32) -> Option<&mut PeerEntry> {
    slots.get_mut(index as usize)?.peer.as_mut()
}

struct PeerEntry {
    pc: PeerConnection,
    /// The deadline this peer last reported (the one in the heap).
    deadline: Option<Instant>,
    /// The local ufrag it is indexed under.
    ufrag: String,
    /// The address pairs indexed to this peer (removed with it).
    addresses: Vec<(SocketAddr, SocketAddr)>,
    /// The pair its last transmit was indexed under, known to map to it: a peer sends
    /// every media packet on the same pair, so `learn` skips the hash lookup then.
    learned: Option<(SocketAddr, SocketAddr)>,
    in_output_queue: bool,
    in_event_queue: bool,
    /// Closed by `close_peer`: removed once its last datagram is sent.
    closing: bool,
}

/// Many PeerConnections sharing sockets. See the module documentation.
pub struct Endpoint {
    local_addresses: Vec<(SocketAddr, Protocol)>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    by_ufrag: HashMap<String, u32>,
    by_address: HashMap<(SocketAddr, SocketAddr), u32>,
    by_transaction: HashMap<[u8; 12], u32>,
    transaction_order: VecDeque<(Instant, [u8; 12])>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Peers that may have transmits or events.
    output: VecDeque<u32>,
    /// Peers that may have events.
    events: VecDeque<u32>,
    stats: EndpointStats,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::new(Vec::new())
    }
}

impl Endpoint {
    /// An endpoint whose peers use these local sockets (each peer gets them as host
    /// candidates when it is inserted).
    pub fn new(local_addresses: Vec<(SocketAddr, Protocol)>) -> Endpoint {
        Endpoint {
            local_addresses,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_ufrag: HashMap::new(),
            by_address: HashMap::new(),
            by_transaction: HashMap::new(),
            transaction_order: VecDeque::new(),
            timers: BinaryHeap::new(),
            output: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    /// The local sockets every peer is given.
    pub fn local_addresses(&self) -> &[(SocketAddr, Protocol)] {
        &self.local_addresses
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// How many peers it holds.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when it holds no peer.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Add a PeerConnection; it is told about the endpoint's local sockets.
    pub fn insert(&mut self, now: Instant, mut pc: PeerConnection) -> PeerId {
        for &(addr, protocol) in &self.local_addresses {
            pc.add_local_address(now, addr, protocol);
        }
        let entry = PeerEntry {
            ufrag: String::new(),
            pc,
            deadline: None,
            addresses: Vec::new(),
            learned: None,
            in_output_queue: false,
            in_event_queue: false,
            closing: false,
        };
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    peer: None,
                });
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let Some(slot) = self.slots.get_mut(index as usize) else {
            // Only reachable past 4 billion peers; the entry is dropped with a stale id.
            return PeerId {
                index,
                generation: u32::MAX,
            };
        };
        slot.peer = Some(entry);
        let id = PeerId {
            index,
            generation: slot.generation,
        };
        self.live += 1;
        self.touched(index);
        id
    }

    /// Take a PeerConnection out (call `close` on it first to say goodbye to the remote).
    /// Its routes are forgotten.
    pub fn remove(&mut self, id: PeerId) -> Option<PeerConnection> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let entry = slot.peer.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        if self.by_ufrag.get(&entry.ufrag) == Some(&id.index) {
            self.by_ufrag.remove(&entry.ufrag);
        }
        for key in &entry.addresses {
            if self.by_address.get(key) == Some(&id.index) {
                self.by_address.remove(key);
            }
        }
        // Heap entries, queue entries and transaction ids of the old slot are skipped or
        // dropped lazily: the slot is empty or belongs to a new generation that
        // re-validates them.
        Some(entry.pc)
    }

    /// Close a peer (`close()`: RTCP BYE and DTLS close_notify) and remove it once those
    /// are sent. False if there is no such peer.
    pub fn close_peer(&mut self, now: Instant, id: PeerId) -> bool {
        let Some(entry) = self.entry_mut(id).filter(|e| !e.closing) else {
            return false;
        };
        entry.pc.close(now);
        entry.closing = true;
        self.touched(id.index);
        true
    }

    /// A peer, to read.
    pub fn peer(&self, id: PeerId) -> Option<&PeerConnection> {
        self.entry(id).filter(|e| !e.closing).map(|e| &e.pc)
    }

    /// Call the PeerConnection API on a peer (`create_answer`, `add_ice_candidate`,
    /// `send_rtp`...). Its ufrag index is refreshed afterwards and it joins the output
    /// queue, where its deadline is read once it has nothing left to send.
    pub fn with_peer<R>(
        &mut self,
        id: PeerId,
        f: impl FnOnce(&mut PeerConnection) -> R,
    ) -> Option<R> {
        let entry = self.entry_mut(id).filter(|e| !e.closing)?;
        let result = f(&mut entry.pc);
        self.touched(id.index);
        Some(result)
    }

    /// The ids of all peers (in slot order), except those being closed.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.peer.as_ref().filter(|e| !e.closing).map(|_| PeerId {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                generation: s.generation,
            })
        })
    }

    /// Route a received datagram; returns the peer it went to, or `None` when no peer
    /// claims it (counted in `stats().unroutable`).
    pub fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) -> Option<PeerId> {
        let (routed, answered) = self.route(&datagram);
        if let Some(id) = answered {
            // Answered: a duplicate response goes by address, which is known by now.
            self.by_transaction.remove(&id);
        }
        let Some(index) = routed else {
            self.stats.unroutable += 1;
            return None;
        };
        let slot = self.slots.get_mut(index as usize)?;
        let generation = slot.generation;
        let Some(entry) = slot.peer.as_mut() else {
            self.stats.unroutable += 1;
            return None;
        };
        entry.pc.handle_datagram(now, datagram);
        self.stats.routed += 1;
        self.touched(index);
        Some(PeerId { index, generation })
    }

    /// Time passed: every peer whose deadline is due gets `handle_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Peers waiting in the output queue may have moved their deadline since their
        // heap entry was made: put their current one in the heap first.
        for i in 0..self.output.len() {
            if let Some(&index) = self.output.get(i) {
                self.refresh_deadline(index);
            }
        }
        while let Some(&Reverse((at, index))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = peer_at_mut(&mut self.slots, index) else {
                continue;
            };
            if entry.deadline != Some(at) {
                continue; // stale heap entry
            }
            entry.deadline = None;
            entry.pc.handle_timeout(now);
            self.touched(index);
        }
        self.forget_transactions(now);
    }

    /// The next datagram any peer wants sent, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(PeerId, Transmit)> {
        while let Some(&index) = self.output.front() {
            let Some(slot) = self.slots.get_mut(index as usize) else {
                self.output.pop_front();
                continue;
            };
            let generation = slot.generation;
            let Some(entry) = slot.peer.as_mut() else {
                self.output.pop_front();
                continue;
            };
            if let Some(t) = entry.pc.poll_transmit(now, buf) {
                let data = buf.get(..t.len).unwrap_or_default();
                self.learn(index, now, &t, data);
                return Some((PeerId { index, generation }, t));
            }
            entry.in_output_queue = false;
            let closing = entry.closing;
            self.output.pop_front();
            if closing {
                self.remove(PeerId { index, generation });
            } else {
                self.refresh(index);
            }
        }
        None
    }

    /// The next event of any peer.
    pub fn poll_event(&mut self) -> Option<(PeerId, Event)> {
        while let Some(&index) = self.events.front() {
            let Some(slot) = self.slots.get_mut(index as usize) else {
                self.events.pop_front();
                continue;
            };
            let generation = slot.generation;
            let Some(entry) = slot.peer.as_mut() else {
                self.events.pop_front();
                continue;
            };
            if let Some(event) = entry.pc.poll_event() {
                return Some((PeerId { index, generation }, event));
            }
            entry.in_event_queue = false;
            self.events.pop_front();
            // `PeerConnection::poll_event` only pops its queue: draining events changes
            // neither the deadline nor the ufrag, so there is nothing to refresh.
        }
        None
    }

    /// The earliest deadline of any peer. It may be earlier than needed (an entry for a
    /// deadline that moved): calling `handle_timeout` then is harmless. O(1) once
    /// `poll_transmit` has been drained; before that it also asks each peer still
    /// waiting in the output queue, whose heap entry may be stale.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.timers.peek().map(|Reverse((at, _))| *at);
        let waiting = self
            .output
            .iter()
            .filter_map(|&i| peer_at(&self.slots, i).and_then(|e| e.pc.poll_timeout()))
            .min();
        let transactions = self
            .transaction_order
            .front()
            .map(|(at, _)| *at + TRANSACTION_TTL);
        [peers, waiting, transactions].into_iter().flatten().min()
    }

    // ------------------------------------------------------------------ internals

    fn entry(&self, id: PeerId) -> Option<&PeerEntry> {
        let slot = self.slots.get(id.index as usize)?;
        (slot.generation == id.generation)
            .then_some(slot.peer.as_ref())
            .flatten()
    }

    fn entry_mut(&mut self, id: PeerId) -> Option<&mut PeerEntry> {
        let slot = self.slots.get_mut(id.index as usize)?;
        (slot.generation == id.generation)
            .then_some(slot.peer.as_mut())
            .flatten()
    }

    /// The peer a datagram belongs to, and the transaction id it answers if any.
    fn route(&self, d: &Datagram<'_>) -> (Option<u32>, Option<[u8; 12]>) {
        if DatagramKind::classify(d.data) == DatagramKind::Stun {
            match peek_class_method(d.data).map(|(class, _)| class) {
                Some(Class::Request) => {
                    let ours = peek_username(d.data).and_then(|u| u.split(':').next());
                    return (ours.and_then(|u| self.by_ufrag.get(u).copied()), None);
                }
                Some(Class::Success | Class::Error) => {
                    if let Some(id) = peek_transaction_id(d.data) {
                        if let Some(&index) = self.by_transaction.get(&id.0) {
                            return (Some(index), Some(id.0));
                        }
                    }
                }
                _ => {}
            }
        }
        (self.by_address.get(&(d.local, d.remote)).copied(), None)
    }

    /// Index what a peer sends: the address pair, and a request's transaction id.
    fn learn(&mut self, index: u32, now: Instant, t: &Transmit, data: &[u8]) {
        let key = (t.local, t.remote);
        let cached = peer_at(&self.slots, index).is_some_and(|e| e.learned == Some(key));
        if !cached {
            let previous = self.by_address.insert(key, index);
            if let Some(prev) = previous.filter(|p| *p != index) {
                // The pair moved to this peer: the previous owner's cache is stale.
                if let Some(e) = peer_at_mut(&mut self.slots, prev) {
                    if e.learned == Some(key) {
                        e.learned = None;
                    }
                }
            }
            if let Some(entry) = peer_at_mut(&mut self.slots, index) {
                if !entry.addresses.contains(&key) {
                    entry.addresses.push(key);
                }
                entry.learned = Some(key);
            }
        }
        if DatagramKind::classify(data) == DatagramKind::Stun
            && matches!(peek_class_method(data), Some((Class::Request, _)))
        {
            if let Some(id) = peek_transaction_id(data) {
                if self.transaction_order.len() >= MAX_TRANSACTIONS {
                    if let Some((_, old)) = self.transaction_order.pop_front() {
                        self.by_transaction.remove(&old);
                        self.stats.transactions_evicted += 1;
                    }
                }
                // A retransmission keeps its id and its first expiry (40 s covers the
                // whole transaction).
                if self.by_transaction.insert(id.0, index).is_none() {
                    self.transaction_order.push_back((now, id.0));
                }
            }
        }
    }

    fn forget_transactions(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.transaction_order.front() {
            if at + TRANSACTION_TTL > now {
                break;
            }
            self.transaction_order.pop_front();
            self.by_transaction.remove(&id);
        }
    }

    /// Something happened to a peer: it may have output, and its deadline and ufrag may
    /// have changed. The ufrag index is brought up to date now (a STUN request may name
    /// the new ufrag before the next drain); the deadline when the peer leaves the output
    /// queue (see the module doc).
    fn touched(&mut self, index: u32) {
        let Some(entry) = peer_at_mut(&mut self.slots, index) else {
            return;
        };
        if !entry.in_output_queue {
            entry.in_output_queue = true;
            self.output.push_back(index);
        }
        if !entry.in_event_queue {
            entry.in_event_queue = true;
            self.events.push_back(index);
        }
        self.refresh_ufrag(index);
    }

    /// Bring a peer's heap entry and ufrag index up to date.
    fn refresh(&mut self, index: u32) {
        self.refresh_deadline(index);
        self.refresh_ufrag(index);
    }

    fn refresh_deadline(&mut self, index: u32) {
        let Some(entry) = peer_at_mut(&mut self.slots, index) else {
            return;
        };
        let deadline = entry.pc.poll_timeout();
        if deadline != entry.deadline {
            entry.deadline = deadline;
            if let Some(at) = deadline {
                self.timers.push(Reverse((at, index)));
            }
        }
        // Stale heap entries pile up when deadlines move often; rebuild past a bound.
        if self.timers.len() > 4 * self.live + 64 {
            self.rebuild_timers();
        }
    }

    fn refresh_ufrag(&mut self, index: u32) {
        let Some(entry) = peer_at_mut(&mut self.slots, index) else {
            return;
        };
        let ufrag = entry.pc.local_ice_ufrag();
        if ufrag != entry.ufrag {
            let old = std::mem::replace(&mut entry.ufrag, ufrag.to_owned());
            if self.by_ufrag.get(&old) == Some(&index) {
                self.by_ufrag.remove(&old);
            }
            self.by_ufrag.insert(entry.ufrag.clone(), index);
        }
    }

    /// Drop the stale entries in place (no new heap: the forwarding path must not
    /// allocate, and it moves deadlines on every packet).
    fn rebuild_timers(&mut self) {
        let slots = &self.slots;
        self.timers.retain(|Reverse((at, i))| {
            slots
                .get(*i as usize)
                .and_then(|s| s.peer.as_ref())
                .is_some_and(|e| e.deadline == Some(*at))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::media::MediaKind;

    /// A peer touched by an API call joins the output queue with its heap entry not yet
    /// refreshed; `poll_timeout` must still see its deadline, and `handle_timeout` at that
    /// deadline must reach it, before any `poll_transmit`.
    #[test]
    fn deadline_of_a_peer_waiting_in_the_output_queue() {
        let now = Instant::now();
        let local: SocketAddr = "10.0.0.1:4000".parse().expect("addr");
        let mut ep = Endpoint::new(vec![(local, Protocol::Udp)]);
        let config = Config {
            rng_seed: Some(7),
            ..Default::default()
        };
        let id = ep.insert(now, PeerConnection::new(config, now).expect("pc"));
        let mut buf = vec![0u8; 2048];
        while ep.poll_transmit(now, &mut buf).is_some() {}
        // The remote end, outside the endpoint; its answer and candidate start checks.
        let mut remote = PeerConnection::new(
            Config {
                rng_seed: Some(8),
                ..Default::default()
            },
            now,
        )
        .expect("pc");
        remote.add_local_address(now, "10.0.0.2:5000".parse().expect("addr"), Protocol::Udp);
        let offer = ep
            .with_peer(id, |p| {
                p.add_track(MediaKind::Audio, vec!["s".into()])
                    .expect("track");
                let offer = p.create_offer(Default::default()).expect("offer");
                p.set_local_description(now, offer.clone()).expect("local");
                offer
            })
            .expect("peer");
        while ep.poll_transmit(now, &mut buf).is_some() {}
        while ep.poll_event().is_some() {}
        remote.set_remote_description(now, offer).expect("remote");
        let answer = remote.create_answer().expect("answer");
        remote
            .set_local_description(now, answer.clone())
            .expect("local");
        let mut candidates = Vec::new();
        while let Some(e) = remote.poll_event() {
            if let Event::IceCandidate(c) = e {
                candidates.push(c);
            }
        }
        assert!(ep.peer(id).and_then(PeerConnection::poll_timeout).is_none());
        ep.with_peer(id, |p| {
            p.set_remote_description(now, answer).expect("answer");
            for c in candidates {
                let _ = p.add_ice_candidate(now, c);
            }
        })
        .expect("peer");
        let due = ep.peer(id).and_then(PeerConnection::poll_timeout);
        assert!(due.is_some(), "connectivity checks arm a timer");
        let at = due.expect("deadline");
        assert!(
            ep.poll_timeout().is_some_and(|t| t <= at),
            "{:?} misses {at:?}",
            ep.poll_timeout()
        );
        ep.handle_timeout(at);
        assert_ne!(
            ep.peer(id).and_then(PeerConnection::poll_timeout),
            due,
            "the peer's timer fired"
        );
        while ep.poll_transmit(at, &mut buf).is_some() {}
        assert_eq!(
            ep.poll_timeout().map(|t| t.min(at)),
            ep.peer(id)
                .and_then(PeerConnection::poll_timeout)
                .map(|t| t.min(at))
        );
    }
}
