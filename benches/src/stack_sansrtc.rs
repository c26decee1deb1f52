//! sansrtc in the suite: two `PeerConnection`s (the Endpoint rows use `endpoint`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{
    ChannelId, Config, ConnectionState, DataChannelInit, Datagram, Direction, Event, MediaKind,
    PeerConnection, Protocol, SessionDescription, TransceiverId, TransceiverInit,
};

use crate::{addresses, InFlight, Opts, LATENCY, PAYLOAD};

/// Two sansrtc PeerConnections.
pub struct SansPair {
    now: Instant,
    opts: Opts,
    /// The offering end.
    pub client: PeerConnection,
    /// The answering end.
    pub server: PeerConnection,
    client_addr: SocketAddr,
    server_addr: SocketAddr,
    wire: VecDeque<InFlight>,
    buf: Vec<u8>,
    client_connected: bool,
    server_connected: bool,
    channel: Option<ChannelId>,
    server_channel_open: bool,
    client_channel_open: bool,
    client_rtp: u64,
    received_bytes: u64,
    /// The server's sending transceiver (viewer pairs).
    server_track: Option<TransceiverId>,
}

fn config(seed: u64) -> Config {
    Config {
        rng_seed: Some(seed),
        ..Default::default()
    }
}

impl SansPair {
    fn pump(&mut self) {
        let now = self.now;
        while let Some(t) = self.client.poll_transmit(now, &mut self.buf) {
            self.wire.push_back(InFlight {
                at: now + LATENCY,
                from: t.local,
                to: t.remote,
                data: self.buf[..t.len].to_vec(),
            });
        }
        while let Some(t) = self.server.poll_transmit(now, &mut self.buf) {
            self.wire.push_back(InFlight {
                at: now + LATENCY,
                from: t.local,
                to: t.remote,
                data: self.buf[..t.len].to_vec(),
            });
        }
        while let Some(e) = self.client.poll_event() {
            match e {
                Event::IceCandidate(c) => {
                    let _ = self.server.add_ice_candidate(now, c);
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => {
                    self.client_connected = true
                }
                Event::DataChannelOpen(_) => self.client_channel_open = true,
                Event::Rtp { .. } => self.client_rtp += 1,
                _ => {}
            }
        }
        while let Some(e) = self.server.poll_event() {
            match e {
                Event::IceCandidate(c) => {
                    let _ = self.client.add_ice_candidate(now, c);
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => {
                    self.server_connected = true
                }
                Event::DataChannelOpen(_) => self.server_channel_open = true,
                Event::DataChannelMessage { data, .. } => self.received_bytes += data.len() as u64,
                _ => {}
            }
        }
    }
}

impl crate::Pair for SansPair {
    type Rtp = RtpPacket;

    fn new(index: usize, opts: Opts, start: Instant) -> Self {
        let (client_addr, server_addr) = addresses(index);
        let mut client = PeerConnection::new(config(2 * index as u64 + 1), start).expect("pc");
        let mut server = PeerConnection::new(config(2 * index as u64 + 2), start).expect("pc");
        client.add_local_address(start, client_addr, Protocol::Udp);
        server.add_local_address(start, server_addr, Protocol::Udp);
        SansPair {
            now: start,
            opts,
            client,
            server,
            client_addr,
            server_addr,
            wire: VecDeque::new(),
            buf: vec![0u8; 2048],
            client_connected: false,
            server_connected: false,
            channel: None,
            server_channel_open: false,
            client_channel_open: false,
            client_rtp: 0,
            received_bytes: 0,
            server_track: None,
        }
    }

    fn negotiate(&mut self) {
        let now = self.now;
        for _ in 0..self.opts.client_tracks {
            self.client
                .add_track(MediaKind::Audio, vec!["s".into()])
                .expect("track");
        }
        if self.opts.server_track {
            self.client
                .add_transceiver(
                    MediaKind::Audio,
                    TransceiverInit {
                        direction: Direction::RecvOnly,
                        ..Default::default()
                    },
                )
                .expect("transceiver");
        }
        if self.opts.data_channel {
            self.channel = Some(
                self.client
                    .create_data_channel(now, "bench", DataChannelInit::default())
                    .expect("channel"),
            );
        }
        let offer = self.client.create_offer(Default::default()).expect("offer");
        self.client
            .set_local_description(now, offer.clone())
            .expect("local");
        self.server
            .set_remote_description(now, offer)
            .expect("remote");
        if self.opts.server_track {
            self.server
                .add_track(MediaKind::Audio, vec!["f".into()])
                .expect("track");
            self.server_track = self
                .server
                .transceivers()
                .iter()
                .find(|t| t.direction.sends())
                .map(|t| t.id);
        }
        let answer: SessionDescription = self.server.create_answer().expect("answer");
        self.server
            .set_local_description(now, answer.clone())
            .expect("local");
        self.client
            .set_remote_description(now, answer)
            .expect("remote");
        self.pump();
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn next_due(&self) -> Option<Instant> {
        [
            self.client.poll_timeout(),
            self.server.poll_timeout(),
            self.wire.front().map(|d| d.at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn advance_to(&mut self, t: Instant) {
        while let Some(next) = self.next_due().filter(|n| *n <= t) {
            self.now = self.now.max(next);
            let now = self.now;
            while self.wire.front().is_some_and(|d| d.at <= now) {
                let Some(d) = self.wire.pop_front() else {
                    break;
                };
                let datagram = Datagram {
                    local: d.to,
                    remote: d.from,
                    protocol: Protocol::Udp,
                    data: &d.data,
                };
                if d.to == self.server_addr {
                    self.server.handle_datagram(now, datagram);
                } else if d.to == self.client_addr {
                    self.client.handle_datagram(now, datagram);
                }
            }
            if self.client.poll_timeout().is_some_and(|x| x <= now) {
                self.client.handle_timeout(now);
            }
            if self.server.poll_timeout().is_some_and(|x| x <= now) {
                self.server.handle_timeout(now);
            }
            self.pump();
        }
        self.now = self.now.max(t);
    }

    fn ready(&self) -> bool {
        let dc = !self.opts.data_channel || (self.server_channel_open && self.client_channel_open);
        self.client_connected && self.server_connected && dc
    }

    fn client_packets(&mut self, track: usize, first_seq: u16, count: usize) -> Vec<Vec<u8>> {
        let now = self.now;
        self.pump();
        let id = self
            .client
            .transceivers()
            .iter()
            .filter(|t| t.direction.sends())
            .nth(track)
            .expect("client track")
            .id;
        let mut out = Vec::with_capacity(count);
        let payload = Bytes::from(vec![0xab; PAYLOAD]);
        for i in 0..count {
            let seq = first_seq.wrapping_add(i as u16);
            let packet = RtpPacket {
                payload_type: 111,
                sequence_number: seq,
                timestamp: u32::from(seq).wrapping_mul(960),
                marker: false,
                ssrc: 0,
                payload: payload.clone(),
            };
            self.client.send_rtp(id, &packet).expect("send");
            while let Some(t) = self.client.poll_transmit(now, &mut self.buf) {
                // RTP only (RTCP's second byte is 192-223, RFC 5761).
                if !(192..=223).contains(&self.buf[1]) {
                    out.push(self.buf[..t.len].to_vec());
                }
            }
        }
        out
    }

    fn server_receive(&mut self, data: &[u8], out: &mut Vec<RtpPacket>) {
        self.server.handle_datagram(
            self.now,
            Datagram {
                local: self.server_addr,
                remote: self.client_addr,
                protocol: Protocol::Udp,
                data,
            },
        );
        while let Some(e) = self.server.poll_event() {
            if let Event::Rtp { packet, .. } = e {
                out.push(packet);
            }
        }
    }

    fn server_forward(&mut self, packet: &RtpPacket, deliver: bool) -> usize {
        let Some(track) = self.server_track else {
            return 0;
        };
        let _ = self.server.send_rtp(track, packet);
        let mut n = 0;
        while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
            n += 1;
            if deliver {
                self.wire.push_back(InFlight {
                    at: self.now + LATENCY,
                    from: t.local,
                    to: t.remote,
                    data: self.buf[..t.len].to_vec(),
                });
            }
        }
        n
    }

    fn client_rtp(&self) -> u64 {
        self.client_rtp
    }

    fn data_turn(&mut self, message: &Bytes) -> u64 {
        if let Some(channel) = self.channel {
            while self
                .client
                .send_data(self.now, channel, message.clone(), true)
                .is_ok()
            {}
        }
        let next = self.next_due().unwrap_or(self.now);
        self.advance_to(next.max(self.now));
        self.received_bytes
    }
}
