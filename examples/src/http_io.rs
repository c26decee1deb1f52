//! The HTTP server's sockets under hyper: a TCP stream of whichever runtime accepted it
//! (tokio's, or async-io's for smol and std) behind hyper's `rt::Read`/`rt::Write`, with
//! a deadline that reads and writes fail at (the idle, whole-request and write timeouts
//! of [`Limits`](crate::http::Limits)), and hyper's upgraded connection behind
//! futures-io's traits for the WebSocket. No unsafe code: reads go through a small stack
//! buffer copied into hyper's (signaling traffic is a few KiB).

use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use smol::Async;

use crate::runtime::{Sleep, Spawner};

/// The bytes one read moves at most.
const READ_CHUNK: usize = 8 * 1024;

/// A connection's deadline, shared by its stream and whoever serves it: reads and writes
/// fail with `TimedOut` from then on (`None`: no deadline).
#[derive(Debug, Default)]
pub(crate) struct Deadline {
    state: Mutex<DeadlineState>,
}

#[derive(Debug, Default)]
struct DeadlineState {
    at: Option<Instant>,
    /// Where the deadline moves when the first byte arrives (the whole-request timeout
    /// replaces the idle one).
    after_first_byte: Option<Instant>,
}

impl Deadline {
    /// A deadline at `idle`, moved to `request` when the first byte arrives.
    pub(crate) fn idle_then(idle: Instant, request: Instant) -> Arc<Deadline> {
        Arc::new(Deadline {
            state: Mutex::new(DeadlineState {
                at: Some(idle),
                after_first_byte: Some(request),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeadlineState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set the deadline (`None`: none).
    pub(crate) fn set(&self, at: Option<Instant>) {
        let mut state = self.lock();
        state.at = at;
        state.after_first_byte = None;
    }

    fn get(&self) -> Option<Instant> {
        self.lock().at
    }

    fn first_byte(&self) {
        let mut state = self.lock();
        if let Some(at) = state.after_first_byte.take() {
            state.at = Some(at);
        }
    }
}

/// An accepted TCP stream.
pub(crate) enum Stream {
    /// Accepted on tokio.
    Tokio(tokio::net::TcpStream),
    /// Accepted on smol, or on a std thread (async-io's reactor).
    Async(Async<TcpStream>),
}

impl Stream {
    fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tokio(s) => {
                let mut read = tokio::io::ReadBuf::new(buf);
                ready!(tokio::io::AsyncRead::poll_read(Pin::new(s), cx, &mut read))?;
                Poll::Ready(Ok(read.filled().len()))
            }
            Stream::Async(s) => futures_lite::io::AsyncRead::poll_read(Pin::new(s), cx, buf),
        }
    }

    fn poll_write_from(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            Stream::Tokio(s) => tokio::io::AsyncWrite::poll_write(Pin::new(s), cx, buf),
            Stream::Async(s) => futures_lite::io::AsyncWrite::poll_write(Pin::new(s), cx, buf),
        }
    }

    fn poll_flush_now(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tokio(s) => tokio::io::AsyncWrite::poll_flush(Pin::new(s), cx),
            Stream::Async(s) => futures_lite::io::AsyncWrite::poll_flush(Pin::new(s), cx),
        }
    }

    fn poll_close_now(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tokio(s) => tokio::io::AsyncWrite::poll_shutdown(Pin::new(s), cx),
            Stream::Async(s) => futures_lite::io::AsyncWrite::poll_close(Pin::new(s), cx),
        }
    }
}

/// A stream whose reads and writes fail at its [`Deadline`].
pub(crate) struct TimedIo {
    stream: Stream,
    deadline: Arc<Deadline>,
    spawner: Spawner,
    /// The timer armed for the deadline a pending read or write waits under.
    timer: Option<(Instant, Sleep)>,
}

impl TimedIo {
    pub(crate) fn new(stream: Stream, deadline: Arc<Deadline>, spawner: Spawner) -> TimedIo {
        TimedIo {
            stream,
            deadline,
            spawner,
            timer: None,
        }
    }

    /// `TimedOut` if the deadline has passed.
    fn check(&mut self) -> io::Result<()> {
        match self.deadline.get() {
            Some(at) if Instant::now() >= at => Err(io::ErrorKind::TimedOut.into()),
            _ => Ok(()),
        }
    }

    /// An operation is pending: wake it at the deadline, failing it then.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(at) = self.deadline.get() else {
            self.timer = None;
            return Poll::Pending;
        };
        if !matches!(&self.timer, Some((armed, _)) if *armed == at) {
            self.timer = Some((at, self.spawner.sleep_until(at)));
        }
        let fired = match &mut self.timer {
            Some((_, sleep)) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        };
        if fired {
            self.timer = None;
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        Poll::Pending
    }
}

impl hyper::rt::Read for TimedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        let mut chunk = [0u8; READ_CHUNK];
        let room = buf.remaining().min(READ_CHUNK);
        match this.stream.poll_read_into(cx, &mut chunk[..room]) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.deadline.first_byte();
                }
                buf.put_slice(&chunk[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.pending(cx),
        }
    }
}

impl hyper::rt::Write for TimedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        match this.stream.poll_write_from(cx, buf) {
            Poll::Pending => this.pending(cx),
            done => done,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        match this.stream.poll_flush_now(cx) {
            Poll::Pending => this.pending(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.stream.poll_close_now(cx) {
            Poll::Pending => this.pending(cx),
            done => done,
        }
    }
}

/// hyper's upgraded connection (a WebSocket) behind futures-io's traits, for
/// async-tungstenite. It still runs over [`TimedIo`], so its deadline holds.
pub(crate) struct UpgradedIo(pub(crate) hyper::upgrade::Upgraded);

impl futures_lite::io::AsyncRead for UpgradedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut read = hyper::rt::ReadBuf::new(buf);
        ready!(hyper::rt::Read::poll_read(
            Pin::new(&mut self.get_mut().0),
            cx,
            read.unfilled()
        ))?;
        Poll::Ready(Ok(read.filled().len()))
    }
}

impl futures_lite::io::AsyncWrite for UpgradedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.get_mut().0), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.get_mut().0), cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.get_mut().0), cx)
    }
}
