use std::time::{Duration, Instant};

use bytes::Bytes;
use quickcheck::{QuickCheck, TestResult};

use super::*;
use crate::sctp::testing::Net;
use crate::sctp::wire::{self, Chunk, CommonHeader};

fn config() -> SctpConfig {
    SctpConfig {
        rto_min: Duration::from_millis(100),
        rto_initial: Duration::from_millis(300),
        ..SctpConfig::default()
    }
}

fn pair_with(ca: SctpConfig, cb: SctpConfig, seed: u64) -> (Association, Association, Net) {
    let now = Instant::now();
    let mut rng = Rng::from_seed(seed);
    let a = Association::new(ca, SctpRole::Client, rng.fork(), now).expect("a");
    let b = Association::new(cb, SctpRole::Server, rng.fork(), now).expect("b");
    (a, b, Net::new(seed, now))
}

fn connected(seed: u64) -> (Association, Association, Net) {
    connected_with(config(), config(), seed)
}

fn connected_with(ca: SctpConfig, cb: SctpConfig, seed: u64) -> (Association, Association, Net) {
    let (mut a, mut b, mut net) = pair_with(ca, cb, seed);
    let now = net.now;
    a.connect(now);
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(30), |a, b| {
            a.is_established() && b.is_established()
        })
    );
    assert_eq!(a.poll_event(), Some(SctpEvent::Connected));
    assert_eq!(b.poll_event(), Some(SctpEvent::Connected));
    (a, b, net)
}

fn messages(assoc: &mut Association, out: &mut Vec<ReceivedMessage>) {
    while let Some(e) = assoc.poll_event() {
        if let SctpEvent::Message(m) = e {
            out.push(m);
        }
    }
}

fn payload(rng: &mut Rng, len: usize, tag: u32) -> Bytes {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    if len >= 4 {
        v[..4].copy_from_slice(&tag.to_be_bytes());
    }
    Bytes::from(v)
}

#[test]
fn handshake_establishes_both_sides_and_negotiates_idata() {
    let (a, b, _) = connected(1);
    assert!(a.interleaving() && b.interleaving());
    assert_eq!(a.stats().wrong_tag + b.stats().wrong_tag, 0);
}

#[test]
fn without_idata_on_one_side_data_chunks_are_used() {
    let cb = SctpConfig {
        interleaving: false,
        ..config()
    };
    let (mut a, mut b, mut net) = connected_with(config(), cb, 2);
    assert!(!a.interleaving() && !b.interleaving());
    let mut rng = Rng::from_seed(9);
    let sent: Vec<Bytes> = (0..50)
        .map(|i| payload(&mut rng, 1 + (i * 997) % 5000, i as u32))
        .collect();
    for m in &sent {
        a.send(net.now, 1, 53, m.clone(), false, Reliability::Reliable)
            .expect("send");
    }
    let mut got = Vec::new();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(30), |_, b| {
            messages(b, &mut got);
            got.len() == sent.len()
        })
    );
    assert!(got.iter().map(|m| &m.data).eq(sent.iter()));
}

fn transfer(seed: u64, loss: f64, count: usize, max_len: usize, interleaving: bool) {
    transfer_on(seed, loss, 0.0, count, max_len, interleaving);
}

fn transfer_on(
    seed: u64,
    loss: f64,
    reorder: f64,
    count: usize,
    max_len: usize,
    interleaving: bool,
) {
    let c = SctpConfig {
        interleaving,
        ..config()
    };
    let (mut a, mut b, mut net) = connected_with(c.clone(), c, seed);
    net.loss = loss;
    net.reorder = reorder;
    net.duplicate = reorder;
    let mut rng = Rng::from_seed(seed ^ 0x55);
    let mut sent: Vec<Vec<Bytes>> = vec![Vec::new(); 4];
    let mut queued = 0;
    let mut got: Vec<ReceivedMessage> = Vec::new();
    let mut got_unordered = 0;
    let ok = net.run_until(&mut a, &mut b, Duration::from_secs(600), |a, b| {
        while queued < count {
            let len = 1 + rng.below(max_len as u64) as usize;
            let stream = (queued % 4) as u16;
            let m = payload(&mut rng, len, queued as u32);
            let unordered = stream == 3;
            match a.send(
                net_now(),
                stream,
                53,
                m.clone(),
                unordered,
                Reliability::Reliable,
            ) {
                Ok(()) => {
                    sent[stream as usize].push(m);
                    queued += 1;
                }
                Err(SendError::BufferFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        messages(b, &mut got);
        got_unordered = got.iter().filter(|m| m.unordered).count();
        got.len() == count
    });
    assert!(
        ok,
        "delivered {} of {count} (unordered {got_unordered})",
        got.len()
    );
    // Ordered streams arrive in order; the unordered one arrives complete.
    for stream in 0..3u16 {
        let received: Vec<&Bytes> = got
            .iter()
            .filter(|m| m.stream_id == stream)
            .map(|m| &m.data)
            .collect();
        assert!(
            received.iter().copied().eq(sent[stream as usize].iter()),
            "stream {stream}"
        );
    }
    let mut un: Vec<&Bytes> = got
        .iter()
        .filter(|m| m.stream_id == 3)
        .map(|m| &m.data)
        .collect();
    let mut want: Vec<&Bytes> = sent[3].iter().collect();
    un.sort();
    want.sort();
    assert_eq!(un, want);
    if loss > 0.0 {
        assert!(a.stats().retransmissions > 0);
    }
}

// The closure above cannot borrow the net's clock; messages are queued "now" in virtual
// time terms, and reliable messages do not depend on it.
fn net_now() -> Instant {
    use std::sync::OnceLock;
    static T: OnceLock<Instant> = OnceLock::new();
    *T.get_or_init(Instant::now)
}

#[test]
fn many_messages_ordered_and_unordered_arrive_intact() {
    transfer(3, 0.0, 300, 64 * 1024, true);
}

#[test]
fn many_messages_with_data_chunks() {
    transfer(4, 0.0, 300, 64 * 1024, false);
}

#[test]
fn ten_percent_loss_still_delivers_reliable_messages() {
    transfer(5, 0.10, 200, 20 * 1024, true);
    transfer(6, 0.10, 200, 20 * 1024, false);
}

#[test]
fn partial_reliability_abandons_and_forward_tsn_moves_the_peer() {
    for interleaving in [true, false] {
        let c = SctpConfig {
            interleaving,
            ..config()
        };
        let (mut a, mut b, mut net) = connected_with(c.clone(), c, 7);
        net.loss = 0.2;
        let mut rng = Rng::from_seed(70);
        for i in 0..200u32 {
            let m = payload(&mut rng, 100 + (i as usize * 37) % 3000, i);
            let rel = if i % 2 == 0 {
                Reliability::MaxRetransmits(0)
            } else {
                Reliability::MaxLifetime(Duration::from_millis(50))
            };
            a.send(net.now, (i % 2) as u16, 53, m, i % 4 == 1, rel)
                .expect("send");
        }
        let mut got = Vec::new();
        net.run_until(&mut a, &mut b, Duration::from_secs(120), |a, b| {
            messages(b, &mut got);
            a.sender.is_idle()
        });
        net.loss = 0.0;
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |_, b| {
            messages(b, &mut got);
            false
        });
        assert!(a.sender.is_idle(), "everything acknowledged or abandoned");
        assert!(a.stats().abandoned_messages > 0);
        assert!(a.stats().forward_tsns_sent > 0);
        assert!(got.len() < 200 && got.len() > 50, "got {}", got.len());
        // What arrived on the ordered stream 0 is in order.
        let ids: Vec<u32> = got
            .iter()
            .filter(|m| m.stream_id == 0)
            .map(|m| u32::from_be_bytes([m.data[0], m.data[1], m.data[2], m.data[3]]))
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // The receiver's cumulative point caught up with everything sent.
        let cum = b.receiver.as_ref().map(|r| r.cumulative_tsn());
        assert_eq!(cum, Some(a.sender.last_assigned_tsn()));
        let streams = b.receiver.as_ref().map_or(0, |r| r.stream_state_bytes());
        assert_eq!(b.received_bytes_held(), streams);
    }
}

#[test]
fn interleaving_lets_a_small_message_pass_a_large_one() {
    let (mut a, mut b, mut net) = connected(8);
    let big = Bytes::from(vec![1u8; 200_000]);
    a.send(net.now, 1, 53, big, false, Reliability::Reliable)
        .expect("big");
    a.send(
        net.now,
        2,
        51,
        Bytes::from_static(b"small"),
        false,
        Reliability::Reliable,
    )
    .expect("small");
    let mut got = Vec::new();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(30), |_, b| {
            messages(b, &mut got);
            got.len() == 2
        })
    );
    assert_eq!(&got[0].data[..], b"small");
    assert_eq!(got[1].data.len(), 200_000);
}

#[test]
fn stream_reset_in_both_directions() {
    let (mut a, mut b, mut net) = connected(9);
    a.send(
        net.now,
        4,
        51,
        Bytes::from_static(b"last"),
        false,
        Reliability::Reliable,
    )
    .expect("send");
    a.reset_stream(4);
    assert_eq!(
        a.send(
            net.now,
            4,
            51,
            Bytes::from_static(b"x"),
            false,
            Reliability::Reliable
        ),
        Err(SendError::InvalidStream)
    );
    let mut b_events = Vec::new();
    let mut a_events = Vec::new();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            while let Some(e) = b.poll_event() {
                if e == SctpEvent::IncomingStreamReset(4) {
                    b.reset_stream(4);
                }
                b_events.push(e);
            }
            while let Some(e) = a.poll_event() {
                a_events.push(e);
            }
            a_events.contains(&SctpEvent::OutgoingStreamReset(4))
                && b_events.contains(&SctpEvent::OutgoingStreamReset(4))
                && a_events.contains(&SctpEvent::IncomingStreamReset(4))
        })
    );
    // The message before the reset came first.
    assert!(matches!(&b_events[0], SctpEvent::Message(m) if &m.data[..] == b"last"));
    // The stream can be used again, numbered from 0.
    a.send(
        net.now,
        4,
        51,
        Bytes::from_static(b"again"),
        false,
        Reliability::Reliable,
    )
    .expect("reuse");
    let mut got = Vec::new();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |_, b| {
            messages(b, &mut got);
            !got.is_empty()
        })
    );
    assert_eq!(&got[0].data[..], b"again");
}

#[test]
fn graceful_shutdown_and_abort() {
    let (mut a, mut b, mut net) = connected(10);
    a.send(
        net.now,
        0,
        51,
        Bytes::from_static(b"bye"),
        false,
        Reliability::Reliable,
    )
    .expect("send");
    a.shutdown(net.now);
    assert_eq!(
        a.send(
            net.now,
            0,
            51,
            Bytes::from_static(b"x"),
            false,
            Reliability::Reliable
        ),
        Err(SendError::NotOpen)
    );
    let mut got = Vec::new();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            messages(b, &mut got);
            a.state() == AssociationState::Terminated && b.state() == AssociationState::Terminated
        })
    );
    assert_eq!(&got[0].data[..], b"bye");

    let (mut a, mut b, mut net) = connected(11);
    b.abort();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(5), |a, _| {
            a.state() == AssociationState::Terminated
        })
    );
    assert_eq!(
        a.poll_event(),
        Some(SctpEvent::Closed(CloseReason::AbortedByPeer))
    );
    assert_eq!(
        b.poll_event(),
        Some(SctpEvent::Closed(CloseReason::Aborted))
    );
}

#[test]
fn bad_crc_wrong_tag_and_forged_cookie_are_dropped_and_counted() {
    let (mut a, mut b, net) = connected(12);
    let header = CommonHeader {
        source_port: 5000,
        destination_port: 5000,
        verification_tag: b.local_tag,
    };
    let mut p = wire::write_packet(header, &[Chunk::CookieAck]);
    p[12] ^= 0xFF;
    b.handle_packet(net.now, &p);
    assert_eq!(b.stats().bad_checksum, 1);
    let wrong = CommonHeader {
        verification_tag: b.local_tag ^ 1,
        ..header
    };
    let p = wire::write_packet(
        wrong,
        &[Chunk::Shutdown {
            cumulative_tsn_ack: 0,
        }],
    );
    b.handle_packet(net.now, &p);
    assert_eq!(b.stats().wrong_tag, 1);
    assert!(b.is_established());
    let _ = &mut a;

    // A fresh server and a forged cookie.
    let (_, mut server, net) = pair_with(config(), config(), 13);
    let mut cookie = vec![7u8; 66];
    cookie[0] = 1;
    cookie[1..5].copy_from_slice(&server.local_tag.to_be_bytes());
    let forged = wire::write_packet(
        CommonHeader {
            verification_tag: server.local_tag,
            ..header
        },
        &[Chunk::CookieEcho(Bytes::from(cookie))],
    );
    server.handle_packet(net.now, &forged);
    assert_eq!(server.stats().forged_cookies, 1);
    assert_eq!(server.state(), AssociationState::Closed);
    assert!(server.poll_event().is_none());
}

#[test]
fn stale_cookie_is_rejected() {
    let (mut a, mut b, net) = pair_with(config(), config(), 14);
    let mut now = net.now;
    let mut buf = vec![0u8; 1500];
    a.connect(now);
    let n = a.poll_transmit(now, &mut buf).expect("init");
    b.handle_packet(now, &buf[..n]);
    let n = b.poll_transmit(now, &mut buf).expect("init ack");
    a.handle_packet(now, &buf[..n]);
    let n = a.poll_transmit(now, &mut buf).expect("cookie echo");
    now += Duration::from_secs(61);
    b.handle_packet(now, &buf[..n]);
    assert_eq!(b.stats().stale_cookies, 1);
    assert_eq!(b.state(), AssociationState::Closed);
    // The server says so, and the client starts over with a fresh INIT.
    let n = b.poll_transmit(now, &mut buf).expect("stale cookie error");
    a.handle_packet(now, &buf[..n]);
    assert_eq!(a.state(), AssociationState::CookieWait);
    let mut net = Net::new(14, now);
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            a.is_established() && b.is_established()
        })
    );
}

#[test]
fn peer_that_never_reads_keeps_memory_bounded() {
    let cb = SctpConfig {
        receive_buffer: 256 * 1024,
        ..config()
    };
    let ca = SctpConfig {
        send_buffer: 2 * 1024 * 1024,
        ..config()
    };
    let (mut a, mut b, mut net) = connected_with(ca, cb, 15);
    let chunk = Bytes::from(vec![9u8; 16 * 1024]);
    let mut refused = false;
    for _ in 0..2000 {
        match a.send(net.now, 0, 53, chunk.clone(), false, Reliability::Reliable) {
            Ok(()) => {}
            Err(SendError::BufferFull) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
        net.step(&mut a, &mut b);
        assert!(b.received_bytes_held() <= b.max_received_bytes_held());
        assert!(a.total_buffered() <= 2 * 1024 * 1024);
    }
    assert!(refused, "send must fail once the send buffer is full");
    // Still alive: a zero window is not a dead peer.
    net.run_until(&mut a, &mut b, Duration::from_secs(20), |_, _| false);
    assert!(a.is_established());
    assert!(b.received_bytes_held() <= b.max_received_bytes_held());
}

#[test]
fn too_large_messages_are_refused() {
    let (mut a, _, net) = connected(16);
    let big = Bytes::from(vec![0u8; 262_145]);
    assert_eq!(
        a.send(net.now, 0, 53, big, false, Reliability::Reliable),
        Err(SendError::MessageTooLarge)
    );
    assert_eq!(
        a.send(net.now, 0, 53, Bytes::new(), false, Reliability::Reliable),
        Err(SendError::EmptyMessage)
    );
}

#[test]
fn random_packets_never_panic() {
    fn prop(packets: Vec<Vec<u8>>, fix_crc: bool) -> TestResult {
        let (mut a, mut b, net) = connected(17);
        let (_, mut fresh, _) = pair_with(config(), config(), 18);
        let mut buf = vec![0u8; 1500];
        let mut now = net.now;
        for mut p in packets {
            now += Duration::from_millis(300);
            if fix_crc && p.len() >= 12 {
                p[0..4].copy_from_slice(&[0x13, 0x88, 0x13, 0x88]);
                p[4..8].copy_from_slice(&b.local_tag.to_be_bytes());
                let crc = wire::crc32c::packet_checksum(&p);
                p[8..12].copy_from_slice(&crc.to_le_bytes());
            }
            b.handle_packet(now, &p);
            fresh.handle_packet(now, &p);
            while b.poll_transmit(now, &mut buf).is_some() {}
            while fresh.poll_transmit(now, &mut buf).is_some() {}
            b.handle_timeout(now);
            fresh.handle_timeout(now);
        }
        while b.poll_event().is_some() {}
        let _ = &mut a;
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Vec<Vec<u8>>, bool) -> TestResult);
}

#[test]
fn heartbeat_on_idle_measures_rtt() {
    let (mut a, mut b, mut net) = connected(19);
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(40), |a, _| a
            .srtt()
            .is_some())
    );
    assert!(a.is_established() && b.is_established());
}

#[test]
fn unanswered_retransmissions_end_the_association() {
    let (mut a, mut b, mut net) = connected(20);
    net.loss = 1.0;
    a.send(
        net.now,
        0,
        51,
        Bytes::from_static(b"lost"),
        false,
        Reliability::Reliable,
    )
    .expect("send");
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(3600), |a, _| {
            a.state() == AssociationState::Terminated
        })
    );
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(events.contains(&SctpEvent::Closed(CloseReason::Timeout)));
}

#[test]
fn simultaneous_open_as_browsers_do() {
    // Browsers send INIT whatever their DTLS role: both sides connect at once.
    let now = Instant::now();
    let mut rng = Rng::from_seed(21);
    let mut a = Association::new(config(), SctpRole::Client, rng.fork(), now).expect("a");
    let mut b = Association::new(config(), SctpRole::Client, rng.fork(), now).expect("b");
    let mut net = Net::new(21, now);
    a.connect(now);
    b.connect(now);
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            a.is_established() && b.is_established()
        })
    );
    a.send(
        net.now,
        0,
        51,
        Bytes::from_static(b"ping"),
        false,
        Reliability::Reliable,
    )
    .expect("send");
    b.send(
        net.now,
        1,
        51,
        Bytes::from_static(b"pong"),
        false,
        Reliability::Reliable,
    )
    .expect("send");
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            messages(a, &mut got_a);
            messages(b, &mut got_b);
            !got_a.is_empty() && !got_b.is_empty()
        })
    );
    assert_eq!(
        (&got_a[0].data[..], &got_b[0].data[..]),
        (&b"pong"[..], &b"ping"[..])
    );
}

#[test]
fn shutdown_from_both_sides_at_once() {
    let (mut a, mut b, mut net) = connected(22);
    a.shutdown(net.now);
    b.shutdown(net.now);
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            a.state() == AssociationState::Terminated && b.state() == AssociationState::Terminated
        })
    );
    assert_eq!(
        a.poll_event(),
        Some(SctpEvent::Closed(CloseReason::Shutdown))
    );
    assert_eq!(
        b.poll_event(),
        Some(SctpEvent::Closed(CloseReason::Shutdown))
    );
}

#[test]
fn lost_handshake_packets_are_retransmitted() {
    let (mut a, mut b, mut net) = pair_with(config(), config(), 23);
    net.loss = 0.3;
    a.connect(net.now);
    let ok = net.run_until(&mut a, &mut b, Duration::from_secs(300), |a, b| {
        a.is_established() && b.is_established()
    });
    assert!(
        ok,
        "{:?} {:?} {:?} {:?}",
        a.state(),
        b.state(),
        a.stats(),
        b.stats()
    );
}

#[test]
fn reordering_duplication_and_loss_still_deliver_in_order() {
    transfer_on(24, 0.05, 0.2, 200, 16 * 1024, true);
    transfer_on(25, 0.05, 0.2, 200, 16 * 1024, false);
}

#[test]
fn reliable_transfer_over_many_lossy_reordering_networks() {
    for seed in 100..116 {
        transfer_on(seed, 0.1, 0.2, 60, 40 * 1024, seed % 2 == 0);
    }
}

/// Mixed reliable and partially reliable streams over loss, reordering and duplication:
/// the reliable stream is complete, and nothing stays behind in the receiver (no orphan
/// fragment, no stalled ordered stream) once the sender is done.
#[test]
fn partial_reliability_leaves_nothing_behind_over_many_networks() {
    for seed in 200..216u64 {
        let interleaving = seed % 2 == 0;
        let c = SctpConfig {
            interleaving,
            ..config()
        };
        let (mut a, mut b, mut net) = connected_with(c.clone(), c, seed);
        net.loss = 0.2;
        net.reorder = 0.2;
        net.duplicate = 0.1;
        let mut rng = Rng::from_seed(seed);
        for i in 0..150u32 {
            let len = 100 + rng.below(20000) as usize;
            let m = payload(&mut rng, len, i);
            let rel = match i % 3 {
                0 => Reliability::MaxRetransmits((i % 3) as u16),
                1 => Reliability::MaxLifetime(Duration::from_millis(80)),
                _ => Reliability::Reliable,
            };
            a.send(net.now, (i % 3) as u16, 53, m, i % 4 == 1, rel)
                .expect("send");
        }
        let mut got = Vec::new();
        net.run_until(&mut a, &mut b, Duration::from_secs(300), |a, b| {
            messages(b, &mut got);
            a.sender.is_idle()
        });
        net.loss = 0.0;
        net.reorder = 0.0;
        net.duplicate = 0.0;
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |_, b| {
            messages(b, &mut got);
            false
        });
        assert!(a.sender.is_idle(), "seed {seed}");
        let reliable = got.iter().filter(|m| m.stream_id == 2).count();
        assert_eq!(
            reliable,
            50,
            "seed {seed} {}",
            b.receiver
                .as_ref()
                .map(|r| r.debug_dump())
                .unwrap_or_default()
        );
        assert_eq!(
            b.received_bytes_held(),
            b.receiver.as_ref().map_or(0, |r| r.stream_state_bytes()),
            "seed {seed} {}",
            b.receiver
                .as_ref()
                .map(|r| r.debug_dump())
                .unwrap_or_default()
        );
        let cum = b.receiver.as_ref().map(|r| r.cumulative_tsn());
        assert_eq!(cum, Some(a.sender.last_assigned_tsn()), "seed {seed}");
    }
}

#[test]
fn a_small_buffer_delays_control_chunks_without_losing_them() {
    let (mut a, mut b, net) = pair_with(config(), config(), 26);
    let now = net.now;
    let mut buf = vec![0u8; 1500];
    a.connect(now);
    assert_eq!(a.poll_transmit(now, &mut buf[..8]), None);
    let n = a
        .poll_transmit(now, &mut buf)
        .expect("INIT kept for a larger buffer");
    b.handle_packet(now, &buf[..n]);
    assert_eq!(b.poll_transmit(now, &mut buf[..40]), None);
    assert!(b.poll_transmit(now, &mut buf).is_some(), "INIT ACK kept");
}

#[test]
fn a_small_mtu_still_carries_large_messages_under_loss() {
    let c = SctpConfig {
        mtu: 300,
        ..config()
    };
    let (mut a, mut b, mut net) = connected_with(c.clone(), c, 27);
    net.loss = 0.1;
    net.reorder = 0.1;
    let mut rng = Rng::from_seed(27);
    let sent: Vec<Bytes> = (0..20)
        .map(|i| {
            let len = 1 + rng.below(60_000) as usize;
            payload(&mut rng, len, i)
        })
        .collect();
    for m in &sent {
        a.send(net.now, 0, 53, m.clone(), false, Reliability::Reliable)
            .expect("send");
    }
    let mut buf_check = Vec::new();
    let mut got = Vec::new();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(600), |_, b| {
            messages(b, &mut got);
            got.len() == sent.len()
        })
    );
    buf_check.extend(got.iter().map(|m| m.data.clone()));
    assert_eq!(buf_check, sent);
}

#[test]
fn zero_timer_bounds_do_not_spin() {
    let c = SctpConfig {
        rto_initial: Duration::ZERO,
        rto_min: Duration::ZERO,
        rto_max: Duration::ZERO,
        heartbeat_interval: Duration::ZERO,
        delayed_ack: Duration::ZERO,
        ..SctpConfig::default()
    };
    let (mut a, mut b, mut net) = pair_with(c.clone(), c, 28);
    net.loss = 0.5;
    a.connect(net.now);
    for _ in 0..200 {
        a.handle_timeout(net.now);
        net.step(&mut a, &mut b);
    }
}

/// Large messages on many streams at once, fragments interleaved (I-DATA), far more in
/// total than the receiver's buffer: every one arrives, in one piece, while the bytes the
/// receiver holds stay under its bound. A sender that started every message at once would
/// fill the buffer with the first fragments of all of them, none could complete, and that
/// direction would stall for good (the receiver must take TSNs in order and keep what it
/// acknowledged, so it cannot choose which message to finish).
fn interleaved_messages_on_many_streams(seed: u64, loss: f64) {
    let cb = SctpConfig {
        receive_buffer: 256 * 1024,
        ..config()
    };
    let (mut a, mut b, mut net) = connected_with(config(), cb, seed);
    assert!(a.interleaving());
    net.loss = loss;
    let mut rng = Rng::from_seed(seed ^ 0x1d);
    let streams = 24u16;
    let sent: Vec<Bytes> = (0..streams)
        .map(|s| payload(&mut rng, 48 * 1024 + 1000 * usize::from(s), u32::from(s)))
        .collect();
    let total: usize = sent.iter().map(Bytes::len).sum();
    assert!(total > 4 * 256 * 1024);
    for (s, m) in sent.iter().enumerate() {
        a.send(
            net.now,
            s as u16,
            53,
            m.clone(),
            false,
            Reliability::Reliable,
        )
        .expect("send");
    }
    let mut got = Vec::new();
    let mut peak = 0;
    let done = net.run_until(&mut a, &mut b, Duration::from_secs(120), |_, b| {
        let held = b.received_bytes_held();
        assert!(held <= b.max_received_bytes_held(), "{held} bytes held");
        peak = peak.max(held);
        messages(b, &mut got);
        got.len() == sent.len()
    });
    assert!(
        done,
        "{} of {} messages arrived; {} bytes held",
        got.len(),
        sent.len(),
        b.received_bytes_held()
    );
    for m in &got {
        assert_eq!(m.data, sent[usize::from(m.stream_id)]);
    }
    assert!(a.is_established() && b.is_established());
}

#[test]
fn interleaved_large_messages_on_many_streams_all_complete() {
    interleaved_messages_on_many_streams(40, 0.0);
}

#[test]
fn interleaved_large_messages_on_many_streams_all_complete_despite_loss() {
    interleaved_messages_on_many_streams(41, 0.02);
}

#[test]
fn messages_waiting_to_start_never_hold_up_small_ones() {
    let (mut a, mut b, mut net) = connected(42);
    let big = Bytes::from(vec![3u8; 200 * 1024]);
    for s in 0..8 {
        a.send(net.now, s, 53, big.clone(), false, Reliability::Reliable)
            .expect("send");
    }
    // B's window is 1 MiB: two of these may be open at once, six wait to start.
    let budget = config().receive_buffer / 2;
    let mut got = Vec::new();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(5), |a, _| {
            assert!(a.sender.open_message_bytes() <= budget);
            a.sender.open_message_bytes() > 0
        })
    );
    a.send(
        net.now,
        100,
        51,
        Bytes::from_static(b"hi"),
        false,
        Reliability::Reliable,
    )
    .expect("send");
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(30), |a, b| {
            assert!(a.sender.open_message_bytes() <= budget);
            messages(b, &mut got);
            got.iter().any(|m| m.stream_id == 100)
        })
    );
    let large_before = got.iter().filter(|m| m.stream_id < 8).count();
    assert!(
        large_before < 8,
        "the small message went ahead of waiting ones"
    );
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(60), |_, b| {
            messages(b, &mut got);
            got.len() == 9
        })
    );
    assert_eq!(a.sender.open_message_bytes(), 0);
}

#[test]
fn abandoned_messages_give_back_their_share_of_the_budget() {
    let cb = SctpConfig {
        receive_buffer: 256 * 1024,
        ..config()
    };
    let (mut a, mut b, mut net) = connected_with(config(), cb, 43);
    net.loss = 0.2;
    let big = Bytes::from(vec![5u8; 100 * 1024]);
    for s in 0..12 {
        a.send(
            net.now,
            s,
            53,
            big.clone(),
            false,
            Reliability::MaxRetransmits(0),
        )
        .expect("send");
    }
    let mut got = Vec::new();
    net.run_until(&mut a, &mut b, Duration::from_secs(60), |a, b| {
        messages(b, &mut got);
        assert!(b.received_bytes_held() <= b.max_received_bytes_held());
        a.total_buffered() == 0
    });
    assert!(a.stats().abandoned_messages > 0);
    assert_eq!(a.sender.open_message_bytes(), 0, "nothing leaked");
    // A reliable message of several fragments still starts and arrives.
    net.loss = 0.0;
    a.send(net.now, 20, 53, big.clone(), false, Reliability::Reliable)
        .expect("send");
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(60), |_, b| {
            messages(b, &mut got);
            got.iter().any(|m| m.stream_id == 20 && m.data == big)
        })
    );
}

/// Records the data chunks one side sends, in order.
struct Tap<'a> {
    inner: &'a mut Association,
    sent: Vec<wire::DataChunk>,
}

impl crate::sctp::testing::Node for Tap<'_> {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.inner.handle_packet(now, packet)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let n = self.inner.poll_transmit(now, buf)?;
        let packet = Bytes::copy_from_slice(&buf[..n]);
        if let Ok((_, chunks)) = wire::parse_packet(&packet) {
            for chunk in chunks.flatten() {
                if let Chunk::IData(d) = chunk {
                    self.sent.push(d);
                }
            }
        }
        Some(n)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now)
    }
}

#[test]
fn only_large_messages_interleave_and_only_as_many_as_the_peer_can_hold() {
    let (mut a, mut b, mut net) = connected(44);
    let mut rng = Rng::from_seed(44);
    let mut count = 0;
    for s in 0..6u16 {
        let m = payload(&mut rng, 250 * 1024 - 4096 * usize::from(s), 0);
        a.send(net.now, s, 53, m, false, Reliability::Reliable)
            .expect("send");
        count += 1;
    }
    // Small messages, some of which end up split by the end of a packet.
    for i in 0..200u16 {
        let m = payload(&mut rng, 700 + usize::from(i * 37 % 400), 0);
        a.send(net.now, 10 + i % 50, 51, m, false, Reliability::Reliable)
            .expect("send");
        count += 1;
    }
    let mut tap = Tap {
        inner: &mut a,
        sent: Vec::new(),
    };
    let mut got = Vec::new();
    assert!(
        net.run_until(&mut tap, &mut b, Duration::from_secs(60), |_, b| {
            messages(b, &mut got);
            got.len() == count
        })
    );
    // Walk the first transmissions in TSN order: which messages were started and not
    // ended at each point.
    let mut seen = std::collections::HashSet::new();
    let mut open: Vec<(u16, u32)> = Vec::new();
    let mut split_small_pending = None;
    let (mut most_open, mut small_split) = (0, 0);
    for d in tap.sent.iter().filter(|d| seen.insert(d.tsn)) {
        let key = (d.stream_id, d.message_id);
        if let Some(pending) = split_small_pending {
            assert_eq!(pending, key, "a split small message's rest comes next");
            split_small_pending = None;
        }
        if d.flags.beginning && !d.flags.ending {
            if d.stream_id >= 10 {
                split_small_pending = Some(key);
                small_split += 1;
            } else {
                open.push(key);
            }
        }
        if d.flags.ending && !d.flags.beginning {
            open.retain(|k| *k != key);
        }
        // B's window is 1 MiB, so at most 512 KiB of large messages open: two of these
        // (230 to 250 KiB each), never three.
        assert!(open.len() <= 2, "{open:?} open at once");
        most_open = most_open.max(open.len());
    }
    assert_eq!(most_open, 2, "large messages still interleave");
    assert!(
        small_split > 0,
        "some small message was split by a packet's end"
    );
}
