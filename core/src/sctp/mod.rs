//! SCTP over DTLS (RFC 9260 profiled by RFC 8261 and RFC 8831): our own sans-IO
//! association, with PR-SCTP (RFC 3758), stream reset (RFC 6525) and I-DATA message
//! interleaving (RFC 8260).
//!
//! [`wire`] parses and writes packets and chunks; [`association`] is the state machine
//! (handshake, data transfer, retransmission, congestion control, partial reliability,
//! stream reset, shutdown). Each packet in or out is one DTLS application-data record.
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use sansrtc::rng::Rng;
//! use sansrtc::sctp::{Association, Reliability, SctpConfig, SctpEvent, SctpRole};
//!
//! let now = Instant::now();
//! let mut a = Association::new(SctpConfig::default(), SctpRole::Client, Rng::from_seed(1), now).unwrap();
//! let mut b = Association::new(SctpConfig::default(), SctpRole::Server, Rng::from_seed(2), now).unwrap();
//! a.connect(now);
//! a.send(now, 0, 51, Bytes::from_static(b"hello"), false, Reliability::Reliable).unwrap();
//! let mut buf = [0u8; 1500];
//! let mut got = None;
//! for _ in 0..10 {
//!     while let Some(n) = a.poll_transmit(now, &mut buf) { b.handle_packet(now, &buf[..n]); }
//!     while let Some(n) = b.poll_transmit(now, &mut buf) { a.handle_packet(now, &buf[..n]); }
//!     while let Some(e) = b.poll_event() {
//!         if let SctpEvent::Message(m) = e { got = Some(m.data); }
//!     }
//! }
//! assert_eq!(got.as_deref(), Some(&b"hello"[..]));
//! ```

pub mod association;
pub mod wire;

pub use association::{
    Association, AssociationError, AssociationState, CloseReason, ReceivedMessage, Reliability,
    SctpConfig, SctpEvent, SctpRole, SctpStats, SendError,
};

#[cfg(test)]
pub(crate) mod testing;
