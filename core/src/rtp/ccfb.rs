//! RTP congestion control feedback (RFC 8888, RTPFB FMT=11): per-SSRC blocks of packet
//! metrics (received, ECN, arrival time offset) and a report timestamp. The body of the
//! RTCP packet (after its 4-byte header; `RtcpPacket::Unknown { count: 11, packet_type: 205 }`
//! carries it) parses into a checked view whose blocks and metrics are read lazily; the
//! writer writes a whole packet into a caller's buffer.
//!
//! ```text
//!  SSRC of packet sender
//!  { SSRC of media source | begin_seq (16) num_reports (16) | R|ECN|ATO(13) ... | pad } ...
//!  report timestamp (NTP middle 32 bits)
//! ```

use super::RtcpError;

/// The arrival time offset value meaning "too far in the past to say".
pub const ATO_OVERRANGE: u16 = 0x1FFF;
/// RFC 8888: a block reports at most a quarter of the sequence space.
pub const MAX_REPORTS_PER_BLOCK: usize = 16_384;

/// The metric of one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcfbArrival {
    /// The ECN bits it arrived with (0..=3).
    pub ecn: u8,
    /// Arrival time offset before the report timestamp, in 1/1024 s (13 bits;
    /// [`ATO_OVERRANGE`] when unknown).
    pub offset: u16,
}

/// A checked RFC 8888 feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcfbFeedback<'a> {
    /// Sender of the feedback.
    pub sender: u32,
    /// Report timestamp (middle 32 bits of an NTP time).
    pub report_timestamp: u32,
    blocks: &'a [u8],
}

/// One SSRC's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcfbBlock<'a> {
    /// Media source.
    pub ssrc: u32,
    /// Sequence number of the first metric.
    pub begin_sequence: u16,
    metrics: &'a [u8],
}

impl<'a> CcfbBlock<'a> {
    /// The packets reported: `(sequence, arrival)`, `None` when not received.
    pub fn packets(&self) -> impl Iterator<Item = (u16, Option<CcfbArrival>)> + 'a {
        let begin = self.begin_sequence;
        self.metrics.chunks_exact(2).enumerate().map(move |(i, m)| {
            let v = u16::from_be_bytes([m[0], m[1]]);
            let arrival = (v & 0x8000 != 0).then_some(CcfbArrival {
                ecn: ((v >> 13) & 3) as u8,
                offset: v & 0x1FFF,
            });
            (begin.wrapping_add(i as u16), arrival)
        })
    }

    /// How many packets the block reports.
    pub fn len(&self) -> usize {
        self.metrics.len() / 2
    }

    /// Whether the block reports no packet.
    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty()
    }
}

/// Split the front block off `rest`: the block and what follows it.
fn split_block(rest: &[u8]) -> Result<(CcfbBlock<'_>, &[u8]), RtcpError> {
    let head = rest.get(..8).ok_or(RtcpError::Malformed)?;
    let n = usize::from(u16::from_be_bytes([head[6], head[7]]));
    if n > MAX_REPORTS_PER_BLOCK {
        return Err(RtcpError::Malformed);
    }
    let padded = (2 * n).div_ceil(4) * 4;
    let metrics = rest.get(8..8 + 2 * n).ok_or(RtcpError::Malformed)?;
    let next = rest.get(8 + padded..).ok_or(RtcpError::Malformed)?;
    Ok((
        CcfbBlock {
            ssrc: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
            begin_sequence: u16::from_be_bytes([head[4], head[5]]),
            metrics,
        },
        next,
    ))
}

impl<'a> CcfbFeedback<'a> {
    /// Check the body of an RTPFB FMT=11 packet (everything after the 4-byte header).
    pub fn parse(body: &'a [u8]) -> Result<CcfbFeedback<'a>, RtcpError> {
        if body.len() < 8 || body.len() % 4 != 0 {
            return Err(RtcpError::Malformed);
        }
        let (head, tail) = body.split_at(4);
        let (blocks, ts) = tail.split_at(tail.len() - 4);
        let mut rest = blocks;
        while !rest.is_empty() {
            rest = split_block(rest)?.1;
        }
        Ok(CcfbFeedback {
            sender: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
            report_timestamp: u32::from_be_bytes([ts[0], ts[1], ts[2], ts[3]]),
            blocks,
        })
    }

    /// The per-SSRC blocks.
    pub fn blocks(&self) -> impl Iterator<Item = CcfbBlock<'a>> + 'a {
        let mut rest = self.blocks;
        std::iter::from_fn(move || {
            let (block, next) = split_block(rest).ok()?;
            rest = next;
            Some(block)
        })
    }
}

impl super::RtcpPacket {
    /// The typed view of an RFC 8888 feedback (kept as `Unknown { count: 11, packet_type:
    /// 205 }`); `None` for other packets.
    pub fn congestion_control_feedback(&self) -> Option<Result<CcfbFeedback<'_>, RtcpError>> {
        match self {
            super::RtcpPacket::Unknown {
                count: 11,
                packet_type: 205,
                body,
            } => Some(CcfbFeedback::parse(body)),
            _ => None,
        }
    }
}

/// One block to write.
#[derive(Debug, Clone, Copy)]
pub struct CcfbBlockWrite<'a> {
    /// Media source.
    pub ssrc: u32,
    /// Sequence number of `packets[0]`.
    pub begin_sequence: u16,
    /// One entry per packet (at most [`MAX_REPORTS_PER_BLOCK`]).
    pub packets: &'a [Option<CcfbArrival>],
}

/// Write a whole RFC 8888 feedback packet into `out`; returns its length.
pub fn write_ccfb(
    sender: u32,
    report_timestamp: u32,
    blocks: &[CcfbBlockWrite<'_>],
    out: &mut [u8],
) -> Result<usize, RtcpError> {
    let mut at = 8usize;
    let put = |out: &mut [u8], at: &mut usize, bytes: &[u8]| -> Result<(), RtcpError> {
        out.get_mut(*at..*at + bytes.len())
            .ok_or(RtcpError::BufferTooSmall)?
            .copy_from_slice(bytes);
        *at += bytes.len();
        Ok(())
    };
    for b in blocks {
        if b.packets.len() > MAX_REPORTS_PER_BLOCK {
            return Err(RtcpError::Malformed);
        }
        put(out, &mut at, &b.ssrc.to_be_bytes())?;
        put(out, &mut at, &b.begin_sequence.to_be_bytes())?;
        put(out, &mut at, &(b.packets.len() as u16).to_be_bytes())?;
        for p in b.packets {
            let v = match p {
                None => 0u16,
                Some(a) => {
                    if a.ecn > 3 || a.offset > ATO_OVERRANGE {
                        return Err(RtcpError::Malformed);
                    }
                    0x8000 | (u16::from(a.ecn) << 13) | a.offset
                }
            };
            put(out, &mut at, &v.to_be_bytes())?;
        }
        if b.packets.len() % 2 == 1 {
            put(out, &mut at, &[0, 0])?;
        }
    }
    put(out, &mut at, &report_timestamp.to_be_bytes())?;
    let words = u16::try_from(at / 4 - 1).map_err(|_| RtcpError::Malformed)?;
    let head = out.get_mut(..8).ok_or(RtcpError::BufferTooSmall)?;
    head[..2].copy_from_slice(&[0x80 | 11, 205]);
    head[2..4].copy_from_slice(&words.to_be_bytes());
    head[4..8].copy_from_slice(&sender.to_be_bytes());
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtcpPacket;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    /// RFC 8888 section 3.1 by hand: one block for SSRC 0x11223344 from sequence 0xFFFE,
    /// three packets (received ECT(0) 1 s before the report, lost, received CE at the
    /// report time), padding, report timestamp 0x00010000.
    const FIXTURE: [u8; 28] = [
        0x8B, 205, 0, 6, // FMT 11, 7 words
        0, 0, 0, 9, // sender
        0x11, 0x22, 0x33, 0x44, // media SSRC
        0xFF, 0xFE, 0, 3, // begin_seq, num_reports
        0xC4, 0x00, // R, ECN 10, ATO 1024
        0x00, 0x00, // lost
        0xE0, 0x00, // R, ECN 11, ATO 0
        0x00, 0x00, // padding
        0x00, 0x01, 0x00, 0x00, // report timestamp
    ];

    #[test]
    fn byte_fixture_parses_and_writes_back() {
        let (p, used) = RtcpPacket::parse_one(&FIXTURE).expect("rtcp");
        assert_eq!(used, FIXTURE.len());
        let RtcpPacket::Unknown {
            count: 11,
            packet_type: 205,
            body,
        } = p
        else {
            panic!("not RTPFB 11: {p:?}")
        };
        let fb = CcfbFeedback::parse(&body).expect("ccfb");
        assert_eq!((fb.sender, fb.report_timestamp), (9, 0x0001_0000));
        let typed = RtcpPacket::Unknown {
            count: 11,
            packet_type: 205,
            body: body.clone(),
        };
        assert_eq!(typed.congestion_control_feedback(), Some(Ok(fb)));
        let blocks: Vec<_> = fb.blocks().collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!(
            (blocks[0].ssrc, blocks[0].begin_sequence),
            (0x1122_3344, 0xFFFE)
        );
        let packets: Vec<_> = blocks[0].packets().collect();
        let expect = vec![
            (
                0xFFFE,
                Some(CcfbArrival {
                    ecn: 2,
                    offset: 1024,
                }),
            ),
            (0xFFFF, None),
            (0, Some(CcfbArrival { ecn: 3, offset: 0 })),
        ];
        assert_eq!(packets, expect);
        let arrivals: Vec<_> = expect.iter().map(|(_, a)| *a).collect();
        let mut out = [0u8; 64];
        let n = write_ccfb(
            9,
            0x0001_0000,
            &[CcfbBlockWrite {
                ssrc: 0x1122_3344,
                begin_sequence: 0xFFFE,
                packets: &arrivals,
            }],
            &mut out,
        )
        .expect("write");
        assert_eq!(&out[..n], &FIXTURE[..]);
        // Any cut inside the block is refused (it would not end where the timestamp starts).
        for cut in (16..FIXTURE.len()).step_by(4) {
            assert!(CcfbFeedback::parse(&FIXTURE[4..cut]).is_err(), "cut {cut}");
        }
    }

    #[derive(Debug, Clone)]
    struct Blocks(Vec<(u32, u16, Vec<Option<CcfbArrival>>)>);

    impl Arbitrary for Blocks {
        fn arbitrary(g: &mut Gen) -> Self {
            let n = usize::arbitrary(g) % 4;
            Blocks(
                (0..n)
                    .map(|_| {
                        let len = usize::arbitrary(g) % 40;
                        let packets = (0..len)
                            .map(|_| {
                                bool::arbitrary(g).then(|| CcfbArrival {
                                    ecn: u8::arbitrary(g) % 4,
                                    offset: u16::arbitrary(g) & 0x1FFF,
                                })
                            })
                            .collect();
                        (u32::arbitrary(g), u16::arbitrary(g), packets)
                    })
                    .collect(),
            )
        }
    }

    #[test]
    fn quickcheck_write_then_parse() {
        fn prop(sender: u32, ts: u32, b: Blocks) -> bool {
            let writes: Vec<CcfbBlockWrite<'_>> =
                b.0.iter()
                    .map(|(ssrc, begin, packets)| CcfbBlockWrite {
                        ssrc: *ssrc,
                        begin_sequence: *begin,
                        packets,
                    })
                    .collect();
            let mut out = vec![0u8; 4096];
            let Ok(n) = write_ccfb(sender, ts, &writes, &mut out) else {
                return false;
            };
            let Ok((RtcpPacket::Unknown { body, .. }, used)) = RtcpPacket::parse_one(&out[..n])
            else {
                return false;
            };
            let Ok(fb) = CcfbFeedback::parse(&body) else {
                return false;
            };
            let got: Vec<(u32, u16, Vec<Option<CcfbArrival>>)> = fb
                .blocks()
                .map(|bl| {
                    let seqs_ok = bl
                        .packets()
                        .enumerate()
                        .all(|(i, (s, _))| s == bl.begin_sequence.wrapping_add(i as u16));
                    let seq = if seqs_ok {
                        bl.begin_sequence
                    } else {
                        !bl.begin_sequence
                    };
                    (bl.ssrc, seq, bl.packets().map(|(_, a)| a).collect())
                })
                .collect();
            used == n && fb.sender == sender && fb.report_timestamp == ts && got == b.0
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(u32, u32, Blocks) -> bool);
    }

    #[test]
    fn quickcheck_garbage_never_panics() {
        fn prop(data: Vec<u8>) -> bool {
            if let Ok(fb) = CcfbFeedback::parse(&data) {
                let _ = fb.blocks().map(|b| b.packets().count()).sum::<usize>();
            }
            true
        }
        QuickCheck::new()
            .tests(3000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn writer_refuses_out_of_range_values() {
        let mut out = [0u8; 64];
        let bad = [Some(CcfbArrival { ecn: 4, offset: 0 })];
        let block = CcfbBlockWrite {
            ssrc: 1,
            begin_sequence: 0,
            packets: &bad,
        };
        assert_eq!(
            write_ccfb(1, 0, &[block], &mut out),
            Err(RtcpError::Malformed)
        );
        assert_eq!(
            write_ccfb(1, 0, &[], &mut out[..8]),
            Err(RtcpError::BufferTooSmall)
        );
        assert_eq!(write_ccfb(1, 0, &[], &mut out), Ok(12));
    }
}
