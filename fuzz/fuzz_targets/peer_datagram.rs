//! Arbitrary datagrams into a PeerConnection that is in the middle of connecting: never
//! panics, and its queues stay bounded.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sansrtc::{Config, Datagram, MediaKind, OfferOptions, PeerConnection, Protocol};

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let config = Config { rng_seed: Some(1), ..Default::default() };
    let Ok(mut pc) = PeerConnection::new(config, now) else { return };
    let local = "127.0.0.1:5000".parse().expect("addr");
    pc.add_local_address(now, local, Protocol::Udp);
    let _ = pc.add_track(MediaKind::Audio, vec![]);
    if let Ok(offer) = pc.create_offer(OfferOptions::default()) {
        let _ = pc.set_local_description(now, offer);
    }
    let mut buf = [0u8; 2048];
    for (i, chunk) in data.chunks(300).enumerate() {
        let t = now + Duration::from_millis(10 * i as u64);
        pc.handle_datagram(t, Datagram { local, remote: "127.0.0.2:6000".parse().expect("addr"), protocol: Protocol::Udp, data: chunk });
        pc.handle_timeout(t);
        while pc.poll_transmit(t, &mut buf).is_some() {}
        while pc.poll_event().is_some() {}
    }
});
