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

    /// Bytes received so far.
    pub(crate) fn received(&self) -> usize {
        self.ranges.iter().map(|(s, e)| e - s).sum()
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
        // A fragment that disagrees with the incomplete message buffered under its
        // message_seq (injected junk, or junk's victim) replaces it when it is a whole
        // message or carries more than that message has received, so forged fragments
        // cannot hold a slot against the peer's messages.
        if let Some(held) = self.pending.get(&seq) {
            if !held.matches(header, epoch) {
                let whole = header.fragment_offset == 0 && body.len() == length;
                if held.complete() || (!whole && body.len() <= held.received()) {
                    return Placed::Dropped;
                }
                self.remove(seq);
            }
        }
        if !self.pending.contains_key(&seq) {
            // Make room by evicting messages further ahead: the message needed next wins.
            while self.buffered + length > MAX_BUFFERED {
                match self.pending.last_key_value() {
                    Some((&last, _)) if last > seq => self.remove(last),
                    _ => return Placed::Dropped,
                }
            }
            self.pending
                .insert(seq, Partial::new(header.msg_type, epoch, length));
            self.buffered += length;
            self.peak = self.peak.max(self.buffered);
        }
        let Some(partial) = self.pending.get_mut(&seq) else {
            return Placed::Dropped;
        };
        match partial.add(header.fragment_offset as usize, body) {
            Ok(()) => Placed::Taken,
            Err(_) => Placed::Dropped,
        }
    }

    fn remove(&mut self, seq: u16) {
        if let Some(p) = self.pending.remove(&seq) {
            self.buffered -= p.len();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u16, length: usize, offset: usize, fragment: usize) -> HandshakeHeader {
        HandshakeHeader {
            msg_type: 11,
            length: length as u32,
            message_seq: seq,
            fragment_offset: offset as u32,
            fragment_length: fragment as u32,
        }
    }

    #[test]
    fn ranges_merge_on_insert_in_any_order() {
        let mut p = Partial::new(11, 0, 100);
        for offset in [50, 10, 30, 0, 20, 40, 60, 70, 90, 80] {
            p.add(offset, &[7; 10]).expect("fits");
        }
        assert_eq!(p.range_count(), 1);
        assert!(p.complete());
        // Overlapping and adjacent pieces merge too.
        let mut p = Partial::new(11, 0, 100);
        p.add(0, &[1; 30]).expect("fits");
        p.add(60, &[1; 10]).expect("fits");
        p.add(20, &[1; 45]).expect("fits");
        assert_eq!(p.range_count(), 1);
        assert!(!p.complete());
        p.add(70, &[1; 30]).expect("fits");
        assert!(p.complete());
    }

    #[test]
    fn ranges_per_message_are_capped() {
        let mut p = Partial::new(11, 0, 1000);
        for i in 0..MAX_RANGES {
            p.add(i * 2, &[1]).expect("room");
        }
        assert_eq!(p.range_count(), MAX_RANGES);
        assert_eq!(p.add(900, &[1]), Err(Refused::TooManyRanges));
        // A fragment that merges with held ranges still fits.
        assert_eq!(p.add(1, &[1]), Ok(()));
        assert_eq!(p.range_count(), MAX_RANGES - 1);
    }

    #[test]
    fn empty_and_out_of_bounds_fragments_are_refused() {
        let mut p = Partial::new(11, 0, 10);
        assert_eq!(p.add(3, &[]), Err(Refused::Empty));
        assert_eq!(p.add(8, &[1, 2, 3]), Err(Refused::TooLarge));
        assert_eq!(p.add(usize::MAX, &[1]), Err(Refused::TooLarge));
        assert_eq!(p.range_count(), 0);
        // An empty message is complete at once.
        assert!(Partial::new(14, 0, 0).complete());
    }

    #[test]
    fn fragments_too_far_ahead_or_too_large_are_dropped() {
        let mut r = Reassembler::default();
        r.restart_at(3);
        assert_eq!(r.add(&header(2, 4, 0, 4), 0, &[1; 4]), Placed::Old);
        assert_eq!(
            r.add(&header(3 + MAX_AHEAD, 4, 0, 1), 0, &[1]),
            Placed::Dropped
        );
        assert_eq!(
            r.add(&header(4, MAX_MESSAGE + 1, 0, 1), 0, &[1]),
            Placed::Dropped
        );
        assert_eq!(r.add(&header(4, 10, 0, 0), 0, &[]), Placed::Dropped);
        assert_eq!(r.buffered(), 0);
        assert_eq!(
            r.add(&header(3 + MAX_AHEAD - 1, 4, 0, 1), 0, &[1]),
            Placed::Taken
        );
    }

    #[test]
    fn buffered_bytes_are_capped_and_released_in_order() {
        let mut r = Reassembler::default();
        // Every message_seq in the window claims the largest message with one byte.
        let mut dropped = 0;
        for seq in 0..MAX_AHEAD {
            if r.add(&header(seq, MAX_MESSAGE, 0, 1), 0, &[1]) == Placed::Dropped {
                dropped += 1;
            }
        }
        assert!(r.buffered() <= MAX_BUFFERED, "{}", r.buffered());
        assert_eq!(dropped, usize::from(MAX_AHEAD) - MAX_BUFFERED / MAX_MESSAGE);
        assert!(r.peak() <= MAX_BUFFERED);
        assert_eq!(r.pop(), None, "incomplete");
        // A fragment disagreeing with its message (another type or epoch) is dropped.
        let mut other = header(0, MAX_MESSAGE, 1, 1);
        other.msg_type = 12;
        assert_eq!(r.add(&other, 0, &[1]), Placed::Dropped);
        assert_eq!(
            r.add(&header(0, MAX_MESSAGE, 1, 1), 1, &[1]),
            Placed::Dropped
        );
        // Completing message 0 hands it out and frees its bytes.
        let rest = vec![2u8; MAX_MESSAGE - 1];
        assert_eq!(
            r.add(&header(0, MAX_MESSAGE, 1, rest.len()), 0, &rest),
            Placed::Taken
        );
        let before = r.buffered();
        let msg = r.pop().expect("complete");
        assert_eq!(
            (msg.seq, msg.body.len(), msg.body[0], msg.body[1]),
            (0, MAX_MESSAGE, 1, 2)
        );
        assert_eq!(r.buffered(), before - MAX_MESSAGE);
        assert_eq!(r.next_seq(), 1);
    }

    #[test]
    fn junk_cannot_hold_a_slot_against_the_real_message() {
        let mut r = Reassembler::default();
        // Forged one-byte fragments claim the four farthest slots with the largest message.
        for seq in 4..8 {
            assert_eq!(
                r.add(&header(seq, MAX_MESSAGE, 5, 1), 0, &[9]),
                Placed::Taken
            );
        }
        assert_eq!(r.buffered(), MAX_BUFFERED);
        // The real message 0 evicts the farthest junk and is handed out at once.
        assert_eq!(r.add(&header(0, 300, 0, 300), 0, &[1; 300]), Placed::Taken);
        assert_eq!(r.pop().map(|m| (m.seq, m.body.len())), Some((0, 300)));
        assert!(r.buffered() <= MAX_BUFFERED);
        // The real message 5 (another type and length) replaces the junk held for 5.
        let mut real = header(5, 200, 0, 200);
        real.msg_type = 12;
        assert_eq!(r.add(&real, 0, &[2; 200]), Placed::Taken);
        // ... but one more forged byte cannot take it back.
        assert_eq!(
            r.add(&header(5, MAX_MESSAGE, 9, 1), 0, &[9]),
            Placed::Dropped
        );
        for seq in 1..5 {
            assert_eq!(r.add(&header(seq, 10, 0, 10), 0, &[3; 10]), Placed::Taken);
        }
        let order: Vec<(u16, u8)> = std::iter::from_fn(|| r.pop())
            .map(|m| (m.seq, m.msg_type))
            .collect();
        assert_eq!(order, vec![(1, 11), (2, 11), (3, 11), (4, 11), (5, 12)]);
    }

    #[test]
    fn a_flood_of_tiny_fragments_costs_a_bounded_amount() {
        let mut r = Reassembler::default();
        for i in 0..100_000usize {
            let seq = (i % 8) as u16;
            let offset = (i * 7) % MAX_MESSAGE;
            let _ = r.add(&header(seq, MAX_MESSAGE, offset, 1), 0, &[1]);
            let _ = r.add(&header(seq, MAX_MESSAGE, offset, 0), 0, &[]);
        }
        assert!(r.peak() <= MAX_BUFFERED);
        for p in r.pending.values() {
            assert!(p.range_count() <= MAX_RANGES);
        }
    }
}
