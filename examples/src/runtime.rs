//! Which runtime drives the cores and the HTTP server: `--runtime tokio|smol|std`. The
//! application code of every example is the same for all three, because the handles'
//! async methods only wait on runtime-neutral channels: a session is one `async fn`
//! written once, and [`Spawner::spawn`] runs it as a task on tokio or smol (thousands of
//! sessions cost thousands of small tasks, not threads) or on a thread of its own on
//! std, where the count is bounded by `Limits::max_sessions` (a session takes its place
//! before it is spawned; past it the client is refused). Only who runs the driver loop,
//! the sessions and the HTTP server's connections differs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Instant;

use sansrtc::Config;
use sansrtc_std::{Error, Options, PeerHandle, ServerHandle};

/// A runtime choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// A tokio multi-thread runtime.
    Tokio,
    /// smol's global executor.
    Smol,
    /// Blocking driver threads, no executor.
    Std,
}

impl FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tokio" => Ok(RuntimeKind::Tokio),
            "smol" => Ok(RuntimeKind::Smol),
            "std" => Ok(RuntimeKind::Std),
            other => Err(format!("unknown runtime {other:?} (tokio, smol or std)")),
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuntimeKind::Tokio => "tokio",
            RuntimeKind::Smol => "smol",
            RuntimeKind::Std => "std",
        })
    }
}

/// A started runtime that makes driven PeerConnections and servers.
pub struct Runtime {
    kind: RuntimeKind,
    tokio: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    /// Start it (tokio builds a 2-worker runtime; the others need nothing).
    pub fn new(kind: RuntimeKind) -> std::io::Result<Runtime> {
        let tokio = match kind {
            RuntimeKind::Tokio => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?,
            ),
            RuntimeKind::Smol | RuntimeKind::Std => None,
        };
        Ok(Runtime { kind, tokio })
    }

    /// Which one.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// Where the HTTP server runs its connections on this runtime.
    pub fn spawner(&self) -> Spawner {
        Spawner {
            kind: match &self.tokio {
                Some(rt) => SpawnerKind::Tokio(rt.handle().clone()),
                None if self.kind == RuntimeKind::Smol => SpawnerKind::Smol,
                None => SpawnerKind::Std,
            },
        }
    }

    /// A new PeerConnection with its own sockets, driven by this runtime.
    pub fn peer(&self, config: Config, options: Options) -> Result<PeerHandle, Error> {
        match (&self.tokio, self.kind) {
            (Some(rt), _) => {
                let pc =
                    rt.block_on(sansrtc_tokio::PeerConnection::with_options(config, options))?;
                Ok((*pc).clone())
            }
            (None, RuntimeKind::Smol) => {
                let pc = futures_lite::future::block_on(
                    sansrtc_smol::PeerConnection::with_options(config, options),
                )?;
                Ok((*pc).clone())
            }
            (None, _) => Ok(sansrtc_std::PeerConnection::with_options(config, options)?
                .handle()
                .clone()),
        }
    }

    /// [`Runtime::peer`] for async code: on tokio and smol it waits without blocking the
    /// task (binding runs on the runtime's blocking pool); on std the calling "task" is a
    /// thread of its own (see [`Spawner`]), which this blocks while the sockets are bound
    /// and the driver threads started.
    pub async fn peer_async(&self, config: Config, options: Options) -> Result<PeerHandle, Error> {
        match (&self.tokio, self.kind) {
            (Some(rt), _) => {
                // Spawned on the runtime, so that the caller may be on any executor.
                let made = rt.handle().spawn(async move {
                    sansrtc_tokio::PeerConnection::with_options(config, options)
                        .await
                        .map(|pc| (*pc).clone())
                });
                made.await.map_err(|_| Error::Closed)?
            }
            (None, RuntimeKind::Smol) => {
                let pc = sansrtc_smol::PeerConnection::with_options(config, options).await?;
                Ok((*pc).clone())
            }
            (None, _) => Ok(sansrtc_std::PeerConnection::with_options(config, options)?
                .handle()
                .clone()),
        }
    }

    /// A server: many PeerConnections on one socket, driven by this runtime.
    pub fn server(&self, options: Options) -> Result<ServerHandle, Error> {
        match (&self.tokio, self.kind) {
            (Some(rt), _) => {
                let server = rt.block_on(sansrtc_tokio::Server::bind(options))?;
                Ok((*server).clone())
            }
            (None, RuntimeKind::Smol) => {
                let server = futures_lite::future::block_on(sansrtc_smol::Server::bind(options))?;
                Ok((*server).clone())
            }
            (None, _) => Ok(sansrtc_std::Server::bind(options)?.handle().clone()),
        }
    }
}

/// A boxed future that ends at a deadline.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How the examples run on a runtime: their tasks (HTTP connections, sessions), their
/// timers, and where blocking code (the file examples' sessions) runs.
///
/// - tokio: tasks on the runtime, tokio's timers, `spawn_blocking` for blocking code.
/// - smol: tasks on smol's global executor, async-io's timers, smol's blocking pool.
/// - std: no executor. A task is a thread of its own that drives the future with
///   async-io's `block_on` (readiness and timers from async-io's reactor); a blocking
///   WebSocket session runs on a thread of its own. The server admits at most `Limits::max_connections` connections
///   and `Limits::max_sessions` sessions, so the threads are bounded too; a task that
///   cannot get a thread is dropped (its session's place and PeerConnection with it).
#[derive(Clone)]
pub struct Spawner {
    kind: SpawnerKind,
}

#[derive(Clone)]
enum SpawnerKind {
    Tokio(tokio::runtime::Handle),
    Smol,
    Std,
}

impl Spawner {
    /// Which runtime.
    pub fn kind(&self) -> RuntimeKind {
        match self.kind {
            SpawnerKind::Tokio(_) => RuntimeKind::Tokio,
            SpawnerKind::Smol => RuntimeKind::Smol,
            SpawnerKind::Std => RuntimeKind::Std,
        }
    }

    /// The tokio runtime's handle, when on tokio.
    pub(crate) fn tokio(&self) -> Option<&tokio::runtime::Handle> {
        match &self.kind {
            SpawnerKind::Tokio(handle) => Some(handle),
            _ => None,
        }
    }

    /// Run `task` to completion in the background: a task on tokio and smol, a thread of
    /// its own on std (a thread that cannot be made drops the task). A session's event
    /// loop runs this way; it must not block (await the handle's methods instead).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.kind {
            SpawnerKind::Tokio(handle) => {
                handle.spawn(task);
            }
            SpawnerKind::Smol => smol::spawn(task).detach(),
            SpawnerKind::Std => {
                let _ = std::thread::Builder::new()
                    .name("example-task".into())
                    .spawn(move || smol::block_on(task));
            }
        }
    }

    /// Run blocking code in the background (on std, on a thread of its own).
    pub(crate) fn spawn_blocking(&self, work: impl FnOnce() + Send + 'static) {
        match &self.kind {
            SpawnerKind::Tokio(handle) => {
                handle.spawn_blocking(work);
            }
            SpawnerKind::Smol => smol::unblock(work).detach(),
            SpawnerKind::Std => {
                let _ = std::thread::Builder::new()
                    .name("http-session".into())
                    .spawn(work);
            }
        }
    }

    /// A future that ends at `deadline`, on this runtime's timers.
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        match &self.kind {
            SpawnerKind::Tokio(handle) => {
                let _entered = handle.enter();
                Box::pin(tokio::time::sleep_until(deadline.into()))
            }
            SpawnerKind::Smol | SpawnerKind::Std => Box::pin(async move {
                smol::Timer::at(deadline).await;
            }),
        }
    }
}

/// Command-line options shared by the examples: `--addr HOST:PORT` (default
/// 127.0.0.1:8080) and `--runtime tokio|smol|std` (default tokio).
pub struct Args {
    /// The HTTP address; media sockets are bound on the same host.
    pub addr: std::net::SocketAddr,
    /// The runtime.
    pub runtime: RuntimeKind,
    /// Everything else, for the example's own flags.
    pub rest: Vec<String>,
}

impl Args {
    /// Parse `std::env::args()`.
    pub fn parse() -> Result<Args, String> {
        let mut args = Args {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            runtime: RuntimeKind::Tokio,
            rest: Vec::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--addr" => {
                    let v = it.next().ok_or("--addr needs HOST:PORT")?;
                    args.addr = v.parse().map_err(|e| format!("--addr {v}: {e}"))?;
                }
                "--runtime" => {
                    args.runtime = it.next().ok_or("--runtime needs a name")?.parse()?;
                }
                _ => args.rest.push(a),
            }
        }
        Ok(args)
    }

    /// Runtime options binding media sockets on the HTTP host only.
    pub fn media_options(&self) -> Options {
        media_options_for(self.addr.ip())
    }
}

/// Bind media sockets on this host only (loopback stays loopback).
pub fn media_options_for(ip: std::net::IpAddr) -> Options {
    let mut options = Options::default();
    options.net.interfaces = if ip.is_loopback() {
        sansrtc_std::Interfaces::Loopback
    } else if ip.is_unspecified() {
        sansrtc_std::Interfaces::Auto
    } else {
        sansrtc_std::Interfaces::Addresses(vec![ip])
    };
    options
}

/// What every example's `main` does first: parse the shared arguments and start the
/// runtime. On failure the problem is printed and the exit code to return is given.
pub fn init() -> Result<(Args, Runtime), std::process::ExitCode> {
    let args = Args::parse().map_err(|e| {
        eprintln!("{e}");
        std::process::ExitCode::from(2)
    })?;
    let runtime = Runtime::new(args.runtime).map_err(|e| {
        eprintln!("cannot start the {} runtime: {e}", args.runtime);
        std::process::ExitCode::FAILURE
    })?;
    Ok((args, runtime))
}

/// Serve until the process is stopped (the servers run on their own threads).
pub fn park_forever() -> ! {
    loop {
        std::thread::park();
    }
}
