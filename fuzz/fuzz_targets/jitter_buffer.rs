//! The jitter buffer (`sansrtc::media::jitter_buffer`) fed arbitrary packets and times:
//! never panics, stays within its packet and byte bounds, awaits fewer sequence numbers
//! than its packet bound, and hands out frames in sequence order.
//! Input: a codec byte, then records of `seq: u16, timestamp step: u8, flags: u8
//! (marker, time step, timeout), length: u8, payload`.
#![no_main]
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sansrtc::media::jitter_buffer::{JitterBuffer, JitterBufferConfig};
use sansrtc::media::RtpPacket;
use sansrtc::rtp::codec::Codec;

const CODECS: [Codec; 5] = [Codec::Vp8, Codec::Vp9, Codec::H264, Codec::Av1, Codec::Opus];
const MAX_PACKETS: usize = 64;
const MAX_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut rest)) = data.split_first() else {
        return;
    };
    let codec = CODECS[usize::from(which) % CODECS.len()];
    let config = JitterBufferConfig::default()
        .with_limits(MAX_PACKETS, MAX_BYTES)
        .with_max_wait(Duration::from_millis(50));
    let mut jb = JitterBuffer::new(codec, config);
    let start = Instant::now();
    let mut now = start;
    let mut timestamp = 0u32;
    let mut last: Option<u64> = None;
    while rest.len() >= 5 {
        let seq = u16::from_be_bytes([rest[0], rest[1]]);
        timestamp = timestamp.wrapping_add(u32::from(rest[2]) * 300);
        let flags = rest[3];
        let len = usize::from(rest[4]).min(rest.len() - 5);
        let payload = Bytes::copy_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
        now += Duration::from_millis(u64::from(flags >> 2 & 0x1f));
        jb.insert(
            now,
            RtpPacket {
                payload_type: 96,
                sequence_number: seq,
                timestamp,
                marker: flags & 1 != 0,
                ssrc: 1,
                payload,
            },
        );
        if flags & 2 != 0 {
            if let Some(deadline) = jb.poll_timeout() {
                now = now.max(deadline);
            }
            jb.handle_timeout(now);
        }
        while let Some(frame) = jb.poll_frame() {
            assert!(last.is_none_or(|l| frame.first_sequence > l));
            last = Some(frame.first_sequence);
        }
        let _ = jb.poll_keyframe_request();
        assert!(jb.buffered_packets() <= MAX_PACKETS);
        assert!(jb.buffered_bytes() <= MAX_BYTES);
        assert!(jb.missing().count() < MAX_PACKETS);
    }
});
