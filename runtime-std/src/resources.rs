//! What every driver in the process holds right now, for [`runtime_stats`]: drivers per
//! runtime, driver tasks and threads, UDP sockets and TURN streams, commands and events
//! waiting in handles' channels, and the totals of every driver's [`RuntimeCounters`].
//!
//! Live counts are process-wide atomics moved by RAII guards ([`Held`]): whoever owns a
//! resource (a driver task's future, a thread's closure, a TURN stream's reader) holds the
//! guard, and its `Drop` gives the count back, so a panic or an early return cannot leak
//! a count. Queue lengths and counter totals are read, not tracked: live drivers register
//! a weak reference to their channels and counters ([`register`]; one short lock when a
//! driver starts and when stats are read, none on a hot path), and a driver's counters
//! are added to the retired totals when they are dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::driver::RuntimeCounters;

/// Which runtime drives a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeKind {
    /// `sansrtc-std`'s threads (the blocking `PeerConnection` and `Server`).
    Std,
    /// A tokio task.
    Tokio,
    /// A smol task.
    Smol,
    /// The thread-free [`crate::Driver`] a game loop polls.
    Game,
}

/// One process-wide count a guard holds part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gauge {
    /// Cores driven by `sansrtc-std` threads.
    StdDrivers,
    /// Cores driven by tokio tasks.
    TokioDrivers,
    /// Cores driven by smol tasks.
    SmolDrivers,
    /// Cores driven by a game loop's [`crate::Driver`].
    GameDrivers,
    /// Of all drivers, the ones driving an Endpoint (server mode).
    EndpointDrivers,
    /// Async driver tasks alive (tokio and smol).
    DriverTasks,
    /// Threads of the std runtime alive (readers, command, stream-report and driver
    /// threads).
    DriverThreads,
    /// TURN stream threads alive (connecting, reading, writing).
    TurnStreamThreads,
    /// UDP sockets owned by drivers.
    UdpSockets,
    /// TURN streams (TCP or TLS) connected and not yet ended.
    TurnStreams,
}

struct Live {
    std_drivers: AtomicU64,
    tokio_drivers: AtomicU64,
    smol_drivers: AtomicU64,
    game_drivers: AtomicU64,
    endpoint_drivers: AtomicU64,
    driver_tasks: AtomicU64,
    driver_threads: AtomicU64,
    turn_stream_threads: AtomicU64,
    udp_sockets: AtomicU64,
    turn_streams: AtomicU64,
}

static LIVE: Live = Live {
    std_drivers: AtomicU64::new(0),
    tokio_drivers: AtomicU64::new(0),
    smol_drivers: AtomicU64::new(0),
    game_drivers: AtomicU64::new(0),
    endpoint_drivers: AtomicU64::new(0),
    driver_tasks: AtomicU64::new(0),
    driver_threads: AtomicU64::new(0),
    turn_stream_threads: AtomicU64::new(0),
    udp_sockets: AtomicU64::new(0),
    turn_streams: AtomicU64::new(0),
};

impl Gauge {
    fn counter(self) -> &'static AtomicU64 {
        match self {
            Gauge::StdDrivers => &LIVE.std_drivers,
            Gauge::TokioDrivers => &LIVE.tokio_drivers,
            Gauge::SmolDrivers => &LIVE.smol_drivers,
            Gauge::GameDrivers => &LIVE.game_drivers,
            Gauge::EndpointDrivers => &LIVE.endpoint_drivers,
            Gauge::DriverTasks => &LIVE.driver_tasks,
            Gauge::DriverThreads => &LIVE.driver_threads,
            Gauge::TurnStreamThreads => &LIVE.turn_stream_threads,
            Gauge::UdpSockets => &LIVE.udp_sockets,
            Gauge::TurnStreams => &LIVE.turn_streams,
        }
    }

    /// Count `n` more until the returned guard is dropped.
    pub fn hold(self, n: u64) -> Held {
        self.counter().fetch_add(n, Ordering::Relaxed);
        Held { gauge: self, n }
    }

    fn read(self) -> u64 {
        self.counter().load(Ordering::Relaxed)
    }
}

/// Part of a [`Gauge`], given back when dropped.
#[derive(Debug)]
#[must_use = "the count is given back when the guard is dropped"]
pub struct Held {
    gauge: Gauge,
    n: u64,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.counter().fetch_sub(self.n, Ordering::Relaxed);
    }
}

/// What a live driver holds: its runtime's driver count, the Endpoint count if it drives
/// one, and its UDP sockets. Held by the driver task's future, the std driver thread or
/// the game loop's `Driver`.
#[derive(Debug)]
#[must_use = "the counts are given back when the guard is dropped"]
pub struct DriverGuard {
    _held: Vec<Held>,
}

impl DriverGuard {
    /// Count a driver of `runtime` (an Endpoint's if `endpoint`) owning `udp_sockets`.
    pub fn new(runtime: RuntimeKind, endpoint: bool, udp_sockets: usize) -> DriverGuard {
        let gauge = match runtime {
            RuntimeKind::Std => Gauge::StdDrivers,
            RuntimeKind::Tokio => Gauge::TokioDrivers,
            RuntimeKind::Smol => Gauge::SmolDrivers,
            RuntimeKind::Game => Gauge::GameDrivers,
        };
        let mut held = vec![gauge.hold(1), Gauge::UdpSockets.hold(udp_sockets as u64)];
        if endpoint {
            held.push(Gauge::EndpointDrivers.hold(1));
        }
        if matches!(runtime, RuntimeKind::Tokio | RuntimeKind::Smol) {
            held.push(Gauge::DriverTasks.hold(1));
        }
        DriverGuard { _held: held }
    }
}

/// Something a live driver registers so that [`runtime_stats`] can read it.
pub trait Probe: Send + Sync {
    /// Add what it holds now to `stats`.
    fn add_to(&self, stats: &mut ResourceStats);
}

/// Weak references to the probes of live drivers; dead ones are pruned whenever one is
/// added or stats are read, so it holds at most the live drivers plus those that ended
/// since.
static PROBES: Mutex<Vec<Weak<dyn Probe>>> = Mutex::new(Vec::new());

/// Register a live driver's probe (kept as a weak reference: it goes when the probe does).
pub fn register(probe: Weak<dyn Probe>) {
    let mut probes = PROBES.lock().unwrap_or_else(|e| e.into_inner());
    probes.retain(|p| p.strong_count() > 0);
    probes.push(probe);
}

/// Counters of drivers that ended, added when their counters were dropped.
pub(crate) static RETIRED: Retired = Retired::new();

pub(crate) struct Retired {
    datagrams_received: AtomicU64,
    datagrams_sent: AtomicU64,
    send_errors: AtomicU64,
    events_dropped: AtomicU64,
    events_coalesced: AtomicU64,
    turn_streams_connected: AtomicU64,
    turn_stream_failures: AtomicU64,
}

impl Retired {
    const fn new() -> Retired {
        Retired {
            datagrams_received: AtomicU64::new(0),
            datagrams_sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            events_coalesced: AtomicU64::new(0),
            turn_streams_connected: AtomicU64::new(0),
            turn_stream_failures: AtomicU64::new(0),
        }
    }

    pub(crate) fn add(&self, c: &RuntimeCounters) {
        let add = |a: &AtomicU64, n: u64| a.fetch_add(n, Ordering::Relaxed);
        add(&self.datagrams_received, c.datagrams_received);
        add(&self.datagrams_sent, c.datagrams_sent);
        add(&self.send_errors, c.send_errors);
        add(&self.events_dropped, c.events_dropped);
        add(&self.events_coalesced, c.events_coalesced);
        add(&self.turn_streams_connected, c.turn_streams_connected);
        add(&self.turn_stream_failures, c.turn_stream_failures);
    }

    fn read(&self) -> RuntimeCounters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RuntimeCounters {
            datagrams_received: get(&self.datagrams_received),
            datagrams_sent: get(&self.datagrams_sent),
            send_errors: get(&self.send_errors),
            events_dropped: get(&self.events_dropped),
            events_coalesced: get(&self.events_coalesced),
            turn_streams_connected: get(&self.turn_streams_connected),
            turn_stream_failures: get(&self.turn_stream_failures),
        }
    }
}

/// Add `b` to `a`, field by field.
pub(crate) fn add_counters(a: &mut RuntimeCounters, b: &RuntimeCounters) {
    a.datagrams_received += b.datagrams_received;
    a.datagrams_sent += b.datagrams_sent;
    a.send_errors += b.send_errors;
    a.events_dropped += b.events_dropped;
    a.events_coalesced += b.events_coalesced;
    a.turn_streams_connected += b.turn_streams_connected;
    a.turn_stream_failures += b.turn_stream_failures;
}

/// The process's sansrtc resources at one moment (see [`runtime_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceStats {
    /// Cores driven by `sansrtc-std` threads.
    pub std_drivers: u64,
    /// Cores driven by tokio tasks.
    pub tokio_drivers: u64,
    /// Cores driven by smol tasks.
    pub smol_drivers: u64,
    /// Cores driven by game loops' `Driver`s.
    pub game_drivers: u64,
    /// Of all drivers, those driving an Endpoint (the rest drive one PeerConnection).
    pub endpoint_drivers: u64,
    /// Async driver tasks alive (tokio and smol).
    pub driver_tasks: u64,
    /// Threads of the std runtime alive.
    pub driver_threads: u64,
    /// TURN stream threads alive (every runtime).
    pub turn_stream_threads: u64,
    /// UDP sockets owned by drivers.
    pub udp_sockets: u64,
    /// TURN streams connected and not yet ended.
    pub turn_streams: u64,
    /// Commands waiting in live handles' channels for their driver.
    pub commands_queued: u64,
    /// Events waiting in live handles' channels for the application.
    pub events_queued: u64,
    /// Every driver's counters added up, those that ended included.
    pub totals: RuntimeCounters,
}

impl ResourceStats {
    /// Drivers alive on every runtime.
    pub fn drivers(&self) -> u64 {
        self.std_drivers + self.tokio_drivers + self.smol_drivers + self.game_drivers
    }
}

/// The process's sansrtc resources now: cheap (a few atomic loads, and one short lock
/// over the live drivers' weak references to read their queue lengths and counters).
pub fn runtime_stats() -> ResourceStats {
    let mut stats = ResourceStats {
        std_drivers: Gauge::StdDrivers.read(),
        tokio_drivers: Gauge::TokioDrivers.read(),
        smol_drivers: Gauge::SmolDrivers.read(),
        game_drivers: Gauge::GameDrivers.read(),
        endpoint_drivers: Gauge::EndpointDrivers.read(),
        driver_tasks: Gauge::DriverTasks.read(),
        driver_threads: Gauge::DriverThreads.read(),
        turn_stream_threads: Gauge::TurnStreamThreads.read(),
        udp_sockets: Gauge::UdpSockets.read(),
        turn_streams: Gauge::TurnStreams.read(),
        commands_queued: 0,
        events_queued: 0,
        totals: RETIRED.read(),
    };
    let live: Vec<Arc<dyn Probe>> = {
        let mut probes = PROBES.lock().unwrap_or_else(|e| e.into_inner());
        probes.retain(|p| p.strong_count() > 0);
        probes.iter().filter_map(Weak::upgrade).collect()
    };
    // Read (and drop) outside the lock: the last reference of a probe may go here.
    for probe in live {
        probe.add_to(&mut stats);
    }
    stats
}
