//! The typed async API every runtime exposes: [`PeerHandle`] mirrors the core's
//! PeerConnection methods (the seed's `ExWebRTC.PeerConnection` calls), [`ServerHandle`]
//! is server mode (many peers on one socket through the core's `Endpoint`), and
//! [`prepare_peer`] / [`prepare_server`] do the executor-free set-up (bind sockets, build
//! the core, tell it its addresses and STUN servers) before a runtime spawns [`run`].
//!
//! [`run`]: crate::driver::run

use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::peer::{NegotiationError, OfferOptions, PeerStats};
use sansrtc::{ChannelId, DataChannelInit};
use sansrtc::{
    Config, ConnectionState, Endpoint, Event, IceCandidateInit, MediaKind, PeerConnection, PeerId,
    Protocol, SessionDescription, SignalingState, TransceiverId, TransceiverInit,
};

use crate::driver::{Capacity, DriverChannels, DriverState, Error, Handle};
use crate::net::{resolve_stun_servers, resolve_udp_turn_servers, runtime_turn_servers, NetConfig};
use crate::stream::{spawn_stream, StreamTarget, TlsRoots};

/// Reports from TURN stream threads waiting for the driver (each stream's reader stops
/// while this is full).
const STREAM_INPUTS: usize = 256;

/// Runtime options (what the core's `Config` cannot know).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How sockets are bound.
    pub net: NetConfig,
    /// Channel capacities.
    pub capacity: Capacity,
    /// The certificates `turns:` servers are checked against (the platform's by default,
    /// plus any extra ones).
    pub tls_roots: TlsRoots,
}

impl Options {
    /// Sockets on 127.0.0.1 only (tests, local demos).
    pub fn loopback() -> Options {
        Options {
            net: NetConfig::loopback(),
            ..Options::default()
        }
    }
}

/// A handle to a driven PeerConnection.
pub type PeerHandle = Handle<PeerConnection>;
/// A handle to a driven Endpoint (server mode: one socket for every peer).
pub type ServerHandle = Handle<Endpoint>;

/// Everything a runtime needs to start a driver.
pub struct Prepared<C: crate::Core> {
    /// The driver's state, ready to run.
    pub state: DriverState<C>,
    /// The bound sockets (blocking mode), in the state's socket order.
    pub sockets: Vec<UdpSocket>,
    /// The application's handle.
    pub handle: Handle<C>,
    /// The driver's ends of the channels.
    pub channels: DriverChannels<C>,
}

fn bind(options: &Options) -> Result<(Vec<UdpSocket>, Vec<SocketAddr>), Error> {
    let sockets = options.net.bind_udp()?;
    let addrs = sockets
        .iter()
        .map(UdpSocket::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((sockets, addrs))
}

/// Bind sockets and build a PeerConnection driver (blocking: resolves STUN host names).
pub fn prepare_peer(config: Config, options: &Options) -> Result<Prepared<PeerConnection>, Error> {
    let (sockets, addrs) = bind(options)?;
    let stun = resolve_stun_servers(&config);
    let (udp_turn, unreachable) = resolve_udp_turn_servers(&config, &options.net, &addrs);
    let stream_turn: Vec<_> = runtime_turn_servers(&config)
        .into_iter()
        .filter(|t| t.is_stream())
        .collect();
    let now = Instant::now();
    let mut pc = PeerConnection::new(config, now)?;
    for addr in &addrs {
        pc.add_local_address(now, *addr, Protocol::Udp);
    }
    for server in stun {
        pc.add_stun_server(now, server);
    }
    for server in udp_turn {
        pc.add_turn_server(now, server);
    }
    for url in unreachable {
        pc.turn_server_unreachable(now, &url);
    }
    let (handle, mut channels) = Handle::new(options.capacity, addrs.clone());
    let mut state = DriverState::new(pc, addrs, channels.stats.clone());
    // TURN over TCP and TLS: each stream connects on its own thread and is handed to the
    // core when it is open (see `stream`).
    if !stream_turn.is_empty() {
        let (tx, rx) = async_channel::bounded(STREAM_INPUTS);
        for (index, turn) in stream_turn.into_iter().enumerate() {
            let target = StreamTarget {
                url: turn.url,
                parsed: turn.parsed,
            };
            let slot = spawn_stream(
                index,
                target,
                options.net.clone(),
                options.tls_roots.clone(),
                tx.clone(),
            )?;
            state.add_turn_stream(slot, turn.username, turn.password);
        }
        channels.streams = rx;
    }
    Ok(Prepared {
        state,
        sockets,
        handle,
        channels,
    })
}

/// Bind sockets and build an Endpoint driver (server mode).
pub fn prepare_server(options: &Options) -> Result<Prepared<Endpoint>, Error> {
    let (sockets, addrs) = bind(options)?;
    let endpoint = Endpoint::new(addrs.iter().map(|a| (*a, Protocol::Udp)).collect());
    let (handle, channels) = Handle::new(options.capacity, addrs.clone());
    let state = DriverState::new(endpoint, addrs, channels.stats.clone());
    Ok(Prepared {
        state,
        sockets,
        handle,
        channels,
    })
}

impl Handle<PeerConnection> {
    /// `addTrack`: a transceiver sending `kind` in these streams.
    pub async fn add_track(
        &self,
        kind: MediaKind,
        stream_ids: Vec<String>,
    ) -> Result<TransceiverId, Error> {
        Ok(self
            .call(move |pc, _| pc.add_track(kind, stream_ids))
            .await??)
    }

    /// `addTransceiver`.
    pub async fn add_transceiver(
        &self,
        kind: MediaKind,
        init: TransceiverInit,
    ) -> Result<TransceiverId, Error> {
        Ok(self
            .call(move |pc, _| pc.add_transceiver(kind, init))
            .await??)
    }

    /// `removeTrack`.
    pub async fn remove_track(&self, transceiver: TransceiverId) -> Result<(), Error> {
        Ok(self
            .call(move |pc, _| pc.remove_track(transceiver))
            .await??)
    }

    /// `createOffer`.
    pub async fn create_offer(&self, options: OfferOptions) -> Result<SessionDescription, Error> {
        Ok(self.call(move |pc, _| pc.create_offer(options)).await??)
    }

    /// `createAnswer`.
    pub async fn create_answer(&self) -> Result<SessionDescription, Error> {
        Ok(self.call(|pc, _| pc.create_answer()).await??)
    }

    /// `setLocalDescription`.
    pub async fn set_local_description(&self, desc: SessionDescription) -> Result<(), Error> {
        Ok(self
            .call(move |pc, now| pc.set_local_description(now, desc))
            .await??)
    }

    /// `setRemoteDescription`.
    pub async fn set_remote_description(&self, desc: SessionDescription) -> Result<(), Error> {
        Ok(self
            .call(move |pc, now| pc.set_remote_description(now, desc))
            .await??)
    }

    /// `addIceCandidate` (an empty candidate string: end of candidates).
    pub async fn add_ice_candidate(&self, candidate: IceCandidateInit) -> Result<(), Error> {
        Ok(self
            .call(move |pc, now| pc.add_ice_candidate(now, candidate))
            .await??)
    }

    /// `restartIce`.
    pub async fn restart_ice(&self) -> Result<(), Error> {
        self.call(|pc, _| pc.restart_ice()).await
    }

    /// Send an RTP packet on a transceiver (the core sets SSRC, payload type and header
    /// extensions). Waits only for room in the command queue, not for the driver:
    /// errors the core returns later are counted in `stats().media_send_errors`.
    pub async fn send_rtp(
        &self,
        transceiver: TransceiverId,
        packet: RtpPacket,
    ) -> Result<(), Error> {
        self.cast(move |pc, _| {
            // The core counts its own refusals.
            let _ = pc.send_rtp(transceiver, &packet);
        })
        .await
    }

    /// Ask the remote for a keyframe on a receiving transceiver.
    pub async fn request_keyframe(&self, transceiver: TransceiverId) -> Result<(), Error> {
        Ok(self
            .call(move |pc, _| pc.request_keyframe(transceiver))
            .await??)
    }

    /// `createDataChannel`: the first channel makes negotiation needed; it opens once the
    /// connection is up (`Event::DataChannelOpen`).
    pub async fn create_data_channel(
        &self,
        label: impl Into<String>,
        init: DataChannelInit,
    ) -> Result<ChannelId, Error> {
        let label = label.into();
        Ok(self
            .call(move |pc, now| pc.create_data_channel(now, &label, init))
            .await??)
    }

    /// Send a data channel message (`binary` picks the PPID). Fails with
    /// `DataChannelError::BufferFull` past the send buffer: wait for
    /// `Event::BufferedAmountLow`.
    pub async fn send_data(
        &self,
        channel: ChannelId,
        data: Bytes,
        binary: bool,
    ) -> Result<(), Error> {
        Ok(self
            .call(move |pc, now| pc.send_data(now, channel, data, binary))
            .await??)
    }

    /// Send a text message.
    pub async fn send_text(
        &self,
        channel: ChannelId,
        text: impl Into<String>,
    ) -> Result<(), Error> {
        self.send_data(channel, Bytes::from(text.into()), false)
            .await
    }

    /// Close a data channel (both sides get `Event::DataChannelClose`).
    pub async fn close_data_channel(&self, channel: ChannelId) -> Result<(), Error> {
        self.call(move |pc, now| pc.close_data_channel(now, channel))
            .await
    }

    /// `bufferedAmount` of a channel.
    pub async fn buffered_amount(&self, channel: ChannelId) -> Result<usize, Error> {
        self.call(move |pc, _| pc.buffered_amount(channel)).await
    }

    /// `bufferedAmountLowThreshold` of a channel.
    pub async fn set_buffered_amount_low_threshold(
        &self,
        channel: ChannelId,
        threshold: usize,
    ) -> Result<(), Error> {
        self.call(move |pc, _| pc.set_buffered_amount_low_threshold(channel, threshold))
            .await
    }

    /// `localDescription`.
    pub async fn local_description(&self) -> Result<Option<SessionDescription>, Error> {
        self.call(|pc, _| pc.local_description()).await
    }

    /// `remoteDescription`.
    pub async fn remote_description(&self) -> Result<Option<SessionDescription>, Error> {
        self.call(|pc, _| pc.remote_description()).await
    }

    /// `connectionState`.
    pub async fn connection_state(&self) -> Result<ConnectionState, Error> {
        self.call(|pc, _| pc.connection_state()).await
    }

    /// `signalingState`.
    pub async fn signaling_state(&self) -> Result<SignalingState, Error> {
        self.call(|pc, _| pc.signaling_state()).await
    }

    /// The core's counters.
    pub async fn stats(&self) -> Result<PeerStats, Error> {
        self.call(|pc, _| pc.stats()).await
    }
}

impl Handle<Endpoint> {
    /// Answer a remote offer with a new PeerConnection on the shared socket (the answer
    /// carries our candidates, so trickle from our side is optional).
    pub async fn accept(
        &self,
        config: Config,
        offer: SessionDescription,
    ) -> Result<(PeerId, SessionDescription), Error> {
        self.accept_with(config, offer, |_| Ok(())).await
    }

    /// Like [`accept`](Self::accept), with `prepare` run on the new PeerConnection after
    /// the offer is applied and before the answer is made: add the tracks to send there
    /// (`add_track` reuses the transceivers the offer created). On any error the peer is
    /// removed and nothing is left behind.
    pub async fn accept_with(
        &self,
        config: Config,
        offer: SessionDescription,
        prepare: impl FnOnce(&mut PeerConnection) -> Result<(), NegotiationError> + Send + 'static,
    ) -> Result<(PeerId, SessionDescription), Error> {
        self.call(move |endpoint, now| {
            let pc = PeerConnection::new(config, now)?;
            let id = endpoint.insert(now, pc);
            let answer = endpoint
                .with_peer(id, |pc| {
                    pc.set_remote_description(now, offer)?;
                    prepare(pc)?;
                    let answer = pc.create_answer()?;
                    pc.set_local_description(now, answer)?;
                    // The description now carries the gathered host candidates.
                    Ok::<_, NegotiationError>(pc.local_description())
                })
                .ok_or(Error::NoSuchPeer)?;
            match answer {
                Ok(Some(answer)) => Ok((id, answer)),
                Ok(None) => {
                    endpoint.remove(id);
                    Err(Error::NoSuchPeer)
                }
                Err(e) => {
                    endpoint.remove(id);
                    Err(Error::Negotiation(e))
                }
            }
        })
        .await?
    }

    /// Run `f` on one peer of the endpoint.
    pub async fn with_peer<R: Send + 'static>(
        &self,
        id: PeerId,
        f: impl FnOnce(&mut PeerConnection, Instant) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.call(move |endpoint, now| endpoint.with_peer(id, |pc| f(pc, now)))
            .await?
            .ok_or(Error::NoSuchPeer)
    }

    /// Close one peer: its goodbyes are sent, then it is removed.
    pub async fn remove(&self, id: PeerId) -> Result<(), Error> {
        self.call(move |endpoint, now| endpoint.close_peer(now, id))
            .await?
            .then_some(())
            .ok_or(Error::NoSuchPeer)
    }
}

/// `Event`s of a server handle carry the peer they belong to.
pub type ServerEvent = (PeerId, Event);
