//! A receive-side, delay-based bandwidth estimator: what a REMB reports.
//!
//! Modelled on the Google congestion control design (draft-ietf-rmcat-gcc-02, section
//! 5): the receiver compares when packets were sent (the abs-send-time header extension,
//! 6.18 fixed-point seconds that wrap every 64 s) with when they arrived.
//!
//! - **Packet groups** (5.2): packets sent within 5 ms of a group's first packet form
//!   one group (a pacer's burst); a packet that arrives within 5 ms of the group's last
//!   one and whose propagation delay shrank joins it too (a burst released by a queue).
//! - **Inter-group delay variation**: `d(i) = (t(i) - t(i-1)) - (T(i) - T(i-1))`, arrival
//!   spacing minus send spacing of consecutive groups; positive when a queue grows.
//! - **A trendline filter** (the estimator libwebrtc uses in place of the draft's Kalman
//!   filter): the accumulated delay variation, exponentially smoothed, and the slope of
//!   a least-squares line through its last 20 values against arrival time. The slope,
//!   scaled by the number of deltas seen (at most 60) and a gain of 4, is the modified
//!   trend `m(i)`.
//! - **An overuse detector with an adaptive threshold** (5.4): overuse when `m(i)` stays
//!   above the threshold `gamma` for more than 10 ms (two deltas at least) and does not
//!   fall; underuse below `-gamma`. `gamma` follows `|m(i)|` (up slowly, `k_u` = 0.0087,
//!   down quickly, `k_d` = 0.039 per ms) within [6, 600], so the detector neither starves
//!   against loss-based flows nor fires on jitter.
//! - **AIMD rate control** (5.5): Increase, Hold, Decrease. On overuse the estimate
//!   becomes 0.85 times the incoming rate (measured over the last second), never more
//!   than it was; on underuse it holds; otherwise it grows 8 % a second (multiplicative)
//!   or, near the link capacity seen at earlier overuses, by about a packet per response
//!   time (additive), and never beyond 1.5 times the incoming rate plus 10 kbit/s.
//!
//! - **Probe clusters at the start**: for the first two seconds the estimator also looks
//!   for runs of at least four packets sent at a steady spacing (a sender's bandwidth
//!   probe, or a paced burst) and takes the lesser of their send and receive rates as
//!   the estimate when that is higher: what the link demonstrably carried. Senders
//!   probe at several times their start rate as they begin (Chromium at 3x and 6x), so
//!   the estimate does not have to climb 8 % a second from the first incoming rate.
//!
//! Sans-IO: time comes in as `now`; all state is fixed-size (no allocation after
//! construction), so every packet costs the same bounded work.

use std::time::Instant;

/// abs-send-time units per second (6.18 fixed point).
const ABS_UNITS_PER_SECOND: i64 = 1 << 18;
/// abs-send-time wraps at 2^24 units (64 s).
const ABS_WRAP: i64 = 1 << 24;
/// Packets sent within this span of a group's first packet belong to the group (µs).
const BURST_US: i64 = 5_000;
/// A burst (by arrival) never stretches a group longer than this (µs).
const MAX_BURST_GROUP_US: i64 = 100_000;
/// A gap in arrival or send time longer than this restarts the delay filter (µs).
const RESET_GAP_US: i64 = 3_000_000;
/// Points in the trendline regression.
const TRENDLINE_WINDOW: usize = 20;
/// Smoothing of the accumulated delay.
const TRENDLINE_SMOOTHING: f64 = 0.9;
/// Gain applied to the trendline slope.
const TRENDLINE_GAIN: f64 = 4.0;
/// The slope is scaled by at most this many deltas.
const TRENDLINE_MAX_DELTAS: f64 = 60.0;
/// Overuse must last this long before it is signalled (ms).
const OVERUSE_TIME_MS: f64 = 10.0;
/// Threshold adaptation: growth and decay rates per ms, bounds, initial value.
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
const THRESHOLD_INITIAL: f64 = 12.5;
/// A trend this far above the threshold is an outlier: the threshold does not follow it.
const THRESHOLD_MAX_STEP: f64 = 15.0;
/// Multiplicative decrease factor on overuse.
const BETA: f64 = 0.85;
/// Multiplicative increase per second, far from the link capacity.
const INCREASE_PER_SECOND: f64 = 1.08;
/// The estimate never grows beyond this times the incoming rate (plus 10 kbit/s).
const INCOMING_HEADROOM: f64 = 1.5;
/// A decrease is repeated at most this often while overuse lasts (µs).
const DECREASE_INTERVAL_US: i64 = 200_000;
/// Response time for the additive increase: an RTT guess plus 100 ms (µs).
const RESPONSE_TIME_US: i64 = 300_000;
/// Bounds of the estimate (bit/s).
const MIN_BITRATE: f64 = 30_000.0;
const MAX_BITRATE: f64 = 100_000_000.0;
/// Probe clusters are looked for during this long after the first packet (µs).
const PROBE_PERIOD_US: i64 = 2_000_000;
/// The last packets kept for probe clusters.
const PROBE_HISTORY: usize = 16;
/// Fewest packets in a probe cluster.
const PROBE_MIN_CLUSTER: usize = 4;
/// Packets of one cluster are sent this close to the cluster's mean spacing (µs).
const PROBE_SPACING_TOLERANCE_US: i64 = 2_500;
/// Incoming-rate window: 50 buckets of 20 ms (one second).
const RATE_BUCKETS: usize = 50;
const RATE_BUCKET_US: i64 = 20_000;
/// The incoming rate needs this much history before it is reported (µs).
const RATE_MIN_SPAN_US: i64 = 500_000;

/// What the overuse detector concludes from the delay trend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BandwidthUsage {
    /// Delay is steady: the path carries what is sent.
    #[default]
    Normal,
    /// Delay grows: a queue builds on the path.
    Overusing,
    /// Delay shrinks: a queue drains.
    Underusing,
}

/// Counters of a [`DelayBasedEstimator`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EstimatorStats {
    /// Packets given to the estimator.
    pub packets: u64,
    /// Packet groups compared (inter-group delay variations computed).
    pub groups: u64,
    /// Packets sent before the current group began (reordered), left out of the delay
    /// measurement (still counted in the incoming rate).
    pub reordered: u64,
    /// Times the detector signalled overuse.
    pub overuse_signals: u64,
    /// Times the estimate was decreased.
    pub decreases: u64,
    /// Times the delay filter restarted after a gap or a jump in time.
    pub resets: u64,
    /// Times a probe cluster raised the estimate (first two seconds only).
    pub probe_estimates: u64,
}

/// One packet group: send times in µs on the unwrapped abs-send-time axis, arrival
/// times in µs since the estimator's origin.
#[derive(Debug, Clone, Copy)]
struct PacketGroup {
    first_send: i64,
    last_send: i64,
    first_arrival: i64,
    last_arrival: i64,
}

/// The trendline filter and the overuse detector it feeds.
#[derive(Debug, Clone)]
struct TrendlineDetector {
    /// `(arrival ms, smoothed accumulated delay ms)`, a ring of the last points.
    points: [(f64, f64); TRENDLINE_WINDOW],
    len: usize,
    head: usize,
    accumulated: f64,
    smoothed: f64,
    deltas: u32,
    threshold: f64,
    last_threshold_update: Option<f64>,
    time_over_using: f64,
    overuse_count: u32,
    previous_trend: f64,
    usage: BandwidthUsage,
}

impl TrendlineDetector {
    fn new() -> TrendlineDetector {
        TrendlineDetector {
            points: [(0.0, 0.0); TRENDLINE_WINDOW],
            len: 0,
            head: 0,
            accumulated: 0.0,
            smoothed: 0.0,
            deltas: 0,
            threshold: THRESHOLD_INITIAL,
            last_threshold_update: None,
            time_over_using: -1.0,
            overuse_count: 0,
            previous_trend: 0.0,
            usage: BandwidthUsage::Normal,
        }
    }

    /// Forget the delay history (after a gap); the threshold is kept.
    fn restart(&mut self) {
        let threshold = self.threshold;
        *self = TrendlineDetector::new();
        self.threshold = threshold;
    }

    /// One inter-group delay variation `delay_ms`, for groups `send_delta_ms` apart,
    /// the later one complete at `arrival_ms`.
    fn update(&mut self, delay_ms: f64, send_delta_ms: f64, arrival_ms: f64) -> BandwidthUsage {
        self.deltas = self.deltas.saturating_add(1).min(1000);
        self.accumulated += delay_ms;
        self.smoothed =
            TRENDLINE_SMOOTHING * self.smoothed + (1.0 - TRENDLINE_SMOOTHING) * self.accumulated;
        self.points[self.head] = (arrival_ms, self.smoothed);
        self.head = (self.head + 1) % TRENDLINE_WINDOW;
        self.len = (self.len + 1).min(TRENDLINE_WINDOW);
        if self.len < TRENDLINE_WINDOW {
            return self.usage;
        }
        let slope = self.slope().unwrap_or(0.0);
        let trend = slope * f64::from(self.deltas).min(TRENDLINE_MAX_DELTAS) * TRENDLINE_GAIN;
        self.detect(trend, send_delta_ms, arrival_ms)
    }

    /// Least-squares slope of the smoothed delay against arrival time.
    fn slope(&self) -> Option<f64> {
        let n = self.len as f64;
        let points = &self.points[..self.len];
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut num, mut den) = (0.0, 0.0);
        for (x, y) in points {
            num += (x - mean_x) * (y - mean_y);
            den += (x - mean_x) * (x - mean_x);
        }
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) -> BandwidthUsage {
        if trend > self.threshold {
            if self.time_over_using < 0.0 {
                // Assume the overuse began halfway between the two groups.
                self.time_over_using = send_delta_ms / 2.0;
            } else {
                self.time_over_using += send_delta_ms;
            }
            self.overuse_count += 1;
            if self.time_over_using > OVERUSE_TIME_MS
                && self.overuse_count > 1
                && trend >= self.previous_trend
            {
                self.time_over_using = 0.0;
                self.overuse_count = 0;
                self.usage = BandwidthUsage::Overusing;
            }
        } else if trend < -self.threshold {
            self.time_over_using = -1.0;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Underusing;
        } else {
            self.time_over_using = -1.0;
            self.overuse_count = 0;
            self.usage = BandwidthUsage::Normal;
        }
        self.previous_trend = trend;
        self.adapt_threshold(trend, now_ms);
        self.usage
    }

    fn adapt_threshold(&mut self, trend: f64, now_ms: f64) {
        let last = *self.last_threshold_update.get_or_insert(now_ms);
        let magnitude = trend.abs();
        if magnitude > self.threshold + THRESHOLD_MAX_STEP {
            // A spike (a route change, a paused sender) is not the new normal.
            self.last_threshold_update = Some(now_ms);
            return;
        }
        let k = if magnitude < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, 100.0);
        self.threshold += k * (magnitude - self.threshold) * dt;
        self.threshold = self.threshold.clamp(THRESHOLD_MIN, THRESHOLD_MAX);
        self.last_threshold_update = Some(now_ms);
    }
}

/// Bytes received per 20 ms bucket over the last second.
#[derive(Debug, Clone)]
struct IncomingRate {
    buckets: [u64; RATE_BUCKETS],
    total: u64,
    /// The bucket number (arrival µs / bucket length) of the newest bucket.
    newest: Option<i64>,
    first_arrival: Option<i64>,
}

impl IncomingRate {
    fn new() -> IncomingRate {
        IncomingRate {
            buckets: [0; RATE_BUCKETS],
            total: 0,
            newest: None,
            first_arrival: None,
        }
    }

    /// Move the window so its newest bucket is the one of `at` (µs), emptying those
    /// that fall out. At most one pass over the buckets.
    fn advance(&mut self, at: i64) {
        let bucket = at.div_euclid(RATE_BUCKET_US);
        let Some(newest) = self.newest else {
            self.newest = Some(bucket);
            return;
        };
        if bucket <= newest {
            return;
        }
        let steps = (bucket - newest).min(RATE_BUCKETS as i64);
        for i in 1..=steps {
            let slot = (newest + i).rem_euclid(RATE_BUCKETS as i64) as usize;
            self.total -= self.buckets[slot];
            self.buckets[slot] = 0;
        }
        self.newest = Some(bucket);
    }

    fn add(&mut self, at: i64, bytes: usize) {
        self.first_arrival.get_or_insert(at);
        self.advance(at);
        let slot = at
            .div_euclid(RATE_BUCKET_US)
            .rem_euclid(RATE_BUCKETS as i64) as usize;
        self.buckets[slot] += bytes as u64;
        self.total += bytes as u64;
    }

    /// Bits per second over the last second (or since the first packet, once that is
    /// half a second ago).
    fn rate(&mut self, at: i64) -> Option<f64> {
        let first = self.first_arrival?;
        let span = at - first;
        if span < RATE_MIN_SPAN_US {
            return None;
        }
        self.advance(at);
        let window_us = span.min(RATE_BUCKETS as i64 * RATE_BUCKET_US) as f64;
        Some(self.total as f64 * 8.0 * 1e6 / window_us)
    }
}

/// A packet remembered for probe clusters: send and arrival µs, size.
#[derive(Debug, Clone, Copy, Default)]
struct ProbePacket {
    send: i64,
    arrival: i64,
    size: usize,
}

/// The last packets in arrival order, for probe clusters.
#[derive(Debug, Clone)]
struct ProbeHistory {
    packets: [ProbePacket; PROBE_HISTORY],
    len: usize,
    head: usize,
}

impl ProbeHistory {
    fn new() -> ProbeHistory {
        ProbeHistory {
            packets: [ProbePacket::default(); PROBE_HISTORY],
            len: 0,
            head: 0,
        }
    }

    fn push(&mut self, p: ProbePacket) {
        self.packets[self.head] = p;
        self.head = (self.head + 1) % PROBE_HISTORY;
        self.len = (self.len + 1).min(PROBE_HISTORY);
    }

    fn get(&self, i: usize) -> ProbePacket {
        let first = (self.head + PROBE_HISTORY - self.len) % PROBE_HISTORY;
        self.packets[(first + i) % PROBE_HISTORY]
    }

    /// The highest rate (bit/s) a cluster of steadily spaced packets proved: for each
    /// cluster, the lesser of its send and receive rates.
    fn best_cluster_rate(&self) -> Option<f64> {
        let mut best: Option<f64> = None;
        let mut start = 0;
        while start + 1 < self.len {
            // Grow a cluster from `start` while each send spacing stays near its mean.
            let (mut send_sum, mut count, mut end) = (0i64, 0i64, start + 1);
            while end < self.len {
                let delta = self.get(end).send - self.get(end - 1).send;
                let fits = count == 0
                    || (delta * count - send_sum).abs() <= PROBE_SPACING_TOLERANCE_US * count;
                if delta <= 0 || !fits {
                    break;
                }
                send_sum += delta;
                count += 1;
                end += 1;
            }
            let packets = end - start;
            if packets >= PROBE_MIN_CLUSTER {
                let (first, last) = (self.get(start), self.get(end - 1));
                let bits: usize = (start + 1..end).map(|i| self.get(i).size * 8).sum();
                let send_us = (last.send - first.send) as f64;
                let recv_us = (last.arrival - first.arrival) as f64;
                if send_us > 0.0 && recv_us > 0.0 {
                    let rate = (bits as f64 * 1e6 / send_us).min(bits as f64 * 1e6 / recv_us);
                    best = Some(best.map_or(rate, |b: f64| b.max(rate)));
                }
            }
            start = end.max(start + 1);
        }
        best
    }
}

/// The AIMD state of the rate controller (draft-ietf-rmcat-gcc-02 5.5, figure 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateState {
    Hold,
    Increase,
    Decrease,
}

/// The incoming rate at past overuses: where the link's capacity probably is.
#[derive(Debug, Clone, Copy)]
struct LinkCapacity {
    /// Mean, kbit/s.
    mean: f64,
    /// Normalized variance (kbit/s).
    variance: f64,
}

impl LinkCapacity {
    fn update(current: Option<LinkCapacity>, sample_bps: f64) -> LinkCapacity {
        let sample = sample_bps / 1000.0;
        let Some(mut c) = current else {
            return LinkCapacity {
                mean: sample,
                variance: 0.4,
            };
        };
        let alpha = 0.05;
        c.mean = (1.0 - alpha) * c.mean + alpha * sample;
        let norm = c.mean.max(1.0);
        c.variance = ((1.0 - alpha) * c.variance
            + alpha * (c.mean - sample) * (c.mean - sample) / norm)
            .clamp(0.4, 2.5);
        c
    }

    /// Standard deviation in kbit/s.
    fn deviation(&self) -> f64 {
        (self.variance * self.mean.max(1.0)).sqrt()
    }

    fn contains(&self, bps: f64) -> bool {
        (bps / 1000.0 - self.mean).abs() <= 3.0 * self.deviation()
    }
}

/// The AIMD rate controller.
#[derive(Debug, Clone)]
struct RateControl {
    estimate: Option<f64>,
    state: RateState,
    last_update: Option<i64>,
    last_decrease: Option<i64>,
    capacity: Option<LinkCapacity>,
}

impl RateControl {
    fn new() -> RateControl {
        RateControl {
            estimate: None,
            state: RateState::Increase,
            last_update: None,
            last_decrease: None,
            capacity: None,
        }
    }

    fn update(
        &mut self,
        usage: BandwidthUsage,
        incoming: Option<f64>,
        now: i64,
        stats: &mut EstimatorStats,
    ) {
        let Some(incoming) = incoming else {
            return;
        };
        let estimate = *self
            .estimate
            .get_or_insert(incoming.clamp(MIN_BITRATE, MAX_BITRATE));
        let dt = self
            .last_update
            .map_or(0, |t| (now - t).clamp(0, 1_000_000));
        self.last_update = Some(now);
        // The state transitions of figure 2.
        self.state = match (usage, self.state) {
            (BandwidthUsage::Overusing, _) => RateState::Decrease,
            (BandwidthUsage::Underusing, _) => RateState::Hold,
            (BandwidthUsage::Normal, RateState::Hold) => RateState::Increase,
            (BandwidthUsage::Normal, RateState::Decrease) => RateState::Hold,
            (BandwidthUsage::Normal, RateState::Increase) => RateState::Increase,
        };
        let next = match self.state {
            RateState::Hold => estimate,
            RateState::Increase => {
                if self.capacity.is_some_and(|c| !c.contains(incoming)) {
                    // The incoming rate left the band seen at earlier overuses: the
                    // capacity changed, probe multiplicatively again.
                    self.capacity = None;
                }
                let near_capacity = self.capacity.is_some_and(|c| c.contains(estimate));
                let seconds = dt as f64 / 1e6;
                let increased = if near_capacity {
                    // About one 1,200-byte packet more per response time.
                    let per_second = 1200.0 * 8.0 * 1e6 / RESPONSE_TIME_US as f64;
                    estimate + per_second * seconds
                } else {
                    estimate * INCREASE_PER_SECOND.powf(seconds)
                };
                let cap = INCOMING_HEADROOM * incoming + 10_000.0;
                increased.min(cap.max(estimate))
            }
            RateState::Decrease => {
                if self
                    .last_decrease
                    .is_some_and(|t| now - t < DECREASE_INTERVAL_US)
                {
                    estimate
                } else {
                    self.last_decrease = Some(now);
                    stats.decreases += 1;
                    self.capacity = Some(LinkCapacity::update(self.capacity, incoming));
                    // Never raise the rate on overuse.
                    (BETA * incoming).min(estimate)
                }
            }
        };
        self.estimate = Some(next.clamp(MIN_BITRATE, MAX_BITRATE));
    }
}

/// A receive-side delay-based bandwidth estimator. See the module docs.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sansrtc::media::bwe::DelayBasedEstimator;
///
/// let start = Instant::now();
/// let mut bwe = DelayBasedEstimator::new();
/// // 1,000-byte packets every 10 ms (800 kbit/s) over a path with constant delay.
/// for i in 0..300u32 {
///     let sent = i * (1 << 18) / 100; // abs-send-time: 10 ms steps
///     bwe.on_packet(start + Duration::from_millis(40 + 10 * u64::from(i)), sent, 1000);
/// }
/// assert!(bwe.estimate_bps().expect("an estimate") > 800_000);
/// ```
#[derive(Debug, Clone)]
pub struct DelayBasedEstimator {
    origin: Option<Instant>,
    /// The last abs-send-time seen and its unwrapped value (abs units).
    last_abs: Option<(u32, i64)>,
    current: Option<PacketGroup>,
    previous: Option<PacketGroup>,
    detector: TrendlineDetector,
    incoming: IncomingRate,
    rate: RateControl,
    probes: ProbeHistory,
    stats: EstimatorStats,
}

impl Default for DelayBasedEstimator {
    fn default() -> Self {
        DelayBasedEstimator::new()
    }
}

impl DelayBasedEstimator {
    /// An estimator with no estimate yet.
    pub fn new() -> DelayBasedEstimator {
        DelayBasedEstimator {
            origin: None,
            last_abs: None,
            current: None,
            previous: None,
            detector: TrendlineDetector::new(),
            incoming: IncomingRate::new(),
            rate: RateControl::new(),
            probes: ProbeHistory::new(),
            stats: EstimatorStats::default(),
        }
    }

    /// The estimate in bits per second: none until half a second of packets arrived.
    pub fn estimate_bps(&self) -> Option<u64> {
        self.rate.estimate.map(|e| e as u64)
    }

    /// The overuse detector's latest signal.
    pub fn usage(&self) -> BandwidthUsage {
        self.detector.usage
    }

    /// The rate packets arrived at over the last second, in bits per second (none before
    /// half a second of packets).
    pub fn incoming_bps(&mut self, now: Instant) -> Option<u64> {
        let at = self.arrival_us(now);
        self.incoming.rate(at).map(|r| r as u64)
    }

    /// The counters.
    pub fn stats(&self) -> EstimatorStats {
        self.stats
    }

    fn arrival_us(&mut self, now: Instant) -> i64 {
        let origin = *self.origin.get_or_insert(now);
        i64::try_from(now.saturating_duration_since(origin).as_micros()).unwrap_or(i64::MAX / 2)
    }

    /// The abs-send-time value on a continuous axis, in µs: a step of less than half
    /// the 64 s wrap either way is taken as the shortest way round.
    fn unwrap_send_time(&mut self, abs_send_time: u32) -> i64 {
        let value = i64::from(abs_send_time & 0x00FF_FFFF);
        let unwrapped = match self.last_abs {
            None => value,
            Some((last, last_unwrapped)) => {
                let mut step = (value - i64::from(last)).rem_euclid(ABS_WRAP);
                if step >= ABS_WRAP / 2 {
                    step -= ABS_WRAP;
                }
                last_unwrapped + step
            }
        };
        // Only forward steps move the reference: a reordered packet does not drag it back.
        if self.last_abs.is_none_or(|(_, u)| unwrapped > u) {
            self.last_abs = Some((value as u32, unwrapped));
        }
        unwrapped * 1_000_000 / ABS_UNITS_PER_SECOND
    }

    /// A received packet: when it arrived, its abs-send-time extension value (24 bits of
    /// 6.18 fixed-point seconds) and its size in bytes (the whole RTP packet).
    pub fn on_packet(&mut self, now: Instant, abs_send_time: u32, size: usize) {
        self.stats.packets += 1;
        let arrival = self.arrival_us(now);
        let send = self.unwrap_send_time(abs_send_time);
        self.incoming.add(arrival, size);
        if arrival < PROBE_PERIOD_US {
            self.on_probe_packet(ProbePacket {
                send,
                arrival,
                size,
            });
        }
        let Some(mut group) = self.current else {
            self.current = Some(PacketGroup {
                first_send: send,
                last_send: send,
                first_arrival: arrival,
                last_arrival: arrival,
            });
            return;
        };
        let jumped = (send - group.last_send).abs() > RESET_GAP_US
            || arrival - group.last_arrival > RESET_GAP_US;
        if jumped {
            // A paused sender or a clock jump (either way: a sender that restarted its
            // clock would otherwise look reordered for ever): the delays across the gap
            // mean nothing.
            self.stats.resets += 1;
            self.detector.restart();
            self.previous = None;
            self.current = Some(PacketGroup {
                first_send: send,
                last_send: send,
                first_arrival: arrival,
                last_arrival: arrival,
            });
            return;
        }
        if send < group.first_send {
            self.stats.reordered += 1;
            return;
        }
        if send - group.first_send <= BURST_US || Self::in_burst(&group, send, arrival) {
            group.last_send = group.last_send.max(send);
            group.last_arrival = arrival;
            self.current = Some(group);
            return;
        }
        // `group` is complete: compare it with the one before.
        if let Some(previous) = self.previous {
            let send_delta = group.last_send - previous.last_send;
            let arrival_delta = group.last_arrival - previous.last_arrival;
            if send_delta > 0 {
                self.stats.groups += 1;
                let delay_ms = (arrival_delta - send_delta) as f64 / 1000.0;
                let before = self.detector.usage;
                let usage = self.detector.update(
                    delay_ms,
                    send_delta as f64 / 1000.0,
                    group.last_arrival as f64 / 1000.0,
                );
                if usage == BandwidthUsage::Overusing && before != BandwidthUsage::Overusing {
                    self.stats.overuse_signals += 1;
                }
                let incoming = self.incoming.rate(arrival);
                self.rate.update(usage, incoming, arrival, &mut self.stats);
            }
        }
        self.previous = Some(group);
        self.current = Some(PacketGroup {
            first_send: send,
            last_send: send,
            first_arrival: arrival,
            last_arrival: arrival,
        });
    }

    /// A packet of the first seconds: an estimate from probe clusters when it is higher.
    fn on_probe_packet(&mut self, packet: ProbePacket) {
        self.probes.push(packet);
        let Some(rate) = self.probes.best_cluster_rate() else {
            return;
        };
        if self.rate.estimate.is_none_or(|e| rate > e) {
            self.stats.probe_estimates += 1;
            self.rate.estimate = Some(rate.clamp(MIN_BITRATE, MAX_BITRATE));
            self.rate.last_update = Some(packet.arrival);
        }
    }

    /// A packet that arrived right behind the group with less propagation delay: a
    /// burst a queue released, part of the group.
    fn in_burst(group: &PacketGroup, send: i64, arrival: i64) -> bool {
        let arrival_delta = arrival - group.last_arrival;
        let send_delta = send - group.last_send;
        arrival_delta <= BURST_US
            && arrival_delta - send_delta < 0
            && arrival - group.first_arrival < MAX_BURST_GROUP_US
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// abs-send-time of `us` microseconds after `base` (24-bit, 6.18 fixed point).
    fn abs_time(base: u32, us: u64) -> u32 {
        (base.wrapping_add((us * (1 << 18) / 1_000_000) as u32)) & 0x00FF_FFFF
    }

    /// A sender and a bottleneck link: packets of `size` bytes at `send_bps`, through a
    /// FIFO that drains at `link_bps` after `base_delay`. Returns the arrival of the
    /// packet sent at `send_us` and moves the queue.
    struct Link {
        link_bps: f64,
        base_delay_us: u64,
        /// When the queue is empty again (µs).
        free_at: f64,
    }

    impl Link {
        fn arrival(&mut self, send_us: u64, size: usize) -> u64 {
            let start = self.free_at.max(send_us as f64);
            self.free_at = start + size as f64 * 8.0 * 1e6 / self.link_bps;
            self.free_at as u64 + self.base_delay_us
        }
    }

    /// Send `seconds` of `size`-byte packets at `send_bps` from `from_us`; returns the
    /// send time after the last one.
    fn run(
        bwe: &mut DelayBasedEstimator,
        start: Instant,
        link: &mut Link,
        from_us: u64,
        seconds: f64,
        send_bps: f64,
        abs_base: u32,
    ) -> u64 {
        let size = 1000usize;
        let interval = size as f64 * 8.0 * 1e6 / send_bps;
        let n = (seconds * 1e6 / interval) as u64;
        let mut t = from_us as f64;
        for _ in 0..n {
            let send = t as u64;
            let arrival = link.arrival(send, size);
            bwe.on_packet(
                start + Duration::from_micros(arrival),
                abs_time(abs_base, send),
                size,
            );
            t += interval;
        }
        t as u64
    }

    #[test]
    fn a_sender_under_capacity_with_constant_delay_sees_the_estimate_rise() {
        let start = Instant::now();
        let mut bwe = DelayBasedEstimator::new();
        let mut link = Link {
            link_bps: 10e6,
            base_delay_us: 30_000,
            free_at: 0.0,
        };
        let t = run(&mut bwe, start, &mut link, 0, 1.0, 500e3, 0);
        let first = bwe.estimate_bps().expect("an estimate after a second");
        run(&mut bwe, start, &mut link, t, 4.0, 500e3, 0);
        let later = bwe.estimate_bps().expect("estimate");
        assert_eq!(bwe.usage(), BandwidthUsage::Normal);
        assert_eq!(bwe.stats().overuse_signals, 0);
        assert!(later > first, "{first} -> {later}");
        // It rises above what arrives, towards 1.5 times it: room for the sender to grow.
        assert!(later > 600_000, "{later}");
        assert!(later <= 760_000, "{later}");
    }

    #[test]
    fn a_queue_is_detected_the_estimate_falls_below_the_incoming_rate_then_recovers() {
        let start = Instant::now();
        let mut bwe = DelayBasedEstimator::new();
        let mut link = Link {
            link_bps: 1e6,
            base_delay_us: 20_000,
            free_at: 0.0,
        };
        // Under capacity first.
        let t = run(&mut bwe, start, &mut link, 0, 3.0, 800e3, 0);
        let calm = bwe.estimate_bps().expect("estimate");
        assert_eq!(bwe.stats().overuse_signals, 0);
        // 1.5 Mbit/s into a 1 Mbit/s link: the queue grows by 0.5 s every second.
        let t = run(&mut bwe, start, &mut link, t, 2.0, 1.5e6, 0);
        let at = start + Duration::from_micros(link.free_at as u64);
        let incoming = bwe.incoming_bps(at).expect("incoming");
        let congested = bwe.estimate_bps().expect("estimate");
        assert!(bwe.stats().overuse_signals >= 1, "{:?}", bwe.stats());
        assert!(bwe.stats().decreases >= 1);
        assert!(congested < incoming, "{congested} >= incoming {incoming}");
        assert!(congested < 1_000_000, "below the link: {congested}");
        assert!(congested < calm);
        // The sender backs off well below the link and the queue drains; then it sends
        // under the link again and the estimate grows past where the overuse left it.
        let t = run(&mut bwe, start, &mut link, t, 3.0, 400e3, 0);
        let drained = bwe.estimate_bps().expect("estimate");
        let overuses = bwe.stats().overuse_signals;
        run(&mut bwe, start, &mut link, t, 4.0, 800e3, 0);
        let recovered = bwe.estimate_bps().expect("estimate");
        assert_eq!(bwe.usage(), BandwidthUsage::Normal);
        assert_eq!(
            bwe.stats().overuse_signals,
            overuses,
            "no overuse under the link"
        );
        assert!(
            recovered > drained && recovered > 900_000,
            "calm {calm}, congested {congested} (incoming {incoming}), drained {drained}, recovered {recovered}"
        );
    }

    /// A probe of 10 packets 4 ms apart (2 Mbit/s) as the stream starts, then 300 kbit/s
    /// of media, through `link`; the estimate after 100 ms.
    fn probe_then_media(link: &mut Link) -> (DelayBasedEstimator, u64) {
        let start = Instant::now();
        let mut bwe = DelayBasedEstimator::new();
        for i in 0..10u64 {
            let send = i * 4_000;
            let arrival = link.arrival(send, 1000);
            bwe.on_packet(
                start + Duration::from_micros(arrival),
                abs_time(0, send),
                1000,
            );
        }
        let t = run(&mut bwe, start, link, 100_000, 0.1, 300e3, 0);
        let early = bwe.estimate_bps().expect("an estimate from the probe");
        run(&mut bwe, start, link, t, 0.5, 300e3, 0);
        (bwe, early)
    }

    #[test]
    fn a_probe_at_the_start_sets_the_estimate_to_what_the_link_carried() {
        let (bwe, early) = probe_then_media(&mut Link {
            link_bps: 10e6,
            base_delay_us: 30_000,
            free_at: 0.0,
        });
        assert!((1_700_000..=2_100_000).contains(&early), "{early}");
        assert!(bwe.stats().probe_estimates >= 1);
        assert!(bwe.estimate_bps().expect("estimate") >= early);
        // Through a 1 Mbit/s bottleneck the probe arrives at 1 Mbit/s: that is the rate.
        let (_, early) = probe_then_media(&mut Link {
            link_bps: 1e6,
            base_delay_us: 30_000,
            free_at: 0.0,
        });
        assert!((850_000..=1_050_000).contains(&early), "{early}");
    }

    #[test]
    fn abs_send_time_wrapping_around_changes_nothing() {
        let start = Instant::now();
        let link = || Link {
            link_bps: 10e6,
            base_delay_us: 30_000,
            free_at: 0.0,
        };
        // The same 5 s of packets, once with the 64 s clock far from its wrap and once
        // wrapping 2 s in.
        let mut plain = DelayBasedEstimator::new();
        run(&mut plain, start, &mut link(), 0, 5.0, 500e3, 0);
        let mut wrapped = DelayBasedEstimator::new();
        let near_wrap = (1u32 << 24) - 2 * (1 << 18);
        run(&mut wrapped, start, &mut link(), 0, 5.0, 500e3, near_wrap);
        assert_eq!(wrapped.stats().resets, 0);
        assert_eq!(wrapped.stats().reordered, 0);
        assert_eq!(wrapped.stats(), plain.stats());
        assert_eq!(wrapped.estimate_bps(), plain.estimate_bps());
        assert_eq!(wrapped.usage(), BandwidthUsage::Normal);
    }

    #[test]
    fn reordering_loss_and_garbage_times_neither_panic_nor_poison_the_state() {
        let start = Instant::now();
        let mut bwe = DelayBasedEstimator::new();
        // Reordered in pairs, every fifth packet lost, under capacity.
        let mut arrivals = Vec::new();
        for i in 0..400u64 {
            if i % 5 == 3 {
                continue;
            }
            let send = i * 10_000;
            arrivals.push((send + 30_000, send));
        }
        for pair in arrivals.chunks_mut(2) {
            pair.reverse();
        }
        let mut arrival_clock = 0;
        for (arrival, send) in &arrivals {
            arrival_clock = arrival_clock.max(*arrival);
            bwe.on_packet(
                start + Duration::from_micros(arrival_clock),
                abs_time(0, *send),
                1000,
            );
        }
        assert!(bwe.stats().reordered > 0);
        let reordered = bwe.estimate_bps().expect("estimate");
        assert_eq!(bwe.stats().overuse_signals, 0, "{:?}", bwe.stats());
        assert!(reordered > 600_000, "{reordered}");
        // Garbage: random send times, bursts at one instant, a send-time jump back.
        let mut x = 0x1234_5678u32;
        let at = start + Duration::from_micros(arrival_clock);
        for i in 0..2000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bwe.on_packet(
                at + Duration::from_micros(i * 7 % 50),
                x,
                (x % 1500) as usize,
            );
        }
        let e = bwe.estimate_bps().expect("estimate");
        assert!(
            (MIN_BITRATE as u64..=MAX_BITRATE as u64).contains(&e),
            "{e}"
        );
        // The garbage ends 20 s ahead of the clean stream that follows at once (a sender
        // that restarted its clock): the estimator must not take the clean stream for
        // reordered packets for ever.
        let later = arrival_clock + 100_000;
        for i in 0..5u64 {
            bwe.on_packet(
                at + Duration::from_micros(60 + i),
                abs_time(99, later + 20_000_000),
                500,
            );
        }
        let before = bwe.stats();
        let mut link = Link {
            link_bps: 10e6,
            base_delay_us: 30_000,
            free_at: later as f64,
        };
        run(&mut bwe, start, &mut link, later, 6.0, 500e3, 99);
        let after = bwe.stats();
        assert!(after.groups - before.groups > 300, "{before:?} {after:?}");
        assert!(
            after.reordered - before.reordered < 10,
            "{before:?} {after:?}"
        );
        assert_ne!(bwe.usage(), BandwidthUsage::Overusing);
        let recovered = bwe.estimate_bps().expect("estimate");
        assert!(recovered > 500_000, "{recovered}");
    }
}
