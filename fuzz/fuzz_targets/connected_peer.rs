//! Deep fuzzing: two seeded PeerConnections connect in memory (ICE, DTLS, SRTP, SCTP, an
//! open data channel, audio and video both ways), then the input drives what reaches the
//! connected peer `a`:
//! - raw datagrams from `b`'s address (so they get past ICE's address checks) or from a
//!   stranger's;
//! - STUN requests with a valid MESSAGE-INTEGRITY under `a`'s password (the seed makes the
//!   password reproducible), so the fuzzer reaches ICE's state behind authentication;
//! - honest traffic from `b` (data-channel messages, RTP, keyframe requests, a data
//!   channel opened or closed) with chosen bytes flipped on its way to `a`;
//! - replays of anything `b` sent earlier; time passing.
//!
//! After each step `a` must not panic, must answer without unbounded output, and the
//! process's live heap (a counting allocator) must stay under a generous bound above
//! what the connected pair needed. The bound is what "no unbounded growth" means here:
//! every queue and table of `a` is capped, so no input can make it hold more.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sansrtc::media::RtpPacket;
use sansrtc::stun::{Attribute, Class, Message, Method, TransactionId};
use sansrtc::{
    ChannelId, Config, ConnectionState, DataChannelInit, Datagram, Event, MediaKind,
    OfferOptions, PeerConnection, Protocol, TransceiverId,
};

/// Live heap bytes, counted by [`Counting`].
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How much more than the connected pair's own heap the fuzzed peer may hold: the sum of
/// its documented bounds (SCTP receive buffer 1 MiB + slack, send buffer 16 MiB at most
/// (b's, unused here), media queue 4,096 packets, event queue 4,096, SSRC maps 1,024,
/// DTLS reassembly, ICE tables) with room to spare, far below what an unbounded queue
/// reaches over a long input.
const HEAP_BOUND: usize = 48 << 20;
/// Most transmits `a` may produce for one input datagram and the timers it arms.
const TRANSMIT_BOUND: usize = 4_096;

const A: &str = "10.0.0.1:5000";
const B: &str = "10.0.0.2:6000";
const STRANGER: &str = "10.0.0.66:7000";

struct Pair {
    a: PeerConnection,
    b: PeerConnection,
    now: Instant,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    /// Data channels on b (the one negotiated at start, plus any opened later).
    b_channels: Vec<ChannelId>,
    b_tracks: Vec<TransceiverId>,
    /// What b sent, for replays (bounded).
    sent_by_b: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

impl Pair {
    /// Two peers connected with audio, video and an open data channel, or `None` if the
    /// seeded set-up did not connect (it always does; the target then does nothing).
    fn connect() -> Option<Pair> {
        let now = Instant::now();
        let config = |seed| Config {
            rng_seed: Some(seed),
            ..Default::default()
        };
        let mut a = PeerConnection::new(config(1), now).ok()?;
        let mut b = PeerConnection::new(config(2), now).ok()?;
        let (a_addr, b_addr) = (addr(A), addr(B));
        a.add_local_address(now, a_addr, Protocol::Udp);
        b.add_local_address(now, b_addr, Protocol::Udp);
        b.add_track(MediaKind::Audio, vec![]).ok()?;
        b.add_track(MediaKind::Video, vec![]).ok()?;
        let channel = b
            .create_data_channel(now, "fuzz", DataChannelInit::default())
            .ok()?;
        let offer = b.create_offer(OfferOptions::default()).ok()?;
        b.set_local_description(now, offer.clone()).ok()?;
        a.set_remote_description(now, offer).ok()?;
        let answer = a.create_answer().ok()?;
        a.set_local_description(now, answer.clone()).ok()?;
        b.set_remote_description(now, answer).ok()?;
        let b_tracks = b.transceivers().iter().map(|t| t.id).collect();
        let mut pair = Pair {
            a,
            b,
            now,
            a_addr,
            b_addr,
            b_channels: vec![channel],
            b_tracks,
            sent_by_b: Vec::new(),
            buf: vec![0; 65_536],
        };
        let mut open = false;
        for _ in 0..2_000 {
            pair.exchange(None);
            while let Some(e) = pair.b.poll_event() {
                match e {
                    Event::IceCandidate(c) => {
                        let _ = pair.a.add_ice_candidate(pair.now, c);
                    }
                    Event::DataChannelOpen(_) => open = true,
                    _ => {}
                }
            }
            while let Some(e) = pair.a.poll_event() {
                if let Event::IceCandidate(c) = e {
                    let _ = pair.b.add_ice_candidate(pair.now, c);
                }
            }
            if open
                && pair.a.connection_state() == ConnectionState::Connected
                && pair.b.connection_state() == ConnectionState::Connected
            {
                pair.sent_by_b.clear();
                return Some(pair);
            }
            pair.advance(Duration::from_millis(5));
        }
        None
    }

    /// Move datagrams between the two until both are quiet; `flip` rewrites b's
    /// datagrams on their way to a (`(byte index, xor mask)`, index modulo length).
    fn exchange(&mut self, flip: Option<(usize, u8)>) {
        for _ in 0..64 {
            let mut moved = false;
            let mut from_a = 0;
            while let Some(t) = self.a.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                from_a += 1;
                assert!(from_a <= TRANSMIT_BOUND, "a sends without bound");
                let data = &self.buf[..t.len];
                self.b.handle_datagram(
                    self.now,
                    Datagram { local: self.b_addr, remote: self.a_addr, protocol: Protocol::Udp, data },
                );
            }
            while let Some(t) = self.b.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                let mut data = self.buf[..t.len].to_vec();
                if let Some((at, mask)) = flip {
                    if !data.is_empty() {
                        let i = at % data.len();
                        data[i] ^= mask;
                    }
                }
                if self.sent_by_b.len() < 256 {
                    self.sent_by_b.push(data.clone());
                }
                self.deliver_to_a(self.b_addr, &data);
            }
            if !moved {
                break;
            }
        }
        // Events are read as an application would; b's are dropped.
        let mut events = 0usize;
        while self.a.poll_event().is_some() {
            events += 1;
            assert!(events <= 100_000, "a reports events without bound");
        }
        while self.b.poll_event().is_some() {}
    }

    fn deliver_to_a(&mut self, from: SocketAddr, data: &[u8]) {
        self.a.handle_datagram(
            self.now,
            Datagram { local: self.a_addr, remote: from, protocol: Protocol::Udp, data },
        );
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.a.handle_timeout(self.now);
        self.b.handle_timeout(self.now);
    }

    /// A Binding request to a with valid integrity (b's ufrag and a's password, as b
    /// knows them) and fuzzed attributes after the required ones.
    fn authenticated_stun(&mut self, body: &[u8]) {
        let Some(remote) = self.a.local_description() else { return };
        let Some(pwd) = remote
            .sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=ice-pwd:"))
            .map(|p| p.trim().to_owned())
        else {
            return;
        };
        let a_ufrag = self.a.local_ice_ufrag().to_owned();
        let b_ufrag = self.b.local_ice_ufrag().to_owned();
        let mut id = [0u8; 12];
        for (i, b) in body.iter().take(12).enumerate() {
            id[i] = *b;
        }
        let mut msg = Message::new(Class::Request, Method::BINDING, TransactionId(id));
        msg.attributes.push(Attribute::Username(format!("{a_ufrag}:{b_ufrag}")));
        let rest = body.get(12..).unwrap_or_default();
        if let Some((&pick, value)) = rest.split_first() {
            let value = value.get(..value.len().min(64)).unwrap_or_default();
            let tie = value.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
            msg.attributes.push(match pick % 4 {
                0 => Attribute::UseCandidate,
                1 => Attribute::Priority(tie as u32),
                2 => Attribute::IceControlling(tie),
                _ => Attribute::IceControlled(tie),
            });
        }
        let out = msg.encode_to_vec(Some(pwd.as_bytes()), true);
        self.deliver_to_a(self.b_addr, &out);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(mut pair) = Pair::connect() else { return };
    let baseline = LIVE.load(Ordering::Relaxed);
    let mut rest = data;
    let mut steps = 0;
    while let Some((&op, tail)) = rest.split_first() {
        steps += 1;
        if steps > 256 {
            break;
        }
        let len = usize::from(tail.first().copied().unwrap_or(0)) * 4;
        let body = tail.get(1..).unwrap_or_default();
        let body = body.get(..len.min(body.len())).unwrap_or_default();
        rest = tail.get(1 + body.len()..).unwrap_or_default();
        let flip = body.first().map(|&m| (usize::from(body.get(1).copied().unwrap_or(0)), m));
        match op % 10 {
            0 => pair.deliver_to_a(pair.b_addr, body),
            1 => pair.deliver_to_a(addr(STRANGER), body),
            2 => pair.authenticated_stun(body),
            3 => {
                let channel = pair.b_channels[usize::from(op / 10) % pair.b_channels.len()];
                let payload = Bytes::copy_from_slice(body.get(2..).unwrap_or_default());
                let _ = pair.b.send_data(pair.now, channel, payload, op & 0x80 != 0);
            }
            4 => {
                let track = pair.b_tracks[usize::from(op / 10) % pair.b_tracks.len()];
                let packet = RtpPacket {
                    payload_type: body.first().copied().unwrap_or(0) & 0x7f,
                    sequence_number: u16::from_be_bytes([
                        body.get(1).copied().unwrap_or(0),
                        body.get(2).copied().unwrap_or(0),
                    ]),
                    timestamp: u32::from(op) << 8,
                    marker: op & 1 == 1,
                    ssrc: 0,
                    payload: Bytes::copy_from_slice(body.get(3..).unwrap_or_default()),
                };
                let _ = pair.b.send_rtp(track, &packet);
            }
            5 => {
                let track = pair.b_tracks[usize::from(op / 10) % pair.b_tracks.len()];
                let _ = pair.b.request_keyframe(track);
            }
            6 => {
                if pair.b_channels.len() < 32 {
                    let label = String::from_utf8_lossy(body).into_owned();
                    if let Ok(c) =
                        pair.b.create_data_channel(pair.now, &label, DataChannelInit::default())
                    {
                        pair.b_channels.push(c);
                    }
                }
            }
            7 => {
                if pair.b_channels.len() > 1 {
                    let c = pair.b_channels.remove(usize::from(op / 10) % pair.b_channels.len());
                    pair.b.close_data_channel(pair.now, c);
                }
            }
            8 => {
                if !pair.sent_by_b.is_empty() {
                    let i = usize::from(op / 10) % pair.sent_by_b.len();
                    let mut replay = pair.sent_by_b[i].clone();
                    if let Some((at, mask)) = flip {
                        let n = replay.len().max(1);
                        if let Some(b) = replay.get_mut(at % n) {
                            *b ^= mask;
                        }
                    }
                    pair.deliver_to_a(pair.b_addr, &replay);
                }
            }
            _ => {
                let ms = u64::from(body.first().copied().unwrap_or(1)) * 20;
                pair.advance(Duration::from_millis(ms));
            }
        }
        // Honest traffic from b is rewritten on its way only when the op asked for it.
        pair.exchange(if op % 10 == 3 || op % 10 == 4 { flip } else { None });
        let live = LIVE.load(Ordering::Relaxed);
        assert!(
            live <= baseline + HEAP_BOUND,
            "live heap grew from {baseline} to {live} bytes"
        );
    }
});
