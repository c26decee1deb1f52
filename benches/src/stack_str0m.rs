//! str0m 0.25 in the suite: two `Rtc`s in RTP mode (an SFU forwards RTP packets, so
//! str0m's packetizer and depacketizer stay out of the media rows).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::ChannelId;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::Receive;
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::{addresses, InFlight, Opts, LATENCY, PAYLOAD};

/// One str0m end and what the harness learned from its events.
struct End {
    rtc: Rtc,
    addr: SocketAddr,
    timeout: Option<Instant>,
    connected: bool,
    channel: Option<ChannelId>,
    received_bytes: u64,
    media_added: Vec<(Mid, Direction)>,
    rtp_received: u64,
}

impl End {
    fn new(addr: SocketAddr, start: Instant) -> End {
        let mut rtc = Rtc::builder().set_rtp_mode(true).build(start);
        let host = Candidate::host(addr, "udp").expect("host candidate");
        rtc.add_local_candidate(host).expect("candidate");
        End {
            rtc,
            addr,
            timeout: None,
            connected: false,
            channel: None,
            received_bytes: 0,
            media_added: Vec::new(),
            rtp_received: 0,
        }
    }

    /// str0m's rule: after every input, poll until `Output::Timeout`.
    fn drain(&mut self, now: Instant, wire: &mut VecDeque<InFlight>, rtp: &mut Vec<RtpPacket>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = Some(t);
                    return;
                }
                Ok(Output::Transmit(t)) => wire.push_back(InFlight {
                    at: now + LATENCY,
                    from: t.source,
                    to: t.destination,
                    data: t.contents.to_vec(),
                }),
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::ChannelOpen(id, _) => self.channel = Some(id),
                    Event::ChannelData(d) => self.received_bytes += d.data.len() as u64,
                    Event::MediaAdded(m) => self.media_added.push((m.mid, m.direction)),
                    Event::RtpPacket(p) => {
                        self.rtp_received += 1;
                        rtp.push(p)
                    }
                    _ => {}
                },
                Err(e) => panic!("str0m poll_output: {e}"),
            }
        }
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if let Ok(r) = Receive::new(str0m::net::Protocol::Udp, from, self.addr, data) {
            let _ = self.rtc.handle_input(Input::Receive(now, r));
        }
    }
}

/// Two str0m `Rtc`s.
pub struct Str0mPair {
    now: Instant,
    opts: Opts,
    client: End,
    server: End,
    wire: VecDeque<InFlight>,
    rtp: Vec<RtpPacket>,
    client_mids: Vec<Mid>,
    pt: Option<Pt>,
    /// The server's sending mid (viewer pairs) and its next sequence number.
    server_send: Option<Mid>,
    server_seq: u64,
}

impl Str0mPair {
    fn drain(&mut self) {
        self.client.drain(self.now, &mut self.wire, &mut self.rtp);
        self.server.drain(self.now, &mut self.wire, &mut self.rtp);
        self.rtp.clear();
    }

    fn opus(&self) -> Pt {
        self.client
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == str0m::format::Codec::Opus)
            .map(|p| p.pt())
            .expect("opus")
    }
}

impl crate::Pair for Str0mPair {
    type Rtp = RtpPacket;

    fn new(index: usize, opts: Opts, start: Instant) -> Self {
        let (c, s) = addresses(index);
        Str0mPair {
            now: start,
            opts,
            client: End::new(c, start),
            server: End::new(s, start),
            wire: VecDeque::new(),
            rtp: Vec::new(),
            client_mids: Vec::new(),
            pt: None,
            server_send: None,
            server_seq: 1,
        }
    }

    fn negotiate(&mut self) {
        let mut api = self.client.rtc.sdp_api();
        for _ in 0..self.opts.client_tracks {
            self.client_mids.push(api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                None,
                None,
                None,
            ));
        }
        if self.opts.server_track {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        if self.opts.data_channel {
            api.add_channel("bench".into());
        }
        let (offer, pending) = api.apply().expect("changes");
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer");
        let answer = self
            .server
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .expect("accept offer");
        let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).expect("answer");
        self.client
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("accept answer");
        self.drain();
        self.pt = Some(self.opus());
        self.server_send = self
            .server
            .media_added
            .iter()
            .find(|(_, d)| *d == Direction::SendOnly)
            .map(|(m, _)| *m);
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn next_due(&self) -> Option<Instant> {
        [
            self.client.timeout,
            self.server.timeout,
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
                if d.to == self.server.addr {
                    self.server.receive(now, d.from, &d.data);
                    self.server.drain(now, &mut self.wire, &mut self.rtp);
                } else if d.to == self.client.addr {
                    self.client.receive(now, d.from, &d.data);
                    self.client.drain(now, &mut self.wire, &mut self.rtp);
                }
            }
            if self.client.timeout.is_some_and(|x| x <= now) {
                let _ = self.client.rtc.handle_input(Input::Timeout(now));
            }
            if self.server.timeout.is_some_and(|x| x <= now) {
                let _ = self.server.rtc.handle_input(Input::Timeout(now));
            }
            self.drain();
        }
        self.now = self.now.max(t);
    }

    fn ready(&self) -> bool {
        let dc = !self.opts.data_channel
            || (self.client.channel.is_some() && self.server.channel.is_some());
        self.client.connected && self.server.connected && dc
    }

    fn client_packets(&mut self, track: usize, first_seq: u16, count: usize) -> Vec<Vec<u8>> {
        self.drain();
        self.wire.clear();
        let mid = self.client_mids[track];
        let pt = self.pt.expect("pt");
        let payload: Arc<[u8]> = vec![0xab; PAYLOAD].into();
        let now = self.now;
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let seq = u64::from(first_seq) + i as u64;
            {
                let mut api = self.client.rtc.direct_api();
                let stream = api.stream_tx_by_mid(mid, None).expect("stream tx");
                stream.write_rtp(RtpWrite::new(
                    pt,
                    seq.into(),
                    (seq as u32).wrapping_mul(960),
                    now,
                    payload.clone(),
                ));
            }
            // str0m sends queued media from its timeout handling (the pacer).
            let _ = self.client.rtc.handle_input(Input::Timeout(now));
            self.client.drain(now, &mut self.wire, &mut self.rtp);
            for d in self.wire.drain(..) {
                // RTP only (RTCP's second byte is 192-223, RFC 5761).
                if d.data.len() > PAYLOAD && !(192..=223).contains(&d.data[1]) {
                    out.push(d.data);
                }
            }
        }
        out
    }

    fn server_receive(&mut self, data: &[u8], out: &mut Vec<RtpPacket>) {
        let from = self.client.addr;
        self.server.receive(self.now, from, data);
        let mut sink = VecDeque::new();
        self.server.drain(self.now, &mut sink, out);
    }

    fn server_forward(&mut self, packet: &RtpPacket, deliver: bool) -> usize {
        if self.server_send.is_none() {
            // MediaAdded may come only once the connection is up.
            self.server_send = self
                .server
                .media_added
                .iter()
                .find(|(_, d)| *d == Direction::SendOnly)
                .map(|(m, _)| *m);
        }
        let Some(mid) = self.server_send else {
            return 0;
        };
        let pt = self.pt.expect("pt");
        let seq = self.server_seq;
        self.server_seq += 1;
        {
            let mut api = self.server.rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                return 0;
            };
            stream.write_rtp(RtpWrite::new(
                pt,
                seq.into(),
                packet.header.timestamp,
                self.now,
                packet.payload.clone(),
            ));
        }
        let _ = self.server.rtc.handle_input(Input::Timeout(self.now));
        let mut n = 0;
        loop {
            match self.server.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    n += 1;
                    if deliver {
                        self.wire.push_back(InFlight {
                            at: self.now + LATENCY,
                            from: t.source,
                            to: t.destination,
                            data: t.contents.to_vec(),
                        });
                    }
                }
                Ok(Output::Timeout(t)) => {
                    self.server.timeout = Some(t);
                    break;
                }
                Ok(Output::Event(_)) => {}
                Err(_) => break,
            }
        }
        n
    }

    fn client_rtp(&self) -> u64 {
        self.client.rtp_received
    }

    fn data_turn(&mut self, message: &Bytes) -> u64 {
        if let Some(id) = self.client.channel {
            if let Some(mut ch) = self.client.rtc.channel(id) {
                while ch.write(true, message).unwrap_or(false) {}
            }
            self.client.drain(self.now, &mut self.wire, &mut self.rtp);
        }
        let next = self.next_due().unwrap_or(self.now);
        self.advance_to(next.max(self.now));
        self.server.received_bytes
    }
}
