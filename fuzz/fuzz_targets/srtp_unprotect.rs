//! The SRTP and SRTCP unprotect paths with a fixed key for every profile: never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc::srtp::{SrtpContext, SrtpProfile};

fuzz_target!(|data: &[u8]| {
    for profile in SrtpProfile::ALL {
        let key = vec![7u8; profile.master_key_len()];
        let salt = vec![9u8; profile.master_salt_len()];
        let Ok(mut ctx) = SrtpContext::new(profile, &key, &salt) else { return };
        let mut buf = data.to_vec();
        let n = buf.len();
        let _ = ctx.unprotect_rtp(&mut buf, n);
        let mut buf = data.to_vec();
        let _ = ctx.unprotect_rtcp(&mut buf, n);
    }
});
