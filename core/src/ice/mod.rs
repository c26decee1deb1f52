#![allow(missing_docs, dead_code, unused_variables)]
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

use std::net::SocketAddr;
use std::time::Instant;
use crate::transmit::{Protocol, Transmit};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad candidate")]
pub struct CandidateError;
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CandidateAddress { Ip(SocketAddr), Mdns { hostname: String, port: u16 } }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate { pub address: CandidateAddress }
impl Candidate { pub fn parse(s: &str) -> Result<Candidate, CandidateError> { Err(CandidateError) } }
impl std::fmt::Display for Candidate { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials { pub ufrag: String, pub pwd: String }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectedPair { pub local: SocketAddr, pub remote: SocketAddr, pub protocol: Protocol }
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceStats {}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceEvent { LocalCandidate(Candidate), GatheringStateChange(IceGatheringState), ConnectionStateChange(IceConnectionState), SelectedPairChange(SelectedPair), MdnsCandidate(Candidate) }
#[derive(Debug)]
pub struct IceAgent { creds: IceCredentials }
impl IceAgent {
  pub fn new(config: &crate::config::IceConfig, rng: crate::rng::Rng, lite: bool) -> Self { IceAgent { creds: IceCredentials { ufrag: "abcd".into(), pwd: "x".into() } } }
  pub fn local_credentials(&self) -> &IceCredentials { &self.creds }
  pub fn remote_credentials(&self) -> Option<&IceCredentials> { None }
  pub fn set_remote_credentials(&mut self, now: Instant, ufrag: &str, pwd: &str) {}
  pub fn restart_with_credentials(&mut self, now: Instant, ufrag: &str, pwd: &str) {}
  pub fn set_controlling(&mut self, c: bool) {}
  pub fn set_remote_lite(&mut self, c: bool) {}
  pub fn add_local_address(&mut self, now: Instant, addr: SocketAddr, p: Protocol) {}
  pub fn add_stun_server(&mut self, now: Instant, addr: SocketAddr) {}
  pub fn start_gathering(&mut self, now: Instant) {}
  pub fn add_remote_candidate(&mut self, now: Instant, c: Candidate) {}
  pub fn end_of_remote_candidates(&mut self, now: Instant) {}
  pub fn handle_stun(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, p: Protocol, raw: &[u8]) -> bool { false }
  pub fn handle_timeout(&mut self, now: Instant) {}
  pub fn poll_timeout(&self) -> Option<Instant> { None }
  pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> { None }
  pub fn poll_event(&mut self) -> Option<IceEvent> { None }
  pub fn selected_pair(&self) -> Option<SelectedPair> { None }
  pub fn close(&mut self) {}
  pub fn stats(&self) -> IceStats { IceStats {} }
}
