//! Printed data channel throughput (never asserted), 16 KiB ordered reliable messages:
//! - two sansrtc PeerConnections in memory (SCTP over DTLS, datagrams handed across
//!   directly, one core, virtual time for timers), one way;
//! - headless Chromium to a sansrtc core over loopback UDP, and, as the anchor measured
//!   in the same run, Chromium to Chromium (two RTCPeerConnections in one page).
//!   The browser rows need a loopback-only network namespace and Chromium:
//!   `unshare -n sh -c 'ip link set lo up && cargo run --release --example bench_datachannel'`
//!   (outside one, they are skipped with a note).
//!
//! `cargo run --release --example bench_datachannel`
#![allow(clippy::print_stdout)]

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::datachannel::DataChannelError;
use sansrtc::sdp::{IceCandidateInit, SessionDescription};
use sansrtc::{
    Config, ConnectionState, DataChannelInit, Datagram, Event, PeerConnection, Protocol,
};
use sansrtc_tests::browser::{drive, BrowserKind, BrowserPeer};
use serde_json::{json, Value};

const MESSAGE: usize = 16 * 1024;

fn in_memory(total_mb: usize) -> f64 {
    let start = Instant::now();
    let mut now = start;
    let (aa, ba): (SocketAddr, SocketAddr) = (
        "10.0.0.1:5000".parse().expect("a"),
        "10.0.0.2:5000".parse().expect("b"),
    );
    let mut a = PeerConnection::new(Config::default(), now).expect("a");
    let mut b = PeerConnection::new(Config::default(), now).expect("b");
    a.add_local_address(now, aa, Protocol::Udp);
    b.add_local_address(now, ba, Protocol::Udp);
    let ch = a
        .create_data_channel(now, "bulk", DataChannelInit::default())
        .expect("channel");
    let offer = a.create_offer(Default::default()).expect("offer");
    a.set_local_description(now, offer.clone()).expect("local");
    b.set_remote_description(now, offer).expect("remote");
    let answer = b.create_answer().expect("answer");
    b.set_local_description(now, answer.clone()).expect("local");
    a.set_remote_description(now, answer).expect("remote");
    let payload = Bytes::from(vec![0x5a; MESSAGE]);
    let total = total_mb * 1_000_000;
    let (mut sent, mut received, mut open) = (0usize, 0usize, false);
    let mut buf = vec![0u8; 2048];
    let mut wire: VecDeque<(bool, Vec<u8>)> = VecDeque::new();
    let mut timed: Option<Instant> = None;
    while received < total {
        while let Some(t) = a.poll_transmit(now, &mut buf) {
            wire.push_back((true, buf[..t.len].to_vec()));
        }
        while let Some(t) = b.poll_transmit(now, &mut buf) {
            wire.push_back((false, buf[..t.len].to_vec()));
        }
        while let Some(e) = a.poll_event() {
            match e {
                Event::IceCandidate(c) if !c.candidate.is_empty() => {
                    let _ = b.add_ice_candidate(now, c);
                }
                Event::DataChannelOpen(c) if c == ch => open = true,
                _ => {}
            }
        }
        while let Some(e) = b.poll_event() {
            match e {
                Event::IceCandidate(c) if !c.candidate.is_empty() => {
                    let _ = a.add_ice_candidate(now, c);
                }
                Event::DataChannelMessage { data, .. } => received += data.len(),
                _ => {}
            }
        }
        if open {
            if timed.is_none() {
                timed = Some(Instant::now());
            }
            while sent < total {
                match a.send_data(now, ch, payload.clone(), true) {
                    Ok(()) => sent += MESSAGE,
                    Err(DataChannelError::BufferFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        if wire.is_empty() {
            let next = [a.poll_timeout(), b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => {
                    now = now.max(t);
                    a.handle_timeout(now);
                    b.handle_timeout(now);
                }
                None => break,
            }
            continue;
        }
        while let Some((to_b, data)) = wire.pop_front() {
            let (local, remote) = if to_b { (ba, aa) } else { (aa, ba) };
            let d = Datagram {
                local,
                remote,
                protocol: Protocol::Udp,
                data: &data,
            };
            if to_b {
                b.handle_datagram(now, d)
            } else {
                a.handle_datagram(now, d)
            }
        }
    }
    let secs = timed.map_or(0.0, |t| t.elapsed().as_secs_f64());
    received as f64 / 1e6 / secs
}

const PAGE_SEND: &str = r#"
const st = window.__bench = { sent: 0, done: false };
const dc = window.pc.createDataChannel('bulk');
dc.bufferedAmountLowThreshold = 1 << 20;
const msg = new Uint8Array(16384);
dc.onopen = async () => {
  const total = TOTAL;
  while (st.sent < total) {
    while (dc.bufferedAmount > (4 << 20)) await new Promise((r) => { dc.onbufferedamountlow = r; });
    dc.send(msg); st.sent += msg.length;
  }
  st.done = true;
};
return true;
"#;

const PAGE_ANCHOR: &str = r#"
const total = TOTAL;
const a = new RTCPeerConnection(), b = new RTCPeerConnection();
a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
const dc = a.createDataChannel('bulk');
dc.bufferedAmountLowThreshold = 1 << 20;
let received = 0, t0 = 0;
const finished = new Promise((resolve) => {
  b.ondatachannel = (e) => { e.channel.binaryType = 'arraybuffer'; e.channel.onmessage = (m) => { received += m.data.byteLength; if (received >= total) resolve(); }; };
});
await a.setLocalDescription(await a.createOffer());
await b.setRemoteDescription(a.localDescription);
await b.setLocalDescription(await b.createAnswer());
await a.setRemoteDescription(b.localDescription);
await new Promise((r) => { dc.onopen = r; });
const msg = new Uint8Array(16384);
t0 = performance.now();
let sent = 0;
while (sent < total) {
  while (dc.bufferedAmount > (4 << 20)) await new Promise((r) => { dc.onbufferedamountlow = r; });
  dc.send(msg); sent += msg.length;
}
await finished;
const secs = (performance.now() - t0) / 1000;
a.close(); b.close();
return received / 1e6 / secs;
"#;

fn chromium_to_core(total: usize) -> Result<f64, String> {
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium).map_err(|e| e.to_string())?;
    browser.call(json!({"cmd": "create", "config": {}}))?;
    browser.call(json!({"cmd": "eval", "js": PAGE_SEND.replace("TOTAL", &total.to_string())}))?;
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).map_err(|e| e.to_string())?;
    pc.add_local_address(start, local, Protocol::Udp);
    let offer = browser.call(json!({"cmd": "createOffer"}))?;
    browser.call(json!({"cmd": "setLocalDescription", "desc": offer}))?;
    let offer: SessionDescription = serde_json::from_value(offer).map_err(|e| e.to_string())?;
    pc.set_remote_description(start, offer)
        .map_err(|e| e.to_string())?;
    let answer = pc.create_answer().map_err(|e| e.to_string())?;
    pc.set_local_description(start, answer.clone())
        .map_err(|e| e.to_string())?;
    browser.call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).map_err(|e| e.to_string())?}))?;
    let mut buf = vec![0u8; 2048];
    let (mut received, mut first) = (0usize, None::<Instant>);
    let deadline = Instant::now() + Duration::from_secs(120);
    while received < total {
        if Instant::now() > deadline {
            return Err(format!("timed out after {received} bytes"));
        }
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(2));
        while let Some(e) = pc.poll_event() {
            match e {
                Event::IceCandidate(c) => {
                    browser.call(json!({"cmd": "addIceCandidate", "candidate": serde_json::to_value(&c).map_err(|e| e.to_string())?}))?;
                }
                Event::DataChannelMessage { data, .. } => {
                    first.get_or_insert_with(Instant::now);
                    received += data.len();
                }
                Event::ConnectionStateChange(ConnectionState::Failed) => {
                    return Err("failed".into())
                }
                _ => {}
            }
        }
        while let Some(ev) = browser.next_event(Duration::from_millis(0)) {
            if ev.get("event").and_then(Value::as_str) == Some("icecandidate") {
                if let Some(c) = ev.get("candidate").filter(|c| !c.is_null()) {
                    let init: IceCandidateInit =
                        serde_json::from_value(c.clone()).map_err(|e| e.to_string())?;
                    pc.add_ice_candidate(Instant::now(), init)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    let secs = first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    Ok(received as f64 / 1e6 / secs)
}

fn chromium_to_chromium(total: usize) -> Result<f64, String> {
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium).map_err(|e| e.to_string())?;
    let v = browser
        .call(json!({"cmd": "eval", "js": PAGE_ANCHOR.replace("TOTAL", &total.to_string())}))?;
    v.as_f64().ok_or_else(|| format!("no figure: {v}"))
}

fn main() {
    println!("data channel throughput, 16 KiB ordered reliable messages, one way\n");
    for _ in 0..3 {
        println!(
            "sansrtc -> sansrtc, in memory (one core)   {:>8.1} MB/s",
            in_memory(200)
        );
    }
    let total = 64 * 1_000_000;
    match chromium_to_core(total) {
        Ok(mbps) => println!("Chromium -> sansrtc, loopback UDP         {mbps:>8.1} MB/s"),
        Err(e) => println!("Chromium -> sansrtc: skipped ({e})"),
    }
    match chromium_to_chromium(total) {
        Ok(mbps) => println!("Chromium -> Chromium (anchor), loopback   {mbps:>8.1} MB/s"),
        Err(e) => println!("Chromium -> Chromium: skipped ({e})"),
    }
}
