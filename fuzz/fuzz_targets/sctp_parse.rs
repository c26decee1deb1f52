//! SCTP chunks, DCEP messages and whole associations: parsing never panics; every parsed
//! chunk writes out and parses back to itself; arbitrary packets (raw, and with a valid
//! checksum and verification tag so they reach the chunk handlers) into a fresh server
//! and into an established association never panic.
#![no_main]
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sansrtc::datachannel::dcep::DcepMessage;
use sansrtc::rng::Rng;
use sansrtc::sctp::wire::{self, crc32c};
use sansrtc::sctp::{Association, Reliability, SctpConfig, SctpRole};

fn with_checksum(mut packet: Vec<u8>) -> Vec<u8> {
    if packet.len() >= 12 {
        let crc = crc32c::packet_checksum(&packet);
        packet[8..12].copy_from_slice(&crc.to_le_bytes());
    }
    packet
}

/// A connected client/server pair and the server's verification tag.
fn established(now: Instant) -> (Association, Association, [u8; 4]) {
    let mut rng = Rng::from_seed(1);
    let mut client =
        Association::new(SctpConfig::default(), SctpRole::Client, rng.fork(), now).expect("a");
    let mut server =
        Association::new(SctpConfig::default(), SctpRole::Server, rng.fork(), now).expect("b");
    client.connect(now);
    let mut buf = vec![0u8; 1500];
    let mut tag = [0u8; 4];
    for _ in 0..10 {
        while let Some(n) = client.poll_transmit(now, &mut buf) {
            tag.copy_from_slice(&buf[4..8]);
            server.handle_packet(now, &buf[..n]);
        }
        while let Some(n) = server.poll_transmit(now, &mut buf) {
            client.handle_packet(now, &buf[..n]);
        }
    }
    (client, server, tag)
}

fuzz_target!(|data: &[u8]| {
    // Chunks: parse, write back, parse again.
    let mut packet = vec![0x13, 0x88, 0x13, 0x88, 0, 0, 0, 1, 0, 0, 0, 0];
    packet.extend_from_slice(data);
    let packet = Bytes::from(with_checksum(packet));
    if let Ok((header, chunks)) = wire::parse_packet(&packet) {
        let parsed: Vec<_> = chunks.flatten().collect();
        let written = Bytes::from(wire::write_packet(header, &parsed));
        if written.len() <= 65_535 {
            let (_, again) = wire::parse_packet(&written).expect("our packet parses");
            let again: Vec<_> = again.collect::<Result<_, _>>().expect("our chunks parse");
            assert_eq!(again, parsed);
        }
    }
    let _ = wire::parse_packet(&Bytes::copy_from_slice(data)).map(|(_, c)| c.count());

    // DCEP.
    if let Ok(m) = DcepMessage::parse(data) {
        if let Ok(b) = m.to_bytes() {
            assert_eq!(DcepMessage::parse(&b), Ok(m));
        }
    }

    // Associations: a fresh server, and an established one.
    let now = Instant::now();
    let (mut client, mut server, tag) = established(now);
    let _ = client.send(now, 0, 51, Bytes::from_static(b"hello"), false, Reliability::Reliable);
    let mut fresh =
        Association::new(SctpConfig::default(), SctpRole::Server, Rng::from_seed(2), now)
            .expect("fresh");
    let mut buf = vec![0u8; 1500];
    for (i, piece) in data.split(|b| *b == 0xFE).enumerate() {
        let t = now + Duration::from_millis(50 * i as u64);
        let mut p = piece.to_vec();
        fresh.handle_packet(t, &p);
        if p.len() >= 12 {
            p[0..4].copy_from_slice(&[0x13, 0x88, 0x13, 0x88]);
            p[4..8].copy_from_slice(&tag);
        }
        let p = with_checksum(p);
        server.handle_packet(t, &p);
        fresh.handle_packet(t, &p);
        server.handle_timeout(t);
        while let Some(n) = server.poll_transmit(t, &mut buf) {
            client.handle_packet(t, &buf[..n]);
        }
        while let Some(n) = client.poll_transmit(t, &mut buf) {
            server.handle_packet(t, &buf[..n]);
        }
        while fresh.poll_transmit(t, &mut buf).is_some() {}
        while server.poll_event().is_some() {}
        while client.poll_event().is_some() {}
        while fresh.poll_event().is_some() {}
    }
});
