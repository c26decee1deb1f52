//! SCTP packets and chunks on the wire (RFC 9260 section 3, with RFC 3758 FORWARD-TSN,
//! RFC 6525 RE-CONFIG and RFC 8260 I-DATA / I-FORWARD-TSN).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Source Port Number        |     Destination Port Number   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Verification Tag                         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Checksum                            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Chunk Type  | Chunk  Flags  |        Chunk Length           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \                          Chunk Value                          \
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! [`parse_packet`] checks the length and the checksum once; [`Chunks`] then yields one
//! [`Chunk`] at a time, checking each length before reading. Nothing here panics on any
//! input. Writing goes through [`PacketWriter`] into a caller's buffer.

mod chunk;
pub mod crc32c;
mod param;

use bytes::{BufMut, Bytes};

pub use chunk::{
    Chunk, ChunkType, DataChunk, DataFlags, ForwardTsnStream, GapBlock, IForwardTsnStream, Init,
    Sack,
};
pub use param::{ErrorCause, InitParams, RawParam, ReConfigParam, ReconfigResult};

/// Size of the SCTP common header.
pub const COMMON_HEADER_LEN: usize = 12;
/// Size of a chunk header (type, flags, length).
pub const CHUNK_HEADER_LEN: usize = 4;
/// Size of a DATA chunk before its user data.
pub const DATA_HEADER_LEN: usize = 16;
/// Size of an I-DATA chunk before its user data.
pub const IDATA_HEADER_LEN: usize = 20;

/// A packet or chunk that could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("truncated")]
    Truncated,
    /// The CRC32c does not match.
    #[error("bad checksum")]
    BadChecksum,
    /// A length field is smaller than its header or points past the end.
    #[error("bad length")]
    BadLength,
    /// A DATA or I-DATA chunk without user data (RFC 9260 6.2).
    #[error("data chunk without user data")]
    EmptyData,
    /// A chunk that must carry a parameter does not.
    #[error("missing parameter")]
    MissingParameter,
}

/// The SCTP common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    /// Sender's port.
    pub source_port: u16,
    /// Receiver's port.
    pub destination_port: u16,
    /// The receiver's verification tag (0 on a packet carrying INIT).
    pub verification_tag: u32,
}

/// Check a packet's length and checksum, and return its header and chunk iterator.
pub fn parse_packet(packet: &Bytes) -> Result<(CommonHeader, Chunks), WireError> {
    let head = packet
        .get(..COMMON_HEADER_LEN)
        .ok_or(WireError::Truncated)?;
    let stored = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if crc32c::packet_checksum(packet) != stored {
        return Err(WireError::BadChecksum);
    }
    let header = CommonHeader {
        source_port: u16::from_be_bytes([head[0], head[1]]),
        destination_port: u16::from_be_bytes([head[2], head[3]]),
        verification_tag: u32::from_be_bytes([head[4], head[5], head[6], head[7]]),
    };
    Ok((
        header,
        Chunks {
            data: packet.slice(COMMON_HEADER_LEN..),
        },
    ))
}

/// The chunks of one packet, parsed one at a time. After an error it yields nothing more.
#[derive(Debug, Clone)]
pub struct Chunks {
    data: Bytes,
}

impl Iterator for Chunks {
    type Item = Result<Chunk, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        match chunk::split_chunk(&self.data) {
            Ok((chunk_type, flags, value, consumed)) => {
                let value = self.data.slice(value);
                self.data = self.data.slice(consumed.min(self.data.len())..);
                Some(Chunk::parse(chunk_type, flags, value))
            }
            Err(e) => {
                self.data = Bytes::new();
                Some(Err(e))
            }
        }
    }
}

/// Round up to a multiple of four.
pub(crate) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds one packet in a caller's buffer: the common header, then whole chunks while
/// they fit, then the checksum in [`PacketWriter::finish`].
#[derive(Debug)]
pub struct PacketWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> PacketWriter<'a> {
    /// Start a packet; `None` if `buf` cannot hold even the common header.
    pub fn new(buf: &'a mut [u8], header: CommonHeader) -> Option<Self> {
        let mut head = buf.get_mut(..COMMON_HEADER_LEN)?;
        head.put_u16(header.source_port);
        head.put_u16(header.destination_port);
        head.put_u32(header.verification_tag);
        head.put_u32(0);
        Some(PacketWriter {
            buf,
            len: COMMON_HEADER_LEN,
        })
    }

    /// Bytes still free for chunks.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.len)
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no chunk has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == COMMON_HEADER_LEN
    }

    /// Append a chunk if it fits (with its padding); returns whether it was written.
    pub fn push(&mut self, chunk: &Chunk) -> bool {
        let need = padded(chunk.encoded_len());
        if need > self.remaining() {
            return false;
        }
        let Some(mut out) = self.buf.get_mut(self.len..self.len + need) else {
            return false;
        };
        chunk.write(&mut out);
        // Padding bytes are zero.
        out.put_bytes(0, out.len());
        self.len += need;
        true
    }

    /// Write the checksum and return the packet length.
    pub fn finish(self) -> usize {
        let Some(packet) = self.buf.get_mut(..self.len) else {
            return 0;
        };
        let crc = crc32c::packet_checksum(packet);
        if let Some(field) = packet.get_mut(8..12) {
            field.copy_from_slice(&crc.to_le_bytes());
        }
        self.len
    }
}

/// A whole packet as a vector, for tests and tools.
pub fn write_packet(header: CommonHeader, chunks: &[Chunk]) -> Vec<u8> {
    let total = COMMON_HEADER_LEN
        + chunks
            .iter()
            .map(|c| padded(c.encoded_len()))
            .sum::<usize>();
    let mut buf = vec![0u8; total];
    let Some(mut w) = PacketWriter::new(&mut buf, header) else {
        return Vec::new();
    };
    for c in chunks {
        w.push(c);
    }
    let n = w.finish();
    buf.truncate(n);
    buf
}

#[cfg(test)]
mod tests;
