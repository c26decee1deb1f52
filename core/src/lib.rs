//! # sansrtc: a sans-IO WebRTC core
//!
//! A complete WebRTC endpoint as a pure, deterministic state machine. The core takes
//! three kinds of input (API calls, received datagrams, the current time) and produces
//! three kinds of output (datagrams to send, the next deadline, events). It never opens
//! a socket, reads a clock or spawns a task; runtimes (`sansrtc-tokio`, `sansrtc-smol`,
//! `sansrtc-std`) or your own loop do that.
//!
//! ```ignore
//! let mut pc = sansrtc::PeerConnection::new(config, now)?;
//! pc.add_local_address(now, socket.local_addr()?, Protocol::Udp);
//! pc.set_remote_description(now, offer)?;
//! let answer = pc.create_answer()?;
//! pc.set_local_description(now, answer.clone())?;
//! loop {
//!     while let Some(t) = pc.poll_transmit(now, &mut buf) { socket.send_to(&buf[..t.len], t.remote)?; }
//!     while let Some(ev) = pc.poll_event() { /* IceCandidate, ConnectionStateChange, ... */ }
//!     let deadline = pc.poll_timeout();
//!     // wait for a datagram or the deadline, then:
//!     // pc.handle_datagram(now, Datagram { .. }) or pc.handle_timeout(now)
//! }
//! ```
#![forbid(unsafe_code)]

pub mod config;
pub mod datachannel;
pub mod dtls;
pub mod endpoint;
pub mod ice;
pub mod media;
pub mod peer;
pub mod rng;
pub mod rtp;
pub mod sctp;
pub mod sdp;
pub mod srtp;
pub mod stun;
pub mod transmit;
pub mod turn;

pub use config::{Config, IceServer, IceTransportPolicy};
pub use datachannel::{ChannelId, DataChannelInit};
pub use endpoint::{Endpoint, EndpointStats, PeerId};
pub use media::{Direction, MediaKind, TransceiverId, TransceiverInit};
pub use peer::{
    ConnectionState, Event, OfferOptions, PeerConnection, RemoteClose, SignalingState, TurnServer,
};
pub use sdp::{IceCandidateInit, SessionDescription};
pub use transmit::{Datagram, Protocol, Transmit};
