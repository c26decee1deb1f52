//! The DTLS association of either role: public types, record dispatch, timers and
//! application data. The handshake itself is a state machine per role (`client`,
//! `server`), on a shared context (`handshake`); records are protected in `record`, our
//! flights resent by `flight`, the peer's messages reassembled in `reassembly`.
//!
//! ```text
//!  client                                   server
//!  ClientHello                 -------->
//!                              <--------    HelloVerifyRequest (cookie)
//!  ClientHello (cookie)        -------->
//!                                           ServerHello, Certificate,
//!                                           ServerKeyExchange, CertificateRequest,
//!                              <--------    ServerHelloDone
//!  Certificate, ClientKeyExchange,
//!  CertificateVerify,
//!  [ChangeCipherSpec], Finished -------->
//!                              <--------    [ChangeCipherSpec], Finished
//!  application data            <------->    application data
//! ```
//! Each side retransmits its last flight on a doubling timer until the peer's next flight
//! arrives, and again whenever the peer retransmits its previous flight. The peer's
//! certificate must hash to the fingerprint from the remote SDP and its key must verify the
//! handshake signature; any failure ends in `Failed` with a reason, and no keys are exported.
//!
//! Once connected, unauthenticated (epoch-0) records can only be a retransmission of the
//! peer's last flight, which we answer by resending ours; anything else (a plaintext alert,
//! a handshake fragment) is dropped and counted in `records_dropped_unauthenticated`, so
//! only an authenticated epoch-1 alert can close or fail an established association.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::rand::SystemRandom;

use crate::dtls::cert::{Certificate, Fingerprint};
use crate::dtls::client::ClientState;
use crate::dtls::flight::Flight;
use crate::dtls::handshake::{Context, Identity, PeerFlights};
use crate::dtls::keying::GCM_OVERHEAD;
use crate::dtls::reassembly::{Placed, Reassembler};
use crate::dtls::record::{OpenError, RecordLayer};
use crate::dtls::server::Server;
use crate::dtls::wire::{
    ContentType, HandshakeHeader, HandshakeType, RecordHeader, DTLS_1_2, RECORD_HEADER_LEN,
};
use crate::rng::Rng;
use crate::srtp::SrtpProfile;

/// Which side of the handshake we are (from `a=setup`: active = client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// Sends the ClientHello.
    Client,
    /// Answers it.
    Server,
}

/// DTLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsConfig {
    /// SRTP profiles in our order of preference (the server picks by its own preference).
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Largest datagram we send.
    pub mtu: usize,
    /// First retransmission timeout (RFC 6347: 1 s).
    pub initial_retransmit: Duration,
    /// Flights sent before giving up.
    pub max_retransmits: u32,
    /// Ceiling of the doubling retransmission timeout (RFC 6347 suggests 60 s).
    pub max_retransmit_timeout: Duration,
    /// Server: demand a HelloVerifyRequest cookie round trip first.
    pub require_cookie: bool,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            srtp_profiles: SrtpProfile::ALL.to_vec(),
            mtu: 1200,
            initial_retransmit: Duration::from_secs(1),
            max_retransmits: 7,
            max_retransmit_timeout: Duration::from_secs(60),
            require_cookie: true,
        }
    }
}

/// Why a DTLS association failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DtlsError {
    /// The peer's certificate does not hash to the fingerprint in its SDP.
    #[error("the peer's DTLS certificate does not match the SDP fingerprint")]
    FingerprintMismatch,
    /// The peer's certificate could not be parsed or is missing.
    #[error("the peer's DTLS certificate is missing or unreadable")]
    BadCertificate,
    /// A handshake signature did not verify with the peer's certificate key.
    #[error("a DTLS handshake signature did not verify")]
    BadSignature,
    /// The peer's Finished did not match the transcript.
    #[error("the peer's DTLS Finished message is wrong")]
    BadFinished,
    /// The peer does not support the extended master secret (RFC 7627), which we require.
    #[error("the peer does not support the extended master secret")]
    NoExtendedMasterSecret,
    /// No common cipher suite, group or signature algorithm.
    #[error("no common DTLS cipher suite or key exchange group")]
    NoCommonParameters,
    /// No common SRTP protection profile.
    #[error("no common SRTP protection profile")]
    NoCommonSrtpProfile,
    /// A handshake message arrived that does not fit the handshake.
    #[error("unexpected or malformed DTLS handshake message")]
    UnexpectedMessage,
    /// The peer sent a fatal alert.
    #[error("the peer sent a fatal DTLS alert ({0})")]
    Alert(u8),
    /// The handshake did not complete after every retransmission.
    #[error("the DTLS handshake timed out")]
    Timeout,
    /// A cryptographic operation failed.
    #[error("a DTLS cryptographic operation failed")]
    Crypto,
    /// Application data before the handshake completed or after close.
    #[error("DTLS is not connected")]
    NotConnected,
    /// Application data larger than one record allows.
    #[error("application data too large for one DTLS record")]
    TooLarge,
}

/// The association's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsState {
    /// Created; a server waits for a ClientHello.
    New,
    /// Handshake in progress.
    Connecting,
    /// Keys established.
    Connected,
    /// Failed for good.
    Failed,
    /// Closed by close_notify.
    Closed,
}

/// What the association reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsEvent {
    /// The handshake completed.
    Connected {
        /// The SRTP profile negotiated by use_srtp.
        srtp_profile: SrtpProfile,
        /// `EXTRACTOR-dtls_srtp` keying material (RFC 5764 4.2).
        keying_material: Vec<u8>,
    },
    /// Application data (SCTP for data channels).
    ApplicationData(Bytes),
    /// The association failed.
    Failed(DtlsError),
    /// The peer sent close_notify.
    Closed,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DtlsStats {
    /// Records dropped because they did not parse.
    pub malformed_records: u64,
    /// Records dropped because authentication failed.
    pub bad_records: u64,
    /// Records dropped as replays.
    pub replayed_records: u64,
    /// Flights retransmitted.
    pub retransmits: u64,
    /// HelloVerifyRequests sent.
    pub cookies_sent: u64,
    /// Unauthenticated (epoch-0) records received after the handshake completed that were
    /// not a retransmission of the peer's last flight: dropped.
    pub records_dropped_unauthenticated: u64,
    /// Records ignored during the handshake: a ChangeCipherSpec out of place, duplicates
    /// of handshake messages already handled, handshake messages after completion.
    pub ignored_records: u64,
    /// ClientHellos other than the one the server committed to: ignored.
    pub ignored_client_hellos: u64,
    /// Handshake fragments dropped by the reassembly bounds (too far ahead, too large,
    /// empty, too many ranges, or over the buffer limit).
    pub fragments_dropped: u64,
    /// Most bytes the handshake reassembly ever held (bounded by 64 KiB).
    pub reassembly_peak_bytes: u64,
}

/// The role-specific handshake state.
#[derive(Debug)]
pub(crate) enum Side {
    Client(ClientState),
    Server(Box<Server>),
}

/// One DTLS association.
#[derive(Debug)]
pub struct DtlsEndpoint {
    pub(crate) cx: Context,
    pub(crate) side: Side,
}

impl DtlsEndpoint {
    /// Create an association whose randoms (client/server random, cookie secret) come from
    /// `rng` (the PeerConnection's generator). ECDHE keys and signatures always use ring's
    /// `SystemRandom`. A client sends its ClientHello at once (at `now`).
    pub fn new(
        role: DtlsRole,
        certificate: &Certificate,
        remote_fingerprint: Fingerprint,
        config: DtlsConfig,
        mut rng: Rng,
        now: Instant,
    ) -> Self {
        let mut client_random = [0u8; 32];
        if role == DtlsRole::Client {
            rng.fill(&mut client_random);
        }
        let mut cx = Context {
            role,
            flight: Flight::new(config.initial_retransmit),
            config,
            identity: Identity {
                cert_der: certificate.der().to_vec(),
                key_pkcs8: certificate.key_pkcs8().to_vec(),
                remote_fingerprint,
            },
            secure: SystemRandom::new(),
            rng,
            state: DtlsState::New,
            client_random,
            server_random: [0u8; 32],
            srtp_profile: None,
            peer_cert: None,
            transcript: Vec::new(),
            next_send_seq: 0,
            record: RecordLayer::default(),
            reassembly: Reassembler::default(),
            peer_flights: PeerFlights::default(),
            peer_retransmitted: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: DtlsStats::default(),
            #[cfg(test)]
            forge_finished: false,
            #[cfg(test)]
            client_hello_for_test: None,
        };
        let side = match role {
            DtlsRole::Client => {
                cx.state = DtlsState::Connecting;
                Side::Client(ClientState::start(&mut cx, now))
            }
            DtlsRole::Server => Side::Server(Box::new(Server::new(&mut cx))),
        };
        DtlsEndpoint { cx, side }
    }

    /// The state.
    pub fn state(&self) -> DtlsState {
        self.cx.state
    }

    /// Our role.
    pub fn role(&self) -> DtlsRole {
        self.cx.role
    }

    /// Counters.
    pub fn stats(&self) -> DtlsStats {
        let mut stats = self.cx.stats.clone();
        stats.reassembly_peak_bytes = self.cx.reassembly.peak() as u64;
        stats
    }

    /// Bytes the handshake reassembly holds now.
    pub fn reassembly_buffered_bytes(&self) -> usize {
        self.cx.reassembly.buffered()
    }

    /// The peer's certificate (DER), once received and checked against the fingerprint.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.cx.peer_cert.as_deref()
    }

    /// The next datagram to send, written into `buf`; returns its length. A datagram
    /// larger than `buf` is dropped.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let d = self.cx.out.pop_front()?;
            if let Some(dst) = buf.get_mut(..d.len()) {
                dst.copy_from_slice(&d);
                return Some(d.len());
            }
        }
    }

    /// When `handle_timeout` should run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.cx.flight.deadline()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.cx.events.pop_front()
    }

    fn finished(&self) -> bool {
        matches!(self.cx.state, DtlsState::Failed | DtlsState::Closed)
    }

    /// Time passed: retransmit the flight when its timer expires.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(at) = self.cx.flight.deadline() else {
            return;
        };
        if now < at {
            return;
        }
        if self.cx.flight.retransmits() >= self.cx.config.max_retransmits {
            self.cx.fail(DtlsError::Timeout);
            return;
        }
        self.cx.stats.retransmits += 1;
        let ceiling = self.cx.config.max_retransmit_timeout;
        self.cx.flight.back_off(now, ceiling);
        self.cx.transmit_flight();
    }

    /// Send application data in one record.
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        if self.cx.state != DtlsState::Connected {
            return Err(DtlsError::NotConnected);
        }
        if data.len() + RECORD_HEADER_LEN + GCM_OVERHEAD > self.cx.config.mtu.max(16_384) {
            return Err(DtlsError::TooLarge);
        }
        let r = self
            .cx
            .record
            .seal(ContentType::ApplicationData, 1, DTLS_1_2, data)
            .ok_or(DtlsError::Crypto)?;
        self.cx.push_datagram(r);
        Ok(())
    }

    /// Send close_notify and stop.
    pub fn close(&mut self) {
        if self.cx.state == DtlsState::Connected {
            if let Some(r) = self
                .cx
                .record
                .seal(ContentType::Alert, 1, DTLS_1_2, &[1, 0])
            {
                self.cx.push_datagram(r);
            }
        }
        if self.cx.state != DtlsState::Failed {
            self.cx.state = DtlsState::Closed;
        }
        self.cx.flight.clear();
    }

    /// A datagram of DTLS records arrived.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        if self.finished() {
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let Ok((header, fragment, next)) = RecordHeader::parse(rest) else {
                self.cx.stats.malformed_records += 1;
                break;
            };
            rest = next;
            self.handle_record(now, &header, fragment);
            if self.finished() {
                return;
            }
        }
        // The peer resent its previous flight: ours was lost (RFC 6347 4.2.4).
        if std::mem::take(&mut self.cx.peer_retransmitted) && self.cx.flight.may_answer(now) {
            self.cx.stats.retransmits += 1;
            self.cx.transmit_flight();
        }
    }

    fn handle_record(&mut self, now: Instant, header: &RecordHeader, fragment: &[u8]) {
        if header.epoch == 0 && self.cx.state == DtlsState::Connected {
            self.unauthenticated_after_handshake(header, fragment);
            return;
        }
        let plaintext = match self.cx.record.open(header, fragment) {
            Ok(p) => p,
            Err(OpenError::Replayed) => {
                self.cx.stats.replayed_records += 1;
                return;
            }
            Err(OpenError::BadRecord) => {
                self.cx.stats.bad_records += 1;
                return;
            }
            // An epoch we cannot read yet (e.g. Finished before its CCS): the peer will
            // retransmit.
            Err(OpenError::UnreadableEpoch) => {
                self.cx.stats.malformed_records += 1;
                return;
            }
        };
        match header.content_type {
            ContentType::ChangeCipherSpec => {
                if plaintext != [1] || header.epoch != 0 {
                    self.cx.stats.malformed_records += 1;
                    return;
                }
                match &mut self.side {
                    Side::Client(state) => {
                        let current = std::mem::replace(state, ClientState::Done);
                        *state = current.on_change_cipher_spec(&mut self.cx);
                    }
                    Side::Server(server) => server.on_change_cipher_spec(&mut self.cx),
                }
            }
            ContentType::Alert => self.on_alert(&plaintext),
            ContentType::ApplicationData => {
                if header.epoch == 0 || self.cx.state != DtlsState::Connected {
                    self.cx.stats.malformed_records += 1;
                    return;
                }
                self.cx
                    .push_event(DtlsEvent::ApplicationData(Bytes::from(plaintext)));
            }
            ContentType::Handshake => self.on_handshake_record(now, header, &plaintext),
        }
    }

    fn on_alert(&mut self, plaintext: &[u8]) {
        let &[level, description] = plaintext else {
            self.cx.stats.malformed_records += 1;
            return;
        };
        if self.cx.state == DtlsState::New {
            // A server that has not answered a ClientHello has no association to end.
            self.cx.stats.ignored_records += 1;
        } else if description == 0 && self.cx.state == DtlsState::Connecting {
            // close_notify before the handshake completed: the handshake failed.
            self.cx.fail(DtlsError::Alert(0));
        } else if description == 0 {
            self.cx.state = DtlsState::Closed;
            self.cx.flight.clear();
            self.cx.push_event(DtlsEvent::Closed);
        } else if level == 2 {
            self.cx.state = DtlsState::Failed;
            self.cx.flight.clear();
            self.cx.record.forget();
            self.cx
                .push_event(DtlsEvent::Failed(DtlsError::Alert(description)));
        }
    }

    /// An epoch-0 record once connected: only a retransmission of the peer's last flight
    /// is answered (by resending ours); everything else is dropped and counted.
    fn unauthenticated_after_handshake(&mut self, header: &RecordHeader, fragment: &[u8]) {
        let retransmission = header.content_type == ContentType::Handshake
            && self.is_retransmission_of_last_flight(fragment);
        if retransmission {
            self.cx.peer_retransmitted = true;
        } else {
            self.cx.stats.records_dropped_unauthenticated += 1;
        }
    }

    /// Whether every fragment in a handshake record belongs to the peer's last flight
    /// (message_seq we already handled, in its last flight) and none is a ClientHello.
    fn is_retransmission_of_last_flight(&self, mut data: &[u8]) -> bool {
        let previous = &self.cx.peer_flights.previous;
        let mut any = false;
        while !data.is_empty() {
            let Ok((h, _, rest)) = HandshakeHeader::parse(data) else {
                return false;
            };
            data = rest;
            if h.msg_type == HandshakeType::ClientHello.to_u8()
                || !previous.contains(&h.message_seq)
            {
                return false;
            }
            any = true;
        }
        any
    }

    fn on_handshake_record(&mut self, now: Instant, record: &RecordHeader, mut data: &[u8]) {
        while !data.is_empty() {
            let Ok((h, body, rest)) = HandshakeHeader::parse(data) else {
                self.cx.stats.malformed_records += 1;
                return;
            };
            data = rest;
            if let Side::Server(server) = &mut self.side {
                if h.msg_type == HandshakeType::ClientHello.to_u8() && record.epoch == 0 {
                    server.on_client_hello_fragment(&mut self.cx, now, record, &h, body);
                    if self.finished() {
                        return;
                    }
                    continue;
                }
                if !server.committed() {
                    // Before a ClientHello, nothing else has a place.
                    self.cx.stats.ignored_records += 1;
                    continue;
                }
            }
            if self.cx.state == DtlsState::Connected {
                // An authenticated retransmission of the peer's last message (its
                // Finished) or a renegotiation attempt: nothing to process.
                if self.cx.peer_flights.previous.contains(&h.message_seq) {
                    self.cx.peer_retransmitted = true;
                } else {
                    self.cx.stats.ignored_records += 1;
                }
                continue;
            }
            match self.cx.reassembly.add(&h, record.epoch, body) {
                Placed::Taken => {}
                Placed::Dropped => {
                    self.cx.stats.fragments_dropped += 1;
                    continue;
                }
                Placed::Old => {
                    if self.cx.peer_flights.previous.contains(&h.message_seq) {
                        self.cx.peer_retransmitted = true;
                    } else {
                        // A duplicate within the flight we are reading.
                        self.cx.stats.ignored_records += 1;
                    }
                    continue;
                }
            }
            while let Some(msg) = self.cx.reassembly.pop() {
                let result = match &mut self.side {
                    Side::Client(state) => {
                        let current = std::mem::replace(state, ClientState::Done);
                        current
                            .on_message(&mut self.cx, now, msg)
                            .map(|next| *state = next)
                    }
                    Side::Server(server) => server.on_message(&mut self.cx, now, msg),
                };
                if let Err(e) = result {
                    self.cx.fail(e);
                }
                if self.finished() || self.cx.state == DtlsState::Connected {
                    return;
                }
            }
        }
    }
}
