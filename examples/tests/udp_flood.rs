//! A datagram flood at a connected `whip_whep` (issue 13's flood test), with real
//! sockets on loopback: one publisher and one viewer (in-process sansrtc cores) while
//! one thread sends, as fast as one core can, garbage, replays of the publisher's own
//! datagrams from other addresses, and spoofed-looking STUN (the server's ufrag, bogus
//! integrity), DTLS (handshakes, alerts) and RTP/RTCP to the server's media socket.
//! Media keeps flowing from the publisher to the viewer, the server keeps answering,
//! and the process's memory (RSS from /proc/self/statm, printed) stays flat.

mod common;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{request, rss_kib, run_until, Peer, LOOPBACK};
use sansrtc::media::RtpPacket;
use sansrtc::sdp::SdpType;
use sansrtc::{
    Config, ConnectionState, Datagram, Event, MediaKind, PeerConnection, Protocol,
    SessionDescription, Transmit,
};
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::whip_whep;
use sansrtc_std::{Core, Driver};

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(3);
/// Publisher datagrams kept for replay.
const RECORDED: usize = 256;

type Recorded = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// A PeerConnection whose every sent datagram is also recorded (for the replays).
struct Recording {
    pc: PeerConnection,
    sent: Recorded,
}

impl Core for Recording {
    type Event = Event;
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        self.pc.handle_datagram(now, datagram)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.pc.handle_timeout(now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let t = self.pc.poll_transmit(now, buf)?;
        if let Some(bytes) = buf.get(..t.len) {
            let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
            if sent.len() >= RECORDED {
                sent.pop_front();
            }
            sent.push_back(bytes.to_vec());
        }
        Some(t)
    }
    fn poll_event(&mut self) -> Option<Event> {
        self.pc.poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.pc.poll_timeout()
    }
    fn close(&mut self, now: Instant) {
        self.pc.close(now)
    }
    fn is_media(event: &Event) -> bool {
        matches!(event, Event::Rtp { .. } | Event::Rtcp(_))
    }
}

/// A small fast generator for the attacker's bytes (not for anything secret).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(v.get(..chunk.len()).unwrap_or_default());
        }
    }
}

/// The first host candidate's address and the ICE ufrag of an SDP.
fn server_media(sdp: &str) -> (SocketAddr, String) {
    let candidate = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=candidate:"))
        .expect("a candidate in the answer");
    let fields: Vec<&str> = candidate.split_whitespace().collect();
    let ip: IpAddr = fields.get(4).and_then(|v| v.parse().ok()).expect("ip");
    let port: u16 = fields.get(5).and_then(|v| v.parse().ok()).expect("port");
    let ufrag = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("ufrag")
        .trim()
        .to_string();
    (SocketAddr::new(ip, port), ufrag)
}

/// One attacker datagram of kind `n % 6` into `buf`; returns its length.
fn forge(
    n: u64,
    rng: &mut XorShift,
    ufrag: &str,
    recorded: &Recorded,
    buf: &mut [u8; 1500],
) -> usize {
    match n % 6 {
        // Garbage of any length.
        0 => {
            let len = 1 + (rng.next() % 1200) as usize;
            rng.fill(&mut buf[..len]);
            len
        }
        // A replay of something the publisher sent (DTLS, SRTP, STUN).
        1 => {
            let sent = recorded.lock().unwrap_or_else(|e| e.into_inner());
            let Some(d) = sent
                .get((rng.next() % RECORDED as u64) as usize)
                .or(sent.front())
            else {
                return 0;
            };
            let len = d.len().min(buf.len());
            buf[..len].copy_from_slice(&d[..len]);
            len
        }
        // A STUN binding request for the server's ufrag with bogus integrity.
        2 => {
            let username = format!("{ufrag}:{:08x}", rng.next() as u32);
            let padded = username.len().div_ceil(4) * 4;
            let attrs = 4 + padded + 4 + 20 + 4 + 4;
            buf[0..2].copy_from_slice(&[0x00, 0x01]);
            buf[2..4].copy_from_slice(&(attrs as u16).to_be_bytes());
            buf[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            rng.fill(&mut buf[8..20]);
            let mut at = 20;
            buf[at..at + 2].copy_from_slice(&[0x00, 0x06]);
            buf[at + 2..at + 4].copy_from_slice(&(username.len() as u16).to_be_bytes());
            buf[at + 4..at + 4 + username.len()].copy_from_slice(username.as_bytes());
            buf[at + 4 + username.len()..at + 4 + padded].fill(0);
            at += 4 + padded;
            buf[at..at + 4].copy_from_slice(&[0x00, 0x08, 0x00, 0x14]);
            rng.fill(&mut buf[at + 4..at + 24]);
            at += 24;
            buf[at..at + 4].copy_from_slice(&[0x80, 0x28, 0x00, 0x04]);
            rng.fill(&mut buf[at + 4..at + 8]);
            at + 8
        }
        // DTLS 1.2 records: a ClientHello-looking handshake or a plaintext alert.
        3 => {
            let body = if rng.next() & 1 == 0 {
                2
            } else {
                12 + (rng.next() % 200) as usize
            };
            buf[0] = if body == 2 { 0x15 } else { 0x16 };
            buf[1..3].copy_from_slice(&[0xfe, 0xfd]);
            rng.fill(&mut buf[3..11]);
            buf[3..5].copy_from_slice(&[0, (rng.next() % 2) as u8]);
            buf[11..13].copy_from_slice(&(body as u16).to_be_bytes());
            rng.fill(&mut buf[13..13 + body]);
            if body == 2 {
                buf[13..15].copy_from_slice(&[2, 0]); // fatal close_notify... or so it says
            } else {
                buf[13] = 1; // ClientHello
            }
            13 + body
        }
        // RTP with random SSRCs and payloads.
        4 => {
            let len = 12 + (rng.next() % 1000) as usize;
            rng.fill(&mut buf[..len]);
            buf[0] = 0x80;
            buf[1] = 96 | (buf[1] & 0x80);
            len
        }
        // RTCP-looking (sender reports, PLIs) that no key protects.
        _ => {
            let len = 8 + (rng.next() % 100) as usize * 4;
            rng.fill(&mut buf[..len]);
            buf[0] = 0x81;
            buf[1] = [200u8, 201, 206][(rng.next() % 3) as usize];
            len
        }
    }
}

#[test]
fn whip_whep_survives_a_datagram_flood() {
    let rt = Runtime::new(RuntimeKind::Tokio).expect("runtime");
    let running = whip_whep::start(
        SocketAddr::new(LOOPBACK, 0),
        &rt,
        media_options_for(LOOPBACK),
    )
    .expect("server");
    let addr = running.addr;

    // The publisher, recorded.
    let recorded: Recorded = Arc::default();
    let socket = UdpSocket::bind(SocketAddr::new(LOOPBACK, 0)).expect("bind");
    socket.set_nonblocking(true).expect("nonblocking");
    let local = socket.local_addr().expect("addr");
    let now = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), now).expect("pc");
    pc.add_local_address(now, local, Protocol::Udp);
    let video = pc
        .add_track(MediaKind::Video, vec!["p".into()])
        .expect("track");
    let offer = pc.create_offer(Default::default()).expect("offer");
    pc.set_local_description(now, offer).expect("local");
    let offer = pc.local_description().expect("offer");
    let mut publisher = Driver::with_core(
        Recording {
            pc,
            sent: recorded.clone(),
        },
        vec![socket],
        vec![local],
    );
    let r = request(
        addr,
        "POST",
        "/whip",
        &[("Content-Type", "application/sdp")],
        offer.sdp.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let (target, ufrag) = server_media(&r.body);
    publisher
        .core()
        .pc
        .set_remote_description(
            Instant::now(),
            SessionDescription {
                kind: SdpType::Answer,
                sdp: r.body,
            },
        )
        .expect("answer");
    let mut viewer = Peer::new();
    viewer
        .driver
        .core()
        .add_transceiver(MediaKind::Video, Default::default())
        .expect("transceiver");
    viewer.whip(addr, "/whep", None).expect("viewer");

    let mut seq = 0u16;
    let mut last_sent = Instant::now();
    let mut step = |publisher: &mut Driver<Recording>, viewer: &mut Peer| {
        // About 200 packets a second from the publisher.
        if last_sent.elapsed() >= Duration::from_millis(5) {
            last_sent = Instant::now();
            seq = seq.wrapping_add(1);
            let packet = RtpPacket {
                payload_type: 96,
                sequence_number: seq,
                timestamp: u32::from(seq) * 3000,
                marker: true,
                ssrc: 0,
                payload: Bytes::from_static(&[0x10, 0, 0, 0x9d, 0x01, 0x2a, 7, 7, 7, 7]),
            };
            let _ = publisher.core().pc.send_rtp(video, &packet);
        }
        let _ = publisher.poll(Instant::now()).count();
        viewer.frame();
    };
    run_until(
        "media flowing before the flood",
        Duration::from_secs(20),
        || {
            step(&mut publisher, &mut viewer);
            viewer.rtp > 50
        },
    );
    let baseline = rss_kib();
    eprintln!("before the flood: RSS {baseline} KiB");

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        let recorded = recorded.clone();
        std::thread::spawn(move || {
            // Several source addresses and ports, the publisher's own address among them.
            let sources: Vec<UdpSocket> = [1u8, 2, 3, 7]
                .iter()
                .flat_map(|last| {
                    (0..2).map(move |_| {
                        UdpSocket::bind(SocketAddr::new(
                            IpAddr::V4(Ipv4Addr::new(127, 0, 0, *last)),
                            0,
                        ))
                        .expect("bind attacker")
                    })
                })
                .collect();
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            let mut buf = [0u8; 1500];
            let mut sent = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let len = forge(n, &mut rng, &ufrag, &recorded, &mut buf);
                let from = &sources[(n as usize / 6) % sources.len()];
                if from.send_to(&buf[..len], target).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    let started = Instant::now();
    let before = viewer.rtp;
    let mut samples = Vec::new();
    let mut next_sample = started;
    while started.elapsed() < FLOOD {
        step(&mut publisher, &mut viewer);
        if Instant::now() >= next_sample {
            next_sample += Duration::from_millis(500);
            samples.push(rss_kib());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = attacker.join().expect("attacker");
    let during = viewer.rtp - before;
    let after = rss_kib();
    eprintln!(
        "flood: {sent} datagrams in {FLOOD:?} ({:.0}/s); viewer got {during} packets meanwhile; \
         RSS samples {samples:?} KiB, after {after} KiB (baseline {baseline} KiB)",
        sent as f64 / FLOOD.as_secs_f64()
    );
    assert!(sent > 10_000, "the flood was sent: {sent}");
    // About 600 were sent meanwhile (fewer on a loaded machine): a good share arrives.
    assert!(
        during > 100,
        "media kept flowing during the flood: {during}"
    );
    let peak = samples.iter().copied().chain([after]).max().unwrap_or(0);
    assert!(
        peak < baseline + 64 * 1024,
        "memory stays flat: peak {peak} KiB vs baseline {baseline} KiB"
    );
    // Both sessions survive and the server answers.
    assert_eq!(
        publisher.core().pc.connection_state(),
        ConnectionState::Connected
    );
    assert_eq!(
        viewer.driver.core().connection_state(),
        ConnectionState::Connected
    );
    let more = viewer.rtp;
    run_until("media after the flood", Duration::from_secs(10), || {
        step(&mut publisher, &mut viewer);
        viewer.rtp > more + 50
    });
    assert_eq!(running.broadcast.endpoint_peers(), 2);
    assert_eq!(running.broadcast.sessions(), 2);
}
