//! Real packets captured from Chromium (by `tests/tests/capture_codec_fixtures.rs`):
//! the first packets of a stream, which starts with a keyframe, up to the fourth marker
//! bit. Records are `seq: u16, timestamp: u32, marker: u8, len: u16, payload`.

use std::time::Instant;

use bytes::Bytes;

use super::{av1, h264, vp8, vp9, Codec};
use crate::media::jitter_buffer::{JitterBuffer, JitterBufferConfig};
use crate::media::RtpPacket;

fn packets(fixture: &[u8]) -> Vec<RtpPacket> {
    let mut out = Vec::new();
    let mut rest = fixture;
    while rest.len() >= 9 {
        let len = usize::from(u16::from_be_bytes([rest[7], rest[8]]));
        out.push(RtpPacket {
            payload_type: 0,
            sequence_number: u16::from_be_bytes([rest[0], rest[1]]),
            timestamp: u32::from_be_bytes([rest[2], rest[3], rest[4], rest[5]]),
            marker: rest[6] != 0,
            ssrc: 1,
            payload: Bytes::copy_from_slice(&rest[9..9 + len]),
        });
        rest = &rest[9 + len..];
    }
    assert!(rest.is_empty(), "fixture ends inside a record");
    out
}

/// The frames of a fixture, depacketized by timestamp: (timestamp, data, keyframe).
/// Chromium follows its first frame with padding-only packets (bandwidth probing),
/// which are no part of any frame.
fn frames(codec: Codec, fixture: &[u8]) -> Vec<(u32, Vec<u8>, bool)> {
    let mut packets = packets(fixture);
    packets.retain(|p| !p.payload.is_empty());
    let mut frames = Vec::new();
    let mut at = 0;
    while at < packets.len() {
        let ts = packets[at].timestamp;
        let end = if codec.is_audio() {
            at + 1
        } else {
            at + packets[at..]
                .iter()
                .take_while(|p| p.timestamp == ts)
                .count()
        };
        let mut data = Vec::new();
        let key = codec
            .depacketize(packets[at..end].iter().map(|p| &p.payload[..]), &mut data)
            .expect("Chromium's packets depacketize");
        frames.push((ts, data, key));
        at = end;
    }
    frames
}

/// The same packets through the jitter buffer, in reverse order after the first: the
/// same frames come out.
fn check_jitter_buffer(codec: Codec, fixture: &[u8]) {
    let expected = frames(codec, fixture);
    let mut packets = packets(fixture);
    packets[1..].reverse();
    let mut jb = JitterBuffer::new(codec, JitterBufferConfig::default());
    let now = Instant::now();
    for p in packets {
        jb.insert(now, p);
    }
    let out: Vec<(u32, Vec<u8>, bool)> = std::iter::from_fn(|| jb.poll_frame())
        .map(|f| (f.timestamp, f.data.to_vec(), f.is_keyframe))
        .collect();
    assert_eq!(out, expected);
    assert_eq!(jb.missing().count(), 0);
    assert!(jb.stats().padding > 0 || codec.is_audio());
}

#[test]
fn chromium_vp8() {
    let fixture = include_bytes!("fixtures/vp8.bin");
    let frames = frames(Codec::Vp8, fixture);
    assert!(frames.len() >= 4);
    let (_, key, is_key) = &frames[0];
    assert!(is_key);
    assert_eq!(key[3..6], [0x9d, 0x01, 0x2a]);
    assert_eq!(vp8::keyframe_size(key), Some((640, 480)));
    assert!(frames[1..].iter().all(|f| !f.2 && !vp8::is_keyframe(&f.1)));
    check_jitter_buffer(Codec::Vp8, fixture);
}

#[test]
fn chromium_vp9() {
    let fixture = include_bytes!("fixtures/vp9.bin");
    let frames = frames(Codec::Vp9, fixture);
    assert!(frames.len() >= 4);
    assert!(frames[0].2 && vp9::is_keyframe(&frames[0].1));
    assert!(frames[1..].iter().all(|f| !f.2 && !vp9::is_keyframe(&f.1)));
    check_jitter_buffer(Codec::Vp9, fixture);
}

#[test]
fn chromium_h264() {
    let fixture = include_bytes!("fixtures/h264.bin");
    let frames = frames(Codec::H264, fixture);
    assert!(frames.len() >= 4);
    let types = |au: &[u8]| -> Vec<u8> {
        h264::nal_units(au)
            .expect("Annex B")
            .iter()
            .map(|n| h264::nal_type(n[0]))
            .collect()
    };
    let first = types(&frames[0].1);
    assert!(frames[0].2);
    for t in [h264::NAL_SPS, h264::NAL_PPS, h264::NAL_IDR] {
        assert!(first.contains(&t), "{first:?}");
    }
    for (_, au, key) in &frames[1..] {
        let t = types(au);
        assert!(!key && t.contains(&h264::NAL_SLICE) && !t.contains(&h264::NAL_IDR));
    }
    check_jitter_buffer(Codec::H264, fixture);
}

#[test]
fn chromium_av1() {
    let fixture = include_bytes!("fixtures/av1.bin");
    let frames = frames(Codec::Av1, fixture);
    assert!(frames.len() >= 4);
    let types = |tu: &[u8]| -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = tu;
        while let Some(&h) = rest.first() {
            assert!(h & 0x02 != 0, "every OBU has a size field");
            let header = if h & 0x04 != 0 { 2 } else { 1 };
            let (size, n) = av1::read_leb128(&rest[header..]).expect("size");
            out.push(av1::obu_type(h));
            rest = &rest[header + n + size..];
        }
        out
    };
    let first = types(&frames[0].1);
    assert!(frames[0].2);
    assert_eq!(first[0], av1::OBU_TEMPORAL_DELIMITER);
    assert!(first.contains(&av1::OBU_SEQUENCE_HEADER), "{first:?}");
    for (_, tu, key) in &frames[1..] {
        let t = types(tu);
        assert!(!key && !t.contains(&av1::OBU_SEQUENCE_HEADER), "{t:?}");
    }
    check_jitter_buffer(Codec::Av1, fixture);
}

#[test]
fn chromium_opus() {
    let fixture = include_bytes!("fixtures/opus.bin");
    let frames = frames(Codec::Opus, fixture);
    assert!(frames.len() >= 5);
    // Chromium's Opus: 20 ms packets (960 samples at 48 kHz apart), TOC configuration
    // 15 (hybrid, fullband, 20 ms); every frame is its own keyframe.
    assert!(frames
        .iter()
        .all(|(_, data, key)| *key && data[0] >> 3 == 15));
    assert!(frames
        .windows(2)
        .all(|w| w[1].0.wrapping_sub(w[0].0) == 960));
    check_jitter_buffer(Codec::Opus, fixture);
}

/// On real packets: exactly the first packet of each keyframe starts a keyframe, judged
/// from that packet alone (what a forwarder switching layers relies on).
#[test]
fn chromium_keyframe_starts() {
    let cases: [(Codec, &[u8]); 5] = [
        (Codec::Vp8, include_bytes!("fixtures/vp8.bin")),
        (Codec::Vp9, include_bytes!("fixtures/vp9.bin")),
        (Codec::H264, include_bytes!("fixtures/h264.bin")),
        (Codec::Av1, include_bytes!("fixtures/av1.bin")),
        (Codec::Opus, include_bytes!("fixtures/opus.bin")),
    ];
    for (codec, fixture) in cases {
        let packets: Vec<RtpPacket> = packets(fixture)
            .into_iter()
            .filter(|p| !p.payload.is_empty())
            .collect();
        let keyframes: Vec<u32> = frames(codec, fixture)
            .into_iter()
            .filter(|f| f.2)
            .map(|f| f.0)
            .collect();
        let starts: Vec<u16> = packets
            .iter()
            .filter(|p| codec.starts_keyframe(&p.payload))
            .map(|p| p.sequence_number)
            .collect();
        let expected: Vec<u16> = if codec.is_audio() {
            packets.iter().map(|p| p.sequence_number).collect()
        } else {
            keyframes
                .iter()
                .filter_map(|ts| packets.iter().find(|p| p.timestamp == *ts))
                .map(|p| p.sequence_number)
                .collect()
        };
        assert!(!expected.is_empty(), "{codec:?}");
        assert_eq!(starts, expected, "{codec:?}");
    }
}
