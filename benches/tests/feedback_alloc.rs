//! No allocation per packet in steady state for the feedback bookkeeping: the NACK
//! generator's receive path (with loss, so NACKs and retries happen), the retransmission
//! history's store and the transport-wide receiver's record-and-feedback path. A
//! deterministic count, not a time; the virtual clock moves inside the counted window so
//! NACK retries, give-ups and feedback writing are counted too.

use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::nack::{NackConfig, NackGenerator};
use sansrtc::media::retransmit::{RetransmitConfig, RetransmitHistory};
use sansrtc::media::twcc::{TwccReceiver, TwccReceiverConfig};
use sansrtc_bench::alloc;
use sansrtc_bench::feedback::{media_packet, Loss};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

const WARM: u16 = 2_000;
const COUNTED: u16 = 20_000;

#[test]
fn feedback_paths_allocate_nothing_per_packet() {
    let mut nack = NackGenerator::new(NackConfig::default());
    let mut history = RetransmitHistory::new(RetransmitConfig::default(), 1, None);
    let mut twcc = TwccReceiver::new(TwccReceiverConfig::default());
    let payload = Bytes::from(vec![0u8; 1200]);
    let mut loss = Loss::new(5);
    let mut pairs = Vec::with_capacity(256);
    let mut buf = [0u8; 1500];
    let mut now = Instant::now();
    let mut step = |seq: u16, now: Instant, nacked: &mut usize, feedbacks: &mut usize| {
        history.store(&media_packet(&payload, seq), now);
        if loss.lost() {
            return;
        }
        nack.on_packet(seq, now);
        pairs.clear();
        *nacked += nack.poll_nack(now, &mut pairs);
        twcc.on_packet(seq, now);
        while let Ok(Some(_)) = twcc.poll_feedback(now, 1, 2, &mut buf) {
            *feedbacks += 1;
        }
    };
    let (mut nacked, mut feedbacks) = (0, 0);
    for seq in 0..WARM {
        now += Duration::from_millis(1);
        step(seq, now, &mut nacked, &mut feedbacks);
    }
    let before = alloc::allocations();
    let (mut nacked, mut feedbacks) = (0, 0);
    for seq in WARM..WARM + COUNTED {
        now += Duration::from_millis(1);
        step(seq, now, &mut nacked, &mut feedbacks);
    }
    let allocations = alloc::allocations() - before;
    assert!(nacked > 500, "5 % loss makes NACKs: {nacked}");
    assert!(feedbacks > 100, "feedback was written: {feedbacks}");
    assert_eq!(
        allocations, 0,
        "{allocations} allocations for {COUNTED} packets"
    );
}
