//! A minimal server-side WebSocket (RFC 6455) for the examples' signaling: the opening
//! handshake, text and binary messages (fragmented ones reassembled, up to 1 MiB), ping
//! answered with pong, and the closing handshake. The sending half is cloneable so that
//! an event thread can write while another thread reads.

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::http::{write_head, Request};

/// The GUID of RFC 6455 section 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The largest message accepted.
const MAX_MESSAGE: usize = 1024 * 1024;

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
    reader: BufReader<TcpStream>,
    sender: WsSender,
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

/// Complete the opening handshake of an upgrade request.
pub(crate) fn accept(
    request: &Request,
    mut writer: TcpStream,
    reader: BufReader<TcpStream>,
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
    Ok(WebSocket {
        reader,
        sender: WsSender {
            stream: Arc::new(Mutex::new(writer)),
        },
    })
}

impl WebSocket {
    /// The sending half.
    pub fn sender(&self) -> WsSender {
        self.sender.clone()
    }

    /// Set the read timeout (`None`: wait forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(timeout)
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
            if !masked
                || len > MAX_MESSAGE as u64
                || message.len() as u64 + len > MAX_MESSAGE as u64
            {
                self.sender.close();
                return None;
            }
            let mut mask = [0u8; 4];
            self.reader.read_exact(&mut mask).ok()?;
            let mut payload = vec![0u8; len as usize];
            self.reader.read_exact(&mut payload).ok()?;
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
