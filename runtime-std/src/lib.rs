//! # sansrtc-std
//!
//! sansrtc on the standard library, and the driver code every runtime shares.
//!
//! - [`PeerConnection`]: the blocking API over a driver thread (the same methods as the
//!   tokio and smol handles, without `.await`).
//! - [`Driver`]: no threads at all; a game or robot loop calls [`Driver::poll`] once per
//!   frame on non-blocking sockets and uses the core directly.
//! - [`net`]: socket set-up (interfaces, port range, IP filter, loopback-only mode) and
//!   STUN host name resolution; [`driver`]: the [`Core`] trait, the cloneable [`Handle`]
//!   and the async driver loop that `sansrtc-tokio` and `sansrtc-smol` run with their
//!   own socket and timer types. Written once, used by all three runtimes.
//! - [`runtime_stats`] ([`resources`]): what every driver in the process holds now
//!   (drivers per runtime, tasks, threads, sockets, queued commands and events).
//! - [`stream`]: TURN over TCP and TLS (`turn:...?transport=tcp`, `turns:`): resolving,
//!   connecting within the [`NetConfig`], rustls, framing; threads that report to the
//!   driver loop of every runtime.
#![forbid(unsafe_code)]

pub mod batch;
pub mod driver;
pub mod game;
pub mod net;
pub mod peer;
pub mod resources;
pub mod stream;
pub mod thread;

pub use driver::{Capacity, Core, Error, Handle, RuntimeCounters};
pub use game::Driver;
pub use net::{Interfaces, NetConfig};
pub use peer::{Options, PeerHandle, ServerEvent, ServerHandle};
pub use resources::{runtime_stats, DriverGuard, Gauge, ResourceStats, RuntimeKind};
pub use sansrtc;
pub use thread::{PeerConnection, Server};
