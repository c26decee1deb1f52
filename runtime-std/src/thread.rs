//! The blocking [`PeerConnection`]: the same methods as the async handles, without
//! `.await`, over a driver thread. One reader thread per socket and one command thread
//! feed a single bounded input queue; the driver thread waits on it with the core's
//! deadline as timeout, so it wakes exactly for a datagram, a command or a timer.
//!
//! While an event waits for room in the event channel (the application is behind), the
//! driver pauses the readers (the kernel's socket buffer absorbs the excess; batches
//! already queued are set aside, bounded by the queue) and keeps serving commands and
//! timers, looking for room every [`EVENT_ROOM_POLL`]: an application that calls the
//! driver from its event loop never deadlocks with it.
//!
//! Readers read in batches (`recvmmsg` on Linux: block for the first datagram, take what
//! else is already waiting) into buffers the driver hands back once it has fed them to
//! the core, so a steady stream allocates nothing; the driver writes with `sendmmsg`.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sansrtc::media::RtpPacket;
use sansrtc::peer::{OfferOptions, PeerStats};
use sansrtc::{
    ChannelId, Config, ConnectionState, DataChannelInit, Event, IceCandidateInit, MediaKind,
    SessionDescription, SignalingState, TransceiverId, TransceiverInit,
};

use crate::batch::Outgoing;
use crate::driver::{refuse_commands, Command, Core, DriverChannels, DriverState, Error, Flow};
use crate::peer::{prepare_peer, prepare_server, Options, PeerHandle, ServerHandle};
use crate::resources::{DriverGuard, Gauge, RuntimeKind};
use crate::stream::StreamInput;

/// How often reader threads look up from a quiet socket to see whether to stop.
const READER_POLL: Duration = Duration::from_millis(200);
/// Inputs queued for the driver thread.
const INPUT_QUEUE: usize = 4096;

/// Spare batches kept per reader (handed back by the driver).
const SPARE_BATCHES: usize = 4;
/// How often the driver looks for room in the event channel while an event waits.
pub const EVENT_ROOM_POLL: Duration = Duration::from_millis(2);

enum Input<C> {
    Command(Command<C>),
    Datagrams(usize, Received),
    Stream(StreamInput),
    HandlesGone,
}

/// Datagrams a reader read in one go: their bytes back to back, and each one's source
/// and range. Reused: the driver returns it to its reader.
#[derive(Default)]
struct Received {
    data: Vec<u8>,
    datagrams: Vec<(SocketAddr, Range<usize>)>,
}

impl Received {
    fn clear(&mut self) {
        self.data.clear();
        self.datagrams.clear();
    }

    fn push(&mut self, remote: SocketAddr, bytes: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        self.datagrams.push((remote, start..self.data.len()));
    }
}

/// A PeerConnection driven by a thread; cloneable; blocking methods.
#[derive(Clone)]
pub struct PeerConnection {
    handle: PeerHandle,
}

impl PeerConnection {
    /// Bind sockets (all interfaces, or per `options`) and start the driver thread.
    pub fn new(config: Config) -> Result<PeerConnection, Error> {
        PeerConnection::with_options(config, Options::default())
    }

    /// With explicit runtime options (for example `Options::loopback()`).
    pub fn with_options(config: Config, options: Options) -> Result<PeerConnection, Error> {
        let prepared = prepare_peer(config, &options)?;
        spawn_driver(prepared.state, prepared.sockets, prepared.channels)?;
        Ok(PeerConnection {
            handle: prepared.handle,
        })
    }

    /// The async handle underneath (usable from any executor).
    pub fn handle(&self) -> &PeerHandle {
        &self.handle
    }

    /// The next event, waiting for it; `None` once the driver has stopped.
    pub fn next_event(&self) -> Option<Event> {
        self.handle.events().recv_blocking().ok()
    }

    /// The next event if one is waiting.
    pub fn try_next_event(&self) -> Option<Event> {
        self.handle.try_next_event()
    }

    /// The local socket addresses.
    pub fn local_addresses(&self) -> &[SocketAddr] {
        self.handle.local_addresses()
    }

    /// `addTrack`.
    pub fn add_track(
        &self,
        kind: MediaKind,
        stream_ids: Vec<String>,
    ) -> Result<TransceiverId, Error> {
        block_on(self.handle.add_track(kind, stream_ids))
    }
    /// `addTransceiver`.
    pub fn add_transceiver(
        &self,
        kind: MediaKind,
        init: TransceiverInit,
    ) -> Result<TransceiverId, Error> {
        block_on(self.handle.add_transceiver(kind, init))
    }
    /// `createOffer`.
    pub fn create_offer(&self, options: OfferOptions) -> Result<SessionDescription, Error> {
        block_on(self.handle.create_offer(options))
    }
    /// `createAnswer`.
    pub fn create_answer(&self) -> Result<SessionDescription, Error> {
        block_on(self.handle.create_answer())
    }
    /// `setLocalDescription`.
    pub fn set_local_description(&self, desc: SessionDescription) -> Result<(), Error> {
        block_on(self.handle.set_local_description(desc))
    }
    /// `setRemoteDescription`.
    pub fn set_remote_description(&self, desc: SessionDescription) -> Result<(), Error> {
        block_on(self.handle.set_remote_description(desc))
    }
    /// `addIceCandidate`.
    pub fn add_ice_candidate(&self, candidate: IceCandidateInit) -> Result<(), Error> {
        block_on(self.handle.add_ice_candidate(candidate))
    }
    /// `restartIce`.
    pub fn restart_ice(&self) -> Result<(), Error> {
        block_on(self.handle.restart_ice())
    }
    /// Send an RTP packet (see `PeerHandle::send_rtp`).
    pub fn send_rtp(&self, transceiver: TransceiverId, packet: RtpPacket) -> Result<(), Error> {
        block_on(self.handle.send_rtp(transceiver, packet))
    }
    /// Ask the remote for a keyframe.
    pub fn request_keyframe(&self, transceiver: TransceiverId) -> Result<(), Error> {
        block_on(self.handle.request_keyframe(transceiver))
    }
    /// `createDataChannel`.
    pub fn create_data_channel(
        &self,
        label: &str,
        init: DataChannelInit,
    ) -> Result<ChannelId, Error> {
        block_on(self.handle.create_data_channel(label, init))
    }
    /// Send a data channel message.
    pub fn send_data(
        &self,
        channel: ChannelId,
        data: bytes::Bytes,
        binary: bool,
    ) -> Result<(), Error> {
        block_on(self.handle.send_data(channel, data, binary))
    }
    /// Send a text message.
    pub fn send_text(&self, channel: ChannelId, text: &str) -> Result<(), Error> {
        block_on(self.handle.send_text(channel, text))
    }
    /// Close a data channel.
    pub fn close_data_channel(&self, channel: ChannelId) -> Result<(), Error> {
        block_on(self.handle.close_data_channel(channel))
    }
    /// `connectionState`.
    pub fn connection_state(&self) -> Result<ConnectionState, Error> {
        block_on(self.handle.connection_state())
    }
    /// `signalingState`.
    pub fn signaling_state(&self) -> Result<SignalingState, Error> {
        block_on(self.handle.signaling_state())
    }
    /// The core's counters.
    pub fn stats(&self) -> Result<PeerStats, Error> {
        block_on(self.handle.stats())
    }
    /// Close and stop the driver.
    pub fn close(&self) {
        block_on(self.handle.close())
    }
}

/// Server mode on a driver thread: many PeerConnections on one socket (the core's
/// `Endpoint`). Its [`ServerHandle`] is the async API (usable with any executor, or with
/// `futures_lite::future::block_on`).
#[derive(Clone)]
pub struct Server {
    handle: ServerHandle,
}

impl Server {
    /// Bind the shared socket(s) and start the driver thread.
    pub fn bind(options: Options) -> Result<Server, Error> {
        let prepared = prepare_server(&options)?;
        spawn_driver(prepared.state, prepared.sockets, prepared.channels)?;
        Ok(Server {
            handle: prepared.handle,
        })
    }

    /// The handle.
    pub fn handle(&self) -> &ServerHandle {
        &self.handle
    }
}

/// Start the driver thread (plus a command thread and one reader thread per socket).
pub fn spawn_driver<C: Core>(
    state: DriverState<C>,
    sockets: Vec<UdpSocket>,
    channels: DriverChannels<C>,
) -> Result<(), Error> {
    let (input_tx, input_rx) = sync_channel::<Input<C>>(INPUT_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::with_capacity(sockets.len());
    let mut send_sockets = Vec::with_capacity(sockets.len());
    let mut spares = Vec::with_capacity(sockets.len());
    // Each thread's closure holds its count (given back however the thread ends, or at
    // once if it cannot be spawned); the driver thread also holds the driver's.
    let driver = DriverGuard::new(RuntimeKind::Std, C::IS_ENDPOINT, sockets.len());
    let thread_count = || Gauge::DriverThreads.hold(1);
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_read_timeout(Some(READER_POLL))?;
        send_sockets.push(socket.try_clone()?);
        let local = socket.local_addr()?;
        let tx = input_tx.clone();
        let gate = Gate {
            stop: stop.clone(),
            paused: paused.clone(),
        };
        let (spare_tx, spare_rx) = sync_channel(SPARE_BATCHES);
        spares.push(spare_tx);
        let held = thread_count();
        let reader = thread::Builder::new()
            .name(format!("sansrtc-reader-{i}"))
            .spawn(move || {
                let _held = held;
                read_loop(i, socket, local, tx, spare_rx, gate)
            })?;
        readers.push(reader.thread().clone());
    }
    // TURN stream reports (already off the driver: the stream threads block, not it).
    let streams = channels.streams.clone();
    let stream_tx = input_tx.clone();
    let held = thread_count();
    thread::Builder::new()
        .name("sansrtc-turn-streams".into())
        .spawn(move || {
            let _held = held;
            while let Ok(input) = streams.recv_blocking() {
                if stream_tx.send(Input::Stream(input)).is_err() {
                    return;
                }
            }
        })?;
    let commands = channels.commands.clone();
    let tx = input_tx;
    let held = thread_count();
    thread::Builder::new()
        .name("sansrtc-commands".into())
        .spawn(move || {
            let _held = held;
            while let Ok(command) = commands.recv_blocking() {
                if tx.send(Input::Command(command)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::HandlesGone);
        })?;
    let readers = Readers {
        gate: Gate { stop, paused },
        threads: readers,
    };
    let held = thread_count();
    thread::Builder::new()
        .name("sansrtc-driver".into())
        .spawn(move || {
            let _held = (held, driver);
            drive(state, send_sockets, spares, channels, input_rx, readers)
        })?;
    Ok(())
}

/// What readers look at before each read.
struct Gate {
    /// The driver has stopped.
    stop: Arc<AtomicBool>,
    /// An event waits for room: do not read.
    paused: Arc<AtomicBool>,
}

/// The driver's side of its readers.
struct Readers {
    gate: Gate,
    threads: Vec<Thread>,
}

impl Readers {
    /// Pause or resume the readers (resumed ones are woken at once).
    fn pause(&self, pause: bool) {
        if self.gate.paused.swap(pause, Ordering::Relaxed) && !pause {
            self.threads.iter().for_each(Thread::unpark);
        }
    }

    fn stop(&self) {
        self.gate.stop.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.gate.stop.load(Ordering::Relaxed)
    }
}

fn read_loop<C>(
    index: usize,
    socket: UdpSocket,
    local: SocketAddr,
    tx: SyncSender<Input<C>>,
    spares: Receiver<Received>,
    gate: Gate,
) {
    let mut batch = Received::default();
    while !gate.stop.load(Ordering::Relaxed) {
        if gate.paused.load(Ordering::Relaxed) {
            thread::park_timeout(READER_POLL);
            continue;
        }
        batch.clear();
        // Errors are timeouts (to check `stop`) and ICMP reports: both ignored.
        let _ = read_batch(&socket, local, &mut batch);
        if batch.datagrams.is_empty() {
            continue;
        }
        let next = spares.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut batch, next);
        if tx.send(Input::Datagrams(index, full)).is_err() {
            return;
        }
    }
}

/// Block until a datagram arrives (or the read timeout), then take what else waits.
fn read_batch(
    socket: &UdpSocket,
    local: SocketAddr,
    batch: &mut Received,
) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        crate::batch::recv_batch(socket.as_fd(), local, true, &mut |remote, bytes| {
            batch.push(remote, bytes)
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = local;
        let mut buf = vec![0u8; crate::driver::MAX_DATAGRAM];
        let (len, remote) = socket.recv_from(&mut buf)?;
        batch.push(remote, buf.get(..len).unwrap_or_default());
        Ok(1)
    }
}

/// Write a batch on a (blocking) std socket without waiting for buffer room.
fn send_batch(socket: &UdpSocket, out: Outgoing<'_>) -> usize {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsFd;
        crate::batch::send_batch(socket.as_fd(), out).unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        crate::batch::send_each(out, |bytes, to| socket.send_to(bytes, to))
    }
}

fn drive<C: Core>(
    mut state: DriverState<C>,
    sockets: Vec<UdpSocket>,
    spares: Vec<SyncSender<Received>>,
    channels: DriverChannels<C>,
    inputs: Receiver<Input<C>>,
    readers: Readers,
) {
    // An event waiting for room in the event channel, and the datagram batches taken
    // from the input queue while it waits (fed once it is out, in order). Readers are
    // paused meanwhile, so this holds at most what the input queue held.
    let mut waiting: Option<C::Event> = None;
    let mut set_aside: VecDeque<(usize, Received)> = VecDeque::new();
    let feed = |state: &mut DriverState<C>, now: Instant, i: usize, batch: Received| {
        for (remote, range) in &batch.datagrams {
            let data = batch.data.get(range.clone()).unwrap_or_default();
            state.handle_datagram(now, i, *remote, data);
        }
        // Back to its reader for reuse (dropped when it has enough).
        if let Some(spare) = spares.get(i) {
            let _ = spare.try_send(batch);
        }
    };
    loop {
        let now = Instant::now();
        state.flush_batched(now, |i, out| {
            sockets.get(i).map_or(0, |s| send_batch(s, out))
        });
        if let Some(event) = waiting.take() {
            if let Err(async_channel::TrySendError::Full(event)) = channels.events.try_send(event) {
                waiting = Some(event);
            }
        }
        if waiting.is_none() {
            waiting = state.forward_events(&channels.events);
        }
        readers.pause(waiting.is_some());
        if readers.stopped() {
            break;
        }
        if waiting.is_none() {
            if let Some((i, batch)) = set_aside.pop_front() {
                feed(&mut state, now, i, batch);
                state.handle_timeout(Instant::now());
                continue;
            }
        }
        let mut wait = state
            .core
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(3600));
        if waiting.is_some() {
            wait = wait.min(EVENT_ROOM_POLL);
        }
        let input = inputs.recv_timeout(wait);
        let now = Instant::now();
        match input {
            Ok(Input::Command(command)) => {
                if state.apply(now, command) == Flow::Stop {
                    readers.stop();
                }
            }
            Ok(Input::Datagrams(i, batch)) => {
                if waiting.is_some() || !set_aside.is_empty() {
                    set_aside.push_back((i, batch));
                } else {
                    feed(&mut state, now, i, batch);
                }
            }
            Ok(Input::Stream(input)) => state.handle_stream(now, input),
            Ok(Input::HandlesGone) | Err(RecvTimeoutError::Disconnected) => {
                state.close(now);
                readers.stop();
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        state.handle_timeout(Instant::now());
    }
    refuse_commands(&channels.commands);
    // Stream threads and the forwarder stop at their next report.
    channels.streams.close();
    // Commands the command thread already moved to the input queue are dropped with it.
    drop(inputs);
    let now = Instant::now();
    state.flush_batched(now, |i, out| {
        sockets.get(i).map_or(0, |s| send_batch(s, out))
    });
    if let Some(event) = waiting {
        if channels.events.try_send(event).is_err() {
            state.count_dropped_event();
        }
    }
    state.forward_final_events(&channels.events);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::test_core;

    /// The thread driver serves commands while an event waits for room, and coalesces
    /// keyframe-request-like events (see `test_core`).
    #[test]
    fn thread_driver_serves_calls_while_events_wait() {
        let (handle, state, channels) = test_core::chatty(4);
        spawn_driver(state, Vec::new(), channels).expect("driver");
        test_core::calls_are_served_while_events_wait(handle);
    }
}
