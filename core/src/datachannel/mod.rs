//! WebRTC data channels (RFC 8831) over our SCTP association, opened with DCEP
//! (RFC 8832) or negotiated out of band.
//!
//! [`DataChannels`] is what a PeerConnection owns, one per connection. It is sans-IO
//! like everything in the core:
//! - the PeerConnection hands it each decrypted DTLS application-data record with
//!   [`DataChannels::handle_packet`] and sends each packet from
//!   [`DataChannels::poll_transmit`] as one DTLS application-data record;
//! - once DTLS is up it calls [`DataChannels::start`] with the DTLS role and the peer's
//!   SDP `a=sctp-port` and `a=max-message-size`;
//! - it drives [`DataChannels::poll_timeout`] / [`DataChannels::handle_timeout`] and
//!   drains [`DataChannels::poll_event`] after every input.
//!
//! Events are pulled from the association only as [`DataChannels::poll_event`] is
//! called, so an application that stops reading stops acknowledging window: the peer
//! is held back and memory stays bounded.
//!
//! ```
//! use std::time::Instant;
//! use sansrtc::datachannel::{DataChannelEvent, DataChannelInit, DataChannels, RemoteSctpParams};
//! use sansrtc::dtls::DtlsRole;
//! use sansrtc::rng::Rng;
//! use sansrtc::sctp::SctpConfig;
//!
//! let now = Instant::now();
//! let mut a = DataChannels::new(SctpConfig::default(), Rng::from_seed(1), now);
//! let mut b = DataChannels::new(SctpConfig::default(), Rng::from_seed(2), now);
//! let chat = a.create_data_channel(now, "chat", DataChannelInit::default()).unwrap();
//! // DTLS is up: the PeerConnection knows its role and the peer's SDP values.
//! a.start(now, DtlsRole::Client, RemoteSctpParams::default()).unwrap();
//! b.start(now, DtlsRole::Server, RemoteSctpParams::default()).unwrap();
//! let mut buf = [0u8; 1500];
//! let mut received = Vec::new();
//! for _ in 0..10 {
//!     // Each packet is one DTLS application-data record each way.
//!     while let Some(n) = a.poll_transmit(now, &mut buf) { b.handle_packet(now, &buf[..n]); }
//!     while let Some(n) = b.poll_transmit(now, &mut buf) { a.handle_packet(now, &buf[..n]); }
//!     while let Some(e) = a.poll_event() {
//!         if e == DataChannelEvent::DataChannelOpen(chat) {
//!             a.send_text(now, chat, "hello").unwrap();
//!         }
//!     }
//!     while let Some(e) = b.poll_event() {
//!         if let DataChannelEvent::DataChannelMessage { data, binary: false, .. } = e {
//!             received.push(data);
//!         }
//!     }
//! }
//! assert_eq!(received, [&b"hello"[..]]);
//! ```
//!
//! Stream ids follow RFC 8832 6: the DTLS client uses even ids, the server odd ones.
//! Closing a channel resets its outgoing stream; the peer answers by resetting its own
//! (RFC 8831 6.7), and the channel is closed when both directions are reset.
//!
//! What the peer can make us hold is bounded by [`DataChannelLimits`]: a DCEP OPEN
//! beyond the channel cap, or with a label or protocol over its length cap, is refused
//! by resetting the stream (RFC 8832 6: the receiver closes a channel it cannot open)
//! and counted; bytes received and not yet taken by the application, over all channels,
//! stay under [`DataChannels::max_received_bytes_held`].

mod channel;
pub mod dcep;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use channel::Channel;
pub use channel::{ChannelId, DataChannelInfo, DataChannelInit, DataChannelState};
use dcep::{ppid, ChannelReliability, DcepMessage};
pub use dcep::{ChannelReliability as DataChannelReliability, DataChannelOpen};

use crate::dtls::DtlsRole;
use crate::rng::Rng;
use crate::sctp::{
    Association, CloseReason, Reliability, SctpConfig, SctpEvent, SctpRole, SendError,
};

/// Something the application should know about its data channels.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataChannelEvent {
    /// The SCTP association is up.
    Connected,
    /// The peer opened a channel (W3C `ondatachannel`); `DataChannelOpen` follows.
    DataChannel {
        /// The new channel.
        channel: ChannelId,
        /// Its label.
        label: String,
        /// Its sub-protocol.
        protocol: String,
    },
    /// A channel is open.
    DataChannelOpen(ChannelId),
    /// A message arrived.
    DataChannelMessage {
        /// On this channel.
        channel: ChannelId,
        /// The message (empty for an empty message).
        data: Bytes,
        /// Binary (PPID 53/57) rather than text (51/56).
        binary: bool,
    },
    /// A channel closed; its id is no longer valid.
    DataChannelClose(ChannelId),
    /// A channel's buffered amount fell to its low threshold.
    BufferedAmountLow(ChannelId),
    /// The association ended; every channel closed before this event.
    Closed(CloseReason),
}

/// Why a data channel call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataChannelError {
    /// No such channel (never existed, or closed).
    #[error("no such data channel")]
    NoSuchChannel,
    /// The channel is not open.
    #[error("data channel is not open")]
    NotOpen,
    /// Both `max_retransmits` and `max_packet_life_time`, or `negotiated` without `id`.
    #[error("invalid data channel parameters")]
    InvalidParameters,
    /// Label or protocol longer than 65535 bytes.
    #[error("label or protocol too long")]
    TooLong,
    /// The requested stream id is taken.
    #[error("stream id in use")]
    IdInUse,
    /// No free stream id of our parity.
    #[error("no free stream id")]
    NoFreeStreamId,
    /// Larger than the peer's max-message-size.
    #[error("message larger than the remote max-message-size")]
    MessageTooLarge,
    /// The send buffer is full: wait for `BufferedAmountLow`.
    #[error("send buffer full")]
    BufferFull,
    /// The association refused the message.
    #[error("sctp: {0}")]
    Sctp(SendError),
    /// The association could not be created (no OS randomness for the cookie key).
    #[error("randomness unavailable")]
    Randomness,
}

/// Counters of messages that could not be delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataChannelStats {
    /// Messages on a stream with no channel.
    pub unknown_stream_messages: u64,
    /// DCEP messages that did not parse or broke a rule.
    pub bad_dcep_messages: u64,
    /// Messages with a PPID that is not WebRTC's.
    pub unknown_ppid_messages: u64,
    /// Deprecated partial messages beyond the maximum message size (one channel's, or
    /// all channels' together), dropped.
    pub oversized_partial_messages: u64,
    /// DCEP OPENs refused (stream reset): beyond the channel cap, or a label or protocol
    /// over its length cap.
    pub refused_channel_opens: u64,
}

/// What a peer may make us hold: the channels it opens, their names, and the bytes
/// received for the application. Part of the PeerConnection's `Config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelLimits {
    /// Most channels at once, ours and the peer's; a DCEP OPEN beyond is refused.
    pub max_channels: usize,
    /// Longest label, in bytes, a peer's DCEP OPEN may carry.
    pub max_label_len: usize,
    /// Longest sub-protocol, in bytes, a peer's DCEP OPEN may carry.
    pub max_protocol_len: usize,
    /// The SCTP receive buffer: messages being reassembled, waiting for order or for the
    /// application, and their bookkeeping. The advertised window is what is left, so a
    /// peer that sends faster than the application reads is held back. The PeerConnection
    /// hands messages on to its event queue up to as many bytes again.
    pub receive_buffer: usize,
    /// With I-DATA, how many bytes of fragmented messages we start sending at once
    /// (`SctpConfig::interleaved_message_budget`): `None`, half the window the peer
    /// advertised, so the peer can always finish the messages we interleave. Larger
    /// values can stall a peer with a bounded buffer (ours included).
    pub interleaved_send_budget: Option<usize>,
}

impl Default for DataChannelLimits {
    fn default() -> Self {
        DataChannelLimits {
            max_channels: 1024,
            max_label_len: 1024,
            max_protocol_len: 1024,
            receive_buffer: 1024 * 1024,
            interleaved_send_budget: None,
        }
    }
}

/// What the PeerConnection learned from the remote SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSctpParams {
    /// The peer's `a=sctp-port` (5000 if absent).
    pub port: u16,
    /// The peer's `a=max-message-size` (65536 if absent per RFC 8841; 0 means no limit).
    pub max_message_size: usize,
}

impl Default for RemoteSctpParams {
    fn default() -> Self {
        RemoteSctpParams {
            port: 5000,
            max_message_size: 65536,
        }
    }
}

/// All data channels of one connection, and the SCTP association under them.
#[derive(Debug)]
pub struct DataChannels {
    config: SctpConfig,
    limits: DataChannelLimits,
    /// Capacity of every channel's buffer of deprecated partial messages, together.
    partial_bytes: usize,
    /// Bytes of messages the owner took with `poll_event` and holds for its
    /// application (see `DataChannels::hold_for_owner`).
    held_by_owner: usize,
    rng: Rng,
    role: Option<DtlsRole>,
    association: Option<Association>,
    channels: HashMap<ChannelId, Channel>,
    by_stream: HashMap<u16, ChannelId>,
    next_channel: u64,
    events: VecDeque<DataChannelEvent>,
    remote_max_message_size: usize,
    stats: DataChannelStats,
    last_now: Instant,
}

impl DataChannels {
    /// Channels for a connection that has not started yet. `config` gives our port,
    /// buffers and timers; the remote port comes with [`DataChannels::start`]. The
    /// limits are [`DataChannelLimits`]'s defaults, except the receive buffer, which
    /// `config` gives.
    pub fn new(config: SctpConfig, rng: Rng, now: Instant) -> Self {
        let limits = DataChannelLimits {
            receive_buffer: config.receive_buffer,
            interleaved_send_budget: config.interleaved_message_budget,
            ..DataChannelLimits::default()
        };
        Self::with_limits(config, limits, rng, now)
    }

    /// [`DataChannels::new`] with explicit limits; `limits.receive_buffer` replaces
    /// `config.receive_buffer`.
    pub fn with_limits(
        mut config: SctpConfig,
        limits: DataChannelLimits,
        rng: Rng,
        now: Instant,
    ) -> Self {
        config.receive_buffer = limits.receive_buffer;
        config.interleaved_message_budget = limits.interleaved_send_budget;
        DataChannels {
            remote_max_message_size: config.max_message_size,
            config,
            limits,
            partial_bytes: 0,
            held_by_owner: 0,
            rng,
            role: None,
            association: None,
            channels: HashMap::new(),
            by_stream: HashMap::new(),
            next_channel: 0,
            events: VecDeque::new(),
            stats: DataChannelStats::default(),
            last_now: now,
        }
    }

    // ----- getters -----

    /// What a channel is, if it exists.
    pub fn channel(&self, id: ChannelId) -> Option<DataChannelInfo> {
        self.channels.get(&id).map(Channel::info)
    }

    /// Ids of all channels that exist.
    pub fn channel_ids(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.channels.keys().copied()
    }

    /// Unsent bytes queued on a channel (the W3C `bufferedAmount`).
    pub fn buffered_amount(&self, id: ChannelId) -> usize {
        let stream = self.channels.get(&id).and_then(|c| c.stream_id);
        match (stream, &self.association) {
            (Some(s), Some(a)) => a.buffered_amount(s),
            _ => 0,
        }
    }

    /// The association, once started (state, stats, RTT).
    pub fn association(&self) -> Option<&Association> {
        self.association.as_ref()
    }

    /// Our SCTP settings: the local port and maximum message size go in our SDP
    /// (`a=sctp-port`, `a=max-message-size`).
    pub fn config(&self) -> &SctpConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> DataChannelStats {
        self.stats
    }

    /// The limits in force.
    pub fn limits(&self) -> &DataChannelLimits {
        &self.limits
    }

    /// How many channels exist (open, opening or closing), ours and the peer's.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Bytes received and held for the application over all channels: the SCTP
    /// receiver's (as charged, bookkeeping included), deprecated partial messages, and
    /// messages the owning PeerConnection took and holds in its event queue.
    pub fn received_bytes_held(&self) -> usize {
        let sctp = self
            .association
            .as_ref()
            .map_or(0, Association::received_bytes_held);
        sctp + self.partial_bytes + self.held_by_owner
    }

    /// The most [`DataChannels::received_bytes_held`] can reach, whatever the peer
    /// sends: the SCTP receiver's bound, one maximum message size of partial messages,
    /// and the owner's budget (the receive buffer) plus the one message that can cross it.
    pub fn max_received_bytes_held(&self) -> usize {
        let sctp = self.association.as_ref().map_or(
            self.config.receive_buffer,
            Association::max_received_bytes_held,
        );
        // Partial messages grow in a buffer that may double its capacity.
        sctp + 2 * self.partial_budget() + self.limits.receive_buffer + self.config.max_message_size
    }

    /// An owner that queues messages for its application before handing them on (the
    /// PeerConnection's event queue) reports each one it took with `poll_event` here...
    pub(crate) fn hold_for_owner(&mut self, len: usize) {
        self.held_by_owner += len;
    }

    /// ... and here once its application took it.
    pub(crate) fn release_from_owner(&mut self, len: usize) {
        self.held_by_owner = self.held_by_owner.saturating_sub(len);
    }

    /// Whether the owner may take more events: while it holds less than the receive
    /// buffer. Beyond, messages stay in the SCTP receiver, where they hold the peer back.
    pub(crate) fn owner_has_room(&self) -> bool {
        self.held_by_owner < self.limits.receive_buffer
    }

    // ----- API mutators -----

    /// DTLS is connected: create the association (the DTLS client sends INIT) and give
    /// stream ids to channels created before the role was known.
    pub fn start(
        &mut self,
        now: Instant,
        role: DtlsRole,
        remote: RemoteSctpParams,
    ) -> Result<(), DataChannelError> {
        self.advance_clock(now);
        if self.association.is_some() {
            return Ok(());
        }
        self.role = Some(role);
        self.set_remote_max_message_size(remote.max_message_size);
        let config = SctpConfig {
            remote_port: remote.port,
            ..self.config.clone()
        };
        let sctp_role = match role {
            DtlsRole::Client => SctpRole::Client,
            DtlsRole::Server => SctpRole::Server,
        };
        let mut association = Association::new(config, sctp_role, self.rng.fork(), now)
            .map_err(|_| DataChannelError::Randomness)?;
        association.set_max_send_message_size(self.remote_max_message_size);
        association.connect(now);
        for c in self.channels.values() {
            if let Some(s) = c.stream_id {
                association.set_buffered_amount_low_threshold(s, c.low_threshold);
            }
        }
        self.association = Some(association);
        let unassigned: Vec<ChannelId> = self
            .channels
            .iter()
            .filter(|(_, c)| c.stream_id.is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in unassigned {
            match self.allocate_stream_id() {
                Some(s) => {
                    self.by_stream.insert(s, id);
                    if let (Some(c), Some(a)) = (self.channels.get_mut(&id), &mut self.association)
                    {
                        c.stream_id = Some(s);
                        a.set_buffered_amount_low_threshold(s, c.low_threshold);
                    }
                }
                None => self.finish_close(id),
            }
        }
        Ok(())
    }

    /// The peer's `a=max-message-size` changed (renegotiation); 0 means no limit beyond
    /// our own maximum.
    pub fn set_remote_max_message_size(&mut self, size: usize) {
        self.remote_max_message_size = match size {
            0 => self.config.max_message_size,
            n => n.min(self.config.max_message_size),
        };
        if let Some(a) = &mut self.association {
            a.set_max_send_message_size(self.remote_max_message_size);
        }
    }

    /// Create a channel (W3C `createDataChannel`).
    pub fn create_data_channel(
        &mut self,
        now: Instant,
        label: &str,
        init: DataChannelInit,
    ) -> Result<ChannelId, DataChannelError> {
        self.advance_clock(now);
        let reliability = match (init.max_retransmits, init.max_packet_life_time) {
            (Some(_), Some(_)) => return Err(DataChannelError::InvalidParameters),
            (Some(n), None) => ChannelReliability::MaxRetransmits(u32::from(n)),
            (None, Some(ms)) => ChannelReliability::MaxLifetimeMs(u32::from(ms)),
            (None, None) => ChannelReliability::Reliable,
        };
        if init.negotiated && init.id.is_none() {
            return Err(DataChannelError::InvalidParameters);
        }
        if label.len() > usize::from(u16::MAX) || init.protocol.len() > usize::from(u16::MAX) {
            return Err(DataChannelError::TooLong);
        }
        let stream_id = match init.id {
            Some(s) if self.by_stream.contains_key(&s) => return Err(DataChannelError::IdInUse),
            Some(s) => Some(s),
            None if self.role.is_some() => Some(
                self.allocate_stream_id()
                    .ok_or(DataChannelError::NoFreeStreamId)?,
            ),
            None => None,
        };
        let id = ChannelId(self.next_channel);
        self.next_channel += 1;
        let mut channel = Channel::local(label, &init, reliability);
        channel.stream_id = stream_id;
        if let Some(s) = stream_id {
            self.by_stream.insert(s, id);
        }
        self.channels.insert(id, channel);
        if self
            .association
            .as_ref()
            .is_some_and(Association::is_established)
        {
            self.open_channel(id);
        }
        Ok(id)
    }

    /// Send a message; an empty one goes as PPID 56/57 with one zero byte (RFC 8831 6.6).
    pub fn send_data(
        &mut self,
        now: Instant,
        id: ChannelId,
        data: Bytes,
        binary: bool,
    ) -> Result<(), DataChannelError> {
        self.advance_clock(now);
        let channel = self
            .channels
            .get(&id)
            .ok_or(DataChannelError::NoSuchChannel)?;
        let (DataChannelState::Open, Some(stream)) = (channel.state, channel.stream_id) else {
            return Err(DataChannelError::NotOpen);
        };
        if data.len() > self.remote_max_message_size {
            return Err(DataChannelError::MessageTooLarge);
        }
        let (ppid, payload) = match (data.is_empty(), binary) {
            (true, false) => (ppid::STRING_EMPTY, Bytes::from_static(&[0])),
            (true, true) => (ppid::BINARY_EMPTY, Bytes::from_static(&[0])),
            (false, false) => (ppid::STRING, data),
            (false, true) => (ppid::BINARY, data),
        };
        let unordered = channel.sends_unordered();
        let reliability = channel.sctp_reliability();
        let association = self.association.as_mut().ok_or(DataChannelError::NotOpen)?;
        association
            .send(now, stream, ppid, payload, unordered, reliability)
            .map_err(|e| match e {
                SendError::BufferFull => DataChannelError::BufferFull,
                SendError::MessageTooLarge => DataChannelError::MessageTooLarge,
                SendError::NotOpen | SendError::InvalidStream => DataChannelError::NotOpen,
                other => DataChannelError::Sctp(other),
            })
    }

    /// Send text.
    pub fn send_text(
        &mut self,
        now: Instant,
        id: ChannelId,
        text: &str,
    ) -> Result<(), DataChannelError> {
        self.send_data(now, id, Bytes::copy_from_slice(text.as_bytes()), false)
    }

    /// Fire [`DataChannelEvent::BufferedAmountLow`] when the channel's buffered amount
    /// falls to `threshold` bytes.
    pub fn set_buffered_amount_low_threshold(&mut self, id: ChannelId, threshold: usize) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        channel.low_threshold = threshold;
        if let (Some(s), Some(a)) = (channel.stream_id, &mut self.association) {
            a.set_buffered_amount_low_threshold(s, threshold);
        }
    }

    /// Close a channel: queued messages are sent, then its stream is reset in both
    /// directions; [`DataChannelEvent::DataChannelClose`] follows.
    pub fn close(&mut self, id: ChannelId) {
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        match (channel.state, channel.stream_id, &mut self.association) {
            (DataChannelState::Open, Some(s), Some(a)) if a.supports_stream_reset() => {
                channel.state = DataChannelState::Closing;
                a.reset_stream(s);
            }
            // A peer without RE-CONFIG cannot close one stream: close locally.
            (DataChannelState::Open, _, _) => self.finish_close(id),
            (DataChannelState::Connecting, _, _) => self.finish_close(id),
            _ => {}
        }
    }

    /// Whether the SCTP association is up.
    pub fn is_connected(&self) -> bool {
        self.association
            .as_ref()
            .is_some_and(Association::is_established)
    }

    /// End the association at once with ABORT (all channels close).
    pub fn abort(&mut self) {
        if let Some(a) = &mut self.association {
            a.abort();
        }
    }

    /// Graceful end of the association (all channels close).
    pub fn shutdown(&mut self, now: Instant) {
        if let Some(a) = &mut self.association {
            a.shutdown(now);
        }
    }

    // ----- inputs -----

    /// One decrypted DTLS application-data record (one SCTP packet).
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.advance_clock(now);
        if let Some(a) = &mut self.association {
            a.handle_packet(now, packet);
        }
    }

    /// Fire due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        if let Some(a) = &mut self.association {
            a.handle_timeout(now);
        }
    }

    // ----- outputs -----

    /// The next SCTP packet, to be sent as one DTLS application-data record.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.advance_clock(now);
        self.association.as_mut()?.poll_transmit(now, buf)
    }

    /// The next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.association.as_ref()?.poll_timeout()
    }

    /// The next event. Drain after every input.
    pub fn poll_event(&mut self) -> Option<DataChannelEvent> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let event = self.association.as_mut()?.poll_event()?;
            self.on_association_event(event);
        }
    }

    // ----- internals -----

    fn advance_clock(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
    }

    fn parity(&self) -> u16 {
        match self.role {
            Some(DtlsRole::Server) => 1,
            _ => 0,
        }
    }

    /// Most bytes of deprecated partial messages held over all channels together.
    fn partial_budget(&self) -> usize {
        self.config.max_message_size
    }

    /// The lowest free stream id of our parity (ids of closed channels are reused).
    fn allocate_stream_id(&self) -> Option<u16> {
        let parity = self.parity();
        let limit = self
            .association
            .as_ref()
            .and_then(Association::outbound_streams)
            .map_or(self.config.streams, |n| n.min(self.config.streams));
        (parity..limit)
            .step_by(2)
            .find(|s| !self.by_stream.contains_key(s))
    }

    /// The association is up: announce or open a channel.
    fn open_channel(&mut self, id: ChannelId) {
        let now = self.last_now;
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        let (DataChannelState::Connecting, Some(stream)) = (channel.state, channel.stream_id)
        else {
            return;
        };
        if channel.open_pending {
            let Ok(open) = DcepMessage::Open(channel.open_message()).to_bytes() else {
                return;
            };
            let Some(a) = &mut self.association else {
                return;
            };
            if a.send(now, stream, ppid::DCEP, open, false, Reliability::Reliable)
                .is_err()
            {
                return;
            }
            channel.open_pending = false;
        }
        channel.state = DataChannelState::Open;
        self.events.push_back(DataChannelEvent::DataChannelOpen(id));
    }

    fn on_association_event(&mut self, event: SctpEvent) {
        match event {
            SctpEvent::Connected => {
                self.events.push_back(DataChannelEvent::Connected);
                let mut waiting: Vec<ChannelId> = self
                    .channels
                    .iter()
                    .filter(|(_, c)| c.state == DataChannelState::Connecting)
                    .map(|(id, _)| *id)
                    .collect();
                waiting.sort();
                for id in waiting {
                    self.open_channel(id);
                }
            }
            SctpEvent::Message(m) => self.on_message(m.stream_id, m.ppid, m.data),
            SctpEvent::IncomingStreamReset(s) => {
                let Some(&id) = self.by_stream.get(&s) else {
                    return;
                };
                if let Some(c) = self.channels.get_mut(&id) {
                    c.incoming_reset_done = true;
                    if c.state != DataChannelState::Closing {
                        c.state = DataChannelState::Closing;
                        if let Some(a) = &mut self.association {
                            a.reset_stream(s);
                        }
                    }
                }
                self.maybe_finish_close(id);
            }
            SctpEvent::OutgoingStreamReset(s) => {
                let Some(&id) = self.by_stream.get(&s) else {
                    return;
                };
                if let Some(c) = self.channels.get_mut(&id) {
                    c.outgoing_reset_done = true;
                }
                self.maybe_finish_close(id);
            }
            SctpEvent::BufferedAmountLow(s) => {
                if let Some(&id) = self.by_stream.get(&s) {
                    self.events
                        .push_back(DataChannelEvent::BufferedAmountLow(id));
                }
            }
            SctpEvent::Closed(reason) => {
                let mut ids: Vec<ChannelId> = self.channels.keys().copied().collect();
                ids.sort();
                for id in ids {
                    self.finish_close(id);
                }
                self.events.push_back(DataChannelEvent::Closed(reason));
            }
        }
    }

    fn maybe_finish_close(&mut self, id: ChannelId) {
        if self
            .channels
            .get(&id)
            .is_some_and(|c| c.incoming_reset_done && c.outgoing_reset_done)
        {
            self.finish_close(id);
        }
    }

    fn finish_close(&mut self, id: ChannelId) {
        if let Some(c) = self.channels.remove(&id) {
            self.partial_bytes = self.partial_bytes.saturating_sub(c.partial.capacity());
            if let Some(s) = c.stream_id {
                self.by_stream.remove(&s);
            }
            self.events
                .push_back(DataChannelEvent::DataChannelClose(id));
        }
    }

    fn on_message(&mut self, stream: u16, payload_protocol: u32, data: Bytes) {
        if payload_protocol == ppid::DCEP {
            self.on_dcep(stream, &data);
            return;
        }
        let Some(&id) = self.by_stream.get(&stream) else {
            self.stats.unknown_stream_messages += 1;
            return;
        };
        let max = self.config.max_message_size;
        let Some(channel) = self.channels.get_mut(&id) else {
            return;
        };
        let (data, binary) = match payload_protocol {
            ppid::STRING => (data, false),
            ppid::BINARY => (data, true),
            ppid::STRING_EMPTY => (Bytes::new(), false),
            ppid::BINARY_EMPTY => (Bytes::new(), true),
            ppid::STRING_PARTIAL | ppid::BINARY_PARTIAL => {
                let before = channel.partial.capacity();
                let over_all = self.partial_bytes + data.len() > self.config.max_message_size;
                if channel.partial.len() + data.len() > max || over_all {
                    self.stats.oversized_partial_messages += 1;
                    channel.partial = BytesMut::new();
                } else {
                    channel.partial.extend_from_slice(&data);
                }
                self.partial_bytes =
                    self.partial_bytes.saturating_sub(before) + channel.partial.capacity();
                return;
            }
            _ => {
                self.stats.unknown_ppid_messages += 1;
                return;
            }
        };
        let data = if channel.partial.is_empty() {
            data
        } else {
            let mut whole = std::mem::take(&mut channel.partial);
            self.partial_bytes = self.partial_bytes.saturating_sub(whole.capacity());
            whole.extend_from_slice(&data);
            whole.freeze()
        };
        self.events.push_back(DataChannelEvent::DataChannelMessage {
            channel: id,
            data,
            binary,
        });
    }

    fn on_dcep(&mut self, stream: u16, data: &[u8]) {
        let Ok(message) = DcepMessage::parse(data) else {
            self.stats.bad_dcep_messages += 1;
            return;
        };
        match message {
            DcepMessage::Ack => {
                let channel = self
                    .by_stream
                    .get(&stream)
                    .and_then(|id| self.channels.get_mut(id));
                match channel {
                    Some(c) => c.acked = true,
                    None => self.stats.bad_dcep_messages += 1,
                }
            }
            DcepMessage::Open(open) => {
                // The peer must use the other parity, on a stream not in use.
                if stream % 2 == self.parity() || self.by_stream.contains_key(&stream) {
                    self.stats.bad_dcep_messages += 1;
                    return;
                }
                if self.channels.len() >= self.limits.max_channels
                    || open.label.len() > self.limits.max_label_len
                    || open.protocol.len() > self.limits.max_protocol_len
                {
                    // RFC 8832 6: a channel that cannot be opened is closed by resetting
                    // its stream; the peer sees its channel close.
                    self.stats.refused_channel_opens += 1;
                    if let Some(a) = &mut self.association {
                        a.reset_stream(stream);
                    }
                    return;
                }
                let now = self.last_now;
                if let Some(a) = &mut self.association {
                    let Ok(ack) = DcepMessage::Ack.to_bytes() else {
                        return;
                    };
                    if a.send(now, stream, ppid::DCEP, ack, false, Reliability::Reliable)
                        .is_err()
                    {
                        self.stats.bad_dcep_messages += 1;
                        return;
                    }
                }
                let id = ChannelId(self.next_channel);
                self.next_channel += 1;
                let (label, protocol) = (open.label.clone(), open.protocol.clone());
                self.channels.insert(id, Channel::remote(stream, open));
                self.by_stream.insert(stream, id);
                self.events.push_back(DataChannelEvent::DataChannel {
                    channel: id,
                    label,
                    protocol,
                });
                self.events.push_back(DataChannelEvent::DataChannelOpen(id));
            }
        }
    }
}
