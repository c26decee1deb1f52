//! webrtc-rs's sans-IO `rtc` 0.21 (ring backend) in the suite: two `RTCPeerConnection`s.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::data_channel::RTCDataChannelId;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

use crate::{addresses, InFlight, Opts, LATENCY, PAYLOAD};

/// What the rtc data channel may have outstanding before the harness stops adding.
const DC_OUTSTANDING: usize = 1 << 20;

struct End {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    timeout: Option<Instant>,
    connected: bool,
    channel_open: Option<RTCDataChannelId>,
    received_bytes: u64,
    /// Sending tracks: sender and its SSRC.
    senders: Vec<(RTCRtpSenderId, u32)>,
    rtp_received: u64,
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn track(ssrc: u32, name: &str) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("stream-{name}"),
        format!("track-{name}"),
        format!("label-{name}"),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus(),
            ..Default::default()
        }],
    )
}

impl End {
    fn new(addr: SocketAddr, start: Instant) -> End {
        let mut media = MediaEngine::default();
        media.register_default_codecs().expect("codecs");
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_media_engine(media)
            .build(start)
            .expect("rtc peer connection");
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("host candidate");
        pc.add_local_candidate(
            RTCIceCandidate::from(&candidate)
                .to_json()
                .expect("candidate json"),
        )
        .expect("local candidate");
        End {
            pc,
            addr,
            timeout: None,
            connected: false,
            channel_open: None,
            received_bytes: 0,
            senders: Vec::new(),
            rtp_received: 0,
        }
    }

    fn drain(&mut self, now: Instant, wire: &mut VecDeque<InFlight>, rtp: &mut Vec<rtp::Packet>) {
        while let Some(w) = self.pc.poll_write() {
            wire.push_back(InFlight {
                at: now + LATENCY,
                from: w.transport.local_addr,
                to: w.transport.peer_addr,
                data: w.message.to_vec(),
            });
        }
        while let Some(e) = self.pc.poll_event() {
            match e {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                    RTCPeerConnectionState::Connected,
                ) => self.connected = true,
                RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(id)) => {
                    self.channel_open = Some(id)
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            match message {
                RTCMessage::RtpPacket(_, p) => {
                    self.rtp_received += 1;
                    rtp.push(p)
                }
                RTCMessage::DataChannelMessage(_, m) => self.received_bytes += m.data.len() as u64,
                _ => {}
            }
        }
        self.timeout = self.pc.poll_timeout();
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let _ = self.pc.handle_read(TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: self.addr,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        });
    }
}

/// Two rtc `RTCPeerConnection`s.
pub struct RtcPair {
    now: Instant,
    opts: Opts,
    client: End,
    server: End,
    wire: VecDeque<InFlight>,
    rtp: Vec<rtp::Packet>,
    channel: Option<RTCDataChannelId>,
    pt: u8,
    server_seq: u16,
}

impl RtcPair {
    fn drain(&mut self) {
        self.client.drain(self.now, &mut self.wire, &mut self.rtp);
        self.server.drain(self.now, &mut self.wire, &mut self.rtp);
        self.rtp.clear();
    }
}

impl crate::Pair for RtcPair {
    type Rtp = rtp::Packet;

    fn new(index: usize, opts: Opts, start: Instant) -> Self {
        let (c, s) = addresses(index);
        RtcPair {
            now: start,
            opts,
            client: End::new(c, start),
            server: End::new(s, start),
            wire: VecDeque::new(),
            rtp: Vec::new(),
            channel: None,
            pt: 111,
            server_seq: 1,
        }
    }

    fn negotiate(&mut self) {
        let now = self.now;
        for i in 0..self.opts.client_tracks {
            let ssrc = 0x1000_0000 + i as u32;
            let id = self
                .client
                .pc
                .add_track(track(ssrc, &format!("c{i}")))
                .expect("track");
            self.client.senders.push((id, ssrc));
        }
        if self.opts.server_track {
            self.client
                .pc
                .add_transceiver_from_kind(
                    RtpCodecKind::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        streams: vec![],
                        send_encodings: vec![],
                    }),
                )
                .expect("transceiver");
        }
        if self.opts.data_channel {
            self.channel = Some(
                self.client
                    .pc
                    .create_data_channel("bench", None)
                    .expect("channel")
                    .id(),
            );
        }
        let offer = self.client.pc.create_offer(None).expect("offer");
        self.client
            .pc
            .set_local_description(now, offer.clone())
            .expect("local");
        self.server
            .pc
            .set_remote_description(now, offer)
            .expect("remote");
        if self.opts.server_track {
            let ssrc = 0x2000_0000;
            let id = self.server.pc.add_track(track(ssrc, "s")).expect("track");
            self.server.senders.push((id, ssrc));
        }
        let answer = self.server.pc.create_answer(None).expect("answer");
        self.server
            .pc
            .set_local_description(now, answer.clone())
            .expect("local");
        self.client
            .pc
            .set_remote_description(now, answer)
            .expect("remote");
        let first = self.client.senders.first().map(|s| (true, s.0)).or(self
            .server
            .senders
            .first()
            .map(|s| (false, s.0)));
        if let Some((on_client, id)) = first {
            let end = if on_client {
                &mut self.client
            } else {
                &mut self.server
            };
            if let Some(mut s) = end.pc.rtp_sender(id) {
                if let Some(c) = s.get_parameters().rtp_parameters.codecs.first() {
                    self.pt = c.payload_type;
                }
            }
        }
        self.drain();
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
                let _ = self.client.pc.handle_timeout(now);
            }
            if self.server.timeout.is_some_and(|x| x <= now) {
                let _ = self.server.pc.handle_timeout(now);
            }
            self.drain();
            // A deadline that does not move after handle_timeout would spin.
            for end in [&mut self.client, &mut self.server] {
                if end.timeout.is_some_and(|x| x <= now) {
                    end.timeout = Some(now + Duration::from_millis(1));
                }
            }
        }
        self.now = self.now.max(t);
    }

    fn ready(&self) -> bool {
        let dc = !self.opts.data_channel
            || (self.client.channel_open.is_some() && self.server.channel_open.is_some());
        self.client.connected && self.server.connected && dc
    }

    fn client_packets(&mut self, track: usize, first_seq: u16, count: usize) -> Vec<Vec<u8>> {
        self.drain();
        self.wire.clear();
        let (id, ssrc) = self.client.senders[track];
        let payload = Bytes::from(vec![0xab; PAYLOAD]);
        let now = self.now;
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let seq = first_seq.wrapping_add(i as u16);
            let packet = rtp::packet::Packet {
                header: rtp::header::Header {
                    version: 2,
                    payload_type: self.pt,
                    sequence_number: seq,
                    timestamp: u32::from(seq).wrapping_mul(960),
                    ssrc,
                    ..Default::default()
                },
                payload: payload.clone(),
            };
            self.client
                .pc
                .rtp_sender(id)
                .expect("sender")
                .write_rtp(now, packet)
                .expect("write_rtp");
            self.client.drain(now, &mut self.wire, &mut self.rtp);
            for d in self.wire.drain(..) {
                if d.data.len() > PAYLOAD && !(192..=223).contains(&d.data[1]) {
                    out.push(d.data);
                }
            }
        }
        out
    }

    fn server_receive(&mut self, data: &[u8], out: &mut Vec<rtp::Packet>) {
        let from = self.client.addr;
        self.server.receive(self.now, from, data);
        while let Some(TaggedRTCMessage { message, .. }) = self.server.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, p) = message {
                out.push(p);
            }
        }
    }

    fn server_forward(&mut self, packet: &rtp::Packet, deliver: bool) -> usize {
        let Some(&(id, ssrc)) = self.server.senders.first() else {
            return 0;
        };
        let mut p = packet.clone();
        p.header.ssrc = ssrc;
        p.header.payload_type = self.pt;
        p.header.sequence_number = self.server_seq;
        self.server_seq = self.server_seq.wrapping_add(1);
        if let Some(mut s) = self.server.pc.rtp_sender(id) {
            let _ = s.write_rtp(self.now, p);
        }
        let mut n = 0;
        while let Some(w) = self.server.pc.poll_write() {
            n += 1;
            if deliver {
                self.wire.push_back(InFlight {
                    at: self.now + LATENCY,
                    from: w.transport.local_addr,
                    to: w.transport.peer_addr,
                    data: w.message.to_vec(),
                });
            }
        }
        n
    }

    fn client_rtp(&self) -> u64 {
        self.client.rtp_received
    }

    fn data_turn(&mut self, message: &Bytes) -> u64 {
        if let Some(id) = self.channel {
            if let Some(mut ch) = self.client.pc.data_channel(id) {
                while ch.outstanding_bytes() < DC_OUTSTANDING {
                    if ch.send(self.now, BytesMut::from(&message[..])).is_err() {
                        break;
                    }
                }
            }
            self.client.drain(self.now, &mut self.wire, &mut self.rtp);
        }
        let next = self.next_due().unwrap_or(self.now);
        self.advance_to(next.max(self.now));
        self.server.received_bytes
    }
}
