//! sansrtc's one-socket server in the suite: an `Endpoint` holding the server end of
//! every connection (what a sansrtc SFU uses), and its clients as plain
//! PeerConnections. The set-up is `examples/bench_endpoint.rs`'s.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::dtls::cert::Certificate;
use sansrtc::media::RtpPacket;
use sansrtc::{
    Config, ConnectionState, Datagram, Endpoint, Event, MediaKind, PeerConnection, PeerId,
    Protocol, TransceiverId,
};

const SERVER: ([u8; 4], u16) = ([10, 1, 0, 1], 4000);
const LATENCY: Duration = Duration::from_millis(1);

struct Client {
    pc: PeerConnection,
    addr: SocketAddr,
    server: PeerId,
    connected: bool,
}

/// A server Endpoint with `n` connected clients, the first of which publishes audio.
struct Setup {
    now: Instant,
    endpoint: Endpoint,
    clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, usize>,
    by_server: HashMap<PeerId, usize>,
}

fn config(seed: u64, cert: &Certificate) -> Config {
    Config {
        rng_seed: Some(seed),
        certificate: Some(cert.clone()),
        ..Default::default()
    }
}

fn connect(n: usize) -> Setup {
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

/// A publisher and `viewers` viewers connected through one Endpoint, with the
/// publisher's SRTP packets made in advance.
pub struct EndpointForward {
    s: Setup,
    /// The publisher's packets (SRTP), in order.
    pub input: Vec<Vec<u8>>,
    targets: Vec<(PeerId, TransceiverId)>,
    publisher: PeerId,
    from: SocketAddr,
    buf: Vec<u8>,
}

impl EndpointForward {
    /// Connect and make `packets` publisher packets.
    pub fn new(viewers: usize, packets: usize) -> EndpointForward {
        let mut s = connect(viewers + 1);
        let now = s.now;
        let track = s.clients[0].pc.transceivers()[0].id;
        let publisher = s.clients[0].server;
        let mut buf = vec![0u8; 2048];
        while s.clients[0].pc.poll_transmit(now, &mut buf).is_some() {}
        let mut input = Vec::with_capacity(packets);
        let payload = Bytes::from(vec![0xab; crate::PAYLOAD]);
        for i in 0..packets {
            let packet = RtpPacket {
                payload_type: 111,
                sequence_number: i as u16,
                timestamp: (i as u32).wrapping_mul(960),
                marker: false,
                ssrc: 0,
                payload: payload.clone(),
            };
            s.clients[0].pc.send_rtp(track, &packet).expect("send");
            while let Some(t) = s.clients[0].pc.poll_transmit(now, &mut buf) {
                // RTP only (RTCP's second byte is 192-223, RFC 5761).
                if !(192..=223).contains(&buf[1]) {
                    input.push(buf[..t.len].to_vec());
                }
            }
        }
        let targets: Vec<(PeerId, TransceiverId)> = s
            .clients
            .iter()
            .skip(1)
            .map(|c| {
                let t = s.endpoint.peer(c.server).expect("peer").transceivers()[0].id;
                (c.server, t)
            })
            .collect();
        let from = s.clients[0].addr;
        EndpointForward {
            s,
            input,
            targets,
            publisher,
            from,
            buf,
        }
    }

    /// Forward publisher packet `i` to every viewer; returns the datagrams sent.
    pub fn forward(&mut self, i: usize) -> usize {
        let now = self.s.now;
        let Some(data) = self.input.get(i) else {
            return 0;
        };
        self.s.endpoint.handle_datagram(
            now,
            Datagram {
                local: SocketAddr::from(SERVER),
                remote: self.from,
                protocol: Protocol::Udp,
                data,
            },
        );
        while let Some((id, e)) = self.s.endpoint.poll_event() {
            if let (true, Event::Rtp { packet, .. }) = (id == self.publisher, e) {
                for (peer, t) in &self.targets {
                    self.s.endpoint.with_peer(*peer, |p| {
                        let _ = p.send_rtp(*t, &packet);
                    });
                }
            }
        }
        let mut out = 0;
        while self.s.endpoint.poll_transmit(now, &mut self.buf).is_some() {
            out += 1;
        }
        out
    }
}

/// Packets out per second through the Endpoint, 1 publisher to `viewers`.
pub fn forward(viewers: usize, packets: usize) -> f64 {
    let warm = 50;
    let mut f = EndpointForward::new(viewers, warm + packets);
    for i in 0..warm {
        f.forward(i);
    }
    let t = Instant::now();
    let mut out = 0;
    for i in warm..warm + packets {
        out += f.forward(i);
    }
    out as f64 / t.elapsed().as_secs_f64()
}
