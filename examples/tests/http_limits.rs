//! The examples' HTTP and WebSocket server under hostile input, with sansrtc cores as the
//! honest clients (no browser): oversized heads and bodies, slow requests, idle
//! connections past the limits, WebSockets that never offer or come from another
//! origin, missing and wrong bearer tokens, guessed resource URLs and a second
//! publisher. Each gets its 4xx or a closed connection, and an honest session completes
//! at the same time. Every test runs on each runtime (the server's connections are tokio
//! tasks, smol tasks or std threads).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{
    connect_from, read_reply, request, request_from, run_until, Peer, Upgrade, WsClient, ATTACKER,
    LOOPBACK,
};
use sansrtc::MediaKind;
use sansrtc_examples::echo;
use sansrtc_examples::http::Limits;
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::whip_whep::{self, Running, Settings};

/// `mod $test { fn tokio(), fn smol(), fn std() }`, each running `$test` on that runtime.
macro_rules! on_every_runtime {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use super::RuntimeKind;
            #[test]
            fn tokio() {
                super::$test(RuntimeKind::Tokio);
            }
            #[test]
            fn smol() {
                super::$test(RuntimeKind::Smol);
            }
            #[test]
            fn std() {
                super::$test(RuntimeKind::Std);
            }
        }
    )*};
}

on_every_runtime!(
    oversized_requests_are_refused,
    slow_requests_are_cut_at_the_whole_request_timeout,
    idle_connections_are_limited_and_timed_out,
    websockets_need_the_origin_and_an_offer_in_time,
    websocket_writes_time_out,
    tokens_resources_and_a_second_publisher,
);

fn whip_server(kind: RuntimeKind, limits: Limits, token: Option<&str>) -> (Runtime, Running) {
    let rt = Runtime::new(kind).expect("runtime");
    let settings = Settings {
        limits,
        token: token.map(str::to_string),
        ..Settings::default()
    };
    let running = whip_whep::start_with(
        SocketAddr::new(LOOPBACK, 0),
        &rt,
        media_options_for(LOOPBACK),
        settings,
    )
    .expect("server");
    (rt, running)
}

/// An honest publisher completes WHIP and connects.
fn publish(addr: SocketAddr, token: Option<&str>) -> (Peer, String) {
    let mut peer = Peer::new();
    let pc = peer.driver.core();
    pc.add_track(MediaKind::Audio, vec!["p".into()])
        .expect("track");
    let resource = peer
        .whip(addr, "/whip", token)
        .unwrap_or_else(|r| panic!("publish refused: {} {}", r.status, r.body));
    common::frame_until(
        "publisher connected",
        Duration::from_secs(20),
        &mut [&mut peer],
        |p| p[0].connected,
    );
    (peer, resource)
}

/// Oversized heads, too many headers, oversized (announced or chunked) and conflicting
/// bodies: 431, 413, 400, answered without reading more than max_body; then a publisher still gets in.
fn oversized_requests_are_refused(kind: RuntimeKind) {
    let limits = Limits {
        max_head: 2048,
        max_headers: 16,
        max_body: 16 * 1024,
        ..Limits::default()
    };
    let (_rt, running) = whip_server(kind, limits, None);
    let addr = running.addr;
    let sdp = [("Content-Type", "application/sdp")];

    let long = "x".repeat(4096);
    let r = request(addr, "POST", "/whip", &[("X-Long", &long)], b"v=0");
    assert_eq!(r.status, 431, "a head over max_head: {}", r.body);

    let many: Vec<(String, String)> = (0..40).map(|i| (format!("X-{i}"), "1".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let r = request(addr, "POST", "/whip", &many, b"v=0");
    assert_eq!(
        r.status, 431,
        "more header lines than max_headers: {}",
        r.body
    );

    // A huge Content-Length is refused at once: the body is never sent, so a server
    // that waited for it would time out instead.
    let mut s = connect_from(LOOPBACK, addr);
    let started = Instant::now();
    s.write_all(
        format!("POST /whip HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nContent-Length: 1000000000\r\n\r\n")
            .as_bytes(),
    )
    .expect("write");
    let r = read_reply(&mut s);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(2));

    let body = vec![b'a'; 20 * 1024];
    assert_eq!(request(addr, "POST", "/whip", &sdp, &body).status, 413);

    // A chunked body announces no length: it is counted as it arrives and refused once
    // past max_body.
    let mut s = connect_from(LOOPBACK, addr);
    s.write_all(
        format!("POST /whip HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nTransfer-Encoding: chunked\r\n\r\n")
            .as_bytes(),
    )
    .expect("write");
    let chunk = format!("1000\r\n{}\r\n", "a".repeat(0x1000));
    for _ in 0..5 {
        // The server may answer (and close) before the last chunks: ignore a reset.
        let _ = s.write_all(chunk.as_bytes());
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let r = read_reply(&mut s);
    assert_eq!(r.status, 413, "a chunked body over max_body: {}", r.body);

    let mut s = connect_from(LOOPBACK, addr);
    s.write_all(
        format!("POST /whip HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 3\r\nContent-Length: 300\r\n\r\nv=0").as_bytes(),
    )
    .expect("write");
    assert_eq!(read_reply(&mut s).status, 400, "two Content-Lengths");

    assert_eq!(running.broadcast.sessions(), 0);
    let (_publisher, _) = publish(addr, None);
    assert_eq!(running.broadcast.sessions(), 1);
}

/// Slowloris: a request whose bytes each come well within any per-read timeout, but
/// whose whole takes longer than the request timeout, is cut at that timeout (408),
/// while a publisher completes WHIP on the side.
fn slow_requests_are_cut_at_the_whole_request_timeout(kind: RuntimeKind) {
    let limits = Limits {
        request_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let (_rt, running) = whip_server(kind, limits, None);
    let addr = running.addr;
    let slow = std::thread::spawn(move || {
        let mut s = connect_from(ATTACKER, addr);
        let started = Instant::now();
        let head = format!(
            "POST /whip HTTP/1.1\r\nHost: {addr}\r\nX-Slow: {}\r\n",
            "z".repeat(200)
        );
        let mut cut = None;
        // One byte every 100 ms: the whole head would take 25 s.
        for byte in head.bytes() {
            if s.write_all(&[byte]).is_err() {
                cut = Some(started.elapsed());
                break;
            }
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                // Closed, or answered (408): either way the server is done with us.
                Ok(_) => {
                    cut = Some(started.elapsed());
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => {
                    cut = Some(started.elapsed());
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        cut
    });
    let (_publisher, _) = publish(addr, None);
    let cut = slow
        .join()
        .expect("slow client")
        .expect("the slow request was cut");
    eprintln!("slow request cut after {cut:?}");
    assert!(
        cut >= Duration::from_millis(1400) && cut < Duration::from_secs(4),
        "cut at the whole-request timeout, not per read: {cut:?}"
    );
}

/// Idle connections: past the per-address limit they are refused at once (503); those
/// admitted are closed after the idle timeout; an honest client from another address is
/// served all along.
fn idle_connections_are_limited_and_timed_out(kind: RuntimeKind) {
    let limits = Limits {
        max_connections: 24,
        max_connections_per_ip: 8,
        idle_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let (_rt, running) = whip_server(kind, limits, None);
    let addr = running.addr;
    let opened = Instant::now();
    let mut idle: Vec<_> = (0..8).map(|_| connect_from(ATTACKER, addr)).collect();
    // Connections are admitted as they are accepted; give the accept loop a moment.
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = connect_from(ATTACKER, addr);
    assert_eq!(
        read_reply(&mut extra).status,
        503,
        "past the per-address limit"
    );
    // The honest client is not affected.
    let (_publisher, _) = publish(addr, None);
    assert_eq!(request(addr, "GET", "/", &[], b"").status, 200);
    // The whole server's limit: three more attacker addresses fill it, whatever else is
    // still counted (the first address's connections may have reached their idle timeout
    // during a slow publish on a loaded machine; the honest client's last connection may
    // still hold its slot for a moment). Those refused get a 503 at once; the rest idle.
    let fillers: Vec<TcpStream> = [3u8, 4, 6]
        .into_iter()
        .flat_map(|last| {
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, last));
            (0..8).map(move |_| connect_from(from, addr))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = request_from(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)),
        addr,
        "GET",
        "/",
        &[],
        b"",
    );
    assert_eq!(r.status, 503, "past the total limit");
    let mut refused = 0;
    for mut s in fillers {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut buf = [0u8; 12];
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {
                assert!(buf.starts_with(b"HTTP/1.1 503"), "{buf:?}");
                refused += 1;
            }
            _ => idle.push(s),
        }
    }
    eprintln!("fillers refused at the total limit: {refused} of 24");
    // Every idle one is closed by the server after the idle timeout (read sees the end),
    // all within 6 s of opening.
    let deadline = opened + Duration::from_secs(6);
    for s in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf);
        assert!(
            matches!(n, Ok(0)),
            "an idle connection is closed without an answer: {n:?}"
        );
    }
    let waited = opened.elapsed();
    assert!(
        waited < Duration::from_secs(6),
        "closed at the idle timeout: {waited:?}"
    );
    drop(idle);
    run_until("room again", Duration::from_secs(5), || {
        request_from(
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)),
            addr,
            "GET",
            "/",
            &[],
            b"",
        )
        .status
            == 200
    });
}

/// WebSockets: another origin is refused (403); upgrades that never offer cost no
/// PeerConnection and are closed at the offer deadline; a message over the size limit
/// closes its connection at once (well before that deadline); meanwhile an honest page's
/// session (a core over the WebSocket) gets its answer and connects.
fn websockets_need_the_origin_and_an_offer_in_time(kind: RuntimeKind) {
    let limits = Limits {
        websocket_offer_timeout: Duration::from_millis(1500),
        ..Limits::default()
    };
    let limits_message = limits.max_websocket_message;
    let rt = Runtime::new(kind).expect("runtime");
    let running = echo::start_with(
        SocketAddr::new(LOOPBACK, 0),
        rt,
        media_options_for(LOOPBACK),
        limits,
    )
    .expect("server");
    let addr = running.addr;
    let signaling = running.echo.signaling();

    match WsClient::connect(LOOPBACK, addr, Some("http://evil.example")) {
        Upgrade::Refused(status) => assert_eq!(status, 403),
        Upgrade::Open(_) => panic!("a WebSocket from another origin was accepted"),
    }
    let own = format!("http://{addr}");
    let silent: Vec<WsClient> = (0..20)
        .map(|_| match WsClient::connect(ATTACKER, addr, Some(&own)) {
            Upgrade::Open(ws) => ws,
            Upgrade::Refused(status) => panic!("refused {status}"),
        })
        .collect();
    let opened = Instant::now();
    // Watch them close while the honest page does its session.
    let closed = std::thread::spawn(move || {
        for ws in &silent {
            run_until(
                "the silent WebSocket closed",
                Duration::from_secs(5),
                || ws.recv(Duration::from_millis(50)).is_err(),
            );
        }
        opened.elapsed()
    });

    // A message over max_websocket_message ends its connection, without a
    // PeerConnection.
    let mut large = match WsClient::connect(ATTACKER, addr, Some(&own)) {
        Upgrade::Open(ws) => ws,
        Upgrade::Refused(status) => panic!("refused {status}"),
    };
    large.send(&"x".repeat(limits_message + 1));
    run_until(
        "the WebSocket with an oversized message closed",
        Duration::from_millis(900),
        || large.recv(Duration::from_millis(20)).is_err(),
    );

    // The honest page: same origin, offers at once.
    let mut ws = match WsClient::connect(LOOPBACK, addr, Some(&own)) {
        Upgrade::Open(ws) => ws,
        Upgrade::Refused(status) => panic!("refused {status}"),
    };
    let mut peer = Peer::new();
    peer.driver
        .core()
        .add_track(MediaKind::Audio, vec!["page".into()])
        .expect("track");
    common::ws_negotiate(&mut ws, &mut peer);
    common::frame_until(
        "the page's session connected",
        Duration::from_secs(20),
        &mut [&mut peer],
        |p| p[0].connected,
    );
    assert_eq!(
        signaling.peers_created(),
        1,
        "only the WebSocket that offered has a PeerConnection"
    );
    let waited = closed.join().expect("every silent WebSocket closed");
    assert!(
        waited >= Duration::from_millis(1000) && waited < Duration::from_secs(5),
        "closed at the offer deadline: {waited:?}"
    );
    assert_eq!(signaling.peers_created(), 1);
    assert_eq!(signaling.live_sessions(), 1, "the honest session lives on");
}

/// A client that never reads: every bad message it sends gets an error message back,
/// until the server's writes stop (its socket buffers full). The write timeout then
/// closes the connection; without it the connection would wait for the client forever.
fn websocket_writes_time_out(kind: RuntimeKind) {
    let limits = Limits {
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let rt = Runtime::new(kind).expect("runtime");
    let running = echo::start_with(
        SocketAddr::new(LOOPBACK, 0),
        rt,
        media_options_for(LOOPBACK),
        limits,
    )
    .expect("server");
    let addr = running.addr;
    // A small receive buffer, set before connecting so that the window stays small.
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(2048).expect("buffer");
    socket
        .bind(&SocketAddr::new(ATTACKER, 0).into())
        .expect("bind");
    socket.connect(&addr.into()).expect("connect");
    let mut s: std::net::TcpStream = socket.into();
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("upgrade");
    // Masked one-byte text frames ("x", not JSON), each answered with an error message,
    // until the server is gone. Never read: the answers fill our small receive buffer
    // and then the server's send buffer, and its writes stop. Past its write timeout it
    // closes the connection (and resets it: our frames are unread), which our writes
    // then see. A server without the timeout would stop reading instead, and our writes
    // would only ever time out.
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let frame = [0x81u8, 0x81, 1, 2, 3, 4, b'x' ^ 1];
    let frames: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 1000)
        .collect();
    let started = Instant::now();
    let mut at = 0usize;
    let mut sent = 0usize;
    let closed = loop {
        if started.elapsed() > Duration::from_secs(20) {
            break None;
        }
        match s.write(&frames[at..]) {
            Ok(n) => {
                sent += n;
                at = (at + n) % frame.len();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => break Some(e),
        }
    };
    eprintln!(
        "sent {sent} bytes; the connection ended after {:?}: {closed:?}",
        started.elapsed()
    );
    let closed = closed.expect("the server closed the connection");
    assert!(
        matches!(
            closed.kind(),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
        ),
        "{closed:?}"
    );
    assert_eq!(running.echo.signaling().peers_created(), 0);
}

/// Bearer tokens (RFC 9725): none or a wrong one gets 401 on every WHIP/WHEP request.
/// Resource URLs are random 128-bit ids that nobody guesses; a viewer cannot reach the
/// publisher's resource through its own path; a second publisher gets 409 and the live
/// one keeps publishing, until it deletes its own resource.
fn tokens_resources_and_a_second_publisher(kind: RuntimeKind) {
    const TOKEN: &str = "s3cret-token";
    let (_rt, running) = whip_server(kind, Limits::default(), Some(TOKEN));
    let addr = running.addr;
    let sdp = ("Content-Type", "application/sdp");
    let wrong = ("Authorization", "Bearer not-the-token");
    let r = request(addr, "POST", "/whip", &[sdp], b"v=0");
    assert_eq!(r.status, 401, "no token");
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    assert_eq!(
        request(addr, "POST", "/whip", &[sdp, wrong], b"v=0").status,
        401
    );
    assert_eq!(
        request(addr, "POST", "/whep", &[sdp, wrong], b"v=0").status,
        401
    );

    let (mut publisher, resource) = publish(addr, Some(TOKEN));
    let id = resource.strip_prefix("/whip/").expect("a WHIP resource");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "a 128-bit random id: {resource}"
    );
    let auth = format!("Bearer {TOKEN}");
    let good = ("Authorization", auth.as_str());
    assert_eq!(request(addr, "DELETE", &resource, &[], b"").status, 401);
    assert_eq!(
        request(addr, "DELETE", &resource, &[wrong], b"").status,
        401
    );
    let frag = ("Content-Type", "application/trickle-ice-sdpfrag");
    assert_eq!(
        request(addr, "PATCH", &resource, &[frag], b"a=end-of-candidates").status,
        401
    );

    // A second publisher, even with the token, does not replace the live one.
    let mut second = Peer::new();
    second
        .driver
        .core()
        .add_track(MediaKind::Audio, vec!["q".into()])
        .expect("track");
    let refused = second
        .whip(addr, "/whip", Some(TOKEN))
        .expect_err("refused");
    assert_eq!(refused.status, 409, "{}", refused.body);

    // A viewer with the token guesses: sequential and short ids, and the publisher's
    // own path shape, find nothing.
    let mut viewer = Peer::new();
    viewer
        .driver
        .core()
        .add_transceiver(MediaKind::Audio, Default::default())
        .expect("transceiver");
    let own = viewer.whip(addr, "/whep", Some(TOKEN)).expect("viewer");
    let own_id = own.strip_prefix("/whep/").expect("a WHEP resource");
    assert_ne!(own_id, id);
    for guess in (0..64)
        .map(|n| format!("{n}"))
        .chain((0..64).map(|n| format!("{n:032x}")))
    {
        let r = request(addr, "DELETE", &format!("/whip/{guess}"), &[good], b"");
        assert_eq!(r.status, 404, "guessed /whip/{guess}");
    }
    // Its own id on the publisher's path, and the publisher's on the viewer's.
    assert_eq!(
        request(addr, "DELETE", &format!("/whip/{own_id}"), &[good], b"").status,
        404
    );
    assert_eq!(
        request(addr, "DELETE", &format!("/whep/{id}"), &[good], b"").status,
        404
    );
    assert_eq!(running.broadcast.sessions(), 2);
    for _ in 0..20 {
        publisher.frame();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        publisher.driver.core().connection_state(),
        sansrtc::ConnectionState::Connected,
        "the live publisher was not replaced"
    );
    // The publisher ends its own session; then another may publish.
    assert_eq!(request(addr, "DELETE", &resource, &[good], b"").status, 200);
    let mut third = Peer::new();
    third
        .driver
        .core()
        .add_track(MediaKind::Audio, vec!["r".into()])
        .expect("track");
    third
        .whip(addr, "/whip", Some(TOKEN))
        .expect("publishing after the DELETE");
}
