//! Data channels in the PeerConnection: the W3C `createDataChannel` API and the glue
//! between DTLS application data and the [`DataChannels`] layer (SCTP). The SDP side
//! lives in `negotiation.rs` (the data section); this file starts the association once
//! DTLS is connected and the data section is negotiated, moves SCTP packets in and out
//! of DTLS records, and turns data-channel events into [`Event`]s.

use std::time::Instant;

use bytes::Bytes;

use super::{DtlsState, Event, PeerConnection};
use crate::datachannel::{
    ChannelId, DataChannelError, DataChannelEvent, DataChannelInfo, DataChannelInit, DataChannels,
    RemoteSctpParams,
};
use crate::sctp::SctpConfig;

/// DTLS 1.2 record overhead around one SCTP packet: header 13, explicit nonce 8, GCM tag 16.
const DTLS_RECORD_OVERHEAD: usize = 37;

/// The SCTP configuration of a PeerConnection: packets sized to fit one DTLS record
/// within the path MTU, retransmission timers suited to an ICE-verified path.
pub(super) fn sctp_config(mtu: usize) -> SctpConfig {
    let defaults = SctpConfig::default();
    SctpConfig {
        mtu: mtu.saturating_sub(DTLS_RECORD_OVERHEAD).max(512),
        rto_initial: std::time::Duration::from_millis(500),
        rto_min: std::time::Duration::from_millis(200),
        ..defaults
    }
}

pub(super) fn new_data_channels(
    config: &crate::Config,
    rng: crate::rng::Rng,
    now: Instant,
) -> DataChannels {
    DataChannels::with_limits(
        sctp_config(config.mtu),
        config.data_channels.clone(),
        rng,
        now,
    )
}

/// Events (of any kind) kept free in the PeerConnection's queue: data-channel events are
/// moved into it only while more than this many slots are left, so they are never
/// dropped for lack of room and wait in SCTP instead, holding the peer back.
const EVENT_SLOTS_KEPT_FREE: usize = 64;

impl PeerConnection {
    /// `createDataChannel(label, init)`. The first channel makes negotiation needed (the
    /// next offer carries a data section); channels created before the connection is up
    /// open once it is (`Event::DataChannelOpen`).
    pub fn create_data_channel(
        &mut self,
        now: Instant,
        label: &str,
        init: DataChannelInit,
    ) -> Result<ChannelId, DataChannelError> {
        self.advance(now);
        if self.closed {
            return Err(DataChannelError::NotOpen);
        }
        let id = self.data.create_data_channel(now, label, init)?;
        self.neg.want_data(self.data_max_message_size());
        self.update_negotiation_needed();
        self.pump(now);
        Ok(id)
    }

    /// Send a message (`RTCDataChannel.send`); `binary` picks the PPID. Empty messages
    /// are sent as RFC 8831 6.6 says. Past the send buffer's cap this fails with
    /// `BufferFull`: wait for `Event::BufferedAmountLow`.
    pub fn send_data(
        &mut self,
        now: Instant,
        channel: ChannelId,
        data: Bytes,
        binary: bool,
    ) -> Result<(), DataChannelError> {
        self.advance(now);
        if self.closed {
            return Err(DataChannelError::NotOpen);
        }
        self.data.send_data(now, channel, data, binary)?;
        // Only SCTP changed: move its packets into DTLS, without the full dispatch.
        self.pump_data(now);
        Ok(())
    }

    /// Send a text message.
    pub fn send_text(
        &mut self,
        now: Instant,
        channel: ChannelId,
        text: &str,
    ) -> Result<(), DataChannelError> {
        self.send_data(now, channel, Bytes::copy_from_slice(text.as_bytes()), false)
    }

    /// `RTCDataChannel.close()`: queued messages go first, then the stream is reset in
    /// both directions and `Event::DataChannelClose` follows on both sides.
    pub fn close_data_channel(&mut self, now: Instant, channel: ChannelId) {
        self.advance(now);
        self.data.close(channel);
        self.pump(now);
    }

    /// `RTCDataChannel.bufferedAmount`: bytes queued and not yet acknowledged.
    pub fn buffered_amount(&self, channel: ChannelId) -> usize {
        self.data.buffered_amount(channel)
    }

    /// `RTCDataChannel.bufferedAmountLowThreshold`.
    pub fn set_buffered_amount_low_threshold(&mut self, channel: ChannelId, threshold: usize) {
        self.data
            .set_buffered_amount_low_threshold(channel, threshold);
    }

    /// A channel's label, protocol, stream id, reliability and state.
    pub fn data_channel(&self, channel: ChannelId) -> Option<DataChannelInfo> {
        self.data.channel(channel)
    }

    /// The SCTP association's counters, once it exists.
    pub fn sctp_stats(&self) -> Option<crate::sctp::SctpStats> {
        self.data.association().map(|a| a.stats())
    }

    /// Whether the association uses I-DATA (RFC 8260 message interleaving), which it does
    /// when both sides offered it.
    pub fn sctp_interleaving(&self) -> bool {
        self.data.association().is_some_and(|a| a.interleaving())
    }

    /// Data channel messages that could not be delivered, and DCEP OPENs refused, counted.
    pub fn data_channel_stats(&self) -> crate::datachannel::DataChannelStats {
        self.data.stats()
    }

    /// Bytes received on data channels and not yet polled by the application, over all
    /// channels: in SCTP (reassembly, order, bookkeeping), in deprecated partial
    /// messages, and in this PeerConnection's event queue. It stays under
    /// [`PeerConnection::max_data_channel_bytes_held`] whatever the peer sends.
    pub fn data_channel_bytes_held(&self) -> usize {
        self.data.received_bytes_held()
    }

    /// The bound on [`PeerConnection::data_channel_bytes_held`], from
    /// `Config::data_channels` and the SCTP maximum message size.
    pub fn max_data_channel_bytes_held(&self) -> usize {
        self.data.max_received_bytes_held()
    }

    /// How many data channels exist (open, opening or closing), ours and the peer's.
    pub fn data_channel_count(&self) -> usize {
        self.data.channel_count()
    }

    /// The ids of every open or opening channel.
    pub fn data_channel_ids(&self) -> Vec<ChannelId> {
        self.data.channel_ids().collect()
    }

    pub(super) fn data_max_message_size(&self) -> u64 {
        sctp_config(self.config.mtu).max_message_size as u64
    }

    /// Start SCTP once DTLS is connected and the data section is negotiated (at first
    /// connection, or later when a renegotiation adds the first channel).
    pub(super) fn maybe_start_sctp(&mut self, now: Instant) {
        if self.data_started || self.dtls_state != DtlsState::Connected {
            return;
        }
        let (Some(params), Some(role)) = (self.neg.negotiated_sctp(), self.dtls_role()) else {
            return;
        };
        let remote = RemoteSctpParams {
            port: params.remote_port,
            max_message_size: usize::try_from(params.remote_max_message_size).unwrap_or(usize::MAX),
        };
        if self.data.start(now, role, remote).is_ok() {
            self.data_started = true;
        }
    }

    /// Move SCTP packets into DTLS records and data-channel events into ours.
    pub(super) fn pump_data(&mut self, now: Instant) {
        if self.data_started {
            if let Some(dtls) = self.dtls.as_mut() {
                while let Some(n) = self.data.poll_transmit(now, &mut self.sctp_scratch) {
                    let packet = self.sctp_scratch.get(..n).unwrap_or_default();
                    if dtls.send_application_data(packet).is_err() {
                        self.stats.datagrams_dropped += 1;
                    }
                }
            }
        }
        self.take_data_events();
    }

    /// The application polled `event`: a data-channel message leaves our hands, and
    /// events held back in SCTP for lack of room may now move into the queue. (The
    /// window update this makes due goes out with the next `handle_*` call or the peer's
    /// next window probe.)
    pub(super) fn data_event_taken(&mut self, event: &Event) {
        if let Event::DataChannelMessage { data, .. } = event {
            self.data.release_from_owner(data.len());
            self.take_data_events();
        }
    }

    /// Move data-channel events into our queue while it has room: less than the receive
    /// buffer's worth of messages held, and slots left so nothing is dropped.
    fn take_data_events(&mut self) {
        while self.data.owner_has_room()
            && self.events.len() + EVENT_SLOTS_KEPT_FREE < super::MAX_QUEUED_EVENTS
        {
            let Some(event) = self.data.poll_event() else {
                break;
            };
            let event = match event {
                DataChannelEvent::DataChannel {
                    channel,
                    label,
                    protocol,
                } => Event::DataChannel {
                    channel,
                    label,
                    protocol,
                },
                DataChannelEvent::DataChannelOpen(c) => Event::DataChannelOpen(c),
                DataChannelEvent::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } => {
                    self.data.hold_for_owner(data.len());
                    Event::DataChannelMessage {
                        channel,
                        data,
                        binary,
                    }
                }
                DataChannelEvent::DataChannelClose(c) => Event::DataChannelClose(c),
                DataChannelEvent::BufferedAmountLow(c) => Event::BufferedAmountLow(c),
                _ => continue,
            };
            self.push_event(event);
        }
    }
}
