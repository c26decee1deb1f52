//! The client's handshake (RFC 6347 4.2 with RFC 5246 7.3 order), one state per message
//! we expect next:
//!
//! ```text
//!  WaitServerHello ──HelloVerifyRequest (once)──> WaitServerHello (ClientHello + cookie)
//!  WaitServerHello ──ServerHello──> WaitCertificate ──Certificate──> WaitServerKeyExchange
//!    ──ServerKeyExchange──> WaitCertificateRequest ──CertificateRequest──> WaitServerHelloDone
//!    ──ServerHelloDone / send Certificate, ClientKeyExchange, CertificateVerify, CCS,
//!      Finished──> WaitChangeCipherSpec ──CCS──> WaitFinished ──Finished──> Connected
//! ```
//! Any other handshake message at the next message_seq fails the handshake with
//! `UnexpectedMessage`; a ChangeCipherSpec anywhere but `WaitChangeCipherSpec` is ignored
//! (it carries no sequence number and may be reordered), so the Finished that follows it
//! cannot be read and no keys can be exported early.

use std::time::Instant;

use crate::dtls::endpoint::DtlsError;
use crate::dtls::flight::FlightItem;
use crate::dtls::handshake::{Context, Ephemeral};
use crate::dtls::reassembly::Message;
use crate::dtls::wire::{
    self, ClientHello, HandshakeType, HelloExtensions, ServerHello, ServerKeyExchange,
    CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256, DTLS_1_0, DTLS_1_2, GROUP_P256, GROUP_X25519,
    SIG_ECDSA_P256_SHA256,
};
use crate::srtp::SrtpProfile;

/// Where the client is in the handshake.
#[derive(Debug)]
pub(crate) enum ClientState {
    /// ClientHello sent; a HelloVerifyRequest is still allowed while `cookie` is false.
    WaitServerHello {
        /// The ClientHello the server will answer (it opens the transcript).
        client_hello: Vec<u8>,
        /// A HelloVerifyRequest was already answered.
        cookie: bool,
    },
    /// ServerHello read.
    WaitCertificate,
    /// The server's certificate matched the fingerprint.
    WaitServerKeyExchange,
    /// The ServerKeyExchange signature verified; our key share is ready.
    WaitCertificateRequest {
        ephemeral: Ephemeral,
        peer_public: Vec<u8>,
    },
    /// CertificateRequest read.
    WaitServerHelloDone {
        ephemeral: Ephemeral,
        peer_public: Vec<u8>,
    },
    /// Our second flight is out.
    WaitChangeCipherSpec { master: [u8; 48] },
    /// The server's ChangeCipherSpec switched the read epoch.
    WaitFinished { master: [u8; 48] },
    /// Handshake complete (or over).
    Done,
}

impl ClientState {
    /// Send the first ClientHello.
    pub(crate) fn start(cx: &mut Context, now: Instant) -> ClientState {
        let client_hello = send_client_hello(cx, now, Vec::new());
        ClientState::WaitServerHello {
            client_hello,
            cookie: false,
        }
    }

    /// The next handshake message, in message_seq order.
    pub(crate) fn on_message(
        self,
        cx: &mut Context,
        now: Instant,
        msg: Message,
    ) -> Result<ClientState, DtlsError> {
        let kind = HandshakeType::from_u8(msg.msg_type).ok_or(DtlsError::UnexpectedMessage)?;
        // Only Finished travels in epoch 1.
        if (msg.epoch == 1) != (kind == HandshakeType::Finished) {
            return Err(DtlsError::UnexpectedMessage);
        }
        match (self, kind) {
            (
                ClientState::WaitServerHello { cookie: false, .. },
                HandshakeType::HelloVerifyRequest,
            ) => {
                let cookie = wire::parse_hello_verify_request(&msg.body)
                    .map_err(|_| DtlsError::UnexpectedMessage)?;
                if cookie.is_empty() {
                    return Err(DtlsError::UnexpectedMessage);
                }
                let client_hello = send_client_hello(cx, now, cookie);
                Ok(ClientState::WaitServerHello {
                    client_hello,
                    cookie: true,
                })
            }
            (ClientState::WaitServerHello { client_hello, .. }, HandshakeType::ServerHello) => {
                on_server_hello(cx, &client_hello, msg.seq, &msg.body)?;
                Ok(ClientState::WaitCertificate)
            }
            (ClientState::WaitCertificate, HandshakeType::Certificate) => {
                cx.accept_certificate(msg.seq, &msg.body)?;
                Ok(ClientState::WaitServerKeyExchange)
            }
            (ClientState::WaitServerKeyExchange, HandshakeType::ServerKeyExchange) => {
                let (ephemeral, peer_public) = on_server_key_exchange(cx, &msg.body)?;
                cx.transcript_add(kind, msg.seq, &msg.body);
                Ok(ClientState::WaitCertificateRequest {
                    ephemeral,
                    peer_public,
                })
            }
            (
                ClientState::WaitCertificateRequest {
                    ephemeral,
                    peer_public,
                },
                HandshakeType::CertificateRequest,
            ) => {
                cx.transcript_add(kind, msg.seq, &msg.body);
                Ok(ClientState::WaitServerHelloDone {
                    ephemeral,
                    peer_public,
                })
            }
            (
                ClientState::WaitServerHelloDone {
                    ephemeral,
                    peer_public,
                },
                HandshakeType::ServerHelloDone,
            ) => {
                if !msg.body.is_empty() {
                    return Err(DtlsError::UnexpectedMessage);
                }
                cx.transcript_add(kind, msg.seq, &msg.body);
                let master = send_second_flight(cx, now, ephemeral, &peer_public)?;
                Ok(ClientState::WaitChangeCipherSpec { master })
            }
            (ClientState::WaitFinished { master }, HandshakeType::Finished) => {
                cx.check_peer_finished(&master, msg.seq, msg.epoch, &msg.body)?;
                cx.flight.clear();
                cx.connected(&master)?;
                Ok(ClientState::Done)
            }
            _ => Err(DtlsError::UnexpectedMessage),
        }
    }

    /// The server's ChangeCipherSpec: taken only right after our second flight.
    pub(crate) fn on_change_cipher_spec(self, cx: &mut Context) -> ClientState {
        match self {
            ClientState::WaitChangeCipherSpec { master } => {
                cx.record.enable_read();
                ClientState::WaitFinished { master }
            }
            other => {
                cx.stats.ignored_records += 1;
                other
            }
        }
    }
}

/// Send a ClientHello (with the server's cookie after a HelloVerifyRequest); returns the
/// whole message for the transcript.
fn send_client_hello(cx: &mut Context, now: Instant, cookie: Vec<u8>) -> Vec<u8> {
    #[cfg_attr(not(test), allow(unused_mut))]
    let mut hello = ClientHello {
        version: DTLS_1_2,
        random: cx.client_random,
        session_id: Vec::new(),
        cookie,
        cipher_suites: vec![CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256],
        extensions: HelloExtensions {
            groups: vec![GROUP_X25519, GROUP_P256],
            signature_algorithms: vec![SIG_ECDSA_P256_SHA256],
            srtp_profiles: cx.config.srtp_profiles.iter().map(|p| p.id()).collect(),
            extended_master_secret: true,
            renegotiation_info: true,
            ec_point_formats: true,
        },
    };
    #[cfg(test)]
    if let Some((groups, ems)) = &cx.client_hello_for_test {
        hello.extensions.groups = groups.clone();
        hello.extensions.extended_master_secret = *ems;
    }
    let mut body = Vec::new();
    hello.write(&mut body);
    let seq = cx.next_send_seq;
    cx.next_send_seq = cx.next_send_seq.wrapping_add(1);
    let full = wire::full_message(HandshakeType::ClientHello, seq, &body);
    let item = FlightItem::Handshake {
        msg_type: HandshakeType::ClientHello,
        seq,
        body,
        epoch: 0,
    };
    // ClientHellos go out with record version DTLS 1.0, as browsers send them.
    cx.start_flight(now, vec![item], DTLS_1_0, true);
    full
}

fn on_server_hello(
    cx: &mut Context,
    client_hello: &[u8],
    seq: u16,
    body: &[u8],
) -> Result<(), DtlsError> {
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
        .filter(|p| cx.config.srtp_profiles.contains(p))
        .ok_or(DtlsError::NoCommonSrtpProfile)?;
    cx.srtp_profile = Some(profile);
    cx.server_random = hello.random;
    // The transcript starts with the ClientHello the server answered.
    cx.transcript.clear();
    cx.transcript.extend_from_slice(client_hello);
    // The ClientHello's timer keeps running until the server's whole flight is in: if a
    // part of it is lost, our retransmitted ClientHello makes the server resend it.
    cx.transcript_add(HandshakeType::ServerHello, seq, body);
    Ok(())
}

fn on_server_key_exchange(
    cx: &mut Context,
    body: &[u8],
) -> Result<(Ephemeral, Vec<u8>), DtlsError> {
    let ske = ServerKeyExchange::parse(body).map_err(|_| DtlsError::UnexpectedMessage)?;
    if ske.group != GROUP_X25519 && ske.group != GROUP_P256 {
        return Err(DtlsError::NoCommonParameters);
    }
    if ske.signature_algorithm != SIG_ECDSA_P256_SHA256 {
        return Err(DtlsError::NoCommonParameters);
    }
    let mut signed = Vec::with_capacity(64 + 4 + ske.public_key.len());
    signed.extend_from_slice(&cx.client_random);
    signed.extend_from_slice(&cx.server_random);
    signed.extend_from_slice(&ServerKeyExchange::params(ske.group, &ske.public_key));
    cx.verify_with_peer(&signed, &ske.signature)?;
    let ephemeral = Ephemeral::generate(ske.group, &cx.secure)?;
    Ok((ephemeral, ske.public_key))
}

/// Certificate, ClientKeyExchange, CertificateVerify, ChangeCipherSpec, Finished.
fn send_second_flight(
    cx: &mut Context,
    now: Instant,
    ephemeral: Ephemeral,
    peer_public: &[u8],
) -> Result<[u8; 48], DtlsError> {
    let public = ephemeral.public()?;
    let pre_master = ephemeral.agree(peer_public)?;
    let mut items = Vec::new();
    let mut cert = Vec::new();
    wire::write_certificate(&cx.identity.cert_der, &mut cert);
    cx.add_message(&mut items, HandshakeType::Certificate, cert, 0);
    let mut cke = Vec::new();
    wire::write_client_key_exchange(&public, &mut cke);
    cx.add_message(&mut items, HandshakeType::ClientKeyExchange, cke, 0);
    // Session hash for the extended master secret: through ClientKeyExchange.
    let (master, keys) = cx.derive_keys(&pre_master)?;
    let signature = cx.sign(&cx.transcript)?;
    let mut cv = Vec::new();
    wire::write_signed(SIG_ECDSA_P256_SHA256, &signature, &mut cv);
    cx.add_message(&mut items, HandshakeType::CertificateVerify, cv, 0);
    items.push(FlightItem::ChangeCipherSpec);
    cx.record.install(keys);
    cx.record.enable_write();
    let finished = cx.finished_body(&master, true);
    cx.add_message(&mut items, HandshakeType::Finished, finished, 1);
    cx.start_flight(now, items, DTLS_1_2, true);
    Ok(master)
}
