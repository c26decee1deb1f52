//! The Data Channel Establishment Protocol (RFC 8832) and the payload protocol
//! identifiers of RFC 8831.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Message Type |  Channel Type |            Priority           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Reliability Parameter                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Label Length          |       Protocol Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \                             Label                             \
//! \                            Protocol                           \
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! DATA_CHANNEL_ACK is the single byte `0x02`.

use bytes::{BufMut, Bytes, BytesMut};

/// Payload protocol identifiers (RFC 8831 8, IANA "SCTP Payload Protocol Identifiers").
pub mod ppid {
    /// WebRTC DCEP.
    pub const DCEP: u32 = 50;
    /// WebRTC String.
    pub const STRING: u32 = 51;
    /// WebRTC Binary Partial (deprecated): a non-final part of a binary message.
    pub const BINARY_PARTIAL: u32 = 52;
    /// WebRTC Binary.
    pub const BINARY: u32 = 53;
    /// WebRTC String Partial (deprecated): a non-final part of a string message.
    pub const STRING_PARTIAL: u32 = 54;
    /// WebRTC String Empty (one ignored byte on the wire).
    pub const STRING_EMPTY: u32 = 56;
    /// WebRTC Binary Empty (one ignored byte on the wire).
    pub const BINARY_EMPTY: u32 = 57;
}

const MESSAGE_OPEN: u8 = 0x03;
const MESSAGE_ACK: u8 = 0x02;
const OPEN_HEADER_LEN: usize = 12;

/// How a channel retransmits (the channel type's low bits and the reliability parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelReliability {
    /// Fully reliable.
    Reliable,
    /// Partially reliable: at most this many retransmissions.
    MaxRetransmits(u32),
    /// Partially reliable: give up after this many milliseconds.
    MaxLifetimeMs(u32),
}

/// A DATA_CHANNEL_OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelOpen {
    /// Whether messages are delivered in order.
    pub ordered: bool,
    /// Retransmission policy.
    pub reliability: ChannelReliability,
    /// Priority (RFC 8832: 128 below normal, 256 normal, 512 high, 1024 extra high).
    pub priority: u16,
    /// Channel label.
    pub label: String,
    /// Sub-protocol.
    pub protocol: String,
}

/// A DCEP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DcepMessage {
    /// DATA_CHANNEL_OPEN.
    Open(DataChannelOpen),
    /// DATA_CHANNEL_ACK.
    Ack,
}

/// A DCEP message that could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DcepError {
    /// Shorter than its header or its stated lengths.
    #[error("truncated DCEP message")]
    Truncated,
    /// Unknown message type.
    #[error("unknown DCEP message type {0}")]
    UnknownMessageType(u8),
    /// Unknown channel type.
    #[error("unknown channel type {0:#x}")]
    UnknownChannelType(u8),
    /// Label or protocol is not UTF-8.
    #[error("label or protocol is not UTF-8")]
    NotUtf8,
    /// Label or protocol longer than 65535 bytes (when writing).
    #[error("label or protocol too long")]
    TooLong,
}

impl DcepMessage {
    /// Parse a DCEP message (the payload of a PPID 50 message).
    pub fn parse(data: &[u8]) -> Result<Self, DcepError> {
        let (&kind, _) = data.split_first().ok_or(DcepError::Truncated)?;
        match kind {
            MESSAGE_ACK => Ok(DcepMessage::Ack),
            MESSAGE_OPEN => {
                let h = data.get(..OPEN_HEADER_LEN).ok_or(DcepError::Truncated)?;
                let channel_type = h[1];
                let priority = u16::from_be_bytes([h[2], h[3]]);
                let param = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                let label_len = usize::from(u16::from_be_bytes([h[8], h[9]]));
                let protocol_len = usize::from(u16::from_be_bytes([h[10], h[11]]));
                let rest = &data[OPEN_HEADER_LEN..];
                let label = rest.get(..label_len).ok_or(DcepError::Truncated)?;
                let protocol = rest
                    .get(label_len..label_len + protocol_len)
                    .ok_or(DcepError::Truncated)?;
                let reliability = match channel_type & 0x7F {
                    0x00 => ChannelReliability::Reliable,
                    0x01 => ChannelReliability::MaxRetransmits(param),
                    0x02 => ChannelReliability::MaxLifetimeMs(param),
                    _ => return Err(DcepError::UnknownChannelType(channel_type)),
                };
                Ok(DcepMessage::Open(DataChannelOpen {
                    ordered: channel_type & 0x80 == 0,
                    reliability,
                    priority,
                    label: String::from_utf8(label.to_vec()).map_err(|_| DcepError::NotUtf8)?,
                    protocol: String::from_utf8(protocol.to_vec())
                        .map_err(|_| DcepError::NotUtf8)?,
                }))
            }
            other => Err(DcepError::UnknownMessageType(other)),
        }
    }

    /// Encode the message.
    pub fn to_bytes(&self) -> Result<Bytes, DcepError> {
        match self {
            DcepMessage::Ack => Ok(Bytes::from_static(&[MESSAGE_ACK])),
            DcepMessage::Open(o) => {
                let label_len = u16::try_from(o.label.len()).map_err(|_| DcepError::TooLong)?;
                let protocol_len =
                    u16::try_from(o.protocol.len()).map_err(|_| DcepError::TooLong)?;
                let (kind, param) = match o.reliability {
                    ChannelReliability::Reliable => (0x00, 0),
                    ChannelReliability::MaxRetransmits(n) => (0x01, n),
                    ChannelReliability::MaxLifetimeMs(ms) => (0x02, ms),
                };
                let channel_type = kind | if o.ordered { 0 } else { 0x80 };
                let mut b =
                    BytesMut::with_capacity(OPEN_HEADER_LEN + o.label.len() + o.protocol.len());
                b.put_u8(MESSAGE_OPEN);
                b.put_u8(channel_type);
                b.put_u16(o.priority);
                b.put_u32(param);
                b.put_u16(label_len);
                b.put_u16(protocol_len);
                b.put_slice(o.label.as_bytes());
                b.put_slice(o.protocol.as_bytes());
                Ok(b.freeze())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    use super::*;

    #[derive(Debug, Clone)]
    struct AnyMessage(DcepMessage);

    impl Arbitrary for AnyMessage {
        fn arbitrary(g: &mut Gen) -> Self {
            if u8::arbitrary(g) % 5 == 0 {
                return AnyMessage(DcepMessage::Ack);
            }
            let reliability = match u8::arbitrary(g) % 3 {
                0 => ChannelReliability::Reliable,
                1 => ChannelReliability::MaxRetransmits(u32::arbitrary(g)),
                _ => ChannelReliability::MaxLifetimeMs(u32::arbitrary(g)),
            };
            AnyMessage(DcepMessage::Open(DataChannelOpen {
                ordered: bool::arbitrary(g),
                reliability,
                priority: u16::arbitrary(g),
                label: String::arbitrary(g),
                protocol: String::arbitrary(g),
            }))
        }
    }

    #[test]
    fn dcep_round_trips() {
        fn prop(m: AnyMessage) -> bool {
            let b = m.0.to_bytes().expect("encode");
            DcepMessage::parse(&b) == Ok(m.0)
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(AnyMessage) -> bool);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        fn prop(b: Vec<u8>) -> bool {
            let _ = DcepMessage::parse(&b);
            true
        }
        QuickCheck::new()
            .tests(5000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn open_fixture() {
        // Unordered, max 3 retransmits, priority 256, label "chat", protocol "".
        let b = [
            0x03, 0x81, 0x01, 0x00, 0, 0, 0, 3, 0, 4, 0, 0, b'c', b'h', b'a', b't',
        ];
        let m = DcepMessage::parse(&b).expect("parse");
        assert_eq!(
            m,
            DcepMessage::Open(DataChannelOpen {
                ordered: false,
                reliability: ChannelReliability::MaxRetransmits(3),
                priority: 256,
                label: "chat".into(),
                protocol: String::new(),
            })
        );
        assert_eq!(&m.to_bytes().expect("encode")[..], &b[..]);
        assert_eq!(DcepMessage::parse(&[0x02]), Ok(DcepMessage::Ack));
        assert_eq!(DcepMessage::parse(&b[..14]), Err(DcepError::Truncated));
    }
}
