//! Tests of the harness itself, with scripted [`Probe`] nodes: if the network did not
//! really lose, delay, duplicate, reorder, cut or translate, the scenario tests built on
//! it would prove nothing.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use sansrtc::stun::{Attribute, Class, Message, Method, TransactionId};

use crate::{LinkConditions, Network, NodeId, Probe, Received, StunServer};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

const A: &str = "10.0.0.1:1000";
const B: &str = "10.0.0.2:2000";

type Log = Rc<RefCell<Vec<Received>>>;

/// A network with probe "a" sending `count` datagrams to probe "b", one per `spacing`,
/// each carrying its index, and `configure` applied before running.
fn blast(
    seed: u64,
    count: u32,
    spacing: Duration,
    size: usize,
    configure: impl FnOnce(&mut Network, NodeId, NodeId),
) -> (Network, Log) {
    let mut net = Network::new(seed);
    let (mut pa, _) = Probe::new();
    let (pb, log_b) = Probe::new();
    for i in 0..count {
        let mut data = vec![0u8; size.max(4)];
        data[..4].copy_from_slice(&i.to_be_bytes());
        pa.send_at(net.at(spacing * i), addr(A), addr(B), data);
    }
    let a = net.add_node("a", pa, &[addr(A)]);
    let b = net.add_node("b", pb, &[addr(B)]);
    configure(&mut net, a, b);
    // Until the last datagram is sent and every one has arrived.
    net.run_for(spacing * count + Duration::from_secs(10));
    assert!(net.run_until_quiet(Duration::ZERO));
    (net, log_b)
}

fn index(r: &Received) -> u32 {
    u32::from_be_bytes(r.data[..4].try_into().expect("4 bytes"))
}

#[test]
fn latency_is_exact_without_jitter() {
    let (net, log) = blast(1, 3, Duration::from_millis(100), 8, |n, _, _| {
        n.conditions.latency = Duration::from_millis(25);
    });
    let log = log.borrow();
    assert_eq!(log.len(), 3);
    for (i, r) in log.iter().enumerate() {
        let sent = net.at(Duration::from_millis(100) * i as u32);
        assert_eq!(r.at - sent, Duration::from_millis(25));
        assert_eq!((r.local, r.remote), (addr(B), addr(A)));
        assert_eq!(index(r), i as u32);
    }
    assert_eq!(net.stats.delivered, 3);
}

#[test]
fn loss_rate_is_close_to_the_setting_and_counted() {
    let (net, log) = blast(2, 10_000, Duration::from_millis(1), 8, |n, _, _| {
        n.conditions.loss = 0.3;
    });
    let got = log.borrow().len() as u64;
    assert_eq!(got + net.stats.lost, 10_000);
    assert!(
        (2_800..3_200).contains(&net.stats.lost),
        "{}",
        net.stats.lost
    );
}

#[test]
fn duplicates_arrive_twice() {
    let (net, log) = blast(3, 1_000, Duration::from_millis(1), 8, |n, _, _| {
        n.conditions.duplicate = 0.2;
    });
    let log = log.borrow();
    assert_eq!(log.len() as u64, 1_000 + net.stats.duplicated);
    assert!((150..250).contains(&net.stats.duplicated));
    let mut seen: Vec<u32> = log.iter().map(index).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 1_000, "every datagram arrives at least once");
}

#[test]
fn jitter_and_reorder_change_the_order_within_bounds() {
    let (net, log) = blast(4, 1_000, Duration::from_millis(1), 8, |n, _, _| {
        n.conditions.latency = Duration::from_millis(10);
        n.conditions.jitter = Duration::from_millis(5);
        n.conditions.reorder = 0.1;
        n.conditions.reorder_delay = Duration::from_millis(40);
    });
    let log = log.borrow();
    assert_eq!(log.len(), 1_000);
    let order: Vec<u32> = log.iter().map(index).collect();
    let inversions = order.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(inversions > 50, "only {inversions} inversions");
    assert!(net.stats.reordered > 50);
    for r in log.iter() {
        let delay = r.at - net.at(Duration::from_millis(1) * index(r));
        assert!(delay >= Duration::from_millis(10), "{delay:?}");
        assert!(delay < Duration::from_millis(55), "{delay:?}");
    }
}

#[test]
fn a_bottleneck_spaces_datagrams_at_its_rate_and_drops_beyond_its_queue() {
    // 1,000-byte datagrams every 5 ms (1.6 Mbit/s) into 800 kbit/s: each takes 10 ms.
    let (net, log) = blast(5, 200, Duration::from_millis(5), 1000, |n, _, _| {
        n.conditions.latency = Duration::from_millis(20);
        n.conditions.rate_bps = Some(800_000);
        n.conditions.queue_limit = Duration::from_millis(300);
    });
    let log = log.borrow();
    assert_eq!(
        log[0].at - net.at(Duration::ZERO),
        Duration::from_millis(30)
    );
    for pair in log.windows(2) {
        assert_eq!(pair[1].at - pair[0].at, Duration::from_millis(10));
    }
    assert_eq!(log.len() as u64 + net.stats.queue_dropped, 200);
    // The queue fills after about 60 datagrams; from then on every other one is dropped.
    assert!(
        (60..80).contains(&net.stats.queue_dropped),
        "{}",
        net.stats.queue_dropped
    );
    for r in log.iter() {
        let sent = net.at(Duration::from_millis(5) * index(r));
        let delay = r.at - sent;
        assert!(delay <= Duration::from_millis(300 + 10 + 20), "{delay:?}");
    }
    // Under the rate nothing waits: transmission time and latency only.
    let (net, log) = blast(5, 50, Duration::from_millis(5), 1000, |n, _, _| {
        n.conditions.latency = Duration::from_millis(20);
        n.conditions.rate_bps = Some(10_000_000);
    });
    for (i, r) in log.borrow().iter().enumerate() {
        let sent = net.at(Duration::from_millis(5) * i as u32);
        assert_eq!(r.at - sent, Duration::from_micros(20_800));
    }
    assert_eq!(net.stats.queue_dropped, 0);
}

#[test]
fn datagrams_over_the_mtu_are_dropped_and_counted() {
    let (net, log) = blast(5, 10, Duration::from_millis(1), 600, |n, _, _| {
        n.conditions.mtu = 576;
    });
    assert!(log.borrow().is_empty());
    assert_eq!(net.stats.too_big, 10);
    let (net, log) = blast(5, 10, Duration::from_millis(1), 576, |n, _, _| {
        n.conditions.mtu = 576;
    });
    assert_eq!(log.borrow().len(), 10);
    assert_eq!(net.stats.too_big, 0);
}

#[test]
fn scheduled_cut_drops_exactly_its_window() {
    // One datagram per 10 ms for 1 s, 5 ms latency; cut from 300 ms to 600 ms. A datagram
    // on the wire when the cut starts is dropped too.
    let (net, log) = blast(6, 100, Duration::from_millis(10), 8, |n, a, b| {
        n.conditions.latency = Duration::from_millis(5);
        n.cut_at(Duration::from_millis(300), a, b);
        n.restore_at(Duration::from_millis(600), a, b);
    });
    let got: Vec<u32> = log.borrow().iter().map(index).collect();
    let expected: Vec<u32> = (0..100).filter(|i| !(30..60).contains(i)).collect();
    assert_eq!(got, expected);
    assert_eq!(net.stats.cut, 30);
    assert!(net.timeline_text().contains("link a -> b cut"));
    assert!(net.timeline_text().contains("link a -> b restored"));
}

#[test]
fn per_direction_conditions_and_one_way_cut() {
    let mut net = Network::new(7);
    let (mut pa, log_a) = Probe::new();
    let (mut pb, log_b) = Probe::new();
    for i in 0..10u32 {
        let t = net.at(Duration::from_millis(10) * i);
        pa.send_at(t, addr(A), addr(B), i.to_be_bytes().to_vec());
        pb.send_at(t, addr(B), addr(A), i.to_be_bytes().to_vec());
    }
    let a = net.add_node("a", pa, &[addr(A)]);
    let b = net.add_node("b", pb, &[addr(B)]);
    net.set_link(
        a,
        b,
        LinkConditions::with_latency(Duration::from_millis(100)),
    );
    net.set_cut_one_way(b, a, true);
    assert!(net.is_cut(b, a) && !net.is_cut(a, b));
    assert!(net.run_until_quiet(Duration::from_secs(10)));
    assert!(log_a.borrow().is_empty(), "b -> a is cut");
    let log_b = log_b.borrow();
    assert_eq!(log_b.len(), 10);
    assert_eq!(
        log_b[0].at - net.at(Duration::ZERO),
        Duration::from_millis(100)
    );
    assert_eq!(net.stats.cut, 10);
}

#[test]
fn one_to_one_nat_translates_both_ways() {
    let mut net = Network::new(8);
    let (mut inside, log_inside) = Probe::new();
    let (outside, log_outside) = Probe::new();
    let private = addr("192.168.1.2:5000");
    let public = addr("203.0.113.7:40000");
    let server = addr("198.51.100.1:7000");
    inside.send_at(net.now(), private, server, b"hello".to_vec());
    net.add_node("inside", inside, &[private]);
    net.add_node("outside", outside, &[server]);
    net.add_nat(private, public);
    assert!(net.run_until_quiet(Duration::from_secs(1)));
    let got = log_outside.borrow().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].remote, public, "the outside sees the public address");
    // A datagram to the public address reaches the inside node on its private address;
    // one to the private address is unroutable from outside.
    let (mut replier, _) = Probe::new();
    let other = addr("198.51.100.2:7000");
    replier.send_at(net.now(), other, public, b"to public".to_vec());
    replier.send_at(net.now(), other, private, b"to private".to_vec());
    net.add_node("replier", replier, &[other]);
    assert!(net.run_until_quiet(Duration::from_secs(1)));
    let got = log_inside.borrow().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].local, got[0].data.as_slice()),
        (private, &b"to public"[..])
    );
    assert_eq!(net.stats.unroutable, 1);
}

#[test]
fn stun_server_reflects_the_public_address() {
    let mut net = Network::new(9);
    let (mut client, log) = Probe::new();
    let private = addr("192.168.1.2:5000");
    let public = addr("203.0.113.7:40000");
    let stun = addr("198.51.100.1:3478");
    let tid = TransactionId([7; 12]);
    let request = Message::new(Class::Request, Method::BINDING, tid).encode_to_vec(None, true);
    client.send_at(net.now(), private, stun, request);
    client.send_at(net.now(), private, stun, b"not stun".to_vec());
    net.add_node("client", client, &[private]);
    let server = net.add_node("stun", StunServer::default(), &[stun]);
    net.add_nat(private, public);
    assert!(net.run_until_quiet(Duration::from_secs(1)));
    let model = net.node_mut::<StunServer>(server).expect("a StunServer");
    assert_eq!((model.answered, model.ignored), (1, 1));
    assert!(net.node_mut::<Probe>(server).is_none(), "not a Probe");
    let log = log.borrow();
    assert_eq!(log.len(), 1, "one response, the junk ignored");
    let response = Message::parse(&log[0].data).expect("STUN response");
    assert_eq!(response.class, Class::Success);
    assert_eq!(response.transaction_id, tid);
    assert!(response
        .attributes
        .contains(&Attribute::XorMappedAddress(public)));
}

#[test]
fn same_seed_same_deliveries_other_seed_other_ones() {
    let run = |seed| {
        let (net, log) = blast(seed, 500, Duration::from_millis(1), 8, |n, _, _| {
            n.conditions.loss = 0.2;
            n.conditions.jitter = Duration::from_millis(20);
            n.conditions.duplicate = 0.1;
        });
        let start = net.at(Duration::ZERO);
        let deliveries: Vec<(Duration, u32)> = log
            .borrow()
            .iter()
            .map(|r| (r.at - start, index(r)))
            .collect();
        deliveries
    };
    let (first, again, other) = (run(10), run(10), run(11));
    assert!(first.len() > 300);
    assert!(first == again, "same seed, different deliveries");
    assert!(first != other, "another seed, the same deliveries");
}

#[test]
fn run_for_ends_exactly_and_run_until_reports_timeouts() {
    let mut net = Network::new(12);
    net.run_for(Duration::from_millis(1234));
    assert_eq!(net.elapsed(), Duration::from_millis(1234));
    assert!(!net.run_until(Duration::from_secs(2), |_| false));
    assert_eq!(net.elapsed(), Duration::from_millis(3234));
}

#[test]
#[should_panic(expected = "livelock")]
fn a_deadline_stuck_in_the_past_is_reported() {
    let mut net = Network::new(13);
    let (mut stuck, _) = Probe::new();
    stuck.stuck_at(net.now());
    net.add_node("stuck", stuck, &[addr(A)]);
    net.run_for(Duration::from_secs(1));
}

#[test]
fn the_attacker_sees_drops_replaces_and_spoofs() {
    let mut net = Network::new(7);
    let (mut pa, _) = Probe::new();
    let (pb, log_b) = Probe::new();
    for i in 0..3u8 {
        pa.send_at(
            net.at(Duration::from_millis(10 * u64::from(i))),
            addr(A),
            addr(B),
            vec![i],
        );
    }
    net.add_node("a", pa, &[addr(A)]);
    net.add_node("b", pb, &[addr(B)]);
    net.start_capture();
    // On path: drop the first datagram, rewrite the second, let the third through.
    net.set_interceptor(|c| match c.data.first() {
        Some(0) => crate::Verdict::Drop,
        Some(1) => crate::Verdict::Replace(vec![0xEE]),
        _ => crate::Verdict::Deliver,
    });
    // Off path: a datagram that claims to come from a.
    net.inject_after(Duration::from_millis(50), addr(A), addr(B), vec![0x42]);
    net.run_for(Duration::from_secs(1));
    let got: Vec<Vec<u8>> = log_b.borrow().iter().map(|r| r.data.clone()).collect();
    assert_eq!(got, vec![vec![0xEE], vec![2], vec![0x42]]);
    assert!(
        log_b.borrow().iter().all(|r| r.remote == addr(A)),
        "spoofed source kept"
    );
    let seen: Vec<(Vec<u8>, bool)> = net
        .captured()
        .iter()
        .map(|c| (c.data.clone(), c.injected))
        .collect();
    assert_eq!(
        seen,
        vec![
            (vec![0], false),
            (vec![1], false),
            (vec![2], false),
            (vec![0x42], true)
        ],
        "the capture holds what was sent, before any rewrite"
    );
}
