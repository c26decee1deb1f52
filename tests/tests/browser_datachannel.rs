//! Data channels with a real browser: Chromium opens an ordered and an unordered channel
//! to the core (and the core one to Chromium when it offers), sends 1,000 messages of
//! random sizes from 0 to 256 KiB, text and binary, and the core echoes each back on the
//! channel it came from. The page checks that every echo is identical, that the ordered
//! channel kept the order, and that the unordered one delivered the same multiset. Then
//! the page closes one channel and the core the other, and each side sees the other's
//! close. Both offer directions, so both DTLS (and SCTP) roles. Then partially reliable
//! unordered channels under 10 % loss with Chromium (plain DATA) and Firefox (I-DATA).

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::datachannel::DataChannelError;
use sansrtc::peer::{ConnectionState, Event};
use sansrtc::sdp::SessionDescription;
use sansrtc::{ChannelId, Config, DataChannelInit, OfferOptions, PeerConnection, Protocol};
use sansrtc_tests::browser::{drive, drive_filtered, BrowserKind, BrowserPeer};
use serde_json::{json, Value};

/// Runs in the page: open the channels, send the messages (respecting bufferedAmount),
/// collect and check the echoes. Progress and the verdict go to `window.__dc`.
const PAGE_TEST: &str = r#"
const N = 1000, MAX = 256 * 1024;
const st = window.__dc = { sent: 0, echoed: 0, done: false, error: null, ordered_ok: null, unordered_ok: null, closed: [] };
let seed = 12345;
const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 4294967296; };
const make = (i) => {
  const r = rand();
  const len = r < 0.1 ? 0 : r < 0.4 ? Math.floor(rand() * 1000) : r < 0.7 ? Math.floor(rand() * 65536) : Math.floor(rand() * (MAX + 1));
  const binary = rand() < 0.5;
  if (binary) { const a = new Uint8Array(len); for (let k = 0; k < len; k++) a[k] = (k * 31 + i) & 255; return a; }
  let s = ''; const chunk = 'abcdefghijklmnopqrstuvwxyz0123456789'; while (s.length < len) s += chunk; return s.slice(0, len);
};
const key = (m) => typeof m === 'string' ? 's' + m.length + ':' + m.slice(0, 8) + m.slice(-8) : 'b' + m.byteLength + ':' + Array.from(new Uint8Array(m).slice(0, 8)).join(',') + '|' + Array.from(new Uint8Array(m).slice(-8)).join(',');
const same = (a, b) => {
  if (typeof a === 'string' || typeof b === 'string') return a === b;
  const x = new Uint8Array(a), y = new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return false;
  return true;
};
const open = (label, options) => new Promise((resolve, reject) => {
  const dc = window.pc.createDataChannel(label, options);
  dc.binaryType = 'arraybuffer';
  dc.bufferedAmountLowThreshold = 1 << 20;
  dc.onopen = () => resolve(dc);
  dc.onerror = (e) => reject(new Error('channel error ' + label));
  dc.onclose = () => st.closed.push(label);
});
(async () => {
  const ordered = await open('ordered', { ordered: true });
  const unordered = await open('unordered', { ordered: false });
  const chans = [ordered, unordered];
  const sent = [[], []], got = [[], []];
  chans.forEach((dc, c) => { dc.onmessage = (m) => { got[c].push(m.data); st.echoed++; }; });
  for (let i = 0; i < N; i++) {
    const c = i % 2, dc = chans[c];
    const m = make(i);
    while (dc.bufferedAmount > (4 << 20)) await new Promise((r) => { dc.onbufferedamountlow = r; setTimeout(r, 50); });
    dc.send(m);
    sent[c].push(typeof m === 'string' ? m : m.buffer);
    st.sent++;
  }
  const end = Date.now() + 240000;
  while (st.echoed < N && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  if (st.echoed < N) throw new Error(`only ${st.echoed} of ${N} echoes`);
  st.ordered_ok = sent[0].length === got[0].length && sent[0].every((m, i) => same(m, got[0][i]));
  const sortedKeys = (l) => l.map(key).sort().join('\n');
  st.unordered_ok = sent[1].length === got[1].length && sortedKeys(sent[1]) === sortedKeys(got[1]);
  st.types_ok = got.flat().every((m, i) => true);
  unordered.close();
  st.done = true;
})().catch((e) => { st.error = String(e); st.done = true; });
return true;
"#;

struct Echo {
    /// Echoes waiting for room in the send buffer.
    pending: VecDeque<(ChannelId, Bytes, bool)>,
    echoed: usize,
    bytes: usize,
    remote_channels: Vec<(ChannelId, String)>,
    closed: Vec<ChannelId>,
}

impl Echo {
    fn flush(&mut self, pc: &mut PeerConnection) {
        while let Some((channel, data, binary)) = self.pending.pop_front() {
            match pc.send_data(Instant::now(), channel, data.clone(), binary) {
                Ok(()) => {
                    self.echoed += 1;
                    self.bytes += data.len();
                }
                Err(DataChannelError::BufferFull) => {
                    self.pending.push_front((channel, data, binary));
                    return;
                }
                Err(e) => panic!("echo failed: {e}"),
            }
        }
    }
}

fn page_state(browser: &mut BrowserPeer) -> Value {
    browser
        .call(json!({"cmd": "eval", "js": "return window.__dc || null;"}))
        .expect("eval")
}

fn run(core_offers: bool) {
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium)
        .expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local: SocketAddr = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
    let mut core_channel = None;
    if core_offers {
        let ch = pc
            .create_data_channel(start, "from-core", DataChannelInit::default())
            .expect("channel");
        core_channel = Some(ch);
        let offer = pc.create_offer(OfferOptions::default()).expect("offer");
        pc.set_local_description(start, offer.clone())
            .expect("local offer");
        browser
            .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&offer).expect("json")}))
            .expect("browser takes offer");
        let answer = browser
            .call(json!({"cmd": "createAnswer"}))
            .expect("answer");
        browser
            .call(json!({"cmd": "setLocalDescription", "desc": answer}))
            .expect("set local");
        let answer: SessionDescription = serde_json::from_value(answer).expect("answer json");
        pc.set_remote_description(start, answer)
            .expect("remote answer");
    } else {
        // The browser needs a data section in its offer: one channel before offering.
        browser
            .call(json!({"cmd": "createDataChannel", "label": "hello", "options": {}}))
            .expect("channel");
        let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
        browser
            .call(json!({"cmd": "setLocalDescription", "desc": offer}))
            .expect("set local");
        let offer: SessionDescription = serde_json::from_value(offer).expect("offer json");
        pc.set_remote_description(start, offer)
            .expect("remote offer");
        let answer = pc.create_answer().expect("answer");
        pc.set_local_description(start, answer.clone())
            .expect("local answer");
        browser
            .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&answer).expect("json")}))
            .expect("browser takes answer");
    }
    let mut echo = Echo {
        pending: VecDeque::new(),
        echoed: 0,
        bytes: 0,
        remote_channels: Vec::new(),
        closed: Vec::new(),
    };
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut started = false;
    let mut core_open = false;
    let mut state = Value::Null;
    let mut next_check = Instant::now();
    let mut closed_ours = false;
    let transfer_start = Instant::now();
    loop {
        assert!(
            Instant::now() < deadline,
            "timed out: page {state}, core echoed {} ({} waiting), stats {:?}, sctp {:?}, \
             channels {:?}",
            echo.echoed,
            echo.pending.len(),
            pc.stats(),
            pc.sctp_stats(),
            pc.data_channel_stats()
        );
        drive(&mut pc, &socket, &mut buf, Duration::from_millis(5));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => browser.add_core_candidate(&c),
                Event::DataChannel { channel, label, .. } => {
                    echo.remote_channels.push((channel, label))
                }
                Event::DataChannelOpen(c) if Some(c) == core_channel => core_open = true,
                Event::DataChannelMessage {
                    channel,
                    data,
                    binary,
                } => {
                    echo.pending.push_back((channel, data, binary));
                }
                Event::DataChannelClose(c) => echo.closed.push(c),
                Event::ConnectionStateChange(ConnectionState::Failed) => {
                    panic!(
                        "connection failed: ice {:?}, dtls {:?}, {:?}",
                        pc.ice_connection_state(),
                        pc.dtls_state(),
                        pc.stats()
                    )
                }
                _ => {}
            }
        }
        echo.flush(&mut pc);
        browser.forward_candidates(&mut pc);
        if !started && pc.connection_state() == ConnectionState::Connected {
            started = true;
            browser
                .call(json!({"cmd": "eval", "js": PAGE_TEST}))
                .expect("start the page test");
        }
        if started && Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_millis(200);
            state = page_state(&mut browser);
            if state.get("done") == Some(&json!(true)) {
                if !closed_ours {
                    closed_ours = true;
                    // The core closes the browser's ordered channel.
                    let ordered = echo
                        .remote_channels
                        .iter()
                        .find(|(_, l)| l == "ordered")
                        .map(|(c, _)| *c)
                        .expect("the ordered channel");
                    pc.close_data_channel(Instant::now(), ordered);
                }
                let page_closed = state
                    .get("closed")
                    .and_then(Value::as_array)
                    .map(|a| a.len())
                    .unwrap_or(0);
                if page_closed >= 2 && echo.closed.len() >= 2 {
                    break;
                }
            }
        }
    }
    let elapsed = transfer_start.elapsed();
    assert_eq!(state.get("error"), Some(&Value::Null), "page: {state}");
    assert_eq!(state.get("echoed"), Some(&json!(1000)));
    assert_eq!(
        state.get("ordered_ok"),
        Some(&json!(true)),
        "ordered echoes identical and in order"
    );
    assert_eq!(
        state.get("unordered_ok"),
        Some(&json!(true)),
        "unordered echoes identical"
    );
    assert_eq!(echo.echoed, 1000);
    let labels: Vec<&str> = echo
        .remote_channels
        .iter()
        .map(|(_, l)| l.as_str())
        .collect();
    assert!(
        labels.contains(&"ordered") && labels.contains(&"unordered"),
        "{labels:?}"
    );
    if core_offers {
        assert!(core_open, "the core's own channel opened");
    }
    eprintln!(
        "data channels with Chromium ({} offers): 1,000 messages, {:.1} MB echoed in {:.1} s",
        if core_offers { "core" } else { "browser" },
        echo.bytes as f64 / 1e6,
        elapsed.as_secs_f64()
    );
}

#[test]
fn chromium_offers_core_is_dtls_client() {
    run(false);
}

#[test]
fn core_offers_chromium_is_dtls_client() {
    run(true);
}

/// Set up before the offer: the page counts what arrives on the core's lossy channel
/// (it may open before the page's own channels exist).
const PAGE_LOSSY_SETUP: &str = r#"
const st = window.__pr = { received: 0, core_received: 0, done: false, open: 0 };
window.pc.ondatachannel = (e) => {
  if (e.channel.label === 'core-lossy') e.channel.onmessage = () => { st.core_received++; };
};
return true;
"#;

/// Once connected: an unordered channel that never retransmits (`maxRetransmits: 0`)
/// carries 500 messages to the core, then a reliable control channel says so.
const PAGE_LOSSY: &str = r#"
const st = window.__pr;
const lossy = window.pc.createDataChannel('lossy', { ordered: false, maxRetransmits: 0 });
const control = window.pc.createDataChannel('control');
const ready = () => {
  if (++st.open < 2) return;
  const filler = 'x'.repeat(1000);
  for (let i = 0; i < 500; i++) lossy.send(`${i}:${filler}`);
  control.send('page-done');
};
lossy.onopen = ready; control.onopen = ready;
control.onmessage = (m) => { if (m.data === 'core-done') st.done = true; };
return true;
"#;

/// Seeded loss on DTLS datagrams (both directions) while `lossy` is set; STUN is never
/// dropped, so ICE stays up.
struct LossyLink {
    rng: u64,
    dropped: u64,
}

impl LossyLink {
    fn drop_it(&mut self, data: &[u8], lossy: bool) -> bool {
        if !lossy || !data.first().is_some_and(|b| (20..=63).contains(b)) {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let drop = self.rng.is_multiple_of(10);
        self.dropped += u64::from(drop);
        drop
    }

    fn drive(&mut self, pc: &mut PeerConnection, socket: &UdpSocket, lossy: bool, slice: Duration) {
        let mut buf = vec![0u8; 2048];
        drive_filtered(pc, socket, &mut buf, slice, |_, data| {
            self.drop_it(data, lossy)
        });
    }
}

/// A partially reliable unordered channel each way under 10 % loss: each side gets most
/// of the 500 messages and abandons the rest (FORWARD-TSN), and a reliable channel on
/// the same association still gets through afterwards.
fn partial_reliability(kind: BrowserKind) {
    let mut browser =
        BrowserPeer::spawn(kind).expect("spawn browser (scripts/test.sh installs it)");
    browser
        .call(json!({"cmd": "create", "config": {}}))
        .expect("create");
    browser
        .call(json!({"cmd": "eval", "js": PAGE_LOSSY_SETUP}))
        .expect("page setup");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    let local = socket.local_addr().expect("addr");
    let start = Instant::now();
    let mut pc = PeerConnection::new(Config::default(), start).expect("pc");
    pc.add_local_address(start, local, Protocol::Udp);
    let lossy_core = pc
        .create_data_channel(
            start,
            "core-lossy",
            DataChannelInit {
                ordered: false,
                max_retransmits: Some(0),
                ..Default::default()
            },
        )
        .expect("channel");
    let offer = pc.create_offer(OfferOptions::default()).expect("offer");
    pc.set_local_description(start, offer.clone())
        .expect("local");
    browser
        .call(json!({"cmd": "setRemoteDescription", "desc": serde_json::to_value(&offer).expect("json")}))
        .expect("offer");
    let answer = browser
        .call(json!({"cmd": "createAnswer"}))
        .expect("answer");
    browser
        .call(json!({"cmd": "setLocalDescription", "desc": answer}))
        .expect("local");
    let answer: SessionDescription = serde_json::from_value(answer).expect("answer");
    pc.set_remote_description(start, answer).expect("answer");

    let mut link = LossyLink {
        rng: 0x2545_f491_4f6c_dd1d,
        dropped: 0,
    };
    let (mut started, mut core_sent, mut page_done) = (false, false, false);
    let mut received_lossy = 0usize;
    let mut channels: Vec<(ChannelId, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut page = Value::Null;
    // Done once both control messages arrived and neither side received anything on the
    // lossy channels for three seconds (the losses are then abandoned, not late).
    let mut last_change = (Instant::now(), 0usize, 0u64);
    loop {
        let page_count = page
            .get("core_received")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if (received_lossy, page_count) != (last_change.1, last_change.2) {
            last_change = (Instant::now(), received_lossy, page_count);
        }
        // Three seconds: a sender whose window collapsed under loss can go quiet for a
        // retransmission timeout (a second or more) with messages still queued, and the
        // reliable control message may overtake them on its own stream.
        let quiet = last_change.0.elapsed() > Duration::from_secs(3);
        if page_done && page.get("done") == Some(&json!(true)) && quiet {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out: page {page}, core got {received_lossy}, {:?}",
            pc.sctp_stats()
        );
        link.drive(&mut pc, &socket, started, Duration::from_millis(5));
        while let Some(ev) = pc.poll_event() {
            match ev {
                Event::IceCandidate(c) => browser.add_core_candidate(&c),
                Event::DataChannel { channel, label, .. } => channels.push((channel, label)),
                Event::DataChannelMessage { channel, data, .. } => {
                    match channels
                        .iter()
                        .find(|(c, _)| *c == channel)
                        .map(|(_, l)| l.as_str())
                    {
                        Some("lossy") => received_lossy += 1,
                        Some("control") if &data[..] == b"page-done" => page_done = true,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        browser.forward_candidates(&mut pc);
        if !started && pc.connection_state() == ConnectionState::Connected {
            // Loss starts now, once ICE and DTLS are up.
            started = true;
            browser
                .call(json!({"cmd": "eval", "js": PAGE_LOSSY}))
                .expect("page test");
        }
        let control = channels
            .iter()
            .find(|(_, l)| l == "control")
            .map(|(c, _)| *c);
        let core_open = pc
            .data_channel(lossy_core)
            .is_some_and(|i| i.state == sansrtc::datachannel::DataChannelState::Open);
        if let (false, Some(control), true) = (core_sent, control, core_open) {
            core_sent = true;
            let filler = "y".repeat(1000);
            for i in 0..500 {
                pc.send_text(Instant::now(), lossy_core, &format!("{i}:{filler}"))
                    .expect("send");
            }
            pc.send_text(Instant::now(), control, "core-done")
                .expect("done");
        }
        if started {
            page = browser
                .call(json!({"cmd": "eval", "js": "return window.__pr;"}))
                .expect("eval");
        }
    }
    let page_received = page
        .get("core_received")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let stats = pc.sctp_stats().expect("association");
    eprintln!(
        "partial reliability with {kind:?}, 10 % loss ({} datagrams dropped): core got {received_lossy}/500, page got {page_received}/500; core abandoned {}, sent {} FORWARD-TSN",
        link.dropped, stats.abandoned_messages, stats.forward_tsns_sent
    );
    eprintln!(
        "core SCTP stats: {stats:?}; data channel stats {:?}; I-DATA {}",
        pc.data_channel_stats(),
        pc.sctp_interleaving()
    );
    assert!(link.dropped > 20, "the link really lost datagrams");
    if kind == BrowserKind::Firefox {
        // Firefox offers I-DATA (RFC 8260) as we do, so this run proves that path too.
        assert!(pc.sctp_interleaving(), "Firefox negotiated I-DATA");
    }
    // The browser's sender abandons what it loses (a lost fragment or a retransmission
    // timeout costs every message in flight), so only a floor is asserted for that
    // direction: runs here delivered 391-407 of 500 from Chromium once the test waited
    // out the sender's retransmission-timeout pauses (it used to stop after one quiet
    // second and counted 14-293), 382-397 from Firefox. Our receiver kept everything
    // that arrived.
    assert!(
        received_lossy > 300 && received_lossy < 500,
        "core: {received_lossy} of 500 delivered"
    );
    assert_eq!(stats.data_dropped_no_room, 0, "{stats:?}");
    // Our sender: every message was delivered or abandoned (announced by FORWARD-TSN).
    assert!(
        page_received > 300 && page_received < 500,
        "page: {page_received} of 500 delivered"
    );
    assert!(
        stats.abandoned_messages > 0 && stats.forward_tsns_sent > 0,
        "{stats:?}"
    );
    assert!(
        page_received + stats.abandoned_messages >= 500,
        "delivered {page_received} + abandoned {} covers all 500",
        stats.abandoned_messages
    );
    assert!(
        page_done,
        "the reliable control channel got through after the losses"
    );
}

#[test]
fn chromium_partial_reliability_under_loss() {
    partial_reliability(BrowserKind::Chromium);
}

#[test]
fn firefox_partial_reliability_under_loss() {
    partial_reliability(BrowserKind::Firefox);
}
