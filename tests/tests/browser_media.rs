//! Media both ways with a real browser: the browser sends its fake camera and microphone,
//! the core receives and counts decrypted RTP for both kinds and echoes every packet back on
//! its own sending tracks (asking the browser for a keyframe when the browser asks us), and
//! the browser decodes what comes back: `getStats()` shows inbound video `framesDecoded > 0`
//! and audio `packetsReceived > 0`. Run with both DTLS roles (the browser offers, so the core
//! is the DTLS client; the core offers, so it is the server) and both SRTP profile families
//! (AES-CM-HMAC-SHA1-80 and AEAD-AES-GCM), with Chromium, and once with Firefox.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sansrtc::peer::{ConnectionState, Event};
use sansrtc::sdp::SessionDescription;
use sansrtc::srtp::SrtpProfile;
use sansrtc::{Config, MediaKind, OfferOptions, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive, BrowserKind, BrowserPeer};
use serde_json::{json, Value};

struct Counts {
    audio: u64,
    video: u64,
    tracks: usize,
}

fn inbound(stats: &Value, kind: &str, field: &str) -> u64 {
    stats
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| {
                    s.get("type").and_then(Value::as_str) == Some("inbound-rtp")
                        && s.get("kind").and_then(Value::as_str) == Some(kind)
                })
                .filter_map(|s| s.get(field).and_then(Value::as_u64))
                .sum()
        })
        .unwrap_or(0)
}

fn echo_media(kind: BrowserKind, core_offers: bool, profiles: Vec<SrtpProfile>) {
    let mut browser =
        BrowserPeer::spawn(kind).expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let config = Config {
        srtp_profiles: profiles.clone(),
        ..Default::default()
    };
    let mut pc = PeerConnection::new(config, start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
    if core_offers {
        pc.add_track(MediaKind::Audio, vec!["echo".into()])
            .expect("audio");
        pc.add_track(MediaKind::Video, vec!["echo".into()])
            .expect("video");
        let offer = pc.create_offer(OfferOptions::default()).expect("offer");
        pc.set_local_description(start, offer.clone())
            .expect("local offer");
        browser.call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&offer).expect("json")})).expect("browser takes offer");
        browser
            .call(json!({"cmd": "getUserMedia", "audio": true, "video": true}))
            .expect("getUserMedia");
        let answer = browser
            .call(json!({"cmd": "createAnswer"}))
            .expect("answer");
        browser
            .call(json!({"cmd": "setLocalDescription", "desc": answer}))
            .expect("set local");
        let answer: SessionDescription = serde_json::from_value(answer).expect("answer json");
        pc.set_remote_description(start, answer)
            .expect("remote answer");
    } else {
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
        // Send back on the transceivers the offer created (W3C addTrack reuses them).
        pc.add_track(MediaKind::Audio, vec!["echo".into()])
            .expect("audio");
        pc.add_track(MediaKind::Video, vec!["echo".into()])
            .expect("video");
        let answer = pc.create_answer().expect("answer");
        pc.set_local_description(start, answer.clone())
            .expect("local answer");
        browser.call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")})).expect("browser takes answer");
    }
    let kinds: Vec<(sansrtc::TransceiverId, MediaKind)> =
        pc.transceivers().iter().map(|t| (t.id, t.kind)).collect();
    let mut counts = Counts {
        audio: 0,
        video: 0,
        tracks: 0,
    };
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut next_stats = Instant::now();
    let mut last_stats = Value::Null;
    let mut done = false;
    while Instant::now() < deadline && !done {
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(10));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => browser.add_core_candidate(&c),
                Event::Track(_) => counts.tracks += 1,
                Event::Rtp { track, packet, .. } => {
                    match kinds.iter().find(|(id, _)| *id == track).map(|(_, k)| *k) {
                        Some(MediaKind::Audio) => counts.audio += 1,
                        Some(MediaKind::Video) => counts.video += 1,
                        None => {}
                    }
                    pc.send_rtp(track, &packet).expect("echo");
                }
                Event::KeyframeRequest(t) => {
                    let _ = pc.request_keyframe(t);
                }
                _ => {}
            }
        }
        browser.forward_candidates(&mut pc);
        if Instant::now() >= next_stats {
            next_stats = Instant::now() + Duration::from_millis(500);
            last_stats = browser.call(json!({"cmd": "getStats"})).expect("stats");
            done = inbound(&last_stats, "video", "framesDecoded") > 0
                && inbound(&last_stats, "audio", "packetsReceived") > 0;
        }
    }
    let state = browser.call(json!({"cmd": "state"})).expect("state");
    let profile = pc.srtp_profile().expect("SRTP negotiated");
    assert!(profiles.contains(&profile), "negotiated {profile:?}");
    assert_eq!(
        pc.connection_state(),
        ConnectionState::Connected,
        "browser: {state}"
    );
    assert_eq!(counts.tracks, 2, "Track events");
    assert!(
        counts.audio > 0 && counts.video > 0,
        "core received audio {} video {}; stats {:?}",
        counts.audio,
        counts.video,
        pc.stats()
    );
    let frames = inbound(&last_stats, "video", "framesDecoded");
    let audio = inbound(&last_stats, "audio", "packetsReceived");
    assert!(
        frames > 0 && audio > 0,
        "browser decoded {frames} echoed frames and got {audio} audio packets; core {:?}",
        pc.stats()
    );
    assert_eq!(pc.stats().srtp_in.auth_failures, 0);
}

#[test]
fn chromium_offers_aes_cm() {
    echo_media(
        BrowserKind::Chromium,
        false,
        vec![SrtpProfile::Aes128CmHmacSha1_80],
    );
}

#[test]
fn chromium_offers_gcm() {
    echo_media(
        BrowserKind::Chromium,
        false,
        vec![SrtpProfile::AeadAes128Gcm],
    );
}

#[test]
fn core_offers_to_chromium_aes_cm() {
    echo_media(
        BrowserKind::Chromium,
        true,
        vec![SrtpProfile::Aes128CmHmacSha1_80],
    );
}

#[test]
fn core_offers_to_chromium_gcm() {
    echo_media(
        BrowserKind::Chromium,
        true,
        vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm],
    );
}

#[test]
fn firefox_offers_default_profiles() {
    echo_media(BrowserKind::Firefox, false, SrtpProfile::ALL.to_vec());
}
