//! `cargo run --release -p sansrtc-bench [-- --quick]`: the performance table, sansrtc
//! next to str0m 0.25 and rtc 0.21, every scenario in memory with a virtual clock.
#![allow(clippy::print_stdout)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use sansrtc_bench::median;
use sansrtc_bench::scenarios;
use sansrtc_bench::stack_rtc::RtcPair;
use sansrtc_bench::stack_sansrtc::SansPair;
use sansrtc_bench::stack_str0m::Str0mPair;

#[global_allocator]
static ALLOC: sansrtc_bench::alloc::Counting = sansrtc_bench::alloc::Counting;

struct Row {
    name: String,
    unit: &'static str,
    higher_is_better: bool,
    values: [Option<f64>; 3],
    note: String,
}

/// Settings of one run of the table.
struct Plan {
    runs: usize,
    setup_connections: usize,
    setup_budget: Duration,
    packets: usize,
    idle_peers: usize,
    idle_secs: u64,
    dc_wall: Duration,
}

/// Run `f` `runs` times and take the median; a panic (a stack that cannot do the
/// scenario) gives `None`.
fn med(runs: usize, mut f: impl FnMut() -> f64) -> Option<f64> {
    let mut v = Vec::new();
    for _ in 0..runs {
        match catch_unwind(AssertUnwindSafe(&mut f)) {
            Ok(x) if x.is_finite() => v.push(x),
            _ => return None,
        }
    }
    Some(median(v))
}

fn try_once<T>(f: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

/// `--stack NAME` (sansrtc, str0m or rtc) runs one stack only (for profiling).
fn for_all<T>(mut f: impl FnMut(usize) -> Option<T>) -> [Option<T>; 3] {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--stack")
        .and_then(|i| args.get(i + 1));
    let mut run = |i: usize| match only {
        Some(name) if name != stack_name(i) => None,
        _ => f(i),
    };
    [run(0), run(1), run(2)]
}

fn stack_name(i: usize) -> &'static str {
    ["sansrtc", "str0m", "rtc"][i]
}

fn run_rows(plan: &Plan, only: Option<&str>) -> Vec<Row> {
    let mut rows = Vec::new();
    let want = |key: &str| only.is_none_or(|o| key.contains(o));

    if want("setup") {
        let mut note = Vec::new();
        let values = for_all(|i| {
            let n = plan.setup_connections;
            let b = plan.setup_budget;
            let r = match i {
                0 => try_once(|| scenarios::setup::<SansPair>(n, b)),
                1 => try_once(|| scenarios::setup::<Str0mPair>(n, b)),
                _ => try_once(|| scenarios::setup::<RtcPair>(n, b)),
            };
            if let Some((_, made)) = r {
                if made < n {
                    note.push(format!("{} {} conns", stack_name(i), made));
                }
            }
            eprintln!("setup {}: {r:?}", stack_name(i));
            r.map(|r| r.0)
        });
        rows.push(Row {
            name: format!(
                "connection setup, offer to connected ({} conns)",
                plan.setup_connections
            ),
            unit: "µs CPU/conn",
            higher_is_better: false,
            values,
            note: note.join(", "),
        });
    }

    // `--viewers N` measures the forwarding rows at N viewers only (for profiling).
    let args: Vec<String> = std::env::args().collect();
    let viewer_counts: Vec<usize> = match args
        .iter()
        .position(|a| a == "--viewers")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![1, 10, 100],
    };
    for &viewers in &viewer_counts {
        if !want("forward") {
            break;
        }
        let packets = plan.packets / viewers.max(10) * 10;
        let values = for_all(|i| {
            let r = match i {
                0 => med(plan.runs, || {
                    scenarios::forward::<SansPair>(viewers, packets)
                }),
                1 => med(plan.runs, || {
                    scenarios::forward::<Str0mPair>(viewers, packets)
                }),
                _ => med(plan.runs, || {
                    scenarios::forward::<RtcPair>(viewers, packets)
                }),
            };
            eprintln!("forward 1->{viewers} {}: {r:?}", stack_name(i));
            r.map(|x| x / 1e6)
        });
        rows.push(Row {
            name: format!("media 1 -> {viewers} viewers, 1200 B RTP, SRTP in and out"),
            unit: "M pkts out/s",
            higher_is_better: true,
            values,
            note: String::new(),
        });
    }

    for &viewers in &viewer_counts {
        if !want("forward") {
            break;
        }
        let packets = plan.packets / viewers.max(10) * 10;
        let r = med(plan.runs, || {
            sansrtc_bench::stack_endpoint::forward(viewers, packets)
        });
        eprintln!("endpoint forward 1->{viewers}: {r:?}");
        rows.push(Row {
            name: format!("media 1 -> {viewers} viewers through sansrtc's Endpoint (one socket)"),
            unit: "M pkts out/s",
            higher_is_better: true,
            values: [r.map(|x| x / 1e6), Some(f64::NAN), Some(f64::NAN)],
            note: "sansrtc only (the anchors have no one-socket server)".into(),
        });
    }

    // `--transceivers N` measures the receive path at N transceivers only (for profiling).
    let receive_counts: Vec<usize> = match args
        .iter()
        .position(|a| a == "--transceivers")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
    {
        Some(n) => vec![n],
        None => vec![1, 50, 500],
    };
    for transceivers in receive_counts {
        if !want("receive") {
            break;
        }
        let mut bad = Vec::new();
        let values = for_all(|i| {
            let mut all = true;
            let mut f = || {
                let (ns, ok) = match i {
                    0 => scenarios::receive::<SansPair>(transceivers, plan.packets),
                    1 => scenarios::receive::<Str0mPair>(transceivers, plan.packets),
                    _ => scenarios::receive::<RtcPair>(transceivers, plan.packets),
                };
                all &= ok;
                ns
            };
            let r = med(plan.runs, &mut f);
            if r.is_some() && !all {
                bad.push(format!("{}: not every packet handed out", stack_name(i)));
            }
            eprintln!("receive {transceivers} {}: {r:?}", stack_name(i));
            r
        });
        rows.push(Row {
            name: format!("receive path, {transceivers} transceivers"),
            unit: "ns/packet",
            higher_is_better: false,
            values,
            note: bad.join(", "),
        });
    }

    if want("idle") {
        let (n, s) = (plan.idle_peers, plan.idle_secs);
        let results = for_all(|i| {
            let r = match i {
                0 => try_once(|| scenarios::idle::<SansPair>(n, s)),
                1 => try_once(|| scenarios::idle::<Str0mPair>(n, s)),
                _ => try_once(|| scenarios::idle::<RtcPair>(n, s)),
            };
            eprintln!("idle {}: {r:?}", stack_name(i));
            r
        });
        rows.push(Row {
            name: format!("idle: timers of {n} connected pairs over {s} s virtual"),
            unit: "ns CPU/pair/s",
            higher_is_better: false,
            values: results.map(|r| r.map(|r| r.0)),
            note: String::new(),
        });
        rows.push(Row {
            name: "memory per idle connected pair (client + server end)".into(),
            unit: "KiB/pair",
            higher_is_better: false,
            values: results.map(|r| r.map(|r| r.1 / 1024.0)),
            note: "counting allocator, live bytes".into(),
        });
    }

    if want("loopback raw") || want("loopback mmsg") || want("loopback tokio") {
        use sansrtc_bench::loopback::{medians, raw_udp, raw_udp_batched, tokio_rtp, Loopback};
        let n = plan.packets * 2;
        // Medians of the rate and of the CPU figure, each over the same runs.
        let runs = |f: fn(usize) -> Loopback| {
            let got: Vec<Loopback> = (0..plan.runs).filter_map(|_| try_once(|| f(n))).collect();
            medians(&got)
        };
        // `--only` picks one of the three by "loopback raw", "mmsg" or "tokio".
        let skip = (None, None, None);
        let raw = if want("loopback raw") {
            runs(raw_udp)
        } else {
            skip
        };
        eprintln!("loopback raw UDP: {raw:?}");
        let batched = if want("loopback mmsg") {
            runs(raw_udp_batched)
        } else {
            skip
        };
        eprintln!("loopback raw UDP, batched: {batched:?}");
        let rtp = if want("loopback tokio") {
            runs(tokio_rtp)
        } else {
            skip
        };
        eprintln!("loopback tokio RTP: {rtp:?}");
        let share = |anchor: Option<f64>| match (anchor, rtp.0) {
            (Some(r), Some(t)) if r > 0.0 => format!("{:.0}%", 100.0 * t / r),
            _ => "-".into(),
        };
        let cpu = |c: Option<f64>, d: Option<f64>| match (c, d) {
            (Some(c), Some(d)) => format!("{c:.1} µs CPU/pkt, {:.1}% delivered", 100.0 * d),
            _ => "-".into(),
        };
        rows.push(Row {
            name: "loopback UDP, raw send_to/recv_from, 1212 B, two threads (same run)".into(),
            unit: "k pkts/s",
            higher_is_better: true,
            values: [raw.0.map(|r| r / 1e3), Some(f64::NAN), Some(f64::NAN)],
            note: format!("one datagram per syscall; {}", cpu(raw.1, raw.2)),
        });
        rows.push(Row {
            name: "loopback UDP, raw sendmmsg/recvmmsg, 1212 B, two threads (same run)".into(),
            unit: "k pkts/s",
            higher_is_better: true,
            values: [batched.0.map(|r| r / 1e3), Some(f64::NAN), Some(f64::NAN)],
            note: format!(
                "batches of 32, as the runtimes do; {}",
                cpu(batched.1, batched.2)
            ),
        });
        rows.push(Row {
            name: "RTP one way over loopback UDP through the tokio runtime (SRTP, 1200 B payload)"
                .into(),
            unit: "k pkts/s",
            higher_is_better: true,
            values: [rtp.0.map(|r| r / 1e3), Some(f64::NAN), Some(f64::NAN)],
            note: format!(
                "{} of raw per-call, {} of raw batched; {} (both ends); the anchors ship no runtime",
                share(raw.0),
                share(batched.0),
                cpu(rtp.1, rtp.2)
            ),
        });
    }

    if want("loopback core") {
        use sansrtc_bench::loopback::core_loopback;
        let n = plan.packets * 2;
        let results = for_all(|i| {
            let got: Vec<_> = (0..plan.runs)
                .filter_map(|_| {
                    try_once(|| match i {
                        0 => core_loopback::<SansPair>(n),
                        1 => core_loopback::<Str0mPair>(n),
                        _ => core_loopback::<RtcPair>(n),
                    })
                })
                .collect();
            let r = sansrtc_bench::loopback::medians(&got);
            eprintln!("loopback core {}: {r:?}", stack_name(i));
            r.0.map(|_| r)
        });
        let delivered: Vec<String> = results
            .iter()
            .zip(0..)
            .filter_map(|(r, i)| {
                r.and_then(|r| r.2)
                    .map(|d| format!("{} {:.1}%", stack_name(i), 100.0 * d))
            })
            .collect();
        rows.push(Row {
            name: "RTP one way over loopback UDP, each core in the same minimal one-thread loop (send_to/recv_from)".into(),
            unit: "k pkts/s",
            higher_is_better: true,
            values: results.map(|r| r.and_then(|r| r.0).map(|v| v / 1e3)),
            note: format!("delivered: {}", delivered.join(", ")),
        });
        rows.push(Row {
            name: "  the same, process CPU per packet (both ends and the kernel's share)".into(),
            unit: "µs/pkt",
            higher_is_better: false,
            values: results.map(|r| r.and_then(|r| r.1)),
            note: "10 ms clock ticks over the run".into(),
        });
    }

    if want("datachannel") {
        let values = for_all(|i| {
            let r = match i {
                0 => med(plan.runs, || {
                    scenarios::datachannel::<SansPair>(plan.dc_wall)
                }),
                1 => med(plan.runs, || {
                    scenarios::datachannel::<Str0mPair>(plan.dc_wall)
                }),
                _ => med(plan.runs, || {
                    scenarios::datachannel::<RtcPair>(plan.dc_wall)
                }),
            };
            eprintln!("datachannel {}: {r:?}", stack_name(i));
            r
        });
        rows.push(Row {
            name: "data channel, 16 KiB ordered reliable, one way (both ends' CPU)".into(),
            unit: "MB/s",
            higher_is_better: true,
            values,
            note: String::new(),
        });
    }
    for streams in [1usize, 100] {
        if !want("feedback") {
            break;
        }
        let packets = plan.packets * 10;
        let sans_only = |r: Option<f64>| [r, Some(f64::NAN), Some(f64::NAN)];
        for loss in [0u32, 5] {
            let r = med(plan.runs, || {
                sansrtc_bench::feedback::nack_receive(streams, packets, loss)
            });
            eprintln!("feedback nack {streams} streams {loss}% loss: {r:?}");
            rows.push(Row {
                name: format!("NACK bookkeeping, {streams} streams, {loss} % loss"),
                unit: "ns/packet",
                higher_is_better: false,
                values: sans_only(r),
                note: "sansrtc only: on_packet per received packet, poll_nack when due; 10,000 packets/s in all, nothing recovered".into(),
            });
        }
        let r = med(plan.runs, || {
            sansrtc_bench::feedback::twcc_receive(streams, packets)
        });
        eprintln!("feedback twcc {streams} streams: {r:?}");
        rows.push(Row {
            name: format!("transport-wide feedback generation, {streams} transports"),
            unit: "ns/packet",
            higher_is_better: false,
            values: sans_only(r),
            note: "sansrtc only: record + feedback every 100 ms or 100 packets".into(),
        });
    }
    if want("feedback") {
        let packets = plan.packets * 10;
        let mut allocs = 0.0;
        let r = med(plan.runs, || {
            let (ns, a) = sansrtc_bench::feedback::remb_estimate(packets);
            allocs = a;
            ns
        });
        eprintln!("feedback remb estimator: {r:?} ns/packet, {allocs} allocations/packet");
        rows.push(Row {
            name: "receive-side bandwidth estimation (REMB), 1 stream".into(),
            unit: "ns/packet",
            higher_is_better: false,
            values: [r, Some(f64::NAN), Some(f64::NAN)],
            note: format!(
                "sansrtc only: delay-based estimator per packet (groups, trendline, \
                 detector, AIMD); {allocs:.3} allocations/packet"
            ),
        });
        let (ring, kept) = sansrtc_bench::feedback::history_memory(100);
        eprintln!("feedback history memory: ring {ring} B, payloads {kept} B");
        rows.push(Row {
            name: "retransmission history per stream, full (512 packets)".into(),
            unit: "KiB",
            higher_is_better: false,
            values: [Some(ring / 1024.0), Some(f64::NAN), Some(f64::NAN)],
            note: format!(
                "sansrtc only: the ring; it keeps {:.0} KiB of 1,200-byte payloads alive",
                kept / 1024.0
            ),
        });
    }
    rows
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "failed".into(),
        Some(x) if x.is_nan() => "n/a".into(),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) if x >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// How many times better sansrtc is than `other` (> 1: sansrtc ahead).
fn ratio(row: &Row, other: usize) -> String {
    match (row.values[0], row.values[other]) {
        (Some(s), Some(o)) if s > 0.0 && o > 0.0 && o.is_finite() => {
            let r = if row.higher_is_better { s / o } else { o / s };
            format!("{r:.2}x")
        }
        _ => "-".into(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let packets = args
        .iter()
        .position(|a| a == "--packets")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok());
    let mut plan = if quick {
        Plan {
            runs: 3,
            setup_connections: 100,
            setup_budget: Duration::from_secs(3),
            packets: 2_000,
            idle_peers: 1_000,
            idle_secs: 30,
            dc_wall: Duration::from_millis(500),
        }
    } else {
        Plan {
            runs: 5,
            setup_connections: 1_000,
            setup_budget: Duration::from_secs(15),
            packets: 10_000,
            idle_peers: 10_000,
            idle_secs: 30,
            dc_wall: Duration::from_secs(1),
        }
    };
    if let Some(p) = packets {
        plan.packets = p;
    }
    if args.iter().any(|a| a == "--once") {
        plan.runs = 1;
    }
    let wall = Instant::now();
    let rows = run_rows(&plan, only);
    println!(
        "| scenario | unit | sansrtc | str0m 0.25 | rtc 0.21 | sansrtc vs str0m | sansrtc vs rtc | note |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            fmt(r.values[0]),
            fmt(r.values[1]),
            fmt(r.values[2]),
            ratio(r, 1),
            ratio(r, 2),
            r.note
        );
    }
    println!(
        "\nRatios: > 1x means sansrtc is ahead. Medians of {} runs (setup and idle: one run, averaged over its connections). {:.0} s in all.",
        plan.runs,
        wall.elapsed().as_secs_f64()
    );
}
