//! The `echo` example's server: the seed's flow end to end, data channel included. The page it serves sends
//! camera and microphone; the server answers, trickles candidates both ways over a
//! WebSocket, and sends every received RTP packet straight back on its own track of the
//! same kind, so the page shows its own camera coming back through sansrtc. Scripts can
//! skip the WebSocket: `POST /api/offer` with a JSON `RTCSessionDescriptionInit` body is
//! answered with the JSON answer, candidates inside its SDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sansrtc::peer::IceGatheringState;
use sansrtc::{Config, Event, SessionDescription};
use sansrtc_std::{Options, PeerHandle};

use crate::http::{self, Limits, Reply, Request, Response};
use crate::runtime::{Runtime, Spawner};
use crate::session::{self, answer_offer_async, Answer, CandidateSink, SessionEvents, Signaling};

/// How long `POST /api/offer` waits for gathering, and how often it looks.
const GATHERING_WAIT: Duration = Duration::from_secs(3);
const GATHERING_POLL: Duration = Duration::from_millis(20);

/// The echo server's shared state.
pub struct Echo {
    signaling: Signaling,
    spawner: Spawner,
}

/// A running echo server.
pub struct Running {
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The server, for its counters.
    pub echo: Arc<Echo>,
}

/// Start the echo server on `addr` (port 0 picks one); returns the bound address.
pub fn start(addr: SocketAddr, runtime: Runtime, options: Options) -> std::io::Result<SocketAddr> {
    Ok(start_with(addr, runtime, options, Limits::default())?.addr)
}

/// The same within `limits`.
pub fn start_with(
    addr: SocketAddr,
    runtime: Runtime,
    options: Options,
    limits: Limits,
) -> std::io::Result<Running> {
    let spawner = runtime.spawner();
    let echo = Arc::new(Echo {
        signaling: Signaling::with_limits(runtime, options, Config::default(), limits.clone()),
        spawner: spawner.clone(),
    });
    let routes = echo.clone();
    let page: Arc<str> = page().into();
    let addr = http::spawn_with(
        addr,
        &spawner,
        limits,
        Arc::new(move |req| routes.route(req, &page)),
    )?;
    Ok(Running { addr, echo })
}

impl Echo {
    /// The sessions: how many are alive, how many PeerConnections were made.
    pub fn signaling(&self) -> &Signaling {
        &self.signaling
    }

    fn route(self: &Arc<Self>, req: Request, page: &str) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::html(page).into(),
            ("GET", "/ws") => {
                let echo = self.clone();
                Reply::Session(Box::new(move |ws| {
                    Box::pin(async move {
                        echo.signaling
                            .websocket_session_async(ws, Answer::Send, echo_session)
                            .await
                    })
                }))
            }
            ("GET", "/stats") => {
                crate::stats::response(crate::stats::signaling_json(&self.signaling)).into()
            }
            ("POST", "/api/offer") => {
                let echo = self.clone();
                Reply::Later(Box::pin(async move { echo.api_offer(&req).await }))
            }
            (_, "/" | "/ws" | "/api/offer") => Response::text(405, "method not allowed").into(),
            _ => Response::text(404, format!("no such resource: {}", req.path)).into(),
        }
    }

    /// `POST /api/offer`: JSON offer in, JSON answer (with candidates) out; the session
    /// then runs as a task of its own (a thread on std, bounded by `max_sessions`).
    async fn api_offer(&self, req: &Request) -> Response {
        if req.content_type().as_deref() != Some("application/json") {
            return Response::text(415, "send the offer as application/json");
        }
        let offer: SessionDescription = match serde_json::from_slice(&req.body) {
            Ok(o) => o,
            Err(e) => return Response::text(400, format!("not an RTCSessionDescriptionInit: {e}")),
        };
        let (pc, slot) = match self.signaling.new_peer_async().await {
            Ok(made) => made,
            Err(e) => return Response::text(503, format!("cannot create a PeerConnection: {e}")),
        };
        if let Err(e) = answer_offer_async(&pc, offer, Answer::Send).await {
            pc.close().await;
            return Response::text(400, format!("cannot answer this offer: {e}"));
        }
        // No trickle on this path: wait (briefly, on the runtime's timer) for gathering
        // so every candidate is in the SDP.
        let deadline = Instant::now() + GATHERING_WAIT;
        while Instant::now() < deadline {
            match pc.call(|pc, _| pc.ice_gathering_state()).await {
                Ok(IceGatheringState::Complete) | Err(_) => break,
                Ok(_) => {
                    self.spawner
                        .sleep_until(Instant::now() + GATHERING_POLL)
                        .await
                }
            }
        }
        let answer = match pc.local_description().await {
            Ok(Some(answer)) => answer,
            _ => {
                pc.close().await;
                return Response::text(500, "no local description");
            }
        };
        self.spawner.spawn(async move {
            echo_session(pc, CandidateSink::none()).await;
            drop(slot);
        });
        Response::json(200, &answer)
    }
}

/// One echo session, the same on every runtime: every RTP packet goes back on the
/// transceiver it came in on (now sendrecv), a keyframe request from the browser for
/// what we send is passed on to the browser's own sender, and every data channel message
/// goes back on its channel, until the session ends (the peer's goodbye, a failure, or
/// the page gone). Nothing here waits for the driver to answer (`send_rtp` and `cast`
/// only wait for room in its command queue), so however many events a peer makes, this
/// loop keeps reading them; an error means the driver has stopped.
pub async fn echo_session(pc: PeerHandle, candidates: CandidateSink) {
    let mut events = SessionEvents::new(&pc, candidates);
    while let Some(event) = events.next().await {
        let alive = match event {
            Event::Rtp {
                track: transceiver,
                packet,
                ..
            } => pc.send_rtp(transceiver, packet).await.is_ok(),
            Event::KeyframeRequest(transceiver) => pc
                .cast(move |pc, _| {
                    let _ = pc.request_keyframe(transceiver);
                })
                .await
                .is_ok(),
            // A full send buffer drops the echo: the page sends little.
            Event::DataChannelMessage {
                channel,
                data,
                binary,
            } => pc
                .cast(move |pc, now| {
                    let _ = pc.send_data(now, channel, data, binary);
                })
                .await
                .is_ok(),
            _ => true,
        };
        if !alive {
            break;
        }
    }
    events.close().await;
}

/// The page: camera and microphone out, the echo back in, signaling over a WebSocket.
pub fn page() -> String {
    session::page(
        "sansrtc echo",
        r#"<p>Left: your camera. Right: the same media after a round trip through the sansrtc server.</p>
<video id="local" autoplay muted playsinline></video><video id="remote" autoplay playsinline></video>"#,
        r#"  pc.ontrack = (e) => {
    document.getElementById('remote').srcObject = e.streams[0] || new MediaStream([e.track]);
  };
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById('local').srcObject = stream;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  // A data channel too: every message comes back.
  const dc = window.dc = pc.createDataChannel('echo');
  status.echoes = [];
  dc.onopen = () => { status.channel = 'open'; dc.send('hello from the page'); };
  dc.onmessage = (m) => { status.echoes.push(m.data); };"#,
    )
}
