//! A real browser completes ICE with the core: headless Chromium (in the loopback-only
//! network namespace the test command creates) creates an offer, the core answers it from a
//! small UDP loop on 127.0.0.1, candidates trickle both ways as JSON, and Chromium reports
//! `iceConnectionState` `connected`; the same with Firefox ESR. The answer carries the fingerprint of a real
//! self-signed ECDSA certificate (DTLS itself comes with the secure-media work, so the
//! browser's `connectionState` is not asserted here).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sansrtc::peer::{Event, IceConnectionState};
use sansrtc::sdp::{IceCandidateInit, SessionDescription};
use sansrtc::{Config, Datagram, PeerConnection, Protocol};
use sansrtc_tests::browser::{BrowserKind, BrowserPeer};
use serde_json::{json, Value};

/// Drive the core over a real UDP socket for a short slice of time.
fn drive(pc: &mut PeerConnection, socket: &UdpSocket, buf: &mut [u8], slice: Duration) {
    let local = socket.local_addr().expect("local addr");
    let end = Instant::now() + slice;
    let mut out = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        while let Some(t) = pc.poll_transmit(now, &mut out) {
            let _ = socket.send_to(&out[..t.len], t.remote);
        }
        if now >= end {
            return;
        }
        let wait = pc
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(slice)
            .clamp(
                Duration::from_millis(1),
                end.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        socket.set_read_timeout(Some(wait)).expect("timeout");
        match socket.recv_from(buf) {
            Ok((n, remote)) => {
                let data = buf.get(..n).unwrap_or_default();
                pc.handle_datagram(
                    Instant::now(),
                    Datagram {
                        local,
                        remote,
                        protocol: Protocol::Udp,
                        data,
                    },
                );
            }
            Err(_) => pc.handle_timeout(Instant::now()),
        }
    }
}

fn run_ice_with_browser(kind: BrowserKind) {
    let mut browser =
        BrowserPeer::spawn(kind).expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    browser
        .call(json!({"cmd": "addTransceiver", "kind": "audio", "direction": "sendrecv"}))
        .expect("transceiver");
    let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": offer}))
        .expect("set local");
    let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");

    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
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

    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut browser_connected = false;
    let mut core_connected = false;
    while Instant::now() < deadline && !(browser_connected && core_connected) {
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(20));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => {
                    let v = serde_json::to_value(&c).expect("candidate json");
                    browser
                        .call(json!({"cmd": "addIceCandidate", "candidate": v}))
                        .expect("browser adds our candidate");
                }
                Event::IceConnectionStateChange(IceConnectionState::Connected) => {
                    core_connected = true
                }
                _ => {}
            }
        }
        while let Some(ev) = browser.next_event(Duration::from_millis(1)) {
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
                Some("iceconnectionstatechange")
                    if ev.get("state").and_then(Value::as_str) == Some("connected") =>
                {
                    browser_connected = true;
                }
                _ => {}
            }
        }
    }
    let state = browser.call(json!({"cmd": "state"})).expect("state");
    assert!(
        browser_connected,
        "browser never reached iceConnectionState connected: {state}"
    );
    assert!(
        core_connected,
        "core never reached ICE connected: {:?}",
        pc.ice_connection_state()
    );
    let pair = pc.selected_pair().expect("selected pair");
    assert_eq!(pair.local, local);
}

#[test]
fn chromium_completes_ice_with_the_core() {
    run_ice_with_browser(BrowserKind::Chromium);
}

#[test]
fn firefox_completes_ice_with_the_core() {
    run_ice_with_browser(BrowserKind::Firefox);
}
