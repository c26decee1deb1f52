//! Stream reset with RE-CONFIG (RFC 6525), as data channels close (RFC 8831 6.7).
//!
//! Outgoing: a stream asked to reset waits until its queue is sent, then goes in an
//! Outgoing SSN Reset Request carrying the last TSN we assigned. One request is
//! outstanding at a time and is retransmitted until a response arrives. On success the
//! stream's numbering restarts at 0 and [`SctpEvent::OutgoingStreamReset`] fires.
//!
//! Incoming: the peer's request is performed once every TSN up to its last assigned TSN
//! has arrived (deferred until then, answered "in progress"); the streams' numbering
//! restarts and [`SctpEvent::IncomingStreamReset`] fires.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Association, SctpEvent, Timer};
use crate::sctp::wire::{Chunk, ReConfigParam, ReconfigResult};

/// Most streams in one request, ours or the peer's (keeps the chunk well under any MTU).
const MAX_STREAMS_PER_REQUEST: usize = 128;
/// A peer's reset request is refused while this many events wait unread.
const MAX_QUEUED_EVENTS_FOR_RESET: usize = 4096;

#[derive(Debug, Clone)]
struct OutgoingRequest {
    seq: u32,
    last_assigned_tsn: u32,
    streams: Vec<u16>,
}

#[derive(Debug, Clone)]
struct DeferredReset {
    seq: u32,
    last_assigned_tsn: u32,
    streams: Vec<u16>,
}

/// Both directions of stream reset bookkeeping.
#[derive(Debug)]
pub(crate) struct StreamReconfig {
    next_request_seq: u32,
    waiting: BTreeSet<u16>,
    outstanding: Option<OutgoingRequest>,
    resend: bool,
    peer_next_seq: u32,
    last_response: Option<(u32, ReconfigResult)>,
    deferred: Option<DeferredReset>,
}

impl StreamReconfig {
    pub(crate) fn new(local_initial_tsn: u32) -> Self {
        StreamReconfig {
            next_request_seq: local_initial_tsn,
            waiting: BTreeSet::new(),
            outstanding: None,
            resend: false,
            peer_next_seq: 0,
            last_response: None,
            deferred: None,
        }
    }

    pub(crate) fn set_peer_initial_tsn(&mut self, tsn: u32) {
        self.peer_next_seq = tsn;
    }

    pub(crate) fn request_reset(&mut self, stream: u16) {
        let in_flight = self
            .outstanding
            .as_ref()
            .is_some_and(|r| r.streams.contains(&stream));
        if !in_flight {
            self.waiting.insert(stream);
        }
    }

    /// Whether an outgoing reset of `stream` is pending (new sends would race it).
    pub(crate) fn is_resetting(&self, stream: u16) -> bool {
        self.waiting.contains(&stream)
            || self
                .outstanding
                .as_ref()
                .is_some_and(|r| r.streams.contains(&stream))
    }

    pub(crate) fn retransmit_due(&mut self) {
        if self.outstanding.is_some() {
            self.resend = true;
        }
    }
}

impl Association {
    /// Put a reset request in the control queue when one is ready (or due again).
    pub(super) fn queue_reconfig_request(&mut self, now: Instant) {
        if !self.is_established() || !self.negotiated.is_some_and(|n| n.reconfig) {
            return;
        }
        let r = &mut self.reconfig;
        if r.outstanding.is_none() && !r.waiting.is_empty() {
            let ready: Vec<u16> = r
                .waiting
                .iter()
                .copied()
                .filter(|s| self.sender.stream_drained(*s))
                .take(MAX_STREAMS_PER_REQUEST)
                .collect();
            if ready.is_empty() {
                return;
            }
            for s in &ready {
                r.waiting.remove(s);
            }
            let seq = r.next_request_seq;
            r.next_request_seq = seq.wrapping_add(1);
            r.outstanding = Some(OutgoingRequest {
                seq,
                last_assigned_tsn: self.sender.last_assigned_tsn(),
                streams: ready,
            });
            r.resend = true;
        }
        if !r.resend {
            return;
        }
        let Some(req) = r.outstanding.clone() else {
            return;
        };
        r.resend = false;
        let response_seq = r.peer_next_seq.wrapping_sub(1);
        let chunk = Chunk::ReConfig(vec![ReConfigParam::OutgoingReset {
            request_seq: req.seq,
            response_seq,
            last_assigned_tsn: req.last_assigned_tsn,
            streams: req.streams,
        }]);
        let tag = self.peer_tag();
        self.push_control(tag, chunk);
        self.timers.set(Timer::Reconfig, now + self.sender.rto());
    }

    pub(super) fn handle_reconfig(&mut self, now: Instant, params: Vec<ReConfigParam>) {
        if !self.is_established() && self.receiver.is_none() {
            return;
        }
        for p in params {
            match p {
                ReConfigParam::OutgoingReset {
                    request_seq,
                    last_assigned_tsn,
                    streams,
                    ..
                } => self.handle_peer_reset_request(now, request_seq, last_assigned_tsn, streams),
                ReConfigParam::Response {
                    response_seq,
                    result,
                    ..
                } => self.handle_reconfig_response(response_seq, result),
                ReConfigParam::IncomingReset { request_seq, .. }
                | ReConfigParam::SsnTsnReset { request_seq }
                | ReConfigParam::AddOutgoingStreams { request_seq, .. }
                | ReConfigParam::AddIncomingStreams { request_seq, .. } => {
                    // Not needed over WebRTC: deny, but keep the sequence in step.
                    if request_seq == self.reconfig.peer_next_seq {
                        self.reconfig.peer_next_seq = request_seq.wrapping_add(1);
                    }
                    self.send_reconfig_response(request_seq, ReconfigResult::DENIED);
                }
                ReConfigParam::Unknown(_) => self.stats.unknown_chunks += 1,
            }
        }
    }

    fn send_reconfig_response(&mut self, response_seq: u32, result: ReconfigResult) {
        let tag = self.peer_tag();
        self.push_control(
            tag,
            Chunk::ReConfig(vec![ReConfigParam::Response {
                response_seq,
                result,
                next_tsns: None,
            }]),
        );
    }

    fn handle_peer_reset_request(
        &mut self,
        now: Instant,
        seq: u32,
        last_assigned_tsn: u32,
        streams: Vec<u16>,
    ) {
        if self.events.len() >= MAX_QUEUED_EVENTS_FOR_RESET
            || streams.len() > MAX_STREAMS_PER_REQUEST
        {
            // Nobody is reading events, or the request is absurd: refuse rather than grow.
            if seq == self.reconfig.peer_next_seq {
                self.reconfig.peer_next_seq = seq.wrapping_add(1);
            }
            self.send_reconfig_response(seq, ReconfigResult::DENIED);
            return;
        }
        let r = &mut self.reconfig;
        if seq == r.peer_next_seq {
            r.peer_next_seq = seq.wrapping_add(1);
            r.deferred = Some(DeferredReset {
                seq,
                last_assigned_tsn,
                streams,
            });
            if !self.perform_deferred_reset(now) {
                self.reconfig.last_response = Some((seq, ReconfigResult::IN_PROGRESS));
                self.send_reconfig_response(seq, ReconfigResult::IN_PROGRESS);
            }
        } else if seq == r.peer_next_seq.wrapping_sub(1) {
            // A retransmission: perform it if now possible, else repeat the answer.
            if !self.perform_deferred_reset(now) {
                let result = self
                    .reconfig
                    .last_response
                    .filter(|(s, _)| *s == seq)
                    .map_or(ReconfigResult::SUCCESS_PERFORMED, |(_, r)| r);
                self.send_reconfig_response(seq, result);
            }
        } else {
            self.send_reconfig_response(seq, ReconfigResult::ERROR_BAD_SEQUENCE_NUMBER);
        }
    }

    /// Perform a deferred incoming reset if all its data has arrived; true if done.
    pub(super) fn perform_deferred_reset(&mut self, _now: Instant) -> bool {
        let Some(d) = &self.reconfig.deferred else {
            return false;
        };
        let Some(receiver) = &mut self.receiver else {
            return false;
        };
        if !receiver.has_received_through(d.last_assigned_tsn) {
            return false;
        }
        let Some(d) = self.reconfig.deferred.take() else {
            return false;
        };
        // Everything before the reset is delivered first.
        self.collect_messages();
        if let Some(receiver) = &mut self.receiver {
            receiver.reset_streams(&d.streams);
        }
        for s in &d.streams {
            self.events.push_back(SctpEvent::IncomingStreamReset(*s));
        }
        self.reconfig.last_response = Some((d.seq, ReconfigResult::SUCCESS_PERFORMED));
        self.send_reconfig_response(d.seq, ReconfigResult::SUCCESS_PERFORMED);
        true
    }

    fn handle_reconfig_response(&mut self, seq: u32, result: ReconfigResult) {
        let Some(req) = &self.reconfig.outstanding else {
            return;
        };
        if req.seq != seq {
            return;
        }
        if result == ReconfigResult::IN_PROGRESS {
            return; // The timer asks again.
        }
        let Some(req) = self.reconfig.outstanding.take() else {
            return;
        };
        self.timers.stop(Timer::Reconfig);
        // Success or not, the stream is done with: numbering restarts either way, so
        // a refused reset cannot leave the channel hanging.
        for s in req.streams {
            self.sender.reset_stream(s);
            self.events.push_back(SctpEvent::OutgoingStreamReset(s));
        }
    }
}
