//! `runtime_stats()` counts go back down when what they count ends: guards dropped
//! normally and by a panic, a blocking PeerConnection ended by `close()` and one whose
//! handles are all dropped, a server, a game loop's `Driver`. Its own process (an
//! integration test), and each test holds `SERIAL`, so the process-wide counts are this
//! test's alone.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sansrtc::{Config, DataChannelInit};
use sansrtc_std::{
    runtime_stats, DriverGuard, Gauge, NetConfig, Options, PeerConnection, ResourceStats,
    RuntimeKind, Server,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The live counts (not the cumulative totals).
fn live(s: &ResourceStats) -> [u64; 12] {
    [
        s.std_drivers,
        s.tokio_drivers,
        s.smol_drivers,
        s.game_drivers,
        s.endpoint_drivers,
        s.driver_tasks,
        s.driver_threads,
        s.turn_stream_threads,
        s.udp_sockets,
        s.turn_streams,
        s.commands_queued,
        s.events_queued,
    ]
}

/// Poll until the live counts are back to `start` (threads end on their own schedule:
/// readers notice a stopped driver within their poll interval).
fn wait_for_baseline(start: &ResourceStats) {
    let begun = Instant::now();
    while live(&runtime_stats()) != live(start) {
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "counts did not return: {:?} (start {:?})",
            runtime_stats(),
            start
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn guards_give_their_counts_back_even_on_panic() {
    let _serial = serial();
    let start = runtime_stats();
    let guard = DriverGuard::new(RuntimeKind::Tokio, true, 3);
    let threads = Gauge::DriverThreads.hold(2);
    let now = runtime_stats();
    assert_eq!(now.tokio_drivers, start.tokio_drivers + 1);
    assert_eq!(now.endpoint_drivers, start.endpoint_drivers + 1);
    assert_eq!(now.driver_tasks, start.driver_tasks + 1);
    assert_eq!(now.udp_sockets, start.udp_sockets + 3);
    assert_eq!(now.driver_threads, start.driver_threads + 2);
    drop(guard);
    drop(threads);
    assert_eq!(live(&runtime_stats()), live(&start));

    // A thread that panics while holding guards gives them back as it unwinds.
    let panicked = std::thread::spawn(|| {
        let _driver = DriverGuard::new(RuntimeKind::Std, false, 2);
        let _thread = Gauge::DriverThreads.hold(1);
        panic!("the driver failed");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(live(&runtime_stats()), live(&start));
}

#[test]
fn a_closed_peer_connection_releases_everything() {
    let _serial = serial();
    let start = runtime_stats();
    let pc = PeerConnection::with_options(Config::default(), Options::loopback()).expect("pc");
    // Unread events stay queued: the data channel asks for negotiation.
    pc.create_data_channel("chat", DataChannelInit::default())
        .expect("channel");
    let during = runtime_stats();
    assert_eq!(during.std_drivers, start.std_drivers + 1);
    assert_eq!(during.endpoint_drivers, start.endpoint_drivers);
    assert_eq!(during.udp_sockets, start.udp_sockets + 1);
    // A reader per socket, the command thread and the driver (the stream-report thread
    // ends at once when there are no TURN streams).
    assert!(
        (start.driver_threads + 3..=start.driver_threads + 4).contains(&during.driver_threads),
        "{during:?}"
    );
    // The driver forwards the event just after answering the call.
    let begun = Instant::now();
    while runtime_stats().events_queued == start.events_queued {
        assert!(begun.elapsed() < Duration::from_secs(10), "no event queued");
        std::thread::sleep(Duration::from_millis(5));
    }
    pc.close();
    // The handle still lives (its queue too), but the driver, its threads and sockets end.
    let begun = Instant::now();
    loop {
        let now = runtime_stats();
        if now.std_drivers == start.std_drivers
            && now.driver_threads == start.driver_threads
            && now.udp_sockets == start.udp_sockets
        {
            break;
        }
        assert!(begun.elapsed() < Duration::from_secs(10), "{now:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(pc);
    wait_for_baseline(&start);
}

#[test]
fn a_peer_connection_whose_handles_are_dropped_releases_everything() {
    let _serial = serial();
    let start = runtime_stats();
    let pc = PeerConnection::with_options(Config::default(), Options::loopback()).expect("pc");
    let handle = pc.handle().clone();
    pc.create_data_channel("chat", DataChannelInit::default())
        .expect("channel");
    drop(pc);
    // One handle left: still alive.
    assert_eq!(runtime_stats().std_drivers, start.std_drivers + 1);
    drop(handle);
    wait_for_baseline(&start);
}

#[test]
fn a_server_counts_as_an_endpoint_and_ends() {
    let _serial = serial();
    let start = runtime_stats();
    let server = Server::bind(Options::loopback()).expect("server");
    let during = runtime_stats();
    assert_eq!(during.std_drivers, start.std_drivers + 1);
    assert_eq!(during.endpoint_drivers, start.endpoint_drivers + 1);
    drop(server);
    wait_for_baseline(&start);
}

#[test]
fn a_game_loop_driver_counts_until_dropped() {
    let _serial = serial();
    let start = runtime_stats();
    let driver =
        sansrtc_std::Driver::new(Config::default(), &NetConfig::loopback(), Instant::now())
            .expect("driver");
    let during = runtime_stats();
    assert_eq!(during.game_drivers, start.game_drivers + 1);
    assert_eq!(during.udp_sockets, start.udp_sockets + 1);
    assert_eq!(during.driver_threads, start.driver_threads);
    drop(driver);
    assert_eq!(live(&runtime_stats()), live(&start));
}

#[test]
fn a_turn_stream_and_its_threads_are_counted_until_they_end() {
    use sansrtc::turn::ServerUrl;
    use sansrtc_std::stream::{spawn_stream, StreamInput, StreamTarget, TlsRoots};
    let _serial = serial();
    let start = runtime_stats();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let url = format!(
        "turn:127.0.0.1:{}?transport=tcp",
        listener.local_addr().expect("addr").port()
    );
    let target = StreamTarget {
        parsed: ServerUrl::parse(&url).expect("url"),
        url,
    };
    let (tx, rx) = async_channel::bounded(16);
    let slot =
        spawn_stream(0, target, NetConfig::loopback(), TlsRoots::default(), tx).expect("stream");
    let (server_side, _) = listener.accept().expect("accept");
    // The driver keeps the stream's control (dropping it shuts the stream).
    let control = match rx.recv_blocking() {
        Ok(StreamInput::Connected { control, .. }) => control,
        _ => panic!("the stream did not connect"),
    };
    let during = runtime_stats();
    assert_eq!(during.turn_streams, start.turn_streams + 1);
    // The connecting-and-reading thread and the writer.
    assert_eq!(during.turn_stream_threads, start.turn_stream_threads + 2);
    // The server hangs up (the reader ends) and the driver drops its slot (the writer
    // ends).
    drop(server_side);
    drop(slot);
    drop(control);
    wait_for_baseline(&start);
}
