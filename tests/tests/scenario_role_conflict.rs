//! ICE role conflict (RFC 8445 7.3.1.1): two agents that both think they are controlling,
//! and two that both think they are controlled, resolve it by the tie-breaker (487 Role
//! Conflict or a silent switch) and connect with opposite roles.

use std::net::SocketAddr;
use std::time::Instant;

use sansrtc::config::IceConfig;
use sansrtc::ice::{Candidate, IceAgent, IceConnectionState};
use sansrtc::rng::Rng;
use sansrtc::Protocol;

/// Two agents with the same initial role, driven in lockstep over a perfect link.
fn conflict(controlling: bool, seed: u64) -> (IceAgent, IceAgent) {
    let now0 = Instant::now();
    let addr_a: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
    let addr_b: SocketAddr = "10.0.0.2:6000".parse().expect("addr");
    let mut a = IceAgent::new(&IceConfig::default(), Rng::from_seed(seed), false);
    let mut b = IceAgent::new(&IceConfig::default(), Rng::from_seed(seed + 1000), false);
    a.set_controlling(controlling);
    b.set_controlling(controlling);
    a.add_local_address(now0, addr_a, Protocol::Udp);
    b.add_local_address(now0, addr_b, Protocol::Udp);
    let (ca, cb) = (a.local_credentials().clone(), b.local_credentials().clone());
    a.set_remote_credentials(now0, &cb.ufrag, &cb.pwd);
    b.set_remote_credentials(now0, &ca.ufrag, &ca.pwd);
    a.add_remote_candidate(now0, Candidate::host(addr_b, Protocol::Udp, 65535));
    b.add_remote_candidate(now0, Candidate::host(addr_a, Protocol::Udp, 65535));
    let mut now = now0;
    let mut buf = [0u8; 1500];
    for _ in 0..2000 {
        while let Some(t) = a.poll_transmit(now, &mut buf) {
            b.handle_stun(now, t.remote, t.local, Protocol::Udp, &buf[..t.len]);
        }
        while let Some(t) = b.poll_transmit(now, &mut buf) {
            a.handle_stun(now, t.remote, t.local, Protocol::Udp, &buf[..t.len]);
        }
        let both = [&a, &b]
            .iter()
            .all(|x| x.connection_state() == IceConnectionState::Connected);
        if both {
            break;
        }
        let Some(next) = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        else {
            break;
        };
        now = now.max(next);
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    (a, b)
}

fn assert_resolved(a: &IceAgent, b: &IceAgent) {
    assert_eq!(a.connection_state(), IceConnectionState::Connected);
    assert_eq!(b.connection_state(), IceConnectionState::Connected);
    assert_ne!(a.is_controlling(), b.is_controlling());
    assert!(a.stats().role_conflicts + b.stats().role_conflicts > 0);
    let (pa, pb) = (
        a.selected_pair().expect("a pair"),
        b.selected_pair().expect("b pair"),
    );
    assert_eq!((pa.local, pa.remote), (pb.remote, pb.local));
}

#[test]
fn both_controlling_resolves() {
    for seed in 0..20 {
        let (a, b) = conflict(true, seed);
        assert_resolved(&a, &b);
    }
}

#[test]
fn both_controlled_resolves() {
    for seed in 0..20 {
        let (a, b) = conflict(false, seed);
        assert_resolved(&a, &b);
    }
}
