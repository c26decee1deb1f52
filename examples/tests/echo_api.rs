//! The `echo` example's `POST /api/offer` for scripts, with a sansrtc core as the client
//! (no browser, no trickle): the JSON answer carries the server's candidates in its SDP,
//! the client connects with nothing else, and the RTP it sends and a data channel
//! message come back. Bad requests get 4xx with a message.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{Config, ConnectionState, DataChannelInit, Event, MediaKind, SessionDescription};
use sansrtc_examples::echo;
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_std::{Driver, NetConfig};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

#[test]
fn api_offer_answers_with_candidates_and_echoes() {
    let rt = Runtime::new(RuntimeKind::Std).expect("runtime");
    let addr = echo::start(
        SocketAddr::new(LOOPBACK, 0),
        rt,
        media_options_for(LOOPBACK),
    )
    .expect("server");

    // Bad requests first: the server answers clearly and keeps serving.
    assert_eq!(post(addr, "/api/offer", "text/plain", b"{}").0, 415);
    let (status, message) = post(
        addr,
        "/api/offer",
        "application/json",
        b"{\"type\":\"offer\"",
    );
    assert_eq!(status, 400, "{message}");
    let (status, message) = post(
        addr,
        "/api/offer",
        "application/json",
        b"{\"type\":\"offer\",\"sdp\":\"v=0\"}",
    );
    assert_eq!(status, 400, "{message}");

    let now = Instant::now();
    let mut client = Driver::new(Config::default(), &NetConfig::loopback(), now).expect("driver");
    let pc = client.core();
    let track = pc
        .add_track(MediaKind::Audio, vec!["me".into()])
        .expect("track");
    let channel = pc
        .create_data_channel(now, "echo", DataChannelInit::default())
        .expect("channel");
    let offer = pc.create_offer(Default::default()).expect("offer");
    pc.set_local_description(now, offer.clone()).expect("local");
    // The whole offer, candidates included (gathering of host candidates is immediate).
    let offer = pc.local_description().expect("offer with candidates");
    let (status, body) = post(
        addr,
        "/api/offer",
        "application/json",
        serde_json::to_string(&offer).expect("json").as_bytes(),
    );
    assert_eq!(status, 200, "{body}");
    let answer: SessionDescription =
        serde_json::from_str(&body).expect("RTCSessionDescriptionInit");
    assert!(
        answer.sdp.contains("a=candidate:"),
        "candidates inside the answer: {}",
        answer.sdp
    );
    client
        .core()
        .set_remote_description(Instant::now(), answer)
        .expect("answer");

    let (mut connected, mut open, mut sent) = (false, false, false);
    let (mut echoed_rtp, mut echoed_text) = (0, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while echoed_rtp < 5 || echoed_text.is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out: connected {connected}, open {open}, rtp {echoed_rtp}"
        );
        let now = Instant::now();
        let events: Vec<Event> = client.poll(now).collect();
        for event in events {
            match event {
                Event::ConnectionStateChange(ConnectionState::Connected) => connected = true,
                Event::DataChannelOpen(c) if c == channel => open = true,
                Event::Rtp { packet, .. } if &packet.payload[..] == b"ping" => echoed_rtp += 1,
                Event::DataChannelMessage { data, .. } => echoed_text = Some(data),
                _ => {}
            }
        }
        if connected && open && !sent {
            sent = true;
            let pc = client.core();
            for seq in 0..20u16 {
                let packet = RtpPacket {
                    payload_type: 111,
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 960,
                    marker: false,
                    ssrc: 0,
                    payload: Bytes::from_static(b"ping"),
                };
                pc.send_rtp(track, &packet).expect("send");
            }
            pc.send_text(now, channel, "hello echo").expect("text");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(echoed_text.as_deref(), Some(&b"hello echo"[..]));
}
