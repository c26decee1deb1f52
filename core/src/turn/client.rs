//! The TURN client: one allocation on one server (RFC 8656), with its permissions and
//! channel bindings.
//!
//! ```text
//!            new()
//!              │ Allocate (no credentials)
//!              ▼
//!         allocating ──401 (realm, nonce)──> Allocate with MESSAGE-INTEGRITY
//!              │    ──438 (new nonce)─────> again (bounded)
//!              │    ──401 again, other error, timeout──> failed
//!              │ success
//!              ▼
//!          allocated ──Refresh at 3/4 of the lifetime──> allocated (Refreshed)
//!              │    ──Refresh error or timeout, or lifetime over──> failed
//!              │ close(): Refresh with LIFETIME 0
//!              ▼
//!        deallocating ──response or timeout──> closed (Deallocated)
//! ```
//! Permissions (CreatePermission, refreshed every 4 minutes) and channels (ChannelBind,
//! refreshed every 5 minutes) live only while allocated. Every request is a STUN
//! transaction retransmitted by [`RetransmitTimer`] over UDP (one try with a long
//! timeout over stream transports), so a silent server fails the allocation within the
//! transaction timeout. Responses are matched by source address and transaction id (a
//! response to a transaction this client did not start is [`TurnInput::NotTurn`], so ICE's
//! own Binding requests to the same server still work).
//!
//! Which responses may change state (RFC 8489 9.2.5, RFC 8656): a request sent without
//! credentials (the first Allocate) has nothing to check a response against, so its
//! answer is taken as it is, and its 401 carries the challenge. A response to a request
//! sent with credentials, success or error, counts only with a valid MESSAGE-INTEGRITY;
//! without one it is discarded as if never received (the request keeps being
//! retransmitted) and counted in [`TurnStats::unauthenticated_discarded`]. The one
//! exception is a 438 (Stale Nonce), which servers send without integrity (RFC 8656's
//! own example does): it may replace the NONCE, nothing else, and the request is retried
//! with it (see `handle_stale_nonce`). An unauthenticated error therefore never fails an
//! allocation, refresh, permission or channel binding; if only such errors came, the
//! transaction times out and reports the discarded code. Anything else from the server
//! is dropped and counted.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rng::Rng;
use crate::stun::{
    self, Attribute, Class, Message, Method, RetransmitTimer, TimerAction, TransactionId,
};
use crate::transmit::Protocol;
use crate::turn::event::{
    PermissionError, TurnError, TurnEvent, TurnInput, TurnSendError, TurnStats,
};
use crate::turn::wire::{long_term_key, ChannelData, DataIndication, CHANNEL_MAX, CHANNEL_MIN};

mod request;

/// Most permissions (peer IP addresses) per allocation.
pub const MAX_PERMISSIONS: usize = 64;
/// Most channel bindings per allocation.
pub const MAX_CHANNELS: usize = 64;
const MAX_TRANSACTIONS: usize = 2 * (MAX_PERMISSIONS + MAX_CHANNELS) + 4;
const MAX_QUEUE: usize = 256;
const MAX_EVENTS: usize = 256;
/// Retries of one request after 438 Stale Nonce.
const MAX_STALE_NONCE: u32 = 3;
/// Permissions last 5 minutes on the server (RFC 8656 section 9); refresh a minute early.
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Channel bindings last 10 minutes (RFC 8656 section 12); refresh at half.
const CHANNEL_REFRESH: Duration = Duration::from_secs(300);
const PROTOCOL_UDP: u8 = 17;
const DATA_ATTRIBUTE: u16 = 0x0013;
/// Room for a STUN header and the attributes of a Send indication around the data.
const SEND_OVERHEAD: usize = 20 + 24 + 4 + 8;

/// Timing of the client's STUN transactions and the lifetime it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// First retransmission timeout over UDP.
    pub initial_rto: Duration,
    /// Largest retransmission timeout.
    pub max_rto: Duration,
    /// Requests sent before a transaction is given up over UDP (Rc).
    pub max_requests: u32,
    /// How long one request waits over a stream transport (no retransmissions there).
    pub stream_timeout: Duration,
    /// LIFETIME to ask for in Allocate and Refresh; `None` takes the server's default.
    pub lifetime: Option<Duration>,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            initial_rto: Duration::from_millis(250),
            max_rto: Duration::from_secs(3),
            max_requests: 7,
            stream_timeout: Duration::from_secs(16),
            lifetime: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Allocating,
    Allocated,
    Deallocating,
    Failed,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxKind {
    Allocate,
    Refresh { lifetime: Option<u32> },
    Permission(IpAddr),
    ChannelBind { channel: u16, peer: SocketAddr },
}

#[derive(Debug, Clone)]
struct Transaction {
    id: TransactionId,
    /// The NONCE the request carries.
    nonce: Option<String>,
    /// The earlier requests this one retries after a 438 (at most [`MAX_STALE_NONCE`]),
    /// with the nonce each carried: a genuine answer to one of them still completes it,
    /// so a forged 438 that raced the server's answer cannot make us lose that answer.
    earlier: Vec<(TransactionId, Option<String>)>,
    kind: TxKind,
    timer: RetransmitTimer,
    request: Vec<u8>,
    authenticated: bool,
    stale_retries: u32,
    /// The error code of the last response discarded for lacking a valid
    /// MESSAGE-INTEGRITY: what the transaction reports if it times out (RFC 8489 9.2.5:
    /// signal the integrity violation rather than a plain timeout).
    discarded_error: Option<u16>,
}

impl Transaction {
    fn answers_to(&self, id: TransactionId) -> bool {
        self.id == id || self.earlier.iter().any(|(e, _)| *e == id)
    }

    /// The nonce the request with `id` carried.
    fn nonce_of(&self, id: TransactionId) -> Option<&str> {
        if self.id == id {
            return self.nonce.as_deref();
        }
        self.earlier
            .iter()
            .find(|(e, _)| *e == id)
            .and_then(|(_, n)| n.as_deref())
    }
}

#[derive(Debug, Clone)]
struct Permission {
    ip: IpAddr,
    installed: bool,
    refresh_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    bound: bool,
    refresh_at: Option<Instant>,
}

#[derive(Clone)]
struct Credentials {
    username: String,
    password: String,
    realm: Option<String>,
    /// The nonce new requests carry: from the 401 challenge, then the one of the last
    /// request the server answered with a valid MESSAGE-INTEGRITY (or an authenticated
    /// 438's). A nonce from an unauthenticated 438 is only tried by that request's
    /// retries until the server confirms it, so a forged one never reaches other requests.
    nonce: Option<String>,
    key: Option<[u8; 16]>,
}

/// Never prints the password or the key.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// A TURN client for one allocation on one server. Same shape as the other sans-IO
/// modules: `handle_*` inputs, API calls, `poll_*` outputs; never blocks or reads a clock.
#[derive(Debug)]
pub struct TurnClient {
    server: SocketAddr,
    transport: Protocol,
    config: TurnConfig,
    rng: Rng,
    creds: Credentials,
    state: State,
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    expires: Option<Instant>,
    refresh_at: Option<Instant>,
    transactions: Vec<Transaction>,
    permissions: Vec<Permission>,
    channels: Vec<Channel>,
    next_channel: u16,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<TurnEvent>,
    stats: TurnStats,
    last_now: Instant,
}

impl TurnClient {
    /// A client for `server` over `transport` that sends its first Allocate at once.
    pub fn new(
        server: SocketAddr,
        transport: Protocol,
        username: impl Into<String>,
        password: impl Into<String>,
        rng: Rng,
        now: Instant,
    ) -> Self {
        Self::with_config(
            server,
            transport,
            username,
            password,
            rng,
            now,
            TurnConfig::default(),
        )
    }

    /// [`TurnClient::new`] with explicit timing.
    pub fn with_config(
        server: SocketAddr,
        transport: Protocol,
        username: impl Into<String>,
        password: impl Into<String>,
        rng: Rng,
        now: Instant,
        config: TurnConfig,
    ) -> Self {
        let mut client = TurnClient {
            server,
            transport,
            config,
            rng,
            creds: Credentials {
                username: username.into(),
                password: password.into(),
                realm: None,
                nonce: None,
                key: None,
            },
            state: State::Allocating,
            relayed: None,
            mapped: None,
            expires: None,
            refresh_at: None,
            transactions: Vec::new(),
            permissions: Vec::new(),
            channels: Vec::new(),
            next_channel: CHANNEL_MIN,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: TurnStats::default(),
            last_now: now,
        };
        client.start(now, TxKind::Allocate, 0);
        client
    }

    // ------------------------------------------------------------------ getters

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The relayed address, once allocated.
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.relayed.filter(|_| self.state == State::Allocated)
    }

    /// The server-reflexive address the server saw, once allocated.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.mapped.filter(|_| self.state == State::Allocated)
    }

    /// Whether the allocation exists.
    pub fn is_allocated(&self) -> bool {
        self.state == State::Allocated
    }

    /// Whether the client is done (failed, or closed and deallocated).
    pub fn is_terminated(&self) -> bool {
        matches!(self.state, State::Failed | State::Closed)
    }

    /// The channel bound to `peer`, if its ChannelBind succeeded.
    pub fn channel_of(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.bound)
            .map(|c| c.number)
    }

    /// Whether a permission for `ip` is installed on the server.
    pub fn has_permission(&self, ip: IpAddr) -> bool {
        self.permissions.iter().any(|p| p.ip == ip && p.installed)
    }

    /// Counters.
    pub fn stats(&self) -> &TurnStats {
        &self.stats
    }

    // ------------------------------------------------------------------ inputs

    /// A datagram received from `from`. Tells the caller what it was; a relayed peer
    /// datagram borrows its payload from `data`. Never panics, whatever the bytes.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &'a [u8],
    ) -> TurnInput<'a> {
        self.tick(now);
        if from != self.server {
            return TurnInput::NotTurn;
        }
        match data.first() {
            Some(0x40..=0x4F) => self.handle_channel_data(data),
            Some(0..=3) => match stun::peek_class_method(data) {
                Some((Class::Indication, Method::DATA)) => self.handle_data_indication(data),
                Some((Class::Success | Class::Error, method)) => {
                    // A response to someone else's transaction on the same server (ICE's
                    // Binding request for a server-reflexive candidate) is not ours.
                    let ours = stun::peek_transaction_id(data)
                        .is_some_and(|id| self.transactions.iter().any(|t| t.answers_to(id)));
                    if method == Method::BINDING || !ours {
                        return TurnInput::NotTurn;
                    }
                    self.handle_response(now, data);
                    TurnInput::Consumed
                }
                _ => self.drop_input(),
            },
            _ => self.drop_input(),
        }
    }

    /// Time passed: retransmit, refresh, give up. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let mut i = 0;
        while i < self.transactions.len() {
            let Some(t) = self.transactions.get_mut(i) else {
                break;
            };
            if t.timer.deadline().is_none_or(|d| now < d) {
                i += 1;
                continue;
            }
            match t.timer.on_timeout(now) {
                TimerAction::Wait => i += 1,
                TimerAction::Retransmit => {
                    let request = t.request.clone();
                    self.stats.retransmits += 1;
                    self.queue(request);
                    i += 1;
                }
                TimerAction::TimedOut => {
                    let t = self.transactions.remove(i);
                    let error = t
                        .discarded_error
                        .map_or(TurnError::Timeout, TurnError::unauthenticated);
                    self.fail_transaction(now, t.kind, error);
                }
            }
        }
        if self.state != State::Allocated {
            return;
        }
        if self.expires.is_some_and(|e| now >= e) {
            self.fail(TurnError::Timeout);
            return;
        }
        if self.refresh_at.is_some_and(|r| now >= r) {
            self.refresh_at = None;
            let lifetime = self.requested_lifetime();
            self.start(now, TxKind::Refresh { lifetime }, 0);
        }
        let due: Vec<IpAddr> = self
            .permissions
            .iter_mut()
            .filter(|p| p.refresh_at.is_some_and(|r| now >= r))
            .map(|p| {
                p.refresh_at = None;
                p.ip
            })
            .collect();
        for ip in due {
            self.start(now, TxKind::Permission(ip), 0);
        }
        let due: Vec<(u16, SocketAddr)> = self
            .channels
            .iter_mut()
            .filter(|c| c.refresh_at.is_some_and(|r| now >= r))
            .map(|c| {
                c.refresh_at = None;
                (c.number, c.peer)
            })
            .collect();
        for (channel, peer) in due {
            self.start(now, TxKind::ChannelBind { channel, peer }, 0);
        }
    }

    // ------------------------------------------------------------------ API

    /// Ask the server to let `peer_ip`'s datagrams through (and ours to it), refreshed
    /// every 4 minutes until [`TurnClient::close`]. Idempotent.
    pub fn create_permission(
        &mut self,
        now: Instant,
        peer_ip: IpAddr,
    ) -> Result<(), PermissionError> {
        self.tick(now);
        self.check_peer(peer_ip)?;
        if self.permissions.iter().any(|p| p.ip == peer_ip) {
            return Ok(());
        }
        if self.permissions.len() >= MAX_PERMISSIONS {
            return Err(PermissionError::TooMany);
        }
        self.permissions.push(Permission {
            ip: peer_ip,
            installed: false,
            refresh_at: None,
        });
        self.start(now, TxKind::Permission(peer_ip), 0);
        Ok(())
    }

    /// Bind a channel to `peer` (which also installs its permission), refreshed every 5
    /// minutes. Returns its number (the same one if already bound or pending). Data to
    /// `peer` uses ChannelData once [`TurnEvent::ChannelBound`] arrives.
    pub fn bind_channel(&mut self, now: Instant, peer: SocketAddr) -> Result<u16, PermissionError> {
        self.tick(now);
        self.check_peer(peer.ip())?;
        if let Some(c) = self.channels.iter().find(|c| c.peer == peer) {
            return Ok(c.number);
        }
        if self.channels.len() >= MAX_CHANNELS || self.next_channel > CHANNEL_MAX {
            return Err(PermissionError::TooMany);
        }
        if !self.permissions.iter().any(|p| p.ip == peer.ip()) {
            if self.permissions.len() >= MAX_PERMISSIONS {
                return Err(PermissionError::TooMany);
            }
            self.create_permission(now, peer.ip())?;
        }
        let channel = self.next_channel;
        self.next_channel += 1;
        self.channels.push(Channel {
            number: channel,
            peer,
            bound: false,
            refresh_at: None,
        });
        self.start(now, TxKind::ChannelBind { channel, peer }, 0);
        Ok(channel)
    }

    /// Send `data` to `peer` through the relay: a Send indication, or ChannelData once
    /// the peer's channel is bound. Queued for [`TurnClient::poll_transmit`].
    pub fn send_to(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        data: &[u8],
    ) -> Result<(), TurnSendError> {
        if self.transmits.len() >= MAX_QUEUE {
            self.stats.queue_overflows += 1;
            return Err(TurnSendError::QueueFull);
        }
        let mut buf = vec![0u8; data.len() + SEND_OVERHEAD + 24];
        let (_, n) = self.wrap_to(now, peer, data, &mut buf)?;
        buf.truncate(n);
        self.transmits.push_back(buf);
        Ok(())
    }

    /// Like [`TurnClient::send_to`] but writes the message into the caller's buffer at
    /// once (no allocation, no queue): send `out[..len]` to the returned server address.
    pub fn wrap_to(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        data: &[u8],
        out: &mut [u8],
    ) -> Result<(SocketAddr, usize), TurnSendError> {
        self.tick(now);
        if self.state != State::Allocated {
            return Err(TurnSendError::NotAllocated);
        }
        if let Some(channel) = self.channel_of(peer) {
            let padded = self.transport != Protocol::Udp;
            let n = ChannelData { channel, data }
                .write(padded, out)
                .map_err(|e| match e {
                    crate::turn::wire::ChannelDataError::TooLong => TurnSendError::TooLarge,
                    _ => TurnSendError::BufferTooSmall,
                })?;
            return Ok((self.server, n));
        }
        if !self.permissions.iter().any(|p| p.ip == peer.ip()) {
            return Err(TurnSendError::NoPermission);
        }
        if data.len() + SEND_OVERHEAD > usize::from(u16::MAX) {
            return Err(TurnSendError::TooLarge);
        }
        // The header and XOR-PEER-ADDRESS through the STUN encoder, then DATA appended
        // in place, so the payload is copied once and nothing is allocated.
        let id = TransactionId::random(&mut self.rng);
        let head = Message::new(Class::Indication, Method::SEND, id)
            .with(Attribute::XorPeerAddress(peer))
            .encode(None, false, out)
            .map_err(|_| TurnSendError::BufferTooSmall)?;
        let padded = data.len().div_ceil(4) * 4;
        let total = head + 4 + padded;
        let body = u16::try_from(total - stun::HEADER_LEN).map_err(|_| TurnSendError::TooLarge)?;
        let len = u16::try_from(data.len()).map_err(|_| TurnSendError::TooLarge)?;
        let tail = out
            .get_mut(head..total)
            .ok_or(TurnSendError::BufferTooSmall)?;
        tail[..2].copy_from_slice(&DATA_ATTRIBUTE.to_be_bytes());
        tail[2..4].copy_from_slice(&len.to_be_bytes());
        tail[4..4 + data.len()].copy_from_slice(data);
        tail[4 + data.len()..].fill(0);
        out[2..4].copy_from_slice(&body.to_be_bytes());
        Ok((self.server, total))
    }

    /// Release the allocation (Refresh with LIFETIME 0). [`TurnEvent::Deallocated`]
    /// follows once the server answers or the request times out. Before the allocation
    /// exists this just stops the client, with no event; after a failure it does nothing.
    pub fn close(&mut self, now: Instant) {
        self.tick(now);
        match self.state {
            State::Allocated => {
                self.transactions.clear();
                self.permissions.clear();
                self.channels.clear();
                self.refresh_at = None;
                self.state = State::Deallocating;
                self.start(now, TxKind::Refresh { lifetime: Some(0) }, 0);
            }
            State::Allocating => {
                self.transactions.clear();
                self.state = State::Closed;
            }
            State::Deallocating | State::Failed | State::Closed => {}
        }
    }

    // ------------------------------------------------------------------ outputs

    /// The next datagram for the server, written into `buf`: `(server, len)`. A queued
    /// datagram larger than `buf` is dropped and counted.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<(SocketAddr, usize)> {
        self.tick(now);
        while let Some(msg) = self.transmits.pop_front() {
            if let Some(dst) = buf.get_mut(..msg.len()) {
                dst.copy_from_slice(&msg);
                return Some((self.server, msg.len()));
            }
            self.stats.queue_overflows += 1;
        }
        None
    }

    /// The next deadline: call [`TurnClient::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tx = self.transactions.iter().filter_map(|t| t.timer.deadline());
        let mut deadlines: Vec<Instant> = tx.collect();
        if self.state == State::Allocated {
            deadlines.extend(self.expires);
            deadlines.extend(self.refresh_at);
            deadlines.extend(self.permissions.iter().filter_map(|p| p.refresh_at));
            deadlines.extend(self.channels.iter().filter_map(|c| c.refresh_at));
        }
        deadlines.into_iter().min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------------ internals

    fn tick(&mut self, now: Instant) {
        debug_assert!(now >= self.last_now, "time went backwards");
        self.last_now = self.last_now.max(now);
    }

    fn drop_input(&mut self) -> TurnInput<'static> {
        self.stats.dropped += 1;
        TurnInput::Consumed
    }

    fn check_peer(&self, ip: IpAddr) -> Result<(), PermissionError> {
        let Some(relayed) = self.relayed_address() else {
            return Err(PermissionError::NotAllocated);
        };
        if relayed.is_ipv4() != ip.is_ipv4() {
            return Err(PermissionError::FamilyMismatch);
        }
        Ok(())
    }

    fn requested_lifetime(&self) -> Option<u32> {
        self.config
            .lifetime
            .map(|l| u32::try_from(l.as_secs()).unwrap_or(u32::MAX))
    }

    fn push_event(&mut self, event: TurnEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.stats.queue_overflows += 1;
            return;
        }
        self.events.push_back(event);
    }

    fn queue(&mut self, msg: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUE {
            self.stats.queue_overflows += 1;
            return;
        }
        self.transmits.push_back(msg);
    }

    fn handle_channel_data<'a>(&mut self, data: &'a [u8]) -> TurnInput<'a> {
        let Ok(msg) = ChannelData::parse(data) else {
            return self.drop_input();
        };
        match self.channels.iter().find(|c| c.number == msg.channel) {
            Some(c) if self.state == State::Allocated => TurnInput::PeerData {
                peer: c.peer,
                data: msg.data,
            },
            _ => self.drop_input(),
        }
    }

    fn handle_data_indication<'a>(&mut self, data: &'a [u8]) -> TurnInput<'a> {
        match DataIndication::parse(data) {
            Some(d) if self.state == State::Allocated => TurnInput::PeerData {
                peer: d.peer,
                data: d.data,
            },
            _ => self.drop_input(),
        }
    }
}
