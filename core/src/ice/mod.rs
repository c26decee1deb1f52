//! ICE (RFC 8445, RFC 8838 trickle, RFC 7675 consent): candidates and the agent that
//! gathers, checks, nominates and keeps consent on one bundled transport.

pub mod agent;
pub mod candidate;
mod validated;

pub use agent::{
    IceAgent, IceConnectionState, IceCredentials, IceEvent, IceGatheringState, IceStats,
    SelectedPair,
};
pub use candidate::{Candidate, CandidateAddress, CandidateError, CandidateKind, TcpType};
pub use validated::Validation;

#[cfg(test)]
mod tests;
