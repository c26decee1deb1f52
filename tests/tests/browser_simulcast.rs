//! Simulcast from a real browser: headless Chromium sends its fake camera as three
//! simulcast streams (`rid` q, h, f; no `a=ssrc` lines in its offer), the core answers
//! with `a=rid:* recv` and `a=simulcast:recv`, and then demultiplexes the SSRCs it was
//! never told about by mid and rid: every packet arrives on the one video track, each
//! stream under its own rid, even after Chromium stops sending the mid/rid extensions.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sansrtc::peer::Event;
use sansrtc::sdp::{IceCandidateInit, Sdp, SessionDescription};
use sansrtc::{Config, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive, BrowserKind, BrowserPeer};
use serde_json::{json, Value};

const SEND_SIMULCAST: &str = r#"
    const stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 1280 }, height: { ideal: 720 } },
    });
    pc.addTransceiver(stream.getVideoTracks()[0], {
        direction: 'sendonly',
        streams: [stream],
        sendEncodings: [
            { rid: 'q', scaleResolutionDownBy: 4 },
            { rid: 'h', scaleResolutionDownBy: 2 },
            { rid: 'f' },
        ],
    });
    return true;
"#;

/// The answer with Chromium's `x-google-*-bitrate` hints on its VP8 payload type.
fn with_min_bitrate(sdp: &str) -> String {
    let mut out = String::new();
    for line in sdp.split_inclusive("\r\n") {
        out.push_str(line);
        if let Some(pt) = line
            .strip_prefix("a=rtpmap:")
            .and_then(|rest| rest.strip_suffix(" VP8/90000\r\n"))
        {
            out.push_str(&format!(
                "a=fmtp:{pt} x-google-min-bitrate=1500;x-google-start-bitrate=2500\r\n"
            ));
        }
    }
    out
}

#[test]
fn chromium_simulcast_streams_arrive_by_rid() {
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium)
        .expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    browser
        .call(json!({"cmd": "eval", "js": SEND_SIMULCAST}))
        .expect("simulcast transceiver");
    let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": offer}))
        .expect("set local");
    let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");
    let offered = Sdp::parse(&offer.sdp).expect("offer parses");
    assert!(offered.media[0].simulcast.is_some(), "{}", offer.sdp);

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
    pc.set_remote_description(start, offer)
        .expect("remote offer");
    let answer = pc.create_answer().expect("answer");
    pc.set_local_description(start, answer.clone())
        .expect("local answer");
    assert!(
        answer.sdp.contains("a=simulcast:recv q;h;f\r\n"),
        "{}",
        answer.sdp
    );
    // The core sends no congestion feedback yet, so Chromium's bandwidth estimate would
    // stay at its start value and keep the upper layers off: tell it the path is fast.
    let for_browser = SessionDescription::answer(with_min_bitrate(&answer.sdp));
    browser
        .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&for_browser).expect("json")}))
        .expect("browser takes answer");

    let mut track_rids = None;
    let mut tracks = HashSet::new();
    let mut by_rid: HashMap<Option<String>, u64> = HashMap::new();
    let mut ssrcs_by_rid: HashMap<String, HashSet<u32>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(10));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => browser.add_core_candidate(&c),
                Event::Track(t) => track_rids = Some(t.rids),
                Event::Rtp { track, rid, packet } => {
                    tracks.insert(track);
                    if let Some(r) = &rid {
                        ssrcs_by_rid
                            .entry(r.clone())
                            .or_default()
                            .insert(packet.ssrc);
                    }
                    *by_rid.entry(rid).or_default() += 1;
                }
                _ => {}
            }
        }
        while let Some(ev) = browser.next_event(Duration::ZERO) {
            if ev.get("event").and_then(Value::as_str) == Some("icecandidate") {
                let c = ev.get("candidate").cloned().unwrap_or(Value::Null);
                if !c.is_null() {
                    let init: IceCandidateInit = serde_json::from_value(c).expect("candidate json");
                    pc.add_ice_candidate(Instant::now(), init)
                        .expect("core adds candidate");
                }
            }
        }
        let enough = ["q", "h", "f"]
            .iter()
            .filter(|r| by_rid.get(&Some(r.to_string())).copied().unwrap_or(0) >= 50)
            .count();
        if enough >= 2 {
            break;
        }
    }
    assert_eq!(
        track_rids,
        Some(vec!["q".to_string(), "h".into(), "f".into()])
    );
    assert_eq!(tracks.len(), 1, "every stream on the one video track");
    let stats = pc.stats();
    // Chromium limits the layers by resolution; its fake camera gives at least two.
    let streams: Vec<(&String, &HashSet<u32>)> = ssrcs_by_rid.iter().collect();
    assert!(
        streams.len() >= 2,
        "packets per rid {by_rid:?}, ssrcs {ssrcs_by_rid:?}, {stats:?}"
    );
    for (rid, ssrcs) in &streams {
        assert!(["q", "h", "f"].contains(&rid.as_str()), "{rid}");
        assert_eq!(ssrcs.len(), 1, "one SSRC per rid: {ssrcs_by_rid:?}");
    }
    let all: HashSet<u32> = streams
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    assert_eq!(all.len(), streams.len(), "distinct SSRCs per rid");
    assert_eq!(
        by_rid.get(&None).copied().unwrap_or(0),
        0,
        "no packet without its stream's rid: {by_rid:?}"
    );
    assert_eq!(stats.srtp_in.auth_failures, 0);
}
