//! `GET /stats` shows sessions released when their clients close: several core
//! PeerConnection clients (the thread-free game-loop `Driver`, over loopback) open
//! sessions on `echo` (`POST /api/offer`, with a data channel) and on `whip_whep` (one
//! WHIP publisher, WHEP viewers), close them from the client side (`close()` sends the
//! goodbyes; the examples end a session on `Event::RemoteClosed`), and `/stats` is polled
//! until the live sessions, drivers, tasks, threads, sockets, queued items and HTTP
//! connections are back to their values before the clients came (clients' own drivers
//! included: they run in this process too). Every runtime; the time it took is printed.
//! The tests share the process-wide counts, so they take turns.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sansrtc::sdp::SdpType;
use sansrtc::{Config, ConnectionState, DataChannelInit, Event, MediaKind, SessionDescription};
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::{echo, whip_whep};
use sansrtc_std::{Driver, NetConfig};
use serde_json::Value;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SESSIONS: usize = 4;

mod common;

static SERIAL: Mutex<()> = Mutex::new(());

/// One request; the status, the `Location` header and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    ct: &str,
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let reply = common::read_reply(&mut s);
    let location = reply.header("location").unwrap_or_default().to_string();
    (reply.status, location, reply.body)
}

fn stats(addr: SocketAddr) -> Value {
    let (status, _, body) = request(addr, "GET", "/stats", "text/plain", b"");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// What must come back: every live count of `/stats` (not the cumulative totals).
fn live(stats: &Value) -> Vec<(String, Value)> {
    let r = &stats["runtime"];
    let mut out = vec![
        ("drivers".to_string(), r["drivers"].clone()),
        ("http connections".to_string(), stats["http"].clone()),
    ];
    for key in [
        "driver_tasks",
        "driver_threads",
        "turn_stream_threads",
        "udp_sockets",
        "turn_streams",
        "commands_queued",
        "events_queued",
    ] {
        out.push((key.to_string(), r[key].clone()));
    }
    let e = &stats["example"];
    for key in ["sessions_live", "endpoint_peers"] {
        out.push((key.to_string(), e[key].clone()));
    }
    out
}

/// A client: a core on the game-loop driver, its whole offer (host candidates in it)
/// sent at once.
struct Client {
    driver: Driver,
    up: bool,
}

impl Client {
    fn offer(data_channel: bool) -> (Client, SessionDescription) {
        let now = Instant::now();
        let mut driver =
            Driver::new(Config::default(), &NetConfig::loopback(), now).expect("driver");
        let pc = driver.core();
        pc.add_track(MediaKind::Audio, vec!["c".into()])
            .expect("track");
        if data_channel {
            pc.create_data_channel(now, "echo", DataChannelInit::default())
                .expect("channel");
        }
        let offer = pc.create_offer(Default::default()).expect("offer");
        pc.set_local_description(now, offer).expect("local");
        let offer = pc.local_description().expect("offer with candidates");
        (Client { driver, up: false }, offer)
    }

    fn answered(mut self, sdp: String) -> Client {
        let answer = SessionDescription {
            kind: SdpType::Answer,
            sdp,
        };
        self.driver
            .core()
            .set_remote_description(Instant::now(), answer)
            .expect("answer");
        self
    }

    /// One frame; `up` once connected (and, with a data channel, once it is open, so that
    /// the goodbye includes SCTP's).
    fn frame(&mut self, data_channel: bool) {
        let events: Vec<Event> = self.driver.poll(Instant::now()).collect();
        for event in events {
            match event {
                Event::ConnectionStateChange(ConnectionState::Connected) if !data_channel => {
                    self.up = true
                }
                Event::DataChannelOpen(_) if data_channel => self.up = true,
                _ => {}
            }
        }
    }
}

fn run_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let begun = Instant::now();
    while !done() {
        assert!(begun.elapsed() < limit, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connect `clients`, close them from their side, and wait for `/stats` to show what it
/// showed before.
fn connect_close_and_wait(
    addr: SocketAddr,
    mut clients: Vec<Client>,
    data_channel: bool,
    label: &str,
    start: &Value,
) {
    run_until("every client connected", Duration::from_secs(30), || {
        for c in clients.iter_mut() {
            c.frame(data_channel);
        }
        clients.iter().all(|c| c.up)
    });
    let during = stats(addr);
    assert_eq!(
        during["example"]["sessions_live"].as_u64(),
        start["example"]["sessions_live"]
            .as_u64()
            .map(|n| n + SESSIONS as u64),
        "{during}"
    );
    assert!(
        during["runtime"]["drivers"]["total"].as_u64()
            > start["runtime"]["drivers"]["total"].as_u64(),
        "the clients' drivers at least: {during}"
    );
    assert!(
        during["runtime"]["udp_sockets"].as_u64() > start["runtime"]["udp_sockets"].as_u64(),
        "{during}"
    );
    // Close: the goodbyes leave on the next frames, then the clients go.
    let now = Instant::now();
    let closed = now;
    for c in clients.iter_mut() {
        c.driver.core().close(now);
    }
    for _ in 0..5 {
        for c in clients.iter_mut() {
            c.frame(data_channel);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(clients);
    let expected = live(start);
    let mut last = stats(addr);
    while live(&last) != expected {
        assert!(
            closed.elapsed() < Duration::from_secs(10),
            "{label}: not back to the start after 10 s:\n now   {:?}\n start {:?}",
            live(&last),
            expected
        );
        std::thread::sleep(Duration::from_millis(10));
        last = stats(addr);
    }
    // The totals keep what the ended drivers counted.
    let total = |s: &Value| s["runtime"]["totals"]["datagrams_received"].as_u64();
    assert!(total(&last) > total(start), "{last}");
    eprintln!(
        "{label}: {SESSIONS} sessions closed by their clients, /stats back to the start {:?} after their close()",
        closed.elapsed()
    );
}

fn echo_sessions_are_released(kind: RuntimeKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::new(kind).expect("runtime");
    let addr = echo::start(
        SocketAddr::new(LOOPBACK, 0),
        rt,
        media_options_for(LOOPBACK),
    )
    .expect("server");
    let start = stats(addr);
    assert_eq!(start["example"]["sessions_live"], 0, "{start}");
    let clients = (0..SESSIONS)
        .map(|_| {
            let (client, offer) = Client::offer(true);
            let json = serde_json::to_string(&offer).expect("json");
            let (status, _, body) = request(
                addr,
                "POST",
                "/api/offer",
                "application/json",
                json.as_bytes(),
            );
            assert_eq!(status, 200, "{body}");
            let answer: SessionDescription = serde_json::from_str(&body).expect("answer");
            client.answered(answer.sdp)
        })
        .collect();
    connect_close_and_wait(addr, clients, true, &format!("echo on {kind}"), &start);
}

fn whip_whep_sessions_are_released(kind: RuntimeKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::new(kind).expect("runtime");
    let running = whip_whep::start(
        SocketAddr::new(LOOPBACK, 0),
        &rt,
        media_options_for(LOOPBACK),
    )
    .expect("server");
    let addr = running.addr;
    let start = stats(addr);
    assert_eq!(start["example"]["endpoint_peers"], 0, "{start}");
    let clients = (0..SESSIONS)
        .map(|i| {
            let (client, offer) = Client::offer(false);
            let endpoint = if i == 0 { "/whip" } else { "/whep" };
            let (status, location, body) = request(
                addr,
                "POST",
                endpoint,
                "application/sdp",
                offer.sdp.as_bytes(),
            );
            assert_eq!(status, 201, "{body}");
            assert!(!location.is_empty());
            client.answered(body)
        })
        .collect();
    connect_close_and_wait(
        addr,
        clients,
        false,
        &format!("whip_whep on {kind}"),
        &start,
    );
    let after = stats(addr);
    assert_eq!(
        after["example"]["sessions_closed_by_peer"], SESSIONS as u64,
        "released by the clients' goodbyes, not by consent expiry: {after}"
    );
}

#[test]
fn echo_on_tokio() {
    echo_sessions_are_released(RuntimeKind::Tokio);
}

#[test]
fn echo_on_smol() {
    echo_sessions_are_released(RuntimeKind::Smol);
}

#[test]
fn echo_on_std() {
    echo_sessions_are_released(RuntimeKind::Std);
}

#[test]
fn whip_whep_on_tokio() {
    whip_whep_sessions_are_released(RuntimeKind::Tokio);
}

#[test]
fn whip_whep_on_smol() {
    whip_whep_sessions_are_released(RuntimeKind::Smol);
}

#[test]
fn whip_whep_on_std() {
    whip_whep_sessions_are_released(RuntimeKind::Std);
}
