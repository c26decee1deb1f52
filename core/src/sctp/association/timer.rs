//! The association's named timers. Each is an optional deadline; the association's
//! `poll_timeout` is their minimum, and `handle_timeout` fires every one that is due.

use std::time::Instant;

/// One of the association's timers (RFC 9260 section 15 names most of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// T1-init: INIT retransmission.
    Init = 0,
    /// T1-cookie: COOKIE ECHO retransmission.
    Cookie = 1,
    /// T3-rtx: DATA retransmission.
    Retransmit = 2,
    /// Delayed SACK.
    DelayedAck = 3,
    /// HEARTBEAT on an idle path.
    Heartbeat = 4,
    /// T2-shutdown: SHUTDOWN / SHUTDOWN ACK retransmission.
    Shutdown = 5,
    /// RE-CONFIG request retransmission.
    Reconfig = 6,
}

impl Timer {
    const ALL: [Timer; 7] = [
        Timer::Init,
        Timer::Cookie,
        Timer::Retransmit,
        Timer::DelayedAck,
        Timer::Heartbeat,
        Timer::Shutdown,
        Timer::Reconfig,
    ];
}

/// Deadlines indexed by [`Timer`].
#[derive(Debug, Default, Clone)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 7],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer as usize] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer as usize]
    }

    pub(crate) fn is_running(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    pub(crate) fn stop_all(&mut self) {
        self.deadlines = [None; 7];
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// Stop and return every timer due at `now`, in table order.
    pub(crate) fn take_all_expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> {
        let mut due = [None; 7];
        for t in Timer::ALL {
            if self.deadlines[t as usize].is_some_and(|d| d <= now) {
                self.stop(t);
                due[t as usize] = Some(t);
            }
        }
        due.into_iter().flatten()
    }
}
