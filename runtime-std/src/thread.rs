//! The blocking [`PeerConnection`]: the same methods as the async handles, without
//! `.await`, over a driver thread. One reader thread per socket and one command thread
//! feed a single bounded input queue; the driver thread waits on it with the core's
//! deadline as timeout, so it wakes exactly for a datagram, a command or a timer.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sansrtc::media::RtpPacket;
use sansrtc::peer::{OfferOptions, PeerStats};
use sansrtc::{
    ChannelId, Config, ConnectionState, DataChannelInit, Event, IceCandidateInit, MediaKind,
    SessionDescription, SignalingState, TransceiverId, TransceiverInit,
};

use crate::driver::{
    refuse_commands, Command, Core, DriverChannels, DriverState, Error, Flow, MAX_DATAGRAM,
};
use crate::peer::{prepare_peer, prepare_server, Options, PeerHandle, ServerHandle};
use crate::stream::StreamInput;

/// How often reader threads look up from a quiet socket to see whether to stop.
const READER_POLL: Duration = Duration::from_millis(200);
/// Inputs queued for the driver thread.
const INPUT_QUEUE: usize = 4096;

enum Input<C> {
    Command(Command<C>),
    Datagram(usize, SocketAddr, Vec<u8>),
    Stream(StreamInput),
    HandlesGone,
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
    let mut send_sockets = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_read_timeout(Some(READER_POLL))?;
        send_sockets.push(socket.try_clone()?);
        let tx = input_tx.clone();
        let stop = stop.clone();
        thread::Builder::new()
            .name(format!("sansrtc-reader-{i}"))
            .spawn(move || read_loop(i, socket, tx, stop))?;
    }
    // TURN stream reports (already off the driver: the stream threads block, not it).
    let streams = channels.streams.clone();
    let stream_tx = input_tx.clone();
    thread::Builder::new()
        .name("sansrtc-turn-streams".into())
        .spawn(move || {
            while let Ok(input) = streams.recv_blocking() {
                if stream_tx.send(Input::Stream(input)).is_err() {
                    return;
                }
            }
        })?;
    let commands = channels.commands.clone();
    let tx = input_tx;
    thread::Builder::new()
        .name("sansrtc-commands".into())
        .spawn(move || {
            while let Ok(command) = commands.recv_blocking() {
                if tx.send(Input::Command(command)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::HandlesGone);
        })?;
    thread::Builder::new()
        .name("sansrtc-driver".into())
        .spawn(move || drive(state, send_sockets, channels, input_rx, stop))?;
    Ok(())
}

fn read_loop<C>(index: usize, socket: UdpSocket, tx: SyncSender<Input<C>>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        // Errors are timeouts (to check `stop`) and ICMP reports: both ignored.
        if let Ok((len, remote)) = socket.recv_from(&mut buf) {
            let data = buf.get(..len).unwrap_or_default().to_vec();
            if tx.send(Input::Datagram(index, remote, data)).is_err() {
                return;
            }
        }
    }
}

fn drive<C: Core>(
    mut state: DriverState<C>,
    sockets: Vec<UdpSocket>,
    channels: DriverChannels<C>,
    inputs: Receiver<Input<C>>,
    stop: Arc<AtomicBool>,
) {
    loop {
        let now = Instant::now();
        state.flush_transmits(now, |i, remote, data| {
            sockets
                .get(i)
                .is_some_and(|s| s.send_to(data, remote).is_ok())
        });
        while let Some(event) = state.forward_events(&channels.events) {
            if channels.events.send_blocking(event).is_err() {
                break;
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = state
            .core
            .poll_timeout()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(3600));
        let input = inputs.recv_timeout(wait);
        let now = Instant::now();
        match input {
            Ok(Input::Command(command)) => {
                if state.apply(now, command) == Flow::Stop {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            Ok(Input::Datagram(i, remote, data)) => state.handle_datagram(now, i, remote, &data),
            Ok(Input::Stream(input)) => state.handle_stream(now, input),
            Ok(Input::HandlesGone) | Err(RecvTimeoutError::Disconnected) => {
                state.close(now);
                stop.store(true, Ordering::Relaxed);
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
    state.flush_transmits(now, |i, remote, data| {
        sockets
            .get(i)
            .is_some_and(|s| s.send_to(data, remote).is_ok())
    });
    state.forward_final_events(&channels.events);
}
