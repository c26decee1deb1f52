//! The scenarios, written once against [`Pair`] and run on every stack. Times are wall
//! time of single-threaded in-memory work (so CPU time of one core); the virtual clock
//! the stacks see only moves when the harness advances it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{alloc, Opts, Pair, MESSAGE};

/// Connection setup: offer to connected (ICE + DTLS), both ends, CPU per connection in
/// µs, with one audio track (a session needs one m-line). Building the objects (certificates included) is outside the timing. Stops early
/// after `budget` of measured time; returns (µs per connection, connections made).
pub fn setup<P: Pair>(n: usize, budget: Duration) -> (f64, usize) {
    let start = Instant::now();
    let mut spent = Duration::ZERO;
    let mut made = 0;
    for i in 0..n {
        let mut p = P::new(i, opts_publisher(), start);
        let t = Instant::now();
        p.negotiate();
        p.run_until_ready();
        spent += t.elapsed();
        made += 1;
        if spent > budget {
            break;
        }
    }
    (spent.as_secs_f64() * 1e6 / made as f64, made)
}

/// One publisher to `viewers` viewers: the publisher's server end receives SRTP,
/// hands out RTP, which is sent (protected) on every viewer's server end. Returns
/// forwarded packets out per second.
pub fn forward<P: Pair>(viewers: usize, packets: usize) -> f64 {
    let start = Instant::now();
    let mut publisher = P::new(0, opts_publisher(), start);
    publisher.negotiate();
    publisher.run_until_ready();
    let mut views: Vec<P> = (1..=viewers)
        .map(|i| {
            let mut v = P::new(i, opts_viewer(), start);
            v.negotiate();
            v.run_until_ready();
            v
        })
        .collect();
    let now = views
        .iter()
        .map(P::now)
        .chain([publisher.now()])
        .max()
        .unwrap_or(start);
    publisher.advance_to(now);
    for v in &mut views {
        v.advance_to(now);
    }
    let warm = 50.min(packets);
    let input = publisher.client_packets(0, 1, warm + packets);
    let mut rtp = Vec::new();
    let mut out = 0usize;
    let mut t = Instant::now();
    for (i, data) in input.iter().enumerate() {
        if i == warm {
            out = 0;
            t = Instant::now();
        }
        publisher.server_receive(data, &mut rtp);
        for p in rtp.drain(..) {
            for v in &mut views {
                out += v.server_forward(&p, false);
            }
        }
    }
    out as f64 / t.elapsed().as_secs_f64()
}

/// Receive path: a pair with `transceivers` audio tracks client to server; packets of
/// the last track go into the server end, and the application drops each packet once it
/// has it (as a forwarder or a decoder does). Returns ns per received packet and whether
/// every packet came out as RTP.
///
/// Keeping every packet instead made the row measure the allocator: 10,000 retained
/// payloads need ~12 MB of fresh memory, and whether glibc had given the previous run's
/// memory back to the kernel (it did after the 500-transceiver set-up, not after the
/// 1-transceiver one) decided whether the loop took ~0.3 page faults per packet. That,
/// not any per-packet work, was the 500 row's extra ~800 ns: callgrind counts the same
/// instructions per packet at 1 and 500 transceivers.
pub fn receive<P: Pair>(transceivers: usize, packets: usize) -> (f64, bool) {
    let start = Instant::now();
    let mut p = P::new(
        0,
        Opts {
            client_tracks: transceivers,
            ..Default::default()
        },
        start,
    );
    p.negotiate();
    p.run_until_ready();
    let warm = 50.min(packets);
    let input = p.client_packets(transceivers - 1, 1, warm + packets);
    let mut rtp = Vec::with_capacity(16);
    let mut received = 0;
    let mut t = Instant::now();
    for (i, data) in input.iter().enumerate() {
        if i == warm {
            t = Instant::now();
            received = 0;
        }
        p.server_receive(data, &mut rtp);
        received += rtp.len();
        rtp.clear();
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / packets as f64;
    (ns, received == packets)
}

/// Idle cost: `n` connected pairs (one audio track each, no media flowing), then `secs` of virtual time during which the
/// application does what it must (wake each pair at its deadline from one timer heap,
/// move its datagrams). Returns (ns of CPU per pair per virtual second, live bytes per
/// connected pair from the counting allocator; both ends of each pair are in the
/// process, so a pair is a client plus a server).
pub fn idle<P: Pair>(n: usize, secs: u64) -> (f64, f64) {
    let start = Instant::now();
    let before = alloc::live_bytes();
    let mut pairs: Vec<P> = (0..n)
        .map(|i| {
            let mut p = P::new(i, opts_publisher(), start);
            p.negotiate();
            p.run_until_ready();
            p
        })
        .collect();
    let t0 = pairs.iter().map(P::now).max().unwrap_or(start) + Duration::from_secs(1);
    for p in &mut pairs {
        p.advance_to(t0);
    }
    let bytes = (alloc::live_bytes() - before) as f64 / n as f64;
    let end = t0 + Duration::from_secs(secs);
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = pairs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.next_due().map(|d| Reverse((d, i))))
        .collect();
    let t = Instant::now();
    while let Some(Reverse((at, i))) = heap.pop() {
        if at > end {
            break;
        }
        let p = &mut pairs[i];
        p.advance_to(at.max(p.now()));
        if let Some(d) = p.next_due() {
            heap.push(Reverse((d.max(at + Duration::from_micros(1)), i)));
        }
    }
    let ns = t.elapsed().as_secs_f64() * 1e9 / (n as f64 * secs as f64);
    drop(pairs);
    (ns, bytes)
}

/// Data channel, ordered reliable, 16 KiB messages one way for `wall` of wall time
/// (after 0.2 s of warm-up). Returns MB/s of payload delivered.
pub fn datachannel<P: Pair>(wall: Duration) -> f64 {
    let start = Instant::now();
    let mut p = P::new(
        0,
        Opts {
            data_channel: true,
            ..Default::default()
        },
        start,
    );
    p.negotiate();
    p.run_until_ready();
    let message = Bytes::from(vec![0x5a; MESSAGE]);
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        p.data_turn(&message);
    }
    let first = p.data_turn(&message);
    let t = Instant::now();
    let mut last = first;
    while t.elapsed() < wall {
        last = p.data_turn(&message);
    }
    (last - first) as f64 / 1e6 / t.elapsed().as_secs_f64()
}

fn opts_publisher() -> Opts {
    Opts {
        client_tracks: 1,
        ..Default::default()
    }
}

fn opts_viewer() -> Opts {
    Opts {
        server_track: true,
        ..Default::default()
    }
}
