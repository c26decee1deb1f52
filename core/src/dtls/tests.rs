//! Two DTLS endpoints back to back in memory, with virtual time.

use std::time::{Duration, Instant};

use super::*;
use crate::dtls::cert::{Certificate, Fingerprint};
use crate::rng::Rng;
use crate::srtp::SrtpProfile;

/// Rewrites (or drops, by returning false) a datagram in flight.
type Tamper = Box<dyn FnMut(&mut Vec<u8>) -> bool>;

struct Pair {
    now: Instant,
    a: DtlsEndpoint,
    b: DtlsEndpoint,
    rng: Rng,
    loss: f64,
    drop_first: usize,
    sent: usize,
    tamper: Option<Tamper>,
    events: [Vec<DtlsEvent>; 2],
}

fn certs() -> (Certificate, Certificate) {
    (
        Certificate::generate().expect("cert"),
        Certificate::generate().expect("cert"),
    )
}

fn pair_with(
    client_cfg: DtlsConfig,
    server_cfg: DtlsConfig,
    fingerprint_of_client: Option<Fingerprint>,
) -> Pair {
    let now = Instant::now();
    let (ca, cb) = certs();
    let fa = fingerprint_of_client.unwrap_or_else(|| ca.fingerprint().clone());
    let a = DtlsEndpoint::new(
        DtlsRole::Client,
        &ca,
        cb.fingerprint().clone(),
        client_cfg,
        Rng::from_seed(101),
        now,
    );
    let b = DtlsEndpoint::new(
        DtlsRole::Server,
        &cb,
        fa,
        server_cfg,
        Rng::from_seed(102),
        now,
    );
    Pair {
        now,
        a,
        b,
        rng: Rng::from_seed(1),
        loss: 0.0,
        drop_first: 0,
        sent: 0,
        tamper: None,
        events: [Vec::new(), Vec::new()],
    }
}

impl Pair {
    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        let mut buf = vec![0u8; 2048];
        while self.now < end {
            let mut moved = false;
            for from in 0..2 {
                loop {
                    let n = if from == 0 {
                        self.a.poll_transmit(&mut buf)
                    } else {
                        self.b.poll_transmit(&mut buf)
                    };
                    let Some(n) = n else { break };
                    moved = true;
                    self.sent += 1;
                    let mut d = buf[..n].to_vec();
                    if self.sent <= self.drop_first || self.rng.unit_f64() < self.loss {
                        continue;
                    }
                    if let Some(t) = self.tamper.as_mut() {
                        if !t(&mut d) {
                            continue;
                        }
                    }
                    if from == 0 {
                        self.b.handle_datagram(self.now, &d)
                    } else {
                        self.a.handle_datagram(self.now, &d)
                    }
                }
            }
            while let Some(e) = self.a.poll_event() {
                self.events[0].push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.events[1].push(e);
            }
            if moved {
                continue;
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                None => break,
            }
        }
    }

    fn connected(&self) -> Option<(SrtpProfile, Vec<u8>, Vec<u8>)> {
        let get = |evs: &[DtlsEvent]| {
            evs.iter().find_map(|e| match e {
                DtlsEvent::Connected {
                    srtp_profile,
                    keying_material,
                } => Some((*srtp_profile, keying_material.clone())),
                _ => None,
            })
        };
        let (pa, ka) = get(&self.events[0])?;
        let (pb, kb) = get(&self.events[1])?;
        (pa == pb).then_some((pa, ka, kb))
    }

    fn failed(&self, side: usize) -> Option<DtlsError> {
        self.events[side].iter().find_map(|e| match e {
            DtlsEvent::Failed(err) => Some(*err),
            _ => None,
        })
    }
}

#[test]
fn handshake_exports_identical_keys() {
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.run(Duration::from_secs(5));
    let (profile, ka, kb) = p.connected().expect("connected");
    assert_eq!(profile, SrtpProfile::AeadAes128Gcm);
    assert_eq!(ka.len(), profile.keying_material_len());
    assert_eq!(ka, kb);
    assert_eq!(p.b.stats().cookies_sent, 1, "cookie exchange happened");
    // Application data both ways, then close_notify.
    p.a.send_application_data(b"ping").expect("send");
    p.b.send_application_data(b"pong").expect("send");
    p.run(Duration::from_millis(10));
    assert!(
        p.events[1].contains(&DtlsEvent::ApplicationData(bytes::Bytes::from_static(
            b"ping"
        )))
    );
    assert!(
        p.events[0].contains(&DtlsEvent::ApplicationData(bytes::Bytes::from_static(
            b"pong"
        )))
    );
    p.a.close();
    p.run(Duration::from_millis(10));
    assert!(p.events[1].contains(&DtlsEvent::Closed));
    assert_eq!(p.b.state(), DtlsState::Closed);
}

#[test]
fn server_picks_its_preferred_profile_and_p256_works() {
    let client = DtlsConfig {
        srtp_profiles: vec![SrtpProfile::Aes128CmHmacSha1_80, SrtpProfile::AeadAes256Gcm],
        ..Default::default()
    };
    let server = DtlsConfig {
        srtp_profiles: vec![SrtpProfile::AeadAes256Gcm, SrtpProfile::Aes128CmHmacSha1_80],
        require_cookie: false,
        ..Default::default()
    };
    let mut p = pair_with(client, server, None);
    p.run(Duration::from_secs(5));
    let (profile, ka, kb) = p.connected().expect("connected");
    assert_eq!(profile, SrtpProfile::AeadAes256Gcm);
    assert_eq!((ka.len(), ka == kb), (88, true));
}

#[test]
fn no_common_srtp_profile_fails() {
    let client = DtlsConfig {
        srtp_profiles: vec![SrtpProfile::Aes128CmHmacSha1_32],
        ..Default::default()
    };
    let server = DtlsConfig {
        srtp_profiles: vec![SrtpProfile::AeadAes128Gcm],
        ..Default::default()
    };
    let mut p = pair_with(client, server, None);
    p.run(Duration::from_secs(5));
    assert_eq!(p.failed(1), Some(DtlsError::NoCommonSrtpProfile));
    assert!(p.connected().is_none());
}

#[test]
fn survives_loss_by_retransmission() {
    for seed in 0..10 {
        let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
        p.rng = Rng::from_seed(seed);
        p.loss = 0.3;
        p.run(Duration::from_secs(60));
        assert!(
            p.connected().is_some(),
            "seed {seed}: {:?} {:?}",
            p.events,
            (p.a.state(), p.b.state())
        );
    }
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.drop_first = 4;
    p.run(Duration::from_secs(30));
    assert!(p.connected().is_some());
    assert!(p.a.stats().retransmits + p.b.stats().retransmits > 0);
}

#[test]
fn small_mtu_fragments_the_certificate() {
    let cfg = DtlsConfig {
        mtu: 200,
        ..Default::default()
    };
    let mut p = pair_with(cfg.clone(), cfg, None);
    let mut largest = 0usize;
    p.tamper = Some(Box::new(move |d: &mut Vec<u8>| {
        largest = largest.max(d.len());
        assert!(largest <= 200, "datagram of {largest} bytes over the MTU");
        true
    }));
    p.run(Duration::from_secs(5));
    assert!(p.connected().is_some());
}

#[test]
fn fingerprint_mismatch_fails_without_keys() {
    let wrong = Fingerprint::sha256_of(b"not the certificate");
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), Some(wrong));
    p.run(Duration::from_secs(10));
    assert_eq!(p.failed(1), Some(DtlsError::FingerprintMismatch));
    assert!(!p.events[1]
        .iter()
        .any(|e| matches!(e, DtlsEvent::Connected { .. })));
    // The client is told by an alert.
    assert!(matches!(p.failed(0), Some(DtlsError::Alert(42))));
    assert_eq!(
        p.b.send_application_data(b"x"),
        Err(DtlsError::NotConnected)
    );
}

/// Find the client's flight with CertificateVerify (epoch 0, type 15) and flip a bit in the signature.
#[test]
fn bad_signature_fails() {
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.tamper = Some(Box::new(|d: &mut Vec<u8>| {
        let mut at = 0;
        while at + 13 + 12 <= d.len() {
            let len = u16::from_be_bytes([d[at + 11], d[at + 12]]) as usize;
            if d[at] == 22 && d[at + 3] == 0 && d[at + 4] == 0 && d[at + 13] == 15 {
                let last = at + 13 + len - 1;
                d[last] ^= 0x01;
            }
            at += 13 + len;
        }
        true
    }));
    p.run(Duration::from_secs(10));
    assert_eq!(p.failed(1), Some(DtlsError::BadSignature));
}

#[test]
fn tampered_finished_fails() {
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    // Flip a bit inside every epoch-1 record: the record fails authentication and is
    // dropped (counted), so the handshake cannot finish and times out.
    p.tamper = Some(Box::new(|d: &mut Vec<u8>| {
        let mut at = 0;
        while at + 13 <= d.len() {
            let len = u16::from_be_bytes([d[at + 11], d[at + 12]]) as usize;
            if d[at + 3] == 0 && d[at + 4] == 1 && len > 0 {
                d[at + 13 + len / 2] ^= 0x80;
            }
            at += 13 + len;
        }
        true
    }));
    p.run(Duration::from_secs(200));
    assert!(p.connected().is_none());
    assert!(p.b.stats().bad_records > 0);
    assert_eq!(p.failed(0), Some(DtlsError::Timeout));
}

#[test]
fn finished_with_wrong_verify_data_fails() {
    // The client's Finished is encrypted with the right keys (so the record authenticates)
    // but carries verify_data of another transcript: only the transcript check catches it.
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.a.cx.forge_finished = true;
    p.run(Duration::from_secs(10));
    assert_eq!(p.failed(1), Some(DtlsError::BadFinished));
    assert_eq!(
        p.b.stats().bad_records,
        0,
        "the forged record itself authenticated"
    );
    assert!(p.connected().is_none());
    // The other direction: the server forges.
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.b.cx.forge_finished = true;
    p.run(Duration::from_secs(10));
    assert_eq!(p.failed(0), Some(DtlsError::BadFinished));
    assert!(!p.events[0]
        .iter()
        .any(|e| matches!(e, DtlsEvent::Connected { .. })));
}

#[test]
fn replayed_records_are_dropped() {
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.run(Duration::from_secs(5));
    assert!(p.connected().is_some());
    p.a.send_application_data(b"once").expect("send");
    let mut buf = [0u8; 2048];
    let n = p.a.poll_transmit(&mut buf).expect("record");
    let record = buf[..n].to_vec();
    p.b.handle_datagram(p.now, &record);
    p.b.handle_datagram(p.now, &record);
    let got: Vec<_> = std::iter::from_fn(|| p.b.poll_event()).collect();
    assert_eq!(
        got,
        vec![DtlsEvent::ApplicationData(bytes::Bytes::from_static(
            b"once"
        ))]
    );
    assert_eq!(p.b.stats().replayed_records, 1);
}

#[test]
fn garbage_never_panics() {
    let (ca, cb) = certs();
    let now = Instant::now();
    let mut server = DtlsEndpoint::new(
        DtlsRole::Server,
        &cb,
        ca.fingerprint().clone(),
        DtlsConfig::default(),
        Rng::from_seed(103),
        now,
    );
    let mut client = DtlsEndpoint::new(
        DtlsRole::Client,
        &ca,
        cb.fingerprint().clone(),
        DtlsConfig::default(),
        Rng::from_seed(104),
        now,
    );
    let mut rng = Rng::from_seed(9);
    for len in 0..300 {
        let mut d = vec![0u8; len];
        rng.fill(&mut d);
        if let Some(b) = d.first_mut() {
            *b = 20 + (*b % 4);
        }
        if len > 2 {
            d[1] = 0xFE;
        }
        server.handle_datagram(now, &d);
        client.handle_datagram(now, &d);
    }
}

/// The group in the server's ServerKeyExchange (handshake type 12, `curve_type = 3`), read
/// from epoch-0 handshake records in flight.
fn server_key_exchange_group(d: &[u8]) -> Option<u16> {
    let mut at = 0;
    while at + 13 <= d.len() {
        let len = usize::from(u16::from_be_bytes([d[at + 11], d[at + 12]]));
        let body = d.get(at + 13..at + 13 + len)?;
        if d[at] == 22 && d[at + 3] == 0 && d[at + 4] == 0 {
            let mut m = 0;
            while m + 12 <= body.len() {
                let frag_len = (usize::from(body[m + 9]) << 16)
                    | (usize::from(body[m + 10]) << 8)
                    | usize::from(body[m + 11]);
                if body[m] == 12 && body.get(m + 12) == Some(&3) {
                    return Some(u16::from_be_bytes([*body.get(m + 13)?, *body.get(m + 14)?]));
                }
                m += 12 + frag_len;
            }
        }
        at += 13 + len;
    }
    None
}

#[test]
fn both_ecdhe_groups_complete_and_the_server_prefers_x25519() {
    use crate::dtls::wire::{GROUP_P256, GROUP_X25519};
    for (offered, expected) in [
        (vec![GROUP_X25519, GROUP_P256], GROUP_X25519),
        (vec![GROUP_P256, GROUP_X25519], GROUP_X25519),
        (vec![GROUP_P256], GROUP_P256),
    ] {
        let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
        // The cookied ClientHello (the one the server answers) carries these groups.
        p.a.cx.client_hello_for_test = Some((offered.clone(), true));
        let seen = std::rc::Rc::new(std::cell::Cell::new(None));
        let record = seen.clone();
        p.tamper = Some(Box::new(move |d: &mut Vec<u8>| {
            if let Some(g) = server_key_exchange_group(d) {
                record.set(Some(g));
            }
            true
        }));
        p.run(Duration::from_secs(5));
        let (_, ka, kb) = p.connected().expect("connected");
        assert_eq!(ka, kb, "{offered:?}");
        assert_eq!(seen.get(), Some(expected), "{offered:?}");
    }
}

#[test]
fn a_client_without_extended_master_secret_is_refused() {
    use crate::dtls::wire::{GROUP_P256, GROUP_X25519};
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.a.cx.client_hello_for_test = Some((vec![GROUP_X25519, GROUP_P256], false));
    p.run(Duration::from_secs(10));
    assert_eq!(
        p.failed(1),
        Some(DtlsError::NoExtendedMasterSecret),
        "{:?} {:?}",
        p.events,
        (p.a.state(), p.b.state())
    );
    assert!(p.connected().is_none());
    assert!(!p.events[1]
        .iter()
        .any(|e| matches!(e, DtlsEvent::Connected { .. })));
}

#[test]
fn no_common_group_is_refused() {
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    // secp384r1 only: a group we do not implement.
    p.a.cx.client_hello_for_test = Some((vec![0x0018], true));
    p.run(Duration::from_secs(10));
    assert_eq!(p.failed(1), Some(DtlsError::NoCommonParameters));
    assert!(p.connected().is_none());
}

/// A ClientHello larger than the client's MTU arrives in fragments (as Chromium's DTLS 1.3
/// ClientHello with a post-quantum key share does): the server reassembles it, with and
/// without the cookie exchange, also when the fragments arrive in reverse order.
#[test]
fn a_fragmented_client_hello_is_reassembled() {
    for (require_cookie, reverse) in [(true, false), (false, false), (true, true)] {
        let client = DtlsConfig {
            mtu: 90,
            ..Default::default()
        };
        let server = DtlsConfig {
            require_cookie,
            ..Default::default()
        };
        let mut p = pair_with(client, server, None);
        let fragments = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let seen = fragments.clone();
        let mut held: Vec<Vec<u8>> = Vec::new();
        p.tamper = Some(Box::new(move |d: &mut Vec<u8>| {
            // Epoch-0 handshake records carrying a ClientHello fragment.
            let is_hello_fragment = d.len() > 25 && d[0] == 22 && d[4] == 0 && d[13] == 1 && {
                let length = u32::from_be_bytes([0, d[14], d[15], d[16]]);
                let frag_len = u32::from_be_bytes([0, d[22], d[23], d[24]]);
                frag_len < length
            };
            if is_hello_fragment {
                seen.set(seen.get() + 1);
            }
            if reverse && is_hello_fragment {
                // Hold the fragments back and release them all at once, last first.
                held.push(d.clone());
                let length = u32::from_be_bytes([0, d[14], d[15], d[16]]) as usize;
                let have: usize = held
                    .iter()
                    .map(|h| u32::from_be_bytes([0, h[22], h[23], h[24]]) as usize)
                    .sum();
                if have < length {
                    return false;
                }
                let mut all: Vec<u8> = Vec::new();
                for h in held.drain(..).rev() {
                    all.extend_from_slice(&h);
                }
                *d = all;
            }
            true
        }));
        p.run(Duration::from_secs(10));
        assert!(
            fragments.get() >= 2,
            "the ClientHello was fragmented ({} fragments)",
            fragments.get()
        );
        let (_, ka, kb) = p
            .connected()
            .unwrap_or_else(|| panic!("cookie {require_cookie} reverse {reverse}: {:?}", p.events));
        assert_eq!(ka, kb);
    }
}

/// RFC 6347 4.2.4: with no answer, the client resends its flight after 1 s and then at
/// doubling intervals up to the ceiling, and gives up after `max_retransmits`.
#[test]
fn retransmission_backs_off_exponentially_to_the_ceiling() {
    let (ca, cb) = certs();
    let start = Instant::now();
    let config = DtlsConfig {
        max_retransmit_timeout: Duration::from_secs(8),
        max_retransmits: 6,
        ..Default::default()
    };
    let mut client = DtlsEndpoint::new(
        DtlsRole::Client,
        &ca,
        cb.fingerprint().clone(),
        config,
        Rng::from_seed(105),
        start,
    );
    let mut buf = [0u8; 2048];
    let mut sent_at = Vec::new();
    let mut now = start;
    for _ in 0..20 {
        while let Some(n) = client.poll_transmit(&mut buf) {
            sent_at.push((now.duration_since(start).as_secs(), buf[..n][0]));
        }
        match client.poll_timeout() {
            Some(t) => {
                now = t;
                client.handle_timeout(now);
            }
            None => break,
        }
    }
    // The ClientHello (handshake, 22) at 0 s, then 1, 2, 4, 8, 8, 8 s later; after the
    // last wait a fatal alert (21) and nothing more.
    assert_eq!(
        sent_at,
        vec![
            (0, 22),
            (1, 22),
            (3, 22),
            (7, 22),
            (15, 22),
            (23, 22),
            (31, 22),
            (39, 21)
        ]
    );
    assert!(client.poll_timeout().is_none());
    assert!(matches!(
        std::iter::from_fn(|| client.poll_event()).last(),
        Some(DtlsEvent::Failed(DtlsError::Timeout))
    ));
    assert_eq!(client.state(), DtlsState::Failed);
    assert_eq!(client.stats().retransmits, 6);
}

/// A plaintext (epoch-0) record.
fn plaintext_record(content_type: u8, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 0xFE, 0xFD, 0, 0];
    r.extend_from_slice(&sequence.to_be_bytes()[2..]);
    r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    r.extend_from_slice(payload);
    r
}

/// An epoch-0 handshake record with one fragment.
fn fragment_record(msg_type: u8, seq: u16, length: u32, offset: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    crate::dtls::wire::HandshakeHeader {
        msg_type,
        length,
        message_seq: seq,
        fragment_offset: offset,
        fragment_length: body.len() as u32,
    }
    .write(&mut m);
    m.extend_from_slice(body);
    plaintext_record(22, 1000, &m)
}

/// Once the server answered a ClientHello, another ClientHello (another client, another
/// random) is ignored and counted; the handshake in progress completes.
#[test]
fn another_client_hello_never_breaks_the_handshake_in_progress() {
    let config = DtlsConfig {
        require_cookie: false,
        ..Default::default()
    };
    let mut p = pair_with(config.clone(), config.clone(), None);
    let mut buf = [0u8; 2048];
    let n = p.a.poll_transmit(&mut buf).expect("client hello");
    p.b.handle_datagram(p.now, &buf[..n]);
    assert_eq!(p.b.state(), DtlsState::Connecting);
    // A stranger's ClientHello, whole and in fragments.
    let (cc, _) = certs();
    let stranger_config = DtlsConfig { mtu: 90, ..config };
    let mut stranger = DtlsEndpoint::new(
        DtlsRole::Client,
        &cc,
        cc.fingerprint().clone(),
        stranger_config,
        Rng::from_seed(106),
        p.now,
    );
    let mut stranger_datagrams = 0;
    while let Some(n) = stranger.poll_transmit(&mut buf) {
        p.b.handle_datagram(p.now, &buf[..n]);
        stranger_datagrams += 1;
    }
    assert!(stranger_datagrams > 1);
    // (A fragment whose bytes equal the committed ClientHello's counts as a retransmission.)
    assert!(p.b.stats().ignored_client_hellos >= 1);
    assert_eq!(p.b.state(), DtlsState::Connecting);
    p.run(Duration::from_secs(5));
    let (_, ka, kb) = p.connected().expect("the first handshake completes");
    assert_eq!(ka, kb);
}

/// RFC 6347 4.2.4: a retransmission of the ClientHello we answered makes the server resend
/// its flight, without counting it as a stray ClientHello.
#[test]
fn a_retransmitted_client_hello_gets_the_servers_flight_again() {
    let config = DtlsConfig {
        require_cookie: false,
        ..Default::default()
    };
    let mut p = pair_with(config.clone(), config, None);
    let mut buf = [0u8; 2048];
    let n = p.a.poll_transmit(&mut buf).expect("client hello");
    let hello = buf[..n].to_vec();
    p.b.handle_datagram(p.now, &hello);
    let first: Vec<_> =
        std::iter::from_fn(|| p.b.poll_transmit(&mut buf).map(|n| buf[..n].to_vec())).collect();
    assert!(!first.is_empty());
    p.now += Duration::from_millis(200);
    p.b.handle_datagram(p.now, &hello);
    let again: Vec<_> =
        std::iter::from_fn(|| p.b.poll_transmit(&mut buf).map(|n| buf[..n].to_vec())).collect();
    assert_eq!(again.len(), first.len(), "the whole flight again");
    assert_eq!(p.b.stats().ignored_client_hellos, 0);
    assert_eq!(p.b.stats().retransmits, 1);
}

/// Once connected, plaintext alerts and handshake fragments are dropped and counted: the
/// association stays up, application data flows, and a real (epoch-1) close_notify works.
#[test]
fn unauthenticated_records_after_the_handshake_are_dropped() {
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    p.run(Duration::from_secs(5));
    assert!(p.connected().is_some());
    let finished_seq = 7; // the next message_seq either side would expect
    let forged = [
        plaintext_record(21, 50, &[1, 0]),  // close_notify
        plaintext_record(21, 51, &[2, 40]), // fatal handshake_failure
        plaintext_record(21, 52, &[2, 0]),
        fragment_record(20, finished_seq, 12, 0, &[0; 12]),
        fragment_record(11, 100, 1000, 0, &[0; 10]),
        fragment_record(1, 0, 3, 0, &[1, 2, 3]),
        plaintext_record(20, 53, &[1]),
    ];
    for (side, ep) in [&mut p.a, &mut p.b].into_iter().enumerate() {
        for r in &forged {
            ep.handle_datagram(p.now, r);
        }
        assert_eq!(ep.state(), DtlsState::Connected, "side {side}");
        assert_eq!(
            ep.stats().records_dropped_unauthenticated,
            forged.len() as u64,
            "side {side}"
        );
        assert!(std::iter::from_fn(|| ep.poll_event()).next().is_none());
    }
    p.a.send_application_data(b"still here").expect("send");
    p.b.send_application_data(b"me too").expect("send");
    p.run(Duration::from_millis(10));
    assert!(
        p.events[1].contains(&DtlsEvent::ApplicationData(bytes::Bytes::from_static(
            b"still here"
        )))
    );
    assert!(
        p.events[0].contains(&DtlsEvent::ApplicationData(bytes::Bytes::from_static(
            b"me too"
        )))
    );
    p.b.close();
    p.run(Duration::from_millis(10));
    assert_eq!(p.a.state(), DtlsState::Closed);
}

/// The server's final flight is lost: the client's retransmitted flight (epoch 0, after the
/// server is connected) is the one epoch-0 input a connected server answers, by resending
/// its ChangeCipherSpec and Finished.
#[test]
fn a_lost_final_flight_is_resent_when_the_client_retransmits() {
    let mut p = pair_with(DtlsConfig::default(), DtlsConfig::default(), None);
    let mut dropped = false;
    p.tamper = Some(Box::new(move |d: &mut Vec<u8>| {
        // The server's final flight starts with its ChangeCipherSpec; the client's with
        // its Certificate.
        if d[0] == 20 && !dropped {
            dropped = true;
            return false;
        }
        true
    }));
    p.run(Duration::from_secs(10));
    assert!(p.connected().is_some(), "{:?}", p.events);
    assert_eq!(
        p.b.stats().records_dropped_unauthenticated,
        1,
        "only the CCS"
    );
    assert!(p.b.stats().retransmits >= 1);
}

/// Zero-length and tiny fragments for future messages during the handshake: the
/// reassembly buffer stays bounded, the drops are counted, and the handshake completes.
#[test]
fn a_fragment_flood_during_the_handshake_stays_bounded() {
    let config = DtlsConfig {
        require_cookie: false,
        ..Default::default()
    };
    let mut p = pair_with(config.clone(), config, None);
    let mut buf = [0u8; 2048];
    let n = p.a.poll_transmit(&mut buf).expect("client hello");
    p.b.handle_datagram(p.now, &buf[..n]);
    for ep in [&mut p.a, &mut p.b] {
        let mut datagram = Vec::new();
        for i in 0..20_000u32 {
            let seq = 1 + ((i / 2) % 40) as u16;
            let length = 16 * 1024;
            let offset = (i * 13) % length;
            let body: &[u8] = if i % 2 == 0 { &[] } else { &[0xAA] };
            datagram.extend(fragment_record(
                11 + (i % 3) as u8,
                seq,
                length,
                offset,
                body,
            ));
            if datagram.len() > 1000 {
                ep.handle_datagram(p.now, &datagram);
                datagram.clear();
            }
        }
        let stats = ep.stats();
        assert!(stats.reassembly_peak_bytes <= 64 * 1024, "{stats:?}");
        assert!(ep.reassembly_buffered_bytes() <= 64 * 1024);
        assert!(stats.fragments_dropped > 10_000, "{stats:?}");
        assert_eq!(ep.state(), DtlsState::Connecting);
    }
    p.run(Duration::from_secs(30));
    let (_, ka, kb) = p.connected().expect("connected despite the flood");
    assert_eq!(ka, kb);
}
