//! The `echo` example's server: the seed's flow end to end. The page it serves sends
//! camera and microphone; the server answers, trickles candidates both ways over a
//! WebSocket, and sends every received RTP packet straight back on its own track of the
//! same kind, so the page shows its own camera coming back through sansrtc. Scripts can
//! skip the WebSocket: `POST /api/offer` with a JSON `RTCSessionDescriptionInit` body is
//! answered with the JSON answer, candidates inside its SDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sansrtc::peer::IceGatheringState;
use sansrtc::{Config, ConnectionState, Event, IceCandidateInit, MediaKind, SessionDescription};
use sansrtc_std::{Error, Options, PeerHandle};
use serde_json::{json, Value};

use crate::http::{self, Reply, Request, Response};
use crate::runtime::Runtime;
use crate::websocket::{Message, WebSocket, WsSender};

/// The echo server's shared state.
pub struct Echo {
    runtime: Runtime,
    options: Options,
    config: Config,
}

/// Start the echo server on `addr` (port 0 picks one); returns the bound address.
pub fn start(addr: SocketAddr, runtime: Runtime, options: Options) -> std::io::Result<SocketAddr> {
    let echo = Arc::new(Echo {
        runtime,
        options,
        config: Config::default(),
    });
    http::spawn(addr, Arc::new(move |req| echo.route(req)))
}

impl Echo {
    fn route(self: &Arc<Self>, req: Request) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::html(PAGE).into(),
            ("GET", "/ws") => {
                let echo = self.clone();
                Reply::WebSocket(Box::new(move |ws| echo.websocket_session(ws)))
            }
            ("POST", "/api/offer") => self.api_offer(&req).into(),
            (_, "/" | "/ws" | "/api/offer") => Response::text(405, "method not allowed").into(),
            _ => Response::text(404, format!("no such resource: {}", req.path)).into(),
        }
    }

    fn new_peer(&self) -> Result<PeerHandle, Error> {
        self.runtime.peer(self.config.clone(), self.options.clone())
    }

    /// `POST /api/offer`: JSON offer in, JSON answer (with candidates) out.
    fn api_offer(&self, req: &Request) -> Response {
        if req.content_type().as_deref() != Some("application/json") {
            return Response::text(415, "send the offer as application/json");
        }
        let offer: SessionDescription = match serde_json::from_slice(&req.body) {
            Ok(o) => o,
            Err(e) => return Response::text(400, format!("not an RTCSessionDescriptionInit: {e}")),
        };
        let pc = match self.new_peer() {
            Ok(pc) => pc,
            Err(e) => return Response::text(500, format!("cannot create a PeerConnection: {e}")),
        };
        if let Err(e) = answer_offer(&pc, offer) {
            block_on(pc.close());
            return Response::text(400, format!("cannot answer this offer: {e}"));
        }
        // No trickle on this path: wait (briefly) for gathering so every candidate is in
        // the SDP.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match block_on(pc.call(|pc, _| pc.ice_gathering_state())) {
                Ok(IceGatheringState::Complete) | Err(_) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let answer = match block_on(pc.local_description()) {
            Ok(Some(answer)) => answer,
            _ => return Response::text(500, "no local description"),
        };
        let session = pc.clone();
        std::thread::spawn(move || echo_events(&session, |_| {}));
        Response::json(200, &answer)
    }

    /// The WebSocket flow: offer and candidates in, answer and candidates out.
    fn websocket_session(&self, mut ws: WebSocket) {
        let out = ws.sender();
        let pc = match self.new_peer() {
            Ok(pc) => pc,
            Err(e) => {
                let _ = out.send_json(&json!({"type": "error", "message": e.to_string()}));
                out.close();
                return;
            }
        };
        let events = {
            let pc = pc.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                echo_events(&pc, |c| {
                    let _ = out.send_json(&json!({"type": "candidate", "candidate": c}));
                })
            })
        };
        while let Some(message) = ws.recv() {
            let Message::Text(text) = message else {
                continue;
            };
            if let Err(e) = handle_signal(&pc, &out, &text) {
                let _ = out.send_json(&json!({"type": "error", "message": e}));
            }
        }
        // The page went away: close the PeerConnection; its event thread then ends.
        block_on(pc.close());
        let _ = events.join();
    }
}

fn handle_signal(pc: &PeerHandle, out: &WsSender, text: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    match value.get("type").and_then(Value::as_str) {
        Some("offer") => {
            let offer: SessionDescription =
                serde_json::from_value(value).map_err(|e| format!("bad offer: {e}"))?;
            let answer = answer_offer(pc, offer).map_err(|e| e.to_string())?;
            out.send_json(&serde_json::to_value(&answer).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())
        }
        Some("candidate") => {
            let Some(c) = value.get("candidate").filter(|c| !c.is_null()) else {
                return Ok(());
            };
            let candidate: IceCandidateInit =
                serde_json::from_value(c.clone()).map_err(|e| format!("bad candidate: {e}"))?;
            block_on(pc.add_ice_candidate(candidate)).map_err(|e| e.to_string())
        }
        other => Err(format!("unknown message type {other:?}")),
    }
}

/// Apply the offer, add a sending track for each offered kind (reusing the offered
/// transceivers, so every m-line becomes sendrecv) and answer.
fn answer_offer(pc: &PeerHandle, offer: SessionDescription) -> Result<SessionDescription, Error> {
    block_on(pc.set_remote_description(offer))?;
    let kinds: Vec<MediaKind> = block_on(pc.call(|pc, _| {
        pc.transceivers()
            .iter()
            .filter(|t| !t.has_track && !t.stopped)
            .map(|t| t.kind)
            .collect()
    }))?;
    for kind in kinds {
        block_on(pc.add_track(kind, vec!["echo".into()]))?;
    }
    let answer = block_on(pc.create_answer())?;
    block_on(pc.set_local_description(answer.clone()))?;
    Ok(block_on(pc.local_description())?.unwrap_or(answer))
}

/// Echo media until the connection ends: every RTP packet goes back on the transceiver
/// it came in on (now sendrecv), and a keyframe request from the browser for what we
/// send is passed on to the browser's own sender.
fn echo_events(pc: &PeerHandle, mut on_candidate: impl FnMut(IceCandidateInit)) {
    while let Some(event) = block_on(pc.next_event()) {
        match event {
            Event::IceCandidate(c) => on_candidate(c),
            Event::Rtp {
                track: transceiver,
                packet,
                ..
            } => match block_on(pc.send_rtp(transceiver, packet)) {
                Ok(()) => {}
                // The driver has stopped.
                Err(_) => break,
            },
            Event::KeyframeRequest(transceiver) => {
                let _ = block_on(pc.request_keyframe(transceiver));
            }
            Event::ConnectionStateChange(ConnectionState::Failed | ConnectionState::Closed) => {
                block_on(pc.close());
                break;
            }
            _ => {}
        }
    }
}

/// The page: camera and microphone out, the echo back in, signaling over a WebSocket.
/// `window.sansrtcStatus` reports progress (the browser tests read it).
pub const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>sansrtc echo</title>
<style>body{font-family:sans-serif;margin:2em}video{width:45%;background:#222;margin:.5%}</style></head>
<body>
<h1>sansrtc echo</h1>
<p>Left: your camera. Right: the same media after a round trip through the sansrtc server.</p>
<video id="local" autoplay muted playsinline></video><video id="remote" autoplay playsinline></video>
<p id="status">connecting...</p>
<script>
const status = window.sansrtcStatus = { state: 'new', error: null };
const show = (s) => { status.state = s; document.getElementById('status').textContent = s; };
async function main() {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  const pc = window.pc = new RTCPeerConnection();
  pc.ontrack = (e) => {
    const v = document.getElementById('remote');
    v.srcObject = e.streams[0] || new MediaStream([e.track]);
  };
  pc.onicecandidate = (e) => {
    if (e.candidate) ws.send(JSON.stringify({ type: 'candidate', candidate: e.candidate.toJSON() }));
  };
  pc.onconnectionstatechange = () => show(pc.connectionState);
  ws.onmessage = async (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === 'answer') await pc.setRemoteDescription(msg);
    else if (msg.type === 'candidate') await pc.addIceCandidate(msg.candidate);
    else if (msg.type === 'error') { status.error = msg.message; show('error: ' + msg.message); }
  };
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById('local').srcObject = stream;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  ws.send(JSON.stringify(offer));
  show('negotiating');
}
main().catch((e) => { status.error = String(e); show('error: ' + e); });
</script></body></html>
"#;
