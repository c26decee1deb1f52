//! [`Driver`]: no threads, no executor. A game or robot loop owns it and calls
//! [`Driver::poll`] once per frame: it reads every datagram waiting on its non-blocking
//! sockets, fires the core's timers that are due, sends what the core wants sent and
//! returns the events. Between frames the application calls the core directly
//! ([`Driver::core`]), exactly as in a simulation.
//!
//! Timers fire at frame granularity (at 60 frames per second, up to ~17 ms late), which
//! ICE, DTLS and RTCP tolerate; call `poll` sooner when [`Driver::poll_timeout`] says so.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use sansrtc::{Config, PeerConnection};

use crate::driver::{Core, DriverState, RuntimeCounters, RuntimeStats, MAX_DATAGRAM};
use crate::net::{resolve_stun_servers, NetConfig};
use crate::resources::{DriverGuard, RuntimeKind};

/// Datagrams read per socket per `poll`, so one busy frame cannot stall the loop.
const MAX_READS_PER_POLL: usize = 4096;

/// A step-wise driver over non-blocking std sockets.
pub struct Driver<C: Core = PeerConnection> {
    state: DriverState<C>,
    sockets: Vec<UdpSocket>,
    buf: Vec<u8>,
    events: Vec<C::Event>,
    stats: Arc<RuntimeStats>,
    /// Counts this driver and its sockets in [`crate::runtime_stats`].
    _guard: DriverGuard,
}

impl Driver<PeerConnection> {
    /// Bind sockets per `net` and create a PeerConnection on them (blocking only to
    /// resolve STUN host names, once).
    pub fn new(config: Config, net: &NetConfig, now: Instant) -> Result<Driver, crate::Error> {
        let sockets = net.bind_udp()?;
        let stun = resolve_stun_servers(&config);
        let mut addrs = Vec::with_capacity(sockets.len());
        for socket in &sockets {
            socket.set_nonblocking(true)?;
            addrs.push(socket.local_addr()?);
        }
        // UDP `turn:` host names are resolved here too; TURN over TCP and TLS needs the
        // stream threads of the other runtimes and is not offered by this thread-free driver.
        let (udp_turn, mut unreachable) =
            crate::net::resolve_udp_turn_servers(&config, net, &addrs);
        unreachable.extend(
            crate::net::runtime_turn_servers(&config)
                .into_iter()
                .filter(|t| t.is_stream())
                .map(|t| t.url),
        );
        let mut pc = PeerConnection::new(config, now)?;
        for addr in &addrs {
            pc.add_local_address(now, *addr, sansrtc::Protocol::Udp);
        }
        for server in stun {
            pc.add_stun_server(now, server);
        }
        for server in udp_turn {
            pc.add_turn_server(now, server);
        }
        for url in unreachable {
            pc.turn_server_unreachable(now, &url);
        }
        Ok(Driver::with_core(pc, sockets, addrs))
    }
}

impl<C: Core> Driver<C> {
    /// Drive any core on already bound non-blocking sockets (`addrs` their addresses,
    /// which the core must already know).
    pub fn with_core(core: C, sockets: Vec<UdpSocket>, addrs: Vec<SocketAddr>) -> Driver<C> {
        let stats = RuntimeStats::registered();
        let guard = DriverGuard::new(RuntimeKind::Game, C::IS_ENDPOINT, sockets.len());
        Driver {
            _guard: guard,
            state: DriverState::new(core, addrs, stats.clone()),
            sockets,
            buf: vec![0u8; MAX_DATAGRAM],
            events: Vec::new(),
            stats,
        }
    }

    /// The core, to call its API between frames.
    pub fn core(&mut self) -> &mut C {
        &mut self.state.core
    }

    /// The sockets' local addresses.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        (0..self.sockets.len())
            .filter_map(|i| self.state.local_address(i))
            .collect()
    }

    /// When the core next needs `poll`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.state.core.poll_timeout()
    }

    /// Counters.
    pub fn stats(&self) -> RuntimeCounters {
        self.stats.snapshot()
    }

    /// One frame: read, fire timers, send; returns this frame's events.
    pub fn poll(&mut self, now: Instant) -> std::vec::Drain<'_, C::Event> {
        for i in 0..self.sockets.len() {
            for _ in 0..MAX_READS_PER_POLL {
                let Some(socket) = self.sockets.get(i) else {
                    break;
                };
                match socket.recv_from(&mut self.buf) {
                    Ok((len, remote)) => {
                        let data = self.buf.get(..len).unwrap_or_default();
                        self.state.handle_datagram(now, i, remote, data);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // ICMP errors surface here on Linux; keep reading.
                    Err(_) => continue,
                }
            }
        }
        self.state.handle_timeout(now);
        let sockets = &self.sockets;
        self.state.flush_transmits(now, |i, remote, data| {
            sockets
                .get(i)
                .is_some_and(|s| s.send_to(data, remote).is_ok())
        });
        while let Some(event) = self.state.core.poll_event() {
            self.events.push(event);
        }
        self.events.drain(..)
    }
}
