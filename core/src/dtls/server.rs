//! The server's handshake (RFC 6347 4.2 with RFC 5246 7.3 order; we always request the
//! client's certificate, RFC 8827 6.5), one state per message we expect next:
//!
//! ```text
//!  WaitClientHello ──ClientHello without a valid cookie──> (stateless HelloVerifyRequest)
//!  WaitClientHello ──ClientHello / send ServerHello .. ServerHelloDone──> WaitCertificate
//!    ──Certificate──> WaitClientKeyExchange ──ClientKeyExchange──> WaitCertificateVerify
//!    ──CertificateVerify──> WaitChangeCipherSpec ──CCS──> WaitFinished
//!    ──Finished / send CCS, Finished──> Connected
//! ```
//! The keys derived at ClientKeyExchange stay inside `WaitCertificateVerify` and reach the
//! record layer only when the CertificateVerify signature verified with the certificate
//! that matched the SDP fingerprint: without it the client's ChangeCipherSpec is ignored,
//! its Finished cannot even be decrypted, and nothing is exported.
//!
//! Once the server committed to a ClientHello, a ClientHello is only a retransmission (the
//! same message: we resend our flight) or ignored and counted; it never restarts or breaks
//! the handshake in progress.

use std::time::Instant;

use crate::dtls::endpoint::DtlsError;
use crate::dtls::handshake::{Context, Ephemeral};
use crate::dtls::keying::RecordKeys;
use crate::dtls::reassembly::{Message, Partial, MAX_MESSAGE};
use crate::dtls::wire::{
    self, ClientHello, ContentType, HandshakeHeader, HandshakeType, HelloExtensions, RecordHeader,
    ServerHello, ServerKeyExchange, CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256, DTLS_1_0, DTLS_1_2,
    GROUP_P256, GROUP_X25519, SIG_ECDSA_P256_SHA256,
};
use crate::dtls::DtlsState;

/// Where the server is in the handshake.
#[derive(Debug)]
pub(crate) enum ServerState {
    /// No ClientHello accepted yet.
    WaitClientHello,
    /// Our first flight is out.
    WaitCertificate { ephemeral: Ephemeral },
    /// The client's certificate matched the fingerprint.
    WaitClientKeyExchange { ephemeral: Ephemeral },
    /// Keys derived but not usable until the client proves it holds the certificate key.
    WaitCertificateVerify {
        master: [u8; 48],
        keys: Box<RecordKeys>,
    },
    /// CertificateVerify verified; the keys are installed for reading after CCS.
    WaitChangeCipherSpec { master: [u8; 48] },
    /// The client's ChangeCipherSpec switched the read epoch.
    WaitFinished { master: [u8; 48] },
    /// Handshake complete (or over).
    Done,
}

/// The server role: its state, the ClientHello it committed to, and the cookie secret.
#[derive(Debug)]
pub(crate) struct Server {
    pub state: ServerState,
    cookie_secret: [u8; 32],
    /// A ClientHello arriving in fragments before we committed (browsers' post-quantum
    /// ClientHellos exceed the MTU), by message_seq. One at a time.
    hello_fragments: Option<(u16, Partial)>,
    /// The ClientHello we answered: its message_seq and body.
    committed: Option<(u16, Vec<u8>)>,
}

impl Server {
    /// A server waiting for a ClientHello.
    pub(crate) fn new(cx: &mut Context) -> Server {
        let mut cookie_secret = [0u8; 32];
        cx.rng.fill(&mut cookie_secret);
        Server {
            state: ServerState::WaitClientHello,
            cookie_secret,
            hello_fragments: None,
            committed: None,
        }
    }

    /// A ClientHello fragment (epoch 0), whole or partial.
    pub(crate) fn on_client_hello_fragment(
        &mut self,
        cx: &mut Context,
        now: Instant,
        record: &RecordHeader,
        header: &HandshakeHeader,
        body: &[u8],
    ) {
        if let Some((seq, hello)) = &self.committed {
            let offset = header.fragment_offset as usize;
            let same = header.message_seq == *seq
                && header.length as usize == hello.len()
                && hello.get(offset..offset.saturating_add(body.len())) == Some(body);
            if same {
                cx.peer_retransmitted = true;
            } else {
                cx.stats.ignored_client_hellos += 1;
            }
            return;
        }
        let length = header.length as usize;
        if length > MAX_MESSAGE {
            cx.stats.fragments_dropped += 1;
            return;
        }
        if header.fragment_offset == 0 && header.fragment_length == header.length {
            self.hello_fragments = None;
            self.on_client_hello(cx, now, record, header.message_seq, body);
            return;
        }
        let same = self
            .hello_fragments
            .as_ref()
            .is_some_and(|(seq, p)| *seq == header.message_seq && p.matches(header, 0));
        if !same {
            self.hello_fragments =
                Some((header.message_seq, Partial::new(header.msg_type, 0, length)));
        }
        let Some((seq, partial)) = self.hello_fragments.as_mut() else {
            return;
        };
        if partial.add(header.fragment_offset as usize, body).is_err() {
            cx.stats.fragments_dropped += 1;
            return;
        }
        if partial.complete() {
            let seq = *seq;
            if let Some((_, p)) = self.hello_fragments.take() {
                self.on_client_hello(cx, now, record, seq, &p.into_data());
            }
        }
    }

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

    fn on_client_hello(
        &mut self,
        cx: &mut Context,
        now: Instant,
        record: &RecordHeader,
        seq: u16,
        body: &[u8],
    ) {
        let Ok(hello) = ClientHello::parse(body) else {
            cx.stats.malformed_records += 1;
            return;
        };
        if cx.config.require_cookie {
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
                cx.push_datagram(out);
                cx.stats.cookies_sent += 1;
                return;
            }
        }
        match accept_client_hello(cx, now, seq, body, &hello) {
            Ok(ephemeral) => {
                self.committed = Some((seq, body.to_vec()));
                self.state = ServerState::WaitCertificate { ephemeral };
            }
            Err(e) => cx.fail(e),
        }
    }

    /// The next handshake message after the ClientHello, in message_seq order.
    pub(crate) fn on_message(
        &mut self,
        cx: &mut Context,
        now: Instant,
        msg: Message,
    ) -> Result<(), DtlsError> {
        let kind = HandshakeType::from_u8(msg.msg_type).ok_or(DtlsError::UnexpectedMessage)?;
        // Only Finished travels in epoch 1.
        if (msg.epoch == 1) != (kind == HandshakeType::Finished) {
            return Err(DtlsError::UnexpectedMessage);
        }
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        self.state = match (state, kind) {
            (ServerState::WaitCertificate { ephemeral }, HandshakeType::Certificate) => {
                // WebRTC requires the client certificate (RFC 8827 6.5).
                cx.accept_certificate(msg.seq, &msg.body)?;
                ServerState::WaitClientKeyExchange { ephemeral }
            }
            (
                ServerState::WaitClientKeyExchange { ephemeral },
                HandshakeType::ClientKeyExchange,
            ) => {
                let peer_public = wire::parse_client_key_exchange(&msg.body)
                    .map_err(|_| DtlsError::UnexpectedMessage)?;
                cx.transcript_add(kind, msg.seq, &msg.body);
                let pre_master = ephemeral.agree(&peer_public)?;
                let (master, keys) = cx.derive_keys(&pre_master)?;
                ServerState::WaitCertificateVerify {
                    master,
                    keys: Box::new(keys),
                }
            }
            (
                ServerState::WaitCertificateVerify { master, keys },
                HandshakeType::CertificateVerify,
            ) => {
                let (alg, signature) =
                    wire::parse_signed(&msg.body).map_err(|_| DtlsError::UnexpectedMessage)?;
                if alg != SIG_ECDSA_P256_SHA256 {
                    return Err(DtlsError::NoCommonParameters);
                }
                cx.verify_with_peer(&cx.transcript, &signature)?;
                cx.transcript_add(kind, msg.seq, &msg.body);
                cx.record.install(*keys);
                ServerState::WaitChangeCipherSpec { master }
            }
            (ServerState::WaitFinished { master }, HandshakeType::Finished) => {
                cx.check_peer_finished(&master, msg.seq, msg.epoch, &msg.body)?;
                let mut items = vec![crate::dtls::flight::FlightItem::ChangeCipherSpec];
                cx.record.enable_write();
                let finished = cx.finished_body(&master, false);
                cx.add_message(&mut items, HandshakeType::Finished, finished, 1);
                // No timer: the server resends only when the client resends its flight.
                cx.start_flight(now, items, DTLS_1_2, false);
                cx.connected(&master)?;
                ServerState::Done
            }
            _ => return Err(DtlsError::UnexpectedMessage),
        };
        Ok(())
    }

    /// The client's ChangeCipherSpec: taken only right after a verified CertificateVerify.
    pub(crate) fn on_change_cipher_spec(&mut self, cx: &mut Context) {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        self.state = match state {
            ServerState::WaitChangeCipherSpec { master } => {
                cx.record.enable_read();
                ServerState::WaitFinished { master }
            }
            other => {
                cx.stats.ignored_records += 1;
                other
            }
        };
    }

    /// Whether we committed to a ClientHello.
    pub(crate) fn committed(&self) -> bool {
        self.committed.is_some()
    }
}

/// Commit to a ClientHello: pick the parameters and send our first flight.
fn accept_client_hello(
    cx: &mut Context,
    now: Instant,
    seq: u16,
    body: &[u8],
    hello: &ClientHello,
) -> Result<Ephemeral, DtlsError> {
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
    } else if hello.extensions.groups.contains(&GROUP_P256) || hello.extensions.groups.is_empty() {
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
    let profile = cx
        .config
        .srtp_profiles
        .iter()
        .copied()
        .find(|p| hello.extensions.srtp_profiles.contains(&p.id()))
        .ok_or(DtlsError::NoCommonSrtpProfile)?;
    cx.srtp_profile = Some(profile);
    cx.state = DtlsState::Connecting;
    cx.client_random = hello.random;
    cx.rng.fill(&mut cx.server_random);
    cx.next_send_seq = seq;
    cx.reassembly.restart_at(seq.wrapping_add(1));
    cx.peer_flights.current_start = seq;
    cx.transcript.clear();
    cx.transcript_add(HandshakeType::ClientHello, seq, body);
    let mut items = Vec::new();
    let server_hello = ServerHello {
        version: DTLS_1_2,
        random: cx.server_random,
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
    cx.add_message(&mut items, HandshakeType::ServerHello, sh, 0);
    let mut cert = Vec::new();
    wire::write_certificate(&cx.identity.cert_der, &mut cert);
    cx.add_message(&mut items, HandshakeType::Certificate, cert, 0);
    let ephemeral = Ephemeral::generate(group, &cx.secure)?;
    let public = ephemeral.public()?;
    let mut signed = Vec::new();
    signed.extend_from_slice(&cx.client_random);
    signed.extend_from_slice(&cx.server_random);
    signed.extend_from_slice(&ServerKeyExchange::params(group, &public));
    let signature = cx.sign(&signed)?;
    let mut ske = Vec::new();
    ServerKeyExchange {
        group,
        public_key: public,
        signature_algorithm: SIG_ECDSA_P256_SHA256,
        signature,
    }
    .write(&mut ske);
    cx.add_message(&mut items, HandshakeType::ServerKeyExchange, ske, 0);
    let mut cr = Vec::new();
    wire::write_certificate_request(&mut cr);
    cx.add_message(&mut items, HandshakeType::CertificateRequest, cr, 0);
    cx.add_message(&mut items, HandshakeType::ServerHelloDone, Vec::new(), 0);
    cx.start_flight(now, items, DTLS_1_2, true);
    Ok(ephemeral)
}
