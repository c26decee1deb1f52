//! Handshake message reassembly (RFC 6347 4.2.2 and 4.2.3): fragments are buffered by
//! message_seq and handed out as whole messages, strictly in message_seq order.
//!
//! Everything the peer can make us buffer is bounded: a fragment is taken only for a
//! message_seq at most [`MAX_AHEAD`] past the next expected one, a message may be at most
//! [`MAX_MESSAGE`] bytes, received ranges are merged on insert and capped per message, a
//! zero-length fragment of a non-empty message is ignored, and the whole reassembly buffer
//! (charged the full declared length of every message it started) stays under
//! [`MAX_BUFFERED`]. What does not fit is dropped and counted; the peer retransmits.

use std::collections::BTreeMap;

use crate::dtls::wire::HandshakeHeader;

/// Largest handshake message we reassemble.
pub(crate) const MAX_MESSAGE: usize = 16 * 1024;
/// How far past the next expected message_seq a fragment may be (our largest peer flight
/// has five messages).
pub(crate) const MAX_AHEAD: u16 = 8;
/// Most disjoint received ranges kept per message.
pub(crate) const MAX_RANGES: usize = 32;
/// Most bytes buffered for reassembly at once, charged by declared message length.
pub(crate) const MAX_BUFFERED: usize = 64 * 1024;

/// One message being reassembled.
#[derive(Debug)]
pub(crate) struct Partial {
    msg_type: u8,
    epoch: u16,
    data: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and non-adjacent (merged on insert).
    ranges: Vec<(usize, usize)>,
}

/// Why a fragment was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Larger than [`MAX_MESSAGE`], or the fragment lies outside the declared length.
    TooLarge,
    /// Zero-length fragment of a non-empty message: carries nothing.
    Empty,
    /// Too many disjoint ranges for one message.
    TooManyRanges,
}

impl Partial {
    /// Start a message of `length` bytes.
    pub(crate) fn new(msg_type: u8, epoch: u16, length: usize) -> Partial {
        Partial {
            msg_type,
            epoch,
            data: vec![0; length],
            ranges: Vec::new(),
        }
    }

    /// The declared length (what this message is charged).
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether `header` (of a record in `epoch`) belongs to this message.
    pub(crate) fn matches(&self, header: &HandshakeHeader, epoch: u16) -> bool {
        self.msg_type == header.msg_type
            && self.data.len() == header.length as usize
            && self.epoch == epoch
    }

    /// Copy a fragment in and merge its range with the ranges already held.
    pub(crate) fn add(&mut self, offset: usize, bytes: &[u8]) -> Result<(), Refused> {
        if bytes.is_empty() && !self.data.is_empty() {
            return Err(Refused::Empty);
        }
        let end = offset.checked_add(bytes.len()).ok_or(Refused::TooLarge)?;
        let dst = self.data.get_mut(offset..end).ok_or(Refused::TooLarge)?;
        // Where the new range goes, and which held ranges it touches or overlaps.
        let first = self.ranges.partition_point(|&(_, e)| e < offset);
        let last = self.ranges.partition_point(|&(s, _)| s <= end);
        if first == last && self.ranges.len() >= MAX_RANGES {
            return Err(Refused::TooManyRanges);
        }
        dst.copy_from_slice(bytes);
        let (mut start, mut stop) = (offset, end);
        if first < last {
            if let (Some(&(s, _)), Some(&(_, e))) =
                (self.ranges.get(first), self.ranges.get(last - 1))
            {
                start = start.min(s);
                stop = stop.max(e);
            }
        }
        self.ranges.splice(first..last, [(start, stop)]);
        Ok(())
    }

    /// Whether every byte has arrived.
    pub(crate) fn complete(&self) -> bool {
        self.data.is_empty() || self.ranges.first() == Some(&(0, self.data.len()))
    }

    /// Number of disjoint ranges held (for tests).
    #[cfg(test)]
    pub(crate) fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The reassembled bytes.
    pub(crate) fn into_data(self) -> Vec<u8> {
        self.data
    }
}

/// A whole handshake message, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// Raw handshake type.
    pub msg_type: u8,
    /// message_seq.
    pub seq: u16,
    /// Epoch of the records that carried it.
    pub epoch: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// What became of a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Buffered (or completed a message now ready in order).
    Taken,
    /// Its message_seq is below the next expected one: part of a message already handled.
    Old,
    /// Dropped: too far ahead, too large, inconsistent, empty, or over a bound.
    Dropped,
}

/// In-order reassembly of the peer's handshake messages.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    next_seq: u16,
    pending: BTreeMap<u16, Partial>,
    buffered: usize,
    peak: usize,
}

impl Reassembler {
    /// The next message_seq we will hand out.
    pub(crate) fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Set the next expected message_seq (the server, once it commits to a ClientHello),
    /// forgetting anything buffered.
    pub(crate) fn restart_at(&mut self, seq: u16) {
        self.next_seq = seq;
        self.clear();
    }

    /// Forget everything buffered.
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.buffered = 0;
    }

    /// Bytes buffered now (charged by declared message length).
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Largest `buffered()` ever reached.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    /// Take one fragment carried in `epoch`.
    pub(crate) fn add(&mut self, header: &HandshakeHeader, epoch: u16, body: &[u8]) -> Placed {
        let seq = header.message_seq;
        if seq < self.next_seq {
            return Placed::Old;
        }
        if seq - self.next_seq >= MAX_AHEAD || header.length as usize > MAX_MESSAGE {
            return Placed::Dropped;
        }
        let length = header.length as usize;
        if body.is_empty() && length > 0 {
            return Placed::Dropped;
        }
        if !self.pending.contains_key(&seq) {
            if self.buffered + length > MAX_BUFFERED {
                return Placed::Dropped;
            }
            self.pending
                .insert(seq, Partial::new(header.msg_type, epoch, length));
            self.buffered += length;
            self.peak = self.peak.max(self.buffered);
        }
        let Some(partial) = self.pending.get_mut(&seq) else {
            return Placed::Dropped;
        };
        if !partial.matches(header, epoch) {
            return Placed::Dropped;
        }
        match partial.add(header.fragment_offset as usize, body) {
            Ok(()) => Placed::Taken,
            Err(_) => Placed::Dropped,
        }
    }

    /// The next message, if it is complete.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        let seq = self.next_seq;
        if !self.pending.get(&seq)?.complete() {
            return None;
        }
        let partial = self.pending.remove(&seq)?;
        self.buffered -= partial.len();
        self.next_seq = seq.wrapping_add(1);
        Some(Message {
            msg_type: partial.msg_type,
            seq,
            epoch: partial.epoch,
            body: partial.into_data(),
        })
    }
}
