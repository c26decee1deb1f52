//! A minimal server-side WebSocket (RFC 6455) for the examples' signaling: the opening
//! handshake (same-origin unless other origins are allowed: see [`origin_allowed`]),
//! text and binary messages (fragmented ones reassembled, up to
//! `Limits::max_websocket_message`), ping answered with pong, and the closing handshake.
//! Reads give up at a deadline (the first offer's, see `Limits::websocket_offer_timeout`).
//! The sending half is cloneable so that an event thread can write while another thread
//! reads.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::http::{write_head, Limits, Request, TimedStream};

/// The GUID of RFC 6455 section 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// The sending half; clones write to the same connection.
#[derive(Clone)]
pub struct WsSender {
    stream: Arc<Mutex<TcpStream>>,
}

impl WsSender {
    /// Send a text message.
    pub fn send_text(&self, text: &str) -> io::Result<()> {
        self.send_frame(0x1, text.as_bytes())
    }

    /// Send a JSON value as a text message.
    pub fn send_json(&self, value: &serde_json::Value) -> io::Result<()> {
        self.send_text(&value.to_string())
    }

    /// Start the closing handshake.
    pub fn close(&self) {
        let _ = self.send_frame(0x8, &[0x03, 0xe8]); // 1000: normal closure
    }

    /// Close the connection now (the reading side then sees the end).
    pub fn shutdown(&self) {
        self.close();
        if let Ok(stream) = self.stream.lock() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn send_frame(&self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 10);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(payload);
        let mut stream = self
            .stream
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        stream.write_all(&frame)?;
        stream.flush()
    }
}

/// A server-side WebSocket connection.
pub struct WebSocket {
    reader: BufReader<TimedStream>,
    sender: WsSender,
    max_message: usize,
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Sec-WebSocket-Accept` value for a key.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    base64(&sha.finalize())
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

/// Complete the opening handshake of an upgrade request. Reads then give up at
/// `Limits::websocket_offer_timeout` until the deadline is changed.
pub(crate) fn accept(
    request: &Request,
    mut writer: TcpStream,
    mut reader: BufReader<TimedStream>,
    limits: &Limits,
) -> Result<WebSocket, (TcpStream, String)> {
    let upgrade = request
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = request.header("sec-websocket-key").filter(|_| upgrade) else {
        return Err((writer, "expected a WebSocket upgrade".into()));
    };
    let accept = accept_key(key);
    if write_head(
        &mut writer,
        101,
        &[
            ("Upgrade", "websocket".into()),
            ("Connection", "Upgrade".into()),
            ("Sec-WebSocket-Accept", accept),
        ],
    )
    .is_err()
    {
        return Err((writer, "write failed".into()));
    }
    reader
        .get_mut()
        .set_deadline(Some(Instant::now() + limits.websocket_offer_timeout));
    Ok(WebSocket {
        reader,
        sender: WsSender {
            stream: Arc::new(Mutex::new(writer)),
        },
        max_message: limits.max_websocket_message,
    })
}

impl WebSocket {
    /// The sending half.
    pub fn sender(&self) -> WsSender {
        self.sender.clone()
    }

    /// Reads give up `timeout` from now (`None`: wait forever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.reader
            .get_mut()
            .set_deadline(timeout.map(|t| Instant::now() + t));
    }

    /// The next message; `None` when the peer closed or the connection failed.
    pub fn recv(&mut self) -> Option<Message> {
        let mut message: Vec<u8> = Vec::new();
        let mut message_opcode = 0u8;
        loop {
            let mut head = [0u8; 2];
            self.reader.read_exact(&mut head).ok()?;
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.reader.read_exact(&mut b).ok()?;
                    u64::from(u16::from_be_bytes(b))
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.reader.read_exact(&mut b).ok()?;
                    u64::from_be_bytes(b)
                }
                n => u64::from(n),
            };
            // Clients must mask (RFC 6455 5.1); a frame over the limit ends the connection.
            let max = self.max_message as u64;
            if !masked || len > max || message.len() as u64 + len > max {
                self.sender.close();
                return None;
            }
            let mut mask = [0u8; 4];
            self.reader.read_exact(&mut mask).ok()?;
            let mut payload = Vec::new();
            self.reader
                .by_ref()
                .take(len)
                .read_to_end(&mut payload)
                .ok()?;
            if payload.len() as u64 != len {
                return None;
            }
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                0x8 => {
                    self.sender.close();
                    return None;
                }
                0x9 => {
                    let _ = self.sender.send_frame(0xA, &payload);
                }
                0xA => {}
                0x0..=0x2 => {
                    if opcode != 0 {
                        message_opcode = opcode;
                    }
                    message.extend_from_slice(&payload);
                    if fin {
                        return Some(if message_opcode == 0x1 {
                            Message::Text(String::from_utf8(message).ok()?)
                        } else {
                            Message::Binary(message)
                        });
                    }
                }
                _ => {
                    self.sender.close();
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_accept_example() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
