//! A sans-IO jitter buffer for one received RTP stream (one SSRC): it puts packets back
//! in sequence order, waits a bounded time for missing ones (the window in which a NACK
//! can repair them), and hands out whole frames, depacketized by the stream's
//! [`Codec`], in order.
//!
//! Time comes in as `now` arguments. [`JitterBuffer::poll_timeout`] is when the wait
//! for the oldest missing packet ends; [`JitterBuffer::handle_timeout`] then gives up on
//! it. A video frame that lost a packet is never handed out: the buffer drops it and the
//! frames after it until the next keyframe, and raises a keyframe request
//! ([`JitterBuffer::poll_keyframe_request`]) the caller turns into a PLI. Audio (Opus)
//! frames stand alone, so a lost audio packet only skips itself.
//!
//! Frame boundaries: a video frame is the packets from a frame start to the marker bit
//! (or to the last packet before the timestamp changes), all present. After a loss the
//! packet before the next one is unknown; the next frame is then recognised by the
//! codec's start-of-frame hint ([`Codec::starts_frame`]) and a timestamp that differs
//! from the broken frame's.
//!
//! Memory is bounded by [`JitterBufferConfig::max_packets`] and
//! [`JitterBufferConfig::max_bytes`] (payload bytes): past either, the oldest packets
//! are dropped (counted as overflow) as if lost, and so are the oldest awaited when a
//! packet arrives `max_packets` or more ahead of them; a packet twice that far ahead
//! restarts the buffer at that packet (the sender jumped). The sequence numbers awaited
//! ([`JitterBuffer::missing`]) lie between the oldest awaited and the newest received,
//! so there are fewer than `max_packets` of them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::media::RtpPacket;
use crate::rtp::codec::Codec;

/// Limits and timing of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterBufferConfig {
    /// How long a missing packet is waited for, from the arrival of the packet after it
    /// (long enough for a NACK and its retransmission: a few round trips).
    pub max_wait: Duration,
    /// Packets held at most.
    pub max_packets: usize,
    /// Payload bytes held at most.
    pub max_bytes: usize,
}

impl Default for JitterBufferConfig {
    /// 200 ms of waiting, 2,048 packets, 4 MiB.
    fn default() -> Self {
        JitterBufferConfig {
            max_wait: Duration::from_millis(200),
            max_packets: 2048,
            max_bytes: 4 << 20,
        }
    }
}

impl JitterBufferConfig {
    /// The default limits with another waiting time.
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The default waiting time with other memory limits (each at least 1).
    pub fn with_limits(mut self, max_packets: usize, max_bytes: usize) -> Self {
        self.max_packets = max_packets.max(1);
        self.max_bytes = max_bytes.max(1);
        self
    }
}

/// A whole frame, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The RTP timestamp of its packets.
    pub timestamp: u32,
    /// The extended sequence number of its first packet.
    pub first_sequence: u64,
    /// Its packets.
    pub packets: usize,
    /// The codec bitstream (see [`crate::rtp::codec`] for each codec's form).
    pub data: Bytes,
    /// Whether it decodes without earlier frames.
    pub is_keyframe: bool,
}

/// Counters of a [`JitterBuffer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterBufferStats {
    /// Packets accepted into the buffer.
    pub packets: u64,
    /// Packets dropped as duplicates of one held.
    pub duplicates: u64,
    /// Packets dropped because their place had already been handed out or given up.
    pub too_old: u64,
    /// Sequence numbers given up on after waiting.
    pub lost: u64,
    /// Packets dropped to stay within the memory bounds.
    pub overflow: u64,
    /// Times the stream jumped more than twice `max_packets` ahead and the buffer
    /// restarted.
    pub restarts: u64,
    /// Padding-only packets skipped.
    pub padding: u64,
    /// Frames handed out.
    pub frames: u64,
    /// Frames dropped while waiting for a keyframe (or cut by a loss).
    pub frames_dropped: u64,
    /// Frames whose payloads the depacketizer refused.
    pub malformed: u64,
}

#[derive(Debug)]
struct Stored {
    packet: RtpPacket,
    arrival: Instant,
}

/// The jitter buffer of one stream. See the module documentation.
#[derive(Debug)]
pub struct JitterBuffer {
    codec: Codec,
    config: JitterBufferConfig,
    packets: BTreeMap<u64, Stored>,
    bytes: usize,
    /// The highest extended sequence number received.
    highest: Option<u64>,
    /// The next extended sequence number to hand out (the oldest awaited).
    next: Option<u64>,
    /// The timestamp and marker of the packet before `next`, when it was consumed in
    /// order; `None` after a loss.
    previous: Option<(u32, bool)>,
    /// The timestamp of the last frame consumed or broken.
    last_timestamp: Option<u32>,
    waiting_for_keyframe: bool,
    keyframe_request: bool,
    stats: JitterBufferStats,
}

impl JitterBuffer {
    /// An empty buffer for a stream of `codec`. A video stream's first frame handed out
    /// is a keyframe.
    pub fn new(codec: Codec, config: JitterBufferConfig) -> JitterBuffer {
        JitterBuffer {
            codec,
            config,
            packets: BTreeMap::new(),
            bytes: 0,
            highest: None,
            next: None,
            previous: None,
            last_timestamp: None,
            waiting_for_keyframe: !codec.is_audio(),
            keyframe_request: false,
            stats: JitterBufferStats::default(),
        }
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The counters.
    pub fn stats(&self) -> JitterBufferStats {
        self.stats
    }

    /// Packets held.
    pub fn buffered_packets(&self) -> usize {
        self.packets.len()
    }

    /// Payload bytes held.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether frames are being dropped until a keyframe arrives.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Whether the buffer needs a keyframe since the last call (a loss was given up on,
    /// or frames are dropped until one comes); clears the request. Rate-limiting the
    /// PLIs is the caller's.
    pub fn poll_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    fn extend(&self, seq: u16) -> u64 {
        match self.highest {
            // Start high so that a step back stays above zero.
            None => (1 << 32) | u64::from(seq),
            Some(h) => {
                let delta = i64::from(seq.wrapping_sub(h as u16) as i16);
                h.saturating_add_signed(delta)
            }
        }
    }

    /// Take a received packet (of this buffer's stream).
    pub fn insert(&mut self, now: Instant, packet: RtpPacket) {
        let ext = self.extend(packet.sequence_number);
        let next = *self.next.get_or_insert(ext);
        if ext < next {
            self.stats.too_old += 1;
            return;
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return;
        }
        let window = self.config.max_packets as u64;
        if ext - next >= 2 * window {
            self.restart(ext);
        } else if ext - next >= window {
            // Keep the awaited range within max_packets: the oldest are given up.
            self.stats.overflow += 1;
            self.give_up_before(ext + 1 - window);
        }
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.bytes += packet.payload.len();
        self.packets.insert(
            ext,
            Stored {
                packet,
                arrival: now,
            },
        );
        self.stats.packets += 1;
        while self.packets.len() > self.config.max_packets || self.bytes > self.config.max_bytes {
            let Some((&oldest, _)) = self.packets.first_key_value() else {
                break;
            };
            self.stats.overflow += 1;
            self.give_up_before(oldest + 1);
        }
    }

    /// The sender jumped more than `max_packets` ahead: drop everything, start at `ext`.
    fn restart(&mut self, ext: u64) {
        self.stats.restarts += 1;
        let lost = self.stats.lost;
        self.give_up_before(ext);
        // A jump is not a loss of every number skipped.
        self.stats.lost = lost;
    }

    /// Drop everything before `ext`, counting the sequence numbers never received as
    /// lost, and wait for a keyframe (video).
    fn give_up_before(&mut self, ext: u64) {
        let Some(next) = self.next else {
            return;
        };
        let mut lost = ext.saturating_sub(next);
        while let Some(entry) = self.packets.first_entry() {
            if *entry.key() >= ext {
                break;
            }
            let stored = entry.remove();
            lost -= 1;
            self.bytes -= stored.packet.payload.len();
            self.last_timestamp = Some(stored.packet.timestamp);
        }
        self.stats.lost += lost;
        self.next = Some(ext.max(next));
        self.previous = None;
        if !self.codec.is_audio() {
            self.waiting_for_keyframe = true;
            self.keyframe_request = true;
        }
    }

    /// The first missing sequence number with a packet after it, and when that packet
    /// arrived.
    fn first_hole(&self) -> Option<(u64, u64, Instant)> {
        let mut at = self.next?;
        while self.packets.contains_key(&at) {
            at += 1;
        }
        let (&after, stored) = self.packets.range(at..).next()?;
        Some((at, after, stored.arrival))
    }

    /// When the wait for the oldest missing packet ends (`None`: nothing awaited).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.first_hole()
            .map(|(_, _, arrival)| arrival + self.config.max_wait)
    }

    /// Give up on missing packets whose wait has ended: the frames they belong to are
    /// dropped, and a video stream waits for a keyframe.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, after, arrival)) = self.first_hole() {
            if arrival + self.config.max_wait > now {
                return;
            }
            self.give_up_before(after);
        }
    }

    /// The sequence numbers awaited: missing between the oldest awaited and the newest
    /// received, oldest first.
    pub fn missing(&self) -> impl Iterator<Item = u16> + '_ {
        let range = match (self.next, self.highest) {
            (Some(n), Some(h)) if h >= n => n..h,
            _ => 0..0,
        };
        range
            .filter(|ext| !self.packets.contains_key(ext))
            .map(|ext| ext as u16)
    }

    /// Whether the packet at `ext` begins a frame.
    fn starts_frame(&self, packet: &RtpPacket) -> bool {
        if self.codec.is_audio() {
            return true;
        }
        match self.previous {
            Some((timestamp, marker)) => marker || timestamp != packet.timestamp,
            None => {
                self.codec.starts_frame(&packet.payload)
                    && self.last_timestamp != Some(packet.timestamp)
            }
        }
    }

    /// The last sequence number of the frame starting at `start`, if all of it is here
    /// (padding after the marker is not part of it).
    fn frame_end(&self, start: u64) -> Option<u64> {
        if self.codec.is_audio() {
            return Some(start);
        }
        let mut at = start;
        loop {
            let packet = &self.packets.get(&at)?.packet;
            if packet.marker {
                return Some(at);
            }
            let following = &self.packets.get(&(at + 1))?.packet;
            if following.timestamp != packet.timestamp || following.payload.is_empty() {
                return Some(at);
            }
            at += 1;
        }
    }

    /// Remove the packets `start..=end`, in order.
    fn consume(&mut self, start: u64, end: u64) -> Vec<RtpPacket> {
        let mut taken = Vec::with_capacity((end - start + 1) as usize);
        for ext in start..=end {
            if let Some(stored) = self.packets.remove(&ext) {
                self.bytes -= stored.packet.payload.len();
                taken.push(stored.packet);
            }
        }
        if let Some(last) = taken.last() {
            self.previous = Some((last.timestamp, last.marker));
            self.last_timestamp = Some(last.timestamp);
        }
        self.next = Some(end + 1);
        taken
    }

    /// The next whole frame, if it is here.
    pub fn poll_frame(&mut self) -> Option<Frame> {
        loop {
            let start = self.next?;
            let first = &self.packets.get(&start)?.packet;
            if first.payload.is_empty() {
                // Padding (bandwidth probing) between frames: no part of any frame.
                let previous = self.previous;
                self.consume(start, start);
                self.previous = previous;
                self.stats.padding += 1;
                continue;
            }
            if !self.starts_frame(first) {
                // The rest of a frame whose start was lost.
                self.consume(start, start);
                self.previous = None;
                continue;
            }
            let end = self.frame_end(start)?;
            let packets = self.consume(start, end);
            let mut data = Vec::new();
            let timestamp = packets.first().map_or(0, |p| p.timestamp);
            let payloads = packets.iter().filter(|p| !p.payload.is_empty());
            let result = self
                .codec
                .depacketize(payloads.map(|p| &p.payload[..]), &mut data);
            match result {
                Err(_) => {
                    self.stats.malformed += 1;
                    if !self.codec.is_audio() {
                        self.waiting_for_keyframe = true;
                        self.keyframe_request = true;
                    }
                }
                Ok(false) if self.waiting_for_keyframe => {
                    self.stats.frames_dropped += 1;
                    self.keyframe_request = true;
                }
                Ok(is_keyframe) => {
                    self.waiting_for_keyframe = false;
                    self.stats.frames += 1;
                    return Some(Frame {
                        timestamp,
                        first_sequence: start,
                        packets: packets.len(),
                        data: Bytes::from(data),
                        is_keyframe,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::codec::{h264, vp8};
    use quickcheck::{QuickCheck, TestResult};

    const KEY: [u8; 12] = [0x10, 0, 0, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 7, 7];
    const DELTA: [u8; 6] = [0x31, 0, 0, 5, 5, 5];

    /// A VP8 stream: frame `n` has timestamp `n * 3000`; keyframes where `key(n)`, each
    /// frame split into `per_frame` packets.
    struct Stream {
        seq: u16,
        per_frame: usize,
    }

    impl Stream {
        fn new(seq: u16, per_frame: usize) -> Stream {
            Stream { seq, per_frame }
        }

        fn frame(&mut self, n: u32, key: bool) -> Vec<RtpPacket> {
            let mut data = if key { KEY.to_vec() } else { DELTA.to_vec() };
            data.extend(n.to_be_bytes());
            let mtu = 4 + data.len().div_ceil(self.per_frame);
            let payloads = vp8::packetize(&data, mtu, n as u16).expect("valid in this test");
            let count = payloads.len();
            payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| {
                    let seq = self.seq;
                    self.seq = self.seq.wrapping_add(1);
                    RtpPacket {
                        payload_type: 96,
                        sequence_number: seq,
                        timestamp: n * 3000,
                        marker: i + 1 == count,
                        ssrc: 1,
                        payload,
                    }
                })
                .collect()
        }
    }

    fn frames(jb: &mut JitterBuffer) -> Vec<(u32, bool)> {
        std::iter::from_fn(|| jb.poll_frame())
            .map(|f| (f.timestamp / 3000, f.is_keyframe))
            .collect()
    }

    fn vp8_buffer() -> JitterBuffer {
        JitterBuffer::new(Codec::Vp8, JitterBufferConfig::default())
    }

    #[test]
    fn frames_in_order_with_their_data() {
        let t0 = Instant::now();
        let mut jb = vp8_buffer();
        let mut s = Stream::new(100, 3);
        for p in s.frame(0, true) {
            jb.insert(t0, p);
        }
        let f = jb.poll_frame().expect("the keyframe");
        assert!(f.is_keyframe);
        assert_eq!((f.packets, f.first_sequence as u16), (3, 100));
        assert_eq!(f.data[..KEY.len()], KEY);
        assert_eq!(vp8::keyframe_size(&f.data), Some((640, 480)));
        for p in s.frame(1, false) {
            jb.insert(t0, p);
        }
        assert_eq!(frames(&mut jb), [(1, false)]);
        assert_eq!(jb.buffered_packets(), 0);
        assert_eq!(jb.buffered_bytes(), 0);
        assert_eq!(jb.poll_timeout(), None);
    }

    #[test]
    fn reordered_packets_come_out_in_order() {
        let t0 = Instant::now();
        let mut jb = vp8_buffer();
        let mut s = Stream::new(7, 3);
        let mut packets: Vec<RtpPacket> = (0..4).flat_map(|n| s.frame(n, n == 0)).collect();
        // The first packet first (it starts the stream), the rest shuffled.
        packets[1..].reverse();
        packets.swap(3, 8);
        for p in packets {
            jb.insert(t0, p);
        }
        assert_eq!(
            frames(&mut jb),
            [(0, true), (1, false), (2, false), (3, false)]
        );
        assert_eq!(jb.stats().lost, 0);
        assert!(!jb.poll_keyframe_request());
    }

    #[test]
    fn a_late_packet_within_the_wait_repairs_the_frame() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(100);
        let mut jb = JitterBuffer::new(
            Codec::Vp8,
            JitterBufferConfig::default().with_max_wait(wait),
        );
        let mut s = Stream::new(65_530, 2);
        let mut packets: Vec<RtpPacket> = (0..3).flat_map(|n| s.frame(n, n == 0)).collect();
        let late = packets.remove(3); // the second packet of frame 1
        for p in packets {
            jb.insert(t0, p);
        }
        assert_eq!(frames(&mut jb), [(0, true)]);
        assert_eq!(jb.missing().collect::<Vec<_>>(), [late.sequence_number]);
        assert_eq!(jb.poll_timeout(), Some(t0 + wait));
        jb.handle_timeout(t0 + wait - Duration::from_millis(1));
        jb.insert(t0 + Duration::from_millis(60), late);
        assert_eq!(frames(&mut jb), [(1, false), (2, false)]);
        assert_eq!(jb.missing().count(), 0);
        assert_eq!((jb.stats().lost, jb.poll_keyframe_request()), (0, false));
    }

    #[test]
    fn giving_up_drops_frames_until_a_keyframe() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(100);
        let mut jb = JitterBuffer::new(
            Codec::Vp8,
            JitterBufferConfig::default().with_max_wait(wait),
        );
        let mut s = Stream::new(1, 2);
        let mut packets: Vec<RtpPacket> =
            (0..5).flat_map(|n| s.frame(n, n == 0 || n == 4)).collect();
        packets.remove(2); // the first packet of frame 1
        let t1 = t0 + Duration::from_millis(20);
        for p in packets.drain(..5) {
            jb.insert(t1, p);
        }
        assert_eq!(frames(&mut jb), [(0, true)]);
        assert_eq!(jb.poll_timeout(), Some(t1 + wait));
        jb.handle_timeout(t1 + wait);
        assert!(
            jb.poll_keyframe_request(),
            "a loss given up asks for a keyframe"
        );
        assert!(jb.waiting_for_keyframe());
        // Frame 1's second half and frames 2 and 3 are dropped, frame 4 (a keyframe)
        // comes out.
        for p in packets {
            jb.insert(t1 + wait, p);
        }
        assert_eq!(frames(&mut jb), [(4, true)]);
        let stats = jb.stats();
        assert_eq!((stats.lost, stats.frames_dropped, stats.frames), (1, 2, 2));
        assert!(!jb.waiting_for_keyframe());
    }

    #[test]
    fn padding_between_frames_is_skipped() {
        let t0 = Instant::now();
        let mut jb = vp8_buffer();
        let mut s = Stream::new(500, 2);
        let mut packets = s.frame(0, true);
        let mut padding = packets[1].clone();
        padding.payload = Bytes::new();
        padding.marker = false;
        padding.sequence_number = s.seq;
        s.seq += 1;
        packets.push(padding);
        packets.extend(s.frame(1, false));
        for p in packets {
            jb.insert(t0, p);
        }
        assert_eq!(frames(&mut jb), [(0, true), (1, false)]);
        assert_eq!((jb.stats().padding, jb.stats().malformed), (1, 0));
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let t0 = Instant::now();
        let mut jb = vp8_buffer();
        let mut s = Stream::new(65_533, 2);
        let packets: Vec<RtpPacket> = (0..4).flat_map(|n| s.frame(n, n == 0)).collect();
        assert_eq!(
            packets.last().expect("valid in this test").sequence_number,
            4
        );
        for p in packets {
            jb.insert(t0, p);
        }
        let out: Vec<Frame> = std::iter::from_fn(|| jb.poll_frame()).collect();
        assert_eq!(out.len(), 4);
        assert_eq!(out[3].first_sequence - out[0].first_sequence, 6);
    }

    #[test]
    fn duplicates_and_old_packets_are_counted_and_dropped() {
        let t0 = Instant::now();
        let mut jb = vp8_buffer();
        let mut s = Stream::new(10, 2);
        let key = s.frame(0, true);
        jb.insert(t0, key[0].clone());
        jb.insert(t0, key[0].clone());
        jb.insert(t0, key[1].clone());
        assert_eq!(frames(&mut jb), [(0, true)]);
        jb.insert(t0, key[1].clone());
        let stats = jb.stats();
        assert_eq!((stats.duplicates, stats.too_old, stats.packets), (1, 1, 2));
        assert_eq!(jb.buffered_packets(), 0);
    }

    #[test]
    fn memory_stays_within_the_bounds() {
        let t0 = Instant::now();
        let config = JitterBufferConfig::default().with_limits(16, 300);
        let mut jb = JitterBuffer::new(Codec::Vp8, config);
        let mut s = Stream::new(0, 1);
        let mut packets: Vec<RtpPacket> = (0..40).flat_map(|n| s.frame(n, n % 10 == 0)).collect();
        packets.remove(1); // frame 1 never arrives: nothing can be handed out after it
        for p in packets.drain(..) {
            jb.insert(t0, p);
            assert!(jb.buffered_packets() <= 16 && jb.buffered_bytes() <= 300);
        }
        assert!(jb.stats().overflow > 0);
        assert!(jb.missing().count() < 16);
        // Overflow counts as a loss: from the next keyframe on, frames come out again.
        let out = frames(&mut jb);
        assert_eq!(out.first(), Some(&(30, true)), "{out:?}");
        // A jump of more than max_packets restarts the buffer at the new packet.
        let mut far = Stream::new(30_000, 1);
        for p in far.frame(50, true) {
            jb.insert(t0, p);
        }
        assert_eq!(jb.stats().restarts, 1);
        assert_eq!(frames(&mut jb), [(50, true)]);
    }

    #[test]
    fn h264_access_units_and_a_lost_fragment() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(50);
        let mut jb = JitterBuffer::new(
            Codec::H264,
            JitterBufferConfig::default().with_max_wait(wait),
        );
        let idr: Vec<u8> = [
            &h264::START_CODE[..],
            &[0x67, 1],
            &h264::START_CODE,
            &[0x68, 2],
            &h264::START_CODE,
            &[0x65, 0x88],
            &[3; 40],
        ]
        .concat();
        let slice: Vec<u8> = [&h264::START_CODE[..], &[0x41, 0x9a], &[4; 40]].concat();
        let mut seq = 0u16;
        let mut rtp = |au: &[u8], ts: u32| -> Vec<RtpPacket> {
            let payloads = h264::packetize(au, 20).expect("valid in this test");
            let n = payloads.len();
            payloads
                .into_iter()
                .enumerate()
                .map(|(i, payload)| {
                    seq += 1;
                    RtpPacket {
                        payload_type: 102,
                        sequence_number: seq,
                        timestamp: ts,
                        marker: i + 1 == n,
                        ssrc: 2,
                        payload,
                    }
                })
                .collect()
        };
        let mut packets = rtp(&idr, 0);
        packets.extend(rtp(&slice, 3000));
        packets.extend(rtp(&slice, 6000));
        packets.extend(rtp(&idr, 9000));
        let lost = packets
            .iter()
            .position(|p| p.timestamp == 3000)
            .expect("valid in this test")
            + 1;
        packets.remove(lost); // a middle FU-A fragment of the first slice
        for p in packets {
            jb.insert(t0, p);
        }
        let first = jb.poll_frame().expect("the IDR access unit");
        assert!(first.is_keyframe);
        assert_eq!(first.data[..], idr[..]);
        assert!(jb.poll_frame().is_none());
        jb.handle_timeout(t0 + wait);
        let out: Vec<Frame> = std::iter::from_fn(|| jb.poll_frame()).collect();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].timestamp, out[0].is_keyframe), (9000, true));
        assert!(jb.poll_keyframe_request());
    }

    #[test]
    fn opus_packets_are_frames_and_a_loss_only_skips_itself() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(40);
        let mut jb = JitterBuffer::new(
            Codec::Opus,
            JitterBufferConfig::default().with_max_wait(wait),
        );
        for seq in [1u16, 2, 4, 5] {
            jb.insert(
                t0,
                RtpPacket {
                    payload_type: 111,
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 960,
                    marker: false,
                    ssrc: 3,
                    payload: Bytes::from(vec![0xfc, seq as u8]),
                },
            );
        }
        let before: Vec<u32> = std::iter::from_fn(|| jb.poll_frame())
            .map(|f| f.timestamp / 960)
            .collect();
        assert_eq!(before, [1, 2]);
        assert_eq!(jb.missing().collect::<Vec<_>>(), [3]);
        jb.handle_timeout(t0 + wait);
        let after: Vec<u32> = std::iter::from_fn(|| jb.poll_frame())
            .map(|f| f.timestamp / 960)
            .collect();
        assert_eq!(after, [4, 5]);
        assert!(!jb.poll_keyframe_request());
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn quickcheck_any_arrivals_never_break_the_bounds_or_the_order() {
        fn prop(ops: Vec<(u16, u8, bool, Vec<u8>, u8)>) -> TestResult {
            let t0 = Instant::now();
            let config = JitterBufferConfig::default().with_limits(32, 2000);
            let mut jb =
                JitterBuffer::new(Codec::Vp8, config.with_max_wait(Duration::from_millis(30)));
            let mut now = t0;
            let mut last: Option<u64> = None;
            for (seq, ts, marker, payload, step) in ops {
                now += Duration::from_millis(u64::from(step % 20));
                jb.insert(
                    now,
                    RtpPacket {
                        payload_type: 96,
                        sequence_number: seq % 64,
                        timestamp: u32::from(ts % 4),
                        marker,
                        ssrc: 1,
                        payload: Bytes::from(payload),
                    },
                );
                if step % 3 == 0 {
                    jb.handle_timeout(now);
                }
                while let Some(f) = jb.poll_frame() {
                    if last.is_some_and(|l| f.first_sequence <= l) {
                        return TestResult::failed();
                    }
                    last = Some(f.first_sequence);
                }
                if jb.buffered_packets() > 32
                    || jb.buffered_bytes() > 2000
                    || jb.missing().count() >= 32
                {
                    return TestResult::failed();
                }
            }
            TestResult::passed()
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<(u16, u8, bool, Vec<u8>, u8)>) -> TestResult);
    }
}
