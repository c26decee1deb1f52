//! The server side of the examples' signaling WebSocket (RFC 6455). hyper answers the
//! opening handshake (same-origin unless other origins are allowed: see
//! [`origin_allowed`]) and hands over the connection; tungstenite (through
//! async-tungstenite) does the framing: masking rules, fragmented messages reassembled up
//! to `Limits::max_websocket_message`, ping answered with pong, the closing handshake.
//!
//! A task on the runtime moves messages between the connection and two small bounded
//! queues; the session code reads from a [`WebSocket`] (reads give up at a deadline: the
//! first offer's, see `Limits::websocket_offer_timeout`) and writes with cloneable
//! [`WsSender`]s, so that a session's event loop can write while its signaling reads.
//! An async session (`Reply::Session`) runs on the connection's own task beside the
//! queues' pump (`recv_async`, `send_json_async`: no thread of its own on any runtime);
//! blocking session code (`Reply::WebSocket`, the file examples) runs where the runtime
//! runs blocking code and uses the blocking methods.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::Message as Frame;
use async_tungstenite::WebSocketStream;
use futures_lite::future::{self, block_on};
use futures_lite::StreamExt;

use crate::http::{Limits, Request, Task};
use crate::http_io::{Deadline, UpgradedIo};
use crate::runtime::Spawner;

/// Received messages waiting for the session code (each at most
/// `Limits::max_websocket_message`).
const INCOMING_QUEUE: usize = 4;
/// tungstenite's read buffer and write batch (its defaults are 128 KiB each, much for
/// signaling).
const BUFFER: usize = 8 * 1024;
/// Messages waiting to be written; a sender waits when it is full.
const OUTGOING_QUEUE: usize = 64;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// What the session code asks of the connection.
enum Outgoing {
    Text(String),
    /// Start the closing handshake (the peer's answer still comes in).
    Close,
    /// Close and drop the connection now.
    Shutdown,
}

/// The sending half; clones write to the same connection.
#[derive(Clone)]
pub struct WsSender {
    outgoing: async_channel::Sender<Outgoing>,
}

impl WsSender {
    /// Send a text message (queued; it fails once the connection is gone). Blocks while
    /// the queue is full: for blocking session code.
    pub fn send_text(&self, text: &str) -> io::Result<()> {
        block_on(self.send_text_async(text))
    }

    /// Send a text message, waiting for room in the queue without blocking.
    pub async fn send_text_async(&self, text: &str) -> io::Result<()> {
        self.outgoing
            .send(Outgoing::Text(text.to_string()))
            .await
            .map_err(|_| io::ErrorKind::BrokenPipe.into())
    }

    /// Send a JSON value as a text message, without blocking.
    pub async fn send_json_async(&self, value: &serde_json::Value) -> io::Result<()> {
        self.send_text_async(&value.to_string()).await
    }

    /// Start the closing handshake, without blocking.
    pub async fn close_async(&self) {
        let _ = self.outgoing.send(Outgoing::Close).await;
    }

    /// Close the connection now, without blocking.
    pub async fn shutdown_async(&self) {
        let _ = self.outgoing.send(Outgoing::Shutdown).await;
    }

    /// Send a JSON value as a text message.
    pub fn send_json(&self, value: &serde_json::Value) -> io::Result<()> {
        self.send_text(&value.to_string())
    }

    /// Start the closing handshake.
    pub fn close(&self) {
        let _ = block_on(self.outgoing.send(Outgoing::Close));
    }

    /// Close the connection now (the reading side then sees the end).
    pub fn shutdown(&self) {
        let _ = block_on(self.outgoing.send(Outgoing::Shutdown));
    }
}

/// A server-side WebSocket connection.
pub struct WebSocket {
    incoming: async_channel::Receiver<Message>,
    sender: WsSender,
    deadline: Option<Instant>,
}

/// Whether the request's `Origin` may open a WebSocket: no `Origin` (not a browser, which
/// could send anything anyway), the page's own origin (its host and port are the `Host`
/// header's), or one of `allowed` (`*`: any). Refusing other origins keeps other sites'
/// pages from opening sessions in a visitor's browser.
pub fn origin_allowed(request: &Request, allowed: &[String]) -> bool {
    let Some(origin) = request.header("origin") else {
        return true;
    };
    if allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((host, request.header("host")), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// The `Sec-WebSocket-Accept` value for an upgrade request (tungstenite derives it), or
/// why the request is not a WebSocket upgrade.
pub(crate) fn accept_key(request: &Request) -> Result<String, String> {
    let upgrade = request
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let version = request.header("sec-websocket-version") == Some("13");
    match request.header("sec-websocket-key") {
        Some(key) if upgrade && version && request.method == "GET" => Ok(
            tungstenite::handshake::derive_accept_key(key.trim().as_bytes()),
        ),
        _ => Err("expected a WebSocket upgrade (version 13)".into()),
    }
}

/// The code a WebSocket runs.
pub(crate) enum SessionCode {
    /// Blocking code, run where the runtime runs blocking code.
    Blocking(Box<dyn FnOnce(WebSocket) + Send>),
    /// An async session, run on the connection's task.
    Async(Box<dyn FnOnce(WebSocket) -> Task<()> + Send>),
}

impl WebSocket {
    /// Run `session` on an upgraded connection, the connection on this task until either
    /// side ends: an async session beside it on this task, blocking code where the
    /// runtime runs blocking code. Reads give up at `Limits::websocket_offer_timeout`
    /// until the session changes the deadline; writes at `Limits::write_timeout`.
    pub(crate) async fn serve(
        upgraded: hyper::upgrade::Upgraded,
        deadline: Arc<Deadline>,
        limits: &Limits,
        spawner: &Spawner,
        session: SessionCode,
    ) {
        let config = WebSocketConfig::default()
            .max_message_size(Some(limits.max_websocket_message))
            .max_frame_size(Some(limits.max_websocket_message))
            .read_buffer_size(BUFFER)
            .write_buffer_size(BUFFER)
            // A message and a close frame, say, past which a writer that does not get
            // its bytes out fails.
            .max_write_buffer_size(BUFFER + limits.max_websocket_message.saturating_mul(2));
        let stream =
            WebSocketStream::from_raw_socket(UpgradedIo(upgraded), Role::Server, Some(config))
                .await;
        let (incoming_tx, incoming) = async_channel::bounded(INCOMING_QUEUE);
        let (outgoing, outgoing_rx) = async_channel::bounded(OUTGOING_QUEUE);
        let ws = WebSocket {
            incoming,
            sender: WsSender { outgoing },
            deadline: Some(Instant::now() + limits.websocket_offer_timeout),
        };
        let pump = pump(
            stream,
            incoming_tx,
            outgoing_rx,
            &deadline,
            limits.write_timeout,
        );
        match session {
            SessionCode::Blocking(session) => {
                spawner.spawn_blocking(move || session(ws));
                pump.await;
            }
            // Both run to their end: the session's end drops its queues, which ends the
            // pump; the connection's end closes the session's incoming queue.
            SessionCode::Async(session) => {
                future::zip(session(ws), pump).await;
            }
        }
    }

    /// The sending half.
    pub fn sender(&self) -> WsSender {
        self.sender.clone()
    }

    /// Reads give up `timeout` from now (`None`: wait forever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.deadline = timeout.map(|t| Instant::now() + t);
    }

    /// The next message; `None` when the peer closed, the connection failed or the read
    /// deadline passed. Blocks: for blocking session code.
    pub fn recv(&mut self) -> Option<Message> {
        block_on(self.recv_async())
    }

    /// The same without blocking (the deadline on async-io's timer, which works on every
    /// runtime).
    pub async fn recv_async(&mut self) -> Option<Message> {
        let next = async { self.incoming.recv().await.ok() };
        match self.deadline {
            None => next.await,
            Some(at) => {
                future::or(next, async move {
                    smol::Timer::at(at).await;
                    None
                })
                .await
            }
        }
    }
}

/// Move messages between the connection and the session's queues until either side
/// ends. Reading and writing go on at once, so that a session waiting for room to write
/// never holds up the reading, nor the reverse. Dropping the stream at the end closes the
/// connection.
async fn pump(
    stream: WebSocketStream<UpgradedIo>,
    incoming: async_channel::Sender<Message>,
    outgoing: async_channel::Receiver<Outgoing>,
    deadline: &Deadline,
    write_timeout: Duration,
) {
    let (mut writer, mut reader) = stream.split();
    let read = async {
        // Pings are answered and the closing handshake completed inside tungstenite.
        while let Some(Ok(frame)) = reader.next().await {
            let message = match frame {
                Frame::Text(text) => Message::Text(text.as_str().to_string()),
                Frame::Binary(data) => Message::Binary(data.to_vec()),
                _ => continue,
            };
            if incoming.send(message).await.is_err() {
                return;
            }
        }
        // The peer closed, broke a rule (unmasked, too large, bad opcode), or left.
    };
    let write = async {
        // Ends when every sender is gone (so is the session).
        while let Ok(next) = outgoing.recv().await {
            deadline.set(Some(Instant::now() + write_timeout));
            match next {
                Outgoing::Text(text) => {
                    if writer.send(Frame::text(text)).await.is_err() {
                        return;
                    }
                    deadline.set(None);
                }
                Outgoing::Close => {
                    // Only the peer's answer is awaited now, until the deadline.
                    let _ = writer.close(Some(normal_closure())).await;
                    future::pending::<()>().await;
                }
                Outgoing::Shutdown => {
                    let _ = writer.close(Some(normal_closure())).await;
                    return;
                }
            }
        }
    };
    future::or(read, write).await;
}

/// Close code 1000.
fn normal_closure() -> CloseFrame {
    CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "GET".into(),
            path: "/ws".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            peer: ([127, 0, 0, 1], 1).into(),
        }
    }

    #[test]
    fn rfc6455_accept_example() {
        // RFC 6455 section 1.3.
        let r = request(&[
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert_eq!(
            accept_key(&r).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert!(accept_key(&request(&[("upgrade", "websocket")])).is_err());
    }

    #[test]
    fn origins() {
        let own = request(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        let other = request(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(origin_allowed(&own, &[]));
        assert!(!origin_allowed(&other, &[]));
        assert!(origin_allowed(&other, &["http://evil.example".into()]));
        assert!(origin_allowed(&other, &["*".into()]));
        assert!(origin_allowed(&request(&[("host", "x")]), &[]));
    }
}
