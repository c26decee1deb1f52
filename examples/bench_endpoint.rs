//! Printed benchmarks of the one-socket server (never asserted):
//! - RTP forwarding through the `Endpoint`: one publisher to N viewers (N = 1, 10, 100),
//!   1200-byte payloads, SRTP both ways, in memory on one core. Each received publisher
//!   packet is routed, unprotected and handed out as an event, then sent to every viewer
//!   (protected once per viewer); the viewers' transmits are taken into one buffer. The
//!   publisher's packets are made (and encrypted) before the clock starts.
//! - Memory per connected idle PeerConnection pair, from the process's RSS growth between
//!   200 and 1,200 connected pairs (both ends live in this process).
//!
//! `cargo run --release --example bench_endpoint`
#![allow(clippy::print_stdout)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::dtls::cert::Certificate;
use sansrtc::media::RtpPacket;
use sansrtc::{
    Config, ConnectionState, Datagram, Endpoint, Event, MediaKind, PeerConnection, PeerId,
    Protocol, TransceiverId,
};

const SERVER: ([u8; 4], u16) = ([10, 1, 0, 1], 4000);
const LATENCY: Duration = Duration::from_millis(1);

struct Client {
    pc: PeerConnection,
    addr: SocketAddr,
    server: PeerId,
    connected: bool,
}

/// A server Endpoint with `n` connected clients, the first of which publishes audio.
struct Setup {
    now: Instant,
    endpoint: Endpoint,
    clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, usize>,
    by_server: HashMap<PeerId, usize>,
}

fn config(seed: u64, cert: &Certificate) -> Config {
    Config {
        rng_seed: Some(seed),
        certificate: Some(cert.clone()),
        ..Default::default()
    }
}

fn connect(n: usize) -> Setup {
    let start = Instant::now();
    let server_addr = SocketAddr::from(SERVER);
    let client_cert = Certificate::generate().expect("cert");
    let server_cert = Certificate::generate().expect("cert");
    let mut s = Setup {
        now: start,
        endpoint: Endpoint::new(vec![(server_addr, Protocol::Udp)]),
        clients: Vec::with_capacity(n),
        by_addr: HashMap::new(),
        by_server: HashMap::new(),
    };
    for i in 0..n {
        let now = s.now;
        let addr: SocketAddr = format!("10.0.{}.{}:5000", i / 250, i % 250 + 1)
            .parse()
            .expect("addr");
        let mut pc = PeerConnection::new(config(i as u64 + 1, &client_cert), now).expect("pc");
        pc.add_local_address(now, addr, Protocol::Udp);
        if i == 0 {
            pc.add_track(MediaKind::Audio, vec!["publisher".into()])
                .expect("track");
        } else {
            pc.add_transceiver(
                MediaKind::Audio,
                sansrtc::TransceiverInit {
                    direction: sansrtc::Direction::RecvOnly,
                    ..Default::default()
                },
            )
            .expect("transceiver");
        }
        let offer = pc.create_offer(Default::default()).expect("offer");
        pc.set_local_description(now, offer.clone()).expect("local");
        let server_pc =
            PeerConnection::new(config(1_000_000 + i as u64, &server_cert), now).expect("pc");
        let id = s.endpoint.insert(now, server_pc);
        let answer = s
            .endpoint
            .with_peer(id, |p| {
                p.set_remote_description(now, offer)?;
                if i > 0 {
                    p.add_track(MediaKind::Audio, vec!["forwarded".into()])?;
                }
                let answer = p.create_answer()?;
                p.set_local_description(now, answer.clone())?;
                Ok::<_, sansrtc::peer::NegotiationError>(answer)
            })
            .expect("peer")
            .expect("answer");
        pc.set_remote_description(now, answer).expect("remote");
        s.by_addr.insert(addr, i);
        s.by_server.insert(id, i);
        s.clients.push(Client {
            pc,
            addr,
            server: id,
            connected: false,
        });
    }
    run_until_connected(&mut s);
    s
}

fn run_until_connected(s: &mut Setup) {
    let server_addr = SocketAddr::from(SERVER);
    let mut wire: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 2048];
    let mut server_connected = 0;
    let deadline = s.now + Duration::from_secs(120);
    while s.now < deadline {
        let now = s.now;
        for c in s.clients.iter_mut() {
            while let Some(t) = c.pc.poll_transmit(now, &mut buf) {
                seq += 1;
                wire.insert(
                    (now + LATENCY, seq),
                    (t.local, t.remote, buf[..t.len].to_vec()),
                );
            }
            while let Some(e) = c.pc.poll_event() {
                match e {
                    Event::IceCandidate(cand) => {
                        let _ = s
                            .endpoint
                            .with_peer(c.server, |p| p.add_ice_candidate(now, cand));
                    }
                    Event::ConnectionStateChange(ConnectionState::Connected) => c.connected = true,
                    _ => {}
                }
            }
        }
        while let Some((_, t)) = s.endpoint.poll_transmit(now, &mut buf) {
            seq += 1;
            wire.insert(
                (now + LATENCY, seq),
                (t.local, t.remote, buf[..t.len].to_vec()),
            );
        }
        while let Some((id, e)) = s.endpoint.poll_event() {
            match e {
                Event::IceCandidate(cand) => {
                    if let Some(&i) = s.by_server.get(&id) {
                        let _ = s.clients[i].pc.add_ice_candidate(now, cand);
                    }
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => server_connected += 1,
                _ => {}
            }
        }
        if server_connected == s.clients.len() && s.clients.iter().all(|c| c.connected) {
            return;
        }
        let next = s
            .clients
            .iter()
            .filter_map(|c| c.pc.poll_timeout())
            .chain(s.endpoint.poll_timeout())
            .chain(wire.keys().next().map(|k| k.0))
            .min();
        let Some(next) = next else { break };
        s.now = s.now.max(next);
        let now = s.now;
        while let Some(entry) = wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, to, data) = entry.remove();
            let d = Datagram {
                local: to,
                remote: from,
                protocol: Protocol::Udp,
                data: &data,
            };
            if to == server_addr {
                s.endpoint.handle_datagram(now, d);
            } else if let Some(&i) = s.by_addr.get(&to) {
                s.clients[i].pc.handle_datagram(now, d);
            }
        }
        for c in s.clients.iter_mut() {
            if c.pc.poll_timeout().is_some_and(|t| t <= now) {
                c.pc.handle_timeout(now);
            }
        }
        s.endpoint.handle_timeout(now);
    }
    panic!("not every peer connected");
}

fn forward(viewers: usize, packets: usize) {
    let mut s = connect(viewers + 1);
    let now = s.now;
    // The publisher's encrypted packets, made before the clock starts.
    let track = s.clients[0].pc.transceivers()[0].id;
    let publisher = s.clients[0].server;
    let mut buf = vec![0u8; 2048];
    while s.clients[0].pc.poll_transmit(now, &mut buf).is_some() {}
    let mut input = Vec::with_capacity(packets);
    for i in 0..packets {
        let packet = RtpPacket {
            payload_type: 111,
            sequence_number: i as u16,
            timestamp: (i as u32).wrapping_mul(960),
            marker: false,
            ssrc: 0,
            payload: Bytes::from(vec![0xab; 1200]),
        };
        s.clients[0].pc.send_rtp(track, &packet).expect("send");
        while let Some(t) = s.clients[0].pc.poll_transmit(now, &mut buf) {
            // RTP only (RTCP's second byte is 192-223, RFC 5761).
            if !(192..=223).contains(&buf[1]) {
                input.push(buf[..t.len].to_vec());
            }
        }
    }
    let targets: Vec<(PeerId, TransceiverId)> = s
        .clients
        .iter()
        .skip(1)
        .map(|c| {
            let t = s.endpoint.peer(c.server).expect("peer").transceivers()[0].id;
            (c.server, t)
        })
        .collect();
    let (from, to) = (s.clients[0].addr, SocketAddr::from(SERVER));
    let mut out = 0u64;
    let start = Instant::now();
    for data in &input {
        s.endpoint.handle_datagram(
            now,
            Datagram {
                local: to,
                remote: from,
                protocol: Protocol::Udp,
                data,
            },
        );
        while let Some((id, e)) = s.endpoint.poll_event() {
            if let (true, Event::Rtp { packet, .. }) = (id == publisher, e) {
                for (peer, t) in &targets {
                    s.endpoint.with_peer(*peer, |p| {
                        let _ = p.send_rtp(*t, &packet);
                    });
                }
            }
        }
        while s.endpoint.poll_transmit(now, &mut buf).is_some() {
            out += 1;
        }
    }
    let elapsed = start.elapsed();
    let secs = elapsed.as_secs_f64();
    println!(
        "forward 1 -> {viewers:<3} viewers  {:>9.0} packets in/s {:>10.0} packets out/s {:>7.0} ns per packet out ({out} sent)",
        input.len() as f64 / secs,
        out as f64 / secs,
        elapsed.as_nanos() as f64 / out.max(1) as f64
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn memory() {
    let small = connect(200);
    let rss_small = rss_kib();
    let large = connect(1200);
    let rss_large = rss_kib();
    let per_pair = (rss_large.saturating_sub(rss_small)) as f64 * 1024.0 / 1000.0;
    println!(
        "memory per connected idle pair (client + server PeerConnection): {:.1} KiB (RSS slope, 200 -> 1,200 pairs)",
        per_pair / 1024.0
    );
    drop((small, large));
}

fn main() {
    println!("sansrtc Endpoint benchmarks (in memory, one core, 1200-byte RTP payloads, AES-CM-HMAC-SHA1-80 by default)\n");
    for (viewers, packets) in [(1usize, 20_000usize), (10, 5_000), (100, 1_000)] {
        forward(viewers, packets);
    }
    memory();
}
