//! The sending half: per-stream queues scheduled round-robin, fragmentation to the
//! packet budget, the in-flight window indexed by TSN, SACK processing (cumulative ack,
//! gap blocks, fast retransmit on three missing reports), T3-rtx, congestion control
//! (RFC 9260 section 7), the peer's window, and PR-SCTP abandonment with the
//! Advanced.Peer.Ack.Point behind FORWARD-TSN (RFC 3758).
//!
//! With I-DATA, fragmented messages start only while the peer can hold every started
//! one whole (see `SctpConfig::interleaved_message_budget`); the rest wait to start in a
//! FIFO of their own, outside the round-robin.
//!
//! Cost per call does not grow with the amount in flight: a SACK that only moves the
//! cumulative point touches the chunks it acknowledges; chunks are found by
//! `tsn - front` in a `VecDeque`; retransmissions wait in their own queue. Only loss
//! recovery (gap blocks, a T3 expiry) walks the window.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::rtt::RttEstimator;
use super::{Reliability, SctpStats, SendError};
use crate::sctp::wire::{
    padded, Chunk, DataChunk, DataFlags, ForwardTsnStream, IForwardTsnStream, Sack,
    DATA_HEADER_LEN, IDATA_HEADER_LEN,
};

/// Smallest fragment worth starting in a nearly full packet; below this the message
/// waits for the next packet.
const MIN_FRAGMENT: usize = 256;
/// Most stream entries in one FORWARD-TSN.
const MAX_FORWARD_STREAMS: usize = 64;

#[derive(Debug)]
struct OutboundMessage {
    seq: u64,
    ppid: u32,
    data: Bytes,
    offset: usize,
    unordered: bool,
    message_id: Option<u32>,
    next_fsn: u32,
    max_retransmits: Option<u16>,
    expires_at: Option<Instant>,
    /// Counted in [`Sender::open_message_bytes`]: it may start (or has started) and
    /// interleave with other messages.
    admitted: bool,
}

#[derive(Debug, Default)]
struct OutboundStream {
    queue: VecDeque<OutboundMessage>,
    next_ordered_id: u32,
    next_unordered_id: u32,
    queued_bytes: usize,
    low_threshold: usize,
    scheduled: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Outstanding,
    GapAcked,
    NeedsRetransmit,
    Abandoned,
}

#[derive(Debug)]
struct InFlight {
    message_seq: u64,
    stream_id: u16,
    message_id: u32,
    fragment_seq: u32,
    ppid: u32,
    flags: DataFlags,
    payload: Bytes,
    wire_size: usize,
    transmit_count: u32,
    missing_reports: u8,
    fast_retransmitted: bool,
    state: ChunkState,
    max_retransmits: Option<u16>,
    expires_at: Option<Instant>,
}

/// Congestion and receiver windows: below cwnd, and within the peer's window unless
/// nothing is outstanding (then one chunk goes as a zero-window probe).
fn windows_allow(outstanding: usize, cwnd: usize, peer_rwnd: usize, wire_size: usize) -> bool {
    outstanding < cwnd && (outstanding == 0 || wire_size <= peer_rwnd)
}

/// What a SACK changed, for the association's timers.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SackOutcome {
    /// The cumulative ack point moved.
    pub cumulative_advanced: bool,
}

/// The sending half of an association.
#[derive(Debug)]
pub(crate) struct Sender {
    streams: HashMap<u16, OutboundStream>,
    round_robin: VecDeque<u16>,
    /// With I-DATA: streams whose next message needs several fragments and waits for
    /// the messages already started to finish sending (first come, first started).
    /// They are out of `round_robin` meanwhile, so a poll never walks them.
    waiting_to_start: VecDeque<u16>,
    /// With I-DATA: the full size of every fragmented message admitted to interleave and
    /// not yet sent to its end. The peer holds at most these partial messages at once.
    open_message_bytes: usize,
    /// Most `open_message_bytes` (one message is always allowed).
    open_message_budget: usize,
    in_flight: VecDeque<InFlight>,
    /// The peer's cumulative ack, unwrapped; `in_flight[0]` is TSN `cumulative_ack + 1`.
    cumulative_ack: u64,
    retransmit_queue: VecDeque<u64>,
    fast_retransmit_pending: bool,
    outstanding_bytes: usize,
    buffered_bytes: usize,
    buffer_limit: usize,
    max_message_size: usize,
    mtu: usize,
    cwnd: usize,
    ssthresh: usize,
    partial_bytes_acked: usize,
    fast_recovery_until: Option<u64>,
    peer_rwnd: usize,
    rtt: RttEstimator,
    rtt_probe: Option<(u64, Instant)>,
    advanced_peer_ack: u64,
    forward_tsn_due: bool,
    next_message_seq: u64,
    interleaving: bool,
    forward_tsn_supported: bool,
    buffered_low: VecDeque<u16>,
    last_a_rwnd: u32,
    last_data_sent: Option<Instant>,
}

impl Sender {
    pub(crate) fn new(
        initial_tsn: u32,
        mtu: usize,
        buffer_limit: usize,
        max_message_size: usize,
        rtt: RttEstimator,
    ) -> Self {
        let cumulative_ack = (1u64 << 32) + u64::from(initial_tsn) - 1;
        Sender {
            streams: HashMap::new(),
            round_robin: VecDeque::new(),
            waiting_to_start: VecDeque::new(),
            open_message_bytes: 0,
            open_message_budget: usize::MAX,
            in_flight: VecDeque::new(),
            cumulative_ack,
            retransmit_queue: VecDeque::new(),
            fast_retransmit_pending: false,
            outstanding_bytes: 0,
            buffered_bytes: 0,
            buffer_limit,
            max_message_size,
            mtu,
            cwnd: (4 * mtu).min((2 * mtu).max(4380)),
            ssthresh: usize::MAX,
            partial_bytes_acked: 0,
            fast_recovery_until: None,
            peer_rwnd: 0,
            rtt,
            rtt_probe: None,
            advanced_peer_ack: cumulative_ack,
            forward_tsn_due: false,
            next_message_seq: 0,
            interleaving: false,
            forward_tsn_supported: false,
            buffered_low: VecDeque::new(),
            last_a_rwnd: 0,
            last_data_sent: None,
        }
    }

    /// Apply what the handshake negotiated. `open_message_budget` bounds, with I-DATA,
    /// the messages started and not yet sent to their end (see
    /// [`SctpConfig::interleaved_message_budget`](super::SctpConfig::interleaved_message_budget)).
    pub(crate) fn establish(
        &mut self,
        peer_rwnd: u32,
        interleaving: bool,
        forward_tsn: bool,
        open_message_budget: usize,
    ) {
        self.open_message_budget = open_message_budget;
        self.peer_rwnd = peer_rwnd as usize;
        self.last_a_rwnd = peer_rwnd;
        self.ssthresh = (peer_rwnd as usize).max(4 * self.mtu);
        self.interleaving = interleaving;
        self.forward_tsn_supported = forward_tsn;
    }

    fn next_tsn(&self) -> u64 {
        self.cumulative_ack + 1 + self.in_flight.len() as u64
    }

    /// The last TSN handed out (for an outgoing stream reset request).
    pub(crate) fn last_assigned_tsn(&self) -> u32 {
        (self.next_tsn() - 1) as u32
    }

    pub(crate) fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    pub(crate) fn rtt_mut(&mut self) -> &mut RttEstimator {
        &mut self.rtt
    }

    pub(crate) fn cwnd(&self) -> usize {
        self.cwnd
    }

    /// Queue a message.
    pub(crate) fn enqueue(
        &mut self,
        now: Instant,
        stream_id: u16,
        ppid: u32,
        data: Bytes,
        unordered: bool,
        reliability: Reliability,
    ) -> Result<(), SendError> {
        if data.is_empty() {
            return Err(SendError::EmptyMessage);
        }
        if data.len() > self.max_message_size {
            return Err(SendError::MessageTooLarge);
        }
        if self.buffered_bytes + data.len() > self.buffer_limit {
            return Err(SendError::BufferFull);
        }
        let (max_retransmits, expires_at) = match reliability {
            Reliability::Reliable => (None, None),
            Reliability::MaxRetransmits(n) => (Some(n), None),
            Reliability::MaxLifetime(d) => (None, Some(now + d)),
        };
        let seq = self.next_message_seq;
        self.next_message_seq += 1;
        let stream = self.streams.entry(stream_id).or_default();
        stream.queued_bytes += data.len();
        self.buffered_bytes += data.len();
        stream.queue.push_back(OutboundMessage {
            seq,
            ppid,
            data,
            offset: 0,
            unordered,
            message_id: None,
            next_fsn: 0,
            max_retransmits,
            expires_at,
            admitted: false,
        });
        if !stream.scheduled {
            stream.scheduled = true;
            self.round_robin.push_back(stream_id);
        }
        Ok(())
    }

    /// Full size of the fragmented messages started (or admitted to start) and not yet
    /// sent to their end.
    #[cfg(test)]
    pub(crate) fn open_message_bytes(&self) -> usize {
        self.open_message_bytes
    }

    /// Bytes queued on `stream_id` and not yet sent.
    pub(crate) fn buffered_amount(&self, stream_id: u16) -> usize {
        self.streams.get(&stream_id).map_or(0, |s| s.queued_bytes)
    }

    /// Bytes held for all streams: queued, or sent and not yet acknowledged.
    pub(crate) fn total_buffered(&self) -> usize {
        self.buffered_bytes
    }

    pub(crate) fn set_low_threshold(&mut self, stream_id: u16, threshold: usize) {
        self.streams.entry(stream_id).or_default().low_threshold = threshold;
    }

    /// A stream whose buffered amount fell to its low threshold.
    pub(crate) fn poll_buffered_low(&mut self) -> Option<u16> {
        self.buffered_low.pop_front()
    }

    /// Whether `stream_id` has nothing queued.
    pub(crate) fn stream_drained(&self, stream_id: u16) -> bool {
        self.streams
            .get(&stream_id)
            .is_none_or(|s| s.queue.is_empty())
    }

    /// Restart numbering of an outgoing stream after a completed reset.
    pub(crate) fn reset_stream(&mut self, stream_id: u16) {
        if let Some(s) = self.streams.get_mut(&stream_id) {
            s.next_ordered_id = 0;
            s.next_unordered_id = 0;
        }
    }

    /// Whether nothing is queued or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.round_robin.is_empty()
    }

    /// Whether data (new or retransmitted) would go out now, so a pending SACK can ride along.
    pub(crate) fn wants_to_send(&self) -> bool {
        (!self.retransmit_queue.is_empty() || !self.round_robin.is_empty())
            && self.outstanding_bytes < self.cwnd
    }

    /// Whether sent data awaits acknowledgement (T3-rtx should run).
    pub(crate) fn has_in_flight(&self) -> bool {
        !self.in_flight.is_empty()
    }

    fn header_len(&self) -> usize {
        if self.interleaving {
            IDATA_HEADER_LEN
        } else {
            DATA_HEADER_LEN
        }
    }

    fn chunk_of(&self, tsn: u64, c: &InFlight) -> Chunk {
        let d = DataChunk {
            tsn: tsn as u32,
            stream_id: c.stream_id,
            message_id: c.message_id,
            fragment_seq: c.fragment_seq,
            ppid: c.ppid,
            flags: c.flags,
            payload: c.payload.clone(),
        };
        if self.interleaving {
            Chunk::IData(d)
        } else {
            Chunk::Data(d)
        }
    }

    /// An idle sender's window decays: halved (down to 4 MTU) per RTO without data
    /// sent (RFC 9260 7.2.1), so a burst after a pause does not flood the path.
    fn decay_idle_window(&mut self, now: Instant) {
        if self.outstanding_bytes > 0 {
            return;
        }
        let Some(last) = self.last_data_sent else {
            return;
        };
        let rto = self.rtt.rto().max(Duration::from_millis(1));
        let idle_rtos = (now.saturating_duration_since(last).as_nanos() / rto.as_nanos()).min(8);
        for _ in 0..idle_rtos {
            self.cwnd = (self.cwnd / 2).max(4 * self.mtu);
        }
    }

    fn note_sent(&mut self, now: Instant, tsn: u64, wire_size: usize, first_transmission: bool) {
        self.last_data_sent = Some(now);
        self.outstanding_bytes += wire_size;
        self.peer_rwnd = self.peer_rwnd.saturating_sub(wire_size);
        if first_transmission && self.rtt_probe.is_none() {
            self.rtt_probe = Some((tsn, now));
        }
    }

    /// The next chunk to retransmit if it fits in `budget` bytes.
    pub(crate) fn next_retransmission(&mut self, now: Instant, budget: usize) -> Option<Chunk> {
        while let Some(&tsn) = self.retransmit_queue.front() {
            let Some(idx) = tsn.checked_sub(self.cumulative_ack + 1) else {
                self.retransmit_queue.pop_front();
                continue;
            };
            let Some(c) = self.in_flight.get(idx as usize) else {
                self.retransmit_queue.pop_front();
                continue;
            };
            if c.state != ChunkState::NeedsRetransmit {
                self.retransmit_queue.pop_front();
                continue;
            }
            if padded(c.wire_size) > budget
                || (!self.fast_retransmit_pending && self.outstanding_bytes >= self.cwnd)
            {
                return None;
            }
            self.retransmit_queue.pop_front();
            self.fast_retransmit_pending = false;
            let wire_size = c.wire_size;
            let c = &mut self.in_flight[idx as usize];
            c.state = ChunkState::Outstanding;
            c.transmit_count += 1;
            c.missing_reports = 0;
            if self.rtt_probe.is_some_and(|(t, _)| t == tsn) {
                self.rtt_probe = None;
            }
            let chunk = self.chunk_of(tsn, &self.in_flight[idx as usize]);
            self.note_sent(now, tsn, wire_size, false);
            return Some(chunk);
        }
        None
    }

    /// The next fragment of new data if the windows allow it and it fits in `budget`.
    pub(crate) fn next_new_data(&mut self, now: Instant, budget: usize) -> Option<Chunk> {
        let header = self.header_len();
        if !self.round_robin.is_empty() {
            self.decay_idle_window(now);
        }
        let (outstanding, cwnd, peer_rwnd) = (self.outstanding_bytes, self.cwnd, self.peer_rwnd);
        loop {
            let &stream_id = self.round_robin.front()?;
            let Some(stream) = self.streams.get_mut(&stream_id) else {
                self.round_robin.pop_front();
                continue;
            };
            let Some(msg) = stream.queue.front() else {
                stream.scheduled = false;
                self.round_robin.pop_front();
                continue;
            };
            // A message whose lifetime ran out before its first byte left is dropped.
            if msg.offset == 0 && msg.expires_at.is_some_and(|e| e <= now) {
                let (len, admitted) = (msg.data.len(), msg.admitted);
                stream.queue.pop_front();
                stream.queued_bytes -= len;
                self.buffered_bytes -= len;
                Self::note_drain(&mut self.buffered_low, stream_id, stream, len);
                if admitted {
                    self.close_open_message(len);
                }
                continue;
            }
            let remaining = msg.data.len() - msg.offset;
            let room = budget.saturating_sub(header) & !3;
            let take = remaining
                .min(room)
                .min(self.mtu.saturating_sub(12 + header));
            let min_fragment = MIN_FRAGMENT.min(self.mtu / 4);
            if take == 0 || (take < remaining && take < min_fragment) {
                return None;
            }
            // A message one chunk could carry, split only by the end of this packet,
            // neither waits nor interleaves: its rest leads the next packet.
            let large = remaining > self.mtu.saturating_sub(12 + header);
            if self.interleaving && large && take < remaining && !msg.admitted {
                // A message in several fragments interleaves with the others started:
                // it starts only while the peer can hold all of them whole, so it can
                // always complete one (it must take TSNs in order and keep what it
                // acknowledged, so it cannot pick a message to finish itself).
                let len = msg.data.len();
                let fits = self.open_message_bytes == 0
                    || self.open_message_bytes + len <= self.open_message_budget;
                if !fits || !self.waiting_to_start.is_empty() {
                    self.round_robin.pop_front();
                    self.waiting_to_start.push_back(stream_id);
                    continue;
                }
                self.open_message_bytes += len;
                stream.queue.front_mut()?.admitted = true;
            }
            let wire_size = header + take;
            if !windows_allow(outstanding, cwnd, peer_rwnd, wire_size) {
                return None;
            }
            let msg = stream.queue.front_mut()?;
            let beginning = msg.offset == 0;
            if beginning {
                let counter = if msg.unordered {
                    &mut stream.next_unordered_id
                } else {
                    &mut stream.next_ordered_id
                };
                msg.message_id = Some(*counter);
                *counter =
                    counter.wrapping_add(1) & if self.interleaving { u32::MAX } else { 0xFFFF };
            }
            let payload = msg.data.slice(msg.offset..msg.offset + take);
            msg.offset += take;
            let ending = msg.offset == msg.data.len();
            let entry = InFlight {
                message_seq: msg.seq,
                stream_id,
                message_id: msg.message_id.unwrap_or(0),
                fragment_seq: if self.interleaving && !beginning {
                    msg.next_fsn
                } else {
                    0
                },
                ppid: if beginning || !self.interleaving {
                    msg.ppid
                } else {
                    0
                },
                flags: DataFlags {
                    ending,
                    beginning,
                    unordered: msg.unordered,
                    immediate: false,
                },
                payload,
                wire_size,
                transmit_count: 1,
                missing_reports: 0,
                fast_retransmitted: false,
                state: ChunkState::Outstanding,
                max_retransmits: msg.max_retransmits,
                expires_at: msg.expires_at,
            };
            msg.next_fsn += 1;
            let closed = (ending && msg.admitted).then_some(msg.data.len());
            let interleaves = self.interleaving && msg.admitted;
            if ending {
                stream.queue.pop_front();
            }
            stream.queued_bytes -= take;
            Self::note_drain(&mut self.buffered_low, stream_id, stream, take);
            // DATA cannot interleave fragments: stay on this stream until the message ends.
            if ending || interleaves {
                self.round_robin.pop_front();
                if stream.queue.is_empty() {
                    stream.scheduled = false;
                } else {
                    self.round_robin.push_back(stream_id);
                }
            }
            let tsn = self.next_tsn();
            let chunk = self.chunk_of(tsn, &entry);
            self.in_flight.push_back(entry);
            self.note_sent(now, tsn, wire_size, true);
            if let Some(len) = closed {
                self.close_open_message(len);
            }
            return Some(chunk);
        }
    }

    /// An admitted message of `len` bytes was sent to its end (or dropped): admit the
    /// streams waiting to start theirs, in order, while they fit. Each waiting stream is
    /// admitted once per message, so this costs nothing per poll on average.
    fn close_open_message(&mut self, len: usize) {
        self.open_message_bytes = self.open_message_bytes.saturating_sub(len);
        while let Some(&stream_id) = self.waiting_to_start.front() {
            let head = self
                .streams
                .get_mut(&stream_id)
                .and_then(|s| s.queue.front_mut());
            let Some(msg) = head else {
                // Its message went meanwhile (abandoned): schedule the stream as usual.
                self.waiting_to_start.pop_front();
                self.round_robin.push_back(stream_id);
                continue;
            };
            let len = msg.data.len();
            if self.open_message_bytes != 0
                && self.open_message_bytes + len > self.open_message_budget
            {
                break;
            }
            if !msg.admitted {
                msg.admitted = true;
                self.open_message_bytes += len;
            }
            self.waiting_to_start.pop_front();
            self.round_robin.push_back(stream_id);
        }
    }

    fn note_drain(low: &mut VecDeque<u16>, id: u16, stream: &OutboundStream, taken: usize) {
        let after = stream.queued_bytes;
        if after <= stream.low_threshold && after + taken > stream.low_threshold {
            low.push_back(id);
        }
    }

    /// Process a SACK (RFC 9260 6.2.1, 7.2).
    pub(crate) fn handle_sack(
        &mut self,
        now: Instant,
        sack: &Sack,
        stats: &mut SctpStats,
    ) -> SackOutcome {
        let mut outcome = SackOutcome::default();
        let diff = i64::from(
            sack.cumulative_tsn_ack
                .wrapping_sub(self.cumulative_ack as u32) as i32,
        );
        if diff < 0 {
            return outcome; // An old, reordered SACK.
        }
        let cum = self.cumulative_ack + diff as u64;
        if cum >= self.next_tsn() {
            stats.malformed_chunks += 1;
            return outcome; // Acknowledges what was never sent.
        }
        let outstanding_before = self.outstanding_bytes;
        let mut newly_acked = 0usize;
        let mut highest_newly_acked = None;
        // Cumulative ack: pop acknowledged chunks from the front.
        while self.cumulative_ack < cum {
            let Some(c) = self.in_flight.pop_front() else {
                break;
            };
            self.cumulative_ack += 1;
            match c.state {
                ChunkState::Outstanding => {
                    self.outstanding_bytes -= c.wire_size;
                    newly_acked += c.wire_size;
                }
                ChunkState::NeedsRetransmit => newly_acked += c.wire_size,
                ChunkState::GapAcked | ChunkState::Abandoned => {}
            }
            if c.state != ChunkState::Abandoned {
                self.buffered_bytes -= c.payload.len();
            }
            highest_newly_acked = Some(self.cumulative_ack);
            outcome.cumulative_advanced = true;
        }
        if let Some((tsn, sent)) = self.rtt_probe {
            if tsn <= self.cumulative_ack {
                self.rtt_probe = None;
                self.rtt.sample(now.saturating_duration_since(sent));
            }
        }
        self.advanced_peer_ack = self.advanced_peer_ack.max(self.cumulative_ack);
        // Gap blocks.
        let front = self.cumulative_ack + 1;
        for gap in &sack.gap_blocks {
            if gap.start == 0 || gap.end < gap.start {
                continue;
            }
            let start = cum + u64::from(gap.start);
            let end = (cum + u64::from(gap.end)).min(self.next_tsn().saturating_sub(1));
            for tsn in start..=end {
                let Some(c) = self.in_flight.get_mut((tsn - front) as usize) else {
                    break;
                };
                match c.state {
                    ChunkState::Outstanding => {
                        self.outstanding_bytes -= c.wire_size;
                        newly_acked += c.wire_size;
                        highest_newly_acked = Some(tsn);
                    }
                    ChunkState::NeedsRetransmit => {
                        newly_acked += c.wire_size;
                        highest_newly_acked = Some(tsn);
                    }
                    ChunkState::GapAcked | ChunkState::Abandoned => continue,
                }
                c.state = ChunkState::GapAcked;
            }
        }
        stats.duplicate_tsns_reported += sack.duplicate_tsns.len() as u64;
        self.adjust_cwnd(outcome.cumulative_advanced, newly_acked, outstanding_before);
        if let Some(until) = self.fast_recovery_until {
            if self.cumulative_ack >= until {
                self.fast_recovery_until = None;
            }
        }
        // Missing reports for chunks below the highest TSN this SACK newly acknowledged.
        if let (Some(htna), false) = (highest_newly_acked, sack.gap_blocks.is_empty()) {
            self.count_missing_reports(now, htna, stats);
        }
        self.last_a_rwnd = sack.a_rwnd;
        self.peer_rwnd = (sack.a_rwnd as usize).saturating_sub(self.outstanding_bytes);
        self.update_advanced_peer_ack();
        if self.advanced_peer_ack > self.cumulative_ack {
            self.forward_tsn_due = true;
        }
        outcome
    }

    fn adjust_cwnd(&mut self, cumulative_advanced: bool, acked: usize, outstanding_before: usize) {
        if !cumulative_advanced || acked == 0 || self.fast_recovery_until.is_some() {
            return;
        }
        let fully_used = outstanding_before + self.mtu >= self.cwnd;
        if self.cwnd <= self.ssthresh {
            if fully_used {
                self.cwnd += acked.min(self.mtu);
            }
        } else {
            self.partial_bytes_acked += acked;
            if self.partial_bytes_acked >= self.cwnd && fully_used {
                self.partial_bytes_acked -= self.cwnd;
                self.cwnd += self.mtu;
            }
        }
    }

    fn count_missing_reports(&mut self, now: Instant, htna: u64, stats: &mut SctpStats) {
        let front = self.cumulative_ack + 1;
        let mut lost = false;
        let limit = (htna.saturating_sub(front) as usize).min(self.in_flight.len());
        for idx in 0..limit {
            let c = &mut self.in_flight[idx];
            if c.state != ChunkState::Outstanding || c.fast_retransmitted {
                continue;
            }
            c.missing_reports = c.missing_reports.saturating_add(1);
            if c.missing_reports >= 3 {
                c.fast_retransmitted = true;
                lost = true;
                stats.fast_retransmits += 1;
                self.mark_for_retransmit(now, idx, stats);
            }
        }
        if lost && self.fast_recovery_until.is_none() {
            // RFC 9260 7.2.3: halve once per loss event, then fast recovery.
            self.ssthresh = (self.cwnd / 2).max(4 * self.mtu);
            self.cwnd = self.ssthresh;
            self.partial_bytes_acked = 0;
            self.fast_recovery_until = Some(self.next_tsn() - 1);
            self.fast_retransmit_pending = true;
        }
    }

    fn mark_for_retransmit(&mut self, now: Instant, idx: usize, stats: &mut SctpStats) {
        let Some(c) = self.in_flight.get_mut(idx) else {
            return;
        };
        let retransmits = c.transmit_count.saturating_sub(1);
        let abandon = c
            .max_retransmits
            .is_some_and(|m| retransmits >= u32::from(m))
            || c.expires_at.is_some_and(|e| e <= now);
        if c.state == ChunkState::Outstanding {
            self.outstanding_bytes -= c.wire_size;
        }
        if abandon && self.forward_tsn_supported {
            c.state = ChunkState::NeedsRetransmit; // abandon_message takes it from here
            self.abandon_message(idx, stats);
            return;
        }
        c.state = ChunkState::NeedsRetransmit;
        stats.retransmissions += 1;
        self.retransmit_queue
            .push_back(self.cumulative_ack + 1 + idx as u64);
    }

    /// Abandon every chunk of the message at `idx` and its unsent rest (RFC 3758 3.5).
    fn abandon_message(&mut self, idx: usize, stats: &mut SctpStats) {
        let Some(c) = self.in_flight.get(idx) else {
            return;
        };
        let (seq, stream_id) = (c.message_seq, c.stream_id);
        let range = if self.interleaving {
            0..self.in_flight.len()
        } else {
            // DATA fragments of one message sit on consecutive TSNs.
            let mut lo = idx;
            while lo > 0 && self.in_flight[lo - 1].message_seq == seq {
                lo -= 1;
            }
            let mut hi = idx + 1;
            while self.in_flight.get(hi).is_some_and(|c| c.message_seq == seq) {
                hi += 1;
            }
            lo..hi
        };
        for i in range {
            let c = &mut self.in_flight[i];
            if c.message_seq != seq || c.state == ChunkState::Abandoned {
                continue;
            }
            if c.state == ChunkState::Outstanding {
                self.outstanding_bytes -= c.wire_size;
            }
            if c.state != ChunkState::GapAcked {
                self.buffered_bytes -= c.payload.len();
                c.payload = Bytes::new();
                c.state = ChunkState::Abandoned;
            }
        }
        let mut unsent_rest = None;
        if let Some(stream) = self.streams.get_mut(&stream_id) {
            if stream.queue.front().is_some_and(|m| m.seq == seq) {
                if let Some(m) = stream.queue.pop_front() {
                    let rest = m.data.len() - m.offset;
                    stream.queued_bytes -= rest;
                    self.buffered_bytes -= rest;
                    Self::note_drain(&mut self.buffered_low, stream_id, stream, rest);
                    unsent_rest = Some(m);
                }
            }
        }
        if let Some(m) = unsent_rest.as_ref().filter(|m| m.admitted) {
            self.close_open_message(m.data.len());
        }
        if let Some(m) = unsent_rest {
            // The message's last fragments never got TSNs. If every sent fragment still
            // arrives, the receiver would wait for the rest forever (and an ordered stream
            // would stall behind it). A never-sent, abandoned end fragment with its own TSN
            // makes a FORWARD-TSN name the message once the peer reaches it.
            self.in_flight.push_back(InFlight {
                message_seq: seq,
                stream_id,
                message_id: m.message_id.unwrap_or(0),
                fragment_seq: m.next_fsn,
                ppid: 0,
                flags: DataFlags {
                    ending: true,
                    beginning: false,
                    unordered: m.unordered,
                    immediate: false,
                },
                payload: Bytes::new(),
                wire_size: 0,
                transmit_count: 0,
                missing_reports: 0,
                fast_retransmitted: true,
                state: ChunkState::Abandoned,
                max_retransmits: None,
                expires_at: None,
            });
        }
        stats.abandoned_messages += 1;
    }

    fn update_advanced_peer_ack(&mut self) {
        if !self.forward_tsn_supported {
            return;
        }
        let start = (self.advanced_peer_ack - self.cumulative_ack) as usize;
        let mut point = self.advanced_peer_ack;
        for c in self.in_flight.iter().skip(start) {
            if c.state != ChunkState::Abandoned {
                break;
            }
            point += 1;
        }
        self.advanced_peer_ack = point;
    }

    /// A FORWARD-TSN (or I-FORWARD-TSN) if the peer should skip abandoned data.
    pub(crate) fn forward_tsn(&mut self) -> Option<Chunk> {
        if !self.forward_tsn_due {
            return None;
        }
        self.forward_tsn_due = false;
        if self.advanced_peer_ack <= self.cumulative_ack {
            return None;
        }
        let count = (self.advanced_peer_ack - self.cumulative_ack) as usize;
        let new_cumulative_tsn = self.advanced_peer_ack as u32;
        if self.interleaving {
            let mut streams: Vec<IForwardTsnStream> = Vec::new();
            for c in self.in_flight.iter().take(count) {
                let key = (c.stream_id, c.flags.unordered);
                match streams
                    .iter()
                    .position(|s| (s.stream_id, s.unordered) == key)
                {
                    Some(i) => streams[i].message_id = c.message_id,
                    None if streams.len() < MAX_FORWARD_STREAMS => {
                        streams.push(IForwardTsnStream {
                            stream_id: c.stream_id,
                            unordered: c.flags.unordered,
                            message_id: c.message_id,
                        })
                    }
                    None => {}
                }
            }
            Some(Chunk::IForwardTsn {
                new_cumulative_tsn,
                streams,
            })
        } else {
            let mut streams: Vec<ForwardTsnStream> = Vec::new();
            for c in self
                .in_flight
                .iter()
                .take(count)
                .filter(|c| !c.flags.unordered)
            {
                match streams.iter().position(|s| s.stream_id == c.stream_id) {
                    Some(i) => streams[i].ssn = c.message_id as u16,
                    None if streams.len() < MAX_FORWARD_STREAMS => streams.push(ForwardTsnStream {
                        stream_id: c.stream_id,
                        ssn: c.message_id as u16,
                    }),
                    None => {}
                }
            }
            Some(Chunk::ForwardTsn {
                new_cumulative_tsn,
                streams,
            })
        }
    }

    /// T3-rtx expired (RFC 9260 6.3.3): back off, collapse the window, resend everything.
    pub(crate) fn handle_retransmission_timeout(&mut self, now: Instant, stats: &mut SctpStats) {
        stats.retransmission_timeouts += 1;
        self.rtt.back_off();
        self.ssthresh = (self.cwnd / 2).max(4 * self.mtu);
        self.cwnd = self.mtu;
        self.partial_bytes_acked = 0;
        self.fast_recovery_until = None;
        self.fast_retransmit_pending = false;
        self.rtt_probe = None;
        self.retransmit_queue.clear();
        for idx in 0..self.in_flight.len() {
            match self.in_flight[idx].state {
                ChunkState::Outstanding | ChunkState::NeedsRetransmit => {
                    self.mark_for_retransmit(now, idx, stats);
                }
                ChunkState::GapAcked | ChunkState::Abandoned => {}
            }
        }
        self.outstanding_bytes = 0;
        self.update_advanced_peer_ack();
        if self.advanced_peer_ack > self.cumulative_ack {
            self.forward_tsn_due = true;
        }
    }

    /// The cumulative ack of a SHUTDOWN: a SACK without gaps and with the last window.
    pub(crate) fn handle_cumulative_ack(
        &mut self,
        now: Instant,
        cumulative_tsn_ack: u32,
        stats: &mut SctpStats,
    ) {
        let sack = Sack {
            cumulative_tsn_ack,
            a_rwnd: self.last_a_rwnd,
            gap_blocks: Vec::new(),
            duplicate_tsns: Vec::new(),
        };
        self.handle_sack(now, &sack, stats);
    }

    /// Change the largest message accepted by [`Sender::enqueue`].
    pub(crate) fn set_max_message_size(&mut self, size: usize) {
        self.max_message_size = size;
    }

    /// Expected time for the peer to acknowledge everything queued (for tests and stats).
    pub(crate) fn rto(&self) -> Duration {
        self.rtt.rto()
    }
}
