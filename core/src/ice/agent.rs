//! The ICE agent: one component over one bundled stream (rtcp-mux), full ICE (RFC 8445)
//! or ICE-lite, trickle (RFC 8838) and consent freshness (RFC 7675).
//!
//! ```text
//!  new ──remote creds + pairs──> checking ──pair selected──> connected
//!                                   │                          │   ▲
//!          all pairs failed and     │        no consent 5 s    ▼   │ consent again
//!          end-of-candidates (or    │                     disconnected
//!          nothing left for 10 s)   ▼                          │ no consent 30 s
//!                                 failed <─────────────────────┘
//! ```
//! Checks go out one per `check_interval` (Ta), triggered checks first, then the
//! highest-priority waiting pair. The controlling agent nominates the best succeeded pair
//! with USE-CANDIDATE (regular nomination, after a short wait for better pairs); the
//! controlled agent selects what it is told. Storage is plain vectors scanned in order, so
//! behaviour is deterministic for a seed; every collection is bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::IceConfig;
use crate::ice::candidate::{
    candidate_priority, foundation_for, Candidate, CandidateAddress, CandidateKind,
};
use crate::ice::validated::{ValidatedAddresses, Validation};
use crate::rng::Rng;
use crate::stun::{
    self, Attribute, Class, Message, Method, PreparedKey, RetransmitTimer, TimerAction,
    TransactionId,
};
use crate::transmit::{Protocol, Transmit};

/// Most local candidates.
const MAX_LOCAL: usize = 32;
/// Most remote candidates per ICE generation.
const MAX_REMOTE: usize = 64;
/// Most candidate pairs in the check list.
const MAX_PAIRS: usize = 128;
/// Most queued transmits and events.
const MAX_QUEUE: usize = 512;
/// Most outstanding transactions.
const MAX_TRANSACTIONS: usize = 64;
/// How long the controlling agent waits after the first success for a better pair.
const NOMINATION_WAIT: Duration = Duration::from_millis(100);
/// Nomination attempts before the controlling agent gives up on a pair.
const MAX_NOMINATIONS: u32 = 5;
/// Most address pairs remembered as validated (the oldest are forgotten first, the
/// selected pair never).
pub const MAX_VALIDATED: usize = 64;
/// Wait for srflx responses before declaring gathering complete.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// `RTCIceConnectionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceConnectionState {
    /// Nothing started.
    New,
    /// Checks in progress.
    Checking,
    /// A pair is selected.
    Connected,
    /// Checks are done and a pair is selected (not reported by this agent).
    Completed,
    /// Consent is stale; it may come back.
    Disconnected,
    /// No pair works, or consent was lost.
    Failed,
    /// Closed.
    Closed,
}

/// `RTCIceGatheringState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceGatheringState {
    /// Not started.
    New,
    /// Gathering.
    Gathering,
    /// Every candidate announced.
    Complete,
}

/// ICE username fragment and password. `Debug` shows the ufrag only.
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// ufrag.
    pub ufrag: String,
    /// Password.
    pub pwd: String,
}

impl std::fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

/// The pair media flows on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SelectedPair {
    /// Our socket address.
    pub local: SocketAddr,
    /// The remote address.
    pub remote: SocketAddr,
    /// Transport.
    pub protocol: Protocol,
    /// The type of our candidate: `Relay` when media goes through a TURN server (then
    /// `local` is the relayed address on the server).
    pub local_kind: CandidateKind,
}

/// What the agent tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceEvent {
    /// A local candidate to signal.
    LocalCandidate(Candidate),
    /// Gathering state changed.
    GatheringStateChange(IceGatheringState),
    /// Connection state changed.
    ConnectionStateChange(IceConnectionState),
    /// A (new) pair was selected.
    SelectedPairChange(SelectedPair),
    /// A remote mDNS candidate the owner must resolve and add again with an IP address.
    MdnsCandidate(Candidate),
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IceStats {
    /// Connectivity checks sent (first transmissions).
    pub checks_sent: u64,
    /// Retransmissions of checks and gathering requests.
    pub retransmits: u64,
    /// Binding requests received and answered.
    pub requests_answered: u64,
    /// Responses received that matched a transaction.
    pub responses_received: u64,
    /// Messages dropped: FINGERPRINT missing or wrong.
    pub dropped_bad_fingerprint: u64,
    /// Messages dropped: MESSAGE-INTEGRITY missing or wrong.
    pub dropped_bad_integrity: u64,
    /// Requests dropped: USERNAME not ours.
    pub dropped_unknown_ufrag: u64,
    /// Messages dropped: not parseable or of no known transaction.
    pub dropped_other: u64,
    /// Role conflicts resolved.
    pub role_conflicts: u64,
    /// Remote candidates dropped (over the limit, wrong transport or family).
    pub remote_candidates_dropped: u64,
    /// Transmits or events dropped because a queue was full.
    pub queue_overflows: u64,
    /// Validated address pairs forgotten to keep the set within [`MAX_VALIDATED`].
    pub validated_evicted: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct LocalCandidate {
    candidate: Candidate,
    /// The socket it sends from.
    base: SocketAddr,
    announced: bool,
}

#[derive(Debug, Clone)]
struct RemoteCandidate {
    addr: SocketAddr,
    priority: u32,
}

#[derive(Debug, Clone)]
struct Pair {
    local: SocketAddr,
    remote: SocketAddr,
    local_priority: u32,
    remote_priority: u32,
    priority: u64,
    state: PairState,
    nominated: bool,
    /// USE-CANDIDATE arrived while our own check was still running.
    nominate_on_success: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxKind {
    Check { use_candidate: bool },
    Consent,
    Srflx { server: SocketAddr },
}

#[derive(Debug, Clone)]
struct Transaction {
    id: TransactionId,
    kind: TxKind,
    local: SocketAddr,
    remote: SocketAddr,
    timer: RetransmitTimer,
    request: Vec<u8>,
}

/// The ICE agent.
#[derive(Debug)]
pub struct IceAgent {
    config: IceConfig,
    rng: Rng,
    lite: bool,
    remote_lite: bool,
    controlling: bool,
    tie_breaker: u64,
    local_creds: IceCredentials,
    remote_creds: Option<IceCredentials>,
    /// The two passwords as MESSAGE-INTEGRITY keys, prepared once per credential change
    /// rather than for every check, response and consent check (kept with the
    /// credentials they come from wherever those change).
    local_key: PreparedKey,
    remote_key: Option<PreparedKey>,
    locals: Vec<LocalCandidate>,
    remotes: Vec<RemoteCandidate>,
    pairs: Vec<Pair>,
    stun_servers: Vec<SocketAddr>,
    transactions: Vec<Transaction>,
    triggered: VecDeque<usize>,
    transmits: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    events: VecDeque<IceEvent>,
    gathering: IceGatheringState,
    gather_deadline: Option<Instant>,
    state: IceConnectionState,
    selected: Option<usize>,
    next_check: Option<Instant>,
    nominate_at: Option<Instant>,
    next_consent: Option<Instant>,
    last_consent: Option<Instant>,
    exhausted_since: Option<Instant>,
    remote_end_of_candidates: bool,
    nomination_attempts: u32,
    stats: IceStats,
    closed: bool,
    /// Relay allocations under way: gathering is not complete until each has given a
    /// candidate or failed (the TURN client bounds how long that takes).
    relays_pending: usize,
    /// Address pairs on which the remote proved it knows the password. Kept across ICE
    /// restarts: the proof came from the same signaled peer.
    validated: ValidatedAddresses,
}

impl IceAgent {
    /// A new agent: 8-character ufrag and 24-character password (144 bits) from `rng`.
    pub fn new(config: &IceConfig, mut rng: Rng, lite: bool) -> Self {
        let local_creds = IceCredentials {
            ufrag: rng.ice_chars(8),
            pwd: rng.ice_chars(24),
        };
        let tie_breaker = rng.next_u64();
        let local_key = PreparedKey::new(local_creds.pwd.as_bytes());
        IceAgent {
            config: config.clone(),
            rng,
            lite,
            remote_lite: false,
            controlling: false,
            tie_breaker,
            local_creds,
            remote_creds: None,
            local_key,
            remote_key: None,
            locals: Vec::new(),
            remotes: Vec::new(),
            pairs: Vec::new(),
            stun_servers: Vec::new(),
            transactions: Vec::new(),
            triggered: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            gathering: IceGatheringState::New,
            gather_deadline: None,
            state: IceConnectionState::New,
            selected: None,
            next_check: None,
            nominate_at: None,
            next_consent: None,
            last_consent: None,
            exhausted_since: None,
            remote_end_of_candidates: false,
            nomination_attempts: 0,
            stats: IceStats::default(),
            closed: false,
            relays_pending: 0,
            validated: ValidatedAddresses::new(MAX_VALIDATED),
        }
    }

    // ------------------------------------------------------------------ getters

    /// Our credentials.
    pub fn local_credentials(&self) -> &IceCredentials {
        &self.local_creds
    }

    /// The remote credentials, once known.
    pub fn remote_credentials(&self) -> Option<&IceCredentials> {
        self.remote_creds.as_ref()
    }

    /// Whether we are the controlling agent.
    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    /// The local and remote address of the selected pair (UDP), without the candidate
    /// kind that `selected_pair` looks up: the per-packet send path needs only these.
    pub fn selected_addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        let p = self.pairs.get(self.selected?)?;
        Some((p.local, p.remote))
    }

    /// Whether the remote proved on `(local, remote)` that it knows the ICE password: a
    /// success response with valid MESSAGE-INTEGRITY to our check on that pair, or a
    /// request with valid MESSAGE-INTEGRITY from `remote` to `local` that we answered.
    /// The selected pair is always validated. O(1): asked for every DTLS datagram.
    pub fn is_validated(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.selected_addresses() == Some((local, remote)) || self.validated.contains(local, remote)
    }

    /// How the remote proved `(local, remote)`, if it did: see [`Validation`].
    pub fn validation(&self, local: SocketAddr, remote: SocketAddr) -> Option<Validation> {
        self.validated.get(local, remote)
    }

    /// How many address pairs are remembered as validated (at most [`MAX_VALIDATED`]).
    pub fn validated_count(&self) -> usize {
        self.validated.len()
    }

    fn mark_validated(&mut self, local: SocketAddr, remote: SocketAddr, proof: Validation) {
        let keep = self.selected_addresses();
        self.validated.insert((local, remote), proof, keep);
        self.stats.validated_evicted = self.validated.evicted();
    }

    /// The selected pair.
    pub fn selected_pair(&self) -> Option<SelectedPair> {
        let p = self.pairs.get(self.selected?)?;
        let local_kind = self
            .locals
            .iter()
            .find(|l| l.base == p.local && l.candidate.kind != CandidateKind::ServerReflexive)
            .map_or(CandidateKind::Host, |l| l.candidate.kind);
        Some(SelectedPair {
            local: p.local,
            remote: p.remote,
            protocol: Protocol::Udp,
            local_kind,
        })
    }

    /// Connection state.
    pub fn connection_state(&self) -> IceConnectionState {
        self.state
    }

    /// Gathering state.
    pub fn gathering_state(&self) -> IceGatheringState {
        self.gathering
    }

    /// Counters.
    pub fn stats(&self) -> IceStats {
        self.stats.clone()
    }

    // ------------------------------------------------------------------ configuration

    /// Set the role. ICE-lite agents are always controlled.
    pub fn set_controlling(&mut self, controlling: bool) {
        let controlling = controlling && !self.lite;
        if self.controlling != controlling {
            self.controlling = controlling;
            self.recompute_priorities();
        }
    }

    /// The remote agent runs ICE-lite (so we must be controlling, RFC 8445 6.1.1).
    pub fn set_remote_lite(&mut self, lite: bool) {
        self.remote_lite = lite;
        if lite && !self.lite {
            self.set_controlling(true);
        }
    }

    /// Set the remote credentials. The same ones again change nothing; different ones after
    /// a first set mean the remote restarted ICE: its candidates and our pairs are dropped.
    pub fn set_remote_credentials(&mut self, now: Instant, ufrag: &str, pwd: &str) {
        let new = IceCredentials {
            ufrag: ufrag.to_string(),
            pwd: pwd.to_string(),
        };
        if self.remote_creds.as_ref() == Some(&new) {
            return;
        }
        if self.remote_creds.is_some() {
            self.clear_remote();
        }
        self.remote_key = Some(PreparedKey::new(new.pwd.as_bytes()));
        self.remote_creds = Some(new);
        self.schedule_checks(now);
        self.update_state(now);
    }

    fn clear_remote(&mut self) {
        self.remotes.clear();
        self.pairs.clear();
        self.triggered.clear();
        self.nomination_attempts = 0;
        self.transactions
            .retain(|t| matches!(t.kind, TxKind::Srflx { .. }));
        self.selected = None;
        self.nominate_at = None;
        self.next_consent = None;
        self.last_consent = None;
        self.exhausted_since = None;
        self.remote_end_of_candidates = false;
    }

    /// A local socket: becomes a host candidate (announced once gathering has started).
    pub fn add_local_address(&mut self, now: Instant, addr: SocketAddr, protocol: Protocol) {
        if self.closed
            || self.locals.len() >= MAX_LOCAL
            || self
                .locals
                .iter()
                .any(|l| l.base == addr && l.candidate.kind == CandidateKind::Host)
        {
            return;
        }
        // Earlier sockets get higher local preference; IPv6 slightly above IPv4 as browsers do.
        let family_bonus: u16 = if addr.is_ipv6() { 1024 } else { 0 };
        let pref = 60_000u16
            .saturating_sub(
                u16::try_from(self.locals.len())
                    .unwrap_or(u16::MAX)
                    .saturating_mul(64),
            )
            .saturating_add(family_bonus);
        let candidate = Candidate::host(addr, protocol, pref);
        self.locals.push(LocalCandidate {
            candidate,
            base: addr,
            announced: false,
        });
        if protocol == Protocol::Udp {
            let index = self.locals.len() - 1;
            for r in 0..self.remotes.len() {
                self.add_pair(index, r);
            }
        }
        if self.gathering != IceGatheringState::New {
            self.set_gathering(IceGatheringState::Gathering);
            self.announce_locals();
            for server in self.stun_servers.clone() {
                self.start_srflx(now, addr, server);
            }
            self.check_gathering_complete(now);
        }
        self.schedule_checks(now);
        self.update_state(now);
    }

    /// A STUN server (already resolved) to learn server-reflexive candidates from.
    pub fn add_stun_server(&mut self, now: Instant, server: SocketAddr) {
        if self.closed || self.stun_servers.contains(&server) || self.stun_servers.len() >= 8 {
            return;
        }
        self.stun_servers.push(server);
        if self.gathering != IceGatheringState::New {
            let bases: Vec<SocketAddr> = self
                .locals
                .iter()
                .filter(|l| {
                    l.candidate.kind == CandidateKind::Host && l.candidate.protocol == Protocol::Udp
                })
                .map(|l| l.base)
                .collect();
            if !bases.is_empty() {
                self.set_gathering(IceGatheringState::Gathering);
            }
            for base in bases {
                self.start_srflx(now, base, server);
            }
        }
    }

    /// A relay allocation has started: gathering waits for it to give a candidate
    /// ([`IceAgent::add_relay_candidate`]) or fail ([`IceAgent::relay_failed`]).
    pub fn relay_started(&mut self) {
        if !self.closed {
            self.relays_pending += 1;
        }
    }

    /// A relay allocation failed: gathering stops waiting for it.
    pub fn relay_failed(&mut self, now: Instant) {
        self.relays_pending = self.relays_pending.saturating_sub(1);
        self.check_gathering_complete(now);
    }

    /// A TURN allocation gave `relayed` (the address on the server, which is also the
    /// candidate's base: checks from it go through the server) and `mapped` (our address
    /// as the server saw it, the candidate's related address). `server` makes the
    /// foundation. Announced once gathering has started, paired like a host candidate.
    pub fn add_relay_candidate(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        mapped: Option<SocketAddr>,
        server: SocketAddr,
    ) {
        self.relays_pending = self.relays_pending.saturating_sub(1);
        if self.closed
            || self.locals.len() >= MAX_LOCAL
            || self.locals.iter().any(|l| l.base == relayed)
        {
            self.check_gathering_complete(now);
            return;
        }
        let kind = CandidateKind::Relay;
        let relays = self
            .locals
            .iter()
            .filter(|l| l.candidate.kind == kind)
            .count();
        // Like host candidates: earlier allocations first.
        let pref =
            60_000u16.saturating_sub(u16::try_from(relays).unwrap_or(u16::MAX).saturating_mul(64));
        let candidate = Candidate {
            foundation: foundation_for(kind, relayed.ip(), Some(server), Protocol::Udp),
            component: 1,
            protocol: Protocol::Udp,
            priority: candidate_priority(kind, pref, 1),
            address: CandidateAddress::Ip(relayed),
            kind,
            related_address: mapped,
            tcp_type: None,
            extensions: Vec::new(),
        };
        self.locals.push(LocalCandidate {
            candidate,
            base: relayed,
            announced: false,
        });
        let index = self.locals.len() - 1;
        for r in 0..self.remotes.len() {
            self.add_pair(index, r);
        }
        if self.gathering != IceGatheringState::New {
            self.announce_locals();
        }
        self.check_gathering_complete(now);
        self.schedule_checks(now);
        self.update_state(now);
    }

    /// The remote candidates' addresses (for TURN permissions), and how many there are
    /// in this generation: the list only grows until an ICE restart clears it.
    pub fn remote_addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.remotes.iter().map(|r| r.addr)
    }

    /// How many remote candidates this generation has.
    pub fn remote_count(&self) -> usize {
        self.remotes.len()
    }

    /// Start gathering: announce host candidates and ask the STUN servers for srflx ones.
    pub fn start_gathering(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.set_gathering(IceGatheringState::Gathering);
        self.announce_locals();
        let bases: Vec<SocketAddr> = self
            .locals
            .iter()
            .filter(|l| {
                l.candidate.kind == CandidateKind::Host && l.candidate.protocol == Protocol::Udp
            })
            .map(|l| l.base)
            .collect();
        for base in bases {
            for server in self.stun_servers.clone() {
                self.start_srflx(now, base, server);
            }
        }
        self.gather_deadline = Some(now + GATHER_TIMEOUT);
        self.check_gathering_complete(now);
    }

    fn announce_locals(&mut self) {
        let mut out = Vec::new();
        for l in &mut self.locals {
            if !l.announced {
                l.announced = true;
                out.push(l.candidate.clone());
            }
        }
        for c in out {
            self.push_event(IceEvent::LocalCandidate(c));
        }
    }

    fn set_gathering(&mut self, state: IceGatheringState) {
        if self.gathering != state {
            self.gathering = state;
            self.push_event(IceEvent::GatheringStateChange(state));
        }
    }

    fn check_gathering_complete(&mut self, now: Instant) {
        let pending = self
            .transactions
            .iter()
            .any(|t| matches!(t.kind, TxKind::Srflx { .. }));
        let timed_out = self.gather_deadline.is_some_and(|d| now >= d);
        if self.gathering != IceGatheringState::Gathering {
            return;
        }
        if timed_out {
            // Past the deadline nothing is waited for but relays, whose clients bound it.
            self.gather_deadline = None;
            self.transactions
                .retain(|t| !matches!(t.kind, TxKind::Srflx { .. }));
        }
        if (!pending || timed_out) && self.relays_pending == 0 {
            self.gather_deadline = None;
            self.set_gathering(IceGatheringState::Complete);
        }
    }

    fn start_srflx(&mut self, now: Instant, base: SocketAddr, server: SocketAddr) {
        if base.is_ipv4() != server.is_ipv4() || self.transactions.len() >= MAX_TRANSACTIONS {
            return;
        }
        let id = TransactionId::random(&mut self.rng);
        let request = Message::new(Class::Request, Method::BINDING, id).encode_to_vec(None, true);
        self.send(base, server, request.clone());
        self.transactions.push(Transaction {
            id,
            kind: TxKind::Srflx { server },
            local: base,
            remote: server,
            timer: RetransmitTimer::new(
                now,
                self.config.initial_rto,
                self.config.max_rto,
                self.config.max_retransmits.min(4),
            ),
            request,
        });
    }

    /// A remote candidate (trickled or from the description). mDNS ones are handed back as
    /// [`IceEvent::MdnsCandidate`] for the owner to resolve.
    pub fn add_remote_candidate(&mut self, now: Instant, candidate: Candidate) {
        if self.closed {
            return;
        }
        let addr = match &candidate.address {
            CandidateAddress::Mdns { .. } => {
                self.push_event(IceEvent::MdnsCandidate(candidate));
                return;
            }
            CandidateAddress::Ip(a) => *a,
        };
        if candidate.protocol != Protocol::Udp || candidate.component != 1 {
            self.stats.remote_candidates_dropped += 1;
            return;
        }
        self.add_remote(now, addr, candidate.priority);
        self.update_state(now);
    }

    fn add_remote(&mut self, now: Instant, addr: SocketAddr, priority: u32) -> Option<usize> {
        if let Some(i) = self.remotes.iter().position(|r| r.addr == addr) {
            return Some(i);
        }
        if self.remotes.len() >= MAX_REMOTE {
            self.stats.remote_candidates_dropped += 1;
            return None;
        }
        self.remotes.push(RemoteCandidate { addr, priority });
        let r = self.remotes.len() - 1;
        for l in 0..self.locals.len() {
            self.add_pair(l, r);
        }
        self.exhausted_since = None;
        self.schedule_checks(now);
        Some(r)
    }

    /// The remote will send no more candidates in this generation.
    pub fn end_of_remote_candidates(&mut self, now: Instant) {
        self.remote_end_of_candidates = true;
        self.update_state(now);
    }

    /// Restart ICE with fresh credentials (random ufrag, secret password).
    pub fn restart(&mut self, now: Instant) {
        let ufrag = self.rng.ice_chars(8);
        let pwd = self.rng.ice_chars(24);
        let was_gathering = self.gathering != IceGatheringState::New;
        self.restart_with_credentials(now, &ufrag, &pwd);
        if was_gathering {
            self.start_gathering(now);
        }
    }

    /// Restart ICE with the given local credentials: remote state is dropped and checks
    /// resume once new remote credentials come. Candidates of the new generation are
    /// announced by the next `start_gathering` (the PeerConnection calls it when the
    /// description carrying the new credentials is set), so none leaks out before the
    /// peer can know the new ufrag.
    pub fn restart_with_credentials(&mut self, _now: Instant, ufrag: &str, pwd: &str) {
        if self.closed {
            return;
        }
        self.local_creds = IceCredentials {
            ufrag: ufrag.to_string(),
            pwd: pwd.to_string(),
        };
        self.local_key = PreparedKey::new(pwd.as_bytes());
        self.clear_remote();
        self.remote_creds = None;
        self.remote_key = None;
        for l in &mut self.locals {
            l.announced = false;
        }
        // Host and relayed candidates stay (the allocation outlives the restart);
        // server-reflexive ones are learned again.
        self.locals
            .retain(|l| matches!(l.candidate.kind, CandidateKind::Host | CandidateKind::Relay));
        self.gathering = IceGatheringState::New;
        self.gather_deadline = None;
        self.set_state(IceConnectionState::Checking);
    }

    /// Stop everything.
    pub fn close(&mut self) {
        self.closed = true;
        self.transactions.clear();
        self.transmits.clear();
        self.triggered.clear();
        self.state = IceConnectionState::Closed;
    }

    // ------------------------------------------------------------------ pairs

    fn pair_priority(controlling: bool, local: u32, remote: u32) -> u64 {
        let (g, d) = if controlling {
            (local, remote)
        } else {
            (remote, local)
        };
        let (g, d) = (u64::from(g), u64::from(d));
        (1u64 << 32) * g.min(d) + 2 * g.max(d) + u64::from(g > d)
    }

    fn recompute_priorities(&mut self) {
        let controlling = self.controlling;
        for p in &mut self.pairs {
            p.priority = Self::pair_priority(controlling, p.local_priority, p.remote_priority);
        }
    }

    fn add_pair(&mut self, l: usize, r: usize) {
        let (Some(local), Some(remote)) = (self.locals.get(l), self.remotes.get(r)) else {
            return;
        };
        if !matches!(
            local.candidate.kind,
            CandidateKind::Host | CandidateKind::Relay
        ) || local.candidate.protocol != Protocol::Udp
            || local.base.is_ipv4() != remote.addr.is_ipv4()
            || self
                .pairs
                .iter()
                .any(|p| p.local == local.base && p.remote == remote.addr)
        {
            return;
        }
        if self.pairs.len() >= MAX_PAIRS {
            return;
        }
        let pair = Pair {
            local: local.base,
            remote: remote.addr,
            local_priority: local.candidate.priority,
            remote_priority: remote.priority,
            priority: Self::pair_priority(
                self.controlling,
                local.candidate.priority,
                remote.priority,
            ),
            state: PairState::Waiting,
            nominated: false,
            nominate_on_success: false,
        };
        self.pairs.push(pair);
    }

    fn pair_index(&self, local: SocketAddr, remote: SocketAddr) -> Option<usize> {
        self.pairs
            .iter()
            .position(|p| p.local == local && p.remote == remote)
    }

    // ------------------------------------------------------------------ checks

    fn schedule_checks(&mut self, now: Instant) {
        if self.lite || self.remote_creds.is_none() || self.closed {
            return;
        }
        let work =
            !self.triggered.is_empty() || self.pairs.iter().any(|p| p.state == PairState::Waiting);
        if work && self.next_check.is_none() {
            self.next_check = Some(now);
        }
    }

    fn build_check(
        &mut self,
        local: SocketAddr,
        use_candidate: bool,
        id: TransactionId,
    ) -> Option<Vec<u8>> {
        let creds = self.remote_creds.as_ref()?;
        let prflx_priority = self
            .locals
            .iter()
            .find(|l| l.base == local)
            .map(|l| l.candidate.priority & 0x00FF_FFFF)
            .unwrap_or(0)
            | (CandidateKind::PeerReflexive.type_preference() << 24);
        let mut m = Message::new(Class::Request, Method::BINDING, id)
            .with(Attribute::Username(format!(
                "{}:{}",
                creds.ufrag, self.local_creds.ufrag
            )))
            .with(Attribute::Priority(prflx_priority))
            .with(if self.controlling {
                Attribute::IceControlling(self.tie_breaker)
            } else {
                Attribute::IceControlled(self.tie_breaker)
            });
        if use_candidate {
            m = m.with(Attribute::UseCandidate);
        }
        let key = self.remote_key.as_ref()?;
        Some(m.encode_to_vec_prepared(key, true))
    }

    fn send_check(&mut self, now: Instant, pair: usize, kind: TxKind) {
        let Some(p) = self.pairs.get(pair) else {
            return;
        };
        let (local, remote) = (p.local, p.remote);
        if self.transactions.len() >= MAX_TRANSACTIONS {
            self.stats.queue_overflows += 1;
            return;
        }
        let id = TransactionId::random(&mut self.rng);
        let use_candidate = matches!(
            kind,
            TxKind::Check {
                use_candidate: true
            }
        );
        let Some(request) = self.build_check(local, use_candidate, id) else {
            return;
        };
        if let (Some(p), TxKind::Check { .. }) = (self.pairs.get_mut(pair), kind) {
            if p.state != PairState::Succeeded {
                p.state = PairState::InProgress;
            }
        }
        self.stats.checks_sent += 1;
        self.send(local, remote, request.clone());
        // Consent checks are retransmitted too (a few times, within the consent interval),
        // so one lost request or response does not read as lost consent.
        let requests = if kind == TxKind::Consent {
            self.config.max_retransmits.min(4)
        } else {
            self.config.max_retransmits
        };
        self.transactions.push(Transaction {
            id,
            kind,
            local,
            remote,
            timer: RetransmitTimer::new(
                now,
                self.config.initial_rto,
                self.config.max_rto,
                requests,
            ),
            request,
        });
    }

    /// Send the next paced check: triggered ones first, then the best waiting pair.
    fn run_pacer(&mut self, now: Instant) {
        let Some(at) = self.next_check else { return };
        if now < at {
            return;
        }
        self.next_check = None;
        if self.lite || self.remote_creds.is_none() {
            return;
        }
        // A triggered check runs even while an earlier check of the pair is outstanding:
        // it is a fresh transaction, so one lost response does not stall the pair.
        let next = loop {
            match self.triggered.pop_front() {
                Some(i)
                    if self
                        .pairs
                        .get(i)
                        .is_some_and(|p| p.state != PairState::Succeeded || p.nominated) =>
                {
                    break Some((i, true))
                }
                Some(_) => continue,
                None => break None,
            }
        };
        let next = next.or_else(|| {
            self.pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.state == PairState::Waiting)
                .max_by_key(|(_, p)| p.priority)
                .map(|(i, _)| (i, false))
        });
        if let Some((i, triggered)) = next {
            let nominate =
                triggered && self.controlling && self.pairs.get(i).is_some_and(|p| p.nominated);
            self.send_check(
                now,
                i,
                TxKind::Check {
                    use_candidate: nominate,
                },
            );
            self.next_check = Some(now + self.config.check_interval);
        }
    }

    fn trigger(&mut self, now: Instant, pair: usize) {
        if self.lite {
            return;
        }
        if !self.triggered.contains(&pair) && self.triggered.len() < MAX_PAIRS {
            self.triggered.push_back(pair);
        }
        self.schedule_checks(now);
    }

    // ------------------------------------------------------------------ input

    /// A STUN message arrived. Returns true when it was ICE's (consumed, answered or
    /// dropped and counted), false when it belongs to someone else (e.g. TURN).
    pub fn handle_stun(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        protocol: Protocol,
        raw: &[u8],
    ) -> bool {
        if self.closed {
            return false;
        }
        let Some((class, method)) = stun::peek_class_method(raw) else {
            self.stats.dropped_other += 1;
            return true;
        };
        if method != Method::BINDING {
            return false;
        }
        match class {
            Class::Request => self.handle_request(now, local, remote, protocol, raw),
            Class::Success | Class::Error => self.handle_response(now, local, remote, raw),
            Class::Indication => {} // keepalive indications need no answer
        }
        self.schedule_nomination(now);
        self.update_state(now);
        true
    }

    fn handle_request(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        protocol: Protocol,
        raw: &[u8],
    ) {
        if !stun::verify_fingerprint(raw) {
            self.stats.dropped_bad_fingerprint += 1;
            return;
        }
        let Ok(msg) = Message::parse(raw) else {
            self.stats.dropped_other += 1;
            return;
        };
        let ours = msg
            .username()
            .and_then(|u| u.split_once(':'))
            .is_some_and(|(ufrag, _)| ufrag == self.local_creds.ufrag);
        if !ours {
            self.stats.dropped_unknown_ufrag += 1;
            return;
        }
        if !stun::verify_integrity_prepared(raw, &self.local_key) {
            self.stats.dropped_bad_integrity += 1;
            return;
        }
        // Role conflict (RFC 8445 7.3.1.1).
        if let Some(theirs) = msg.ice_controlling().filter(|_| self.controlling) {
            self.stats.role_conflicts += 1;
            if self.tie_breaker >= theirs {
                self.send_error(local, remote, &msg, 487, "Role Conflict");
                return;
            }
            self.set_controlling(false);
        } else if let Some(theirs) = msg.ice_controlled().filter(|_| !self.controlling) {
            self.stats.role_conflicts += 1;
            if self.tie_breaker >= theirs && !self.lite {
                self.set_controlling(true);
            } else {
                self.send_error(local, remote, &msg, 487, "Role Conflict");
                return;
            }
        }
        let response = Message::new(Class::Success, Method::BINDING, msg.transaction_id)
            .with(Attribute::XorMappedAddress(remote))
            .encode_to_vec_prepared(&self.local_key, true);
        self.send(local, remote, response);
        self.stats.requests_answered += 1;
        if protocol != Protocol::Udp {
            return;
        }
        self.mark_validated(local, remote, Validation::Request);
        // Learn the source as a peer-reflexive remote candidate if it is new. Without
        // remote credentials yet we answer but check back only once they arrive.
        let priority = msg.priority().unwrap_or(0);
        let Some(_) = self.add_remote(now, remote, priority) else {
            return;
        };
        let Some(pair) = self.pair_index(local, remote) else {
            return;
        };
        if self.lite {
            // A lite agent's pairs are valid once checked by the full agent.
            if let Some(p) = self.pairs.get_mut(pair) {
                p.state = PairState::Succeeded;
            }
            self.last_consent = Some(now);
            if msg.use_candidate() {
                self.select(now, pair);
            }
            return;
        }
        let state = self.pairs.get(pair).map(|p| p.state);
        match state {
            Some(PairState::Waiting | PairState::Failed | PairState::InProgress) => {
                if let Some(p) = self.pairs.get_mut(pair) {
                    if p.state == PairState::Failed {
                        p.state = PairState::Waiting;
                    }
                }
                self.trigger(now, pair);
            }
            Some(PairState::Succeeded) | None => {}
        }
        if msg.use_candidate() && !self.controlling {
            match self.pairs.get(pair).map(|p| p.state) {
                Some(PairState::Succeeded) => self.select(now, pair),
                Some(_) => {
                    if let Some(p) = self.pairs.get_mut(pair) {
                        p.nominate_on_success = true;
                    }
                }
                None => {}
            }
        }
    }

    fn send_error(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        req: &Message,
        code: u16,
        reason: &str,
    ) {
        let response = Message::new(Class::Error, Method::BINDING, req.transaction_id)
            .with(Attribute::ErrorCode {
                code,
                reason: reason.to_string(),
            })
            .encode_to_vec_prepared(&self.local_key, true);
        self.send(local, remote, response);
    }

    fn handle_response(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr, raw: &[u8]) {
        let Some(id) = stun::peek_transaction_id(raw) else {
            self.stats.dropped_other += 1;
            return;
        };
        let Some(index) = self.transactions.iter().position(|t| t.id == id) else {
            self.stats.dropped_other += 1;
            return;
        };
        let Some(tx) = self.transactions.get(index).cloned() else {
            return;
        };
        if let TxKind::Srflx { .. } = tx.kind {
            // Server responses carry no integrity (no credentials with public STUN servers).
            self.transactions.remove(index);
            self.stats.responses_received += 1;
            if let Ok(msg) = Message::parse(raw) {
                if let Some(mapped) = msg
                    .xor_mapped_address()
                    .filter(|_| msg.class == Class::Success)
                {
                    self.add_srflx(tx.local, tx.remote, mapped);
                }
            }
            self.check_gathering_complete(now);
            return;
        }
        let Some(key) = self.remote_key.as_ref() else {
            self.stats.dropped_other += 1;
            return;
        };
        if !stun::verify_fingerprint(raw) {
            self.stats.dropped_bad_fingerprint += 1;
            return;
        }
        if !stun::verify_integrity_prepared(raw, key) {
            self.stats.dropped_bad_integrity += 1;
            return;
        }
        let Ok(msg) = Message::parse(raw) else {
            self.stats.dropped_other += 1;
            return;
        };
        self.transactions.remove(index);
        self.stats.responses_received += 1;
        let Some(pair) = self.pair_index(tx.local, tx.remote) else {
            return;
        };
        if msg.class == Class::Error {
            if msg.error_code().map(|(c, _)| c) == Some(487) && tx.kind != TxKind::Consent {
                // Role conflict: switch and check again (RFC 8445 7.2.5.1).
                self.stats.role_conflicts += 1;
                let controlling = !self.controlling;
                self.set_controlling(controlling);
                if let Some(p) = self.pairs.get_mut(pair) {
                    p.state = PairState::Waiting;
                }
                self.trigger(now, pair);
            } else if let Some(p) = self.pairs.get_mut(pair) {
                if tx.kind != TxKind::Consent {
                    p.state = PairState::Failed;
                }
            }
            return;
        }
        // Non-symmetric addresses fail the check (RFC 8445 7.2.5.2.1).
        if remote != tx.remote || local != tx.local {
            if let Some(p) = self.pairs.get_mut(pair) {
                p.state = PairState::Failed;
            }
            return;
        }
        self.last_consent = Some(now);
        self.mark_validated(local, remote, Validation::Response);
        let Some(p) = self.pairs.get_mut(pair) else {
            return;
        };
        p.state = PairState::Succeeded;
        let use_candidate = matches!(
            tx.kind,
            TxKind::Check {
                use_candidate: true
            }
        );
        if use_candidate {
            p.nominated = true;
        }
        let nominate_now =
            (self.controlling && use_candidate) || (!self.controlling && p.nominate_on_success);
        if nominate_now {
            self.select(now, pair);
        } else if self.controlling && self.selected.is_none() && self.nominate_at.is_none() {
            self.nominate_at = Some(now + NOMINATION_WAIT);
        } else if !self.controlling && self.selected.is_none() {
            // RFC 8445 12.1: data may flow on any valid pair before a pair is selected.
            // The controlled agent uses its first valid pair at once (DTLS can start)
            // instead of waiting for the controlling agent's nomination, which libwebrtc
            // sends only with a later check; the nominated pair replaces it when it comes.
            self.use_pair(now, pair);
        }
        if self.state == IceConnectionState::Disconnected && self.selected.is_some() {
            self.set_state(IceConnectionState::Connected);
        }
    }

    fn add_srflx(&mut self, base: SocketAddr, server: SocketAddr, mapped: SocketAddr) {
        if mapped == base
            || self
                .locals
                .iter()
                .any(|l| l.candidate.address == CandidateAddress::Ip(mapped))
            || self.locals.len() >= MAX_LOCAL
        {
            return;
        }
        let kind = CandidateKind::ServerReflexive;
        let local_pref = self
            .locals
            .iter()
            .find(|l| l.base == base)
            .map(|l| ((l.candidate.priority >> 8) & 0xFFFF) as u16)
            .unwrap_or(0);
        let candidate = Candidate {
            foundation: foundation_for(kind, base.ip(), Some(server), Protocol::Udp),
            component: 1,
            protocol: Protocol::Udp,
            priority: candidate_priority(kind, local_pref, 1),
            address: CandidateAddress::Ip(mapped),
            kind,
            related_address: Some(base),
            tcp_type: None,
            extensions: Vec::new(),
        };
        self.locals.push(LocalCandidate {
            candidate: candidate.clone(),
            base,
            announced: true,
        });
        self.push_event(IceEvent::LocalCandidate(candidate));
    }

    fn select(&mut self, now: Instant, pair: usize) {
        if let Some(p) = self.pairs.get_mut(pair) {
            p.nominated = true;
        }
        self.use_pair(now, pair);
    }

    /// Send on this pair (nominated, or the controlled agent's first valid pair while it
    /// waits for a nomination).
    fn use_pair(&mut self, now: Instant, pair: usize) {
        if self.selected != Some(pair) {
            self.selected = Some(pair);
            self.nominate_at = None;
            self.last_consent = Some(now);
            self.schedule_consent(now);
            if let Some(sp) = self.selected_pair() {
                self.push_event(IceEvent::SelectedPairChange(sp));
            }
        }
        self.set_state(IceConnectionState::Connected);
    }

    fn schedule_consent(&mut self, now: Instant) {
        if self.lite {
            return;
        }
        let jitter = 0.8 + 0.4 * self.rng.unit_f64();
        self.next_consent = Some(now + self.config.consent_interval.mul_f64(jitter));
    }

    // ------------------------------------------------------------------ time

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        // Transactions.
        let mut i = 0;
        while i < self.transactions.len() {
            let due = self
                .transactions
                .get(i)
                .and_then(|t| t.timer.deadline())
                .is_some_and(|d| now >= d);
            if !due {
                i += 1;
                continue;
            }
            let Some(t) = self.transactions.get_mut(i) else {
                break;
            };
            match t.timer.on_timeout(now) {
                TimerAction::Wait => i += 1,
                TimerAction::Retransmit => {
                    let (l, r, req) = (t.local, t.remote, t.request.clone());
                    self.stats.retransmits += 1;
                    self.send(l, r, req);
                    i += 1;
                }
                TimerAction::TimedOut => {
                    let t = self.transactions.remove(i);
                    if let TxKind::Check { .. } = t.kind {
                        if let Some(p) = self
                            .pair_index(t.local, t.remote)
                            .and_then(|p| self.pairs.get_mut(p))
                        {
                            if p.state == PairState::InProgress {
                                p.state = PairState::Failed;
                            }
                        }
                    }
                    // Every request of a nomination was lost: nominate again (a bounded
                    // number of times), or the controlled side waits forever.
                    let lost_nomination = t.kind
                        == TxKind::Check {
                            use_candidate: true,
                        };
                    if lost_nomination
                        && self.controlling
                        && self.selected.is_none()
                        && self.nomination_attempts < MAX_NOMINATIONS
                    {
                        self.nomination_attempts += 1;
                        self.nominate_at = Some(now);
                    }
                }
            }
        }
        self.check_gathering_complete(now);
        self.run_pacer(now);
        self.schedule_checks(now);
        // Nomination by the controlling agent.
        if self.nominate_at.is_some_and(|d| now >= d) {
            self.nominate_at = None;
            if self.controlling && self.selected.is_none() {
                let best = self
                    .pairs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.state == PairState::Succeeded)
                    .max_by_key(|(_, p)| p.priority)
                    .map(|(i, _)| i);
                if let Some(b) = best {
                    if let Some(p) = self.pairs.get_mut(b) {
                        p.nominated = true;
                    }
                    if self.remote_lite {
                        // A lite peer accepts the nomination with the check; select at once.
                        self.send_check(
                            now,
                            b,
                            TxKind::Check {
                                use_candidate: true,
                            },
                        );
                    } else {
                        self.triggered.push_front(b);
                        self.next_check = Some(now);
                        self.run_pacer(now);
                    }
                }
            }
        }
        self.schedule_nomination(now);
        // Consent freshness.
        if self.next_consent.is_some_and(|d| now >= d) {
            if let Some(sel) = self.selected {
                if self.state != IceConnectionState::Failed {
                    self.send_check(now, sel, TxKind::Consent);
                }
            }
            self.schedule_consent(now);
        }
        self.update_state(now);
    }

    /// A controlling agent with a succeeded pair and nothing selected nominates soon, also
    /// when it became controlling only after the pair succeeded (role conflict).
    fn schedule_nomination(&mut self, now: Instant) {
        let waiting = self.controlling
            && self.selected.is_none()
            && self.nominate_at.is_none()
            && self.pairs.iter().any(|p| p.state == PairState::Succeeded)
            && !self.transactions.iter().any(|t| {
                t.kind
                    == TxKind::Check {
                        use_candidate: true,
                    }
            });
        if waiting && self.nomination_attempts < MAX_NOMINATIONS {
            self.nominate_at = Some(now + NOMINATION_WAIT);
        }
    }

    /// Recompute the connection state from pairs and consent.
    fn update_state(&mut self, now: Instant) {
        if self.closed || self.state == IceConnectionState::Failed && self.selected.is_some() {
            return;
        }
        if let (Some(_), Some(last)) = (self.selected, self.last_consent) {
            if !self.lite {
                let silent = now.saturating_duration_since(last);
                if silent >= self.config.consent_timeout {
                    self.next_consent = None;
                    self.set_state(IceConnectionState::Failed);
                } else if silent >= self.config.disconnected_timeout {
                    self.set_state(IceConnectionState::Disconnected);
                }
            }
            return;
        }
        if self.selected.is_some() {
            return;
        }
        if self.remote_creds.is_none() && self.pairs.is_empty() {
            return;
        }
        let active = self.pairs.iter().any(|p| {
            matches!(
                p.state,
                PairState::Waiting | PairState::InProgress | PairState::Succeeded
            )
        }) || !self.triggered.is_empty()
            || self
                .transactions
                .iter()
                .any(|t| matches!(t.kind, TxKind::Check { .. }));
        if active || self.lite {
            self.exhausted_since = None;
            if self.remote_creds.is_some() && (!self.pairs.is_empty() || self.lite) {
                self.set_state(IceConnectionState::Checking);
            }
            return;
        }
        let since = *self.exhausted_since.get_or_insert(now);
        if self.remote_end_of_candidates && !self.pairs.is_empty()
            || now.saturating_duration_since(since) >= self.config.failed_timeout
        {
            self.set_state(IceConnectionState::Failed);
        } else if self.remote_creds.is_some() {
            self.set_state(IceConnectionState::Checking);
        }
    }

    fn set_state(&mut self, state: IceConnectionState) {
        if self.state != state && self.state != IceConnectionState::Closed {
            self.state = state;
            self.push_event(IceEvent::ConnectionStateChange(state));
        }
    }

    /// When `handle_timeout` should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for t in &self.transactions {
            consider(t.timer.deadline());
        }
        consider(self.next_check);
        consider(self.nominate_at);
        consider(self.next_consent);
        consider(
            self.gather_deadline
                .filter(|_| self.gathering == IceGatheringState::Gathering),
        );
        if let (Some(_), Some(last)) = (self.selected, self.last_consent) {
            if !self.lite && self.state != IceConnectionState::Failed {
                let d = if self.state == IceConnectionState::Disconnected {
                    self.config.consent_timeout
                } else {
                    self.config.disconnected_timeout
                };
                consider(Some(last + d));
            }
        }
        if self.selected.is_none() && self.state == IceConnectionState::Checking {
            consider(self.exhausted_since.map(|s| s + self.config.failed_timeout));
        }
        next
    }

    // ------------------------------------------------------------------ output

    fn send(&mut self, local: SocketAddr, remote: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() >= MAX_QUEUE {
            self.stats.queue_overflows += 1;
            return;
        }
        self.transmits.push_back((local, remote, data));
    }

    fn push_event(&mut self, event: IceEvent) {
        if self.events.len() >= MAX_QUEUE {
            self.stats.queue_overflows += 1;
            return;
        }
        self.events.push_back(event);
    }

    /// The next datagram to send, written into `buf` (dropped if it does not fit).
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let (local, remote, data) = self.transmits.pop_front()?;
            if let Some(dst) = buf.get_mut(..data.len()) {
                dst.copy_from_slice(&data);
                return Some(Transmit {
                    local,
                    remote,
                    protocol: Protocol::Udp,
                    len: data.len(),
                });
            }
            self.stats.queue_overflows += 1;
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }
}
