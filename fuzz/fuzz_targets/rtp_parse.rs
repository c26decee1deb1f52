//! RTP header view, typed header extension values, RTCP compound parsing and the keyframe
//! scan: never panic; a parsed header's payload lies inside the packet; every parsed RTCP
//! packet writes out and parses back to itself.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc::rtp::extensions::{parse_extension, ExtensionKind};
use sansrtc::rtp::{keyframe_requests, RtcpPacket, RtpHeader};

const KINDS: [ExtensionKind; 9] = [
    ExtensionKind::Mid,
    ExtensionKind::Rid,
    ExtensionKind::RepairedRid,
    ExtensionKind::AbsSendTime,
    ExtensionKind::TransportCc,
    ExtensionKind::AudioLevel,
    ExtensionKind::TransmissionOffset,
    ExtensionKind::VideoOrientation,
    ExtensionKind::PlayoutDelay,
];

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = RtpHeader::parse(data) {
        assert!(h.header_len() <= data.len());
        for (_, value) in h.extensions() {
            for kind in KINDS {
                let _ = parse_extension(kind, value);
            }
        }
        assert!(h.payload().len() <= data.len());
    }
    let _ = keyframe_requests(data).count();
    let mut buf = vec![0u8; 70_000];
    for p in RtcpPacket::parse_compound(data).flatten() {
        if let Ok(n) = p.write(&mut buf) {
            let (again, used) = RtcpPacket::parse_one(&buf[..n]).expect("our RTCP parses");
            assert_eq!(used, n);
            assert_eq!(again, p);
        }
    }
});
