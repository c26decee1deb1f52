//! On tokio a driver is one task: `runtime_stats()` counts it (and its socket) while it
//! runs, and the counts return when it ends by `close()` or when every handle is dropped.
//! The only test of its own process, so the process-wide counts are its alone.

use std::time::{Duration, Instant};

use sansrtc_tokio::{runtime_stats, Options, PeerConnection, ResourceStats, Server};

fn live(s: &ResourceStats) -> [u64; 5] {
    [
        s.tokio_drivers,
        s.endpoint_drivers,
        s.driver_tasks,
        s.udp_sockets,
        s.events_queued + s.commands_queued,
    ]
}

async fn wait_for(start: &ResourceStats) {
    let begun = Instant::now();
    while live(&runtime_stats()) != live(start) {
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "{:?} (start {start:?})",
            runtime_stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn tasks_and_sockets_are_counted_until_the_driver_ends() {
    let start = runtime_stats();
    let pc = PeerConnection::with_options(sansrtc::Config::default(), Options::loopback())
        .await
        .expect("pc");
    let during = runtime_stats();
    assert_eq!(during.tokio_drivers, start.tokio_drivers + 1);
    assert_eq!(during.driver_tasks, start.driver_tasks + 1);
    assert_eq!(during.udp_sockets, start.udp_sockets + 1);
    assert_eq!(during.driver_threads, start.driver_threads);
    pc.close().await;
    drop(pc);
    wait_for(&start).await;

    let server = Server::bind(Options::loopback()).await.expect("server");
    let during = runtime_stats();
    assert_eq!(during.endpoint_drivers, start.endpoint_drivers + 1);
    drop(server);
    wait_for(&start).await;
}
