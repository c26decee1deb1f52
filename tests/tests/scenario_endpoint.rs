//! One `Endpoint`, one socket, 1,000 PeerConnections: 1,000 client cores (each on its own
//! virtual address) negotiate by JSON with server peers that all share 10.1.0.1:4000.
//! Every client completes ICE and DTLS (which proves each STUN check, STUN response, DTLS
//! record reached the right server peer: a misrouted handshake fails the fingerprint or
//! MAC checks), then each client sends one RTP packet naming itself and exactly the right
//! server peer receives it. Datagrams nobody owns are counted as unroutable, never
//! delivered. The clock is virtual and the wire is an in-memory queue with 2 ms latency.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::stun::{Attribute, Class, Message, Method, TransactionId};
use sansrtc::{
    Config, ConnectionState, Datagram, Endpoint, Event, MediaKind, PeerConnection, PeerId,
    Protocol, SessionDescription, TransceiverInit,
};

const PEERS: usize = 1000;
const LATENCY: Duration = Duration::from_millis(2);

struct Client {
    pc: PeerConnection,
    addr: SocketAddr,
    server: PeerId,
    connected: bool,
}

fn config(seed: u64, certificate: &sansrtc::dtls::cert::Certificate) -> Config {
    Config {
        rng_seed: Some(seed),
        certificate: Some(certificate.clone()),
        ..Default::default()
    }
}

#[test]
fn thousand_peers_share_one_socket() {
    let start = Instant::now();
    let mut now = start;
    let server_addr: SocketAddr = "10.1.0.1:4000".parse().expect("addr");
    // Two certificates (one per side) keep setup fast; every DTLS handshake still runs.
    let client_cert = sansrtc::dtls::cert::Certificate::generate().expect("cert");
    let server_cert = sansrtc::dtls::cert::Certificate::generate().expect("cert");
    let mut endpoint = Endpoint::new(vec![(server_addr, Protocol::Udp)]);
    let mut clients: Vec<Client> = Vec::with_capacity(PEERS);
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    let mut by_server: HashMap<PeerId, usize> = HashMap::new();

    for i in 0..PEERS {
        let addr: SocketAddr = format!("10.0.{}.{}:5000", i / 250, i % 250 + 1)
            .parse()
            .expect("addr");
        let mut pc = PeerConnection::new(config(i as u64 + 1, &client_cert), now).expect("pc");
        pc.add_local_address(now, addr, Protocol::Udp);
        pc.add_transceiver(MediaKind::Audio, TransceiverInit::default())
            .expect("transceiver");
        let offer = pc.create_offer(Default::default()).expect("offer");
        pc.set_local_description(now, offer.clone())
            .expect("set local");
        let offer: SessionDescription =
            serde_json::from_str(&serde_json::to_string(&offer).expect("json")).expect("json");

        let server_pc =
            PeerConnection::new(config(100_000 + i as u64, &server_cert), now).expect("server pc");
        let id = endpoint.insert(now, server_pc);
        let answer = endpoint
            .with_peer(id, |s| {
                s.set_remote_description(now, offer)?;
                let answer = s.create_answer()?;
                s.set_local_description(now, answer.clone())?;
                Ok::<_, sansrtc::peer::NegotiationError>(answer)
            })
            .expect("peer")
            .expect("answer");
        pc.set_remote_description(now, answer).expect("set remote");
        by_addr.insert(addr, i);
        by_server.insert(id, i);
        clients.push(Client {
            pc,
            addr,
            server: id,
            connected: false,
        });
    }
    assert_eq!(endpoint.len(), PEERS);

    // A STUN request for a ufrag nobody has, and a DTLS record from a stranger: dropped.
    let stranger: SocketAddr = "10.9.9.9:9999".parse().expect("addr");
    let bogus = Message::new(Class::Request, Method::BINDING, TransactionId([7; 12]))
        .with(Attribute::Username("nobody:x".into()))
        .encode_to_vec(None, true);
    for data in [&bogus[..], &[22, 254, 253, 0, 0][..]] {
        let routed = endpoint.handle_datagram(
            now,
            Datagram {
                local: server_addr,
                remote: stranger,
                protocol: Protocol::Udp,
                data,
            },
        );
        assert_eq!(routed, None);
    }
    assert_eq!(endpoint.stats().unroutable, 2);

    let mut wire: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)> = BTreeMap::new();
    let mut seq = 0u64;
    let mut buf = vec![0u8; 2048];
    let mut server_connected = 0usize;
    let mut received: HashMap<PeerId, Vec<Bytes>> = HashMap::new();
    let mut sent_media = false;
    let deadline = start + Duration::from_secs(60);

    while now < deadline {
        // Outputs of every client and of the endpoint go on the wire.
        for client in clients.iter_mut() {
            while let Some(t) = client.pc.poll_transmit(now, &mut buf) {
                seq += 1;
                let data = buf[..t.len].to_vec();
                wire.insert((now + LATENCY, seq), (t.local, t.remote, data));
            }
            while let Some(event) = client.pc.poll_event() {
                match event {
                    Event::IceCandidate(c) => {
                        endpoint
                            .with_peer(client.server, |s| s.add_ice_candidate(now, c))
                            .expect("peer")
                            .expect("candidate");
                    }
                    Event::ConnectionStateChange(ConnectionState::Connected) => {
                        client.connected = true
                    }
                    Event::ConnectionStateChange(ConnectionState::Failed) => {
                        panic!("client {} failed", client.addr)
                    }
                    _ => {}
                }
            }
        }
        while let Some((_, t)) = endpoint.poll_transmit(now, &mut buf) {
            assert_eq!(t.local, server_addr);
            seq += 1;
            wire.insert(
                (now + LATENCY, seq),
                (t.local, t.remote, buf[..t.len].to_vec()),
            );
        }
        while let Some((id, event)) = endpoint.poll_event() {
            match event {
                Event::IceCandidate(c) => {
                    let i = by_server[&id];
                    clients[i].pc.add_ice_candidate(now, c).expect("candidate");
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => server_connected += 1,
                Event::Rtp { packet, .. } => received.entry(id).or_default().push(packet.payload),
                _ => {}
            }
        }
        let all_connected = clients.iter().all(|c| c.connected) && server_connected == PEERS;
        if all_connected && !sent_media {
            sent_media = true;
            for (i, client) in clients.iter_mut().enumerate() {
                let track = client.pc.transceivers()[0].id;
                let packet = RtpPacket {
                    payload_type: 0,
                    sequence_number: 1,
                    timestamp: 0,
                    marker: false,
                    ssrc: 0,
                    payload: Bytes::from(format!("from client {i}").into_bytes()),
                };
                client.pc.send_rtp(track, &packet).expect("send_rtp");
            }
            continue;
        }
        if sent_media && wire.is_empty() {
            break;
        }

        // Advance the virtual clock to the next delivery or deadline.
        let next_timer = clients
            .iter()
            .filter_map(|c| c.pc.poll_timeout())
            .chain(endpoint.poll_timeout())
            .min();
        let next_delivery = wire.keys().next().map(|k| k.0);
        let Some(next) = [next_timer, next_delivery].into_iter().flatten().min() else {
            break;
        };
        now = now.max(next);
        while let Some(entry) = wire.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (from, to, data) = entry.remove();
            let datagram = Datagram {
                local: to,
                remote: from,
                protocol: Protocol::Udp,
                data: &data,
            };
            if to == server_addr {
                endpoint.handle_datagram(now, datagram);
            } else if let Some(&i) = by_addr.get(&to) {
                clients[i].pc.handle_datagram(now, datagram);
            }
        }
        for client in clients.iter_mut() {
            if client.pc.poll_timeout().is_some_and(|t| t <= now) {
                client.pc.handle_timeout(now);
            }
        }
        endpoint.handle_timeout(now);
    }

    let connected = clients.iter().filter(|c| c.connected).count();
    assert_eq!(connected, PEERS, "clients connected");
    assert_eq!(server_connected, PEERS, "server peers connected");
    for (i, client) in clients.iter().enumerate() {
        let got = received
            .get(&client.server)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert_eq!(
            got,
            &[Bytes::from(format!("from client {i}").into_bytes())],
            "server peer of client {i}"
        );
    }
    // Only the two strangers' datagrams were unroutable.
    assert_eq!(endpoint.stats().unroutable, 2);
    eprintln!(
        "1,000 peers connected on one socket after {:?} of virtual time; endpoint stats {:?}",
        now - start,
        endpoint.stats()
    );
}
