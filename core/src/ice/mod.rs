//! ICE (placeholder until the ICE agent lands).

/// `RTCIceConnectionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceConnectionState {
    /// New.
    New,
    /// Checking.
    Checking,
    /// Connected.
    Connected,
    /// Completed.
    Completed,
    /// Disconnected.
    Disconnected,
    /// Failed.
    Failed,
    /// Closed.
    Closed,
}

/// `RTCIceGatheringState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceGatheringState {
    /// New.
    New,
    /// Gathering.
    Gathering,
    /// Complete.
    Complete,
}
