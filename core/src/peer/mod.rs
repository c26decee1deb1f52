//! The PeerConnection: the W3C `RTCPeerConnection` API over the sans-IO layers.
//!
//! This module is the dispatcher: API calls go to `negotiation` (offer/answer) and to the
//! ICE agent; datagrams are classified once (RFC 7983) and handed to the layer they belong
//! to; `poll_*` only drain the layers. Nothing here reads a clock or touches a socket.
//!
//! The glue to each layer has its own file: `ice.rs` (the agent's events, STUN servers,
//! `connectionState`), `relay.rs` (TURN clients), `transport.rs` (DTLS), `data.rs`
//! (SCTP and data channels), `media.rs` (the [`MediaSession`](crate::media) that owns
//! SRTP, RTP and RTCP), `negotiation.rs` (offer/answer), `stats.rs` (counters).

mod data;
mod error;
pub mod event;
mod ice;
mod media;
mod negotiation;
mod relay;
mod stats;
mod transport;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::Config;
use crate::dtls::cert::{Certificate, Fingerprint};
use crate::dtls::{DtlsEndpoint, DtlsRole, DtlsState};
use crate::ice::{Candidate, IceAgent};
use crate::media::session::MediaSession;
use crate::media::{Direction, MediaKind, Transceiver, TransceiverId, TransceiverInit};
use crate::rng::Rng;
use crate::sdp::{IceCandidateInit, SessionDescription};
use crate::srtp::SrtpProfile;
use crate::transmit::{Datagram, DatagramKind, Protocol, Transmit};

pub use error::{AddCandidateError, NegotiationError, Operation, PeerError, SendError};
pub use event::{
    ConnectionState, Event, IceConnectionState, IceGatheringState, RemoteClose, SignalingState,
};
pub use negotiation::OfferOptions;
pub use relay::{TurnServer, MAX_RELAYS, RUNTIME_TURN_WAIT};
pub use stats::PeerStats;

use negotiation::Negotiation;

/// Most events kept for the application before new ones are dropped (and counted).
const MAX_QUEUED_EVENTS: usize = 4096;
/// Most payload bytes of RTP and RTCP events kept for the application: an application
/// that stops reading holds at most this much media per PeerConnection (over 3 s of
/// 2.5 Mbit/s video), not 4,096 full packets; later media events are dropped and counted.
const MAX_QUEUED_MEDIA_BYTES: usize = 1 << 20;
/// Most remote candidates accepted per negotiation; the rest are dropped and counted.
const MAX_REMOTE_CANDIDATES: usize = 256;

/// A WebRTC peer connection as a deterministic state machine. See the crate docs for the loop.
///
/// Its `Debug` output is a summary of states and addresses: it holds secrets (ICE
/// passwords, TURN credentials, DTLS master secrets, SRTP keys) that must not reach logs.
pub struct PeerConnection {
    config: Config,
    certificate: Certificate,
    ice: IceAgent,
    neg: Negotiation,
    signaling: SignalingState,
    ice_connection: IceConnectionState,
    ice_gathering: IceGatheringState,
    connection: ConnectionState,
    events: VecDeque<Event>,
    /// Payload bytes of the RTP and RTCP events in `events`.
    queued_media_bytes: usize,
    stats: PeerStats,
    local_candidates: Vec<String>,
    gathering_complete: bool,
    gathering_started: bool,
    remote_candidate_count: usize,
    negotiation_needed: bool,
    closed: bool,
    /// `Event::RemoteClosed` was fired.
    remote_closed: bool,
    last_now: Instant,
    dtls: Option<DtlsEndpoint>,
    dtls_params: Option<(DtlsRole, Fingerprint)>,
    dtls_state: DtlsState,
    early_dtls: transport::EarlyDtls,
    srtp: Option<SrtpProfile>,
    /// The media plane: SRTP, RTP/RTCP in and out, reports, tracks.
    media: MediaSession,
    rng: Rng,
    /// Data channels and the SCTP association under them.
    data: crate::datachannel::DataChannels,
    data_started: bool,
    sctp_scratch: Vec<u8>,
    /// TURN clients and their relayed candidates.
    relays: relay::Relays,
    relay_scratch: Vec<u8>,
}

impl PeerConnection {
    /// Create a PeerConnection. `now` is the time origin of everything it schedules.
    pub fn new(config: Config, now: Instant) -> Result<PeerConnection, PeerError> {
        let mut rng = match config.rng_seed {
            Some(seed) => Rng::from_seed(seed),
            None => Rng::from_os()?,
        };
        let certificate = match &config.certificate {
            Some(c) => c.clone(),
            None => Certificate::generate()?,
        };
        // The per-packet SSRC maps hash with a secret key (rtp/ssrc_map.rs), so a peer
        // cannot pick colliding SSRCs.
        let ssrc_key = rng.fork().next_u64();
        let ice = IceAgent::new(&config.ice, rng.fork(), config.ice_lite);
        let neg = Negotiation::new(rng.fork());
        let data = data::new_data_channels(&config, rng.fork(), now);
        let (mut relays, turn_for_runtime) = relay::Relays::new(&config.ice_servers, rng.fork());
        relays.hide_mapped =
            config.ice_transport_policy == crate::config::IceTransportPolicy::Relay;
        let clock_origin = config.clock_origin.unwrap_or((now, std::time::UNIX_EPOCH));
        let mut pc = PeerConnection {
            config,
            certificate,
            ice,
            neg,
            signaling: SignalingState::Stable,
            ice_connection: IceConnectionState::New,
            ice_gathering: IceGatheringState::New,
            connection: ConnectionState::New,
            events: VecDeque::new(),
            queued_media_bytes: 0,
            stats: PeerStats::default(),
            local_candidates: Vec::new(),
            gathering_complete: false,
            gathering_started: false,
            remote_candidate_count: 0,
            negotiation_needed: false,
            closed: false,
            remote_closed: false,
            last_now: now,
            dtls: None,
            dtls_params: None,
            dtls_state: DtlsState::New,
            early_dtls: transport::EarlyDtls::default(),
            srtp: None,
            media: MediaSession::new(ssrc_key, clock_origin),
            rng: rng.fork(),
            data,
            data_started: false,
            sctp_scratch: vec![0u8; 2048],
            relays,
            relay_scratch: Vec::new(),
        };
        pc.stats.ice_servers_skipped += turn_for_runtime + pc.relays.refused;
        let max_message_size = pc.data_max_message_size();
        pc.neg.set_max_message_size(max_message_size);
        pc.add_configured_stun_servers(now);
        Ok(pc)
    }

    // ---------------------------------------------------------------- getters

    /// `signalingState`.
    pub fn signaling_state(&self) -> SignalingState {
        self.signaling
    }

    /// `iceConnectionState`.
    pub fn ice_connection_state(&self) -> IceConnectionState {
        self.ice_connection
    }

    /// `iceGatheringState`.
    pub fn ice_gathering_state(&self) -> IceGatheringState {
        self.ice_gathering
    }

    /// `connectionState`, from the ICE and DTLS transports' states.
    pub fn connection_state(&self) -> ConnectionState {
        self.connection
    }

    /// `localDescription`: the pending one if any, else the current one, with the
    /// candidates gathered so far.
    pub fn local_description(&self) -> Option<SessionDescription> {
        self.neg.local_description(self.local_candidate_view())
    }

    /// `currentLocalDescription`.
    pub fn current_local_description(&self) -> Option<SessionDescription> {
        self.neg
            .current_local_description(self.local_candidate_view())
    }

    /// `pendingLocalDescription`.
    pub fn pending_local_description(&self) -> Option<SessionDescription> {
        self.neg
            .pending_local_description(self.local_candidate_view())
    }

    /// `remoteDescription`: the pending one if any, else the current one, with trickled candidates.
    pub fn remote_description(&self) -> Option<SessionDescription> {
        self.neg.remote_description()
    }

    /// `currentRemoteDescription`.
    pub fn current_remote_description(&self) -> Option<SessionDescription> {
        self.neg.current_remote_description()
    }

    /// `pendingRemoteDescription`.
    pub fn pending_remote_description(&self) -> Option<SessionDescription> {
        self.neg.pending_remote_description()
    }

    /// The transceivers, in creation order.
    pub fn transceivers(&self) -> &[Transceiver] {
        self.neg.transceivers()
    }

    /// One transceiver.
    pub fn transceiver(&self, id: TransceiverId) -> Option<&Transceiver> {
        self.neg.transceiver(id)
    }

    /// The DTLS certificate (its fingerprint is in every local description).
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Round-trip time measured from RTCP reports (LSR/DLSR), once known.
    pub fn rtt(&self) -> Option<std::time::Duration> {
        self.media.rtt()
    }

    /// Our DTLS role, once an answer settled it.
    pub fn dtls_role(&self) -> Option<DtlsRole> {
        self.dtls_params.as_ref().map(|(r, _)| *r)
    }

    /// The DTLS state.
    pub fn dtls_state(&self) -> DtlsState {
        self.dtls_state
    }

    /// The SRTP protection profile DTLS negotiated, once DTLS is up (the keys themselves
    /// never leave the core's SRTP contexts).
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.srtp
    }

    /// Our current ICE username fragment (it changes with an ICE restart).
    pub fn local_ice_ufrag(&self) -> &str {
        &self.ice.local_credentials().ufrag
    }

    /// The selected ICE candidate pair, once there is one.
    pub fn selected_pair(&self) -> Option<crate::ice::SelectedPair> {
        self.ice.selected_pair()
    }

    /// Whether ICE validated `remote` on `local`: the selected pair, or a pair on which
    /// the remote proved it knows the ICE password (a success response with valid
    /// MESSAGE-INTEGRITY to our check, or such a request that we answered). Only these
    /// reach DTLS; the [`Endpoint`](crate::Endpoint) routes by them. O(1).
    pub fn is_address_validated(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.ice.is_validated(local, remote)
    }

    /// How the remote proved `(local, remote)` to ICE, if it did: by a request (it knows
    /// the password) or by answering our check (it also receives at that address).
    pub fn address_validation(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<crate::ice::Validation> {
        self.ice.validation(local, remote)
    }

    fn local_candidate_view(&self) -> negotiation::CandidateView<'_> {
        negotiation::CandidateView {
            candidates: &self.local_candidates,
            complete: self.gathering_complete,
        }
    }

    // ---------------------------------------------------------------- API mutators

    /// `addTransceiver(kind, init)`.
    pub fn add_transceiver(
        &mut self,
        kind: MediaKind,
        init: TransceiverInit,
    ) -> Result<TransceiverId, NegotiationError> {
        self.check_open()?;
        let id = self.neg.add_transceiver(kind, init, false);
        self.update_negotiation_needed();
        Ok(id)
    }

    /// `addTrack(track, ...streams)`: reuses a transceiver of the same kind that has never
    /// sent (one created by a remote offer), else adds a `sendrecv` one.
    pub fn add_track(
        &mut self,
        kind: MediaKind,
        stream_ids: Vec<String>,
    ) -> Result<TransceiverId, NegotiationError> {
        self.check_open()?;
        let id = self.neg.add_track(kind, stream_ids);
        self.update_negotiation_needed();
        Ok(id)
    }

    /// `removeTrack(sender)`: the transceiver stops sending (`sendrecv` -> `recvonly`,
    /// `sendonly` -> `inactive`).
    pub fn remove_track(&mut self, id: TransceiverId) -> Result<(), NegotiationError> {
        self.check_open()?;
        self.neg.remove_track(id);
        self.update_negotiation_needed();
        Ok(())
    }

    /// Set a transceiver's preferred direction (`transceiver.direction = ...`).
    pub fn set_direction(
        &mut self,
        id: TransceiverId,
        direction: Direction,
    ) -> Result<(), NegotiationError> {
        self.check_open()?;
        self.neg.set_direction(id, direction);
        self.update_negotiation_needed();
        Ok(())
    }

    /// `transceiver.stop()`: its m-line is rejected in the next offer and may later be recycled.
    pub fn stop_transceiver(&mut self, id: TransceiverId) -> Result<(), NegotiationError> {
        self.check_open()?;
        self.neg.stop_transceiver(id);
        self.update_negotiation_needed();
        Ok(())
    }

    /// `restartIce()`: the next offer carries new ICE credentials.
    pub fn restart_ice(&mut self) {
        if self.closed {
            return;
        }
        self.neg.request_ice_restart();
        self.update_negotiation_needed();
    }

    /// `createOffer(options)`.
    pub fn create_offer(
        &mut self,
        options: OfferOptions,
    ) -> Result<SessionDescription, NegotiationError> {
        self.check_open()?;
        match self.signaling {
            SignalingState::Stable | SignalingState::HaveLocalOffer => {}
            state => {
                return Err(NegotiationError::InvalidState {
                    operation: Operation::CreateOffer,
                    state,
                })
            }
        }
        let ctx = self.local_context();
        Ok(self.neg.create_offer(&self.config, &ctx, options))
    }

    /// `createAnswer()`, after a remote offer.
    pub fn create_answer(&mut self) -> Result<SessionDescription, NegotiationError> {
        self.check_open()?;
        match self.signaling {
            SignalingState::HaveRemoteOffer | SignalingState::HaveLocalPranswer => {}
            state => {
                return Err(NegotiationError::InvalidState {
                    operation: Operation::CreateAnswer,
                    state,
                })
            }
        }
        let ctx = self.local_context();
        self.neg.create_answer(&self.config, &ctx)
    }

    /// `setLocalDescription(desc)`. An empty `sdp` uses the last created offer or answer.
    pub fn set_local_description(
        &mut self,
        now: Instant,
        desc: SessionDescription,
    ) -> Result<(), NegotiationError> {
        self.advance(now);
        self.check_open()?;
        let applied = self.neg.set_local(self.signaling, desc)?;
        self.apply_outcome(now, applied);
        Ok(())
    }

    /// `setRemoteDescription(desc)`.
    pub fn set_remote_description(
        &mut self,
        now: Instant,
        desc: SessionDescription,
    ) -> Result<(), NegotiationError> {
        self.advance(now);
        self.check_open()?;
        let applied = self.neg.set_remote(&self.config, self.signaling, desc)?;
        self.apply_outcome(now, applied);
        Ok(())
    }

    /// `addIceCandidate(candidate)`. An empty candidate string means end of candidates.
    pub fn add_ice_candidate(
        &mut self,
        now: Instant,
        init: IceCandidateInit,
    ) -> Result<(), AddCandidateError> {
        self.advance(now);
        if self.closed {
            return Err(AddCandidateError::Closed);
        }
        let index = self.neg.remote_media_index(&init)?;
        if init.is_end_of_candidates() {
            self.neg.note_remote_end_of_candidates(index);
            self.ice.end_of_remote_candidates(now);
            self.pump(now);
            return Ok(());
        }
        let candidate = Candidate::parse(&init.candidate)?;
        if self.remote_candidate_count >= MAX_REMOTE_CANDIDATES {
            self.stats.remote_candidates_dropped += 1;
            return Ok(());
        }
        self.remote_candidate_count += 1;
        self.neg.note_remote_candidate(index, &init.candidate);
        self.ice.add_remote_candidate(now, candidate);
        self.pump(now);
        Ok(())
    }

    /// Tell the core about a local socket it may use (a host candidate). The runtime calls
    /// this for every socket it binds.
    pub fn add_local_address(&mut self, now: Instant, addr: SocketAddr, protocol: Protocol) {
        self.advance(now);
        if self.closed {
            return;
        }
        if protocol == Protocol::Udp {
            self.relays.add_base(now, &mut self.ice, addr);
        }
        // `iceTransportPolicy: "relay"`: no host (or, from it, server-reflexive) candidate
        // may reveal or use this address; it only carries the TURN allocations.
        if self.config.ice_transport_policy != crate::config::IceTransportPolicy::Relay {
            self.ice.add_local_address(now, addr, protocol);
        }
        self.pump(now);
    }

    /// Allocate a relay on a TURN server the runtime resolved or connected to (a host
    /// name, `?transport=tcp`, `turns:`; the core itself starts `turn:` URLs with an IP
    /// literal over UDP from the configuration). The allocation starts when gathering
    /// does (at once if it already has); its relayed address becomes a relay candidate,
    /// or an [`Event::IceCandidateError`] says why not. Up to [`MAX_RELAYS`] servers.
    pub fn add_turn_server(&mut self, now: Instant, server: TurnServer) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.relays.add_server(now, &mut self.ice, server);
        self.pump(now);
    }

    /// The runtime could not resolve or connect to a configured TURN URL that the core
    /// left to it (`ServerUrl::needs_runtime`): gathering stops waiting for it and an
    /// [`Event::IceCandidateError`] with [`crate::turn::TurnError::Unreachable`] says so.
    /// Without this call or an `add_turn_server` for the URL, gathering waits for it up
    /// to [`relay::RUNTIME_TURN_WAIT`] after it starts.
    pub fn turn_server_unreachable(&mut self, now: Instant, url: &str) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.relays.unreachable(now, &mut self.ice, url);
        self.pump(now);
    }

    /// Each TURN allocation's URL and, while it exists, its relayed address.
    pub fn turn_allocations(&self) -> Vec<(String, Option<SocketAddr>)> {
        self.relays.allocations()
    }

    /// Use a STUN server at a resolved address for server-reflexive candidates (the core
    /// cannot resolve host names: runtimes resolve `stun:host` URLs and call this).
    pub fn add_stun_server(&mut self, now: Instant, server: SocketAddr) {
        self.advance(now);
        if self.closed
            || self.config.ice_transport_policy == crate::config::IceTransportPolicy::Relay
        {
            return;
        }
        self.ice.add_stun_server(now, server);
        self.pump(now);
    }

    /// `close()`: stops ICE; states become `closed` without events, as in the W3C API.
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        // RTCP BYE for our senders, SCTP ABORT, then close_notify; poll_transmit still
        // drains them.
        self.media.send_bye();
        self.data.abort();
        self.pump_data(now);
        if let Some(d) = self.dtls.as_mut() {
            d.close();
        }
        self.dtls_state = DtlsState::Closed;
        self.closed = true;
        // Allocations are released once the goodbyes above went out through them.
        self.relays.close_later();
        self.ice.close();
        while self.ice.poll_event().is_some() {}
        self.signaling = SignalingState::Closed;
        self.ice_connection = IceConnectionState::Closed;
        self.connection = ConnectionState::Closed;
    }

    // ---------------------------------------------------------------- IO

    /// A datagram arrived on one of our sockets.
    pub fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        self.advance(now);
        self.stats.datagrams_received += 1;
        if self.closed {
            self.stats.datagrams_dropped += 1;
            return;
        }
        let mut datagram = datagram;
        if !self.relays.is_empty() {
            if let Some(i) = self
                .relays
                .route(datagram.local, datagram.remote, datagram.protocol)
            {
                match self.relays.input(now, i, datagram.remote, datagram.data) {
                    relay::RelayInput::Consumed => {
                        self.pump(now);
                        return;
                    }
                    relay::RelayInput::Peer {
                        relayed,
                        peer,
                        data,
                    } => {
                        datagram = Datagram {
                            local: relayed,
                            remote: peer,
                            protocol: Protocol::Udp,
                            data,
                        }
                    }
                    relay::RelayInput::NotTurn => {}
                }
            }
        }
        if self.config.ice_transport_policy == crate::config::IceTransportPolicy::Relay
            && !self.relays.is_relayed(datagram.local)
        {
            self.stats.relay_policy_dropped += 1;
            self.stats.datagrams_dropped += 1;
            return;
        }
        let consumed = match DatagramKind::classify(datagram.data) {
            DatagramKind::Dtls => {
                self.handle_dtls_datagram(now, datagram.local, datagram.remote, datagram.data);
                true
            }
            DatagramKind::Stun => {
                let consumed = self.ice.handle_stun(
                    now,
                    datagram.local,
                    datagram.remote,
                    datagram.protocol,
                    datagram.data,
                );
                // A check may have validated the source of an early ClientHello.
                self.maybe_start_dtls(now);
                consumed
            }
            DatagramKind::Rtp => {
                let consumed = self
                    .media
                    .handle_srtp(now, datagram.data, self.neg.transceivers());
                self.forward_media_events();
                consumed
            }
            // Channel data only ever comes from a TURN server, and `relays.input` above
            // unwraps it; here it is a stray.
            DatagramKind::ChannelData | DatagramKind::Unknown => false,
        };
        if !consumed {
            self.stats.datagrams_dropped += 1;
        }
        self.pump(now);
    }

    /// Time passed. Calling it early or often is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.closed {
            return;
        }
        self.ice.handle_timeout(now);
        if !self.relays.is_empty() {
            self.relays.handle_timeout(now, &mut self.ice);
        }
        if let Some(d) = self.dtls.as_mut() {
            d.handle_timeout(now);
        }
        if self.data_started {
            self.data.handle_timeout(now);
        }
        self.media
            .handle_timeout(now, self.neg.transceivers(), &mut self.rng);
        self.forward_media_events();
        self.pump(now);
    }

    /// The next datagram to send, written into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if self.relays.is_empty() {
            return self.poll_transmit_direct(now, buf);
        }
        if let Some(t) = self.relays.poll_transmit(now, buf) {
            return Some(t);
        }
        loop {
            let Some(t) = self.poll_transmit_direct(now, buf) else {
                if self.closed && self.relays.close_now(now) {
                    return self.relays.poll_transmit(now, buf);
                }
                return None;
            };
            // A datagram from a relayed address goes to the TURN server, wrapped.
            if !self.relays.is_relayed(t.local) {
                return Some(t);
            }
            let mut scratch = std::mem::take(&mut self.relay_scratch);
            scratch.clear();
            scratch.extend_from_slice(buf.get(..t.len).unwrap_or_default());
            let wrapped = self.relays.wrap(now, t.local, t.remote, &scratch, buf);
            self.relay_scratch = scratch;
            match wrapped {
                Some(Ok(t)) => return Some(t),
                _ => self.stats.relay_send_failed += 1,
            }
        }
    }

    /// The next datagram of ICE, DTLS or media, before relaying.
    fn poll_transmit_direct(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if !self.closed {
            if let Some(t) = self.ice.poll_transmit(now, buf) {
                self.pump(now);
                return Some(t);
            }
        }
        let (local, remote) = self.ice.selected_addresses()?;
        let len = if self.closed {
            // After close(), the goodbyes leave in the order close() made them: RTCP BYE
            // (media queue), then SCTP ABORT and close_notify (DTLS queue).
            match self.media.poll_transmit(buf) {
                Some(len) => len,
                None => self.dtls.as_mut().and_then(|d| d.poll_transmit(buf))?,
            }
        } else {
            match self.dtls.as_mut().and_then(|d| d.poll_transmit(buf)) {
                Some(len) => len,
                None => self.media.poll_transmit(buf)?,
            }
        };
        Some(Transmit {
            local,
            remote,
            protocol: Protocol::Udp,
            len,
        })
    }

    /// When `handle_timeout` should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let dtls = self.dtls.as_ref().and_then(DtlsEndpoint::poll_timeout);
        let sctp = if self.data_started {
            self.data.poll_timeout()
        } else {
            None
        };
        let relays = if self.relays.is_empty() {
            None
        } else {
            self.relays.poll_timeout()
        };
        let dtls = [dtls, self.media.poll_timeout(), sctp, relays]
            .into_iter()
            .flatten()
            .min();
        match (self.ice.poll_timeout(), dtls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front()?;
        self.queued_media_bytes -= media_bytes(&event);
        self.data_event_taken(&event);
        Some(event)
    }

    // ---------------------------------------------------------------- internals

    fn advance(&mut self, now: Instant) {
        debug_assert!(now >= self.last_now, "time went backwards");
        if now > self.last_now {
            self.last_now = now;
        }
    }

    fn check_open(&self) -> Result<(), NegotiationError> {
        if self.closed {
            Err(NegotiationError::Closed)
        } else {
            Ok(())
        }
    }

    fn local_context(&self) -> negotiation::LocalContext {
        let creds = self.ice.local_credentials();
        negotiation::LocalContext {
            ufrag: creds.ufrag.clone(),
            pwd: creds.pwd.clone(),
            fingerprint: self.certificate.fingerprint().clone(),
            ice_lite: self.config.ice_lite,
        }
    }

    fn push_event(&mut self, event: Event) {
        let media = media_bytes(&event);
        if self.events.len() >= MAX_QUEUED_EVENTS
            || (media > 0 && self.queued_media_bytes + media > MAX_QUEUED_MEDIA_BYTES)
        {
            self.stats.events_dropped += 1;
        } else {
            self.queued_media_bytes += media;
            self.events.push_back(event);
        }
    }

    fn set_signaling(&mut self, state: SignalingState) {
        if self.signaling != state {
            self.signaling = state;
            self.push_event(Event::SignalingStateChange(state));
        }
    }

    /// Carry out what a successful set_local/set_remote decided.
    fn apply_outcome(&mut self, now: Instant, out: negotiation::Applied) {
        if let Some(restart) = out.local_ice_restart {
            self.ice
                .restart_with_credentials(now, &restart.ufrag, &restart.pwd);
            self.local_candidates.clear();
            self.gathering_complete = false;
            self.gathering_started = false;
            self.remote_candidate_count = 0;
        }
        if let Some(controlling) = out.controlling {
            self.ice.set_controlling(controlling);
        }
        if let Some(remote) = out.remote_ice {
            self.ice.set_remote_lite(remote.lite);
            self.ice
                .set_remote_credentials(now, &remote.ufrag, &remote.pwd);
            for c in remote.candidates {
                match Candidate::parse(&c) {
                    Ok(cand) if self.remote_candidate_count < MAX_REMOTE_CANDIDATES => {
                        self.remote_candidate_count += 1;
                        self.ice.add_remote_candidate(now, cand);
                    }
                    _ => self.stats.remote_candidates_dropped += 1,
                }
            }
            if remote.end_of_candidates {
                self.ice.end_of_remote_candidates(now);
            }
        }
        if let Some(params) = out.dtls {
            if self.dtls_params.is_none() {
                self.dtls_params = Some(params);
            }
        }
        if out.start_gathering && !self.gathering_started {
            self.gathering_started = true;
            self.relays.start(now, &mut self.ice);
            self.ice.start_gathering(now);
        }
        self.set_signaling(out.signaling);
        if out.signaling == SignalingState::Stable {
            self.negotiation_needed = false;
            self.media.announce_tracks(self.neg.transceivers());
            self.forward_media_events();
        }
        self.maybe_start_dtls(now);
        self.maybe_start_sctp(now);
        self.pump(now);
        self.update_negotiation_needed();
    }

    /// W3C "update the negotiation-needed flag": fire once per change while stable.
    fn update_negotiation_needed(&mut self) {
        if self.closed || self.signaling != SignalingState::Stable {
            return;
        }
        let needed = self.neg.is_negotiation_needed();
        if needed && !self.negotiation_needed {
            self.push_event(Event::NegotiationNeeded);
        }
        self.negotiation_needed = needed;
    }
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection")
            .field("signaling_state", &self.signaling_state())
            .field("connection_state", &self.connection_state())
            .field("ice_connection_state", &self.ice_connection_state())
            .field("dtls_state", &self.dtls_state)
            .field("local_ice_ufrag", &self.local_ice_ufrag())
            .field("selected_pair", &self.selected_pair())
            .field("transceivers", &self.neg.transceivers().len())
            .finish_non_exhaustive()
    }
}

/// The media payload an event holds: what [`MAX_QUEUED_MEDIA_BYTES`] counts.
fn media_bytes(event: &Event) -> usize {
    match event {
        Event::Rtp { packet, .. } => packet.payload.len(),
        Event::Rtcp(compound) => compound.len(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let now = Instant::now();
        let config = Config {
            rng_seed: Some(3),
            ice_servers: vec![crate::IceServer {
                urls: vec!["turn:192.0.2.1:3478".into()],
                username: Some("user".into()),
                credential: Some("turn-secret-credential".into()),
            }],
            ..Default::default()
        };
        let mut pc = PeerConnection::new(config, now).expect("pc");
        pc.add_local_address(now, "192.0.2.9:5000".parse().expect("addr"), Protocol::Udp);
        let _ = pc.add_track(MediaKind::Audio, vec![]);
        let offer = pc.create_offer(OfferOptions::default()).expect("offer");
        let pwd = offer
            .sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-pwd:"))
            .expect("pwd")
            .trim()
            .to_owned();
        pc.set_local_description(now, offer).expect("local");
        let text = format!("{pc:?}");
        assert!(!text.contains(&pwd), "{text}");
        assert!(!text.contains("turn-secret-credential"), "{text}");
        assert!(text.contains(pc.local_ice_ufrag()), "{text}");
    }

    /// RFC 8888 feedback is signalled once per m-line with the wildcard payload type, the
    /// only form libwebrtc reads, in offers and in answers alike.
    #[test]
    fn rfc8888_feedback_is_signalled_with_the_wildcard_payload_type() {
        let now = Instant::now();
        let config = || Config {
            rng_seed: Some(4),
            ..Default::default()
        };
        let mut alice = PeerConnection::new(config(), now).expect("pc");
        let _ = alice.add_track(MediaKind::Audio, vec![]);
        let _ = alice.add_track(MediaKind::Video, vec![]);
        let offer = alice.create_offer(OfferOptions::default()).expect("offer");
        let wildcard = |sdp: &str| sdp.matches("a=rtcp-fb:* ack ccfb\r\n").count();
        let per_format = |sdp: &str| {
            sdp.lines()
                .filter(|l| l.starts_with("a=rtcp-fb:") && !l.starts_with("a=rtcp-fb:*"))
                .filter(|l| l.contains("ccfb"))
                .count()
        };
        assert_eq!(wildcard(&offer.sdp), 2, "{}", offer.sdp);
        assert_eq!(per_format(&offer.sdp), 0, "{}", offer.sdp);

        let mut bob = PeerConnection::new(config(), now).expect("pc");
        bob.set_remote_description(now, offer).expect("remote");
        let answer = bob.create_answer().expect("answer");
        assert_eq!(wildcard(&answer.sdp), 2, "{}", answer.sdp);
        assert_eq!(per_format(&answer.sdp), 0, "{}", answer.sdp);
        // RFC 8888 accepted: the answer leaves out the transport-wide alternative.
        assert!(!answer.sdp.contains("transport-cc"), "{}", answer.sdp);
        assert!(!answer.sdp.contains("transport-wide-cc"), "{}", answer.sdp);

        // An answerer without RFC 8888 keeps transport-cc.
        let mut no_ccfb = config();
        for c in no_ccfb
            .audio_codecs
            .iter_mut()
            .chain(&mut no_ccfb.video_codecs)
        {
            c.rtcp_feedback.retain(|f| f != "ack ccfb");
        }
        let mut carol = PeerConnection::new(no_ccfb, now).expect("pc");
        carol
            .set_remote_description(now, offer_again(&mut alice))
            .expect("remote");
        let answer = carol.create_answer().expect("answer");
        assert_eq!(wildcard(&answer.sdp), 0, "{}", answer.sdp);
        assert!(
            answer.sdp.contains("a=rtcp-fb:96 transport-cc"),
            "{}",
            answer.sdp
        );
        assert!(answer.sdp.contains("transport-wide-cc"), "{}", answer.sdp);
    }

    fn offer_again(pc: &mut PeerConnection) -> SessionDescription {
        pc.create_offer(OfferOptions::default()).expect("offer")
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::sdp::SdpType;

    fn pc() -> (PeerConnection, Instant) {
        let now = Instant::now();
        let config = Config {
            rng_seed: Some(1),
            ..Default::default()
        };
        (PeerConnection::new(config, now).expect("new"), now)
    }

    #[test]
    fn illegal_calls_in_stable_return_typed_errors_and_change_nothing() {
        let (mut pc, now) = pc();
        let err = pc
            .set_remote_description(now, SessionDescription::answer("v=0\r\n"))
            .expect_err("answer in stable");
        assert_eq!(
            err,
            NegotiationError::InvalidState {
                operation: Operation::SetRemote(SdpType::Answer),
                state: SignalingState::Stable
            }
        );
        assert!(matches!(
            pc.create_answer(),
            Err(NegotiationError::InvalidState { .. })
        ));
        assert!(matches!(
            pc.set_local_description(now, SessionDescription::rollback()),
            Err(NegotiationError::InvalidState { .. })
        ));
        assert!(matches!(
            pc.add_ice_candidate(now, IceCandidateInit::default()),
            Err(AddCandidateError::NoRemoteDescription)
        ));
        assert_eq!(pc.signaling_state(), SignalingState::Stable);
        assert!(pc.remote_description().is_none());
        assert!(pc.poll_event().is_none());
    }

    /// What an illegal call must leave alone.
    fn snapshot(pc: &PeerConnection) -> (SignalingState, Option<String>, Option<String>, usize) {
        (
            pc.signaling_state(),
            pc.local_description().map(|d| d.sdp),
            pc.remote_description().map(|d| d.sdp),
            pc.transceivers().len(),
        )
    }

    #[test]
    fn illegal_calls_in_have_local_and_have_remote_offer_change_nothing() {
        // have-local-offer: answering ourselves, or a second remote answer type mismatch.
        let (mut alice, now) = pc();
        alice.add_track(MediaKind::Audio, vec![]).expect("track");
        let offer = alice.create_offer(OfferOptions::default()).expect("offer");
        alice
            .set_local_description(now, offer.clone())
            .expect("local offer");
        while alice.poll_event().is_some() {}
        let before = snapshot(&alice);
        assert_eq!(before.0, SignalingState::HaveLocalOffer);
        assert!(matches!(
            alice.create_answer(),
            Err(NegotiationError::InvalidState {
                operation: Operation::CreateAnswer,
                state: SignalingState::HaveLocalOffer
            })
        ));
        assert!(matches!(
            alice.set_local_description(now, SessionDescription::answer(offer.sdp.clone())),
            Err(NegotiationError::InvalidState {
                state: SignalingState::HaveLocalOffer,
                ..
            })
        ));
        assert_eq!(snapshot(&alice), before);
        assert!(alice.poll_event().is_none(), "no event from a refused call");

        // have-remote-offer: a remote answer, or a local offer, is refused.
        let now2 = now;
        let mut bob = PeerConnection::new(
            Config {
                rng_seed: Some(2),
                ..Default::default()
            },
            now2,
        )
        .expect("bob");
        bob.set_remote_description(now2, offer.clone())
            .expect("remote offer");
        while bob.poll_event().is_some() {}
        let before = snapshot(&bob);
        assert_eq!(before.0, SignalingState::HaveRemoteOffer);
        let answer_like = SessionDescription::answer(offer.sdp.clone());
        assert!(matches!(
            bob.set_remote_description(now2, answer_like),
            Err(NegotiationError::InvalidState {
                operation: Operation::SetRemote(SdpType::Answer),
                state: SignalingState::HaveRemoteOffer
            })
        ));
        // Our own offer while the remote's is pending, created or set: refused, typed.
        assert!(matches!(
            bob.create_offer(OfferOptions::default()),
            Err(NegotiationError::InvalidState {
                operation: Operation::CreateOffer,
                state: SignalingState::HaveRemoteOffer
            })
        ));
        assert!(matches!(
            bob.set_local_description(now2, SessionDescription::offer(offer.sdp.clone())),
            Err(NegotiationError::InvalidState {
                state: SignalingState::HaveRemoteOffer,
                ..
            })
        ));
        assert_eq!(snapshot(&bob), before);
        assert!(bob.poll_event().is_none(), "no event from a refused call");
        // The legal call still works afterwards.
        let answer = bob.create_answer().expect("answer");
        bob.set_local_description(now2, answer)
            .expect("local answer");
        assert_eq!(bob.signaling_state(), SignalingState::Stable);
    }

    #[test]
    fn add_track_fires_negotiation_needed_once() {
        let (mut pc, _now) = pc();
        pc.add_track(MediaKind::Audio, vec!["s".into()])
            .expect("track");
        pc.add_track(MediaKind::Video, vec!["s".into()])
            .expect("track");
        assert_eq!(pc.poll_event(), Some(Event::NegotiationNeeded));
        assert_eq!(pc.poll_event(), None);
    }

    #[test]
    fn set_local_rejects_a_modified_offer() {
        let (mut pc, now) = pc();
        pc.add_track(MediaKind::Audio, vec![]).expect("track");
        let _offer = pc.create_offer(OfferOptions::default()).expect("offer");
        let err = pc
            .set_local_description(now, SessionDescription::answer(""))
            .expect_err("answer in stable");
        assert!(matches!(err, NegotiationError::InvalidState { .. }));
        assert_eq!(pc.signaling_state(), SignalingState::Stable);
    }

    #[test]
    fn relay_policy_reveals_no_host_or_srflx_candidate() {
        for (policy, expect_host) in [
            (crate::config::IceTransportPolicy::All, true),
            (crate::config::IceTransportPolicy::Relay, false),
        ] {
            let now = Instant::now();
            let mut pc = PeerConnection::new(
                Config {
                    rng_seed: Some(5),
                    ice_transport_policy: policy,
                    ..Default::default()
                },
                now,
            )
            .expect("pc");
            pc.add_local_address(now, "192.0.2.7:5000".parse().expect("addr"), Protocol::Udp);
            pc.add_stun_server(now, "198.51.100.1:3478".parse().expect("addr"));
            pc.add_track(MediaKind::Audio, vec![]).expect("track");
            let offer = pc.create_offer(OfferOptions::default()).expect("offer");
            pc.set_local_description(now, offer).expect("local");
            let mut buf = vec![0u8; 1500];
            let mut later = now;
            let mut stun_sent = false;
            for _ in 0..50 {
                while pc.poll_transmit(later, &mut buf).is_some() {
                    stun_sent = true;
                }
                later += std::time::Duration::from_millis(100);
                pc.handle_timeout(later);
            }
            let candidates: Vec<String> = std::iter::from_fn(|| pc.poll_event())
                .filter_map(|e| match e {
                    Event::IceCandidate(c) => Some(c.candidate),
                    _ => None,
                })
                .collect();
            let host = candidates.iter().any(|c| c.contains("192.0.2.7"));
            assert_eq!(host, expect_host, "{policy:?}: {candidates:?}");
            let sdp = pc.local_description().expect("local").sdp;
            assert_eq!(sdp.contains("192.0.2.7"), expect_host, "{policy:?}");
            assert_eq!(
                stun_sent, expect_host,
                "{policy:?}: binding requests to the server"
            );
            // Gathering still completes, with the end-of-candidates marker.
            assert_eq!(pc.ice_gathering_state(), IceGatheringState::Complete);
            assert!(candidates.iter().any(String::is_empty), "{policy:?}");
        }
    }

    #[test]
    fn the_sdp_fingerprint_is_of_the_given_or_a_fresh_certificate() {
        let now = Instant::now();
        let given = Certificate::generate().expect("cert");
        let offer_of = |certificate: Option<Certificate>| {
            let mut pc = PeerConnection::new(
                Config {
                    rng_seed: Some(9),
                    certificate,
                    ..Default::default()
                },
                now,
            )
            .expect("pc");
            pc.add_track(MediaKind::Audio, vec![]).expect("track");
            let fp = pc.certificate().fingerprint().to_string();
            (
                pc.create_offer(OfferOptions::default()).expect("offer").sdp,
                fp,
            )
        };
        let (sdp, fp) = offer_of(Some(given.clone()));
        assert_eq!(fp, given.fingerprint().to_string());
        assert!(sdp.contains(&format!("a=fingerprint:{fp}\r\n")), "{sdp}");
        // Without one, each PeerConnection makes its own (same seed: secrets are not seeded).
        let (sdp_a, fp_a) = offer_of(None);
        let (_, fp_b) = offer_of(None);
        assert_ne!(fp_a, fp_b);
        assert_ne!(fp_a, fp);
        assert!(sdp_a.contains(&format!("a=fingerprint:{fp_a}\r\n")));
    }

    #[test]
    fn close_is_final() {
        let (mut pc, now) = pc();
        pc.close(now);
        assert_eq!(pc.connection_state(), ConnectionState::Closed);
        assert_eq!(pc.signaling_state(), SignalingState::Closed);
        assert_eq!(
            pc.create_offer(OfferOptions::default()),
            Err(NegotiationError::Closed)
        );
        assert!(pc.poll_timeout().is_none());
    }
}

#[cfg(test)]
mod candidate_tests {
    use super::*;

    #[test]
    fn mdns_candidates_come_back_for_resolution() {
        let now = Instant::now();
        let mut offerer = PeerConnection::new(
            Config {
                rng_seed: Some(3),
                ..Default::default()
            },
            now,
        )
        .expect("pc");
        offerer.add_track(MediaKind::Audio, vec![]).expect("track");
        let offer = offerer
            .create_offer(OfferOptions::default())
            .expect("offer");
        let mut pc = PeerConnection::new(
            Config {
                rng_seed: Some(4),
                ..Default::default()
            },
            now,
        )
        .expect("pc");
        pc.set_remote_description(now, offer).expect("remote");
        while pc.poll_event().is_some() {}
        let c = IceCandidateInit {
            candidate: "candidate:1 1 udp 2113937151 0f7a4c1e-6b5e-4d3b-9a1e-5c6d7e8f9a0b.local 54321 typ host generation 0".into(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: None,
        };
        pc.add_ice_candidate(now, c).expect("accepted");
        let ev = pc.poll_event();
        assert!(
            matches!(&ev, Some(Event::UnresolvedCandidate { hostname, .. }) if hostname == "0f7a4c1e-6b5e-4d3b-9a1e-5c6d7e8f9a0b.local"),
            "{ev:?}"
        );
        // Malformed candidates and unknown m-lines are typed errors.
        let bad = IceCandidateInit {
            candidate: "candidate:garbage".into(),
            sdp_mid: Some("0".into()),
            ..Default::default()
        };
        assert!(matches!(
            pc.add_ice_candidate(now, bad),
            Err(AddCandidateError::Malformed(_))
        ));
        let unknown = IceCandidateInit {
            candidate: "candidate:1 1 udp 1 10.0.0.1 9 typ host".into(),
            sdp_mid: Some("nope".into()),
            ..Default::default()
        };
        assert_eq!(
            pc.add_ice_candidate(now, unknown),
            Err(AddCandidateError::UnknownMediaSection)
        );
    }
}

#[cfg(test)]
mod simulcast_tests {
    use super::*;
    use crate::media::receive::RID_URI;
    use crate::media::TrackInfo;
    use crate::sdp::Sdp;
    use crate::srtp::SrtpContext;

    /// Chromium's offer with three simulcast streams (`a=rid:q/h/f send`,
    /// `a=simulcast:send q;h;f`) and no `a=ssrc` lines.
    const OFFER: &str = include_str!("../../tests/fixtures/sdp/chromium-simulcast-offer.sdp");
    const PROFILE: SrtpProfile = SrtpProfile::AeadAes128Gcm;

    /// The answering PeerConnection with SRTP keyed, its events drained, and the
    /// sender's SRTP context (the offerer is the DTLS server here).
    fn answered() -> (PeerConnection, Instant, String, Vec<Event>, SrtpContext) {
        let now = Instant::now();
        let mut pc = PeerConnection::new(
            Config {
                rng_seed: Some(7),
                ..Default::default()
            },
            now,
        )
        .expect("pc");
        pc.set_remote_description(now, SessionDescription::offer(OFFER))
            .expect("remote offer");
        let answer = pc.create_answer().expect("answer");
        pc.set_local_description(now, answer.clone())
            .expect("local answer");
        let events: Vec<Event> = std::iter::from_fn(|| pc.poll_event()).collect();
        let material: Vec<u8> = (0..PROFILE.keying_material_len())
            .map(|i| (i * 7) as u8)
            .collect();
        pc.install_srtp_for_test(PROFILE, &material, true);
        let (_, sender) =
            SrtpContext::pair_from_keying_material(PROFILE, &material, true).expect("keys");
        (pc, now, answer.sdp, events, sender)
    }

    fn deliver(pc: &mut PeerConnection, now: Instant, data: &[u8]) -> Vec<Event> {
        pc.handle_datagram(
            now,
            Datagram {
                local: "127.0.0.1:5000".parse().expect("addr"),
                remote: "127.0.0.1:6000".parse().expect("addr"),
                protocol: Protocol::Udp,
                data,
            },
        );
        std::iter::from_fn(|| pc.poll_event()).collect()
    }

    fn rtp_events(events: &[Event]) -> Vec<(TransceiverId, Option<String>, u32, u16)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Rtp { track, rid, packet } => {
                    Some((*track, rid.clone(), packet.ssrc, packet.sequence_number))
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn simulcast_offer_is_answered_with_receive_rids() {
        let (_, _, answer, events, _) = answered();
        let sdp = Sdp::parse(&answer).expect("answer parses");
        let m = &sdp.media[0];
        let rids: Vec<(&str, crate::sdp::RidDirection)> = m
            .rids
            .iter()
            .map(|r| (r.id.as_str(), r.direction))
            .collect();
        use crate::sdp::RidDirection::Recv;
        assert_eq!(rids, vec![("q", Recv), ("h", Recv), ("f", Recv)]);
        let simulcast = m.simulcast.as_ref().expect("a=simulcast in the answer");
        assert!(simulcast.send.is_empty());
        let recv: Vec<Vec<&str>> = simulcast
            .recv
            .iter()
            .map(|alts| alts.iter().map(|s| s.rid.as_str()).collect())
            .collect();
        assert_eq!(recv, vec![vec!["q"], vec!["h"], vec!["f"]]);
        assert!(answer.contains("a=simulcast:recv q;h;f\r\n"), "{answer}");
        assert!(
            m.extmaps.iter().any(|x| x.uri == RID_URI),
            "the rid extension is accepted"
        );
        // The W3C track event carries the simulcast rids.
        let tracks: Vec<&TrackInfo> = events
            .iter()
            .filter_map(|e| match e {
                Event::Track(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(tracks.len(), 1, "{events:?}");
        assert_eq!(tracks[0].rids, vec!["q", "h", "f"]);
        assert_eq!(tracks[0].kind, MediaKind::Video);
    }

    /// An application that stops reading holds at most `MAX_QUEUED_MEDIA_BYTES` of RTP
    /// payload; the rest is dropped and counted, and reading makes room again.
    #[test]
    fn unread_media_events_are_bounded_in_bytes() {
        let (mut pc, now, _, _, mut sender) = answered();
        let payload = [7u8; 1100];
        let packets = 2 * MAX_QUEUED_MEDIA_BYTES / payload.len();
        let datagram = |pc: &mut PeerConnection, p: &[u8]| {
            pc.handle_datagram(
                now,
                Datagram {
                    local: "127.0.0.1:5000".parse().expect("addr"),
                    remote: "127.0.0.1:6000".parse().expect("addr"),
                    protocol: Protocol::Udp,
                    data: p,
                },
            )
        };
        let packet = |sender: &mut SrtpContext, seq: u16| {
            crate::media::session::testing::simulcast_packet_with(
                sender,
                0x1111,
                seq,
                Some("0"),
                Some("q"),
                &payload,
            )
        };
        for seq in 0..packets as u16 {
            let p = packet(&mut sender, seq);
            datagram(&mut pc, &p);
        }
        let held = MAX_QUEUED_MEDIA_BYTES / payload.len();
        assert!(pc.queued_media_bytes <= MAX_QUEUED_MEDIA_BYTES);
        assert_eq!(pc.stats().events_dropped, (packets - held) as u64);
        let events: Vec<Event> = std::iter::from_fn(|| pc.poll_event()).collect();
        assert_eq!(rtp_events(&events).len(), held);
        assert_eq!(pc.queued_media_bytes, 0);
        // Read: the next packet is delivered.
        let p = packet(&mut sender, packets as u16);
        assert_eq!(rtp_events(&deliver(&mut pc, now, &p)).len(), 1);
    }

    #[test]
    fn an_ended_track_receives_no_more_packets() {
        let (mut pc, now, _, events, mut sender) = answered();
        let track = events
            .iter()
            .find_map(|e| match e {
                Event::Track(t) => Some(t.transceiver),
                _ => None,
            })
            .expect("track");
        let p = crate::media::session::testing::simulcast_packet(
            &mut sender,
            0x1111,
            100,
            Some("0"),
            Some("q"),
        );
        assert_eq!(rtp_events(&deliver(&mut pc, now, &p)).len(), 1);
        // The remote renegotiates its sender to inactive: the track ends.
        let offer =
            OFFER
                .replace("a=sendonly\r\n", "a=inactive\r\n")
                .replacen(" 2 IN IP4", " 3 IN IP4", 1);
        pc.set_remote_description(now, SessionDescription::offer(offer))
            .expect("renegotiation");
        let answer = pc.create_answer().expect("answer");
        pc.set_local_description(now, answer).expect("local answer");
        let events: Vec<Event> = std::iter::from_fn(|| pc.poll_event()).collect();
        assert!(events.contains(&Event::TrackEnded(track)), "{events:?}");
        // Later packets of its SSRC, with or without the extensions, are not delivered.
        let before = pc.stats().rtp_unmatched;
        for (seq, mid, rid) in [(101, None, None), (102, Some("0"), Some("q"))] {
            let p = crate::media::session::testing::simulcast_packet(
                &mut sender,
                0x1111,
                seq,
                mid,
                rid,
            );
            assert!(
                rtp_events(&deliver(&mut pc, now, &p)).is_empty(),
                "seq {seq}"
            );
        }
        assert_eq!(pc.stats().rtp_unmatched, before + 2);
    }
}
