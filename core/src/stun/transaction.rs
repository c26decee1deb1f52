//! Retransmission of one outstanding STUN request over UDP (RFC 8489 section 6.2.1).
//!
//! ```text
//! send ──RTO──> resend ──2·RTO──> resend ── ... (Rc requests in all) ──Rm·RTO──> timed out
//! ```
//! Pure: the caller feeds `now` and resends the request when told to.

use std::time::{Duration, Instant};

/// What the caller should do after a timer expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerAction {
    /// Not due yet (an early call is harmless).
    Wait,
    /// Send the request again.
    Retransmit,
    /// Give up: no response will be waited for any more.
    TimedOut,
}

/// The timer of one request.
#[derive(Debug, Clone)]
pub struct RetransmitTimer {
    rto: Duration,
    max_rto: Duration,
    max_requests: u32,
    sent: u32,
    deadline: Option<Instant>,
    final_wait: Duration,
}

impl RetransmitTimer {
    /// A timer for a request sent at `now`. `max_requests` is Rc, the total number of
    /// requests including the first (RFC 8489 default 7). After the last request the
    /// timer waits Rm = 16 times the initial RTO (capped at `max_rto` × 2) before timing out.
    pub fn new(now: Instant, initial_rto: Duration, max_rto: Duration, max_requests: u32) -> Self {
        let max_requests = max_requests.max(1);
        let final_wait = (initial_rto * 16).min(max_rto * 2);
        let first_wait = if max_requests == 1 {
            final_wait
        } else {
            initial_rto
        };
        RetransmitTimer {
            rto: initial_rto,
            max_rto,
            max_requests,
            sent: 1,
            deadline: Some(now + first_wait),
            final_wait,
        }
    }

    /// The next retransmission or the final timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Requests sent so far.
    pub fn attempts(&self) -> u32 {
        self.sent
    }

    /// Call when `now` reaches the deadline.
    pub fn on_timeout(&mut self, now: Instant) -> TimerAction {
        let Some(deadline) = self.deadline else {
            return TimerAction::TimedOut;
        };
        if now < deadline {
            return TimerAction::Wait;
        }
        if self.sent >= self.max_requests {
            self.deadline = None;
            return TimerAction::TimedOut;
        }
        self.sent += 1;
        self.rto = (self.rto * 2).min(self.max_rto);
        let wait = if self.sent >= self.max_requests {
            self.final_wait
        } else {
            self.rto
        };
        self.deadline = Some(now + wait);
        TimerAction::Retransmit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rfc8489_schedule() {
        // RFC 8489 example: RTO 500 ms, Rc 7: requests at 0, 500, 1500, 3500, 7500, 15500,
        // 31500 ms, and failure at 39500 ms (Rm = 16).
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = RetransmitTimer::new(t0, ms(500), Duration::from_secs(3600), 7);
        let mut sends = vec![0u128];
        let mut end = None;
        while let Some(d) = t.deadline() {
            assert_eq!(t.on_timeout(d - ms(1)), TimerAction::Wait);
            match t.on_timeout(d) {
                TimerAction::Retransmit => sends.push((d - t0).as_millis()),
                TimerAction::TimedOut => end = Some((d - t0).as_millis()),
                TimerAction::Wait => unreachable!("deadline reached"),
            }
        }
        assert_eq!(sends, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(end, Some(39500));
        assert_eq!(t.attempts(), 7);
        assert_eq!(t.on_timeout(t0 + ms(100_000)), TimerAction::TimedOut);
    }

    #[test]
    fn rto_is_capped() {
        let t0 = Instant::now();
        let mut t = RetransmitTimer::new(t0, Duration::from_millis(250), Duration::from_secs(1), 5);
        let mut gaps = Vec::new();
        let mut last = t0;
        while let Some(d) = t.deadline() {
            gaps.push((d - last).as_millis());
            last = d;
            t.on_timeout(d);
        }
        assert_eq!(gaps, vec![250, 500, 1000, 1000, 2000]);
    }
}
