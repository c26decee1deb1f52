//! A small blocking HTTP/1.1 server for the examples: one thread per connection, one
//! request per connection (`Connection: close`), and CORS headers on every response so
//! that pages served elsewhere (WHIP/WHEP players) can call it. Enough for signaling; not
//! a general web server. Everything a client can make it hold is bounded by [`Limits`]:
//! connections in total and per IP address, head and body sizes (the body's memory grows
//! as it arrives), an idle timeout before the request starts and a whole-request timeout
//! however its bytes are spread (slowloris), write timeouts, and for WebSockets an Origin
//! check, a message size and a deadline for the first offer.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::websocket::WebSocket;

/// The limits of the examples' HTTP server: every resource a client can make it hold is
/// bounded here.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once (WebSockets included); past it a connection gets a
    /// 503 and is closed at once.
    pub max_connections: usize,
    /// Connections served at once from one IP address.
    pub max_connections_per_ip: usize,
    /// The largest request line plus headers (431 past it).
    pub max_head: usize,
    /// The most header lines (431 past it).
    pub max_headers: usize,
    /// The largest request body (413 past it, before any of it is read; an SDP offer is
    /// a few KiB). The body's memory grows as it arrives.
    pub max_body: usize,
    /// How long a connection may stay silent before its request starts (then closed).
    pub idle_timeout: Duration,
    /// How long a whole request (head and body) may take from the connection's accept,
    /// however its bytes are spread (slowloris; 408 then closed).
    pub request_timeout: Duration,
    /// How long writing a response may block (a client that does not read).
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

/// A TCP stream whose reads give up at a deadline (the whole-request timeout), however
/// the bytes are spread.
pub(crate) struct TimedStream {
    stream: TcpStream,
    deadline: Option<Instant>,
}

impl TimedStream {
    /// Reads fail with `TimedOut` from `deadline` on (`None`: never).
    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }
}

impl Read for TimedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let timeout = match self.deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
        };
        self.stream.set_read_timeout(timeout)?;
        self.stream.read(buf)
    }
}

/// Connections being served, in total and per IP address.
#[derive(Default)]
struct Connections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
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
        Some(ConnectionSlot {
            table: table.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
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
    /// Header names in lower case, in arrival order.
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

/// What a handler does with a request.
pub enum Reply {
    /// Answer it.
    Response(Response),
    /// Upgrade the connection to a WebSocket (RFC 6455) and run this on it.
    WebSocket(Box<dyn FnOnce(WebSocket) + Send>),
}

impl From<Response> for Reply {
    fn from(r: Response) -> Reply {
        Reply::Response(r)
    }
}

/// A request handler shared by every connection thread.
pub type Handler = Arc<dyn Fn(Request) -> Reply + Send + Sync>;

/// Accept connections on `listener` forever (on the calling thread), each on its own
/// thread, within `limits`.
pub fn serve(listener: TcpListener, limits: Limits, handler: Handler) {
    let limits = Arc::new(limits);
    let table = Arc::new(Mutex::new(Connections::default()));
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(stream) => stream,
            Err(_) => {
                // Out of descriptors, for example: do not spin.
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let Some(slot) = ConnectionSlot::admit(&table, peer.ip(), &limits) else {
            refuse_busy(stream);
            continue;
        };
        let handler = handler.clone();
        let limits = limits.clone();
        // A failed spawn drops the closure, and the slot with it.
        let _ = thread::Builder::new().name("http".into()).spawn(move || {
            handle_connection(stream, peer, &limits, handler);
            drop(slot);
        });
    }
}

/// Answer 503 without waiting (a fresh socket's send buffer has room) and close.
fn refuse_busy(stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let mut stream = stream;
    let _ = stream.write(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\nRetry-After: 1\r\n\r\n",
    );
}

/// Bind `addr` and serve on a background thread with the default [`Limits`]; returns
/// the bound address.
pub fn spawn(addr: SocketAddr, handler: Handler) -> io::Result<SocketAddr> {
    spawn_with(addr, Limits::default(), handler)
}

/// Bind `addr` and serve on a background thread within `limits`; returns the bound
/// address.
pub fn spawn_with(addr: SocketAddr, limits: Limits, handler: Handler) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || serve(listener, limits, handler))?;
    Ok(bound)
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn handle_connection(stream: TcpStream, peer: SocketAddr, limits: &Limits, handler: Handler) {
    let accepted = Instant::now();
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(TimedStream {
        stream: read_half,
        deadline: Some(accepted + limits.idle_timeout.min(limits.request_timeout)),
    });
    let mut writer = stream;
    // Idle: nothing at all arrived in time (or the client left) and there is nothing to
    // answer.
    if !matches!(reader.fill_buf(), Ok(b) if !b.is_empty()) {
        return;
    }
    reader
        .get_mut()
        .set_deadline(Some(accepted + limits.request_timeout));
    let request = match read_request(&mut reader, peer, limits) {
        Ok(r) => r,
        Err(RequestError::Io) => return,
        Err(RequestError::Bad(status, message)) => {
            let _ = write_response(&mut writer, &Response::text(status, message));
            return;
        }
    };
    if request.method == "OPTIONS" {
        // CORS preflight.
        let _ = write_response(&mut writer, &Response::empty(204));
        return;
    }
    match handler(request.clone()) {
        Reply::Response(response) => {
            let _ = write_response(&mut writer, &response);
        }
        Reply::WebSocket(run) => {
            if !crate::websocket::origin_allowed(&request, &limits.allowed_origins) {
                let _ = write_response(
                    &mut writer,
                    &Response::text(403, "this origin may not open a WebSocket here"),
                );
                return;
            }
            match crate::websocket::accept(&request, writer, reader, limits) {
                Ok(ws) => run(ws),
                Err((mut writer, message)) => {
                    let _ = write_response(&mut writer, &Response::text(400, message));
                }
            }
        }
    }
}

enum RequestError {
    /// The connection failed or timed out mid-request (answered 408 where it timed out).
    Io,
    Bad(u16, String),
}

fn io_error(e: &io::Error) -> RequestError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            RequestError::Bad(408, "the request took too long".into())
        }
        _ => RequestError::Io,
    }
}

fn read_request(
    reader: &mut BufReader<TimedStream>,
    peer: SocketAddr,
    limits: &Limits,
) -> Result<Request, RequestError> {
    let max_head = limits.max_head;
    let mut head_len = 0usize;
    let mut line = String::new();
    let mut read_line =
        |reader: &mut BufReader<TimedStream>, line: &mut String| -> Result<(), RequestError> {
            line.clear();
            let n = reader
                .by_ref()
                .take((max_head - head_len.min(max_head)) as u64 + 1)
                .read_line(line)
                .map_err(|e| io_error(&e))?;
            head_len += n;
            if n == 0 {
                return Err(RequestError::Io);
            }
            if head_len > max_head {
                return Err(RequestError::Bad(431, "request head too large".into()));
            }
            Ok(())
        };
    read_line(reader, &mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Bad(400, "malformed request line".into()));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(RequestError::Bad(400, "only HTTP/1.x is served".into()));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (method, path, query) = (method.to_string(), path.to_string(), query.to_string());
    let mut headers = Vec::new();
    loop {
        read_line(reader, &mut line)?;
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(RequestError::Bad(431, "too many header lines".into()));
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(RequestError::Bad(
                400,
                format!("malformed header line {l:?}"),
            ));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let mut lengths = headers.iter().filter(|(n, _)| n == "content-length");
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => 0,
        (Some((_, v)), None) => v
            .parse::<usize>()
            .map_err(|_| RequestError::Bad(400, "bad Content-Length".into()))?,
        (Some(_), Some(_)) => {
            return Err(RequestError::Bad(
                400,
                "more than one Content-Length".into(),
            ))
        }
    };
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(RequestError::Bad(
            400,
            "chunked bodies are not accepted; send Content-Length".into(),
        ));
    }
    if length > limits.max_body {
        return Err(RequestError::Bad(
            413,
            format!("body over {} bytes", limits.max_body),
        ));
    }
    // Grows as the bytes arrive: a large Content-Length alone costs nothing.
    let mut body = Vec::new();
    reader
        .by_ref()
        .take(length as u64)
        .read_to_end(&mut body)
        .map_err(|e| io_error(&e))?;
    if body.len() < length {
        return Err(RequestError::Io);
    }
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
        peer,
    })
}

fn write_response(w: &mut TcpStream, r: &Response) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (name, value) in &r.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    head.push_str("Connection: close\r\n");
    head.push_str("Access-Control-Allow-Origin: *\r\n");
    head.push_str("Access-Control-Allow-Methods: GET, POST, PATCH, DELETE, OPTIONS\r\n");
    head.push_str("Access-Control-Allow-Headers: Content-Type, Authorization, If-Match\r\n");
    head.push_str("Access-Control-Expose-Headers: Location, ETag, Link\r\n");
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(&r.body)?;
    w.flush()
}

/// Write a raw response head (used for the WebSocket upgrade).
pub(crate) fn write_head(
    w: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", status, reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.flush()
}
