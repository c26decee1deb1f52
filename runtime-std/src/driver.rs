//! The driver, written once for every runtime: the [`Core`] trait over a PeerConnection or
//! an Endpoint, the commands a [`Handle`] sends, the executor-free [`DriverState`], and
//! [`run`], the async driver loop that tokio and smol run with their own socket and
//! timer types (the [`AsyncUdp`] and [`AsyncTimer`] traits).
//!
//! The loop: send everything `poll_transmit` yields, forward events, then wait for the
//! first of a command, a datagram (read in batches until the socket would block) or the
//! core's deadline; feed it in; repeat.
//!
//! Backpressure, bounded everywhere: commands wait when the command channel is full; the
//! event channel has a fixed capacity, and when the application does not read it, media
//! events (`Rtp`, `Rtcp`) are dropped and counted in [`RuntimeStats::events_dropped`],
//! keyframe requests are coalesced (one kept aside per transceiver, see
//! [`Core::coalesce_key`]), and any other event waits for room. While an event waits the
//! driver stops reading its sockets (the kernel's socket buffer, not our memory, absorbs
//! the excess) but keeps serving commands and timers: an application that calls the
//! driver from its event loop (`send_data`, `with_peer` on every event) can never
//! deadlock with a driver waiting for that loop to read.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_lite::Stream;
use sansrtc::{Datagram, Endpoint, Event, PeerConnection, PeerId, Protocol, Transmit, TurnServer};

use crate::batch::{Outgoing, SEND_BATCH};
use crate::resources::ResourceStats;
use crate::stream::{StreamInput, StreamSlot};

/// The largest datagram read from a socket.
pub const MAX_DATAGRAM: usize = 65_536;
/// TURN stream reports taken in one go before the driver flushes outputs.
const STREAM_BATCH: usize = 64;
/// Commands applied in one go before the driver flushes outputs.
const COMMAND_BATCH: usize = 64;
/// Coalescable events (keyframe requests) kept aside while the event channel is full,
/// one per key; beyond this they are dropped and counted.
const MAX_DEFERRED: usize = 256;
/// Room for transmits collected into one send batch, beyond the full `MAX_DATAGRAM`
/// buffer every `poll_transmit` call is still given (about 53 datagrams of RTP size).
const SEND_ROOM: usize = 65_536;

/// What a driver can drive: a PeerConnection or an Endpoint of many.
pub trait Core: Send + 'static {
    /// The events it reports.
    type Event: Send + 'static;
    /// Feed a datagram.
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>);
    /// Feed the time.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Begin closing (say goodbye to remotes); outputs are still drained afterwards.
    fn close(&mut self, now: Instant);
    /// True for events that may be dropped when the application does not keep up.
    fn is_media(event: &Self::Event) -> bool;
    /// True for an Endpoint (server mode), counted apart in [`crate::runtime_stats`].
    const IS_ENDPOINT: bool = false;
    /// A key for events that repeat the same request (a keyframe request for one
    /// transceiver of one peer): when such an event meets a full event channel it is kept
    /// aside, once per key (repeats are counted in `events_coalesced`), and delivered
    /// when there is room, so that a flood of them never stops the driver. `None`: the
    /// event is not coalescable.
    fn coalesce_key(event: &Self::Event) -> Option<u64> {
        let _ = event;
        None
    }
    /// A TURN server the runtime resolved or connected to (a stream's local address, or
    /// one of our UDP sockets). Cores that do not relay ignore it.
    fn add_turn_server(&mut self, now: Instant, server: TurnServer) {
        let _ = (now, server);
    }
    /// A configured TURN URL the runtime could not resolve or connect to, so the core
    /// stops waiting for it. Cores that do not relay ignore it.
    fn turn_server_unreachable(&mut self, now: Instant, url: &str) {
        let _ = (now, url);
    }
}

fn is_media_event(event: &Event) -> bool {
    matches!(event, Event::Rtp { .. } | Event::Rtcp(_))
}

/// The coalescing key of a keyframe request of `peer` (a PeerConnection: `None`).
fn keyframe_key(peer: Option<PeerId>, event: &Event) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let Event::KeyframeRequest(transceiver) = event else {
        return None;
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (peer, transceiver).hash(&mut hasher);
    Some(hasher.finish())
}

impl Core for PeerConnection {
    type Event = Event;
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        PeerConnection::handle_datagram(self, now, datagram)
    }
    fn handle_timeout(&mut self, now: Instant) {
        PeerConnection::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        PeerConnection::poll_transmit(self, now, buf)
    }
    fn poll_event(&mut self) -> Option<Event> {
        PeerConnection::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        PeerConnection::poll_timeout(self)
    }
    fn close(&mut self, now: Instant) {
        PeerConnection::close(self, now)
    }
    fn is_media(event: &Event) -> bool {
        is_media_event(event)
    }
    fn coalesce_key(event: &Event) -> Option<u64> {
        keyframe_key(None, event)
    }
    fn add_turn_server(&mut self, now: Instant, server: TurnServer) {
        PeerConnection::add_turn_server(self, now, server)
    }
    fn turn_server_unreachable(&mut self, now: Instant, url: &str) {
        PeerConnection::turn_server_unreachable(self, now, url)
    }
}

/// The Endpoint is a server reached on its own socket: it does not relay.
impl Core for Endpoint {
    type Event = (PeerId, Event);
    const IS_ENDPOINT: bool = true;
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        Endpoint::handle_datagram(self, now, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        Endpoint::poll_transmit(self, now, buf).map(|(_, t)| t)
    }
    fn poll_event(&mut self) -> Option<(PeerId, Event)> {
        Endpoint::poll_event(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
    fn close(&mut self, now: Instant) {
        let ids: Vec<PeerId> = self.peer_ids().collect();
        for id in ids {
            self.with_peer(id, |pc| pc.close(now));
        }
    }
    fn is_media(event: &(PeerId, Event)) -> bool {
        is_media_event(&event.1)
    }
    fn coalesce_key(event: &(PeerId, Event)) -> Option<u64> {
        keyframe_key(Some(event.0), &event.1)
    }
}

/// A call into the core, run on the driver.
pub type Call<C> = Box<dyn FnOnce(&mut C, Instant) + Send>;

/// What a handle asks of the driver.
pub enum Command<C> {
    /// Run this on the core.
    Call(Call<C>),
    /// Close the core, flush its goodbyes and stop.
    Close,
}

/// Errors of the runtime API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or using a socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The driver has stopped (closed, or its task or thread ended).
    #[error("the PeerConnection's driver has stopped")]
    Closed,
    /// Creating the PeerConnection failed.
    #[error(transparent)]
    Peer(#[from] sansrtc::peer::PeerError),
    /// An offer/answer operation failed (nothing changed).
    #[error(transparent)]
    Negotiation(#[from] sansrtc::peer::NegotiationError),
    /// A candidate could not be added.
    #[error(transparent)]
    Candidate(#[from] sansrtc::peer::AddCandidateError),
    /// Sending media failed.
    #[error(transparent)]
    Send(#[from] sansrtc::peer::SendError),
    /// A data channel call failed.
    #[error(transparent)]
    DataChannel(#[from] sansrtc::datachannel::DataChannelError),
    /// The Endpoint has no such peer (removed).
    #[error("no such peer")]
    NoSuchPeer,
}

/// Counters kept by the driver, readable from any handle.
#[derive(Debug, Default)]
pub struct RuntimeStats {
    datagrams_received: AtomicU64,
    datagrams_sent: AtomicU64,
    send_errors: AtomicU64,
    events_dropped: AtomicU64,
    events_coalesced: AtomicU64,
    turn_streams_connected: AtomicU64,
    turn_stream_failures: AtomicU64,
}

/// A snapshot of [`RuntimeStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeCounters {
    /// Datagrams read from the sockets.
    pub datagrams_received: u64,
    /// Datagrams written to the sockets.
    pub datagrams_sent: u64,
    /// Sends the OS refused (buffer full, unreachable): the datagram is lost, as on a
    /// congested link.
    pub send_errors: u64,
    /// Media events dropped because the application did not read events (and keyframe
    /// requests beyond the ones kept aside).
    pub events_dropped: u64,
    /// Keyframe requests merged into one already waiting for room in the event channel.
    pub events_coalesced: u64,
    /// TURN streams (TCP or TLS) opened and handed to the core.
    pub turn_streams_connected: u64,
    /// TURN streams that could not be opened (name, refused by the `NetConfig`,
    /// connection, TLS) or that ended (closed by the server, junk or an oversized message
    /// on the stream, a write that could not make progress).
    pub turn_stream_failures: u64,
}

impl Drop for RuntimeStats {
    fn drop(&mut self) {
        // The driver and its handles are gone: its counts join the process's totals.
        crate::resources::RETIRED.add(&self.snapshot());
    }
}

impl crate::resources::Probe for RuntimeStats {
    fn add_to(&self, stats: &mut ResourceStats) {
        crate::resources::add_counters(&mut stats.totals, &self.snapshot());
    }
}

/// The lengths of one driver's channels, read by [`crate::runtime_stats`] while a handle
/// lives (every handle holds it; the registry only a weak reference).
struct QueueProbe<C: Core> {
    commands: async_channel::Sender<Command<C>>,
    events: async_channel::Receiver<C::Event>,
}

impl<C: Core> crate::resources::Probe for QueueProbe<C> {
    fn add_to(&self, stats: &mut ResourceStats) {
        stats.commands_queued += self.commands.len() as u64;
        stats.events_queued += self.events.len() as u64;
    }
}

impl RuntimeStats {
    /// Counters that [`crate::runtime_stats`] adds up while they live (and after).
    pub fn registered() -> Arc<RuntimeStats> {
        let stats = Arc::new(RuntimeStats::default());
        let probe: Arc<dyn crate::resources::Probe> = stats.clone();
        crate::resources::register(Arc::downgrade(&probe));
        stats
    }

    /// Read the counters.
    pub fn snapshot(&self) -> RuntimeCounters {
        RuntimeCounters {
            datagrams_received: self.datagrams_received.load(Ordering::Relaxed),
            datagrams_sent: self.datagrams_sent.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            events_coalesced: self.events_coalesced.load(Ordering::Relaxed),
            turn_streams_connected: self.turn_streams_connected.load(Ordering::Relaxed),
            turn_stream_failures: self.turn_stream_failures.load(Ordering::Relaxed),
        }
    }
}

/// Capacities of a driver's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Commands waiting for the driver.
    pub commands: usize,
    /// Events waiting for the application.
    pub events: usize,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            commands: 256,
            events: 1024,
        }
    }
}

/// A cheap, cloneable handle to a driver (the Elixir process of the seed). Clones share
/// one event stream: each event goes to one reader. Dropping every handle closes the
/// core and stops the driver.
pub struct Handle<C: Core> {
    commands: async_channel::Sender<Command<C>>,
    events: async_channel::Receiver<C::Event>,
    stats: Arc<RuntimeStats>,
    local_addresses: Arc<[SocketAddr]>,
    queues: Arc<QueueProbe<C>>,
}

impl<C: Core> Clone for Handle<C> {
    fn clone(&self) -> Self {
        Handle {
            commands: self.commands.clone(),
            events: self.events.clone(),
            stats: self.stats.clone(),
            local_addresses: self.local_addresses.clone(),
            queues: self.queues.clone(),
        }
    }
}

/// The driver's ends of a handle's channels.
pub struct DriverChannels<C: Core> {
    /// Commands from handles.
    pub commands: async_channel::Receiver<Command<C>>,
    /// Events to the application.
    pub events: async_channel::Sender<C::Event>,
    /// Shared counters.
    pub stats: Arc<RuntimeStats>,
    /// What the TURN stream threads report (see [`crate::stream`]); closed at once when
    /// there are none.
    pub streams: async_channel::Receiver<StreamInput>,
}

/// Refuse further commands and drop the queued ones, so that every caller still waiting
/// for an answer gets [`Error::Closed`] instead of waiting forever (a queued call holds
/// its reply sender, and the queue outlives the driver while any handle lives).
pub fn refuse_commands<C>(commands: &async_channel::Receiver<Command<C>>) {
    commands.close();
    while commands.try_recv().is_ok() {}
}

impl<C: Core> Handle<C> {
    /// A handle and the driver's ends of its channels.
    pub fn new(
        capacity: Capacity,
        local_addresses: Vec<SocketAddr>,
    ) -> (Handle<C>, DriverChannels<C>) {
        let (command_tx, command_rx) = async_channel::bounded(capacity.commands.max(1));
        let (event_tx, event_rx) = async_channel::bounded(capacity.events.max(1));
        let stats = RuntimeStats::registered();
        let (_, streams) = async_channel::bounded(1);
        let queues = Arc::new(QueueProbe {
            commands: command_tx.clone(),
            events: event_rx.clone(),
        });
        let probe: Arc<dyn crate::resources::Probe> = queues.clone();
        crate::resources::register(Arc::downgrade(&probe));
        let handle = Handle {
            commands: command_tx,
            events: event_rx,
            stats: stats.clone(),
            local_addresses: local_addresses.into(),
            queues,
        };
        let driver = DriverChannels {
            commands: command_rx,
            events: event_tx,
            stats,
            streams,
        };
        (handle, driver)
    }

    /// Run `f` on the core and return its result.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut C, Instant) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (tx, rx) = async_channel::bounded(1);
        let call: Call<C> = Box::new(move |core, now| {
            let _ = tx.try_send(f(core, now));
        });
        self.commands
            .send(Command::Call(call))
            .await
            .map_err(|_| Error::Closed)?;
        rx.recv().await.map_err(|_| Error::Closed)
    }

    /// Run `f` on the core without waiting for it (its result is discarded).
    pub async fn cast(
        &self,
        f: impl FnOnce(&mut C, Instant) + Send + 'static,
    ) -> Result<(), Error> {
        self.commands
            .send(Command::Call(Box::new(f)))
            .await
            .map_err(|_| Error::Closed)
    }

    /// The next event; `None` once the driver has stopped and every event was read.
    pub async fn next_event(&self) -> Option<C::Event> {
        self.events.recv().await.ok()
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&self) -> Option<C::Event> {
        self.events.try_recv().ok()
    }

    /// The events as a `futures_core::Stream` (an `async_channel::Receiver`).
    pub fn events(&self) -> async_channel::Receiver<C::Event> {
        self.events.clone()
    }

    /// Close the core (goodbyes are sent) and stop the driver.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }

    /// The local socket addresses the driver bound.
    pub fn local_addresses(&self) -> &[SocketAddr] {
        &self.local_addresses
    }

    /// The driver's counters.
    pub fn runtime_stats(&self) -> RuntimeCounters {
        self.stats.snapshot()
    }
}

/// The executor-free state of a driver: the core, its sockets' addresses, a transmit
/// buffer and the shared counters.
pub struct DriverState<C: Core> {
    /// The core.
    pub core: C,
    local: Vec<SocketAddr>,
    /// Transmits collected for one batched send, back to back; `poll_transmit` always
    /// gets at least `MAX_DATAGRAM` bytes of it.
    arena: Vec<u8>,
    /// The destination and range in `arena` of each collected transmit.
    items: Vec<(SocketAddr, Range<usize>)>,
    stats: Arc<RuntimeStats>,
    closing: bool,
    streams: Vec<TurnStreamSlot>,
    /// Coalesced events waiting for room in the event channel, with their keys.
    deferred: std::collections::VecDeque<(u64, C::Event)>,
}

/// A TURN stream as the driver knows it.
struct TurnStreamSlot {
    slot: StreamSlot,
    username: String,
    password: String,
}

/// What the driver loop should do after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Flush once more and stop.
    Stop,
}

impl<C: Core> DriverState<C> {
    /// State for a core whose sockets are bound on `local` (in socket order).
    pub fn new(core: C, local: Vec<SocketAddr>, stats: Arc<RuntimeStats>) -> DriverState<C> {
        DriverState {
            core,
            local,
            arena: vec![0u8; MAX_DATAGRAM + SEND_ROOM],
            items: Vec::with_capacity(SEND_BATCH),
            stats,
            closing: false,
            streams: Vec::new(),
            deferred: std::collections::VecDeque::new(),
        }
    }

    /// Route the core's TCP transmits between `local` and `server` to this stream once
    /// it connects (its input index is its position in the order added), and tell the
    /// core about it then.
    pub fn add_turn_stream(&mut self, slot: StreamSlot, username: String, password: String) {
        self.streams.push(TurnStreamSlot {
            slot,
            username,
            password,
        });
    }

    /// Apply what a TURN stream's threads report.
    pub fn handle_stream(&mut self, now: Instant, input: StreamInput) {
        match input {
            StreamInput::Connected {
                index,
                local,
                server,
                control,
            } => {
                let Some(s) = self.streams.get_mut(index) else {
                    return;
                };
                s.slot.connected(local, server, control);
                self.stats
                    .turn_streams_connected
                    .fetch_add(1, Ordering::Relaxed);
                let server = TurnServer {
                    url: s.slot.target.url.clone(),
                    local,
                    server,
                    protocol: Protocol::Tcp,
                    username: s.username.clone(),
                    password: s.password.clone(),
                };
                self.core.add_turn_server(now, server);
            }
            StreamInput::Frame { index, data } => {
                let Some((local, remote)) = self.streams.get(index).and_then(|s| s.slot.addresses)
                else {
                    return;
                };
                self.stats
                    .datagrams_received
                    .fetch_add(1, Ordering::Relaxed);
                self.core.handle_datagram(
                    now,
                    Datagram {
                        local,
                        remote,
                        protocol: Protocol::Tcp,
                        data: &data,
                    },
                );
            }
            StreamInput::Closed { index, .. } => {
                if let Some(s) = self.streams.get_mut(index) {
                    // Never opened: the core stops waiting for it in gathering and says
                    // why. (One that ended after opening fails in the core's TURN client.)
                    if s.slot.addresses.is_none() {
                        let url = s.slot.target.url.clone();
                        self.core.turn_server_unreachable(now, &url);
                    }
                    s.slot.closed();
                }
                self.stats
                    .turn_stream_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The local address of socket `index`.
    pub fn local_address(&self, index: usize) -> Option<SocketAddr> {
        self.local.get(index).copied()
    }

    /// Feed a datagram received on socket `index`.
    pub fn handle_datagram(&mut self, now: Instant, index: usize, remote: SocketAddr, data: &[u8]) {
        let Some(local) = self.local.get(index).copied() else {
            return;
        };
        self.stats
            .datagrams_received
            .fetch_add(1, Ordering::Relaxed);
        self.core.handle_datagram(
            now,
            Datagram {
                local,
                remote,
                protocol: Protocol::Udp,
                data,
            },
        );
    }

    /// Feed the time if the core's deadline has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
    }

    /// Apply a command.
    pub fn apply(&mut self, now: Instant, command: Command<C>) -> Flow {
        match command {
            Command::Call(f) => {
                f(&mut self.core, now);
                Flow::Continue
            }
            Command::Close => {
                self.close(now);
                Flow::Stop
            }
        }
    }

    /// Close the core (once).
    pub fn close(&mut self, now: Instant) {
        if !self.closing {
            self.closing = true;
            self.core.close(now);
        }
    }

    /// Send every pending transmit with `send(socket index, remote, bytes)`, which
    /// returns false when the OS refused it. One datagram per call; runtimes with
    /// batched IO use [`DriverState::flush_batched`].
    pub fn flush_transmits(
        &mut self,
        now: Instant,
        mut send: impl FnMut(usize, SocketAddr, &[u8]) -> bool,
    ) {
        self.flush_batched(now, |i, out| {
            out.iter().filter(|(to, bytes)| send(i, *to, bytes)).count()
        });
    }

    /// Send every pending transmit, in order, handing consecutive UDP transmits for one
    /// socket to `send(socket index, datagrams)` in batches of up to [`SEND_BATCH`];
    /// `send` returns how many the OS took (the rest are counted as send errors, lost
    /// as on a congested link). TURN stream transmits go to their stream.
    pub fn flush_batched(
        &mut self,
        now: Instant,
        mut send: impl FnMut(usize, Outgoing<'_>) -> usize,
    ) {
        let mut used = 0;
        let mut socket = 0;
        loop {
            if self.items.is_empty() {
                used = 0;
            } else if self.items.len() >= SEND_BATCH || self.arena.len() - used < MAX_DATAGRAM {
                self.send_items(socket, &mut send);
                used = 0;
            }
            let Some(out) = self.arena.get_mut(used..) else {
                break;
            };
            let room = out.len();
            let Some(t) = self.core.poll_transmit(now, out) else {
                break;
            };
            let range = used..used + t.len.min(room);
            if t.protocol == Protocol::Tcp {
                // One framed TURN message for the stream between these two addresses.
                let data = self.arena.get(range).unwrap_or_default();
                let written = self
                    .streams
                    .iter()
                    .find(|s| s.slot.addresses == Some((t.local, t.remote)))
                    .is_some_and(|s| s.slot.try_write(data));
                let counter = if written {
                    &self.stats.datagrams_sent
                } else {
                    &self.stats.send_errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let Some(index) = self.local.iter().position(|a| *a == t.local) else {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if index != socket && !self.items.is_empty() {
                // Earlier transmits were for another socket: they go first. This one
                // stays where it was written.
                self.send_items(socket, &mut send);
            }
            socket = index;
            used = range.end;
            self.items.push((t.remote, range));
        }
        if !self.items.is_empty() {
            self.send_items(socket, &mut send);
        }
    }

    fn send_items(&mut self, socket: usize, send: &mut impl FnMut(usize, Outgoing<'_>) -> usize) {
        let total = self.items.len();
        let taken = send(socket, Outgoing::new(&self.arena, &self.items)).min(total);
        self.items.clear();
        self.stats
            .datagrams_sent
            .fetch_add(taken as u64, Ordering::Relaxed);
        if taken < total {
            self.stats
                .send_errors
                .fetch_add((total - taken) as u64, Ordering::Relaxed);
        }
    }

    /// Hand every remaining event to the channel without waiting, when the driver stops:
    /// events that do not fit are dropped and counted.
    pub fn forward_final_events(&mut self, events: &async_channel::Sender<C::Event>) {
        let deferred = std::mem::take(&mut self.deferred)
            .into_iter()
            .map(|(_, e)| e);
        for event in deferred.chain(std::iter::from_fn(|| self.core.poll_event())) {
            if events.try_send(event).is_err() {
                self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hand events to the channel without waiting. Returns an event that must wait for
    /// room (a non-media event met a full channel); media events meeting a full channel
    /// are dropped and counted, coalescable ones are kept aside (once per key).
    pub fn forward_events(&mut self, events: &async_channel::Sender<C::Event>) -> Option<C::Event> {
        while let Some((key, event)) = self.deferred.pop_front() {
            match events.try_send(event) {
                Ok(()) | Err(async_channel::TrySendError::Closed(_)) => {}
                Err(async_channel::TrySendError::Full(event)) => {
                    self.deferred.push_front((key, event));
                    break;
                }
            }
        }
        while let Some(event) = self.core.poll_event() {
            match events.try_send(event) {
                Ok(()) => {}
                Err(async_channel::TrySendError::Full(event)) => {
                    if C::is_media(&event) {
                        self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(key) = C::coalesce_key(&event) {
                        self.defer(key, event);
                    } else {
                        return Some(event);
                    }
                }
                // Nobody listens any more: the driver stops on its next command poll.
                Err(async_channel::TrySendError::Closed(_)) => {}
            }
        }
        None
    }

    /// Count an event dropped because the application did not read.
    pub fn count_dropped_event(&self) {
        self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Keep a coalescable event aside until there is room (once per key, bounded).
    fn defer(&mut self, key: u64, event: C::Event) {
        if self.deferred.iter().any(|(k, _)| *k == key) {
            self.stats.events_coalesced.fetch_add(1, Ordering::Relaxed);
        } else if self.deferred.len() >= MAX_DEFERRED {
            self.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            self.deferred.push_back((key, event));
        }
    }
}

/// A UDP socket of some executor, read and written in batches (see [`crate::batch`]).
pub trait AsyncUdp {
    /// Wait until datagrams can be read, then read what is waiting (a batch at most),
    /// calling `f(remote, bytes)` for each; returns how many. `local` is the address
    /// the socket is bound on.
    fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        local: SocketAddr,
        f: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> Poll<io::Result<usize>>;
    /// Send without waiting; returns how many datagrams the OS took (UDP: a full
    /// buffer loses the rest).
    fn try_send_batch(&self, out: Outgoing<'_>) -> usize;
}

/// A resettable timer of some executor.
pub trait AsyncTimer {
    /// Fire at `at` (`None`: never).
    fn reset(&mut self, at: Option<Instant>);
    /// Ready once the deadline has passed.
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()>;
}

enum Wake<C> {
    /// The event that waited for room is in the channel (or nobody listens any more).
    EventSent,
    Command(Option<Command<C>>),
    Stream(Option<StreamInput>),
    /// Datagrams were read and already fed to the core (or a read error).
    Datagrams,
    Timer,
}

/// The driver loop. Runs until `close`, until every handle is dropped, or until the
/// core has nothing left to do after closing.
pub async fn run<C: Core, S: AsyncUdp, T: AsyncTimer>(
    mut state: DriverState<C>,
    sockets: Vec<S>,
    mut timer: T,
    channels: DriverChannels<C>,
) {
    let DriverChannels {
        commands,
        events,
        streams,
        ..
    } = channels;
    let mut commands = std::pin::pin!(commands);
    let mut streams = std::pin::pin!(streams);
    let mut streams_open = true;
    let mut armed: Option<Option<Instant>> = None;
    let mut next_socket = 0usize;
    // An event waiting for room in the event channel. While it waits, sockets and TURN
    // streams are not read, but commands and timers are still served (see the module
    // documentation): the application may be waiting on a command before it reads.
    let mut waiting: Option<Pin<Box<async_channel::Send<'_, C::Event>>>> = None;
    loop {
        let now = Instant::now();
        state.flush_batched(now, |i, out| {
            sockets.get(i).map_or(0, |s| s.try_send_batch(out))
        });
        if waiting.is_none() {
            waiting = state
                .forward_events(&events)
                .map(|event| Box::pin(events.send(event)));
        }
        if state.closing {
            break;
        }
        let deadline = state.core.poll_timeout();
        if armed != Some(deadline) {
            timer.reset(deadline);
            armed = Some(deadline);
        }
        let wake = std::future::poll_fn(|cx| {
            if let Some(send) = waiting.as_mut() {
                if send.as_mut().poll(cx).is_ready() {
                    waiting = None;
                    return Poll::Ready(Wake::EventSent);
                }
            }
            // Rotate which socket is read first so none starves another. A batch read
            // goes to the core at once, inside this poll: the datagrams sit in the
            // thread's receive arena, which must not be held across an await.
            let n = if waiting.is_some() { 0 } else { sockets.len() };
            let now = Instant::now();
            for k in 0..n {
                let i = (next_socket + k) % n;
                let (Some(s), Some(local)) = (sockets.get(i), state.local_address(i)) else {
                    continue;
                };
                let mut feed =
                    |remote: SocketAddr, data: &[u8]| state.handle_datagram(now, i, remote, data);
                // ICMP errors (port unreachable) surface as receive errors on Linux:
                // ignored, like an empty read.
                if s.poll_recv_batch(cx, local, &mut feed).is_ready() {
                    next_socket = (i + 1) % n;
                    return Poll::Ready(Wake::Datagrams);
                }
            }
            if streams_open && waiting.is_none() {
                if let Poll::Ready(input) = streams.as_mut().poll_next(cx) {
                    return Poll::Ready(Wake::Stream(input));
                }
            }
            if let Poll::Ready(c) = commands.as_mut().poll_next(cx) {
                return Poll::Ready(Wake::Command(c));
            }
            if timer.poll_fired(cx).is_ready() {
                armed = None;
                return Poll::Ready(Wake::Timer);
            }
            Poll::Pending
        })
        .await;
        let now = Instant::now();
        match wake {
            Wake::Command(None) => {
                // Every handle is gone.
                state.close(now);
            }
            Wake::Command(Some(command)) => {
                if state.apply(now, command) == Flow::Stop {
                    state.close(now);
                }
                // Take what else is queued without waiting, up to a batch: then the loop
                // sends what they produced before taking more (an unbounded drain while
                // handles keep sending would overflow the core's media queue).
                for _ in 1..COMMAND_BATCH {
                    let Ok(command) = commands.try_recv() else {
                        break;
                    };
                    if state.apply(now, command) == Flow::Stop {
                        state.close(now);
                    }
                }
            }
            Wake::Stream(None) => streams_open = false,
            Wake::Stream(Some(input)) => {
                state.handle_stream(now, input);
                for _ in 1..STREAM_BATCH {
                    match streams.try_recv() {
                        Ok(input) => state.handle_stream(now, input),
                        Err(_) => break,
                    }
                }
            }
            Wake::Datagrams | Wake::Timer | Wake::EventSent => {}
        }
        state.handle_timeout(Instant::now());
    }
    // Stopping does not wait for an application that does not read: an event still
    // waiting for room is dropped and counted, like the final ones that find no room.
    if waiting.take().is_some() {
        state.count_dropped_event();
    }
    refuse_commands(&commands);
    // Stream threads stop at their next report; the streams close when `state` drops.
    streams.close();
    // Final flush of goodbyes (close_notify, BYE).
    let now = Instant::now();
    state.flush_batched(now, |i, out| {
        sockets.get(i).map_or(0, |s| s.try_send_batch(out))
    });
    state.forward_final_events(&events);
}

/// A fake core for the drivers' tests: events are numbers queued by commands; numbers
/// from `COALESCED` up coalesce by their value.
#[cfg(test)]
pub(crate) mod test_core {
    use super::*;

    /// Events at or above this are keyframe-request-like: coalescable by value.
    pub const COALESCED: u32 = 1_000_000;

    /// Queued events.
    #[derive(Default)]
    pub struct Chatty(pub std::collections::VecDeque<u32>);

    impl Core for Chatty {
        type Event = u32;
        fn handle_datagram(&mut self, _: Instant, _: Datagram<'_>) {}
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_transmit(&mut self, _: Instant, _: &mut [u8]) -> Option<Transmit> {
            None
        }
        fn poll_event(&mut self) -> Option<u32> {
            self.0.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn close(&mut self, _: Instant) {}
        fn is_media(_: &u32) -> bool {
            false
        }
        fn coalesce_key(event: &u32) -> Option<u64> {
            (*event >= COALESCED).then_some(u64::from(*event))
        }
    }

    /// A handle and driver state over a `Chatty` core with tiny channels.
    pub fn chatty(events: usize) -> (Handle<Chatty>, DriverState<Chatty>, DriverChannels<Chatty>) {
        let (handle, channels) = Handle::new(
            Capacity {
                commands: 4,
                events,
            },
            Vec::new(),
        );
        let state = DriverState::new(Chatty::default(), Vec::new(), channels.stats.clone());
        (handle, state, channels)
    }

    /// Run `f` on a thread and fail (instead of hanging the suite) if it does not end
    /// within 20 s: a frozen driver shows up as this failure.
    pub fn within_20s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("frozen: {what} did not finish within 20 s"))
    }

    /// The application calls the driver while it does not read events: non-coalescable
    /// events beyond the channel's room wait, yet every call is answered; then every
    /// event arrives, in order, and the coalescable ones once per key.
    pub fn calls_are_served_while_events_wait(handle: Handle<Chatty>) {
        use futures_lite::future::block_on;
        let h = handle.clone();
        within_20s("calls while the event channel is full", move || {
            block_on(h.cast(|core, _| {
                // Four fill the channel; then a flood of two keyframe-request-like events,
                // interleaved, meets the full channel; then more plain ones.
                core.0.extend(0..4);
                core.0.extend((0..1000).map(|k| COALESCED + k % 2));
                core.0.extend(4..=100);
            }))
            .expect("cast");
            for k in 0..50 {
                let n = block_on(h.call(move |_, _| k)).expect("call answered");
                assert_eq!(n, k);
            }
        });
        assert_eq!(handle.runtime_stats().events_coalesced, 998);
        let events: Vec<u32> = within_20s("reading the events", move || {
            let mut events = Vec::new();
            while events.last() != Some(&100) {
                events.push(block_on(handle.next_event()).expect("event"));
            }
            events
        });
        let plain: Vec<u32> = events.iter().copied().filter(|e| *e < COALESCED).collect();
        assert_eq!(plain, (0..=100).collect::<Vec<_>>(), "none lost, in order");
        let coalesced: Vec<u32> = events.iter().copied().filter(|e| *e >= COALESCED).collect();
        assert!(coalesced.contains(&COALESCED) && coalesced.contains(&(COALESCED + 1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A core that hands out queued transmits: (local, remote, length, fill byte).
    struct Queued(VecDeque<(SocketAddr, SocketAddr, usize, u8)>);

    impl Core for Queued {
        type Event = ();
        fn handle_datagram(&mut self, _: Instant, _: Datagram<'_>) {}
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_transmit(&mut self, _: Instant, buf: &mut [u8]) -> Option<Transmit> {
            // Every call gets a whole datagram's room, however many are collected.
            assert!(buf.len() >= MAX_DATAGRAM);
            let (local, remote, len, fill) = self.0.pop_front()?;
            buf.get_mut(..len)?.fill(fill);
            Some(Transmit {
                local,
                remote,
                protocol: Protocol::Udp,
                len,
            })
        }
        fn poll_event(&mut self) -> Option<()> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn close(&mut self, _: Instant) {}
        fn is_media(_: &()) -> bool {
            false
        }
    }

    struct NoSocket;
    impl AsyncUdp for NoSocket {
        fn poll_recv_batch(
            &self,
            _: &mut Context<'_>,
            _: SocketAddr,
            _: &mut dyn FnMut(SocketAddr, &[u8]),
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn try_send_batch(&self, _: Outgoing<'_>) -> usize {
            0
        }
    }

    struct NoTimer;
    impl AsyncTimer for NoTimer {
        fn reset(&mut self, _: Option<Instant>) {}
        fn poll_fired(&mut self, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    /// The async driver loop serves commands while an event waits for room, and
    /// coalesces keyframe-request-like events (see `test_core`).
    #[test]
    fn async_driver_serves_calls_while_events_wait() {
        let (handle, state, channels) = test_core::chatty(4);
        std::thread::spawn(move || {
            futures_lite::future::block_on(run(state, Vec::<NoSocket>::new(), NoTimer, channels))
        });
        test_core::calls_are_served_while_events_wait(handle);
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Transmits are sent in order, batched per socket run, at most SEND_BATCH at a
    /// time and never more bytes than the arena's room; what the OS refuses is counted.
    #[test]
    fn transmits_go_in_batches_per_socket_in_order() {
        let (a, b, peer) = (addr(1000), addr(1001), addr(2000));
        let mut queue = VecDeque::new();
        // 40 small ones on a, 3 on b, 1 on a, one on an unknown socket, then 20 of 9,000
        // bytes on a (the arena's room ends those batches before SEND_BATCH does).
        for k in 0..40 {
            queue.push_back((a, peer, 100, k as u8));
        }
        for k in 0..3 {
            queue.push_back((b, peer, 10, 200 + k));
        }
        queue.push_back((a, peer, 7, 250));
        queue.push_back((addr(9), peer, 7, 251));
        for k in 0..20 {
            queue.push_back((a, peer, 9000, k as u8));
        }
        let stats = Arc::new(RuntimeStats::default());
        let mut state = DriverState::new(Queued(queue), vec![a, b], stats.clone());
        let mut calls: Vec<(usize, Vec<(usize, u8)>)> = Vec::new();
        state.flush_batched(Instant::now(), |socket, out| {
            let seen: Vec<(usize, u8)> = out
                .iter()
                .map(|(to, bytes)| {
                    assert_eq!(to, peer);
                    assert!(bytes.iter().all(|v| Some(v) == bytes.first()));
                    (bytes.len(), bytes.first().copied().unwrap_or_default())
                })
                .collect();
            calls.push((socket, seen));
            // The OS takes all but one of the first batch.
            if calls.len() == 1 {
                out.len() - 1
            } else {
                out.len()
            }
        });
        let shape: Vec<(usize, usize)> = calls.iter().map(|(s, v)| (*s, v.len())).collect();
        assert_eq!(
            shape.get(..3),
            Some(&[(0, SEND_BATCH), (0, 40 - SEND_BATCH), (1, 3)][..])
        );
        // After b's run: a's 7-byte transmit and the big ones, cut once more than
        // SEND_ROOM bytes are collected (the socket-less one is no run break): 7 + 8 ×
        // 9,000 passes 65,536, then 8 × 9,000 does, and 4 are left.
        assert_eq!(SEND_ROOM, 65_536);
        assert_eq!(shape.get(3..), Some(&[(0, 9), (0, 8), (0, 4)][..]));
        // Every transmit went exactly once, in order.
        let fills: Vec<u8> = calls
            .iter()
            .flat_map(|(_, v)| v.iter().map(|x| x.1))
            .collect();
        let mut want: Vec<u8> = (0..40).map(|k| k as u8).collect();
        want.extend([200, 201, 202, 250]);
        want.extend((0..20).map(|k| k as u8));
        assert_eq!(fills, want);
        // No call carried more than SEND_BATCH, nor more bytes than the arena's room
        // plus the one datagram that ended it.
        for (_, v) in &calls {
            assert!(v.len() <= SEND_BATCH);
            assert!(v.iter().map(|x| x.0).sum::<usize>() <= SEND_ROOM + MAX_DATAGRAM);
        }
        let counters = stats.snapshot();
        assert_eq!(counters.datagrams_sent, 40 + 3 + 1 + 20 - 1);
        // One refused by the OS, one for a socket the driver does not have.
        assert_eq!(counters.send_errors, 2);
    }
}
