//! The examples' HTTP/1.1 server: hyper parses each request and writes each response
//! (one request per connection, `Connection: close`), WebSockets are tungstenite's (see
//! [`crate::websocket`]), and every connection runs on the runtime the example was
//! started with ([`Spawner`]). CORS headers go on every response so that pages served
//! elsewhere (WHIP/WHEP players) can call it. Handlers are plain functions that must not
//! block: run on the connection's task, they answer at once or hand back a future to
//! await there (an answer that waits for a driver, an async WebSocket session) or
//! blocking session code to run where the runtime runs blocking code. Everything a client can make the server hold is
//! bounded by [`Limits`]: connections in total and per IP address, head size and header
//! count (hyper's own limits), body size (counted as it arrives), an idle timeout before
//! the request starts and a whole-request timeout however its bytes are spread
//! (slowloris), write timeouts, and for WebSockets an Origin check, a message size and a
//! deadline for the first offer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body as _;

use crate::http_io::{Deadline, Stream, TimedIo};
use crate::runtime::Spawner;
use crate::websocket::{SessionCode, WebSocket};

/// The limits of the examples' HTTP server: every resource a client can make it hold is
/// bounded here.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once (WebSockets included); past it a connection gets a
    /// 503 and is closed at once.
    pub max_connections: usize,
    /// Connections served at once from one IP address.
    pub max_connections_per_ip: usize,
    /// The largest request line plus headers (hyper's `max_header_size`; 431 past it).
    pub max_head: usize,
    /// The most header lines (hyper's `max_headers`; 431 past it).
    pub max_headers: usize,
    /// The largest request body (413 past it: before any of it is read when
    /// Content-Length announces more, as soon as a chunked body passes it; an SDP offer
    /// is a few KiB). The body's memory grows as it arrives.
    pub max_body: usize,
    /// How long a connection may stay silent before its request starts (then closed
    /// without an answer).
    pub idle_timeout: Duration,
    /// How long a whole request (head and body) may take from the connection's accept,
    /// however its bytes are spread (slowloris): closed, after a 408 if the head was
    /// in.
    pub request_timeout: Duration,
    /// How long writing a response, or one WebSocket message, may take (a client that
    /// does not read).
    pub write_timeout: Duration,
    /// How long a WebSocket may stay open before its first offer (then closed; no
    /// PeerConnection exists before the offer).
    pub websocket_offer_timeout: Duration,
    /// The largest WebSocket message (the connection is closed past it).
    pub max_websocket_message: usize,
    /// Origins besides the page's own (`http://host:port` as the `Host` header names it)
    /// allowed to open a WebSocket; `*` allows any.
    pub allowed_origins: Vec<String>,
    /// Sessions (PeerConnections) alive at once; past it new ones get a 503.
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_connections_per_ip: 32,
            max_head: 16 * 1024,
            max_headers: 64,
            max_body: 64 * 1024,
            idle_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            websocket_offer_timeout: Duration::from_secs(10),
            max_websocket_message: 64 * 1024,
            allowed_origins: Vec::new(),
            max_sessions: 64,
        }
    }
}

/// Connections being served, in total and per IP address.
#[derive(Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Connections being served by every server of the process (each admitted connection's
/// [`ConnectionSlot`] counts itself).
static OPEN_CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// HTTP connections (WebSockets included) being served now by every server of the
/// process, the request asking included.
pub fn open_connections() -> u64 {
    OPEN_CONNECTIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A connection's place in [`Connections`], given back when dropped.
struct ConnectionSlot {
    table: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl ConnectionSlot {
    fn admit(table: &Arc<Mutex<Connections>>, ip: IpAddr, limits: &Limits) -> Option<Self> {
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = t.per_ip.get(&ip).copied().unwrap_or(0);
        if t.total >= limits.max_connections || from_ip >= limits.max_connections_per_ip {
            return None;
        }
        t.total += 1;
        t.per_ip.insert(ip, from_ip + 1);
        OPEN_CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(ConnectionSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        t.total = t.total.saturating_sub(1);
        if let Some(n) = t.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string (after `?`), possibly empty.
    pub query: String,
    /// Header names in lower case (hyper's order: by name, each name's values in
    /// arrival order).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The client's address.
    pub peer: SocketAddr,
}

impl Request {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The media type of the body (`Content-Type` without parameters), lower case.
    pub fn content_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// A query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then_some(v)
        })
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (besides Content-Length, Connection and the CORS ones, which are added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A plain-text response (errors carry a clear message this way).
    pub fn text(status: u16, message: impl Into<String>) -> Response {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Response::empty(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body)
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response::empty(status)
                .header("Content-Type", "application/json")
                .body(body),
            Err(e) => Response::text(500, format!("cannot encode the response: {e}")),
        }
    }

    /// An HTML page.
    pub fn html(body: &str) -> Response {
        Response::empty(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body.as_bytes().to_vec())
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }
}

/// A boxed future of the examples: an answer that takes waiting, or a session.
pub type Task<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What a handler does with a request.
pub enum Reply {
    /// Answer it.
    Response(Response),
    /// Answer it with what this future gives, awaited on the connection's task (it must
    /// not block: it awaits the handles' methods and the runtime's timers instead).
    Later(Task<Response>),
    /// Upgrade the connection to a WebSocket (RFC 6455) and run this async session on
    /// the connection's task (a task on tokio and smol, the connection's thread on std).
    Session(Box<dyn FnOnce(WebSocket) -> Task<()> + Send>),
    /// Upgrade the connection to a WebSocket and run this blocking code on it, where the
    /// runtime runs blocking code (a thread for as long as the session lasts).
    WebSocket(Box<dyn FnOnce(WebSocket) + Send>),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::Response(r)
    }
}

/// A request handler shared by every connection, run on the connection's task (see
/// [`Spawner`]): it must not block; what waits (a session, an answer that needs the
/// driver) it hands back as a future ([`Reply::Later`], [`Reply::Session`]). A handler
/// that panics gets the client a 500.
pub type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

/// What every connection shares.
struct Server {
    limits: Limits,
    handler: Handler,
    spawner: Spawner,
    connections: Arc<Mutex<Connections>>,
}

/// Bind `addr` and serve on `spawner`'s runtime with the default [`Limits`]; returns the
/// bound address.
pub fn spawn(addr: SocketAddr, spawner: &Spawner, handler: Handler) -> io::Result<SocketAddr> {
    spawn_with(addr, spawner, Limits::default(), handler)
}

/// Bind `addr` and serve on `spawner`'s runtime within `limits`; returns the bound
/// address. The accept loop runs as a task (on std, on a thread of its own), and so does
/// every connection admitted.
pub fn spawn_with(
    addr: SocketAddr,
    spawner: &Spawner,
    limits: Limits,
    handler: Handler,
) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let server = Arc::new(Server {
        limits,
        handler,
        spawner: spawner.clone(),
        connections: Arc::default(),
    });
    if let Some(handle) = spawner.tokio() {
        listener.set_nonblocking(true)?;
        let listener = {
            let _entered = handle.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        spawner.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => server.admit(Stream::Tokio(stream), peer),
                    Err(_) => server.pause().await,
                }
            }
        });
    } else if spawner.kind() == crate::runtime::RuntimeKind::Smol {
        let listener = smol::Async::new(listener)?;
        spawner.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => server.admit(Stream::Async(stream), peer),
                    Err(_) => server.pause().await,
                }
            }
        });
    } else {
        std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || loop {
                match listener.accept() {
                    Ok((stream, peer)) => server.admit_std(stream, peer),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            })?;
    }
    Ok(bound)
}

/// The answer to a connection past the limits, written without waiting (a fresh
/// socket's send buffer has room) before it is closed.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n";

impl Server {
    /// After a failed accept (out of descriptors, say): do not spin.
    async fn pause(&self) {
        self.spawner
            .sleep_until(Instant::now() + Duration::from_millis(10))
            .await;
    }

    /// A connection accepted on a std thread: refused, or served on a thread of its own
    /// (async-io's reactor wakes it).
    fn admit_std(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let Some(slot) = ConnectionSlot::admit(&self.connections, peer.ip(), &self.limits) else {
            use std::io::Write as _;
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write(BUSY);
            return;
        };
        let server = self.clone();
        self.spawner.spawn(async move {
            if let Ok(stream) = smol::Async::new(stream) {
                server.serve(Stream::Async(stream), peer, slot).await;
            }
        });
    }

    /// A connection accepted by a task: refused, or served by a task of its own.
    fn admit(self: &Arc<Self>, stream: Stream, peer: SocketAddr) {
        let Some(slot) = ConnectionSlot::admit(&self.connections, peer.ip(), &self.limits) else {
            use std::io::Write as _;
            let _ = match &stream {
                Stream::Tokio(s) => s.try_write(BUSY),
                Stream::Async(s) => s.get_ref().write(BUSY),
            };
            return;
        };
        let server = self.clone();
        self.spawner
            .spawn(async move { server.serve(stream, peer, slot).await });
    }

    /// Serve one connection: one request, answered, then closed (or upgraded).
    async fn serve(self: Arc<Self>, stream: Stream, peer: SocketAddr, slot: ConnectionSlot) {
        let limits = &self.limits;
        let accepted = Instant::now();
        let deadline = Deadline::idle_then(
            accepted + limits.idle_timeout.min(limits.request_timeout),
            accepted + limits.request_timeout,
        );
        let io = TimedIo::new(stream, deadline.clone(), self.spawner.clone());
        let slot = Arc::new(slot);
        let server = self.clone();
        let service = hyper::service::service_fn(move |request| {
            let server = server.clone();
            let deadline = deadline.clone();
            let slot = slot.clone();
            async move { Ok::<_, Infallible>(server.respond(request, peer, deadline, slot).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .keep_alive(false)
            .max_headers(limits.max_headers)
            .max_header_size(limits.max_head)
            // hyper's floor for its read buffer; the head's own limit is above.
            .max_buf_size(limits.max_head.max(8 * 1024))
            // Our deadline covers the head (and the body) already.
            .header_read_timeout(None);
        let _ = builder.serve_connection(io, service).with_upgrades().await;
    }

    /// Answer one request.
    async fn respond(
        &self,
        mut request: hyper::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        deadline: Arc<Deadline>,
        slot: Arc<ConnectionSlot>,
    ) -> hyper::Response<Full<Bytes>> {
        let limits = &self.limits;
        let write_by = || Some(Instant::now() + limits.write_timeout);
        // A large Content-Length alone is refused before any of the body is read.
        if request.body().size_hint().lower() > limits.max_body as u64 {
            deadline.set(write_by());
            return to_hyper(Response::text(
                413,
                format!("body over {} bytes", limits.max_body),
            ));
        }
        let upgrade = hyper::upgrade::on(&mut request);
        let (parts, body) = request.into_parts();
        // Grows as the bytes arrive, up to the limit (chunked bodies too).
        let body = match Limited::new(body, limits.max_body).collect().await {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                deadline.set(write_by());
                return to_hyper(if e.is::<http_body_util::LengthLimitError>() {
                    Response::text(413, format!("body over {} bytes", limits.max_body))
                } else {
                    Response::text(408, "the request took too long")
                });
            }
        };
        let request = match to_request(parts, body, peer) {
            Ok(request) => request,
            Err(message) => {
                deadline.set(write_by());
                return to_hyper(Response::text(400, message));
            }
        };
        if request.method == "OPTIONS" {
            // CORS preflight.
            deadline.set(write_by());
            return to_hyper(Response::empty(204));
        }
        let origin_allowed = crate::websocket::origin_allowed(&request, &limits.allowed_origins);
        let accept = crate::websocket::accept_key(&request);
        // The request is in: the handler takes the time it needs.
        deadline.set(None);
        // On this task: a handler answers at once or hands back what waits as a future.
        let handler = &self.handler;
        let reply =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(request))).ok();
        deadline.set(write_by());
        let run = match reply {
            None => return to_hyper(Response::text(500, "the handler failed")),
            Some(Reply::Response(response)) => return to_hyper(response),
            Some(Reply::Later(answer)) => {
                deadline.set(None);
                let response = answer.await;
                deadline.set(write_by());
                return to_hyper(response);
            }
            Some(Reply::WebSocket(run)) => SessionCode::Blocking(run),
            Some(Reply::Session(run)) => SessionCode::Async(run),
        };
        if !origin_allowed {
            return to_hyper(Response::text(
                403,
                "this origin may not open a WebSocket here",
            ));
        }
        let accept = match accept {
            Ok(accept) => accept,
            Err(message) => return to_hyper(Response::text(400, message)),
        };
        let spawner = self.spawner.clone();
        let limits = limits.clone();
        self.spawner.spawn(async move {
            let Ok(upgraded) = upgrade.await else {
                return;
            };
            // The session sets its own deadlines (the first offer's).
            deadline.set(None);
            WebSocket::serve(upgraded, deadline, &limits, &spawner, run).await;
            drop(slot);
        });
        to_hyper(
            Response::empty(101)
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Accept", accept),
        )
    }
}

/// Our request from hyper's: header values must be text.
fn to_request(
    parts: hyper::http::request::Parts,
    body: Bytes,
    peer: SocketAddr,
) -> Result<Request, String> {
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = value
            .to_str()
            .map_err(|_| format!("the {name} header is not text"))?;
        headers.push((name.as_str().to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
        peer,
    })
}

/// hyper's response from ours, with the CORS headers.
fn to_hyper(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(r.status);
    for (name, value) in &r.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if r.status != 101 {
        builder = builder
            .header("Access-Control-Allow-Origin", "*")
            .header(
                "Access-Control-Allow-Methods",
                "GET, POST, PATCH, DELETE, OPTIONS",
            )
            .header(
                "Access-Control-Allow-Headers",
                "Content-Type, Authorization, If-Match",
            )
            .header("Access-Control-Expose-Headers", "Location, ETag, Link");
    }
    builder
        .body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| {
            let mut error = hyper::Response::new(Full::new(Bytes::from_static(
                b"the response could not be encoded\n",
            )));
            *error.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            error
        })
}
