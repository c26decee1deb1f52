//! A real browser connects with the core: headless Chromium or Firefox ESR (in the
//! loopback-only network namespace the test command creates) and the core, driven by a
//! small UDP loop on 127.0.0.1, exchange offer and answer and trickle candidates both ways
//! as JSON; the browser reports `iceConnectionState` `connected`, then DTLS 1.2 completes
//! (the browser falls back from 1.3) and it reports `connectionState` `connected`, with
//! SRTP keys exported on our side. Both offer directions, so both DTLS roles.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sansrtc::dtls::DtlsRole;
use sansrtc::peer::{ConnectionState, Event, IceConnectionState};
use sansrtc::sdp::{IceCandidateInit, SessionDescription};
use sansrtc::{Config, MediaKind, OfferOptions, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive, BrowserKind, BrowserPeer};
use serde_json::{json, Value};

fn run_with_browser(kind: BrowserKind, core_offers: bool) {
    let mut browser =
        BrowserPeer::spawn(kind).expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
    if core_offers {
        pc.add_track(MediaKind::Audio, vec!["core".into()])
            .expect("track");
        let offer = pc.create_offer(OfferOptions::default()).expect("offer");
        pc.set_local_description(start, offer.clone())
            .expect("local offer");
        browser
            .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&offer).expect("json")}))
            .expect("browser accepts our offer");
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
            .call(json!({"cmd": "addTransceiver", "kind": "audio", "direction": "sendrecv"}))
            .expect("transceiver");
        let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
        browser
            .call(json!({"cmd": "setLocalDescription", "desc": offer}))
            .expect("set local");
        let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");
        pc.set_remote_description(start, offer)
            .expect("remote offer");
        let answer = pc.create_answer().expect("answer");
        assert!(
            answer.sdp.contains("a=fingerprint:sha-256 "),
            "answer carries a fingerprint"
        );
        pc.set_local_description(start, answer.clone())
            .expect("local answer");
        browser
            .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")}))
            .expect("browser accepts our answer");
    }
    // The answerer is active (RFC 8842): when the browser answers, we are the DTLS server.
    let expected_role = if core_offers {
        DtlsRole::Server
    } else {
        DtlsRole::Client
    };

    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut browser_ice, mut browser_connected) = (false, false);
    while Instant::now() < deadline
        && !(browser_connected && pc.connection_state() == ConnectionState::Connected)
    {
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(20));
        while let Some(ev) = pc.poll_event() {
            if let Event::IceCandidate(c) = ev {
                let v = serde_json::to_value(&c).expect("candidate json");
                browser
                    .call(json!({"cmd": "addIceCandidate", "candidate": v}))
                    .expect("browser adds our candidate");
            }
        }
        while let Some(ev) = browser.next_event(Duration::from_millis(1)) {
            let state = ev.get("state").and_then(Value::as_str);
            match ev.get("event").and_then(Value::as_str) {
                Some("icecandidate") => {
                    let c = ev.get("candidate").cloned().unwrap_or(Value::Null);
                    if c.is_null() {
                        continue;
                    }
                    let init: IceCandidateInit =
                        serde_json::from_value(c).expect("browser candidate json");
                    pc.add_ice_candidate(Instant::now(), init)
                        .expect("core adds browser candidate");
                }
                Some("iceconnectionstatechange") if state == Some("connected") => {
                    browser_ice = true
                }
                Some("connectionstatechange") if state == Some("connected") => {
                    browser_connected = true
                }
                _ => {}
            }
        }
    }
    let state = browser.call(json!({"cmd": "state"})).expect("state");
    assert!(
        browser_ice,
        "browser never reached iceConnectionState connected: {state}"
    );
    assert!(
        browser_connected,
        "browser never reached connectionState connected (DTLS): {state}; core {:?}, {:?}",
        pc.stats(),
        (
            pc.connection_state(),
            pc.ice_connection_state(),
            pc.selected_pair(),
            pc.dtls_role()
        )
    );
    assert_eq!(pc.ice_connection_state(), IceConnectionState::Connected);
    assert_eq!(pc.connection_state(), ConnectionState::Connected);
    assert_eq!(pc.dtls_role(), Some(expected_role));
    assert!(pc.srtp_profile().is_some(), "SRTP keys exported");
    let pair = pc.selected_pair().expect("selected pair");
    assert_eq!(pair.local, local);
}

#[test]
fn chromium_offers_core_is_dtls_client() {
    run_with_browser(BrowserKind::Chromium, false);
}

#[test]
fn core_offers_chromium_core_is_dtls_server() {
    run_with_browser(BrowserKind::Chromium, true);
}

#[test]
fn firefox_offers_core_is_dtls_client() {
    run_with_browser(BrowserKind::Firefox, false);
}

#[test]
fn core_offers_firefox_core_is_dtls_server() {
    run_with_browser(BrowserKind::Firefox, true);
}
