//! Two sansrtc cores negotiate exactly as the seed tutorial describes (offer and answer as
//! JSON `RTCSessionDescriptionInit`, candidates trickled as JSON `RTCIceCandidateInit`
//! over a 50 ms signaling channel) and connect over a lossy virtual network, with no
//! sockets and no real time passing. Alice (audio + video) sits behind a one-to-one NAT
//! and learns her public address from a STUN server model; bob answers from a public
//! address. The timeline shows candidates, STUN gathering, checks, consent and state
//! changes; the program exits non-zero if the two do not connect.
//!
//! `cargo run --release --example simulation [-- --loss 0.1 --seed 7]`
// Examples talk to the user on stdout; the print_stdout lint is for the libraries.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sansrtc::{IceServer, MediaKind, PeerConnection};
use sansrtc_tests::{seeded_config, Network, StunServer};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a literal socket address")
}

fn main() -> ExitCode {
    let loss: f64 = arg("--loss", 0.10);
    let seed: u64 = arg("--seed", 7);
    let wall = Instant::now();
    let mut net = Network::new(seed);
    net.conditions.loss = loss;
    net.conditions.latency = Duration::from_millis(20);
    net.conditions.jitter = Duration::from_millis(20);
    net.log_stun = true;

    let stun_addr = addr("198.51.100.1:3478");
    net.add_node("stun", StunServer::default(), &[stun_addr]);

    let mut alice_config = seeded_config(seed);
    alice_config.ice_servers = vec![IceServer::url(format!("stun:{stun_addr}"))];
    let mut alice = PeerConnection::new(alice_config, net.now()).expect("alice");
    alice
        .add_track(MediaKind::Audio, vec!["camera".into()])
        .expect("audio");
    alice
        .add_track(MediaKind::Video, vec!["camera".into()])
        .expect("video");
    let bob = PeerConnection::new(seeded_config(seed + 1), net.now()).expect("bob");

    let alice_private = addr("192.168.1.10:5000");
    let alice_public = addr("203.0.113.1:40000");
    let a = net.add_peer("alice", alice, &[alice_private]);
    let b = net.add_peer("bob", bob, &[addr("198.51.100.2:6000")]);
    net.add_nat(alice_private, alice_public);
    net.trickle(a, b, Duration::from_millis(50));
    net.trickle(b, a, Duration::from_millis(50));

    println!(
        "sansrtc simulation: seed {seed}, {:.0} % loss, 20-40 ms one-way latency, \
         alice {alice_private} behind NAT {alice_public}\n",
        loss * 100.0
    );
    if let Err(e) = net.negotiate(a, b) {
        println!("{}", net.timeline_text());
        println!("negotiation failed: {e}");
        return ExitCode::FAILURE;
    }
    let connected = net.run_until(Duration::from_secs(30), |n| n.connected(a, b));
    // Let consent freshness run for a while to show the connection stays up.
    if connected {
        net.run_for(Duration::from_secs(10));
    }
    println!("{}", net.timeline_text());
    let s = &net.stats;
    println!(
        "\nnetwork: {} datagrams sent ({} STUN), {} delivered, {} lost, {} unroutable, {} signaling messages",
        s.sent, s.stun, s.delivered, s.lost, s.unroutable, s.signaling_messages
    );
    for (id, name) in [(a, "alice"), (b, "bob")] {
        let st = net.peer(id).stats();
        println!(
            "{name}: {} checks sent, {} retransmits, {} requests answered, {} responses received",
            st.ice.checks_sent,
            st.ice.retransmits,
            st.ice.requests_answered,
            st.ice.responses_received
        );
    }
    println!(
        "virtual time {:.3} s in {:.1} ms of wall time",
        net.elapsed().as_secs_f64(),
        wall.elapsed().as_secs_f64() * 1000.0
    );
    if !connected {
        println!("NOT CONNECTED within 30 s");
        return ExitCode::FAILURE;
    }
    let (Some(pa), Some(pb)) = (net.peer(a).selected_pair(), net.peer(b).selected_pair()) else {
        println!("connected without a selected pair");
        return ExitCode::FAILURE;
    };
    println!(
        "selected pair: alice {} (seen by bob as {}) <-> bob {}",
        pa.local, pb.remote, pa.remote
    );
    let states = [a, b].map(|n| {
        let p = net.peer(n);
        (p.ice_connection_state(), p.connection_state())
    });
    println!(
        "final states: alice {:?}/{:?}, bob {:?}/{:?}",
        states[0].0, states[0].1, states[1].0, states[1].1
    );
    if net.connected(a, b) {
        ExitCode::SUCCESS
    } else {
        // Connected, then lost consent responses to loss at the very end.
        println!("connected, but not connected at the end");
        ExitCode::FAILURE
    }
}
