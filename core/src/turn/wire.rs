//! What TURN (RFC 8656) adds to the STUN wire format: ChannelData messages, the
//! long-term credential key, a borrowed view of Data indications and stream framing.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Channel Number        |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! /                       Application Data                        /
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! (RFC 8656 section 12.4.) Over stream transports the message is padded to a multiple
//! of four bytes; over UDP padding is optional and accepted when present. Parsing checks
//! lengths once and never panics; writing goes into a caller's buffer.

use std::net::SocketAddr;

use crate::stun::{self, Class, Method};

/// The lowest channel number (RFC 8656 section 12).
pub const CHANNEL_MIN: u16 = 0x4000;
/// The highest channel number.
pub const CHANNEL_MAX: u16 = 0x4FFF;
/// Size of the ChannelData header.
pub const CHANNEL_HEADER_LEN: usize = 4;

const XOR_PEER_ADDRESS: u16 = 0x0012;
const DATA: u16 = 0x0013;

/// Errors parsing or writing a ChannelData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelDataError {
    /// Shorter than the header, or than the header's length says.
    #[error("ChannelData message too short")]
    TooShort,
    /// The channel number is outside 0x4000..=0x4FFF.
    #[error("channel number {0:#06x} outside 0x4000..=0x4FFF")]
    BadChannel(u16),
    /// More than three bytes follow the data (padding is at most three).
    #[error("trailing bytes after ChannelData")]
    TrailingBytes,
    /// The payload does not fit the 16-bit length field.
    #[error("ChannelData payload too long")]
    TooLong,
    /// The output buffer is too small.
    #[error("buffer too small for the ChannelData message")]
    BufferTooSmall,
}

/// A ChannelData message borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// Channel number, 0x4000..=0x4FFF.
    pub channel: u16,
    /// Application data.
    pub data: &'a [u8],
}

/// Whether `channel` is a valid channel number.
pub fn is_valid_channel(channel: u16) -> bool {
    (CHANNEL_MIN..=CHANNEL_MAX).contains(&channel)
}

impl<'a> ChannelData<'a> {
    /// Parse one whole datagram (or one framed stream message). Up to three bytes of
    /// padding after the data are accepted.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ChannelDataError> {
        let header = buf
            .get(..CHANNEL_HEADER_LEN)
            .ok_or(ChannelDataError::TooShort)?;
        let channel = u16::from_be_bytes([header[0], header[1]]);
        if !is_valid_channel(channel) {
            return Err(ChannelDataError::BadChannel(channel));
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let data = buf
            .get(CHANNEL_HEADER_LEN..CHANNEL_HEADER_LEN + len)
            .ok_or(ChannelDataError::TooShort)?;
        if buf.len() - CHANNEL_HEADER_LEN - len > 3 {
            return Err(ChannelDataError::TrailingBytes);
        }
        Ok(ChannelData { channel, data })
    }

    /// The number of bytes [`ChannelData::write`] needs.
    pub fn encoded_len(data_len: usize, padded: bool) -> usize {
        let len = CHANNEL_HEADER_LEN + data_len;
        if padded {
            len.div_ceil(4) * 4
        } else {
            len
        }
    }

    /// Write the message into `out`, padded with zeros to a multiple of four when
    /// `padded` (stream transports). Returns the number of bytes written.
    pub fn write(&self, padded: bool, out: &mut [u8]) -> Result<usize, ChannelDataError> {
        if !is_valid_channel(self.channel) {
            return Err(ChannelDataError::BadChannel(self.channel));
        }
        let len = u16::try_from(self.data.len()).map_err(|_| ChannelDataError::TooLong)?;
        let total = Self::encoded_len(self.data.len(), padded);
        let out = out
            .get_mut(..total)
            .ok_or(ChannelDataError::BufferTooSmall)?;
        out[..2].copy_from_slice(&self.channel.to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
        let end = CHANNEL_HEADER_LEN + self.data.len();
        out[CHANNEL_HEADER_LEN..end].copy_from_slice(self.data);
        out[end..].fill(0);
        Ok(total)
    }
}

/// The long-term credential key (RFC 8489 section 9.2.2):
/// `MD5(username ":" realm ":" password)`. Username and password are used as given
/// (the OpaqueString profile is the identity for ASCII credentials, which is what
/// WebRTC deployments use).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// A Data indication (RFC 8656 section 11.6) seen without copying its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataIndication<'a> {
    /// The peer the data came from (XOR-PEER-ADDRESS).
    pub peer: SocketAddr,
    /// The DATA attribute's value.
    pub data: &'a [u8],
}

impl<'a> DataIndication<'a> {
    /// Parse a Data indication: a STUN indication of method Data with XOR-PEER-ADDRESS
    /// and DATA. `None` for anything else or a malformed message.
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        if stun::peek_class_method(raw)? != (Class::Indication, Method::DATA) {
            return None;
        }
        let tid = stun::peek_transaction_id(raw)?;
        let mut peer = None;
        let mut data = None;
        for (kind, value, _) in stun::wire::raw_attributes(raw) {
            match kind {
                XOR_PEER_ADDRESS if peer.is_none() => {
                    peer = stun::wire::parse_address(value, Some(&tid.0), kind).ok();
                }
                DATA if data.is_none() => data = Some(value),
                _ => {}
            }
        }
        Some(DataIndication {
            peer: peer?,
            data: data?,
        })
    }
}

/// The length of the first whole TURN message at the start of a byte stream (RFC 8656
/// over TCP or TLS): a STUN message (20 + its length field) or a ChannelData message
/// (4 + its length, padded to four). `None` if more bytes are needed to tell, or the
/// stream does not start with either (a framing error the caller handles by closing).
pub fn stream_frame_len(buf: &[u8]) -> Option<usize> {
    let first = *buf.first()?;
    let len = usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]));
    match first {
        0..=3 => Some(stun::HEADER_LEN + len),
        0x40..=0x4F => Some((CHANNEL_HEADER_LEN + len).div_ceil(4) * 4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Attribute, Message, TransactionId};
    use quickcheck::QuickCheck;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 5769 section 2.4: request with long-term authentication.
    const LONG_TERM_REQUEST: &str = "00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46
        53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";
    /// "マトリックス"; the RFC's password "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep.
    const RFC_USERNAME: &str = "\u{30de}\u{30c8}\u{30ea}\u{30c3}\u{30af}\u{30b9}";
    const RFC_PASSWORD: &str = "TheMatrIX";

    #[test]
    fn rfc5769_long_term_vector() {
        let raw = hex(LONG_TERM_REQUEST);
        let m = Message::parse(&raw).expect("parse");
        assert_eq!(m.username(), Some(RFC_USERNAME));
        assert_eq!(m.realm(), Some("example.org"));
        assert_eq!(m.nonce(), Some("f//499k954d6OL34oL9FSTvy64sA"));
        let key = long_term_key(RFC_USERNAME, "example.org", RFC_PASSWORD);
        assert!(stun::verify_integrity(&raw, &key));
        assert!(!stun::verify_integrity(
            &raw,
            &long_term_key(RFC_USERNAME, "example.org", "TheMatrix")
        ));
        // Our encoder reproduces the RFC's MESSAGE-INTEGRITY bytes exactly.
        let again = Message::new(m.class, m.method, m.transaction_id)
            .with(Attribute::Username(RFC_USERNAME.into()))
            .with(Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA".into()))
            .with(Attribute::Realm("example.org".into()))
            .encode_to_vec(Some(&key), false);
        assert_eq!(again, raw);
    }

    #[test]
    fn channel_data_fixture() {
        let msg = ChannelData {
            channel: 0x4001,
            data: b"hello",
        };
        let mut buf = [0xAAu8; 16];
        let n = msg.write(false, &mut buf).expect("write");
        assert_eq!(&buf[..n], &hex("40 01 00 05 68 65 6c 6c 6f")[..]);
        let n = msg.write(true, &mut buf).expect("write padded");
        assert_eq!(&buf[..n], &hex("40 01 00 05 68 65 6c 6c 6f 00 00 00")[..]);
        assert_eq!(ChannelData::parse(&buf[..n]), Ok(msg));
        assert_eq!(ChannelData::parse(&buf[..9]), Ok(msg));
        assert_eq!(
            ChannelData::parse(&buf[..8]),
            Err(ChannelDataError::TooShort)
        );
        assert_eq!(
            ChannelData::parse(&hex("40 01 00 00 00 00 00 00")),
            Err(ChannelDataError::TrailingBytes)
        );
        assert_eq!(
            ChannelData::parse(&hex("50 00 00 00")),
            Err(ChannelDataError::BadChannel(0x5000))
        );
        assert_eq!(
            ChannelData::parse(&hex("3f ff 00 00")),
            Err(ChannelDataError::BadChannel(0x3fff))
        );
        assert_eq!(
            msg.write(true, &mut [0u8; 11]),
            Err(ChannelDataError::BufferTooSmall)
        );
        assert_eq!(
            ChannelData {
                channel: 0x3000,
                data: b""
            }
            .write(false, &mut buf),
            Err(ChannelDataError::BadChannel(0x3000))
        );
        assert_eq!(stream_frame_len(&buf[..n]), Some(12));
    }

    #[test]
    fn quickcheck_channel_data_round_trip() {
        fn prop(channel: u16, data: Vec<u8>, padded: bool) -> bool {
            let channel = CHANNEL_MIN + channel % (CHANNEL_MAX - CHANNEL_MIN + 1);
            let msg = ChannelData {
                channel,
                data: &data,
            };
            let mut buf = vec![0u8; ChannelData::encoded_len(data.len(), padded)];
            let Ok(n) = msg.write(padded, &mut buf) else {
                return false;
            };
            let framed = stream_frame_len(&buf) == Some(ChannelData::encoded_len(data.len(), true));
            n == buf.len()
                && (!padded || n % 4 == 0)
                && ChannelData::parse(&buf) == Ok(msg)
                && framed
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(u16, Vec<u8>, bool) -> bool);
    }

    #[test]
    fn quickcheck_garbage_never_panics() {
        fn prop(data: Vec<u8>) -> bool {
            let _ = ChannelData::parse(&data);
            let _ = DataIndication::parse(&data);
            stream_frame_len(&data).is_none_or(|n| n >= 4)
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn data_indication_view() {
        let peer: SocketAddr = "[2001:db8::7]:5000".parse().expect("addr");
        let raw = Message::new(Class::Indication, Method::DATA, TransactionId([3; 12]))
            .with(Attribute::XorPeerAddress(peer))
            .with(Attribute::Data(b"payload".to_vec()))
            .encode_to_vec(None, true);
        assert_eq!(
            DataIndication::parse(&raw),
            Some(DataIndication {
                peer,
                data: b"payload"
            })
        );
        assert_eq!(stream_frame_len(&raw), Some(raw.len()));
        // Missing DATA, wrong method: not a Data indication.
        let no_data = Message::new(Class::Indication, Method::DATA, TransactionId([3; 12]))
            .with(Attribute::XorPeerAddress(peer))
            .encode_to_vec(None, false);
        assert_eq!(DataIndication::parse(&no_data), None);
        let send = Message::new(Class::Indication, Method::SEND, TransactionId([3; 12]))
            .with(Attribute::XorPeerAddress(peer))
            .with(Attribute::Data(vec![1]))
            .encode_to_vec(None, false);
        assert_eq!(DataIndication::parse(&send), None);
    }
}
