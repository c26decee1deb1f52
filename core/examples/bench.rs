//! Printed benchmarks (never asserted): SRTP protect and unprotect of 1200-byte RTP packets
//! per profile against ring's bare AES-128-GCM seal of the same size, and the CPU time of a
//! DTLS 1.2 handshake between two cores in memory, and data channel throughput (16 KiB
//! ordered reliable messages) between two in-memory `DataChannels` layers.
//!
//! `cargo run --release -p sansrtc --example bench`
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use sansrtc::datachannel::{DataChannelEvent, DataChannelInit, DataChannels, RemoteSctpParams};
use sansrtc::dtls::cert::Certificate;
use sansrtc::dtls::{DtlsConfig, DtlsEndpoint, DtlsEvent, DtlsRole};
use sansrtc::rng::Rng;
use sansrtc::sctp::SctpConfig;
use sansrtc::srtp::{SrtpContext, SrtpProfile};

const PACKET: usize = 1200;
const ROUNDS: u32 = 200_000;

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; PACKET + 32];
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p
}

fn report(name: &str, n: u32, elapsed: Duration) {
    let pps = f64::from(n) / elapsed.as_secs_f64();
    let gbps = pps * (PACKET as f64) * 8.0 / 1e9;
    println!(
        "{name:<44} {:>10.0} packets/s {:>7.2} Gbit/s {:>8.0} ns/packet",
        pps,
        gbps,
        1e9 / pps
    );
}

fn bench_srtp(profile: SrtpProfile) {
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| i as u8)
        .collect();
    let (mut tx, _) =
        SrtpContext::pair_from_keying_material(profile, &material, true).expect("keys");
    let (_, mut rx) =
        SrtpContext::pair_from_keying_material(profile, &material, false).expect("keys");
    // Pre-protect a window of packets so unprotect measures only unprotect.
    let mut sealed: Vec<(Vec<u8>, usize)> = (0..ROUNDS).map(|i| (packet(i as u16), 0)).collect();
    let start = Instant::now();
    for (p, n) in &mut sealed {
        *n = tx.protect_rtp(p, PACKET).expect("protect");
    }
    report(
        &format!("SRTP protect   {profile:?}"),
        ROUNDS,
        start.elapsed(),
    );
    let start = Instant::now();
    for (p, n) in &mut sealed {
        rx.unprotect_rtp(p, *n).expect("unprotect");
    }
    report(
        &format!("SRTP unprotect {profile:?}"),
        ROUNDS,
        start.elapsed(),
    );
}

fn bench_raw_gcm() {
    use ring::aead;
    let key =
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &[7u8; 16]).expect("key"));
    let mut buf = vec![0u8; PACKET - 12];
    let start = Instant::now();
    for i in 0..ROUNDS {
        let mut nonce = [0u8; 12];
        nonce[8..].copy_from_slice(&i.to_be_bytes());
        let _ = key.seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(&[0u8; 12]),
            &mut buf,
        );
    }
    report("ring AES-128-GCM seal (the floor)", ROUNDS, start.elapsed());
}

fn bench_dtls() {
    let runs = 50u32;
    let (ca, cb) = (
        Certificate::generate().expect("cert"),
        Certificate::generate().expect("cert"),
    );
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let now = Instant::now();
        let start = Instant::now();
        let mut a = DtlsEndpoint::new(
            DtlsRole::Client,
            &ca,
            cb.fingerprint().clone(),
            DtlsConfig::default(),
            now,
        );
        let mut b = DtlsEndpoint::new(
            DtlsRole::Server,
            &cb,
            ca.fingerprint().clone(),
            DtlsConfig::default(),
            now,
        );
        let mut buf = [0u8; 2048];
        let mut done = 0;
        while done < 2 {
            let mut moved = false;
            while let Some(n) = a.poll_transmit(&mut buf) {
                b.handle_datagram(now, &buf[..n]);
                moved = true;
            }
            while let Some(n) = b.poll_transmit(&mut buf) {
                a.handle_datagram(now, &buf[..n]);
                moved = true;
            }
            for ep in [&mut a, &mut b] {
                while let Some(e) = ep.poll_event() {
                    if matches!(e, DtlsEvent::Connected { .. }) {
                        done += 1;
                    }
                }
            }
            assert!(moved || done == 2, "handshake stalled");
        }
        total += start.elapsed();
    }
    println!("{:<44} {:>10.0} µs CPU per handshake (both sides, cookie exchange, ECDHE x25519, ECDSA P-256)", "DTLS 1.2 handshake", total.as_secs_f64() * 1e6 / f64::from(runs));
}

fn bench_data_channel() {
    const MESSAGE: usize = 16 * 1024;
    const TOTAL: usize = 256 * 1024 * 1024;
    let start_time = Instant::now();
    let mut now = start_time;
    let mut rng = Rng::from_seed(1);
    let mut a = DataChannels::new(SctpConfig::default(), rng.fork(), now);
    let mut b = DataChannels::new(SctpConfig::default(), rng.fork(), now);
    let channel = a
        .create_data_channel(now, "bench", DataChannelInit::default())
        .expect("channel");
    let remote = RemoteSctpParams {
        port: 5000,
        max_message_size: 262_144,
    };
    a.start(now, DtlsRole::Client, remote).expect("start");
    b.start(now, DtlsRole::Server, remote).expect("start");
    let message = bytes::Bytes::from(vec![0x5Au8; MESSAGE]);
    let mut buf = vec![0u8; 1500];
    let (mut queued, mut received, mut open) = (0usize, 0usize, false);
    let mut packets = 0u64;
    let mut measure_from = None;
    while received < TOTAL {
        while open && queued < TOTAL && a.buffered_amount(channel) < 1024 * 1024 {
            a.send_data(now, channel, message.clone(), true)
                .expect("send");
            queued += MESSAGE;
        }
        let mut moved = false;
        while let Some(n) = a.poll_transmit(now, &mut buf) {
            b.handle_packet(now, &buf[..n]);
            packets += 1;
            moved = true;
        }
        while let Some(n) = b.poll_transmit(now, &mut buf) {
            a.handle_packet(now, &buf[..n]);
            moved = true;
        }
        while let Some(e) = b.poll_event() {
            if let DataChannelEvent::DataChannelMessage { data, .. } = e {
                received += data.len();
            }
        }
        while let Some(e) = a.poll_event() {
            if e == DataChannelEvent::DataChannelOpen(channel) {
                open = true;
                measure_from = Some(Instant::now());
            }
        }
        if !moved {
            // Nothing in flight moved: let the earliest timer (delayed SACK) fire.
            let next = [a.poll_timeout(), b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = next else { break };
            now = now.max(next);
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
    }
    let elapsed = measure_from.map_or(Duration::ZERO, |t| t.elapsed());
    let mbps = received as f64 / 1e6 / elapsed.as_secs_f64();
    println!(
        "{:<44} {:>10.0} MB/s {:>12} packets, {} MiB of {} KiB messages (both sides on one core)",
        "Data channel, ordered reliable",
        mbps,
        packets,
        received / (1024 * 1024),
        MESSAGE / 1024
    );
}

fn main() {
    println!("sansrtc benchmarks ({PACKET}-byte RTP, {ROUNDS} packets per row, one core)\n");
    bench_raw_gcm();
    for p in SrtpProfile::ALL {
        bench_srtp(p);
    }
    bench_dtls();
    bench_data_channel();
}
