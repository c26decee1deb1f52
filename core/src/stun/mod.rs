//! STUN (RFC 8489): the wire format with integrity and fingerprint, and the
//! retransmission timer of a request.

pub mod transaction;
pub mod wire;

pub use transaction::{RetransmitTimer, TimerAction};
pub use wire::*;
