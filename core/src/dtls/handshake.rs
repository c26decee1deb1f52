//! What both roles' handshake states share: the [`Context`] a state transition works on
//! (our identity, the negotiated parameters, the transcript, the record layer, the flight
//! and the outputs) and the cryptographic steps both roles take.
//!
//! The per-role state machines live in `client` and `server`: each state is one variant
//! holding what that step needs and accepting only the one message that comes next.

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Instant;

use ring::agreement;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::dtls::cert::Fingerprint;
use crate::dtls::endpoint::{DtlsConfig, DtlsError, DtlsEvent, DtlsRole, DtlsState, DtlsStats};
use crate::dtls::flight::{Flight, FlightItem};
use crate::dtls::keying::{self, RecordKeys};
use crate::dtls::reassembly::Reassembler;
use crate::dtls::record::RecordLayer;
use crate::dtls::wire::{self, ContentType, HandshakeType, GROUP_X25519};
use crate::rng::Rng;
use crate::srtp::SrtpProfile;

/// Most datagrams and events queued.
pub(crate) const MAX_QUEUE: usize = 256;
/// Largest transcript kept (the handshake messages of one handshake).
const MAX_TRANSCRIPT: usize = 64 * 1024;

/// Our certificate and key, and the fingerprint the peer's certificate must have.
#[derive(Debug)]
pub(crate) struct Identity {
    pub cert_der: Vec<u8>,
    pub key_pkcs8: Vec<u8>,
    pub remote_fingerprint: Fingerprint,
}

/// An ECDHE key pair of ours, for one group.
pub(crate) struct Ephemeral {
    key: agreement::EphemeralPrivateKey,
    group: u16,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ephemeral(group {})", self.group)
    }
}

fn algorithm(group: u16) -> &'static agreement::Algorithm {
    if group == GROUP_X25519 {
        &agreement::X25519
    } else {
        &agreement::ECDH_P256
    }
}

impl Ephemeral {
    /// A fresh key pair (ring's SystemRandom: ECDHE keys are never reproducible).
    pub(crate) fn generate(group: u16, secure: &SystemRandom) -> Result<Ephemeral, DtlsError> {
        let key = agreement::EphemeralPrivateKey::generate(algorithm(group), secure)
            .map_err(|_| DtlsError::Crypto)?;
        Ok(Ephemeral { key, group })
    }

    /// Our public key.
    pub(crate) fn public(&self) -> Result<Vec<u8>, DtlsError> {
        Ok(self
            .key
            .compute_public_key()
            .map_err(|_| DtlsError::Crypto)?
            .as_ref()
            .to_vec())
    }

    /// The shared secret with the peer's public key (consumes the key).
    pub(crate) fn agree(self, peer_public: &[u8]) -> Result<Vec<u8>, DtlsError> {
        let peer = agreement::UnparsedPublicKey::new(algorithm(self.group), peer_public);
        agreement::agree_ephemeral(self.key, &peer, |secret| secret.to_vec())
            .map_err(|_| DtlsError::Crypto)
    }
}

/// The peer's message_seq ranges, to tell a retransmission of its previous flight (which
/// we answer by resending ours, RFC 6347 4.2.4) from a duplicate within its current one.
#[derive(Debug, Default)]
pub(crate) struct PeerFlights {
    /// message_seq of the peer's previous flight.
    pub previous: Range<u16>,
    /// First message_seq of the flight we now wait for.
    pub current_start: u16,
}

/// Everything a handshake state works on, except the state itself.
#[derive(Debug)]
pub(crate) struct Context {
    pub role: DtlsRole,
    pub config: DtlsConfig,
    pub identity: Identity,
    pub secure: SystemRandom,
    pub rng: Rng,
    pub state: DtlsState,
    pub client_random: [u8; 32],
    pub server_random: [u8; 32],
    pub srtp_profile: Option<SrtpProfile>,
    /// The peer's certificate (DER), once it matched the fingerprint.
    pub peer_cert: Option<Vec<u8>>,
    pub transcript: Vec<u8>,
    pub next_send_seq: u16,
    pub record: RecordLayer,
    pub reassembly: Reassembler,
    pub flight: Flight,
    pub peer_flights: PeerFlights,
    /// The peer retransmitted its previous flight in the datagram being handled.
    pub peer_retransmitted: bool,
    pub out: VecDeque<Vec<u8>>,
    pub events: VecDeque<DtlsEvent>,
    pub stats: DtlsStats,
    /// Test hook: send a Finished with wrong verify_data (properly encrypted).
    #[cfg(test)]
    pub forge_finished: bool,
    /// Test hook: the groups and extended-master-secret flag of the client's ClientHellos.
    #[cfg(test)]
    pub client_hello_for_test: Option<(Vec<u16>, bool)>,
}

pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

impl Context {
    pub(crate) fn push_event(&mut self, e: DtlsEvent) {
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(e);
        }
    }

    pub(crate) fn push_datagram(&mut self, d: Vec<u8>) {
        if self.out.len() < MAX_QUEUE && !d.is_empty() {
            self.out.push_back(d);
        }
    }

    /// Add a whole message (ours or the peer's) to the transcript.
    pub(crate) fn transcript_add(&mut self, kind: HandshakeType, seq: u16, body: &[u8]) {
        let full = wire::full_message(kind, seq, body);
        if self.transcript.len() + full.len() <= MAX_TRANSCRIPT {
            self.transcript.extend_from_slice(&full);
        }
    }

    /// Number our next message, add it to the transcript and to `items`.
    pub(crate) fn add_message(
        &mut self,
        items: &mut Vec<FlightItem>,
        msg_type: HandshakeType,
        body: Vec<u8>,
        epoch: u16,
    ) {
        let seq = self.next_send_seq;
        self.next_send_seq = self.next_send_seq.wrapping_add(1);
        self.transcript_add(msg_type, seq, &body);
        items.push(FlightItem::Handshake {
            msg_type,
            seq,
            body,
            epoch,
        });
    }

    /// Send a new flight; from now on the peer's next flight starts at the next
    /// message_seq we expect, and what it sent before is its previous flight.
    pub(crate) fn start_flight(
        &mut self,
        now: Instant,
        items: Vec<FlightItem>,
        version: u16,
        expect_reply: bool,
    ) {
        let next = self.reassembly.next_seq();
        self.peer_flights.previous = self.peer_flights.current_start..next;
        self.peer_flights.current_start = next;
        let initial = self.config.initial_retransmit;
        self.flight
            .start(now, items, version, initial, expect_reply);
        self.transmit_flight();
    }

    /// (Re)send the current flight.
    pub(crate) fn transmit_flight(&mut self) {
        for d in self.flight.datagrams(&mut self.record, self.config.mtu) {
            self.push_datagram(d);
        }
    }

    /// Check the peer's Certificate message against the SDP fingerprint and keep it.
    pub(crate) fn accept_certificate(&mut self, seq: u16, body: &[u8]) -> Result<(), DtlsError> {
        let certs = wire::parse_certificate(body).map_err(|_| DtlsError::BadCertificate)?;
        let der = certs.into_iter().next().ok_or(DtlsError::BadCertificate)?;
        let fingerprint = &self.identity.remote_fingerprint;
        let algorithm = match fingerprint.algorithm.as_str() {
            "sha-256" => &digest::SHA256,
            "sha-384" => &digest::SHA384,
            "sha-512" => &digest::SHA512,
            _ => return Err(DtlsError::FingerprintMismatch),
        };
        if digest::digest(algorithm, &der).as_ref() != fingerprint.value.as_slice() {
            return Err(DtlsError::FingerprintMismatch);
        }
        let parsed = pki_types::CertificateDer::from(der.as_slice());
        webpki::EndEntityCert::try_from(&parsed).map_err(|_| DtlsError::BadCertificate)?;
        self.peer_cert = Some(der);
        self.transcript_add(HandshakeType::Certificate, seq, body);
        Ok(())
    }

    /// Verify an ECDSA P-256 signature with the peer's (fingerprint-checked) certificate.
    pub(crate) fn verify_with_peer(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), DtlsError> {
        let der = self.peer_cert.as_ref().ok_or(DtlsError::BadCertificate)?;
        let parsed = pki_types::CertificateDer::from(der.as_slice());
        let cert =
            webpki::EndEntityCert::try_from(&parsed).map_err(|_| DtlsError::BadCertificate)?;
        cert.verify_signature(webpki::ring::ECDSA_P256_SHA256, message, signature)
            .map_err(|_| DtlsError::BadSignature)
    }

    /// Sign with our certificate's key.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DtlsError> {
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &self.identity.key_pkcs8,
            &self.secure,
        )
        .map_err(|_| DtlsError::Crypto)?;
        Ok(key
            .sign(&self.secure, message)
            .map_err(|_| DtlsError::Crypto)?
            .as_ref()
            .to_vec())
    }

    /// The extended master secret (session hash through ClientKeyExchange) and the keys.
    pub(crate) fn derive_keys(
        &self,
        pre_master: &[u8],
    ) -> Result<([u8; 48], RecordKeys), DtlsError> {
        let master = keying::extended_master_secret(pre_master, &sha256(&self.transcript));
        let keys = RecordKeys::derive(
            &master,
            &self.client_random,
            &self.server_random,
            self.role == DtlsRole::Client,
        )
        .ok_or(DtlsError::Crypto)?;
        Ok((master, keys))
    }

    /// Finished verify_data of the client's or the server's Finished over the transcript.
    pub(crate) fn finished_body(&self, master: &[u8; 48], client: bool) -> Vec<u8> {
        #[allow(unused_mut)]
        let mut body = keying::verify_data(master, client, &sha256(&self.transcript)).to_vec();
        #[cfg(test)]
        if self.forge_finished && client == (self.role == DtlsRole::Client) {
            body[0] ^= 1;
        }
        body
    }

    /// Check the peer's Finished (carried in epoch 1) and add it to the transcript.
    pub(crate) fn check_peer_finished(
        &mut self,
        master: &[u8; 48],
        seq: u16,
        epoch: u16,
        body: &[u8],
    ) -> Result<(), DtlsError> {
        let expected = self.finished_body_of_peer(master);
        if epoch != 1 || self.record.read_epoch() != 1 {
            return Err(DtlsError::UnexpectedMessage);
        }
        if expected.len() != body.len()
            || expected
                .iter()
                .zip(body)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                != 0
        {
            return Err(DtlsError::BadFinished);
        }
        self.transcript_add(HandshakeType::Finished, seq, body);
        Ok(())
    }

    fn finished_body_of_peer(&self, master: &[u8; 48]) -> Vec<u8> {
        let peer_is_client = self.role == DtlsRole::Server;
        keying::verify_data(master, peer_is_client, &sha256(&self.transcript)).to_vec()
    }

    /// The handshake is complete and verified: export the SRTP keying material.
    pub(crate) fn connected(&mut self, master: &[u8; 48]) -> Result<(), DtlsError> {
        let profile = self.srtp_profile.ok_or(DtlsError::NoCommonSrtpProfile)?;
        let mut material = vec![0u8; profile.keying_material_len()];
        keying::export(
            master,
            b"EXTRACTOR-dtls_srtp",
            &self.client_random,
            &self.server_random,
            &mut material,
        );
        self.state = DtlsState::Connected;
        self.reassembly.clear();
        self.push_event(DtlsEvent::Connected {
            srtp_profile: profile,
            keying_material: material,
        });
        Ok(())
    }

    /// End the association: a fatal alert so the peer stops waiting, no keys kept.
    pub(crate) fn fail(&mut self, error: DtlsError) {
        if matches!(self.state, DtlsState::Failed | DtlsState::Closed) {
            return;
        }
        // handshake_failure, bad_certificate or decrypt_error as fits.
        let description = match error {
            DtlsError::FingerprintMismatch | DtlsError::BadCertificate => 42,
            DtlsError::BadSignature | DtlsError::BadFinished => 51,
            DtlsError::UnexpectedMessage => 10,
            _ => 40,
        };
        let epoch = self.record.write_epoch();
        if let Some(r) =
            self.record
                .seal(ContentType::Alert, epoch, wire::DTLS_1_2, &[2, description])
        {
            self.push_datagram(r);
        }
        self.state = DtlsState::Failed;
        self.flight.clear();
        self.record.forget();
        self.reassembly.clear();
        self.push_event(DtlsEvent::Failed(error));
    }
}
