//! REMB with a real Chromium (default, no field trial): Chromium publishes its fake
//! camera and microphone to a core configured with `goog-remb` as the only congestion
//! feedback (no `transport-cc`, no `ack ccfb`, no transport-wide extension), and the
//! core echoes what it receives back.
//!
//! - The core's receive-side estimator measures Chromium's packets by their abs-send-time
//!   and sends REMB; Chromium's video rate follows it up, well above a core configured
//!   with no congestion feedback at all (where Chromium only has receiver reports).
//! - Chromium measures our echo by the abs-send-time the core writes and sends REMB; each
//!   becomes an `Event::RemoteBitrateEstimate` and is counted.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sansrtc::peer::Event;
use sansrtc::sdp::SessionDescription;
use sansrtc::{Config, MediaKind, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive, stat_sum, BrowserKind, BrowserPeer};
use serde_json::json;

/// How long Chromium publishes in each run.
const CALL: Duration = Duration::from_secs(9);

/// What one run measured.
struct Run {
    answer: String,
    core: sansrtc::media::recovery::LossRecoveryStats,
    video_bytes_sent: u64,
    /// The bitrates of the `RemoteBitrateEstimate` events (Chromium's REMB to us).
    remb_events: Vec<u64>,
    /// REMB packets (PSFB FMT 15) seen in Chromium's RTCP.
    remb_packets_from_chromium: u64,
}

/// The core's default configuration without transport-wide and RFC 8888 feedback (and
/// the transport-wide extension: Chromium answers packets carrying it with transport-wide
/// feedback whatever the `a=rtcp-fb` lines say); without `goog-remb` too unless `remb`.
fn config(remb: bool) -> Config {
    let mut c = Config::default();
    for codec in c.audio_codecs.iter_mut().chain(c.video_codecs.iter_mut()) {
        codec
            .rtcp_feedback
            .retain(|f| f != "transport-cc" && f != "ack ccfb" && (remb || f != "goog-remb"));
    }
    c.header_extensions
        .retain(|e| !e.uri.contains("transport-wide-cc"));
    c
}

#[test]
fn chromium_follows_the_cores_remb_and_its_remb_becomes_an_event() {
    let remb = run(config(true));
    let none = run(config(false));
    eprintln!(
        "Chromium video bytesSent in {} s: REMB only {} ({} kbit/s), no feedback {} ({} kbit/s); \
         core REMB sent {} (last {} kbit/s, {} overuse signals); Chromium's REMB to the core: \
         {} events (last {} kbit/s)",
        CALL.as_secs(),
        remb.video_bytes_sent,
        remb.video_bytes_sent * 8 / CALL.as_secs() / 1000,
        none.video_bytes_sent,
        none.video_bytes_sent * 8 / CALL.as_secs() / 1000,
        remb.core.remb_sent,
        remb.core.remb_last_sent_bps / 1000,
        remb.core.remb_overuse_signals,
        remb.remb_events.len(),
        remb.remb_events.last().copied().unwrap_or(0) / 1000,
    );
    // Negotiated: REMB, and nothing transport-wide.
    assert!(
        remb.answer.contains(" goog-remb")
            && !remb.answer.contains("transport-cc")
            && !remb.answer.contains("ccfb")
            && !remb.answer.contains("transport-wide"),
        "{}",
        remb.answer
    );
    assert!(!none.answer.contains("goog-remb"), "{}", none.answer);
    // The core measured Chromium's video and sent REMB about once a second.
    let core = &remb.core;
    assert!(core.remb_packets_measured > 300, "{core:?}");
    assert!(core.remb_sent >= 5, "{core:?}");
    assert_eq!(none.core.remb_sent + none.core.remb_packets_measured, 0);
    // Chromium's REMB about our echo: every one an event, and counted.
    assert!(remb.remb_packets_from_chromium > 0, "Chromium sends REMB");
    assert_eq!(
        remb.remb_events.len() as u64,
        remb.remb_packets_from_chromium
    );
    assert_eq!(core.remb_received, remb.remb_packets_from_chromium);
    assert!(
        remb.remb_events.iter().all(|b| *b > 10_000),
        "{:?}",
        remb.remb_events
    );
    // Our REMB lets Chromium's sender ramp up, well above no congestion feedback
    // (measured here: 479 against 323 kbit/s; transport-cc gives about 470).
    assert!(
        remb.video_bytes_sent * 4 > none.video_bytes_sent * 5,
        "REMB {} against none {}",
        remb.video_bytes_sent,
        none.video_bytes_sent
    );
}

/// One echo call of [`CALL`] with a core built from `config`.
fn run(config: Config) -> Run {
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium)
        .expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(config, start).expect("pc");
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
    let feedback: Vec<&str> = answer
        .sdp
        .lines()
        .filter(|l| l.starts_with("a=rtcp-fb") || l.contains("abs-send-time"))
        .collect();
    eprintln!("core answer: {feedback:?}");
    pc.set_local_description(start, answer.clone())
        .expect("local answer");
    browser
        .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")}))
        .expect("browser takes answer");
    let out_of = |pc: &PeerConnection, kind| {
        pc.transceivers()
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.id)
            .expect("transceiver")
    };
    let (video_out, audio_out) = (out_of(&pc, MediaKind::Video), out_of(&pc, MediaKind::Audio));
    let mut buf = vec![0u8; 2048];
    let mut remb_events = Vec::new();
    let mut remb_packets_from_chromium = 0;
    let deadline = Instant::now() + CALL;
    while Instant::now() < deadline {
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(10));
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
                Event::Rtcp(plain) => {
                    // PSFB FMT 15 with "REMB", by header only.
                    let mut at = 0usize;
                    while let (Some(b0), Some(pt), Some(len)) =
                        (plain.get(at), plain.get(at + 1), plain.get(at + 2..at + 4))
                    {
                        if *pt == 206
                            && b0 & 0x1F == 15
                            && plain.get(at + 12..at + 16) == Some(&b"REMB"[..])
                        {
                            remb_packets_from_chromium += 1;
                        }
                        at += 4 * (usize::from(u16::from_be_bytes([len[0], len[1]])) + 1);
                    }
                }
                Event::RemoteBitrateEstimate { bitrate_bps, .. } => remb_events.push(bitrate_bps),
                _ => {}
            }
        }
        browser.forward_candidates(&mut pc);
    }
    let stats = browser.call(json!({"cmd": "getStats"})).expect("stats");
    let core = pc.stats().loss_recovery;
    let frames = stat_sum(&stats, "inbound-rtp", "video", "framesDecoded");
    let bytes_out = stat_sum(&stats, "outbound-rtp", "video", "bytesSent");
    eprintln!(
        "chromium: framesDecoded {frames}, video bytesSent {bytes_out}; core: remb sent {} \
         (last {}), measured {}, overuse {}, received {} (last {}), RTX padding received {}; \
         REMB events {:?}",
        core.remb_sent,
        core.remb_last_sent_bps,
        core.remb_packets_measured,
        core.remb_overuse_signals,
        core.remb_received,
        core.remb_last_received_bps,
        core.rtx_padding_received,
        remb_events
    );
    assert!(frames > 0, "Chromium decodes the echo");
    Run {
        answer: answer.sdp,
        core,
        video_bytes_sent: bytes_out,
        remb_events,
        remb_packets_from_chromium,
    }
}
