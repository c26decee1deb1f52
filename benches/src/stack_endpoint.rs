//! sansrtc's one-socket server in the suite: an `Endpoint` holding the server end of
//! every connection (what a sansrtc SFU uses), and its clients as plain
//! PeerConnections. The set-up (`sansrtc_tests::endpoint_setup`) is shared with
//! `examples/bench_endpoint.rs`.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{Datagram, Event, PeerId, Protocol, TransceiverId};

use sansrtc_tests::endpoint_setup::{connect, Setup, SERVER};

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
