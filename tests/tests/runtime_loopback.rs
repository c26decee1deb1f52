//! The three runtimes over real UDP sockets on 127.0.0.1 (the loopback-only mode every
//! runtime honours): a tokio PeerConnection and a smol one negotiate by JSON, trickle
//! candidates, connect and exchange RTP both ways; the blocking std PeerConnection
//! connects to the thread-free game-loop Driver; a tokio server (one socket, the core's
//! Endpoint) serves three peers; an application that stops reading events loses media
//! events (counted), never memory, and still gets its state events.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{Config, ConnectionState, Event, MediaKind, SessionDescription, TransceiverId};
use sansrtc_std::{Options, PeerHandle};

const TIMEOUT: Duration = Duration::from_secs(20);

fn json_roundtrip(desc: &SessionDescription) -> SessionDescription {
    serde_json::from_str(&serde_json::to_string(desc).expect("json")).expect("json")
}

fn packet(seq: u16, text: &str) -> RtpPacket {
    RtpPacket {
        payload_type: 0,
        sequence_number: seq,
        timestamp: u32::from(seq) * 960,
        marker: false,
        ssrc: 0,
        payload: Bytes::from(text.to_owned()),
    }
}

/// Offer from `a`, answer from `b`, by JSON. With `b_sends`, `b` adds an audio track
/// after taking the offer (W3C addTrack reuses the offered transceiver) and returns it.
async fn negotiate(a: &PeerHandle, b: &PeerHandle, b_sends: bool) -> Option<TransceiverId> {
    let offer = a.create_offer(Default::default()).await.expect("offer");
    a.set_local_description(offer.clone())
        .await
        .expect("local offer");
    b.set_remote_description(json_roundtrip(&offer))
        .await
        .expect("remote offer");
    let track = if b_sends {
        Some(
            b.add_track(MediaKind::Audio, vec!["b".into()])
                .await
                .expect("b track"),
        )
    } else {
        None
    };
    let answer = b.create_answer().await.expect("answer");
    b.set_local_description(answer.clone())
        .await
        .expect("local answer");
    a.set_remote_description(json_roundtrip(&answer))
        .await
        .expect("remote answer");
    track
}

#[derive(Default)]
struct Seen {
    connected: bool,
    tracks: Vec<TransceiverId>,
    payloads: Vec<Bytes>,
}

/// Pump both handles' events (trickling candidates across) until `done` says so.
async fn pump(a: &PeerHandle, b: &PeerHandle, done: impl Fn(&Seen, &Seen) -> bool) -> (Seen, Seen) {
    let mut seen = (Seen::default(), Seen::default());
    let deadline = Instant::now() + TIMEOUT;
    while !done(&seen.0, &seen.1) {
        assert!(
            Instant::now() < deadline,
            "timed out: a {:?} connected={} payloads={}, b {:?} connected={} payloads={}",
            a.runtime_stats(),
            seen.0.connected,
            seen.0.payloads.len(),
            b.runtime_stats(),
            seen.1.connected,
            seen.1.payloads.len()
        );
        let mut progressed = false;
        for (me, other, s) in [(a, b, &mut seen.0), (b, a, &mut seen.1)] {
            while let Some(event) = me.try_next_event() {
                progressed = true;
                match event {
                    Event::IceCandidate(c) => {
                        let c = serde_json::from_str(&serde_json::to_string(&c).expect("json"))
                            .expect("json");
                        other.add_ice_candidate(c).await.expect("candidate");
                    }
                    Event::ConnectionStateChange(ConnectionState::Connected) => s.connected = true,
                    Event::ConnectionStateChange(ConnectionState::Failed) => panic!("failed"),
                    Event::Track(t) => s.tracks.push(t.transceiver),
                    Event::Rtp { packet, .. } => s.payloads.push(packet.payload),
                    _ => {}
                }
            }
        }
        if !progressed {
            // Every caller runs on tokio (the smol peer's driver runs on smol's own executor).
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_and_smol_exchange_media() {
    let a = sansrtc_tokio::PeerConnection::with_options(Config::default(), Options::loopback())
        .await
        .expect("tokio pc");
    let b = sansrtc_smol::PeerConnection::with_options(Config::default(), Options::loopback())
        .await
        .expect("smol pc");
    for addr in a.local_addresses().iter().chain(b.local_addresses()) {
        assert!(addr.ip().is_loopback(), "bound {addr}");
    }
    let ta = a
        .add_track(MediaKind::Audio, vec!["s".into()])
        .await
        .expect("track");
    let tb = negotiate(&a, &b, true).await.expect("b's track");
    let (_, setup_b) = pump(&a, &b, |x, y| x.connected && y.connected).await;
    assert_eq!(
        b.call(|pc, _| pc.transceivers().len()).await.expect("call"),
        1,
        "b's track reused the offered transceiver"
    );
    for seq in 0..20u16 {
        a.send_rtp(ta, packet(seq, &format!("a{seq}")))
            .await
            .expect("send");
        b.send_rtp(tb, packet(seq, &format!("b{seq}")))
            .await
            .expect("send");
    }
    let (sa, sb) = pump(&a, &b, |x, y| {
        x.payloads.len() >= 15 && y.payloads.len() >= 15
    })
    .await;
    assert!(
        sb.payloads.iter().all(|p| p.starts_with(b"a")),
        "b got a's media"
    );
    assert!(
        sa.payloads.iter().all(|p| p.starts_with(b"b")),
        "a got b's media"
    );
    assert_eq!(
        setup_b.tracks.len() + sb.tracks.len(),
        1,
        "b saw one remote track"
    );
    let stats = a.runtime_stats();
    assert!(
        stats.datagrams_sent > 20 && stats.datagrams_received > 15,
        "{stats:?}"
    );
    a.close().await;
    b.close().await;
    // A closed driver refuses calls with a typed error.
    let mut refused = false;
    for _ in 0..100 {
        if matches!(
            a.create_offer(Default::default()).await,
            Err(sansrtc_std::Error::Closed)
        ) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "calls after close fail with Error::Closed");
}

#[test]
fn blocking_std_and_game_loop_driver_connect() {
    let blocking =
        sansrtc_std::PeerConnection::with_options(Config::default(), Options::loopback())
            .expect("std pc");
    let start = Instant::now();
    let mut game = sansrtc_std::Driver::new(
        Config::default(),
        &sansrtc_std::NetConfig::loopback(),
        start,
    )
    .expect("driver");
    let track = blocking
        .add_track(MediaKind::Video, vec!["s".into()])
        .expect("track");
    let offer = blocking.create_offer(Default::default()).expect("offer");
    blocking
        .set_local_description(offer.clone())
        .expect("local");
    let now = Instant::now();
    game.core()
        .set_remote_description(now, json_roundtrip(&offer))
        .expect("remote");
    let answer = game.core().create_answer().expect("answer");
    game.core()
        .set_local_description(now, answer.clone())
        .expect("local");
    blocking
        .set_remote_description(json_roundtrip(&answer))
        .expect("remote");

    let (mut game_connected, mut blocking_connected, mut received) = (false, false, 0);
    let mut sent = false;
    // 60 frames per second.
    while received < 10 {
        assert!(start.elapsed() < TIMEOUT, "timed out");
        let now = Instant::now();
        let events: Vec<Event> = game.poll(now).collect();
        for event in events {
            match event {
                Event::IceCandidate(c) => blocking.add_ice_candidate(c).expect("candidate"),
                Event::ConnectionStateChange(ConnectionState::Connected) => game_connected = true,
                Event::Rtp { .. } => received += 1,
                _ => {}
            }
        }
        while let Some(event) = blocking.try_next_event() {
            match event {
                Event::IceCandidate(c) => game
                    .core()
                    .add_ice_candidate(Instant::now(), c)
                    .expect("candidate"),
                Event::ConnectionStateChange(ConnectionState::Connected) => {
                    blocking_connected = true
                }
                _ => {}
            }
        }
        if game_connected && blocking_connected && !sent {
            sent = true;
            for seq in 0..20 {
                blocking
                    .send_rtp(track, packet(seq, "frame"))
                    .expect("send");
            }
        }
        std::thread::sleep(Duration::from_millis(16));
    }
    assert!(game.stats().datagrams_received > 10);
    blocking.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_server_serves_three_peers_on_one_socket() {
    let server = sansrtc_tokio::Server::bind(Options::loopback())
        .await
        .expect("server");
    assert_eq!(server.local_addresses().len(), 1);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let c = sansrtc_tokio::PeerConnection::with_options(Config::default(), Options::loopback())
            .await
            .expect("client");
        let t = c
            .add_track(MediaKind::Audio, vec!["s".into()])
            .await
            .expect("track");
        let offer = c.create_offer(Default::default()).await.expect("offer");
        c.set_local_description(offer.clone()).await.expect("local");
        let (id, answer) = server
            .accept(Config::default(), json_roundtrip(&offer))
            .await
            .expect("accept");
        c.set_remote_description(json_roundtrip(&answer))
            .await
            .expect("remote");
        clients.push((c, t));
        ids.push(id);
    }
    let deadline = Instant::now() + TIMEOUT;
    let mut connected = 0;
    let mut received: Vec<(sansrtc::PeerId, Bytes)> = Vec::new();
    let mut sent = false;
    while received.len() < 6 {
        assert!(
            Instant::now() < deadline,
            "timed out: {connected} connected, {} packets",
            received.len()
        );
        for (i, (c, _)) in clients.iter().enumerate() {
            while let Some(event) = c.try_next_event() {
                if let Event::IceCandidate(cand) = event {
                    server
                        .with_peer(ids[i], move |pc, now| pc.add_ice_candidate(now, cand))
                        .await
                        .expect("peer")
                        .expect("candidate");
                }
            }
        }
        while let Some((id, event)) = server.try_next_event() {
            match event {
                Event::ConnectionStateChange(ConnectionState::Connected) => connected += 1,
                Event::Rtp { packet, .. } => received.push((id, packet.payload)),
                _ => {}
            }
        }
        if connected == 3 && !sent {
            sent = true;
            for (i, (c, t)) in clients.iter().enumerate() {
                for seq in 0..3 {
                    c.send_rtp(*t, packet(seq, &format!("client {i}")))
                        .await
                        .expect("send");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (id, payload) in &received {
        let i = ids.iter().position(|x| x == id).expect("known peer");
        assert_eq!(
            payload,
            &Bytes::from(format!("client {i}")),
            "routed to the right peer"
        );
    }
    server.remove(ids[0]).await.expect("remove");
    assert!(matches!(
        server.with_peer(ids[0], |_, _| ()).await,
        Err(sansrtc_std::Error::NoSuchPeer)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_events_drop_media_not_memory() {
    let small = Options {
        capacity: sansrtc_std::Capacity {
            commands: 64,
            events: 16,
        },
        ..Options::loopback()
    };
    let a = sansrtc_tokio::PeerConnection::with_options(Config::default(), Options::loopback())
        .await
        .expect("a");
    let b = sansrtc_tokio::PeerConnection::with_options(Config::default(), small)
        .await
        .expect("b");
    let t = a
        .add_track(MediaKind::Audio, vec!["s".into()])
        .await
        .expect("track");
    negotiate(&a, &b, false).await;
    pump(&a, &b, |x, y| x.connected && y.connected).await;
    // b's application stops reading; a sends 500 packets.
    for seq in 0..500u16 {
        a.send_rtp(t, packet(seq, "x")).await.expect("send");
        if seq % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    while b.runtime_stats().events_dropped == 0 {
        assert!(
            Instant::now() < deadline,
            "no media event was dropped: {:?}",
            b.runtime_stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // At most the channel's capacity is waiting (sampled without reading: draining
    // would make room the driver fills again at once); the driver still answers calls.
    let queue = b.events();
    assert_eq!(queue.capacity(), Some(16));
    for _ in 0..20 {
        assert!(
            queue.len() <= 16,
            "{} events queued past the bound",
            queue.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!queue.is_empty(), "the unread events are still there");
    assert_eq!(
        b.connection_state().await.expect("state"),
        ConnectionState::Connected
    );
}

/// Dropping every handle closes the core and stops the driver, which releases its socket
/// (the port can be bound again), on each runtime.
#[test]
fn dropping_the_last_handle_releases_the_socket() {
    fn released(addr: std::net::SocketAddr) -> bool {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if std::net::UdpSocket::bind(addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let tokio_pc = rt
        .block_on(sansrtc_tokio::PeerConnection::with_options(
            Config::default(),
            Options::loopback(),
        ))
        .expect("tokio pc");
    let smol_pc = smol::block_on(sansrtc_smol::PeerConnection::with_options(
        Config::default(),
        Options::loopback(),
    ))
    .expect("smol pc");
    let std_pc = sansrtc_std::PeerConnection::with_options(Config::default(), Options::loopback())
        .expect("std pc");
    let addrs = [
        tokio_pc.local_addresses()[0],
        smol_pc.local_addresses()[0],
        std_pc.local_addresses()[0],
    ];
    let clone = tokio_pc.clone();
    drop(tokio_pc);
    // A clone keeps it alive.
    assert!(
        std::net::UdpSocket::bind(addrs[0]).is_err(),
        "still bound while a clone lives"
    );
    drop(clone);
    drop(smol_pc);
    drop(std_pc);
    for addr in addrs {
        assert!(released(addr), "{addr} released once every handle is gone");
    }
}
