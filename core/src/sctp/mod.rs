//! SCTP over DTLS (RFC 9260 profiled by RFC 8261 and RFC 8831): our own sans-IO
//! association. `wire` parses and writes packets and chunks; `association` is the state
//! machine (handshake, data transfer, retransmission, congestion control, PR-SCTP,
//! stream reset, shutdown).

pub mod association;
pub mod wire;

pub use association::{
    Association, AssociationState, CloseReason, ReceivedMessage, Reliability, SctpConfig,
    SctpEvent, SctpRole, SctpStats, SendError,
};

#[cfg(test)]
pub(crate) mod testing;
