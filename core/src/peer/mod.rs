//! PeerConnection (being written).
pub mod event;
