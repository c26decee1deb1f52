//! Chromium through a real TURN relay: headless Chromium gets coturn (127.0.0.1) as its
//! only ICE server with `iceTransportPolicy: 'relay'`, so it can only reach the core
//! through a relayed address; the core uses a plain host candidate on 127.0.0.1 (it
//! answers the relayed peer like any other). Chromium sends its fake camera and opens a
//! data channel; the test asserts from Chromium's `getStats()` that the selected pair's
//! local candidate is `relay` over the expected relay protocol, that video RTP arrived at
//! the core, and that data channel messages came back echoed. Once over TURN/UDP, once over
//! `turn:...?transport=tcp`, once over `turns:`. Chromium checks a `turns:` server's
//! certificate: coturn's self-signed one is refused (`icecandidateerror` 701, no relay
//! candidate; asserted below), so the TLS case runs Chromium with
//! `--ignore-certificate-errors`, which its TURN TLS client honours. Prints the time to
//! connected. Firefox ESR too, over TURN/UDP and TURN/TCP.
//!
//! `unshare -n sh -c 'ip link set lo up && cargo test -p sansrtc-tests --test browser_turn'`

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sansrtc::peer::{ConnectionState, Event};
use sansrtc::sdp::SessionDescription;
use sansrtc::{Config, MediaKind, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive, BrowserKind, BrowserPeer};
use sansrtc_tests::coturn::Coturn;
use serde_json::{json, Value};

const MESSAGES: usize = 5;

/// The page's side of the data-channel check both tests run: once the "chat" channel is
/// open, send `MESSAGES` texts 50 ms apart and collect what the core echoes back.
struct Chat {
    open: bool,
    sent: usize,
    next_send: Instant,
    echoed: Vec<String>,
}

impl Chat {
    fn new() -> Chat {
        Chat {
            open: false,
            sent: 0,
            next_send: Instant::now(),
            echoed: Vec::new(),
        }
    }

    /// Take the page's channel events; false for any other event.
    fn on_event(&mut self, name: Option<&str>, ev: &Value) -> bool {
        match name {
            Some("datachannelopen") => self.open = true,
            Some("message") => {
                if let Some(text) = ev.get("data").and_then(Value::as_str) {
                    self.echoed.push(text.to_owned());
                }
            }
            _ => return false,
        }
        true
    }

    /// Send the next message when it is due.
    fn tick(&mut self, browser: &mut BrowserPeer) {
        if self.open && self.sent < MESSAGES && Instant::now() >= self.next_send {
            self.next_send = Instant::now() + Duration::from_millis(50);
            browser
                .call(json!({"cmd": "send", "label": "chat", "data": format!("relayed {}", self.sent)}))
                .expect("send");
            self.sent += 1;
        }
    }

    fn done(&self) -> bool {
        self.echoed.len() >= MESSAGES
    }

    /// Every message came back, in order.
    fn assert_echoed(&self) {
        let expected: Vec<String> = (0..MESSAGES).map(|i| format!("relayed {i}")).collect();
        assert_eq!(self.echoed, expected);
    }
}

/// The selected pair's local candidate as Chromium reports it: `(candidateType,
/// relayProtocol)`, or `None` before a pair is selected.
const SELECTED_LOCAL: &str = r#"
    const r = await window.pc.getStats();
    let pairId = null;
    r.forEach((s) => { if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
    // Firefox has no transport stats: its selected pair says so itself.
    if (!pairId) r.forEach((s) => { if (s.type === 'candidate-pair' && s.selected) pairId = s.id; });
    if (!pairId) return null;
    const pair = r.get(pairId);
    const local = pair && r.get(pair.localCandidateId);
    const remote = pair && r.get(pair.remoteCandidateId);
    return local ? { type: local.candidateType, relayProtocol: local.relayProtocol || null,
                     address: local.address, port: local.port, url: local.url || null,
                     remote: remote ? remote.address + ':' + remote.port : null } : null;
"#;

fn relayed(
    kind: BrowserKind,
    url: String,
    turn: &Coturn,
    relay_protocol: &str,
    chromium_args: &[&str],
) {
    let mut browser = BrowserPeer::spawn_with_args(kind, chromium_args)
        .expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {
            "iceServers": [{"urls": [url.clone()], "username": turn.username(), "credential": turn.password()}],
            "iceTransportPolicy": "relay",
        }}))
        .expect("create");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);

    browser
        .call(json!({"cmd": "getUserMedia", "audio": false, "video": true}))
        .expect("getUserMedia");
    browser
        .call(json!({"cmd": "createDataChannel", "label": "chat"}))
        .expect("data channel");
    let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": offer}))
        .expect("set local");
    let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");
    pc.set_remote_description(start, offer)
        .expect("remote offer");
    pc.add_track(MediaKind::Video, vec!["core".into()])
        .expect("video");
    let answer = pc.create_answer().expect("answer");
    pc.set_local_description(start, answer.clone())
        .expect("local answer");
    browser
        .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")}))
        .expect("browser takes answer");

    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut video_rtp = 0u64;
    let mut chat = Chat::new();
    let mut browser_relay_candidates = 0;
    let mut connected_at = None;
    let mut failed = false;
    while Instant::now() < deadline && !failed && !(video_rtp > 10 && chat.done()) {
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(10));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => browser.add_core_candidate(&c),
                Event::Rtp { .. } => video_rtp += 1,
                Event::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } => {
                    pc.send_data(Instant::now(), channel, data, binary)
                        .expect("echo");
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => {
                    connected_at.get_or_insert_with(|| start.elapsed());
                }
                Event::ConnectionStateChange(ConnectionState::Failed) => failed = true,
                _ => {}
            }
        }
        while let Some(ev) = browser.next_event(Duration::ZERO) {
            let name = ev.get("event").and_then(Value::as_str);
            if chat.on_event(name, &ev) {
                continue;
            }
            match name {
                Some("icecandidate") => {
                    let c = ev.get("candidate").cloned().unwrap_or(Value::Null);
                    if c.is_null() {
                        continue;
                    }
                    let init: sansrtc::IceCandidateInit =
                        serde_json::from_value(c).expect("browser candidate json");
                    // Firefox ends with an empty candidate (end-of-candidates).
                    assert!(
                        init.candidate.is_empty() || init.candidate.contains(" typ relay"),
                        "the relay policy gathers relay candidates only: {}",
                        init.candidate
                    );
                    if !init.candidate.is_empty() {
                        browser_relay_candidates += 1;
                    }
                    pc.add_ice_candidate(Instant::now(), init)
                        .expect("core adds the browser's candidate");
                }
                Some("icecandidateerror") => eprintln!("Chromium: {ev}"),
                _ => {}
            }
        }
        chat.tick(&mut browser);
    }
    let selected = browser.eval(SELECTED_LOCAL);
    let state = browser.call(json!({"cmd": "state"})).expect("state");
    eprintln!(
        "{kind:?} over {url} (relay only): connected in {:.0} ms; selected local {selected}",
        connected_at.unwrap_or_default().as_secs_f64() * 1000.0
    );
    assert!(
        browser_relay_candidates > 0,
        "{kind:?} gathered no relay candidate over {url}; state {state}; coturn log:\n{}",
        turn.log()
    );
    assert!(connected_at.is_some(), "never connected; browser {state}");
    assert_eq!(
        selected.get("type").and_then(Value::as_str),
        Some("relay"),
        "selected local candidate {selected}"
    );
    assert_eq!(
        selected.get("relayProtocol").and_then(Value::as_str),
        Some(relay_protocol),
        "selected local candidate {selected}"
    );
    let port = selected.get("port").and_then(Value::as_u64).unwrap_or(0);
    assert!(
        turn.relay_ports()
            .contains(&u16::try_from(port).unwrap_or(0)),
        "the relayed address is coturn's: {selected}"
    );
    // The core sees the relayed address as its remote.
    let pair = pc.selected_pair().expect("core selected pair");
    assert_eq!(pair.local, local);
    assert_eq!(u64::from(pair.remote.port()), port, "{pair:?} {selected}");
    assert!(video_rtp > 10, "video RTP at the core: {video_rtp}");
    chat.assert_echoed();
}

#[test]
fn chromium_relayed_over_turn_udp() {
    let turn = Coturn::start().expect("turnserver");
    relayed(BrowserKind::Chromium, turn.udp_url(), &turn, "udp", &[]);
}

#[test]
fn chromium_relayed_over_turn_tcp() {
    let turn = Coturn::start().expect("turnserver");
    relayed(BrowserKind::Chromium, turn.tcp_url(), &turn, "tcp", &[]);
}

#[test]
fn chromium_relayed_over_turn_tls() {
    let turn = Coturn::start().expect("turnserver");
    relayed(
        BrowserKind::Chromium,
        turn.tls_url(),
        &turn,
        "tls",
        &["--ignore-certificate-errors"],
    );
}

#[test]
fn firefox_relayed_over_turn_udp() {
    let turn = Coturn::start().expect("turnserver");
    relayed(BrowserKind::Firefox, turn.udp_url(), &turn, "udp", &[]);
}

#[test]
fn firefox_relayed_over_turn_tcp() {
    let turn = Coturn::start().expect("turnserver");
    relayed(BrowserKind::Firefox, turn.tcp_url(), &turn, "tcp", &[]);
}

#[test]
fn chromium_refuses_an_untrusted_turns_certificate() {
    let turn = Coturn::start().expect("turnserver");
    let url = turn.tls_url();
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium)
        .expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {
            "iceServers": [{"urls": [url.clone()], "username": turn.username(), "credential": turn.password()}],
            "iceTransportPolicy": "relay",
        }}))
        .expect("create");
    browser
        .call(json!({"cmd": "createDataChannel", "label": "chat"}))
        .expect("data channel");
    let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": offer}))
        .expect("set local");
    let deadline = Instant::now() + Duration::from_secs(40);
    let (mut errors, mut candidates, mut complete) = (Vec::new(), 0, false);
    while Instant::now() < deadline && !complete {
        let Some(ev) = browser.next_event(Duration::from_millis(100)) else {
            continue;
        };
        match ev.get("event").and_then(Value::as_str) {
            Some("icecandidateerror") => errors.push(ev),
            Some("icecandidate") if !ev.get("candidate").is_some_and(Value::is_null) => {
                candidates += 1
            }
            Some("icegatheringstatechange") => {
                complete = ev.get("state").and_then(Value::as_str) == Some("complete")
            }
            _ => {}
        }
    }
    assert!(complete, "gathering never completed");
    assert_eq!(
        candidates, 0,
        "no relay candidate through an untrusted server"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.get("errorCode").and_then(Value::as_u64) == Some(701)
                && e.get("url")
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.starts_with("turns:"))),
        "{errors:?}"
    );
}

/// Both sides relayed: Chromium over TURN/UDP, and the core on the blocking std runtime
/// under the relay policy over `turns:` (the runtime's TLS stream, coturn's certificate as
/// the trusted root), so every packet crosses coturn twice.
#[test]
fn chromium_and_a_relay_only_runtime_peer_over_turns() {
    let turn = Coturn::start().expect("turnserver");
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium)
        .expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {
            "iceServers": [{"urls": [turn.udp_url()], "username": turn.username(), "credential": turn.password()}],
            "iceTransportPolicy": "relay",
        }}))
        .expect("create");
    let config = Config {
        ice_servers: vec![sansrtc::IceServer {
            urls: vec![turn.tls_url()],
            username: Some(turn.username().into()),
            credential: Some(turn.password().into()),
        }],
        ice_transport_policy: sansrtc::IceTransportPolicy::Relay,
        ..Default::default()
    };
    let options = sansrtc_std::Options {
        tls_roots: sansrtc_std::stream::TlsRoots::only(vec![turn.certificate_der().to_vec()]),
        ..sansrtc_std::Options::loopback()
    };
    let start = Instant::now();
    let pc = sansrtc_std::PeerConnection::with_options(config, options).expect("std pc");
    browser
        .call(json!({"cmd": "getUserMedia", "audio": false, "video": true}))
        .expect("getUserMedia");
    browser
        .call(json!({"cmd": "createDataChannel", "label": "chat"}))
        .expect("data channel");
    let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": offer}))
        .expect("set local");
    let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");
    pc.set_remote_description(offer).expect("remote offer");
    pc.add_track(MediaKind::Video, vec!["core".into()])
        .expect("video");
    let answer = pc.create_answer().expect("answer");
    pc.set_local_description(answer.clone())
        .expect("local answer");
    browser
        .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")}))
        .expect("browser takes answer");

    let deadline = Instant::now() + Duration::from_secs(40);
    let mut video_rtp = 0u64;
    let mut chat = Chat::new();
    let mut connected_at = None;
    while Instant::now() < deadline && !(video_rtp > 10 && chat.done()) {
        while let Some(ev) = pc.try_next_event() {
            match ev {
                Event::IceCandidate(c) => {
                    assert!(
                        c.candidate.is_empty() || c.candidate.contains(" typ relay"),
                        "{}",
                        c.candidate
                    );
                    browser.add_core_candidate(&c)
                }
                Event::Rtp { .. } => video_rtp += 1,
                Event::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } => pc.send_data(channel, data, binary).expect("echo"),
                Event::ConnectionStateChange(ConnectionState::Connected) => {
                    connected_at.get_or_insert_with(|| start.elapsed());
                }
                Event::IceCandidateError { url, error, .. } => {
                    panic!("core's TURN {url} failed: {error}")
                }
                _ => {}
            }
        }
        while let Some(ev) = browser.next_event(Duration::from_millis(5)) {
            let name = ev.get("event").and_then(Value::as_str);
            if chat.on_event(name, &ev) || name != Some("icecandidate") {
                continue;
            }
            let c = ev.get("candidate").cloned().unwrap_or(Value::Null);
            if !c.is_null() {
                let init: sansrtc::IceCandidateInit =
                    serde_json::from_value(c).expect("candidate json");
                pc.add_ice_candidate(init).expect("core adds candidate");
            }
        }
        chat.tick(&mut browser);
    }
    let selected = browser.eval(SELECTED_LOCAL);
    let core_pair = smol::block_on(pc.handle().call(|pc, _| pc.selected_pair()))
        .expect("driver")
        .expect("core selected pair");
    eprintln!(
        "Chromium over TURN/UDP with a relay-only std peer over TURN/TLS: connected in {:.0} ms; Chromium {selected}; core {core_pair:?}",
        connected_at.unwrap_or_default().as_secs_f64() * 1000.0
    );
    assert_eq!(
        selected.get("type").and_then(Value::as_str),
        Some("relay"),
        "{selected}"
    );
    assert_eq!(core_pair.local_kind, sansrtc::ice::CandidateKind::Relay);
    assert!(turn.relay_ports().contains(&core_pair.local.port()));
    assert!(turn.relay_ports().contains(&core_pair.remote.port()));
    assert_eq!(pc.handle().runtime_stats().turn_streams_connected, 1);
    assert!(video_rtp > 10, "video RTP at the core: {video_rtp}");
    chat.assert_echoed();
    pc.close();
}
