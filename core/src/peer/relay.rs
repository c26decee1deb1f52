//! TURN relays inside the PeerConnection: one [`TurnClient`] per configured TURN server,
//! whose relayed address becomes a relay candidate of the ICE agent.
//!
//! The ICE agent treats a relayed address like a local socket: its pairs have the relayed
//! address as their local side. This module is what makes that true on the wire:
//! - out: a transmit whose `local` is a relayed address is wrapped (ChannelData once the
//!   selected pair's channel is bound, a Send indication before) and sent from the TURN
//!   client's own socket or stream to the server;
//! - in: a datagram from a TURN server on the client's socket is unwrapped, and its
//!   payload is dispatched again as if it had arrived on the relayed address from the peer;
//! - permissions follow the remote candidates (every new remote address gets one), and
//!   the selected pair gets a channel.
//!
//! Allocations start when gathering starts (never before `setLocalDescription`, as in
//! browsers). Gathering waits for each one to give a candidate or fail; a failure is an
//! [`Event::IceCandidateError`] and ends that wait, within the TURN client's bounded
//! transaction timeout.

use std::net::SocketAddr;
use std::time::Instant;

use crate::config::IceServer;
use crate::ice::{CandidateKind, IceAgent, SelectedPair};
use crate::rng::Rng;
use crate::transmit::{Protocol, Transmit};
use crate::turn::{
    ServerUrl, TurnClient, TurnError, TurnEvent, TurnInput, TurnSendError, TurnStats,
};

use super::Event;

/// Most TURN servers one PeerConnection allocates on.
pub const MAX_RELAYS: usize = 8;
/// How long gathering waits, from its start, for the runtime to hand over a TURN server
/// the core cannot reach itself (a host name, TCP, TLS) or to report it unreachable.
pub const RUNTIME_TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A TURN server at a resolved address, reached from one of our sockets or streams
/// (`RTCIceServer` after the runtime has done what the core cannot: resolve the host and,
/// for `?transport=tcp` and `turns:`, open the TCP or TLS stream).
#[derive(Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// The URL as configured (reported in [`Event::IceCandidateError`]).
    pub url: String,
    /// Our UDP socket, or the local address of the stream to the server.
    pub local: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// `Udp`, or `Tcp` for a stream (plain TCP or TLS: the runtime owns the stream; the
    /// core writes and reads whole framed TURN messages).
    pub protocol: Protocol,
    /// The long-term credential's username.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("url", &self.url)
            .field("local", &self.local)
            .field("server", &self.server)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A `turn:` URL with an IP literal over UDP, waiting for a local socket of its family.
struct Configured {
    url: String,
    server: SocketAddr,
    username: String,
    password: String,
    started: bool,
}

/// Never prints the password.
impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configured")
            .field("url", &self.url)
            .field("server", &self.server)
            .field("username", &self.username)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Entry {
    url: String,
    local: SocketAddr,
    protocol: Protocol,
    client: TurnClient,
    /// The relayed address, once allocated (and while the allocation lives).
    relayed: Option<SocketAddr>,
    /// ICE's gathering still waits for this allocation.
    gathering: bool,
    /// An error event was reported (only the first failure is).
    failed: bool,
}

/// What a datagram on a TURN client's socket was.
pub(crate) enum RelayInput<'a> {
    /// Handled by the TURN client.
    Consumed,
    /// A peer's datagram through the relay: dispatch it as arriving on `relayed`.
    Peer {
        relayed: SocketAddr,
        peer: SocketAddr,
        data: &'a [u8],
    },
    /// Not TURN (e.g. ICE's Binding response from the same server).
    NotTurn,
}

/// The TURN clients of one PeerConnection.
#[derive(Debug)]
pub(crate) struct Relays {
    rng: Rng,
    configured: Vec<Configured>,
    /// Servers added by the runtime before gathering started.
    queued: Vec<TurnServer>,
    entries: Vec<Entry>,
    /// UDP sockets the core-started allocations may use.
    bases: Vec<SocketAddr>,
    started: bool,
    /// ICE's remote candidate count when permissions were last brought up to date.
    permissions_for: usize,
    close_pending: bool,
    /// Configured URLs the runtime must resolve or connect: gathering waits for each (once
    /// started) until `add_server` brings it, the runtime reports it unreachable, or
    /// `await_deadline` passes.
    awaited: Vec<String>,
    await_deadline: Option<Instant>,
    /// Events for the application, drained by `pump`.
    events: Vec<Event>,
    /// Under the relay policy the candidates' related address is not revealed.
    pub(crate) hide_mapped: bool,
    /// Servers refused (over [`MAX_RELAYS`], or a URL that did not parse).
    pub(crate) refused: u64,
}

impl Relays {
    /// The relays of a new PeerConnection: the `turn:` URLs with an IP literal over UDP
    /// are kept for the core to start; the number of URLs left to the runtime (host
    /// names, TCP, TLS) is returned with the relays.
    pub(crate) fn new(servers: &[IceServer], rng: Rng) -> (Relays, u64) {
        let mut relays = Relays {
            rng,
            configured: Vec::new(),
            queued: Vec::new(),
            entries: Vec::new(),
            bases: Vec::new(),
            started: false,
            permissions_for: 0,
            close_pending: false,
            awaited: Vec::new(),
            await_deadline: None,
            events: Vec::new(),
            hide_mapped: false,
            refused: 0,
        };
        let mut for_runtime = 0;
        for server in servers {
            for url in &server.urls {
                let Ok(parsed) = ServerUrl::parse(url) else {
                    if url.starts_with("turn") {
                        relays.refused += 1;
                    }
                    continue;
                };
                if !parsed.scheme.is_turn() {
                    continue;
                }
                match parsed.socket_addr().filter(|_| !parsed.needs_runtime()) {
                    Some(addr) if relays.configured.len() < MAX_RELAYS => {
                        relays.configured.push(Configured {
                            url: url.clone(),
                            server: addr,
                            username: server.username.clone().unwrap_or_default(),
                            password: server.credential.clone().unwrap_or_default(),
                            started: false,
                        })
                    }
                    Some(_) => relays.refused += 1,
                    None => {
                        for_runtime += 1;
                        if relays.awaited.len() < MAX_RELAYS {
                            relays.awaited.push(url.clone());
                        }
                    }
                }
            }
        }
        (relays, for_runtime)
    }

    /// Nothing to relay through or wait for: the hot paths skip this module.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.await_deadline.is_none() && self.events.is_empty()
    }

    /// A local UDP socket: configured servers of its family can now be allocated on.
    pub(crate) fn add_base(&mut self, now: Instant, ice: &mut IceAgent, addr: SocketAddr) {
        if self.bases.contains(&addr) || self.bases.len() >= 32 {
            return;
        }
        self.bases.push(addr);
        if self.started {
            self.start_configured(now, ice);
        }
    }

    /// A server from the runtime. Allocated at once if gathering has started.
    pub(crate) fn add_server(&mut self, now: Instant, ice: &mut IceAgent, server: TurnServer) {
        if self.entries.len() + self.queued.len() >= MAX_RELAYS {
            self.refused += 1;
            return;
        }
        if !self.started {
            self.queued.push(server);
            return;
        }
        // A server gathering already waits for hands its wait over to its allocation.
        let awaited = self.take_awaited(&server.url);
        self.start_one(now, ice, server, awaited);
    }

    fn take_awaited(&mut self, url: &str) -> bool {
        match self.awaited.iter().position(|u| u == url) {
            Some(i) => {
                self.awaited.remove(i);
                if self.awaited.is_empty() {
                    self.await_deadline = None;
                }
                true
            }
            None => false,
        }
    }

    /// The runtime could not resolve or connect to `url` (one the core left to it).
    pub(crate) fn unreachable(&mut self, now: Instant, ice: &mut IceAgent, url: &str) {
        let started = self.started;
        if !self.take_awaited(url) {
            return;
        }
        if started {
            ice.relay_failed(now);
        }
        self.events.push(Event::IceCandidateError {
            url: url.to_string(),
            local: SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0),
            error: TurnError::Unreachable,
        });
    }

    /// Gathering started: allocate on every server known so far.
    pub(crate) fn start(&mut self, now: Instant, ice: &mut IceAgent) {
        if self.started {
            return;
        }
        self.started = true;
        for server in std::mem::take(&mut self.queued) {
            self.take_awaited(&server.url);
            self.start_one(now, ice, server, false);
        }
        for _ in &self.awaited {
            ice.relay_started();
        }
        if !self.awaited.is_empty() {
            self.await_deadline = Some(now + RUNTIME_TURN_WAIT);
        }
        self.start_configured(now, ice);
    }

    fn start_configured(&mut self, now: Instant, ice: &mut IceAgent) {
        let mut start = Vec::new();
        for c in self.configured.iter_mut().filter(|c| !c.started) {
            let Some(base) = self
                .bases
                .iter()
                .find(|b| b.is_ipv4() == c.server.is_ipv4())
            else {
                continue;
            };
            c.started = true;
            start.push(TurnServer {
                url: c.url.clone(),
                local: *base,
                server: c.server,
                protocol: Protocol::Udp,
                username: c.username.clone(),
                password: c.password.clone(),
            });
        }
        for server in start {
            self.start_one(now, ice, server, false);
        }
    }

    /// Start an allocation; `waited` when gathering already counts it.
    fn start_one(&mut self, now: Instant, ice: &mut IceAgent, server: TurnServer, waited: bool) {
        if self.entries.len() >= MAX_RELAYS
            || self
                .entries
                .iter()
                .any(|e| e.local == server.local && e.client.server() == server.server)
        {
            self.refused += 1;
            if waited {
                ice.relay_failed(now);
            }
            return;
        }
        let client = TurnClient::new(
            server.server,
            server.protocol,
            server.username,
            server.password,
            self.rng.fork(),
            now,
        );
        if !waited {
            ice.relay_started();
        }
        self.entries.push(Entry {
            url: server.url,
            local: server.local,
            protocol: server.protocol,
            client,
            relayed: None,
            gathering: true,
            failed: false,
        });
    }

    /// Which client a datagram from `remote` on `local` belongs to, if any.
    pub(crate) fn route(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        protocol: Protocol,
    ) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.local == local && e.protocol == protocol && e.client.server() == remote)
    }

    /// Whether `local` is one of our relayed addresses.
    pub(crate) fn is_relayed(&self, local: SocketAddr) -> bool {
        self.relayed_index(local).is_some()
    }

    fn relayed_index(&self, local: SocketAddr) -> Option<usize> {
        self.entries.iter().position(|e| e.relayed == Some(local))
    }

    /// A datagram for client `index` (from [`Relays::route`]).
    pub(crate) fn input<'a>(
        &mut self,
        now: Instant,
        index: usize,
        from: SocketAddr,
        data: &'a [u8],
    ) -> RelayInput<'a> {
        let Some(e) = self.entries.get_mut(index) else {
            return RelayInput::NotTurn;
        };
        match e.client.handle_datagram(now, from, data) {
            TurnInput::Consumed => RelayInput::Consumed,
            TurnInput::NotTurn => RelayInput::NotTurn,
            TurnInput::PeerData { peer, data } => match e.relayed {
                Some(relayed) => RelayInput::Peer {
                    relayed,
                    peer,
                    data,
                },
                None => RelayInput::Consumed,
            },
        }
    }

    /// Wrap a transmit ICE, DTLS or media produced on a relayed address: `data` is its
    /// payload, `out` receives the message for the server. `None` when `local` is not
    /// relayed; an error when the client cannot send (the transmit is dropped).
    pub(crate) fn wrap(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
        out: &mut [u8],
    ) -> Option<Result<Transmit, TurnSendError>> {
        let e = self.entries.iter_mut().find(|e| e.relayed == Some(local))?;
        let mut result = e.client.wrap_to(now, peer, data, out);
        if result == Err(TurnSendError::NoPermission) {
            // A peer-reflexive address (learned from a check that came through the
            // relay, so the server already lets it in): ask for our side too.
            if e.client.create_permission(now, peer.ip()).is_ok() {
                result = e.client.wrap_to(now, peer, data, out);
            }
        }
        Some(result.map(|(server, len)| Transmit {
            local: e.local,
            remote: server,
            protocol: e.protocol,
            len,
        }))
    }

    /// The clients' own messages (Allocate, Refresh, permissions, channels).
    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.entries.iter_mut().find_map(|e| {
            e.client
                .poll_transmit(now, buf)
                .map(|(server, len)| Transmit {
                    local: e.local,
                    remote: server,
                    protocol: e.protocol,
                    len,
                })
        })
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, ice: &mut IceAgent) {
        for e in &mut self.entries {
            e.client.handle_timeout(now);
        }
        if self.await_deadline.is_some_and(|d| now >= d) {
            self.await_deadline = None;
            for url in std::mem::take(&mut self.awaited) {
                ice.relay_failed(now);
                self.events.push(Event::IceCandidateError {
                    url,
                    local: SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), 0),
                    error: TurnError::Timeout,
                });
            }
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| e.client.poll_timeout())
            .chain(self.await_deadline)
            .min()
    }

    /// Turn the clients' events into ICE candidates and error events, and keep the
    /// permissions in step with ICE's remote candidates. Returns the events for the
    /// application.
    pub(crate) fn pump(&mut self, now: Instant, ice: &mut IceAgent) -> Vec<Event> {
        let mut out = std::mem::take(&mut self.events);
        let mut new_allocation = false;
        for e in &mut self.entries {
            while let Some(ev) = e.client.poll_event() {
                match ev {
                    TurnEvent::Allocated {
                        relayed, mapped, ..
                    } => {
                        e.relayed = Some(relayed);
                        e.gathering = false;
                        new_allocation = true;
                        // Under the relay policy the mapped address (our public, or with no
                        // NAT our host address) stays private: raddr 0.0.0.0 rport 0, as
                        // browsers write it.
                        let related = if self.hide_mapped {
                            Some(SocketAddr::new(unspecified(relayed), 0))
                        } else {
                            mapped
                        };
                        ice.add_relay_candidate(now, relayed, related, e.client.server());
                    }
                    TurnEvent::AllocationFailed(error) => {
                        e.relayed = None;
                        if std::mem::replace(&mut e.gathering, false) {
                            ice.relay_failed(now);
                        }
                        if !std::mem::replace(&mut e.failed, true) {
                            out.push(Event::IceCandidateError {
                                url: e.url.clone(),
                                local: e.local,
                                error,
                            });
                        }
                    }
                    TurnEvent::Deallocated => e.relayed = None,
                    _ => {}
                }
            }
        }
        let remotes = ice.remote_count();
        if new_allocation || remotes != self.permissions_for {
            self.permissions_for = remotes;
            for e in self.entries.iter_mut().filter(|e| e.relayed.is_some()) {
                for peer in ice.remote_addresses() {
                    // A family mismatch or a full table: that peer is not reachable
                    // through this relay, which ICE finds out by itself.
                    let _ = e.client.create_permission(now, peer.ip());
                }
            }
        }
        out
    }

    /// ICE selected a pair: bind a channel when it runs through a relay.
    pub(crate) fn on_selected(&mut self, now: Instant, pair: SelectedPair) {
        if pair.local_kind != CandidateKind::Relay {
            return;
        }
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.relayed == Some(pair.local))
        {
            // Without a channel, Send indications keep working.
            let _ = e.client.bind_channel(now, pair.remote);
        }
    }

    /// The PeerConnection closed: deallocate once its last datagrams went through.
    pub(crate) fn close_later(&mut self) {
        self.close_pending = !self.entries.is_empty();
    }

    /// Called when nothing else is left to send after close: release the allocations.
    /// True if that queued anything.
    pub(crate) fn close_now(&mut self, now: Instant) -> bool {
        if !std::mem::replace(&mut self.close_pending, false) {
            return false;
        }
        for e in &mut self.entries {
            e.client.close(now);
        }
        true
    }

    /// Each client's counters, in the order the servers were added.
    pub(crate) fn stats(&self) -> Vec<TurnStats> {
        self.entries
            .iter()
            .map(|e| e.client.stats().clone())
            .collect()
    }

    /// Each allocation's URL and relayed address (while allocated).
    pub(crate) fn allocations(&self) -> Vec<(String, Option<SocketAddr>)> {
        self.entries
            .iter()
            .map(|e| (e.url.clone(), e.relayed))
            .collect()
    }
}

fn unspecified(like: SocketAddr) -> std::net::IpAddr {
    if like.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    }
}
