//! The `whip_whep` example's server: a small broadcast service on one UDP socket for all
//! peers (the core's `Endpoint`, driven in server mode).
//!
//! - WHIP ingest (RFC 9725): `POST /whip` with an `application/sdp` offer answers
//!   `201 Created` with the SDP answer and a `Location`; `DELETE` on it ends the session;
//!   `PATCH` with `application/trickle-ice-sdpfrag` (RFC 8840) trickles candidates
//!   (`204`) or, with new ICE credentials, restarts ICE (`200` with our new fragment).
//! - WHEP playback: `POST /whep` likewise; every viewer receives the current publisher's
//!   audio and video (payload types mapped by codec), and a joining viewer makes the
//!   server ask the publisher for a keyframe so its first frame comes quickly.
//! - Pages: `/` (links), `/publish` (a WHIP client), `/watch` (a WHEP player).
//!
//! One publisher at a time: a `POST /whip` while one is live gets `409 Conflict` (the
//! live one can `DELETE` its resource and publish again). Resource URLs carry a random
//! 128-bit id from the OS, so nobody can guess another session's URL to end or patch it.
//! With a token (`--token TOKEN`, off by default for the local demo) every WHIP and WHEP
//! request (POST, PATCH, DELETE) needs `Authorization: Bearer TOKEN` (RFC 9725 6.2; 401
//! otherwise); the pages take it from their URL's fragment (`/publish#token=TOKEN`).
//! Bad requests get a 4xx with a message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sansrtc::media::{NegotiatedCodec, RtpPacket};
use sansrtc::peer::NegotiationError;
use sansrtc::sdp::SdpType;
use sansrtc::{
    Config, ConnectionState, Event, IceCandidateInit, MediaKind, PeerConnection, PeerId,
    SessionDescription, TransceiverId,
};
use sansrtc_std::{Options, ServerHandle};

use crate::http::{self, Reply, Request, Response};
use crate::runtime::Runtime;

mod forwarding;
use forwarding::{Forwarding, Outgoing};
use sansrtc::rtp::codec::Codec;

/// Where one publisher packet goes.
type Target = forwarding::Target<PeerId, TransceiverId>;

/// Media types of the protocol.
const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";
/// A viewer resource's layer-selection URL is the resource's with this suffix (the WHEP
/// layer extension: POST `{"encodingId": "h"}`).
const LAYER_SUFFIX: &str = "/layer";
/// The link relation that advertises it.
const LAYER_REL: &str = "urn:ietf:params:whep:ext:core:layer";
/// Keyframe requests to the publisher are sent at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// How the server runs: the PeerConnection configuration of every session, the HTTP
/// limits (`max_sessions` bounds publisher plus viewers) and the bearer token.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Every session's configuration.
    pub config: Config,
    /// The HTTP server's limits.
    pub limits: http::Limits,
    /// When set, WHIP and WHEP requests need `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config: broadcast_config(),
            limits: http::Limits::default(),
            token: None,
        }
    }
}

/// A resource id: 128 bits from the operating system's generator, in hex.
fn random_resource_id() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compare secrets without an early exit on the first differing byte.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Viewer,
}

/// One of a peer's transceivers: its kind and negotiated codecs.
#[derive(Debug, Clone)]
struct Track {
    id: TransceiverId,
    kind: MediaKind,
    codecs: Vec<NegotiatedCodec>,
}

#[derive(Debug)]
struct Session {
    peer: PeerId,
    role: Role,
    tracks: Vec<Track>,
    etag: u64,
}

/// One publisher track's route: its kind, its payload types whose keyframes the core's
/// codec layer recognises, and the viewers' transceivers it may go to.
#[derive(Debug, Clone)]
struct Route {
    kind: MediaKind,
    codecs: Vec<(u8, Codec)>,
    targets: Vec<Target>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    by_peer: HashMap<PeerId, String>,
    publisher: Option<String>,
    /// Per publisher transceiver: where its packets go. Rebuilt when sessions change.
    routes: HashMap<TransceiverId, Route>,
    /// What each viewer is sent: layer choice, rewriting, cached pictures.
    forwarding: Forwarding<PeerId, TransceiverId>,
    last_keyframe_request: Option<Instant>,
}

/// Counters the tests read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastStats {
    /// Publisher packets forwarded (once per viewer).
    pub forwarded: u64,
    /// Keyframe requests sent to the publisher.
    pub keyframe_requests: u64,
    /// Sessions ended (DELETE, the peer's goodbye, or failure).
    pub sessions_ended: u64,
    /// Sessions ended by the peer's authenticated goodbye (`Event::RemoteClosed`).
    pub sessions_closed_by_peer: u64,
    /// Simulcast layer switches completed for the live viewers (each viewer's first
    /// layer counts as one).
    pub layer_switches: u64,
    /// Cached picture groups sent to viewers as their connection came up.
    pub groups_replayed: u64,
}

/// The broadcast server.
pub struct Broadcast {
    server: ServerHandle,
    settings: Settings,
    state: Mutex<State>,
    stats: Arc<Mutex<BroadcastStats>>,
}

/// A running server.
pub struct Running {
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The service, for its counters.
    pub broadcast: Arc<Broadcast>,
}

/// Start the server: HTTP on `addr`, media on one UDP socket per `options`.
pub fn start(addr: SocketAddr, runtime: &Runtime, options: Options) -> std::io::Result<Running> {
    start_with_config(addr, runtime, options, broadcast_config())
}

/// The same with a given PeerConnection configuration for every session (tests shorten
/// the consent timeout this way).
pub fn start_with_config(
    addr: SocketAddr,
    runtime: &Runtime,
    options: Options,
    config: Config,
) -> std::io::Result<Running> {
    let settings = Settings {
        config,
        ..Settings::default()
    };
    start_with(addr, runtime, options, settings)
}

/// The same with every setting given.
pub fn start_with(
    addr: SocketAddr,
    runtime: &Runtime,
    options: Options,
    settings: Settings,
) -> std::io::Result<Running> {
    let server = runtime.server(options).map_err(std::io::Error::other)?;
    let limits = settings.limits.clone();
    let broadcast = Arc::new(Broadcast {
        server,
        settings,
        state: Mutex::new(State::default()),
        stats: Arc::default(),
    });
    // One event loop for the whole server (a task; on std a thread), whatever the
    // number of sessions: every peer's events come through the Endpoint's one channel.
    let spawner = runtime.spawner();
    let events = broadcast.clone();
    spawner.spawn(async move { events.run_events().await });
    let routes = broadcast.clone();
    let addr = http::spawn_with(
        addr,
        &spawner,
        limits,
        Arc::new(move |req| {
            let broadcast = routes.clone();
            Reply::Later(Box::pin(async move { broadcast.route(&req).await }))
        }),
    )?;
    Ok(Running { addr, broadcast })
}

/// The default session configuration: Opus and VP8 only (with VP8's RTX format, so
/// retransmissions travel on their own SSRC), so that any publisher's media suits any viewer.
pub fn broadcast_config() -> Config {
    let mut config = Config::default();
    config
        .audio_codecs
        .retain(|c| c.name.eq_ignore_ascii_case("opus"));
    // An RTX format whose codec is gone (apt) is left out of offers and answers.
    config
        .video_codecs
        .retain(|c| c.name.eq_ignore_ascii_case("vp8") || c.is_rtx());
    config
}

impl Broadcast {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut BroadcastStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The counters.
    pub fn stats(&self) -> BroadcastStats {
        let switches = self.state().forwarding.switches();
        let mut stats = *self.stats.lock().unwrap_or_else(|e| e.into_inner());
        stats.layer_switches = switches;
        stats
    }

    /// The publisher's simulcast layers that have sent video.
    pub fn layers_sending(&self) -> Vec<String> {
        self.state().forwarding.layers_sending()
    }

    /// How many sessions are live (publisher and viewers).
    pub fn sessions(&self) -> usize {
        self.state().sessions.len()
    }

    /// How many PeerConnections the server's Endpoint holds (sessions being closed
    /// included until their goodbyes are sent). It waits for the driver's answer: for
    /// tests and other threads, never for a task (the server's own code awaits it).
    pub fn endpoint_peers(&self) -> usize {
        block_on(self.endpoint_peers_async())
    }

    async fn endpoint_peers_async(&self) -> usize {
        self.server
            .call(|endpoint, _| endpoint.len())
            .await
            .unwrap_or(0)
    }

    /// This server's part of `/stats`: sessions, the Endpoint's peers, the counters.
    async fn stats_json(&self) -> serde_json::Value {
        let s = self.stats();
        serde_json::json!({
            "sessions_live": self.sessions(),
            "endpoint_peers": self.endpoint_peers_async().await,
            "forwarded": s.forwarded,
            "keyframe_requests": s.keyframe_requests,
            "sessions_ended": s.sessions_ended,
            "sessions_closed_by_peer": s.sessions_closed_by_peer,
            "layer_switches": s.layer_switches,
            "groups_replayed": s.groups_replayed,
            "layers": self.state().forwarding.layers(),
        })
    }

    /// Whether the request carries the bearer token (or none is needed).
    fn authorized(&self, req: &Request) -> bool {
        let Some(token) = &self.settings.token else {
            return true;
        };
        req.header("authorization")
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .is_some_and(|given| same_secret(given.trim().as_bytes(), token.as_bytes()))
    }

    async fn route(&self, req: &Request) -> Response {
        let path = req.path.trim_end_matches('/');
        let protected = path.starts_with("/whip") || path.starts_with("/whep");
        if protected && !self.authorized(req) {
            return Response::text(401, "a valid bearer token is needed")
                .header("WWW-Authenticate", "Bearer");
        }
        match (req.method.as_str(), path) {
            ("GET", "") => Response::html(INDEX_PAGE),
            ("GET", "/stats") => crate::stats::response(self.stats_json().await),
            ("GET", "/publish") => Response::html(PUBLISH_PAGE),
            ("GET", "/watch") => Response::html(WATCH_PAGE),
            ("POST", "/whip") => self.create(req, Role::Publisher).await,
            ("POST", "/whep") => self.create(req, Role::Viewer).await,
            (_, "/whip" | "/whep") => {
                Response::text(405, "POST an SDP offer here").header("Allow", "POST")
            }
            ("POST", p) if p.starts_with("/whep/") && p.ends_with(LAYER_SUFFIX) => {
                let id = &p["/whep/".len()..p.len() - LAYER_SUFFIX.len()];
                self.select_layer(req, id).await
            }
            (method, p) => {
                let resource = p
                    .strip_prefix("/whip/")
                    .map(|id| (id, Role::Publisher))
                    .or_else(|| p.strip_prefix("/whep/").map(|id| (id, Role::Viewer)))
                    .filter(|(id, role)| {
                        self.state()
                            .sessions
                            .get(*id)
                            .is_some_and(|s| s.role == *role)
                    })
                    .map(|(id, _)| id.to_string());
                let Some(resource) = resource else {
                    return Response::text(404, format!("no such resource: {}", req.path));
                };
                match method {
                    "DELETE" => self.delete(&resource).await,
                    "PATCH" => self.patch(req, &resource).await,
                    _ => Response::text(405, "PATCH or DELETE a session")
                        .header("Allow", "PATCH, DELETE"),
                }
            }
        }
    }

    /// POST /whip or /whep.
    async fn create(&self, req: &Request, role: Role) -> Response {
        if req.content_type().as_deref() != Some(SDP) {
            return Response::text(415, format!("the offer must be sent as {SDP}"));
        }
        let Some(sdp) = req.text().filter(|s| !s.trim().is_empty()) else {
            return Response::text(400, "empty or non-UTF-8 offer");
        };
        let offer = SessionDescription {
            kind: SdpType::Offer,
            sdp: sdp.to_string(),
        };
        {
            let st = self.state();
            if role == Role::Publisher && st.publisher.is_some() {
                return publishing_conflict();
            }
            if st.sessions.len() >= self.settings.limits.max_sessions {
                return Response::text(503, "the server is full; try again later");
            }
        }
        let layer = req.query_param("layer").map(str::to_string);
        if role == Role::Viewer {
            if let Some(layer) = layer.as_deref() {
                if let Err(e) = self.state().forwarding.check_layer(layer) {
                    return Response::text(400, e.to_string());
                }
            }
            if !self.fresh_groups_for(layer.as_deref()) {
                // Ask before anything else, so that a keyframe is cached by the time the
                // viewer's connection is up (libwebrtc ignores a second request within
                // 300 ms of the last, so asking again at connection would not help).
                self.request_keyframe(true).await;
            }
        }
        // A publisher's simulcast layers, in its offer's order (RFC 8853).
        let layers = if role == Role::Publisher {
            simulcast_layers(&offer.sdp)
        } else {
            Vec::new()
        };
        let Some(resource) = random_resource_id() else {
            return Response::text(500, "no randomness for a resource id");
        };
        let prepare = move |pc: &mut PeerConnection| -> Result<(), NegotiationError> {
            if role == Role::Viewer {
                // Send what the viewer offered to receive (addTrack reuses its transceivers).
                let kinds: Vec<MediaKind> = pc
                    .transceivers()
                    .iter()
                    .filter(|t| !t.stopped && t.direction.receives())
                    .map(|t| t.kind)
                    .collect();
                for kind in kinds {
                    pc.add_track(kind, vec!["broadcast".into()])?;
                }
            }
            Ok(())
        };
        let (peer, answer) = match self
            .server
            .accept_with(self.settings.config.clone(), offer, prepare)
            .await
        {
            Ok(ok) => ok,
            Err(sansrtc_std::Error::Negotiation(e)) => {
                return Response::text(400, format!("cannot answer this offer: {e}"));
            }
            Err(e) => return Response::text(500, format!("server error: {e}")),
        };
        let tracks = self.tracks(peer).await;
        // Another publisher may have come in while this one was being answered.
        let taken = {
            let mut st = self.state();
            let taken = role == Role::Publisher && st.publisher.is_some();
            if !taken {
                st.sessions.insert(
                    resource.clone(),
                    Session {
                        peer,
                        role,
                        tracks,
                        etag: 1,
                    },
                );
                st.by_peer.insert(peer, resource.clone());
                if role == Role::Publisher {
                    st.publisher = Some(resource.clone());
                    st.forwarding.publisher_started(layers);
                } else {
                    st.forwarding.add_viewer(peer, layer);
                }
                rebuild_routes(&mut st);
            }
            taken
        };
        if taken {
            let _ = self.server.remove(peer).await;
            return publishing_conflict();
        }
        let (base, response) = if role == Role::Publisher {
            ("/whip", Response::empty(201))
        } else {
            (
                "/whep",
                Response::empty(201).header(
                    "Link",
                    format!("</whep/{resource}{LAYER_SUFFIX}>; rel=\"{LAYER_REL}\""),
                ),
            )
        };
        response
            .header("Content-Type", SDP)
            .header("Location", format!("{base}/{resource}"))
            .header("ETag", format!("\"{resource}-1\""))
            .body(answer.sdp.into_bytes())
    }

    async fn tracks(&self, peer: PeerId) -> Vec<Track> {
        self.server
            .with_peer(peer, |pc, _| {
                pc.transceivers()
                    .iter()
                    .map(|t| Track {
                        id: t.id,
                        kind: t.kind,
                        codecs: t.codecs.clone(),
                    })
                    .collect()
            })
            .await
            .unwrap_or_default()
    }

    /// DELETE: end the session.
    async fn delete(&self, resource: &str) -> Response {
        if self.end(resource).await {
            Response::empty(200)
        } else {
            Response::text(404, "no such session")
        }
    }

    /// End a session: close its peer (without waiting for the driver) and forget it.
    /// False if unknown.
    async fn end(&self, resource: &str) -> bool {
        let peer = {
            let mut st = self.state();
            let Some(session) = st.sessions.remove(resource) else {
                return false;
            };
            st.by_peer.remove(&session.peer);
            st.forwarding.remove_viewer(session.peer);
            if st.publisher.as_deref() == Some(resource) {
                st.publisher = None;
                st.forwarding.publisher_ended();
            }
            rebuild_routes(&mut st);
            session.peer
        };
        let _ = self
            .server
            .cast(move |endpoint, now| {
                endpoint.close_peer(now, peer);
            })
            .await;
        self.count(|s| s.sessions_ended += 1);
        true
    }

    /// PATCH: trickle candidates, or restart ICE when the fragment has new credentials.
    async fn patch(&self, req: &Request, resource: &str) -> Response {
        let (peer, etag) = match self.state().sessions.get(resource) {
            Some(s) => (s.peer, s.etag),
            None => return Response::text(404, "no such session"),
        };
        if req.content_type().as_deref() != Some(SDPFRAG) {
            return Response::text(415, format!("send an SDP fragment as {SDPFRAG}"));
        }
        let Some(text) = req.text() else {
            return Response::text(400, "the fragment is not UTF-8");
        };
        let frag = match SdpFrag::parse(text) {
            Ok(f) => f,
            Err(e) => return Response::text(400, e),
        };
        let current_ufrag = self
            .server
            .with_peer(peer, |pc, _| {
                pc.remote_description()
                    .and_then(|d| ice_credentials(&d.sdp).map(|(u, _)| u))
            })
            .await
            .ok()
            .flatten();
        let restart = match (&frag.ufrag, &frag.pwd) {
            (Some(u), Some(_)) => current_ufrag.as_deref() != Some(u.as_str()),
            _ => false,
        };
        if !restart {
            if let Some(tag) = req.header("if-match") {
                if tag != "*" && tag != format!("\"{resource}-{etag}\"") {
                    return Response::text(412, "the ETag does not match this ICE session");
                }
            }
        }
        if restart {
            return self.restart(peer, resource, &frag).await;
        }
        let candidates = frag.candidates;
        let added = self
            .server
            .with_peer(peer, move |pc, now| {
                candidates
                    .into_iter()
                    .try_for_each(|c| pc.add_ice_candidate(now, c).map(|_| ()))
            })
            .await;
        match added {
            Ok(Ok(())) => Response::empty(204),
            Ok(Err(e)) => Response::text(422, format!("candidate refused: {e}")),
            Err(_) => Response::text(404, "no such session"),
        }
    }

    /// An ICE restart from the client (RFC 9725 4.4.1): apply its new credentials as a new
    /// remote offer, answer, and return our new credentials and candidates.
    async fn restart(&self, peer: PeerId, resource: &str, frag: &SdpFrag) -> Response {
        let (Some(ufrag), Some(pwd)) = (frag.ufrag.clone(), frag.pwd.clone()) else {
            return Response::text(400, "an ICE restart needs ice-ufrag and ice-pwd");
        };
        let candidates = frag.candidates.clone();
        let result = self.server.with_peer(peer, move |pc, now| {
            let remote = pc.remote_description().ok_or("no remote description")?;
            let sdp = replace_ice_credentials(&remote.sdp, &ufrag, &pwd);
            let offer = SessionDescription {
                kind: SdpType::Offer,
                sdp,
            };
            pc.set_remote_description(now, offer)
                .map_err(|_| "the restarted offer was refused")?;
            let answer = pc
                .create_answer()
                .map_err(|_| "cannot answer the restart")?;
            pc.set_local_description(now, answer)
                .map_err(|_| "cannot apply our answer")?;
            for c in candidates {
                let _ = pc.add_ice_candidate(now, c);
            }
            pc.local_description().ok_or("no local description")
        });
        let result = result.await;
        let local = match result {
            Ok(Ok(local)) => local,
            Ok(Err(e)) => return Response::text(400, e),
            Err(_) => return Response::text(404, "no such session"),
        };
        let etag = {
            let mut st = self.state();
            match st.sessions.get_mut(resource) {
                Some(s) => {
                    s.etag += 1;
                    s.etag
                }
                None => return Response::text(404, "no such session"),
            }
        };
        Response::empty(200)
            .header("Content-Type", SDPFRAG)
            .header("ETag", format!("\"{resource}-{etag}\""))
            .body(answer_fragment(&local.sdp).into_bytes())
    }

    /// Ask the publisher for a keyframe on its video tracks (rate limited unless forced).
    async fn request_keyframe(&self, force: bool) {
        let (peer, videos) = {
            let mut st = self.state();
            let now = Instant::now();
            if !force
                && st
                    .last_keyframe_request
                    .is_some_and(|t| now.duration_since(t) < KEYFRAME_INTERVAL)
            {
                return;
            }
            let Some(publisher) = st.publisher.as_ref().and_then(|r| st.sessions.get(r)) else {
                return;
            };
            let peer = publisher.peer;
            let videos: Vec<TransceiverId> = publisher
                .tracks
                .iter()
                .filter(|t| t.kind == MediaKind::Video)
                .map(|t| t.id)
                .collect();
            st.last_keyframe_request = Some(now);
            (peer, videos)
        };
        // Fire and forget: the event loop calls this and must never wait for the
        // driver.
        let stats = self.stats.clone();
        let request = self.server.cast(move |endpoint, _| {
            let sent = endpoint
                .with_peer(peer, |pc| {
                    videos
                        .into_iter()
                        .filter(|t| pc.request_keyframe(*t).is_ok())
                        .count()
                })
                .unwrap_or(0);
            stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .keyframe_requests += sent as u64;
        });
        let _ = request.await;
    }

    /// Forward media and react to peers' events, until the server stops. Nothing here
    /// waits for the driver's answer: `cast` only waits for room in its command queue,
    /// which the driver empties even while its event queue is full, so this loop cannot
    /// block the driver nor be blocked by it for long.
    async fn run_events(&self) {
        while let Some((peer, event)) = self.server.next_event().await {
            match event {
                Event::Rtp {
                    track: transceiver,
                    rid,
                    packet,
                } => self.forward(peer, transceiver, &rid, &packet).await,
                Event::KeyframeRequest(_) => {
                    let is_viewer = {
                        let st = self.state();
                        st.by_peer
                            .get(&peer)
                            .and_then(|r| st.sessions.get(r))
                            .is_some_and(|s| s.role == Role::Viewer)
                    };
                    if is_viewer {
                        self.request_keyframe(false).await;
                    }
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => {
                    self.connected(peer).await;
                }
                // The peer closed (authenticated goodbye) or the connection failed: the
                // resource ends and the Endpoint releases the peer now.
                Event::ConnectionStateChange(ConnectionState::Failed | ConnectionState::Closed)
                | Event::RemoteClosed(_) => {
                    if matches!(event, Event::RemoteClosed(_)) {
                        self.count(|s| s.sessions_closed_by_peer += 1);
                    }
                    let resource = self.state().by_peer.get(&peer).cloned();
                    if let Some(resource) = resource {
                        self.end(&resource).await;
                    }
                }
                _ => {}
            }
        }
    }

    /// A peer's connection is up. A viewer is sent the cached picture group of each
    /// video track (its first frame need not wait for a keyframe); the publisher is asked
    /// for a keyframe when a viewer still waits for one (or when the publisher itself
    /// has just connected, so the cache fills).
    async fn connected(&self, peer: PeerId) {
        let now = Instant::now();
        let mut out = Vec::new();
        let wanted = {
            let mut st = self.state();
            let is_viewer = st
                .by_peer
                .get(&peer)
                .and_then(|r| st.sessions.get(r))
                .is_some_and(|s| s.role == Role::Viewer);
            if is_viewer {
                let State {
                    routes, forwarding, ..
                } = &mut *st;
                let video = routes
                    .iter()
                    .filter(|(_, r)| r.kind == MediaKind::Video)
                    .map(|(id, r)| (*id, &r.targets[..]));
                forwarding.viewer_connected(now, peer, video, &mut out);
            }
            !is_viewer || st.forwarding.keyframe_wanted()
        };
        if !out.is_empty() {
            self.count(|s| s.groups_replayed += 1);
        }
        self.send(out).await;
        if wanted {
            self.request_keyframe(true).await;
        }
    }

    /// Whether every video track of the publisher has a fresh cached group in this layer
    /// (`None`: the default one).
    fn fresh_groups_for(&self, layer: Option<&str>) -> bool {
        let now = Instant::now();
        let st = self.state();
        let mut videos = st
            .routes
            .iter()
            .filter(|(_, r)| r.kind == MediaKind::Video)
            .peekable();
        videos.peek().is_some()
            && videos.all(|(id, _)| st.forwarding.has_fresh_group(now, *id, layer))
    }

    async fn forward(
        &self,
        peer: PeerId,
        transceiver: TransceiverId,
        rid: &Option<String>,
        packet: &RtpPacket,
    ) {
        let now = Instant::now();
        let mut out = Vec::new();
        let wanted = {
            let mut st = self.state();
            let from_publisher = st
                .publisher
                .as_ref()
                .and_then(|r| st.sessions.get(r))
                .is_some_and(|s| s.peer == peer);
            if !from_publisher {
                return;
            }
            let State {
                routes, forwarding, ..
            } = &mut *st;
            let Some(route) = routes.get(&transceiver) else {
                return;
            };
            let keyframe_start = route
                .codecs
                .iter()
                .find(|(pt, _)| *pt == packet.payload_type)
                .is_some_and(|(_, codec)| codec.starts_keyframe(&packet.payload));
            forwarding.publisher_packet(
                now,
                transceiver,
                route.kind,
                rid,
                packet,
                keyframe_start,
                &route.targets,
                &mut out,
            );
            route.kind == MediaKind::Video && forwarding.keyframe_wanted()
        };
        self.send(out).await;
        if wanted {
            self.request_keyframe(false).await;
        }
    }

    /// Send packets to viewers, in one command to the driver (never waiting for its
    /// answer).
    async fn send(&self, out: Vec<Outgoing<PeerId, TransceiverId>>) {
        if out.is_empty() {
            return;
        }
        let n = out.len() as u64;
        let sent = self.server.cast(move |endpoint, _| {
            for o in &out {
                endpoint.with_peer(o.peer, |pc| {
                    let _ = pc.send_rtp(o.transceiver, &o.packet);
                });
            }
        });
        let _ = sent.await;
        self.count(|s| s.forwarded += n);
    }

    /// POST /whep/{id}/layer with `{"encodingId": "<rid>"}`: switch the viewer to that
    /// simulcast layer (from its next keyframe, which is asked for now).
    async fn select_layer(&self, req: &Request, resource: &str) -> Response {
        let peer = match self.state().sessions.get(resource) {
            Some(s) if s.role == Role::Viewer => s.peer,
            _ => return Response::text(404, format!("no such resource: {}", req.path)),
        };
        let layer = serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()
            .and_then(|v| v.get("encodingId")?.as_str().map(str::to_string));
        let Some(layer) = layer else {
            return Response::text(400, "send {\"encodingId\": \"<rid>\"}");
        };
        let switched = self.state().forwarding.select_layer(peer, layer);
        match switched {
            Err(e) => Response::text(400, e.to_string()),
            Ok(_) => {
                self.request_keyframe(true).await;
                Response::empty(204)
            }
        }
    }
}

/// The rids of the first media section's `a=simulcast` send list (the publisher's
/// layers), first alternative of each stream, in order.
fn simulcast_layers(offer: &str) -> Vec<String> {
    let Ok(sdp) = sansrtc::sdp::Sdp::parse(offer) else {
        return Vec::new();
    };
    sdp.media
        .iter()
        .filter_map(|m| m.simulcast.as_ref())
        .flat_map(|s| s.send.iter().filter_map(|alts| alts.first()))
        .map(|stream| stream.rid.clone())
        .collect()
}

fn publishing_conflict() -> Response {
    Response::text(
        409,
        "a publisher is live; it can DELETE its resource before publishing again",
    )
}

/// Recompute where each publisher transceiver's packets go.
fn rebuild_routes(st: &mut State) {
    st.routes.clear();
    let Some(publisher) = st.publisher.as_ref().and_then(|r| st.sessions.get(r)) else {
        return;
    };
    for source in &publisher.tracks {
        let mut targets = Vec::new();
        for viewer in st.sessions.values().filter(|s| s.role == Role::Viewer) {
            let Some(sink) = viewer.tracks.iter().find(|t| t.kind == source.kind) else {
                continue;
            };
            let payload_types: Vec<(u8, u8)> = source
                .codecs
                .iter()
                .filter_map(|c| {
                    sink.codecs
                        .iter()
                        .find(|d| {
                            d.name.eq_ignore_ascii_case(&c.name) && d.clock_rate == c.clock_rate
                        })
                        .map(|d| (c.payload_type, d.payload_type))
                })
                .collect();
            targets.push(Target {
                peer: viewer.peer,
                transceiver: sink.id,
                payload_types,
            });
        }
        let codecs = source
            .codecs
            .iter()
            .filter_map(|c| Some((c.payload_type, Codec::from_name(&c.name)?)))
            .collect();
        st.routes.insert(
            source.id,
            Route {
                kind: source.kind,
                codecs,
                targets,
            },
        );
    }
}

/// An RFC 8840 SDP fragment: ICE credentials and candidates per media section.
#[derive(Debug, Default, Clone)]
pub struct SdpFrag {
    /// `a=ice-ufrag`.
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
    /// The candidates (an empty one for `a=end-of-candidates`).
    pub candidates: Vec<IceCandidateInit>,
}

impl SdpFrag {
    /// Parse a fragment. Unknown lines are ignored; a candidate line must be well formed
    /// enough to carry a value.
    pub fn parse(text: &str) -> Result<SdpFrag, String> {
        let mut frag = SdpFrag::default();
        let mut mid: Option<String> = None;
        let mut index: Option<u16> = None;
        for (n, line) in text.lines().map(str::trim).enumerate() {
            if line.is_empty() {
                continue;
            }
            if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
                frag.ufrag = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
                frag.pwd = Some(v.to_string());
            } else if line.starts_with("m=") {
                index = Some(index.map_or(0, |i| i.saturating_add(1)));
                mid = None;
            } else if let Some(v) = line.strip_prefix("a=mid:") {
                mid = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("a=candidate:") {
                if v.split_whitespace().count() < 8 {
                    return Err(format!("line {}: malformed candidate", n + 1));
                }
                frag.candidates.push(IceCandidateInit {
                    candidate: format!("candidate:{v}"),
                    sdp_mid: mid.clone(),
                    sdp_m_line_index: index.or(Some(0)),
                    username_fragment: frag.ufrag.clone(),
                });
            } else if line == "a=end-of-candidates" {
                frag.candidates.push(IceCandidateInit {
                    candidate: String::new(),
                    sdp_mid: mid.clone(),
                    sdp_m_line_index: index.or(Some(0)),
                    username_fragment: frag.ufrag.clone(),
                });
            } else if !line.starts_with("a=") && !line.starts_with("m=") && !line.starts_with("c=")
            {
                return Err(format!(
                    "line {}: not an SDP fragment line: {line:?}",
                    n + 1
                ));
            }
        }
        Ok(frag)
    }
}

/// The first ice-ufrag and ice-pwd of an SDP.
fn ice_credentials(sdp: &str) -> Option<(String, String)> {
    let find = |prefix: &str| {
        sdp.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
    };
    Some((find("a=ice-ufrag:")?, find("a=ice-pwd:")?))
}

fn replace_ice_credentials(sdp: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
        } else if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            // The old generation's candidates do not survive a restart.
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// Our side of an ICE restart as an SDP fragment: credentials, the first media
/// section's mid and our candidates.
fn answer_fragment(local_sdp: &str) -> String {
    let mut out = String::new();
    if let Some((ufrag, pwd)) = ice_credentials(local_sdp) {
        out.push_str(&format!("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n"));
    }
    let mut in_first = false;
    for line in local_sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            if in_first {
                break;
            }
            in_first = true;
            out.push_str(line);
            out.push_str("\r\n");
        } else if in_first && (line.starts_with("a=mid:") || line.starts_with("a=candidate:")) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

/// The index page.
pub const INDEX_PAGE: &str = r#"<!doctype html><html><head><meta charset="utf-8"><title>sansrtc broadcast</title></head>
<body style="font-family:sans-serif;margin:2em"><h1>sansrtc WHIP/WHEP broadcast</h1>
<p><a href="/publish">Publish</a> your camera (WHIP) and <a href="/watch" target="_blank">watch</a> it (WHEP) in another tab.</p>
<p>Any WHIP client (OBS, GStreamer whipsink, ffmpeg) can publish to <code>/whip</code>; any WHEP player can play <code>/whep</code>.</p>
</body></html>
"#;

/// Shared page script: a WHIP/WHEP client with trickle ICE over PATCH (a macro so that
/// `concat!` can put it into both pages).
macro_rules! client_js {
    () => {
        r#"
const status = window.sansrtcStatus = { state: 'new', error: null, resource: null, patches: 0 };
const show = (s) => { status.state = s; document.getElementById('status').textContent = s; };
// A bearer token, when the server wants one, comes in the page's URL fragment (#token=...).
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const auth = token ? { Authorization: `Bearer ${token}` } : {};
async function negotiate(pc, endpoint) {
  const pending = [];
  let resource = null;
  const patch = async (lines) => {
    const r = await fetch(resource, { method: 'PATCH', headers: { ...auth, 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: lines });
    if (r.ok) status.patches++;
  };
  pc.onicecandidate = (e) => {
    const offer = pc.localDescription.sdp;
    const ufrag = (offer.match(/a=ice-ufrag:(.*)/) || [])[1];
    const pwd = (offer.match(/a=ice-pwd:(.*)/) || [])[1];
    const line = e.candidate ? `a=candidate:${e.candidate.candidate.replace(/^candidate:/, '')}` : 'a=end-of-candidates';
    const frag = `a=ice-ufrag:${ufrag.trim()}\r\na=ice-pwd:${pwd.trim()}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:${(e.candidate && e.candidate.sdpMid) || '0'}\r\n${line}\r\n`;
    if (resource) patch(frag); else pending.push(frag);
  };
  pc.onconnectionstatechange = () => show(pc.connectionState);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  status.postAt = performance.now();
  const r = await fetch(endpoint, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/sdp' }, body: offer.sdp });
  if (r.status !== 201) throw new Error(`${endpoint}: ${r.status} ${await r.text()}`);
  status.answerAt = performance.now();
  resource = new URL(r.headers.get('Location'), location.href).href;
  status.resource = resource;
  const link = (r.headers.get('Link') || '').match(/<([^>]*)>;\s*rel="urn:ietf:params:whep:ext:core:layer"/);
  if (link) status.layerUrl = new URL(link[1], location.href).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  for (const frag of pending.splice(0)) patch(frag);
  show('negotiated');
}
window.addEventListener('beforeunload', () => { if (status.resource) fetch(status.resource, { method: 'DELETE', headers: auth, keepalive: true }); });
"#
    };
}

/// The WHIP publishing page.
pub const PUBLISH_PAGE: &str = concat!(
    r#"<!doctype html><html><head><meta charset="utf-8"><title>sansrtc publish</title></head>
<body style="font-family:sans-serif;margin:2em"><h1>Publishing (WHIP)</h1>
<video id="local" autoplay muted playsinline style="width:60%;background:#222"></video><p id="status">starting...</p>
<script>"#,
    client_js!(),
    r#"
(async () => {
  // `/publish?simulcast`: the camera in 1280x720 as three simulcast layers (rids q, h,
  // f: a quarter, half and full resolution); viewers pick one with `/watch?layer=h`.
  const simulcast = new URLSearchParams(location.search).has('simulcast');
  const video = simulcast ? { width: { ideal: 1280 }, height: { ideal: 720 } } : true;
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
  document.getElementById('local').srcObject = stream;
  const pc = window.pc = new RTCPeerConnection();
  for (const track of stream.getTracks()) {
    const init = { direction: 'sendonly', streams: [stream] };
    if (simulcast && track.kind === 'video') {
      init.sendEncodings = [
        { rid: 'q', scaleResolutionDownBy: 4 },
        { rid: 'h', scaleResolutionDownBy: 2 },
        { rid: 'f' },
      ];
    }
    pc.addTransceiver(track, init);
  }
  await negotiate(pc, '/whip');
})().catch((e) => { status.error = String(e); show('error: ' + e); });
</script></body></html>
"#
);

/// The WHEP player page.
pub const WATCH_PAGE: &str = concat!(
    r#"<!doctype html><html><head><meta charset="utf-8"><title>sansrtc watch</title></head>
<body style="font-family:sans-serif;margin:2em"><h1>Watching (WHEP)</h1>
<video id="remote" autoplay muted playsinline controls style="width:60%;background:#222"></video><p id="status">starting...</p>
<script>"#,
    client_js!(),
    r#"
(async () => {
  const pc = window.pc = new RTCPeerConnection();
  pc.addTransceiver('audio', { direction: 'recvonly' });
  pc.addTransceiver('video', { direction: 'recvonly' });
  const stream = new MediaStream();
  pc.ontrack = (e) => { stream.addTrack(e.track); document.getElementById('remote').srcObject = stream; };
  // The time from the WHEP POST to the first video frame shown, in ms (for the tests and
  // for anyone tuning the server), without polling that would load the page.
  document.getElementById('remote').requestVideoFrameCallback((now, meta) => {
    status.firstFrameMs = Math.round(performance.now() - status.postAt);
    mark('frameShown');
    // The browser's own account of that frame: when its last packet arrived and when it
    // was presented (WebRTC sources give receiveTime).
    const at = (t) => (t === undefined ? undefined : Math.round((t - status.postAt) * 10) / 10);
    Object.assign(timeline, { frameReceiveTime: at(meta.receiveTime), framePresentationTime: at(meta.presentationTime), frameExpectedDisplayTime: at(meta.expectedDisplayTime), frameProcessingMs: meta.processingDuration === undefined ? undefined : meta.processingDuration * 1000, frameRtpTimestamp: meta.rtpTimestamp });
    // How many frames the browser had decoded by then (Chromium never presents its
    // first decoded frame alone).
    pc.getStats().then((r) => r.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') timeline.decodedAtShown = s.framesDecoded; }));
  });
  // What happened when, in ms after the WHEP POST: `status.timeline` (the answer, ICE,
  // DTLS and connection states, the video element's first data, and with
  // `/watch?timeline` the first packet, frame received and frame decoded, from getStats()
  // polled every 5 ms until the first frame is decoded: polling perturbs what it
  // measures, so the tests leave it off).
  const timeline = status.timeline = { timeOrigin: performance.timeOrigin };
  const mark = (name) => { if (status.postAt !== undefined && !(name in timeline)) timeline[name] = Math.round((performance.now() - status.postAt) * 10) / 10; };
  pc.addEventListener('iceconnectionstatechange', () => mark('ice-' + pc.iceConnectionState));
  pc.addEventListener('connectionstatechange', () => mark('pc-' + pc.connectionState));
  for (const name of ['loadeddata', 'playing']) document.getElementById('remote').addEventListener(name, () => mark('video-' + name));
  if (new URLSearchParams(location.search).has('timeline')) {
    const poll = async () => {
      const report = await pc.getStats();
      let done = false;
      report.forEach((s) => {
        if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
        if (s.packetsReceived > 0) mark('packetsReceived');
        if (s.framesReceived > 0) mark('framesReceived');
        if (s.framesDecoded > 0) { mark('framesDecoded'); done = true; }
      });
      if (!done && !(performance.now() - status.postAt > 10000)) setTimeout(poll, 5);
    };
    setTimeout(poll, 5);
  }
  // `/watch?layer=h` asks for one simulcast layer (WHEP `?layer=`); the layer link of
  // the response switches later (`switchLayer('f')`).
  const layer = new URLSearchParams(location.search).get('layer');
  await negotiate(pc, layer ? `/whep?layer=${encodeURIComponent(layer)}` : '/whep');
  mark('answerApplied');
  const dtls = pc.getReceivers()[0] && pc.getReceivers()[0].transport;
  if (dtls) dtls.addEventListener('statechange', () => mark('dtls-' + dtls.state));
  window.switchLayer = async (encodingId) => {
    const r = await fetch(status.layerUrl, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ encodingId }) });
    return r.status;
  };
})().catch((e) => { status.error = String(e); show('error: ' + e); });
</script></body></html>
"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdpfrag_candidates_and_end() {
        let f = SdpFrag::parse(
            "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
             a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\na=end-of-candidates\r\n",
        )
        .expect("parses");
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.candidates.len(), 2);
        assert_eq!(f.candidates[0].sdp_mid.as_deref(), Some("0"));
        assert!(f.candidates[0]
            .candidate
            .starts_with("candidate:1387637174 1 udp"));
        assert!(f.candidates[1].candidate.is_empty());
        assert!(SdpFrag::parse("a=candidate:1 1 udp\r\n").is_err());
        assert!(SdpFrag::parse("hello world\r\n").is_err());
    }

    #[test]
    fn restart_replaces_credentials_and_drops_old_candidates() {
        let sdp = "v=0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\na=mid:0\r\n";
        let out = replace_ice_credentials(sdp, "new", "newpwd");
        assert!(out.contains("a=ice-ufrag:new\r\n") && out.contains("a=ice-pwd:newpwd\r\n"));
        assert!(!out.contains("a=candidate") && out.contains("a=mid:0"));
    }
}
