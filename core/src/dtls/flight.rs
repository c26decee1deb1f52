//! Our outgoing flight and its retransmission (RFC 6347 4.2.4): the messages of the last
//! flight we sent, resent on a doubling timer until the peer's next flight arrives, and
//! again (at most every [`ANSWER_INTERVAL`]) when the peer retransmits its previous flight.

use std::time::{Duration, Instant};

use crate::dtls::keying::GCM_OVERHEAD;
use crate::dtls::record::RecordLayer;
use crate::dtls::wire::{
    ContentType, HandshakeHeader, HandshakeType, HANDSHAKE_HEADER_LEN, RECORD_HEADER_LEN,
};

/// Shortest interval between two answers to the peer's retransmissions, so two peers
/// answering each other's retransmissions cannot ping-pong (and a spoofed retransmission
/// cannot make us send more than one flight per interval).
pub(crate) const ANSWER_INTERVAL: Duration = Duration::from_millis(100);

/// One piece of a flight.
#[derive(Debug, Clone)]
pub(crate) enum FlightItem {
    /// A handshake message.
    Handshake {
        msg_type: HandshakeType,
        seq: u16,
        body: Vec<u8>,
        epoch: u16,
    },
    /// ChangeCipherSpec (epoch 0).
    ChangeCipherSpec,
}

/// The last flight we sent and its timer.
#[derive(Debug)]
pub(crate) struct Flight {
    items: Vec<FlightItem>,
    /// The record version of epoch-0 records (DTLS 1.0 for the client's ClientHello).
    version: u16,
    retransmit_at: Option<Instant>,
    timeout: Duration,
    retransmits: u32,
    last_sent: Option<Instant>,
}

impl Flight {
    /// No flight yet.
    pub(crate) fn new(initial_timeout: Duration) -> Flight {
        Flight {
            items: Vec::new(),
            version: crate::dtls::wire::DTLS_1_2,
            retransmit_at: None,
            timeout: initial_timeout,
            retransmits: 0,
            last_sent: None,
        }
    }

    /// Replace the flight and reset the timer (armed when we expect a reply).
    pub(crate) fn start(
        &mut self,
        now: Instant,
        items: Vec<FlightItem>,
        version: u16,
        initial_timeout: Duration,
        expect_reply: bool,
    ) {
        self.items = items;
        self.version = version;
        self.retransmits = 0;
        self.timeout = initial_timeout;
        self.last_sent = Some(now);
        self.retransmit_at = expect_reply.then(|| now + initial_timeout);
    }

    /// Forget the flight.
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.retransmit_at = None;
    }

    /// When the timer fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.retransmit_at
    }

    /// Retransmissions made on the timer since the flight started.
    pub(crate) fn retransmits(&self) -> u32 {
        self.retransmits
    }

    /// The timer fired: double the timeout (up to `ceiling`) and re-arm.
    pub(crate) fn back_off(&mut self, now: Instant, ceiling: Duration) {
        self.retransmits += 1;
        self.timeout = (self.timeout * 2).min(ceiling);
        self.last_sent = Some(now);
        self.retransmit_at = Some(now + self.timeout);
    }

    /// Whether we may answer a peer retransmission now (rate limit), noting the answer.
    pub(crate) fn may_answer(&mut self, now: Instant) -> bool {
        let recently = self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) < ANSWER_INTERVAL);
        if self.items.is_empty() || recently {
            return false;
        }
        self.last_sent = Some(now);
        true
    }

    /// The flight as datagrams: messages fragmented to fit `mtu`, records packed.
    pub(crate) fn datagrams(&self, record: &mut RecordLayer, mtu: usize) -> Vec<Vec<u8>> {
        let mtu = mtu.max(RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + GCM_OVERHEAD + 16);
        let mut records: Vec<Vec<u8>> = Vec::new();
        for item in &self.items {
            match item {
                FlightItem::ChangeCipherSpec => {
                    records.extend(record.seal(
                        ContentType::ChangeCipherSpec,
                        0,
                        self.version,
                        &[1],
                    ));
                }
                FlightItem::Handshake {
                    msg_type,
                    seq,
                    body,
                    epoch,
                } => {
                    let overhead = RECORD_HEADER_LEN
                        + HANDSHAKE_HEADER_LEN
                        + if *epoch > 0 { GCM_OVERHEAD } else { 0 };
                    let room = mtu - overhead;
                    let mut offset = 0;
                    loop {
                        let end = (offset + room).min(body.len());
                        let piece = body.get(offset..end).unwrap_or_default();
                        let mut fragment = Vec::with_capacity(HANDSHAKE_HEADER_LEN + piece.len());
                        HandshakeHeader {
                            msg_type: msg_type.to_u8(),
                            length: body.len() as u32,
                            message_seq: *seq,
                            fragment_offset: offset as u32,
                            fragment_length: piece.len() as u32,
                        }
                        .write(&mut fragment);
                        fragment.extend_from_slice(piece);
                        let version = if *epoch == 0 {
                            self.version
                        } else {
                            crate::dtls::wire::DTLS_1_2
                        };
                        records.extend(record.seal(
                            ContentType::Handshake,
                            *epoch,
                            version,
                            &fragment,
                        ));
                        offset = end;
                        if offset >= body.len() {
                            break;
                        }
                    }
                }
            }
        }
        let mut datagrams = Vec::new();
        let mut datagram: Vec<u8> = Vec::new();
        for r in records {
            if !datagram.is_empty() && datagram.len() + r.len() > mtu {
                datagrams.push(std::mem::take(&mut datagram));
            }
            datagram.extend_from_slice(&r);
        }
        if !datagram.is_empty() {
            datagrams.push(datagram);
        }
        datagrams
    }
}
