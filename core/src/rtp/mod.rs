//! RTP and RTCP wire formats (RFC 3550, RFC 8285 header extensions, RFC 5761 mux).
//!
//! [`RtpHeader`] is a checked view over a received packet: one length check up front, then
//! field reads that cannot panic. [`write_rtp`] writes a packet with one-byte header
//! extensions into a caller's buffer. RTCP is classified and the feedback the media layer
//! acts on (PLI, FIR) is recognized; the full RTCP packet set is future work.

pub mod ccfb;
pub mod codec;
pub mod extensions;
pub mod generic_nack;
pub(crate) mod pool;
pub mod remb;
pub mod rtcp;
pub(crate) mod ssrc_map;
pub mod transport_cc;

pub use rtcp::{ReportBlock, RtcpError, RtcpPacket, SdesChunk};

/// An RTP header view over a packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpHeader<'a> {
    packet: &'a [u8],
    header_len: usize,
    payload_end: usize,
}

/// Why a packet is not valid RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Too short, wrong version, or lengths that do not fit.
    #[error("malformed RTP packet")]
    Malformed,
    /// The output buffer is too small.
    #[error("buffer too small for the RTP packet")]
    BufferTooSmall,
}

impl<'a> RtpHeader<'a> {
    /// Check and view a packet.
    pub fn parse(packet: &'a [u8]) -> Result<RtpHeader<'a>, RtpError> {
        let header_len = crate::srtp::context::rtp_header_len(packet).ok_or(RtpError::Malformed)?;
        let mut payload_end = packet.len();
        if packet.first().is_some_and(|b| b & 0x20 != 0) {
            let pad = usize::from(*packet.last().ok_or(RtpError::Malformed)?);
            if pad == 0 || header_len + pad > packet.len() {
                return Err(RtpError::Malformed);
            }
            payload_end -= pad;
        }
        Ok(RtpHeader {
            packet,
            header_len,
            payload_end,
        })
    }

    fn byte(&self, i: usize) -> u8 {
        self.packet.get(i).copied().unwrap_or(0)
    }

    /// Marker bit.
    pub fn marker(&self) -> bool {
        self.byte(1) & 0x80 != 0
    }

    /// Payload type.
    pub fn payload_type(&self) -> u8 {
        self.byte(1) & 0x7F
    }

    /// Sequence number.
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.byte(2), self.byte(3)])
    }

    /// Timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.byte(4), self.byte(5), self.byte(6), self.byte(7)])
    }

    /// SSRC.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.byte(8), self.byte(9), self.byte(10), self.byte(11)])
    }

    /// Header length, CSRCs and extension included.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The payload without padding.
    pub fn payload(&self) -> &'a [u8] {
        self.packet
            .get(self.header_len..self.payload_end)
            .unwrap_or_default()
    }

    /// The header extension elements `(id, value)` (one-byte or two-byte form).
    pub fn extensions(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        let packet = self.packet;
        let first = self.byte(0);
        let base = 12 + 4 * usize::from(first & 0x0F);
        let (profile, data) = if first & 0x10 != 0 {
            let profile = u16::from_be_bytes([
                packet.get(base).copied().unwrap_or(0),
                packet.get(base + 1).copied().unwrap_or(0),
            ]);
            (
                profile,
                packet.get(base + 4..self.header_len).unwrap_or_default(),
            )
        } else {
            (0, &[][..])
        };
        let two_byte = profile & 0xFFF0 == 0x1000;
        let one_byte = profile == 0xBEDE;
        let mut at = 0usize;
        std::iter::from_fn(move || loop {
            if !(one_byte || two_byte) {
                return None;
            }
            let b = *data.get(at)?;
            if b == 0 {
                at += 1;
                continue;
            }
            if one_byte {
                let id = b >> 4;
                if id == 15 {
                    return None;
                }
                let len = usize::from(b & 0x0F) + 1;
                let value = data.get(at + 1..at + 1 + len)?;
                at += 1 + len;
                return Some((id, value));
            }
            let len = usize::from(*data.get(at + 1)?);
            let value = data.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            return Some((b, value));
        })
    }

    /// The value of extension `id`, if present.
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions().find(|(i, _)| *i == id).map(|(_, v)| v)
    }
}

/// Fields of an RTP packet to write.
#[derive(Debug, Clone, Copy)]
pub struct RtpWrite<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// One-byte header extensions `(id 1..=14, value of 1..=16 bytes)`.
    pub extensions: &'a [(u8, &'a [u8])],
    /// Payload.
    pub payload: &'a [u8],
}

/// Write an RTP packet into `out`; returns its length.
pub fn write_rtp(p: &RtpWrite<'_>, out: &mut [u8]) -> Result<usize, RtpError> {
    let ext_body: usize = p.extensions.iter().map(|(_, v)| 1 + v.len()).sum();
    let ext_words = ext_body.div_ceil(4);
    let header = 12
        + if p.extensions.is_empty() {
            0
        } else {
            4 + 4 * ext_words
        };
    let total = header + p.payload.len();
    let buf = out.get_mut(..total).ok_or(RtpError::BufferTooSmall)?;
    buf[0] = 0x80 | if p.extensions.is_empty() { 0 } else { 0x10 };
    buf[1] = (p.payload_type & 0x7F) | if p.marker { 0x80 } else { 0 };
    buf[2..4].copy_from_slice(&p.sequence_number.to_be_bytes());
    buf[4..8].copy_from_slice(&p.timestamp.to_be_bytes());
    buf[8..12].copy_from_slice(&p.ssrc.to_be_bytes());
    if !p.extensions.is_empty() {
        buf[12..14].copy_from_slice(&[0xBE, 0xDE]);
        buf[14..16].copy_from_slice(&(ext_words as u16).to_be_bytes());
        let mut at = 16;
        for (id, v) in p.extensions {
            if !(1..=14).contains(id) || v.is_empty() || v.len() > 16 {
                return Err(RtpError::Malformed);
            }
            buf[at] = (id << 4) | (v.len() as u8 - 1);
            buf[at + 1..at + 1 + v.len()].copy_from_slice(v);
            at += 1 + v.len();
        }
        buf[at..header].iter_mut().for_each(|b| *b = 0);
    }
    buf[header..].copy_from_slice(p.payload);
    Ok(total)
}

/// Whether a demultiplexed RTP/RTCP datagram is RTCP (RFC 5761: packet types 192..=223).
pub fn is_rtcp(packet: &[u8]) -> bool {
    matches!(packet.get(1), Some(192..=223))
}

/// Media SSRCs that a compound RTCP packet asks for a keyframe (PLI or FIR).
pub fn keyframe_requests(compound: &[u8]) -> impl Iterator<Item = u32> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || loop {
        let first = *compound.get(at)?;
        let pt = *compound.get(at + 1)?;
        let words = u16::from_be_bytes([*compound.get(at + 2)?, *compound.get(at + 3)?]);
        let start = at;
        at += 4 + 4 * usize::from(words);
        if first >> 6 != 2 {
            return None;
        }
        let fmt = first & 0x1F;
        let read = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes([
                *compound.get(i)?,
                *compound.get(i + 1)?,
                *compound.get(i + 2)?,
                *compound.get(i + 3)?,
            ]))
        };
        if pt == 206 && fmt == 1 {
            return read(start + 8);
        }
        if pt == 206 && fmt == 4 {
            return read(start + 12);
        }
    })
}

/// A PLI (RFC 4585 6.3.1) from `sender` about `media`, 12 bytes written into `out`.
pub fn write_pli(sender: u32, media: u32, out: &mut [u8]) -> Option<usize> {
    let buf = out.get_mut(..12)?;
    buf[..4].copy_from_slice(&[0x81, 206, 0, 2]);
    buf[4..8].copy_from_slice(&sender.to_be_bytes());
    buf[8..12].copy_from_slice(&media.to_be_bytes());
    Some(12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::QuickCheck;

    #[test]
    fn write_then_parse() {
        let mut buf = [0u8; 200];
        let exts: [(u8, &[u8]); 2] = [(4, b"0"), (10, b"hi")];
        let n = write_rtp(
            &RtpWrite {
                marker: true,
                payload_type: 96,
                sequence_number: 7,
                timestamp: 9000,
                ssrc: 0xDEADBEEF,
                extensions: &exts,
                payload: b"payload",
            },
            &mut buf,
        )
        .expect("write");
        let h = RtpHeader::parse(&buf[..n]).expect("parse");
        assert!(h.marker());
        assert_eq!(
            (
                h.payload_type(),
                h.sequence_number(),
                h.timestamp(),
                h.ssrc()
            ),
            (96, 7, 9000, 0xDEADBEEF)
        );
        assert_eq!(h.extension(4), Some(&b"0"[..]));
        assert_eq!(h.extension(10), Some(&b"hi"[..]));
        assert_eq!(h.payload(), b"payload");
        assert!(!is_rtcp(&buf[..n]));
    }

    /// RFC 3550 5.1 / RFC 8285: two CSRCs, a one-byte extension block with a padding byte
    /// between elements, and three bytes of RTP padding.
    const CSRC_PADDING_ONE_BYTE: [u8; 40] = [
        0xB2, 0xEF, 0x12, 0x34, 0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB, 0xCC,
        0xDD, // V=2 P X CC=2, M, PT 111
        0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22, // CSRCs
        0xBE, 0xDE, 0x00, 0x02, // one-byte profile, 2 words
        0x10, b'A', 0x00, 0x32, b'x', b'y', b'z', 0x00, // id 1 "A", pad, id 3 "xyz", pad
        b'h', b'e', b'l', b'l', b'o', 0x00, 0x00, 0x03, // payload, 3 bytes of padding
    ];
    /// RFC 8285 4.3: the two-byte form, with an empty element and an id above 14.
    const TWO_BYTE: [u8; 25] = [
        0x90, 0x60, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // X, PT 96
        0x10, 0x00, 0x00, 0x02, // two-byte profile (appbits 0), 2 words
        20, 0, 200, 3, b'a', b'b', b'c', 0x00, // id 20 empty, id 200 "abc", pad
        b'p',
    ];

    #[test]
    fn csrcs_padding_and_both_extension_forms() {
        let h = RtpHeader::parse(&CSRC_PADDING_ONE_BYTE).expect("parse");
        assert!(h.marker());
        assert_eq!((h.payload_type(), h.sequence_number()), (111, 0x1234));
        assert_eq!((h.timestamp(), h.ssrc()), (0x0102_0304, 0xAABB_CCDD));
        assert_eq!(
            h.header_len(),
            32,
            "12 + 2 CSRCs + extension header and block"
        );
        assert_eq!(h.payload(), b"hello", "padding removed");
        let exts: Vec<(u8, &[u8])> = h.extensions().collect();
        assert_eq!(exts, vec![(1, &b"A"[..]), (3, &b"xyz"[..])]);

        let h = RtpHeader::parse(&TWO_BYTE).expect("parse");
        let exts: Vec<(u8, &[u8])> = h.extensions().collect();
        assert_eq!(exts, vec![(20, &b""[..]), (200, &b"abc"[..])]);
        assert_eq!(h.extension(200), Some(&b"abc"[..]));
        assert_eq!(h.payload(), b"p");

        // An extension profile that is neither form: no elements, the header still skipped.
        let mut other = TWO_BYTE;
        other[12] = 0x7F;
        let h = RtpHeader::parse(&other).expect("parse");
        assert_eq!(h.extensions().count(), 0);
        assert_eq!(h.payload(), b"p");
    }

    #[test]
    fn truncated_and_inconsistent_packets_are_refused() {
        // Every cut inside the header (CSRCs, extension header or block) is malformed.
        for len in 0..32 {
            assert_eq!(
                RtpHeader::parse(&CSRC_PADDING_ONE_BYTE[..len]).err(),
                Some(RtpError::Malformed),
                "cut at {len}"
            );
        }
        // A padding count of zero, or larger than what follows the header.
        let mut p = CSRC_PADDING_ONE_BYTE;
        p[39] = 0;
        assert!(RtpHeader::parse(&p).is_err());
        p[39] = 8;
        let h = RtpHeader::parse(&p).expect("all 8 bytes after the header are padding");
        assert_eq!(h.payload(), b"");
        p[39] = 9;
        assert!(RtpHeader::parse(&p).is_err());
        // Fifteen CSRCs that are not there.
        let mut p = CSRC_PADDING_ONE_BYTE;
        p[0] = 0x8F;
        assert!(RtpHeader::parse(&p).is_err());
        // An extension length running past the packet.
        let mut p = TWO_BYTE;
        p[15] = 9;
        assert!(RtpHeader::parse(&p).is_err());
        // Version 1.
        let mut p = TWO_BYTE;
        p[0] = 0x50;
        assert!(RtpHeader::parse(&p).is_err());
    }

    #[test]
    fn pli_and_fir_are_recognized() {
        let mut b = [0u8; 12];
        write_pli(1, 0xABCD, &mut b).expect("pli");
        assert!(is_rtcp(&b));
        assert_eq!(keyframe_requests(&b).collect::<Vec<_>>(), vec![0xABCD]);
        let fir = [
            0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 5, 0, 0, 0,
        ];
        assert_eq!(keyframe_requests(&fir).collect::<Vec<_>>(), vec![0x1234]);
    }

    #[test]
    fn quickcheck_write_then_parse() {
        fn prop(
            marker: bool,
            pt: u8,
            seq: u16,
            ts: u32,
            ssrc: u32,
            ids: Vec<u8>,
            payload: Vec<u8>,
        ) -> bool {
            let values: Vec<Vec<u8>> = ids
                .iter()
                .map(|i| vec![*i; 1 + usize::from(*i % 16)])
                .collect();
            let exts: Vec<(u8, &[u8])> = ids
                .iter()
                .zip(&values)
                .take(6)
                .map(|(i, v)| (1 + i % 14, v.as_slice()))
                .collect();
            let mut buf = vec![0u8; 2000];
            let p = RtpWrite {
                marker,
                payload_type: pt & 0x7F,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
                extensions: &exts,
                payload: &payload,
            };
            let Ok(n) = write_rtp(&p, &mut buf) else {
                return false;
            };
            let Ok(h) = RtpHeader::parse(&buf[..n]) else {
                return false;
            };
            let got: Vec<(u8, &[u8])> = h.extensions().collect();
            h.marker() == marker
                && h.payload_type() == pt & 0x7F
                && h.sequence_number() == seq
                && h.timestamp() == ts
                && h.ssrc() == ssrc
                && h.payload() == payload.as_slice()
                && got == exts
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(bool, u8, u16, u32, u32, Vec<u8>, Vec<u8>) -> bool);
    }

    #[test]
    fn garbage_never_panics() {
        fn prop(data: Vec<u8>) -> bool {
            if let Ok(h) = RtpHeader::parse(&data) {
                let _ = h.extensions().count();
                let _ = h.payload();
            }
            let _ = keyframe_requests(&data).count();
            true
        }
        QuickCheck::new()
            .tests(3000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }
}
