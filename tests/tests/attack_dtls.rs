//! DTLS under attack, two PeerConnections on the virtual network:
//!
//! - an on-path attacker replays the client's (public) Certificate with its own
//!   ClientKeyExchange, leaves out the CertificateVerify it cannot sign, and finishes the
//!   handshake with keys of its own: the server must never connect with those keys
//!   (issue 13, item 1); leaving out CertificateVerify alone gets no keys either;
//! - the client's second flight duplicated completes; reordered it completes or fails
//!   cleanly, never panics;
//! - plaintext (epoch-0) alerts and handshake fragments spoofed from the peer's real
//!   address after the handshake are dropped and counted, and the session keeps carrying
//!   data (item 2);
//! - a flood of zero-length and tiny handshake fragments for future messages during the
//!   handshake keeps the reassembly buffer bounded and the handshake completes (item 3).
//!
//! The attacker's cryptography is written here with ring, from RFC 5246/7627/5288.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use ring::{aead, agreement, digest, hmac};
use sansrtc::dtls::DtlsState;
use sansrtc::{ChannelId, DataChannelInit, Event};
use sansrtc_tests::{Captured, Network, NodeId, Verdict};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

// ---------------------------------------------------------------- wire helpers

/// One DTLS record of a datagram.
#[derive(Debug, Clone)]
struct Record {
    content_type: u8,
    epoch: u16,
    bytes: Vec<u8>,
}

impl Record {
    fn payload(&self) -> &[u8] {
        &self.bytes[13..]
    }

    /// The handshake type of its first fragment (epoch-0 handshake records).
    fn handshake_type(&self) -> Option<u8> {
        (self.content_type == 22 && self.epoch == 0)
            .then(|| self.payload().first().copied())
            .flatten()
    }

    /// The whole handshake message it carries (epoch 0, one unfragmented message).
    fn whole_message(&self) -> Option<Vec<u8>> {
        let p = self.payload();
        if self.handshake_type().is_none() || p.len() < 12 {
            return None;
        }
        let length = u32::from_be_bytes([0, p[1], p[2], p[3]]);
        let fragment = u32::from_be_bytes([0, p[9], p[10], p[11]]);
        (length == fragment && p.len() == 12 + length as usize).then(|| p.to_vec())
    }
}

/// The records of a DTLS datagram (RFC 7983: first byte 20..=63), empty for others.
fn records(d: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    if !matches!(d.first(), Some(20..=63)) {
        return out;
    }
    let mut at = 0;
    while at + 13 <= d.len() {
        let len = usize::from(u16::from_be_bytes([d[at + 11], d[at + 12]]));
        let Some(bytes) = d.get(at..at + 13 + len) else {
            break;
        };
        out.push(Record {
            content_type: d[at],
            epoch: u16::from_be_bytes([d[at + 3], d[at + 4]]),
            bytes: bytes.to_vec(),
        });
        at += 13 + len;
    }
    out
}

fn has_handshake(d: &[u8], msg_type: u8) -> bool {
    records(d)
        .iter()
        .any(|r| r.handshake_type() == Some(msg_type))
}

/// A plaintext record (DTLS 1.2).
fn record(content_type: u8, epoch: u16, sequence: u64, payload: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 0xFE, 0xFD];
    r.extend_from_slice(&epoch.to_be_bytes());
    r.extend_from_slice(&sequence.to_be_bytes()[2..]);
    r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    r.extend_from_slice(payload);
    r
}

/// A handshake message header plus body, one fragment.
fn fragment(msg_type: u8, seq: u16, length: u32, offset: u32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type];
    m.extend_from_slice(&length.to_be_bytes()[1..]);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&offset.to_be_bytes()[1..]);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

fn message_seq(message: &[u8]) -> u16 {
    u16::from_be_bytes([message[4], message[5]])
}

// ---------------------------------------------------------------- attacker crypto

/// P_SHA256 (RFC 5246 section 5).
fn prf(secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let label_seed = [label, seed].concat();
    let mut a = hmac::sign(&key, &label_seed).as_ref().to_vec();
    let mut out = Vec::new();
    while out.len() < len {
        out.extend_from_slice(hmac::sign(&key, &[a.as_slice(), &label_seed].concat()).as_ref());
        a = hmac::sign(&key, &a).as_ref().to_vec();
    }
    out.truncate(len);
    out
}

fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// What the attacker saw of the handshake so far.
#[derive(Default)]
struct Seen {
    /// Whole handshake messages in transcript order: ClientHello, then the server's flight.
    client_hello: Option<Vec<u8>>,
    server_flight: Vec<Vec<u8>>,
    /// The keying material the attacker would share with the server if it connected.
    attacker_keying: Option<Vec<u8>>,
    forged: usize,
    attack: Option<Attack>,
}

/// The attacker's side of the key exchange.
struct Attack {
    /// Its ClientKeyExchange message.
    cke: Vec<u8>,
    /// The server's transcript through that ClientKeyExchange.
    transcript: Vec<u8>,
    master: Vec<u8>,
}

/// The client's second flight rewritten: its Certificate, the attacker's
/// ClientKeyExchange, no CertificateVerify, ChangeCipherSpec and a Finished under the
/// attacker's keys. `None` until the attacker has seen what it needs.
fn forge_flight(seen: &mut Seen, client_flight: &[Record]) -> Option<Vec<u8>> {
    let client_hello = seen.client_hello.clone()?;
    let server_hello = seen.server_flight.iter().find(|m| m[0] == 2)?.clone();
    let ske = seen.server_flight.iter().find(|m| m[0] == 12)?.clone();
    let certificate = client_flight
        .iter()
        .find(|r| r.handshake_type() == Some(11))?;
    let certificate_message = certificate.whole_message()?;
    let client_random = client_hello.get(14..46)?.to_vec();
    let server_random = server_hello.get(14..46)?.to_vec();
    // ServerKeyExchange: curve_type 3, named group, public key.
    let (group, key_len) = (u16::from_be_bytes([ske[13], ske[14]]), usize::from(ske[15]));
    let server_public = ske.get(16..16 + key_len)?.to_vec();
    assert_eq!(group, 29, "the peers agree on X25519");
    let cert_seq = message_seq(&certificate_message);
    if seen.attack.is_none() {
        // One key exchange for the whole attack: every rewritten flight carries the same
        // ClientKeyExchange, so whichever the server takes, it shares these keys.
        let rng = ring::rand::SystemRandom::new();
        let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng).ok()?;
        let public = private.compute_public_key().ok()?.as_ref().to_vec();
        let pre_master = agreement::agree_ephemeral(
            private,
            &agreement::UnparsedPublicKey::new(&agreement::X25519, server_public),
            |s| s.to_vec(),
        )
        .ok()?;
        let mut cke_body = vec![public.len() as u8];
        cke_body.extend_from_slice(&public);
        let cke = fragment(16, cert_seq + 1, cke_body.len() as u32, 0, &cke_body);
        let mut transcript = client_hello.clone();
        for m in &seen.server_flight {
            transcript.extend_from_slice(m);
        }
        transcript.extend_from_slice(&certificate_message);
        transcript.extend_from_slice(&cke);
        let master = prf(
            &pre_master,
            b"extended master secret",
            &sha256(&transcript),
            48,
        );
        seen.attack = Some(Attack {
            cke,
            transcript,
            master,
        });
    }
    let attack = seen.attack.as_ref()?;
    let (cke, transcript, master) = (
        attack.cke.clone(),
        attack.transcript.clone(),
        attack.master.clone(),
    );
    let key_block = prf(
        &master,
        b"key expansion",
        &[server_random.as_slice(), &client_random].concat(),
        40,
    );
    let verify = prf(&master, b"client finished", &sha256(&transcript), 12);
    let finished = fragment(20, cert_seq + 2, 12, 0, &verify);
    // AES-128-GCM (RFC 5288): nonce = client IV + explicit (epoch, sequence).
    let sequence = seen.forged as u64;
    let mut explicit = [0u8; 8];
    explicit[..2].copy_from_slice(&1u16.to_be_bytes());
    explicit[2..].copy_from_slice(&sequence.to_be_bytes()[2..]);
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&key_block[32..36]);
    nonce[4..].copy_from_slice(&explicit);
    let mut aad = explicit.to_vec();
    aad.extend_from_slice(&[22, 0xFE, 0xFD]);
    aad.extend_from_slice(&(finished.len() as u16).to_be_bytes());
    let key =
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key_block[0..16]).ok()?);
    let mut sealed = finished.clone();
    key.seal_in_place_append_tag(
        aead::Nonce::assume_unique_for_key(nonce),
        aead::Aad::from(aad),
        &mut sealed,
    )
    .ok()?;
    let mut protected = explicit.to_vec();
    protected.extend_from_slice(&sealed);
    seen.attacker_keying = Some(prf(
        &master,
        b"EXTRACTOR-dtls_srtp",
        &[client_random.as_slice(), &server_random].concat(),
        88,
    ));
    seen.forged += 1;
    let mut out = certificate.bytes.clone();
    out.extend(record(22, 0, 900 + sequence * 3, &cke));
    out.extend(record(20, 0, 901 + sequence * 3, &[1]));
    out.extend(record(22, 1, sequence, &protected));
    Some(out)
}

// ---------------------------------------------------------------- set-up

/// Two peers with a data channel, negotiated; not yet run.
fn peers(seed: u64) -> (Network, NodeId, NodeId, ChannelId) {
    let mut net = Network::new(seed);
    let (a, b) = net.two_peers(seed, &[addr("10.0.0.1:5000")], &[addr("10.0.0.2:6000")]);
    net.trickle(a, b, Duration::from_millis(20));
    net.trickle(b, a, Duration::from_millis(20));
    let now = net.now();
    let chat = net
        .peer(a)
        .create_data_channel(now, "chat", DataChannelInit::default())
        .expect("channel");
    net.negotiate(a, b).expect("negotiate");
    (net, a, b, chat)
}

/// Which node sends the ClientHello, from the capture.
fn dtls_client(net: &Network, a: NodeId, b: NodeId) -> Option<(NodeId, NodeId)> {
    let hello = net.captured().iter().find(|c| has_handshake(&c.data, 1))?;
    if net.addrs(a).contains(&hello.from) {
        Some((a, b))
    } else {
        Some((b, a))
    }
}

fn dtls_connected(net: &mut Network, n: NodeId) -> bool {
    net.peer(n).dtls_state() == DtlsState::Connected
}

/// The remote channel announced to `node`.
fn remote_channel(net: &Network, node: NodeId) -> Option<ChannelId> {
    net.events_of(node).find_map(|e| match e {
        Event::DataChannel { channel, .. } => Some(*channel),
        _ => None,
    })
}

fn received(net: &Network, node: NodeId, data: &[u8]) -> bool {
    net.events_of(node)
        .any(|e| matches!(e, Event::DataChannelMessage { data: d, .. } if d.as_ref() == data))
}

/// Both directions of the data channel carry a message.
fn data_flows(net: &mut Network, a: NodeId, b: NodeId, chat: ChannelId, tag: &str) {
    assert!(net.run_until(Duration::from_secs(10), |n| remote_channel(n, b).is_some()));
    let remote = remote_channel(net, b).expect("remote channel");
    let now = net.now();
    let (to_b, to_a) = (format!("{tag} to bob"), format!("{tag} to alice"));
    net.peer(a)
        .send_data(now, chat, Bytes::from(to_b.clone()), true)
        .expect("send a");
    net.peer(b)
        .send_data(now, remote, Bytes::from(to_a.clone()), true)
        .expect("send b");
    assert!(
        net.run_until(Duration::from_secs(5), |n| received(n, b, to_b.as_bytes())
            && received(n, a, to_a.as_bytes())),
        "{tag}: data stopped flowing"
    );
}

// ---------------------------------------------------------------- (a) no CertificateVerify

/// The on-path attacker completes the server's handshake in the client's place with
/// the client's replayed Certificate, its own ClientKeyExchange and no CertificateVerify.
#[test]
fn a_flight_without_certificate_verify_never_gets_the_attackers_keys() {
    for seed in [1u64, 2] {
        let (mut net, a, b, _) = peers(seed);
        net.start_capture();
        let seen = Rc::new(RefCell::new(Seen::default()));
        let attacker = seen.clone();
        net.set_interceptor(move |c: &Captured| {
            let recs = records(&c.data);
            let mut s = attacker.borrow_mut();
            for r in &recs {
                match (r.handshake_type(), r.whole_message()) {
                    (Some(1), Some(m)) => s.client_hello = Some(m),
                    (Some(2 | 11 | 12 | 13 | 14), Some(m))
                        if s.client_hello.is_some()
                            && !recs.iter().any(|r| r.handshake_type() == Some(16)) =>
                    {
                        if m[0] == 2 {
                            s.server_flight.clear();
                        }
                        if !s.server_flight.iter().any(|x| x[0] == m[0]) {
                            s.server_flight.push(m);
                        }
                    }
                    _ => {}
                }
            }
            // The client's second flight: Certificate with ClientKeyExchange.
            if recs.iter().any(|r| r.handshake_type() == Some(16)) {
                return match forge_flight(&mut s, &recs) {
                    Some(forged) => Verdict::Replace(forged),
                    None => Verdict::Drop,
                };
            }
            Verdict::Deliver
        });
        let mut connected_server = false;
        net.run_until(Duration::from_secs(30), |n| {
            if let Some((_, server)) = dtls_client(n, a, b) {
                connected_server |= dtls_connected(n, server);
            }
            false
        });
        let (client, server) = dtls_client(&net, a, b).expect("a handshake started");
        let s = seen.borrow();
        assert!(
            s.forged > 0,
            "seed {seed}: the attacker rewrote the client's flight"
        );
        assert!(
            s.attacker_keying.is_some(),
            "seed {seed}: the attacker derived its keys"
        );
        // The keys never leave the core; what would betray them is a server that
        // completed the handshake or exported an SRTP profile.
        assert!(
            net.peer(server).srtp_profile().is_none(),
            "seed {seed}: the server exported keys for the attacker's handshake"
        );
        assert!(
            !connected_server,
            "seed {seed}: the server reported Connected"
        );
        assert!(!dtls_connected(&mut net, client));
        assert!(!net.events_of(server).any(|e| matches!(
            e,
            Event::ConnectionStateChange(sansrtc::ConnectionState::Connected)
        )));
    }
}

/// Dropping the CertificateVerify record alone does not get the server to connect either.
#[test]
fn a_flight_with_its_certificate_verify_dropped_never_connects() {
    let (mut net, a, b, _) = peers(3);
    net.start_capture();
    net.set_interceptor(|c: &Captured| {
        let recs = records(&c.data);
        if !recs.iter().any(|r| r.handshake_type() == Some(15)) {
            return Verdict::Deliver;
        }
        let kept: Vec<u8> = recs
            .iter()
            .filter(|r| r.handshake_type() != Some(15))
            .flat_map(|r| r.bytes.clone())
            .collect();
        Verdict::Replace(kept)
    });
    let connected = net.run_until(Duration::from_secs(30), |n| {
        dtls_client(n, a, b).is_some_and(|(_, server)| dtls_connected(n, server))
    });
    assert!(!connected);
    let (_, server) = dtls_client(&net, a, b).expect("handshake");
    assert!(net.peer(server).srtp_profile().is_none());
}

// ---------------------------------------------------------------- (b) reorder, duplicate

/// Every record of the client's second flight twice, and the datagram itself twice:
/// ignored duplicates, the handshake completes and data flows.
#[test]
fn a_duplicated_client_flight_still_completes() {
    let (mut net, a, b, chat) = peers(4);
    net.start_capture();
    let duplicated = Rc::new(RefCell::new(0usize));
    let count = duplicated.clone();
    net.set_interceptor(move |c: &Captured| {
        let recs = records(&c.data);
        if !recs.iter().any(|r| r.handshake_type() == Some(11))
            || recs.iter().any(|r| r.handshake_type() == Some(2))
        {
            return Verdict::Deliver;
        }
        *count.borrow_mut() += 1;
        let mut doubled = Vec::new();
        for r in &recs {
            doubled.extend_from_slice(&r.bytes);
            doubled.extend_from_slice(&r.bytes);
        }
        Verdict::Replace(doubled)
    });
    // Also resend each client flight once more, as a duplicated datagram.
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    assert!(*duplicated.borrow() > 0);
    let (client, server) = dtls_client(&net, a, b).expect("handshake");
    let flight: Vec<Captured> = net
        .captured()
        .iter()
        .filter(|c| has_handshake(&c.data, 16))
        .cloned()
        .collect();
    for c in &flight {
        net.inject(c.from, c.to, c.data.clone());
    }
    net.run_for(Duration::from_millis(500));
    assert!(dtls_connected(&mut net, server) && dtls_connected(&mut net, client));
    assert!(
        net.peer(server).stats().dtls.ignored_records > 0,
        "duplicates were seen"
    );
    data_flows(&mut net, a, b, chat, "after duplicates");
}

/// The client's second flight with its records in reverse order (Finished first): the
/// server either completes once retransmissions bring the pieces in a usable order or
/// fails cleanly with a typed error; nothing panics and no keys differ.
#[test]
fn a_reordered_client_flight_completes_or_fails_cleanly() {
    for (seed, always) in [(5u64, false), (6, true)] {
        let (mut net, a, b, chat) = peers(seed);
        net.start_capture();
        let mut reordered = 0;
        net.set_interceptor(move |c: &Captured| {
            let recs = records(&c.data);
            if !recs.iter().any(|r| r.handshake_type() == Some(16)) || (!always && reordered > 0) {
                return Verdict::Deliver;
            }
            reordered += 1;
            Verdict::Replace(recs.iter().rev().flat_map(|r| r.bytes.clone()).collect())
        });
        net.run_until(Duration::from_secs(60), |n| {
            n.connected(a, b)
                || [a, b]
                    .into_iter()
                    .any(|x| n.peer(x).dtls_state() == DtlsState::Failed)
        });
        let (client, server) = dtls_client(&net, a, b).expect("handshake");
        if dtls_connected(&mut net, server) {
            assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
            // Same keys on both ends: data flows both ways.
            data_flows(&mut net, a, b, chat, &format!("seed {seed}"));
        } else {
            assert!(
                net.events_of(server)
                    .chain(net.events_of(client))
                    .any(|e| matches!(e, Event::DtlsFailed(_))),
                "seed {seed}: neither connected nor failed with a typed error"
            );
        }
    }
}

// ---------------------------------------------------------------- (c) epoch-0 after connect

/// After the handshake, plaintext alerts (close_notify, fatal) and a handshake fragment
/// with the next message_seq, spoofed from the peer's real address, are dropped and
/// counted: both sides stay connected and data keeps flowing.
#[test]
fn spoofed_plaintext_alerts_and_fragments_after_connect_are_dropped() {
    let (mut net, a, b, chat) = peers(7);
    net.start_capture();
    assert!(net.run_until(Duration::from_secs(10), |n| n.connected(a, b)));
    data_flows(&mut net, a, b, chat, "before");
    for (victim, peer) in [(a, b), (b, a)] {
        let pair = net.peer(victim).selected_pair().expect("pair");
        let (from, to) = (pair.remote, pair.local);
        let before = net
            .peer(victim)
            .stats()
            .dtls
            .records_dropped_unauthenticated;
        let forged = [
            record(21, 0, 40, &[1, 0]),
            record(21, 0, 41, &[2, 40]),
            record(22, 0, 42, &fragment(20, 7, 12, 0, &[0; 12])),
            record(22, 0, 43, &fragment(20, 6, 12, 0, &[0; 12])),
            record(22, 0, 44, &fragment(1, 0, 4, 0, &[1, 2, 3, 4])),
        ];
        for r in &forged {
            net.inject(from, to, r.clone());
        }
        net.run_for(Duration::from_millis(200));
        assert!(net.connected(a, b), "victim {victim:?}");
        assert_eq!(net.peer(victim).dtls_state(), DtlsState::Connected);
        assert_eq!(net.peer(peer).dtls_state(), DtlsState::Connected);
        let after = net
            .peer(victim)
            .stats()
            .dtls
            .records_dropped_unauthenticated;
        assert_eq!(after - before, forged.len() as u64, "victim {victim:?}");
        data_flows(&mut net, a, b, chat, &format!("after spoofing {victim:?}"));
    }
    assert!(!net
        .events_of(a)
        .chain(net.events_of(b))
        .any(|e| matches!(e, Event::DtlsFailed(_) | Event::RemoteClosed(_))));
}

// ---------------------------------------------------------------- (d) fragment flood

/// While the handshake runs, the attacker floods both peers (from the other peer's
/// address) with zero-length and one-byte fragments of large future messages.
#[test]
fn a_fragment_flood_during_the_handshake_stays_bounded() {
    let (mut net, a, b, chat) = peers(8);
    net.start_capture();
    assert!(net.run_until(Duration::from_secs(10), |n| dtls_client(n, a, b).is_some()));
    let hello = net
        .captured()
        .iter()
        .find(|c| has_handshake(&c.data, 1))
        .cloned()
        .expect("hello");
    let mut sent = 0usize;
    for (from, to) in [(hello.from, hello.to), (hello.to, hello.from)] {
        for burst in 0..200u32 {
            let mut datagram = Vec::new();
            for i in 0..40u32 {
                let n = burst * 40 + i;
                let seq = 1 + ((n / 2) % 30) as u16;
                let body: &[u8] = if n % 2 == 0 { &[] } else { &[0x5A] };
                let f = fragment(
                    11 + (n % 6) as u8,
                    seq,
                    16 * 1024,
                    (n * 97) % (16 * 1024),
                    body,
                );
                datagram.extend(record(22, 0, u64::from(n), &f));
                sent += f.len();
            }
            net.inject_after(
                Duration::from_millis(u64::from(burst % 20)),
                from,
                to,
                datagram,
            );
        }
    }
    assert!(
        net.run_until(Duration::from_secs(30), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
    for n in [a, b] {
        let dtls = net.peer(n).stats().dtls;
        assert!(dtls.reassembly_peak_bytes <= 64 * 1024, "{dtls:?}");
        assert!(dtls.fragments_dropped > 1000, "{dtls:?}");
    }
    assert!(sent > 100_000);
    data_flows(&mut net, a, b, chat, "after the flood");
}
