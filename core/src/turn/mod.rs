//! TURN client (RFC 8656): relayed transport addresses for ICE when no direct path works.
//!
//! This layer owns one allocation per server: the long-term credential exchange (401
//! challenge, realm, nonce, stale-nonce retry), Refresh before the lifetime ends,
//! permissions and channel bindings (refreshed), Send/Data indications and ChannelData,
//! and deallocation on close. It is sans-IO like the rest of the core: the owner feeds
//! datagrams from the server and the time, and sends what [`TurnClient::poll_transmit`]
//! yields to [`TurnClient::server`]. Relayed peer datagrams come back out of
//! [`TurnClient::handle_datagram`] as [`TurnInput::PeerData`], to be demultiplexed again
//! (STUN for ICE, DTLS, SRTP) as if they had arrived on the relayed address.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use sansrtc::rng::Rng;
//! use sansrtc::transmit::Protocol;
//! use sansrtc::turn::{TurnClient, TurnEvent, TurnInput};
//!
//! let now = Instant::now();
//! let server = "192.0.2.10:3478".parse().unwrap();
//! let mut turn = TurnClient::new(server, Protocol::Udp, "user", "pass", Rng::from_seed(1), now);
//! let mut buf = [0u8; 1500];
//! // The first Allocate goes out at once, without credentials.
//! let (to, len) = turn.poll_transmit(now, &mut buf).expect("Allocate");
//! assert_eq!(to, server);
//! assert!(len >= 20);
//! // A datagram from someone else is not TURN: hand it to ICE/DTLS as usual.
//! let other = "198.51.100.1:9".parse().unwrap();
//! assert_eq!(turn.handle_datagram(now, other, &[0x16, 0xfe]), TurnInput::NotTurn);
//! // With no answer, the request is retransmitted, then the allocation fails in bounded time.
//! let mut t = now;
//! while let Some(deadline) = turn.poll_timeout() {
//!     t = deadline;
//!     turn.handle_timeout(t);
//!     while turn.poll_transmit(t, &mut buf).is_some() {}
//! }
//! assert!(t - now < Duration::from_secs(20));
//! assert!(matches!(turn.poll_event(), Some(TurnEvent::AllocationFailed(_))));
//! ```

pub mod client;
pub mod event;
pub mod url;
pub mod wire;

/// A TURN server model for simulation tests (the core's own tests and the harness's
/// TURN node in `sansrtc-tests`); not part of the API.
#[cfg(any(test, feature = "turn-server-model"))]
#[doc(hidden)]
pub mod server_model;
#[cfg(test)]
mod tests;

pub use client::{TurnClient, TurnConfig, MAX_CHANNELS, MAX_PERMISSIONS};
pub use event::{PermissionError, TurnError, TurnEvent, TurnInput, TurnSendError, TurnStats};
pub use url::{Scheme, ServerHost, ServerTransport, ServerUrl, UrlError};
pub use wire::{long_term_key, ChannelData, ChannelDataError, DataIndication};
