//! DTLS 1.2 for WebRTC (RFC 6347 with RFC 5763/5764): our own sans-IO implementation on
//! ring. `wire` parses and writes records and handshake messages, `keying` holds the key
//! schedule and record protection, `endpoint` is the handshake state machine of both roles,
//! and `cert` the self-signed certificate and its SDP fingerprint.

pub mod cert;
pub mod endpoint;
pub mod keying;
pub mod wire;

pub use endpoint::{
    DtlsConfig, DtlsEndpoint, DtlsError, DtlsEvent, DtlsRole, DtlsState, DtlsStats,
};

#[cfg(test)]
mod tests;
