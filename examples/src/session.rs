//! What the WebSocket examples (`echo`, `chat`, `save_to_file`, `send_from_file`) share:
//! the signaling of one session over a WebSocket (the page's offer and trickled
//! candidates in, the answer and our candidates out), answering an offer with or without
//! sending tracks, the event loop of a session, and the page skeleton with its signaling
//! script.
//!
//! A session is an `async fn(PeerHandle, CandidateSink)` written once for every runtime
//! (see `echo::echo_session`): it reads [`SessionEvents`] and answers with the handle's
//! async methods, so on tokio and smol it is a task, and thousands of sessions cost
//! thousands of tasks, not threads. [`Signaling::websocket_session_async`] runs one on a
//! WebSocket's own task; `Spawner::spawn` runs one for a plain HTTP offer. The blocking
//! variants ([`Signaling::websocket_session`], [`run_events`]) remain for the file
//! examples, whose sessions read and write files.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_lite::future::{self, block_on};
use sansrtc::{Config, ConnectionState, Event, IceCandidateInit, MediaKind, SessionDescription};
use sansrtc_std::{Error, Options, PeerHandle};
use serde_json::{json, Value};

use crate::http::Limits;
use crate::runtime::Runtime;
use crate::websocket::{Message, WebSocket, WsSender};

/// How the server answers an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Add a sending track on every offered transceiver (sendrecv or sendonly m-lines).
    Send,
    /// Only receive (recvonly m-lines).
    Receive,
}

/// Where a session's local candidates go (to the page, over the WebSocket).
pub type Candidates = Box<dyn FnMut(IceCandidateInit) + Send>;

/// Candidates a page may send before its offer (kept until the offer arrives).
const MAX_EARLY_CANDIDATES: usize = 64;

/// Makes the PeerConnections of an example's sessions, at most `Limits::max_sessions`
/// alive at once.
pub struct Signaling {
    runtime: Runtime,
    options: Options,
    config: Config,
    limits: Limits,
    live: Arc<AtomicUsize>,
    created: AtomicU64,
}

/// A live session's place in [`Signaling`]'s count, given back when dropped.
pub struct SessionSlot(Arc<AtomicUsize>);

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a page sends on its WebSocket.
enum Signal {
    Offer(SessionDescription),
    Candidate(IceCandidateInit),
    /// A candidate message with a null candidate (end of candidates): nothing to do.
    Nothing,
}

fn parse_signal(text: &str) -> Result<Signal, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    match value.get("type").and_then(Value::as_str) {
        Some("offer") => serde_json::from_value(value)
            .map(Signal::Offer)
            .map_err(|e| format!("bad offer: {e}")),
        Some("candidate") => match value.get("candidate").filter(|c| !c.is_null()) {
            None => Ok(Signal::Nothing),
            Some(c) => serde_json::from_value(c.clone())
                .map(Signal::Candidate)
                .map_err(|e| format!("bad candidate: {e}")),
        },
        other => Err(format!("unknown message type {other:?}")),
    }
}

impl Signaling {
    /// Sessions on this runtime with these socket options and this configuration, within
    /// the default [`Limits`].
    pub fn new(runtime: Runtime, options: Options, config: Config) -> Signaling {
        Signaling::with_limits(runtime, options, config, Limits::default())
    }

    /// The same within `limits` (`max_sessions`).
    pub fn with_limits(
        runtime: Runtime,
        options: Options,
        config: Config,
        limits: Limits,
    ) -> Signaling {
        Signaling {
            runtime,
            options,
            config,
            limits,
            live: Arc::new(AtomicUsize::new(0)),
            created: AtomicU64::new(0),
        }
    }

    /// The HTTP limits these sessions were made with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Sessions alive now.
    pub fn live_sessions(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// PeerConnections made so far.
    pub fn peers_created(&self) -> u64 {
        self.created.load(Ordering::SeqCst)
    }

    /// A new PeerConnection for a session, and its place in the count; `Err` with a
    /// message when `max_sessions` are alive or the PeerConnection cannot be made.
    pub fn new_peer(&self) -> Result<(PeerHandle, SessionSlot), String> {
        let slot = self.take_slot()?;
        let pc = self
            .runtime
            .peer(self.config.clone(), self.options.clone())
            .map_err(|e| e.to_string())?;
        Ok((pc, slot))
    }

    /// [`Signaling::new_peer`] for async code (see `Runtime::peer_async`).
    pub async fn new_peer_async(&self) -> Result<(PeerHandle, SessionSlot), String> {
        let slot = self.take_slot()?;
        let pc = self
            .runtime
            .peer_async(self.config.clone(), self.options.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok((pc, slot))
    }

    /// A place in the count, or why there is none.
    fn take_slot(&self) -> Result<SessionSlot, String> {
        let max = self.limits.max_sessions;
        if self
            .live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            return Err(format!(
                "the server is full ({max} sessions); try again later"
            ));
        }
        self.created.fetch_add(1, Ordering::SeqCst);
        Ok(SessionSlot(self.live.clone()))
    }

    /// Run one page's session over its WebSocket, all of it async on the WebSocket's
    /// task: the PeerConnection is made when the page's first offer arrives (a WebSocket
    /// that sends none is closed after `Limits::websocket_offer_timeout`, having cost no
    /// PeerConnection), the answer goes back, then `session` (given the PeerConnection and
    /// where local candidates go) runs beside the signaling that applies the page's
    /// trickled candidates and new offers. When the page goes away the PeerConnection is
    /// closed and `session` (normally a [`SessionEvents`] loop) ends with it; when
    /// `session` ends (the peer's goodbye, a failure) the WebSocket is closed.
    pub async fn websocket_session_async<S, F>(&self, mut ws: WebSocket, answer: Answer, session: S)
    where
        S: FnOnce(PeerHandle, CandidateSink) -> F,
        F: std::future::Future<Output = ()> + Send,
    {
        let out = ws.sender();
        let mut early: Vec<IceCandidateInit> = Vec::new();
        // Until the offer: candidates kept, nothing else made.
        let (pc, slot, offer) = loop {
            let Some(message) = ws.recv_async().await else {
                out.shutdown_async().await;
                return;
            };
            let Message::Text(text) = message else {
                continue;
            };
            let error = match parse_signal(&text) {
                Err(e) => e,
                Ok(Signal::Nothing) => continue,
                Ok(Signal::Candidate(c)) if early.len() < MAX_EARLY_CANDIDATES => {
                    early.push(c);
                    continue;
                }
                Ok(Signal::Candidate(_)) => "too many candidates before the offer".into(),
                Ok(Signal::Offer(offer)) => match self.new_peer_async().await {
                    Ok((pc, slot)) => break (pc, slot, offer),
                    Err(e) => return refuse_async(ws, &e).await,
                },
            };
            report(&out, error).await;
        };
        // No deadline once the session is on: it lasts as long as its media.
        ws.set_read_timeout(None);
        if let Err(e) = send_answer_async(&pc, &out, offer, answer).await {
            report(&out, e).await;
        }
        for c in early.drain(..) {
            let _ = pc.add_ice_candidate(c).await;
        }
        let events = async {
            session(pc.clone(), CandidateSink(Some(out.clone()))).await;
            // The session is over: so is the page's WebSocket.
            out.shutdown_async().await;
        };
        let signals = async {
            while let Some(message) = ws.recv_async().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let result = match parse_signal(&text) {
                    Err(e) => Err(e),
                    Ok(Signal::Nothing) => Ok(()),
                    Ok(Signal::Candidate(c)) => {
                        pc.add_ice_candidate(c).await.map_err(|e| e.to_string())
                    }
                    Ok(Signal::Offer(offer)) => send_answer_async(&pc, &out, offer, answer).await,
                };
                if let Err(e) = result {
                    report(&out, e).await;
                }
            }
            // The page went away: close the PeerConnection; the session's events end.
            pc.close().await;
        };
        future::zip(events, signals).await;
        drop(slot);
    }

    /// Run one page's session over its WebSocket until the page goes away, then close
    /// the PeerConnection and wait for `session` to return. The PeerConnection is made
    /// when the page's first offer arrives (a WebSocket that sends none is closed after
    /// `Limits::websocket_offer_timeout`, having cost no PeerConnection, media socket or
    /// driver thread). `session` then runs on its own thread with the PeerConnection and
    /// where to send local candidates; it normally runs `run_events`, which ends once the
    /// PeerConnection is closed, and the WebSocket is closed then too.
    pub fn websocket_session(
        &self,
        mut ws: WebSocket,
        answer: Answer,
        session: impl FnOnce(PeerHandle, Candidates) + Send + 'static,
    ) {
        let out = ws.sender();
        let mut session = Some(session);
        let mut early: Vec<IceCandidateInit> = Vec::new();
        let mut live: Option<(PeerHandle, std::thread::JoinHandle<()>)> = None;
        while let Some(message) = ws.recv() {
            let Message::Text(text) = message else {
                continue;
            };
            let current = live.as_ref().map(|(pc, _)| pc.clone());
            let result = match (parse_signal(&text), current) {
                (Err(e), _) => Err(e),
                (Ok(Signal::Nothing), _) => Ok(()),
                (Ok(Signal::Candidate(c)), Some(pc)) => {
                    block_on(pc.add_ice_candidate(c)).map_err(|e| e.to_string())
                }
                (Ok(Signal::Candidate(c)), None) if early.len() < MAX_EARLY_CANDIDATES => {
                    early.push(c);
                    Ok(())
                }
                (Ok(Signal::Candidate(_)), None) => {
                    Err("too many candidates before the offer".into())
                }
                (Ok(Signal::Offer(offer)), Some(pc)) => send_answer(&pc, &out, offer, answer),
                (Ok(Signal::Offer(offer)), None) => {
                    let (pc, slot) = match self.new_peer() {
                        Ok(made) => made,
                        Err(e) => return refuse(ws, &e),
                    };
                    let Some(session) = session.take() else {
                        return;
                    };
                    // No deadline once the session is on: it lasts as long as its media.
                    ws.set_read_timeout(None);
                    let events = {
                        let pc = pc.clone();
                        let out = out.clone();
                        std::thread::spawn(move || {
                            let candidates = out.clone();
                            session(
                                pc,
                                Box::new(move |c| {
                                    let _ = candidates
                                        .send_json(&json!({"type": "candidate", "candidate": c}));
                                }),
                            );
                            drop(slot);
                            // The session is over: so is the page's WebSocket.
                            out.shutdown();
                        })
                    };
                    let result = send_answer(&pc, &out, offer, answer);
                    for c in early.drain(..) {
                        let _ = block_on(pc.add_ice_candidate(c));
                    }
                    live = Some((pc, events));
                    result
                }
            };
            if let Err(e) = result {
                let _ = out.send_json(&json!({"type": "error", "message": e}));
            }
        }
        // The page went away (or never offered in time): close the PeerConnection; its
        // event thread then ends.
        out.shutdown();
        if let Some((pc, events)) = live {
            block_on(pc.close());
            let _ = events.join();
        }
    }
}

/// Send the page an error message.
async fn report(out: &WsSender, message: String) {
    let _ = out
        .send_json_async(&json!({"type": "error", "message": message}))
        .await;
}

/// [`refuse`] without blocking.
pub async fn refuse_async(mut ws: WebSocket, message: &str) {
    let out = ws.sender();
    report(&out, message.to_string()).await;
    out.close_async().await;
    ws.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    while ws.recv_async().await.is_some() {}
}

/// Where an async session's local candidates go: the page's WebSocket, or nowhere (an
/// HTTP offer's answer carries every candidate already).
#[derive(Clone, Default)]
pub struct CandidateSink(Option<WsSender>);

impl CandidateSink {
    /// Candidates go nowhere.
    pub fn none() -> CandidateSink {
        CandidateSink(None)
    }

    /// Send one on (waiting for room in the WebSocket's queue).
    pub async fn send(&self, candidate: IceCandidateInit) {
        if let Some(out) = &self.0 {
            let _ = out
                .send_json_async(&json!({"type": "candidate", "candidate": candidate}))
                .await;
        }
    }
}

/// The events of a session's PeerConnection, for an async session's loop: local
/// candidates are sent on to the [`CandidateSink`], and the event that ends the session
/// (the connection failed or closed, or the peer's authenticated goodbye,
/// `Event::RemoteClosed`: its close_notify, SCTP ABORT or last BYE) is the last one
/// given: the PeerConnection is closed then, which releases its sockets and driver at
/// once rather than when ICE consent expires, and `None` follows.
///
/// ```ignore
/// async fn my_session(pc: PeerHandle, candidates: CandidateSink) {
///     let mut events = SessionEvents::new(&pc, candidates);
///     while let Some(event) = events.next().await {
///         // answer with `pc.send_rtp(..).await`, `pc.cast(..).await`...
///     }
///     events.close().await;
/// }
/// ```
pub struct SessionEvents {
    pc: PeerHandle,
    candidates: CandidateSink,
    ended: bool,
}

impl SessionEvents {
    /// The events of `pc`.
    pub fn new(pc: &PeerHandle, candidates: CandidateSink) -> SessionEvents {
        SessionEvents {
            pc: pc.clone(),
            candidates,
            ended: false,
        }
    }

    /// The next event for the application; `None` once the session is over.
    pub async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            let Some(event) = self.pc.next_event().await else {
                self.end().await;
                return None;
            };
            match event {
                Event::IceCandidate(c) => self.candidates.send(c).await,
                last @ (Event::ConnectionStateChange(
                    ConnectionState::Failed | ConnectionState::Closed,
                )
                | Event::RemoteClosed(_)) => {
                    self.end().await;
                    return Some(last);
                }
                event => return Some(event),
            }
        }
    }

    /// End the session early (or again): close the PeerConnection.
    pub async fn close(mut self) {
        self.end().await;
    }

    async fn end(&mut self) {
        self.ended = true;
        self.pc.close().await;
    }
}

/// Send the page an error message and close the WebSocket, waiting (up to 2 s) for the
/// page's side of the closing handshake so that the message is not lost to a reset.
pub fn refuse(mut ws: WebSocket, message: &str) {
    let out = ws.sender();
    let _ = out.send_json(&json!({"type": "error", "message": message}));
    out.close();
    ws.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    while ws.recv().is_some() {}
}

fn send_answer(
    pc: &PeerHandle,
    out: &WsSender,
    offer: SessionDescription,
    answer: Answer,
) -> Result<(), String> {
    let answer = answer_offer(pc, offer, answer).map_err(|e| e.to_string())?;
    out.send_json(&serde_json::to_value(&answer).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}

async fn send_answer_async(
    pc: &PeerHandle,
    out: &WsSender,
    offer: SessionDescription,
    answer: Answer,
) -> Result<(), String> {
    let answer = answer_offer_async(pc, offer, answer)
        .await
        .map_err(|e| e.to_string())?;
    out.send_json_async(&serde_json::to_value(&answer).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())
}

/// [`answer_offer`] without blocking.
pub async fn answer_offer_async(
    pc: &PeerHandle,
    offer: SessionDescription,
    answer: Answer,
) -> Result<SessionDescription, Error> {
    pc.set_remote_description(offer).await?;
    if answer == Answer::Send {
        let kinds: Vec<MediaKind> = pc
            .call(|pc, _| {
                pc.transceivers()
                    .iter()
                    .filter(|t| !t.has_track && !t.stopped)
                    .map(|t| t.kind)
                    .collect()
            })
            .await?;
        for kind in kinds {
            pc.add_track(kind, vec!["sansrtc".into()]).await?;
        }
    }
    let answer = pc.create_answer().await?;
    pc.set_local_description(answer.clone()).await?;
    Ok(pc.local_description().await?.unwrap_or(answer))
}

/// Apply the offer and answer it. With `Answer::Send`, first add a sending track for
/// each offered transceiver (reusing it, so a sendrecv m-line stays sendrecv and a
/// recvonly one becomes sendonly).
pub fn answer_offer(
    pc: &PeerHandle,
    offer: SessionDescription,
    answer: Answer,
) -> Result<SessionDescription, Error> {
    block_on(answer_offer_async(pc, offer, answer))
}

/// For blocking session code (the file examples): run a session's events until its
/// PeerConnection fails or closes, or the peer ends
/// the session (`Event::RemoteClosed`: its close_notify, SCTP ABORT or last BYE); the
/// PeerConnection is closed then, which releases its sockets and driver at once rather
/// than when ICE consent expires. Local candidates go to `on_candidate`, every other
/// event to `on_event`, which returns false to end the session early.
pub fn run_events(
    pc: &PeerHandle,
    mut on_candidate: impl FnMut(IceCandidateInit),
    mut on_event: impl FnMut(&PeerHandle, Event) -> bool,
) {
    while let Some(event) = block_on(pc.next_event()) {
        match event {
            Event::IceCandidate(c) => on_candidate(c),
            Event::ConnectionStateChange(
                state @ (ConnectionState::Failed | ConnectionState::Closed),
            ) => {
                let _ = on_event(pc, Event::ConnectionStateChange(state));
                break;
            }
            Event::RemoteClosed(how) => {
                let _ = on_event(pc, Event::RemoteClosed(how));
                break;
            }
            event => {
                if !on_event(pc, event) {
                    break;
                }
            }
        }
    }
    block_on(pc.close());
}

/// A page: `body` (HTML) above a status line, and a script that connects the WebSocket
/// at `/ws`, creates `window.pc`, runs `setup` (the body of an async function of `pc`
/// that adds tracks or transceivers and handlers), then offers and trickles candidates
/// both ways. `window.sansrtcStatus` reports progress (the browser tests read it);
/// `window.sansrtcStop()` closes the session.
pub fn page(title: &str, body: &str, setup: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}video{{width:45%;background:#222;margin:.5%}}</style></head>
<body>
<h1>{title}</h1>
{body}
<p id="status">connecting...</p>
<script>
const status = window.sansrtcStatus = {{ state: 'new', error: null }};
const show = (s) => {{ status.state = s; document.getElementById('status').textContent = s; }};
async function setup(pc) {{
{setup}
}}
async function main() {{
  const ws = new WebSocket(`ws://${{location.host}}/ws`);
  const pc = window.pc = new RTCPeerConnection();
  window.sansrtcStop = () => {{ pc.close(); ws.close(); show('stopped'); }};
  pc.onicecandidate = (e) => {{
    if (e.candidate) ws.send(JSON.stringify({{ type: 'candidate', candidate: e.candidate.toJSON() }}));
  }};
  pc.onconnectionstatechange = () => show(pc.connectionState);
  ws.onmessage = async (m) => {{
    const msg = JSON.parse(m.data);
    if (msg.type === 'answer') await pc.setRemoteDescription(msg);
    else if (msg.type === 'candidate') await pc.addIceCandidate(msg.candidate);
    else if (msg.type === 'error') {{ status.error = msg.message; show('error: ' + msg.message); }}
  }};
  await new Promise((resolve, reject) => {{ ws.onopen = resolve; ws.onerror = reject; }});
  await setup(pc);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  ws.send(JSON.stringify(offer));
  show('negotiating');
}}
main().catch((e) => {{ status.error = String(e); show('error: ' + e); }});
</script></body></html>
"#
    )
}
