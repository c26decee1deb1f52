//! NACK, RTX and transport-wide feedback with a real Chromium: Chromium offers its fake
//! camera and microphone, the core answers and echoes every packet back, and the test's
//! UDP loop loses every 20th RTP datagram in each direction (RTCP, DTLS and STUN pass).
//! The core NACKs what Chromium's loss left missing and Chromium retransmits
//! (`outbound-rtp` `retransmittedPacketsSent`); Chromium NACKs what the core's loss left
//! missing and the core retransmits as RTX; both sides send transport-wide feedback.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sansrtc::peer::Event;
use sansrtc::sdp::SessionDescription;
use sansrtc::{Config, MediaKind, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive_lossy, stat_sum, BrowserKind, BrowserPeer};
use serde_json::json;

#[test]
fn chromium_nacks_and_retransmits_with_the_core_under_loss() {
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium)
        .expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
    browser
        .call(json!({"cmd": "getUserMedia", "audio": true, "video": true}))
        .expect("getUserMedia");
    let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": offer}))
        .expect("set local");
    let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");
    pc.set_remote_description(start, offer)
        .expect("remote offer");
    pc.add_track(MediaKind::Audio, vec!["echo".into()])
        .expect("audio");
    pc.add_track(MediaKind::Video, vec!["echo".into()])
        .expect("video");
    let answer = pc.create_answer().expect("answer");
    assert!(answer.sdp.contains("apt=") && answer.sdp.contains("a=ssrc-group:FID"));
    // Both congestion feedbacks are accepted; with transport-cc the core sends no REMB.
    assert!(answer.sdp.contains(" transport-cc") && answer.sdp.contains(" goog-remb"));
    pc.set_local_description(start, answer.clone())
        .expect("local answer");
    browser.call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")})).expect("browser takes answer");
    let video_out = pc
        .transceivers()
        .iter()
        .find(|t| t.kind == MediaKind::Video)
        .map(|t| t.id)
        .expect("video");
    let audio_out = pc
        .transceivers()
        .iter()
        .find(|t| t.kind == MediaKind::Audio)
        .map(|t| t.id)
        .expect("audio");
    let mut counters = [0u64; 2];
    let mut feedback_events = 0u64;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        drive_lossy(&mut pc, &socket, &mut counters, Duration::from_millis(10));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => browser.add_core_candidate(&c),
                Event::Rtp { track, packet, .. } => {
                    let kind = pc
                        .transceivers()
                        .iter()
                        .find(|t| t.id == track)
                        .map(|t| t.kind);
                    let out = if kind == Some(MediaKind::Video) {
                        video_out
                    } else {
                        audio_out
                    };
                    let _ = pc.send_rtp(out, &packet);
                }
                Event::KeyframeRequest(_) => {
                    let _ = pc.request_keyframe(video_out);
                }
                Event::TransportFeedback(_) => feedback_events += 1,
                _ => {}
            }
        }
        browser.forward_candidates(&mut pc);
    }
    let stats = browser.call(json!({"cmd": "getStats"})).expect("stats");
    let core = pc.stats().loss_recovery;
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
