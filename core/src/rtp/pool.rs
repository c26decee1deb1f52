//! Buffers the media path reuses, so that forwarding a packet allocates nothing once
//! warmed up (`benches/tests/zero_alloc.rs` counts it).
//!
//! - [`PayloadPool`]: received payloads are handed out as `Bytes` slices of one shared
//!   chunk. When the application has dropped every slice of the chunk (a forwarder drops
//!   each packet once it has sent it on), the next payload reuses the chunk's memory; a
//!   slice held longer only keeps its chunk alive, and a new chunk is taken.
//! - [`PacketQueue`]: protected packets waiting for `poll_transmit`, in buffers that go
//!   back to a free list once sent.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Size of one receive chunk: a dozen 1,200-byte payloads.
const CHUNK: usize = 16 * 1024;

/// Received payloads as slices of reused chunks.
#[derive(Debug, Default)]
pub(crate) struct PayloadPool {
    chunk: BytesMut,
}

impl PayloadPool {
    /// `data` as `Bytes`, copied into the current chunk.
    pub(crate) fn copy(&mut self, data: &[u8]) -> Bytes {
        if self.chunk.capacity() < data.len() {
            // Reclaims the chunk's memory in place when no slice of it is alive any
            // more (`BytesMut::reserve` on a unique buffer); otherwise a new chunk.
            self.chunk.reserve(CHUNK.max(data.len()));
        }
        self.chunk.extend_from_slice(data);
        self.chunk.split().freeze()
    }
}

/// Packets waiting to be sent, in reused buffers.
#[derive(Debug, Default)]
pub(crate) struct PacketQueue {
    queue: VecDeque<Vec<u8>>,
    free: Vec<Vec<u8>>,
}

/// Free buffers kept for reuse at most (a burst beyond this is freed once sent).
const MAX_FREE: usize = 64;

impl PacketQueue {
    /// Packets queued.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queue a copy of `packet`.
    pub(crate) fn push(&mut self, packet: &[u8]) {
        let mut buf = self.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        self.queue.push_back(buf);
    }

    /// Write the oldest packet into `dst` and return its length. A packet that does
    /// not fit `dst` stays queued (`None`).
    pub(crate) fn pop_into(&mut self, dst: &mut [u8]) -> Option<usize> {
        let n = self.queue.front()?.len();
        let slot = dst.get_mut(..n)?;
        let packet = self.queue.pop_front()?;
        slot.copy_from_slice(&packet);
        if self.free.len() < MAX_FREE {
            self.free.push(packet);
        }
        Some(n)
    }

    /// The queued packets, oldest first.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.queue.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_copies_and_survive_reuse() {
        let mut pool = PayloadPool::default();
        let kept = pool.copy(b"first");
        for i in 0..10_000u32 {
            let b = pool.copy(&i.to_be_bytes().repeat(300));
            assert_eq!(&b[..4], &i.to_be_bytes());
        }
        assert_eq!(&kept[..], b"first");
    }

    #[test]
    fn queue_is_fifo_and_keeps_what_does_not_fit() {
        let mut q = PacketQueue::default();
        q.push(b"abc");
        q.push(b"defgh");
        let mut small = [0u8; 4];
        assert_eq!(q.pop_into(&mut small), Some(3));
        assert_eq!(&small[..3], b"abc");
        assert_eq!(q.pop_into(&mut small), None);
        assert_eq!(q.len(), 1);
        let mut big = [0u8; 8];
        assert_eq!(q.pop_into(&mut big), Some(5));
        assert_eq!(&big[..5], b"defgh");
        assert_eq!(q.pop_into(&mut big), None);
    }
}
