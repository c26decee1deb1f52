//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01,
//! RTPFB FMT=15): the FCI of [`RtcpPacket::TransportCc`](super::RtcpPacket::TransportCc) as
//! a checked view whose packet statuses are read lazily, and a writer that chooses the chunk
//! encodings (run length, 1-bit or 2-bit status vectors) into a caller's buffer.
//!
//! ```text
//!  base sequence number (16) | packet status count (16)
//!  reference time (24, signed, 64 ms) | feedback packet count (8)
//!  packet chunks (16 bits each) ... | receive deltas (1 or 2 bytes, 250 us) ... | padding
//! ```
//!
//! Neither side allocates: [`TransportCcFeedback::parse`] walks the chunks once to check
//! them, [`TransportCcFeedback::packets`] walks them again as an iterator.

use super::RtcpError;

/// One receive delta tick: 250 µs.
pub const DELTA_TICK_US: i64 = 250;
/// One reference time tick: 64 ms.
pub const REFERENCE_TICK_US: i64 = 64_000;
/// The largest run a run-length chunk carries.
const MAX_RUN: usize = 0x1FFF;

/// A status symbol: not received, received with a small (1-byte) delta, or with a large or
/// negative (2-byte) delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Symbol {
    NotReceived = 0,
    Small = 1,
    Large = 2,
}

impl Symbol {
    fn from_bits(bits: u16) -> Result<Symbol, RtcpError> {
        match bits {
            0 => Ok(Symbol::NotReceived),
            1 => Ok(Symbol::Small),
            2 => Ok(Symbol::Large),
            _ => Err(RtcpError::Malformed),
        }
    }

    fn of(delta: Option<i16>) -> Symbol {
        match delta {
            None => Symbol::NotReceived,
            Some(d) if (0..=255).contains(&d) => Symbol::Small,
            Some(_) => Symbol::Large,
        }
    }

    fn delta_len(self) -> usize {
        self as usize
    }
}

/// The status of one packet in a feedback: its transport-wide sequence number and, when it
/// was received, its receive delta in 250 µs ticks from the previous received packet (the
/// first from the reference time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketStatus {
    /// Transport-wide sequence number.
    pub sequence: u16,
    /// Receive delta in ticks of [`DELTA_TICK_US`], `None` when not received.
    pub delta: Option<i16>,
}

/// A checked transport-wide feedback FCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportCcFeedback<'a> {
    /// Sequence number of the first packet reported.
    pub base_sequence: u16,
    /// How many packets are reported.
    pub status_count: u16,
    /// Reference time in ticks of [`REFERENCE_TICK_US`] (24-bit signed).
    pub reference_time: i32,
    /// The feedback packet counter of the sender of this feedback.
    pub feedback_count: u8,
    /// Chunks, then deltas, then padding.
    rest: &'a [u8],
}

/// A cursor over the status symbols of a chunk list.
#[derive(Debug, Clone, Copy)]
struct ChunkCursor {
    at: usize,
    in_chunk: usize,
}

impl ChunkCursor {
    /// The next symbol, or `None` at the end of `chunks`. `Err` for a reserved symbol.
    fn next(&mut self, rest: &[u8]) -> Option<Result<Symbol, RtcpError>> {
        loop {
            let c = rest.get(self.at..self.at + 2)?;
            let chunk = u16::from_be_bytes([c[0], c[1]]);
            let (len, symbol) = if chunk & 0x8000 == 0 {
                let run = usize::from(chunk & 0x1FFF);
                (run, Symbol::from_bits((chunk >> 13) & 3))
            } else if chunk & 0x4000 == 0 {
                let i = self.in_chunk.min(13);
                let received = (chunk >> (13 - i)) & 1 == 1;
                (
                    14,
                    Ok(if received {
                        Symbol::Small
                    } else {
                        Symbol::NotReceived
                    }),
                )
            } else {
                let i = self.in_chunk.min(6);
                (7, Symbol::from_bits((chunk >> (12 - 2 * i)) & 3))
            };
            if self.in_chunk >= len {
                self.at += 2;
                self.in_chunk = 0;
                continue;
            }
            self.in_chunk += 1;
            return Some(symbol);
        }
    }

    /// Byte offset just past the chunk being read.
    fn end(&self) -> usize {
        if self.in_chunk == 0 {
            self.at
        } else {
            self.at + 2
        }
    }
}

impl<'a> TransportCcFeedback<'a> {
    /// Check an FCI: the chunks cover `status_count` symbols, none reserved, and the deltas
    /// they announce are present.
    pub fn parse(fci: &'a [u8]) -> Result<TransportCcFeedback<'a>, RtcpError> {
        let head = fci.get(..8).ok_or(RtcpError::Malformed)?;
        let reference = (i32::from(head[4]) << 16) | (i32::from(head[5]) << 8) | i32::from(head[6]);
        let fb = TransportCcFeedback {
            base_sequence: u16::from_be_bytes([head[0], head[1]]),
            status_count: u16::from_be_bytes([head[2], head[3]]),
            reference_time: (reference << 8) >> 8,
            feedback_count: head[7],
            rest: &fci[8..],
        };
        let mut cursor = ChunkCursor { at: 0, in_chunk: 0 };
        let mut delta_bytes = 0usize;
        for _ in 0..fb.status_count {
            let symbol = cursor.next(fb.rest).ok_or(RtcpError::Malformed)??;
            delta_bytes += symbol.delta_len();
        }
        if cursor.end() + delta_bytes > fb.rest.len() {
            return Err(RtcpError::Malformed);
        }
        Ok(fb)
    }

    /// The reported packets in sequence order.
    pub fn packets(&self) -> impl Iterator<Item = PacketStatus> + 'a {
        // Find where the deltas start: past the chunks that cover `status_count` symbols.
        let rest = self.rest;
        let mut cursor = ChunkCursor { at: 0, in_chunk: 0 };
        for _ in 0..self.status_count {
            let _ = cursor.next(rest);
        }
        let mut delta_at = cursor.end();
        let mut symbols = ChunkCursor { at: 0, in_chunk: 0 };
        let mut sequence = self.base_sequence;
        let mut left = self.status_count;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let symbol = symbols.next(rest)?.ok()?;
            let delta = match symbol {
                Symbol::NotReceived => None,
                Symbol::Small => {
                    let d = *rest.get(delta_at)?;
                    delta_at += 1;
                    Some(i16::from(d))
                }
                Symbol::Large => {
                    let d = rest.get(delta_at..delta_at + 2)?;
                    delta_at += 2;
                    Some(i16::from_be_bytes([d[0], d[1]]))
                }
            };
            let status = PacketStatus { sequence, delta };
            sequence = sequence.wrapping_add(1);
            Some(status)
        })
    }

    /// The reported packets with arrival times in microseconds on the feedback sender's
    /// clock (reference time plus the running sum of deltas); `None` when not received.
    pub fn arrivals(&self) -> impl Iterator<Item = (u16, Option<i64>)> + 'a {
        let mut clock = i64::from(self.reference_time) * REFERENCE_TICK_US;
        self.packets().map(move |p| {
            let at = p.delta.map(|d| {
                clock += i64::from(d) * DELTA_TICK_US;
                clock
            });
            (p.sequence, at)
        })
    }
}

impl super::RtcpPacket {
    /// The typed view of a transport-wide feedback packet's FCI; `None` for other packets.
    pub fn transport_cc_feedback(&self) -> Option<Result<TransportCcFeedback<'_>, RtcpError>> {
        match self {
            super::RtcpPacket::TransportCc { fci, .. } => Some(TransportCcFeedback::parse(fci)),
            _ => None,
        }
    }
}

/// The fields of a transport-wide feedback FCI to write.
#[derive(Debug, Clone, Copy)]
pub struct TransportCcWrite<'a> {
    /// Sequence number of `deltas[0]`.
    pub base_sequence: u16,
    /// Reference time in ticks of [`REFERENCE_TICK_US`] (must fit 24 bits signed).
    pub reference_time: i32,
    /// Feedback packet counter.
    pub feedback_count: u8,
    /// One entry per packet from `base_sequence` on: its receive delta in 250 µs ticks, or
    /// `None` when not received (at most 65,535 entries).
    pub deltas: &'a [Option<i16>],
}

/// The number of symbols from `i` that equal `deltas[i]`'s symbol, at most [`MAX_RUN`].
fn run_at(deltas: &[Option<i16>], i: usize) -> usize {
    let first = Symbol::of(deltas[i]);
    deltas[i..]
        .iter()
        .take(MAX_RUN)
        .take_while(|d| Symbol::of(**d) == first)
        .count()
}

/// Write the FCI into `out`, padded to a multiple of four bytes; returns its length.
///
/// Chunks: a run of 14 or more equal symbols (or one reaching the end) takes a run-length
/// chunk; otherwise 14 symbols without a large delta take a 1-bit vector; otherwise a run
/// of 7 or more takes a run-length chunk, and anything else a 2-bit vector of 7.
pub fn write_transport_cc_fci(
    w: &TransportCcWrite<'_>,
    out: &mut [u8],
) -> Result<usize, RtcpError> {
    let count = u16::try_from(w.deltas.len()).map_err(|_| RtcpError::Malformed)?;
    if !(-(1 << 23)..(1 << 23)).contains(&w.reference_time) {
        return Err(RtcpError::Malformed);
    }
    let head = out.get_mut(..8).ok_or(RtcpError::BufferTooSmall)?;
    head[..2].copy_from_slice(&w.base_sequence.to_be_bytes());
    head[2..4].copy_from_slice(&count.to_be_bytes());
    head[4..7].copy_from_slice(&w.reference_time.to_be_bytes()[1..]);
    head[7] = w.feedback_count;
    let mut at = 8usize;
    let put = |out: &mut [u8], at: &mut usize, bytes: &[u8]| -> Result<(), RtcpError> {
        out.get_mut(*at..*at + bytes.len())
            .ok_or(RtcpError::BufferTooSmall)?
            .copy_from_slice(bytes);
        *at += bytes.len();
        Ok(())
    };
    let deltas = w.deltas;
    let mut i = 0usize;
    while i < deltas.len() {
        let run = run_at(deltas, i);
        let remaining = deltas.len() - i;
        let window = remaining.min(14);
        let chunk: u16;
        if run >= 14 || run == remaining {
            chunk = ((Symbol::of(deltas[i]) as u16) << 13) | run as u16;
            i += run;
        } else if deltas[i..i + window]
            .iter()
            .all(|d| Symbol::of(*d) != Symbol::Large)
        {
            let mut c = 0x8000u16;
            for (k, d) in deltas[i..i + window].iter().enumerate() {
                c |= (Symbol::of(*d) as u16) << (13 - k);
            }
            chunk = c;
            i += window;
        } else if run >= 7 {
            chunk = ((Symbol::of(deltas[i]) as u16) << 13) | run as u16;
            i += run;
        } else {
            let window = remaining.min(7);
            let mut c = 0xC000u16;
            for (k, d) in deltas[i..i + window].iter().enumerate() {
                c |= (Symbol::of(*d) as u16) << (12 - 2 * k);
            }
            chunk = c;
            i += window;
        }
        put(out, &mut at, &chunk.to_be_bytes())?;
    }
    for d in deltas.iter().flatten() {
        match Symbol::of(Some(*d)) {
            Symbol::Small => put(out, &mut at, &[*d as u8])?,
            _ => put(out, &mut at, &d.to_be_bytes())?,
        }
    }
    while at % 4 != 0 {
        put(out, &mut at, &[0])?;
    }
    Ok(at)
}

/// Write a whole transport-wide feedback RTCP packet (header, sender and media SSRC, FCI)
/// into `out`; returns its length.
pub fn write_transport_cc(
    sender: u32,
    media: u32,
    w: &TransportCcWrite<'_>,
    out: &mut [u8],
) -> Result<usize, RtcpError> {
    let fci_len = write_transport_cc_fci(w, out.get_mut(12..).ok_or(RtcpError::BufferTooSmall)?)?;
    let total = 12 + fci_len;
    let words = u16::try_from(total / 4 - 1).map_err(|_| RtcpError::Malformed)?;
    out[..2].copy_from_slice(&[0x8F, 205]);
    out[2..4].copy_from_slice(&words.to_be_bytes());
    out[4..8].copy_from_slice(&sender.to_be_bytes());
    out[8..12].copy_from_slice(&media.to_be_bytes());
    Ok(total)
}

/// The largest FCI [`write_transport_cc_fci`] writes for `n` packets: every chunk but the
/// last covers at least 7 packets, every delta takes at most 2 bytes, then padding.
pub fn max_fci_len(n: usize) -> usize {
    (8 + 2 * (n / 7 + 1) + 2 * n).div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtcpPacket;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    fn parse_all(fci: &[u8]) -> Vec<PacketStatus> {
        TransportCcFeedback::parse(fci)
            .expect("valid FCI")
            .packets()
            .collect()
    }

    /// A feedback assembled by hand the way Chromium sends one: base 256, 9 packets:
    /// received (small delta), six lost, received (small), received (large, negative).
    #[test]
    fn byte_fixture_hand_built_feedback() {
        let fci = [
            0x01, 0x00, 0x00, 0x09, // base 256, 9 statuses
            0x00, 0x00, 0x02, 0x05, // reference time 2 (128 ms), feedback count 5
            0xD0, 0x00, // 2-bit vector: S N N N N N N
            0xD8, 0x00, // 2-bit vector: S L (the other slots past the count)
            0x10, // delta 16 ticks (4 ms)
            0x04, // delta 4 ticks
            0xFF, 0xF0, // delta -16 ticks
        ];
        let fb = TransportCcFeedback::parse(&fci).expect("parse");
        assert_eq!(
            (
                fb.base_sequence,
                fb.status_count,
                fb.reference_time,
                fb.feedback_count
            ),
            (256, 9, 2, 5)
        );
        let got: Vec<_> = fb.packets().map(|p| (p.sequence, p.delta)).collect();
        assert_eq!(
            got,
            vec![
                (256, Some(16)),
                (257, None),
                (258, None),
                (259, None),
                (260, None),
                (261, None),
                (262, None),
                (263, Some(4)),
                (264, Some(-16)),
            ]
        );
        let arrivals: Vec<_> = fb.arrivals().map(|(_, a)| a).collect();
        assert_eq!(arrivals[0], Some(128_000 + 16 * 250));
        assert_eq!(arrivals[7], Some(128_000 + 20 * 250));
        assert_eq!(arrivals[8], Some(128_000 + 4 * 250));
        // A cut inside the deltas is refused.
        assert!(TransportCcFeedback::parse(&fci[..15]).is_err());
    }

    /// A run-length chunk (0x4018: 24 packets with large deltas) under a negative reference
    /// time, and the draft's 1-bit status vector example (section 3.1.4, 0x9F1C).
    #[test]
    fn byte_fixture_draft_chunks() {
        let mut fci = vec![0x00, 0x0A, 0x00, 24, 0xFF, 0xFF, 0xFF, 0x00, 0x40, 0x18];
        fci.extend(std::iter::repeat_n([0x00u8, 0x01], 24).flatten());
        let fb = TransportCcFeedback::parse(&fci).expect("parse");
        assert_eq!(fb.reference_time, -1, "24-bit signed");
        assert_eq!(fb.packets().count(), 24);
        assert!(fb.packets().all(|p| p.delta == Some(1)));
        // 1-bit vector 0x9F1C = 1 0 01111100011100: N R R R R R N N N R R R N N.
        let fci = [
            0, 0, 0, 14, 0, 0, 0, 0, 0x9F, 0x1C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0,
        ];
        let got: Vec<bool> = parse_all(&fci).iter().map(|p| p.delta.is_some()).collect();
        let expect = [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0].map(|b| b == 1);
        assert_eq!(got, expect);
        // A reserved symbol (11) is refused.
        let bad = [0, 0, 0, 1, 0, 0, 0, 0, 0xF0, 0x00, 0, 0];
        assert!(TransportCcFeedback::parse(&bad).is_err());
        let bad_run = [0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x01, 0, 0];
        assert!(TransportCcFeedback::parse(&bad_run).is_err());
    }

    #[test]
    fn writer_picks_compact_chunks() {
        let mut buf = [0u8; 256];
        // 100 packets all received with small deltas: one run-length chunk, 100 delta bytes.
        let all = [Some(4i16); 100];
        let w = TransportCcWrite {
            base_sequence: 65_500,
            reference_time: 7,
            feedback_count: 1,
            deltas: &all,
        };
        let n = write_transport_cc_fci(&w, &mut buf).expect("write");
        assert_eq!(n, 8 + 2 + 100 + 2);
        assert_eq!(&buf[8..10], &[0x20, 100]);
        let got = parse_all(&buf[..n]);
        assert_eq!(
            got.last().map(|p| p.sequence),
            Some(65_500u16.wrapping_add(99))
        );
        // Alternating lost/received small: 1-bit vectors of 14.
        let alt: Vec<Option<i16>> = (0..28).map(|i| (i % 2 == 0).then_some(1)).collect();
        let w = TransportCcWrite { deltas: &alt, ..w };
        let n = write_transport_cc_fci(&w, &mut buf).expect("write");
        assert_eq!(n, (8 + 4 + 14usize).div_ceil(4) * 4);
        assert_eq!(buf[8] & 0xC0, 0x80, "1-bit vector");
        // A large delta among lost packets: 2-bit vectors.
        let mixed = [Some(-1i16), None, Some(300), None];
        let w = TransportCcWrite {
            deltas: &mixed,
            ..w
        };
        let n = write_transport_cc_fci(&w, &mut buf).expect("write");
        assert_eq!(buf[8] & 0xC0, 0xC0, "2-bit vector");
        assert_eq!(
            parse_all(&buf[..n])
                .iter()
                .map(|p| p.delta)
                .collect::<Vec<_>>(),
            mixed
        );
        assert!(n <= max_fci_len(mixed.len()));
        // Out of range reference time and a short buffer.
        let w2 = TransportCcWrite {
            reference_time: 1 << 23,
            ..w
        };
        assert_eq!(
            write_transport_cc_fci(&w2, &mut buf),
            Err(RtcpError::Malformed)
        );
        assert_eq!(
            write_transport_cc_fci(&w, &mut buf[..10]),
            Err(RtcpError::BufferTooSmall)
        );
    }

    #[test]
    fn whole_packet_goes_through_rtcp_packet() {
        let deltas = [Some(1i16), None, Some(1000)];
        let w = TransportCcWrite {
            base_sequence: 9,
            reference_time: -3,
            feedback_count: 200,
            deltas: &deltas,
        };
        let mut buf = [0u8; 64];
        let n = write_transport_cc(1, 2, &w, &mut buf).expect("write");
        let (p, used) = RtcpPacket::parse_one(&buf[..n]).expect("rtcp");
        assert_eq!(used, n);
        let RtcpPacket::TransportCc { sender, media, fci } = p else {
            panic!("not transport-cc")
        };
        assert_eq!((sender, media), (1, 2));
        let fb = TransportCcFeedback::parse(&fci).expect("fci");
        assert_eq!((fb.reference_time, fb.feedback_count), (-3, 200));
        let typed = RtcpPacket::TransportCc {
            sender,
            media,
            fci: fci.clone(),
        };
        assert_eq!(typed.transport_cc_feedback(), Some(Ok(fb)));
        assert_eq!(
            RtcpPacket::Pli { sender, media }.transport_cc_feedback(),
            None
        );
        assert_eq!(fb.packets().map(|p| p.delta).collect::<Vec<_>>(), deltas);
    }

    #[derive(Debug, Clone)]
    struct Statuses(Vec<Option<i16>>);

    impl Arbitrary for Statuses {
        fn arbitrary(g: &mut Gen) -> Self {
            let n = usize::arbitrary(g) % 300;
            let mode = u8::arbitrary(g) % 3;
            Statuses(
                (0..n)
                    .map(|_| match (mode, u8::arbitrary(g) % 8) {
                        (0, _) => Some(i16::from(u8::arbitrary(g))),
                        (_, 0) => None,
                        (1, _) => Some(i16::from(u8::arbitrary(g) % 8)),
                        _ => Some(i16::arbitrary(g)),
                    })
                    .collect(),
            )
        }
    }

    #[test]
    fn quickcheck_write_then_parse() {
        fn prop(base: u16, reference: i32, count: u8, s: Statuses) -> bool {
            let reference = (reference << 8) >> 8;
            let w = TransportCcWrite {
                base_sequence: base,
                reference_time: reference,
                feedback_count: count,
                deltas: &s.0,
            };
            let mut buf = vec![0u8; max_fci_len(s.0.len())];
            let Ok(n) = write_transport_cc_fci(&w, &mut buf) else {
                return false;
            };
            let Ok(fb) = TransportCcFeedback::parse(&buf[..n]) else {
                return false;
            };
            let got: Vec<PacketStatus> = fb.packets().collect();
            n % 4 == 0
                && fb.reference_time == reference
                && fb.feedback_count == count
                && got.len() == s.0.len()
                && got
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.sequence == base.wrapping_add(i as u16) && p.delta == s.0[i])
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(u16, i32, u8, Statuses) -> bool);
    }

    #[test]
    fn quickcheck_garbage_never_panics() {
        fn prop(data: Vec<u8>) -> bool {
            if let Ok(fb) = TransportCcFeedback::parse(&data) {
                // A checked feedback yields every status it announced.
                return fb.packets().count() == usize::from(fb.status_count);
            }
            true
        }
        QuickCheck::new()
            .tests(3000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }
}
