//! A game loop at 60 frames per second drives two PeerConnections with the thread-free
//! `sansrtc_std::Driver`: no executor, no threads, non-blocking sockets on 127.0.0.1.
//! Each frame it calls `driver.poll(now)` on both, trickles candidates between them in
//! memory, and once connected the "host" sends its game state as one RTP packet per
//! frame; the "guest" prints what arrives. Stops after `--frames N` frames (default 300).
//!
//! `cargo run --release --example game_loop [-- --frames 300]`
#![allow(clippy::print_stdout)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{Config, ConnectionState, Event, MediaKind};
use sansrtc_std::{Driver, NetConfig};

const FRAME: Duration = Duration::from_micros(16_667);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let frames: u32 = args
        .iter()
        .position(|a| a == "--frames")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let start = Instant::now();
    let net = NetConfig::loopback();
    let (mut host, mut guest) = match (
        Driver::new(Config::default(), &net, start),
        Driver::new(Config::default(), &net, start),
    ) {
        (Ok(h), Ok(g)) => (h, g),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cannot bind sockets: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Signaling happens in memory: both peers live in this loop.
    let state_track = match host.core().add_track(MediaKind::Video, vec!["game".into()]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let negotiated = (|| {
        let offer = host.core().create_offer(Default::default())?;
        host.core().set_local_description(start, offer.clone())?;
        guest.core().set_remote_description(start, offer)?;
        let answer = guest.core().create_answer()?;
        guest.core().set_local_description(start, answer.clone())?;
        host.core().set_remote_description(start, answer)
    })();
    if let Err(e) = negotiated {
        eprintln!("negotiation failed: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "host on {:?}, guest on {:?}",
        host.local_addresses(),
        guest.local_addresses()
    );
    let (mut host_up, mut guest_up, mut received) = (false, false, 0u32);
    let mut next_frame = Instant::now();
    for frame in 0..frames {
        let now = Instant::now();
        let host_events: Vec<Event> = host.poll(now).collect();
        let guest_events: Vec<Event> = guest.poll(now).collect();
        for event in host_events {
            match event {
                Event::IceCandidate(c) => {
                    let _ = guest.core().add_ice_candidate(now, c);
                }
                Event::ConnectionStateChange(s) => {
                    host_up = s == ConnectionState::Connected;
                    println!("frame {frame:>4}: host {s:?}");
                }
                _ => {}
            }
        }
        for event in guest_events {
            match event {
                Event::IceCandidate(c) => {
                    let _ = host.core().add_ice_candidate(now, c);
                }
                Event::ConnectionStateChange(s) => {
                    guest_up = s == ConnectionState::Connected;
                    println!("frame {frame:>4}: guest {s:?}");
                }
                Event::Rtp { packet, .. } => {
                    received += 1;
                    if received % 60 == 1 {
                        println!(
                            "frame {frame:>4}: guest got {:?}",
                            String::from_utf8_lossy(&packet.payload)
                        );
                    }
                }
                _ => {}
            }
        }
        if host_up && guest_up {
            let state = format!(
                "tick {frame} player at ({}, {})",
                frame % 640,
                (frame * 3) % 480
            );
            let packet = RtpPacket {
                payload_type: 0,
                sequence_number: frame as u16,
                timestamp: frame.wrapping_mul(1500),
                marker: true,
                ssrc: 0,
                payload: Bytes::from(state.into_bytes()),
            };
            let _ = host.core().send_rtp(state_track, &packet);
        }
        // Sleep to the next frame (a real game renders here).
        next_frame += FRAME;
        std::thread::sleep(next_frame.saturating_duration_since(Instant::now()));
    }
    println!(
        "{frames} frames in {:.1} s; the guest received {received} state packets; host {:?}, guest {:?}",
        start.elapsed().as_secs_f64(),
        host.stats(),
        guest.stats()
    );
    if received == 0 {
        eprintln!("nothing arrived");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
