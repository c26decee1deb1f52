//! RTP header view and RTCP keyframe scan: never panic; a parsed header's payload lies
//! inside the packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc::rtp::{keyframe_requests, RtpHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = RtpHeader::parse(data) {
        assert!(h.header_len() <= data.len());
        let _ = h.extensions().count();
        assert!(h.payload().len() <= data.len());
    }
    let _ = keyframe_requests(data).count();
});
