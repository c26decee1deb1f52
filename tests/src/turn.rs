//! A TURN server on the virtual network: the core's RFC 8656 server model (long-term
//! credentials with a 401 challenge, Allocate, Refresh, CreatePermission, ChannelBind,
//! Send/Data indications, ChannelData, lifetimes on the virtual clock), one allocation
//! per client address, each on its own relayed address from a pool the node owns.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use sansrtc::rng::Rng;
use sansrtc::stun::Method;
use sansrtc::turn::server_model::ServerModel;
use sansrtc::{Datagram, Transmit};

use crate::Node;

/// Most datagrams the node queues before it drops (and counts) more.
const QUEUE: usize = 4096;

struct Allocation {
    client: SocketAddr,
    relayed: SocketAddr,
    model: ServerModel,
}

/// A TURN server model node. Add it with `Network::add_node(name, node, &node.addresses())`.
pub struct TurnNode {
    addr: SocketAddr,
    pool: Vec<SocketAddr>,
    allocations: Vec<Allocation>,
    username: String,
    password: String,
    /// LIFETIME granted when the client asks for none (seconds).
    pub default_lifetime: u32,
    /// Drop everything (an unreachable server).
    pub silent: bool,
    queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    rng: Rng,
    /// Datagrams dropped: no free relayed address, or the queue was full.
    pub dropped: u64,
}

impl TurnNode {
    /// A server at `addr` with `relays` relayed addresses (`addr`'s IP, ports above it)
    /// and one user.
    pub fn new(addr: SocketAddr, relays: u16, username: &str, password: &str, seed: u64) -> Self {
        let pool = (1..=relays)
            .map(|i| SocketAddr::new(addr.ip(), addr.port().wrapping_add(1000 + i)))
            .collect();
        TurnNode {
            addr,
            pool,
            allocations: Vec::new(),
            username: username.into(),
            password: password.into(),
            default_lifetime: 600,
            silent: false,
            queue: VecDeque::new(),
            rng: Rng::from_seed(seed),
            dropped: 0,
        }
    }

    /// Every address the node must own: the server's and the relayed pool.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.addr];
        all.extend(self.pool.iter().copied());
        all
    }

    /// How many requests of `method` the allocation of `client` has seen.
    pub fn requests(&self, client: SocketAddr, method: Method) -> usize {
        self.allocations
            .iter()
            .find(|a| a.client == client)
            .map_or(0, |a| a.model.count(method))
    }

    /// Requests of `method` over every client.
    pub fn total_requests(&self, method: Method) -> usize {
        self.allocations.iter().map(|a| a.model.count(method)).sum()
    }

    /// Clients with an allocation alive at `now`.
    pub fn live_allocations(&self, now: Instant) -> usize {
        self.allocations
            .iter()
            .filter(|a| a.model.allocation.as_ref().is_some_and(|x| now < x.expires))
            .count()
    }

    fn drain(&mut self, index: usize) {
        let Some(a) = self.allocations.get_mut(index) else {
            return;
        };
        let mut out = Vec::new();
        while let Some(m) = a.model.to_client.pop_front() {
            out.push((self.addr, a.client, m));
        }
        for (peer, data) in a.model.to_peers.drain(..) {
            out.push((a.relayed, peer, data));
        }
        for o in out {
            if self.queue.len() >= QUEUE {
                self.dropped += 1;
            } else {
                self.queue.push_back(o);
            }
        }
    }
}

impl Node for TurnNode {
    fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        if self.silent {
            return;
        }
        if d.local == self.addr {
            let index = match self.allocations.iter().position(|a| a.client == d.remote) {
                Some(i) => i,
                None => {
                    let Some(relayed) = self.pool.get(self.allocations.len()).copied() else {
                        self.dropped += 1;
                        return;
                    };
                    let mut model =
                        ServerModel::new(self.addr, relayed, &self.username, &self.password);
                    model.default_lifetime = self.default_lifetime;
                    self.allocations.push(Allocation {
                        client: d.remote,
                        relayed,
                        model,
                    });
                    self.allocations.len() - 1
                }
            };
            if let Some(a) = self.allocations.get_mut(index) {
                a.model.handle(now, d.remote, d.data);
            }
            self.drain(index);
        } else if let Some(index) = self.allocations.iter().position(|a| a.relayed == d.local) {
            if let Some(a) = self.allocations.get_mut(index) {
                a.model
                    .relay_from_peer(now, d.remote, d.data, &mut self.rng);
            }
            self.drain(index);
        } else {
            self.dropped += 1;
        }
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        crate::node::pop_queued(&mut self.queue, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
