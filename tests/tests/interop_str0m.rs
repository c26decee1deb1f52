//! Interop with str0m (crates.io), in the same process and without sockets: one sansrtc
//! `PeerConnection` and one `str0m::Rtc`, each on its own made-up address, driven by a
//! small deterministic loop in this file (a virtual clock that jumps to the earliest
//! deadline of the two or of a datagram in flight, datagrams carried in memory with a
//! fixed one-way latency). Host candidates travel in the SDP, no trickle.
//!
//! Both offer directions, so both DTLS and SCTP roles:
//! - sansrtc creates a channel and offers, str0m answers; str0m sees the channel open,
//!   messages of many sizes (empty, one byte, 1 KiB, 60 KiB, across str0m's 64 KiB
//!   default, up to the smaller max-message-size of the two SDPs), text and binary, go
//!   sansrtc -> str0m and str0m echoes each non-empty one back; both legs identical and in
//!   order. Then sansrtc closes the channel and str0m reports it closed.
//! - str0m adds a channel and offers, sansrtc answers; the same messages but the empty
//!   ones str0m -> sansrtc, echoed back by sansrtc; then str0m closes the channel and
//!   sansrtc reports it closed.
//! - Empty messages from str0m: str0m 0.25 never puts them on the wire and its ordered
//!   channel stalls behind them (`str0m_empty_message` records exactly that); sansrtc's
//!   empty messages reach str0m as empty messages.
//!
//! Printed, never asserted: the virtual time to connected, and a rough wall-clock MB/s of
//! 16 KiB ordered messages sansrtc -> str0m.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::datachannel::DataChannelError;
use sansrtc::{
    ChannelId, Config, ConnectionState, DataChannelInit, Datagram, Event, OfferOptions,
    PeerConnection, Protocol, SessionDescription,
};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::ChannelId as Str0mChannel;
use str0m::net::Receive;
use str0m::{Candidate, Input, Output, Rtc};

/// One-way delay of the in-memory link.
const LATENCY: Duration = Duration::from_millis(5);

/// str0m's send buffer for all channels (its default is 128 KiB, less than the largest
/// message both sides accept, which it would then refuse to send).
const STR0M_SEND_BUFFER: usize = 1 << 20;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// A datagram on the in-memory link.
struct InFlight {
    arrives: Instant,
    to_str0m: bool,
    from: SocketAddr,
    to: SocketAddr,
    data: Vec<u8>,
}

/// What str0m reported, kept for the assertions.
#[derive(Default)]
struct Str0mLog {
    connected_at: Option<Instant>,
    opened: Vec<(Str0mChannel, String)>,
    closed: Vec<Str0mChannel>,
    received: Vec<(Str0mChannel, Vec<u8>, bool)>,
    received_count: usize,
    received_bytes: usize,
    disconnected: bool,
}

/// The two peers, the link between them and the virtual clock.
struct Pair {
    start: Instant,
    now: Instant,
    pc: PeerConnection,
    pc_addr: SocketAddr,
    rtc: Rtc,
    rtc_addr: SocketAddr,
    rtc_timeout: Instant,
    wire: VecDeque<InFlight>,
    buf: Vec<u8>,
    /// sansrtc's events except messages, in order.
    pc_events: Vec<Event>,
    pc_received: Vec<(ChannelId, Bytes, bool)>,
    pc_connected_at: Option<Instant>,
    rtc_log: Str0mLog,
    /// Messages waiting for room in the sender's buffer.
    pc_outbox: VecDeque<(ChannelId, Bytes, bool)>,
    rtc_outbox: VecDeque<(Str0mChannel, Vec<u8>, bool)>,
    /// Echo every message received back on its channel.
    pc_echo: bool,
    rtc_echo: bool,
    /// Keep str0m's received payloads (off for the throughput run: counted only).
    keep_rtc_payloads: bool,
    /// Datagrams str0m could not parse as anything (STUN, DTLS, RTP...).
    unparsed_by_str0m: usize,
}

impl Pair {
    fn new(seed: u64) -> Pair {
        let start = Instant::now();
        let pc_addr = addr("10.0.0.1:5000");
        let rtc_addr = addr("10.0.0.2:6000");
        let mut pc = PeerConnection::new(
            Config {
                rng_seed: Some(seed),
                ..Config::default()
            },
            start,
        )
        .expect("sansrtc peer");
        pc.add_local_address(start, pc_addr, Protocol::Udp);
        let rtc = Rtc::builder()
            .set_sctp_max_buffered_amount(STR0M_SEND_BUFFER)
            .build(start);
        let mut pair = Pair {
            start,
            now: start,
            pc,
            pc_addr,
            rtc,
            rtc_addr,
            rtc_timeout: start,
            wire: VecDeque::new(),
            buf: vec![0u8; 2048],
            pc_events: Vec::new(),
            pc_received: Vec::new(),
            pc_connected_at: None,
            rtc_log: Str0mLog::default(),
            pc_outbox: VecDeque::new(),
            rtc_outbox: VecDeque::new(),
            pc_echo: false,
            rtc_echo: false,
            keep_rtc_payloads: true,
            unparsed_by_str0m: 0,
        };
        let host = Candidate::host(rtc_addr, "udp").expect("str0m host candidate");
        assert!(pair.rtc.add_local_candidate(host).is_some());
        pair.drain_rtc();
        pair
    }

    /// str0m's rule: after every mutation, poll until `Output::Timeout`.
    fn drain_rtc(&mut self) {
        loop {
            match self.rtc.poll_output().expect("str0m poll_output") {
                Output::Timeout(t) => {
                    self.rtc_timeout = t;
                    return;
                }
                Output::Transmit(t) => self.wire.push_back(InFlight {
                    arrives: self.now + LATENCY,
                    to_str0m: false,
                    from: t.source,
                    to: t.destination,
                    data: t.contents.to_vec(),
                }),
                Output::Event(e) => self.on_rtc_event(e),
            }
        }
    }

    fn on_rtc_event(&mut self, event: str0m::Event) {
        match event {
            str0m::Event::Connected => {
                self.rtc_log.connected_at.get_or_insert(self.now);
            }
            str0m::Event::IceConnectionStateChange(str0m::IceConnectionState::Disconnected) => {
                self.rtc_log.disconnected = true;
            }
            str0m::Event::ChannelOpen(id, label) => self.rtc_log.opened.push((id, label)),
            str0m::Event::ChannelClose(id) => self.rtc_log.closed.push(id),
            str0m::Event::ChannelData(d) => {
                self.rtc_log.received_count += 1;
                self.rtc_log.received_bytes += d.data.len();
                // str0m cannot send an empty message (see `str0m_empty_message`), so
                // its echo skips them; the test expects exactly that.
                if self.rtc_echo && !d.data.is_empty() {
                    self.rtc_outbox.push_back((d.id, d.data.clone(), d.binary));
                }
                if self.keep_rtc_payloads {
                    self.rtc_log.received.push((d.id, d.data, d.binary));
                }
            }
            _ => {}
        }
    }

    fn pump_pc(&mut self) {
        while let Some(t) = self.pc.poll_transmit(self.now, &mut self.buf) {
            let data = self.buf.get(..t.len).expect("transmit length").to_vec();
            self.wire.push_back(InFlight {
                arrives: self.now + LATENCY,
                to_str0m: true,
                from: t.local,
                to: t.remote,
                data,
            });
        }
        while let Some(event) = self.pc.poll_event() {
            match event {
                Event::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } => {
                    if self.pc_echo {
                        self.pc_outbox.push_back((channel, data.clone(), binary));
                    }
                    self.pc_received.push((channel, data, binary));
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => {
                    self.pc_connected_at.get_or_insert(self.now);
                    self.pc_events.push(event);
                }
                other => self.pc_events.push(other),
            }
        }
    }

    /// Hand queued messages to each sender while it has room.
    fn flush_outboxes(&mut self) {
        while let Some((channel, data, binary)) = self.pc_outbox.front().cloned() {
            match self.pc.send_data(self.now, channel, data, binary) {
                Ok(()) => {
                    self.pc_outbox.pop_front();
                }
                Err(DataChannelError::BufferFull) => break,
                Err(e) => panic!("sansrtc send_data: {e}"),
            }
        }
        while let Some((id, data, binary)) = self.rtc_outbox.front() {
            let Some(mut channel) = self.rtc.channel(*id) else {
                break; // not open (yet)
            };
            let accepted = channel.write(*binary, data).expect("str0m channel write");
            self.drain_rtc();
            if !accepted {
                break;
            }
            self.rtc_outbox.pop_front();
        }
    }

    /// One turn: move what is ready, jump the clock to the next deadline, deliver what
    /// arrives and fire what is due.
    fn step(&mut self) {
        self.flush_outboxes();
        self.pump_pc();
        let mut next = self.rtc_timeout;
        if let Some(t) = self.pc.poll_timeout() {
            next = next.min(t);
        }
        if let Some(d) = self.wire.front() {
            next = next.min(d.arrives);
        }
        self.now = self.now.max(next);
        while self.wire.front().is_some_and(|d| d.arrives <= self.now) {
            let Some(d) = self.wire.pop_front() else {
                break;
            };
            if d.to_str0m {
                assert_eq!(d.to, self.rtc_addr, "sansrtc sends to str0m's address");
                match Receive::new(str0m::net::Protocol::Udp, d.from, d.to, &d.data) {
                    Ok(receive) => {
                        self.rtc
                            .handle_input(Input::Receive(self.now, receive))
                            .expect("str0m handle_input");
                        self.drain_rtc();
                    }
                    Err(_) => self.unparsed_by_str0m += 1,
                }
            } else {
                assert_eq!(d.to, self.pc_addr, "str0m sends to sansrtc's address");
                self.pc.handle_datagram(
                    self.now,
                    Datagram {
                        local: d.to,
                        remote: d.from,
                        protocol: Protocol::Udp,
                        data: &d.data,
                    },
                );
                self.pump_pc();
            }
        }
        if self.pc.poll_timeout().is_some_and(|t| t <= self.now) {
            self.pc.handle_timeout(self.now);
        }
        if self.rtc_timeout <= self.now {
            self.rtc
                .handle_input(Input::Timeout(self.now))
                .expect("str0m timeout");
            self.drain_rtc();
        }
        self.pump_pc();
    }

    /// Run until `done` holds or `limit` of virtual time has passed.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        let mut steps = 0u64;
        while self.now <= end {
            if done(self) {
                return true;
            }
            steps += 1;
            assert!(steps < 5_000_000, "no progress at {:?}", self.elapsed());
            self.step();
        }
        done(self)
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn connected(&self) -> bool {
        self.pc_connected_at.is_some() && self.rtc_log.connected_at.is_some()
    }

    fn pc_opened(&self, channel: ChannelId) -> bool {
        self.pc_events
            .iter()
            .any(|e| matches!(e, Event::DataChannelOpen(c) if *c == channel))
    }

    fn pc_closed(&self, channel: ChannelId) -> bool {
        self.pc_events
            .iter()
            .any(|e| matches!(e, Event::DataChannelClose(c) if *c == channel))
    }

    fn pc_remote_channel(&self) -> Option<(ChannelId, String)> {
        self.pc_events.iter().find_map(|e| match e {
            Event::DataChannel { channel, label, .. } => Some((*channel, label.clone())),
            _ => None,
        })
    }

    fn print_connect_time(&self, direction: &str) {
        let at = |t: Option<Instant>| t.map(|t| t - self.start);
        eprintln!(
            "{direction}: connected in virtual time: sansrtc {:?}, str0m {:?} ({} ms one-way latency)",
            at(self.pc_connected_at),
            at(self.rtc_log.connected_at),
            LATENCY.as_millis()
        );
    }
}

/// `a=max-message-size` of an SDP (its one data section).
fn max_message_size(sdp: &str) -> usize {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=max-message-size:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no a=max-message-size in\n{sdp}"))
}

/// Messages of the sizes that matter, each as text and as binary, with distinct
/// contents so a swap or a corrupted byte shows.
fn messages(max: usize) -> Vec<(Vec<u8>, bool)> {
    let sizes = [
        0,
        1,
        2,
        100,
        1024,
        1200,
        16 * 1024,
        60 * 1024,
        64 * 1024 - 1,
        64 * 1024,
        64 * 1024 + 1,
        100_000,
        max - 1,
        max,
    ];
    let mut out = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        for binary in [true, false] {
            let data: Vec<u8> = if binary {
                (0..len)
                    .map(|k| (k.wrapping_mul(31) ^ (i * 7 + 3)) as u8)
                    .collect()
            } else {
                (0..len).map(|k| b'a' + ((k + i) % 26) as u8).collect()
            };
            out.push((data, binary));
        }
    }
    out
}

fn non_empty(messages: &[(Vec<u8>, bool)]) -> Vec<(Vec<u8>, bool)> {
    messages
        .iter()
        .filter(|(d, _)| !d.is_empty())
        .cloned()
        .collect()
}

/// Compare two message lists, reporting the first difference without dumping megabytes.
fn assert_same_messages(what: &str, got: &[(Vec<u8>, bool)], want: &[(Vec<u8>, bool)]) {
    let describe = |m: &(Vec<u8>, bool)| format!("{} bytes, binary {}", m.0.len(), m.1);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g == w,
            "{what}: message {i} differs: got {}, want {}",
            describe(g),
            describe(w)
        );
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: got {} messages, want {}",
        got.len(),
        want.len()
    );
}

/// sansrtc creates a channel and offers, str0m answers; both connected, the channel
/// open on both sides. Returns the pair, our channel, str0m's id for it and the smaller
/// max-message-size of the two SDPs.
fn sansrtc_offers(seed: u64, label: &str) -> (Pair, ChannelId, Str0mChannel, usize) {
    let mut p = Pair::new(seed);
    let now = p.now;
    let channel =
        p.pc.create_data_channel(now, label, DataChannelInit::default())
            .expect("channel");
    let offer = p.pc.create_offer(OfferOptions::default()).expect("offer");
    p.pc.set_local_description(now, offer).expect("local offer");
    // As in a browser, the candidates gathered so far are in the local description (the
    // created offer has none), so no trickle is needed.
    let offer = p.pc.local_description().expect("local description");
    assert!(
        offer.sdp.contains("a=candidate:"),
        "host candidate in the offer"
    );
    let answer = p
        .rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer.sdp).expect("str0m parses our offer"))
        .expect("str0m accepts our offer");
    p.drain_rtc();
    let answer = answer.to_sdp_string();
    assert!(
        answer.contains("a=candidate:"),
        "host candidate in str0m's answer"
    );
    p.pc.set_remote_description(now, SessionDescription::answer(answer.clone()))
        .expect("we accept str0m's answer");
    let max = max_message_size(&offer.sdp).min(max_message_size(&answer));

    assert!(
        p.run_until(Duration::from_secs(10), |p| p.connected()),
        "connected: sansrtc {:?}, str0m {:?}",
        p.pc.connection_state(),
        p.rtc_log.connected_at
    );
    p.print_connect_time("sansrtc offers");
    eprintln!("  max message size of both SDPs: {max}");
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.pc_opened(channel)
            && !p.rtc_log.opened.is_empty()),
        "channel open: sansrtc {}, str0m {:?}",
        p.pc_opened(channel),
        p.rtc_log.opened
    );
    let (remote, opened_label) = p.rtc_log.opened.first().cloned().expect("str0m's channel");
    assert_eq!(opened_label, label);
    assert!(p.rtc.channel(remote).is_some(), "writable on str0m's side");
    (p, channel, remote, max)
}

#[test]
fn sansrtc_offers_str0m_answers() {
    let (mut p, channel, remote, max) = sansrtc_offers(1, "interop");
    let sent = messages(max);
    p.rtc_echo = true;
    for (data, binary) in &sent {
        p.pc_outbox
            .push_back((channel, Bytes::from(data.clone()), *binary));
    }
    let want_echoes = non_empty(&sent).len();
    let delivered = p.run_until(Duration::from_secs(60), |p| {
        p.rtc_log.received.len() >= sent.len() && p.pc_received.len() >= want_echoes
    });
    let at_str0m: Vec<(Vec<u8>, bool)> = p
        .rtc_log
        .received
        .iter()
        .filter(|(id, _, _)| *id == remote)
        .map(|(_, d, b)| (d.clone(), *b))
        .collect();
    let echoed: Vec<(Vec<u8>, bool)> = p
        .pc_received
        .iter()
        .filter(|(c, _, _)| *c == channel)
        .map(|(_, d, b)| (d.to_vec(), *b))
        .collect();
    assert!(
        delivered,
        "{} of {} messages reached str0m, {} echoes back (max message size {max})",
        at_str0m.len(),
        sent.len(),
        echoed.len()
    );
    assert_same_messages("sansrtc -> str0m", &at_str0m, &sent);
    assert_same_messages("str0m's echo -> sansrtc", &echoed, &non_empty(&sent));
    assert_eq!(p.rtc_log.received_count, p.rtc_log.received.len());

    let now = p.now;
    p.pc.close_data_channel(now, channel);
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.pc_closed(channel)
            && p.rtc_log.closed.contains(&remote)),
        "closed: sansrtc {}, str0m {:?}",
        p.pc_closed(channel),
        p.rtc_log.closed
    );
    assert!(p.rtc.channel(remote).is_none(), "str0m dropped the channel");
    assert_eq!(p.pc.connection_state(), ConnectionState::Connected);
    assert!(p.rtc.is_connected() && !p.rtc_log.disconnected);
    assert_eq!(
        p.unparsed_by_str0m, 0,
        "str0m classified every datagram we sent"
    );
}

/// str0m adds a channel and offers, sansrtc answers; both connected, the channel open
/// on both sides. Returns the pair, our id for the channel, str0m's and the smaller
/// max-message-size of the two SDPs.
fn str0m_offers(seed: u64, label: &str) -> (Pair, ChannelId, Str0mChannel, usize) {
    let mut p = Pair::new(seed);
    let now = p.now;
    let mut api = p.rtc.sdp_api();
    let cid = api.add_channel(label.to_string());
    let (offer, pending) = api.apply().expect("str0m makes an offer");
    p.drain_rtc();
    let offer = offer.to_sdp_string();
    assert!(
        offer.contains("a=candidate:"),
        "host candidate in str0m's offer"
    );
    p.pc.set_remote_description(now, SessionDescription::offer(offer.clone()))
        .expect("we accept str0m's offer");
    let answer = p.pc.create_answer().expect("answer");
    p.pc.set_local_description(now, answer)
        .expect("local answer");
    let answer = p.pc.local_description().expect("local description");
    assert!(
        answer.sdp.contains("a=candidate:"),
        "host candidate in the answer"
    );
    p.rtc
        .sdp_api()
        .accept_answer(
            pending,
            SdpAnswer::from_sdp_string(&answer.sdp).expect("str0m parses our answer"),
        )
        .expect("str0m accepts our answer");
    p.drain_rtc();
    let max = max_message_size(&offer).min(max_message_size(&answer.sdp));

    assert!(
        p.run_until(Duration::from_secs(10), |p| p.connected()),
        "connected: sansrtc {:?}, str0m {:?}",
        p.pc.connection_state(),
        p.rtc_log.connected_at
    );
    p.print_connect_time("str0m offers");
    eprintln!("  max message size of both SDPs: {max}");
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.pc_remote_channel().is_some()
            && p.rtc_log.opened.iter().any(|(id, _)| *id == cid)),
        "channel open: sansrtc {:?}, str0m {:?}",
        p.pc_remote_channel(),
        p.rtc_log.opened
    );
    let (channel, remote_label) = p.pc_remote_channel().expect("sansrtc's channel");
    assert_eq!(remote_label, label);
    assert!(p.pc_opened(channel), "open on our side too");
    assert!(p.rtc.channel(cid).is_some(), "writable on str0m's side");
    (p, channel, cid, max)
}

#[test]
fn str0m_offers_sansrtc_answers() {
    let (mut p, channel, cid, max) = str0m_offers(2, "from-str0m");
    // Without empty messages: str0m drops them (see `str0m_empty_message`).
    let sent = non_empty(&messages(max));
    p.pc_echo = true;
    for (data, binary) in &sent {
        p.rtc_outbox.push_back((cid, data.clone(), *binary));
    }
    let delivered = p.run_until(Duration::from_secs(60), |p| {
        p.rtc_log.received.len() >= sent.len()
    });
    let at_sansrtc: Vec<(Vec<u8>, bool)> = p
        .pc_received
        .iter()
        .filter(|(c, _, _)| *c == channel)
        .map(|(_, d, b)| (d.to_vec(), *b))
        .collect();
    let echoed: Vec<(Vec<u8>, bool)> = p
        .rtc_log
        .received
        .iter()
        .filter(|(id, _, _)| *id == cid)
        .map(|(_, d, b)| (d.clone(), *b))
        .collect();
    assert!(
        delivered,
        "{} of {} messages reached sansrtc, {} echoes back (max message size {max})",
        at_sansrtc.len(),
        sent.len(),
        echoed.len()
    );
    assert_same_messages("str0m -> sansrtc", &at_sansrtc, &sent);
    assert_same_messages("sansrtc's echo -> str0m", &echoed, &sent);

    p.rtc.direct_api().close_data_channel(cid);
    p.drain_rtc();
    assert!(
        p.run_until(Duration::from_secs(10), |p| p.pc_closed(channel)
            && p.rtc_log.closed.contains(&cid)),
        "closed: sansrtc {}, str0m {:?}",
        p.pc_closed(channel),
        p.rtc_log.closed
    );
    assert_eq!(p.pc.connection_state(), ConnectionState::Connected);
    assert!(p.rtc.is_connected() && !p.rtc_log.disconnected);
    assert_eq!(
        p.unparsed_by_str0m, 0,
        "str0m classified every datagram we sent"
    );
}

/// A rough figure, printed only: 16 KiB ordered messages sansrtc -> str0m for a few
/// seconds of wall time, str0m counting what it receives.
#[test]
fn throughput_sansrtc_to_str0m() {
    let (mut p, channel, _, _) = sansrtc_offers(3, "bulk");
    p.keep_rtc_payloads = false;
    let message = Bytes::from(vec![0x5a; 16 * 1024]);
    let wall = Instant::now();
    let virtual_start = p.now;
    let mut queued = 0usize;
    while wall.elapsed() < Duration::from_secs(3) {
        // Keep the sender busy: always more queued than fits in its buffer.
        while p.pc_outbox.len() < 64 {
            p.pc_outbox.push_back((channel, message.clone(), true));
            queued += 1;
        }
        p.step();
    }
    let secs = wall.elapsed().as_secs_f64();
    let bytes = p.rtc_log.received_bytes;
    assert!(bytes > 0, "str0m received nothing ({queued} queued)");
    assert_eq!(bytes % message.len(), 0, "whole messages only");
    eprintln!(
        "throughput sansrtc -> str0m, 16 KiB ordered messages: {:.1} MB in {:.2} s wall = {:.1} MB/s ({} messages, {:.2} s virtual)",
        bytes as f64 / 1e6,
        secs,
        bytes as f64 / 1e6 / secs,
        p.rtc_log.received_count,
        (p.now - virtual_start).as_secs_f64()
    );
    if let Some(stats) = p.pc.sctp_stats() {
        eprintln!(
            "  sansrtc SCTP: {} packets sent, {} retransmissions, {} timeouts",
            stats.packets_sent, stats.retransmissions, stats.retransmission_timeouts
        );
    }
}

/// Empty messages from str0m. RFC 8831 section 6.6 sends an empty message as one byte
/// with the "empty" PPID (sansrtc does: str0m receives ours as empty messages in
/// `sansrtc_offers_str0m_answers`). str0m 0.25 hands the empty buffer to sctp-proto
/// 0.10, which packetizes it into no DATA chunk at all yet still uses up a stream
/// sequence number; on an ordered channel the receiver then waits for that number
/// forever. Observed here and asserted as such: str0m accepts all five writes, sansrtc
/// gets only the message before the first empty one, and the connection stays up. If a
/// later str0m sends empty messages properly this test fails: then assert delivery.
#[test]
fn str0m_empty_message() {
    let (mut p, channel, cid, _) = str0m_offers(4, "empty");
    let sent = [
        (b"before".to_vec(), false),
        (Vec::new(), false),
        (b"after-text".to_vec(), false),
        (Vec::new(), true),
        (b"after-binary".to_vec(), true),
    ];
    p.rtc_outbox
        .extend(sent.iter().map(|(d, b)| (cid, d.clone(), *b)));
    let all = p.run_until(Duration::from_secs(10), |p| {
        p.pc_received.len() >= sent.len()
    });
    let got: Vec<(Vec<u8>, bool)> = p
        .pc_received
        .iter()
        .filter(|(c, _, _)| *c == channel)
        .map(|(_, d, b)| (d.to_vec(), *b))
        .collect();
    eprintln!(
        "str0m wrote {:?}; after 10 s sansrtc has {got:?}",
        sent.iter()
            .map(|(d, b)| (String::from_utf8_lossy(d).into_owned(), *b))
            .collect::<Vec<_>>()
    );
    assert!(p.rtc_outbox.is_empty(), "str0m accepted every write");
    assert!(
        !all,
        "str0m now delivers empty messages: {got:?}; assert delivery instead"
    );
    assert_eq!(
        got,
        vec![(b"before".to_vec(), false)],
        "the channel stalls at str0m's first empty message"
    );
    assert_eq!(p.pc.connection_state(), ConnectionState::Connected);
    assert!(p.rtc.is_connected());
}
