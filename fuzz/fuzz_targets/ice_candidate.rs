//! ICE candidate strings: parse never panics; whatever parses writes and parses back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc::ice::Candidate;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = Candidate::parse(text) {
        let again = Candidate::parse(&c.to_string()).expect("written candidate must parse");
        assert_eq!(again, c);
    }
});
