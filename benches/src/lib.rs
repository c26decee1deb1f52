//! The performance suite: the same in-memory scenarios, in the same process, on sansrtc,
//! on str0m 0.25 and on webrtc-rs's sans-IO `rtc` 0.21. Every stack is driven the same
//! way: two ends of a connection ("client" and "server") in one [`Pair`], datagrams
//! moved through an in-memory wire with 1 ms of latency, a virtual clock that jumps to
//! the next deadline, and CPU time measured with `Instant` around the work. Figures are
//! printed (by the `sansrtc-bench` binary), never asserted; the one assertion in this
//! crate is the allocation count of `tests/zero_alloc.rs`, which is deterministic.

pub mod alloc;
pub mod feedback;
pub mod loopback;
pub mod scenarios;
pub mod stack_endpoint;
pub mod stack_rtc;
pub mod stack_sansrtc;
pub mod stack_str0m;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One-way latency of the in-memory wire.
pub const LATENCY: Duration = Duration::from_millis(1);
/// RTP payload size of the media rows.
pub const PAYLOAD: usize = 1200;
/// Data channel message size.
pub const MESSAGE: usize = 16 * 1024;

/// What a pair negotiates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Opts {
    /// Audio tracks the client sends to the server (the server only receives them).
    pub client_tracks: usize,
    /// One audio track the server sends to the client (the client only receives it).
    pub server_track: bool,
    /// One data channel, opened by the client.
    pub data_channel: bool,
}

/// A datagram on the in-memory wire.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// When it arrives.
    pub at: Instant,
    /// Sender's address.
    pub from: SocketAddr,
    /// Receiver's address.
    pub to: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Both ends of one connection of one stack, in memory.
pub trait Pair: Sized {
    /// A received RTP packet as the stack hands it to the application.
    type Rtp;

    /// Build both ends (certificates and all), nothing negotiated yet. `index` makes the
    /// addresses and seeds unique.
    fn new(index: usize, opts: Opts, start: Instant) -> Self;
    /// Offer, answer, candidates: everything before time has to pass.
    fn negotiate(&mut self);
    /// The virtual time of this pair.
    fn now(&self) -> Instant;
    /// The earliest moment something is due (a timer or an arriving datagram).
    fn next_due(&self) -> Option<Instant>;
    /// Deliver everything and fire every timer due up to `t`, then sit at `t`.
    fn advance_to(&mut self, t: Instant);
    /// Both ends connected (and the data channel open on both ends when negotiated).
    fn ready(&self) -> bool;

    /// Run until ready; panics after 30 s of virtual time.
    fn run_until_ready(&mut self) {
        let limit = self.now() + Duration::from_secs(30);
        while !self.ready() {
            let next = self
                .next_due()
                .unwrap_or(self.now() + Duration::from_millis(10));
            assert!(
                next <= limit,
                "{}: not connected in 30 s",
                std::any::type_name::<Self>()
            );
            self.advance_to(next.max(self.now()));
        }
    }

    /// Make `count` SRTP packets of the client's track `track` (sequence numbers from
    /// `first_seq`), taken off the wire instead of delivered.
    fn client_packets(&mut self, track: usize, first_seq: u16, count: usize) -> Vec<Vec<u8>>;
    /// The server receives one datagram from the client; the RTP packets it hands out
    /// are pushed to `out`.
    fn server_receive(&mut self, data: &[u8], out: &mut Vec<Self::Rtp>);
    /// The server sends a received packet on its own track; returns the datagrams it
    /// produced (written into a scratch buffer and dropped, or put on the wire to the
    /// client when `deliver`).
    fn server_forward(&mut self, packet: &Self::Rtp, deliver: bool) -> usize;
    /// RTP packets the client has received (checks that forwarding really delivers).
    fn client_rtp(&self) -> u64;
    /// Data channel: hand the client as many `message`s as it takes, move one turn of
    /// datagrams; returns the total bytes the server has received so far.
    fn data_turn(&mut self, message: &Bytes) -> u64;
}

/// The median of some figures.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Addresses of pair `index`: (client, server).
pub fn addresses(index: usize) -> (SocketAddr, SocketAddr) {
    let hi = (index / 250) as u8;
    let lo = (index % 250 + 1) as u8;
    (
        SocketAddr::from(([10, 1, hi, lo], 5000)),
        SocketAddr::from(([10, 2, hi, lo], 6000)),
    )
}
