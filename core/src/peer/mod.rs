//! The PeerConnection: the W3C `RTCPeerConnection` API over the sans-IO layers.
//!
//! This module is the dispatcher: API calls go to `negotiation` (offer/answer) and to the
//! ICE agent; datagrams are classified once (RFC 7983) and handed to the layer they belong
//! to; `poll_*` only drain the layers. Nothing here reads a clock or touches a socket.

mod data;
mod error;
pub mod event;
mod negotiation;
mod relay;
mod transport;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::config::Config;
use crate::dtls::cert::{Certificate, Fingerprint};
use crate::dtls::{DtlsEndpoint, DtlsRole, DtlsState, DtlsStats};
use crate::ice::{Candidate, CandidateAddress, IceAgent, IceEvent, IceStats};
use crate::media::reports::{ntp_time, ReceiveCounters, RttEstimator, SendCounters};
use crate::media::{Direction, MediaKind, Transceiver, TransceiverId, TransceiverInit};
use crate::media::{RtpPacket, TrackInfo};
use crate::rng::Rng;
use crate::rtp::extensions::ExtensionKind;
use crate::rtp::ssrc_map::{ssrc_map, SsrcMap};
use crate::rtp::{self, RtpHeader, RtpWrite};
use crate::sdp::{IceCandidateInit, SessionDescription};
use crate::srtp::{SrtpContext, SrtpProfile, SrtpStats};
use crate::transmit::{Datagram, DatagramKind, Protocol, Transmit};

pub use error::{AddCandidateError, NegotiationError, Operation, PeerError, SendError};
pub use event::{
    ConnectionState, Event, IceConnectionState, IceGatheringState, RemoteClose, SignalingState,
};
pub use negotiation::OfferOptions;
pub use relay::{TurnServer, MAX_RELAYS, RUNTIME_TURN_WAIT};

use negotiation::Negotiation;

/// Most events kept for the application before new ones are dropped (and counted).
const MAX_QUEUED_EVENTS: usize = 4096;
/// Most remote candidates accepted per negotiation; the rest are dropped and counted.
const MAX_REMOTE_CANDIDATES: usize = 256;
/// Most protected media packets waiting for `poll_transmit`.
const MAX_MEDIA_QUEUE: usize = 4096;
/// Most remote SSRCs remembered for demultiplexing.
const MAX_SSRCS: usize = 1024;
/// The mid header extension.
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// Without packets for this long a remote track is reported muted.
const MUTE_AFTER: std::time::Duration = std::time::Duration::from_secs(3);
/// The rid header extension.
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// Counters of what the PeerConnection dropped or handled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Datagrams handed to `handle_datagram`.
    pub datagrams_received: u64,
    /// Datagrams dropped because no layer could use them.
    pub datagrams_dropped: u64,
    /// Events dropped because the application did not drain `poll_event`.
    pub events_dropped: u64,
    /// Remote candidates that did not parse or were over the limit.
    pub remote_candidates_dropped: u64,
    /// ICE server URLs the core did not use itself: host names it cannot resolve, TURN
    /// over TCP or TLS (the runtime opens those and calls `add_stun_server` /
    /// `add_turn_server`), URLs that do not parse, TURN servers past [`MAX_RELAYS`].
    pub ice_servers_skipped: u64,
    /// Datagrams for a relayed pair that the TURN client could not send (no allocation
    /// any more, too large); dropped.
    pub relay_send_failed: u64,
    /// Datagrams dropped because they arrived outside a relay under the relay policy.
    pub relay_policy_dropped: u64,
    /// DTLS datagrams dropped because ICE had not validated their source (no check with
    /// MESSAGE-INTEGRITY passed on that local and remote address): a stranger's
    /// ClientHello or records. Also counted in `datagrams_dropped`.
    pub dtls_unvalidated_dropped: u64,
    /// Each TURN client's counters, in the order the servers were added.
    pub turn: Vec<crate::turn::TurnStats>,
    /// The ICE agent's counters.
    pub ice: IceStats,
    /// The DTLS association's counters.
    pub dtls: DtlsStats,
    /// Inbound SRTP counters (authentication failures, replays...).
    pub srtp_in: SrtpStats,
    /// Outbound SRTP counters.
    pub srtp_out: SrtpStats,
    /// RTP packets delivered as events.
    pub rtp_received: u64,
    /// RTP packets that matched no transceiver.
    pub rtp_unmatched: u64,
    /// RTP packets sent.
    pub rtp_sent: u64,
}

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
    srtp_in: Option<SrtpContext>,
    srtp_out: Option<SrtpContext>,
    /// Protected RTP/RTCP waiting for `poll_transmit`, in reused buffers.
    media_out: rtp::pool::PacketQueue,
    /// Received RTP payloads and RTCP, handed out as slices of reused chunks.
    media_in: rtp::pool::PayloadPool,
    ssrc_map: SsrcMap<TransceiverId>,
    /// The rid each remote SSRC announced (browsers stop sending the rid extension once
    /// the stream is known, so later packets inherit it from here).
    ssrc_rids: SsrcMap<String>,
    announced_tracks: Vec<TransceiverId>,
    scratch: Vec<u8>,
    rng: Rng,
    clock_origin: (Instant, std::time::SystemTime),
    send_counters: SsrcMap<SendCounters>,
    recv_counters: SsrcMap<ReceiveCounters>,
    rtt: RttEstimator,
    next_report: Option<Instant>,
    transport_seq: u16,
    /// Per receiving transceiver: when its last packet arrived and whether it is muted.
    media_activity: Vec<(TransceiverId, Instant, bool)>,
    /// No unmuted track can go quiet for `MUTE_AFTER` before this. It may be early (a
    /// packet only moves its own track's instant later, and is not rescanned for); the
    /// scan in `check_muted` makes it exact again, so `poll_timeout` need not walk every
    /// receiving track, as the Endpoint has it do after each packet.
    mute_deadline: Option<Instant>,
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
            srtp_in: None,
            srtp_out: None,
            media_out: Default::default(),
            media_in: Default::default(),
            ssrc_map: ssrc_map(ssrc_key),
            ssrc_rids: ssrc_map(ssrc_key),
            announced_tracks: Vec::new(),
            scratch: vec![0u8; 2048],
            rng: rng.fork(),
            clock_origin: (now, std::time::UNIX_EPOCH),
            send_counters: ssrc_map(ssrc_key),
            recv_counters: ssrc_map(ssrc_key),
            rtt: RttEstimator::default(),
            next_report: None,
            transport_seq: 0,
            media_activity: Vec::new(),
            mute_deadline: None,
            data,
            data_started: false,
            sctp_scratch: vec![0u8; 2048],
            relays,
            relay_scratch: Vec::new(),
        };
        pc.stats.ice_servers_skipped += turn_for_runtime + pc.relays.refused;
        let max_message_size = pc.data_max_message_size();
        pc.neg.set_max_message_size(max_message_size);
        if let Some(origin) = pc.config.clock_origin {
            pc.clock_origin = origin;
        }
        pc.add_configured_stun_servers(now);
        Ok(pc)
    }

    fn add_configured_stun_servers(&mut self, now: Instant) {
        let urls: Vec<String> = self
            .config
            .ice_servers
            .iter()
            .flat_map(|s| s.urls.iter().cloned())
            .collect();
        for url in urls {
            match stun_url_address(&url) {
                Some(addr) => self.ice.add_stun_server(now, addr),
                // TURN URLs are the relay module's (and counted there).
                None if !is_turn_url(&url) => self.stats.ice_servers_skipped += 1,
                None => {}
            }
        }
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

    /// `connectionState` (ICE and, once it exists, DTLS).
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
        self.rtt.rtt()
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

    /// Counters.
    pub fn stats(&self) -> PeerStats {
        let mut s = self.stats.clone();
        s.ice = self.ice.stats();
        s.turn = self.relays.stats();
        s.dtls = self
            .dtls
            .as_ref()
            .map(DtlsEndpoint::stats)
            .unwrap_or_default();
        s.srtp_in = self
            .srtp_in
            .as_ref()
            .map(SrtpContext::stats)
            .unwrap_or_default();
        s.srtp_out = self
            .srtp_out
            .as_ref()
            .map(SrtpContext::stats)
            .unwrap_or_default();
        s
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
        self.send_bye();
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
            DatagramKind::Rtp => self.handle_srtp(now, datagram.data),
            // TURN channel data arrives with the TURN work.
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
        if self.next_report.is_some_and(|t| now >= t) {
            self.send_reports(now);
        }
        self.check_muted(now);
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
            match self.media_out.pop_into(buf) {
                Some(len) => len,
                None => self.dtls.as_mut().and_then(|d| d.poll_transmit(buf))?,
            }
        } else {
            match self.dtls.as_mut().and_then(|d| d.poll_transmit(buf)) {
                Some(len) => len,
                None => self.media_out.pop_into(buf)?,
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
        let mute = self.mute_deadline;
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
        let dtls = [dtls, self.next_report, mute, sctp, relays]
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
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.stats.events_dropped += 1;
        } else {
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
            self.announce_tracks();
        }
        self.maybe_start_dtls(now);
        self.maybe_start_sctp(now);
        self.pump(now);
        self.update_negotiation_needed();
    }

    /// Fire `Track` for every transceiver the remote now sends on (W3C: when the
    /// description that makes it receive is applied).
    fn announce_tracks(&mut self) {
        let new: Vec<TrackInfo> = self
            .neg
            .transceivers()
            .iter()
            .filter(|t| t.current_direction.is_some_and(Direction::receives))
            .filter(|t| !self.announced_tracks.contains(&t.id))
            .map(|t| TrackInfo {
                transceiver: t.id,
                kind: t.kind,
                mid: t.mid.clone(),
                stream_ids: t.remote.stream_ids.clone(),
                rids: t.remote.rids.clone(),
            })
            .collect();
        for info in new {
            self.announced_tracks.push(info.transceiver);
            self.push_event(Event::Track(info));
        }
        let gone: Vec<TransceiverId> = self
            .announced_tracks
            .iter()
            .copied()
            .filter(|id| {
                self.neg.transceiver(*id).is_none_or(|t| {
                    t.stopped || !t.current_direction.is_some_and(Direction::receives)
                })
            })
            .collect();
        for id in gone {
            self.end_track(id);
        }
    }

    /// A packet arrived for a transceiver: refresh its activity, unmute it if muted.
    fn note_media(&mut self, now: Instant, id: TransceiverId) {
        // Kept sorted by id: a binary search per packet, not a scan of every track.
        match self
            .media_activity
            .binary_search_by_key(&id, |(t, _, _)| *t)
        {
            Ok(i) => {
                let entry = &mut self.media_activity[i];
                entry.1 = now;
                if std::mem::replace(&mut entry.2, false) {
                    self.note_mute_candidate(now);
                    self.push_event(Event::TrackUnmuted(id));
                }
            }
            Err(i) => {
                self.media_activity.insert(i, (id, now, false));
                self.note_mute_candidate(now);
            }
        }
    }

    /// A track became unmuted (or new) at `now`: it could go quiet at `now + MUTE_AFTER`.
    fn note_mute_candidate(&mut self, now: Instant) {
        let at = now + MUTE_AFTER;
        self.mute_deadline = Some(self.mute_deadline.map_or(at, |d| d.min(at)));
    }

    /// A transceiver by id without a scan in the usual case: ids are handed out in
    /// order, so a transceiver usually sits at its id's index; otherwise search.
    fn media_transceiver(&self, id: TransceiverId) -> Option<&Transceiver> {
        let all = self.neg.transceivers();
        all.get(id.0 as usize)
            .filter(|t| t.id == id)
            .or_else(|| all.iter().find(|t| t.id == id))
    }

    /// Report tracks that went quiet for `MUTE_AFTER` as muted.
    fn check_muted(&mut self, now: Instant) {
        let mut muted = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, last, is_muted) in &mut self.media_activity {
            if !*is_muted && now.saturating_duration_since(*last) >= MUTE_AFTER {
                *is_muted = true;
                muted.push(*id);
            } else if !*is_muted {
                let at = *last + MUTE_AFTER;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.mute_deadline = next;
        for id in muted {
            self.push_event(Event::TrackMuted(id));
        }
    }

    /// The remote track of a transceiver ended (BYE, or renegotiated to not send).
    fn end_track(&mut self, transceiver: TransceiverId) {
        self.media_activity.retain(|(t, _, _)| *t != transceiver);
        // Its streams no longer reach it: later packets of those SSRCs are demultiplexed
        // afresh (and dropped while nothing receives them).
        let gone: Vec<u32> = self
            .ssrc_map
            .iter()
            .filter(|(_, t)| **t == transceiver)
            .map(|(s, _)| *s)
            .collect();
        for ssrc in gone {
            self.ssrc_map.remove(&ssrc);
            self.ssrc_rids.remove(&ssrc);
        }
        if let Some(i) = self.announced_tracks.iter().position(|t| *t == transceiver) {
            self.announced_tracks.remove(i);
            self.push_event(Event::TrackEnded(transceiver));
        }
    }

    /// An SRTP or SRTCP datagram: decrypt, demultiplex, report.
    fn handle_srtp(&mut self, now: Instant, data: &[u8]) -> bool {
        let mut scratch = std::mem::take(&mut self.scratch);
        let handled = self.handle_srtp_in(now, data, &mut scratch);
        self.scratch = scratch;
        handled
    }

    fn handle_srtp_in(&mut self, now: Instant, data: &[u8], scratch: &mut [u8]) -> bool {
        let Some(srtp) = self.srtp_in.as_mut() else {
            return false;
        };
        let Some(buf) = scratch.get_mut(..data.len()) else {
            return false;
        };
        buf.copy_from_slice(data);
        if rtp::is_rtcp(data) {
            let Ok(n) = srtp.unprotect_rtcp(scratch, data.len()) else {
                return true;
            };
            let plain = self.media_in.copy(scratch.get(..n).unwrap_or_default());
            self.on_rtcp(now, &plain);
            let asked: Vec<u32> = rtp::keyframe_requests(&plain).collect();
            for media_ssrc in asked {
                let t = self
                    .neg
                    .transceivers()
                    .iter()
                    .find(|t| t.sender_ssrc == media_ssrc)
                    .map(|t| t.id);
                if let Some(id) = t {
                    self.push_event(Event::KeyframeRequest(id));
                }
            }
            self.push_event(Event::Rtcp(plain));
            return true;
        }
        let Ok(n) = srtp.unprotect_rtp(scratch, data.len()) else {
            return true;
        };
        let Some(plain) = scratch.get(..n) else {
            return true;
        };
        let Ok(header) = RtpHeader::parse(plain) else {
            return true;
        };
        let ssrc = header.ssrc();
        let transceiver = self.demux(&header);
        if transceiver.is_some() {
            let seq = header.sequence_number();
            let room = self.recv_counters.len() < MAX_SSRCS;
            match self.recv_counters.get_mut(&ssrc) {
                Some(counters) => counters.on_packet(seq),
                None if room => {
                    self.recv_counters.entry(ssrc).or_default().on_packet(seq);
                }
                None => {}
            }
        }
        let Some(id) = transceiver else {
            self.stats.rtp_unmatched += 1;
            return true;
        };
        let rid = match self.packet_rid(id, &header) {
            Some(rid) => {
                if self.ssrc_rids.get(&ssrc) != Some(&rid)
                    && (self.ssrc_rids.len() < MAX_SSRCS || self.ssrc_rids.contains_key(&ssrc))
                {
                    self.ssrc_rids.insert(ssrc, rid.clone());
                }
                Some(rid)
            }
            None => self.ssrc_rids.get(&ssrc).cloned(),
        };
        let packet = RtpPacket {
            payload_type: header.payload_type(),
            sequence_number: header.sequence_number(),
            timestamp: header.timestamp(),
            marker: header.marker(),
            ssrc,
            payload: self.media_in.copy(header.payload()),
        };
        self.stats.rtp_received += 1;
        self.note_media(now, id);
        self.push_event(Event::Rtp {
            track: id,
            rid,
            packet,
        });
        true
    }

    /// Test hook: SRTP keys as DTLS would export them, without a handshake.
    #[cfg(test)]
    fn install_srtp_for_test(&mut self, profile: SrtpProfile, material: &[u8], is_client: bool) {
        let (out, inb) = SrtpContext::pair_from_keying_material(profile, material, is_client)
            .expect("keying material");
        self.srtp_out = Some(out);
        self.srtp_in = Some(inb);
    }

    /// The rid header extension of a packet, as negotiated on its transceiver.
    fn packet_rid(&self, id: TransceiverId, header: &RtpHeader<'_>) -> Option<String> {
        let t = self.media_transceiver(id)?;
        let ext = t
            .header_extensions
            .iter()
            .find(|(_, u)| u == RID_URI)
            .and_then(|(i, _)| u8::try_from(*i).ok())?;
        let value = header.extension(ext)?;
        std::str::from_utf8(value)
            .ok()
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    }

    /// Which transceiver an RTP packet belongs to: known SSRC, then the mid header
    /// extension, then the rid header extension against the signalled rids, then a
    /// signalled `a=ssrc`, then the payload type when only one receiving transceiver uses
    /// it (an SSRC first seen without a signalled ssrc line).
    fn demux(&mut self, header: &RtpHeader<'_>) -> Option<TransceiverId> {
        let ssrc = header.ssrc();
        if let Some(id) = self.ssrc_map.get(&ssrc) {
            return Some(*id);
        }
        let receiving = || {
            self.neg
                .transceivers()
                .iter()
                .filter(|t| !t.stopped && t.current_direction.is_some_and(Direction::receives))
        };
        let mid_of = |t: &Transceiver| {
            t.header_extensions
                .iter()
                .find(|(_, u)| u == MID_URI)
                .and_then(|(i, _)| u8::try_from(*i).ok())
                .and_then(|i| header.extension(i))
        };
        let by_mid = receiving().find(|t| {
            matches!((mid_of(t), t.mid.as_deref()), (Some(m), Some(ours)) if m == ours.as_bytes())
        });
        // RFC 8843 section 9.2: a packet that names a mid we do not receive on is not
        // guessed onto another transceiver by its SSRC or payload type.
        if by_mid.is_none() && receiving().any(|t| mid_of(t).is_some()) {
            return None;
        }
        let by_rid = || {
            receiving().find(|t| {
                let rid = t
                    .header_extensions
                    .iter()
                    .find(|(_, u)| u == RID_URI)
                    .and_then(|(i, _)| u8::try_from(*i).ok())
                    .and_then(|i| header.extension(i));
                rid.is_some_and(|r| t.remote.rids.iter().any(|ours| ours.as_bytes() == r))
            })
        };
        let found = by_mid
            .or_else(by_rid)
            .or_else(|| receiving().find(|t| t.remote.ssrcs.contains(&ssrc)))
            .or_else(|| {
                // Only a payload type that one receiving transceiver alone uses decides.
                let mut by_pt = receiving().filter(|t| {
                    t.codecs
                        .iter()
                        .any(|c| c.payload_type == header.payload_type())
                });
                let first = by_pt.next();
                by_pt.next().is_none().then_some(first).flatten()
            })
            .map(|t| t.id)?;
        if self.ssrc_map.len() < MAX_SSRCS {
            self.ssrc_map.insert(ssrc, found);
        }
        Some(found)
    }

    /// Send an RTP packet on a transceiver: the core sets the SSRC, the payload type (when
    /// the given one is not negotiated, the first negotiated codec's) and the mid header
    /// extension, protects it with SRTP and queues it for `poll_transmit`.
    pub fn send_rtp(
        &mut self,
        transceiver: TransceiverId,
        packet: &RtpPacket,
    ) -> Result<(), SendError> {
        let all = self.neg.transceivers();
        let t = all
            .get(transceiver.0 as usize)
            .filter(|t| t.id == transceiver)
            .or_else(|| all.iter().find(|t| t.id == transceiver))
            .ok_or(SendError::UnknownTransceiver)?;
        if !t.current_direction.is_some_and(Direction::sends) || t.stopped {
            return Err(SendError::NotSending);
        }
        let pt = if t
            .codecs
            .iter()
            .any(|c| c.payload_type == packet.payload_type)
        {
            packet.payload_type
        } else {
            t.codecs.first().ok_or(SendError::NotSending)?.payload_type
        };
        let mid_ext = t
            .header_extensions
            .iter()
            .find(|(_, u)| u == MID_URI)
            .and_then(|(i, _)| u8::try_from(*i).ok())
            .filter(|i| (1..=14).contains(i));
        let twcc_ext = t
            .header_extensions
            .iter()
            .find(|(_, u)| u == ExtensionKind::TransportCc.uri())
            .and_then(|(i, _)| u8::try_from(*i).ok())
            .filter(|i| (1..=14).contains(i));
        // Borrowed, not cloned: `t` lives in `self.neg`, disjoint from the fields below.
        let mid: &str = t.mid.as_deref().unwrap_or_default();
        let ssrc = t.sender_ssrc;
        let srtp = self.srtp_out.as_mut().ok_or(SendError::NotConnected)?;
        if self.media_out.len() >= MAX_MEDIA_QUEUE {
            return Err(SendError::QueueFull);
        }
        let twcc = self.transport_seq.to_be_bytes();
        // At most two extensions, on the stack (no allocation per packet).
        let mut exts: [(u8, &[u8]); 2] = [(0, &[]); 2];
        let mut n_exts = 0;
        if let Some(id) = mid_ext.filter(|_| !mid.is_empty() && mid.len() <= 16) {
            exts[n_exts] = (id, mid.as_bytes());
            n_exts += 1;
        }
        if let Some(id) = twcc_ext {
            exts[n_exts] = (id, &twcc);
            n_exts += 1;
        }
        let n = rtp::write_rtp(
            &RtpWrite {
                marker: packet.marker,
                payload_type: pt,
                sequence_number: packet.sequence_number,
                timestamp: packet.timestamp,
                ssrc,
                extensions: exts.get(..n_exts).unwrap_or_default(),
                payload: &packet.payload,
            },
            &mut self.scratch,
        )
        .map_err(|_| SendError::TooLarge)?;
        let n = srtp
            .protect_rtp(&mut self.scratch, n)
            .map_err(|_| SendError::TooLarge)?;
        self.media_out
            .push(self.scratch.get(..n).unwrap_or_default());
        self.stats.rtp_sent += 1;
        if twcc_ext.is_some() {
            self.transport_seq = self.transport_seq.wrapping_add(1);
        }
        let clock_rate = self
            .media_transceiver(transceiver)
            .and_then(|t| t.codecs.iter().find(|c| c.payload_type == pt))
            .map_or(90_000, |c| c.clock_rate);
        let counters = self.send_counters.entry(ssrc).or_default();
        counters.packets = counters.packets.wrapping_add(1);
        counters.octets = counters.octets.wrapping_add(packet.payload.len() as u32);
        counters.last = Some((packet.timestamp, self.last_now));
        counters.clock_rate = clock_rate;
        Ok(())
    }

    /// The wall-clock time of `now`, from the configured (Instant, SystemTime) origin.
    fn wall_clock(&self, now: Instant) -> std::time::SystemTime {
        let (origin, wall) = self.clock_origin;
        wall + now.saturating_duration_since(origin)
    }

    fn schedule_report(&mut self, now: Instant) {
        // RFC 3550 6.3: randomize the interval in [0.5, 1.5] times the 1 s minimum we use.
        let factor = 0.5 + self.rng.unit_f64();
        self.next_report = Some(now + std::time::Duration::from_secs_f64(factor));
    }

    /// Learn from the peer's reports: SR times for our receiver reports, RTT from blocks
    /// about our SSRCs.
    fn on_rtcp(&mut self, now: Instant, compound: &[u8]) {
        for packet in rtp::RtcpPacket::parse_compound(compound).flatten() {
            let blocks = match &packet {
                rtp::RtcpPacket::SenderReport {
                    ssrc, ntp, reports, ..
                } => {
                    if let Some(c) = self.recv_counters.get_mut(ssrc) {
                        c.on_sender_report(*ntp, now);
                    }
                    reports.clone()
                }
                rtp::RtcpPacket::ReceiverReport { reports, .. } => reports.clone(),
                rtp::RtcpPacket::Bye { ssrcs, .. } => {
                    let mut ended = false;
                    for ssrc in ssrcs {
                        self.ssrc_rids.remove(ssrc);
                        // A source that left gets no more reception reports (RFC 3550 6.6).
                        ended |= self.recv_counters.remove(ssrc).is_some();
                        if let Some(t) = self.ssrc_map.remove(ssrc) {
                            // A simulcast track ends with its last stream.
                            if !self.ssrc_map.values().any(|other| *other == t) {
                                self.end_track(t);
                            }
                        }
                    }
                    // BYE for the last stream the peer sent us, and no data channels:
                    // nothing of the session is left on the peer's side.
                    if ended && self.recv_counters.is_empty() && !self.data_started {
                        self.remote_closed(RemoteClose::RtcpBye);
                    }
                    continue;
                }
                _ => continue,
            };
            for b in &blocks {
                if self.send_counters.contains_key(&b.ssrc) {
                    self.rtt.on_report_block(b, now);
                }
            }
        }
    }

    /// Queue one protected RTCP compound.
    fn queue_rtcp(&mut self, packets: &[rtp::RtcpPacket]) {
        let Some(srtp) = self.srtp_out.as_mut() else {
            return;
        };
        let mut len = 0;
        for p in packets {
            match p.write(self.scratch.get_mut(len..).unwrap_or_default()) {
                Ok(n) => len += n,
                Err(_) => return,
            }
        }
        if len == 0 || self.media_out.len() >= MAX_MEDIA_QUEUE {
            return;
        }
        if let Ok(n) = srtp.protect_rtcp(&mut self.scratch, len) {
            self.media_out
                .push(self.scratch.get(..n).unwrap_or_default());
        }
    }

    /// Sender reports for every SSRC we sent on (the first carrying the receiver report
    /// blocks), or one receiver report when we only receive.
    fn send_reports(&mut self, now: Instant) {
        self.schedule_report(now);
        let mut blocks: Vec<rtp::ReportBlock> = Vec::new();
        let mut ssrcs: Vec<u32> = self.recv_counters.keys().copied().collect();
        ssrcs.sort_unstable();
        for ssrc in ssrcs.into_iter().take(31) {
            if let Some(c) = self.recv_counters.get_mut(&ssrc) {
                blocks.push(c.report_block(ssrc, now));
            }
        }
        let ntp = ntp_time(self.wall_clock(now));
        let mut senders: Vec<(u32, SendCounters)> = self
            .send_counters
            .iter()
            .map(|(s, c)| (*s, c.clone()))
            .collect();
        senders.sort_unstable_by_key(|(s, _)| *s);
        let mut packets = Vec::new();
        for (i, (ssrc, c)) in senders.iter().enumerate() {
            packets.push(rtp::RtcpPacket::SenderReport {
                ssrc: *ssrc,
                ntp,
                rtp_timestamp: c.rtp_timestamp_at(now),
                packets: c.packets,
                octets: c.octets,
                reports: if i == 0 {
                    std::mem::take(&mut blocks)
                } else {
                    Vec::new()
                },
            });
        }
        if !packets.is_empty() {
            self.rtt.on_sr_sent(ntp, now);
        }
        if packets.is_empty() && !blocks.is_empty() {
            let reporter = self.neg.transceivers().first().map_or(1, |t| t.sender_ssrc);
            packets.push(rtp::RtcpPacket::ReceiverReport {
                ssrc: reporter,
                reports: blocks,
            });
        }
        if !packets.is_empty() {
            self.queue_rtcp(&packets);
        }
    }

    /// RTCP BYE for every SSRC we sent on.
    fn send_bye(&mut self) {
        let mut ssrcs: Vec<u32> = self.send_counters.keys().copied().collect();
        ssrcs.sort_unstable();
        if !ssrcs.is_empty() {
            ssrcs.truncate(31);
            self.queue_rtcp(&[rtp::RtcpPacket::Bye {
                ssrcs,
                reason: None,
            }]);
        }
    }

    /// Ask the remote sender of this transceiver's track for a keyframe (RTCP PLI).
    pub fn request_keyframe(&mut self, transceiver: TransceiverId) -> Result<(), SendError> {
        let t = self
            .neg
            .transceiver(transceiver)
            .ok_or(SendError::UnknownTransceiver)?;
        let sender = t.sender_ssrc;
        // Every stream of the track: each simulcast layer needs its own keyframe.
        let mut media: Vec<u32> = self
            .ssrc_map
            .iter()
            .filter(|(_, id)| **id == transceiver)
            .map(|(s, _)| *s)
            .collect();
        media.sort_unstable();
        if media.is_empty() {
            media.extend(t.remote.ssrcs.first().copied());
        }
        if media.is_empty() {
            return Err(SendError::NotSending);
        }
        let srtp = self.srtp_out.as_mut().ok_or(SendError::NotConnected)?;
        if self.media_out.len() + media.len() > MAX_MEDIA_QUEUE {
            return Err(SendError::QueueFull);
        }
        // One reduced-size SRTCP packet (RFC 5506) per stream.
        for ssrc in media {
            let n = rtp::write_pli(sender, ssrc, &mut self.scratch).ok_or(SendError::TooLarge)?;
            let n = srtp
                .protect_rtcp(&mut self.scratch, n)
                .map_err(|_| SendError::TooLarge)?;
            self.media_out
                .push(self.scratch.get(..n).unwrap_or_default());
        }
        Ok(())
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

    /// Move the ICE agent's events into ours, translating them.
    fn pump(&mut self, now: Instant) {
        if !self.relays.is_empty() {
            for ev in self.relays.pump(now, &mut self.ice) {
                self.push_event(ev);
            }
        }
        while let Some(ev) = self.ice.poll_event() {
            match ev {
                IceEvent::LocalCandidate(c) => {
                    let text = c.to_string();
                    let value = text.strip_prefix("candidate:").unwrap_or(&text).to_string();
                    let init = self.neg.local_candidate_init(
                        format!("candidate:{value}"),
                        &self.ice.local_credentials().ufrag,
                    );
                    self.local_candidates.push(value);
                    self.push_event(Event::IceCandidate(init));
                }
                IceEvent::GatheringStateChange(state) => {
                    if state == IceGatheringState::Complete && !self.gathering_complete {
                        self.gathering_complete = true;
                        let end = self.neg.local_candidate_init(
                            String::new(),
                            &self.ice.local_credentials().ufrag,
                        );
                        self.push_event(Event::IceCandidate(end));
                    }
                    if state != IceGatheringState::Complete {
                        self.gathering_complete = false;
                    }
                    if self.ice_gathering != state {
                        self.ice_gathering = state;
                        self.push_event(Event::IceGatheringStateChange(state));
                    }
                }
                IceEvent::ConnectionStateChange(state) => {
                    if self.ice_connection != state {
                        self.ice_connection = state;
                        self.push_event(Event::IceConnectionStateChange(state));
                    }
                    self.update_connection_state();
                }
                IceEvent::SelectedPairChange(pair) => {
                    self.relays.on_selected(now, pair);
                    self.maybe_start_dtls(now);
                }
                IceEvent::MdnsCandidate(c) => {
                    if let CandidateAddress::Mdns { hostname, .. } = &c.address {
                        let candidate = self.neg.remote_candidate_init(
                            c.to_string(),
                            self.ice.remote_credentials().map(|r| r.ufrag.clone()),
                        );
                        self.push_event(Event::UnresolvedCandidate {
                            hostname: hostname.clone(),
                            candidate,
                        });
                    }
                }
            }
        }
        self.pump_dtls(now);
        self.pump_data(now);
    }

    /// `connectionState` from the ICE and DTLS transports' states (W3C 4.4.3).
    fn update_connection_state(&mut self) {
        let ice = self.ice_connection;
        let dtls = self.dtls_state;
        let state = if ice == IceConnectionState::Closed {
            ConnectionState::Closed
        } else if ice == IceConnectionState::Failed || dtls == DtlsState::Failed {
            ConnectionState::Failed
        } else if ice == IceConnectionState::Disconnected {
            ConnectionState::Disconnected
        } else if ice == IceConnectionState::New && dtls == DtlsState::New {
            ConnectionState::New
        } else if matches!(
            ice,
            IceConnectionState::Connected | IceConnectionState::Completed
        ) && matches!(dtls, DtlsState::Connected | DtlsState::Closed)
        {
            // W3C: "connected" when every transport is connected, completed or closed
            // (a DTLS transport the peer closed counts as done, not as connecting).
            ConnectionState::Connected
        } else {
            ConnectionState::Connecting
        };
        if state != self.connection {
            self.connection = state;
            self.push_event(Event::ConnectionStateChange(state));
        }
    }
}

fn is_turn_url(url: &str) -> bool {
    crate::turn::ServerUrl::parse(url).is_ok_and(|u| u.scheme.is_turn())
        || url.to_ascii_lowercase().starts_with("turn")
}

/// The address of a `stun:` URL whose host is an IP literal (RFC 7064): `stun:1.2.3.4`,
/// `stun:1.2.3.4:3478`, `stun:[::1]:3478`. Host names and other schemes give `None`.
fn stun_url_address(url: &str) -> Option<SocketAddr> {
    crate::turn::ServerUrl::parse(url)
        .ok()
        .filter(|u| u.scheme == crate::turn::Scheme::Stun)
        .and_then(|u| u.socket_addr())
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

    #[test]
    fn stun_urls() {
        assert_eq!(
            stun_url_address("stun:10.0.0.1:3479"),
            "10.0.0.1:3479".parse().ok()
        );
        assert_eq!(
            stun_url_address("stun:10.0.0.1"),
            "10.0.0.1:3478".parse().ok()
        );
        assert_eq!(
            stun_url_address("stun:[::1]:5000"),
            "[::1]:5000".parse().ok()
        );
        assert_eq!(stun_url_address("stun:[::1]"), "[::1]:3478".parse().ok());
        assert_eq!(stun_url_address("stun:stun.l.google.com:19302"), None);
        assert_eq!(stun_url_address("turn:10.0.0.1"), None);
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
    use crate::sdp::Sdp;

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

    fn extension_id(uri: &str) -> u8 {
        let sdp = Sdp::parse(OFFER).expect("offer parses");
        let id = sdp.media[0]
            .extmaps
            .iter()
            .find(|x| x.uri == uri)
            .expect("offered")
            .id;
        u8::try_from(id).expect("one-byte id")
    }

    /// One SRTP packet of the offerer: VP8 (pt 96), with the given mid and rid extensions.
    fn packet(
        sender: &mut SrtpContext,
        ssrc: u32,
        seq: u16,
        mid: Option<&str>,
        rid: Option<&str>,
    ) -> Vec<u8> {
        let (mid_id, rid_id) = (extension_id(MID_URI), extension_id(RID_URI));
        let mut exts: Vec<(u8, &[u8])> = Vec::new();
        if let Some(m) = mid {
            exts.push((mid_id, m.as_bytes()));
        }
        if let Some(r) = rid {
            exts.push((rid_id, r.as_bytes()));
        }
        let mut buf = vec![0u8; 1500];
        let n = rtp::write_rtp(
            &RtpWrite {
                marker: false,
                payload_type: 96,
                sequence_number: seq,
                timestamp: u32::from(seq) * 3000,
                ssrc,
                extensions: &exts,
                payload: &seq.to_be_bytes(),
            },
            &mut buf,
        )
        .expect("write");
        let n = sender.protect_rtp(&mut buf, n).expect("protect");
        buf.truncate(n);
        buf
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

    #[test]
    fn simulcast_streams_demux_by_mid_rid_and_unsignalled_ssrc() {
        let (mut pc, now, _, events, mut sender) = answered();
        let track = events
            .iter()
            .find_map(|e| match e {
                Event::Track(t) => Some(t.transceiver),
                _ => None,
            })
            .expect("track");
        // Three SSRCs never signalled in the SDP: the first packet of each names mid and rid.
        let mut got = Vec::new();
        for (ssrc, rid) in [(0x1111, "q"), (0x2222, "h"), (0x3333, "f")] {
            let p = packet(&mut sender, ssrc, 100, Some("0"), Some(rid));
            got.extend(rtp_events(&deliver(&mut pc, now, &p)));
        }
        // Later packets carry no extensions (browsers stop once the stream is known): the
        // SSRC alone finds the transceiver and the rid it announced.
        for ssrc in [0x3333, 0x1111, 0x2222] {
            let p = packet(&mut sender, ssrc, 101, None, None);
            got.extend(rtp_events(&deliver(&mut pc, now, &p)));
        }
        let rid = |r: &str| Some(r.to_string());
        assert_eq!(
            got,
            vec![
                (track, rid("q"), 0x1111, 100),
                (track, rid("h"), 0x2222, 100),
                (track, rid("f"), 0x3333, 100),
                (track, rid("f"), 0x3333, 101),
                (track, rid("q"), 0x1111, 101),
                (track, rid("h"), 0x2222, 101),
            ]
        );
        // A new SSRC with a signalled rid but no mid is found by its rid.
        let p = packet(&mut sender, 0x4444, 7, None, Some("h"));
        assert_eq!(
            rtp_events(&deliver(&mut pc, now, &p)),
            vec![(track, rid("h"), 0x4444, 7)]
        );
        // A new SSRC naming a mid we do not have is dropped and counted, not guessed onto
        // the video transceiver by its payload type.
        let before = pc.stats().rtp_unmatched;
        let p = packet(&mut sender, 0x5555, 1, Some("9"), Some("q"));
        assert!(rtp_events(&deliver(&mut pc, now, &p)).is_empty());
        assert_eq!(pc.stats().rtp_unmatched, before + 1);
        // With neither mid nor rid nor a signalled ssrc, the payload type decides.
        let p = packet(&mut sender, 0x6666, 1, None, None);
        assert_eq!(
            rtp_events(&deliver(&mut pc, now, &p)),
            vec![(track, None, 0x6666, 1)]
        );
        assert_eq!(pc.stats().rtp_received, 8);
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
        let p = packet(&mut sender, 0x1111, 100, Some("0"), Some("q"));
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
            let p = packet(&mut sender, 0x1111, seq, mid, rid);
            assert!(
                rtp_events(&deliver(&mut pc, now, &p)).is_empty(),
                "seq {seq}"
            );
        }
        assert_eq!(pc.stats().rtp_unmatched, before + 2);
    }

    #[test]
    fn a_keyframe_request_reaches_every_simulcast_stream() {
        let (mut pc, now, _, events, mut sender) = answered();
        let track = events
            .iter()
            .find_map(|e| match e {
                Event::Track(t) => Some(t.transceiver),
                _ => None,
            })
            .expect("track");
        for (ssrc, rid) in [(0x1111, "q"), (0x2222, "h"), (0x3333, "f")] {
            let p = packet(&mut sender, ssrc, 100, Some("0"), Some(rid));
            deliver(&mut pc, now, &p);
        }
        let queued = pc.media_out.len();
        pc.request_keyframe(track).expect("pli");
        // The offerer's inbound context reads what the answerer protected.
        let material: Vec<u8> = (0..PROFILE.keying_material_len())
            .map(|i| (i * 7) as u8)
            .collect();
        let (_, mut offerer_in) =
            SrtpContext::pair_from_keying_material(PROFILE, &material, false).expect("keys");
        let mut asked: Vec<u32> = Vec::new();
        for sealed in pc.media_out.iter().skip(queued) {
            let mut b = sealed.clone();
            let n = b.len();
            let m = offerer_in.unprotect_rtcp(&mut b, n).expect("srtcp");
            asked.extend(rtp::keyframe_requests(&b[..m]));
        }
        assert_eq!(asked, vec![0x1111, 0x2222, 0x3333]);
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    /// Alice offers audio and video, bob answers; both keyed for SRTP as DTLS would.
    fn negotiated() -> (PeerConnection, SrtpContext) {
        let now = Instant::now();
        let config = |seed| Config {
            rng_seed: Some(seed),
            ..Default::default()
        };
        let mut alice = PeerConnection::new(config(21), now).expect("alice");
        let mut bob = PeerConnection::new(config(22), now).expect("bob");
        alice
            .add_track(MediaKind::Audio, vec!["s".into()])
            .expect("audio");
        alice
            .add_track(MediaKind::Video, vec!["s".into()])
            .expect("video");
        let offer = alice.create_offer(OfferOptions::default()).expect("offer");
        alice
            .set_local_description(now, offer.clone())
            .expect("local");
        bob.set_remote_description(now, offer).expect("remote");
        let answer = bob.create_answer().expect("answer");
        bob.set_local_description(now, answer.clone())
            .expect("local");
        alice.set_remote_description(now, answer).expect("remote");
        let profile = SrtpProfile::AeadAes128Gcm;
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| i as u8)
            .collect();
        alice.install_srtp_for_test(profile, &material, false);
        let (_, bob_in) =
            SrtpContext::pair_from_keying_material(profile, &material, true).expect("keys");
        (alice, bob_in)
    }

    #[test]
    fn send_rtp_sets_ssrc_payload_type_mid_and_transport_cc() {
        let (mut alice, mut bob_in) = negotiated();
        let mut sent = Vec::new();
        let ids: Vec<TransceiverId> = alice.transceivers().iter().map(|t| t.id).collect();
        for (i, id) in ids.iter().enumerate() {
            let packet = RtpPacket {
                payload_type: 127, // not negotiated: the first negotiated codec is used
                sequence_number: 500 + i as u16,
                timestamp: 9,
                marker: true,
                ssrc: 0xDEAD, // ignored: the sender's own SSRC is used
                payload: bytes::Bytes::from_static(b"media"),
            };
            alice.send_rtp(*id, &packet).expect("send");
            let mut b = alice.media_out.back().expect("queued").clone();
            let n = b.len();
            let m = bob_in.unprotect_rtp(&mut b, n).expect("srtp");
            b.truncate(m);
            sent.push((*id, b));
        }
        let mut twcc_seqs = Vec::new();
        for (id, plain) in &sent {
            let t = alice.transceiver(*id).expect("transceiver");
            let h = RtpHeader::parse(plain).expect("rtp");
            assert_eq!(h.ssrc(), t.sender_ssrc, "{:?}", t.kind);
            assert_ne!(h.ssrc(), 0xDEAD);
            assert_eq!(h.payload_type(), t.codecs[0].payload_type, "{:?}", t.kind);
            assert!(h.marker());
            assert_eq!(h.payload(), b"media");
            let ext = |uri: &str| {
                t.header_extensions
                    .iter()
                    .find(|(_, u)| u == uri)
                    .and_then(|(i, _)| u8::try_from(*i).ok())
                    .expect("negotiated")
            };
            assert_eq!(
                h.extension(ext(MID_URI)),
                t.mid.as_deref().map(str::as_bytes),
                "{:?}",
                t.kind
            );
            let twcc = h
                .extension(ext(ExtensionKind::TransportCc.uri()))
                .expect("transport-cc extension");
            twcc_seqs.push(u16::from_be_bytes([twcc[0], twcc[1]]));
        }
        // One transport-wide sequence across both tracks.
        assert_eq!(twcc_seqs, vec![twcc_seqs[0], twcc_seqs[0].wrapping_add(1)]);
        // A packet with a negotiated payload type keeps it.
        let video = alice
            .transceivers()
            .iter()
            .find(|t| t.kind == MediaKind::Video)
            .expect("video");
        let (id, pt) = (video.id, video.codecs.last().expect("codec").payload_type);
        let packet = RtpPacket {
            payload_type: pt,
            sequence_number: 600,
            timestamp: 1,
            marker: false,
            ssrc: 0,
            payload: bytes::Bytes::from_static(b"x"),
        };
        alice.send_rtp(id, &packet).expect("send");
        let mut b = alice.media_out.back().expect("queued").clone();
        let n = b.len();
        let m = bob_in.unprotect_rtp(&mut b, n).expect("srtp");
        assert_eq!(RtpHeader::parse(&b[..m]).expect("rtp").payload_type(), pt);
    }
}
