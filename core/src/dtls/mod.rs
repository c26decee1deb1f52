//! DTLS 1.2 for WebRTC (RFC 6347 with RFC 5763/5764): our own sans-IO implementation on
//! ring. `wire` parses and writes records and handshake messages, `keying` holds the key
//! schedule and record protection, `record` the record layer (epochs, protection, replay
//! window), `reassembly` the bounded reassembly of the peer's handshake messages, `flight`
//! our flights and their retransmission, `client` and `server` the handshake state machine
//! of each role (one state per expected message) on the shared context of `handshake`,
//! `endpoint` the association both roles present, and `cert` the self-signed certificate
//! and its SDP fingerprint.

pub mod cert;
mod client;
pub mod endpoint;
mod flight;
mod handshake;
pub(crate) mod keying;
mod reassembly;
mod record;
mod server;
pub(crate) mod wire;

pub use endpoint::{
    DtlsConfig, DtlsEndpoint, DtlsError, DtlsEvent, DtlsRole, DtlsState, DtlsStats,
};

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod tests;
