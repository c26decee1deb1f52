//! A Chromium publisher to `whip_whep` behind a 1 Mbit/s bottleneck, and the same to the
//! str0m 0.25 reference server (`measure/str0m_whip.rs`) for comparison: `tc tbf` on
//! loopback (rate 1mbit, burst 32kbit, latency 400ms) limits the whole namespace, so this
//! binary holds one test that runs its cases one after the other (cargo runs test
//! binaries one at a time), and the qdisc is removed at the end, also on a panic.
//!
//! Per server, a publisher alone (no viewer, so only its media crosses the bottleneck):
//! its average video send rate over 0-10 s and 10-20 s after connecting, and what the
//! qdisc dropped in the second window; at 1 Mbit/s (the figure, which Chromium's
//! encoder does not reach with the fake camera) and at 300 kbit/s (which it does). Asserted
//! of sansrtc in both: with congestion-control feedback the publisher uses the link (at
//! least 300 and 120 kbit/s in the settled window; without feedback Chromium falls to its
//! 30 kbit/s minimum) and settles below the limit without sustained loss (its video rate
//! under the limit, the qdisc dropping under 2 % of the packets in that window).

mod measure;

use std::time::Duration;

use measure::{require_loopback_namespace, sleep_until, Bandwidth, Publisher, Server, Stack};
use sansrtc_tests::browser::BrowserKind;

/// The two windows: ramp-up, then settled.
const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Limited {
    stack: Stack,
    ramp_kbps: f64,
    settled_kbps: f64,
    /// The qdisc's packets sent and dropped in the settled window.
    sent: u64,
    dropped: u64,
    resolution: (u64, u64),
    /// The encoder's target at 20 s, kbit/s.
    target_kbps: f64,
}

impl Limited {
    fn drop_percent(&self) -> f64 {
        100.0 * self.dropped as f64 / (self.sent + self.dropped).max(1) as f64
    }
}

fn limited_run(stack: Stack, limit: &Bandwidth) -> Limited {
    let server = Server::start(stack);
    let mut publisher = Publisher::open(BrowserKind::Chromium, &server);
    let start = publisher.connected_at;
    let first = publisher.sent();
    sleep_until(start, WINDOW);
    let middle = publisher.sent();
    let (sent_before, dropped_before) = limit.counters();
    sleep_until(start, 2 * WINDOW);
    let last = publisher.sent();
    let (sent_after, dropped_after) = limit.counters();
    Limited {
        stack,
        ramp_kbps: middle.kbps_since(&first),
        settled_kbps: last.kbps_since(&middle),
        sent: sent_after - sent_before,
        dropped: dropped_after - dropped_before,
        resolution: (last.width, last.height),
        target_kbps: last.target_kbps,
    }
}

/// One bottleneck: its `tc` rate, the same in kbit/s, and the least the sansrtc publisher
/// must send in the settled window.
struct Case {
    rate: &'static str,
    limit_kbps: f64,
    floor_kbps: f64,
}

/// The 1 Mbit/s (above what Chromium's encoder makes of the fake camera, about
/// 480 kbit/s with feedback, so the limit does not bind), and 300 kbit/s, which does
/// (with str0m the publisher settles near 200 kbit/s of video and 480x360).
const CASES: [Case; 2] = [
    Case {
        rate: "1mbit",
        limit_kbps: 1000.0,
        floor_kbps: 300.0,
    },
    Case {
        rate: "300kbit",
        limit_kbps: 300.0,
        floor_kbps: 120.0,
    },
];

fn print_case(case: &Case, ours: &Limited, theirs: &Limited) {
    eprintln!(
        "| {:<52} | {:>12} | {:>12} |",
        format!("tbf {}, Chromium publisher", case.rate),
        ours.stack.to_string(),
        theirs.stack.to_string()
    );
    eprintln!("|{:-<54}|{:-<14}|{:-<14}|", "", "", "");
    type Cell = fn(&Limited) -> String;
    let rows: [(&str, Cell); 5] = [
        ("video kbit/s, 0-10 s", |l| format!("{:.0}", l.ramp_kbps)),
        ("video kbit/s, 10-20 s", |l| {
            format!("{:.0}", l.settled_kbps)
        }),
        ("qdisc drops, 10-20 s (packets, %)", |l| {
            format!("{} {:.1} %", l.dropped, l.drop_percent())
        }),
        ("resolution at 20 s", |l| {
            format!("{}x{}", l.resolution.0, l.resolution.1)
        }),
        ("encoder target at 20 s, kbit/s", |l| {
            format!("{:.0}", l.target_kbps)
        }),
    ];
    for (what, cell) in rows {
        eprintln!("| {what:<52} | {:>12} | {:>12} |", cell(ours), cell(theirs));
    }
}

#[test]
fn publisher_settles_below_a_bandwidth_limit() {
    require_loopback_namespace();
    let mut failures = Vec::new();
    for case in &CASES {
        let limit = Bandwidth::limit(case.rate);
        let ours = limited_run(Stack::Sansrtc, &limit);
        let theirs = limited_run(Stack::Str0m, &limit);
        drop(limit);
        print_case(case, &ours, &theirs);
        if ours.settled_kbps < case.floor_kbps {
            failures.push(format!(
                "tbf {}: the publisher does not use the link ({:.0} kbit/s, floor {:.0}): {ours:?}",
                case.rate, ours.settled_kbps, case.floor_kbps
            ));
        }
        if ours.settled_kbps >= case.limit_kbps || ours.drop_percent() >= 2.0 {
            failures.push(format!(
                "tbf {}: the publisher does not settle below the limit without loss: {ours:?}",
                case.rate
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
