//! TURN: the ChannelData, Data indication and stream framing parsers, and a TurnClient
//! in each state fed arbitrary datagrams from its server, never panic; ChannelData that
//! parses writes back to bytes that parse to the same message.
#![no_main]
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sansrtc::rng::Rng;
use sansrtc::stun::{Attribute, Class, Message, Method};
use sansrtc::transmit::Protocol;
use sansrtc::turn::{long_term_key, wire, ChannelData, DataIndication, TurnClient, TurnInput};

fuzz_target!(|data: &[u8]| {
    let _ = DataIndication::parse(data);
    let _ = wire::stream_frame_len(data);
    if let Ok(cd) = ChannelData::parse(data) {
        for padded in [false, true] {
            let mut out = vec![0u8; ChannelData::encoded_len(cd.data.len(), padded)];
            let n = cd.write(padded, &mut out).expect("a parsed message writes back");
            assert_eq!(ChannelData::parse(&out[..n]), Ok(cd));
        }
    }

    let server: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
    let now = Instant::now();
    // A fresh client (waiting for the 401), and one past the challenge and allocated.
    let mut fresh = TurnClient::new(server, Protocol::Udp, "u", "p", Rng::from_seed(1), now);
    let mut allocated = TurnClient::new(server, Protocol::Tcp, "u", "p", Rng::from_seed(2), now);
    let mut buf = vec![0u8; 2048];
    let (_, n) = allocated.poll_transmit(now, &mut buf).expect("allocate");
    let first = Message::parse(&buf[..n]).expect("our request");
    let challenge = Message::new(Class::Error, Method::ALLOCATE, first.transaction_id)
        .with(Attribute::ErrorCode { code: 401, reason: String::new() })
        .with(Attribute::Realm("r".into()))
        .with(Attribute::Nonce("n".into()))
        .encode_to_vec(None, false);
    allocated.handle_datagram(now, server, &challenge);
    let (_, n) = allocated.poll_transmit(now, &mut buf).expect("authenticated allocate");
    let second = Message::parse(&buf[..n]).expect("our request");
    let key = long_term_key("u", "r", "p");
    let success = Message::new(Class::Success, Method::ALLOCATE, second.transaction_id)
        .with(Attribute::XorRelayedAddress("192.0.2.1:50000".parse().expect("addr")))
        .with(Attribute::Lifetime(60))
        .encode_to_vec(Some(&key), true);
    allocated.handle_datagram(now, server, &success);
    assert!(allocated.is_allocated());
    let _ = allocated.bind_channel(now, "203.0.113.1:9".parse().expect("addr"));

    for client in [&mut fresh, &mut allocated] {
        if let TurnInput::PeerData { data: payload, .. } = client.handle_datagram(now, server, data) {
            assert!(payload.len() <= data.len());
        }
        client.handle_timeout(now + Duration::from_secs(1));
        while client.poll_transmit(now + Duration::from_secs(1), &mut buf).is_some() {}
        while client.poll_event().is_some() {}
        let _ = client.poll_timeout();
    }
});
