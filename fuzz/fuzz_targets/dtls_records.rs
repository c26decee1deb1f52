//! Arbitrary datagrams into DTLS endpoints of both roles (records, handshake fragments,
//! alerts): never panics; queues stay bounded.
#![no_main]
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sansrtc::dtls::cert::Certificate;
use sansrtc::dtls::{DtlsConfig, DtlsEndpoint, DtlsRole};
use sansrtc::rng::Rng;

fn certs() -> &'static (Certificate, Certificate) {
    static C: OnceLock<(Certificate, Certificate)> = OnceLock::new();
    C.get_or_init(|| (Certificate::generate().expect("cert"), Certificate::generate().expect("cert")))
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = certs();
    let now = Instant::now();
    for role in [DtlsRole::Client, DtlsRole::Server] {
        let mut ep = DtlsEndpoint::new(role, a, b.fingerprint().clone(), DtlsConfig { require_cookie: false, ..Default::default() }, Rng::from_seed(7), now);
        let mut buf = [0u8; 2048];
        for (i, chunk) in data.split(|b| *b == 0xFF).enumerate() {
            let t = now + Duration::from_millis(i as u64);
            ep.handle_datagram(t, chunk);
            ep.handle_timeout(t);
            while ep.poll_transmit(&mut buf).is_some() {}
            while ep.poll_event().is_some() {}
        }
    }
});
