//! The Opus depacketizer (`sansrtc::rtp::codec`) on arbitrary payloads:
//! never panic on any payloads; a frame assembled repacketizes within the payload size.
//! Input: a payload size byte, then payloads each led by a length byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc::rtp::codec::Codec;

fuzz_target!(|data: &[u8]| {
    let codec = Codec::Opus;
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
        // Repacketizing what came out never panics (the bytes may split otherwise).
        if let Ok(packets) = codec.packetize(&frame, mtu) {
            assert!(packets.iter().all(|p| p.len() <= mtu));
            let mut again = Vec::new();
            let _ = codec.depacketize(packets.iter().map(|p| &p[..]), &mut again);
        }
    }
});
