//! Printed benchmarks (never asserted): SRTP protect and unprotect of 1200-byte RTP packets
//! per profile against the bare primitives on the same buffers (ring's AES-128-GCM sealed and
//! opened in place; RustCrypto AES-128-CTR with HMAC-SHA1-80), and the CPU time of a
//! DTLS 1.2 handshake between two cores in memory, and data channel throughput (16 KiB
//! ordered reliable messages) between two in-memory `DataChannels` layers.
//!
//! `cargo run --release -p sansrtc --example bench [-- GROUP... --rounds N]` (see `main`)
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
/// Packets per timed batch: every row works on the same 128 buffers (about 158 KB, warm in
/// the L2 cache), so the SRTP rows and the bare-primitive rows pay the same memory traffic.
const BATCH: usize = 128;

/// The RTP header of packet `seq` (SSRC 0x12345678, payload type 96) in `p`.
fn write_header(p: &mut [u8], seq: u16) {
    p[0] = 0x80;
    p[1] = 96;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&u32::from(seq).wrapping_mul(3000).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
}

fn buffers() -> Vec<Vec<u8>> {
    (0..BATCH).map(|_| vec![0u8; PACKET + 32]).collect()
}

/// Total and fastest batch of a row: on a shared machine the fastest batch is the figure
/// least disturbed by other processes.
#[derive(Clone, Copy)]
struct Timing {
    total: Duration,
    best: Duration,
}

impl Timing {
    fn new() -> Timing {
        Timing {
            total: Duration::ZERO,
            best: Duration::MAX,
        }
    }

    fn add(&mut self, batch: Duration) {
        self.total += batch;
        self.best = self.best.min(batch);
    }
}

fn report_timing(name: &str, n: u32, t: Timing) {
    let pps = f64::from(n) / t.total.as_secs_f64();
    let gbps = pps * (PACKET as f64) * 8.0 / 1e9;
    println!(
        "{name:<44} {:>10.0} packets/s {:>7.2} Gbit/s {:>8.0} ns/packet (best batch {:.0})",
        pps,
        gbps,
        1e9 / pps,
        t.best.as_secs_f64() * 1e9 / BATCH as f64
    );
}

/// Runs `rounds` packets in batches of `BATCH`: `prepare` (untimed) writes the header of
/// packet `seq` into a buffer, then `seal` and `open` are timed over the whole batch.
/// Returns the timings of sealing and opening.
fn run_batches(
    rounds: u32,
    mut prepare: impl FnMut(&mut [u8], u16),
    mut seal: impl FnMut(&mut [u8]) -> usize,
    mut open: impl FnMut(&mut [u8], usize),
) -> (Timing, Timing) {
    let mut bufs = buffers();
    let mut lens = [0usize; BATCH];
    let (mut sealing, mut opening) = (Timing::new(), Timing::new());
    let mut seq = 0u16;
    for _ in 0..rounds.div_ceil(BATCH as u32) {
        for p in &mut bufs {
            prepare(p, seq);
            seq = seq.wrapping_add(1);
        }
        let start = Instant::now();
        for (p, n) in bufs.iter_mut().zip(&mut lens) {
            *n = seal(p);
        }
        sealing.add(start.elapsed());
        let start = Instant::now();
        for (p, n) in bufs.iter_mut().zip(&lens) {
            open(p, *n);
        }
        opening.add(start.elapsed());
    }
    (sealing, opening)
}

fn bench_srtp(profile: SrtpProfile, rounds: u32) {
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| i as u8)
        .collect();
    let (mut tx, _) =
        SrtpContext::pair_from_keying_material(profile, &material, true).expect("keys");
    let (_, mut rx) =
        SrtpContext::pair_from_keying_material(profile, &material, false).expect("keys");
    let (sealing, opening) = run_batches(
        rounds,
        write_header,
        |p| tx.protect_rtp(p, PACKET).expect("protect"),
        |p, n| {
            rx.unprotect_rtp(p, n).expect("unprotect");
        },
    );
    report_timing(&format!("SRTP protect   {profile:?}"), rounds, sealing);
    report_timing(&format!("SRTP unprotect {profile:?}"), rounds, opening);
}

// The floor rows' per-packet work lives in named, never-inlined functions so that
// `valgrind --tool=callgrind --toggle-collect=bench::floor_*` can count it apart, as
// `--toggle-collect=*SrtpContext::protect_rtp` counts the SRTP rows.

fn gcm_nonce(header: &[u8]) -> ring::aead::Nonce {
    let mut n = [0u8; 12];
    n[10..].copy_from_slice(&header[2..4]);
    ring::aead::Nonce::assume_unique_for_key(n)
}

#[inline(never)]
fn floor_gcm_seal(key: &ring::aead::LessSafeKey, p: &mut [u8]) -> usize {
    let (head, rest) = p.split_at_mut(12);
    let tag = key
        .seal_in_place_separate_tag(
            gcm_nonce(head),
            ring::aead::Aad::from(&head[..]),
            &mut rest[..PACKET - 12],
        )
        .expect("seal");
    rest[PACKET - 12..PACKET + 4].copy_from_slice(tag.as_ref());
    PACKET + 16
}

#[inline(never)]
fn floor_gcm_open(key: &ring::aead::LessSafeKey, p: &mut [u8], n: usize) {
    let (head, rest) = p.split_at_mut(12);
    key.open_in_place(
        gcm_nonce(head),
        ring::aead::Aad::from(&head[..]),
        &mut rest[..n - 12],
    )
    .expect("open");
}

/// ring's AES-128-GCM on the same buffers as the SRTP rows, sealed and opened in place with
/// the 12-byte header as associated data and the tag after the payload: the floor for
/// AEAD-AES-128-GCM.
fn bench_raw_gcm(rounds: u32) {
    use ring::aead;
    let key =
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &[7u8; 16]).expect("key"));
    let (sealing, opening) = run_batches(
        rounds,
        write_header,
        |p| floor_gcm_seal(&key, p),
        |p, n| floor_gcm_open(&key, p, n),
    );
    report_timing("ring AES-128-GCM seal (the floor)", rounds, sealing);
    report_timing("ring AES-128-GCM open (the floor)", rounds, opening);
}

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

fn cm_keystream(aes: &aes::Aes128Enc, header: &[u8], data: &mut [u8]) {
    use aes::cipher::{InnerIvInit, StreamCipher};
    let mut iv = [0u8; 16];
    iv[12..14].copy_from_slice(&header[2..4]);
    ctr::Ctr128BE::from_core(ctr::CtrCore::inner_iv_init(aes, &iv.into())).apply_keystream(data);
}

#[inline(never)]
fn floor_cm_seal(aes: &aes::Aes128Enc, mac: &HmacSha1, p: &mut [u8]) -> usize {
    use hmac::Mac;
    let (head, rest) = p.split_at_mut(12);
    cm_keystream(aes, head, &mut rest[..PACKET - 12]);
    let mut m = mac.clone();
    m.update(&p[..PACKET]);
    m.update(&0u32.to_be_bytes());
    let tag = m.finalize().into_bytes();
    p[PACKET..PACKET + 10].copy_from_slice(&tag[..10]);
    PACKET + 10
}

#[inline(never)]
fn floor_cm_open(aes: &aes::Aes128Enc, mac: &HmacSha1, p: &mut [u8], n: usize) {
    use hmac::Mac;
    let body = n - 10;
    let mut m = mac.clone();
    m.update(&p[..body]);
    m.update(&0u32.to_be_bytes());
    let tag = m.finalize().into_bytes();
    assert!(tag[..10] == p[body..n], "tag");
    let (head, rest) = p.split_at_mut(12);
    cm_keystream(aes, head, &mut rest[..body - 12]);
}

/// RustCrypto AES-128-CTR (key schedule expanded once, used by reference) and HMAC-SHA1 (a keyed state cloned
/// per packet) on the same buffers, with an 80-bit tag: the floor for AES-CM-HMAC-SHA1-80.
fn bench_raw_cm(rounds: u32) {
    use aes::cipher::KeyInit;
    use hmac::Mac;
    let aes = aes::Aes128Enc::new_from_slice(&[7u8; 16]).expect("key");
    let mac = <HmacSha1 as Mac>::new_from_slice(&[9u8; 20]).expect("key");
    let (sealing, opening) = run_batches(
        rounds,
        write_header,
        |p| floor_cm_seal(&aes, &mac, p),
        |p, n| floor_cm_open(&aes, &mac, p, n),
    );
    report_timing(
        "AES-128-CTR + HMAC-SHA1-80 protect (floor)",
        rounds,
        sealing,
    );
    report_timing(
        "AES-128-CTR + HMAC-SHA1-80 unprotect (floor)",
        rounds,
        opening,
    );
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
            Rng::from_seed(109),
            now,
        );
        let mut b = DtlsEndpoint::new(
            DtlsRole::Server,
            &cb,
            ca.fingerprint().clone(),
            DtlsConfig::default(),
            Rng::from_seed(110),
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

/// `bench [GROUP...] [--rounds N]`: the groups named (all by default), `N` packets per SRTP
/// row (a small `N` keeps a run under `valgrind --tool=callgrind` short). Groups: `srtp`
/// (every SRTP and floor row), `floor-gcm`, `floor-cm`, a profile's name (`AeadAes128Gcm`,
/// `Aes128CmHmacSha1_80`, ...), `dtls`, `data`.
fn main() {
    let mut args = std::env::args().skip(1);
    let (mut groups, mut rounds) = (Vec::new(), ROUNDS);
    while let Some(a) = args.next() {
        if a == "--rounds" {
            rounds = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--rounds N");
        } else {
            groups.push(a);
        }
    }
    let run = |g: &str, srtp: bool| {
        groups.is_empty() || groups.iter().any(|x| x == g || (srtp && x == "srtp"))
    };
    println!("sansrtc benchmarks ({PACKET}-byte RTP, {rounds} packets per row, one core)\n");
    if run("floor-gcm", true) {
        bench_raw_gcm(rounds);
    }
    if run("floor-cm", true) {
        bench_raw_cm(rounds);
    }
    for p in SrtpProfile::ALL {
        if run(&format!("{p:?}"), true) {
            bench_srtp(p, rounds);
        }
    }
    if run("dtls", false) {
        bench_dtls();
    }
    if run("data", false) {
        bench_data_channel();
    }
}
