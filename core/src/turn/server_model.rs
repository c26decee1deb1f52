//! A small TURN server model for the client's tests: enough of RFC 8656 to answer
//! Allocate (401 challenge, then success with the long-term key), Refresh,
//! CreatePermission, ChannelBind, Send/Data indications and ChannelData, with lifetimes
//! on the virtual clock. Test-only; knobs inject stale nonces, quotas, silence, garbage.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::stun::{self, Attribute, Class, Message, Method};
use crate::turn::wire::{is_valid_channel, long_term_key, ChannelData};

const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct Allocation {
    pub client: SocketAddr,
    pub expires: Instant,
    pub permissions: Vec<(IpAddr, Instant)>,
    pub channels: Vec<(u16, SocketAddr, Instant)>,
}

impl Allocation {
    fn permitted(&self, now: Instant, ip: IpAddr) -> bool {
        self.permissions.iter().any(|(p, e)| *p == ip && now < *e)
    }
}

/// Every request the server saw: method, whether it carried valid credentials, LIFETIME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub method: Method,
    pub authenticated: bool,
    pub lifetime: Option<u32>,
}

#[derive(Debug)]
pub struct ServerModel {
    pub addr: SocketAddr,
    pub relayed: SocketAddr,
    pub realm: String,
    pub username: String,
    pub password: String,
    pub nonce: String,
    pub default_lifetime: u32,
    pub allocation: Option<Allocation>,
    pub to_client: VecDeque<Vec<u8>>,
    pub to_peers: Vec<(SocketAddr, Vec<u8>)>,
    pub seen: Vec<Seen>,
    /// Answer this many authenticated requests with 438 and a fresh nonce.
    pub stale_nonces: u32,
    /// Answer Allocate with 486.
    pub quota_full: bool,
    /// Drop everything.
    pub silent: bool,
    /// Answer every datagram with random bytes instead.
    pub garbage: Option<Rng>,
    /// Pad ChannelData to four bytes (stream transports).
    pub pad_channel_data: bool,
    /// Lose this many datagrams from the client.
    pub drop_requests: u32,
    /// Answer CreatePermission and ChannelBind for this IP with 403.
    pub forbidden_peer: Option<IpAddr>,
    /// Answer the unauthenticated Allocate with a 401 that lacks REALM and NONCE.
    pub bare_challenge: bool,
    /// For each coming answer to a request, whether it is lost (after processing).
    pub lose_answers: VecDeque<bool>,
    /// The last answer, sent again for a retransmitted request (RFC 8489 section 6.3).
    last_answer: Option<(stun::TransactionId, Vec<u8>)>,
    nonce_counter: u32,
}

impl ServerModel {
    pub fn new(addr: SocketAddr, relayed: SocketAddr, username: &str, password: &str) -> Self {
        ServerModel {
            addr,
            relayed,
            realm: "sansrtc.test".into(),
            username: username.into(),
            password: password.into(),
            nonce: "nonce-0".into(),
            default_lifetime: 600,
            allocation: None,
            to_client: VecDeque::new(),
            to_peers: Vec::new(),
            seen: Vec::new(),
            stale_nonces: 0,
            quota_full: false,
            silent: false,
            garbage: None,
            pad_channel_data: false,
            drop_requests: 0,
            forbidden_peer: None,
            bare_challenge: false,
            lose_answers: VecDeque::new(),
            last_answer: None,
            nonce_counter: 0,
        }
    }

    fn key(&self) -> [u8; 16] {
        long_term_key(&self.username, &self.realm, &self.password)
    }

    pub fn count(&self, method: Method) -> usize {
        self.seen.iter().filter(|s| s.method == method).count()
    }

    fn live_allocation(&mut self, now: Instant) -> Option<&mut Allocation> {
        if self.allocation.as_ref().is_some_and(|a| now >= a.expires) {
            self.allocation = None;
        }
        self.allocation.as_mut()
    }

    /// A datagram from the client.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.silent {
            return;
        }
        if self.drop_requests > 0 {
            self.drop_requests -= 1;
            return;
        }
        if let Some(rng) = self.garbage.as_mut() {
            let mut junk = vec![0u8; 20 + rng.below(80) as usize];
            rng.fill(&mut junk);
            // Half of it looks like STUN from the first byte on.
            if rng.below(2) == 0 {
                junk[0] &= 0x03;
            }
            self.to_client.push_back(junk);
            return;
        }
        if let Ok(cd) = ChannelData::parse(data) {
            let Some(a) = self.live_allocation(now) else {
                return;
            };
            let peer = a
                .channels
                .iter()
                .find(|(c, _, e)| *c == cd.channel && now < *e)
                .map(|(_, p, _)| *p);
            if let Some(peer) = peer.filter(|p| a.permitted(now, p.ip())) {
                self.to_peers.push((peer, cd.data.to_vec()));
            }
            return;
        }
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        if msg.class == Class::Indication && msg.method == Method::SEND {
            let (Some(peer), Some(payload)) = (msg.xor_peer_address(), msg.data()) else {
                return;
            };
            let payload = payload.to_vec();
            if let Some(a) = self.live_allocation(now) {
                if a.client == from && a.permitted(now, peer.ip()) {
                    self.to_peers.push((peer, payload));
                }
            }
            return;
        }
        if msg.class != Class::Request {
            return;
        }
        if let Some((_, answer)) = self
            .last_answer
            .as_ref()
            .filter(|(id, _)| *id == msg.transaction_id)
        {
            let answer = answer.clone();
            self.answer(msg.transaction_id, answer);
            return;
        }
        let key = self.key();
        let authenticated = msg.username() == Some(self.username.as_str())
            && msg.realm() == Some(self.realm.as_str())
            && stun::verify_integrity(data, &key);
        self.seen.push(Seen {
            method: msg.method,
            authenticated,
            lifetime: msg.lifetime(),
        });
        if !authenticated {
            let reply = self.error(&msg, 401, false);
            self.answer(msg.transaction_id, reply);
            return;
        }
        if self.stale_nonces > 0 {
            // The nonce expires: a new one, announced in a 438.
            self.stale_nonces -= 1;
            self.nonce_counter += 1;
            self.nonce = format!("nonce-{}", self.nonce_counter);
        }
        if msg.nonce() != Some(self.nonce.as_str()) {
            // A wrong or expired nonce: 438 with the current one (no integrity, as
            // servers send it).
            let reply = self.error(&msg, 438, false);
            self.answer(msg.transaction_id, reply);
            return;
        }
        let reply = match msg.method {
            Method::ALLOCATE => self.allocate(now, from, &msg),
            Method::REFRESH => self.refresh(now, &msg),
            Method::CREATE_PERMISSION => self.permission(now, &msg),
            Method::CHANNEL_BIND => self.channel_bind(now, &msg),
            _ => Err(400),
        };
        let reply = match reply {
            Ok(attrs) => {
                let mut m = Message::new(Class::Success, msg.method, msg.transaction_id);
                m.attributes = attrs;
                m.encode_to_vec(Some(&key), true)
            }
            Err(code) => self.error(&msg, code, true),
        };
        self.answer(msg.transaction_id, reply);
    }

    fn answer(&mut self, id: stun::TransactionId, reply: Vec<u8>) {
        self.last_answer = Some((id, reply.clone()));
        if self.lose_answers.pop_front() == Some(true) {
            return;
        }
        self.to_client.push_back(reply);
    }

    fn error(&self, req: &Message, code: u16, with_integrity: bool) -> Vec<u8> {
        let mut m =
            Message::new(Class::Error, req.method, req.transaction_id).with(Attribute::ErrorCode {
                code,
                reason: "model".into(),
            });
        if matches!(code, 401 | 438) && !self.bare_challenge {
            m = m
                .with(Attribute::Realm(self.realm.clone()))
                .with(Attribute::Nonce(self.nonce.clone()));
        }
        let key = self.key();
        m.encode_to_vec(with_integrity.then_some(&key[..]), true)
    }

    fn lifetime(&self, msg: &Message) -> u32 {
        msg.lifetime().unwrap_or(self.default_lifetime).min(3600)
    }

    fn allocate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &Message,
    ) -> Result<Vec<Attribute>, u16> {
        if self.live_allocation(now).is_some() {
            return Err(437);
        }
        if self.quota_full {
            return Err(486);
        }
        if !msg.attributes.contains(&Attribute::RequestedTransport(17)) {
            return Err(442);
        }
        let lifetime = self.lifetime(msg);
        self.allocation = Some(Allocation {
            client: from,
            expires: now + Duration::from_secs(u64::from(lifetime)),
            permissions: Vec::new(),
            channels: Vec::new(),
        });
        Ok(vec![
            Attribute::XorRelayedAddress(self.relayed),
            Attribute::XorMappedAddress(from),
            Attribute::Lifetime(lifetime),
        ])
    }

    fn refresh(&mut self, now: Instant, msg: &Message) -> Result<Vec<Attribute>, u16> {
        let lifetime = self.lifetime(msg);
        let a = self.live_allocation(now).ok_or(437u16)?;
        if lifetime == 0 {
            self.allocation = None;
        } else {
            a.expires = now + Duration::from_secs(u64::from(lifetime));
        }
        Ok(vec![Attribute::Lifetime(lifetime)])
    }

    fn permission(&mut self, now: Instant, msg: &Message) -> Result<Vec<Attribute>, u16> {
        let peer = msg.xor_peer_address().ok_or(400u16)?;
        if self.forbidden_peer == Some(peer.ip()) {
            return Err(403);
        }
        let a = self.live_allocation(now).ok_or(437u16)?;
        a.permissions.retain(|(ip, _)| *ip != peer.ip());
        a.permissions.push((peer.ip(), now + PERMISSION_LIFETIME));
        Ok(Vec::new())
    }

    fn channel_bind(&mut self, now: Instant, msg: &Message) -> Result<Vec<Attribute>, u16> {
        let peer = msg.xor_peer_address().ok_or(400u16)?;
        if self.forbidden_peer == Some(peer.ip()) {
            return Err(403);
        }
        let channel = msg
            .channel_number()
            .filter(|c| is_valid_channel(*c))
            .ok_or(400u16)?;
        let a = self.live_allocation(now).ok_or(437u16)?;
        if a.channels
            .iter()
            .any(|(c, p, _)| (*c == channel) != (*p == peer))
        {
            return Err(400);
        }
        a.channels.retain(|(c, _, _)| *c != channel);
        a.channels.push((channel, peer, now + CHANNEL_LIFETIME));
        a.permissions.retain(|(ip, _)| *ip != peer.ip());
        a.permissions.push((peer.ip(), now + PERMISSION_LIFETIME));
        Ok(Vec::new())
    }

    /// A datagram from `peer` to the relayed address: relayed to the client as
    /// ChannelData if a channel is bound, as a Data indication if permitted, else dropped.
    pub fn relay_from_peer(&mut self, now: Instant, peer: SocketAddr, data: &[u8], rng: &mut Rng) {
        let pad = self.pad_channel_data;
        let Some(a) = self.live_allocation(now) else {
            return;
        };
        if !a.permitted(now, peer.ip()) {
            return;
        }
        let channel = a
            .channels
            .iter()
            .find(|(_, p, e)| *p == peer && now < *e)
            .map(|(c, _, _)| *c);
        let out = match channel {
            Some(channel) => {
                let mut buf = vec![0u8; ChannelData::encoded_len(data.len(), pad)];
                let _ = ChannelData { channel, data }.write(pad, &mut buf);
                buf
            }
            None => Message::new(
                Class::Indication,
                Method::DATA,
                stun::TransactionId::random(rng),
            )
            .with(Attribute::XorPeerAddress(peer))
            .with(Attribute::Data(data.to_vec()))
            .encode_to_vec(None, false),
        };
        self.to_client.push_back(out);
    }
}
