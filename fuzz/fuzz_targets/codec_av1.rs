//! The Av1 depacketizer (`sansrtc::rtp::codec`) on arbitrary payloads:
//! never panic; a frame assembled packetizes (at any size) and depacketizes back to itself.
//! Input: a payload size byte, then payloads each led by a length byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc::rtp::codec::Codec;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::Av1;
    let Some((&size, mut rest)) = data.split_first() else {
        return;
    };
    let mut payloads = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        payloads.push(&tail[..len]);
        rest = &tail[len..];
    }
    for payload in &payloads {
        let _ = codec.starts_frame(payload);
    }
    let mut frame = Vec::new();
    if codec
        .depacketize(payloads.iter().copied(), &mut frame)
        .is_ok()
    {
        assert!(!frame.is_empty());
        let mtu = usize::from(size) + 1;
        // What the depacketizer writes packetizes and depacketizes back to itself.
        if let Ok(packets) = codec.packetize(&frame, mtu) {
            let mut again = Vec::new();
            assert!(codec
                .depacketize(packets.iter().map(|p| &p[..]), &mut again)
                .is_ok());
            assert_eq!(again, frame);
        }
    }
});
