//! Sessions that end free everything (issue 14): 10,000 connect/close cycles through one
//! long-lived `Endpoint` (a server's one socket), half ended politely by the client
//! (`close()`: RTCP BYE, SCTP ABORT, close_notify, so the server sees
//! `Event::RemoteClosed` and releases the peer at once) and half by a client that
//! vanishes (the server's ICE consent expires and the peer fails, then is released).
//! Every cycle connects ICE, DTLS and SCTP and echoes one data-channel message.
//!
//! The counting allocator measures live heap bytes: after the first cycles (tables and
//! pools reach their working size) the live bytes once the last session is gone must
//! equal that baseline within a few KiB, whatever the number of cycles. Deterministic:
//! seeded peers and a virtual clock, no sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::dtls::cert::Certificate;
use sansrtc::{
    Config, ConnectionState, DataChannelInit, Datagram, Endpoint, Event, MediaKind, PeerConnection,
    PeerId, Protocol, RemoteClose,
};
use sansrtc_bench::alloc;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const CYCLES: usize = 10_000;
const WARM_UP: usize = 50;
/// What may differ between the baseline and the end: a few KiB.
const TOLERANCE: i64 = 8 * 1024;
const LATENCY: Duration = Duration::from_millis(2);

/// The server's side: one Endpoint for every cycle, and the in-memory wire.
struct World {
    now: Instant,
    server_addr: SocketAddr,
    endpoint: Endpoint,
    wire: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    buf: Vec<u8>,
    client_cert: Certificate,
    server_cert: Certificate,
}

/// How a cycle ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    Polite,
    Vanish,
}

impl World {
    fn new() -> World {
        let server_addr: SocketAddr = "10.9.0.1:4000".parse().expect("addr");
        World {
            now: Instant::now(),
            server_addr,
            endpoint: Endpoint::new(vec![(server_addr, Protocol::Udp)]),
            wire: BTreeMap::new(),
            seq: 0,
            buf: vec![0; 65_536],
            client_cert: Certificate::generate().expect("cert"),
            server_cert: Certificate::generate().expect("cert"),
        }
    }

    fn config(&self, seed: u64, cert: &Certificate) -> Config {
        Config {
            rng_seed: Some(seed),
            certificate: Some(cert.clone()),
            ..Default::default()
        }
    }

    /// Move datagrams and events until `done` says so (or the virtual time limit).
    fn run(
        &mut self,
        client: &mut Option<PeerConnection>,
        client_addr: SocketAddr,
        id: PeerId,
        limit: Duration,
        mut done: impl FnMut(&[(PeerId, Event)], &[Event]) -> bool,
    ) -> (Vec<(PeerId, Event)>, Vec<Event>) {
        let deadline = self.now + limit;
        let mut server_events = Vec::new();
        let mut client_events = Vec::new();
        let mut stuck = 0u32;
        loop {
            let now = self.now;
            if let Some(pc) = client.as_mut() {
                while let Some(t) = pc.poll_transmit(now, &mut self.buf) {
                    self.seq += 1;
                    let data = self.buf[..t.len].to_vec();
                    self.wire
                        .insert((now + LATENCY, self.seq), (t.local, t.remote, data));
                }
                while let Some(e) = pc.poll_event() {
                    if let Event::IceCandidate(c) = &e {
                        let c = c.clone();
                        let _ = self.endpoint.with_peer(id, |p| p.add_ice_candidate(now, c));
                    }
                    client_events.push(e);
                }
            }
            while let Some((_, t)) = self.endpoint.poll_transmit(now, &mut self.buf) {
                self.seq += 1;
                let data = self.buf[..t.len].to_vec();
                self.wire
                    .insert((now + LATENCY, self.seq), (t.local, t.remote, data));
            }
            while let Some((peer, e)) = self.endpoint.poll_event() {
                if let (Event::IceCandidate(c), Some(pc)) = (&e, client.as_mut()) {
                    let _ = pc.add_ice_candidate(now, c.clone());
                }
                // The application's side of the data channel: echo every message.
                if let Event::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } = &e
                {
                    let (channel, data, binary) = (*channel, data.clone(), *binary);
                    let _ = self
                        .endpoint
                        .with_peer(peer, |p| p.send_data(now, channel, data, binary));
                }
                server_events.push((peer, e));
            }
            if done(&server_events, &client_events) {
                return (server_events, client_events);
            }
            let next = client
                .as_ref()
                .and_then(PeerConnection::poll_timeout)
                .into_iter()
                .chain(self.endpoint.poll_timeout())
                .chain(self.wire.keys().next().map(|k| k.0))
                .min();
            let next = next.unwrap_or(deadline).max(self.now);
            assert!(next <= deadline, "timed out");
            // A deadline that stays in the past is a livelock in the code under test.
            stuck = if next == self.now { stuck + 1 } else { 0 };
            assert!(stuck < 100_000, "the clock does not advance");
            self.now = next;
            let now = self.now;
            while let Some(entry) = self.wire.first_entry() {
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
                if to == self.server_addr {
                    self.endpoint.handle_datagram(now, d);
                } else if let (true, Some(pc)) = (to == client_addr, client.as_mut()) {
                    pc.handle_datagram(now, d);
                }
            }
            if let Some(pc) = client.as_mut() {
                pc.handle_timeout(now);
            }
            self.endpoint.handle_timeout(now);
        }
    }

    /// One session: connect, echo a message, end it as asked, release the server end.
    fn cycle(&mut self, i: usize, ending: Ending) {
        let now = self.now;
        // A new client port each cycle, as real clients come and go.
        let client_addr: SocketAddr = format!(
            "10.9.{}.{}:{}",
            1 + i / 60_000 % 250,
            2 + i % 250,
            10_000 + i % 50_000
        )
        .parse()
        .expect("addr");
        let mut pc = PeerConnection::new(
            self.config(2 * i as u64 + 1, &self.client_cert.clone()),
            now,
        )
        .expect("client");
        pc.add_local_address(now, client_addr, Protocol::Udp);
        pc.add_track(MediaKind::Audio, vec!["s".into()])
            .expect("track");
        let chat = pc
            .create_data_channel(now, "chat", DataChannelInit::default())
            .expect("channel");
        let offer = pc.create_offer(Default::default()).expect("offer");
        pc.set_local_description(now, offer.clone()).expect("local");
        let server_pc = PeerConnection::new(
            self.config(2 * i as u64 + 2, &self.server_cert.clone()),
            now,
        )
        .expect("server");
        let id = self.endpoint.insert(now, server_pc);
        let answer = self
            .endpoint
            .with_peer(id, |p| {
                p.set_remote_description(now, offer)?;
                let answer = p.create_answer()?;
                p.set_local_description(now, answer.clone())?;
                Ok::<_, sansrtc::peer::NegotiationError>(answer)
            })
            .expect("peer")
            .expect("answer");
        pc.set_remote_description(now, answer).expect("remote");
        let mut client = Some(pc);
        // Connected, and the data channel open on the client.
        self.run(
            &mut client,
            client_addr,
            id,
            Duration::from_secs(10),
            |_, c| c.iter().any(|e| matches!(e, Event::DataChannelOpen(_))),
        );
        let sent = Bytes::from(format!("hello {i}"));
        let now = self.now;
        if let Some(pc) = client.as_mut() {
            pc.send_data(now, chat, sent.clone(), false).expect("send");
        }
        self.run(
            &mut client,
            client_addr,
            id,
            Duration::from_secs(10),
            |_, c| {
                c.iter()
                    .any(|e| matches!(e, Event::DataChannelMessage { data, .. } if *data == sent))
            },
        );
        match ending {
            Ending::Polite => {
                let now = self.now;
                if let Some(pc) = client.as_mut() {
                    pc.close(now);
                }
                let (events, _) = self.run(
                    &mut client,
                    client_addr,
                    id,
                    Duration::from_secs(5),
                    |s, _| {
                        s.iter()
                            .any(|(p, e)| *p == id && matches!(e, Event::RemoteClosed(_)))
                    },
                );
                assert!(events
                    .iter()
                    .any(|(_, e)| matches!(e, Event::RemoteClosed(RemoteClose::SctpAbort))));
            }
            Ending::Vanish => {
                client = None;
                self.run(
                    &mut client,
                    client_addr,
                    id,
                    Duration::from_secs(60),
                    |s, _| {
                        s.iter().any(|(p, e)| {
                            *p == id
                                && matches!(
                                    e,
                                    Event::ConnectionStateChange(ConnectionState::Failed)
                                )
                        })
                    },
                );
            }
        }
        drop(client);
        let now = self.now;
        self.endpoint.close_peer(now, id);
        // The server's goodbyes drain and the peer leaves the Endpoint.
        let mut none = None;
        self.run(
            &mut none,
            client_addr,
            id,
            Duration::from_secs(5),
            |_, _| true,
        );
        self.settle();
    }

    /// Let every timer that outlives a session (transaction ids kept 40 s) run out.
    fn settle(&mut self) {
        self.now += Duration::from_secs(45);
        let now = self.now;
        self.endpoint.handle_timeout(now);
        while self.endpoint.poll_transmit(now, &mut self.buf).is_some() {}
        while self.endpoint.poll_event().is_some() {}
        self.wire.clear();
    }
}

#[test]
fn ten_thousand_sessions_leave_nothing_behind() {
    let mut world = World::new();
    for i in 0..WARM_UP {
        world.cycle(
            i,
            if i % 2 == 0 {
                Ending::Polite
            } else {
                Ending::Vanish
            },
        );
    }
    assert_eq!(world.endpoint.len(), 0, "every peer released");
    let baseline = alloc::live_bytes();
    let mut samples = Vec::new();
    for i in WARM_UP..CYCLES {
        world.cycle(
            i,
            if i % 2 == 0 {
                Ending::Polite
            } else {
                Ending::Vanish
            },
        );
        if (i + 1) % 2_000 == 0 {
            samples.push((i + 1, alloc::live_bytes() - baseline));
        }
    }
    assert_eq!(world.endpoint.len(), 0, "every peer released");
    let end = alloc::live_bytes() - baseline;
    println!("live heap after the warm-up: {baseline} bytes; growth at cycles {samples:?}; at the end {end} bytes");
    assert!(
        end.abs() <= TOLERANCE,
        "live heap moved {end} bytes over {} cycles (samples {samples:?})",
        CYCLES - WARM_UP
    );
}
