//! The receiving half: which TSNs arrived (cumulative point, gap ranges, duplicates),
//! reassembly of fragmented messages (by TSN run for DATA, by message id and fragment
//! sequence number for I-DATA), ordered delivery per stream, the advertised window,
//! and when to SACK.
//!
//! TSNs are unwrapped to `u64` on entry, so every structure here is ordered without
//! serial-number arithmetic. Memory is bounded by the receive buffer: every stored
//! fragment and undelivered message counts against it at what it really costs (its
//! payload, the bookkeeping around it, and never a larger packet kept alive behind a
//! slice: such payloads are copied out compactly), so do the per-stream and
//! per-message maps, and the advertised window is what is left. Whatever the peer
//! sends, the bytes held stay under the buffer plus its hole-filling slack
//! ([`hole_fill_slack`]: another buffer's worth) plus one chunk.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::sctp::wire::{DataChunk, GapBlock, Sack};

/// What one stored fragment or message costs beyond its payload: its share of the B-tree
/// node or queue slot that holds it (a leaf keeps 11 entries of up to 56 bytes), its
/// struct, and the allocation header of its payload. Charged against the receive buffer
/// so that a flood of tiny fragments or messages is bounded as well as a few large ones.
const ENTRY_OVERHEAD: usize = 128;
/// A B-tree's first leaf node, allocated when a per-message fragment map or a stream's
/// map of messages waiting for order gets its first entry (11 keys and values: about
/// 600 bytes for the largest entries here), with the entry in the map of partial messages.
const MAP_NODE_COST: usize = 640;
/// One stream's ordering state: its hash-table slot, counted twice for the table's growth.
const STREAM_STATE_COST: usize = 128;
/// A stored payload may keep alive the packet buffer it was sliced from only if that
/// buffer is at most this much larger than the payload (headers and a small bundled
/// chunk); otherwise the payload is copied out, so its charge is what it really holds.
const MAX_PINNED_SLACK: usize = 256;
/// Most gap ranges kept; a TSN that would open another is dropped (the sender resends it).
const MAX_GAP_RANGES: usize = 128;
/// Most duplicate TSNs reported in one SACK.
const MAX_DUPLICATES: usize = 32;
/// TSNs further than this beyond the cumulative point are dropped.
const MAX_TSN_AHEAD: u64 = 1 << 20;
/// The least extra room kept for chunks that fill holes (see [`hole_fill_slack`]).
const MIN_HOLE_FILL_SLACK: usize = 64 * 1024;

/// Extra room, past a full buffer, for chunks that fill holes below the highest TSN
/// received (and for the chunk at the cumulative point): out-of-order data must never
/// block the chunks that let it be delivered. The peer counts only payload against our
/// window while we also charge each chunk's bookkeeping, so a sender that keeps to the
/// window still overruns a full buffer by a tenth and its last chunks are dropped; the
/// holes they leave, up to a window's worth, can then be filled only from this room. With
/// the 64 KiB this used to be, a large message missing more than that behind a buffer
/// full of later data never completed, and the association stalled (Chromium, once).
pub(crate) fn hole_fill_slack(buffer_limit: usize) -> usize {
    buffer_limit.max(MIN_HOLE_FILL_SLACK)
}
/// The most one accepted chunk can add past the point where the buffer refuses more: a
/// payload as large as a DTLS record, its entry, a new map node and a new stream.
pub(crate) const MAX_CHUNK_CHARGE: usize =
    16 * 1024 + ENTRY_OVERHEAD + MAP_NODE_COST + STREAM_STATE_COST;

/// A whole message received on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Stream identifier.
    pub stream_id: u16,
    /// Payload protocol identifier.
    pub ppid: u32,
    /// The message.
    pub data: Bytes,
    /// Whether it was sent unordered.
    pub unordered: bool,
}

/// What became of one received DATA chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// New data, taken.
    Accepted,
    /// Already received.
    Duplicate,
    /// No room (or too far ahead): not acknowledged, the sender will resend it.
    Dropped,
    /// A message larger than the configured maximum: the association must abort.
    Oversized,
}

#[derive(Debug)]
struct Fragment {
    stream_id: u16,
    ssn: u32,
    ppid: u32,
    beginning: bool,
    ending: bool,
    unordered: bool,
    payload: Bytes,
}

impl Fragment {
    /// What the fragment is charged while stored.
    fn cost(&self) -> usize {
        self.payload.len() + ENTRY_OVERHEAD
    }
}

#[derive(Debug, Default)]
struct PartialMessage {
    fragments: BTreeMap<u32, Bytes>,
    ppid: u32,
    last_fsn: Option<u32>,
    bytes: usize,
}

impl PartialMessage {
    /// What the partial message is charged beyond its payload bytes.
    fn bookkeeping(&self) -> usize {
        MAP_NODE_COST + self.fragments.len() * ENTRY_OVERHEAD
    }
}

#[derive(Debug, Default)]
struct InboundStream {
    next_id: u32,
    pending: BTreeMap<u32, ReceivedMessage>,
    /// The last unordered MID an I-FORWARD-TSN skipped: late fragments of it are stale.
    unordered_skipped: Option<u32>,
}

/// The receiving half of an association.
#[derive(Debug)]
pub(crate) struct Receiver {
    cumulative_tsn: u64,
    ranges: Vec<(u64, u64)>,
    duplicates: Vec<u32>,
    fragments: BTreeMap<u64, Fragment>,
    partial: BTreeMap<(u16, bool, u32), PartialMessage>,
    streams: HashMap<u16, InboundStream>,
    ready: VecDeque<ReceivedMessage>,
    stored_bytes: usize,
    buffer_limit: usize,
    max_message_size: usize,
    /// Message ids wrap at 2^16 (DATA's SSN) or 2^32 (I-DATA's MID).
    id_mask: u32,
    packets_since_ack: u32,
    ack_now: bool,
    last_advertised_rwnd: u32,
}

fn serial_newer(a: u32, b: u32, mask: u32) -> bool {
    let d = a.wrapping_sub(b) & mask;
    d != 0 && d <= mask / 2
}

impl Receiver {
    pub(crate) fn new(
        peer_initial_tsn: u32,
        buffer_limit: usize,
        max_message_size: usize,
        interleaving: bool,
    ) -> Self {
        Receiver {
            cumulative_tsn: (1u64 << 32) + u64::from(peer_initial_tsn) - 1,
            ranges: Vec::new(),
            duplicates: Vec::new(),
            fragments: BTreeMap::new(),
            partial: BTreeMap::new(),
            streams: HashMap::new(),
            ready: VecDeque::new(),
            stored_bytes: 0,
            buffer_limit,
            max_message_size,
            id_mask: if interleaving { u32::MAX } else { 0xFFFF },
            packets_since_ack: 0,
            ack_now: false,
            last_advertised_rwnd: buffer_limit.min(u32::MAX as usize) as u32,
        }
    }

    fn unwrap_tsn(&self, tsn: u32) -> u64 {
        let diff = i64::from(tsn.wrapping_sub(self.cumulative_tsn as u32) as i32);
        (self.cumulative_tsn as i64 + diff).max(0) as u64
    }

    /// The cumulative TSN, as it goes on the wire.
    pub(crate) fn cumulative_tsn(&self) -> u32 {
        self.cumulative_tsn as u32
    }

    /// Whether every TSN up to `tsn` (inclusive, serial) has been received.
    pub(crate) fn has_received_through(&self, tsn: u32) -> bool {
        self.unwrap_tsn(tsn) <= self.cumulative_tsn
    }

    /// The window we advertise: what is left of the receive buffer.
    pub(crate) fn rwnd(&self) -> u32 {
        self.buffer_limit
            .saturating_sub(self.stored_bytes)
            .min(u32::MAX as usize) as u32
    }

    /// Bytes held: fragments, messages waiting for order, messages not yet taken, and
    /// the bookkeeping of partial messages and streams.
    pub(crate) fn stored_bytes(&self) -> usize {
        self.stored_bytes
    }

    /// What the ordering state of the streams seen so far is charged: all that stays
    /// held once every message is delivered.
    #[cfg(test)]
    pub(crate) fn stream_state_bytes(&self) -> usize {
        self.streams.len() * STREAM_STATE_COST
    }

    fn is_received(&self, t: u64) -> bool {
        if t <= self.cumulative_tsn {
            return true;
        }
        let i = self.ranges.partition_point(|r| r.1 < t);
        self.ranges.get(i).is_some_and(|r| r.0 <= t)
    }

    /// Record `t` as received; false if it would need a gap range beyond the bound.
    fn mark_received(&mut self, t: u64) -> bool {
        if t == self.cumulative_tsn + 1 {
            self.cumulative_tsn = t;
            self.absorb_ranges();
            return true;
        }
        let i = self.ranges.partition_point(|r| r.1 + 1 < t);
        match self.ranges.get(i).copied() {
            Some((_, end)) if end + 1 == t => {
                self.ranges[i].1 = t;
                if let Some(&(next_start, next_end)) = self.ranges.get(i + 1) {
                    if next_start == t + 1 {
                        self.ranges[i].1 = next_end;
                        self.ranges.remove(i + 1);
                    }
                }
            }
            Some((start, _)) if start == t + 1 => self.ranges[i].0 = t,
            _ => {
                if self.ranges.len() >= MAX_GAP_RANGES {
                    return false;
                }
                self.ranges.insert(i, (t, t));
            }
        }
        true
    }

    fn absorb_ranges(&mut self) {
        let mut absorbed = 0;
        for r in &self.ranges {
            if r.0 > self.cumulative_tsn + 1 {
                break;
            }
            self.cumulative_tsn = self.cumulative_tsn.max(r.1);
            absorbed += 1;
        }
        self.ranges.drain(..absorbed);
    }

    /// Take one DATA or I-DATA chunk that came in a packet of `packet_len` bytes (the
    /// buffer its payload is a slice of).
    pub(crate) fn receive_data(
        &mut self,
        mut chunk: DataChunk,
        interleaved: bool,
        packet_len: usize,
    ) -> DataOutcome {
        let t = self.unwrap_tsn(chunk.tsn);
        if chunk.flags.immediate {
            self.ack_now = true;
        }
        if self.is_received(t) {
            if self.duplicates.len() < MAX_DUPLICATES {
                self.duplicates.push(chunk.tsn);
            }
            self.ack_now = true;
            return DataOutcome::Duplicate;
        }
        let cost = chunk.payload.len() + ENTRY_OVERHEAD;
        let highest = self.ranges.last().map_or(self.cumulative_tsn, |r| r.1);
        let fills_hole = t == self.cumulative_tsn + 1 || t < highest;
        let fits = self.stored_bytes + cost <= self.buffer_limit
            || (fills_hole
                && self.stored_bytes + cost
                    <= self.buffer_limit + hole_fill_slack(self.buffer_limit));
        let had_gaps = !self.ranges.is_empty();
        if !fits || t - self.cumulative_tsn > MAX_TSN_AHEAD || !self.mark_received(t) {
            self.ack_now = true;
            return DataOutcome::Dropped;
        }
        if had_gaps || !self.ranges.is_empty() {
            // Out of order, or filling a hole: tell the sender at once (RFC 9260 6.7).
            self.ack_now = true;
        }
        if packet_len > chunk.payload.len() + MAX_PINNED_SLACK {
            // A small payload must not keep a large packet alive while it waits.
            chunk.payload = Bytes::copy_from_slice(&chunk.payload);
        }
        let complete = if interleaved {
            self.reassemble_interleaved(chunk)
        } else {
            self.reassemble_by_tsn(t, chunk)
        };
        match complete {
            Ok(Some(assembled)) => {
                self.deliver(assembled);
                DataOutcome::Accepted
            }
            Ok(None) => DataOutcome::Accepted,
            Err(()) => DataOutcome::Oversized,
        }
    }

    fn reassemble_by_tsn(&mut self, t: u64, chunk: DataChunk) -> Result<Option<Assembled>, ()> {
        let f = chunk.flags;
        if f.beginning && f.ending {
            return self.whole(chunk).map(Some);
        }
        let same = |a: &Fragment| {
            a.stream_id == chunk.stream_id
                && a.unordered == f.unordered
                && (f.unordered || a.ssn == chunk.message_id)
        };
        let fragment = Fragment {
            stream_id: chunk.stream_id,
            ssn: chunk.message_id,
            ppid: chunk.ppid,
            beginning: f.beginning,
            ending: f.ending,
            unordered: f.unordered,
            payload: chunk.payload.clone(),
        };
        self.stored_bytes += fragment.payload.len() + ENTRY_OVERHEAD;
        self.fragments.insert(t, fragment);
        // Only an ending fragment, or one that fills a hole before later fragments, can
        // complete a message: in-order arrival costs one walk per message, not per chunk.
        if !f.ending && !self.fragments.contains_key(&(t + 1)) {
            return Ok(None);
        }
        let mut first = None;
        let mut expect = t;
        for (&k, frag) in self.fragments.range(..=t).rev() {
            if k != expect || !same(frag) || (k != t && frag.ending) {
                break;
            }
            if frag.beginning {
                first = Some(k);
                break;
            }
            expect -= 1;
        }
        let Some(first) = first else { return Ok(None) };
        let mut last = None;
        for (expect, (&k, frag)) in (t..).zip(self.fragments.range(t..)) {
            if k != expect || !same(frag) || (k != t && frag.beginning) {
                break;
            }
            if frag.ending {
                last = Some(k);
                break;
            }
        }
        let Some(last) = last else { return Ok(None) };
        let total: usize = self
            .fragments
            .range(first..=last)
            .map(|(_, f)| f.payload.len())
            .sum();
        if total > self.max_message_size {
            return Err(());
        }
        let mut data = BytesMut::with_capacity(total);
        let mut ppid = 0;
        for k in first..=last {
            if let Some(frag) = self.fragments.remove(&k) {
                if k == first {
                    ppid = frag.ppid;
                }
                data.extend_from_slice(&frag.payload);
                self.stored_bytes = self.stored_bytes.saturating_sub(ENTRY_OVERHEAD);
            }
        }
        // The fragments' bytes now belong to the message.
        self.stored_bytes += ENTRY_OVERHEAD;
        Ok(Some(Assembled {
            message_id: chunk.message_id,
            message: ReceivedMessage {
                stream_id: chunk.stream_id,
                ppid,
                data: data.freeze(),
                unordered: f.unordered,
            },
        }))
    }

    fn whole(&mut self, chunk: DataChunk) -> Result<Assembled, ()> {
        if chunk.payload.len() > self.max_message_size {
            return Err(());
        }
        self.stored_bytes += chunk.payload.len() + ENTRY_OVERHEAD;
        Ok(Assembled {
            message_id: chunk.message_id,
            message: ReceivedMessage {
                stream_id: chunk.stream_id,
                ppid: chunk.ppid,
                data: chunk.payload,
                unordered: chunk.flags.unordered,
            },
        })
    }

    fn reassemble_interleaved(&mut self, chunk: DataChunk) -> Result<Option<Assembled>, ()> {
        let f = chunk.flags;
        if f.beginning && f.ending {
            return self.whole(chunk).map(Some);
        }
        let key = (chunk.stream_id, f.unordered, chunk.message_id);
        if self.is_skipped(chunk.stream_id, f.unordered, chunk.message_id) {
            // A late fragment of a message the sender abandoned.
            return Ok(None);
        }
        let fsn = if f.beginning { 0 } else { chunk.fragment_seq };
        let max = self.max_message_size;
        if !self.partial.contains_key(&key) {
            self.stored_bytes += MAP_NODE_COST;
        }
        let partial = self.partial.entry(key).or_default();
        let beyond_end = partial.last_fsn.is_some_and(|l| fsn > l);
        let end_before_others = f.ending && partial.fragments.range(fsn..).next().is_some();
        if beyond_end || end_before_others || partial.fragments.contains_key(&fsn) {
            // Inconsistent fragment numbering: the TSN stays acknowledged, the bytes go.
            return Ok(None);
        }
        if f.beginning {
            partial.ppid = chunk.ppid;
        }
        if f.ending {
            partial.last_fsn = Some(fsn);
        }
        let len = chunk.payload.len();
        partial.bytes += len;
        partial.fragments.insert(fsn, chunk.payload);
        self.stored_bytes += len + ENTRY_OVERHEAD;
        if partial.bytes > max {
            return Err(());
        }
        let complete = partial
            .last_fsn
            .is_some_and(|l| partial.fragments.len() as u64 == u64::from(l) + 1);
        if !complete {
            return Ok(None);
        }
        let Some(partial) = self.partial.remove(&key) else {
            return Ok(None);
        };
        let mut data = BytesMut::with_capacity(partial.bytes);
        for payload in partial.fragments.values() {
            data.extend_from_slice(payload);
        }
        // The fragments' bytes now belong to the message; their bookkeeping goes.
        self.stored_bytes = self
            .stored_bytes
            .saturating_sub(partial.bookkeeping())
            .saturating_add(ENTRY_OVERHEAD);
        Ok(Some(Assembled {
            message_id: chunk.message_id,
            message: ReceivedMessage {
                stream_id: chunk.stream_id,
                ppid: partial.ppid,
                data: data.freeze(),
                unordered: f.unordered,
            },
        }))
    }

    #[cfg(test)]
    pub(crate) fn debug_dump(&self) -> String {
        format!(
            "partial {:?} fragments {:?} streams {:?}",
            self.partial
                .iter()
                .map(|(k, p)| (k, p.fragments.keys().collect::<Vec<_>>(), p.last_fsn))
                .collect::<Vec<_>>(),
            self.fragments.keys().collect::<Vec<_>>(),
            self.streams
                .iter()
                .map(|(k, s)| (
                    k,
                    s.next_id,
                    s.pending.keys().collect::<Vec<_>>(),
                    s.unordered_skipped
                ))
                .collect::<Vec<_>>()
        )
    }

    /// Whether an I-FORWARD-TSN already skipped this message (or, ordered, it is older
    /// than the next one expected).
    fn is_skipped(&self, stream_id: u16, unordered: bool, mid: u32) -> bool {
        let Some(stream) = self.streams.get(&stream_id) else {
            return false;
        };
        let mask = self.id_mask;
        if unordered {
            stream
                .unordered_skipped
                .is_some_and(|last| !serial_newer(mid, last, mask))
        } else {
            serial_newer(stream.next_id, mid, mask)
        }
    }

    /// Hand a whole message on: at once if unordered, else in SSN/MID order per stream.
    fn deliver(&mut self, a: Assembled) {
        if a.message.unordered {
            self.ready.push_back(a.message);
            return;
        }
        let mask = self.id_mask;
        if !self.streams.contains_key(&a.message.stream_id) {
            // Charged even past the buffer: the chunk that brought it had to fit first.
            self.stored_bytes += STREAM_STATE_COST;
        }
        let stream = self.streams.entry(a.message.stream_id).or_default();
        if a.message_id == stream.next_id {
            self.ready.push_back(a.message);
            stream.next_id = stream.next_id.wrapping_add(1) & mask;
            let had_pending = !stream.pending.is_empty();
            while let Some(m) = stream.pending.remove(&stream.next_id) {
                self.ready.push_back(m);
                stream.next_id = stream.next_id.wrapping_add(1) & mask;
            }
            if had_pending && stream.pending.is_empty() {
                self.stored_bytes = self.stored_bytes.saturating_sub(MAP_NODE_COST);
            }
        } else if serial_newer(a.message_id, stream.next_id, mask) {
            if stream.pending.is_empty() {
                self.stored_bytes += MAP_NODE_COST;
            }
            if let Some(old) = stream.pending.insert(a.message_id, a.message) {
                // The same id twice (a confused peer): the first copy's bytes go.
                self.stored_bytes = self
                    .stored_bytes
                    .saturating_sub(old.data.len() + ENTRY_OVERHEAD);
            }
        } else {
            // An old message id: a confused peer. Release its bytes.
            self.stored_bytes = self
                .stored_bytes
                .saturating_sub(a.message.data.len() + ENTRY_OVERHEAD);
        }
    }

    /// The next whole message; it keeps its share of the buffer until [`Receiver::release`].
    pub(crate) fn next_ready(&mut self) -> Option<ReceivedMessage> {
        self.ready.pop_front()
    }

    /// The application took a message of `len` bytes: free its share of the buffer, and
    /// announce the larger window if it grew by a quarter of the buffer.
    pub(crate) fn release(&mut self, len: usize) {
        self.stored_bytes = self.stored_bytes.saturating_sub(len + ENTRY_OVERHEAD);
        if self.rwnd()
            >= self
                .last_advertised_rwnd
                .saturating_add(self.window_update_step())
        {
            self.ack_now = true;
        }
    }

    fn window_update_step(&self) -> u32 {
        (self.buffer_limit / 4).min(u32::MAX as usize) as u32
    }

    /// FORWARD-TSN / I-FORWARD-TSN: move the cumulative point, drop what was skipped,
    /// and deliver what waited behind skipped ordered messages. `streams` holds
    /// (stream, unordered, last skipped SSN/MID).
    pub(crate) fn forward_tsn(&mut self, new_cumulative_tsn: u32, streams: &[(u16, bool, u32)]) {
        self.ack_now = true;
        let t = self.unwrap_tsn(new_cumulative_tsn);
        if t > self.cumulative_tsn {
            if t - self.cumulative_tsn > MAX_TSN_AHEAD {
                return;
            }
            self.cumulative_tsn = t;
            self.ranges.retain(|r| r.1 > t);
            self.absorb_ranges();
        }
        // Fragments at or below the sender's new point belong to abandoned messages and
        // can never complete. Fragments the new point merely let us absorb (received
        // after a skipped hole) are live: keep them.
        let keep = self.fragments.split_off(&(t + 1));
        let dropped: usize = self.fragments.values().map(Fragment::cost).sum();
        self.fragments = keep;
        self.stored_bytes = self.stored_bytes.saturating_sub(dropped);
        self.drop_orphan_fragments();
        let mask = self.id_mask;
        for &(stream_id, unordered, id) in streams {
            let id = id & mask;
            // I-DATA: drop partial messages up to the skipped MID.
            let stale: Vec<_> = self
                .partial
                .range((stream_id, unordered, 0)..=(stream_id, unordered, u32::MAX))
                .filter(|(k, _)| !serial_newer(k.2, id, mask))
                .map(|(k, _)| *k)
                .collect();
            for k in stale {
                if let Some(p) = self.partial.remove(&k) {
                    self.stored_bytes = self.stored_bytes.saturating_sub(p.bytes + p.bookkeeping());
                }
            }
            if !self.streams.contains_key(&stream_id) {
                if self.stored_bytes + STREAM_STATE_COST > self.buffer_limit {
                    // No room for the state of yet another stream: a peer naming many
                    // streams it never used cannot grow the table past the buffer.
                    continue;
                }
                self.stored_bytes += STREAM_STATE_COST;
            }
            let stream = self.streams.entry(stream_id).or_default();
            if unordered {
                if mask == u32::MAX {
                    stream.unordered_skipped = Some(id);
                }
                continue;
            }
            if !serial_newer(id.wrapping_add(1) & mask, stream.next_id, mask) {
                continue;
            }
            // Deliver what waited for the skipped ids, then continue after them.
            let waiting: Vec<u32> = stream
                .pending
                .keys()
                .copied()
                .filter(|k| !serial_newer(*k, id, mask))
                .collect();
            let had_pending = !stream.pending.is_empty();
            let mut sorted: Vec<u32> = waiting;
            sorted.sort_by_key(|k| k.wrapping_sub(stream.next_id) & mask);
            for k in sorted {
                if let Some(m) = stream.pending.remove(&k) {
                    self.ready.push_back(m);
                }
            }
            stream.next_id = id.wrapping_add(1) & mask;
            while let Some(m) = stream.pending.remove(&stream.next_id) {
                self.ready.push_back(m);
                stream.next_id = stream.next_id.wrapping_add(1) & mask;
            }
            if had_pending && stream.pending.is_empty() {
                self.stored_bytes = self.stored_bytes.saturating_sub(MAP_NODE_COST);
            }
        }
    }

    /// Drop fragments at or below the cumulative point that can no longer complete: every
    /// TSN there has arrived or was skipped, so a run that does not start with a first
    /// fragment, or breaks before reaching the cumulative point, lost part of its message.
    fn drop_orphan_fragments(&mut self) {
        while let Some((&first, f)) = self.fragments.first_key_value() {
            if first > self.cumulative_tsn {
                return;
            }
            let mut last = first;
            if f.beginning {
                for (expect, (&k, g)) in (first..).zip(self.fragments.range(first..)) {
                    if k != expect || (k != first && g.beginning) {
                        break;
                    }
                    last = k;
                    if g.ending {
                        break;
                    }
                }
                if last >= self.cumulative_tsn {
                    return; // A live partial message waiting for later TSNs.
                }
            }
            let tail = self.fragments.split_off(&(last + 1));
            let dropped: usize = self.fragments.values().map(Fragment::cost).sum();
            self.fragments = tail;
            self.stored_bytes = self.stored_bytes.saturating_sub(dropped);
        }
    }

    /// The peer reset its outgoing streams (our incoming ones): numbering restarts at 0.
    pub(crate) fn reset_streams(&mut self, streams: &[u16]) {
        for s in streams {
            if let Some(stream) = self.streams.remove(s) {
                let map = if stream.pending.is_empty() {
                    0
                } else {
                    MAP_NODE_COST
                };
                let freed: usize = stream
                    .pending
                    .values()
                    .map(|m| m.data.len() + ENTRY_OVERHEAD)
                    .sum();
                self.stored_bytes = self
                    .stored_bytes
                    .saturating_sub(freed + map + STREAM_STATE_COST);
            }
        }
    }

    /// Note one received packet that carried DATA; true if a SACK is due now.
    pub(crate) fn packet_with_data(&mut self) -> bool {
        self.packets_since_ack += 1;
        if self.packets_since_ack >= 2 {
            self.ack_now = true;
        }
        self.ack_now
    }

    /// Whether a SACK should go out at once.
    pub(crate) fn ack_due(&self) -> bool {
        self.ack_now
    }

    /// Whether data arrived that no SACK has covered yet.
    pub(crate) fn ack_pending(&self) -> bool {
        self.ack_now || self.packets_since_ack > 0
    }

    /// Ask for a SACK at once (delayed-ack timer expiry, SHUTDOWN, ...).
    pub(crate) fn request_ack(&mut self) {
        self.ack_now = true;
    }

    /// Build a SACK of at most `max_len` bytes (gap blocks and duplicates beyond that are
    /// left out) and reset the acknowledgement schedule.
    pub(crate) fn build_sack(&mut self, max_len: usize) -> Sack {
        self.ack_now = false;
        self.packets_since_ack = 0;
        let a_rwnd = self.rwnd();
        self.last_advertised_rwnd = a_rwnd;
        let cum = self.cumulative_tsn;
        let room = max_len.saturating_sub(16) / 4;
        let mut duplicate_tsns = std::mem::take(&mut self.duplicates);
        duplicate_tsns.truncate(room / 4);
        let max_gaps = room - duplicate_tsns.len();
        let gap_blocks = self
            .ranges
            .iter()
            .take(max_gaps)
            .take_while(|r| r.1 - cum <= u64::from(u16::MAX))
            .map(|r| GapBlock {
                start: (r.0 - cum) as u16,
                end: (r.1 - cum) as u16,
            })
            .collect();
        Sack {
            cumulative_tsn_ack: cum as u32,
            a_rwnd,
            gap_blocks,
            duplicate_tsns,
        }
    }
}

#[derive(Debug)]
struct Assembled {
    message_id: u32,
    message: ReceivedMessage,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sctp::wire::DataFlags;

    fn chunk(tsn: u32, ssn: u32, flags: (bool, bool), data: &'static [u8]) -> DataChunk {
        DataChunk {
            tsn,
            stream_id: 1,
            message_id: ssn,
            fragment_seq: 0,
            ppid: 51,
            flags: DataFlags {
                beginning: flags.0,
                ending: flags.1,
                unordered: false,
                immediate: false,
            },
            payload: Bytes::from_static(data),
        }
    }

    #[test]
    fn gaps_duplicates_and_reassembly_across_tsn_wrap() {
        let start = u32::MAX - 1;
        let mut r = Receiver::new(start, 1 << 20, 1 << 18, false);
        // TSNs start-1 .. : B at MAX-1, middle at MAX (lost for now), E at 0; a whole at 2.
        assert_eq!(
            r.receive_data(chunk(start, 0, (true, false), b"he"), false, 100),
            DataOutcome::Accepted
        );
        assert_eq!(
            r.receive_data(chunk(0, 0, (false, true), b"o"), false, 100),
            DataOutcome::Accepted
        );
        assert_eq!(
            r.receive_data(chunk(2, 1, (true, true), b"x"), false, 100),
            DataOutcome::Accepted
        );
        let sack = r.build_sack(1200);
        assert_eq!(sack.cumulative_tsn_ack, start);
        assert_eq!(
            sack.gap_blocks,
            vec![GapBlock { start: 2, end: 2 }, GapBlock { start: 4, end: 4 }]
        );
        assert!(r.next_ready().is_none());
        // A duplicate is reported once.
        assert_eq!(
            r.receive_data(chunk(0, 0, (false, true), b"o"), false, 100),
            DataOutcome::Duplicate
        );
        // The hole fills: both messages come out, in SSN order.
        assert_eq!(
            r.receive_data(chunk(u32::MAX, 0, (false, false), b"ll"), false, 100),
            DataOutcome::Accepted
        );
        assert!(r.ack_due());
        let sack = r.build_sack(1200);
        assert_eq!(sack.cumulative_tsn_ack, 0);
        assert_eq!(sack.gap_blocks, vec![GapBlock { start: 2, end: 2 }]);
        assert_eq!(sack.duplicate_tsns, vec![0]);
        let m = r.next_ready().expect("first message");
        assert_eq!(&m.data[..], b"hello");
        assert_eq!(&r.next_ready().expect("second").data[..], b"x");
        r.release(5);
        r.release(1);
        assert_eq!(r.stored_bytes(), r.stream_state_bytes());
        assert_eq!(r.stream_state_bytes(), STREAM_STATE_COST);
    }

    fn fragment(tsn: u32, stream: u16, mid: u32, first: bool, payload: Bytes) -> DataChunk {
        DataChunk {
            tsn,
            stream_id: stream,
            message_id: mid,
            fragment_seq: 0,
            ppid: 53,
            flags: DataFlags {
                beginning: first,
                ending: false,
                unordered: false,
                immediate: false,
            },
            payload,
        }
    }

    /// The bound [`Association::max_received_bytes_held`] states, for a receiver here.
    fn bound(limit: usize) -> usize {
        limit + hole_fill_slack(limit) + MAX_CHUNK_CHARGE
    }

    /// A buffer full of later data (an ordered stream's messages waiting behind a large
    /// one, and the large one's own tail) never blocks the chunks that fill the large
    /// message's holes, even when they are far more than the old 64 KiB of slack.
    #[test]
    fn holes_below_a_full_buffer_are_always_filled() {
        const LIMIT: usize = 1 << 20;
        const PAYLOAD: usize = 1100;
        let mut r = Receiver::new(1, LIMIT, 1 << 18, false);
        let piece = |tsn: u32, mid: u32, first: bool, last: bool| {
            let mut c = fragment(tsn, 1, mid, first, Bytes::from(vec![tsn as u8; PAYLOAD]));
            c.flags.ending = last;
            c
        };
        // Message 0: TSNs 1..=200 (220 KB). Its first 100 fragments are lost.
        for tsn in 101..=200 {
            r.receive_data(piece(tsn, 0, false, tsn == 200), false, PAYLOAD + 28);
        }
        // Messages 1.. of 10 fragments each wait behind it until the buffer refuses more.
        let mut tsn = 201u32;
        let mut mid = 1u32;
        while r.stored_bytes() + PAYLOAD + ENTRY_OVERHEAD <= LIMIT {
            for k in 0..10 {
                r.receive_data(piece(tsn, mid, k == 0, k == 9), false, PAYLOAD + 28);
                tsn += 1;
            }
            mid += 1;
        }
        assert!(r.next_ready().is_none(), "all wait behind message 0");
        // The sender resends the 100 lost fragments (110 KB, over 64 KiB of slack).
        for t in 1..=100 {
            assert_eq!(
                r.receive_data(piece(t, 0, t == 1, false), false, PAYLOAD + 28),
                DataOutcome::Accepted,
                "fragment {t} of the message the buffer waits on"
            );
        }
        let first = r.next_ready().expect("message 0 completes");
        assert_eq!(first.data.len(), 200 * PAYLOAD);
        assert!(r.stored_bytes() <= bound(LIMIT));
        // And the messages behind it follow.
        assert!(r.next_ready().is_some());
        // New data past the highest TSN is still refused while the buffer is full.
        assert_eq!(
            r.receive_data(piece(tsn + 10, mid + 1, true, true), false, PAYLOAD + 28),
            DataOutcome::Dropped
        );
    }

    /// An attacker that opens a huge gap and then sends hole-filling fragments that never
    /// complete a message gets no further than the buffer and its hole-filling slack.
    #[test]
    fn hole_filling_fragments_that_never_complete_stay_bounded() {
        const LIMIT: usize = 64 * 1024;
        let mut r = Receiver::new(1, LIMIT, 1 << 18, false);
        let middle = |tsn: u32| fragment(tsn, 1, 0, false, Bytes::from(vec![9u8; 1000]));
        // The far end of a gap, then everything below it (TSN 1 stays missing).
        r.receive_data(middle(100_000), false, 1028);
        let mut dropped = 0;
        for tsn in 2..1000 {
            if r.receive_data(middle(tsn), false, 1028) == DataOutcome::Dropped {
                dropped += 1;
            }
            assert!(
                r.stored_bytes() <= bound(LIMIT),
                "{} at TSN {tsn}",
                r.stored_bytes()
            );
        }
        assert!(
            dropped > 800,
            "past the slack the fillers are refused: {dropped}"
        );
        assert!(r.next_ready().is_none());
    }

    #[test]
    fn a_small_stored_payload_never_keeps_its_packet_alive() {
        let mut r = Receiver::new(1, 1 << 20, 1 << 18, false);
        let packet = Bytes::from(vec![7u8; 16 * 1024]);
        // Ten bytes sliced out of a 16 KiB packet (the rest padding or other chunks).
        let small = packet.slice(100..110);
        r.receive_data(fragment(1, 1, 0, true, small.clone()), false, packet.len());
        let stored = &r.fragments.values().next().expect("stored").payload;
        assert_eq!(stored, &small);
        assert_ne!(stored.as_ptr(), small.as_ptr(), "copied out of the packet");
        assert_eq!(r.stored_bytes(), 10 + ENTRY_OVERHEAD);
        // A payload that is most of its packet stays a slice: no copy on the bulk path.
        let big = packet.slice(32..);
        r.receive_data(fragment(2, 1, 0, false, big.clone()), false, packet.len());
        let stored = &r.fragments.values().nth(1).expect("stored").payload;
        assert_eq!(stored.as_ptr(), big.as_ptr());
    }

    #[test]
    fn a_flood_of_tiny_fragments_is_charged_its_bookkeeping() {
        let limit = 64 * 1024;
        let mut r = Receiver::new(1, limit, 1 << 18, false);
        let mut accepted = 0usize;
        // One-byte first fragments that never end, each its own message, in TSN order
        // (so even the hole-filling slack applies to every one).
        for i in 0..100_000u32 {
            let chunk = fragment(1 + i, (i % 1000) as u16, i, true, Bytes::from_static(b"x"));
            if r.receive_data(chunk, false, 64) == DataOutcome::Accepted {
                accepted += 1;
            }
            assert!(r.stored_bytes() <= bound(limit));
        }
        assert_eq!(r.fragments.len(), accepted);
        assert!(
            accepted * (1 + ENTRY_OVERHEAD) <= bound(limit),
            "{accepted} fragments held"
        );
        // Interleaved: every fragment its own partial message, each with its own map.
        let mut r = Receiver::new(1, limit, 1 << 18, true);
        for i in 0..100_000u32 {
            let chunk = fragment(1 + i, (i % 1000) as u16, i, true, Bytes::from_static(b"x"));
            r.receive_data(chunk, true, 64);
            assert!(r.stored_bytes() <= bound(limit));
        }
        assert!(r.partial.len() * (1 + ENTRY_OVERHEAD + MAP_NODE_COST) <= bound(limit));
    }

    #[test]
    fn messages_waiting_for_order_on_many_streams_are_bounded() {
        let limit = 256 * 1024;
        let mut r = Receiver::new(1, limit, 1 << 18, false);
        // On every stream a whole message with a far-ahead SSN: it waits for order,
        // costing a stream state, a map node and an entry.
        for i in 0..65_535u32 {
            let mut chunk = fragment(1 + i, i as u16, 1000, true, Bytes::from_static(b"x"));
            chunk.flags.ending = true;
            r.receive_data(chunk, false, 64);
            assert!(r.stored_bytes() <= bound(limit));
        }
        let waiting: usize = r.streams.values().map(|s| s.pending.len()).sum();
        assert!(waiting > 0);
        assert!(
            waiting * (1 + ENTRY_OVERHEAD + MAP_NODE_COST + STREAM_STATE_COST) <= bound(limit),
            "{waiting} messages on {} streams",
            r.streams.len()
        );
        // A FORWARD-TSN naming every stream cannot grow the table past the buffer.
        let mut r = Receiver::new(1, limit, 1 << 18, false);
        let all: Vec<(u16, bool, u32)> = (0..=u16::MAX).map(|s| (s, false, 5)).collect();
        r.forward_tsn(0, &all);
        assert!(r.streams.len() * STREAM_STATE_COST <= limit);
        assert!(r.stored_bytes() <= limit);
    }
}
