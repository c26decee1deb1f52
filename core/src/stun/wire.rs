//! STUN messages (RFC 8489) with the attributes ICE (RFC 8445) and TURN (RFC 8656) use,
//! MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT (CRC-32).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Magic Cookie                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Transaction ID (96 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Parsing checks the header once and every attribute's length before reading it; it
//! never panics. Encoding writes into a caller's buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::rng::Rng;

/// The magic cookie of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 20;
/// Most attributes kept from one message; the rest are ignored.
pub const MAX_ATTRIBUTES: usize = 64;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// A 96-bit transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// A fresh id from the seeded generator.
    pub fn random(rng: &mut Rng) -> Self {
        let mut id = [0u8; 12];
        rng.fill(&mut id);
        TransactionId(id)
    }
}

/// The message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Request.
    Request,
    /// Indication.
    Indication,
    /// Success response.
    Success,
    /// Error response.
    Error,
}

/// The message method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (RFC 8656).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (RFC 8656).
    pub const REFRESH: Method = Method(0x004);
    /// Send indication (RFC 8656).
    pub const SEND: Method = Method(0x006);
    /// Data indication (RFC 8656).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (RFC 8656).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (RFC 8656).
    pub const CHANNEL_BIND: Method = Method(0x009);
}

mod kind {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
}

/// One attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// MAPPED-ADDRESS.
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS.
    XorMappedAddress(SocketAddr),
    /// XOR-PEER-ADDRESS (TURN).
    XorPeerAddress(SocketAddr),
    /// XOR-RELAYED-ADDRESS (TURN).
    XorRelayedAddress(SocketAddr),
    /// USERNAME.
    Username(String),
    /// REALM.
    Realm(String),
    /// NONCE.
    Nonce(String),
    /// SOFTWARE.
    Software(String),
    /// ERROR-CODE.
    ErrorCode {
        /// 300..=699.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// UNKNOWN-ATTRIBUTES.
    UnknownAttributes(Vec<u16>),
    /// ALTERNATE-SERVER.
    AlternateServer(SocketAddr),
    /// PRIORITY (ICE).
    Priority(u32),
    /// USE-CANDIDATE (ICE).
    UseCandidate,
    /// ICE-CONTROLLED with its tie-breaker.
    IceControlled(u64),
    /// ICE-CONTROLLING with its tie-breaker.
    IceControlling(u64),
    /// CHANNEL-NUMBER (TURN).
    ChannelNumber(u16),
    /// LIFETIME in seconds (TURN).
    Lifetime(u32),
    /// DATA (TURN).
    Data(Vec<u8>),
    /// REQUESTED-TRANSPORT protocol number (TURN; 17 = UDP).
    RequestedTransport(u8),
    /// DONT-FRAGMENT (TURN).
    DontFragment,
    /// EVEN-PORT with its R bit (TURN).
    EvenPort(bool),
    /// RESERVATION-TOKEN (TURN).
    ReservationToken([u8; 8]),
    /// REQUESTED-ADDRESS-FAMILY (TURN): 1 = IPv4, 2 = IPv6.
    RequestedAddressFamily(u8),
    /// ADDITIONAL-ADDRESS-FAMILY (TURN).
    AdditionalAddressFamily(u8),
    /// MESSAGE-INTEGRITY (as received).
    MessageIntegrity([u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256 (as received).
    MessageIntegritySha256(Vec<u8>),
    /// FINGERPRINT (as received).
    Fingerprint(u32),
    /// USERHASH.
    UserHash(Vec<u8>),
    /// PASSWORD-ALGORITHMS: (algorithm, parameters).
    PasswordAlgorithms(Vec<(u16, Vec<u8>)>),
    /// PASSWORD-ALGORITHM.
    PasswordAlgorithm(u16, Vec<u8>),
    /// ALTERNATE-DOMAIN.
    AlternateDomain(String),
    /// Any other attribute, kept as raw bytes.
    Other {
        /// Attribute type.
        kind: u16,
        /// Value.
        value: Vec<u8>,
    },
}

/// Errors parsing or encoding STUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Shorter than a header, or than the header says.
    #[error("STUN message too short")]
    TooShort,
    /// Not a STUN message (top bits, cookie).
    #[error("not a STUN message")]
    NotStun,
    /// The length field is not a multiple of four or does not match the datagram.
    #[error("bad STUN message length")]
    BadLength,
    /// An attribute's value does not follow its format.
    #[error("bad STUN attribute {kind:#06x}")]
    BadAttribute {
        /// Attribute type.
        kind: u16,
    },
    /// The output buffer is too small.
    #[error("buffer too small for the STUN message")]
    BufferTooSmall,
}

/// A STUN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Class.
    pub class: Class,
    /// Method.
    pub method: Method,
    /// Transaction id.
    pub transaction_id: TransactionId,
    /// Attributes in order (integrity and fingerprint as received; ignored when encoding).
    pub attributes: Vec<Attribute>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn encode_type(class: Class, method: Method) -> u16 {
    let m = method.0 & 0x0FFF;
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    (m & 0x000F) | ((c & 1) << 4) | ((m & 0x0070) << 1) | ((c & 2) << 7) | ((m & 0x0F80) << 2)
}

fn decode_type(t: u16) -> (Class, Method) {
    let c = ((t >> 4) & 1) | ((t >> 7) & 2);
    let m = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match c {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (class, Method(m))
}

/// Whether `buf` holds one whole STUN message: top two bits zero, magic cookie, and a
/// length field that is a multiple of four and matches the datagram.
pub fn is_stun(buf: &[u8]) -> bool {
    header(buf).is_ok()
}

/// Checks the header and returns the declared body length.
fn header(buf: &[u8]) -> Result<usize, StunError> {
    if buf.len() < HEADER_LEN {
        return Err(StunError::TooShort);
    }
    let t = be16(buf, 0).ok_or(StunError::TooShort)?;
    if t & 0xC000 != 0 || be32(buf, 4) != Some(MAGIC_COOKIE) {
        return Err(StunError::NotStun);
    }
    let len = usize::from(be16(buf, 2).ok_or(StunError::TooShort)?);
    if len % 4 != 0 || HEADER_LEN + len != buf.len() {
        return Err(StunError::BadLength);
    }
    Ok(len)
}

/// The transaction id of a STUN message without parsing it.
pub fn peek_transaction_id(buf: &[u8]) -> Option<TransactionId> {
    header(buf).ok()?;
    let mut id = [0u8; 12];
    id.copy_from_slice(buf.get(8..20)?);
    Some(TransactionId(id))
}

/// The class and method of a STUN message without parsing it.
pub fn peek_class_method(buf: &[u8]) -> Option<(Class, Method)> {
    header(buf).ok()?;
    Some(decode_type(be16(buf, 0)?))
}

/// Iterate `(type, value, offset of the attribute header)` over a checked message.
pub(crate) fn raw_attributes(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8], usize)> {
    let mut at = HEADER_LEN;
    std::iter::from_fn(move || {
        let kind = be16(buf, at)?;
        let len = usize::from(be16(buf, at + 2)?);
        let value = buf.get(at + 4..at + 4 + len)?;
        let here = at;
        at += 4 + len.div_ceil(4) * 4;
        Some((kind, value, here))
    })
}

/// The USERNAME of a raw message without a full parse (for O(1) routing by local ufrag).
pub fn peek_username(raw: &[u8]) -> Option<&str> {
    header(raw).ok()?;
    raw_attributes(raw)
        .find(|(k, _, _)| *k == kind::USERNAME)
        .and_then(|(_, v, _)| std::str::from_utf8(v).ok())
}

fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A copy of the header bytes with the length field set to `len` (integrity and
/// fingerprint are computed as if the message ended after their own attribute).
fn header_with_length(raw: &[u8], len: usize) -> Option<[u8; HEADER_LEN]> {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(raw.get(..HEADER_LEN)?);
    let len = u16::try_from(len).ok()?;
    h[2..4].copy_from_slice(&len.to_be_bytes());
    Some(h)
}

fn hmac_over(
    key: ring::hmac::Algorithm,
    secret: &[u8],
    header: &[u8],
    body: &[u8],
) -> ring::hmac::Tag {
    let k = ring::hmac::Key::new(key, secret);
    hmac_with(&k, header, body)
}

fn hmac_with(key: &ring::hmac::Key, header: &[u8], body: &[u8]) -> ring::hmac::Tag {
    let mut ctx = ring::hmac::Context::with_key(key);
    ctx.update(header);
    ctx.update(body);
    ctx.sign()
}

/// A MESSAGE-INTEGRITY (HMAC-SHA1) key prepared once. Preparing costs two SHA-1 blocks
/// (the inner and outer pads), as much as signing a whole consent check, so an ICE agent
/// that signs and verifies with the same passwords for the life of a session keeps them
/// prepared ([`verify_integrity_prepared`], [`Message::encode_to_vec_prepared`]).
#[derive(Clone)]
pub struct PreparedKey(ring::hmac::Key);

impl PreparedKey {
    /// Prepare `secret` (short-term: the password; long-term: the 16-byte key).
    pub fn new(secret: &[u8]) -> PreparedKey {
        PreparedKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            secret,
        ))
    }
}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedKey(..)")
    }
}

/// A MESSAGE-INTEGRITY key as given: bytes, or prepared.
#[derive(Clone, Copy)]
enum KeyRef<'a> {
    Bytes(&'a [u8]),
    Prepared(&'a PreparedKey),
}

impl KeyRef<'_> {
    fn tag(self, header: &[u8], body: &[u8]) -> ring::hmac::Tag {
        match self {
            KeyRef::Bytes(secret) => hmac_over(
                ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                secret,
                header,
                body,
            ),
            KeyRef::Prepared(key) => hmac_with(&key.0, header, body),
        }
    }
}

/// Verify MESSAGE-INTEGRITY (HMAC-SHA1) of a received message with `key` (short-term: the
/// password; long-term: the 16-byte key). False when absent or wrong.
pub fn verify_integrity(raw: &[u8], key: &[u8]) -> bool {
    verify_integrity_with(raw, KeyRef::Bytes(key))
}

/// [`verify_integrity`] with a key prepared once.
pub fn verify_integrity_prepared(raw: &[u8], key: &PreparedKey) -> bool {
    verify_integrity_with(raw, KeyRef::Prepared(key))
}

fn verify_integrity_with(raw: &[u8], key: KeyRef<'_>) -> bool {
    if header(raw).is_err() {
        return false;
    }
    let Some((_, value, at)) = raw_attributes(raw).find(|(k, _, _)| *k == kind::MESSAGE_INTEGRITY)
    else {
        return false;
    };
    if value.len() != 20 {
        return false;
    }
    let Some(h) = header_with_length(raw, at + 24 - HEADER_LEN) else {
        return false;
    };
    let Some(body) = raw.get(HEADER_LEN..at) else {
        return false;
    };
    let tag = key.tag(&h, body);
    constant_time_eq(tag.as_ref(), value)
}

/// Compare two byte strings without an early exit on the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verify MESSAGE-INTEGRITY-SHA256 (RFC 8489 14.6: 16 to 32 bytes, a multiple of 4, a
/// truncated HMAC-SHA256).
pub fn verify_integrity_sha256(raw: &[u8], key: &[u8]) -> bool {
    if header(raw).is_err() {
        return false;
    }
    let Some((_, value, at)) =
        raw_attributes(raw).find(|(k, _, _)| *k == kind::MESSAGE_INTEGRITY_SHA256)
    else {
        return false;
    };
    if !(16..=32).contains(&value.len()) || value.len() % 4 != 0 {
        return false;
    }
    let Some(h) = header_with_length(raw, at + 4 + value.len() - HEADER_LEN) else {
        return false;
    };
    let Some(body) = raw.get(HEADER_LEN..at) else {
        return false;
    };
    let tag = hmac_over(ring::hmac::HMAC_SHA256, key, &h, body);
    tag.as_ref()
        .get(..value.len())
        .is_some_and(|t| constant_time_eq(t, value))
}

/// Whether the message carries a FINGERPRINT attribute (as its last attribute).
pub fn has_fingerprint(raw: &[u8]) -> bool {
    header(raw).is_ok()
        && raw_attributes(raw)
            .last()
            .is_some_and(|(k, v, _)| k == kind::FINGERPRINT && v.len() == 4)
}

/// True if a FINGERPRINT attribute is present, last, and correct.
pub fn verify_fingerprint(raw: &[u8]) -> bool {
    if header(raw).is_err() {
        return false;
    }
    let Some((k, value, at)) = raw_attributes(raw).last() else {
        return false;
    };
    if k != kind::FINGERPRINT || value.len() != 4 || at + 8 != raw.len() {
        return false;
    }
    let Some(covered) = raw.get(..at) else {
        return false;
    };
    be32(value, 0) == Some(crc32(covered) ^ FINGERPRINT_XOR)
}

pub(crate) fn parse_address(
    value: &[u8],
    xor: Option<&[u8; 12]>,
    k: u16,
) -> Result<SocketAddr, StunError> {
    let bad = StunError::BadAttribute { kind: k };
    let family = *value.get(1).ok_or(bad)?;
    let mut port = be16(value, 2).ok_or(bad)?;
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match (family, value.len()) {
        (0x01, 8) => {
            let mut a = be32(value, 4).ok_or(bad)?;
            if xor.is_some() {
                a ^= MAGIC_COOKIE;
            }
            IpAddr::V4(Ipv4Addr::from(a))
        }
        (0x02, 20) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(value.get(4..20).ok_or(bad)?);
            if let Some(tid) = xor {
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                mask[4..].copy_from_slice(tid);
                for (b, m) in a.iter_mut().zip(mask) {
                    *b ^= m;
                }
            }
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return Err(bad),
    };
    Ok(SocketAddr::new(ip, port))
}

fn utf8(value: &[u8], k: u16, max: usize) -> Result<String, StunError> {
    if value.len() > max {
        return Err(StunError::BadAttribute { kind: k });
    }
    std::str::from_utf8(value)
        .map(str::to_string)
        .map_err(|_| StunError::BadAttribute { kind: k })
}

fn fixed<const N: usize>(value: &[u8], k: u16) -> Result<[u8; N], StunError> {
    value
        .try_into()
        .map_err(|_| StunError::BadAttribute { kind: k })
}

fn parse_attribute(k: u16, v: &[u8], tid: &[u8; 12]) -> Result<Attribute, StunError> {
    let bad = StunError::BadAttribute { kind: k };
    let u32_of = |v: &[u8]| -> Result<u32, StunError> { Ok(u32::from_be_bytes(fixed::<4>(v, k)?)) };
    Ok(match k {
        kind::MAPPED_ADDRESS => Attribute::MappedAddress(parse_address(v, None, k)?),
        kind::XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(parse_address(v, Some(tid), k)?),
        kind::XOR_PEER_ADDRESS => Attribute::XorPeerAddress(parse_address(v, Some(tid), k)?),
        kind::XOR_RELAYED_ADDRESS => Attribute::XorRelayedAddress(parse_address(v, Some(tid), k)?),
        kind::ALTERNATE_SERVER => Attribute::AlternateServer(parse_address(v, None, k)?),
        kind::USERNAME => Attribute::Username(utf8(v, k, 513)?),
        kind::REALM => Attribute::Realm(utf8(v, k, 763)?),
        kind::NONCE => Attribute::Nonce(utf8(v, k, 763)?),
        kind::SOFTWARE => Attribute::Software(utf8(v, k, 763)?),
        kind::ALTERNATE_DOMAIN => Attribute::AlternateDomain(utf8(v, k, 255)?),
        kind::ERROR_CODE => {
            let class = u16::from(*v.get(2).ok_or(bad)? & 0x07);
            let number = u16::from(*v.get(3).ok_or(bad)?);
            if !(3..=6).contains(&class) || number > 99 {
                return Err(bad);
            }
            Attribute::ErrorCode {
                code: class * 100 + number,
                reason: utf8(v.get(4..).ok_or(bad)?, k, 763)?,
            }
        }
        kind::UNKNOWN_ATTRIBUTES => {
            if v.len() % 2 != 0 {
                return Err(bad);
            }
            Attribute::UnknownAttributes(
                v.chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect(),
            )
        }
        kind::PRIORITY => Attribute::Priority(u32_of(v)?),
        kind::USE_CANDIDATE if v.is_empty() => Attribute::UseCandidate,
        kind::ICE_CONTROLLED => Attribute::IceControlled(u64::from_be_bytes(fixed::<8>(v, k)?)),
        kind::ICE_CONTROLLING => Attribute::IceControlling(u64::from_be_bytes(fixed::<8>(v, k)?)),
        kind::CHANNEL_NUMBER => Attribute::ChannelNumber(be16(&fixed::<4>(v, k)?, 0).ok_or(bad)?),
        kind::LIFETIME => Attribute::Lifetime(u32_of(v)?),
        kind::DATA => Attribute::Data(v.to_vec()),
        kind::REQUESTED_TRANSPORT => Attribute::RequestedTransport(fixed::<4>(v, k)?[0]),
        kind::DONT_FRAGMENT if v.is_empty() => Attribute::DontFragment,
        kind::EVEN_PORT => Attribute::EvenPort(fixed::<1>(v, k)?[0] & 0x80 != 0),
        kind::RESERVATION_TOKEN => Attribute::ReservationToken(fixed::<8>(v, k)?),
        kind::REQUESTED_ADDRESS_FAMILY => Attribute::RequestedAddressFamily(fixed::<4>(v, k)?[0]),
        kind::ADDITIONAL_ADDRESS_FAMILY => Attribute::AdditionalAddressFamily(fixed::<4>(v, k)?[0]),
        kind::MESSAGE_INTEGRITY => Attribute::MessageIntegrity(fixed::<20>(v, k)?),
        kind::MESSAGE_INTEGRITY_SHA256 => {
            if !(16..=32).contains(&v.len()) || v.len() % 4 != 0 {
                return Err(bad);
            }
            Attribute::MessageIntegritySha256(v.to_vec())
        }
        kind::FINGERPRINT => Attribute::Fingerprint(u32_of(v)?),
        kind::USERHASH => Attribute::UserHash(fixed::<32>(v, k)?.to_vec()),
        kind::PASSWORD_ALGORITHM => {
            let alg = be16(v, 0).ok_or(bad)?;
            let len = usize::from(be16(v, 2).ok_or(bad)?);
            let params = v.get(4..4 + len).ok_or(bad)?;
            Attribute::PasswordAlgorithm(alg, params.to_vec())
        }
        kind::PASSWORD_ALGORITHMS => {
            let mut out = Vec::new();
            let mut at = 0;
            while at < v.len() {
                let alg = be16(v, at).ok_or(bad)?;
                let len = usize::from(be16(v, at + 2).ok_or(bad)?);
                let params = v.get(at + 4..at + 4 + len).ok_or(bad)?;
                out.push((alg, params.to_vec()));
                at += 4 + len.div_ceil(4) * 4;
                if out.len() > MAX_ATTRIBUTES {
                    return Err(bad);
                }
            }
            Attribute::PasswordAlgorithms(out)
        }
        _ => Attribute::Other {
            kind: k,
            value: v.to_vec(),
        },
    })
}

/// Grows a message into a caller's buffer.
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), StunError> {
        let end = self.len + bytes.len();
        self.out
            .get_mut(self.len..end)
            .ok_or(StunError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn attribute(&mut self, k: u16, value: &[u8]) -> Result<(), StunError> {
        let len = u16::try_from(value.len()).map_err(|_| StunError::BadAttribute { kind: k })?;
        self.put(&k.to_be_bytes())?;
        self.put(&len.to_be_bytes())?;
        self.put(value)?;
        let pad = value.len().div_ceil(4) * 4 - value.len();
        self.put(&[0u8; 3][..pad])
    }

    fn set_length(&mut self, body: usize) -> Result<(), StunError> {
        let len = u16::try_from(body).map_err(|_| StunError::BufferTooSmall)?;
        self.out
            .get_mut(2..4)
            .ok_or(StunError::BufferTooSmall)?
            .copy_from_slice(&len.to_be_bytes());
        Ok(())
    }
}

fn address_value(addr: SocketAddr, xor: Option<&[u8; 12]>) -> ([u8; 20], usize) {
    let mut v = [0u8; 20];
    let mut port = addr.port();
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    v[2..4].copy_from_slice(&port.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            v[1] = 0x01;
            let mut a = u32::from(ip);
            if xor.is_some() {
                a ^= MAGIC_COOKIE;
            }
            v[4..8].copy_from_slice(&a.to_be_bytes());
            (v, 8)
        }
        IpAddr::V6(ip) => {
            v[1] = 0x02;
            let mut a = ip.octets();
            if let Some(tid) = xor {
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                mask[4..].copy_from_slice(tid);
                for (b, m) in a.iter_mut().zip(mask) {
                    *b ^= m;
                }
            }
            v[4..20].copy_from_slice(&a);
            (v, 20)
        }
    }
}

impl Message {
    /// A message with no attributes.
    pub fn new(class: Class, method: Method, transaction_id: TransactionId) -> Self {
        Message {
            class,
            method,
            transaction_id,
            attributes: Vec::new(),
        }
    }

    /// Add an attribute (builder style).
    pub fn with(mut self, attr: Attribute) -> Self {
        self.attributes.push(attr);
        self
    }

    /// Parse a whole message. Attributes after MESSAGE-INTEGRITY other than
    /// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are ignored (RFC 8489 14.5).
    pub fn parse(buf: &[u8]) -> Result<Message, StunError> {
        let body = header(buf)?;
        let (class, method) = decode_type(be16(buf, 0).ok_or(StunError::TooShort)?);
        let mut tid = [0u8; 12];
        tid.copy_from_slice(buf.get(8..20).ok_or(StunError::TooShort)?);
        // Every attribute header and padded value must fit exactly.
        let mut at = HEADER_LEN;
        while at < HEADER_LEN + body {
            let len = usize::from(be16(buf, at + 2).ok_or(StunError::BadLength)?);
            at += 4 + len.div_ceil(4) * 4;
        }
        if at != HEADER_LEN + body {
            return Err(StunError::BadLength);
        }
        let mut attributes = Vec::new();
        let mut after_integrity = false;
        for (k, v, _) in raw_attributes(buf) {
            if attributes.len() >= MAX_ATTRIBUTES {
                break;
            }
            let is_tail = matches!(k, kind::MESSAGE_INTEGRITY_SHA256 | kind::FINGERPRINT);
            if after_integrity && !is_tail {
                continue;
            }
            attributes.push(parse_attribute(k, v, &tid)?);
            if k == kind::MESSAGE_INTEGRITY {
                after_integrity = true;
            }
        }
        Ok(Message {
            class,
            method,
            transaction_id: TransactionId(tid),
            attributes,
        })
    }

    /// Write the message into `out`: header, attributes, then MESSAGE-INTEGRITY
    /// (HMAC-SHA1 with `integrity_key`) if given, then FINGERPRINT if asked. Integrity and
    /// fingerprint entries in `attributes` are not written (they are computed). Returns the
    /// number of bytes written.
    pub fn encode(
        &self,
        integrity_key: Option<&[u8]>,
        fingerprint: bool,
        out: &mut [u8],
    ) -> Result<usize, StunError> {
        self.encode_with(integrity_key.map(KeyRef::Bytes), fingerprint, out)
    }

    /// [`Message::encode`] with MESSAGE-INTEGRITY from a key prepared once.
    pub fn encode_prepared(
        &self,
        integrity_key: &PreparedKey,
        fingerprint: bool,
        out: &mut [u8],
    ) -> Result<usize, StunError> {
        self.encode_with(Some(KeyRef::Prepared(integrity_key)), fingerprint, out)
    }

    fn encode_with(
        &self,
        integrity_key: Option<KeyRef<'_>>,
        fingerprint: bool,
        out: &mut [u8],
    ) -> Result<usize, StunError> {
        let mut w = Writer { out, len: 0 };
        w.put(&encode_type(self.class, self.method).to_be_bytes())?;
        w.put(&[0, 0])?;
        w.put(&MAGIC_COOKIE.to_be_bytes())?;
        w.put(&self.transaction_id.0)?;
        let tid = &self.transaction_id.0;
        for a in &self.attributes {
            match a {
                Attribute::MappedAddress(s) => {
                    let (v, n) = address_value(*s, None);
                    w.attribute(kind::MAPPED_ADDRESS, &v[..n])?
                }
                Attribute::XorMappedAddress(s) => {
                    let (v, n) = address_value(*s, Some(tid));
                    w.attribute(kind::XOR_MAPPED_ADDRESS, &v[..n])?
                }
                Attribute::XorPeerAddress(s) => {
                    let (v, n) = address_value(*s, Some(tid));
                    w.attribute(kind::XOR_PEER_ADDRESS, &v[..n])?
                }
                Attribute::XorRelayedAddress(s) => {
                    let (v, n) = address_value(*s, Some(tid));
                    w.attribute(kind::XOR_RELAYED_ADDRESS, &v[..n])?
                }
                Attribute::AlternateServer(s) => {
                    let (v, n) = address_value(*s, None);
                    w.attribute(kind::ALTERNATE_SERVER, &v[..n])?
                }
                Attribute::Username(s) => w.attribute(kind::USERNAME, s.as_bytes())?,
                Attribute::Realm(s) => w.attribute(kind::REALM, s.as_bytes())?,
                Attribute::Nonce(s) => w.attribute(kind::NONCE, s.as_bytes())?,
                Attribute::Software(s) => w.attribute(kind::SOFTWARE, s.as_bytes())?,
                Attribute::AlternateDomain(s) => {
                    w.attribute(kind::ALTERNATE_DOMAIN, s.as_bytes())?
                }
                Attribute::ErrorCode { code, reason } => {
                    let mut v = Vec::with_capacity(4 + reason.len());
                    v.extend_from_slice(&[0, 0, ((code / 100) & 0x07) as u8, (code % 100) as u8]);
                    v.extend_from_slice(reason.as_bytes());
                    w.attribute(kind::ERROR_CODE, &v)?
                }
                Attribute::UnknownAttributes(list) => {
                    let v: Vec<u8> = list.iter().flat_map(|k| k.to_be_bytes()).collect();
                    w.attribute(kind::UNKNOWN_ATTRIBUTES, &v)?
                }
                Attribute::Priority(p) => w.attribute(kind::PRIORITY, &p.to_be_bytes())?,
                Attribute::UseCandidate => w.attribute(kind::USE_CANDIDATE, &[])?,
                Attribute::IceControlled(t) => {
                    w.attribute(kind::ICE_CONTROLLED, &t.to_be_bytes())?
                }
                Attribute::IceControlling(t) => {
                    w.attribute(kind::ICE_CONTROLLING, &t.to_be_bytes())?
                }
                Attribute::ChannelNumber(c) => {
                    let b = c.to_be_bytes();
                    w.attribute(kind::CHANNEL_NUMBER, &[b[0], b[1], 0, 0])?
                }
                Attribute::Lifetime(l) => w.attribute(kind::LIFETIME, &l.to_be_bytes())?,
                Attribute::Data(d) => w.attribute(kind::DATA, d)?,
                Attribute::RequestedTransport(p) => {
                    w.attribute(kind::REQUESTED_TRANSPORT, &[*p, 0, 0, 0])?
                }
                Attribute::DontFragment => w.attribute(kind::DONT_FRAGMENT, &[])?,
                Attribute::EvenPort(r) => {
                    w.attribute(kind::EVEN_PORT, &[if *r { 0x80 } else { 0 }])?
                }
                Attribute::ReservationToken(t) => w.attribute(kind::RESERVATION_TOKEN, t)?,
                Attribute::RequestedAddressFamily(f) => {
                    w.attribute(kind::REQUESTED_ADDRESS_FAMILY, &[*f, 0, 0, 0])?
                }
                Attribute::AdditionalAddressFamily(f) => {
                    w.attribute(kind::ADDITIONAL_ADDRESS_FAMILY, &[*f, 0, 0, 0])?
                }
                Attribute::UserHash(h) => w.attribute(kind::USERHASH, h)?,
                Attribute::PasswordAlgorithm(alg, params) => {
                    let mut v = Vec::with_capacity(4 + params.len());
                    v.extend_from_slice(&alg.to_be_bytes());
                    v.extend_from_slice(&(params.len() as u16).to_be_bytes());
                    v.extend_from_slice(params);
                    w.attribute(kind::PASSWORD_ALGORITHM, &v)?
                }
                Attribute::PasswordAlgorithms(list) => {
                    let mut v = Vec::new();
                    for (alg, params) in list {
                        v.extend_from_slice(&alg.to_be_bytes());
                        v.extend_from_slice(&(params.len() as u16).to_be_bytes());
                        v.extend_from_slice(params);
                        v.resize(v.len().div_ceil(4) * 4, 0);
                    }
                    w.attribute(kind::PASSWORD_ALGORITHMS, &v)?
                }
                Attribute::Other { kind: k, value } => w.attribute(*k, value)?,
                Attribute::MessageIntegrity(_)
                | Attribute::MessageIntegritySha256(_)
                | Attribute::Fingerprint(_) => {}
            }
        }
        if let Some(key) = integrity_key {
            let body = w.len - HEADER_LEN + 24;
            w.set_length(body)?;
            let tag = {
                let msg = w.out.get(..w.len).ok_or(StunError::BufferTooSmall)?;
                key.tag(&[], msg)
            };
            w.attribute(kind::MESSAGE_INTEGRITY, tag.as_ref())?;
        }
        if fingerprint {
            let body = w.len - HEADER_LEN + 8;
            w.set_length(body)?;
            let crc = crc32(w.out.get(..w.len).ok_or(StunError::BufferTooSmall)?) ^ FINGERPRINT_XOR;
            w.attribute(kind::FINGERPRINT, &crc.to_be_bytes())?;
        }
        let body = w.len - HEADER_LEN;
        w.set_length(body)?;
        Ok(w.len)
    }

    /// [`Message::encode`] into a new vector.
    pub fn encode_to_vec(&self, integrity_key: Option<&[u8]>, fingerprint: bool) -> Vec<u8> {
        self.encode_to_vec_with(integrity_key.map(KeyRef::Bytes), fingerprint)
    }

    /// [`Message::encode_prepared`] into a new vector.
    pub fn encode_to_vec_prepared(
        &self,
        integrity_key: &PreparedKey,
        fingerprint: bool,
    ) -> Vec<u8> {
        self.encode_to_vec_with(Some(KeyRef::Prepared(integrity_key)), fingerprint)
    }

    fn encode_to_vec_with(&self, integrity_key: Option<KeyRef<'_>>, fingerprint: bool) -> Vec<u8> {
        // Our messages fit one MTU; only a larger one pays for the 64 KiB buffer.
        let mut buf = vec![0u8; 1500];
        let n = match self.encode_with(integrity_key, fingerprint, &mut buf) {
            Ok(n) => n,
            Err(_) => {
                buf = vec![0u8; 65_535 + HEADER_LEN];
                self.encode_with(integrity_key, fingerprint, &mut buf)
                    .unwrap_or(0)
            }
        };
        buf.truncate(n);
        buf
    }

    fn find<T>(&self, f: impl Fn(&Attribute) -> Option<T>) -> Option<T> {
        self.attributes.iter().find_map(f)
    }

    /// USERNAME.
    pub fn username(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Username(u) => Some(u.as_str()),
            _ => None,
        })
    }

    /// PRIORITY.
    pub fn priority(&self) -> Option<u32> {
        self.find(|a| match a {
            Attribute::Priority(p) => Some(*p),
            _ => None,
        })
    }

    /// Whether USE-CANDIDATE is present.
    pub fn use_candidate(&self) -> bool {
        self.attributes
            .iter()
            .any(|a| matches!(a, Attribute::UseCandidate))
    }

    /// ICE-CONTROLLING tie-breaker.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.find(|a| match a {
            Attribute::IceControlling(t) => Some(*t),
            _ => None,
        })
    }

    /// ICE-CONTROLLED tie-breaker.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.find(|a| match a {
            Attribute::IceControlled(t) => Some(*t),
            _ => None,
        })
    }

    /// XOR-MAPPED-ADDRESS.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.find(|a| match a {
            Attribute::XorMappedAddress(s) => Some(*s),
            _ => None,
        })
    }

    /// XOR-RELAYED-ADDRESS.
    pub fn xor_relayed_address(&self) -> Option<SocketAddr> {
        self.find(|a| match a {
            Attribute::XorRelayedAddress(s) => Some(*s),
            _ => None,
        })
    }

    /// XOR-PEER-ADDRESS.
    pub fn xor_peer_address(&self) -> Option<SocketAddr> {
        self.find(|a| match a {
            Attribute::XorPeerAddress(s) => Some(*s),
            _ => None,
        })
    }

    /// ERROR-CODE as (code, reason).
    pub fn error_code(&self) -> Option<(u16, &str)> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::ErrorCode { code, reason } => Some((*code, reason.as_str())),
            _ => None,
        })
    }

    /// REALM.
    pub fn realm(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Realm(r) => Some(r.as_str()),
            _ => None,
        })
    }

    /// NONCE.
    pub fn nonce(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Nonce(n) => Some(n.as_str()),
            _ => None,
        })
    }

    /// LIFETIME.
    pub fn lifetime(&self) -> Option<u32> {
        self.find(|a| match a {
            Attribute::Lifetime(l) => Some(*l),
            _ => None,
        })
    }

    /// DATA.
    pub fn data(&self) -> Option<&[u8]> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Data(d) => Some(d.as_slice()),
            _ => None,
        })
    }

    /// CHANNEL-NUMBER.
    pub fn channel_number(&self) -> Option<u16> {
        self.find(|a| match a {
            Attribute::ChannelNumber(c) => Some(*c),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    // RFC 5769 2.1: sample request.
    const REQUEST: &str = "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf";
    // RFC 5769 2.2: sample IPv4 response.
    const RESPONSE_V4: &str = "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96";
    // RFC 5769 2.3: sample IPv6 response.
    const RESPONSE_V6: &str = "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c";
    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

    #[test]
    fn rfc5769_request() {
        let raw = hex(REQUEST);
        assert!(is_stun(&raw));
        assert!(verify_fingerprint(&raw));
        assert!(verify_integrity(&raw, PASSWORD));
        assert!(!verify_integrity(&raw, b"wrong"));
        let m = Message::parse(&raw).expect("parse");
        assert_eq!((m.class, m.method), (Class::Request, Method::BINDING));
        assert_eq!(m.username(), Some("evtj:h6vY"));
        assert_eq!(m.priority(), Some(0x6e0001ff));
        assert_eq!(m.ice_controlled(), Some(0x932ff9b151263b36));
        assert_eq!(peek_username(&raw), Some("evtj:h6vY"));
        // Re-encoding gives the same bytes except the username/software padding bytes,
        // which RFC 5769 fills with spaces and we fill with zeros.
        let out = m.encode_to_vec(Some(PASSWORD), true);
        assert_eq!(out.len(), raw.len());
        assert!(verify_integrity(&out, PASSWORD));
        assert!(verify_fingerprint(&out));
        let strip = |mut m: Message| {
            m.attributes.retain(|a| {
                !matches!(
                    a,
                    Attribute::MessageIntegrity(_) | Attribute::Fingerprint(_)
                )
            });
            m
        };
        assert_eq!(strip(Message::parse(&out).expect("reparse")), strip(m));
    }

    #[test]
    fn rfc5769_ipv4_response() {
        let raw = hex(RESPONSE_V4);
        assert!(verify_fingerprint(&raw));
        assert!(verify_integrity(&raw, PASSWORD));
        let m = Message::parse(&raw).expect("parse");
        assert_eq!(m.class, Class::Success);
        assert_eq!(
            m.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().expect("addr"))
        );
    }

    #[test]
    fn rfc5769_ipv6_response() {
        let raw = hex(RESPONSE_V6);
        assert!(verify_fingerprint(&raw));
        assert!(verify_integrity(&raw, PASSWORD));
        let m = Message::parse(&raw).expect("parse");
        assert_eq!(
            m.xor_mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .expect("addr")
            )
        );
        // Our encoding of XOR-MAPPED-ADDRESS reproduces the RFC's bytes exactly.
        let out = m.encode_to_vec(Some(PASSWORD), true);
        assert_eq!(out.get(36..60), raw.get(36..60));
    }

    #[test]
    fn tampering_is_detected() {
        let raw = hex(REQUEST);
        for i in 20..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let integrity = verify_integrity(&bad, PASSWORD);
            let fingerprint = verify_fingerprint(&bad);
            assert!(
                !(integrity && fingerprint),
                "flipped byte {i} went unnoticed"
            );
        }
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xFF;
        assert!(verify_integrity(&bad, PASSWORD));
        assert!(!verify_fingerprint(&bad));
    }

    #[test]
    fn truncated_and_garbage_never_panic() {
        let raw = hex(REQUEST);
        for n in 0..raw.len() {
            let cut = &raw[..n];
            assert!(Message::parse(cut).is_err());
            assert!(!verify_integrity(cut, PASSWORD));
            assert!(!verify_fingerprint(cut));
        }
        // A lying attribute length inside a correct header.
        let mut bad = raw.clone();
        bad[22] = 0xFF;
        assert_eq!(Message::parse(&bad), Err(StunError::BadLength));
        assert!(!is_stun(&[0x80; 20]));
    }

    #[test]
    fn type_encoding_round_trips() {
        for class in [
            Class::Request,
            Class::Indication,
            Class::Success,
            Class::Error,
        ] {
            for m in [1u16, 3, 4, 6, 7, 8, 9, 0xFFF] {
                assert_eq!(
                    decode_type(encode_type(class, Method(m))),
                    (class, Method(m))
                );
            }
        }
        assert_eq!(encode_type(Class::Success, Method::BINDING), 0x0101);
        assert_eq!(encode_type(Class::Error, Method::ALLOCATE), 0x0113);
        assert_eq!(encode_type(Class::Indication, Method::DATA), 0x0017);
    }

    #[derive(Debug, Clone)]
    struct AnyMessage(Message);

    fn any_addr(g: &mut Gen) -> SocketAddr {
        if bool::arbitrary(g) {
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::arbitrary(g))),
                u16::arbitrary(g),
            )
        } else {
            SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(u128::arbitrary(g))),
                u16::arbitrary(g),
            )
        }
    }

    fn any_text(g: &mut Gen) -> String {
        let s = String::arbitrary(g);
        s.chars().take(60).collect()
    }

    impl Arbitrary for AnyMessage {
        fn arbitrary(g: &mut Gen) -> Self {
            let class = *g
                .choose(&[
                    Class::Request,
                    Class::Indication,
                    Class::Success,
                    Class::Error,
                ])
                .expect("class");
            let method = Method(u16::arbitrary(g) & 0x0FFF);
            let mut tid = [0u8; 12];
            for b in &mut tid {
                *b = u8::arbitrary(g);
            }
            let mut m = Message::new(class, method, TransactionId(tid));
            let count = usize::arbitrary(g) % 12;
            for _ in 0..count {
                let a = match u8::arbitrary(g) % 28 {
                    0 => Attribute::MappedAddress(any_addr(g)),
                    1 => Attribute::XorMappedAddress(any_addr(g)),
                    2 => Attribute::XorPeerAddress(any_addr(g)),
                    3 => Attribute::XorRelayedAddress(any_addr(g)),
                    4 => Attribute::Username(any_text(g)),
                    5 => Attribute::Realm(any_text(g)),
                    6 => Attribute::Nonce(any_text(g)),
                    7 => Attribute::Software(any_text(g)),
                    8 => Attribute::ErrorCode {
                        code: 300 + u16::arbitrary(g) % 400,
                        reason: any_text(g),
                    },
                    9 => Attribute::UnknownAttributes(
                        Vec::<u16>::arbitrary(g).into_iter().take(8).collect(),
                    ),
                    10 => Attribute::AlternateServer(any_addr(g)),
                    11 => Attribute::Priority(u32::arbitrary(g)),
                    12 => Attribute::UseCandidate,
                    13 => Attribute::IceControlled(u64::arbitrary(g)),
                    14 => Attribute::IceControlling(u64::arbitrary(g)),
                    15 => Attribute::ChannelNumber(u16::arbitrary(g)),
                    16 => Attribute::Lifetime(u32::arbitrary(g)),
                    17 => Attribute::Data(Vec::<u8>::arbitrary(g)),
                    18 => Attribute::RequestedTransport(u8::arbitrary(g)),
                    19 => Attribute::DontFragment,
                    20 => Attribute::EvenPort(bool::arbitrary(g)),
                    21 => Attribute::ReservationToken(u64::arbitrary(g).to_be_bytes()),
                    22 => Attribute::RequestedAddressFamily(1 + u8::arbitrary(g) % 2),
                    23 => Attribute::AdditionalAddressFamily(2),
                    24 => Attribute::UserHash((0..32).map(|_| u8::arbitrary(g)).collect()),
                    25 => Attribute::PasswordAlgorithm(
                        u16::arbitrary(g),
                        Vec::<u8>::arbitrary(g).into_iter().take(10).collect(),
                    ),
                    26 => Attribute::AlternateDomain(any_text(g)),
                    _ => Attribute::Other {
                        kind: 0xC000 | (u16::arbitrary(g) & 0x0FFF),
                        value: Vec::<u8>::arbitrary(g),
                    },
                };
                let a = match a {
                    // the ErrorCode number must be < 100 within its class, always true here
                    Attribute::ErrorCode { code, reason } if code >= 700 => {
                        Attribute::ErrorCode { code: 699, reason }
                    }
                    a => a,
                };
                m.attributes.push(a);
            }
            AnyMessage(m)
        }
    }

    /// A prepared key signs exactly as the bytes it came from: the right key passes,
    /// another key fails, and on a message with a flipped byte both give the same answer.
    #[test]
    fn quickcheck_prepared_key_matches_bytes() {
        fn prop(m: AnyMessage, key: Vec<u8>, other: Vec<u8>, flip: usize) -> bool {
            let prepared = PreparedKey::new(&key);
            let raw = m.0.encode_to_vec(Some(&key), true);
            let same = m.0.encode_to_vec_prepared(&prepared, true) == raw;
            let verifies = verify_integrity_prepared(&raw, &prepared);
            let other_fails =
                other == key || !verify_integrity_prepared(&raw, &PreparedKey::new(&other));
            let mut bad = raw.clone();
            let i = HEADER_LEN + flip % (bad.len() - HEADER_LEN);
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0x40;
            }
            let bad_agrees =
                verify_integrity_prepared(&bad, &prepared) == verify_integrity(&bad, &key);
            same && verifies && other_fails && bad_agrees
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(AnyMessage, Vec<u8>, Vec<u8>, usize) -> bool);
    }

    #[test]
    fn quickcheck_encode_then_parse() {
        fn prop(m: AnyMessage, key: Vec<u8>, integrity: bool, fingerprint: bool) -> bool {
            let key = integrity.then_some(key.as_slice());
            let raw = m.0.encode_to_vec(key, fingerprint);
            let Ok(mut parsed) = Message::parse(&raw) else {
                return false;
            };
            parsed.attributes.retain(|a| {
                !matches!(
                    a,
                    Attribute::MessageIntegrity(_) | Attribute::Fingerprint(_)
                )
            });
            let integrity_ok = key.is_none_or(|k| verify_integrity(&raw, k));
            let fingerprint_ok = !fingerprint || verify_fingerprint(&raw);
            parsed == m.0 && integrity_ok && fingerprint_ok && is_stun(&raw)
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(AnyMessage, Vec<u8>, bool, bool) -> bool);
    }

    #[test]
    fn quickcheck_garbage_never_panics() {
        fn prop(mut data: Vec<u8>, fix_header: bool) -> bool {
            if fix_header && data.len() >= 20 {
                let body = ((data.len() - 20) / 4 * 4) as u16;
                data.truncate(20 + body as usize);
                data[0] &= 0x3F;
                data[2..4].copy_from_slice(&body.to_be_bytes());
                data[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            }
            let _ = Message::parse(&data);
            let _ = verify_integrity(&data, b"k");
            let _ = verify_integrity_sha256(&data, b"k");
            let _ = verify_fingerprint(&data);
            let _ = peek_username(&data);
            true
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>, bool) -> bool);
    }
}
