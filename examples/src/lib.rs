//! What the examples share: a small blocking HTTP/1.1 server and WebSocket (signaling
//! only), the runtime choice (`--runtime tokio|smol|std`), and the servers of the `echo`
//! and `whip_whep` examples as library code so that the browser tests run exactly what a
//! newcomer runs.

pub mod echo;
pub mod http;
pub mod media;
pub mod runtime;
pub mod websocket;
pub mod whip_whep;
