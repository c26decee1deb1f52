//! The chunk types: DATA, INIT, INIT-ACK, SACK, HEARTBEAT(-ACK), ABORT, SHUTDOWN(-ACK,
//! -COMPLETE), ERROR, COOKIE-ECHO/ACK, I-DATA, RE-CONFIG, FORWARD-TSN, I-FORWARD-TSN, and
//! unknown chunks kept whole so the receiver can act on their type's high bits.

use bytes::{Buf, BufMut, Bytes};

use super::param::{kind, tlv_len, write_tlv, ErrorCause, InitParams, ReConfigParam, Tlvs};
use super::{WireError, CHUNK_HEADER_LEN, DATA_HEADER_LEN, IDATA_HEADER_LEN};

/// Chunk type numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkType(pub u8);

impl ChunkType {
    /// DATA.
    pub const DATA: ChunkType = ChunkType(0);
    /// INIT.
    pub const INIT: ChunkType = ChunkType(1);
    /// INIT ACK.
    pub const INIT_ACK: ChunkType = ChunkType(2);
    /// SACK.
    pub const SACK: ChunkType = ChunkType(3);
    /// HEARTBEAT.
    pub const HEARTBEAT: ChunkType = ChunkType(4);
    /// HEARTBEAT ACK.
    pub const HEARTBEAT_ACK: ChunkType = ChunkType(5);
    /// ABORT.
    pub const ABORT: ChunkType = ChunkType(6);
    /// SHUTDOWN.
    pub const SHUTDOWN: ChunkType = ChunkType(7);
    /// SHUTDOWN ACK.
    pub const SHUTDOWN_ACK: ChunkType = ChunkType(8);
    /// ERROR.
    pub const ERROR: ChunkType = ChunkType(9);
    /// COOKIE ECHO.
    pub const COOKIE_ECHO: ChunkType = ChunkType(10);
    /// COOKIE ACK.
    pub const COOKIE_ACK: ChunkType = ChunkType(11);
    /// SHUTDOWN COMPLETE.
    pub const SHUTDOWN_COMPLETE: ChunkType = ChunkType(14);
    /// I-DATA (RFC 8260).
    pub const I_DATA: ChunkType = ChunkType(0x40);
    /// RE-CONFIG (RFC 6525).
    pub const RE_CONFIG: ChunkType = ChunkType(0x82);
    /// FORWARD-TSN (RFC 3758).
    pub const FORWARD_TSN: ChunkType = ChunkType(0xC0);
    /// I-FORWARD-TSN (RFC 8260).
    pub const I_FORWARD_TSN: ChunkType = ChunkType(0xC2);
}

/// Flags of DATA and I-DATA chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataFlags {
    /// E: last fragment of a message.
    pub ending: bool,
    /// B: first fragment of a message.
    pub beginning: bool,
    /// U: unordered.
    pub unordered: bool,
    /// I: the receiver should SACK at once (RFC 7053).
    pub immediate: bool,
}

impl DataFlags {
    fn from_bits(b: u8) -> Self {
        DataFlags {
            ending: b & 1 != 0,
            beginning: b & 2 != 0,
            unordered: b & 4 != 0,
            immediate: b & 8 != 0,
        }
    }

    fn bits(self) -> u8 {
        u8::from(self.ending)
            | u8::from(self.beginning) << 1
            | u8::from(self.unordered) << 2
            | u8::from(self.immediate) << 3
    }
}

/// A DATA or I-DATA chunk, in one shape.
///
/// For DATA, `message_id` is the 16-bit stream sequence number and `fragment_seq` is 0.
/// For I-DATA, `message_id` is the 32-bit MID; the wire carries the PPID on the first
/// fragment and the fragment sequence number (FSN) on the others, so `ppid` is 0 on
/// non-first fragments and `fragment_seq` is 0 on the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChunk {
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream_id: u16,
    /// SSN (DATA) or MID (I-DATA).
    pub message_id: u32,
    /// FSN (I-DATA, non-first fragments); 0 otherwise.
    pub fragment_seq: u32,
    /// Payload protocol identifier.
    pub ppid: u32,
    /// B, E, U, I flags.
    pub flags: DataFlags,
    /// User data (never empty on the wire).
    pub payload: Bytes,
}

/// A gap ack block: TSNs `cumulative + start ..= cumulative + end` were received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapBlock {
    /// Offset of the first TSN of the block from the cumulative TSN ack.
    pub start: u16,
    /// Offset of the last TSN of the block.
    pub end: u16,
}

/// A SACK chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sack {
    /// Cumulative TSN ack.
    pub cumulative_tsn_ack: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Gap ack blocks.
    pub gap_blocks: Vec<GapBlock>,
    /// TSNs received more than once since the last SACK.
    pub duplicate_tsns: Vec<u32>,
}

/// The fixed part of INIT and INIT-ACK, with their parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// The tag the peer must put on every packet to the sender.
    pub initiate_tag: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Number of outbound streams the sender wants.
    pub outbound_streams: u16,
    /// Most inbound streams the sender accepts.
    pub inbound_streams: u16,
    /// The sender's first TSN.
    pub initial_tsn: u32,
    /// Variable parameters.
    pub params: InitParams,
}

/// A stream entry of FORWARD-TSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardTsnStream {
    /// Stream identifier.
    pub stream_id: u16,
    /// The largest SSN skipped on this stream.
    pub ssn: u16,
}

/// A stream entry of I-FORWARD-TSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IForwardTsnStream {
    /// Stream identifier.
    pub stream_id: u16,
    /// Whether the skipped message was unordered.
    pub unordered: bool,
    /// The largest MID skipped.
    pub message_id: u32,
}

/// One chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// DATA.
    Data(DataChunk),
    /// I-DATA.
    IData(DataChunk),
    /// INIT.
    Init(Init),
    /// INIT ACK.
    InitAck(Init),
    /// SACK.
    Sack(Sack),
    /// HEARTBEAT with its sender-specific heartbeat information.
    Heartbeat(Bytes),
    /// HEARTBEAT ACK echoing the heartbeat information.
    HeartbeatAck(Bytes),
    /// ABORT.
    Abort {
        /// T bit: the verification tag is the sender's own, reflected.
        reflected_tag: bool,
        /// Why.
        causes: Vec<ErrorCause>,
    },
    /// SHUTDOWN.
    Shutdown {
        /// Cumulative TSN ack.
        cumulative_tsn_ack: u32,
    },
    /// SHUTDOWN ACK.
    ShutdownAck,
    /// SHUTDOWN COMPLETE.
    ShutdownComplete {
        /// T bit.
        reflected_tag: bool,
    },
    /// ERROR.
    Error(Vec<ErrorCause>),
    /// COOKIE ECHO.
    CookieEcho(Bytes),
    /// COOKIE ACK.
    CookieAck,
    /// FORWARD-TSN.
    ForwardTsn {
        /// The new cumulative TSN.
        new_cumulative_tsn: u32,
        /// Ordered streams and their largest skipped SSN.
        streams: Vec<ForwardTsnStream>,
    },
    /// I-FORWARD-TSN.
    IForwardTsn {
        /// The new cumulative TSN.
        new_cumulative_tsn: u32,
        /// Streams and their largest skipped MID.
        streams: Vec<IForwardTsnStream>,
    },
    /// RE-CONFIG with one or two parameters.
    ReConfig(Vec<ReConfigParam>),
    /// Any other chunk, kept whole.
    Unknown {
        /// Chunk type; its two high bits say what to do with it.
        chunk_type: u8,
        /// Chunk flags.
        flags: u8,
        /// Chunk value.
        value: Bytes,
    },
}

/// Split the first chunk off `data`: type, flags, value range, bytes consumed (with padding).
pub(super) fn split_chunk(
    data: &[u8],
) -> Result<(u8, u8, std::ops::Range<usize>, usize), WireError> {
    let head = data.get(..CHUNK_HEADER_LEN).ok_or(WireError::Truncated)?;
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    if len < CHUNK_HEADER_LEN || len > data.len() {
        return Err(WireError::BadLength);
    }
    Ok((head[0], head[1], CHUNK_HEADER_LEN..len, super::padded(len)))
}

fn need(v: &Bytes, n: usize) -> Result<(), WireError> {
    if v.len() < n {
        Err(WireError::Truncated)
    } else {
        Ok(())
    }
}

fn param_value(v: Bytes, wanted: u16) -> Result<Bytes, WireError> {
    for tlv in Tlvs::new(v) {
        let (t, value) = tlv?;
        if t == wanted {
            return Ok(value);
        }
    }
    Err(WireError::MissingParameter)
}

impl Chunk {
    /// Parse a chunk from its type, flags and value (without the 4-byte header).
    pub fn parse(chunk_type: u8, flags: u8, mut v: Bytes) -> Result<Chunk, WireError> {
        Ok(match ChunkType(chunk_type) {
            ChunkType::DATA => {
                need(&v, DATA_HEADER_LEN - CHUNK_HEADER_LEN + 1).map_err(|_| {
                    if v.len() == DATA_HEADER_LEN - CHUNK_HEADER_LEN {
                        WireError::EmptyData
                    } else {
                        WireError::Truncated
                    }
                })?;
                Chunk::Data(DataChunk {
                    tsn: v.get_u32(),
                    stream_id: v.get_u16(),
                    message_id: u32::from(v.get_u16()),
                    fragment_seq: 0,
                    ppid: v.get_u32(),
                    flags: DataFlags::from_bits(flags),
                    payload: v,
                })
            }
            ChunkType::I_DATA => {
                need(&v, IDATA_HEADER_LEN - CHUNK_HEADER_LEN + 1).map_err(|_| {
                    if v.len() == IDATA_HEADER_LEN - CHUNK_HEADER_LEN {
                        WireError::EmptyData
                    } else {
                        WireError::Truncated
                    }
                })?;
                let flags = DataFlags::from_bits(flags);
                let tsn = v.get_u32();
                let stream_id = v.get_u16();
                v.advance(2);
                let message_id = v.get_u32();
                let ppid_or_fsn = v.get_u32();
                let (ppid, fragment_seq) = if flags.beginning {
                    (ppid_or_fsn, 0)
                } else {
                    (0, ppid_or_fsn)
                };
                Chunk::IData(DataChunk {
                    tsn,
                    stream_id,
                    message_id,
                    fragment_seq,
                    ppid,
                    flags,
                    payload: v,
                })
            }
            ChunkType::INIT | ChunkType::INIT_ACK => {
                need(&v, 16)?;
                let init = Init {
                    initiate_tag: v.get_u32(),
                    a_rwnd: v.get_u32(),
                    outbound_streams: v.get_u16(),
                    inbound_streams: v.get_u16(),
                    initial_tsn: v.get_u32(),
                    params: InitParams::parse(v)?,
                };
                if chunk_type == ChunkType::INIT.0 {
                    Chunk::Init(init)
                } else {
                    Chunk::InitAck(init)
                }
            }
            ChunkType::SACK => {
                need(&v, 12)?;
                let cumulative_tsn_ack = v.get_u32();
                let a_rwnd = v.get_u32();
                let gaps = usize::from(v.get_u16());
                let dups = usize::from(v.get_u16());
                need(&v, gaps * 4 + dups * 4)?;
                let gap_blocks = (0..gaps)
                    .map(|_| GapBlock {
                        start: v.get_u16(),
                        end: v.get_u16(),
                    })
                    .collect();
                let duplicate_tsns = (0..dups).map(|_| v.get_u32()).collect();
                Chunk::Sack(Sack {
                    cumulative_tsn_ack,
                    a_rwnd,
                    gap_blocks,
                    duplicate_tsns,
                })
            }
            ChunkType::HEARTBEAT => Chunk::Heartbeat(param_value(v, kind::HEARTBEAT_INFO)?),
            ChunkType::HEARTBEAT_ACK => Chunk::HeartbeatAck(param_value(v, kind::HEARTBEAT_INFO)?),
            ChunkType::ABORT => Chunk::Abort {
                reflected_tag: flags & 1 != 0,
                causes: ErrorCause::parse_list(v)?,
            },
            ChunkType::SHUTDOWN => {
                need(&v, 4)?;
                Chunk::Shutdown {
                    cumulative_tsn_ack: v.get_u32(),
                }
            }
            ChunkType::SHUTDOWN_ACK => Chunk::ShutdownAck,
            ChunkType::SHUTDOWN_COMPLETE => Chunk::ShutdownComplete {
                reflected_tag: flags & 1 != 0,
            },
            ChunkType::ERROR => Chunk::Error(ErrorCause::parse_list(v)?),
            ChunkType::COOKIE_ECHO => Chunk::CookieEcho(v),
            ChunkType::COOKIE_ACK => Chunk::CookieAck,
            ChunkType::FORWARD_TSN => {
                need(&v, 4)?;
                let new_cumulative_tsn = v.get_u32();
                let mut streams = Vec::with_capacity(v.len() / 4);
                while v.remaining() >= 4 {
                    streams.push(ForwardTsnStream {
                        stream_id: v.get_u16(),
                        ssn: v.get_u16(),
                    });
                }
                Chunk::ForwardTsn {
                    new_cumulative_tsn,
                    streams,
                }
            }
            ChunkType::I_FORWARD_TSN => {
                need(&v, 4)?;
                let new_cumulative_tsn = v.get_u32();
                let mut streams = Vec::with_capacity(v.len() / 8);
                while v.remaining() >= 8 {
                    let stream_id = v.get_u16();
                    let flags = v.get_u16();
                    streams.push(IForwardTsnStream {
                        stream_id,
                        unordered: flags & 1 != 0,
                        message_id: v.get_u32(),
                    });
                }
                Chunk::IForwardTsn {
                    new_cumulative_tsn,
                    streams,
                }
            }
            ChunkType::RE_CONFIG => {
                let mut params = Vec::with_capacity(2);
                for tlv in Tlvs::new(v) {
                    let (t, value) = tlv?;
                    params.push(ReConfigParam::parse(t, value)?);
                }
                if params.is_empty() {
                    return Err(WireError::MissingParameter);
                }
                Chunk::ReConfig(params)
            }
            _ => Chunk::Unknown {
                chunk_type,
                flags,
                value: v,
            },
        })
    }

    /// The chunk type number.
    pub fn chunk_type(&self) -> u8 {
        match self {
            Chunk::Data(_) => ChunkType::DATA.0,
            Chunk::IData(_) => ChunkType::I_DATA.0,
            Chunk::Init(_) => ChunkType::INIT.0,
            Chunk::InitAck(_) => ChunkType::INIT_ACK.0,
            Chunk::Sack(_) => ChunkType::SACK.0,
            Chunk::Heartbeat(_) => ChunkType::HEARTBEAT.0,
            Chunk::HeartbeatAck(_) => ChunkType::HEARTBEAT_ACK.0,
            Chunk::Abort { .. } => ChunkType::ABORT.0,
            Chunk::Shutdown { .. } => ChunkType::SHUTDOWN.0,
            Chunk::ShutdownAck => ChunkType::SHUTDOWN_ACK.0,
            Chunk::ShutdownComplete { .. } => ChunkType::SHUTDOWN_COMPLETE.0,
            Chunk::Error(_) => ChunkType::ERROR.0,
            Chunk::CookieEcho(_) => ChunkType::COOKIE_ECHO.0,
            Chunk::CookieAck => ChunkType::COOKIE_ACK.0,
            Chunk::ForwardTsn { .. } => ChunkType::FORWARD_TSN.0,
            Chunk::IForwardTsn { .. } => ChunkType::I_FORWARD_TSN.0,
            Chunk::ReConfig(_) => ChunkType::RE_CONFIG.0,
            Chunk::Unknown { chunk_type, .. } => *chunk_type,
        }
    }

    fn flags(&self) -> u8 {
        match self {
            Chunk::Data(d) | Chunk::IData(d) => d.flags.bits(),
            Chunk::Abort { reflected_tag, .. } | Chunk::ShutdownComplete { reflected_tag } => {
                u8::from(*reflected_tag)
            }
            Chunk::Unknown { flags, .. } => *flags,
            _ => 0,
        }
    }

    /// Encoded length including the chunk header, excluding the final padding.
    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_LEN
            + match self {
                Chunk::Data(d) => DATA_HEADER_LEN - CHUNK_HEADER_LEN + d.payload.len(),
                Chunk::IData(d) => IDATA_HEADER_LEN - CHUNK_HEADER_LEN + d.payload.len(),
                Chunk::Init(i) | Chunk::InitAck(i) => 16 + i.params.encoded_len(),
                Chunk::Sack(s) => 12 + 4 * s.gap_blocks.len() + 4 * s.duplicate_tsns.len(),
                Chunk::Heartbeat(info) | Chunk::HeartbeatAck(info) => tlv_len(info.len()),
                Chunk::Abort { causes, .. } | Chunk::Error(causes) => ErrorCause::list_len(causes),
                Chunk::Shutdown { .. } => 4,
                Chunk::ShutdownAck | Chunk::ShutdownComplete { .. } | Chunk::CookieAck => 0,
                Chunk::CookieEcho(c) => c.len(),
                Chunk::ForwardTsn { streams, .. } => 4 + 4 * streams.len(),
                Chunk::IForwardTsn { streams, .. } => 4 + 8 * streams.len(),
                Chunk::ReConfig(params) => params.iter().map(|p| p.encoded_len()).sum(),
                Chunk::Unknown { value, .. } => value.len(),
            }
    }

    /// Write the chunk (header and value, without the final padding). `out` must have
    /// room for [`Chunk::encoded_len`] bytes.
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_u8(self.chunk_type());
        out.put_u8(self.flags());
        out.put_u16(self.encoded_len() as u16);
        match self {
            Chunk::Data(d) => {
                out.put_u32(d.tsn);
                out.put_u16(d.stream_id);
                out.put_u16(d.message_id as u16);
                out.put_u32(d.ppid);
                out.put_slice(&d.payload);
            }
            Chunk::IData(d) => {
                out.put_u32(d.tsn);
                out.put_u16(d.stream_id);
                out.put_u16(0);
                out.put_u32(d.message_id);
                out.put_u32(if d.flags.beginning {
                    d.ppid
                } else {
                    d.fragment_seq
                });
                out.put_slice(&d.payload);
            }
            Chunk::Init(i) | Chunk::InitAck(i) => {
                out.put_u32(i.initiate_tag);
                out.put_u32(i.a_rwnd);
                out.put_u16(i.outbound_streams);
                out.put_u16(i.inbound_streams);
                out.put_u32(i.initial_tsn);
                i.params.write(out);
            }
            Chunk::Sack(s) => {
                out.put_u32(s.cumulative_tsn_ack);
                out.put_u32(s.a_rwnd);
                out.put_u16(s.gap_blocks.len() as u16);
                out.put_u16(s.duplicate_tsns.len() as u16);
                for g in &s.gap_blocks {
                    out.put_u16(g.start);
                    out.put_u16(g.end);
                }
                s.duplicate_tsns.iter().for_each(|t| out.put_u32(*t));
            }
            Chunk::Heartbeat(info) | Chunk::HeartbeatAck(info) => {
                write_tlv(out, kind::HEARTBEAT_INFO, info)
            }
            Chunk::Abort { causes, .. } | Chunk::Error(causes) => {
                ErrorCause::write_list(causes, out)
            }
            Chunk::Shutdown { cumulative_tsn_ack } => out.put_u32(*cumulative_tsn_ack),
            Chunk::ShutdownAck | Chunk::ShutdownComplete { .. } | Chunk::CookieAck => {}
            Chunk::CookieEcho(c) => out.put_slice(c),
            Chunk::ForwardTsn {
                new_cumulative_tsn,
                streams,
            } => {
                out.put_u32(*new_cumulative_tsn);
                for s in streams {
                    out.put_u16(s.stream_id);
                    out.put_u16(s.ssn);
                }
            }
            Chunk::IForwardTsn {
                new_cumulative_tsn,
                streams,
            } => {
                out.put_u32(*new_cumulative_tsn);
                for s in streams {
                    out.put_u16(s.stream_id);
                    out.put_u16(u16::from(s.unordered));
                    out.put_u32(s.message_id);
                }
            }
            Chunk::ReConfig(params) => params.iter().for_each(|p| p.write(out)),
            Chunk::Unknown { value, .. } => out.put_slice(value),
        }
    }
}
