//! `GET /stats`, shared by every example with an HTTP front: the process's sansrtc
//! resources ([`sansrtc_std::runtime_stats`]: drivers per runtime, driver tasks and
//! threads, UDP sockets, TURN streams, queued commands and events, datagram and drop
//! totals), the HTTP connections open, and what the example adds (its sessions). JSON,
//! for scripts and tests to poll.

use serde_json::{json, Value};

use crate::http::{self, Response};
use crate::session::Signaling;

/// The runtime's resources as JSON.
pub fn runtime_json() -> Value {
    let s = sansrtc_std::runtime_stats();
    let t = s.totals;
    json!({
        "drivers": {
            "std": s.std_drivers,
            "tokio": s.tokio_drivers,
            "smol": s.smol_drivers,
            "game": s.game_drivers,
            "endpoints": s.endpoint_drivers,
            "total": s.drivers(),
        },
        "driver_tasks": s.driver_tasks,
        "driver_threads": s.driver_threads,
        "turn_stream_threads": s.turn_stream_threads,
        "udp_sockets": s.udp_sockets,
        "turn_streams": s.turn_streams,
        "commands_queued": s.commands_queued,
        "events_queued": s.events_queued,
        "totals": {
            "datagrams_received": t.datagrams_received,
            "datagrams_sent": t.datagrams_sent,
            "send_errors": t.send_errors,
            "events_dropped": t.events_dropped,
            "events_coalesced": t.events_coalesced,
            "turn_streams_connected": t.turn_streams_connected,
            "turn_stream_failures": t.turn_stream_failures,
        },
    })
}

/// A [`Signaling`]'s sessions as JSON.
pub fn signaling_json(signaling: &Signaling) -> Value {
    json!({
        "sessions_live": signaling.live_sessions(),
        "peers_created": signaling.peers_created(),
    })
}

/// The `/stats` response: `{"runtime": ..., "http": ..., "example": example}`.
pub fn response(example: Value) -> Response {
    Response::json(
        200,
        &json!({
            "runtime": runtime_json(),
            "http": { "connections_open": http::open_connections() },
            "example": example,
        }),
    )
}
