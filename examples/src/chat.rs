//! The `chat` example's server: every page opens a data channel to the server, which
//! relays each message to every other page. Signaling over the WebSocket (the page's
//! offer carries only a data section); the server sends no media.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use sansrtc::{ChannelId, Config, Event};
use sansrtc_std::{Options, PeerHandle};

use crate::http::{self, Limits, Reply, Request, Response};
use crate::runtime::Runtime;
use crate::session::{self, Answer, SessionEvents, Signaling};

/// A page in the room: its PeerConnection and its chat channel.
struct Member {
    session: u64,
    pc: PeerHandle,
    channel: ChannelId,
}

/// The chat server.
pub struct Chat {
    signaling: Signaling,
    members: Mutex<Vec<Member>>,
    next_session: Mutex<u64>,
    relayed: Mutex<u64>,
}

/// A running chat server.
pub struct Running {
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The server, for its counters.
    pub chat: Arc<Chat>,
}

/// Start the chat server on `addr` (port 0 picks one).
pub fn start(addr: SocketAddr, runtime: Runtime, options: Options) -> std::io::Result<Running> {
    start_with(addr, runtime, options, Limits::default())
}

/// The same within `limits`.
pub fn start_with(
    addr: SocketAddr,
    runtime: Runtime,
    options: Options,
    limits: Limits,
) -> std::io::Result<Running> {
    let spawner = runtime.spawner();
    let chat = Arc::new(Chat {
        signaling: Signaling::with_limits(runtime, options, Config::default(), limits.clone()),
        members: Mutex::new(Vec::new()),
        next_session: Mutex::new(0),
        relayed: Mutex::new(0),
    });
    let routes = chat.clone();
    let page: Arc<str> = page().into();
    let addr = http::spawn_with(
        addr,
        &spawner,
        limits,
        Arc::new(move |req| routes.route(req, &page)),
    )?;
    Ok(Running { addr, chat })
}

impl Chat {
    fn members(&self) -> MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pages currently in the room.
    pub fn member_count(&self) -> usize {
        self.members().len()
    }

    /// The sessions: how many are alive, how many PeerConnections were made.
    pub fn signaling(&self) -> &Signaling {
        &self.signaling
    }

    /// Messages relayed (once per recipient).
    pub fn relayed(&self) -> u64 {
        *self.relayed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn route(self: &Arc<Self>, req: Request, page: &str) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::html(page).into(),
            ("GET", "/stats") => {
                crate::stats::response(crate::stats::signaling_json(&self.signaling)).into()
            }
            ("GET", "/ws") => {
                let chat = self.clone();
                Reply::Session(Box::new(move |ws| {
                    Box::pin(async move {
                        let session = {
                            let mut n = chat.next_session.lock().unwrap_or_else(|e| e.into_inner());
                            *n += 1;
                            *n
                        };
                        let relay = chat.clone();
                        chat.signaling
                            .websocket_session_async(
                                ws,
                                Answer::Receive,
                                move |pc, candidates| async move {
                                    let mut events = SessionEvents::new(&pc, candidates);
                                    while let Some(event) = events.next().await {
                                        relay.on_event(session, &pc, event).await;
                                    }
                                    relay.members().retain(|m| m.session != session);
                                },
                            )
                            .await
                    })
                }))
            }
            (_, "/" | "/ws") => Response::text(405, "method not allowed").into(),
            _ => Response::text(404, format!("no such resource: {}", req.path)).into(),
        }
    }

    async fn on_event(&self, session: u64, pc: &PeerHandle, event: Event) {
        match event {
            Event::DataChannel { channel, .. } => self.members().push(Member {
                session,
                pc: pc.clone(),
                channel,
            }),
            Event::DataChannelMessage { data, binary, .. } => {
                let others: Vec<(PeerHandle, ChannelId)> = self
                    .members()
                    .iter()
                    .filter(|m| m.session != session)
                    .map(|m| (m.pc.clone(), m.channel))
                    .collect();
                // Fire and forget (`cast`): this session's event loop never waits for
                // another session's driver, so two pages flooding each other cannot
                // freeze both. A full send buffer drops the message there.
                for (pc, channel) in others {
                    let data = data.clone();
                    let sent = pc
                        .cast(move |pc, now| {
                            let _ = pc.send_data(now, channel, data, binary);
                        })
                        .await;
                    if sent.is_ok() {
                        *self.relayed.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    }
                }
            }
            Event::DataChannelClose(channel) => {
                self.members()
                    .retain(|m| !(m.session == session && m.channel == channel));
            }
            _ => {}
        }
    }
}

/// The page: a log, a text box, and a data channel to the server.
pub fn page() -> String {
    session::page(
        "sansrtc chat",
        r#"<p>Open this page in several tabs: each message goes to every other tab through the server's data channels.</p>
<pre id="log" style="background:#eee;padding:1em;min-height:8em"></pre>
<form id="form"><input id="text" size="50" autocomplete="off" placeholder="say something"> <button>Send</button></form>"#,
        r#"  const dc = window.dc = pc.createDataChannel('chat');
  status.received = [];
  const log = (line) => { document.getElementById('log').textContent += line + '\n'; };
  dc.onopen = () => { status.channel = 'open'; log('* joined'); };
  dc.onclose = () => { status.channel = 'closed'; log('* left'); };
  dc.onmessage = (m) => { status.received.push(m.data); log('them: ' + m.data); };
  window.say = (text) => { dc.send(text); log('me: ' + text); };
  document.getElementById('form').onsubmit = (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    if (input.value && dc.readyState === 'open') window.say(input.value);
    input.value = '';
  };"#,
    )
}
