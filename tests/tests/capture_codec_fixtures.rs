//! Captures the RTP packets Chromium sends for each video codec (and Opus) into the
//! fixture files of `core/src/rtp/codec/fixtures/`, which the core's codec tests
//! depacketize. Run once by hand, not in the suite (it rewrites the fixtures), inside the
//! loopback-only namespace:
//!
//! ```text
//! unshare -n sh -c 'ip link set lo up && exec cargo test -p sansrtc-tests \
//!     --test capture_codec_fixtures -- --ignored --nocapture'
//! ```
//!
//! Chromium offers; the core answers with only the codec under capture, so Chromium
//! sends its fake camera in that codec. The first packets (from the start of the stream,
//! which begins with a keyframe) up to the fourth marker bit are written as records of
//! `seq: u16, timestamp: u32, marker: u8, len: u16, payload` (big-endian).

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sansrtc::config::CodecConfig;
use sansrtc::media::RtpPacket;
use sansrtc::peer::Event;
use sansrtc::sdp::SessionDescription;
use sansrtc::{Config, MediaKind, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive, BrowserKind, BrowserPeer};
use serde_json::json;

/// Frames (marker bits) captured per video codec.
const VIDEO_FRAMES: usize = 4;
/// Opus packets captured.
const AUDIO_PACKETS: usize = 5;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../core/src/rtp/codec/fixtures")
}

fn write_fixture(name: &str, packets: &[RtpPacket]) {
    let mut out = Vec::new();
    for p in packets {
        out.extend_from_slice(&p.sequence_number.to_be_bytes());
        out.extend_from_slice(&p.timestamp.to_be_bytes());
        out.push(u8::from(p.marker));
        out.extend_from_slice(&(p.payload.len() as u16).to_be_bytes());
        out.extend_from_slice(&p.payload);
    }
    let path = fixture_dir().join(name);
    std::fs::write(&path, out).expect("write fixture");
    eprintln!("wrote {} packets to {}", packets.len(), path.display());
}

/// Capture one codec; returns false when Chromium does not offer it.
fn capture(codec: &str, file: &str, with_audio: bool) -> bool {
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium).expect("spawn chromium");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    browser
        .call(json!({"cmd": "getUserMedia", "audio": with_audio, "video": true}))
        .expect("getUserMedia");
    let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": offer}))
        .expect("set local");
    let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");
    let offered = offer
        .sdp
        .lines()
        .any(|l| l.starts_with("a=rtpmap:") && l.contains(&format!(" {codec}/")));
    eprintln!("Chromium offers {codec}: {offered}");
    if !offered {
        return false;
    }
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut config = Config::default();
    config
        .video_codecs
        .retain(|c: &CodecConfig| c.name.eq_ignore_ascii_case(codec));
    config
        .audio_codecs
        .retain(|c| c.name.eq_ignore_ascii_case("opus"));
    let mut pc = PeerConnection::new(config, start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
    pc.set_remote_description(start, offer)
        .expect("remote offer");
    let answer = pc.create_answer().expect("answer");
    pc.set_local_description(start, answer.clone())
        .expect("local answer");
    browser
        .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")}))
        .expect("browser takes answer");
    let kinds: Vec<(sansrtc::TransceiverId, MediaKind)> =
        pc.transceivers().iter().map(|t| (t.id, t.kind)).collect();
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(30);
    let markers = |v: &[RtpPacket]| v.iter().filter(|p| p.marker).count();
    while Instant::now() < deadline
        && (markers(&video) < VIDEO_FRAMES || (with_audio && audio.len() < AUDIO_PACKETS))
    {
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(10));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => browser.add_core_candidate(&c),
                Event::Rtp { track, packet, .. } => {
                    let kind = kinds.iter().find(|(id, _)| *id == track).map(|(_, k)| *k);
                    if kind == Some(MediaKind::Video) && markers(&video) < VIDEO_FRAMES {
                        video.push(packet);
                    } else if kind == Some(MediaKind::Audio)
                        && audio.len() < AUDIO_PACKETS
                        && !packet.payload.is_empty()
                    {
                        audio.push(packet);
                    }
                }
                _ => {}
            }
        }
        browser.forward_candidates(&mut pc);
    }
    assert!(
        markers(&video) >= VIDEO_FRAMES,
        "{codec}: {} packets",
        video.len()
    );
    write_fixture(file, &video);
    if with_audio {
        write_fixture("opus.bin", &audio);
    }
    true
}

#[test]
#[ignore = "rewrites the codec fixtures; run by hand (see the module doc)"]
fn capture_chromium_codec_fixtures() {
    let mut missing = Vec::new();
    for (codec, file, audio) in [
        ("VP8", "vp8.bin", true),
        ("VP9", "vp9.bin", false),
        ("H264", "h264.bin", false),
        ("AV1", "av1.bin", false),
    ] {
        if !capture(codec, file, audio) {
            missing.push(codec);
        }
    }
    eprintln!("Chromium could not send: {missing:?}");
}
