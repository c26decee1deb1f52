//! Batched UDP IO for every runtime: `recvmmsg` and `sendmmsg` on Linux (through nix's
//! safe wrappers), so that one system call moves up to [`RECV_BATCH`] or [`SEND_BATCH`]
//! datagrams; elsewhere the runtimes fall back to one call per datagram.
//!
//! - [`Outgoing`]: the datagrams a driver collected from `poll_transmit` for one
//!   socket, back to back in one arena (see `DriverState::flush_batched`).
//! - [`recv_batch`]: read what is waiting into this thread's receive arena and hand
//!   each datagram to a closure, in arrival order.
//! - [`send_batch`]: write an [`Outgoing`], skipping (and counting as refused) a
//!   datagram the OS rejects, stopping when the socket buffer is full.
//!
//! The receive arena and the `mmsghdr` headers are per thread, not per driver: a
//! thousand PeerConnections on a four-thread tokio runtime share four arenas. They are
//! only borrowed inside one synchronous call, never across an `.await`. The arena is
//! [`RECV_BATCH`] slots of [`MAX_DATAGRAM`] bytes (2 MiB of address space), so no
//! datagram is ever truncated; pages a datagram never touched are never made resident.

use std::net::SocketAddr;
use std::ops::Range;

pub use crate::driver::MAX_DATAGRAM;

/// Datagrams read by one `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// Datagrams written by one `sendmmsg`.
pub const SEND_BATCH: usize = 32;

/// Datagrams for one socket: where each goes and its bytes in a shared arena.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    arena: &'a [u8],
    items: &'a [(SocketAddr, Range<usize>)],
}

impl<'a> Outgoing<'a> {
    /// Datagrams `items` (destination and byte range) in `arena`.
    pub fn new(arena: &'a [u8], items: &'a [(SocketAddr, Range<usize>)]) -> Outgoing<'a> {
        Outgoing { arena, items }
    }

    /// How many datagrams.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The destination and bytes of each datagram, in order.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, &'a [u8])> + 'a {
        let arena = self.arena;
        self.items
            .iter()
            .map(move |(to, range)| (*to, arena.get(range.clone()).unwrap_or_default()))
    }

    /// The datagrams from the `skip`th on.
    fn tail(&self, skip: usize) -> Outgoing<'a> {
        Outgoing {
            arena: self.arena,
            items: self.items.get(skip..).unwrap_or_default(),
        }
    }
}

#[cfg(target_os = "linux")]
pub use linux::{recv_batch, send_batch};

/// Where batched calls are missing: read datagrams one `try_recv(buf)` at a time (into
/// this thread's buffer) until it would block or [`RECV_BATCH`] were read, calling
/// `f(remote, bytes)` for each. `WouldBlock` when none was waiting.
pub fn recv_each(
    mut try_recv: impl FnMut(&mut [u8]) -> std::io::Result<(usize, SocketAddr)>,
    f: &mut dyn FnMut(SocketAddr, &[u8]),
) -> std::io::Result<usize> {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|cell| {
        let mut buf = cell
            .try_borrow_mut()
            .map_err(|_| std::io::Error::other("socket read re-entered on one thread"))?;
        if buf.len() < MAX_DATAGRAM {
            buf.resize(MAX_DATAGRAM, 0);
        }
        let mut count = 0;
        while count < RECV_BATCH {
            match try_recv(&mut buf) {
                Ok((len, remote)) => {
                    f(remote, buf.get(..len).unwrap_or_default());
                    count += 1;
                }
                Err(e) if count == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(count)
    })
}

/// Where batched calls are missing: send each datagram of `out` with
/// `try_send(bytes, remote)`; returns how many the OS took, stopping at a full buffer.
pub fn send_each(
    out: Outgoing<'_>,
    mut try_send: impl FnMut(&[u8], SocketAddr) -> std::io::Result<usize>,
) -> usize {
    let mut taken = 0;
    for (to, bytes) in out.iter() {
        match try_send(bytes, to) {
            Ok(_) => taken += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => {}
        }
    }
    taken
}

#[cfg(target_os = "linux")]
mod linux {
    use std::cell::RefCell;
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::{AsRawFd, BorrowedFd};

    use nix::errno::Errno;
    use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

    use super::{Outgoing, MAX_DATAGRAM, RECV_BATCH, SEND_BATCH};

    /// A thread's receive state. Headers are kept per address family: the kernel
    /// shortens a header's address length to what it last wrote, and nix does not
    /// reset it, so an IPv6 socket read with headers an IPv4 socket used would get
    /// truncated source addresses. Send headers are separate again: `sendmmsg` points
    /// the address field at the caller's addresses, which `recvmmsg` would then write.
    struct Scratch {
        arena: Vec<u8>,
        recv_v4: MultiHeaders<SockaddrStorage>,
        recv_v6: MultiHeaders<SockaddrStorage>,
        send: MultiHeaders<SockaddrStorage>,
    }

    thread_local! {
        static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
    }

    fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> io::Result<R> {
        SCRATCH.with(|cell| {
            let mut slot = cell
                .try_borrow_mut()
                .map_err(|_| io::Error::other("batched socket IO re-entered on one thread"))?;
            let scratch = slot.get_or_insert_with(|| Scratch {
                // Made on the first read: a thread that only sends never has one.
                arena: Vec::new(),
                recv_v4: MultiHeaders::preallocate(RECV_BATCH, None),
                recv_v6: MultiHeaders::preallocate(RECV_BATCH, None),
                send: MultiHeaders::preallocate(SEND_BATCH, None),
            });
            Ok(f(scratch))
        })
    }

    fn to_std(address: Option<&SockaddrStorage>) -> Option<SocketAddr> {
        let address = address?;
        if let Some(v4) = address.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
        }
        address
            .as_sockaddr_in6()
            .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
    }

    /// Read up to [`RECV_BATCH`] datagrams waiting on `socket` (bound on `local`),
    /// calling `f(remote, bytes)` for each in arrival order. `wait` blocks until the
    /// first arrives (then takes only what is already there); otherwise a socket with
    /// nothing waiting gives `WouldBlock`. Returns how many were read.
    pub fn recv_batch(
        socket: BorrowedFd<'_>,
        local: SocketAddr,
        wait: bool,
        f: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        with_scratch(|scratch| {
            if scratch.arena.is_empty() {
                // Zeroed by the allocator (fresh pages), not written here: only the
                // pages datagrams land on become resident.
                scratch.arena = vec![0u8; RECV_BATCH * MAX_DATAGRAM];
            }
            let headers = if local.is_ipv4() {
                &mut scratch.recv_v4
            } else {
                &mut scratch.recv_v6
            };
            let flags = if wait {
                MsgFlags::MSG_WAITFORONE
            } else {
                MsgFlags::MSG_DONTWAIT
            };
            // (length, source) of each datagram read, slot by slot.
            let mut got = [(0usize, None::<SocketAddr>); RECV_BATCH];
            let count = {
                let mut slots = scratch.arena.chunks_mut(MAX_DATAGRAM);
                let mut slices: [[IoSliceMut<'_>; 1]; RECV_BATCH] =
                    std::array::from_fn(|_| [IoSliceMut::new(slots.next().unwrap_or_default())]);
                let results = recvmmsg(socket.as_raw_fd(), headers, slices.iter_mut(), flags, None)
                    .map_err(io::Error::from)?;
                let mut count = 0;
                for (slot, message) in got.iter_mut().zip(results) {
                    *slot = (message.bytes, to_std(message.address.as_ref()));
                    count += 1;
                }
                count
            };
            for (k, (len, remote)) in got.iter().take(count).enumerate() {
                let start = k * MAX_DATAGRAM;
                let bytes = scratch
                    .arena
                    .get(start..start + (*len).min(MAX_DATAGRAM))
                    .unwrap_or_default();
                // A source that is not an IP address cannot happen on a UDP socket.
                if let Some(remote) = remote {
                    f(*remote, bytes);
                }
            }
            Ok(count)
        })?
    }

    /// Write `out` on `socket`: returns how many datagrams the OS took. A datagram it
    /// refuses (an unreachable or wrong-family destination) is skipped and the rest
    /// still go; a full socket buffer stops the batch (`WouldBlock` if it took none).
    pub fn send_batch(socket: BorrowedFd<'_>, out: Outgoing<'_>) -> io::Result<usize> {
        with_scratch(|scratch| {
            let mut done = 0;
            let mut taken = 0;
            while done < out.len() {
                let chunk = out.tail(done);
                let n = chunk.len().min(SEND_BATCH);
                let mut datagrams = chunk.iter();
                let slices: [[IoSlice<'_>; 1]; SEND_BATCH] = std::array::from_fn(|k| {
                    let bytes = if k < n {
                        datagrams.next().map(|(_, b)| b)
                    } else {
                        None
                    };
                    [IoSlice::new(bytes.unwrap_or_default())]
                });
                let mut to = chunk.iter().map(|(to, _)| SockaddrStorage::from(to));
                let addresses: [Option<SockaddrStorage>; SEND_BATCH] =
                    std::array::from_fn(|k| if k < n { to.next() } else { None });
                let sent = sendmmsg(
                    socket.as_raw_fd(),
                    &mut scratch.send,
                    slices.iter().take(n),
                    &addresses[..n],
                    [],
                    MsgFlags::MSG_DONTWAIT,
                );
                match sent {
                    Ok(results) => {
                        let k = results.count();
                        if k == 0 {
                            break;
                        }
                        done += k;
                        taken += k;
                    }
                    Err(Errno::EAGAIN) if taken == 0 => {
                        return Err(io::Error::from(io::ErrorKind::WouldBlock))
                    }
                    Err(Errno::EAGAIN) => break,
                    Err(Errno::EINTR) => {}
                    // The first datagram of this call was refused: skip it.
                    Err(_) => done += 1,
                }
            }
            Ok(taken)
        })?
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::Duration;

    fn pair(bind: &str) -> Option<(UdpSocket, UdpSocket)> {
        let a = UdpSocket::bind(bind).ok()?;
        let b = UdpSocket::bind(bind).ok()?;
        Some((a, b))
    }

    /// Datagrams of several sizes, the largest a full UDP datagram over loopback, cross
    /// in one sendmmsg and one recvmmsg with their bytes and source intact.
    #[test]
    fn batch_round_trip_keeps_bytes_order_and_source() {
        let (a, b) = pair("127.0.0.1:0").expect("bind");
        let to = b.local_addr().expect("addr");
        let sizes = [0usize, 1, 1200, 1500, 9000, 65_507];
        let mut arena = Vec::new();
        let mut items = Vec::new();
        for (k, size) in sizes.iter().enumerate() {
            let start = arena.len();
            arena.extend((0..*size).map(|i| (i as u8) ^ (k as u8)));
            items.push((to, start..arena.len()));
        }
        let taken = send_batch(a.as_fd(), Outgoing::new(&arena, &items)).expect("send");
        assert_eq!(taken, sizes.len());
        b.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut got: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        while got.len() < sizes.len() {
            recv_batch(b.as_fd(), to, true, &mut |from, bytes| {
                got.push((from, bytes.to_vec()))
            })
            .expect("recv");
        }
        for ((from, bytes), (k, size)) in got.iter().zip(sizes.iter().enumerate()) {
            assert_eq!(*from, a.local_addr().expect("addr"));
            assert_eq!(bytes.len(), *size);
            assert!(bytes
                .iter()
                .enumerate()
                .all(|(i, v)| *v == (i as u8) ^ (k as u8)));
        }
        // Nothing left: a non-blocking read says so.
        let err = recv_batch(b.as_fd(), to, false, &mut |_, _| {}).expect_err("empty");
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }

    /// More datagrams than one sendmmsg or recvmmsg carries.
    #[test]
    fn batches_larger_than_one_call() {
        let (a, b) = pair("127.0.0.1:0").expect("bind");
        let to = b.local_addr().expect("addr");
        let n = SEND_BATCH * 3 + 5;
        let arena: Vec<u8> = (0..n).flat_map(|k| (k as u32).to_be_bytes()).collect();
        let items: Vec<_> = (0..n).map(|k| (to, k * 4..k * 4 + 4)).collect();
        assert_eq!(
            send_batch(a.as_fd(), Outgoing::new(&arena, &items)).expect("send"),
            n
        );
        b.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut seen = Vec::new();
        let mut calls = 0;
        while seen.len() < n {
            let k = recv_batch(b.as_fd(), to, true, &mut |_, bytes| {
                seen.push(u32::from_be_bytes(bytes.try_into().unwrap_or_default()))
            })
            .expect("recv");
            assert!(k <= RECV_BATCH);
            calls += 1;
        }
        assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
        assert!(calls >= n.div_ceil(RECV_BATCH));
    }

    /// A destination the socket cannot reach (an IPv6 address from an IPv4 socket) is
    /// skipped; the datagrams before and after it still go.
    #[test]
    fn refused_datagram_is_skipped_not_the_batch() {
        let (a, b) = pair("127.0.0.1:0").expect("bind");
        let to = b.local_addr().expect("addr");
        let bad: SocketAddr = "[::1]:9".parse().expect("addr");
        let arena = [1u8, 2, 3];
        let items = [(to, 0..1), (bad, 1..2), (to, 2..3)];
        let taken = send_batch(a.as_fd(), Outgoing::new(&arena, &items)).expect("send");
        assert_eq!(taken, 2);
        b.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            recv_batch(b.as_fd(), to, true, &mut |_, bytes| {
                seen.extend_from_slice(bytes)
            })
            .expect("recv");
        }
        assert_eq!(seen, [1, 3]);
    }

    /// The one-call-per-datagram fallback other systems use gives the same results.
    #[test]
    fn fallback_matches() {
        let (a, b) = pair("127.0.0.1:0").expect("bind");
        let to = b.local_addr().expect("addr");
        let bad: SocketAddr = "[::1]:9".parse().expect("addr");
        let arena = [7u8; 3000];
        let items = [(to, 0..1200), (bad, 0..10), (to, 1200..3000)];
        let taken = send_each(Outgoing::new(&arena, &items), |bytes, remote| {
            a.send_to(bytes, remote)
        });
        assert_eq!(taken, 2);
        b.set_nonblocking(true).expect("nonblocking");
        let mut sizes = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while sizes.len() < 2 && std::time::Instant::now() < deadline {
            let _ = recv_each(|buf| b.recv_from(buf), &mut |_, bytes| {
                sizes.push(bytes.len())
            });
        }
        assert_eq!(sizes, [1200, 1800]);
        let err = recv_each(|buf| b.recv_from(buf), &mut |_, _| {}).expect_err("empty");
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    }

    /// IPv4 and IPv6 sockets read alternately on one thread keep full source addresses
    /// (the headers are per family; shared ones would truncate the IPv6 source).
    #[test]
    fn alternating_families_on_one_thread() {
        let (a6, b6) = pair("[::1]:0").expect("IPv6 loopback (::1) is needed");
        let (a4, b4) = pair("127.0.0.1:0").expect("bind");
        for socket in [&b4, &b6] {
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .expect("timeout");
        }
        for round in 0..3u8 {
            for (from, to) in [(&a4, &b4), (&a6, &b6)] {
                let dest = to.local_addr().expect("addr");
                let arena = [round];
                let items = [(dest, 0..1)];
                send_batch(from.as_fd(), Outgoing::new(&arena, &items)).expect("send");
                let mut source = None;
                recv_batch(to.as_fd(), dest, true, &mut |s, _| source = Some(s)).expect("recv");
                assert_eq!(source, Some(from.local_addr().expect("addr")));
            }
        }
    }
}
