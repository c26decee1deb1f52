//! The feedback rows: the per-packet cost of the receive-side NACK bookkeeping
//! (`media::nack`) and of transport-wide feedback generation (`media::twcc`), at N streams
//! fed round-robin, and the memory of a send-side retransmission history
//! (`media::retransmit`), and the per-packet cost of the receive-side delay-based
//! bandwidth estimator behind REMB (`media::bwe`). sansrtc only: the anchors' equivalents sit inside their session
//! objects and cannot be driven alone. A virtual clock advances 1 ms every 10 packets
//! (about 1,000 packets/s per stream at one stream).

use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::bwe::DelayBasedEstimator;
use sansrtc::media::nack::{NackConfig, NackGenerator};
use sansrtc::media::retransmit::{RetransmitConfig, RetransmitHistory};
use sansrtc::media::twcc::{TwccReceiver, TwccReceiverConfig};
use sansrtc::media::RtpPacket;

use crate::alloc;

/// A deterministic loss pattern: `percent` of packets dropped, spread by a fixed LCG.
pub struct Loss {
    state: u32,
    percent: u32,
}

impl Loss {
    /// A pattern dropping `percent` % of packets.
    pub fn new(percent: u32) -> Loss {
        Loss {
            state: 0x1234_5678,
            percent,
        }
    }

    /// Whether the next packet is lost.
    pub fn lost(&mut self) -> bool {
        self.state = self
            .state
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        (self.state >> 8) % 100 < self.percent
    }
}

/// NACK bookkeeping: `streams` generators, `packets` packets in all (round-robin), each
/// received one `on_packet`, then `poll_nack` when the generator's deadline has come (as the
/// media session calls it); 10 packets per ms in all; returns ns per received packet.
pub fn nack_receive(streams: usize, packets: usize, loss_percent: u32) -> f64 {
    let mut gens: Vec<NackGenerator> = (0..streams)
        .map(|_| NackGenerator::new(NackConfig::default()))
        .collect();
    let mut seqs = vec![0u16; streams];
    let mut loss = Loss::new(loss_percent);
    let mut pairs = Vec::with_capacity(64);
    let mut now = Instant::now();
    let mut received = 0usize;
    let start = Instant::now();
    for i in 0..packets {
        let s = i % streams;
        let seq = seqs[s];
        seqs[s] = seq.wrapping_add(1);
        if i % 10 == 0 {
            now += Duration::from_millis(1);
        }
        if loss.lost() {
            continue;
        }
        let g = &mut gens[s];
        g.on_packet(seq, now);
        // As the media session does: NACKs are written only when the generator's
        // deadline has come.
        if g.poll_timeout().is_some_and(|t| t <= now) {
            pairs.clear();
            g.poll_nack(now, &mut pairs);
        }
        received += 1;
    }
    start.elapsed().as_nanos() as f64 / received.max(1) as f64
}

/// Transport-wide feedback: `streams` receivers (one per transport), each received packet
/// recorded and feedback written when due (every 100 ms or 100 packets); returns ns per
/// packet, feedback writing included.
pub fn twcc_receive(streams: usize, packets: usize) -> f64 {
    let mut rxs: Vec<TwccReceiver> = (0..streams)
        .map(|_| TwccReceiver::new(TwccReceiverConfig::default()))
        .collect();
    let mut seqs = vec![0u16; streams];
    let mut loss = Loss::new(1);
    let mut buf = [0u8; 1500];
    let mut now = Instant::now();
    let start = Instant::now();
    for i in 0..packets {
        let s = i % streams;
        let seq = seqs[s];
        seqs[s] = seq.wrapping_add(1);
        if i % 10 == 0 {
            now += Duration::from_millis(1);
        }
        if loss.lost() {
            continue;
        }
        let rx = &mut rxs[s];
        rx.on_packet(seq, now);
        while let Ok(Some(n)) = rx.poll_feedback(now, 1, 2, &mut buf) {
            std::hint::black_box(n);
        }
    }
    start.elapsed().as_nanos() as f64 / packets.max(1) as f64
}

/// The receive-side bandwidth estimator: `packets` 1,200-byte packets 1 ms apart (9.6
/// Mbit/s) whose one-way delay swings ±2 ms (a triangle over 200 packets) and 1 % lost;
/// returns `(ns per packet, allocations per packet)`.
pub fn remb_estimate(packets: usize) -> (f64, f64) {
    let mut bwe = DelayBasedEstimator::new();
    let mut loss = Loss::new(1);
    let base = Instant::now();
    let allocations = alloc::allocations();
    let start = Instant::now();
    for i in 0..packets {
        if loss.lost() {
            continue;
        }
        let send_us = i as u64 * 1000;
        let swing = (i % 200) as i64 - 100;
        let delay_us = 20_000 + swing.unsigned_abs() * 40;
        let abs = ((send_us << 18) / 1_000_000) as u32 & 0xFF_FFFF;
        bwe.on_packet(base + Duration::from_micros(send_us + delay_us), abs, 1200);
    }
    std::hint::black_box(bwe.estimate_bps());
    let ns = start.elapsed().as_nanos() as f64 / packets.max(1) as f64;
    let allocs = (alloc::allocations() - allocations) as f64 / packets.max(1) as f64;
    (ns, allocs)
}

/// A 1,200-byte media packet sharing one payload buffer.
pub fn media_packet(payload: &Bytes, sequence: u16) -> RtpPacket {
    RtpPacket {
        payload_type: 96,
        sequence_number: sequence,
        timestamp: u32::from(sequence) * 3000,
        marker: false,
        ssrc: 1,
        payload: payload.clone(),
    }
}

/// Memory of one retransmission history with the default bounds, full (1,000 packets
/// stored): `(ring bytes, payload bytes it keeps alive)`. The ring is measured as the growth
/// of live bytes with every packet sharing one payload; the payloads kept alive are what a
/// send path that allocates each payload would retain (bounded by `max_bytes`).
pub fn history_memory(streams: usize) -> (f64, f64) {
    let payload = Bytes::from(vec![0u8; crate::PAYLOAD]);
    let now = Instant::now();
    let before = alloc::live_bytes();
    let mut hs: Vec<RetransmitHistory> = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut h = RetransmitHistory::new(RetransmitConfig::default(), 1, None);
        for s in 0..1000u16 {
            h.store(&media_packet(&payload, s), now);
        }
        hs.push(h);
    }
    let ring = (alloc::live_bytes() - before) as f64 / streams as f64;
    let kept = hs.iter().map(|h| h.bytes()).sum::<usize>() as f64 / streams as f64;
    drop(hs);
    (ring, kept)
}
