//! SDP text: parse never panics; whatever parses writes out and parses back to the same model.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc::sdp::Sdp;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(sdp) = Sdp::parse(text) {
        let written = sdp.to_string();
        let again = Sdp::parse(&written).expect("written SDP must parse");
        assert_eq!(again, sdp, "round trip changed the model");
    }
});
