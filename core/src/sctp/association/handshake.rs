//! The four-way handshake (RFC 9260 5.1): INIT, INIT ACK with a signed state cookie,
//! COOKIE ECHO, COOKIE ACK; and the T1 retransmissions.
//!
//! The server keeps no state for an INIT: everything it needs comes back in the cookie,
//! signed with HMAC-SHA256 under a key drawn from the operating system. A COOKIE ECHO
//! whose signature does not verify is counted as forged; one older than the configured
//! lifetime as stale. Both are dropped.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::hmac;

use super::receiver::Receiver;
use super::{Association, AssociationState, Negotiated, Timer};
use crate::sctp::wire::{Chunk, ChunkType, Init, InitParams};

const COOKIE_VERSION: u8 = 1;
const COOKIE_BODY_LEN: usize = 34;
const COOKIE_LEN: usize = COOKIE_BODY_LEN + 32;

/// Parameter types that are known and need no action over DTLS (addresses, cookie
/// preservative, host name, address types, ECN, AUTH's parameters, padding).
const IGNORED_PARAMS: [u16; 10] = [5, 6, 9, 11, 12, 0x8000, 0x8002, 0x8003, 0x8004, 0x8005];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CookieContents {
    local_tag: u32,
    peer_tag: u32,
    local_initial_tsn: u32,
    peer_initial_tsn: u32,
    peer_rwnd: u32,
    peer_outbound: u16,
    peer_inbound: u16,
    features: u8,
    created_ms: u64,
}

impl CookieContents {
    fn encode(&self) -> [u8; COOKIE_BODY_LEN] {
        let mut b = [0u8; COOKIE_BODY_LEN];
        b[0] = COOKIE_VERSION;
        b[1..5].copy_from_slice(&self.local_tag.to_be_bytes());
        b[5..9].copy_from_slice(&self.peer_tag.to_be_bytes());
        b[9..13].copy_from_slice(&self.local_initial_tsn.to_be_bytes());
        b[13..17].copy_from_slice(&self.peer_initial_tsn.to_be_bytes());
        b[17..21].copy_from_slice(&self.peer_rwnd.to_be_bytes());
        b[21..23].copy_from_slice(&self.peer_outbound.to_be_bytes());
        b[23..25].copy_from_slice(&self.peer_inbound.to_be_bytes());
        b[25] = self.features;
        b[26..34].copy_from_slice(&self.created_ms.to_be_bytes());
        b
    }

    fn decode(b: &[u8; COOKIE_BODY_LEN]) -> Option<Self> {
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if b[0] != COOKIE_VERSION {
            return None;
        }
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&b[26..34]);
        Some(CookieContents {
            local_tag: u32_at(1),
            peer_tag: u32_at(5),
            local_initial_tsn: u32_at(9),
            peer_initial_tsn: u32_at(13),
            peer_rwnd: u32_at(17),
            peer_outbound: u16::from_be_bytes([b[21], b[22]]),
            peer_inbound: u16::from_be_bytes([b[23], b[24]]),
            features: b[25],
            created_ms: u64::from_be_bytes(ms),
        })
    }
}

const FEATURE_FORWARD_TSN: u8 = 1;
const FEATURE_IDATA: u8 = 2;
const FEATURE_RECONFIG: u8 = 4;

fn peer_features(params: &InitParams) -> u8 {
    let mut f = 0;
    if params.forward_tsn_supported || params.supports(ChunkType::FORWARD_TSN.0) {
        f |= FEATURE_FORWARD_TSN;
    }
    if params.supports(ChunkType::I_DATA.0) {
        f |= FEATURE_IDATA;
    }
    if params.supports(ChunkType::RE_CONFIG.0) {
        f |= FEATURE_RECONFIG;
    }
    f
}

impl Association {
    fn since_epoch_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn our_params(&self) -> InitParams {
        let mut ext = vec![ChunkType::RE_CONFIG.0, ChunkType::FORWARD_TSN.0];
        if self.config.interleaving {
            ext.extend_from_slice(&[ChunkType::I_DATA.0, ChunkType::I_FORWARD_TSN.0]);
        }
        InitParams {
            forward_tsn_supported: true,
            supported_extensions: Some(Bytes::from(ext)),
            ..InitParams::default()
        }
    }

    fn our_init(&self, params: InitParams) -> Init {
        Init {
            initiate_tag: self.local_tag,
            a_rwnd: self.config.receive_buffer.min(u32::MAX as usize) as u32,
            outbound_streams: self.config.streams,
            inbound_streams: self.config.streams,
            initial_tsn: self.local_initial_tsn,
            params,
        }
    }

    fn negotiate(&self, peer: &Init, features: u8) -> Negotiated {
        Negotiated {
            peer_tag: peer.initiate_tag,
            peer_initial_tsn: peer.initial_tsn,
            peer_rwnd: peer.a_rwnd,
            outbound_streams: self.config.streams.min(peer.inbound_streams),
            forward_tsn: features & FEATURE_FORWARD_TSN != 0,
            interleaving: self.config.interleaving && features & FEATURE_IDATA != 0,
            reconfig: features & FEATURE_RECONFIG != 0,
        }
    }

    pub(super) fn send_init(&mut self, now: Instant) {
        let init = Chunk::Init(self.our_init(self.our_params()));
        self.handshake_chunk = Some(init.clone());
        self.handshake_attempts = 0;
        self.push_control(0, init);
        self.state = AssociationState::CookieWait;
        self.timers.set(Timer::Init, now + self.config.rto_initial);
    }

    pub(super) fn retransmit_handshake(&mut self, now: Instant) {
        let (timer, tag) = match self.state {
            AssociationState::CookieWait => (Timer::Init, 0),
            AssociationState::CookieEchoed => (Timer::Cookie, self.peer_tag()),
            _ => return,
        };
        self.handshake_attempts += 1;
        if self.handshake_attempts > self.config.max_init_retransmits {
            self.terminate(super::CloseReason::Timeout);
            return;
        }
        if let Some(chunk) = self.handshake_chunk.clone() {
            self.push_control(tag, chunk);
        }
        let backoff = self
            .config
            .rto_initial
            .saturating_mul(1 << self.handshake_attempts.min(16))
            .min(self.config.rto_max);
        self.timers.set(timer, now + backoff);
    }

    pub(super) fn handle_init(&mut self, now: Instant, init: Init) {
        if init.initiate_tag == 0 || init.outbound_streams == 0 || init.inbound_streams == 0 {
            self.stats.malformed_chunks += 1;
            return;
        }
        if matches!(
            self.state,
            AssociationState::Terminated | AssociationState::ShutdownAckSent
        ) {
            return;
        }
        let features = peer_features(&init.params);
        let cookie = self.make_cookie(now, &init, features);
        let mut params = self.our_params();
        params.state_cookie = Some(cookie);
        for p in &init.params.unknown {
            if IGNORED_PARAMS.contains(&p.param_type) || p.param_type & 0x4000 == 0 {
                continue;
            }
            let mut raw = Vec::with_capacity(4 + p.value.len());
            raw.extend_from_slice(&p.param_type.to_be_bytes());
            raw.extend_from_slice(&((4 + p.value.len()) as u16).to_be_bytes());
            raw.extend_from_slice(&p.value);
            if params.unrecognized.len() < 8 {
                params.unrecognized.push(Bytes::from(raw));
            }
        }
        let ack = Chunk::InitAck(self.our_init(params));
        self.push_control(init.initiate_tag, ack);
    }

    fn make_cookie(&self, now: Instant, peer: &Init, features: u8) -> Bytes {
        let body = CookieContents {
            local_tag: self.local_tag,
            peer_tag: peer.initiate_tag,
            local_initial_tsn: self.local_initial_tsn,
            peer_initial_tsn: peer.initial_tsn,
            peer_rwnd: peer.a_rwnd,
            peer_outbound: peer.outbound_streams,
            peer_inbound: peer.inbound_streams,
            features,
            created_ms: self.since_epoch_ms(now),
        }
        .encode();
        let tag = hmac::sign(&self.cookie_key, &body);
        let mut cookie = Vec::with_capacity(COOKIE_LEN);
        cookie.extend_from_slice(&body);
        cookie.extend_from_slice(tag.as_ref());
        Bytes::from(cookie)
    }

    /// The cookie's contents if its signature verifies and it is fresh.
    fn open_cookie(&mut self, now: Instant, cookie: &[u8]) -> Option<CookieContents> {
        let (body, tag) = (cookie.get(..COOKIE_BODY_LEN), cookie.get(COOKIE_BODY_LEN..));
        let (Some(body), Some(tag)) = (body, tag) else {
            self.stats.forged_cookies += 1;
            return None;
        };
        if cookie.len() != COOKIE_LEN || hmac::verify(&self.cookie_key, body, tag).is_err() {
            self.stats.forged_cookies += 1;
            return None;
        }
        let mut fixed = [0u8; COOKIE_BODY_LEN];
        fixed.copy_from_slice(body);
        let Some(contents) = CookieContents::decode(&fixed) else {
            self.stats.forged_cookies += 1;
            return None;
        };
        if contents.local_tag != self.local_tag {
            self.stats.forged_cookies += 1;
            return None;
        }
        let age =
            Duration::from_millis(self.since_epoch_ms(now).saturating_sub(contents.created_ms));
        if age > self.config.cookie_lifetime {
            self.stats.stale_cookies += 1;
            let stale = Chunk::Error(vec![crate::sctp::wire::ErrorCause {
                code: crate::sctp::wire::ErrorCause::STALE_COOKIE,
                info: Bytes::copy_from_slice(
                    &u32::try_from((age - self.config.cookie_lifetime).as_micros())
                        .unwrap_or(u32::MAX)
                        .to_be_bytes(),
                ),
            }]);
            self.push_control(contents.peer_tag, stale);
            return None;
        }
        Some(contents)
    }

    pub(super) fn handle_cookie_echo(&mut self, now: Instant, cookie: &[u8]) {
        let Some(c) = self.open_cookie(now, cookie) else {
            return;
        };
        use AssociationState as S;
        match self.state {
            S::Closed | S::CookieWait | S::CookieEchoed => {
                let peer = Init {
                    initiate_tag: c.peer_tag,
                    a_rwnd: c.peer_rwnd,
                    outbound_streams: c.peer_outbound,
                    inbound_streams: c.peer_inbound,
                    initial_tsn: c.peer_initial_tsn,
                    params: InitParams::default(),
                };
                let n = self.negotiate(&peer, c.features);
                self.establish(now, n);
                self.push_control(n.peer_tag, Chunk::CookieAck);
            }
            S::Terminated => {}
            _ => {
                // Our COOKIE ACK was lost: say it again for the same association.
                if c.peer_tag == self.peer_tag() {
                    self.push_control(c.peer_tag, Chunk::CookieAck);
                }
            }
        }
    }

    pub(super) fn handle_init_ack(&mut self, now: Instant, ack: Init) {
        if self.state != AssociationState::CookieWait {
            return;
        }
        let Some(cookie) = ack.params.state_cookie.clone() else {
            self.stats.malformed_chunks += 1;
            return;
        };
        if ack.initiate_tag == 0 || ack.outbound_streams == 0 || ack.inbound_streams == 0 {
            self.stats.malformed_chunks += 1;
            return;
        }
        let n = self.negotiate(&ack, peer_features(&ack.params));
        self.negotiated = Some(n);
        let echo = Chunk::CookieEcho(cookie);
        self.handshake_chunk = Some(echo.clone());
        self.handshake_attempts = 0;
        self.push_control(n.peer_tag, echo);
        self.state = AssociationState::CookieEchoed;
        self.timers.stop(Timer::Init);
        self.timers
            .set(Timer::Cookie, now + self.config.rto_initial);
    }

    pub(super) fn handle_cookie_ack(&mut self, now: Instant) {
        if self.state != AssociationState::CookieEchoed {
            return;
        }
        if let Some(n) = self.negotiated {
            self.establish(now, n);
        }
    }

    fn establish(&mut self, now: Instant, n: Negotiated) {
        self.negotiated = Some(n);
        self.receiver = Some(Receiver::new(
            n.peer_initial_tsn,
            self.config.receive_buffer,
            self.config.max_message_size,
            n.interleaving,
        ));
        let budget = self
            .config
            .interleaved_message_budget
            .unwrap_or(n.peer_rwnd as usize / 2);
        self.sender
            .establish(n.peer_rwnd, n.interleaving, n.forward_tsn, budget);
        self.reconfig.set_peer_initial_tsn(n.peer_initial_tsn);
        self.state = AssociationState::Established;
        self.timers.stop(Timer::Init);
        self.timers.stop(Timer::Cookie);
        self.handshake_chunk = None;
        self.events.push_back(super::SctpEvent::Connected);
        self.arm_heartbeat(now);
    }
}
