//! The runtimes' TURN paths against coturn on 127.0.0.1, both peers under the relay
//! policy so media can only flow through relays: a tokio peer over
//! `turn:...?transport=tcp` and a smol peer over `turns:` (TLS, coturn's self-signed
//! certificate as the only trusted root) connect and exchange RTP; a blocking std peer
//! over `turn:localhost` (a host name the runtime resolves, UDP) and a tokio peer over
//! `turns:localhost` (SNI by name) do the same. Servers the `NetConfig` does not allow,
//! and a "server" that sends junk on the stream, are refused and counted (and reported to
//! the application as `IceCandidateError`); coturn also answers server-reflexive gathering
//! as a STUN server. Prints the time to connected per pairing.
//!
//! `unshare -n sh -c 'ip link set lo up && cargo test -p sansrtc-tests --test runtime_turn'`

use std::io::Write;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::ice::CandidateKind;
use sansrtc::media::RtpPacket;
use sansrtc::{
    Config, ConnectionState, Event, IceServer, IceTransportPolicy, MediaKind, SessionDescription,
};
use sansrtc_std::stream::TlsRoots;
use sansrtc_std::{Options, PeerHandle};
use sansrtc_tests::coturn::Coturn;

const TIMEOUT: Duration = Duration::from_secs(20);

fn relay_config(turn: &Coturn, url: String) -> Config {
    Config {
        ice_servers: vec![IceServer {
            urls: vec![url],
            username: Some(turn.username().into()),
            credential: Some(turn.password().into()),
        }],
        ice_transport_policy: IceTransportPolicy::Relay,
        ..Default::default()
    }
}

fn options(turn: &Coturn) -> Options {
    Options {
        tls_roots: TlsRoots::only(vec![turn.certificate_der().to_vec()]),
        ..Options::loopback()
    }
}

fn json_roundtrip(desc: &SessionDescription) -> SessionDescription {
    serde_json::from_str(&serde_json::to_string(desc).expect("json")).expect("json")
}

fn packet(seq: u16) -> RtpPacket {
    RtpPacket {
        payload_type: 0,
        sequence_number: seq,
        timestamp: u32::from(seq) * 960,
        marker: false,
        ssrc: 0,
        payload: Bytes::from_static(b"relayed audio"),
    }
}

/// Negotiate (a offers, both send audio), trickle, wait for both connected, then send RTP
/// both ways until each side received some. Returns the time to both connected.
async fn connect_and_exchange(a: &PeerHandle, b: &PeerHandle) -> Duration {
    let start = Instant::now();
    let ta = a
        .add_track(MediaKind::Audio, vec!["a".into()])
        .await
        .expect("a track");
    let offer = a.create_offer(Default::default()).await.expect("offer");
    a.set_local_description(offer.clone()).await.expect("local");
    b.set_remote_description(json_roundtrip(&offer))
        .await
        .expect("remote");
    let tb = b
        .add_track(MediaKind::Audio, vec!["b".into()])
        .await
        .expect("b track");
    let answer = b.create_answer().await.expect("answer");
    b.set_local_description(answer.clone())
        .await
        .expect("local");
    a.set_remote_description(json_roundtrip(&answer))
        .await
        .expect("remote");

    let deadline = Instant::now() + TIMEOUT;
    let mut connected = [false, false];
    let mut connected_at = None;
    let mut received = [0usize, 0];
    let mut seq = 0u16;
    let mut relay_candidates = [0usize, 0];
    let mut ended = [false, false];
    while received.iter().any(|r| *r < 5) {
        assert!(
            Instant::now() < deadline,
            "timed out: connected {connected:?}, received {received:?}, relay candidates \
             {relay_candidates:?}; a {:?} {:?}, b {:?} {:?}",
            a.runtime_stats(),
            a.call(|pc, _| pc.turn_allocations()).await,
            b.runtime_stats(),
            b.call(|pc, _| pc.turn_allocations()).await,
        );
        let mut progressed = false;
        for (i, (me, other)) in [(a, b), (b, a)].into_iter().enumerate() {
            while let Some(event) = me.try_next_event() {
                progressed = true;
                match event {
                    Event::IceCandidate(c) => {
                        assert!(
                            !ended[i],
                            "peer {i}: candidate after end-of-candidates: {}",
                            c.candidate
                        );
                        ended[i] = c.candidate.is_empty();
                        if c.candidate.contains(" typ relay") {
                            relay_candidates[i] += 1;
                        }
                        assert!(
                            c.candidate.is_empty() || c.candidate.contains(" typ relay"),
                            "the relay policy offers relay candidates only: {}",
                            c.candidate
                        );
                        let c = serde_json::from_str(&serde_json::to_string(&c).expect("json"))
                            .expect("json");
                        other.add_ice_candidate(c).await.expect("candidate");
                    }
                    Event::ConnectionStateChange(ConnectionState::Connected) => connected[i] = true,
                    Event::ConnectionStateChange(ConnectionState::Failed) => {
                        panic!("peer {i} failed")
                    }
                    Event::IceCandidateError { url, error, .. } => {
                        panic!("peer {i}: TURN {url} failed: {error}")
                    }
                    Event::Rtp { .. } => received[i] += 1,
                    _ => {}
                }
            }
        }
        if connected == [true, true] {
            connected_at.get_or_insert_with(|| start.elapsed());
            seq = seq.wrapping_add(1);
            a.send_rtp(ta, packet(seq)).await.expect("a sends");
            b.send_rtp(tb, packet(seq)).await.expect("b sends");
        }
        if !progressed {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for pc in [a, b] {
        let pair = pc
            .call(|pc, _| pc.selected_pair())
            .await
            .expect("driver")
            .expect("selected pair");
        assert_eq!(pair.local_kind, CandidateKind::Relay, "{pair:?}");
        let allocations = pc
            .call(|pc, _| pc.turn_allocations())
            .await
            .expect("driver");
        assert!(
            allocations
                .iter()
                .any(|(_, relayed)| *relayed == Some(pair.local)),
            "the selected pair's local side is our allocation: {pair:?} {allocations:?}"
        );
    }
    connected_at.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_over_tcp_and_smol_over_tls_relay_media() {
    let turn = Coturn::start().expect("turnserver");
    let a = sansrtc_tokio::PeerConnection::with_options(
        relay_config(&turn, turn.tcp_url()),
        options(&turn),
    )
    .await
    .expect("tokio pc");
    let b = sansrtc_smol::PeerConnection::with_options(
        relay_config(&turn, turn.tls_url()),
        options(&turn),
    )
    .await
    .expect("smol pc");
    let took = connect_and_exchange(&a, &b).await;
    eprintln!(
        "relay-only connected, tokio over TURN/TCP with smol over TURN/TLS: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    for pc in [&*a, &*b] {
        let stats = pc.runtime_stats();
        assert_eq!(stats.turn_streams_connected, 1, "{stats:?}");
        assert_eq!(stats.turn_stream_failures, 0, "{stats:?}");
        assert_eq!(stats.send_errors, 0, "{stats:?}");
    }
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_over_udp_by_name_and_tokio_over_tls_by_name_relay_media() {
    let turn = Coturn::start().expect("turnserver");
    let udp = format!("turn:localhost:{}", turn.udp_addr().port());
    let tls = format!("turns:localhost:{}", turn.tls_addr().port());
    let (config, opts) = (relay_config(&turn, udp), options(&turn));
    // The blocking PeerConnection's handle is the same async API; its driver is a thread.
    let a = tokio::task::spawn_blocking(move || {
        sansrtc_std::PeerConnection::with_options(config, opts).expect("std pc")
    })
    .await
    .expect("join");
    let b = sansrtc_tokio::PeerConnection::with_options(relay_config(&turn, tls), options(&turn))
        .await
        .expect("tokio pc");
    let took = connect_and_exchange(a.handle(), &b).await;
    eprintln!(
        "relay-only connected, std over TURN/UDP (host name) with tokio over TURN/TLS (host name): {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    assert_eq!(a.handle().runtime_stats().turn_streams_connected, 0);
    assert_eq!(b.runtime_stats().turn_streams_connected, 1);
    a.handle().close().await;
    b.close().await;
}

/// Wait until the handle's counters say a TURN stream failed.
async fn wait_stream_failure(pc: &PeerHandle, within: Duration) {
    let deadline = Instant::now() + within;
    while pc.runtime_stats().turn_stream_failures == 0 {
        assert!(Instant::now() < deadline, "{:?}", pc.runtime_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pc.runtime_stats().turn_streams_connected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_mode_refuses_a_server_elsewhere_without_connecting() {
    let config = Config {
        ice_servers: vec![IceServer {
            // TEST-NET-1: a connection attempt would hang until the connect timeout.
            urls: vec![
                "turn:192.0.2.1:3478?transport=tcp".into(),
                "turns:192.0.2.1".into(),
            ],
            username: Some("u".into()),
            credential: Some("p".into()),
        }],
        ..Default::default()
    };
    let pc = sansrtc_tokio::PeerConnection::with_options(config, Options::loopback())
        .await
        .expect("pc");
    // Refused at once (well under the 10 s connect timeout).
    wait_stream_failure(&pc, Duration::from_secs(1)).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while pc.runtime_stats().turn_stream_failures < 2 {
        assert!(Instant::now() < deadline, "{:?}", pc.runtime_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The application hears why, and gathering does not wait for them.
    pc.add_track(MediaKind::Audio, vec!["a".into()])
        .await
        .expect("track");
    let offer = pc.create_offer(Default::default()).await.expect("offer");
    pc.set_local_description(offer).await.expect("local");
    let mut unreachable = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        assert!(
            Instant::now() < deadline,
            "no end-of-candidates: {unreachable:?}"
        );
        match pc.try_next_event() {
            Some(Event::IceCandidateError { url, error, .. }) => {
                assert_eq!(error, sansrtc::turn::TurnError::Unreachable);
                unreachable.push(url);
            }
            Some(Event::IceCandidate(c)) if c.candidate.is_empty() => break,
            Some(_) => {}
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    unreachable.sort();
    assert_eq!(
        unreachable,
        vec![
            "turn:192.0.2.1:3478?transport=tcp".to_owned(),
            "turns:192.0.2.1".to_owned()
        ]
    );
    pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_junk_is_closed_and_counted() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        // A TLS record header where a STUN or ChannelData message should start; then keep
        // writing (a bounded reader must close the stream, not buffer it).
        let junk = [0x16u8; 4096];
        let mut written = 0usize;
        while stream.write_all(&junk).is_ok() && written < 64 << 20 {
            written += junk.len();
        }
        written
    });
    let config = Config {
        ice_servers: vec![IceServer {
            urls: vec![format!("turn:127.0.0.1:{port}?transport=tcp")],
            username: Some("u".into()),
            credential: Some("p".into()),
        }],
        ..Default::default()
    };
    let pc = sansrtc_tokio::PeerConnection::with_options(config, Options::loopback())
        .await
        .expect("pc");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pc.runtime_stats().turn_stream_failures == 0 {
        assert!(Instant::now() < deadline, "{:?}", pc.runtime_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(pc.runtime_stats().turn_streams_connected, 1);
    let written = tokio::task::spawn_blocking(move || server.join().expect("server"))
        .await
        .expect("join");
    assert!(
        written < 64 << 20,
        "the stream was closed ({written} bytes written)"
    );
    pc.close().await;
}

/// A TCP proxy to `to` that holds each connection for `delay` before relaying: a slow
/// TLS handshake, as to a far server.
fn slow_proxy(to: std::net::SocketAddr, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = std::net::TcpStream::connect(to) else {
                    return;
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    })
                };
                let (c2, s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                pipe(client, server);
                pipe(s2, c2);
            });
        }
    });
    port
}

/// The core starts a late server's allocation as soon as its stream opens and trickles
/// its relay candidate; gathering waits for it, so end-of-candidates comes after it (the
/// exchange asserts no candidate follows end-of-candidates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_connects_after_gathering_began_still_connects() {
    let turn = Coturn::start().expect("turnserver");
    let port = slow_proxy(turn.tls_addr(), Duration::from_millis(700));
    let a = sansrtc_tokio::PeerConnection::with_options(
        relay_config(&turn, format!("turns:127.0.0.1:{port}")),
        options(&turn),
    )
    .await
    .expect("slow pc");
    let b = sansrtc_tokio::PeerConnection::with_options(
        relay_config(&turn, turn.tcp_url()),
        options(&turn),
    )
    .await
    .expect("pc");
    let took = connect_and_exchange(&a, &b).await;
    eprintln!(
        "relay-only connected with one TLS stream opened 700 ms late: {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    assert!(took >= Duration::from_millis(700));
    a.close().await;
    b.close().await;
}

/// coturn doubles as a STUN server: a tokio peer with `stun:localhost:PORT` (a name the
/// runtime resolves) gets its Binding answered and completes gathering. On loopback the
/// server-reflexive address equals the host address, so no srflx candidate is announced
/// (a redundant candidate is pruned, RFC 8445 section 5.1.3), which the test checks too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_answers_server_reflexive_gathering() {
    let turn = Coturn::start().expect("turnserver");
    let config = Config {
        ice_servers: vec![IceServer::url(format!(
            "stun:localhost:{}",
            turn.udp_addr().port()
        ))],
        ..Default::default()
    };
    let pc = sansrtc_tokio::PeerConnection::with_options(config, Options::loopback())
        .await
        .expect("pc");
    pc.add_track(MediaKind::Audio, vec!["a".into()])
        .await
        .expect("track");
    let offer = pc.create_offer(Default::default()).await.expect("offer");
    pc.set_local_description(offer).await.expect("local");
    let mut candidates = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "gathering never completed");
        match pc.try_next_event() {
            Some(Event::IceCandidate(c)) if c.candidate.is_empty() => break,
            Some(Event::IceCandidate(c)) => candidates.push(c.candidate),
            Some(_) => {}
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    let stats = pc.call(|pc, _| pc.stats()).await.expect("stats");
    // The core left the host name to the runtime, which resolved it.
    assert_eq!(stats.ice_servers_skipped, 1);
    assert!(
        stats.ice.responses_received >= 1,
        "coturn answered the Binding request: {:?}",
        stats.ice
    );
    assert!(
        candidates.iter().all(|c| c.contains(" typ host")),
        "{candidates:?}"
    );
    assert_eq!(candidates.len(), 1, "{candidates:?}");
    pc.close().await;
}
