//! What the examples share: an HTTP/1.1 server and WebSocket for signaling (hyper and
//! tungstenite on whichever runtime the example runs), the runtime choice (`--runtime tokio|smol|std`), the WebSocket session code
//! (`session`), the codecs and containers of the file examples (`media`: VP8 over RTP,
//! IVF, Ogg Opus), and the servers of the `echo`, `whip_whep`, `save_to_file` and
//! `send_from_file` examples as library code so that the browser tests run exactly what
//! a newcomer runs.

pub mod chat;
pub mod echo;
pub mod http;
mod http_io;
pub mod media;
pub mod runtime;
pub mod save_to_file;
pub mod send_from_file;
pub mod session;
pub mod stats;
pub mod websocket;
pub mod whip_whep;
