//! Graceful shutdown (RFC 9260 9.2): SHUTDOWN once our data is acknowledged, SHUTDOWN
//! ACK once the peer's is, SHUTDOWN COMPLETE, and the T2-shutdown retransmissions.

use std::time::Instant;

use super::{Association, AssociationState, CloseReason, Receiver, Timer};
use crate::sctp::wire::{Chunk, ErrorCause};

impl Association {
    pub(super) fn handle_shutdown(&mut self, now: Instant, cumulative_tsn_ack: u32) {
        use AssociationState as S;
        match self.state {
            S::Established | S::ShutdownPending | S::ShutdownSent | S::ShutdownReceived => {
                self.sender
                    .handle_cumulative_ack(now, cumulative_tsn_ack, &mut self.stats);
                self.restart_retransmission_timer(now);
                if self.state == S::ShutdownSent {
                    // Both sides shut down at once (RFC 9260 9.2): answer with SHUTDOWN ACK.
                    self.state = S::ShutdownAckSent;
                    self.send_shutdown_chunk(now);
                } else {
                    self.state = S::ShutdownReceived;
                }
                if let Some(r) = &mut self.receiver {
                    r.request_ack();
                }
                self.advance_shutdown(now);
            }
            S::ShutdownAckSent => self.shutdown_chunk_due = true,
            _ => {}
        }
    }

    pub(super) fn handle_shutdown_ack(&mut self) {
        use AssociationState as S;
        if matches!(self.state, S::ShutdownSent | S::ShutdownAckSent) {
            let tag = self.peer_tag();
            self.push_control(
                tag,
                Chunk::ShutdownComplete {
                    reflected_tag: false,
                },
            );
            self.terminate(CloseReason::Shutdown);
        }
    }

    /// Move a pending shutdown forward once all our data is acknowledged.
    pub(super) fn advance_shutdown(&mut self, now: Instant) {
        use AssociationState as S;
        let idle = self.sender.is_idle();
        match self.state {
            S::ShutdownPending if idle => {
                self.state = S::ShutdownSent;
                self.send_shutdown_chunk(now);
            }
            S::ShutdownReceived if idle => {
                self.state = S::ShutdownAckSent;
                self.send_shutdown_chunk(now);
            }
            S::ShutdownAckSent | S::ShutdownSent if self.shutdown_chunk_due => {
                self.send_shutdown_chunk(now);
            }
            _ => {}
        }
    }

    pub(super) fn send_shutdown_chunk(&mut self, now: Instant) {
        self.shutdown_chunk_due = false;
        let tag = self.peer_tag();
        let chunk = if self.state == AssociationState::ShutdownSent {
            Chunk::Shutdown {
                cumulative_tsn_ack: self.receiver.as_ref().map_or(0, Receiver::cumulative_tsn),
            }
        } else {
            Chunk::ShutdownAck
        };
        self.push_control(tag, chunk);
        self.timers.set(Timer::Shutdown, now + self.sender.rto());
    }

    pub(super) fn on_shutdown_timer(&mut self, now: Instant) {
        use AssociationState as S;
        if !matches!(self.state, S::ShutdownSent | S::ShutdownAckSent) {
            return;
        }
        self.error_count += 1;
        if self.error_count > self.config.max_retransmits {
            self.send_abort(ErrorCause::PROTOCOL_VIOLATION);
            self.terminate(CloseReason::Timeout);
            return;
        }
        self.sender.rtt_mut().back_off();
        self.send_shutdown_chunk(now);
    }
}
