//! What crosses the boundary between the core and the runtime: received datagrams,
//! datagrams to send, and the RFC 7983 classification of a datagram's first byte.

use std::net::SocketAddr;

/// The transport a local socket or candidate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// UDP.
    Udp,
    /// TCP (framed by the runtime).
    Tcp,
}

/// A datagram received by the runtime, handed to the core.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The local socket address it arrived on.
    pub local: SocketAddr,
    /// The address it came from.
    pub remote: SocketAddr,
    /// The transport it arrived on.
    pub protocol: Protocol,
    /// Its payload.
    pub data: &'a [u8],
}

/// A datagram the core wants sent. Its bytes were written into the caller's buffer
/// given to `poll_transmit`; `len` says how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The local socket address to send from.
    pub local: SocketAddr,
    /// The destination.
    pub remote: SocketAddr,
    /// The transport to send on.
    pub protocol: Protocol,
    /// The number of bytes written into the caller's buffer.
    pub len: usize,
}

/// The kind of a received datagram, by its first byte (RFC 7983 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// 0..=3: STUN (and TURN).
    Stun,
    /// 20..=63: DTLS.
    Dtls,
    /// 64..=79: TURN ChannelData.
    ChannelData,
    /// 128..=191: RTP or RTCP (SRTP/SRTCP).
    Rtp,
    /// Anything else, or an empty datagram: dropped.
    Unknown,
}

impl DatagramKind {
    /// Classify a datagram once by its first byte.
    pub fn classify(data: &[u8]) -> DatagramKind {
        match data.first() {
            Some(0..=3) => DatagramKind::Stun,
            Some(20..=63) => DatagramKind::Dtls,
            Some(64..=79) => DatagramKind::ChannelData,
            Some(128..=191) => DatagramKind::Rtp,
            _ => DatagramKind::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_by_first_byte() {
        assert_eq!(DatagramKind::classify(&[0, 1]), DatagramKind::Stun);
        assert_eq!(DatagramKind::classify(&[22, 254]), DatagramKind::Dtls);
        assert_eq!(DatagramKind::classify(&[0x40]), DatagramKind::ChannelData);
        assert_eq!(DatagramKind::classify(&[0x80, 96]), DatagramKind::Rtp);
        assert_eq!(DatagramKind::classify(&[]), DatagramKind::Unknown);
        assert_eq!(DatagramKind::classify(&[200]), DatagramKind::Unknown);
    }
}
