//! A tiny deterministic network for tests: two sans-IO endpoints, a virtual clock that
//! jumps to the earliest deadline or packet arrival, fixed one-way latency and seeded
//! loss.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// What the loop needs from an endpoint.
pub(crate) trait Node {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]);
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

impl Node for super::Association {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        super::Association::handle_packet(self, now, packet)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        super::Association::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        super::Association::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        super::Association::handle_timeout(self, now)
    }
}

/// Two nodes and the wire between them.
pub(crate) struct Net {
    pub now: Instant,
    pub latency: Duration,
    /// Probability of dropping each packet.
    pub loss: f64,
    /// Probability of delaying a packet by an extra latency (so later ones overtake it).
    pub reorder: f64,
    /// Probability of delivering a packet twice.
    pub duplicate: f64,
    rng: Rng,
    /// (arrival, to_b, bytes)
    wire: VecDeque<(Instant, bool, Vec<u8>)>,
    pub delivered: u64,
    pub dropped: u64,
    buf: Vec<u8>,
}

impl Net {
    pub(crate) fn new(seed: u64, now: Instant) -> Self {
        Net {
            now,
            latency: Duration::from_millis(10),
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            rng: Rng::from_seed(seed),
            wire: VecDeque::new(),
            delivered: 0,
            dropped: 0,
            buf: vec![0u8; 65536],
        }
    }

    fn drain<N: Node>(&mut self, node: &mut N, to_b: bool) -> bool {
        let mut moved = false;
        while let Some(n) = node.poll_transmit(self.now, &mut self.buf) {
            moved = true;
            if self.rng.unit_f64() < self.loss {
                self.dropped += 1;
                continue;
            }
            let packet = self.buf[..n].to_vec();
            let mut arrival = self.now + self.latency;
            if self.rng.unit_f64() < self.reorder {
                arrival += self.latency;
            }
            if self.rng.unit_f64() < self.duplicate {
                self.enqueue(arrival + self.latency / 2, to_b, packet.clone());
            }
            self.enqueue(arrival, to_b, packet);
        }
        moved
    }

    fn enqueue(&mut self, arrival: Instant, to_b: bool, packet: Vec<u8>) {
        let at = self.wire.partition_point(|p| p.0 <= arrival);
        self.wire.insert(at, (arrival, to_b, packet));
    }

    /// One step: send what both want to send, deliver what arrived, fire timers, and
    /// move the clock to the next thing that happens. `false` when nothing is left.
    pub(crate) fn step<A: Node, B: Node>(&mut self, a: &mut A, b: &mut B) -> bool {
        self.drain(a, true);
        self.drain(b, false);
        let mut next = self.wire.front().map(|p| p.0);
        for t in [a.poll_timeout(), b.poll_timeout()].into_iter().flatten() {
            next = Some(next.map_or(t, |n: Instant| n.min(t)));
        }
        let Some(next) = next else {
            return false;
        };
        self.now = self.now.max(next);
        while self.wire.front().is_some_and(|p| p.0 <= self.now) {
            if let Some((_, to_b, packet)) = self.wire.pop_front() {
                self.delivered += 1;
                if to_b {
                    b.handle_packet(self.now, &packet);
                } else {
                    a.handle_packet(self.now, &packet);
                }
            }
        }
        a.handle_timeout(self.now);
        b.handle_timeout(self.now);
        true
    }

    /// Step until `done` holds or `limit` of virtual time has passed; true if done.
    pub(crate) fn run_until<A: Node, B: Node>(
        &mut self,
        a: &mut A,
        b: &mut B,
        limit: Duration,
        mut done: impl FnMut(&mut A, &mut B) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(a, b) {
                return true;
            }
            if !self.step(a, b) {
                return done(a, b);
            }
        }
        done(a, b)
    }
}

impl Node for crate::datachannel::DataChannels {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        crate::datachannel::DataChannels::handle_packet(self, now, packet)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        crate::datachannel::DataChannels::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        crate::datachannel::DataChannels::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        crate::datachannel::DataChannels::handle_timeout(self, now)
    }
}
