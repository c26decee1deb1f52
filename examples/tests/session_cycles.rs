//! Sessions that end free everything, with real sockets, on every runtime (issue 14):
//! 1,000 connect/close cycles against the `echo` example (`POST /api/offer` with a data
//! channel, one message echoed) and against `whip_whep` (WHEP viewers coming and going
//! while one WHIP publisher stays). Clients are sansrtc cores on the thread-free
//! game-loop `Driver` over loopback, several at once, each closing its PeerConnection
//! (the goodbyes: close_notify, SCTP ABORT, BYE) and vanishing.
//!
//! After a warm-up round (thread pools and tables reach their working size) the process's
//! threads (`/proc/self/task`), open file descriptors (`/proc/self/fd`), live sessions and
//! every live count of `/stats` are the baseline; after each round of cycles they must be
//! back within 2 s of the last client's close (threads and descriptors at most the
//! baseline: an idle pool thread may leave, a session's may not stay). A counting global
//! allocator gives the live heap bytes, which must be back to the baseline within a few
//! KiB after the last round. RSS (VmRSS), live heap and the release time are printed per
//! round of 1,000 cycles (`SANSRTC_CYCLES=10000` runs ten rounds).
//!
//! The tests share the process-wide counts, so they take turns.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::dtls::cert::Certificate;
use sansrtc::{Config, DataChannelInit, MediaKind, SessionDescription};
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::{echo, whip_whep};
use serde_json::Value;

mod common;
use common::{request, Peer};

#[global_allocator]
static ALLOC: sansrtc_bench::alloc::Counting = sansrtc_bench::alloc::Counting;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Cycles per round (each round is followed by the release check and the figures).
const ROUND: usize = 1_000;
/// Clients at once.
const CLIENTS: usize = 16;
/// The warm-up round, at the same concurrency.
const WARM_UP: usize = 4 * CLIENTS;
/// How soon after the last client's close everything must be back.
const RELEASE_LIMIT: Duration = Duration::from_secs(2);
/// What the live heap may differ from the baseline by after the cycles.
const HEAP_TOLERANCE: i64 = 16 * 1024;
/// What whip_whep's one Endpoint may hold more besides: the STUN transactions of the
/// last 40 s (`TRANSACTION_TTL`, at most 2^18, so that a late response still finds its
/// peer), about two per cycle here, whose table grows by doubling (64 KiB steps at
/// 1,000 and 2,000 cycles measured). A leak of a few hundred bytes per session shows
/// past it.
const ENDPOINT_TRANSACTIONS: i64 = 256 * 1024;
/// How long one client may take to connect (debug build, a loaded machine).
const CONNECT_LIMIT: Duration = Duration::from_secs(30);

static SERIAL: Mutex<()> = Mutex::new(());

fn stats(addr: SocketAddr) -> Value {
    let reply = request(addr, "GET", "/stats", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).expect("JSON")
}

/// Every live count of `/stats` (not the cumulative totals).
fn live(stats: &Value) -> Vec<(&'static str, Value)> {
    let r = &stats["runtime"];
    let e = &stats["example"];
    vec![
        ("drivers", r["drivers"].clone()),
        ("http connections", stats["http"].clone()),
        ("driver_tasks", r["driver_tasks"].clone()),
        ("driver_threads", r["driver_threads"].clone()),
        ("turn_stream_threads", r["turn_stream_threads"].clone()),
        ("udp_sockets", r["udp_sockets"].clone()),
        ("turn_streams", r["turn_streams"].clone()),
        ("commands_queued", r["commands_queued"].clone()),
        ("events_queued", r["events_queued"].clone()),
        ("sessions_live", e["sessions_live"].clone()),
        ("endpoint_peers", e["endpoint_peers"].clone()),
    ]
}

fn entries(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Threads of this process, besides the runtimes' shared blocking pools (tokio's
/// `spawn_blocking` threads share the workers' name, `tokio-rt-worker`; smol's are
/// `blocking-N`), which
/// keep the threads a busy moment made (tokio for 10 s, smol's until the process ends,
/// at most 512 and 500) whoever asked for them: they are counted apart.
fn threads() -> (usize, usize) {
    let mut own = 0;
    let mut pools = 0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if name.starts_with("blocking-") || name.starts_with("tokio-r") {
            pools += 1;
        } else {
            own += 1;
        }
    }
    (own, pools)
}

/// Every thread's name, for the failure message.
fn thread_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// Open file descriptors of this process (the directory handle reading them included,
/// the same every time).
fn fds() -> usize {
    entries("/proc/self/fd")
}

/// VmRSS in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// What must come back after a round.
struct Baseline {
    live: Vec<(&'static str, Value)>,
    threads: usize,
    names: Vec<String>,
    fds: usize,
}

impl Baseline {
    fn now(addr: SocketAddr) -> Baseline {
        Baseline {
            live: live(&stats(addr)),
            threads: threads().0,
            names: thread_names(),
            fds: fds(),
        }
    }

    /// Wait until the process is back to this; how long after `closed` it took.
    fn wait_for(&self, addr: SocketAddr, closed: Instant, label: &str) -> Duration {
        loop {
            let now = live(&stats(addr));
            let ((t, pools), f) = (threads(), fds());
            if now == self.live && t <= self.threads && f <= self.fds {
                return closed.elapsed();
            }
            assert!(
                closed.elapsed() < RELEASE_LIMIT,
                "{label}: not back {RELEASE_LIMIT:?} after the last close:\n now   {now:?}, \
                 {t} threads (and {pools} of the pools), {f} fds\n start {:?}, {} threads, {} fds\n \
                 threads now {:?}\n at the start {:?}",
                self.live,
                self.threads,
                self.fds,
                thread_names(),
                self.names
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Run `cycles` cycles on `CLIENTS` threads; returns when the last client has closed,
/// and the most threads (besides the pools) seen meanwhile, sampled every 10 ms.
fn run_cycles(cycles: usize, cycle: impl Fn() + Sync) -> (Instant, usize) {
    let next = AtomicUsize::new(0);
    let running = AtomicUsize::new(CLIENTS);
    let mut peak = 0;
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < cycles {
                    cycle();
                }
                running.fetch_sub(1, Ordering::Relaxed);
            });
        }
        while running.load(Ordering::Relaxed) > 0 {
            peak = peak.max(threads().0);
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    (Instant::now(), peak)
}

/// Frame `peer` (every millisecond) until `done`.
fn frame_until(peer: &mut Peer, what: &str, mut done: impl FnMut(&Peer) -> bool) {
    let begun = Instant::now();
    loop {
        peer.frame();
        if done(peer) {
            return;
        }
        assert!(begun.elapsed() < CONNECT_LIMIT, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Close from the client's side: the goodbyes leave on the next frames, then it goes.
fn close(mut peer: Peer) {
    peer.driver.core().close(Instant::now());
    for _ in 0..3 {
        peer.frame();
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Clients share one certificate (the servers make theirs per session, as always).
fn client(cert: &Certificate) -> Peer {
    Peer::with_config(Config {
        certificate: Some(cert.clone()),
        ..Config::default()
    })
}

/// One echo cycle: offer with a data channel, one message echoed, close.
fn echo_cycle(addr: SocketAddr, cert: &Certificate) {
    let mut peer = client(cert);
    peer.driver
        .core()
        .create_data_channel(Instant::now(), "echo", DataChannelInit::default())
        .expect("channel");
    let offer = serde_json::to_string(&peer.offer()).expect("json");
    let reply = request(
        addr,
        "POST",
        "/api/offer",
        &[("Content-Type", "application/json")],
        offer.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer: SessionDescription = serde_json::from_str(&reply.body).expect("answer");
    peer.answer(answer.sdp);
    frame_until(&mut peer, "the data channel open", |p| !p.open.is_empty());
    let channel = peer.open[0];
    peer.driver
        .core()
        .send_data(Instant::now(), channel, Bytes::from_static(b"ping"), false)
        .expect("send");
    frame_until(&mut peer, "the echo", |p| {
        p.messages.iter().any(|m| &m[..] == b"ping")
    });
    close(peer);
}

/// One WHEP viewer: connect, close.
fn viewer_cycle(addr: SocketAddr, cert: &Certificate) {
    let mut peer = client(cert);
    peer.driver
        .core()
        .add_track(MediaKind::Video, vec!["v".into()])
        .expect("track");
    let resource = peer.whip(addr, "/whep", None);
    assert!(resource.is_ok(), "{:?}", resource.err());
    frame_until(&mut peer, "the viewer connected", |p| p.connected);
    close(peer);
}

/// Rounds of cycles with the figures, against a server at `addr`; with `tasks_only` (tokio
/// and smol) the sessions may add no thread while they run.
fn cycles(
    label: &str,
    addr: SocketAddr,
    heap_tolerance: i64,
    tasks_only: bool,
    cycle: impl Fn() + Sync,
) -> usize {
    let rounds = std::env::var("SANSRTC_CYCLES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(1, |n| n.div_ceil(ROUND).max(1));
    // The warm-up's sessions released (the `/stats` counts as before it), the baseline.
    // Queued commands and events come and go (the publisher's own, right after it
    // connected): take the counts to return to when the queues are empty.
    let quiet = Instant::now();
    let before = loop {
        let now = live(&stats(addr));
        let queued = |name: &str| now.iter().any(|(n, v)| *n == name && v != &Value::from(0));
        if !queued("events_queued") && !queued("commands_queued") {
            break now;
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(10),
            "queues never empty: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = run_cycles(WARM_UP, &cycle);
    let warm = Instant::now();
    while live(&stats(addr)) != before {
        assert!(
            warm.elapsed() < Duration::from_secs(10),
            "the warm-up not released: {:?} against {before:?}",
            live(&stats(addr))
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let baseline = Baseline::now(addr);
    let heap = sansrtc_bench::alloc::live_bytes();
    let rss = rss_kib();
    eprintln!(
        "{label}: baseline after {WARM_UP} warm-up cycles: {} threads (and {} of the blocking pools), {} fds, heap {} KiB, RSS {rss} KiB",
        baseline.threads,
        threads().1,
        baseline.fds,
        heap / 1024
    );
    let mut last_heap = heap;
    let round_size = ROUND;
    for round in 1..=rounds {
        let begun = Instant::now();
        let (closed, peak) = run_cycles(round_size, &cycle);
        let took = begun.elapsed();
        // The clients' threads come and go with the round: what is above them is the
        // server's. On tokio and smol a session is tasks, so 16 sessions at once add none.
        let server_peak = peak.saturating_sub(CLIENTS);
        eprintln!(
            "{label}: at most {server_peak} threads besides the clients' and the pools during the \
             round ({} at the baseline)",
            baseline.threads
        );
        if tasks_only {
            assert!(
                server_peak <= baseline.threads,
                "{label}: {server_peak} threads with {CLIENTS} sessions live, {} without",
                baseline.threads
            );
        }
        let released = baseline.wait_for(addr, closed, label);
        last_heap = sansrtc_bench::alloc::live_bytes();
        eprintln!(
            "{label}: {} cycles ({CLIENTS} at once) in {took:.1?}; released {released:?} after the last close; \
             heap {} KiB ({:+} bytes), RSS {} KiB ({:+} KiB)",
            round * round_size,
            last_heap / 1024,
            last_heap - heap,
            rss_kib(),
            rss_kib() as i64 - rss as i64,
        );
    }
    assert!(
        last_heap - heap <= heap_tolerance,
        "{label}: live heap {last_heap} bytes after the cycles, {heap} at the start"
    );
    WARM_UP + rounds * round_size
}

fn echo_cycles(kind: RuntimeKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::new(kind).expect("runtime");
    let addr = echo::start(
        SocketAddr::new(LOOPBACK, 0),
        rt,
        media_options_for(LOOPBACK),
    )
    .expect("server");
    let cert = Certificate::generate().expect("cert");
    let tasks_only = kind != RuntimeKind::Std;
    cycles(
        &format!("echo on {kind}"),
        addr,
        HEAP_TOLERANCE,
        tasks_only,
        || echo_cycle(addr, &cert),
    );
}

fn whip_whep_cycles(kind: RuntimeKind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rt = Runtime::new(kind).expect("runtime");
    let running = whip_whep::start(
        SocketAddr::new(LOOPBACK, 0),
        &rt,
        media_options_for(LOOPBACK),
    )
    .expect("server");
    let addr = running.addr;
    let cert = Certificate::generate().expect("cert");
    // The publisher stays for every cycle, framed by a thread of its own.
    let mut publisher = client(&cert);
    publisher
        .driver
        .core()
        .add_track(MediaKind::Video, vec!["p".into()])
        .expect("track");
    publisher.whip(addr, "/whip", None).expect("publishing");
    frame_until(&mut publisher, "the publisher connected", |p| p.connected);
    let stop = Arc::new(AtomicBool::new(false));
    let framing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                publisher.frame();
                std::thread::sleep(Duration::from_millis(2));
            }
            close(publisher);
        })
    };
    let tolerance = HEAP_TOLERANCE + ENDPOINT_TRANSACTIONS;
    let tasks_only = kind != RuntimeKind::Std;
    let viewers = cycles(
        &format!("whip_whep on {kind}"),
        addr,
        tolerance,
        tasks_only,
        || viewer_cycle(addr, &cert),
    );
    let ended = running.broadcast.stats();
    assert!(
        ended.sessions_closed_by_peer == viewers as u64,
        "released by the viewers' goodbyes, not by consent expiry: {ended:?}"
    );
    assert_eq!(running.broadcast.sessions(), 1, "the publisher stayed");
    stop.store(true, Ordering::Relaxed);
    framing.join().expect("publisher");
}

#[test]
fn echo_on_tokio() {
    echo_cycles(RuntimeKind::Tokio);
}

#[test]
fn echo_on_smol() {
    echo_cycles(RuntimeKind::Smol);
}

#[test]
fn echo_on_std() {
    echo_cycles(RuntimeKind::Std);
}

#[test]
fn whip_whep_on_tokio() {
    whip_whep_cycles(RuntimeKind::Tokio);
}

#[test]
fn whip_whep_on_smol() {
    whip_whep_cycles(RuntimeKind::Smol);
}

#[test]
fn whip_whep_on_std() {
    whip_whep_cycles(RuntimeKind::Std);
}
