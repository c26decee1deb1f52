//! No allocation per forwarded packet after warm-up: a deterministic count, not a time.
//!
//! The forwarding path of an SFU on sansrtc, twice: through the `Endpoint` (one socket,
//! the server end of every connection inside it) and through plain `PeerConnection`
//! pairs. Per packet: the publisher's server end receives SRTP (route, unprotect,
//! `Event::Rtp`), the application sends the packet on each viewer's server end
//! (`send_rtp`: write, protect, queue) and takes every transmit (`poll_transmit`). The
//! counting allocator counts this thread's allocations; after warm-up (the first
//! packets fill queues and pools) the count over the next packets must be zero. The
//! virtual clock does not move inside the counted window, so no timer (RTCP reports,
//! consent checks) fires there: those are not per packet.
//!
//! Before the pooled receive payload and send queue, this counted 3 allocations per
//! packet received and 3 per packet sent (see the README's Performance section).

use sansrtc_bench::stack_endpoint::EndpointForward;
use sansrtc_bench::stack_sansrtc::SansPair;
use sansrtc_bench::{alloc, Opts, Pair};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const WARM: usize = 200;
const COUNTED: usize = 1_000;
const VIEWERS: usize = 3;

#[test]
fn endpoint_forwarding_allocates_nothing_per_packet() {
    let mut f = EndpointForward::new(VIEWERS, WARM + COUNTED);
    let mut out = 0;
    for i in 0..WARM {
        out += f.forward(i);
    }
    assert!(out >= WARM * VIEWERS, "warm-up forwarded {out}");
    let before = alloc::allocations();
    let mut out = 0;
    for i in WARM..WARM + COUNTED {
        out += f.forward(i);
    }
    let allocations = alloc::allocations() - before;
    assert_eq!(out, COUNTED * VIEWERS, "every packet reached every viewer");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {COUNTED} packets forwarded to {VIEWERS} viewers"
    );
}

#[test]
fn peer_connection_forwarding_allocates_nothing_per_packet() {
    let start = std::time::Instant::now();
    let mut publisher = SansPair::new(
        0,
        Opts {
            client_tracks: 1,
            ..Default::default()
        },
        start,
    );
    publisher.negotiate();
    publisher.run_until_ready();
    let mut viewers: Vec<SansPair> = (1..=VIEWERS)
        .map(|i| {
            let mut v = SansPair::new(
                i,
                Opts {
                    server_track: true,
                    ..Default::default()
                },
                start,
            );
            v.negotiate();
            v.run_until_ready();
            v
        })
        .collect();
    let now = viewers
        .iter()
        .map(Pair::now)
        .chain([publisher.now()])
        .max()
        .expect("pairs");
    publisher.advance_to(now);
    for v in &mut viewers {
        v.advance_to(now);
    }
    let input = publisher.client_packets(0, 1, WARM + COUNTED);
    let mut rtp = Vec::with_capacity(4);
    let mut run = |range: std::ops::Range<usize>| {
        let mut out = 0;
        for data in &input[range] {
            publisher.server_receive(data, &mut rtp);
            for p in rtp.drain(..) {
                for v in &mut viewers {
                    out += v.server_forward(&p, false);
                }
            }
        }
        out
    };
    assert!(run(0..WARM) >= WARM * VIEWERS);
    let before = alloc::allocations();
    let out = run(WARM..WARM + COUNTED);
    let allocations = alloc::allocations() - before;
    assert_eq!(out, COUNTED * VIEWERS, "every packet reached every viewer");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {COUNTED} packets forwarded to {VIEWERS} viewers"
    );
}
