//! The offer/answer state of a PeerConnection: transceivers, the m-line order, the
//! current and pending descriptions, and the W3C signaling state machine (JSEP, RFC 9429):
//!
//! ```text
//!                 SLD(offer)                    SRD(offer)
//!   have-local-offer <----------- stable -----------> have-remote-offer
//!        |   ^  SRD(answer)  ^          ^  SLD(answer)       |  ^
//!        |   +---------------+----------+--------------------+  |
//!   SRD(pranswer)                                     SLD(pranswer)
//!        v                                                   v
//!   have-remote-pranswer                         have-local-pranswer
//! ```
//! Rollback returns to `stable` from either offer state. The rules that build media
//! sections live in `sdp::jsep`; this module decides which m-line belongs to which
//! transceiver and what each step changes. Every check runs before any change, so a
//! rejected call leaves the state untouched.

use std::collections::HashSet;

use crate::config::{CodecConfig, Config};
use crate::dtls::cert::Fingerprint;
use crate::dtls::DtlsRole;
use crate::media::{
    Direction, MediaKind, NegotiatedCodec, RemoteTrackInfo, Transceiver, TransceiverId,
    TransceiverInit,
};
use crate::peer::error::{AddCandidateError, NegotiationError, Operation};
use crate::peer::event::SignalingState;
use crate::rng::Rng;
use crate::sdp::jsep::{self, LocalTransport};
use crate::sdp::model::{Media, MediaType, Origin, RidDirection, Sdp, Setup};
use crate::sdp::{IceCandidateInit, SdpType, SessionDescription};

/// Most transceivers a PeerConnection holds (a remote offer with more m-lines is refused).
const MAX_TRANSCEIVERS: usize = 512;

/// `RTCOfferOptions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfferOptions {
    /// Generate new ICE credentials (ICE restart).
    pub ice_restart: bool,
}

/// What the PeerConnection knows about its own transport when describing it.
#[derive(Debug, Clone)]
pub(crate) struct LocalContext {
    pub ufrag: String,
    pub pwd: String,
    pub fingerprint: Fingerprint,
    pub ice_lite: bool,
}

/// The local candidates gathered so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CandidateView<'a> {
    pub candidates: &'a [String],
    pub complete: bool,
}

/// New ICE credentials to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IceRestart {
    pub ufrag: String,
    pub pwd: String,
}

/// The remote ICE parameters a description brought.
#[derive(Debug, Clone)]
pub(crate) struct RemoteIce {
    pub ufrag: String,
    pub pwd: String,
    pub lite: bool,
    pub candidates: Vec<String>,
    pub end_of_candidates: bool,
}

/// What the PeerConnection must do after a description was applied.
#[derive(Debug)]
pub(crate) struct Applied {
    pub signaling: SignalingState,
    pub controlling: Option<bool>,
    pub remote_ice: Option<RemoteIce>,
    pub local_ice_restart: Option<IceRestart>,
    pub start_gathering: bool,
    /// Once an answer settled the transport: our DTLS role and the peer's fingerprint.
    pub dtls: Option<(DtlsRole, Fingerprint)>,
}

impl Applied {
    fn new(signaling: SignalingState) -> Applied {
        Applied {
            signaling,
            controlling: None,
            remote_ice: None,
            local_ice_restart: None,
            start_gathering: false,
            dtls: None,
        }
    }
}

/// What occupies one m-line.
#[derive(Debug, Clone)]
enum SlotKind {
    /// An audio/video transceiver.
    Transceiver(TransceiverId),
    /// The data-channel section (one per connection).
    Data,
    /// A section we rejected (unknown media, a second data section).
    Foreign(Box<Media>),
}

#[derive(Debug, Clone)]
struct Slot {
    mid: String,
    kind: SlotKind,
}

/// Hands out the smallest decimal mids ("0", "1", ...) not used yet, in amortised O(1):
/// the numbers in use are collected once per offer, and the candidate only moves forward
/// (a mid handed out is used from then on). A mid that is not a plain decimal number
/// ("audio", "01") never equals a candidate, so it is not collected.
struct MidAllocator {
    used: HashSet<u64>,
    next: u64,
}

impl MidAllocator {
    fn new<'a>(mids: impl Iterator<Item = &'a str>) -> MidAllocator {
        let decimal =
            |m: &str| m.bytes().all(|b| b.is_ascii_digit()) && (m == "0" || !m.starts_with('0'));
        let used = mids
            .filter(|m| decimal(m))
            .filter_map(|m| m.parse::<u64>().ok())
            .collect();
        MidAllocator { used, next: 0 }
    }

    fn take(&mut self) -> String {
        while self.used.contains(&self.next) {
            self.next = self.next.saturating_add(1);
        }
        let mid = self.next;
        self.used.insert(mid);
        self.next = self.next.saturating_add(1);
        mid.to_string()
    }
}

/// An offer or answer returned by create_offer/create_answer, remembered until applied.
#[derive(Debug, Clone)]
struct Created {
    kind: SdpType,
    text: String,
    model: Sdp,
    plan: Vec<Slot>,
    restart: Option<IceRestart>,
    /// For answers: per transceiver, the codecs, extensions and direction settled.
    settled: Vec<Settled>,
}

/// What an answer settles for one transceiver.
#[derive(Debug, Clone)]
struct Settled {
    id: TransceiverId,
    codecs: Vec<NegotiatedCodec>,
    extensions: Vec<(u16, String)>,
    direction: Direction,
}

/// State to return to on rollback.
#[derive(Debug, Clone)]
struct Snapshot {
    transceivers: Vec<Transceiver>,
    slots: Vec<Slot>,
    next_id: u32,
}

#[derive(Debug)]
pub(crate) struct Negotiation {
    rng: Rng,
    cname: String,
    transceivers: Vec<Transceiver>,
    next_id: u32,
    slots: Vec<Slot>,
    session_id: u64,
    session_version: u64,
    current_local: Option<(SdpType, Sdp)>,
    pending_local: Option<(SdpType, Sdp)>,
    current_remote: Option<(SdpType, Sdp)>,
    pending_remote: Option<(SdpType, Sdp)>,
    last_created: Option<Created>,
    remote_offer_plan: Option<Vec<Slot>>,
    snapshot: Option<Snapshot>,
    ice_restart_requested: bool,
    restart_creds: Option<IceRestart>,
    roles_set: bool,
    remote_ufrag: Option<String>,
    /// A data channel was created: offers carry a data section.
    data_wanted: bool,
    /// Our `a=max-message-size`.
    max_message_size: u64,
}

/// The SCTP parameters of a negotiated data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SctpParams {
    /// The peer's `a=sctp-port`.
    pub remote_port: u16,
    /// The peer's `a=max-message-size` (65536 when absent, RFC 8841 6.1; 0: no limit).
    pub remote_max_message_size: u64,
}

impl Negotiation {
    pub(crate) fn new(mut rng: Rng) -> Negotiation {
        let cname = rng.ice_chars(16);
        // RFC 8866: the session id should be a 63-bit number.
        let session_id = rng.next_u64() >> 1;
        Negotiation {
            rng,
            cname,
            transceivers: Vec::new(),
            next_id: 0,
            slots: Vec::new(),
            session_id,
            session_version: 1,
            current_local: None,
            pending_local: None,
            current_remote: None,
            pending_remote: None,
            last_created: None,
            remote_offer_plan: None,
            snapshot: None,
            ice_restart_requested: false,
            restart_creds: None,
            roles_set: false,
            remote_ufrag: None,
            data_wanted: false,
            max_message_size: 262_144,
        }
    }

    // ------------------------------------------------------------ data channels

    /// A data channel exists: the next offer carries a data section.
    pub(crate) fn want_data(&mut self, max_message_size: u64) {
        self.data_wanted = true;
        self.max_message_size = max_message_size;
    }

    /// Our `a=max-message-size`, for answers too.
    pub(crate) fn set_max_message_size(&mut self, max_message_size: u64) {
        self.max_message_size = max_message_size;
    }

    /// The data section's SCTP parameters once both current descriptions accept it.
    pub(crate) fn negotiated_sctp(&self) -> Option<SctpParams> {
        let index = self
            .slots
            .iter()
            .position(|s| matches!(s.kind, SlotKind::Data))?;
        let local = self.current_local.as_ref()?.1.media.get(index)?;
        let remote = self.current_remote.as_ref()?.1.media.get(index)?;
        if local.is_rejected() || remote.is_rejected() {
            return None;
        }
        Some(SctpParams {
            remote_port: remote.sctp_port.unwrap_or(jsep::SCTP_PORT),
            remote_max_message_size: remote.max_message_size.unwrap_or(65_536),
        })
    }

    // ------------------------------------------------------------ transceivers

    pub(crate) fn transceivers(&self) -> &[Transceiver] {
        &self.transceivers
    }

    /// Where transceiver `id` sits. Ids are handed out in order and transceivers are only
    /// ever pushed (a rollback restores an older, equally sorted list), so the list is
    /// sorted by id: usually the id is the index, otherwise a binary search finds it.
    fn transceiver_index(&self, id: TransceiverId) -> Option<usize> {
        let at = id.0 as usize;
        if self.transceivers.get(at).is_some_and(|t| t.id == id) {
            return Some(at);
        }
        self.transceivers.binary_search_by_key(&id, |t| t.id).ok()
    }

    pub(crate) fn transceiver(&self, id: TransceiverId) -> Option<&Transceiver> {
        self.transceiver_index(id)
            .and_then(|i| self.transceivers.get(i))
    }

    fn transceiver_mut(&mut self, id: TransceiverId) -> Option<&mut Transceiver> {
        self.transceiver_index(id)
            .and_then(|i| self.transceivers.get_mut(i))
    }

    pub(crate) fn add_transceiver(
        &mut self,
        kind: MediaKind,
        init: TransceiverInit,
        created_by_remote_offer: bool,
    ) -> TransceiverId {
        let id = TransceiverId(self.next_id);
        self.next_id += 1;
        let track_id = format!("{}-{}", kind.as_str(), self.rng.ice_chars(12));
        let sender_ssrc = self.rng.next_u32();
        let sender_rtx_ssrc = self.rng.next_u32();
        let has_track = !created_by_remote_offer && init.direction.sends();
        self.transceivers.push(Transceiver {
            id,
            kind,
            mid: None,
            mline_index: None,
            direction: init.direction,
            current_direction: None,
            stream_ids: init.stream_ids,
            has_track,
            track_id,
            sender_ssrc,
            sender_rtx_ssrc,
            stopping: false,
            stopped: false,
            created_by_remote_offer,
            codecs: Vec::new(),
            header_extensions: Vec::new(),
            remote: RemoteTrackInfo::default(),
        });
        id
    }

    pub(crate) fn add_track(&mut self, kind: MediaKind, stream_ids: Vec<String>) -> TransceiverId {
        // W3C addTrack: reuse a transceiver of this kind that never sent and is not stopped.
        if let Some(t) = self.transceivers.iter_mut().find(|t| {
            t.kind == kind && !t.has_track && !t.stopping && !t.stopped && t.created_by_remote_offer
        }) {
            t.has_track = true;
            t.stream_ids = stream_ids;
            t.direction = Direction::from_parts(true, t.direction.receives());
            return t.id;
        }
        self.add_transceiver(
            kind,
            TransceiverInit {
                direction: Direction::SendRecv,
                stream_ids,
            },
            false,
        )
    }

    pub(crate) fn remove_track(&mut self, id: TransceiverId) {
        if let Some(t) = self.transceiver_mut(id) {
            t.has_track = false;
            t.direction = Direction::from_parts(false, t.direction.receives());
        }
    }

    pub(crate) fn set_direction(&mut self, id: TransceiverId, direction: Direction) {
        if let Some(t) = self.transceiver_mut(id) {
            if !t.stopping && !t.stopped {
                t.direction = direction;
            }
        }
    }

    pub(crate) fn stop_transceiver(&mut self, id: TransceiverId) {
        if let Some(t) = self.transceiver_mut(id) {
            t.stopping = true;
            t.direction = Direction::Inactive;
        }
    }

    pub(crate) fn request_ice_restart(&mut self) {
        self.ice_restart_requested = true;
    }

    // ------------------------------------------------------------ descriptions

    fn described(
        &self,
        pair: &Option<(SdpType, Sdp)>,
        view: Option<CandidateView<'_>>,
    ) -> Option<SessionDescription> {
        let (kind, sdp) = pair.as_ref()?;
        let mut sdp = sdp.clone();
        if let Some(view) = view {
            if let Some(first) = sdp.media.iter_mut().find(|m| !m.is_rejected()) {
                first.candidates = view.candidates.to_vec();
                first.end_of_candidates = view.complete;
            }
        }
        Some(SessionDescription {
            kind: *kind,
            sdp: sdp.to_string(),
        })
    }

    pub(crate) fn local_description(&self, view: CandidateView<'_>) -> Option<SessionDescription> {
        self.pending_local_description(view)
            .or_else(|| self.current_local_description(view))
    }

    pub(crate) fn current_local_description(
        &self,
        view: CandidateView<'_>,
    ) -> Option<SessionDescription> {
        self.described(&self.current_local, Some(view))
    }

    pub(crate) fn pending_local_description(
        &self,
        view: CandidateView<'_>,
    ) -> Option<SessionDescription> {
        self.described(&self.pending_local, Some(view))
    }

    pub(crate) fn remote_description(&self) -> Option<SessionDescription> {
        self.pending_remote_description()
            .or_else(|| self.current_remote_description())
    }

    pub(crate) fn current_remote_description(&self) -> Option<SessionDescription> {
        self.described(&self.current_remote, None)
    }

    pub(crate) fn pending_remote_description(&self) -> Option<SessionDescription> {
        self.described(&self.pending_remote, None)
    }

    fn remote_sdp(&self) -> Option<&Sdp> {
        self.pending_remote
            .as_ref()
            .or(self.current_remote.as_ref())
            .map(|(_, s)| s)
    }

    fn remote_sdp_mut(&mut self) -> Option<&mut Sdp> {
        self.pending_remote
            .as_mut()
            .or(self.current_remote.as_mut())
            .map(|(_, s)| s)
    }

    fn local_sdp(&self) -> Option<&Sdp> {
        self.pending_local
            .as_ref()
            .or(self.current_local.as_ref())
            .map(|(_, s)| s)
    }

    // ------------------------------------------------------------ candidates

    /// The m-line a remote candidate belongs to, checking its ufrag.
    pub(crate) fn remote_media_index(
        &self,
        init: &IceCandidateInit,
    ) -> Result<usize, AddCandidateError> {
        let sdp = self
            .remote_sdp()
            .ok_or(AddCandidateError::NoRemoteDescription)?;
        let by_mid = init
            .sdp_mid
            .as_deref()
            .and_then(|mid| sdp.media.iter().position(|m| m.mid.as_deref() == Some(mid)));
        let index = match (by_mid, init.sdp_mid.as_deref(), init.sdp_m_line_index) {
            (Some(i), _, _) => i,
            (None, None, Some(i)) if usize::from(i) < sdp.media.len() => usize::from(i),
            (None, None, None) if init.is_end_of_candidates() => 0,
            _ => return Err(AddCandidateError::UnknownMediaSection),
        };
        if let (Some(u), Some(current)) = (
            init.username_fragment.as_deref(),
            self.remote_ufrag.as_deref(),
        ) {
            if !u.is_empty() && u != current {
                return Err(AddCandidateError::UfragMismatch);
            }
        }
        Ok(index)
    }

    pub(crate) fn note_remote_candidate(&mut self, index: usize, candidate: &str) {
        let value = candidate
            .trim()
            .strip_prefix("a=")
            .unwrap_or(candidate.trim());
        let value = value
            .strip_prefix("candidate:")
            .unwrap_or(value)
            .to_string();
        if let Some(m) = self.remote_sdp_mut().and_then(|s| s.media.get_mut(index)) {
            m.candidates.push(value);
        }
    }

    pub(crate) fn note_remote_end_of_candidates(&mut self, index: usize) {
        if let Some(m) = self.remote_sdp_mut().and_then(|s| s.media.get_mut(index)) {
            m.end_of_candidates = true;
        }
    }

    fn first_accepted(sdp: Option<&Sdp>) -> (Option<String>, Option<u16>) {
        sdp.and_then(|s| {
            s.media
                .iter()
                .enumerate()
                .find(|(_, m)| !m.is_rejected())
                .map(|(i, m)| (m.mid.clone(), u16::try_from(i).ok()))
        })
        .unwrap_or((None, None))
    }

    /// An `RTCIceCandidateInit` for one of our candidates (or end of candidates when empty).
    pub(crate) fn local_candidate_init(&self, candidate: String, ufrag: &str) -> IceCandidateInit {
        let (mid, index) = Self::first_accepted(self.local_sdp());
        IceCandidateInit {
            candidate,
            sdp_mid: mid.or_else(|| Some("0".into())),
            sdp_m_line_index: index.or(Some(0)),
            username_fragment: Some(ufrag.to_string()),
        }
    }

    /// An `RTCIceCandidateInit` for a remote candidate we hand back to the application.
    pub(crate) fn remote_candidate_init(
        &self,
        candidate: String,
        ufrag: Option<String>,
    ) -> IceCandidateInit {
        let (mid, index) = Self::first_accepted(self.remote_sdp());
        IceCandidateInit {
            candidate,
            sdp_mid: mid,
            sdp_m_line_index: index,
            username_fragment: ufrag,
        }
    }

    // ------------------------------------------------------------ offers

    fn next_origin(&mut self) -> Origin {
        self.session_version += 1;
        Origin {
            username: "-".into(),
            session_id: self.session_id,
            session_version: self.session_version,
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "127.0.0.1".into(),
        }
    }

    /// The mids an offer may hand out: those neither in `plan` nor on a transceiver.
    fn mid_allocator(&self, plan: &[Slot]) -> MidAllocator {
        let used = plan
            .iter()
            .map(|s| s.mid.as_str())
            .chain(self.transceivers.iter().filter_map(|t| t.mid.as_deref()));
        MidAllocator::new(used)
    }

    /// Whether slot `i` is rejected in both current descriptions, so it may be reused.
    fn slot_recyclable(&self, i: usize) -> bool {
        let rejected = |d: &Option<(SdpType, Sdp)>| {
            d.as_ref()
                .and_then(|(_, s)| s.media.get(i))
                .is_some_and(|m| m.is_rejected())
        };
        let occupant_done = match self.slots.get(i).map(|s| &s.kind) {
            Some(SlotKind::Transceiver(id)) => self.transceiver(*id).is_some_and(|t| t.stopped),
            Some(SlotKind::Foreign(_)) => true,
            Some(SlotKind::Data) => false,
            None => false,
        };
        occupant_done && rejected(&self.current_local) && rejected(&self.current_remote)
    }

    fn codecs_for(config: &Config, kind: MediaKind) -> &[CodecConfig] {
        match kind {
            MediaKind::Audio => &config.audio_codecs,
            MediaKind::Video => &config.video_codecs,
        }
    }

    pub(crate) fn create_offer(
        &mut self,
        config: &Config,
        ctx: &LocalContext,
        options: OfferOptions,
    ) -> SessionDescription {
        let restart = if options.ice_restart || self.ice_restart_requested {
            let creds = self.restart_creds.clone().unwrap_or_else(|| IceRestart {
                ufrag: self.rng.ice_chars(8),
                pwd: self.rng.ice_chars(24),
            });
            self.restart_creds = Some(creds.clone());
            Some(creds)
        } else {
            None
        };
        // The m-line plan: the negotiated order, then new transceivers in recycled or new slots.
        let mut plan = self.slots.clone();
        let mut mids = self.mid_allocator(&plan);
        let unassociated: Vec<TransceiverId> = self
            .transceivers
            .iter()
            .filter(|t| t.mid.is_none() && !t.stopping && !t.stopped)
            .map(|t| t.id)
            .collect();
        for id in unassociated {
            let mid = mids.take();
            let slot = Slot {
                mid,
                kind: SlotKind::Transceiver(id),
            };
            let recycled = (0..plan.len()).find(|&i| {
                self.slot_recyclable(i) && matches!(plan.get(i).map(|s| &s.kind), Some(kind) if !Self::plan_slot_taken(kind, &self.slots, i))
            });
            match recycled {
                Some(i) => {
                    if let Some(s) = plan.get_mut(i) {
                        *s = slot;
                    }
                }
                None => plan.push(slot),
            }
        }
        if self.data_wanted && !plan.iter().any(|s| matches!(s.kind, SlotKind::Data)) {
            let mid = mids.take();
            plan.push(Slot {
                mid,
                kind: SlotKind::Data,
            });
        }
        let origin = self.next_origin();
        let cname = self.cname.clone();
        let (ufrag, pwd) = match &restart {
            Some(r) => (r.ufrag.as_str(), r.pwd.as_str()),
            None => (ctx.ufrag.as_str(), ctx.pwd.as_str()),
        };
        let no_candidates: [String; 0] = [];
        let transport = LocalTransport {
            ufrag,
            pwd,
            fingerprint: &ctx.fingerprint,
            setup: Setup::ActPass,
            candidates: &no_candidates,
            end_of_candidates: false,
            ice_lite: ctx.ice_lite,
            cname: &cname,
        };
        let media: Vec<Media> = plan
            .iter()
            .map(|slot| match &slot.kind {
                SlotKind::Transceiver(id) => match self.transceiver(*id) {
                    Some(t) => {
                        let codecs =
                            jsep::offer_codecs(Self::codecs_for(config, t.kind), &t.codecs);
                        let exts = jsep::offer_extensions(
                            &config.header_extensions,
                            t.kind,
                            &t.header_extensions,
                        );
                        jsep::transceiver_media(
                            t,
                            &slot.mid,
                            t.direction,
                            &codecs,
                            &exts,
                            &transport,
                        )
                    }
                    None => Media::new(MediaType::Audio, jsep::RTP_PROTOCOL),
                },
                SlotKind::Data => jsep::data_media(&slot.mid, self.max_message_size, &transport),
                SlotKind::Foreign(m) => {
                    let mut r = jsep::rejected_media(m);
                    r.mid = Some(slot.mid.clone());
                    r
                }
            })
            .collect();
        let model = jsep::build_session(origin, &transport, media);
        let text = model.to_string();
        self.last_created = Some(Created {
            kind: SdpType::Offer,
            text: text.clone(),
            model,
            plan,
            restart,
            settled: Vec::new(),
        });
        SessionDescription::offer(text)
    }

    /// A slot that was already replaced in this plan is not recycled twice.
    fn plan_slot_taken(kind: &SlotKind, committed: &[Slot], i: usize) -> bool {
        match (kind, committed.get(i).map(|s| &s.kind)) {
            (SlotKind::Transceiver(a), Some(SlotKind::Transceiver(b))) => a != b,
            (SlotKind::Transceiver(_), Some(SlotKind::Foreign(_) | SlotKind::Data)) => true,
            _ => false,
        }
    }

    pub(crate) fn create_answer(
        &mut self,
        config: &Config,
        ctx: &LocalContext,
    ) -> Result<SessionDescription, NegotiationError> {
        let Some((_, offer)) = self.pending_remote.clone() else {
            return Err(NegotiationError::InvalidState {
                operation: Operation::CreateAnswer,
                state: SignalingState::Stable,
            });
        };
        let plan = self.remote_offer_plan.clone().unwrap_or_default();
        let origin = self.next_origin();
        let cname = self.cname.clone();
        let no_candidates: [String; 0] = [];
        let mut media = Vec::with_capacity(offer.media.len());
        let mut settled = Vec::new();
        let mut setup = Setup::Active;
        for (remote, slot) in offer.media.iter().zip(plan.iter()) {
            let offered_setup = offer.setup_of(remote).unwrap_or(Setup::ActPass);
            setup = jsep::answer_setup(offered_setup);
            let transport = LocalTransport {
                ufrag: &ctx.ufrag,
                pwd: &ctx.pwd,
                fingerprint: &ctx.fingerprint,
                setup,
                candidates: &no_candidates,
                end_of_candidates: false,
                ice_lite: ctx.ice_lite,
                cname: &cname,
            };
            let m = match &slot.kind {
                SlotKind::Transceiver(id) if !remote.is_rejected() => match self.transceiver(*id) {
                    Some(t) => {
                        let mut codecs =
                            jsep::answer_codecs(Self::codecs_for(config, t.kind), remote);
                        let mut exts =
                            jsep::answer_extensions(&config.header_extensions, t.kind, remote);
                        jsep::prefer_rfc8888(&mut codecs, &mut exts);
                        let dir =
                            jsep::answer_direction(t.direction, remote.direction_or_default());
                        let mut m =
                            jsep::transceiver_media(t, &slot.mid, dir, &codecs, &exts, &transport);
                        jsep::answer_simulcast(remote, &mut m, &exts);
                        settled.push(Settled {
                            id: t.id,
                            codecs,
                            extensions: exts,
                            direction: dir,
                        });
                        m
                    }
                    None => jsep::rejected_media(remote),
                },
                SlotKind::Data if !remote.is_rejected() => {
                    jsep::data_media(&slot.mid, self.max_message_size, &transport)
                }
                _ => jsep::rejected_media(remote),
            };
            media.push(m);
        }
        let transport = LocalTransport {
            ufrag: &ctx.ufrag,
            pwd: &ctx.pwd,
            fingerprint: &ctx.fingerprint,
            setup,
            candidates: &no_candidates,
            end_of_candidates: false,
            ice_lite: ctx.ice_lite,
            cname: &cname,
        };
        let mut model = jsep::build_session(origin, &transport, media);
        // The answer's BUNDLE group keeps the offer's order of accepted mids.
        if let Some(offered) = offer.bundle_mids() {
            let accepted: Vec<String> = offered
                .iter()
                .filter(|mid| {
                    model
                        .media
                        .iter()
                        .any(|m| !m.is_rejected() && m.mid.as_ref() == Some(*mid))
                })
                .cloned()
                .collect();
            if let Some(g) = model.groups.first_mut() {
                g.mids = accepted;
            }
        }
        let text = model.to_string();
        self.last_created = Some(Created {
            kind: SdpType::Answer,
            text: text.clone(),
            model,
            plan,
            restart: None,
            settled,
        });
        Ok(SessionDescription::answer(text))
    }

    // ------------------------------------------------------------ set local

    pub(crate) fn set_local(
        &mut self,
        state: SignalingState,
        desc: SessionDescription,
    ) -> Result<Applied, NegotiationError> {
        let invalid = |kind| NegotiationError::InvalidState {
            operation: Operation::SetLocal(kind),
            state,
        };
        match desc.kind {
            SdpType::Rollback => {
                if !matches!(
                    state,
                    SignalingState::HaveLocalOffer | SignalingState::HaveRemoteOffer
                ) {
                    return Err(invalid(SdpType::Rollback));
                }
                Ok(self.rollback())
            }
            SdpType::Offer => {
                if !matches!(
                    state,
                    SignalingState::Stable | SignalingState::HaveLocalOffer
                ) {
                    return Err(invalid(SdpType::Offer));
                }
                let created = self.matching_created(SdpType::Offer, &desc)?;
                if state == SignalingState::Stable {
                    self.take_snapshot();
                }
                self.commit_plan(&created.plan);
                self.pending_local = Some((SdpType::Offer, created.model.clone()));
                let mut applied = Applied::new(SignalingState::HaveLocalOffer);
                applied.start_gathering = true;
                if created.restart.is_some() {
                    applied.local_ice_restart = created.restart.clone();
                    self.ice_restart_requested = false;
                    self.restart_creds = None;
                    self.roles_set = false;
                }
                if !self.roles_set {
                    // The offerer is controlling unless it runs ICE-lite (RFC 8445 6.1.1).
                    applied.controlling = Some(!created.model.ice_lite);
                    self.roles_set = true;
                }
                Ok(applied)
            }
            SdpType::Answer | SdpType::Pranswer => {
                if !matches!(
                    state,
                    SignalingState::HaveRemoteOffer | SignalingState::HaveLocalPranswer
                ) {
                    return Err(invalid(desc.kind));
                }
                let created = self.matching_created(SdpType::Answer, &desc)?;
                let mut applied = Applied::new(if desc.kind == SdpType::Answer {
                    SignalingState::Stable
                } else {
                    SignalingState::HaveLocalPranswer
                });
                applied.start_gathering = true;
                if desc.kind == SdpType::Pranswer {
                    self.pending_local = Some((SdpType::Pranswer, created.model));
                    return Ok(applied);
                }
                for Settled {
                    id,
                    codecs,
                    extensions: exts,
                    direction: dir,
                } in created.settled
                {
                    if let Some(t) = self.transceiver_mut(id) {
                        t.codecs = codecs;
                        t.header_extensions = exts;
                        t.current_direction = Some(dir);
                    }
                }
                self.commit_plan(&created.plan);
                self.finish_stopping(&created.model);
                applied.dtls = self
                    .pending_remote
                    .as_ref()
                    .and_then(|(_, offer)| dtls_params(&created.model, offer, true));
                self.current_local = Some((SdpType::Answer, created.model));
                self.pending_local = None;
                self.current_remote = self.pending_remote.take();
                self.remote_offer_plan = None;
                self.snapshot = None;
                Ok(applied)
            }
        }
    }

    /// The created description this one is (same text, or the same model up to candidates).
    fn matching_created(
        &self,
        kind: SdpType,
        desc: &SessionDescription,
    ) -> Result<Created, NegotiationError> {
        let created = self
            .last_created
            .as_ref()
            .filter(|c| c.kind == kind)
            .ok_or(NegotiationError::ModifiedLocalDescription)?;
        if desc.sdp.is_empty() || desc.sdp == created.text {
            return Ok(created.clone());
        }
        let mut given = Sdp::parse(&desc.sdp)?;
        for m in &mut given.media {
            m.candidates.clear();
            m.end_of_candidates = false;
        }
        if given == created.model {
            Ok(created.clone())
        } else {
            Err(NegotiationError::ModifiedLocalDescription)
        }
    }

    fn take_snapshot(&mut self) {
        self.snapshot = Some(Snapshot {
            transceivers: self.transceivers.clone(),
            slots: self.slots.clone(),
            next_id: self.next_id,
        });
    }

    fn rollback(&mut self) -> Applied {
        if let Some(s) = self.snapshot.take() {
            self.transceivers = s.transceivers;
            self.slots = s.slots;
            self.next_id = s.next_id;
        }
        self.pending_local = None;
        self.pending_remote = None;
        self.remote_offer_plan = None;
        Applied::new(SignalingState::Stable)
    }

    /// Associate transceivers with the m-lines of a plan (mids and indexes).
    fn commit_plan(&mut self, plan: &[Slot]) {
        for (i, slot) in plan.iter().enumerate() {
            if let SlotKind::Transceiver(id) = slot.kind {
                if let Some(t) = self.transceiver_mut(id) {
                    t.mid = Some(slot.mid.clone());
                    t.mline_index = Some(i);
                }
            }
        }
        self.slots = plan.to_vec();
    }

    /// After a completed negotiation, stopping transceivers are stopped, and transceivers
    /// whose m-line was rejected are stopped too.
    fn finish_stopping(&mut self, local: &Sdp) {
        for t in &mut self.transceivers {
            let rejected = t
                .mline_index
                .and_then(|i| local.media.get(i))
                .is_some_and(|m| m.is_rejected());
            if t.stopping || (t.mid.is_some() && rejected) {
                t.stopping = false;
                t.stopped = true;
                t.current_direction = None;
            }
        }
    }

    // ------------------------------------------------------------ set remote

    pub(crate) fn set_remote(
        &mut self,
        config: &Config,
        state: SignalingState,
        desc: SessionDescription,
    ) -> Result<Applied, NegotiationError> {
        let invalid = |kind| NegotiationError::InvalidState {
            operation: Operation::SetRemote(kind),
            state,
        };
        match desc.kind {
            SdpType::Rollback => {
                if !matches!(
                    state,
                    SignalingState::HaveLocalOffer | SignalingState::HaveRemoteOffer
                ) {
                    return Err(invalid(SdpType::Rollback));
                }
                Ok(self.rollback())
            }
            SdpType::Offer => {
                if !matches!(
                    state,
                    SignalingState::Stable
                        | SignalingState::HaveRemoteOffer
                        | SignalingState::HaveLocalOffer
                ) {
                    return Err(invalid(SdpType::Offer));
                }
                let sdp = Sdp::parse(&desc.sdp)?;
                validate_remote(&sdp, SdpType::Offer)?;
                self.check_offer_against_slots(&sdp)?;
                if sdp.media.len() > MAX_TRANSCEIVERS {
                    return Err(NegotiationError::OfferMismatch {
                        index: MAX_TRANSCEIVERS,
                    });
                }
                // Glare: a remote offer in have-local-offer rolls our offer back (W3C implicit rollback).
                if state == SignalingState::HaveLocalOffer {
                    self.rollback();
                }
                if state != SignalingState::HaveRemoteOffer {
                    self.take_snapshot();
                }
                let plan = self.associate_remote_offer(config, &sdp);
                self.remote_offer_plan = Some(plan);
                let mut applied = Applied::new(SignalingState::HaveRemoteOffer);
                let remote_ice = remote_ice_of(&sdp);
                let fresh = remote_ice
                    .as_ref()
                    .is_some_and(|ri| self.remote_ufrag.as_deref() != Some(ri.ufrag.as_str()));
                if let Some(ri) = &remote_ice {
                    let restarted = self.remote_ufrag.as_deref().is_some_and(|u| u != ri.ufrag);
                    if restarted {
                        // The remote restarted ICE: our answer restarts too (RFC 8445 9).
                        applied.local_ice_restart = Some(IceRestart {
                            ufrag: self.rng.ice_chars(8),
                            pwd: self.rng.ice_chars(24),
                        });
                        self.roles_set = false;
                    }
                    if !self.roles_set {
                        // The answerer is controlled, unless only the offerer runs ICE-lite.
                        applied.controlling = Some(ri.lite && !config.ice_lite);
                        self.roles_set = true;
                    }
                    self.remote_ufrag = Some(ri.ufrag.clone());
                }
                // Candidates and credentials go to ICE only when they are new (first
                // negotiation or a restart); a renegotiation repeats them.
                applied.remote_ice = remote_ice.filter(|_| fresh);
                self.pending_remote = Some((SdpType::Offer, sdp));
                Ok(applied)
            }
            SdpType::Answer | SdpType::Pranswer => {
                if !matches!(
                    state,
                    SignalingState::HaveLocalOffer | SignalingState::HaveRemotePranswer
                ) {
                    return Err(invalid(desc.kind));
                }
                let sdp = Sdp::parse(&desc.sdp)?;
                validate_remote(&sdp, SdpType::Answer)?;
                let Some((_, offer)) = self.pending_local.clone() else {
                    return Err(invalid(desc.kind));
                };
                check_answer_matches(&offer, &sdp)?;
                let mut applied = Applied::new(if desc.kind == SdpType::Answer {
                    SignalingState::Stable
                } else {
                    SignalingState::HaveRemotePranswer
                });
                let remote_ice = remote_ice_of(&sdp);
                let fresh = remote_ice
                    .as_ref()
                    .is_some_and(|ri| self.remote_ufrag.as_deref() != Some(ri.ufrag.as_str()));
                if let Some(ri) = &remote_ice {
                    if ri.lite && !config.ice_lite {
                        applied.controlling = Some(true);
                    }
                    self.remote_ufrag = Some(ri.ufrag.clone());
                }
                applied.remote_ice = remote_ice.filter(|_| fresh);
                if desc.kind == SdpType::Pranswer {
                    self.pending_remote = Some((SdpType::Pranswer, sdp));
                    return Ok(applied);
                }
                self.settle_answer(&offer, &sdp);
                self.finish_stopping(&sdp);
                applied.dtls = dtls_params(&sdp, &sdp, false);
                self.current_local = Some((SdpType::Offer, offer));
                self.pending_local = None;
                self.current_remote = Some((SdpType::Answer, sdp));
                self.pending_remote = None;
                self.snapshot = None;
                Ok(applied)
            }
        }
    }

    /// A subsequent remote offer keeps the negotiated m-lines (kind and mid), except ones
    /// rejected on both sides, which it may recycle.
    fn check_offer_against_slots(&self, sdp: &Sdp) -> Result<(), NegotiationError> {
        if sdp.media.len() < self.slots.len() {
            return Err(NegotiationError::OfferMismatch {
                index: sdp.media.len(),
            });
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(m) = sdp.media.get(i) else { continue };
            if self.slot_recyclable(i) {
                continue;
            }
            let same_mid = m.mid.as_deref() == Some(slot.mid.as_str()) || m.mid.is_none();
            let same_kind = match &slot.kind {
                SlotKind::Transceiver(id) => self
                    .transceiver(*id)
                    .is_some_and(|t| jsep::media_kind(m) == Some(t.kind)),
                SlotKind::Foreign(f) => f.media_type == m.media_type,
                SlotKind::Data => m.media_type == MediaType::Application,
            };
            if !same_mid || !same_kind {
                return Err(NegotiationError::OfferMismatch { index: i });
            }
        }
        Ok(())
    }

    /// Find or create the transceiver of each m-line of a remote offer (JSEP 5.10).
    fn associate_remote_offer(&mut self, _config: &Config, sdp: &Sdp) -> Vec<Slot> {
        let mut plan = Vec::with_capacity(sdp.media.len());
        for (i, m) in sdp.media.iter().enumerate() {
            let mid = m.mid.clone().unwrap_or_else(|| i.to_string());
            let existing = self
                .slots
                .get(i)
                .filter(|_| !self.slot_recyclable(i))
                .cloned();
            let kind = jsep::media_kind(m).filter(|_| m.protocol.contains("RTP"));
            let slot_kind = match (existing, kind) {
                (
                    Some(Slot {
                        kind: SlotKind::Transceiver(id),
                        ..
                    }),
                    _,
                ) => SlotKind::Transceiver(id),
                (
                    Some(Slot {
                        kind: SlotKind::Foreign(f),
                        ..
                    }),
                    _,
                ) => SlotKind::Foreign(f),
                (
                    Some(Slot {
                        kind: SlotKind::Data,
                        ..
                    }),
                    _,
                ) => SlotKind::Data,
                (None, None)
                    if jsep::is_data_media(m)
                        && !m.is_rejected()
                        && !plan.iter().any(|s: &Slot| matches!(s.kind, SlotKind::Data))
                        && !self.slots.iter().any(|s| matches!(s.kind, SlotKind::Data)) =>
                {
                    SlotKind::Data
                }
                (None, Some(kind)) if !m.is_rejected() => {
                    let reusable = self
                        .transceivers
                        .iter()
                        .find(|t| {
                            t.kind == kind
                                && t.mid.is_none()
                                && !t.stopping
                                && !t.stopped
                                && !t.created_by_remote_offer
                        })
                        .map(|t| t.id);
                    let id = reusable.unwrap_or_else(|| {
                        self.add_transceiver(
                            kind,
                            TransceiverInit {
                                direction: Direction::RecvOnly,
                                stream_ids: Vec::new(),
                            },
                            true,
                        )
                    });
                    if let Some(t) = self.transceiver_mut(id) {
                        t.mid = Some(mid.clone());
                        t.mline_index = Some(i);
                    }
                    SlotKind::Transceiver(id)
                }
                (None, _) => SlotKind::Foreign(Box::new(m.clone())),
            };
            if let SlotKind::Transceiver(id) = slot_kind {
                if let Some(t) = self.transceiver_mut(id) {
                    t.remote = remote_track_info(m);
                }
            }
            plan.push(Slot {
                mid,
                kind: slot_kind,
            });
        }
        plan
    }

    /// Settle codecs, extensions and directions from the remote answer to our offer.
    fn settle_answer(&mut self, offer: &Sdp, answer: &Sdp) {
        for (i, (o, a)) in offer.media.iter().zip(answer.media.iter()).enumerate() {
            let Some(SlotKind::Transceiver(id)) = self.slots.get(i).map(|s| s.kind.clone()) else {
                continue;
            };
            let Some(t) = self.transceiver_mut(id) else {
                continue;
            };
            if o.is_rejected() || a.is_rejected() {
                t.current_direction = None;
                continue;
            }
            let offered: Vec<NegotiatedCodec> = jsep::answer_codecs(&[], o);
            let offered = if offered.is_empty() {
                codecs_of(o)
            } else {
                offered
            };
            t.codecs = jsep::settle_answer_codecs(&offered, a);
            let offered_exts: Vec<(u16, String)> =
                o.extmaps.iter().map(|x| (x.id, x.uri.clone())).collect();
            t.header_extensions = jsep::settle_answer_extensions(&offered_exts, a);
            t.current_direction = Some(a.direction_or_default().reverse());
            t.remote = remote_track_info(a);
        }
    }

    // ------------------------------------------------------------ negotiation-needed

    /// W3C "check if negotiation is needed", for a stable signaling state.
    pub(crate) fn is_negotiation_needed(&self) -> bool {
        if self.ice_restart_requested {
            return true;
        }
        let Some((local_kind, local)) = self.current_local.as_ref() else {
            return self.data_wanted || self.transceivers.iter().any(|t| !t.stopped);
        };
        if self.data_wanted && !self.slots.iter().any(|s| matches!(s.kind, SlotKind::Data)) {
            return true;
        }
        let remote = self.current_remote.as_ref().map(|(_, s)| s);
        for t in &self.transceivers {
            if t.stopped {
                continue;
            }
            if t.stopping || t.mid.is_none() {
                return true;
            }
            let Some(m) = t.mline_index.and_then(|i| local.media.get(i)) else {
                return true;
            };
            if m.is_rejected() {
                continue;
            }
            if t.direction.sends() && t.has_track && m.msids.is_empty() {
                return true;
            }
            let written = m.direction_or_default();
            let wanted = match local_kind {
                SdpType::Offer => t.direction,
                _ => {
                    let offered = t
                        .mline_index
                        .and_then(|i| remote.and_then(|r| r.media.get(i)))
                        .map(|r| r.direction_or_default())
                        .unwrap_or(Direction::SendRecv);
                    jsep::answer_direction(t.direction, offered)
                }
            };
            if written != wanted {
                return true;
            }
        }
        false
    }
}

/// Our DTLS role and the peer's fingerprint from a settled answer. `answer` is the answer
/// (ours when `we_answered`), `remote` the description carrying the peer's fingerprint.
/// The answer's `a=setup:active` side is the DTLS client (RFC 8842).
fn dtls_params(answer: &Sdp, remote: &Sdp, we_answered: bool) -> Option<(DtlsRole, Fingerprint)> {
    let answer_media = answer.media.iter().find(|m| !m.is_rejected())?;
    let answerer_active = answer.setup_of(answer_media)? == Setup::Active;
    let role = if answerer_active == we_answered {
        DtlsRole::Client
    } else {
        DtlsRole::Server
    };
    let remote_media = remote.media.iter().find(|m| !m.is_rejected())?;
    let fp = remote
        .fingerprints_of(remote_media)
        .iter()
        .find(|f| f.algorithm.eq_ignore_ascii_case("sha-256"))
        .or_else(|| remote.fingerprints_of(remote_media).first())?;
    Some((
        role,
        Fingerprint {
            algorithm: fp.algorithm.to_ascii_lowercase(),
            value: fp.value.clone(),
        },
    ))
}

/// The codecs listed in one of our own offered m-lines.
fn codecs_of(m: &Media) -> Vec<NegotiatedCodec> {
    m.rtpmaps
        .iter()
        .map(|r| NegotiatedCodec {
            payload_type: r.payload_type,
            name: r.encoding.clone(),
            clock_rate: r.clock_rate,
            channels: r.channels,
            fmtp: m.fmtp(r.payload_type).map(str::to_string),
            rtcp_feedback: m
                .rtcp_fbs
                .iter()
                .filter(|f| f.payload_type == Some(r.payload_type) || f.payload_type.is_none())
                .map(|f| f.value.clone())
                .collect(),
        })
        .collect()
}

fn remote_track_info(m: &Media) -> RemoteTrackInfo {
    let mut ssrcs: Vec<u32> = Vec::new();
    for s in &m.ssrcs {
        if !ssrcs.contains(&s.ssrc) {
            ssrcs.push(s.ssrc);
        }
    }
    RemoteTrackInfo {
        stream_ids: m
            .msids
            .iter()
            .map(|x| x.stream_id.clone())
            .filter(|s| s != "-")
            .collect(),
        track_id: m.msids.first().and_then(|x| x.track_id.clone()),
        ssrcs,
        rids: m
            .rids
            .iter()
            .filter(|r| r.direction == RidDirection::Send)
            .map(|r| r.id.clone())
            .collect(),
        rtx_ssrcs: m
            .ssrc_groups
            .iter()
            .filter(|g| g.semantics.eq_ignore_ascii_case("FID"))
            .filter_map(|g| Some((*g.ssrcs.first()?, *g.ssrcs.get(1)?)))
            .take(crate::media::session::MAX_SSRCS)
            .collect(),
    }
}

/// Checks every accepted m-line of a remote description must pass before anything changes.
fn validate_remote(sdp: &Sdp, kind: SdpType) -> Result<(), NegotiationError> {
    let mut mids: Vec<&str> = Vec::new();
    let mut ufrag: Option<&str> = None;
    for (index, m) in sdp.media.iter().enumerate() {
        if let Some(mid) = m.mid.as_deref() {
            if mids.contains(&mid) {
                return Err(NegotiationError::DuplicateMid { index });
            }
            mids.push(mid);
        }
        if m.is_rejected() {
            continue;
        }
        if m.mid.is_none() {
            return Err(NegotiationError::MissingMid { index });
        }
        let (Some(u), Some(_)) = (sdp.ice_ufrag_of(m), sdp.ice_pwd_of(m)) else {
            return Err(NegotiationError::MissingIceCredentials { index });
        };
        // BUNDLE with one transport: every accepted m-line shares the ICE credentials.
        match ufrag {
            None => ufrag = Some(u),
            Some(first) if first != u => return Err(NegotiationError::NotBundled { index }),
            Some(_) => {}
        }
        let has_sha256 = sdp
            .fingerprints_of(m)
            .iter()
            .any(|f| f.algorithm.eq_ignore_ascii_case("sha-256") && f.value.len() == 32);
        if !has_sha256 {
            return Err(NegotiationError::MissingFingerprint { index });
        }
        match (kind, sdp.setup_of(m)) {
            (SdpType::Offer, Some(Setup::ActPass | Setup::Active | Setup::Passive)) => {}
            (SdpType::Answer | SdpType::Pranswer, Some(Setup::Active | Setup::Passive)) => {}
            _ => return Err(NegotiationError::InvalidSetup { index }),
        }
        if m.is_rtp() && m.protocol.contains("RTP") && !m.rtcp_mux {
            return Err(NegotiationError::RtcpMuxRequired { index });
        }
    }
    Ok(())
}

/// The answer has the offer's m-lines, same kinds and mids, in the same order.
fn check_answer_matches(offer: &Sdp, answer: &Sdp) -> Result<(), NegotiationError> {
    if offer.media.len() != answer.media.len() {
        return Err(NegotiationError::AnswerMismatch {
            index: offer.media.len().min(answer.media.len()),
        });
    }
    for (index, (o, a)) in offer.media.iter().zip(answer.media.iter()).enumerate() {
        let mid_ok = a.mid.is_none() || a.mid == o.mid;
        if o.media_type != a.media_type || !mid_ok || (o.is_rejected() && !a.is_rejected()) {
            return Err(NegotiationError::AnswerMismatch { index });
        }
    }
    Ok(())
}

/// The ICE parameters of the (bundled) transport of a remote description.
fn remote_ice_of(sdp: &Sdp) -> Option<RemoteIce> {
    let first = sdp.media.iter().find(|m| !m.is_rejected())?;
    let mut candidates = Vec::new();
    let mut end = false;
    for m in sdp.media.iter().filter(|m| !m.is_rejected()) {
        for c in &m.candidates {
            if !candidates.contains(c) {
                candidates.push(c.clone());
            }
        }
        end |= m.end_of_candidates;
    }
    Some(RemoteIce {
        ufrag: sdp.ice_ufrag_of(first)?.to_string(),
        pwd: sdp.ice_pwd_of(first)?.to_string(),
        lite: sdp.ice_lite,
        candidates,
        end_of_candidates: end,
    })
}

#[cfg(test)]
mod tests {
    use super::MidAllocator;

    #[test]
    fn mids_skip_used_numbers_only() {
        // "01", "+2" and "audio" never equal a decimal candidate; "1" and "3" do.
        let mut mids = MidAllocator::new(["1", "3", "01", "+2", "audio"].into_iter());
        let given: Vec<String> = (0..4).map(|_| mids.take()).collect();
        assert_eq!(given, ["0", "2", "4", "5"]);
    }

    #[test]
    fn five_hundred_mids_in_one_pass() {
        let mut mids = MidAllocator::new(std::iter::empty());
        for n in 0..500u32 {
            assert_eq!(mids.take(), n.to_string());
        }
    }
}
