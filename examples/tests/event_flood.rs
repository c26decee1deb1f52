//! Floods of the examples' event paths (issue 13 item 7): an authenticated peer sends
//! thousands of keyframe requests (PLI) and data channel messages in bursts, and each
//! server must keep answering its API and forwarding media within a generous bound.
//! Before the fix a driver waited for room in its event channel without serving
//! commands while the example's event loop waited on a command: the session (echo,
//! chat) or the whole Endpoint (whip_whep) froze. Each example runs on another runtime
//! (echo: std threads, chat: smol, whip_whep: tokio), so all three drivers are flooded.
//!
//! The core peers here send each PLI in its own SRTCP packet (crafting compounds needs
//! the SRTP keys, which the core does not hand out). A compound of a hundred PLIs fills
//! the default 1,024-event channel from a few datagrams; the servers here get a
//! 16-event channel instead, which single-PLI bursts fill the same way.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{request, run_until, Peer, Upgrade, WsClient, LOOPBACK};
use sansrtc::media::RtpPacket;
use sansrtc::{ChannelId, DataChannelInit, MediaKind, SessionDescription, TransceiverId};
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::{chat, echo, whip_whep};
use sansrtc_std::Options;

/// Bursts of the flood, and keyframe requests and messages per burst.
const BURSTS: usize = 20;
const PER_BURST: usize = 200;

/// The servers' runtime options: loopback sockets and a small event channel (see the
/// module documentation).
fn options() -> Options {
    let mut options = media_options_for(LOOPBACK);
    options.capacity.events = 16;
    options
}

/// A VP8 payload (RFC 7741) that starts a keyframe: the SFU forwards a viewer's video
/// from a keyframe on, so the fake publisher sends nothing else.
const VP8_KEYFRAME: &[u8] = &[0x10, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];

fn packet(seq: u16, payload: &'static [u8]) -> RtpPacket {
    RtpPacket {
        payload_type: 96,
        sequence_number: seq,
        timestamp: u32::from(seq) * 3000,
        marker: true,
        ssrc: 0,
        payload: Bytes::from_static(payload),
    }
}

/// Run `f` on its own thread; fail if it takes longer than `limit` (a frozen server
/// shows up as this failure rather than a hung suite).
fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("frozen: {what} took over {limit:?}"))
}

/// One burst: `PER_BURST` keyframe requests on `track` (each its own SRTCP PLI) and
/// `PER_BURST` messages on `channel`, then a frame to send them.
fn burst(peer: &mut Peer, track: Option<TransceiverId>, channel: Option<ChannelId>) -> (u64, u64) {
    let (mut plis, mut messages) = (0, 0);
    for k in 0..PER_BURST {
        let now = Instant::now();
        let pc = peer.driver.core();
        if let Some(track) = track {
            plis += u64::from(pc.request_keyframe(track).is_ok());
        }
        if let Some(channel) = channel {
            let text = format!("flood {k}");
            messages += u64::from(pc.send_text(now, channel, &text).is_ok());
        }
        if k % 50 == 49 {
            peer.frame();
        }
    }
    peer.frame();
    (plis, messages)
}

/// Send `marker` on `channel` every 200 ms until `receiver` has it back (a relay or an
/// echo), framing both; fail after 20 s.
fn until_marker_arrives(
    sender: &mut Peer,
    channel: ChannelId,
    receiver: Option<&mut Peer>,
    marker: &str,
) {
    let mut receiver = receiver;
    let mut last = Instant::now() - Duration::from_secs(1);
    run_until(
        &format!("{marker} delivered after the flood"),
        Duration::from_secs(20),
        || {
            if last.elapsed() > Duration::from_millis(200) {
                last = Instant::now();
                let _ = sender
                    .driver
                    .core()
                    .send_text(Instant::now(), channel, marker);
            }
            sender.frame();
            let got = match receiver.as_deref_mut() {
                Some(r) => {
                    r.frame();
                    r.messages.iter().any(|m| &m[..] == marker.as_bytes())
                }
                None => sender.messages.iter().any(|m| &m[..] == marker.as_bytes()),
            };
            got
        },
    );
}

/// A core client of `echo`'s `POST /api/offer`: an audio track and a data channel.
fn echo_client(addr: SocketAddr) -> (Peer, TransceiverId, ChannelId) {
    let mut peer = Peer::new();
    let now = Instant::now();
    let pc = peer.driver.core();
    let track = pc
        .add_track(MediaKind::Audio, vec!["c".into()])
        .expect("track");
    let channel = pc
        .create_data_channel(now, "echo", DataChannelInit::default())
        .expect("channel");
    let offer = peer.offer();
    let r = request(
        addr,
        "POST",
        "/api/offer",
        &[("Content-Type", "application/json")],
        serde_json::to_string(&offer).expect("json").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answer: SessionDescription = serde_json::from_str(&r.body).expect("answer");
    peer.answer(answer.sdp);
    common::frame_until(
        "echo client connected",
        Duration::from_secs(20),
        &mut [&mut peer],
        |p| p[0].connected && !p[0].open.is_empty(),
    );
    (peer, track, channel)
}

#[test]
fn echo_keeps_echoing_through_a_flood() {
    let rt = Runtime::new(RuntimeKind::Std).expect("runtime");
    let addr = echo::start(SocketAddr::new(LOOPBACK, 0), rt, options()).expect("server");
    let (mut peer, track, channel) = echo_client(addr);
    let (mut plis, mut messages) = (0, 0);
    let mut seq = 0u16;
    for _ in 0..BURSTS {
        let (p, m) = burst(&mut peer, Some(track), Some(channel));
        plis += p;
        messages += m;
        seq = seq.wrapping_add(1);
        let _ = peer.driver.core().send_rtp(track, &packet(seq, b"media"));
    }
    eprintln!("echo flood: {plis} keyframe requests and {messages} messages sent");
    assert!(plis >= 1000, "the flood was sent: {plis} keyframe requests");
    // Still echoing: a marker message comes back, and media does.
    until_marker_arrives(&mut peer, channel, None, "after the flood");
    let before = peer.rtp;
    run_until(
        "RTP echoed after the flood",
        Duration::from_secs(20),
        || {
            seq = seq.wrapping_add(1);
            let _ = peer.driver.core().send_rtp(track, &packet(seq, b"media"));
            peer.frame();
            peer.rtp > before + 10
        },
    );
    // And its API answers: a second client gets in.
    let (_second, _, _) = within("a second /api/offer", Duration::from_secs(30), move || {
        echo_client(addr)
    });
}

/// A chat page over the WebSocket: a core with a `chat` data channel.
fn chat_member(addr: SocketAddr) -> (WsClient, Peer, ChannelId) {
    let mut ws = match WsClient::connect(LOOPBACK, addr, None) {
        Upgrade::Open(ws) => ws,
        Upgrade::Refused(status) => panic!("refused {status}"),
    };
    let mut peer = Peer::new();
    let channel = peer
        .driver
        .core()
        .create_data_channel(Instant::now(), "chat", DataChannelInit::default())
        .expect("channel");
    common::ws_negotiate(&mut ws, &mut peer);
    common::frame_until(
        "chat member joined",
        Duration::from_secs(20),
        &mut [&mut peer],
        |p| p[0].connected && !p[0].open.is_empty(),
    );
    (ws, peer, channel)
}

#[test]
fn chat_keeps_relaying_when_two_members_flood_each_other() {
    let rt = Runtime::new(RuntimeKind::Smol).expect("runtime");
    let running = chat::start(SocketAddr::new(LOOPBACK, 0), rt, options()).expect("server");
    let addr = running.addr;
    let (_ws_a, mut a, channel_a) = chat_member(addr);
    let (_ws_b, mut b, channel_b) = chat_member(addr);
    run_until("both in the room", Duration::from_secs(20), || {
        a.frame();
        b.frame();
        running.chat.member_count() == 2
    });
    // Both flood at once: each member's messages are relayed to the other's session.
    let mut sent = 0;
    for _ in 0..BURSTS {
        sent += burst(&mut a, None, Some(channel_a)).1;
        sent += burst(&mut b, None, Some(channel_b)).1;
    }
    eprintln!("chat flood: {sent} messages sent by two members");
    assert!(sent >= 4000, "the flood was sent: {sent}");
    until_marker_arrives(&mut a, channel_a, Some(&mut b), "from a after the flood");
    until_marker_arrives(&mut b, channel_b, Some(&mut a), "from b after the flood");
    let r = within("GET /", Duration::from_secs(10), move || {
        request(addr, "GET", "/", &[], b"")
    });
    assert_eq!(r.status, 200);
    eprintln!("chat relayed {} messages", running.chat.relayed());
}

#[test]
fn whip_whep_keeps_forwarding_when_a_viewer_floods_keyframe_requests() {
    let rt = Runtime::new(RuntimeKind::Tokio).expect("runtime");
    let running = whip_whep::start(SocketAddr::new(LOOPBACK, 0), &rt, options()).expect("server");
    let addr = running.addr;
    let mut publisher = Peer::new();
    let video = publisher
        .driver
        .core()
        .add_track(MediaKind::Video, vec!["p".into()])
        .expect("track");
    publisher.whip(addr, "/whip", None).expect("publish");
    let mut viewer = Peer::new();
    let watched = viewer
        .driver
        .core()
        .add_transceiver(MediaKind::Video, Default::default())
        .expect("transceiver");
    viewer.whip(addr, "/whep", None).expect("watch");
    let mut seq = 0u16;
    let mut media = |publisher: &mut Peer| {
        seq = seq.wrapping_add(1);
        let _ = publisher
            .driver
            .core()
            .send_rtp(video, &packet(seq, VP8_KEYFRAME));
        publisher.frame();
    };
    run_until("media forwarded", Duration::from_secs(20), || {
        media(&mut publisher);
        viewer.frame();
        viewer.rtp > 10
    });
    let mut plis = 0;
    // Longer than the server's keyframe-request interval (500 ms), so that its event
    // loop turns to the Endpoint in the middle of the flood.
    let flooding = Instant::now();
    while flooding.elapsed() < Duration::from_millis(1500) {
        plis += burst(&mut viewer, Some(watched), None).0;
        media(&mut publisher);
    }
    eprintln!("whip_whep flood: {plis} keyframe requests sent by the viewer");
    assert!(plis >= 1000, "the flood was sent: {plis}");
    // Media keeps flowing to the viewer, and the Endpoint answers calls.
    let before = viewer.rtp;
    let started = Instant::now();
    run_until(
        "media forwarded after the flood",
        Duration::from_secs(20),
        || {
            media(&mut publisher);
            viewer.frame();
            viewer.rtp > before + 50
        },
    );
    eprintln!(
        "50 packets forwarded in {:?} after the flood",
        started.elapsed()
    );
    let broadcast = running.broadcast.clone();
    let peers = within("an Endpoint call", Duration::from_secs(10), move || {
        broadcast.endpoint_peers()
    });
    assert_eq!(peers, 2);
    let mut second = Peer::new();
    second
        .driver
        .core()
        .add_transceiver(MediaKind::Video, Default::default())
        .expect("transceiver");
    let resource = within(
        "a second viewer's POST /whep",
        Duration::from_secs(20),
        move || second.whip(addr, "/whep", None).map_err(|r| r.status),
    );
    assert!(resource.is_ok(), "{resource:?}");
    let stats = running.broadcast.stats();
    eprintln!("{stats:?}");
    assert!(
        stats.keyframe_requests < plis / 10,
        "keyframe requests to the publisher stay rate limited: {stats:?}"
    );
}
