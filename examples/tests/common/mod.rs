//! What the hostile-input tests of the examples share: a raw HTTP client that can bind
//! its own loopback address (127.0.0.2 plays the attacker, 127.0.0.1 the honest
//! client), a minimal WebSocket client, a sansrtc core peer on the thread-free
//! game-loop driver, and the process's memory.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::sdp::SdpType;
use sansrtc::{ChannelId, Config, ConnectionState, Event, SessionDescription};
use sansrtc_std::{Driver, NetConfig};

/// The honest client's address (and the servers').
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The attacker's address: another loopback address, so that per-address limits apply
/// to it and not to the honest client.
pub const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A TCP connection to `addr` from `from` (any port).
pub fn connect_from(from: IpAddr, addr: SocketAddr) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(from, 0).into())
        .expect("bind the client address");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status (0: the connection closed without one).
    pub status: u16,
    /// The headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read a whole response (the server closes after each).
pub fn read_reply(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

/// One request from 127.0.0.1 with these extra headers.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    request_from(LOOPBACK, addr, method, path, headers, body)
}

/// One request from `from`.
pub fn request_from(
    from: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = connect_from(from, addr);
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    // The server may answer before reading a large body: ignore a reset here.
    let _ = s.write_all(body);
    read_reply(&mut s)
}

/// Poll `step` every 5 ms until it returns true; fail after `limit`.
pub fn run_until(what: &str, limit: Duration, mut step: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !step() {
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A sansrtc core peer on the game-loop driver, with what it has seen.
pub struct Peer {
    /// The driver (its core is the PeerConnection).
    pub driver: Driver,
    /// Connected at least once.
    pub connected: bool,
    /// RTP packets received.
    pub rtp: u64,
    /// Data channels open.
    pub open: Vec<ChannelId>,
    /// Data channel messages received.
    pub messages: Vec<Bytes>,
}

impl Peer {
    /// A new peer on 127.0.0.1.
    pub fn new() -> Peer {
        Peer::with_config(Config::default())
    }

    /// With a configuration.
    pub fn with_config(config: Config) -> Peer {
        let driver = Driver::new(config, &NetConfig::loopback(), Instant::now()).expect("driver");
        Peer {
            driver,
            connected: false,
            rtp: 0,
            open: Vec::new(),
            messages: Vec::new(),
        }
    }

    /// Create and apply an offer; the returned one carries the host candidates.
    pub fn offer(&mut self) -> SessionDescription {
        let now = Instant::now();
        let pc = self.driver.core();
        let offer = pc.create_offer(Default::default()).expect("offer");
        pc.set_local_description(now, offer).expect("local");
        pc.local_description().expect("offer with candidates")
    }

    /// Apply the remote answer.
    pub fn answer(&mut self, sdp: String) {
        self.driver
            .core()
            .set_remote_description(
                Instant::now(),
                SessionDescription {
                    kind: SdpType::Answer,
                    sdp,
                },
            )
            .expect("answer");
    }

    /// One frame: read, time, send; count what arrived.
    pub fn frame(&mut self) {
        let events: Vec<Event> = self.driver.poll(Instant::now()).collect();
        for event in events {
            match event {
                Event::ConnectionStateChange(ConnectionState::Connected) => self.connected = true,
                Event::Rtp { .. } => self.rtp += 1,
                Event::DataChannelOpen(c) => self.open.push(c),
                Event::DataChannelMessage { data, .. } if self.messages.len() < 100_000 => {
                    self.messages.push(data);
                }
                _ => {}
            }
        }
    }

    /// POST our offer to a WHIP/WHEP endpoint; on 201 apply the answer and return the
    /// resource URL.
    pub fn whip(
        &mut self,
        addr: SocketAddr,
        endpoint: &str,
        token: Option<&str>,
    ) -> Result<String, Reply> {
        let offer = self.offer();
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/sdp")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let reply = request(addr, "POST", endpoint, &headers, offer.sdp.as_bytes());
        if reply.status != 201 {
            return Err(reply);
        }
        let resource = reply.header("Location").expect("Location").to_string();
        self.answer(reply.body);
        Ok(resource)
    }
}

impl Default for Peer {
    fn default() -> Self {
        Peer::new()
    }
}

/// Frame peers until `done` holds for them; fail after `limit`.
pub fn frame_until(
    what: &str,
    limit: Duration,
    peers: &mut [&mut Peer],
    mut done: impl FnMut(&[&mut Peer]) -> bool,
) {
    run_until(what, limit, || {
        for p in peers.iter_mut() {
            p.frame();
        }
        done(peers)
    });
}

/// A minimal WebSocket client: text messages in and out, a reader thread.
pub struct WsClient {
    stream: TcpStream,
    incoming: Receiver<String>,
}

/// What opening a WebSocket gave.
pub enum Upgrade {
    /// Open.
    Open(WsClient),
    /// Refused with this status (0: closed without one).
    Refused(u16),
}

impl WsClient {
    /// `GET /ws` from `from`, with an `Origin` header if given.
    pub fn connect(from: IpAddr, addr: SocketAddr, origin: Option<&str>) -> Upgrade {
        let mut s = connect_from(from, addr);
        let mut head = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(origin) = origin {
            head.push_str(&format!("Origin: {origin}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("write");
        // The response head, byte by byte (frames may follow it).
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => raw.push(byte[0]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        let status: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            return Upgrade::Refused(status);
        }
        let (tx, incoming) = mpsc::channel();
        let mut reader = s.try_clone().expect("clone");
        reader.set_read_timeout(None).expect("timeout");
        std::thread::spawn(move || {
            while let Some(text) = read_frame(&mut reader) {
                if tx.send(text).is_err() {
                    return;
                }
            }
        });
        Upgrade::Open(WsClient {
            stream: s,
            incoming,
        })
    }

    /// Send a (masked) text message.
    pub fn send(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 65_535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let _ = self.stream.write_all(&frame);
    }

    /// The next text message within `timeout`: `Ok(None)` if none came, `Err(())` once
    /// the server closed the connection.
    pub fn recv(&self, timeout: Duration) -> Result<Option<String>, ()> {
        match self.incoming.recv_timeout(timeout) {
            Ok(text) => Ok(Some(text)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
        }
    }
}

/// The next text frame's payload (`None` at a close frame or the end).
fn read_frame(s: &mut TcpStream) -> Option<String> {
    loop {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).ok()?;
        let len = match head[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).ok()?;
                usize::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).ok()?;
                usize::try_from(u64::from_be_bytes(b)).ok()?
            }
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).ok()?;
        match head[0] & 0x0f {
            0x8 => return None,
            0x1 => return String::from_utf8(payload).ok(),
            _ => {}
        }
    }
}

/// Offer over a WebSocket session and apply the answer (the answer carries the
/// server's candidates; ours are in the offer).
pub fn ws_negotiate(ws: &mut WsClient, peer: &mut Peer) {
    let offer = peer.offer();
    ws.send(&serde_json::to_string(&offer).expect("json"));
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < end, "no answer on the WebSocket");
        let Ok(Some(text)) = ws.recv(Duration::from_millis(100)) else {
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        match value.get("type").and_then(|t| t.as_str()) {
            Some("answer") => {
                let sdp = value
                    .get("sdp")
                    .and_then(|s| s.as_str())
                    .expect("sdp")
                    .to_string();
                peer.answer(sdp);
                return;
            }
            Some("error") => panic!("the server refused the offer: {text}"),
            _ => {}
        }
    }
}

/// The process's resident memory in KiB (from /proc/self/statm).
pub fn rss_kib() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    pages * 4
}
