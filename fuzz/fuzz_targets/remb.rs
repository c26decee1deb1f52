//! REMB wire and the receive-side bandwidth estimator: a REMB body that parses writes
//! back and parses to the same bitrate (rounded to 18 bits) and SSRCs; the delay-based
//! estimator, fed arrival steps, abs-send-time values and sizes from the input, never
//! panics and keeps its estimate within its bounds.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sansrtc::media::bwe::DelayBasedEstimator;
use sansrtc::rtp::remb::{encode_bitrate, remb_len, write_remb, RembView};
use sansrtc::rtp::RtcpPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(remb) = RembView::parse(data) {
        let ssrcs: Vec<u32> = remb.ssrcs().collect();
        assert_eq!(ssrcs.len(), remb.ssrc_count());
        let mut out = vec![0u8; remb_len(ssrcs.len())];
        let n = write_remb(remb.sender, remb.bitrate_bps, &ssrcs, &mut out)
            .expect("a parsed REMB writes");
        let again = RembView::parse(&out[4..n]).expect("our REMB parses");
        let (e, m) = encode_bitrate(remb.bitrate_bps);
        assert_eq!(again.bitrate_bps, u64::from(m) << e);
        assert!(again.ssrcs().eq(ssrcs.iter().copied()));
        assert!(matches!(
            RtcpPacket::parse_one(&out[..n]),
            Ok((RtcpPacket::Remb { .. }, _))
        ));
    }
    let start = Instant::now();
    let mut now = start;
    let mut bwe = DelayBasedEstimator::new();
    for step in data.chunks_exact(6) {
        now += Duration::from_micros(u64::from(u16::from_be_bytes([step[0], step[1]])) * 8);
        let abs = u32::from_be_bytes([0, step[2], step[3], step[4]]);
        bwe.on_packet(now, abs, usize::from(step[5]) * 8);
        if let Some(e) = bwe.estimate_bps() {
            assert!((30_000..=100_000_000).contains(&e), "{e}");
        }
    }
    let _ = bwe.incoming_bps(now);
});
