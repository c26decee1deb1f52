//! ICE role conflict (RFC 8445 section 7.3.1.1): two raw `IceAgent`s that both think they
//! are controlling, and two that both think they are controlled, sit on the virtual
//! network as plain nodes; they resolve the conflict by the tie-breaker (487 Role Conflict
//! or a silent switch) and connect with opposite roles and mirrored selected pairs, over a
//! perfect link and over a lossy, jittery one.

use std::net::SocketAddr;
use std::time::Duration;

use sansrtc::config::IceConfig;
use sansrtc::ice::{Candidate, IceAgent, IceConnectionState};
use sansrtc::rng::Rng;
use sansrtc::Protocol;
use sansrtc_tests::{Network, NodeId};

fn agents_on_network(controlling: bool, seed: u64, loss: f64) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(seed);
    net.conditions.loss = loss;
    net.conditions.jitter = Duration::from_millis(if loss > 0.0 { 20 } else { 0 });
    let now = net.now();
    let addr_a: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
    let addr_b: SocketAddr = "10.0.0.2:6000".parse().expect("addr");
    let mut a = IceAgent::new(&IceConfig::default(), Rng::from_seed(seed), false);
    let mut b = IceAgent::new(&IceConfig::default(), Rng::from_seed(seed + 1000), false);
    a.set_controlling(controlling);
    b.set_controlling(controlling);
    a.add_local_address(now, addr_a, Protocol::Udp);
    b.add_local_address(now, addr_b, Protocol::Udp);
    let (ca, cb) = (a.local_credentials().clone(), b.local_credentials().clone());
    a.set_remote_credentials(now, &cb.ufrag, &cb.pwd);
    b.set_remote_credentials(now, &ca.ufrag, &ca.pwd);
    a.add_remote_candidate(now, Candidate::host(addr_b, Protocol::Udp, 65535));
    b.add_remote_candidate(now, Candidate::host(addr_a, Protocol::Udp, 65535));
    let a = net.add_node("a", a, &[addr_a]);
    let b = net.add_node("b", b, &[addr_b]);
    (net, a, b)
}

fn agent(net: &mut Network, id: NodeId) -> &mut IceAgent {
    net.node_mut::<IceAgent>(id).expect("an IceAgent")
}

fn both_connected(net: &mut Network, a: NodeId, b: NodeId) -> bool {
    [a, b]
        .into_iter()
        .all(|n| agent(net, n).connection_state() == IceConnectionState::Connected)
}

fn assert_resolves(controlling: bool, seed: u64, loss: f64) {
    let (mut net, a, b) = agents_on_network(controlling, seed, loss);
    net.log_stun = true;
    // Connected alone is not enough: a controlled agent uses its first valid pair before
    // any nomination (RFC 8445 12.1), so wait for the roles to be resolved as well.
    let connected = net.run_until(Duration::from_secs(30), |n| {
        both_connected(n, a, b) && agent(n, a).is_controlling() != agent(n, b).is_controlling()
    });
    assert!(
        connected,
        "seed {seed} (both {}): not connected, states {:?} / {:?}, controlling {} / {}\n{}",
        if controlling {
            "controlling"
        } else {
            "controlled"
        },
        agent(&mut net, a).connection_state(),
        agent(&mut net, b).connection_state(),
        agent(&mut net, a).is_controlling(),
        agent(&mut net, b).is_controlling(),
        net.timeline_text()
    );
    let (ra, rb) = (
        agent(&mut net, a).is_controlling(),
        agent(&mut net, b).is_controlling(),
    );
    assert_ne!(ra, rb, "seed {seed}: same role");
    let conflicts =
        agent(&mut net, a).stats().role_conflicts + agent(&mut net, b).stats().role_conflicts;
    assert!(conflicts > 0, "seed {seed}: no conflict was seen");
    let pa = agent(&mut net, a).selected_pair().expect("a pair");
    let pb = agent(&mut net, b).selected_pair().expect("b pair");
    assert_eq!((pa.local, pa.remote), (pb.remote, pb.local));
}

#[test]
fn both_controlling_resolves() {
    for seed in 0..20 {
        assert_resolves(true, seed, 0.0);
    }
}

#[test]
fn both_controlled_resolves() {
    for seed in 0..20 {
        assert_resolves(false, seed, 0.0);
    }
}

#[test]
fn conflicts_resolve_under_loss() {
    for seed in 100..110 {
        assert_resolves(true, seed, 0.2);
        assert_resolves(false, seed, 0.2);
    }
}
