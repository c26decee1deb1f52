//! State-machine conformance of both roles, in the spirit of protocol state fuzzing
//! (DTLS-Fuzzer): a real client and server run in memory, the peer's records reach the
//! endpoint under test one at a time, and in every state reached that way we send every
//! kind of record a real run produces out of place, leave one out, or repeat one. Each
//! deviation must either fail the handshake with a typed error or be ignored (the
//! handshake then completes with the real records that follow), and keys are exported
//! only after a complete, verified handshake with the real peer.

use std::collections::VecDeque;
use std::time::Instant;

use super::*;
use crate::dtls::cert::Certificate;
use crate::dtls::wire::{
    self, ContentType, HandshakeHeader, HandshakeType, RecordHeader, DTLS_1_2,
};
use crate::rng::Rng;

/// Split a datagram into its records.
fn records(mut d: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Ok((h, fragment, rest)) = RecordHeader::parse(d) {
        let mut r = Vec::new();
        h.write(&mut r);
        r.extend_from_slice(fragment);
        out.push(r);
        d = rest;
    }
    out
}

/// A plaintext record.
fn record(content_type: ContentType, epoch: u16, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    RecordHeader {
        content_type,
        version: DTLS_1_2,
        epoch,
        sequence,
        length: payload.len() as u16,
    }
    .write(&mut r);
    r.extend_from_slice(payload);
    r
}

/// An epoch-0 record carrying one whole handshake message.
fn handshake(msg_type: u8, seq: u16, body: &[u8], record_seq: u64) -> Vec<u8> {
    let mut m = Vec::new();
    HandshakeHeader {
        msg_type,
        length: body.len() as u32,
        message_seq: seq,
        fragment_offset: 0,
        fragment_length: body.len() as u32,
    }
    .write(&mut m);
    m.extend_from_slice(body);
    record(ContentType::Handshake, 0, record_seq, &m)
}

/// The handshake type and body of an epoch-0 record holding one whole message.
fn message_of(r: &[u8]) -> Option<(u8, Vec<u8>)> {
    let (h, fragment, _) = RecordHeader::parse(r).ok()?;
    if h.content_type != ContentType::Handshake || h.epoch != 0 {
        return None;
    }
    let (hh, body, _) = HandshakeHeader::parse(fragment).ok()?;
    (hh.fragment_length == hh.length).then(|| (hh.msg_type, body.to_vec()))
}

fn connected_keys(events: &[DtlsEvent]) -> Option<Vec<u8>> {
    events.iter().find_map(|e| match e {
        DtlsEvent::Connected {
            keying_material, ..
        } => Some(keying_material.clone()),
        _ => None,
    })
}

fn failure(events: &[DtlsEvent]) -> Option<DtlsError> {
    events.iter().find_map(|e| match e {
        DtlsEvent::Failed(err) => Some(*err),
        _ => None,
    })
}

/// An endpoint under test and its real peer; the peer's records queue up and reach the
/// endpoint one at a time, the endpoint's datagrams reach the peer at once.
struct Driver {
    now: Instant,
    target: DtlsEndpoint,
    peer: DtlsEndpoint,
    queue: VecDeque<Vec<u8>>,
    delivered: usize,
    target_events: Vec<DtlsEvent>,
    peer_events: Vec<DtlsEvent>,
}

impl Driver {
    fn new(target_role: DtlsRole, seed: u64) -> Driver {
        Driver::with_cookie(target_role, seed, false)
    }

    /// As `new`, the server demanding a HelloVerifyRequest round trip when `cookie`.
    fn with_cookie(target_role: DtlsRole, seed: u64, cookie: bool) -> Driver {
        let now = Instant::now();
        let (ct, cp) = (
            Certificate::generate().expect("cert"),
            Certificate::generate().expect("cert"),
        );
        let config = DtlsConfig {
            require_cookie: cookie,
            ..Default::default()
        };
        let mut rng = Rng::from_seed(seed);
        let peer_role = match target_role {
            DtlsRole::Client => DtlsRole::Server,
            DtlsRole::Server => DtlsRole::Client,
        };
        let peer = DtlsEndpoint::new(
            peer_role,
            &cp,
            ct.fingerprint().clone(),
            config.clone(),
            rng.fork(),
            now,
        );
        let target = DtlsEndpoint::new(
            target_role,
            &ct,
            cp.fingerprint().clone(),
            config,
            rng.fork(),
            now,
        );
        let mut d = Driver {
            now,
            target,
            peer,
            queue: VecDeque::new(),
            delivered: 0,
            target_events: Vec::new(),
            peer_events: Vec::new(),
        };
        d.exchange();
        d
    }

    /// Move the target's datagrams to the peer and queue the peer's records.
    fn exchange(&mut self) {
        let mut buf = vec![0u8; 4096];
        loop {
            let mut moved = false;
            while let Some(n) = self.target.poll_transmit(&mut buf) {
                moved = true;
                self.peer.handle_datagram(self.now, &buf[..n]);
            }
            while let Some(n) = self.peer.poll_transmit(&mut buf) {
                moved = true;
                self.queue.extend(records(&buf[..n]));
            }
            if !moved {
                break;
            }
        }
        self.target_events
            .extend(std::iter::from_fn(|| self.target.poll_event()));
        self.peer_events
            .extend(std::iter::from_fn(|| self.peer.poll_event()));
    }

    /// Deliver the peer's next record to the target.
    fn step(&mut self) -> bool {
        let Some(r) = self.queue.pop_front() else {
            return false;
        };
        self.delivered += 1;
        self.target.handle_datagram(self.now, &r);
        self.exchange();
        true
    }

    /// Give the target something from outside the real exchange.
    fn inject(&mut self, r: &[u8]) {
        self.target.handle_datagram(self.now, r);
        self.exchange();
    }

    /// Deliver every real record (and let time pass) until nothing moves.
    fn finish(&mut self) {
        for _ in 0..200 {
            while self.step() {}
            let next = [self.target.poll_timeout(), self.peer.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.target.handle_timeout(self.now);
            self.peer.handle_timeout(self.now);
            self.exchange();
        }
    }

    /// The invariant: keys only with the real peer, after a complete handshake.
    fn check_keys(&self, what: &str) {
        if let Some(keys) = connected_keys(&self.target_events) {
            assert_eq!(
                Some(keys),
                connected_keys(&self.peer_events),
                "{what}: the target exported keys its real peer does not share"
            );
            assert!(failure(&self.target_events).is_none(), "{what}");
        }
    }
}

/// Every kind of record a real run (with the cookie exchange) produces, both directions:
/// handshake messages as (type, body), and whole records of the other content types.
struct Library {
    messages: Vec<(u8, Vec<u8>)>,
    others: Vec<(&'static str, Vec<u8>)>,
}

fn library() -> Library {
    let now = Instant::now();
    let (ca, cb) = (
        Certificate::generate().expect("cert"),
        Certificate::generate().expect("cert"),
    );
    let mut a = DtlsEndpoint::new(
        DtlsRole::Client,
        &ca,
        cb.fingerprint().clone(),
        DtlsConfig::default(),
        Rng::from_seed(107),
        now,
    );
    let mut b = DtlsEndpoint::new(
        DtlsRole::Server,
        &cb,
        ca.fingerprint().clone(),
        DtlsConfig::default(),
        Rng::from_seed(108),
        now,
    );
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut buf = vec![0u8; 4096];
    for _ in 0..10 {
        while let Some(n) = a.poll_transmit(&mut buf) {
            seen.extend(records(&buf[..n]));
            b.handle_datagram(now, &buf[..n]);
        }
        while let Some(n) = b.poll_transmit(&mut buf) {
            seen.extend(records(&buf[..n]));
            a.handle_datagram(now, &buf[..n]);
        }
    }
    assert_eq!(
        (a.state(), b.state()),
        (DtlsState::Connected, DtlsState::Connected)
    );
    a.send_application_data(b"data").expect("send");
    while let Some(n) = a.poll_transmit(&mut buf) {
        seen.extend(records(&buf[..n]));
    }
    let mut messages: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut others = Vec::new();
    for r in &seen {
        if let Some(m) = message_of(r) {
            if !messages.iter().any(|(t, _)| *t == m.0) {
                messages.push(m);
            }
            continue;
        }
        let kind = match (r[0], r[4]) {
            (20, 0) => "ChangeCipherSpec",
            (22, 1) => "encrypted Finished",
            (23, 1) => "encrypted application data",
            _ => continue,
        };
        if !others.iter().any(|(k, _)| *k == kind) {
            others.push((kind, r.clone()));
        }
    }
    let types: Vec<u8> = messages.iter().map(|(t, _)| *t).collect();
    for t in [1, 2, 3, 11, 12, 13, 14, 15, 16] {
        assert!(
            types.contains(&t),
            "the reference run produced type {t}: {types:?}"
        );
    }
    // A plaintext Finished, a type we do not know, plaintext alerts and application data.
    messages.push((HandshakeType::Finished.to_u8(), vec![0; 12]));
    messages.push((0, Vec::new()));
    others.push(("fatal alert", record(ContentType::Alert, 0, 900, &[2, 40])));
    others.push(("close_notify", record(ContentType::Alert, 0, 901, &[1, 0])));
    others.push((
        "plaintext application data",
        record(ContentType::ApplicationData, 0, 902, b"x"),
    ));
    Library { messages, others }
}

/// The handshake type of the target's next real record, if it is an epoch-0 message.
fn next_type(d: &Driver) -> Option<u8> {
    d.queue.front().and_then(|r| message_of(r)).map(|(t, _)| t)
}

/// How many real records the peer sends the target in a whole handshake.
fn script_len(role: DtlsRole, cookie: bool) -> usize {
    let mut d = Driver::with_cookie(role, 1, cookie);
    d.finish();
    assert!(
        connected_keys(&d.target_events).is_some(),
        "{role:?} baseline"
    );
    d.check_keys("baseline");
    d.delivered
}

/// A fresh pair with the first `k` real records delivered to the target.
fn at_state(role: DtlsRole, cookie: bool, k: usize, seed: u64) -> Driver {
    let mut d = Driver::with_cookie(role, seed, cookie);
    for _ in 0..k {
        assert!(d.step(), "{role:?}: record {k} exists");
    }
    d
}

/// Inject `r` in state `k`: the target fails with a typed error, or ignores it and then
/// completes the handshake with the real records that follow.
fn deviate(
    (role, cookie): (DtlsRole, bool),
    k: usize,
    what: &str,
    make: impl Fn(&Driver) -> Vec<u8>,
) -> bool {
    let mut d = at_state(role, cookie, k, 7 + k as u64);
    let was_connected = d.target.state() == DtlsState::Connected;
    let r = make(&d);
    d.inject(&r);
    let what = format!("{role:?} (cookie {cookie}) state {k}: {what}");
    d.check_keys(&what);
    if d.target.state() == DtlsState::Failed {
        assert!(
            !was_connected,
            "{what}: an injected record failed a connected association"
        );
        assert!(failure(&d.target_events).is_some(), "{what}: a typed error");
        assert!(connected_keys(&d.target_events).is_none(), "{what}");
        return false;
    }
    d.finish();
    d.check_keys(&what);
    assert_eq!(
        d.target.state(),
        DtlsState::Connected,
        "{what}: ignored, yet the handshake did not complete: {:?}",
        d.target_events
    );
    true
}

fn conformance(role: DtlsRole, cookie: bool) {
    let lib = library();
    let len = script_len(role, cookie);
    let (mut failed, mut ignored) = (0, 0);
    for k in 0..=len {
        let probe = at_state(role, cookie, k, 7 + k as u64);
        let expected = next_type(&probe);
        let seq = probe.target.cx.reassembly.next_seq();
        let committed = match &probe.target.side {
            endpoint::Side::Server(s) => s.committed(),
            endpoint::Side::Client(_) => true,
        };
        let connected = probe.target.state() == DtlsState::Connected;
        // Every handshake message type out of place, at the message_seq expected next.
        for (msg_type, body) in &lib.messages {
            // The expected message is in place; so are a HelloVerifyRequest and a
            // ServerHello for a client waiting for the server's first answer.
            let hello_verify = role == DtlsRole::Client && k == 0 && matches!(*msg_type, 2 | 3);
            // Before it committed, a server takes any ClientHello (that is item 4's
            // source-address check, not the state machine's).
            let hello_verify = hello_verify || (!committed && *msg_type == 1);
            if Some(*msg_type) == expected || hello_verify {
                continue;
            }
            let outcome = deviate(
                (role, cookie),
                k,
                &format!("message type {msg_type} at seq {seq}"),
                |_| handshake(*msg_type, seq, body, 500),
            );
            let fails_by_rule =
                committed && !connected && !(role == DtlsRole::Server && *msg_type == 1);
            if fails_by_rule {
                assert!(
                    !outcome,
                    "{role:?} state {k}: type {msg_type} at seq {seq} must fail"
                );
            }
            if outcome {
                ignored += 1;
            } else {
                failed += 1;
            }
        }
        // Every other record kind.
        for (kind, r) in &lib.others {
            let outcome = deviate((role, cookie), k, kind, |_| r.clone());
            if connected {
                assert!(outcome, "{role:?} connected: {kind} must be ignored");
            }
            if outcome {
                ignored += 1;
            } else {
                failed += 1;
            }
        }
        // Repeat every real record already delivered (a duplicate or retransmission).
        for j in 0..k {
            let mut d = Driver::with_cookie(role, 7 + k as u64, cookie);
            let mut seen = Vec::new();
            for _ in 0..k {
                seen.push(d.queue.front().cloned().expect("record"));
                d.step();
            }
            d.inject(&seen[j]);
            let what = format!("{role:?} state {k}: record {j} repeated");
            assert_ne!(
                d.target.state(),
                DtlsState::Failed,
                "{what}: {:?}",
                d.target_events
            );
            d.finish();
            d.check_keys(&what);
            assert_eq!(d.target.state(), DtlsState::Connected, "{what}");
            ignored += 1;
        }
        // Leave record k out: no keys, and the handshake ends in a typed failure.
        // (A server that has not committed to a ClientHello has no handshake to fail.)
        if k < len && committed {
            let mut d = at_state(role, cookie, k, 7 + k as u64);
            d.queue.pop_front();
            for _ in 0..200 {
                while d.step() {}
                let Some(t) = d.target.poll_timeout() else {
                    break;
                };
                d.now = d.now.max(t);
                d.target.handle_timeout(d.now);
                d.target_events
                    .extend(std::iter::from_fn(|| d.target.poll_event()));
                // The peer's retransmissions could repair the loss: keep them away.
                d.queue.clear();
            }
            let what = format!("{role:?}: record {k} left out");
            assert!(connected_keys(&d.target_events).is_none(), "{what}");
            assert_eq!(
                failure(&d.target_events),
                Some(DtlsError::Timeout),
                "{what}"
            );
            failed += 1;
        }
    }
    assert!(
        failed > 30 && ignored > 20,
        "{role:?}: {failed} failed, {ignored} ignored"
    );
}

#[test]
fn server_state_machine_conformance() {
    conformance(DtlsRole::Server, false);
}

#[test]
fn client_state_machine_conformance() {
    conformance(DtlsRole::Client, false);
}

/// The same with the HelloVerifyRequest round trip: the client's state after the cookie,
/// the server's before it commits.
#[test]
fn conformance_with_the_cookie_exchange() {
    conformance(DtlsRole::Server, true);
    conformance(DtlsRole::Client, true);
}

/// The attack of issue 13: an on-path attacker replays the client's (public) Certificate
/// with its own ClientKeyExchange, leaves out CertificateVerify (it cannot sign) and sends
/// a ChangeCipherSpec and a Finished it computed with its own keys. The server must not
/// export keys; before the strict state machine it did.
#[test]
fn a_client_flight_without_certificate_verify_gets_no_keys() {
    for with_epoch0_finished in [false, true] {
        let mut d = Driver::new(DtlsRole::Server, 3);
        // The ClientHello reaches the server; the server's flight reaches the client, whose
        // answer (Certificate, ClientKeyExchange, CertificateVerify, CCS, Finished) queues.
        assert!(d.step());
        let flight: Vec<Vec<u8>> = d.queue.drain(..).collect();
        let (_, cert_body) = message_of(&flight[0]).expect("Certificate");
        assert_eq!(flight[0][13], HandshakeType::Certificate.to_u8());
        // The attacker's key exchange against the server's ephemeral key.
        let server = &d.target.cx;
        let crate::dtls::server::ServerState::WaitCertificate { .. } = (match &d.target.side {
            endpoint::Side::Server(s) => &s.state,
            endpoint::Side::Client(_) => unreachable!(),
        }) else {
            panic!("server waits for the certificate");
        };
        let server_public = server_public_key(&d);
        let secure = ring::rand::SystemRandom::new();
        let attacker =
            ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &secure)
                .expect("key");
        let attacker_public = attacker
            .compute_public_key()
            .expect("public")
            .as_ref()
            .to_vec();
        let pre_master = ring::agreement::agree_ephemeral(
            attacker,
            &ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, server_public),
            |s| s.to_vec(),
        )
        .expect("agree");
        let mut cke = Vec::new();
        wire::write_client_key_exchange(&attacker_public, &mut cke);
        // The transcript as the server will have it: its own so far, the replayed
        // Certificate and the attacker's ClientKeyExchange.
        let mut transcript = server.transcript.clone();
        transcript.extend_from_slice(&wire::full_message(
            HandshakeType::Certificate,
            1,
            &cert_body,
        ));
        transcript.extend_from_slice(&wire::full_message(
            HandshakeType::ClientKeyExchange,
            2,
            &cke,
        ));
        let master = keying::extended_master_secret(
            &pre_master,
            &crate::dtls::handshake::sha256(&transcript),
        );
        let keys =
            keying::RecordKeys::derive(&master, &server.client_random, &server.server_random, true)
                .expect("keys");
        let verify =
            keying::verify_data(&master, true, &crate::dtls::handshake::sha256(&transcript));
        let finished = wire::full_message(HandshakeType::Finished, 3, &verify);
        let sealed = keys
            .write
            .seal(1, 0, ContentType::Handshake.to_u8(), DTLS_1_2, &finished)
            .expect("seal");
        let mut forged = flight[0].clone();
        forged.extend(handshake(
            HandshakeType::ClientKeyExchange.to_u8(),
            2,
            &cke,
            11,
        ));
        forged.extend(record(ContentType::ChangeCipherSpec, 0, 12, &[1]));
        if with_epoch0_finished {
            forged.extend(handshake(HandshakeType::Finished.to_u8(), 3, &verify, 13));
        } else {
            forged.extend(record(ContentType::Handshake, 1, 0, &sealed));
        }
        for _ in 0..3 {
            d.inject(&forged);
        }
        assert!(
            connected_keys(&d.target_events).is_none(),
            "no keys for the attacker"
        );
        assert_ne!(d.target.state(), DtlsState::Connected);
        if with_epoch0_finished {
            assert_eq!(
                failure(&d.target_events),
                Some(DtlsError::UnexpectedMessage)
            );
        } else {
            // The CCS had no place and the Finished could not even be read.
            assert!(d.target.stats().ignored_records >= 1);
            // Let it time out: never connected.
            for _ in 0..50 {
                let Some(t) = d.target.poll_timeout() else {
                    break;
                };
                d.now = t;
                d.target.handle_timeout(t);
            }
            d.target_events
                .extend(std::iter::from_fn(|| d.target.poll_event()));
            assert!(connected_keys(&d.target_events).is_none());
            assert_eq!(failure(&d.target_events), Some(DtlsError::Timeout));
        }
    }
}

/// The server's ECDHE public key, read from its ServerKeyExchange in its transcript.
fn server_public_key(d: &Driver) -> Vec<u8> {
    let mut t = d.target.cx.transcript.as_slice();
    while t.len() >= 12 {
        let len = usize::from(t[1]) << 16 | usize::from(t[2]) << 8 | usize::from(t[3]);
        let body = &t[12..12 + len];
        if t[0] == HandshakeType::ServerKeyExchange.to_u8() {
            return wire::ServerKeyExchange::parse(body)
                .expect("ske")
                .public_key;
        }
        t = &t[12 + len..];
    }
    panic!("no ServerKeyExchange in the transcript");
}

/// Randomness comes from the generator handed to the endpoint: the same seed gives the
/// same ClientHello, another seed another random.
#[test]
fn randoms_come_from_the_endpoints_generator() {
    let cert = Certificate::generate().expect("cert");
    let hello = |seed: u64| {
        let mut c = DtlsEndpoint::new(
            DtlsRole::Client,
            &cert,
            cert.fingerprint().clone(),
            DtlsConfig::default(),
            Rng::from_seed(seed),
            Instant::now(),
        );
        let mut buf = vec![0u8; 2048];
        let n = c.poll_transmit(&mut buf).expect("hello");
        buf.truncate(n);
        buf
    };
    assert_eq!(hello(5), hello(5));
    assert_ne!(hello(5), hello(6));
}
