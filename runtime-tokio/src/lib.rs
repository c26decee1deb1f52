//! # sansrtc-tokio
//!
//! sansrtc on tokio. [`PeerConnection::new`] binds UDP sockets, spawns a driver task that
//! owns the core, and returns a cheap cloneable handle whose async methods mirror the
//! core API; events arrive on a bounded channel (`next_event().await`, or `events()` as a
//! `Stream`). The driver loop itself is shared with the smol runtime
//! (`sansrtc_std::driver::run`); this crate only supplies tokio's socket and timer.
//!
//! ```no_run
//! # async fn demo(offer_json: &str) -> Result<(), Box<dyn std::error::Error>> {
//! use sansrtc::{ConnectionState, Event, SessionDescription};
//! use sansrtc_tokio::PeerConnection;
//!
//! let pc = PeerConnection::new(sansrtc::Config::default()).await?;
//! let offer: SessionDescription = serde_json::from_str(offer_json)?;
//! pc.set_remote_description(offer).await?;
//! let answer = pc.create_answer().await?;
//! pc.set_local_description(answer.clone()).await?;
//! // send serde_json::to_string(&answer) to the browser
//! while let Some(event) = pc.next_event().await {
//!     match event {
//!         Event::IceCandidate(_c) => { /* send serde_json::to_string(&c) */ }
//!         Event::Rtp { .. } => { /* real, decrypted RTP */ }
//!         Event::ConnectionStateChange(ConnectionState::Connected) => {}
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::pin::Pin;
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
use tokio::io::Interest;

/// A tokio UDP socket for the shared driver loop.
struct Udp(tokio::net::UdpSocket);

impl AsyncUdp for Udp {
    fn poll_recv_batch(
        &self,
        cx: &mut Context<'_>,
        local: SocketAddr,
        f: &mut dyn FnMut(SocketAddr, &[u8]),
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.0.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            // `try_io` clears tokio's readiness when the read would block, so the next
            // poll waits for the reactor again.
            let read = self.0.try_io(Interest::READABLE, || {
                #[cfg(target_os = "linux")]
                {
                    use std::os::fd::AsFd;
                    sansrtc_std::batch::recv_batch(self.0.as_fd(), local, false, &mut *f)
                }
                #[cfg(not(target_os = "linux"))]
                {
                    let _ = local;
                    sansrtc_std::batch::recv_each(|buf| self.0.try_recv_from(buf), &mut *f)
                }
            });
            match read {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
    fn try_send_batch(&self, out: Outgoing<'_>) -> usize {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsFd;
            self.0
                .try_io(Interest::WRITABLE, || {
                    sansrtc_std::batch::send_batch(self.0.as_fd(), out)
                })
                .unwrap_or(0)
        }
        #[cfg(not(target_os = "linux"))]
        {
            sansrtc_std::batch::send_each(out, |bytes, to| self.0.try_send_to(bytes, to))
        }
    }
}

/// tokio's sleep as the driver's timer.
struct Timer(Option<Pin<Box<tokio::time::Sleep>>>);

impl AsyncTimer for Timer {
    fn reset(&mut self, at: Option<Instant>) {
        match (at, self.0.as_mut()) {
            (None, _) => self.0 = None,
            (Some(at), Some(sleep)) => sleep.as_mut().reset(at.into()),
            (Some(at), None) => self.0 = Some(Box::pin(tokio::time::sleep_until(at.into()))),
        }
    }
    fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

use std::future::Future;

async fn start<C: Core>(prepared: Prepared<C>) -> Result<sansrtc_std::Handle<C>, Error> {
    let mut sockets = Vec::with_capacity(prepared.sockets.len());
    for socket in prepared.sockets {
        socket.set_nonblocking(true)?;
        sockets.push(Udp(tokio::net::UdpSocket::from_std(socket)?));
    }
    // Counted while the task's future lives (ended or dropped with the runtime).
    let guard = DriverGuard::new(RuntimeKind::Tokio, C::IS_ENDPOINT, sockets.len());
    tokio::spawn(async move {
        let _guard = guard;
        run(prepared.state, sockets, Timer(None), prepared.channels).await
    });
    Ok(prepared.handle)
}

/// A PeerConnection driven by a tokio task. Derefs to [`PeerHandle`], whose async
/// methods (`create_offer`, `set_remote_description`, `add_ice_candidate`, `send_rtp`,
/// `next_event`...) are the API.
#[derive(Clone)]
pub struct PeerConnection(PeerHandle);

impl PeerConnection {
    /// Bind sockets on every interface (see [`NetConfig`]) and start the driver task.
    /// Must be called within a tokio runtime.
    pub async fn new(config: sansrtc::Config) -> Result<PeerConnection, Error> {
        PeerConnection::with_options(config, Options::default()).await
    }

    /// With explicit runtime options (for example `Options::loopback()`).
    pub async fn with_options(
        config: sansrtc::Config,
        options: Options,
    ) -> Result<PeerConnection, Error> {
        // Binding and STUN name resolution may block: keep them off the executor.
        let prepared = tokio::task::spawn_blocking(move || prepare_peer(config, &options))
            .await
            .map_err(|_| Error::Closed)??;
        Ok(PeerConnection(start(prepared).await?))
    }
}

impl Deref for PeerConnection {
    type Target = PeerHandle;
    fn deref(&self) -> &PeerHandle {
        &self.0
    }
}

/// Server mode: many PeerConnections on one socket (the core's `Endpoint`) driven by one
/// task. Derefs to [`ServerHandle`] (`accept(config, offer)`, `with_peer`, `remove`,
/// `next_event` yielding `(PeerId, Event)`).
#[derive(Clone)]
pub struct Server(ServerHandle);

impl Server {
    /// Bind the shared socket(s) and start the driver task.
    pub async fn bind(options: Options) -> Result<Server, Error> {
        let prepared = tokio::task::spawn_blocking(move || prepare_server(&options))
            .await
            .map_err(|_| Error::Closed)??;
        Ok(Server(start(prepared).await?))
    }
}

impl Deref for Server {
    type Target = ServerHandle;
    fn deref(&self) -> &ServerHandle {
        &self.0
    }
}
