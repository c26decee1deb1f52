//! The SCTP association: one sans-IO state machine per DTLS connection.
//!
//! Inputs are whole SCTP packets ([`Association::handle_packet`], one per DTLS
//! application-data record), API calls ([`Association::send`], [`Association::reset_stream`],
//! [`Association::shutdown`], [`Association::abort`]) and time
//! ([`Association::handle_timeout`]). Outputs are whole packets
//! ([`Association::poll_transmit`], each to go out as one DTLS record), the next deadline
//! ([`Association::poll_timeout`]) and [`SctpEvent`]s ([`Association::poll_event`]).
//!
//! The states (RFC 9260 4, simplified to what one DTLS connection needs):
//! ```text
//!                     (any state) rcv ABORT / API abort: snd ABORT ──> TERMINATED
//!   ┌────────┐ API connect: snd INIT ┌────────────┐ rcv INIT ACK: snd COOKIE ECHO
//!   │ CLOSED │──────────────────────>│ COOKIE WAIT│────────────────┐
//!   └────────┘                       └────────────┘                v
//!    │  rcv INIT: snd INIT ACK (signed cookie, no state kept)  ┌───────────────┐
//!    │  rcv valid COOKIE ECHO: snd COOKIE ACK                  │ COOKIE ECHOED │
//!    v                                                         └───────────────┘
//!   ┌─────────────┐ <────────────────── rcv COOKIE ACK ────────────────┘
//!   │ ESTABLISHED │
//!   └─────────────┘
//!    │ API shutdown                      │ rcv SHUTDOWN
//!    v                                   v
//!   SHUTDOWN PENDING                    SHUTDOWN RECEIVED
//!    │ all acked: snd SHUTDOWN           │ all acked: snd SHUTDOWN ACK
//!    v                                   v
//!   SHUTDOWN SENT                       SHUTDOWN ACK SENT
//!    │ rcv SHUTDOWN ACK:                 │ rcv SHUTDOWN COMPLETE
//!    │ snd SHUTDOWN COMPLETE             │
//!    └──────────────> TERMINATED <───────┘
//! ```

mod config;
mod event;
mod handshake;
mod receiver;
mod reconfig;
mod rtt;
mod sender;
mod shutdown;
mod timer;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::rng::Rng;
use crate::sctp::wire::{
    parse_packet, Chunk, CommonHeader, ErrorCause, PacketWriter, WireError, COMMON_HEADER_LEN,
};
pub use config::{Reliability, SctpConfig, SctpRole};
pub use event::{AssociationError, AssociationState, CloseReason, SctpEvent, SctpStats, SendError};
pub use receiver::ReceivedMessage;
use receiver::{DataOutcome, Receiver};
use reconfig::StreamReconfig;
use rtt::RttEstimator;
use sender::Sender;
use timer::{Timer, TimerTable};

/// What the handshake agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub peer_tag: u32,
    pub peer_initial_tsn: u32,
    pub peer_rwnd: u32,
    pub outbound_streams: u16,
    pub forward_tsn: bool,
    pub interleaving: bool,
    pub reconfig: bool,
}

/// Most control chunks waiting to go out.
const MAX_CONTROL_QUEUE: usize = 32;

/// One SCTP association.
#[derive(Debug)]
pub struct Association {
    config: SctpConfig,
    role: SctpRole,
    state: AssociationState,
    epoch: Instant,
    rng: Rng,
    cookie_key: ring::hmac::Key,
    local_tag: u32,
    local_initial_tsn: u32,
    negotiated: Option<Negotiated>,
    /// The INIT or COOKIE ECHO being retransmitted during the handshake.
    handshake_chunk: Option<Chunk>,
    handshake_attempts: u32,
    control: VecDeque<(u32, Chunk)>,
    sender: Sender,
    receiver: Option<Receiver>,
    reconfig: StreamReconfig,
    timers: TimerTable,
    events: VecDeque<SctpEvent>,
    stats: SctpStats,
    error_count: u32,
    heartbeat_pending: Option<(u64, Instant)>,
    shutdown_chunk_due: bool,
    last_now: Instant,
}

impl Association {
    /// A new association. `rng` gives the verification tag and initial TSN; the cookie
    /// key comes from the operating system.
    pub fn new(
        config: SctpConfig,
        role: SctpRole,
        mut rng: Rng,
        now: Instant,
    ) -> Result<Self, AssociationError> {
        let mut key = [0u8; 32];
        rng.fill(&mut key);
        let cookie_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let local_tag = rng.next_u32().max(1);
        let local_initial_tsn = rng.next_u32();
        let rtt = RttEstimator::new(config.rto_initial, config.rto_min, config.rto_max);
        let sender = Sender::new(
            local_initial_tsn,
            config.mtu,
            config.send_buffer,
            config.max_message_size,
            rtt,
        );
        Ok(Association {
            role,
            state: AssociationState::Closed,
            epoch: now,
            rng,
            cookie_key,
            local_tag,
            local_initial_tsn,
            negotiated: None,
            handshake_chunk: None,
            handshake_attempts: 0,
            control: VecDeque::new(),
            sender,
            receiver: None,
            reconfig: StreamReconfig::new(local_initial_tsn),
            timers: TimerTable::default(),
            events: VecDeque::new(),
            stats: SctpStats::default(),
            error_count: 0,
            heartbeat_pending: None,
            shutdown_chunk_due: false,
            last_now: now,
            config,
        })
    }

    // ----- getters -----

    /// The current state.
    pub fn state(&self) -> AssociationState {
        self.state
    }

    /// The role given at creation.
    pub fn role(&self) -> SctpRole {
        self.role
    }

    /// Whether data can be sent and received.
    pub fn is_established(&self) -> bool {
        self.state == AssociationState::Established
    }

    /// Counters.
    pub fn stats(&self) -> SctpStats {
        self.stats
    }

    /// Unsent bytes queued on a stream.
    pub fn buffered_amount(&self, stream_id: u16) -> usize {
        self.sender.buffered_amount(stream_id)
    }

    /// Bytes queued or in flight on all streams.
    pub fn total_buffered(&self) -> usize {
        self.sender.total_buffered()
    }

    /// Bytes the receiver holds (fragments, messages not yet polled, and the bookkeeping
    /// around them), as charged against the receive buffer. Whatever the peer sends this
    /// stays under [`Association::max_received_bytes_held`].
    pub fn received_bytes_held(&self) -> usize {
        self.receiver.as_ref().map_or(0, Receiver::stored_bytes)
    }

    /// The most [`Association::received_bytes_held`] can reach: the receive buffer, the
    /// slack kept for chunks that fill holes (another buffer's worth, at least 64 KiB),
    /// and one more chunk's charge.
    pub fn max_received_bytes_held(&self) -> usize {
        self.config.receive_buffer
            + receiver::hole_fill_slack(self.config.receive_buffer)
            + receiver::MAX_CHUNK_CHARGE
    }

    /// What the receiver keeps charged for the ordering state of streams seen so far.
    #[cfg(test)]
    pub(crate) fn received_stream_state_bytes(&self) -> usize {
        self.receiver
            .as_ref()
            .map_or(0, Receiver::stream_state_bytes)
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.sender.rto()
    }

    /// The smoothed RTT, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.sender.rtt().srtt()
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.sender.cwnd()
    }

    /// Whether the peer supports RE-CONFIG stream resets (known once the handshake
    /// is done; without them a stream cannot be closed on its own).
    pub fn supports_stream_reset(&self) -> bool {
        self.negotiated.is_some_and(|n| n.reconfig)
    }

    /// How many outgoing streams the peer accepts, once the handshake is done.
    pub fn outbound_streams(&self) -> Option<u16> {
        self.negotiated.map(|n| n.outbound_streams)
    }

    /// Whether I-DATA was negotiated.
    pub fn interleaving(&self) -> bool {
        self.negotiated.is_some_and(|n| n.interleaving)
    }

    /// Largest message we accept: what our SDP `a=max-message-size` should say.
    pub fn max_message_size(&self) -> usize {
        self.config.max_message_size
    }

    // ----- API mutators -----

    /// Client role: start the handshake (send INIT). Harmless otherwise.
    pub fn connect(&mut self, now: Instant) {
        if self.state == AssociationState::Closed && self.role == SctpRole::Client {
            self.send_init(now);
        }
    }

    /// Queue a message on a stream.
    pub fn send(
        &mut self,
        now: Instant,
        stream_id: u16,
        ppid: u32,
        data: Bytes,
        unordered: bool,
        reliability: Reliability,
    ) -> Result<(), SendError> {
        match self.state {
            AssociationState::Closed
            | AssociationState::CookieWait
            | AssociationState::CookieEchoed
            | AssociationState::Established => {}
            _ => return Err(SendError::NotOpen),
        }
        if self.reconfig.is_resetting(stream_id)
            || self
                .negotiated
                .is_some_and(|n| stream_id >= n.outbound_streams)
        {
            return Err(SendError::InvalidStream);
        }
        self.sender
            .enqueue(now, stream_id, ppid, data, unordered, reliability)
    }

    /// Set the threshold under which [`SctpEvent::BufferedAmountLow`] fires for a stream.
    pub fn set_buffered_amount_low_threshold(&mut self, stream_id: u16, threshold: usize) {
        self.sender.set_low_threshold(stream_id, threshold);
    }

    /// Lower or raise the largest message we send (the peer's `max-message-size`).
    pub fn set_max_send_message_size(&mut self, size: usize) {
        self.sender.set_max_message_size(size);
    }

    /// Reset an outgoing stream (RFC 6525) once its queued data is sent. The peer is
    /// expected to reset its side too; [`SctpEvent::OutgoingStreamReset`] follows.
    pub fn reset_stream(&mut self, stream_id: u16) {
        self.reconfig.request_reset(stream_id);
    }

    /// Graceful shutdown once everything queued is acknowledged.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            AssociationState::Established => {
                self.state = AssociationState::ShutdownPending;
                self.advance_shutdown(now);
            }
            AssociationState::Closed
            | AssociationState::CookieWait
            | AssociationState::CookieEchoed => self.terminate(CloseReason::Shutdown),
            _ => {}
        }
    }

    /// Abort at once: queue ABORT and end.
    pub fn abort(&mut self) {
        if self.state == AssociationState::Terminated {
            return;
        }
        self.send_abort(ErrorCause::USER_ABORT);
        self.terminate(CloseReason::Aborted);
    }

    // ----- inputs -----

    /// Handle one received SCTP packet. Bad packets are dropped and counted.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.handle_packet_bytes(now, Bytes::copy_from_slice(packet));
    }

    /// [`Association::handle_packet`] for a packet already in `Bytes`: user data is
    /// sliced out of it without a copy. The receive buffer charges a stored slice as
    /// if it held `packet.len()` bytes alive (or copies a small one out), so `packet`
    /// should not be a slice of a much larger buffer.
    pub fn handle_packet_bytes(&mut self, now: Instant, packet: Bytes) {
        self.advance_clock(now);
        self.stats.packets_received += 1;
        let (header, chunks) = match parse_packet(&packet) {
            Ok(p) => p,
            Err(WireError::BadChecksum) => {
                self.stats.bad_checksum += 1;
                return;
            }
            Err(_) => {
                self.stats.malformed_chunks += 1;
                return;
            }
        };
        if header.destination_port != self.config.local_port
            || header.source_port != self.config.remote_port
        {
            self.stats.wrong_port += 1;
            return;
        }
        if self.state == AssociationState::Terminated {
            self.stats.out_of_the_blue += 1;
            return;
        }
        let mut had_data = false;
        let mut first = true;
        for chunk in chunks {
            let chunk = match chunk {
                Ok(c) => c,
                Err(_) => {
                    self.stats.malformed_chunks += 1;
                    break;
                }
            };
            if first && !self.tag_ok(&header, &chunk) {
                self.stats.wrong_tag += 1;
                return;
            }
            first = false;
            if matches!(chunk, Chunk::Init(_)) && header.verification_tag != 0 {
                self.stats.wrong_tag += 1;
                return;
            }
            had_data |= matches!(chunk, Chunk::Data(_) | Chunk::IData(_));
            if !self.handle_chunk(now, chunk, packet.len()) {
                break;
            }
            self.collect_messages();
            if self.state == AssociationState::Terminated {
                return;
            }
        }
        if had_data {
            self.after_data_packet(now);
        }
        self.collect_messages();
        self.advance_shutdown(now);
    }

    /// Fire every timer that is due. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        // Each due timer fires once per call, even one that re-arms itself at `now`
        // (a zero RTO bound in the config must not spin here).
        for timer in self.timers.take_all_expired(now) {
            match timer {
                Timer::Init | Timer::Cookie => self.retransmit_handshake(now),
                Timer::Retransmit => self.on_retransmission_timeout(now),
                Timer::DelayedAck => {
                    if let Some(r) = &mut self.receiver {
                        r.request_ack();
                    }
                }
                Timer::Heartbeat => self.on_heartbeat_timer(now),
                Timer::Shutdown => self.on_shutdown_timer(now),
                Timer::Reconfig => self.reconfig.retransmit_due(),
            }
            if self.state == AssociationState::Terminated {
                self.timers.stop_all();
                return;
            }
        }
    }

    // ----- outputs -----

    /// The next deadline, if any timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SctpEvent> {
        if self.events.is_empty() {
            // Sending lowers buffered amounts outside any input.
            while let Some(stream) = self.sender.poll_buffered_low() {
                self.events.push_back(SctpEvent::BufferedAmountLow(stream));
            }
        }
        let e = self.events.pop_front()?;
        if let (SctpEvent::Message(m), Some(r)) = (&e, &mut self.receiver) {
            r.release(m.data.len());
            if r.ack_due() && !self.timers.is_running(Timer::DelayedAck) {
                // The window grew enough to announce: make it due now, so an owner that
                // only polls events between inputs still sends the update at once.
                self.timers.set(Timer::DelayedAck, self.last_now);
            }
        }
        Some(e)
    }

    /// Write the next packet into `buf` and return its length. The packet is at most
    /// `min(buf.len(), mtu)` bytes; call until `None`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.advance_clock(now);
        let budget = buf.len().min(self.config.mtu);
        let buf = buf.get_mut(..budget)?;
        self.queue_reconfig_request(now);
        while let Some(&(tag, _)) = self.control.front() {
            let queued = self.control.len();
            if let Some(n) = self.write_control_packet(tag, buf) {
                return Some(n);
            }
            if self.control.len() == queued {
                return None; // The buffer is too small for now; nothing was lost.
            }
            // Chunks too large for any packet were dropped: try what follows.
        }
        if !self.can_send_data() {
            return None;
        }
        let n = self.write_data_packet(now, buf)?;
        self.stats.packets_sent += 1;
        Some(n)
    }

    // ----- internals -----

    fn advance_clock(&mut self, now: Instant) {
        debug_assert!(now >= self.last_now, "time went backwards");
        self.last_now = self.last_now.max(now);
    }

    fn header(&self, verification_tag: u32) -> CommonHeader {
        CommonHeader {
            source_port: self.config.local_port,
            destination_port: self.config.remote_port,
            verification_tag,
        }
    }

    fn peer_tag(&self) -> u32 {
        self.negotiated.map_or(0, |n| n.peer_tag)
    }

    /// Verification tag rules of RFC 9260 8.5 and 8.5.1.
    fn tag_ok(&self, header: &CommonHeader, first: &Chunk) -> bool {
        match first {
            Chunk::Init(_) => header.verification_tag == 0,
            Chunk::Abort {
                reflected_tag: true,
                ..
            }
            | Chunk::ShutdownComplete {
                reflected_tag: true,
            } => self.negotiated.is_some() && header.verification_tag == self.peer_tag(),
            _ => header.verification_tag == self.local_tag,
        }
    }

    fn push_control(&mut self, tag: u32, chunk: Chunk) {
        if self.control.len() >= MAX_CONTROL_QUEUE {
            self.stats.control_overflow += 1;
            return;
        }
        self.control.push_back((tag, chunk));
    }

    fn send_abort(&mut self, cause: u16) {
        let abort = Chunk::Abort {
            reflected_tag: false,
            causes: vec![ErrorCause {
                code: cause,
                info: Bytes::new(),
            }],
        };
        // An ABORT goes before anything else still queued.
        self.control.clear();
        let tag = self.peer_tag();
        self.control.push_back((tag, abort));
    }

    fn terminate(&mut self, reason: CloseReason) {
        if self.state == AssociationState::Terminated {
            return;
        }
        self.state = AssociationState::Terminated;
        self.timers.stop_all();
        self.events.push_back(SctpEvent::Closed(reason));
    }

    /// Returns false when the rest of the packet must be skipped. `packet_len` is the
    /// size of the buffer the chunk's data is sliced from.
    fn handle_chunk(&mut self, now: Instant, chunk: Chunk, packet_len: usize) -> bool {
        use AssociationState as S;
        match chunk {
            Chunk::Init(init) => self.handle_init(now, init),
            Chunk::InitAck(init) => self.handle_init_ack(now, init),
            Chunk::CookieEcho(cookie) => self.handle_cookie_echo(now, &cookie),
            Chunk::CookieAck => self.handle_cookie_ack(now),
            Chunk::Data(_) | Chunk::IData(_) if self.negotiated.is_none() => {
                self.stats.out_of_the_blue += 1;
                return false;
            }
            Chunk::Data(d) => self.handle_data(now, d, false, packet_len),
            Chunk::IData(d) => self.handle_data(now, d, true, packet_len),
            Chunk::Sack(sack) => {
                if matches!(self.state, S::Closed | S::CookieWait | S::CookieEchoed) {
                    return true;
                }
                let outcome = self.sender.handle_sack(now, &sack, &mut self.stats);
                // A SACK shows the peer is alive, even one that only repeats a zero
                // window while it drops our probes.
                self.error_count = 0;
                if outcome.cumulative_advanced {
                    self.restart_retransmission_timer(now);
                }
            }
            Chunk::Heartbeat(info) => {
                if self.negotiated.is_some() {
                    let tag = self.peer_tag();
                    self.push_control(tag, Chunk::HeartbeatAck(info));
                }
            }
            Chunk::HeartbeatAck(info) => self.handle_heartbeat_ack(now, &info),
            Chunk::Abort { .. } => {
                self.terminate(CloseReason::AbortedByPeer);
                return false;
            }
            Chunk::Shutdown { cumulative_tsn_ack } => self.handle_shutdown(now, cumulative_tsn_ack),
            Chunk::ShutdownAck => self.handle_shutdown_ack(),
            Chunk::ShutdownComplete { .. } => {
                if self.state == S::ShutdownAckSent {
                    self.terminate(CloseReason::Shutdown);
                }
            }
            Chunk::Error(causes) => {
                // Our cookie went stale on the way: start over (RFC 9260 5.2.6).
                let stale = causes.iter().any(|c| c.code == ErrorCause::STALE_COOKIE);
                if stale && self.state == S::CookieEchoed {
                    self.timers.stop(Timer::Cookie);
                    self.send_init(now);
                }
            }
            Chunk::ForwardTsn {
                new_cumulative_tsn,
                streams,
            } => {
                let streams: Vec<(u16, bool, u32)> = streams
                    .iter()
                    .map(|s| (s.stream_id, false, u32::from(s.ssn)))
                    .collect();
                self.handle_forward_tsn(now, new_cumulative_tsn, &streams, false);
            }
            Chunk::IForwardTsn {
                new_cumulative_tsn,
                streams,
            } => {
                let streams: Vec<(u16, bool, u32)> = streams
                    .iter()
                    .map(|s| (s.stream_id, s.unordered, s.message_id))
                    .collect();
                self.handle_forward_tsn(now, new_cumulative_tsn, &streams, true);
            }
            Chunk::ReConfig(params) => self.handle_reconfig(now, params),
            Chunk::Unknown {
                chunk_type,
                flags,
                value,
            } => return self.handle_unknown_chunk(chunk_type, flags, &value),
        }
        true
    }

    fn handle_unknown_chunk(&mut self, chunk_type: u8, flags: u8, value: &Bytes) -> bool {
        self.stats.unknown_chunks += 1;
        if chunk_type & 0x40 != 0 && self.negotiated.is_some() {
            let mut info = Vec::with_capacity(4 + value.len().min(64));
            info.extend_from_slice(&[chunk_type, flags]);
            info.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
            info.extend_from_slice(value.get(..value.len().min(64)).unwrap_or(&[]));
            let tag = self.peer_tag();
            self.push_control(
                tag,
                Chunk::Error(vec![ErrorCause {
                    code: ErrorCause::UNRECOGNIZED_CHUNK,
                    info: Bytes::from(info),
                }]),
            );
        }
        // High bit clear: skip the rest of the packet.
        chunk_type & 0x80 != 0
    }

    fn handle_data(
        &mut self,
        now: Instant,
        d: crate::sctp::wire::DataChunk,
        idata: bool,
        packet_len: usize,
    ) {
        use AssociationState as S;
        if !matches!(
            self.state,
            S::Established | S::ShutdownPending | S::ShutdownSent
        ) {
            return;
        }
        if idata != self.interleaving() {
            // DATA where I-DATA was negotiated or the reverse: a protocol violation.
            self.stats.malformed_chunks += 1;
            return;
        }
        self.stats.data_chunks_received += 1;
        let Some(receiver) = &mut self.receiver else {
            return;
        };
        match receiver.receive_data(d, idata, packet_len) {
            DataOutcome::Accepted => {}
            DataOutcome::Duplicate => self.stats.duplicate_data += 1,
            DataOutcome::Dropped => self.stats.data_dropped_no_room += 1,
            DataOutcome::Oversized => {
                self.send_abort(ErrorCause::PROTOCOL_VIOLATION);
                self.terminate(CloseReason::Aborted);
                return;
            }
        }
        self.perform_deferred_reset(now);
    }

    fn handle_forward_tsn(
        &mut self,
        now: Instant,
        new_cumulative_tsn: u32,
        streams: &[(u16, bool, u32)],
        interleaved: bool,
    ) {
        let Some(n) = self.negotiated else {
            return;
        };
        if !n.forward_tsn || interleaved != n.interleaving {
            self.stats.malformed_chunks += 1;
            return;
        }
        if let Some(r) = &mut self.receiver {
            r.forward_tsn(new_cumulative_tsn, streams);
        }
        self.perform_deferred_reset(now);
    }

    fn after_data_packet(&mut self, now: Instant) {
        let Some(r) = &mut self.receiver else {
            return;
        };
        if !r.packet_with_data() && !self.timers.is_running(Timer::DelayedAck) {
            self.timers
                .set(Timer::DelayedAck, now + self.config.delayed_ack);
        }
    }

    /// Move whole messages from the receiver into the event queue, in order.
    fn collect_messages(&mut self) {
        if let Some(r) = &mut self.receiver {
            while let Some(m) = r.next_ready() {
                self.events.push_back(SctpEvent::Message(m));
            }
        }
        while let Some(stream) = self.sender.poll_buffered_low() {
            self.events.push_back(SctpEvent::BufferedAmountLow(stream));
        }
    }

    fn can_send_data(&self) -> bool {
        use AssociationState as S;
        matches!(
            self.state,
            S::Established | S::ShutdownPending | S::ShutdownReceived | S::ShutdownSent
        )
    }

    fn write_control_packet(&mut self, tag: u32, buf: &mut [u8]) -> Option<usize> {
        let header = self.header(tag);
        let mut w = PacketWriter::new(buf, header)?;
        while let Some((t, chunk)) = self.control.front() {
            if *t != tag {
                break;
            }
            let alone = matches!(chunk, Chunk::Init(_));
            if alone && !w.is_empty() {
                break;
            }
            if !w.push(chunk) {
                let never_fits = crate::sctp::wire::padded(chunk.encoded_len())
                    > self.config.mtu.saturating_sub(COMMON_HEADER_LEN);
                if w.is_empty() && never_fits {
                    // Can never fit: drop it rather than stall.
                    self.control.pop_front();
                    self.stats.control_overflow += 1;
                    continue;
                }
                break;
            }
            self.control.pop_front();
            if alone {
                break;
            }
        }
        if w.is_empty() {
            return None;
        }
        self.stats.packets_sent += 1;
        Some(w.finish())
    }

    fn write_data_packet(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let header = self.header(self.peer_tag());
        let mut w = PacketWriter::new(buf, header)?;
        let bundling = self.sender.wants_to_send();
        if let Some(r) = &mut self.receiver {
            // A SACK goes at once when due, and rides along whenever data goes anyway.
            if r.ack_due() || (bundling && r.ack_pending()) {
                let sack = Chunk::Sack(r.build_sack(w.remaining()));
                w.push(&sack);
                self.timers.stop(Timer::DelayedAck);
            }
        }
        if let Some(fwd) = self.sender.forward_tsn() {
            if w.push(&fwd) {
                self.stats.forward_tsns_sent += 1;
            }
        }
        let mut sent_data = false;
        while let Some(chunk) = self.sender.next_retransmission(now, w.remaining()) {
            w.push(&chunk);
            sent_data = true;
        }
        if self.state != AssociationState::ShutdownReceived
            && self.state != AssociationState::ShutdownSent
        {
            while let Some(chunk) = self.sender.next_new_data(now, w.remaining()) {
                w.push(&chunk);
                sent_data = true;
            }
        }
        if sent_data {
            // Data carries the latest SACK when one is pending anyway.
            if !self.timers.is_running(Timer::Retransmit) {
                self.timers.set(Timer::Retransmit, now + self.sender.rto());
            }
        }
        if w.is_empty() {
            return None;
        }
        Some(w.finish())
    }

    fn restart_retransmission_timer(&mut self, now: Instant) {
        if self.sender.has_in_flight() {
            self.timers.set(Timer::Retransmit, now + self.sender.rto());
        } else {
            self.timers.stop(Timer::Retransmit);
        }
    }

    fn on_retransmission_timeout(&mut self, now: Instant) {
        if !self.sender.has_in_flight() {
            return;
        }
        self.error_count += 1;
        if self.error_count > self.config.max_retransmits {
            self.send_abort(ErrorCause::PROTOCOL_VIOLATION);
            self.terminate(CloseReason::Timeout);
            return;
        }
        self.sender
            .handle_retransmission_timeout(now, &mut self.stats);
        self.collect_messages();
        self.timers.set(Timer::Retransmit, now + self.sender.rto());
    }

    fn arm_heartbeat(&mut self, now: Instant) {
        let at = now + self.config.heartbeat_interval + self.sender.rto();
        self.timers.set(Timer::Heartbeat, at);
    }

    fn on_heartbeat_timer(&mut self, now: Instant) {
        if !matches!(self.state, AssociationState::Established) {
            return;
        }
        self.arm_heartbeat(now);
        if self.sender.has_in_flight() {
            return; // T3-rtx watches the path while data is in flight.
        }
        if self.heartbeat_pending.is_some() {
            self.error_count += 1;
            if self.error_count > self.config.max_retransmits {
                self.send_abort(ErrorCause::PROTOCOL_VIOLATION);
                self.terminate(CloseReason::Timeout);
                return;
            }
        }
        let nonce = self.rng.next_u64();
        self.heartbeat_pending = Some((nonce, now));
        let tag = self.peer_tag();
        self.push_control(
            tag,
            Chunk::Heartbeat(Bytes::copy_from_slice(&nonce.to_be_bytes())),
        );
    }

    fn handle_heartbeat_ack(&mut self, now: Instant, info: &[u8]) {
        let Some((nonce, sent)) = self.heartbeat_pending else {
            return;
        };
        if info == nonce.to_be_bytes() {
            self.heartbeat_pending = None;
            self.error_count = 0;
            self.sender
                .rtt_mut()
                .sample(now.saturating_duration_since(sent));
        }
    }
}
