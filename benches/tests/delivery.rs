//! The media rows measure real forwarding: on every stack, packets the publisher's server
//! end receives and the viewer's server end sends arrive at the viewer as RTP. (Counts
//! only; nothing here is timed.)

use std::time::{Duration, Instant};

use sansrtc_bench::stack_rtc::RtcPair;
use sansrtc_bench::stack_sansrtc::SansPair;
use sansrtc_bench::stack_str0m::Str0mPair;
use sansrtc_bench::{Opts, Pair};

const PACKETS: usize = 20;

fn forwarded_packets_reach_the_viewer<P: Pair>() {
    let start = Instant::now();
    let mut publisher = P::new(
        0,
        Opts {
            client_tracks: 1,
            ..Default::default()
        },
        start,
    );
    publisher.negotiate();
    publisher.run_until_ready();
    let mut viewer = P::new(
        1,
        Opts {
            server_track: true,
            ..Default::default()
        },
        start,
    );
    viewer.negotiate();
    viewer.run_until_ready();
    let now = publisher.now().max(viewer.now());
    publisher.advance_to(now);
    viewer.advance_to(now);
    let input = publisher.client_packets(0, 1, PACKETS);
    assert_eq!(
        input.len(),
        PACKETS,
        "{}: publisher packets",
        std::any::type_name::<P>()
    );
    let mut rtp = Vec::new();
    let mut sent = 0;
    for data in &input {
        publisher.server_receive(data, &mut rtp);
        for p in rtp.drain(..) {
            sent += viewer.server_forward(&p, true);
        }
    }
    assert!(
        sent >= PACKETS,
        "{}: {sent} datagrams forwarded",
        std::any::type_name::<P>()
    );
    let t = viewer.now() + Duration::from_millis(50);
    viewer.advance_to(t);
    assert_eq!(
        viewer.client_rtp(),
        PACKETS as u64,
        "{}: RTP packets at the viewer",
        std::any::type_name::<P>()
    );
}

#[test]
fn sansrtc_forwarding_delivers() {
    forwarded_packets_reach_the_viewer::<SansPair>();
}

#[test]
fn str0m_forwarding_delivers() {
    forwarded_packets_reach_the_viewer::<Str0mPair>();
}

#[test]
fn rtc_forwarding_delivers() {
    forwarded_packets_reach_the_viewer::<RtcPair>();
}
