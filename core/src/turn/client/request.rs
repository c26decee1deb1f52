//! The TURN client's transactions: building requests, matching and checking responses,
//! the long-term credential challenge and stale-nonce retries, and what each outcome
//! does to the allocation, its permissions and channels.

use std::time::{Duration, Instant};

use super::*;

impl TurnClient {
    /// Build and send a request of `kind` as a new transaction, with the current nonce.
    pub(super) fn start(&mut self, now: Instant, kind: TxKind, stale_retries: u32) {
        self.start_with_nonce(now, kind, stale_retries, None);
    }

    /// [`TurnClient::start`] with `nonce` in place of the current one, if given.
    fn start_with_nonce(
        &mut self,
        now: Instant,
        kind: TxKind,
        stale_retries: u32,
        nonce: Option<String>,
    ) {
        if self.transactions.len() >= MAX_TRANSACTIONS {
            self.stats.queue_overflows += 1;
            return;
        }
        // One outstanding transaction per purpose: a newer one replaces the older.
        self.transactions.retain(|t| t.kind != kind);
        let id = TransactionId::random(&mut self.rng);
        let (method, mut attrs) = match kind {
            TxKind::Allocate => {
                let mut a = vec![Attribute::RequestedTransport(PROTOCOL_UDP)];
                a.extend(self.requested_lifetime().map(Attribute::Lifetime));
                (Method::ALLOCATE, a)
            }
            TxKind::Refresh { lifetime } => (
                Method::REFRESH,
                lifetime.map(Attribute::Lifetime).into_iter().collect(),
            ),
            TxKind::Permission(ip) => (
                Method::CREATE_PERMISSION,
                vec![Attribute::XorPeerAddress(SocketAddr::new(ip, 0))],
            ),
            TxKind::ChannelBind { channel, peer } => (
                Method::CHANNEL_BIND,
                vec![
                    Attribute::ChannelNumber(channel),
                    Attribute::XorPeerAddress(peer),
                ],
            ),
        };
        let key = self.creds.key;
        let nonce = nonce.or_else(|| self.creds.nonce.clone());
        if let (Some(realm), Some(nonce), Some(_)) = (&self.creds.realm, &nonce, key) {
            attrs.push(Attribute::Username(self.creds.username.clone()));
            attrs.push(Attribute::Realm(realm.clone()));
            attrs.push(Attribute::Nonce(nonce.clone()));
        }
        let mut msg = Message::new(Class::Request, method, id);
        msg.attributes = attrs;
        let request = msg.encode_to_vec(key.as_ref().map(|k| k.as_slice()), true);
        if request.is_empty() {
            return;
        }
        let timer = match self.transport {
            Protocol::Udp => RetransmitTimer::new(
                now,
                self.config.initial_rto,
                self.config.max_rto,
                self.config.max_requests,
            ),
            Protocol::Tcp => RetransmitTimer::new(
                now,
                self.config.stream_timeout / 16,
                self.config.stream_timeout,
                1,
            ),
        };
        self.stats.requests_sent += 1;
        self.queue(request.clone());
        self.transactions.push(Transaction {
            id,
            nonce,
            earlier: Vec::new(),
            kind,
            timer,
            request,
            authenticated: key.is_some(),
            stale_retries,
            discarded_error: None,
        });
    }

    pub(super) fn handle_response(&mut self, now: Instant, raw: &[u8]) {
        let Some(id) = stun::peek_transaction_id(raw) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(index) = self.transactions.iter().position(|t| t.answers_to(id)) else {
            self.stats.dropped += 1;
            return;
        };
        let Ok(msg) = Message::parse(raw) else {
            self.stats.dropped += 1;
            return;
        };
        if stun::has_fingerprint(raw) && !stun::verify_fingerprint(raw) {
            self.stats.dropped += 1;
            return;
        }
        let code = msg.error_code().map(|(c, _)| c);
        let sent_with_credentials = self
            .transactions
            .get(index)
            .is_some_and(|t| t.authenticated);
        if sent_with_credentials {
            let authentic = self
                .creds
                .key
                .is_some_and(|k| stun::verify_integrity(raw, &k));
            if !authentic {
                self.discard_unauthenticated(now, index, &msg, code);
                return;
            }
            // The server took the nonce this request carried: new requests use it.
            if let Some(nonce) = self.transactions.get(index).and_then(|t| t.nonce_of(id)) {
                self.creds.nonce = Some(nonce.to_string());
            }
        }
        let tx = self.transactions.remove(index);
        self.stats.responses += 1;
        if msg.class == Class::Success {
            self.on_success(now, tx.kind, &msg);
            return;
        }
        match code {
            // The challenge to the request sent without credentials (RFC 8489 9.2.5).
            Some(401) if !tx.authenticated => {
                let (Some(realm), Some(nonce)) = (msg.realm(), msg.nonce()) else {
                    self.fail_transaction(now, tx.kind, TurnError::BadChallenge);
                    return;
                };
                self.creds.key = Some(long_term_key(
                    &self.creds.username,
                    realm,
                    &self.creds.password,
                ));
                self.creds.realm = Some(realm.to_string());
                self.creds.nonce = Some(nonce.to_string());
                self.start(now, tx.kind, tx.stale_retries);
            }
            Some(438) if tx.stale_retries < MAX_STALE_NONCE && msg.nonce().is_some() => {
                // Authenticated (or to a request without credentials): the new nonce
                // is the server's, for every request from now on.
                self.creds.nonce = msg.nonce().map(str::to_string);
                self.retry_with_nonce(now, tx, &msg);
            }
            Some(code) => self.fail_transaction(now, tx.kind, TurnError::from_code(code)),
            None => self.fail_transaction(now, tx.kind, TurnError::ServerError { code: 0 }),
        }
    }

    /// A response to a request sent with credentials, without a valid MESSAGE-INTEGRITY.
    ///
    /// RFC 8489 9.2.5 discards it as if never received: the request keeps being
    /// retransmitted, and only if every answer is discarded does the transaction end,
    /// reporting the violation. We do the same over stream transports, where the RFC
    /// would end the transaction at once: a forged answer injected before the server's
    /// must not decide the outcome, and waiting for the server's costs nothing.
    ///
    /// The exception is a 438 (Stale Nonce). Servers send it without integrity (RFC 8489
    /// 9.2.4 says it SHOULD NOT carry USERNAME and does not ask for MESSAGE-INTEGRITY;
    /// RFC 8656's Refresh example has none), and the client MUST retry with its NONCE,
    /// so an unauthenticated 438 may do exactly that and no more:
    /// - it replaces the nonce only: a REALM different from ours makes it a forgery (the
    ///   realm, and with it the key, only ever comes from the 401 challenge), discarded;
    /// - the new nonce goes only into this request's retry; other requests keep the
    ///   nonce the server last confirmed with integrity until an authentic answer to a
    ///   retry confirms the new one, so a forged nonce cannot spread;
    /// - the retry keeps the earlier request's id alive, so the server's own answer to
    ///   the earlier request still completes the transaction: a forged 438 against a
    ///   request with a valid nonce costs one extra request and nothing else;
    /// - beyond [`MAX_STALE_NONCE`] retries an unauthenticated 438 is discarded like any
    ///   other error, and only a timeout can end the transaction.
    fn discard_unauthenticated(
        &mut self,
        now: Instant,
        index: usize,
        msg: &Message,
        code: Option<u16>,
    ) {
        let stale_nonce = msg.class == Class::Error && code == Some(438);
        let same_realm = msg
            .realm()
            .is_none_or(|r| self.creds.realm.as_deref() == Some(r));
        let retries_left = self
            .transactions
            .get(index)
            .is_some_and(|t| t.stale_retries < MAX_STALE_NONCE);
        if stale_nonce && same_realm && retries_left && msg.nonce().is_some() {
            let tx = self.transactions.remove(index);
            self.stats.responses += 1;
            self.retry_with_nonce(now, tx, msg);
            return;
        }
        self.stats.dropped += 1;
        self.stats.unauthenticated_discarded += 1;
        if msg.class == Class::Error {
            if let Some(t) = self.transactions.get_mut(index) {
                t.discarded_error = code.or(t.discarded_error);
            }
        }
    }

    /// 438 Stale Nonce: send the request again with the 438's nonce (never its realm)
    /// as a new transaction that still answers to the ids of the earlier tries.
    fn retry_with_nonce(&mut self, now: Instant, tx: Transaction, msg: &Message) {
        let mut earlier = tx.earlier;
        earlier.push((tx.id, tx.nonce));
        let nonce = msg.nonce().map(str::to_string);
        self.start_with_nonce(now, tx.kind, tx.stale_retries + 1, nonce);
        if let Some(retry) = self.transactions.last_mut().filter(|t| t.kind == tx.kind) {
            retry.earlier = earlier;
            retry.discarded_error = tx.discarded_error;
        }
    }

    fn granted_lifetime(&self, msg: &Message) -> Duration {
        let asked = self.requested_lifetime().unwrap_or(600);
        Duration::from_secs(u64::from(msg.lifetime().unwrap_or(asked)))
    }

    fn on_success(&mut self, now: Instant, kind: TxKind, msg: &Message) {
        match kind {
            TxKind::Allocate => {
                if self.state != State::Allocating {
                    return;
                }
                let Some(relayed) = msg.xor_relayed_address() else {
                    self.fail(TurnError::MissingRelayedAddress);
                    return;
                };
                let lifetime = self.granted_lifetime(msg);
                self.relayed = Some(relayed);
                self.mapped = msg.xor_mapped_address();
                self.state = State::Allocated;
                self.schedule_refresh(now, lifetime);
                self.push_event(TurnEvent::Allocated {
                    relayed,
                    mapped: self.mapped,
                    lifetime,
                });
            }
            TxKind::Refresh { lifetime: Some(0) } => self.finish_deallocation(),
            TxKind::Refresh { .. } => {
                if self.state != State::Allocated {
                    return;
                }
                let lifetime = self.granted_lifetime(msg);
                self.schedule_refresh(now, lifetime);
                self.push_event(TurnEvent::Refreshed { lifetime });
            }
            TxKind::Permission(ip) => {
                let Some(p) = self.permissions.iter_mut().find(|p| p.ip == ip) else {
                    return;
                };
                p.refresh_at = Some(now + PERMISSION_REFRESH);
                if !p.installed {
                    p.installed = true;
                    self.push_event(TurnEvent::PermissionCreated(ip));
                }
            }
            TxKind::ChannelBind { channel, peer } => {
                let Some(c) = self.channels.iter_mut().find(|c| c.number == channel) else {
                    return;
                };
                c.refresh_at = Some(now + CHANNEL_REFRESH);
                if !c.bound {
                    c.bound = true;
                    self.push_event(TurnEvent::ChannelBound { peer, channel });
                }
            }
        }
    }

    fn schedule_refresh(&mut self, now: Instant, lifetime: Duration) {
        self.expires = Some(now + lifetime);
        // At least a second apart, so a server granting a tiny lifetime cannot cause a
        // refresh storm (the allocation then expires and fails instead).
        self.refresh_at = Some(now + lifetime.mul_f64(0.75).max(Duration::from_secs(1)));
    }

    pub(super) fn fail_transaction(&mut self, _now: Instant, kind: TxKind, error: TurnError) {
        match kind {
            TxKind::Allocate if self.state == State::Allocating => self.fail(error),
            // The allocation is gone on the server (437) or the server is unreachable.
            TxKind::Refresh { lifetime: Some(0) } => self.finish_deallocation(),
            TxKind::Refresh { .. } if self.state == State::Allocated => self.fail(error),
            TxKind::Permission(ip) if self.state == State::Allocated => {
                self.permissions.retain(|p| p.ip != ip);
                self.push_event(TurnEvent::PermissionFailed(ip, error));
            }
            TxKind::ChannelBind { channel, peer } if self.state == State::Allocated => {
                self.channels.retain(|c| c.number != channel);
                self.push_event(TurnEvent::ChannelBindFailed(peer, error));
            }
            _ => {}
        }
    }

    pub(super) fn fail(&mut self, error: TurnError) {
        self.state = State::Failed;
        self.transactions.clear();
        self.permissions.clear();
        self.channels.clear();
        self.refresh_at = None;
        self.expires = None;
        self.push_event(TurnEvent::AllocationFailed(error));
    }

    fn finish_deallocation(&mut self) {
        if self.state == State::Deallocating {
            self.state = State::Closed;
            self.transactions.clear();
            self.push_event(TurnEvent::Deallocated);
        }
    }
}
