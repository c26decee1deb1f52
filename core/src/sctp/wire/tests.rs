use bytes::Bytes;
use quickcheck::{Arbitrary, Gen, QuickCheck};

use super::*;

fn bytes(g: &mut Gen, max: usize) -> Bytes {
    let len = usize::arbitrary(g) % (max + 1);
    Bytes::from((0..len).map(|_| u8::arbitrary(g)).collect::<Vec<u8>>())
}

fn nonempty(g: &mut Gen, max: usize) -> Bytes {
    let b = bytes(g, max);
    if b.is_empty() {
        Bytes::from_static(b"x")
    } else {
        b
    }
}

fn vec_of<T>(g: &mut Gen, max: usize, mut f: impl FnMut(&mut Gen) -> T) -> Vec<T> {
    let n = usize::arbitrary(g) % (max + 1);
    (0..n).map(|_| f(g)).collect()
}

fn causes(g: &mut Gen) -> Vec<ErrorCause> {
    vec_of(g, 3, |g| ErrorCause {
        code: u16::arbitrary(g),
        info: bytes(g, 20),
    })
}

fn init(g: &mut Gen) -> Init {
    const KNOWN: [u16; 4] = [7, 8, 0x8008, 0xC000];
    Init {
        initiate_tag: u32::arbitrary(g),
        a_rwnd: u32::arbitrary(g),
        outbound_streams: u16::arbitrary(g),
        inbound_streams: u16::arbitrary(g),
        initial_tsn: u32::arbitrary(g),
        params: InitParams {
            state_cookie: bool::arbitrary(g).then(|| bytes(g, 64)),
            forward_tsn_supported: bool::arbitrary(g),
            supported_extensions: bool::arbitrary(g).then(|| bytes(g, 6)),
            unrecognized: vec_of(g, 2, |g| bytes(g, 12)),
            unknown: vec_of(g, 3, |g| {
                let mut t = u16::arbitrary(g);
                while KNOWN.contains(&t) {
                    t = t.wrapping_add(1);
                }
                RawParam {
                    param_type: t,
                    value: bytes(g, 16),
                }
            }),
        },
    }
}

fn data(g: &mut Gen, idata: bool) -> DataChunk {
    let flags = DataFlags {
        ending: bool::arbitrary(g),
        beginning: bool::arbitrary(g),
        unordered: bool::arbitrary(g),
        immediate: bool::arbitrary(g),
    };
    let (message_id, fragment_seq, ppid) = if idata {
        if flags.beginning {
            (u32::arbitrary(g), 0, u32::arbitrary(g))
        } else {
            (u32::arbitrary(g), u32::arbitrary(g), 0)
        }
    } else {
        (u32::from(u16::arbitrary(g)), 0, u32::arbitrary(g))
    };
    DataChunk {
        tsn: u32::arbitrary(g),
        stream_id: u16::arbitrary(g),
        message_id,
        fragment_seq,
        ppid,
        flags,
        payload: nonempty(g, 100),
    }
}

fn reconfig_param(g: &mut Gen) -> ReConfigParam {
    match u8::arbitrary(g) % 7 {
        0 => ReConfigParam::OutgoingReset {
            request_seq: u32::arbitrary(g),
            response_seq: u32::arbitrary(g),
            last_assigned_tsn: u32::arbitrary(g),
            streams: vec_of(g, 5, u16::arbitrary),
        },
        1 => ReConfigParam::IncomingReset {
            request_seq: u32::arbitrary(g),
            streams: vec_of(g, 5, u16::arbitrary),
        },
        2 => ReConfigParam::SsnTsnReset {
            request_seq: u32::arbitrary(g),
        },
        3 => ReConfigParam::Response {
            response_seq: u32::arbitrary(g),
            result: ReconfigResult(u32::arbitrary(g)),
            next_tsns: bool::arbitrary(g).then(|| (u32::arbitrary(g), u32::arbitrary(g))),
        },
        4 => ReConfigParam::AddOutgoingStreams {
            request_seq: u32::arbitrary(g),
            new_streams: u16::arbitrary(g),
        },
        5 => ReConfigParam::AddIncomingStreams {
            request_seq: u32::arbitrary(g),
            new_streams: u16::arbitrary(g),
        },
        _ => ReConfigParam::Unknown(RawParam {
            param_type: 100 + u16::arbitrary(g) % 100,
            value: bytes(g, 12),
        }),
    }
}

#[derive(Debug, Clone)]
struct AnyChunk(Chunk);

impl Arbitrary for AnyChunk {
    fn arbitrary(g: &mut Gen) -> Self {
        let c = match u8::arbitrary(g) % 18 {
            0 => Chunk::Data(data(g, false)),
            1 => Chunk::IData(data(g, true)),
            2 => Chunk::Init(init(g)),
            3 => Chunk::InitAck(init(g)),
            4 => Chunk::Sack(Sack {
                cumulative_tsn_ack: u32::arbitrary(g),
                a_rwnd: u32::arbitrary(g),
                gap_blocks: vec_of(g, 6, |g| GapBlock {
                    start: u16::arbitrary(g),
                    end: u16::arbitrary(g),
                }),
                duplicate_tsns: vec_of(g, 4, u32::arbitrary),
            }),
            5 => Chunk::Heartbeat(bytes(g, 40)),
            6 => Chunk::HeartbeatAck(bytes(g, 40)),
            7 => Chunk::Abort {
                reflected_tag: bool::arbitrary(g),
                causes: causes(g),
            },
            8 => Chunk::Shutdown {
                cumulative_tsn_ack: u32::arbitrary(g),
            },
            9 => Chunk::ShutdownAck,
            10 => Chunk::ShutdownComplete {
                reflected_tag: bool::arbitrary(g),
            },
            11 => Chunk::Error(causes(g)),
            12 => Chunk::CookieEcho(bytes(g, 80)),
            13 => Chunk::CookieAck,
            14 => Chunk::ForwardTsn {
                new_cumulative_tsn: u32::arbitrary(g),
                streams: vec_of(g, 4, |g| ForwardTsnStream {
                    stream_id: u16::arbitrary(g),
                    ssn: u16::arbitrary(g),
                }),
            },
            15 => Chunk::IForwardTsn {
                new_cumulative_tsn: u32::arbitrary(g),
                streams: vec_of(g, 4, |g| IForwardTsnStream {
                    stream_id: u16::arbitrary(g),
                    unordered: bool::arbitrary(g),
                    message_id: u32::arbitrary(g),
                }),
            },
            16 => Chunk::ReConfig({
                let mut v = vec![reconfig_param(g)];
                if bool::arbitrary(g) {
                    v.push(reconfig_param(g));
                }
                v
            }),
            _ => Chunk::Unknown {
                chunk_type: 0x41 + u8::arbitrary(g) % 0x3F,
                flags: u8::arbitrary(g),
                value: bytes(g, 30),
            },
        };
        AnyChunk(c)
    }
}

const HEADER: CommonHeader = CommonHeader {
    source_port: 5000,
    destination_port: 5000,
    verification_tag: 0xDEAD_BEEF,
};

#[test]
fn every_chunk_type_round_trips() {
    fn prop(chunks: Vec<AnyChunk>) -> bool {
        let chunks: Vec<Chunk> = chunks.into_iter().map(|c| c.0).collect();
        let packet = Bytes::from(write_packet(HEADER, &chunks));
        let Ok((header, parsed)) = parse_packet(&packet) else {
            return false;
        };
        let parsed: Result<Vec<Chunk>, _> = parsed.collect();
        header == HEADER && parsed.as_deref() == Ok(&chunks[..])
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Vec<AnyChunk>) -> bool);
}

#[test]
fn encoded_len_matches_written() {
    fn prop(c: AnyChunk) -> bool {
        let mut out = bytes::BytesMut::new();
        c.0.write(&mut out);
        out.len() == c.0.encoded_len()
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(AnyChunk) -> bool);
}

#[test]
fn arbitrary_bytes_never_panic() {
    fn prop(data: Vec<u8>) -> bool {
        let b = Bytes::from(data);
        if let Ok((_, chunks)) = parse_packet(&b) {
            chunks.for_each(drop);
        }
        // Bypass the checksum to reach the chunk parsers.
        let mut p = vec![0u8; COMMON_HEADER_LEN];
        p.extend_from_slice(&b);
        let crc = crc32c::packet_checksum(&p);
        p[8..12].copy_from_slice(&crc.to_le_bytes());
        let p = Bytes::from(p);
        if let Ok((_, chunks)) = parse_packet(&p) {
            chunks.for_each(drop);
        }
        true
    }
    QuickCheck::new()
        .tests(5000)
        .quickcheck(prop as fn(Vec<u8>) -> bool);
}

#[test]
fn bad_checksum_and_truncation() {
    let mut p = write_packet(HEADER, &[Chunk::CookieAck]);
    assert!(parse_packet(&Bytes::from(p.clone())).is_ok());
    p[13] ^= 1;
    assert_eq!(
        parse_packet(&Bytes::from(p)).err(),
        Some(WireError::BadChecksum)
    );
    assert_eq!(
        parse_packet(&Bytes::from_static(&[0; 5])).err(),
        Some(WireError::Truncated)
    );
}

#[test]
fn data_chunk_fixture() {
    // DATA, flags B|E, length 17, TSN 1, stream 2, SSN 3, PPID 51, payload "a".
    let value = Bytes::from_static(&[0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 51, b'a']);
    let c = Chunk::parse(0, 3, value).expect("parse");
    let Chunk::Data(d) = c else {
        panic!("not data")
    };
    assert_eq!((d.tsn, d.stream_id, d.message_id, d.ppid), (1, 2, 3, 51));
    assert!(d.flags.beginning && d.flags.ending && !d.flags.unordered);
    assert_eq!(&d.payload[..], b"a");
    // Empty user data is its own error.
    let empty = Bytes::from_static(&[0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 51]);
    assert_eq!(Chunk::parse(0, 3, empty), Err(WireError::EmptyData));
}

#[test]
fn checksum_is_stored_little_endian_as_deployed_stacks_do() {
    // An INIT with one IPv4 address parameter (ports 0, tag 0), checksum bytes as a
    // packet dissector shows them on the wire: 40 2c 0b 5f.
    let mut p = vec![0u8; 12];
    p[8..12].copy_from_slice(&[0x40, 0x2c, 0x0b, 0x5f]);
    p.extend_from_slice(&[1, 0, 0, 0x1c]);
    p.extend_from_slice(&[0u8; 16]);
    p.extend_from_slice(&[0, 5, 0, 8, 127, 0, 0, 1]);
    let packet = Bytes::from(p);
    let (_, mut chunks) = parse_packet(&packet).expect("checksum verifies");
    let Some(Ok(Chunk::Init(init))) = chunks.next() else {
        panic!("not an INIT")
    };
    assert_eq!(init.params.unknown.len(), 1);
    assert_eq!(init.params.unknown[0].param_type, 5);
    assert_eq!(&init.params.unknown[0].value[..], &[127, 0, 0, 1]);
}
