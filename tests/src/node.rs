//! What can sit on the virtual network: the [`Node`] trait (the sans-IO shape every
//! stateful sansrtc module shares), its implementations for `PeerConnection` and a raw
//! `IceAgent`, the [`StunServer`] model that serves srflx gathering, and the scripted
//! [`Probe`] the harness's own tests use.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use sansrtc::stun::{Attribute, Class, Message, Method};
use sansrtc::{Datagram, PeerConnection, Protocol, Transmit};

/// Anything that speaks the sans-IO shape and can sit on the virtual network.
pub trait Node {
    /// A datagram arrived.
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>);
    /// Time passed (called when `poll_timeout` is due; spurious calls must be harmless).
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send, written into `buf`.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl Node for PeerConnection {
    fn handle_datagram(&mut self, now: Instant, datagram: Datagram<'_>) {
        PeerConnection::handle_datagram(self, now, datagram)
    }
    fn handle_timeout(&mut self, now: Instant) {
        PeerConnection::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        PeerConnection::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        PeerConnection::poll_timeout(self)
    }
}

impl Node for sansrtc::ice::IceAgent {
    fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        self.handle_stun(now, d.local, d.remote, d.protocol, d.data);
    }
    fn handle_timeout(&mut self, now: Instant) {
        sansrtc::ice::IceAgent::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        sansrtc::ice::IceAgent::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        sansrtc::ice::IceAgent::poll_timeout(self)
    }
}

/// The next of a server model's queued `(local, remote, bytes)` datagrams as a UDP
/// transmit written into `buf` (dropped if it does not fit).
pub(crate) fn pop_queued(
    queue: &mut VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    buf: &mut [u8],
) -> Option<Transmit> {
    let (local, remote, data) = queue.pop_front()?;
    buf.get_mut(..data.len())?.copy_from_slice(&data);
    Some(Transmit {
        local,
        remote,
        protocol: Protocol::Udp,
        len: data.len(),
    })
}

/// Most responses a [`StunServer`] queues before it drops requests.
const STUN_SERVER_QUEUE: usize = 1024;

/// A STUN server model (RFC 8489 section 6.3.1 without authentication): answers every
/// Binding request with a success response carrying XOR-MAPPED-ADDRESS set to the
/// source address it saw (the NAT's public address when the client sits behind one).
#[derive(Debug, Default)]
pub struct StunServer {
    queue: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Requests answered.
    pub answered: u64,
    /// Datagrams ignored: not STUN, not a Binding request, or the queue was full.
    pub ignored: u64,
}

impl Node for StunServer {
    fn handle_datagram(&mut self, _now: Instant, d: Datagram<'_>) {
        let request = match Message::parse(d.data) {
            Ok(m) if m.class == Class::Request && m.method == Method::BINDING => m,
            _ => {
                self.ignored += 1;
                return;
            }
        };
        if self.queue.len() >= STUN_SERVER_QUEUE {
            self.ignored += 1;
            return;
        }
        let response = Message::new(Class::Success, Method::BINDING, request.transaction_id)
            .with(Attribute::XorMappedAddress(d.remote))
            .encode_to_vec(None, true);
        self.answered += 1;
        self.queue.push_back((d.local, d.remote, response));
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        crate::node::pop_queued(&mut self.queue, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// A datagram a [`Probe`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The local address it arrived on.
    pub local: SocketAddr,
    /// Where it came from (as the network shows it, i.e. after NAT).
    pub remote: SocketAddr,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// A scripted node: sends the datagrams it is given at the times it is given, and
/// records what it receives in a log shared with the test (the node itself moves into
/// the network). Used by the harness's own tests and handy for raw-datagram scenarios.
#[derive(Debug, Default)]
pub struct Probe {
    /// `(send at, from, to, bytes)`, in the order they were scheduled.
    scheduled: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    received: Rc<RefCell<Vec<Received>>>,
    /// A deadline the probe reports but never clears (to test the harness's stall guard).
    stuck_deadline: Option<Instant>,
}

impl Probe {
    /// A probe and the handle to its receive log.
    pub fn new() -> (Probe, Rc<RefCell<Vec<Received>>>) {
        let probe = Probe::default();
        let log = probe.received.clone();
        (probe, log)
    }

    /// Send `data` from `from` to `to` at `at` (schedule in time order).
    pub fn send_at(&mut self, at: Instant, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        self.scheduled.push_back((at, from, to, data));
    }

    /// Report `deadline` from `poll_timeout` forever, whatever happens.
    pub fn stuck_at(&mut self, deadline: Instant) {
        self.stuck_deadline = Some(deadline);
    }
}

impl Node for Probe {
    fn handle_datagram(&mut self, now: Instant, d: Datagram<'_>) {
        self.received.borrow_mut().push(Received {
            at: now,
            local: d.local,
            remote: d.remote,
            data: d.data.to_vec(),
        });
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        match self.scheduled.front() {
            Some(next) if next.0 <= now => {}
            _ => return None,
        }
        let (_, local, remote, data) = self.scheduled.pop_front()?;
        buf.get_mut(..data.len())?.copy_from_slice(&data);
        Some(Transmit {
            local,
            remote,
            protocol: Protocol::Udp,
            len: data.len(),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        [self.scheduled.front().map(|s| s.0), self.stuck_deadline]
            .into_iter()
            .flatten()
            .min()
    }
}
