//! Retransmission timeout from RTT measurements (RFC 9260 6.3.1).

use std::time::Duration;

/// SRTT, RTTVAR and the RTO they give, clamped to the configured bounds.
#[derive(Debug, Clone)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    pub(crate) fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial.clamp(min, max.max(min)),
            min,
            max: max.max(min),
        }
    }

    /// The current retransmission timeout.
    pub(crate) fn rto(&self) -> Duration {
        self.rto
    }

    /// The smoothed round-trip time, once measured.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Take one measurement (RFC 9260 6.3.1 C2/C3; the clock granularity is 1 ms).
    pub(crate) fn sample(&mut self, r: Duration) {
        const G: Duration = Duration::from_millis(1);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + delta / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + (self.rttvar * 4).max(G)).clamp(self.min, self.max);
    }

    /// Back off after a timeout (RFC 9260 6.3.3 E2).
    pub(crate) fn back_off(&mut self) {
        self.rto = (self.rto * 2).min(self.max);
    }
}
