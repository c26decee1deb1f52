//! A one-socket server in memory for the benchmarks (`examples/bench_endpoint.rs` and the
//! `sansrtc-bench` suite): an `Endpoint` holding the server end of every connection,
//! its clients as plain PeerConnections, connected through an in-memory wire with a
//! virtual clock. The first client publishes audio, the others receive it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sansrtc::dtls::cert::Certificate;
use sansrtc::{
    Config, ConnectionState, Datagram, Endpoint, Event, MediaKind, PeerConnection, PeerId, Protocol,
};

/// The server Endpoint's address.
pub const SERVER: ([u8; 4], u16) = ([10, 1, 0, 1], 4000);
/// One-way latency of the in-memory wire.
pub const LATENCY: Duration = Duration::from_millis(1);

/// One client and its server end.
pub struct Client {
    /// The client PeerConnection.
    pub pc: PeerConnection,
    /// Its address.
    pub addr: SocketAddr,
    /// Its server end in the Endpoint.
    pub server: PeerId,
    /// Whether it reported connected.
    pub connected: bool,
}

/// A server Endpoint with `n` connected clients, the first of which publishes audio.
pub struct Setup {
    /// The virtual now.
    pub now: Instant,
    /// The server: every client's server end on one socket.
    pub endpoint: Endpoint,
    /// The clients, the publisher first.
    pub clients: Vec<Client>,
    /// Client index by address.
    pub by_addr: HashMap<SocketAddr, usize>,
    /// Client index by server-end id.
    pub by_server: HashMap<PeerId, usize>,
}

fn config(seed: u64, cert: &Certificate) -> Config {
    Config {
        rng_seed: Some(seed),
        certificate: Some(cert.clone()),
        ..Default::default()
    }
}

/// Build and connect `n` clients (ICE and DTLS through the in-memory wire).
pub fn connect(n: usize) -> Setup {
    let start = Instant::now();
    let server_addr = SocketAddr::from(SERVER);
    let client_cert = Certificate::generate().expect("cert");
    let server_cert = Certificate::generate().expect("cert");
    let mut s = Setup {
        now: start,
        endpoint: Endpoint::new(vec![(server_addr, Protocol::Udp)]),
        clients: Vec::with_capacity(n),
        by_addr: HashMap::new(),
        by_server: HashMap::new(),
    };
    for i in 0..n {
        let now = s.now;
        let addr: SocketAddr = format!("10.0.{}.{}:5000", i / 250, i % 250 + 1)
            .parse()
            .expect("addr");
        let mut pc = PeerConnection::new(config(i as u64 + 1, &client_cert), now).expect("pc");
        pc.add_local_address(now, addr, Protocol::Udp);
        if i == 0 {
            pc.add_track(MediaKind::Audio, vec!["publisher".into()])
                .expect("track");
        } else {
            pc.add_transceiver(
                MediaKind::Audio,
                sansrtc::TransceiverInit {
                    direction: sansrtc::Direction::RecvOnly,
                    ..Default::default()
                },
            )
            .expect("transceiver");
        }
        let offer = pc.create_offer(Default::default()).expect("offer");
        pc.set_local_description(now, offer.clone()).expect("local");
        let server_pc =
            PeerConnection::new(config(1_000_000 + i as u64, &server_cert), now).expect("pc");
        let id = s.endpoint.insert(now, server_pc);
        let answer = s
            .endpoint
            .with_peer(id, |p| {
                p.set_remote_description(now, offer)?;
                if i > 0 {
                    p.add_track(MediaKind::Audio, vec!["forwarded".into()])?;
                }
                let answer = p.create_answer()?;
                p.set_local_description(now, answer.clone())?;
                Ok::<_, sansrtc::peer::NegotiationError>(answer)
            })
            .expect("peer")
            .expect("answer");
        pc.set_remote_description(now, answer).expect("remote");
        s.by_addr.insert(addr, i);
        s.by_server.insert(id, i);
        s.clients.push(Client {
            pc,
            addr,
            server: id,
            connected: false,
        });
    }
    run_until_connected(&mut s);
    s
}

fn run_until_connected(s: &mut Setup) {
    let server_addr = SocketAddr::from(SERVER);
    let mut wire: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 2048];
    let mut server_connected = 0;
    let deadline = s.now + Duration::from_secs(120);
    while s.now < deadline {
        let now = s.now;
        for c in s.clients.iter_mut() {
            while let Some(t) = c.pc.poll_transmit(now, &mut buf) {
                seq += 1;
                wire.insert(
                    (now + LATENCY, seq),
                    (t.local, t.remote, buf[..t.len].to_vec()),
                );
            }
            while let Some(e) = c.pc.poll_event() {
                match e {
                    Event::IceCandidate(cand) => {
                        let _ = s
                            .endpoint
                            .with_peer(c.server, |p| p.add_ice_candidate(now, cand));
                    }
                    Event::ConnectionStateChange(ConnectionState::Connected) => c.connected = true,
                    _ => {}
                }
            }
        }
        while let Some((_, t)) = s.endpoint.poll_transmit(now, &mut buf) {
            seq += 1;
            wire.insert(
                (now + LATENCY, seq),
                (t.local, t.remote, buf[..t.len].to_vec()),
            );
        }
        while let Some((id, e)) = s.endpoint.poll_event() {
            match e {
                Event::IceCandidate(cand) => {
                    if let Some(&i) = s.by_server.get(&id) {
                        let _ = s.clients[i].pc.add_ice_candidate(now, cand);
                    }
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => server_connected += 1,
                _ => {}
            }
        }
        if server_connected == s.clients.len() && s.clients.iter().all(|c| c.connected) {
            return;
        }
        let next = s
            .clients
            .iter()
            .filter_map(|c| c.pc.poll_timeout())
            .chain(s.endpoint.poll_timeout())
            .chain(wire.keys().next().map(|k| k.0))
            .min();
        let Some(next) = next else { break };
        s.now = s.now.max(next);
        let now = s.now;
        while let Some(entry) = wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, to, data) = entry.remove();
            let d = Datagram {
                local: to,
                remote: from,
                protocol: Protocol::Udp,
                data: &data,
            };
            if to == server_addr {
                s.endpoint.handle_datagram(now, d);
            } else if let Some(&i) = s.by_addr.get(&to) {
                s.clients[i].pc.handle_datagram(now, d);
            }
        }
        for c in s.clients.iter_mut() {
            if c.pc.poll_timeout().is_some_and(|t| t <= now) {
                c.pc.handle_timeout(now);
            }
        }
        s.endpoint.handle_timeout(now);
    }
    panic!("not every peer connected");
}
