//! NACK, RTX and transport-wide feedback with a real Chromium: Chromium offers its fake
//! camera and microphone, the core answers and echoes every packet back, and the test's
//! UDP loop loses every 20th RTP datagram in each direction (RTCP, DTLS and STUN pass).
//! The core NACKs what Chromium's loss left missing and Chromium retransmits
//! (`outbound-rtp` `retransmittedPacketsSent`); Chromium NACKs what the core's loss left
//! missing and the core retransmits as RTX; both sides send transport-wide feedback.

use std::time::Duration;

use sansrtc::peer::Event;
use sansrtc::Config;
use sansrtc_tests::browser::{stat_sum, ChromiumEcho};

#[test]
fn chromium_nacks_and_retransmits_with_the_core_under_loss() {
    let mut call = ChromiumEcho::start(&[], Config::default());
    let answer = &call.answer.sdp;
    assert!(answer.contains("apt=") && answer.contains("a=ssrc-group:FID"));
    // Both congestion feedbacks are accepted; with transport-cc the core sends no REMB.
    assert!(answer.contains(" transport-cc") && answer.contains(" goog-remb"));
    let mut feedback_events = 0u64;
    call.run(Duration::from_secs(8), |ev| {
        if matches!(ev, Event::TransportFeedback(_)) {
            feedback_events += 1;
        }
    });
    let counters = call.counters;
    let stats = call.browser_stats();
    let core = call.pc.stats().loss_recovery;
    let chromium_out_nacks = stat_sum(&stats, "outbound-rtp", "video", "nackCount");
    let chromium_resent = stat_sum(&stats, "outbound-rtp", "video", "retransmittedPacketsSent");
    let chromium_in_nacks = stat_sum(&stats, "inbound-rtp", "video", "nackCount");
    let frames = stat_sum(&stats, "inbound-rtp", "video", "framesDecoded");
    let lost = stat_sum(&stats, "inbound-rtp", "video", "packetsLost");
    eprintln!(
        "chromium: outbound nackCount {chromium_out_nacks}, retransmittedPacketsSent \
         {chromium_resent}; inbound nackCount {chromium_in_nacks}, framesDecoded {frames}, \
         packetsLost {lost}; core: {core:?}; {feedback_events} TransportFeedback events; \
         RTP out/in {counters:?}"
    );
    assert!(frames > 0, "Chromium decodes the echo");
    assert_eq!(core.remb_sent, 0, "transport-cc is preferred: no REMB");
    assert!(
        core.nacks_sent > 0 && chromium_out_nacks > 0,
        "core NACKs reach Chromium"
    );
    assert!(
        chromium_resent > 0,
        "Chromium retransmits what the core asked for"
    );
    assert!(
        core.packets_recovered > 0 && core.rtx_packets_received > 0,
        "{core:?}"
    );
    assert!(
        chromium_in_nacks > 0 && core.nacks_received > 0,
        "Chromium NACKs the core"
    );
    assert!(
        core.rtx_packets_sent > 0,
        "the core retransmits as RTX: {core:?}"
    );
    assert!(
        core.twcc_feedback_sent > 0,
        "transport-wide feedback to Chromium"
    );
    assert!(
        core.twcc_feedback_received > 0 && feedback_events > 0 && core.twcc_delivered > 0,
        "transport-wide feedback from Chromium: {core:?}"
    );
}
