//! Two sansrtc cores negotiate exactly as the seed tutorial describes (offer and answer as
//! JSON `RTCSessionDescriptionInit`, candidates trickled as JSON `RTCIceCandidateInit`) and
//! connect over a lossy virtual network, with no sockets and no real time passing.
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

fn main() -> ExitCode {
    let loss: f64 = arg("--loss", 0.10);
    let seed: u64 = arg("--seed", 7);
    let wall = Instant::now();
    let mut net = Network::new(seed);
    net.conditions.loss = loss;
    net.conditions.latency = Duration::from_millis(20);
    net.conditions.jitter = Duration::from_millis(20);
    net.log_stun = true;

    let stun_addr: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
    net.add_node("stun", Box::new(StunServer::default()), &[stun_addr]);

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

    let a = net.add_peer(
        "alice",
        alice,
        &[
            "10.0.0.1:5000".parse().expect("addr"),
            "[2001:db8::1]:5000".parse().expect("addr"),
        ],
    );
    let b = net.add_peer("bob", bob, &["10.0.0.2:6000".parse().expect("addr")]);
    net.trickle(a, b, Duration::from_millis(50));
    net.trickle(b, a, Duration::from_millis(50));

    println!(
        "sansrtc simulation: seed {seed}, {:.0} % loss, 20-40 ms one-way latency\n",
        loss * 100.0
    );
    if let Err(e) = net.negotiate(a, b) {
        eprintln!("negotiation failed: {e}");
        return ExitCode::FAILURE;
    }
    let connected = net.run_until(Duration::from_secs(30), |n| n.connected(a, b));
    // Let consent freshness run for a while to show the connection stays up.
    if connected {
        net.run_for(Duration::from_secs(10));
    }
    for line in net.timeline() {
        println!("{line}");
    }
    let s = &net.stats;
    println!(
        "\nnetwork: {} datagrams sent ({} STUN), {} delivered, {} lost, {} duplicated",
        s.sent, s.stun, s.delivered, s.lost, s.duplicated
    );
    for (id, name) in [(a, "alice"), (b, "bob")] {
        let st = net.peer(id).stats();
        println!(
            "{name}: {} checks sent, {} retransmits, {} requests answered, {} responses",
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
    if !net.connected(a, b) {
        println!("NOT CONNECTED");
        return ExitCode::FAILURE;
    }
    let pair = net.peer(a).selected_pair().expect("pair");
    println!("connected: alice {} <-> bob {}", pair.local, pair.remote);
    ExitCode::SUCCESS
}
