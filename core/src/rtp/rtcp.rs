//! RTCP packets (RFC 3550, RFC 4585, RFC 5104, RFC 3611, REMB, transport-wide CC) in
//! compound form. Every packet parses from a checked length and writes into a caller's
//! buffer; unknown packet types are kept raw. Reduced-size RTCP (RFC 5506) needs nothing
//! special: a compound may hold a single feedback packet.
//!
//! ```text
//!  V=2|P| count/FMT |  packet type  |          length (words - 1)
//! ```

/// A report block of SR/RR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    /// Source reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report (x/256).
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_sequence: u32,
    /// Interarrival jitter.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP time.
    pub last_sr: u32,
    /// Delay since that SR, 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// One SDES chunk: an SSRC and its items `(type, text)` (1 = CNAME).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    /// Source.
    pub ssrc: u32,
    /// Items.
    pub items: Vec<(u8, Vec<u8>)>,
}

/// An RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// Sender report.
    SenderReport {
        /// Sender SSRC.
        ssrc: u32,
        /// NTP timestamp (64-bit).
        ntp: u64,
        /// RTP timestamp matching `ntp`.
        rtp_timestamp: u32,
        /// Packets sent.
        packets: u32,
        /// Payload octets sent.
        octets: u32,
        /// Report blocks.
        reports: Vec<ReportBlock>,
    },
    /// Receiver report.
    ReceiverReport {
        /// Reporter SSRC.
        ssrc: u32,
        /// Report blocks.
        reports: Vec<ReportBlock>,
    },
    /// Source description.
    Sdes(Vec<SdesChunk>),
    /// Goodbye.
    Bye {
        /// Sources leaving.
        ssrcs: Vec<u32>,
        /// Optional reason.
        reason: Option<Vec<u8>>,
    },
    /// Generic NACK (RFC 4585): `(pid, blp)` pairs.
    Nack {
        /// Sender.
        sender: u32,
        /// Media source.
        media: u32,
        /// Lost packet ids and bitmasks.
        pairs: Vec<(u16, u16)>,
    },
    /// Picture loss indication.
    Pli {
        /// Sender.
        sender: u32,
        /// Media source.
        media: u32,
    },
    /// Full intra request (RFC 5104): `(ssrc, sequence)` entries.
    Fir {
        /// Sender.
        sender: u32,
        /// Entries.
        entries: Vec<(u32, u8)>,
    },
    /// Receiver estimated maximum bitrate.
    Remb {
        /// Sender.
        sender: u32,
        /// Bitrate in bits per second (mantissa << exponent, as carried).
        bitrate: u64,
        /// SSRCs it applies to.
        ssrcs: Vec<u32>,
    },
    /// Transport-wide congestion control feedback, kept as its FCI.
    TransportCc {
        /// Sender.
        sender: u32,
        /// Media source.
        media: u32,
        /// The feedback control information.
        fci: Vec<u8>,
    },
    /// Extended report (RFC 3611), blocks kept raw.
    Xr {
        /// Sender.
        ssrc: u32,
        /// Report blocks.
        blocks: Vec<u8>,
    },
    /// Application-defined.
    App {
        /// Subtype.
        subtype: u8,
        /// Source.
        ssrc: u32,
        /// Name.
        name: [u8; 4],
        /// Data (a multiple of four bytes).
        data: Vec<u8>,
    },
    /// Anything else: the header's count/format, type and body.
    Unknown {
        /// Count or format.
        count: u8,
        /// Packet type.
        packet_type: u8,
        /// Body after the 4-byte header.
        body: Vec<u8>,
    },
}

/// A malformed RTCP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Lengths do not fit, wrong version or a field out of range.
    #[error("malformed RTCP packet")]
    Malformed,
    /// The output buffer is too small.
    #[error("buffer too small for RTCP")]
    BufferTooSmall,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, RtcpError> {
    let s = b.get(at..at + 4).ok_or(RtcpError::Malformed)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn parse_reports(body: &[u8], count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    (0..count)
        .map(|i| {
            let at = i * 24;
            let lost = u32_at(body, at + 4)?;
            let cumulative = ((lost & 0x00FF_FFFF) << 8) as i32 >> 8;
            Ok(ReportBlock {
                ssrc: u32_at(body, at)?,
                fraction_lost: (lost >> 24) as u8,
                cumulative_lost: cumulative,
                highest_sequence: u32_at(body, at + 8)?,
                jitter: u32_at(body, at + 12)?,
                last_sr: u32_at(body, at + 16)?,
                delay_since_last_sr: u32_at(body, at + 20)?,
            })
        })
        .collect()
}

impl RtcpPacket {
    /// Parse every packet of a compound; stops at the first malformed one.
    pub fn parse_compound(buf: &[u8]) -> impl Iterator<Item = Result<RtcpPacket, RtcpError>> + '_ {
        let mut at = 0usize;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed || at >= buf.len() {
                return None;
            }
            let r = Self::parse_one(buf.get(at..).unwrap_or_default());
            match r {
                Ok((p, used)) => {
                    at += used;
                    Some(Ok(p))
                }
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        })
    }

    /// Parse one packet from the front of `buf`; returns it and the bytes used.
    pub fn parse_one(buf: &[u8]) -> Result<(RtcpPacket, usize), RtcpError> {
        let first = *buf.first().ok_or(RtcpError::Malformed)?;
        if first >> 6 != 2 || buf.len() < 4 {
            return Err(RtcpError::Malformed);
        }
        let count = first & 0x1F;
        let pt = buf[1];
        let len = 4 * (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1);
        let packet = buf.get(..len).ok_or(RtcpError::Malformed)?;
        let mut body = &packet[4..];
        if first & 0x20 != 0 {
            let pad = usize::from(*packet.last().ok_or(RtcpError::Malformed)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::Malformed);
            }
            body = &body[..body.len() - pad];
        }
        let n = usize::from(count);
        let p = match (pt, count) {
            (200, _) => {
                if body.len() < 24 + 24 * n {
                    return Err(RtcpError::Malformed);
                }
                RtcpPacket::SenderReport {
                    ssrc: u32_at(body, 0)?,
                    ntp: (u64::from(u32_at(body, 4)?) << 32) | u64::from(u32_at(body, 8)?),
                    rtp_timestamp: u32_at(body, 12)?,
                    packets: u32_at(body, 16)?,
                    octets: u32_at(body, 20)?,
                    reports: parse_reports(&body[24..], n)?,
                }
            }
            (201, _) => {
                if body.len() < 4 + 24 * n {
                    return Err(RtcpError::Malformed);
                }
                RtcpPacket::ReceiverReport {
                    ssrc: u32_at(body, 0)?,
                    reports: parse_reports(&body[4..], n)?,
                }
            }
            (202, _) => {
                let mut chunks = Vec::with_capacity(n);
                let mut at = 0;
                for _ in 0..n {
                    let ssrc = u32_at(body, at)?;
                    at += 4;
                    let mut items = Vec::new();
                    loop {
                        let kind = *body.get(at).ok_or(RtcpError::Malformed)?;
                        if kind == 0 {
                            at = (at + 1).div_ceil(4) * 4;
                            break;
                        }
                        let l = usize::from(*body.get(at + 1).ok_or(RtcpError::Malformed)?);
                        let text = body.get(at + 2..at + 2 + l).ok_or(RtcpError::Malformed)?;
                        items.push((kind, text.to_vec()));
                        at += 2 + l;
                    }
                    chunks.push(SdesChunk { ssrc, items });
                }
                RtcpPacket::Sdes(chunks)
            }
            (203, _) => {
                let ssrcs = (0..n)
                    .map(|i| u32_at(body, 4 * i))
                    .collect::<Result<Vec<_>, _>>()?;
                let rest = body.get(4 * n..).unwrap_or_default();
                let reason = match rest.first() {
                    Some(&l) if l > 0 => Some(
                        rest.get(1..1 + usize::from(l))
                            .ok_or(RtcpError::Malformed)?
                            .to_vec(),
                    ),
                    _ => None,
                };
                RtcpPacket::Bye { ssrcs, reason }
            }
            (204, _) => {
                let mut name = [0u8; 4];
                name.copy_from_slice(body.get(4..8).ok_or(RtcpError::Malformed)?);
                RtcpPacket::App {
                    subtype: count,
                    ssrc: u32_at(body, 0)?,
                    name,
                    data: body[8..].to_vec(),
                }
            }
            (205, 1) => {
                let fci = body.get(8..).ok_or(RtcpError::Malformed)?;
                RtcpPacket::Nack {
                    sender: u32_at(body, 0)?,
                    media: u32_at(body, 4)?,
                    pairs: fci
                        .chunks_exact(4)
                        .map(|c| {
                            (
                                u16::from_be_bytes([c[0], c[1]]),
                                u16::from_be_bytes([c[2], c[3]]),
                            )
                        })
                        .collect(),
                }
            }
            (205, 15) => RtcpPacket::TransportCc {
                sender: u32_at(body, 0)?,
                media: u32_at(body, 4)?,
                fci: body[8..].to_vec(),
            },
            (206, 1) => RtcpPacket::Pli {
                sender: u32_at(body, 0)?,
                media: u32_at(body, 4)?,
            },
            (206, 4) => {
                let fci = body.get(8..).ok_or(RtcpError::Malformed)?;
                RtcpPacket::Fir {
                    sender: u32_at(body, 0)?,
                    entries: fci
                        .chunks_exact(8)
                        .map(|c| (u32::from_be_bytes([c[0], c[1], c[2], c[3]]), c[4]))
                        .collect(),
                }
            }
            (206, 15) if body.get(8..12) == Some(b"REMB") => {
                let remb =
                    crate::rtp::remb::RembView::parse(body).map_err(|_| RtcpError::Malformed)?;
                RtcpPacket::Remb {
                    sender: remb.sender,
                    bitrate: remb.bitrate_bps,
                    ssrcs: remb.ssrcs().collect(),
                }
            }
            (207, _) => RtcpPacket::Xr {
                ssrc: u32_at(body, 0)?,
                blocks: body[4..].to_vec(),
            },
            _ => RtcpPacket::Unknown {
                count,
                packet_type: pt,
                body: body.to_vec(),
            },
        };
        Ok((p, len))
    }

    /// Write the packet into `out`; returns its length (a multiple of four).
    pub fn write(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let mut body: Vec<u8> = Vec::with_capacity(64);
        let put = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_be_bytes());
        let reports = |b: &mut Vec<u8>, rs: &[ReportBlock]| {
            for r in rs {
                b.extend_from_slice(&r.ssrc.to_be_bytes());
                let lost =
                    (u32::from(r.fraction_lost) << 24) | (r.cumulative_lost as u32 & 0x00FF_FFFF);
                b.extend_from_slice(&lost.to_be_bytes());
                for v in [
                    r.highest_sequence,
                    r.jitter,
                    r.last_sr,
                    r.delay_since_last_sr,
                ] {
                    b.extend_from_slice(&v.to_be_bytes());
                }
            }
        };
        let (count, pt): (usize, u8) = match self {
            RtcpPacket::SenderReport {
                ssrc,
                ntp,
                rtp_timestamp,
                packets,
                octets,
                reports: rs,
            } => {
                put(&mut body, *ssrc);
                put(&mut body, (*ntp >> 32) as u32);
                put(&mut body, *ntp as u32);
                for v in [*rtp_timestamp, *packets, *octets] {
                    put(&mut body, v);
                }
                reports(&mut body, rs);
                (rs.len(), 200)
            }
            RtcpPacket::ReceiverReport { ssrc, reports: rs } => {
                put(&mut body, *ssrc);
                reports(&mut body, rs);
                (rs.len(), 201)
            }
            RtcpPacket::Sdes(chunks) => {
                for c in chunks {
                    put(&mut body, c.ssrc);
                    for (k, text) in &c.items {
                        if *k == 0 || text.len() > 255 {
                            return Err(RtcpError::Malformed);
                        }
                        body.push(*k);
                        body.push(text.len() as u8);
                        body.extend_from_slice(text);
                    }
                    body.push(0);
                    while body.len() % 4 != 0 {
                        body.push(0);
                    }
                }
                (chunks.len(), 202)
            }
            RtcpPacket::Bye { ssrcs, reason } => {
                for s in ssrcs {
                    put(&mut body, *s);
                }
                if let Some(r) = reason {
                    if r.is_empty() || r.len() > 255 {
                        return Err(RtcpError::Malformed);
                    }
                    body.push(r.len() as u8);
                    body.extend_from_slice(r);
                    while body.len() % 4 != 0 {
                        body.push(0);
                    }
                }
                (ssrcs.len(), 203)
            }
            RtcpPacket::App {
                subtype,
                ssrc,
                name,
                data,
            } => {
                if data.len() % 4 != 0 {
                    return Err(RtcpError::Malformed);
                }
                put(&mut body, *ssrc);
                body.extend_from_slice(name);
                body.extend_from_slice(data);
                (usize::from(*subtype), 204)
            }
            RtcpPacket::Nack {
                sender,
                media,
                pairs,
            } => {
                put(&mut body, *sender);
                put(&mut body, *media);
                for (pid, blp) in pairs {
                    body.extend_from_slice(&pid.to_be_bytes());
                    body.extend_from_slice(&blp.to_be_bytes());
                }
                (1, 205)
            }
            RtcpPacket::TransportCc { sender, media, fci } => {
                if fci.len() % 4 != 0 {
                    return Err(RtcpError::Malformed);
                }
                put(&mut body, *sender);
                put(&mut body, *media);
                body.extend_from_slice(fci);
                (15, 205)
            }
            RtcpPacket::Pli { sender, media } => {
                put(&mut body, *sender);
                put(&mut body, *media);
                (1, 206)
            }
            RtcpPacket::Fir { sender, entries } => {
                put(&mut body, *sender);
                put(&mut body, 0);
                for (ssrc, seq) in entries {
                    put(&mut body, *ssrc);
                    body.extend_from_slice(&[*seq, 0, 0, 0]);
                }
                (4, 206)
            }
            RtcpPacket::Remb {
                sender,
                bitrate,
                ssrcs,
            } => {
                put(&mut body, *sender);
                put(&mut body, 0);
                body.extend_from_slice(b"REMB");
                let (exp, m) = crate::rtp::remb::encode_bitrate(*bitrate);
                if ssrcs.len() > 255 {
                    return Err(RtcpError::Malformed);
                }
                body.push(ssrcs.len() as u8);
                body.push((exp << 2) | ((m >> 16) as u8 & 3));
                body.extend_from_slice(&[(m >> 8) as u8, m as u8]);
                for s in ssrcs {
                    put(&mut body, *s);
                }
                (15, 206)
            }
            RtcpPacket::Xr { ssrc, blocks } => {
                if blocks.len() % 4 != 0 {
                    return Err(RtcpError::Malformed);
                }
                put(&mut body, *ssrc);
                body.extend_from_slice(blocks);
                (0, 207)
            }
            RtcpPacket::Unknown {
                count,
                packet_type,
                body: b,
            } => {
                if b.len() % 4 != 0 {
                    return Err(RtcpError::Malformed);
                }
                body.extend_from_slice(b);
                (usize::from(*count), *packet_type)
            }
        };
        if count > 31 || body.len() % 4 != 0 || body.len() / 4 > 0xFFFF {
            return Err(RtcpError::Malformed);
        }
        let total = 4 + body.len();
        let buf = out.get_mut(..total).ok_or(RtcpError::BufferTooSmall)?;
        buf[0] = 0x80 | count as u8;
        buf[1] = pt;
        buf[2..4].copy_from_slice(&((body.len() / 4) as u16).to_be_bytes());
        buf[4..].copy_from_slice(&body);
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    fn block(g: &mut Gen) -> ReportBlock {
        ReportBlock {
            ssrc: u32::arbitrary(g),
            fraction_lost: u8::arbitrary(g),
            cumulative_lost: (i32::arbitrary(g) << 8) >> 8,
            highest_sequence: u32::arbitrary(g),
            jitter: u32::arbitrary(g),
            last_sr: u32::arbitrary(g),
            delay_since_last_sr: u32::arbitrary(g),
        }
    }

    fn words(g: &mut Gen) -> Vec<u8> {
        let mut v = Vec::<u8>::arbitrary(g);
        v.truncate(v.len() / 4 * 4);
        v
    }

    #[derive(Debug, Clone)]
    struct AnyRtcp(RtcpPacket);

    impl Arbitrary for AnyRtcp {
        fn arbitrary(g: &mut Gen) -> Self {
            let small = |g: &mut Gen| usize::arbitrary(g) % 4;
            let p = match u8::arbitrary(g) % 12 {
                0 => RtcpPacket::SenderReport {
                    ssrc: u32::arbitrary(g),
                    ntp: u64::arbitrary(g),
                    rtp_timestamp: u32::arbitrary(g),
                    packets: u32::arbitrary(g),
                    octets: u32::arbitrary(g),
                    reports: (0..small(g)).map(|_| block(g)).collect(),
                },
                1 => RtcpPacket::ReceiverReport {
                    ssrc: u32::arbitrary(g),
                    reports: (0..small(g)).map(|_| block(g)).collect(),
                },
                2 => RtcpPacket::Sdes(
                    (0..small(g))
                        .map(|_| SdesChunk {
                            ssrc: u32::arbitrary(g),
                            items: (0..small(g))
                                .map(|_| {
                                    (
                                        1 + u8::arbitrary(g) % 8,
                                        Vec::<u8>::arbitrary(g).into_iter().take(40).collect(),
                                    )
                                })
                                .collect(),
                        })
                        .collect(),
                ),
                3 => RtcpPacket::Bye {
                    ssrcs: (0..small(g)).map(|_| u32::arbitrary(g)).collect(),
                    reason: bool::arbitrary(g).then(|| b"bye".to_vec()),
                },
                4 => RtcpPacket::Nack {
                    sender: u32::arbitrary(g),
                    media: u32::arbitrary(g),
                    pairs: (0..small(g))
                        .map(|_| (u16::arbitrary(g), u16::arbitrary(g)))
                        .collect(),
                },
                5 => RtcpPacket::Pli {
                    sender: u32::arbitrary(g),
                    media: u32::arbitrary(g),
                },
                6 => RtcpPacket::Fir {
                    sender: u32::arbitrary(g),
                    entries: (0..small(g))
                        .map(|_| (u32::arbitrary(g), u8::arbitrary(g)))
                        .collect(),
                },
                7 => {
                    let m = u64::from(u32::arbitrary(g) & 0x3_FFFF);
                    RtcpPacket::Remb {
                        sender: u32::arbitrary(g),
                        bitrate: m << (u8::arbitrary(g) % 20),
                        ssrcs: (0..small(g)).map(|_| u32::arbitrary(g)).collect(),
                    }
                }
                8 => RtcpPacket::TransportCc {
                    sender: u32::arbitrary(g),
                    media: u32::arbitrary(g),
                    fci: words(g),
                },
                9 => RtcpPacket::Xr {
                    ssrc: u32::arbitrary(g),
                    blocks: words(g),
                },
                10 => RtcpPacket::App {
                    subtype: u8::arbitrary(g) % 32,
                    ssrc: u32::arbitrary(g),
                    name: *b"test",
                    data: words(g),
                },
                _ => RtcpPacket::Unknown {
                    count: u8::arbitrary(g) % 32,
                    packet_type: 210 + u8::arbitrary(g) % 10,
                    body: words(g),
                },
            };
            AnyRtcp(p)
        }
    }

    /// REMB keeps 18 mantissa bits: normalize the expected bitrate the same way.
    fn normalized(p: &RtcpPacket) -> RtcpPacket {
        match p {
            RtcpPacket::Remb {
                sender,
                bitrate,
                ssrcs,
            } => {
                let (mut m, mut e) = (*bitrate, 0);
                while m > 0x3_FFFF {
                    m >>= 1;
                    e += 1;
                }
                RtcpPacket::Remb {
                    sender: *sender,
                    bitrate: m << e,
                    ssrcs: ssrcs.clone(),
                }
            }
            other => other.clone(),
        }
    }

    #[test]
    fn quickcheck_compound_round_trip() {
        fn prop(packets: Vec<AnyRtcp>) -> bool {
            let mut buf = vec![0u8; 65536];
            let mut len = 0;
            for p in packets.iter().take(8) {
                match p.0.write(&mut buf[len..]) {
                    Ok(n) => len += n,
                    Err(_) => return false,
                }
            }
            let parsed: Result<Vec<RtcpPacket>, _> =
                RtcpPacket::parse_compound(&buf[..len]).collect();
            let expected: Vec<RtcpPacket> =
                packets.iter().take(8).map(|p| normalized(&p.0)).collect();
            parsed.as_ref() == Ok(&expected)
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(Vec<AnyRtcp>) -> bool);
    }

    /// Every packet type, cut anywhere short of its end, is refused rather than read past
    /// its length or taken for a shorter packet.
    #[test]
    fn quickcheck_truncated_packets_are_refused() {
        fn prop(packet: AnyRtcp, cut: usize) -> bool {
            let mut buf = vec![0u8; 65536];
            let Ok(n) = packet.0.write(&mut buf) else {
                return false;
            };
            let cut = cut % n;
            RtcpPacket::parse_one(&buf[..cut]).is_err()
                && RtcpPacket::parse_compound(&buf[..cut]).all(|r| r.is_err())
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(AnyRtcp, usize) -> bool);
    }

    #[test]
    fn quickcheck_garbage_never_panics() {
        fn prop(data: Vec<u8>) -> bool {
            let _ = RtcpPacket::parse_compound(&data).count();
            true
        }
        QuickCheck::new()
            .tests(3000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn byte_fixture_receiver_report_and_pli() {
        // RR from 0x01020304 about 0x0A0B0C0D: 1 lost (fraction 0x10), highest 0x1234.
        let rr = [
            0x81, 201, 0, 7, 1, 2, 3, 4, 0x0A, 0x0B, 0x0C, 0x0D, 0x10, 0, 0, 1, 0, 0, 0x12, 0x34,
            0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let (p, used) = RtcpPacket::parse_one(&rr).expect("rr");
        assert_eq!(used, 32);
        let RtcpPacket::ReceiverReport { ssrc, reports } = p else {
            panic!("not RR")
        };
        assert_eq!(ssrc, 0x0102_0304);
        assert_eq!(
            (
                reports[0].fraction_lost,
                reports[0].cumulative_lost,
                reports[0].highest_sequence,
                reports[0].jitter
            ),
            (0x10, 1, 0x1234, 5)
        );
        assert!(RtcpPacket::parse_one(&rr[..31]).is_err(), "truncated");
        let remb = [
            0x8F, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 1, 0x0A, 0x12, 0x34,
            0, 0, 0, 7,
        ];
        let (p, _) = RtcpPacket::parse_one(&remb).expect("remb");
        assert_eq!(
            p,
            RtcpPacket::Remb {
                sender: 1,
                bitrate: 0x21234 << 2,
                ssrcs: vec![7]
            }
        );
        // Writing it gives the same bytes (exponent 2, 18-bit mantissa 0x21234).
        let mut out = [0u8; 32];
        assert_eq!(p.write(&mut out), Ok(remb.len()));
        assert_eq!(&out[..remb.len()], &remb[..]);
        // A bitrate over 18 bits is shifted down to mantissa and exponent.
        let big = RtcpPacket::Remb {
            sender: 1,
            bitrate: 2_500_000,
            ssrcs: vec![],
        };
        let n = big.write(&mut out).expect("write");
        assert_eq!(&out[16..20], &[0, 0x12, 0x62, 0x5A]);
        let (back, _) = RtcpPacket::parse_one(&out[..n]).expect("parse");
        let RtcpPacket::Remb { bitrate, .. } = back else {
            panic!("not REMB")
        };
        assert_eq!(bitrate, 2_500_000 >> 4 << 4);
    }
}
