//! RTCP feedback wire formats and the feedback state machines: a transport-wide CC FCI or
//! an RFC 8888 body that parses writes back and parses to the same packets; NACK pairs
//! never panic; the NACK generator, retransmission history and transport-wide receiver,
//! fed sequence numbers and time steps from the input, never panic and stay bounded.
#![no_main]
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sansrtc::media::nack::{NackConfig, NackGenerator};
use sansrtc::media::retransmit::{RetransmitConfig, RetransmitHistory};
use sansrtc::media::ccfb::{CcfbReceiver, CcfbSendLog};
use sansrtc::media::twcc::{TwccReceiver, TwccReceiverConfig};
use sansrtc::media::RtpPacket;
use sansrtc::rtp::ccfb::{write_ccfb, CcfbArrival, CcfbBlockWrite, CcfbFeedback};
use sansrtc::rtp::generic_nack::{nack_pairs, nack_sequences};
use sansrtc::rtp::transport_cc::{
    max_fci_len, write_transport_cc_fci, TransportCcFeedback, TransportCcWrite,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(fb) = TransportCcFeedback::parse(data) {
        let deltas: Vec<Option<i16>> = fb.packets().map(|p| p.delta).collect();
        assert_eq!(deltas.len(), usize::from(fb.status_count));
        let w = TransportCcWrite {
            base_sequence: fb.base_sequence,
            reference_time: fb.reference_time,
            feedback_count: fb.feedback_count,
            deltas: &deltas,
        };
        let mut buf = vec![0u8; max_fci_len(deltas.len())];
        let n = write_transport_cc_fci(&w, &mut buf).expect("a parsed feedback writes");
        let again = TransportCcFeedback::parse(&buf[..n]).expect("our feedback parses");
        assert!(again.packets().eq(fb.packets()));
    }
    if let Ok(fb) = CcfbFeedback::parse(data) {
        let blocks: Vec<(u32, u16, Vec<Option<CcfbArrival>>)> = fb
            .blocks()
            .map(|b| (b.ssrc, b.begin_sequence, b.packets().map(|(_, a)| a).collect()))
            .collect();
        let writes: Vec<CcfbBlockWrite<'_>> = blocks
            .iter()
            .map(|(ssrc, begin, packets)| CcfbBlockWrite {
                ssrc: *ssrc,
                begin_sequence: *begin,
                packets,
            })
            .collect();
        let mut buf = vec![0u8; data.len() + 8];
        let n = write_ccfb(fb.sender, fb.report_timestamp, &writes, &mut buf)
            .expect("a parsed feedback writes");
        let again = CcfbFeedback::parse(&buf[4..n]).expect("our feedback parses");
        assert!(again
            .blocks()
            .map(|b| (b.ssrc, b.begin_sequence, b.packets().collect::<Vec<_>>()))
            .eq(fb.blocks().map(|b| (b.ssrc, b.begin_sequence, b.packets().collect()))));
    }
    let pairs: Vec<(u16, u16)> = data
        .chunks_exact(4)
        .map(|c| (u16::from_be_bytes([c[0], c[1]]), u16::from_be_bytes([c[2], c[3]])))
        .collect();
    let _ = nack_pairs(nack_sequences(&pairs)).count();

    // State machines: each 3-byte step is a sequence number and a time advance.
    let t0 = Instant::now();
    let mut now = t0;
    let mut nack = NackGenerator::new(NackConfig::default());
    let mut history = RetransmitHistory::new(RetransmitConfig::default(), 1, None);
    let mut twcc = TwccReceiver::new(TwccReceiverConfig::default());
    let mut ccfb_in = CcfbReceiver::new();
    let mut ccfb_out = CcfbSendLog::new();
    let mut out_pairs = Vec::new();
    let mut resent = Vec::new();
    let mut fb = [0u8; 1500];
    for step in data.chunks_exact(3) {
        let seq = u16::from_be_bytes([step[0], step[1]]);
        now += Duration::from_millis(u64::from(step[2]));
        nack.on_packet(seq, now);
        out_pairs.clear();
        nack.poll_nack(now, &mut out_pairs);
        assert!(nack.missing_len() <= 1000);
        let packet = RtpPacket {
            payload_type: 96,
            sequence_number: seq,
            timestamp: 0,
            marker: false,
            ssrc: 1,
            payload: Bytes::from_static(b"payload"),
        };
        history.store(&packet, now);
        resent.clear();
        history.on_nack(&out_pairs, now, &mut resent);
        assert!(history.len() <= 512);
        twcc.on_packet(seq, now);
        while let Ok(Some(_)) = twcc.poll_feedback(now, 1, 2, &mut fb) {}
        // RFC 8888 both ways: the step's first byte picks one of 20 SSRCs.
        let ssrc = u32::from(step[0] % 20);
        ccfb_out.on_sent(ssrc, seq, 100, now);
        ccfb_in.on_packet(ssrc, seq, now);
        while let Ok(Some(n)) = ccfb_in.poll_feedback(now, 1, 0, &mut fb) {
            let parsed = CcfbFeedback::parse(&fb[4..n]).expect("our feedback parses");
            assert!(ccfb_out.on_feedback(&parsed).packets.len() <= CcfbSendLog::MAX_RESULTS);
        }
    }
    if let Ok(fb) = CcfbFeedback::parse(data) {
        let _ = ccfb_out.on_feedback(&fb);
    }
});
