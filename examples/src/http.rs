//! A small blocking HTTP/1.1 server for the examples: one thread per connection, one
//! request per connection (`Connection: close`), bounded head and body sizes, and CORS
//! headers on every response so that pages served elsewhere (WHIP/WHEP players) can call
//! it. Enough for signaling; not a general web server.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::websocket::WebSocket;

/// The largest request line plus headers accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The largest request body accepted (an SDP offer is a few KiB).
const MAX_BODY: usize = 1024 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

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
/// thread.
pub fn serve(listener: TcpListener, handler: Handler) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let handler = handler.clone();
        let _ = thread::Builder::new()
            .name("http".into())
            .spawn(move || handle_connection(stream, handler));
    }
}

/// Bind `addr` and serve on a background thread; returns the bound address.
pub fn spawn(addr: SocketAddr, handler: Handler) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    thread::Builder::new()
        .name("http-accept".into())
        .spawn(move || serve(listener, handler))?;
    Ok(bound)
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn handle_connection(stream: TcpStream, handler: Handler) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(peer) = stream.peer_addr() else { return };
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let request = match read_request(&mut reader, peer) {
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
        Reply::WebSocket(run) => match crate::websocket::accept(&request, writer, reader) {
            Ok(ws) => {
                let _ = ws.set_read_timeout(None);
                run(ws);
            }
            Err((mut writer, message)) => {
                let _ = write_response(&mut writer, &Response::text(400, message));
            }
        },
    }
}

enum RequestError {
    Io,
    Bad(u16, String),
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    peer: SocketAddr,
) -> Result<Request, RequestError> {
    let mut head_len = 0usize;
    let mut line = String::new();
    let mut read_line =
        |reader: &mut BufReader<TcpStream>, line: &mut String| -> Result<(), RequestError> {
            line.clear();
            let n = reader
                .by_ref()
                .take((MAX_HEAD - head_len.min(MAX_HEAD)) as u64 + 1)
                .read_line(line)
                .map_err(|_| RequestError::Io)?;
            head_len += n;
            if n == 0 {
                return Err(RequestError::Io);
            }
            if head_len > MAX_HEAD {
                return Err(RequestError::Bad(413, "request head too large".into()));
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
        let Some((name, value)) = l.split_once(':') else {
            return Err(RequestError::Bad(
                400,
                format!("malformed header line {l:?}"),
            ));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = match headers.iter().find(|(n, _)| n == "content-length") {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| RequestError::Bad(400, "bad Content-Length".into()))?,
        None => 0,
    };
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(RequestError::Bad(
            400,
            "chunked bodies are not accepted; send Content-Length".into(),
        ));
    }
    if length > MAX_BODY {
        return Err(RequestError::Bad(
            413,
            format!("body over {MAX_BODY} bytes"),
        ));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|_| RequestError::Io)?;
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
