//! A small WHIP/WHEP broadcast server on str0m 0.25, the reference the browser
//! measurements compare `whip_whep` with. It serves the example's own `/publish` and
//! `/watch` pages and the same HTTP API (`POST /whip`, `POST /whep` with
//! `application/sdp` answered `201` with a `Location`; `PATCH` trickle adds the
//! candidates and answers `204`; `DELETE` ends the session), over the example's HTTP
//! layer, so only the WebRTC stack differs.
//!
//! Media: one UDP socket on 127.0.0.1 for every peer, one `str0m::Rtc` per peer with
//! str0m's default configuration (which answers NACKs with RTX, sends NACKs and
//! transport-wide congestion feedback for what it receives). The publisher's frames
//! (str0m's frame API) are written to every connected viewer's transceiver of the same
//! kind; a viewer's connection, its keyframe requests and a break in the publisher's
//! frames ask the publisher for a keyframe (at most every 500 ms, as `whip_whep` does).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sansrtc_examples::http::{self, Reply, Request, Response};
use sansrtc_examples::runtime::Runtime;
use sansrtc_examples::whip_whep::{PUBLISH_PAGE, WATCH_PAGE};
use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Keyframe requests to the publisher are sent at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);
/// The longest the media loop sleeps in `recv_from` (new peers from the HTTP side and
/// str0m's own timers are served within this).
const MAX_WAIT: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher,
    Viewer,
}

/// One WHIP or WHEP session.
struct Peer {
    resource: String,
    role: Role,
    rtc: Rtc,
    /// The transceivers the browser's offer added, with their kinds.
    mids: Vec<(Mid, MediaKind)>,
    connected: bool,
}

impl Peer {
    fn mid_of(&self, kind: MediaKind) -> Option<Mid> {
        self.mids.iter().find(|(_, k)| *k == kind).map(|(m, _)| *m)
    }

    fn kind_of(&self, mid: Mid) -> Option<MediaKind> {
        self.mids.iter().find(|(m, _)| *m == mid).map(|(_, k)| *k)
    }
}

/// Counters the tests print.
#[derive(Debug, Default, Clone, Copy)]
pub struct Str0mStats {
    /// Publisher frames written to viewers (once per viewer).
    pub forwarded: u64,
    /// Keyframe requests sent to the publisher.
    pub keyframe_requests: u64,
}

#[derive(Default)]
struct Peers {
    peers: Vec<Peer>,
    next_id: u64,
    last_keyframe_request: Option<Instant>,
    stats: Str0mStats,
}

struct Shared {
    peers: Mutex<Peers>,
    media: SocketAddr,
    stop: AtomicBool,
}

impl Shared {
    fn peers(&self) -> MutexGuard<'_, Peers> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running str0m server; stops its media loop when dropped.
pub struct Str0mWhip {
    /// The HTTP address (pages and WHIP/WHEP).
    pub addr: SocketAddr,
    /// The media socket's address (every peer's traffic).
    pub media: SocketAddr,
    shared: Arc<Shared>,
}

impl Str0mWhip {
    /// Bind the media socket on 127.0.0.1 and serve HTTP on `runtime`.
    pub fn start(runtime: &Runtime) -> std::io::Result<Str0mWhip> {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let socket = UdpSocket::bind(SocketAddr::new(loopback, 0))?;
        let media = socket.local_addr()?;
        let shared = Arc::new(Shared {
            peers: Mutex::default(),
            media,
            stop: AtomicBool::new(false),
        });
        let looped = shared.clone();
        std::thread::Builder::new()
            .name("str0m-media".into())
            .spawn(move || media_loop(&looped, &socket))?;
        let routes = shared.clone();
        let addr = http::spawn(
            SocketAddr::new(loopback, 0),
            &runtime.spawner(),
            Arc::new(move |req| Reply::from(route(&routes, &req))),
        )?;
        Ok(Str0mWhip {
            addr,
            media,
            shared,
        })
    }

    /// The counters.
    pub fn stats(&self) -> Str0mStats {
        self.shared.peers().stats
    }
}

impl Drop for Str0mWhip {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn route(shared: &Shared, req: &Request) -> Response {
    let path = req.path.trim_end_matches('/');
    match (req.method.as_str(), path) {
        ("GET", "/publish") => Response::html(PUBLISH_PAGE),
        ("GET", "/watch") => Response::html(WATCH_PAGE),
        ("POST", "/whip") => create(shared, req, Role::Publisher),
        ("POST", "/whep") => create(shared, req, Role::Viewer),
        ("PATCH", _) => trickle(shared, path, req),
        ("DELETE", _) => {
            let mut peers = shared.peers();
            let before = peers.peers.len();
            peers.peers.retain(|p| p.resource != path);
            if peers.peers.len() < before {
                Response::empty(200)
            } else {
                Response::text(404, "no such session")
            }
        }
        _ => Response::text(404, "not found"),
    }
}

/// Answer a WHIP or WHEP offer with a new `Rtc` whose one candidate is the media socket.
fn create(shared: &Shared, req: &Request, role: Role) -> Response {
    if req.content_type().as_deref() != Some("application/sdp") {
        return Response::text(415, "an application/sdp offer is expected");
    }
    let Some(offer) = req.text().and_then(|t| SdpOffer::from_sdp_string(t).ok()) else {
        return Response::text(400, "the body is not an SDP offer");
    };
    let mut peers = shared.peers();
    if role == Role::Publisher && peers.peers.iter().any(|p| p.role == Role::Publisher) {
        return Response::text(409, "a publisher is live");
    }
    let mut rtc = Rtc::builder().build(Instant::now());
    let Ok(candidate) = Candidate::host(shared.media, "udp") else {
        return Response::text(500, "no host candidate");
    };
    rtc.add_local_candidate(candidate);
    let answer = match rtc.sdp_api().accept_offer(offer) {
        Ok(answer) => answer,
        Err(e) => return Response::text(400, format!("offer refused: {e}")),
    };
    peers.next_id += 1;
    let resource = format!("/resource/{}", peers.next_id);
    peers.peers.push(Peer {
        resource: resource.clone(),
        role,
        rtc,
        mids: Vec::new(),
        connected: false,
    });
    Response::empty(201)
        .header("Content-Type", "application/sdp")
        .header("Location", resource)
        .body(answer.to_sdp_string().into_bytes())
}

/// RFC 8840 trickle: every `a=candidate:` line of the fragment goes to the session.
fn trickle(shared: &Shared, path: &str, req: &Request) -> Response {
    let mut peers = shared.peers();
    let Some(peer) = peers.peers.iter_mut().find(|p| p.resource == path) else {
        return Response::text(404, "no such session");
    };
    for line in req.text().unwrap_or("").lines() {
        let Some(candidate) = line.trim().strip_prefix("a=") else {
            continue;
        };
        if candidate.starts_with("candidate:") {
            if let Ok(c) = Candidate::from_sdp_string(candidate) {
                peer.rtc.add_remote_candidate(c);
            }
        }
    }
    Response::empty(204)
}

/// What the peers' output asks of the others.
#[derive(Default)]
struct Propagate {
    /// The publisher's frames, to every viewer.
    frames: VecDeque<MediaData>,
    /// Ask the publisher for a keyframe: a viewer joined (at once), or lost a picture, or
    /// the publisher's frames broke (rate-limited).
    keyframe: Option<KeyframeUrgency>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum KeyframeUrgency {
    RateLimited,
    AtOnce,
}

impl Propagate {
    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.keyframe.is_none()
    }

    fn keyframe(&mut self, urgency: KeyframeUrgency) {
        self.keyframe = self.keyframe.max(Some(urgency));
    }
}

fn media_loop(shared: &Shared, socket: &UdpSocket) {
    let mut buf = vec![0u8; 2000];
    let mut pending = Propagate::default();
    while !shared.stop.load(Ordering::Relaxed) {
        let deadline = {
            let mut peers = shared.peers();
            let now = Instant::now();
            for peer in &mut peers.peers {
                if peer.rtc.handle_input(Input::Timeout(now)).is_err() {
                    peer.rtc.disconnect();
                }
            }
            service(&mut peers, socket, &mut pending)
        };
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(1), MAX_WAIT);
        if socket.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        let Ok((n, source)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(receive) = Receive::new(
            Protocol::Udp,
            source,
            shared.media,
            buf.get(..n).unwrap_or_default(),
        ) else {
            continue;
        };
        let input = Input::Receive(Instant::now(), receive);
        let mut peers = shared.peers();
        if let Some(peer) = peers.peers.iter_mut().find(|p| p.rtc.accepts(&input)) {
            if peer.rtc.handle_input(input).is_err() {
                peer.rtc.disconnect();
            }
        }
    }
}

/// Poll every peer until each has only a timeout to report, sending what it transmits and
/// carrying media and keyframe requests between them; returns the earliest timeout.
fn service(peers: &mut Peers, socket: &UdpSocket, pending: &mut Propagate) -> Instant {
    loop {
        let mut deadline = Instant::now() + MAX_WAIT;
        for peer in &mut peers.peers {
            deadline = deadline.min(drain(peer, socket, pending));
        }
        peers.peers.retain(|p| p.rtc.is_alive());
        if pending.is_empty() {
            return deadline;
        }
        while let Some(frame) = pending.frames.pop_front() {
            forward(peers, &frame);
        }
        if let Some(urgency) = pending.keyframe.take() {
            request_keyframe(peers, urgency == KeyframeUrgency::AtOnce);
        }
    }
}

/// One peer's output until its next timeout.
fn drain(peer: &mut Peer, socket: &UdpSocket, pending: &mut Propagate) -> Instant {
    while peer.rtc.is_alive() {
        let output = match peer.rtc.poll_output() {
            Ok(output) => output,
            Err(_) => {
                peer.rtc.disconnect();
                break;
            }
        };
        match output {
            Output::Timeout(at) => return at,
            Output::Transmit(t) => {
                let _ = socket.send_to(&t.contents, t.destination);
            }
            Output::Event(event) => match event {
                Event::Connected => {
                    peer.connected = true;
                    if peer.role == Role::Viewer {
                        pending.keyframe(KeyframeUrgency::AtOnce);
                    }
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    peer.rtc.disconnect();
                }
                Event::MediaAdded(added) => peer.mids.push((added.mid, added.kind)),
                Event::MediaData(data) if peer.role == Role::Publisher => {
                    if !data.contiguous && peer.kind_of(data.mid) == Some(MediaKind::Video) {
                        pending.keyframe(KeyframeUrgency::RateLimited);
                    }
                    pending.frames.push_back(data);
                }
                Event::KeyframeRequest(_) if peer.role == Role::Viewer => {
                    pending.keyframe(KeyframeUrgency::RateLimited);
                }
                _ => {}
            },
        }
    }
    Instant::now()
}

/// Write one publisher frame to every connected viewer's transceiver of its kind.
fn forward(peers: &mut Peers, data: &MediaData) {
    let Some(kind) = peers
        .peers
        .iter()
        .find(|p| p.role == Role::Publisher)
        .and_then(|p| p.kind_of(data.mid))
    else {
        return;
    };
    let mut written = 0;
    for viewer in &mut peers.peers {
        if viewer.role != Role::Viewer || !viewer.connected {
            continue;
        }
        let Some(mid) = viewer.mid_of(kind) else {
            continue;
        };
        let Some(writer) = viewer.rtc.writer(mid) else {
            continue;
        };
        let Some(pt) = writer.match_params(data.params) else {
            continue;
        };
        if writer
            .write(pt, data.network_time, data.time, data.data.clone())
            .is_ok()
        {
            written += 1;
        }
    }
    peers.stats.forwarded += written;
}

/// A PLI to the publisher's video; unless `at_once`, at most every [`KEYFRAME_INTERVAL`].
fn request_keyframe(peers: &mut Peers, at_once: bool) {
    let now = Instant::now();
    if !at_once
        && peers
            .last_keyframe_request
            .is_some_and(|at| now.saturating_duration_since(at) < KEYFRAME_INTERVAL)
    {
        return;
    }
    let Some(publisher) = peers
        .peers
        .iter_mut()
        .find(|p| p.role == Role::Publisher && p.connected)
    else {
        return;
    };
    let Some(mid) = publisher.mid_of(MediaKind::Video) else {
        return;
    };
    let Some(mut writer) = publisher.rtc.writer(mid) else {
        return;
    };
    if writer
        .request_keyframe(None, KeyframeRequestKind::Pli)
        .is_ok()
    {
        peers.last_keyframe_request = Some(now);
        peers.stats.keyframe_requests += 1;
    }
}
