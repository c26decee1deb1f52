//! The examples, run as a newcomer runs them, with real browsers (inside the
//! loopback-only network namespace of `scripts/test.sh`):
//! - `whip_whep`: a browser publishes its fake camera and microphone with the example's
//!   `/publish` page (WHIP, trickle ICE over PATCH) and a second browser plays it with
//!   `/watch` (WHEP): the viewer decodes video (`framesDecoded > 0`) and receives audio,
//!   and its joining made the server ask the publisher for a keyframe. Once per runtime
//!   (tokio, smol, std) with Chromium, and once with Firefox ESR as publisher and viewer.
//!   The time from joining to the first decoded frame is printed (never asserted).
//! - `echo`: the echo page over WebSocket with trickle ICE both ways gets its own camera
//!   back and decodes it, and its data channel message comes back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::{chat, echo, whip_whep};
use sansrtc_tests::browser::{BrowserKind, BrowserPeer};
use serde_json::{json, Value};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(40);

fn any_port() -> SocketAddr {
    SocketAddr::new(LOOPBACK, 0)
}

fn eval(browser: &mut BrowserPeer, js: &str) -> Value {
    browser
        .call(json!({"cmd": "eval", "js": js}))
        .unwrap_or_else(|e| panic!("eval {js}: {e}"))
}

fn page_status(browser: &mut BrowserPeer) -> Value {
    eval(browser, "return window.sansrtcStatus || null;")
}

/// Sum of an inbound-rtp field over the page's `window.pc` stats for one kind.
fn inbound(browser: &mut BrowserPeer, kind: &str, field: &str) -> u64 {
    let js = format!(
        "const r = await window.pc.getStats(); let n = 0; \
         r.forEach((s) => {{ if (s.type === 'inbound-rtp' && s.kind === '{kind}') n += s['{field}'] || 0; }}); return n;"
    );
    eval(browser, &js).as_u64().unwrap_or(0)
}

/// Poll `check` every 100 ms until it holds; panics with `what` after `WAIT`.
fn wait_until(what: &str, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check() {
            None => return,
            Some(state) => last = state,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}; last seen: {last}");
}

fn wait_connected(browser: &mut BrowserPeer, who: &str) {
    wait_until(&format!("{who} connected"), || {
        let status = page_status(browser);
        if let Some(e) = status.get("error").and_then(Value::as_str) {
            panic!("{who} page failed: {e}");
        }
        (status.get("state").and_then(Value::as_str) != Some("connected"))
            .then(|| status.to_string())
    });
}

fn broadcast(kind: BrowserKind, runtime: RuntimeKind) {
    let rt = Runtime::new(runtime).expect("runtime");
    let running = whip_whep::start(any_port(), &rt, media_options_for(LOOPBACK)).expect("server");
    let base = format!("http://{}", running.addr);

    let mut publisher =
        BrowserPeer::spawn(kind).expect("spawn browser (scripts/test.sh installs it)");
    publisher
        .call(json!({"cmd": "goto", "url": format!("{base}/publish")}))
        .expect("open /publish");
    wait_connected(&mut publisher, "publisher");
    assert_eq!(running.broadcast.sessions(), 1);

    let mut viewer = BrowserPeer::spawn(kind).expect("spawn browser");
    let before = running.broadcast.stats();
    let joined = Instant::now();
    viewer
        .call(json!({"cmd": "goto", "url": format!("{base}/watch")}))
        .expect("open /watch");
    wait_until("the viewer's first decoded frame", || {
        let frames = inbound(&mut viewer, "video", "framesDecoded");
        (frames == 0).then(|| {
            format!(
                "{} / {:?}",
                page_status(&mut viewer),
                running.broadcast.stats()
            )
        })
    });
    let first_frame = joined.elapsed();
    wait_until("viewer audio", || {
        let packets = inbound(&mut viewer, "audio", "packetsReceived");
        (packets == 0).then(|| packets.to_string())
    });
    let after = running.broadcast.stats();
    assert!(
        after.keyframe_requests > before.keyframe_requests,
        "a joining viewer asks the publisher for a keyframe: {before:?} -> {after:?}"
    );
    assert!(after.forwarded > 0);
    let status = page_status(&mut viewer);
    assert!(
        status.get("patches").and_then(Value::as_u64).unwrap_or(0) > 0,
        "the viewer trickled candidates with PATCH: {status}"
    );
    eprintln!(
        "whip_whep {kind:?} on {runtime}: first frame {} ms after the viewer opened /watch",
        first_frame.as_millis()
    );
    // The viewer leaves with DELETE; the publisher stays.
    let deleted = eval(
        &mut viewer,
        "const r = await fetch(window.sansrtcStatus.resource, { method: 'DELETE' }); return r.status;",
    );
    assert_eq!(deleted, json!(200));
    assert_eq!(running.broadcast.sessions(), 1);
}

#[test]
fn whip_whep_chromium_on_tokio() {
    broadcast(BrowserKind::Chromium, RuntimeKind::Tokio);
}

#[test]
fn whip_whep_chromium_on_smol() {
    broadcast(BrowserKind::Chromium, RuntimeKind::Smol);
}

#[test]
fn whip_whep_chromium_on_std() {
    broadcast(BrowserKind::Chromium, RuntimeKind::Std);
}

#[test]
fn whip_whep_firefox_on_tokio() {
    broadcast(BrowserKind::Firefox, RuntimeKind::Tokio);
}

#[test]
fn echo_over_websocket_chromium() {
    let rt = Runtime::new(RuntimeKind::Tokio).expect("runtime");
    let addr = echo::start(any_port(), rt, media_options_for(LOOPBACK)).expect("server");
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium).expect("spawn browser");
    browser
        .call(json!({"cmd": "goto", "url": format!("http://{addr}/")}))
        .expect("open the echo page");
    wait_connected(&mut browser, "echo page");
    wait_until("echoed video decoded", || {
        let frames = inbound(&mut browser, "video", "framesDecoded");
        (frames == 0).then(|| page_status(&mut browser).to_string())
    });
    wait_until("echoed audio", || {
        let packets = inbound(&mut browser, "audio", "packetsReceived");
        (packets == 0).then(|| packets.to_string())
    });
    wait_until("the data channel message echoed", || {
        let status = page_status(&mut browser);
        let echoes = status.get("echoes").cloned().unwrap_or(Value::Null);
        (echoes != json!(["hello from the page"])).then(|| status.to_string())
    });
}

#[test]
fn chat_relays_between_two_chromium_pages() {
    let rt = Runtime::new(RuntimeKind::Smol).expect("runtime");
    let running = chat::start(any_port(), rt, media_options_for(LOOPBACK)).expect("server");
    let url = format!("http://{}/", running.addr);
    let mut pages = Vec::new();
    for _ in 0..2 {
        let mut browser = BrowserPeer::spawn(BrowserKind::Chromium).expect("spawn browser");
        browser
            .call(json!({"cmd": "goto", "url": url}))
            .expect("open the chat page");
        pages.push(browser);
    }
    for (i, page) in pages.iter_mut().enumerate() {
        wait_until(&format!("page {i}'s channel open"), || {
            let status = page_status(page);
            (status.get("channel") != Some(&json!("open"))).then(|| status.to_string())
        });
    }
    wait_until("both pages in the room", || {
        (running.chat.member_count() < 2).then(|| running.chat.member_count().to_string())
    });
    eval(
        &mut pages[0],
        "window.say('hello from page 0'); return true;",
    );
    eval(&mut pages[1], "window.say('and from page 1'); return true;");
    for (i, expected) in [(1usize, "hello from page 0"), (0, "and from page 1")] {
        wait_until(&format!("page {i} got {expected:?}"), || {
            let status = page_status(&mut pages[i]);
            let got = status.get("received").cloned().unwrap_or(Value::Null);
            (got != json!([expected])).then(|| status.to_string())
        });
    }
    assert_eq!(
        running.chat.relayed(),
        2,
        "each message went to the one other page only"
    );
}
