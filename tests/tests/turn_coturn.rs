//! The core's `TurnClient` against a real TURN server (coturn on 127.0.0.1), over UDP,
//! TCP and TLS, the streams opened by the runtime's code (`sansrtc_std::stream`): allocate,
//! install a permission for a loopback peer, send through the relay with a Send indication
//! and then over a bound channel (ChannelData, padded over streams), and get the peer's
//! answers back. A wrong password ends in `TurnError::Unauthorized` after exactly two
//! requests: coturn's 401 to the authenticated one carries no MESSAGE-INTEGRITY, so it is
//! discarded (RFC 8489 9.2.5) and the failure comes when that request times out, after
//! its retransmissions over UDP. Prints the time to allocate per transport.
//!
//! Run inside the loopback-only namespace:
//! `unshare -n sh -c 'ip link set lo up && cargo test -p sansrtc-tests --test turn_coturn'`

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use sansrtc::rng::Rng;
use sansrtc::transmit::Protocol;
use sansrtc::turn::{TurnClient, TurnError, TurnEvent, TurnInput};
use sansrtc_std::stream::{StreamError, StreamTarget, StreamWriter, TlsRoots, TurnStream};
use sansrtc_std::NetConfig;
use sansrtc_tests::coturn::Coturn;

/// How the test talks to the server: one TURN message per send and per receive.
enum Wire {
    Udp(UdpSocket),
    Stream {
        writer: StreamWriter,
        frames: Receiver<Vec<u8>>,
        _control: sansrtc_std::stream::StreamControl,
    },
}

impl Wire {
    fn protocol(&self) -> Protocol {
        match self {
            Wire::Udp(_) => Protocol::Udp,
            Wire::Stream { .. } => Protocol::Tcp,
        }
    }

    fn send(&mut self, server: SocketAddr, data: &[u8]) {
        match self {
            Wire::Udp(s) => {
                s.send_to(data, server).expect("udp send");
            }
            Wire::Stream { writer, .. } => writer.write_frame(data).expect("stream write"),
        }
    }

    fn recv(&mut self, timeout: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let timeout = timeout.max(Duration::from_millis(1));
        match self {
            Wire::Udp(s) => {
                s.set_read_timeout(Some(timeout)).expect("timeout");
                let mut buf = vec![0u8; 2048];
                let (n, from) = s.recv_from(&mut buf).ok()?;
                buf.truncate(n);
                Some((from, buf))
            }
            Wire::Stream { frames, .. } => frames
                .recv_timeout(timeout)
                .ok()
                .map(|f| (SERVER_SENTINEL, f)),
        }
    }
}

/// Frames from a stream come from the server by construction; the driver passes the
/// server's address, and so does the test (replaced in `Session::pump`).
const SERVER_SENTINEL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
    Tls,
}

fn url(turn: &Coturn, t: Transport) -> String {
    match t {
        Transport::Udp => turn.udp_url(),
        Transport::Tcp => turn.tcp_url(),
        Transport::Tls => turn.tls_url(),
    }
}

fn open(turn: &Coturn, t: Transport) -> (Wire, SocketAddr) {
    match t {
        Transport::Udp => {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            (Wire::Udp(s), turn.udp_addr())
        }
        Transport::Tcp | Transport::Tls => {
            let target = StreamTarget::from_url(&url(turn, t)).expect("stream url");
            let roots = TlsRoots::only(vec![turn.certificate_der().to_vec()]);
            let stream =
                TurnStream::connect(&target, &NetConfig::loopback(), &roots).expect("connect");
            let server = stream.server();
            assert!(stream.local_addr().ip().is_loopback());
            let (mut reader, writer, control) = stream.split().expect("split");
            let (tx, frames) = mpsc::sync_channel(64);
            std::thread::spawn(move || loop {
                let mut ok = true;
                let r = reader.read_frames(|f| ok &= tx.send(f.to_vec()).is_ok());
                if r.is_err() || !ok {
                    return;
                }
            });
            (
                Wire::Stream {
                    writer,
                    frames,
                    _control: control,
                },
                server,
            )
        }
    }
}

struct Session {
    wire: Wire,
    client: TurnClient,
    sent: usize,
    events: Vec<TurnEvent>,
    peer_data: Vec<(SocketAddr, Vec<u8>)>,
}

impl Session {
    fn new(turn: &Coturn, t: Transport, password: &str) -> Session {
        let (wire, server) = open(turn, t);
        let client = TurnClient::new(
            server,
            wire.protocol(),
            turn.username(),
            password,
            Rng::from_seed(42),
            Instant::now(),
        );
        Session {
            wire,
            client,
            sent: 0,
            events: Vec::new(),
            peer_data: Vec::new(),
        }
    }

    /// Send, receive and tick for up to `slice`.
    fn pump(&mut self, slice: Duration) {
        let end = Instant::now() + slice;
        let mut buf = vec![0u8; 70_000];
        loop {
            let now = Instant::now();
            while let Some((to, n)) = self.client.poll_transmit(now, &mut buf) {
                self.wire.send(to, &buf[..n]);
                self.sent += 1;
            }
            while let Some(e) = self.client.poll_event() {
                self.events.push(e);
            }
            if now >= end {
                return;
            }
            let mut wait = end - now;
            if let Some(d) = self.client.poll_timeout() {
                wait = wait.min(d.saturating_duration_since(now));
            }
            match self.wire.recv(wait) {
                Some((from, data)) => {
                    let from = if from == SERVER_SENTINEL {
                        self.client.server()
                    } else {
                        from
                    };
                    if let TurnInput::PeerData { peer, data } =
                        self.client.handle_datagram(Instant::now(), from, &data)
                    {
                        self.peer_data.push((peer, data.to_vec()));
                    }
                }
                None => self.client.handle_timeout(Instant::now()),
            }
        }
    }

    fn wait_for(&mut self, what: &str, mut done: impl FnMut(&Session) -> bool) {
        // Past the UDP transaction timeout (13.75 s) and the stream one (16 s).
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events: {:?}",
                self.events
            );
            self.pump(Duration::from_millis(20));
        }
    }
}

/// The peer answers each datagram with its reversed bytes, from its own socket.
fn answer_once(peer: &UdpSocket) -> SocketAddr {
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("the relay delivers to the peer");
    let mut reply = buf[..n].to_vec();
    reply.reverse();
    peer.send_to(&reply, from).expect("peer answers");
    from
}

fn relay_round_trip(t: Transport) {
    let turn = Coturn::start().expect("turnserver starts");
    let started = Instant::now();
    let mut s = Session::new(&turn, t, turn.password());
    s.wait_for("the allocation", |s| s.client.is_allocated());
    let allocated = started.elapsed();
    let relayed = s.client.relayed_address().expect("relayed address");
    eprintln!(
        "TURN over {t:?}: allocated {relayed} in {:.1} ms (connect included), {} requests",
        allocated.as_secs_f64() * 1000.0,
        s.client.stats().requests_sent
    );
    assert_eq!(relayed.ip(), Ipv4Addr::LOCALHOST);
    assert!(turn.relay_ports().contains(&relayed.port()), "{relayed}");
    // The 401 challenge, then the authenticated Allocate.
    assert_eq!(s.client.stats().requests_sent, 2);
    assert!(matches!(
        s.events.first(),
        Some(TurnEvent::Allocated { .. })
    ));

    let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("peer");
    let peer_addr = peer.local_addr().expect("addr");
    s.client
        .create_permission(Instant::now(), peer_addr.ip())
        .expect("permission");
    s.wait_for("the permission", |s| {
        s.client.has_permission(peer_addr.ip())
    });

    // A Send indication out, a Data indication back.
    s.client
        .send_to(Instant::now(), peer_addr, b"ping over send")
        .expect("send");
    s.pump(Duration::from_millis(5));
    assert_eq!(
        answer_once(&peer),
        relayed,
        "the peer sees the relayed address"
    );
    s.wait_for("the answer", |s| !s.peer_data.is_empty());
    assert_eq!(s.peer_data[0], (peer_addr, b"dnes revo gnip".to_vec()));

    // A channel: ChannelData both ways (5 bytes: padded to 4 over TCP/TLS).
    let channel = s
        .client
        .bind_channel(Instant::now(), peer_addr)
        .expect("channel");
    s.wait_for("the channel", |s| {
        s.client.channel_of(peer_addr) == Some(channel)
    });
    s.client
        .send_to(Instant::now(), peer_addr, b"hello")
        .expect("send on channel");
    s.pump(Duration::from_millis(5));
    assert_eq!(answer_once(&peer), relayed);
    s.wait_for("the channel answer", |s| s.peer_data.len() >= 2);
    assert_eq!(s.peer_data[1], (peer_addr, b"olleh".to_vec()));

    // Deallocate.
    s.client.close(Instant::now());
    s.wait_for("deallocation", |s| {
        s.events.contains(&TurnEvent::Deallocated)
    });
    assert_eq!(
        s.client.stats().dropped,
        0,
        "nothing from coturn was refused"
    );
}

#[test]
fn allocate_and_relay_over_udp() {
    relay_round_trip(Transport::Udp);
}

#[test]
fn allocate_and_relay_over_tcp() {
    relay_round_trip(Transport::Tcp);
}

#[test]
fn allocate_and_relay_over_tls() {
    relay_round_trip(Transport::Tls);
}

fn wrong_password(t: Transport) {
    let turn = Coturn::start().expect("turnserver starts");
    let mut s = Session::new(&turn, t, "not-the-password");
    s.wait_for("the failure", |s| s.client.is_terminated());
    assert_eq!(
        s.events,
        vec![TurnEvent::AllocationFailed(TurnError::Unauthorized)]
    );
    // Then nothing more is sent: no retry storm.
    s.pump(Duration::from_millis(500));
    assert_eq!(s.client.stats().requests_sent, 2);
    // The authenticated Allocate is retransmitted over UDP (Rc = 7 sends), once over streams.
    let retransmits = match t {
        Transport::Udp => 6,
        _ => 0,
    };
    assert_eq!(s.client.stats().retransmits, retransmits);
    assert_eq!(
        s.client.stats().unauthenticated_discarded,
        retransmits + 1,
        "every unauthenticated 401 discarded"
    );
    assert_eq!(
        s.sent,
        2 + retransmits as usize,
        "the unauthenticated Allocate and one authenticated retry"
    );
    assert_eq!(s.client.poll_timeout(), None);
}

#[test]
fn wrong_password_is_unauthorized_after_two_requests_over_udp() {
    wrong_password(Transport::Udp);
}

#[test]
fn wrong_password_is_unauthorized_after_two_requests_over_tls() {
    wrong_password(Transport::Tls);
}

#[test]
fn tls_refuses_a_certificate_nobody_trusts() {
    let turn = Coturn::start().expect("turnserver starts");
    let target = StreamTarget::from_url(&turn.tls_url()).expect("url");
    // A different self-signed certificate as the only root: coturn's is not trusted.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    let roots = TlsRoots::only(vec![other.cert.der().to_vec()]);
    match TurnStream::connect(&target, &NetConfig::loopback(), &roots) {
        Err(StreamError::Tls(rustls::Error::InvalidCertificate(_))) => {}
        other => panic!("expected an untrusted certificate error, got {other:?}"),
    }
}
