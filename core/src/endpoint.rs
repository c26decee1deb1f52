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
//!   remote address: a route.
//!
//! Routes (who owns an address pair):
//! - a route is learned only from a STUN message the endpoint routed to a peer by ufrag
//!   or transaction id, once that peer's ICE agent says the message validated its source
//!   ([`PeerConnection::is_address_validated`]: a success response with valid
//!   MESSAGE-INTEGRITY to its check, or such a request it answered). Where a peer sends
//!   proves nothing: a malicious client that lists a victim's address as its candidate
//!   makes its server peer send checks there, but the victim never answers them with the
//!   right integrity, so the victim's media keeps reaching the victim's peer;
//! - a route owned by a live peer is not taken by another one (the refusal is counted in
//!   `routes_refused`); it moves once its owner is closed or removed, or its owner's own
//!   table dropped it. One exception: an owner that only proved the route by requests
//!   (whose source can be forged by anyone who knows its password, such as its own
//!   client) loses it to a peer whose check was answered there ([`Validation::Response`]:
//!   the remote receives at that address), counted in `routes_taken_over`. So a client
//!   that spoofs authenticated checks from a victim's address before the victim connects
//!   holds the route only until the victim's peer hears back from the victim (not with an
//!   ICE-lite peer, which sends no checks);
//! - each peer owns at most [`MAX_ROUTES_PER_PEER`] routes. A new one replaces the oldest
//!   that its ICE agent no longer reports validated, else the oldest other than its
//!   selected pair (counted in `routes_evicted`), so new source ports and ICE restarts
//!   cannot grow the table. Nothing is looked up per media packet beyond the one hash
//!   lookup of the route.
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

use crate::ice::Validation;
use crate::peer::{ConnectionState, Event, PeerConnection};
use crate::stun::{peek_class_method, peek_transaction_id, peek_username, Class};
use crate::transmit::{Datagram, DatagramKind, Protocol, Transmit};

/// How long a sent STUN request's transaction id is kept for routing its response.
const TRANSACTION_TTL: Duration = Duration::from_secs(40);
/// Most transaction ids remembered at once; the oldest are forgotten first.
const MAX_TRANSACTIONS: usize = 1 << 18;
/// Most routes (local and remote address pairs) one peer owns; see the module doc.
pub const MAX_ROUTES_PER_PEER: usize = 16;

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
    /// Routes a peer validated but could not take because another live peer owns them.
    pub routes_refused: u64,
    /// Routes a live peer proved only by requests and lost to a peer whose check was
    /// answered at that address.
    pub routes_taken_over: u64,
    /// Routes a peer gave up to stay within [`MAX_ROUTES_PER_PEER`].
    pub routes_evicted: u64,
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

/// Who owns a route, and how its ICE agent proved it.
#[derive(Debug, Clone, Copy)]
struct RouteOwner {
    index: u32,
    proof: Validation,
}

/// How [`Endpoint::route`] found a datagram's peer.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// A STUN request, by the local ufrag in its USERNAME.
    Ufrag(u32),
    /// A STUN response, by the transaction id of the request it answers.
    Transaction(u32, [u8; 12]),
    /// By the local and remote address.
    Address(u32),
    /// No peer claims it.
    Nowhere,
}

struct PeerEntry {
    pc: PeerConnection,
    /// The deadline this peer last reported (the one in the heap).
    deadline: Option<Instant>,
    /// The local ufrag it is indexed under.
    ufrag: String,
    /// The routes this peer owns, oldest first (at most [`MAX_ROUTES_PER_PEER`]): exactly
    /// the keys of `by_address` that map to it (removed with it).
    addresses: VecDeque<(SocketAddr, SocketAddr)>,
    in_output_queue: bool,
    in_event_queue: bool,
    /// Closed by `close_peer`: removed once its last datagram is sent.
    closing: bool,
}

impl PeerEntry {
    /// A live peer keeps its routes; a closed one gives them up to whoever proves them.
    fn owns_routes(&self) -> bool {
        !self.closing && self.pc.connection_state() != ConnectionState::Closed
    }
}

/// Many PeerConnections sharing sockets. See the module documentation.
pub struct Endpoint {
    local_addresses: Vec<(SocketAddr, Protocol)>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    by_ufrag: HashMap<String, u32>,
    by_address: HashMap<(SocketAddr, SocketAddr), RouteOwner>,
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
            addresses: VecDeque::new(),
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
            if self.owner_of(*key) == Some(id.index) {
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
        let route = self.route(&datagram);
        if let Route::Transaction(_, id) = route {
            // Answered: a duplicate response goes by address, which is known by now.
            self.by_transaction.remove(&id);
        }
        let index = match route {
            Route::Ufrag(index) | Route::Transaction(index, _) | Route::Address(index) => index,
            Route::Nowhere => {
                self.stats.unroutable += 1;
                return None;
            }
        };
        let key = (datagram.local, datagram.remote);
        let slot = self.slots.get_mut(index as usize)?;
        let generation = slot.generation;
        let Some(entry) = slot.peer.as_mut() else {
            self.stats.unroutable += 1;
            return None;
        };
        entry.pc.handle_datagram(now, datagram);
        // A STUN message this peer's credentials let through may have validated its
        // source: then the route is the peer's (see the module doc).
        if !matches!(route, Route::Address(_)) {
            if let Some(proof) = entry.pc.address_validation(key.0, key.1) {
                self.claim(index, key, proof);
            }
        }
        self.stats.routed += 1;
        self.touched(index);
        Some(PeerId { index, generation })
    }

    /// How many routes (local and remote address pairs) a peer owns, at most
    /// [`MAX_ROUTES_PER_PEER`]; `None` for an unknown peer.
    pub fn route_count(&self, id: PeerId) -> Option<usize> {
        self.entry(id).map(|e| e.addresses.len())
    }

    /// The peer that owns the route `(local, remote)`: where a DTLS, SRTP or SRTCP
    /// datagram from `remote` to `local` goes.
    pub fn route_owner(&self, local: SocketAddr, remote: SocketAddr) -> Option<PeerId> {
        let index = self.owner_of((local, remote))?;
        let slot = self.slots.get(index as usize)?;
        slot.peer.as_ref().map(|_| PeerId {
            index,
            generation: slot.generation,
        })
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
                self.learn(index, now, data);
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
            // Reading data-channel events frees SCTP receive buffer, which makes a window
            // update due at once: the peer goes through the output queue, whose drain
            // sends it and refreshes the deadline.
            if !entry.in_output_queue {
                entry.in_output_queue = true;
                self.output.push_back(index);
            }
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

    /// The peer a datagram belongs to, and how that was decided.
    fn route(&self, d: &Datagram<'_>) -> Route {
        if DatagramKind::classify(d.data) == DatagramKind::Stun {
            match peek_class_method(d.data).map(|(class, _)| class) {
                Some(Class::Request) => {
                    let ours = peek_username(d.data).and_then(|u| u.split(':').next());
                    return match ours.and_then(|u| self.by_ufrag.get(u).copied()) {
                        Some(index) => Route::Ufrag(index),
                        None => Route::Nowhere,
                    };
                }
                Some(Class::Success | Class::Error) => {
                    if let Some(id) = peek_transaction_id(d.data) {
                        if let Some(&index) = self.by_transaction.get(&id.0) {
                            return Route::Transaction(index, id.0);
                        }
                    }
                }
                _ => {}
            }
        }
        match self.by_address.get(&(d.local, d.remote)) {
            Some(owner) => Route::Address(owner.index),
            None => Route::Nowhere,
        }
    }

    /// The slot of the peer that owns a route.
    fn owner_of(&self, key: (SocketAddr, SocketAddr)) -> Option<u32> {
        self.by_address.get(&key).map(|o| o.index)
    }

    /// Give the route `key` to the peer in slot `index`, whose ICE agent validated it
    /// with `proof`, unless another live peer owns it as firmly. See the module doc.
    fn claim(&mut self, index: u32, key: (SocketAddr, SocketAddr), proof: Validation) {
        if let Some(owner) = self.by_address.get_mut(&key) {
            if owner.index == index {
                owner.proof = owner.proof.max(proof);
                return;
            }
            let firmer = proof > owner.proof;
            let previous = owner.index;
            match peer_at_mut(&mut self.slots, previous) {
                Some(e) if e.owns_routes() && !firmer => {
                    self.stats.routes_refused += 1;
                    return;
                }
                Some(e) => {
                    if e.owns_routes() {
                        self.stats.routes_taken_over += 1;
                    }
                    e.addresses.retain(|k| *k != key);
                }
                None => {}
            }
        }
        let Some(entry) = peer_at_mut(&mut self.slots, index) else {
            return;
        };
        if entry.addresses.len() >= MAX_ROUTES_PER_PEER {
            let pc = &entry.pc;
            let selected = pc.selected_pair().map(|p| (p.local, p.remote));
            let oldest = entry
                .addresses
                .iter()
                .position(|&(l, r)| !pc.is_address_validated(l, r))
                .or_else(|| entry.addresses.iter().position(|&k| Some(k) != selected))
                .unwrap_or(0);
            if let Some(old) = entry.addresses.remove(oldest) {
                if self.by_address.get(&old).map(|o| o.index) == Some(index) {
                    self.by_address.remove(&old);
                }
                self.stats.routes_evicted += 1;
            }
        }
        entry.addresses.push_back(key);
        self.by_address.insert(key, RouteOwner { index, proof });
    }

    /// Index a request's transaction id, so that its response finds the peer.
    fn learn(&mut self, index: u32, now: Instant, data: &[u8]) {
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
        // After a peak (many peers connecting at once) the index gives its memory back
        // once it is mostly empty, rather than keeping the peak's capacity for good.
        if self.by_transaction.capacity() > 4 * self.by_transaction.len() + 1024 {
            self.by_transaction.shrink_to(2 * self.by_transaction.len());
            self.transaction_order
                .shrink_to(2 * self.transaction_order.len());
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
    use crate::stun::{Attribute, Message, Method, TransactionId};

    /// The transaction index keeps routing responses for 40 s, and then gives back the
    /// memory a burst of connections made it take.
    #[test]
    fn the_transaction_index_shrinks_after_a_peak() {
        let now = Instant::now();
        let mut ep = Endpoint::new(Vec::new());
        for n in 0..20_000u32 {
            let mut id = [0u8; 12];
            id[..4].copy_from_slice(&n.to_be_bytes());
            let request = Message::new(Class::Request, Method::BINDING, TransactionId(id))
                .encode_to_vec(None, true);
            ep.learn(0, now, &request);
        }
        assert_eq!(ep.by_transaction.len(), 20_000);
        let peak = ep.by_transaction.capacity();
        ep.forget_transactions(now + Duration::from_secs(39));
        assert_eq!(ep.by_transaction.len(), 20_000, "still within the 40 s");
        ep.forget_transactions(now + TRANSACTION_TTL);
        assert!(ep.by_transaction.is_empty() && ep.transaction_order.is_empty());
        assert!(
            ep.by_transaction.capacity() < peak / 8,
            "capacity {} after a peak of {peak}",
            ep.by_transaction.capacity()
        );
        assert!(ep.transaction_order.capacity() < 20_000 / 8);
    }

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

    /// A server peer and the credentials of both ends (a client knows them all).
    struct TestPeer {
        id: PeerId,
        ufrag: String,
        pwd: String,
        client_ufrag: String,
        client_pwd: String,
    }

    fn sdp_value(sdp: &str, prefix: &str) -> String {
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .expect("attribute")
            .trim()
            .to_owned()
    }

    /// A server peer in `ep` that answered a client's offer, with what a client needs
    /// to send it authenticated checks and answer its checks.
    fn answering_peer(ep: &mut Endpoint, now: Instant, seed: u64) -> TestPeer {
        let mut client = PeerConnection::new(
            Config {
                rng_seed: Some(seed),
                ..Default::default()
            },
            now,
        )
        .expect("pc");
        client
            .add_track(MediaKind::Audio, vec!["s".into()])
            .expect("track");
        let offer = client.create_offer(Default::default()).expect("offer");
        client
            .set_local_description(now, offer.clone())
            .expect("local");
        let offer_sdp = offer.sdp.clone();
        let server = PeerConnection::new(
            Config {
                rng_seed: Some(seed + 1000),
                ..Default::default()
            },
            now,
        )
        .expect("pc");
        let id = ep.insert(now, server);
        let answer = ep
            .with_peer(id, |p| {
                p.set_remote_description(now, offer).expect("remote");
                let answer = p.create_answer().expect("answer");
                p.set_local_description(now, answer.clone()).expect("local");
                answer
            })
            .expect("peer");
        TestPeer {
            id,
            ufrag: ep.peer(id).expect("peer").local_ice_ufrag().to_owned(),
            pwd: sdp_value(&answer.sdp, "a=ice-pwd:"),
            client_ufrag: client.local_ice_ufrag().to_owned(),
            client_pwd: sdp_value(&offer_sdp, "a=ice-pwd:"),
        }
    }

    /// A binding request for a server peer, with or without its password's integrity.
    fn check(peer: &TestPeer, key: Option<&str>, n: u32) -> Vec<u8> {
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&n.to_be_bytes());
        id[4] = 0xA5;
        Message::new(Class::Request, Method::BINDING, TransactionId(id))
            .with(Attribute::Username(format!(
                "{}:{}",
                peer.ufrag, peer.client_ufrag
            )))
            .with(Attribute::Priority(1_000))
            .with(Attribute::IceControlling(9))
            .encode_to_vec(key.map(str::as_bytes), true)
    }

    fn deliver(
        ep: &mut Endpoint,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Option<PeerId> {
        ep.handle_datagram(
            now,
            Datagram {
                local,
                remote,
                protocol: Protocol::Udp,
                data,
            },
        )
    }

    fn drain(ep: &mut Endpoint, now: Instant) -> Vec<(PeerId, Transmit)> {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::new();
        while let Some(t) = ep.poll_transmit(now, &mut buf) {
            out.push(t);
        }
        while ep.poll_event().is_some() {}
        out
    }

    const LOCAL: &str = "10.0.0.1:4000";
    /// The first bytes of a DTLS record: routed by address.
    const DTLS: [u8; 13] = [22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    /// A peer that sends checks to an address it was told about (a malicious client's
    /// candidate naming a victim) does not get that address's datagrams: only a source
    /// that passed an integrity-checked check becomes a route, and it is the prover's.
    #[test]
    fn sending_to_an_address_does_not_route_it() {
        let now = Instant::now();
        let local: SocketAddr = LOCAL.parse().expect("addr");
        let victim: SocketAddr = "10.0.0.66:6666".parse().expect("addr");
        let mut ep = Endpoint::new(vec![(local, Protocol::Udp)]);
        let attacker = answering_peer(&mut ep, now, 1);
        drain(&mut ep, now);
        let candidate = crate::sdp::IceCandidateInit {
            candidate: format!(
                "candidate:1 1 udp 2122260223 {} {} typ host",
                victim.ip(),
                victim.port()
            ),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        };
        ep.with_peer(attacker.id, |p| p.add_ice_candidate(now, candidate))
            .expect("peer")
            .expect("candidate");
        let mut at = now;
        let mut checked = false;
        for _ in 0..40 {
            at += Duration::from_millis(50);
            ep.handle_timeout(at);
            checked |= drain(&mut ep, at)
                .iter()
                .any(|(id, t)| *id == attacker.id && t.remote == victim);
        }
        assert!(checked, "the attacker's peer checked the listed address");
        assert_eq!(ep.route_owner(local, victim), None);
        assert_eq!(
            deliver(&mut ep, at, local, victim, &DTLS),
            None,
            "not routed to the attacker"
        );
        // The victim's own peer proves the address with its password: the route is its.
        let victim_peer = answering_peer(&mut ep, at, 2);
        let unauthenticated = check(&victim_peer, None, 1);
        assert_eq!(
            deliver(&mut ep, at, local, victim, &unauthenticated),
            Some(victim_peer.id)
        );
        assert_eq!(
            ep.route_owner(local, victim),
            None,
            "no integrity, no route"
        );
        let good = check(&victim_peer, Some(&victim_peer.pwd), 2);
        assert_eq!(
            deliver(&mut ep, at, local, victim, &good),
            Some(victim_peer.id)
        );
        assert_eq!(ep.route_owner(local, victim), Some(victim_peer.id));
        drain(&mut ep, at);
        for _ in 0..40 {
            at += Duration::from_millis(50);
            ep.handle_timeout(at);
            drain(&mut ep, at);
        }
        assert_eq!(
            ep.route_owner(local, victim),
            Some(victim_peer.id),
            "checks do not move it"
        );
        assert_eq!(
            deliver(&mut ep, at, local, victim, &DTLS),
            Some(victim_peer.id)
        );
    }

    /// A route owned by a live peer is not taken by another peer that proves the same
    /// address (refused and counted); once the owner is removed, the next proof takes it.
    #[test]
    fn a_live_owner_keeps_its_route() {
        let now = Instant::now();
        let local: SocketAddr = LOCAL.parse().expect("addr");
        let source: SocketAddr = "10.0.0.5:5000".parse().expect("addr");
        let mut ep = Endpoint::new(vec![(local, Protocol::Udp)]);
        let first = answering_peer(&mut ep, now, 3);
        let second = answering_peer(&mut ep, now, 4);
        deliver(
            &mut ep,
            now,
            local,
            source,
            &check(&first, Some(&first.pwd), 1),
        );
        assert_eq!(ep.route_owner(local, source), Some(first.id));
        deliver(
            &mut ep,
            now,
            local,
            source,
            &check(&second, Some(&second.pwd), 2),
        );
        assert!(ep
            .peer(second.id)
            .expect("peer")
            .is_address_validated(local, source));
        assert_eq!(ep.route_owner(local, source), Some(first.id), "not taken");
        assert_eq!(ep.stats().routes_refused, 1);
        assert_eq!(deliver(&mut ep, now, local, source, &DTLS), Some(first.id));
        // The owner closes: the next proof by the other peer takes the route.
        assert!(ep.close_peer(now, first.id));
        deliver(
            &mut ep,
            now,
            local,
            source,
            &check(&second, Some(&second.pwd), 3),
        );
        assert_eq!(ep.route_owner(local, source), Some(second.id));
        drain(&mut ep, now);
        assert!(ep.peer(first.id).is_none(), "removed once drained");
        assert_eq!(deliver(&mut ep, now, local, source, &DTLS), Some(second.id));
        assert_eq!(ep.route_count(second.id), Some(1));
    }

    /// A peer validated from ever new source ports (a NAT rebinding, a flood by its own
    /// client) owns at most `MAX_ROUTES_PER_PEER` routes; the newest work, the oldest are
    /// forgotten, and other peers' routes are untouched.
    #[test]
    fn a_peers_routes_are_bounded() {
        let now = Instant::now();
        let local: SocketAddr = LOCAL.parse().expect("addr");
        let mut ep = Endpoint::new(vec![(local, Protocol::Udp)]);
        let other = answering_peer(&mut ep, now, 5);
        let other_source: SocketAddr = "10.0.0.9:9000".parse().expect("addr");
        deliver(
            &mut ep,
            now,
            local,
            other_source,
            &check(&other, Some(&other.pwd), 1),
        );
        let flooder = answering_peer(&mut ep, now, 6);
        for port in 0..200u16 {
            let from = SocketAddr::from(([10, 0, 0, 7], 20_000 + port));
            deliver(
                &mut ep,
                now,
                local,
                from,
                &check(&flooder, Some(&flooder.pwd), u32::from(port) + 10),
            );
            assert_eq!(ep.route_owner(local, from), Some(flooder.id));
            assert!(ep.route_count(flooder.id).expect("peer") <= MAX_ROUTES_PER_PEER);
            drain(&mut ep, now);
        }
        assert_eq!(ep.route_count(flooder.id), Some(MAX_ROUTES_PER_PEER));
        assert_eq!(ep.stats().routes_evicted, 200 - MAX_ROUTES_PER_PEER as u64);
        assert_eq!(
            ep.route_owner(local, SocketAddr::from(([10, 0, 0, 7], 20_000))),
            None
        );
        assert!(ep.by_address.len() <= MAX_ROUTES_PER_PEER + 1);
        assert_eq!(ep.route_owner(local, other_source), Some(other.id));
    }

    /// A route its owner proved only by requests (a forgeable source) goes to a peer
    /// whose own check is answered there with integrity; the request-only peer cannot
    /// take it back.
    #[test]
    fn an_answered_check_takes_a_route_proved_only_by_requests() {
        let now = Instant::now();
        let local: SocketAddr = LOCAL.parse().expect("addr");
        let source: SocketAddr = "10.0.0.5:5000".parse().expect("addr");
        let mut ep = Endpoint::new(vec![(local, Protocol::Udp)]);
        let squatter = answering_peer(&mut ep, now, 7);
        let owner = answering_peer(&mut ep, now, 8);
        drain(&mut ep, now);
        deliver(
            &mut ep,
            now,
            local,
            source,
            &check(&squatter, Some(&squatter.pwd), 1),
        );
        assert_eq!(ep.route_owner(local, source), Some(squatter.id));
        // The owner learns the source as a candidate and checks it; the answer comes
        // from there with the owner's client's password.
        let candidate = crate::sdp::IceCandidateInit {
            candidate: format!(
                "candidate:1 1 udp 2122260223 {} {} typ host",
                source.ip(),
                source.port()
            ),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        };
        ep.with_peer(owner.id, |p| p.add_ice_candidate(now, candidate))
            .expect("peer")
            .expect("candidate");
        let mut at = now;
        let mut buf = vec![0u8; 2048];
        let request = 'found: loop {
            at += Duration::from_millis(20);
            ep.handle_timeout(at);
            while let Some((id, t)) = ep.poll_transmit(at, &mut buf) {
                let data = buf.get(..t.len).unwrap_or_default();
                if id == owner.id && t.remote == source {
                    if let Ok(m) = Message::parse(data) {
                        if m.class == Class::Request {
                            break 'found m.transaction_id;
                        }
                    }
                }
            }
            assert!(at < now + Duration::from_secs(5), "no check to the source");
        };
        drain(&mut ep, at);
        let answer = Message::new(Class::Success, Method::BINDING, request)
            .with(Attribute::XorMappedAddress(local))
            .encode_to_vec(Some(owner.client_pwd.as_bytes()), true);
        assert_eq!(deliver(&mut ep, at, local, source, &answer), Some(owner.id));
        assert_eq!(ep.route_owner(local, source), Some(owner.id));
        assert_eq!(ep.stats().routes_taken_over, 1);
        assert_eq!(ep.route_count(squatter.id), Some(0));
        deliver(
            &mut ep,
            at,
            local,
            source,
            &check(&squatter, Some(&squatter.pwd), 2),
        );
        assert_eq!(
            ep.route_owner(local, source),
            Some(owner.id),
            "not taken back"
        );
        assert_eq!(ep.stats().routes_refused, 1);
        assert_eq!(deliver(&mut ep, at, local, source, &DTLS), Some(owner.id));
    }
}
