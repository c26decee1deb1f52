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

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{Datagram, Event, PeerId, Protocol, TransceiverId};

use sansrtc_tests::endpoint_setup::{connect, SERVER};

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
