//! # sansrtc-smol
//!
//! sansrtc on smol: the same API as `sansrtc-tokio` ([`PeerConnection::new`] returns a
//! cloneable handle whose async methods mirror the core; events on a bounded channel).
//! The driver loop is shared (`sansrtc_std::driver::run`); this crate supplies smol's
//! `Async<UdpSocket>` and `Timer`, and spawns on smol's global executor (or an executor
//! you give it with [`PeerConnection::with_executor`]).
#![forbid(unsafe_code)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::ops::Deref;
use std::task::{Context, Poll};
use std::time::Instant;

use sansrtc_std::batch::Outgoing;
use sansrtc_std::driver::{run, AsyncTimer, AsyncUdp, Core};
use sansrtc_std::peer::{prepare_peer, prepare_server, Prepared};
pub use sansrtc_std::{
    runtime_stats, Capacity, Error, Interfaces, NetConfig, Options, PeerHandle, ResourceStats,
    RuntimeCounters, ServerHandle,
};
use sansrtc_std::{DriverGuard, RuntimeKind};
use smol::future::FutureExt;

/// smol's async socket for the shared driver loop.
struct Udp(smol::Async<UdpSocket>);

impl Udp {
    /// Read what is waiting without blocking (`WouldBlock` when nothing is).
    fn try_recv_batch(
        &self,
        local: SocketAddr,
        f: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            sansrtc_std::batch::recv_batch(self.0.get_ref().as_fd(), local, false, f)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = local;
            sansrtc_std::batch::recv_each(|buf| self.0.get_ref().recv_from(buf), f)
        }
    }
}

impl AsyncUdp for Udp {
    fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        local: SocketAddr,
        f: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.try_recv_batch(local, f) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                result => return Poll::Ready(result),
            }
            match self.0.poll_readable(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
    fn try_send_batch(&self, out: Outgoing<'_>) -> usize {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            sansrtc_std::batch::send_batch(self.0.get_ref().as_fd(), out).unwrap_or(0)
        }
        #[cfg(not(target_os = "linux"))]
        {
            sansrtc_std::batch::send_each(out, |bytes, to| self.0.get_ref().send_to(bytes, to))
        }
    }
}

/// smol's timer for the shared driver loop.
struct Timer(smol::Timer);

impl AsyncTimer for Timer {
    fn reset(&mut self, at: Option<Instant>) {
        match at {
            Some(at) => self.0.set_at(at),
            None => self.0 = smol::Timer::never(),
        }
    }
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll(cx).map(|_| ())
    }
}

fn start<C: Core>(
    prepared: Prepared<C>,
    spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
) -> Result<sansrtc_std::Handle<C>, Error> {
    let mut sockets = Vec::with_capacity(prepared.sockets.len());
    for socket in prepared.sockets {
        sockets.push(Udp(smol::Async::new(socket)?));
    }
    // Counted while the task's future lives (ended or dropped with its executor).
    let guard = DriverGuard::new(RuntimeKind::Smol, C::IS_ENDPOINT, sockets.len());
    spawn(Box::pin(async move {
        let _guard = guard;
        run(
            prepared.state,
            sockets,
            Timer(smol::Timer::never()),
            prepared.channels,
        )
        .await
    }));
    Ok(prepared.handle)
}

fn spawn_global(future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
    smol::spawn(future).detach();
}

/// A PeerConnection driven by a smol task. Derefs to [`PeerHandle`] (the async API).
#[derive(Clone)]
pub struct PeerConnection(PeerHandle);

impl PeerConnection {
    /// Bind sockets on every interface (see [`NetConfig`]) and start the driver task on
    /// smol's global executor.
    pub async fn new(config: sansrtc::Config) -> Result<PeerConnection, Error> {
        PeerConnection::with_options(config, Options::default()).await
    }

    /// With explicit runtime options (for example `Options::loopback()`).
    pub async fn with_options(
        config: sansrtc::Config,
        options: Options,
    ) -> Result<PeerConnection, Error> {
        let prepared = smol::unblock(move || prepare_peer(config, &options)).await?;
        Ok(PeerConnection(start(prepared, spawn_global)?))
    }

    /// Spawn the driver on a given executor instead of the global one.
    pub async fn with_executor(
        config: sansrtc::Config,
        options: Options,
        executor: &smol::Executor<'static>,
    ) -> Result<PeerConnection, Error> {
        let prepared = smol::unblock(move || prepare_peer(config, &options)).await?;
        Ok(PeerConnection(start(prepared, |f| {
            executor.spawn(f).detach()
        })?))
    }
}

impl Deref for PeerConnection {
    type Target = PeerHandle;
    fn deref(&self) -> &PeerHandle {
        &self.0
    }
}

/// Server mode: many PeerConnections on one socket, one smol task. Derefs to
/// [`ServerHandle`].
#[derive(Clone)]
pub struct Server(ServerHandle);

impl Server {
    /// Bind the shared socket(s) and start the driver task.
    pub async fn bind(options: Options) -> Result<Server, Error> {
        let prepared = smol::unblock(move || prepare_server(&options)).await?;
        Ok(Server(start(prepared, spawn_global)?))
    }
}

impl Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.0
    }
}
