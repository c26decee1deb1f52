use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use quickcheck::{QuickCheck, TestResult};

use super::*;
use crate::sctp::testing::Net;
use crate::sctp::SctpStats;

fn sctp_config() -> SctpConfig {
    SctpConfig {
        rto_min: Duration::from_millis(100),
        rto_initial: Duration::from_millis(300),
        ..SctpConfig::default()
    }
}

fn remote() -> RemoteSctpParams {
    RemoteSctpParams {
        port: 5000,
        max_message_size: 262_144,
    }
}

struct Peer {
    dc: DataChannels,
    events: Vec<DataChannelEvent>,
}

impl Peer {
    fn drain(&mut self) {
        while let Some(e) = self.dc.poll_event() {
            self.events.push(e);
        }
    }

    fn opened(&self) -> Vec<ChannelId> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DataChannelEvent::DataChannelOpen(id) => Some(*id),
                _ => None,
            })
            .collect()
    }

    fn messages(&self) -> Vec<(ChannelId, Bytes, bool)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                DataChannelEvent::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } => Some((*channel, data.clone(), *binary)),
                _ => None,
            })
            .collect()
    }

    fn closed(&self, id: ChannelId) -> bool {
        self.events
            .contains(&DataChannelEvent::DataChannelClose(id))
    }
}

impl crate::sctp::testing::Node for Peer {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.dc.handle_packet(now, packet);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.dc.poll_transmit(now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.dc.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.dc.handle_timeout(now);
    }
}

fn pair(seed: u64, ca: SctpConfig, cb: SctpConfig) -> (DataChannels, DataChannels, Net) {
    let now = Instant::now();
    let mut rng = Rng::from_seed(seed);
    let a = DataChannels::new(ca, rng.fork(), now);
    let b = DataChannels::new(cb, rng.fork(), now);
    (a, b, Net::new(seed, now))
}

fn start(a: &mut DataChannels, b: &mut DataChannels, net: &mut Net) {
    a.start(net.now, DtlsRole::Client, remote())
        .expect("start a");
    b.start(net.now, DtlsRole::Server, remote())
        .expect("start b");
}

/// A client-created channel opened on both sides: (a, b, net, id at a, id at b).
fn with_channel(seed: u64, init: DataChannelInit) -> (Peer, Peer, Net, ChannelId, ChannelId) {
    let (mut a, mut b, mut net) = pair(seed, sctp_config(), sctp_config());
    let id = a
        .create_data_channel(net.now, "chat", init)
        .expect("create before start");
    start(&mut a, &mut b, &mut net);
    let mut pa = Peer {
        dc: a,
        events: Vec::new(),
    };
    let mut pb = Peer {
        dc: b,
        events: Vec::new(),
    };
    assert!(
        net.run_until(&mut pa, &mut pb, Duration::from_secs(10), |a, b| {
            a.drain();
            b.drain();
            !a.opened().is_empty() && !b.opened().is_empty()
        })
    );
    let remote_id = pb.opened()[0];
    (pa, pb, net, id, remote_id)
}

#[test]
fn dcep_opens_a_channel_with_even_id_for_the_dtls_client() {
    let (a, b, _, id, remote_id) = with_channel(
        1,
        DataChannelInit {
            protocol: "proto".into(),
            ..DataChannelInit::default()
        },
    );
    assert_eq!(a.dc.channel(id).and_then(|c| c.stream_id), Some(0));
    let info = b.dc.channel(remote_id).expect("remote channel");
    assert_eq!(
        (info.label.as_str(), info.protocol.as_str()),
        ("chat", "proto")
    );
    assert_eq!(info.state, DataChannelState::Open);
    assert!(b.events.iter().any(|e| matches!(
        e,
        DataChannelEvent::DataChannel { label, .. } if label == "chat"
    )));
    // Server-created channels get odd ids.
    let mut b = b;
    let odd =
        b.dc.create_data_channel(Instant::now(), "x", DataChannelInit::default())
            .expect("create");
    assert_eq!(b.dc.channel(odd).and_then(|c| c.stream_id), Some(1));
}

fn exchange(seed: u64, loss: f64, count: usize, max_len: usize) {
    let (mut a, mut b, mut net, ordered, _) = with_channel(seed, DataChannelInit::default());
    let unordered =
        a.dc.create_data_channel(
            net.now,
            "unordered",
            DataChannelInit {
                ordered: false,
                ..DataChannelInit::default()
            },
        )
        .expect("unordered");
    net.loss = loss;
    let mut rng = Rng::from_seed(seed * 31);
    let mut sent: HashMap<bool, Vec<(Bytes, bool)>> = HashMap::new();
    let mut queued = 0usize;
    let mut next: Option<(bool, Bytes, bool)> = None;
    let now = net.now;
    let ok = net.run_until(&mut a, &mut b, Duration::from_secs(3600), |a, b| {
        while queued < count {
            let (on_ordered, data, binary) = next.take().unwrap_or_else(|| {
                let len = rng.below(max_len as u64 + 1) as usize;
                let mut v = vec![0u8; len];
                rng.fill(&mut v);
                (rng.below(2) == 0, Bytes::from(v), rng.below(2) == 0)
            });
            let channel = if on_ordered { ordered } else { unordered };
            match a.dc.send_data(now, channel, data.clone(), binary) {
                Ok(()) => {
                    sent.entry(on_ordered).or_default().push((data, binary));
                    queued += 1;
                }
                Err(DataChannelError::BufferFull) | Err(DataChannelError::NotOpen) => {
                    next = Some((on_ordered, data, binary));
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        b.drain();
        while a.dc.poll_event().is_some() {}
        b.messages().len() == count
    });
    let got = b.messages();
    assert!(ok, "delivered {} of {count}", got.len());
    let remote_ordered = b.opened()[0];
    let ordered_got: Vec<(Bytes, bool)> = got
        .iter()
        .filter(|m| m.0 == remote_ordered)
        .map(|m| (m.1.clone(), m.2))
        .collect();
    assert!(
        ordered_got == sent[&true],
        "ordered channel: identical and in order"
    );
    let mut unordered_got: Vec<(Bytes, bool)> = got
        .iter()
        .filter(|m| m.0 != remote_ordered)
        .map(|m| (m.1.clone(), m.2))
        .collect();
    let mut unordered_sent = sent.get(&false).cloned().unwrap_or_default();
    unordered_got.sort();
    unordered_sent.sort();
    assert!(
        unordered_got == unordered_sent,
        "unordered channel: same messages"
    );
}

#[test]
fn a_thousand_messages_of_random_sizes_arrive_identical_and_in_order() {
    exchange(2, 0.0, 1000, 256 * 1024);
}

#[test]
fn ten_percent_loss_still_delivers_everything() {
    exchange(3, 0.10, 300, 32 * 1024);
}

#[test]
fn partial_reliability_under_loss_delivers_or_abandons() {
    for init in [
        DataChannelInit {
            ordered: false,
            max_retransmits: Some(0),
            ..DataChannelInit::default()
        },
        DataChannelInit {
            ordered: true,
            max_packet_life_time: Some(100),
            ..DataChannelInit::default()
        },
    ] {
        let (mut a, mut b, mut net, id, _) = with_channel(4, init);
        net.loss = 0.15;
        for i in 0..300u32 {
            let mut v = vec![0u8; 200 + (i as usize * 53) % 4000];
            v[..4].copy_from_slice(&i.to_be_bytes());
            a.dc.send_data(net.now, id, Bytes::from(v), true)
                .expect("send");
        }
        net.run_until(&mut a, &mut b, Duration::from_secs(60), |a, b| {
            b.drain();
            while a.dc.poll_event().is_some() {}
            false
        });
        let stats: SctpStats = a.dc.association().expect("assoc").stats();
        let got = b.messages();
        assert!(
            stats.abandoned_messages > 0 && stats.forward_tsns_sent > 0,
            "{stats:?}"
        );
        assert!(!got.is_empty() && got.len() < 300, "got {}", got.len());
        let ids: Vec<u32> = got
            .iter()
            .map(|m| u32::from_be_bytes([m.1[0], m.1[1], m.1[2], m.1[3]]))
            .collect();
        let mut unique = ids.clone();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "no duplicates");
        if a.dc.channel(id).is_some_and(|c| c.ordered) {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered");
        }
        assert_eq!(a.dc.buffered_amount(id), 0);
    }
}

#[test]
fn close_from_either_side_closes_both() {
    let (mut a, mut b, mut net, id, remote_id) = with_channel(5, DataChannelInit::default());
    a.dc.send_text(net.now, id, "before close").expect("send");
    a.dc.close(id);
    assert_eq!(
        a.dc.send_text(net.now, id, "after"),
        Err(DataChannelError::NotOpen)
    );
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            a.drain();
            b.drain();
            a.closed(id) && b.closed(remote_id)
        })
    );
    assert_eq!(&b.messages()[0].1[..], b"before close");
    assert!(a.dc.channel(id).is_none() && b.dc.channel(remote_id).is_none());

    // Now the server opens one and the client... and the server closes it.
    let srv =
        b.dc.create_data_channel(net.now, "from-b", DataChannelInit::default())
            .expect("create");
    let mut a_side = None;
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            while let Some(e) = a.dc.poll_event() {
                if let DataChannelEvent::DataChannel { channel, .. } = e {
                    a_side = Some(channel);
                }
            }
            while b.dc.poll_event().is_some() {}
            a_side.is_some()
        })
    );
    b.dc.close(srv);
    let a_id = a_side.expect("a side");
    a.events.clear();
    b.events.clear();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            a.drain();
            b.drain();
            a.closed(a_id) && b.closed(srv)
        })
    );
    // Stream 0 is free again for the client.
    let again =
        a.dc.create_data_channel(net.now, "again", DataChannelInit::default())
            .expect("create");
    assert_eq!(a.dc.channel(again).and_then(|c| c.stream_id), Some(0));
}

#[test]
fn negotiated_channels_open_without_dcep() {
    let (mut a, mut b, mut net) = pair(6, sctp_config(), sctp_config());
    let init = DataChannelInit {
        negotiated: true,
        id: Some(7),
        ..DataChannelInit::default()
    };
    let ia = a
        .create_data_channel(net.now, "n", init.clone())
        .expect("a");
    let ib = b.create_data_channel(net.now, "n", init).expect("b");
    start(&mut a, &mut b, &mut net);
    let mut pa = Peer {
        dc: a,
        events: Vec::new(),
    };
    let mut pb = Peer {
        dc: b,
        events: Vec::new(),
    };
    let mut sent = false;
    assert!(
        net.run_until(&mut pa, &mut pb, Duration::from_secs(10), |a, b| {
            a.drain();
            b.drain();
            if !sent && a.opened().contains(&ia) {
                a.dc.send_text(Instant::now(), ia, "hi").expect("send");
                sent = true;
            }
            !b.messages().is_empty()
        })
    );
    assert_eq!(pb.messages()[0], (ib, Bytes::from_static(b"hi"), false));
    assert!(!pb
        .events
        .iter()
        .any(|e| matches!(e, DataChannelEvent::DataChannel { .. })));
    assert_eq!(pb.dc.stats().bad_dcep_messages, 0);
}

#[test]
fn empty_messages_use_ppid_56_57_and_do_not_stall() {
    let (mut a, mut b, mut net, id, remote_id) = with_channel(7, DataChannelInit::default());
    a.dc.send_data(net.now, id, Bytes::new(), false)
        .expect("empty text");
    a.dc.send_data(net.now, id, Bytes::new(), true)
        .expect("empty binary");
    a.dc.send_text(net.now, id, "after").expect("text");
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |_, b| {
            b.drain();
            b.messages().len() == 3
        })
    );
    assert_eq!(
        b.messages(),
        vec![
            (remote_id, Bytes::new(), false),
            (remote_id, Bytes::new(), true),
            (remote_id, Bytes::from_static(b"after"), false),
        ]
    );
}

#[test]
fn deprecated_partial_ppids_are_reassembled() {
    let (mut a, mut b, mut net, id, remote_id) = with_channel(8, DataChannelInit::default());
    let stream = a.dc.channel(id).and_then(|c| c.stream_id).expect("stream");
    let assoc = a.dc.association.as_mut().expect("assoc");
    for (ppid, part) in [
        (ppid::STRING_PARTIAL, "hel"),
        (ppid::STRING_PARTIAL, "lo "),
        (ppid::STRING, "world"),
    ] {
        assoc
            .send(
                net.now,
                stream,
                ppid,
                Bytes::from(part),
                false,
                Reliability::Reliable,
            )
            .expect("send");
    }
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |_, b| {
            b.drain();
            !b.messages().is_empty()
        })
    );
    assert_eq!(
        b.messages(),
        vec![(remote_id, Bytes::from_static(b"hello world"), false)]
    );
}

#[test]
fn too_large_for_the_remote_and_invalid_parameters_are_errors() {
    let (mut a, _, net, id, _) = with_channel(9, DataChannelInit::default());
    assert_eq!(
        a.dc.send_data(net.now, id, Bytes::from(vec![0u8; 262_145]), true),
        Err(DataChannelError::MessageTooLarge)
    );
    assert_eq!(
        a.dc.create_data_channel(
            net.now,
            "bad",
            DataChannelInit {
                max_retransmits: Some(1),
                max_packet_life_time: Some(1),
                ..DataChannelInit::default()
            }
        ),
        Err(DataChannelError::InvalidParameters)
    );
    assert_eq!(
        a.dc.create_data_channel(
            net.now,
            "bad",
            DataChannelInit {
                negotiated: true,
                ..DataChannelInit::default()
            }
        ),
        Err(DataChannelError::InvalidParameters)
    );
}

#[test]
fn peer_that_never_reads_keeps_memory_bounded_and_send_errors_past_the_cap() {
    let ca = SctpConfig {
        send_buffer: 4 * 1024 * 1024,
        ..sctp_config()
    };
    let cb = SctpConfig {
        receive_buffer: 512 * 1024,
        ..sctp_config()
    };
    let (mut a, mut b, mut net) = pair(10, ca, cb);
    let id = a
        .create_data_channel(net.now, "flood", DataChannelInit::default())
        .expect("create");
    start(&mut a, &mut b, &mut net);
    // b reads only until the channel is open, then never again.
    let mut b_open = false;
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            while let Some(e) = b.poll_event() {
                b_open |= matches!(e, DataChannelEvent::DataChannelOpen(_));
            }
            while a.poll_event().is_some() {}
            b_open
                && a.channel(id)
                    .is_some_and(|c| c.state == DataChannelState::Open)
        })
    );
    let chunk = Bytes::from(vec![1u8; 64 * 1024]);
    let mut refused = false;
    for _ in 0..10_000 {
        match a.send_data(net.now, id, chunk.clone(), true) {
            Ok(()) => {}
            Err(DataChannelError::BufferFull) => {
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
        for _ in 0..4 {
            net.step(&mut a, &mut b);
        }
        while a.poll_event().is_some() {}
    }
    assert!(refused);
    net.run_until(&mut a, &mut b, Duration::from_secs(30), |a, _| {
        while a.poll_event().is_some() {}
        false
    });
    let held = b.association().expect("b").received_bytes_held();
    // The 512 KiB buffer, as much again for filling holes, and one chunk.
    assert!(
        held <= b.association().expect("b").max_received_bytes_held()
            && held <= 2 * 512 * 1024 + 32 * 1024,
        "held {held}"
    );
    assert!(a.association().expect("a").total_buffered() <= 4 * 1024 * 1024);
    assert!(a.association().expect("a").is_established());
    // Reading again lets everything through.
    let mut got = 0usize;
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(60), |a, b| {
            while let Some(e) = b.poll_event() {
                if matches!(e, DataChannelEvent::DataChannelMessage { .. }) {
                    got += 1;
                }
            }
            while a.poll_event().is_some() {}
            a.association().expect("a").total_buffered() == 0
        })
    );
    assert!(got > 0);
}

#[test]
fn buffered_amount_low_fires() {
    let (mut a, mut b, mut net, id, _) = with_channel(11, DataChannelInit::default());
    a.dc.set_buffered_amount_low_threshold(id, 1000);
    for _ in 0..20 {
        a.dc.send_data(net.now, id, Bytes::from(vec![0u8; 10_000]), true)
            .expect("send");
    }
    assert!(a.dc.buffered_amount(id) > 1000);
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
            a.drain();
            while b.dc.poll_event().is_some() {}
            a.events.contains(&DataChannelEvent::BufferedAmountLow(id))
        })
    );
}

#[test]
fn random_dcep_and_user_payloads_never_panic() {
    fn prop(messages: Vec<(u8, Vec<u8>)>) -> TestResult {
        let (mut a, mut b, mut net, id, _) = with_channel(12, DataChannelInit::default());
        let stream = a.dc.channel(id).and_then(|c| c.stream_id).expect("stream");
        let assoc = a.dc.association.as_mut().expect("assoc");
        for (p, data) in messages.into_iter().take(20) {
            if data.is_empty() {
                continue;
            }
            let ppid = 48 + u32::from(p % 12);
            let _ = assoc.send(
                net.now,
                stream + u16::from(p % 3) * 2,
                ppid,
                Bytes::from(data),
                false,
                Reliability::Reliable,
            );
        }
        net.run_until(&mut a, &mut b, Duration::from_secs(5), |a, b| {
            while a.dc.poll_event().is_some() {}
            while b.dc.poll_event().is_some() {}
            false
        });
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(50)
        .quickcheck(prop as fn(Vec<(u8, Vec<u8>)>) -> TestResult);
}

/// Closing with messages still queued, over loss and reordering, from either side: every
/// message sent before `close` arrives, then both sides see the channel close, and the
/// stream can carry a new channel.
#[test]
fn close_under_loss_and_reordering_delivers_then_closes() {
    for seed in 40..52u64 {
        let (mut a, mut b, mut net, id, remote_id) = with_channel(seed, DataChannelInit::default());
        net.loss = 0.1;
        net.reorder = 0.2;
        net.duplicate = 0.05;
        for i in 0..30u32 {
            let data = Bytes::from(vec![i as u8; 1 + (i as usize * 911) % 9000]);
            a.dc.send_data(net.now, id, data, true).expect("send");
        }
        let closer_is_a = seed % 2 == 0;
        if closer_is_a {
            a.dc.close(id);
        }
        let mut b_closed_asked = false;
        let done = net.run_until(&mut a, &mut b, Duration::from_secs(120), |a, b| {
            a.drain();
            b.drain();
            if !closer_is_a && !b_closed_asked && b.messages().len() == 30 {
                b.dc.close(remote_id);
                b_closed_asked = true;
            }
            a.closed(id) && b.closed(remote_id)
        });
        assert!(
            done,
            "seed {seed}: {:?} / {:?}",
            a.dc.channel(id),
            b.dc.channel(remote_id)
        );
        let got = b.messages();
        assert_eq!(got.len(), 30, "seed {seed}");
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, m)| m.1.first() == Some(&(i as u8))));
        // Close comes after the messages.
        let close_at = b
            .events
            .iter()
            .position(|e| *e == DataChannelEvent::DataChannelClose(remote_id));
        let last_message = b
            .events
            .iter()
            .rposition(|e| matches!(e, DataChannelEvent::DataChannelMessage { .. }));
        assert!(close_at > last_message, "seed {seed}");
    }
}

#[test]
fn abort_closes_every_channel_on_both_sides() {
    let (mut a, mut b, mut net, id, remote_id) = with_channel(60, DataChannelInit::default());
    assert!(a.dc.is_connected() && b.dc.is_connected());
    a.dc.abort();
    assert!(
        net.run_until(&mut a, &mut b, Duration::from_secs(5), |a, b| {
            a.drain();
            b.drain();
            b.closed(remote_id)
        })
    );
    assert!(a.closed(id));
    assert!(a
        .events
        .contains(&DataChannelEvent::Closed(CloseReason::Aborted)));
    assert!(b
        .events
        .contains(&DataChannelEvent::Closed(CloseReason::AbortedByPeer)));
    assert_eq!(
        a.dc.send_text(net.now, id, "late"),
        Err(DataChannelError::NoSuchChannel)
    );
}

/// Four channel kinds at once over loss, reordering and duplication: reliable channels
/// deliver everything (ordered ones in order), partially reliable ones deliver a subset
/// without duplicates (ordered ones in order), and nothing stays buffered on either side.
#[test]
fn mixed_channels_over_many_bad_networks() {
    for seed in 80..90u64 {
        let (mut a, mut b, mut net, reliable, _) = with_channel(seed, DataChannelInit::default());
        let kinds = [
            DataChannelInit {
                ordered: false,
                ..DataChannelInit::default()
            },
            DataChannelInit {
                ordered: true,
                max_retransmits: Some(1),
                ..DataChannelInit::default()
            },
            DataChannelInit {
                ordered: false,
                max_packet_life_time: Some(150),
                ..DataChannelInit::default()
            },
        ];
        let mut ids = vec![reliable];
        for (i, k) in kinds.into_iter().enumerate() {
            ids.push(
                a.dc.create_data_channel(net.now, &format!("k{i}"), k)
                    .expect("create"),
            );
        }
        assert!(
            net.run_until(&mut a, &mut b, Duration::from_secs(10), |a, b| {
                a.drain();
                b.drain();
                b.opened().len() == 4
            })
        );
        let labels: HashMap<ChannelId, String> =
            b.dc.channel_ids()
                .filter_map(|id| b.dc.channel(id).map(|c| (id, c.label)))
                .collect();
        net.loss = 0.1;
        net.reorder = 0.15;
        net.duplicate = 0.05;
        let mut rng = Rng::from_seed(seed);
        let mut sent = 0u32;
        let done = net.run_until(&mut a, &mut b, Duration::from_secs(600), |a, b| {
            while sent < 400 {
                let which = (sent % 4) as usize;
                let len = 4 + rng.below(6000) as usize;
                let mut v = vec![0u8; len];
                v[..4].copy_from_slice(&sent.to_be_bytes());
                match a
                    .dc
                    .send_data(Instant::now(), ids[which], Bytes::from(v), true)
                {
                    Ok(()) => sent += 1,
                    Err(DataChannelError::BufferFull) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            a.drain();
            b.drain();
            sent == 400 && a.dc.association().is_some_and(|x| x.total_buffered() == 0)
        });
        assert!(done, "seed {seed}");
        net.loss = 0.0;
        net.reorder = 0.0;
        net.duplicate = 0.0;
        net.run_until(&mut a, &mut b, Duration::from_secs(5), |a, b| {
            a.drain();
            b.drain();
            false
        });
        let by_label = |label: &str| -> Vec<u32> {
            b.messages()
                .iter()
                .filter(|m| labels.get(&m.0).map(String::as_str) == Some(label))
                .map(|m| u32::from_be_bytes([m.1[0], m.1[1], m.1[2], m.1[3]]))
                .collect()
        };
        let expected = |k: u32| (0..400u32).filter(|i| i % 4 == k).collect::<Vec<_>>();
        assert_eq!(
            by_label("chat"),
            expected(0),
            "seed {seed}: reliable ordered"
        );
        let mut unordered = by_label("k0");
        unordered.sort_unstable();
        assert_eq!(unordered, expected(1), "seed {seed}: reliable unordered");
        let partial_ordered = by_label("k1");
        assert!(
            partial_ordered.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}"
        );
        let mut partial_unordered = by_label("k2");
        let n = partial_unordered.len();
        partial_unordered.sort_unstable();
        partial_unordered.dedup();
        assert_eq!(partial_unordered.len(), n, "seed {seed}: no duplicates");
        let held =
            b.dc.association()
                .map(|x| x.received_bytes_held() - x.received_stream_state_bytes());
        assert_eq!(held, Some(0), "seed {seed}");
    }
}

/// A connected pair where `b` has `limits`: (a, b, net).
fn limited_pair(seed: u64, limits: DataChannelLimits) -> (Peer, Peer, Net) {
    let now = Instant::now();
    let mut rng = Rng::from_seed(seed);
    let a = DataChannels::new(sctp_config(), rng.fork(), now);
    let b = DataChannels::with_limits(sctp_config(), limits, rng.fork(), now);
    let mut net = Net::new(seed, now);
    let mut pa = Peer {
        dc: a,
        events: Vec::new(),
    };
    let mut pb = Peer {
        dc: b,
        events: Vec::new(),
    };
    start(&mut pa.dc, &mut pb.dc, &mut net);
    assert!(
        net.run_until(&mut pa, &mut pb, Duration::from_secs(10), |a, b| {
            a.drain();
            b.drain();
            a.dc.is_connected() && b.dc.is_connected()
        })
    );
    (pa, pb, net)
}

fn settle(a: &mut Peer, b: &mut Peer, net: &mut Net) {
    net.run_until(a, b, Duration::from_secs(5), |a, b| {
        a.drain();
        b.drain();
        false
    });
}

#[test]
fn dcep_opens_beyond_the_channel_cap_are_refused_and_the_peer_sees_them_close() {
    let limits = DataChannelLimits {
        max_channels: 4,
        ..DataChannelLimits::default()
    };
    let (mut a, mut b, mut net) = limited_pair(31, limits);
    let ids: Vec<ChannelId> = (0..10)
        .map(|i| {
            a.dc.create_data_channel(net.now, &format!("c{i}"), DataChannelInit::default())
                .expect("create")
        })
        .collect();
    settle(&mut a, &mut b, &mut net);
    assert_eq!(b.dc.channel_count(), 4);
    assert_eq!(b.dc.stats().refused_channel_opens, 6);
    // The refused ones were reset: they close at the opener too.
    let closed = ids.iter().filter(|id| a.closed(**id)).count();
    assert_eq!(closed, 6);
    // The accepted ones carry messages.
    let open: Vec<ChannelId> = ids.iter().copied().filter(|id| !a.closed(*id)).collect();
    for id in &open {
        a.dc.send_text(net.now, *id, "hi").expect("send");
    }
    settle(&mut a, &mut b, &mut net);
    assert_eq!(b.messages().len(), 4);
    // Room again once one closes.
    a.dc.close(open[0]);
    settle(&mut a, &mut b, &mut net);
    assert_eq!(b.dc.channel_count(), 3);
    a.dc.create_data_channel(net.now, "later", DataChannelInit::default())
        .expect("create");
    settle(&mut a, &mut b, &mut net);
    assert_eq!(b.dc.channel_count(), 4);
    assert_eq!(b.dc.stats().refused_channel_opens, 6);
}

#[test]
fn dcep_opens_with_an_overlong_label_or_protocol_are_refused() {
    let (mut a, mut b, mut net) = limited_pair(32, DataChannelLimits::default());
    let long = "x".repeat(DataChannelLimits::default().max_label_len + 1);
    let by_label =
        a.dc.create_data_channel(net.now, &long, DataChannelInit::default())
            .expect("create");
    let by_protocol =
        a.dc.create_data_channel(
            net.now,
            "ok",
            DataChannelInit {
                protocol: long.clone(),
                ..DataChannelInit::default()
            },
        )
        .expect("create");
    let fine =
        a.dc.create_data_channel(net.now, &long[..1024], DataChannelInit::default())
            .expect("create");
    settle(&mut a, &mut b, &mut net);
    assert_eq!(b.dc.stats().refused_channel_opens, 2);
    assert_eq!(b.dc.channel_count(), 1);
    assert!(a.closed(by_label) && a.closed(by_protocol) && !a.closed(fine));
}

#[test]
fn partial_messages_over_all_channels_stay_under_one_message_size() {
    let (mut a, mut b, mut net) = limited_pair(33, DataChannelLimits::default());
    let ids: Vec<ChannelId> = (0..16)
        .map(|i| {
            a.dc.create_data_channel(net.now, &format!("p{i}"), DataChannelInit::default())
                .expect("create")
        })
        .collect();
    settle(&mut a, &mut b, &mut net);
    assert_eq!(b.dc.channel_count(), 16);
    // On every channel, deprecated partial parts that never end: 16 × 200 KiB.
    let part = Bytes::from(vec![1u8; 50 * 1024]);
    for round in 0..4 {
        for id in &ids {
            let stream = a.dc.channel(*id).and_then(|c| c.stream_id).expect("stream");
            let assoc = a.dc.association.as_mut().expect("association");
            assoc
                .send(
                    net.now,
                    stream,
                    ppid::BINARY_PARTIAL,
                    part.clone(),
                    false,
                    Reliability::Reliable,
                )
                .expect("send");
        }
        settle(&mut a, &mut b, &mut net);
        assert!(
            b.dc.partial_bytes <= 2 * b.dc.config.max_message_size,
            "round {round}: {} bytes of partial messages",
            b.dc.partial_bytes
        );
        assert!(b.dc.received_bytes_held() <= b.dc.max_received_bytes_held());
    }
    assert!(b.dc.stats().oversized_partial_messages > 0);
    // Channels still work, and a partial message that fits still completes.
    let stream =
        a.dc.channel(ids[0])
            .and_then(|c| c.stream_id)
            .expect("stream");
    let assoc = a.dc.association.as_mut().expect("association");
    assoc
        .send(
            net.now,
            stream,
            ppid::BINARY,
            Bytes::from_static(b"end"),
            false,
            Reliability::Reliable,
        )
        .expect("send");
    settle(&mut a, &mut b, &mut net);
    assert!(b.messages().iter().any(|(_, d, _)| d.ends_with(b"end")));
    assert!(b.dc.received_bytes_held() <= b.dc.max_received_bytes_held());
}
