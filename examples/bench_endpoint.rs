//! Printed benchmarks of the one-socket server (never asserted):
//! - RTP forwarding through the `Endpoint`: one publisher to N viewers (N = 1, 10, 100),
//!   1200-byte payloads, SRTP both ways, in memory on one core. Each received publisher
//!   packet is routed, unprotected and handed out as an event, then sent to every viewer
//!   (protected once per viewer); the viewers' transmits are taken into one buffer. The
//!   publisher's packets are made (and encrypted) before the clock starts.
//! - Memory per connected idle PeerConnection pair, from the process's RSS growth between
//!   200 and 1,200 connected pairs (both ends live in this process).
//!
//! `cargo run --release --example bench_endpoint [-- forward --viewers N --packets N]`
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{Datagram, Endpoint, Event, PeerId, Protocol, TransceiverId};

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
    let start = Instant::now();
    let out = forward_loop(
        &mut s.endpoint,
        now,
        (to, from),
        publisher,
        &targets,
        &input,
    );
    let elapsed = start.elapsed();
    let secs = elapsed.as_secs_f64();
    println!(
        "forward 1 -> {viewers:<3} viewers  {:>9.0} packets in/s {:>10.0} packets out/s {:>7.0} ns per packet out ({out} sent)",
        input.len() as f64 / secs,
        out as f64 / secs,
        elapsed.as_nanos() as f64 / out.max(1) as f64
    );
}

/// The timed part of `forward`, never inlined so that `valgrind --tool=callgrind
/// --toggle-collect=bench_endpoint::forward_loop` counts it alone. Returns packets sent.
#[inline(never)]
fn forward_loop(
    endpoint: &mut Endpoint,
    now: Instant,
    (to, from): (SocketAddr, SocketAddr),
    publisher: PeerId,
    targets: &[(PeerId, TransceiverId)],
    input: &[Vec<u8>],
) -> u64 {
    let mut buf = vec![0u8; 2048];
    let mut out = 0u64;
    for data in input {
        endpoint.handle_datagram(
            now,
            Datagram {
                local: to,
                remote: from,
                protocol: Protocol::Udp,
                data,
            },
        );
        while let Some((id, e)) = endpoint.poll_event() {
            if let (true, Event::Rtp { packet, .. }) = (id == publisher, e) {
                for (peer, t) in targets {
                    endpoint.with_peer(*peer, |p| {
                        let _ = p.send_rtp(*t, &packet);
                    });
                }
            }
        }
        while endpoint.poll_transmit(now, &mut buf).is_some() {
            out += 1;
        }
    }
    out
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

/// `bench_endpoint [forward] [memory] [--viewers N --packets N]`: the parts named (both by
/// default); `--viewers` and `--packets` run one forwarding row (for profiling under
/// `valgrind --tool=callgrind`).
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|n| n.parse::<usize>().ok())
    };
    let named = |part: &str| args.iter().any(|a| a == part);
    let all = !named("forward") && !named("memory");
    println!("sansrtc Endpoint benchmarks (in memory, one core, 1200-byte RTP payloads, AEAD-AES-128-GCM: both ends offer it first by default)\n");
    if all || named("forward") {
        let rows = match number("--viewers") {
            Some(v) => vec![(v, number("--packets").unwrap_or(1_000))],
            None => vec![(1usize, 20_000usize), (10, 5_000), (100, 1_000)],
        };
        for (viewers, packets) in rows {
            forward(viewers, packets);
        }
    }
    if all || named("memory") {
        memory();
    }
}
