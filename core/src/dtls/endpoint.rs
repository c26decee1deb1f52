//! The DTLS 1.2 handshake of both roles, with the flights WebRTC uses (mutual
//! certificate authentication, ECDHE-ECDSA with AES-128-GCM, extended master secret,
//! use_srtp, and a stateless HelloVerifyRequest cookie on the server):
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

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::agreement;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::dtls::cert::{Certificate, Fingerprint};
use crate::dtls::keying::{self, RecordKeys, GCM_OVERHEAD};
use crate::dtls::wire::{
    self, ClientHello, ContentType, HandshakeHeader, HandshakeType, HelloExtensions, RecordHeader,
    ServerHello, ServerKeyExchange, CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256, DTLS_1_0, DTLS_1_2,
    GROUP_P256, GROUP_X25519, HANDSHAKE_HEADER_LEN, RECORD_HEADER_LEN, SIG_ECDSA_P256_SHA256,
};
use crate::srtp::SrtpProfile;

/// Largest handshake message we reassemble.
const MAX_MESSAGE: usize = 16 * 1024;
/// Most handshake messages buffered ahead of the next expected one.
const MAX_PENDING_MESSAGES: u16 = 8;
/// Most datagrams and events queued.
const MAX_QUEUE: usize = 256;
/// Largest transcript kept (the handshake messages of one handshake).
const MAX_TRANSCRIPT: usize = 64 * 1024;

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Client: ClientHello sent, waiting for HelloVerifyRequest or ServerHello.
    ClientWaitServerHello,
    /// Client: reading the server's first flight.
    ClientWaitServerHelloDone,
    /// Client: our Finished is out, waiting for the server's.
    ClientWaitFinished,
    /// Server: waiting for a (cookied) ClientHello.
    ServerWaitClientHello,
    /// Server: reading the client's second flight.
    ServerWaitClientFinished,
    /// Done.
    Done,
}

#[derive(Debug, Clone)]
enum FlightItem {
    Handshake {
        msg_type: HandshakeType,
        seq: u16,
        body: Vec<u8>,
        epoch: u16,
    },
    ChangeCipherSpec,
}

#[derive(Debug)]
struct Partial {
    msg_type: u8,
    length: usize,
    data: Vec<u8>,
    have: Vec<(usize, usize)>,
}

impl Partial {
    fn add(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(dst) = self.data.get_mut(offset..offset + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.have.push((offset, offset + bytes.len()));
        }
    }

    fn complete(&mut self) -> bool {
        // Merge the received ranges (keeps the list short) and check they cover everything.
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
        matches!(self.have.first(), Some(&(0, end)) if end >= self.length) || self.length == 0
    }
}

/// 64-record anti-replay window (RFC 6347 4.1.2.6).
#[derive(Debug, Default)]
struct ReplayWindow {
    max: Option<u64>,
    bits: u64,
}

impl ReplayWindow {
    fn check(&self, seq: u64) -> bool {
        match self.max {
            None => true,
            Some(max) if seq > max => true,
            Some(max) => {
                let back = max - seq;
                back < 64 && self.bits & (1u64 << back) == 0
            }
        }
    }

    fn mark(&mut self, seq: u64) {
        match self.max {
            None => {
                self.max = Some(seq);
                self.bits = 1;
            }
            Some(max) if seq > max => {
                let shift = seq - max;
                self.bits = if shift >= 64 {
                    1
                } else {
                    (self.bits << shift) | 1
                };
                self.max = Some(seq);
            }
            Some(max) => {
                let back = max - seq;
                if back < 64 {
                    self.bits |= 1u64 << back;
                }
            }
        }
    }
}

enum Ephemeral {
    None,
    Key(agreement::EphemeralPrivateKey, u16),
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ephemeral::None => "None",
            Ephemeral::Key(..) => "Key(..)",
        })
    }
}

/// One DTLS association.
#[derive(Debug)]
pub struct DtlsEndpoint {
    role: DtlsRole,
    config: DtlsConfig,
    cert_der: Vec<u8>,
    key_pkcs8: Vec<u8>,
    remote_fingerprint: Fingerprint,
    secure: SystemRandom,
    state: DtlsState,
    step: Step,
    client_random: [u8; 32],
    server_random: [u8; 32],
    transcript: Vec<u8>,
    /// The last ClientHello we sent (client) before it enters the transcript.
    pending_client_hello: Option<Vec<u8>>,
    cookie_secret: [u8; 32],
    next_send_seq: u16,
    next_recv_seq: u16,
    record_seq: [u64; 2],
    write_epoch: u16,
    read_epoch: u16,
    keys: Option<RecordKeys>,
    master: Option<[u8; 48]>,
    ephemeral: Ephemeral,
    peer_public: Vec<u8>,
    peer_cert: Option<Vec<u8>>,
    srtp_profile: Option<SrtpProfile>,
    pending: BTreeMap<u16, Partial>,
    /// Server: a ClientHello arriving in fragments (browsers' DTLS 1.3 ClientHellos with
    /// post-quantum key shares exceed the path MTU), by message_seq. One at a time.
    client_hello_fragments: Option<(u16, Partial)>,
    flight: Vec<FlightItem>,
    retransmit_at: Option<Instant>,
    retransmit_timeout: Duration,
    retransmits: u32,
    peer_retransmitted: bool,
    last_flight_sent: Option<Instant>,
    replay: ReplayWindow,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
    stats: DtlsStats,
    /// Test hook: send a Finished with wrong verify_data (properly encrypted), to prove
    /// the peer checks the transcript and not only the record authentication.
    #[cfg(test)]
    pub(crate) forge_finished: bool,
    /// Test hook: the groups and the extended-master-secret flag a client offers in the
    /// ClientHellos it sends from now on (to make the server pick P-256, or to leave out
    /// the extended master secret).
    #[cfg(test)]
    pub(crate) client_hello_for_test: Option<(Vec<u16>, bool)>,
}

fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

impl DtlsEndpoint {
    /// Create an association. A client sends its ClientHello at once (at `now`).
    pub fn new(
        role: DtlsRole,
        certificate: &Certificate,
        remote_fingerprint: Fingerprint,
        config: DtlsConfig,
        now: Instant,
    ) -> Self {
        let secure = SystemRandom::new();
        let mut cookie_secret = [0u8; 32];
        let mut client_random = [0u8; 32];
        let _ = secure.fill(&mut cookie_secret);
        let _ = secure.fill(&mut client_random);
        let mut ep = DtlsEndpoint {
            role,
            retransmit_timeout: config.initial_retransmit,
            config,
            cert_der: certificate.der().to_vec(),
            key_pkcs8: certificate.key_pkcs8().to_vec(),
            remote_fingerprint,
            secure,
            state: DtlsState::New,
            step: match role {
                DtlsRole::Client => Step::ClientWaitServerHello,
                DtlsRole::Server => Step::ServerWaitClientHello,
            },
            client_random,
            server_random: [0u8; 32],
            transcript: Vec::new(),
            pending_client_hello: None,
            cookie_secret,
            next_send_seq: 0,
            next_recv_seq: 0,
            record_seq: [0, 0],
            write_epoch: 0,
            read_epoch: 0,
            keys: None,
            master: None,
            ephemeral: Ephemeral::None,
            peer_public: Vec::new(),
            peer_cert: None,
            srtp_profile: None,
            pending: BTreeMap::new(),
            client_hello_fragments: None,
            flight: Vec::new(),
            retransmit_at: None,
            retransmits: 0,
            peer_retransmitted: false,
            last_flight_sent: None,
            replay: ReplayWindow::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: DtlsStats::default(),
            #[cfg(test)]
            forge_finished: false,
            #[cfg(test)]
            client_hello_for_test: None,
        };
        if role == DtlsRole::Client {
            ep.state = DtlsState::Connecting;
            ep.send_client_hello(now, Vec::new());
        }
        ep
    }

    /// The state.
    pub fn state(&self) -> DtlsState {
        self.state
    }

    /// Our role.
    pub fn role(&self) -> DtlsRole {
        self.role
    }

    /// Counters.
    pub fn stats(&self) -> DtlsStats {
        self.stats.clone()
    }

    /// The peer's certificate (DER), once received and checked against the fingerprint.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        self.peer_cert.as_deref()
    }

    // ------------------------------------------------------------------ output

    /// The next datagram to send, written into `buf`; returns its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let d = self.out.pop_front()?;
            if let Some(dst) = buf.get_mut(..d.len()) {
                dst.copy_from_slice(&d);
                return Some(d.len());
            }
        }
    }

    /// When `handle_timeout` should run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retransmit_at
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: DtlsEvent) {
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(e);
        }
    }

    fn push_datagram(&mut self, d: Vec<u8>) {
        if self.out.len() < MAX_QUEUE && !d.is_empty() {
            self.out.push_back(d);
        }
    }

    /// Build one record (protected in epoch 1).
    fn record(&mut self, content_type: ContentType, epoch: u16, payload: &[u8]) -> Option<Vec<u8>> {
        let idx = usize::from(epoch.min(1));
        let seq = self.record_seq[idx];
        self.record_seq[idx] += 1;
        let version = if epoch == 0
            && self.role == DtlsRole::Client
            && self.step == Step::ClientWaitServerHello
        {
            DTLS_1_0
        } else {
            DTLS_1_2
        };
        let fragment = if epoch == 0 {
            payload.to_vec()
        } else {
            self.keys
                .as_ref()?
                .write
                .seal(epoch, seq, content_type.to_u8(), version, payload)?
        };
        let mut out = Vec::with_capacity(RECORD_HEADER_LEN + fragment.len());
        RecordHeader {
            content_type,
            version,
            epoch,
            sequence: seq,
            length: fragment.len() as u16,
        }
        .write(&mut out);
        out.extend_from_slice(&fragment);
        Some(out)
    }

    /// Send (or resend) the current flight: fragment within the MTU, pack records into datagrams.
    fn transmit_flight(&mut self) {
        let mtu = self
            .config
            .mtu
            .max(RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + GCM_OVERHEAD + 16);
        let mut records: Vec<Vec<u8>> = Vec::new();
        for item in self.flight.clone() {
            match item {
                FlightItem::ChangeCipherSpec => {
                    if let Some(r) = self.record(ContentType::ChangeCipherSpec, 0, &[1]) {
                        records.push(r);
                    }
                }
                FlightItem::Handshake {
                    msg_type,
                    seq,
                    body,
                    epoch,
                } => {
                    let overhead = RECORD_HEADER_LEN
                        + HANDSHAKE_HEADER_LEN
                        + if epoch > 0 { GCM_OVERHEAD } else { 0 };
                    let room = mtu - overhead;
                    let mut offset = 0;
                    loop {
                        let end = (offset + room).min(body.len());
                        let piece = body.get(offset..end).unwrap_or_default();
                        let mut frag = Vec::with_capacity(HANDSHAKE_HEADER_LEN + piece.len());
                        HandshakeHeader {
                            msg_type: msg_type.to_u8(),
                            length: body.len() as u32,
                            message_seq: seq,
                            fragment_offset: offset as u32,
                            fragment_length: piece.len() as u32,
                        }
                        .write(&mut frag);
                        frag.extend_from_slice(piece);
                        if let Some(r) = self.record(ContentType::Handshake, epoch, &frag) {
                            records.push(r);
                        }
                        offset = end;
                        if offset >= body.len() {
                            break;
                        }
                    }
                }
            }
        }
        let mut datagram: Vec<u8> = Vec::new();
        for r in records {
            if !datagram.is_empty() && datagram.len() + r.len() > mtu {
                self.push_datagram(std::mem::take(&mut datagram));
            }
            datagram.extend_from_slice(&r);
        }
        self.push_datagram(datagram);
    }

    fn start_flight(&mut self, now: Instant, items: Vec<FlightItem>, expect_reply: bool) {
        self.flight = items;
        self.retransmits = 0;
        self.retransmit_timeout = self.config.initial_retransmit;
        self.transmit_flight();
        self.last_flight_sent = Some(now);
        self.retransmit_at = expect_reply.then(|| now + self.retransmit_timeout);
    }

    fn add_message(
        &mut self,
        items: &mut Vec<FlightItem>,
        msg_type: HandshakeType,
        body: Vec<u8>,
        epoch: u16,
    ) {
        let seq = self.next_send_seq;
        self.next_send_seq = self.next_send_seq.wrapping_add(1);
        let full = wire::full_message(msg_type, seq, &body);
        if self.transcript.len() + full.len() <= MAX_TRANSCRIPT {
            self.transcript.extend_from_slice(&full);
        }
        items.push(FlightItem::Handshake {
            msg_type,
            seq,
            body,
            epoch,
        });
    }

    fn fail(&mut self, error: DtlsError) {
        if matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
            return;
        }
        // A fatal alert so the peer stops waiting: handshake_failure, bad_certificate or
        // decrypt_error as fits.
        let description = match error {
            DtlsError::FingerprintMismatch | DtlsError::BadCertificate => 42,
            DtlsError::BadSignature | DtlsError::BadFinished => 51,
            _ => 40,
        };
        let epoch = self.write_epoch;
        if let Some(r) = self.record(ContentType::Alert, epoch, &[2, description]) {
            self.push_datagram(r);
        }
        self.state = DtlsState::Failed;
        self.step = Step::Done;
        self.retransmit_at = None;
        self.flight.clear();
        self.keys = None;
        self.push_event(DtlsEvent::Failed(error));
    }

    // ------------------------------------------------------------------ time

    /// Time passed: retransmit the flight when its timer expires.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(at) = self.retransmit_at else { return };
        if now < at {
            return;
        }
        if self.retransmits >= self.config.max_retransmits {
            self.fail(DtlsError::Timeout);
            return;
        }
        self.retransmits += 1;
        self.stats.retransmits += 1;
        self.retransmit_timeout =
            (self.retransmit_timeout * 2).min(self.config.max_retransmit_timeout);
        self.transmit_flight();
        self.last_flight_sent = Some(now);
        self.retransmit_at = Some(now + self.retransmit_timeout);
    }

    // ------------------------------------------------------------------ application data

    /// Send application data in one record.
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        if self.state != DtlsState::Connected {
            return Err(DtlsError::NotConnected);
        }
        if data.len() + RECORD_HEADER_LEN + GCM_OVERHEAD > self.config.mtu.max(16_384) {
            return Err(DtlsError::TooLarge);
        }
        let r = self
            .record(ContentType::ApplicationData, 1, data)
            .ok_or(DtlsError::Crypto)?;
        self.push_datagram(r);
        Ok(())
    }

    /// Send close_notify and stop.
    pub fn close(&mut self) {
        if self.state == DtlsState::Connected {
            if let Some(r) = self.record(ContentType::Alert, 1, &[1, 0]) {
                self.push_datagram(r);
            }
        }
        if !matches!(self.state, DtlsState::Failed) {
            self.state = DtlsState::Closed;
        }
        self.retransmit_at = None;
        self.flight.clear();
    }

    // ------------------------------------------------------------------ input

    /// A datagram of DTLS records arrived.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8]) {
        if matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
            return;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let Ok((header, fragment, next)) = RecordHeader::parse(rest) else {
                self.stats.malformed_records += 1;
                break;
            };
            rest = next;
            self.handle_record(now, header, fragment);
            if matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
                return;
            }
        }
        // The peer resent its previous flight: ours was lost (RFC 6347 4.2.4). At most once
        // per 100 ms, so two peers answering each other's retransmissions cannot ping-pong.
        let recently = self
            .last_flight_sent
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_millis(100));
        if std::mem::take(&mut self.peer_retransmitted) && !self.flight.is_empty() && !recently {
            self.stats.retransmits += 1;
            self.transmit_flight();
            self.last_flight_sent = Some(now);
        }
    }

    fn handle_record(&mut self, now: Instant, header: RecordHeader, fragment: &[u8]) {
        let plaintext: Vec<u8> = if header.epoch == 0 {
            if header.content_type == ContentType::ApplicationData {
                self.stats.malformed_records += 1;
                return;
            }
            fragment.to_vec()
        } else if header.epoch == 1 && self.read_epoch == 1 {
            if !self.replay.check(header.sequence) {
                self.stats.replayed_records += 1;
                return;
            }
            let Some(keys) = self.keys.as_ref() else {
                return;
            };
            match keys.read.open(
                1,
                header.sequence,
                header.content_type.to_u8(),
                header.version,
                fragment,
            ) {
                Some(p) => {
                    self.replay.mark(header.sequence);
                    p
                }
                None => {
                    self.stats.bad_records += 1;
                    return;
                }
            }
        } else {
            // A record of an epoch we cannot read yet (e.g. Finished before its CCS): the
            // peer will retransmit.
            self.stats.malformed_records += 1;
            return;
        };
        match header.content_type {
            ContentType::ChangeCipherSpec => {
                if plaintext == [1] && self.keys.is_some() && self.read_epoch == 0 {
                    self.read_epoch = 1;
                }
            }
            ContentType::Alert => {
                if let [level, description] = plaintext[..] {
                    if description == 0 {
                        self.state = DtlsState::Closed;
                        self.retransmit_at = None;
                        self.push_event(DtlsEvent::Closed);
                    } else if level == 2 {
                        self.state = DtlsState::Failed;
                        self.retransmit_at = None;
                        self.push_event(DtlsEvent::Failed(DtlsError::Alert(description)));
                    }
                }
            }
            ContentType::ApplicationData => {
                if self.state == DtlsState::Connected {
                    self.push_event(DtlsEvent::ApplicationData(Bytes::from(plaintext)));
                }
            }
            ContentType::Handshake => self.handle_handshake_record(now, header, &plaintext),
        }
    }

    fn handle_handshake_record(&mut self, now: Instant, record: RecordHeader, mut data: &[u8]) {
        while !data.is_empty() {
            let Ok((h, body, rest)) = HandshakeHeader::parse(data) else {
                self.stats.malformed_records += 1;
                return;
            };
            data = rest;
            // A server that has not accepted a ClientHello yet takes any whole one, and
            // reassembles one that comes in fragments.
            if self.step == Step::ServerWaitClientHello {
                if h.msg_type != HandshakeType::ClientHello.to_u8()
                    || h.length as usize > MAX_MESSAGE
                {
                    continue;
                }
                if h.fragment_offset == 0 && h.fragment_length == h.length {
                    self.client_hello_fragments = None;
                    self.on_client_hello(now, record, h.message_seq, body);
                    continue;
                }
                let length = h.length as usize;
                let same = self
                    .client_hello_fragments
                    .as_ref()
                    .is_some_and(|(seq, p)| *seq == h.message_seq && p.length == length);
                if !same {
                    self.client_hello_fragments = Some((
                        h.message_seq,
                        Partial {
                            msg_type: h.msg_type,
                            length,
                            data: vec![0; length],
                            have: Vec::new(),
                        },
                    ));
                }
                let complete = match self.client_hello_fragments.as_mut() {
                    Some((_, p)) => {
                        p.add(h.fragment_offset as usize, body);
                        p.complete()
                    }
                    None => false,
                };
                if complete {
                    if let Some((seq, p)) = self.client_hello_fragments.take() {
                        self.on_client_hello(now, record, seq, &p.data);
                    }
                }
                continue;
            }
            if h.message_seq < self.next_recv_seq {
                self.peer_retransmitted = true;
                continue;
            }
            if h.message_seq >= self.next_recv_seq.saturating_add(MAX_PENDING_MESSAGES)
                || h.length as usize > MAX_MESSAGE
            {
                continue;
            }
            let entry = self
                .pending
                .entry(h.message_seq)
                .or_insert_with(|| Partial {
                    msg_type: h.msg_type,
                    length: h.length as usize,
                    data: vec![0; h.length as usize],
                    have: Vec::new(),
                });
            if entry.msg_type != h.msg_type || entry.length != h.length as usize {
                continue;
            }
            entry.add(h.fragment_offset as usize, body);
            // Process every complete message in order.
            while let Some(mut p) = self.pending.remove(&self.next_recv_seq) {
                if !p.complete() {
                    self.pending.insert(self.next_recv_seq, p);
                    break;
                }
                let seq = self.next_recv_seq;
                self.next_recv_seq = self.next_recv_seq.wrapping_add(1);
                let Some(kind) = HandshakeType::from_u8(p.msg_type) else {
                    self.fail(DtlsError::UnexpectedMessage);
                    return;
                };
                self.on_message(now, kind, seq, &p.data);
                if matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
                    return;
                }
            }
        }
    }

    fn transcript_add(&mut self, kind: HandshakeType, seq: u16, body: &[u8]) {
        let full = wire::full_message(kind, seq, body);
        if self.transcript.len() + full.len() <= MAX_TRANSCRIPT {
            self.transcript.extend_from_slice(&full);
        }
    }

    fn on_message(&mut self, now: Instant, kind: HandshakeType, seq: u16, body: &[u8]) {
        let result = match (self.step, kind) {
            (Step::ClientWaitServerHello, HandshakeType::HelloVerifyRequest) => {
                self.on_hello_verify_request(now, body)
            }
            (Step::ClientWaitServerHello, HandshakeType::ServerHello) => {
                self.on_server_hello(seq, body)
            }
            (Step::ClientWaitServerHelloDone, HandshakeType::Certificate) => {
                self.on_certificate(seq, body)
            }
            (Step::ClientWaitServerHelloDone, HandshakeType::ServerKeyExchange) => {
                self.on_server_key_exchange(seq, body)
            }
            (Step::ClientWaitServerHelloDone, HandshakeType::CertificateRequest) => {
                self.transcript_add(kind, seq, body);
                Ok(())
            }
            (Step::ClientWaitServerHelloDone, HandshakeType::ServerHelloDone) => {
                self.on_server_hello_done(now, seq, body)
            }
            (Step::ClientWaitFinished, HandshakeType::Finished) => self.on_finished(now, seq, body),
            (Step::ServerWaitClientFinished, HandshakeType::Certificate) => {
                self.on_certificate(seq, body)
            }
            (Step::ServerWaitClientFinished, HandshakeType::ClientKeyExchange) => {
                self.on_client_key_exchange(seq, body)
            }
            (Step::ServerWaitClientFinished, HandshakeType::CertificateVerify) => {
                self.on_certificate_verify(seq, body)
            }
            (Step::ServerWaitClientFinished, HandshakeType::Finished) => {
                self.on_finished(now, seq, body)
            }
            _ => Err(DtlsError::UnexpectedMessage),
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }

    // ------------------------------------------------------------------ client

    fn send_client_hello(&mut self, now: Instant, cookie: Vec<u8>) {
        #[cfg_attr(not(test), allow(unused_mut))]
        let mut hello = ClientHello {
            version: DTLS_1_2,
            random: self.client_random,
            session_id: Vec::new(),
            cookie,
            cipher_suites: vec![CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256],
            extensions: HelloExtensions {
                groups: vec![GROUP_X25519, GROUP_P256],
                signature_algorithms: vec![SIG_ECDSA_P256_SHA256],
                srtp_profiles: self.config.srtp_profiles.iter().map(|p| p.id()).collect(),
                extended_master_secret: true,
                renegotiation_info: true,
                ec_point_formats: true,
            },
        };
        #[cfg(test)]
        if let Some((groups, ems)) = &self.client_hello_for_test {
            hello.extensions.groups = groups.clone();
            hello.extensions.extended_master_secret = *ems;
        }
        let mut body = Vec::new();
        hello.write(&mut body);
        let seq = self.next_send_seq;
        self.next_send_seq = self.next_send_seq.wrapping_add(1);
        self.pending_client_hello =
            Some(wire::full_message(HandshakeType::ClientHello, seq, &body));
        self.start_flight(
            now,
            vec![FlightItem::Handshake {
                msg_type: HandshakeType::ClientHello,
                seq,
                body,
                epoch: 0,
            }],
            true,
        );
    }

    fn on_hello_verify_request(&mut self, now: Instant, body: &[u8]) -> Result<(), DtlsError> {
        let cookie =
            wire::parse_hello_verify_request(body).map_err(|_| DtlsError::UnexpectedMessage)?;
        if cookie.is_empty() || cookie.len() > 255 {
            return Err(DtlsError::UnexpectedMessage);
        }
        self.send_client_hello(now, cookie);
        Ok(())
    }

    fn on_server_hello(&mut self, seq: u16, body: &[u8]) -> Result<(), DtlsError> {
        let hello = ServerHello::parse(body).map_err(|_| DtlsError::UnexpectedMessage)?;
        if hello.version != DTLS_1_2 || hello.cipher_suite != CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256 {
            return Err(DtlsError::NoCommonParameters);
        }
        if !hello.extensions.extended_master_secret {
            return Err(DtlsError::NoExtendedMasterSecret);
        }
        let profile = hello
            .extensions
            .srtp_profiles
            .first()
            .and_then(|id| SrtpProfile::from_id(*id))
            .filter(|p| self.config.srtp_profiles.contains(p))
            .ok_or(DtlsError::NoCommonSrtpProfile)?;
        self.srtp_profile = Some(profile);
        self.server_random = hello.random;
        // The transcript starts with the ClientHello the server answered.
        self.transcript.clear();
        if let Some(ch) = self.pending_client_hello.take() {
            self.transcript.extend_from_slice(&ch);
        }
        self.transcript_add(HandshakeType::ServerHello, seq, body);
        self.step = Step::ClientWaitServerHelloDone;
        self.retransmit_at = None;
        Ok(())
    }

    fn on_certificate(&mut self, seq: u16, body: &[u8]) -> Result<(), DtlsError> {
        let certs = wire::parse_certificate(body).map_err(|_| DtlsError::BadCertificate)?;
        let der = certs.into_iter().next().ok_or(DtlsError::BadCertificate)?;
        let ok = match self.remote_fingerprint.algorithm.as_str() {
            "sha-256" => sha256(&der) == self.remote_fingerprint.value,
            "sha-384" => {
                digest::digest(&digest::SHA384, &der).as_ref()
                    == self.remote_fingerprint.value.as_slice()
            }
            "sha-512" => {
                digest::digest(&digest::SHA512, &der).as_ref()
                    == self.remote_fingerprint.value.as_slice()
            }
            _ => false,
        };
        if !ok {
            return Err(DtlsError::FingerprintMismatch);
        }
        let parsed = pki_types::CertificateDer::from(der.as_slice());
        webpki::EndEntityCert::try_from(&parsed).map_err(|_| DtlsError::BadCertificate)?;
        self.peer_cert = Some(der);
        self.transcript_add(HandshakeType::Certificate, seq, body);
        Ok(())
    }

    fn verify_with_peer(&self, message: &[u8], signature: &[u8]) -> Result<(), DtlsError> {
        let der = self.peer_cert.as_ref().ok_or(DtlsError::BadCertificate)?;
        let parsed = pki_types::CertificateDer::from(der.as_slice());
        let cert =
            webpki::EndEntityCert::try_from(&parsed).map_err(|_| DtlsError::BadCertificate)?;
        cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, signature)
            .map_err(|_| DtlsError::BadSignature)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DtlsError> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.key_pkcs8,
            &self.secure,
        )
        .map_err(|_| DtlsError::Crypto)?;
        Ok(key
            .sign(&self.secure, message)
            .map_err(|_| DtlsError::Crypto)?
            .as_ref()
            .to_vec())
    }

    fn on_server_key_exchange(&mut self, seq: u16, body: &[u8]) -> Result<(), DtlsError> {
        let ske = ServerKeyExchange::parse(body).map_err(|_| DtlsError::UnexpectedMessage)?;
        if ske.group != GROUP_X25519 && ske.group != GROUP_P256 {
            return Err(DtlsError::NoCommonParameters);
        }
        if ske.signature_algorithm != SIG_ECDSA_P256_SHA256 {
            return Err(DtlsError::NoCommonParameters);
        }
        let mut signed = Vec::with_capacity(64 + 4 + ske.public_key.len());
        signed.extend_from_slice(&self.client_random);
        signed.extend_from_slice(&self.server_random);
        signed.extend_from_slice(&ServerKeyExchange::params(ske.group, &ske.public_key));
        self.verify_with_peer(&signed, &ske.signature)?;
        let alg = if ske.group == GROUP_X25519 {
            &agreement::X25519
        } else {
            &agreement::ECDH_P256
        };
        let key = agreement::EphemeralPrivateKey::generate(alg, &self.secure)
            .map_err(|_| DtlsError::Crypto)?;
        self.ephemeral = Ephemeral::Key(key, ske.group);
        self.peer_public = ske.public_key;
        self.transcript_add(HandshakeType::ServerKeyExchange, seq, body);
        Ok(())
    }

    /// ECDHE agreement with the peer's public key, consuming our ephemeral key.
    fn agree(&mut self) -> Result<Vec<u8>, DtlsError> {
        let Ephemeral::Key(key, group) = std::mem::replace(&mut self.ephemeral, Ephemeral::None)
        else {
            return Err(DtlsError::UnexpectedMessage);
        };
        let alg = if group == GROUP_X25519 {
            &agreement::X25519
        } else {
            &agreement::ECDH_P256
        };
        let peer = agreement::UnparsedPublicKey::new(alg, self.peer_public.clone());
        agreement::agree_ephemeral(key, &peer, |secret| secret.to_vec())
            .map_err(|_| DtlsError::Crypto)
    }

    fn derive_keys(&mut self, pre_master: &[u8]) -> Result<(), DtlsError> {
        let session_hash = sha256(&self.transcript);
        let master = keying::extended_master_secret(pre_master, &session_hash);
        let keys = RecordKeys::derive(
            &master,
            &self.client_random,
            &self.server_random,
            self.role == DtlsRole::Client,
        )
        .ok_or(DtlsError::Crypto)?;
        self.master = Some(master);
        self.keys = Some(keys);
        Ok(())
    }

    fn finished_body(&self, client: bool) -> Result<Vec<u8>, DtlsError> {
        let master = self.master.as_ref().ok_or(DtlsError::Crypto)?;
        #[allow(unused_mut)]
        let mut body = keying::verify_data(master, client, &sha256(&self.transcript)).to_vec();
        #[cfg(test)]
        if self.forge_finished && client == (self.role == DtlsRole::Client) {
            body[0] ^= 1;
        }
        Ok(body)
    }

    fn on_server_hello_done(
        &mut self,
        now: Instant,
        seq: u16,
        body: &[u8],
    ) -> Result<(), DtlsError> {
        if self.peer_cert.is_none() || matches!(self.ephemeral, Ephemeral::None) {
            return Err(DtlsError::UnexpectedMessage);
        }
        self.transcript_add(HandshakeType::ServerHelloDone, seq, body);
        let public = match &self.ephemeral {
            Ephemeral::Key(k, _) => k
                .compute_public_key()
                .map_err(|_| DtlsError::Crypto)?
                .as_ref()
                .to_vec(),
            Ephemeral::None => return Err(DtlsError::Crypto),
        };
        let pre_master = self.agree()?;
        let mut items = Vec::new();
        let mut cert = Vec::new();
        wire::write_certificate(&self.cert_der.clone(), &mut cert);
        self.add_message(&mut items, HandshakeType::Certificate, cert, 0);
        let mut cke = Vec::new();
        wire::write_client_key_exchange(&public, &mut cke);
        self.add_message(&mut items, HandshakeType::ClientKeyExchange, cke, 0);
        // Session hash for the extended master secret: through ClientKeyExchange.
        self.derive_keys(&pre_master)?;
        let signature = self.sign(&self.transcript.clone())?;
        let mut cv = Vec::new();
        wire::write_signed(SIG_ECDSA_P256_SHA256, &signature, &mut cv);
        self.add_message(&mut items, HandshakeType::CertificateVerify, cv, 0);
        items.push(FlightItem::ChangeCipherSpec);
        self.write_epoch = 1;
        let fin = self.finished_body(true)?;
        self.add_message(&mut items, HandshakeType::Finished, fin, 1);
        self.step = Step::ClientWaitFinished;
        self.start_flight(now, items, true);
        Ok(())
    }

    fn on_finished(&mut self, now: Instant, seq: u16, body: &[u8]) -> Result<(), DtlsError> {
        let peer_is_client = self.role == DtlsRole::Server;
        let expected = self.finished_body(peer_is_client)?;
        if self.read_epoch != 1 || expected.as_slice() != body {
            return Err(DtlsError::BadFinished);
        }
        self.transcript_add(HandshakeType::Finished, seq, body);
        if self.role == DtlsRole::Server {
            let mut items = vec![FlightItem::ChangeCipherSpec];
            self.write_epoch = 1;
            let fin = self.finished_body(false)?;
            self.add_message(&mut items, HandshakeType::Finished, fin, 1);
            // No timer: the server resends only when the client resends its flight.
            self.start_flight(now, items, false);
        } else {
            self.flight.clear();
            self.retransmit_at = None;
        }
        self.connected()
    }

    fn connected(&mut self) -> Result<(), DtlsError> {
        let profile = self.srtp_profile.ok_or(DtlsError::NoCommonSrtpProfile)?;
        let master = self.master.ok_or(DtlsError::Crypto)?;
        let mut material = vec![0u8; profile.keying_material_len()];
        keying::export(
            &master,
            b"EXTRACTOR-dtls_srtp",
            &self.client_random,
            &self.server_random,
            &mut material,
        );
        self.step = Step::Done;
        self.state = DtlsState::Connected;
        self.pending.clear();
        self.push_event(DtlsEvent::Connected {
            srtp_profile: profile,
            keying_material: material,
        });
        Ok(())
    }

    // ------------------------------------------------------------------ server

    fn cookie_for(&self, hello: &ClientHello) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.cookie_secret);
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(&hello.random);
        ctx.update(&hello.session_id);
        for s in &hello.cipher_suites {
            ctx.update(&s.to_be_bytes());
        }
        ctx.sign().as_ref().get(..16).unwrap_or_default().to_vec()
    }

    fn on_client_hello(&mut self, now: Instant, record: RecordHeader, seq: u16, body: &[u8]) {
        let Ok(hello) = ClientHello::parse(body) else {
            self.stats.malformed_records += 1;
            return;
        };
        if self.config.require_cookie {
            let cookie = self.cookie_for(&hello);
            let matches = hello.cookie.len() == cookie.len()
                && hello
                    .cookie
                    .iter()
                    .zip(&cookie)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if !matches {
                // Stateless: answer with the same record sequence number, keep nothing.
                let mut hvr = Vec::new();
                wire::write_hello_verify_request(&cookie, &mut hvr);
                let msg = wire::full_message(HandshakeType::HelloVerifyRequest, 0, &hvr);
                let mut out = Vec::new();
                RecordHeader {
                    content_type: ContentType::Handshake,
                    version: DTLS_1_0,
                    epoch: 0,
                    sequence: record.sequence,
                    length: msg.len() as u16,
                }
                .write(&mut out);
                out.extend_from_slice(&msg);
                self.push_datagram(out);
                self.stats.cookies_sent += 1;
                return;
            }
        }
        if let Err(e) = self.accept_client_hello(now, seq, body, &hello) {
            self.fail(e);
        }
    }

    fn accept_client_hello(
        &mut self,
        now: Instant,
        seq: u16,
        body: &[u8],
        hello: &ClientHello,
    ) -> Result<(), DtlsError> {
        if !hello
            .cipher_suites
            .contains(&CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256)
        {
            return Err(DtlsError::NoCommonParameters);
        }
        if !hello.extensions.extended_master_secret {
            return Err(DtlsError::NoExtendedMasterSecret);
        }
        let group = if hello.extensions.groups.contains(&GROUP_X25519) {
            GROUP_X25519
        } else if hello.extensions.groups.contains(&GROUP_P256)
            || hello.extensions.groups.is_empty()
        {
            GROUP_P256
        } else {
            return Err(DtlsError::NoCommonParameters);
        };
        let sig_ok = hello.extensions.signature_algorithms.is_empty()
            || hello
                .extensions
                .signature_algorithms
                .contains(&SIG_ECDSA_P256_SHA256);
        if !sig_ok {
            return Err(DtlsError::NoCommonParameters);
        }
        // The server picks by its own preference among the client's profiles.
        let profile = self
            .config
            .srtp_profiles
            .iter()
            .copied()
            .find(|p| hello.extensions.srtp_profiles.contains(&p.id()))
            .ok_or(DtlsError::NoCommonSrtpProfile)?;
        self.srtp_profile = Some(profile);
        self.state = DtlsState::Connecting;
        self.client_random = hello.random;
        self.secure
            .fill(&mut self.server_random)
            .map_err(|_| DtlsError::Crypto)?;
        self.next_send_seq = seq;
        self.next_recv_seq = seq.wrapping_add(1);
        self.transcript.clear();
        self.transcript_add(HandshakeType::ClientHello, seq, body);
        let mut items = Vec::new();
        let server_hello = ServerHello {
            version: DTLS_1_2,
            random: self.server_random,
            session_id: Vec::new(),
            cipher_suite: CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256,
            extensions: HelloExtensions {
                srtp_profiles: vec![profile.id()],
                extended_master_secret: true,
                renegotiation_info: hello.extensions.renegotiation_info,
                ec_point_formats: hello.extensions.ec_point_formats,
                ..Default::default()
            },
        };
        let mut sh = Vec::new();
        server_hello.write(&mut sh);
        self.add_message(&mut items, HandshakeType::ServerHello, sh, 0);
        let mut cert = Vec::new();
        wire::write_certificate(&self.cert_der.clone(), &mut cert);
        self.add_message(&mut items, HandshakeType::Certificate, cert, 0);
        let alg = if group == GROUP_X25519 {
            &agreement::X25519
        } else {
            &agreement::ECDH_P256
        };
        let key = agreement::EphemeralPrivateKey::generate(alg, &self.secure)
            .map_err(|_| DtlsError::Crypto)?;
        let public = key
            .compute_public_key()
            .map_err(|_| DtlsError::Crypto)?
            .as_ref()
            .to_vec();
        self.ephemeral = Ephemeral::Key(key, group);
        let mut signed = Vec::new();
        signed.extend_from_slice(&self.client_random);
        signed.extend_from_slice(&self.server_random);
        signed.extend_from_slice(&ServerKeyExchange::params(group, &public));
        let signature = self.sign(&signed)?;
        let mut ske = Vec::new();
        ServerKeyExchange {
            group,
            public_key: public,
            signature_algorithm: SIG_ECDSA_P256_SHA256,
            signature,
        }
        .write(&mut ske);
        self.add_message(&mut items, HandshakeType::ServerKeyExchange, ske, 0);
        let mut cr = Vec::new();
        wire::write_certificate_request(&mut cr);
        self.add_message(&mut items, HandshakeType::CertificateRequest, cr, 0);
        self.add_message(&mut items, HandshakeType::ServerHelloDone, Vec::new(), 0);
        self.step = Step::ServerWaitClientFinished;
        self.start_flight(now, items, true);
        Ok(())
    }

    fn on_client_key_exchange(&mut self, seq: u16, body: &[u8]) -> Result<(), DtlsError> {
        if self.peer_cert.is_none() {
            // WebRTC requires the client certificate (RFC 8827 6.5).
            return Err(DtlsError::BadCertificate);
        }
        self.peer_public =
            wire::parse_client_key_exchange(body).map_err(|_| DtlsError::UnexpectedMessage)?;
        self.transcript_add(HandshakeType::ClientKeyExchange, seq, body);
        let pre_master = self.agree()?;
        self.derive_keys(&pre_master)?;
        Ok(())
    }

    fn on_certificate_verify(&mut self, seq: u16, body: &[u8]) -> Result<(), DtlsError> {
        if self.keys.is_none() {
            return Err(DtlsError::UnexpectedMessage);
        }
        let (alg, signature) =
            wire::parse_signed(body).map_err(|_| DtlsError::UnexpectedMessage)?;
        if alg != SIG_ECDSA_P256_SHA256 {
            return Err(DtlsError::NoCommonParameters);
        }
        self.verify_with_peer(&self.transcript.clone(), &signature)?;
        self.transcript_add(HandshakeType::CertificateVerify, seq, body);
        Ok(())
    }
}
