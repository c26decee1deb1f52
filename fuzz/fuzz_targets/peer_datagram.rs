//! Arbitrary datagrams into a PeerConnection that is in the middle of connecting, with a
//! TURN server configured: never panics, and its queues stay bounded. Each chunk's first
//! byte picks the sender: the TURN server (so the bytes go through the TURN client and,
//! when relayed, back into ICE/DTLS/SRTP as from the relayed address) or a peer.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sansrtc::{Config, Datagram, IceServer, MediaKind, OfferOptions, PeerConnection, Protocol};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let config = Config {
        rng_seed: Some(1),
        ice_servers: vec![IceServer {
            urls: vec!["turn:127.0.0.3:3478".into()],
            username: Some("u".into()),
            credential: Some("p".into()),
        }],
        ..Default::default()
    };
    let Ok(mut pc) = PeerConnection::new(config, now) else { return };
    let local = "127.0.0.1:5000".parse().expect("addr");
    let server = "127.0.0.3:3478".parse().expect("addr");
    let peer = "127.0.0.2:6000".parse().expect("addr");
    pc.add_local_address(now, local, Protocol::Udp);
    let _ = pc.add_track(MediaKind::Audio, vec![]);
    if let Ok(offer) = pc.create_offer(OfferOptions::default()) {
        let _ = pc.set_local_description(now, offer);
    }
    let mut buf = [0u8; 2048];
    for (i, chunk) in data.chunks(300).enumerate() {
        let Some((&pick, chunk)) = chunk.split_first() else { continue };
        let remote = if pick & 1 == 0 { server } else { peer };
        let t = now + Duration::from_millis(10 * i as u64);
        pc.handle_datagram(t, Datagram { local, remote, protocol: Protocol::Udp, data: chunk });
        pc.handle_timeout(t);
        while pc.poll_transmit(t, &mut buf).is_some() {}
        while pc.poll_event().is_some() {}
    }
});
