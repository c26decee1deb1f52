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
use crate::sctp::{CloseReason, SctpConfig};

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
                // SCTP runs inside DTLS, so these chunks were authenticated. We only ever
                // abort (in `close()`), so a completed SHUTDOWN was the peer's.
                DataChannelEvent::Closed(CloseReason::AbortedByPeer) => {
                    self.remote_closed(super::RemoteClose::SctpAbort);
                    continue;
                }
                DataChannelEvent::Closed(CloseReason::Shutdown) => {
                    self.remote_closed(super::RemoteClose::SctpShutdown);
                    continue;
                }
                _ => continue,
            };
            self.push_event(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::transmit::{Datagram, Protocol};
    use crate::{Config, OfferOptions};

    struct Pair {
        pcs: [PeerConnection; 2],
        addrs: [SocketAddr; 2],
        /// Events each side's application read.
        seen: [Vec<Event>; 2],
        now: Instant,
    }

    impl Pair {
        fn new() -> Pair {
            let now = Instant::now();
            let config = |seed| Config {
                rng_seed: Some(seed),
                ..Default::default()
            };
            let addrs: [SocketAddr; 2] =
                ["10.0.0.1:5000", "10.0.0.2:6000"].map(|a| a.parse().expect("addr"));
            let mut pcs = [1, 2].map(|seed| PeerConnection::new(config(seed), now).expect("pc"));
            for (pc, addr) in pcs.iter_mut().zip(addrs) {
                pc.add_local_address(now, addr, Protocol::Udp);
            }
            Pair {
                pcs,
                addrs,
                seen: [Vec::new(), Vec::new()],
                now,
            }
        }

        fn negotiate(&mut self) {
            let [a, b] = &mut self.pcs;
            let offer = a.create_offer(OfferOptions::default()).expect("offer");
            a.set_local_description(self.now, offer.clone())
                .expect("local offer");
            b.set_remote_description(self.now, offer)
                .expect("remote offer");
            let answer = b.create_answer().expect("answer");
            b.set_local_description(self.now, answer.clone())
                .expect("local answer");
            a.set_remote_description(self.now, answer)
                .expect("remote answer");
        }

        /// Exchange datagrams and advance the virtual clock for `d`. Side 1's application
        /// reads its events (and forwards its candidates) only if `read_b`.
        fn run(&mut self, d: Duration, read_b: bool) {
            let end = self.now + d;
            let mut buf = vec![0u8; 2048];
            loop {
                let mut wire: VecDeque<(usize, SocketAddr, Vec<u8>)> = VecDeque::new();
                for side in 0..2 {
                    while let Some(t) = self.pcs[side].poll_transmit(self.now, &mut buf) {
                        wire.push_back((1 - side, t.local, buf[..t.len].to_vec()));
                    }
                }
                let progress = !wire.is_empty();
                for (to, from, data) in wire {
                    let datagram = Datagram {
                        local: self.addrs[to],
                        remote: from,
                        protocol: Protocol::Udp,
                        data: &data,
                    };
                    self.pcs[to].handle_datagram(self.now, datagram);
                }
                for side in 0..2 {
                    if side == 1 && !read_b {
                        continue;
                    }
                    while let Some(e) = self.pcs[side].poll_event() {
                        if let Event::IceCandidate(c) = &e {
                            let _ = self.pcs[1 - side].add_ice_candidate(self.now, c.clone());
                        }
                        self.seen[side].push(e);
                    }
                }
                if progress {
                    continue;
                }
                let next = self
                    .pcs
                    .iter()
                    .filter_map(PeerConnection::poll_timeout)
                    .min();
                match next {
                    Some(t) if t <= end => {
                        self.now = self.now.max(t);
                        for pc in &mut self.pcs {
                            pc.handle_timeout(self.now);
                        }
                    }
                    _ => {
                        self.now = end;
                        return;
                    }
                }
            }
        }
    }

    #[test]
    fn messages_the_application_has_not_read_stay_under_the_bound() {
        let mut p = Pair::new();
        let channel = p.pcs[0]
            .create_data_channel(p.now, "flood", DataChannelInit::default())
            .expect("channel");
        p.negotiate();
        p.run(Duration::from_secs(5), true);
        assert!(p.seen[0]
            .iter()
            .any(|e| matches!(e, Event::DataChannelOpen(c) if *c == channel)));
        // Side 1's application stops reading; side 0 sends 40 MiB.
        let message = Bytes::from(vec![7u8; 200 * 1024]);
        let mut sent = 0;
        for _ in 0..200 {
            while p.pcs[0]
                .send_data(p.now, channel, message.clone(), true)
                .is_ok()
            {
                sent += 1;
            }
            p.run(Duration::from_millis(200), false);
            let b = &p.pcs[1];
            assert!(
                b.data_channel_bytes_held() <= b.max_data_channel_bytes_held(),
                "{} held, bound {}",
                b.data_channel_bytes_held(),
                b.max_data_channel_bytes_held()
            );
        }
        let queued = p.pcs[1].events.len();
        assert!(queued < super::super::MAX_QUEUED_EVENTS);
        assert_eq!(p.pcs[1].stats.events_dropped, 0, "nothing dropped");
        // The peer was held back, not fed into an unbounded queue.
        let held = p.pcs[1].data_channel_bytes_held();
        assert!(held > 1024 * 1024, "{held}");
        // Reading again delivers everything that was sent, in order, none lost.
        p.run(Duration::from_secs(120), true);
        let got = p.seen[1]
            .iter()
            .filter(|e| matches!(e, Event::DataChannelMessage { .. }))
            .count();
        assert!(sent > 20);
        assert_eq!(got, sent);
    }

    #[test]
    fn many_small_unread_messages_wait_in_sctp_and_none_is_dropped() {
        let mut p = Pair::new();
        let channel = p.pcs[0]
            .create_data_channel(p.now, "small", DataChannelInit::default())
            .expect("channel");
        p.negotiate();
        p.run(Duration::from_secs(5), true);
        let before = p.seen[1].len();
        // 20,000 ten-byte messages: far more events than the PeerConnection queues.
        let mut sent = 0;
        for _ in 0..100 {
            for _ in 0..200 {
                if p.pcs[0]
                    .send_data(p.now, channel, Bytes::from_static(b"0123456789"), true)
                    .is_ok()
                {
                    sent += 1;
                }
            }
            p.run(Duration::from_millis(100), false);
        }
        assert_eq!(sent, 20_000);
        assert!(p.pcs[1].events.len() < super::super::MAX_QUEUED_EVENTS);
        assert_eq!(p.pcs[1].stats.events_dropped, 0, "nothing dropped");
        let b = &p.pcs[1];
        assert!(b.data_channel_bytes_held() <= b.max_data_channel_bytes_held());
        p.run(Duration::from_secs(120), true);
        let got = p.seen[1][before..]
            .iter()
            .filter(|e| matches!(e, Event::DataChannelMessage { .. }))
            .count();
        assert_eq!(got, sent);
    }
}
