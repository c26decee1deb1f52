//! Type-length-value parameters: INIT/INIT-ACK parameters, RE-CONFIG parameters
//! (RFC 6525) and error causes. Each is a 16-bit type, a 16-bit length that counts the
//! 4-byte header, the value, and zero padding to a multiple of four.

use bytes::{Buf, BufMut, Bytes};

use super::{padded, WireError};

/// Parameter types used here.
pub(crate) mod kind {
    pub const HEARTBEAT_INFO: u16 = 1;
    pub const STATE_COOKIE: u16 = 7;
    pub const UNRECOGNIZED_PARAMETER: u16 = 8;
    pub const OUTGOING_RESET_REQUEST: u16 = 13;
    pub const INCOMING_RESET_REQUEST: u16 = 14;
    pub const SSN_TSN_RESET_REQUEST: u16 = 15;
    pub const RECONFIG_RESPONSE: u16 = 16;
    pub const ADD_OUTGOING_STREAMS: u16 = 17;
    pub const ADD_INCOMING_STREAMS: u16 = 18;
    pub const SUPPORTED_EXTENSIONS: u16 = 0x8008;
    pub const FORWARD_TSN_SUPPORTED: u16 = 0xC000;
}

/// Iterates over the TLVs of a value; stops after the first error.
pub(crate) struct Tlvs {
    data: Bytes,
}

impl Tlvs {
    pub(crate) fn new(data: Bytes) -> Self {
        Tlvs { data }
    }
}

impl Iterator for Tlvs {
    type Item = Result<(u16, Bytes), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.data.is_empty() {
            return None;
        }
        let Some(head) = self.data.get(..4) else {
            self.data = Bytes::new();
            return Some(Err(WireError::Truncated));
        };
        let tlv_type = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if len < 4 || len > self.data.len() {
            self.data = Bytes::new();
            return Some(Err(WireError::BadLength));
        }
        let value = self.data.slice(4..len);
        let next = padded(len).min(self.data.len());
        self.data = self.data.slice(next..);
        Some(Ok((tlv_type, value)))
    }
}

/// Write one TLV with its padding.
pub(crate) fn write_tlv(out: &mut impl BufMut, tlv_type: u16, value: &[u8]) {
    out.put_u16(tlv_type);
    out.put_u16((4 + value.len()) as u16);
    out.put_slice(value);
    out.put_bytes(0, padded(value.len()) - value.len());
}

/// Encoded size of one TLV with padding.
pub(crate) fn tlv_len(value_len: usize) -> usize {
    padded(4 + value_len)
}

/// A parameter kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawParam {
    /// Parameter type; its two high bits say what a receiver that does not know it does.
    pub param_type: u16,
    /// Parameter value without padding.
    pub value: Bytes,
}

/// An error cause in ABORT or ERROR (RFC 9260 3.3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCause {
    /// Cause code.
    pub code: u16,
    /// Cause-specific information.
    pub info: Bytes,
}

impl ErrorCause {
    /// Invalid stream identifier.
    pub const INVALID_STREAM: u16 = 1;
    /// Missing mandatory parameter.
    pub const MISSING_PARAMETER: u16 = 2;
    /// Stale cookie.
    pub const STALE_COOKIE: u16 = 3;
    /// Unrecognized chunk type.
    pub const UNRECOGNIZED_CHUNK: u16 = 6;
    /// Invalid mandatory parameter.
    pub const INVALID_PARAMETER: u16 = 7;
    /// No user data.
    pub const NO_USER_DATA: u16 = 9;
    /// User-initiated abort.
    pub const USER_ABORT: u16 = 12;
    /// Protocol violation.
    pub const PROTOCOL_VIOLATION: u16 = 13;

    pub(crate) fn parse_list(value: Bytes) -> Result<Vec<ErrorCause>, WireError> {
        Tlvs::new(value)
            .map(|r| r.map(|(code, info)| ErrorCause { code, info }))
            .collect()
    }

    pub(crate) fn list_len(causes: &[ErrorCause]) -> usize {
        causes.iter().map(|c| tlv_len(c.info.len())).sum()
    }

    pub(crate) fn write_list(causes: &[ErrorCause], out: &mut impl BufMut) {
        for c in causes {
            write_tlv(out, c.code, &c.info);
        }
    }
}

/// The variable parameters of INIT and INIT-ACK that matter over WebRTC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitParams {
    /// State cookie (INIT-ACK only).
    pub state_cookie: Option<Bytes>,
    /// Forward-TSN-Supported (RFC 3758).
    pub forward_tsn_supported: bool,
    /// Supported Extensions (RFC 5061): the chunk types the sender understands.
    pub supported_extensions: Option<Bytes>,
    /// Unrecognized Parameter reports (INIT-ACK only): the offending parameters, whole.
    pub unrecognized: Vec<Bytes>,
    /// Every other parameter, kept as it came.
    pub unknown: Vec<RawParam>,
}

impl InitParams {
    pub(crate) fn parse(value: Bytes) -> Result<Self, WireError> {
        let mut p = InitParams::default();
        for tlv in Tlvs::new(value) {
            let (param_type, value) = tlv?;
            match param_type {
                kind::STATE_COOKIE => p.state_cookie = Some(value),
                kind::FORWARD_TSN_SUPPORTED => p.forward_tsn_supported = true,
                kind::SUPPORTED_EXTENSIONS => p.supported_extensions = Some(value),
                kind::UNRECOGNIZED_PARAMETER => p.unrecognized.push(value),
                _ => p.unknown.push(RawParam { param_type, value }),
            }
        }
        Ok(p)
    }

    /// Whether the Supported Extensions parameter lists `chunk_type`.
    pub fn supports(&self, chunk_type: u8) -> bool {
        self.supported_extensions
            .as_ref()
            .is_some_and(|e| e.contains(&chunk_type))
    }

    pub(crate) fn encoded_len(&self) -> usize {
        self.state_cookie.as_ref().map_or(0, |c| tlv_len(c.len()))
            + if self.forward_tsn_supported { 4 } else { 0 }
            + self
                .supported_extensions
                .as_ref()
                .map_or(0, |e| tlv_len(e.len()))
            + self
                .unrecognized
                .iter()
                .map(|u| tlv_len(u.len()))
                .sum::<usize>()
            + self
                .unknown
                .iter()
                .map(|u| tlv_len(u.value.len()))
                .sum::<usize>()
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        if let Some(c) = &self.state_cookie {
            write_tlv(out, kind::STATE_COOKIE, c);
        }
        if self.forward_tsn_supported {
            write_tlv(out, kind::FORWARD_TSN_SUPPORTED, &[]);
        }
        if let Some(e) = &self.supported_extensions {
            write_tlv(out, kind::SUPPORTED_EXTENSIONS, e);
        }
        for u in &self.unrecognized {
            write_tlv(out, kind::UNRECOGNIZED_PARAMETER, u);
        }
        for u in &self.unknown {
            write_tlv(out, u.param_type, &u.value);
        }
    }
}

/// The result field of a Re-configuration Response (RFC 6525 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconfigResult(pub u32);

impl ReconfigResult {
    /// Nothing to do.
    pub const SUCCESS_NOTHING_TO_DO: ReconfigResult = ReconfigResult(0);
    /// Performed.
    pub const SUCCESS_PERFORMED: ReconfigResult = ReconfigResult(1);
    /// Denied.
    pub const DENIED: ReconfigResult = ReconfigResult(2);
    /// Wrong SSN.
    pub const ERROR_WRONG_SSN: ReconfigResult = ReconfigResult(3);
    /// A request is already in progress.
    pub const ERROR_REQUEST_IN_PROGRESS: ReconfigResult = ReconfigResult(4);
    /// Bad sequence number.
    pub const ERROR_BAD_SEQUENCE_NUMBER: ReconfigResult = ReconfigResult(5);
    /// In progress: the receiver will perform it later.
    pub const IN_PROGRESS: ReconfigResult = ReconfigResult(6);
}

/// A parameter of a RE-CONFIG chunk (RFC 6525 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReConfigParam {
    /// Outgoing SSN Reset Request: the sender resets its outgoing streams.
    OutgoingReset {
        /// This request's sequence number.
        request_seq: u32,
        /// The peer's request this one answers, if any.
        response_seq: u32,
        /// The last TSN the sender assigned before the reset.
        last_assigned_tsn: u32,
        /// Streams to reset; empty means all.
        streams: Vec<u16>,
    },
    /// Incoming SSN Reset Request: asks the peer to reset its outgoing streams.
    IncomingReset {
        /// This request's sequence number.
        request_seq: u32,
        /// Streams; empty means all.
        streams: Vec<u16>,
    },
    /// SSN/TSN Reset Request.
    SsnTsnReset {
        /// This request's sequence number.
        request_seq: u32,
    },
    /// Re-configuration Response.
    Response {
        /// The request this answers.
        response_seq: u32,
        /// The outcome.
        result: ReconfigResult,
        /// Sender's and receiver's next TSN (only for SSN/TSN reset).
        next_tsns: Option<(u32, u32)>,
    },
    /// Add Outgoing Streams Request.
    AddOutgoingStreams {
        /// This request's sequence number.
        request_seq: u32,
        /// Number of new streams.
        new_streams: u16,
    },
    /// Add Incoming Streams Request.
    AddIncomingStreams {
        /// This request's sequence number.
        request_seq: u32,
        /// Number of new streams.
        new_streams: u16,
    },
    /// A parameter type this implementation does not know.
    Unknown(RawParam),
}

fn streams_of(mut v: Bytes) -> Vec<u16> {
    let mut s = Vec::with_capacity(v.len() / 2);
    while v.remaining() >= 2 {
        s.push(v.get_u16());
    }
    s
}

impl ReConfigParam {
    pub(crate) fn parse(param_type: u16, mut v: Bytes) -> Result<Self, WireError> {
        let need = |v: &Bytes, n: usize| {
            if v.len() < n {
                Err(WireError::Truncated)
            } else {
                Ok(())
            }
        };
        Ok(match param_type {
            kind::OUTGOING_RESET_REQUEST => {
                need(&v, 12)?;
                ReConfigParam::OutgoingReset {
                    request_seq: v.get_u32(),
                    response_seq: v.get_u32(),
                    last_assigned_tsn: v.get_u32(),
                    streams: streams_of(v),
                }
            }
            kind::INCOMING_RESET_REQUEST => {
                need(&v, 4)?;
                ReConfigParam::IncomingReset {
                    request_seq: v.get_u32(),
                    streams: streams_of(v),
                }
            }
            kind::SSN_TSN_RESET_REQUEST => {
                need(&v, 4)?;
                ReConfigParam::SsnTsnReset {
                    request_seq: v.get_u32(),
                }
            }
            kind::RECONFIG_RESPONSE => {
                need(&v, 8)?;
                let response_seq = v.get_u32();
                let result = ReconfigResult(v.get_u32());
                let next_tsns = if v.len() >= 8 {
                    Some((v.get_u32(), v.get_u32()))
                } else {
                    None
                };
                ReConfigParam::Response {
                    response_seq,
                    result,
                    next_tsns,
                }
            }
            kind::ADD_OUTGOING_STREAMS | kind::ADD_INCOMING_STREAMS => {
                need(&v, 8)?;
                let request_seq = v.get_u32();
                let new_streams = v.get_u16();
                if param_type == kind::ADD_OUTGOING_STREAMS {
                    ReConfigParam::AddOutgoingStreams {
                        request_seq,
                        new_streams,
                    }
                } else {
                    ReConfigParam::AddIncomingStreams {
                        request_seq,
                        new_streams,
                    }
                }
            }
            _ => ReConfigParam::Unknown(RawParam {
                param_type,
                value: v,
            }),
        })
    }

    fn value_len(&self) -> usize {
        match self {
            ReConfigParam::OutgoingReset { streams, .. } => 12 + 2 * streams.len(),
            ReConfigParam::IncomingReset { streams, .. } => 4 + 2 * streams.len(),
            ReConfigParam::SsnTsnReset { .. } => 4,
            ReConfigParam::Response { next_tsns, .. } => {
                if next_tsns.is_some() {
                    16
                } else {
                    8
                }
            }
            ReConfigParam::AddOutgoingStreams { .. } | ReConfigParam::AddIncomingStreams { .. } => {
                8
            }
            ReConfigParam::Unknown(p) => p.value.len(),
        }
    }

    pub(crate) fn encoded_len(&self) -> usize {
        tlv_len(self.value_len())
    }

    pub(crate) fn write(&self, out: &mut impl BufMut) {
        let len = self.value_len();
        let param_type = match self {
            ReConfigParam::OutgoingReset { .. } => kind::OUTGOING_RESET_REQUEST,
            ReConfigParam::IncomingReset { .. } => kind::INCOMING_RESET_REQUEST,
            ReConfigParam::SsnTsnReset { .. } => kind::SSN_TSN_RESET_REQUEST,
            ReConfigParam::Response { .. } => kind::RECONFIG_RESPONSE,
            ReConfigParam::AddOutgoingStreams { .. } => kind::ADD_OUTGOING_STREAMS,
            ReConfigParam::AddIncomingStreams { .. } => kind::ADD_INCOMING_STREAMS,
            ReConfigParam::Unknown(p) => p.param_type,
        };
        out.put_u16(param_type);
        out.put_u16((4 + len) as u16);
        match self {
            ReConfigParam::OutgoingReset {
                request_seq,
                response_seq,
                last_assigned_tsn,
                streams,
            } => {
                out.put_u32(*request_seq);
                out.put_u32(*response_seq);
                out.put_u32(*last_assigned_tsn);
                streams.iter().for_each(|s| out.put_u16(*s));
            }
            ReConfigParam::IncomingReset {
                request_seq,
                streams,
            } => {
                out.put_u32(*request_seq);
                streams.iter().for_each(|s| out.put_u16(*s));
            }
            ReConfigParam::SsnTsnReset { request_seq } => out.put_u32(*request_seq),
            ReConfigParam::Response {
                response_seq,
                result,
                next_tsns,
            } => {
                out.put_u32(*response_seq);
                out.put_u32(result.0);
                if let Some((a, b)) = next_tsns {
                    out.put_u32(*a);
                    out.put_u32(*b);
                }
            }
            ReConfigParam::AddOutgoingStreams {
                request_seq,
                new_streams,
            }
            | ReConfigParam::AddIncomingStreams {
                request_seq,
                new_streams,
            } => {
                out.put_u32(*request_seq);
                out.put_u16(*new_streams);
                out.put_u16(0);
            }
            ReConfigParam::Unknown(p) => out.put_slice(&p.value),
        }
        out.put_bytes(0, padded(len) - len);
    }
}
