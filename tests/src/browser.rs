//! Drive a real browser's `RTCPeerConnection` from Rust tests.
//!
//! `tests/browser/peer.mjs` (node, playwright-core for Chromium, puppeteer-core for Firefox)
//! serves a blank page on 127.0.0.1, launches the browser headless and runs commands read
//! from stdin as JSON lines, answering on stdout with JSON lines; asynchronous browser
//! events (`icecandidate`, state changes, `track`...) come on stdout too. Run it inside the
//! loopback-only network namespace that `scripts/test.sh` creates.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Which browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserKind {
    /// Debian's `chromium`, driven by playwright-core.
    Chromium,
    /// Debian's `firefox-esr`, driven by puppeteer-core over WebDriver BiDi.
    Firefox,
}

impl BrowserKind {
    fn arg(self) -> &'static str {
        match self {
            BrowserKind::Chromium => "chromium",
            BrowserKind::Firefox => "firefox",
        }
    }
}

/// A browser page holding one `RTCPeerConnection`, remote-controlled over JSON lines.
pub struct BrowserPeer {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    events: VecDeque<Value>,
    next_id: u64,
}

/// How long one command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl BrowserPeer {
    /// Start the driver and the browser, and wait until the page is ready. Refuses to run
    /// unless loopback is the only network interface (the namespace `scripts/test.sh`
    /// makes), so a browser test can never send to any other address.
    pub fn spawn(kind: BrowserKind) -> std::io::Result<BrowserPeer> {
        BrowserPeer::spawn_with_args(kind, &[])
    }

    /// [`BrowserPeer::spawn`] with extra command-line switches for Chromium (ignored for
    /// Firefox).
    pub fn spawn_with_args(
        kind: BrowserKind,
        chromium_args: &[&str],
    ) -> std::io::Result<BrowserPeer> {
        // /proc/net/dev lists the interfaces of this process's network namespace.
        let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")?
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .map(|name| name.trim().to_string())
            .collect();
        if interfaces.iter().any(|i| i != "lo") {
            return Err(std::io::Error::other(format!(
                "browser tests run only in a loopback-only network namespace (interfaces here: {interfaces:?}); \
                 run them with scripts/test.sh"
            )));
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("browser")
            .join("peer.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .arg("--browser")
            .arg(kind.arg())
            .args(chromium_args.iter().flat_map(|a| ["--chromium-arg", a]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("[peer.mjs] {line}"),
                }
            }
        });
        let mut peer = BrowserPeer {
            child,
            stdin,
            lines: rx,
            events: VecDeque::new(),
            next_id: 1,
        };
        peer.call(json!({"cmd": "ping"}))
            .map_err(|e| std::io::Error::other(format!("browser driver did not start: {e}")))?;
        Ok(peer)
    }

    /// Run one command and wait for its result, keeping events that arrive meanwhile.
    pub fn call(&mut self, mut cmd: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(obj) = cmd.as_object_mut() {
            obj.insert("id".into(), json!(id));
        }
        writeln!(self.stdin, "{cmd}").map_err(|e| format!("driver stdin: {e}"))?;
        self.stdin
            .flush()
            .map_err(|e| format!("driver stdin: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) if v.get("id").and_then(Value::as_u64) == Some(id) => {
                    return if v.get("ok").and_then(Value::as_bool) == Some(true) {
                        Ok(v.get("result").cloned().unwrap_or(Value::Null))
                    } else {
                        Err(v
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("unknown error")
                            .to_string())
                    };
                }
                Ok(v) => self.events.push_back(v),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("timed out waiting for {cmd}"))
                }
                Err(RecvTimeoutError::Disconnected) => return Err("browser driver exited".into()),
            }
        }
    }

    /// The next asynchronous browser event, waiting at most `timeout`.
    pub fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        match self.lines.recv_timeout(timeout) {
            Ok(v) if v.get("event").is_some() => Some(v),
            Ok(_) | Err(_) => None,
        }
    }
}

impl Drop for BrowserPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "close", "id": 0}));
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl BrowserPeer {
    /// Hand one of the core's candidates to the page's `window.pc` (`addIceCandidate`).
    pub fn add_core_candidate(&mut self, candidate: &sansrtc::IceCandidateInit) {
        let v = serde_json::to_value(candidate).expect("candidate json");
        self.call(json!({"cmd": "addIceCandidate", "candidate": v}))
            .expect("browser adds the core's candidate");
    }

    /// Take every waiting browser event: trickled candidates go to `pc`, the rest are
    /// returned in order.
    pub fn forward_candidates(&mut self, pc: &mut sansrtc::PeerConnection) -> Vec<Value> {
        let mut others = Vec::new();
        while let Some(ev) = self.next_event(Duration::from_millis(0)) {
            if ev.get("event").and_then(Value::as_str) != Some("icecandidate") {
                others.push(ev);
                continue;
            }
            let c = ev.get("candidate").cloned().unwrap_or(Value::Null);
            if !c.is_null() {
                let init: sansrtc::IceCandidateInit =
                    serde_json::from_value(c).expect("browser candidate json");
                pc.add_ice_candidate(Instant::now(), init)
                    .expect("core adds the browser's candidate");
            }
        }
        others
    }
}

/// How long the page helpers wait for a condition.
pub const PAGE_WAIT: Duration = Duration::from_secs(40);

impl BrowserPeer {
    /// Run `js` (the body of an async function) in the current page; panics on error.
    pub fn eval(&mut self, js: &str) -> Value {
        self.call(json!({"cmd": "eval", "js": js}))
            .unwrap_or_else(|e| panic!("eval {js}: {e}"))
    }

    /// `window.sansrtcStatus` of an example's page.
    pub fn page_status(&mut self) -> Value {
        self.eval("return window.sansrtcStatus || null;")
    }

    /// The sum of an `inbound-rtp` field over the page's `window.pc` stats for one kind.
    pub fn inbound(&mut self, kind: &str, field: &str) -> u64 {
        let js = format!(
            "const r = await window.pc.getStats(); let n = 0; \
             r.forEach((s) => {{ if (s.type === 'inbound-rtp' && s.kind === '{kind}') n += s['{field}'] || 0; }}); return n;"
        );
        self.eval(&js).as_u64().unwrap_or(0)
    }

    /// Wait until an example's page reports `connected`; panics if it reports an error.
    pub fn wait_connected(&mut self, who: &str) {
        wait_until(&format!("{who} connected"), || {
            let status = self.page_status();
            if let Some(e) = status.get("error").and_then(Value::as_str) {
                panic!("{who} page failed: {e}");
            }
            (status.get("state").and_then(Value::as_str) != Some("connected"))
                .then(|| status.to_string())
        });
    }
}

/// Poll `check` every 100 ms until it returns `None`; panics naming `what` and the last
/// state `check` reported after [`PAGE_WAIT`].
pub fn wait_until(what: &str, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + PAGE_WAIT;
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

/// Drive a PeerConnection over a real UDP socket for `slice` of wall time: send what it
/// polls, feed what arrives, fire its timers. The small loop the browser tests run.
pub fn drive(
    pc: &mut sansrtc::PeerConnection,
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
    slice: Duration,
) {
    drive_filtered(pc, socket, buf, slice, |_, _| false);
}

/// Which way a datagram crosses the test's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Sent by the core.
    Out,
    /// Received for the core.
    In,
}

/// As [`drive`], with a lossy link: a datagram for which `lose` says so is neither sent
/// (going out) nor fed to the core (coming in).
pub fn drive_filtered(
    pc: &mut sansrtc::PeerConnection,
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
    slice: Duration,
    mut lose: impl FnMut(Way, &[u8]) -> bool,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let end = Instant::now() + slice;
    let mut out = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        fire_due_timers(pc, now);
        while let Some(t) = pc.poll_transmit(now, &mut out) {
            let data = out.get(..t.len).unwrap_or_default();
            if !lose(Way::Out, data) {
                let _ = socket.send_to(data, t.remote);
            }
        }
        if now >= end {
            return;
        }
        let left = end
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        let wait = pc
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(slice)
            .clamp(Duration::from_millis(1), left);
        if socket.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        match socket.recv_from(buf) {
            Ok((n, remote)) => {
                let data = buf.get(..n).unwrap_or_default();
                if !lose(Way::In, data) {
                    pc.handle_datagram(
                        Instant::now(),
                        sansrtc::Datagram {
                            local,
                            remote,
                            protocol: sansrtc::Protocol::Udp,
                            data,
                        },
                    );
                }
            }
            Err(_) => pc.handle_timeout(Instant::now()),
        }
    }
}

/// Feed the time when the core's deadline has passed. A loop that fed the time only when
/// its socket read timed out would starve the core's timers (retransmissions, delayed and
/// window-update acknowledgements) for as long as datagrams keep arriving.
pub fn fire_due_timers(pc: &mut sansrtc::PeerConnection, now: Instant) {
    if pc.poll_timeout().is_some_and(|t| t <= now) {
        pc.handle_timeout(now);
    }
}

/// Sum of a field over the stats of one type and kind.
pub fn stat_sum(stats: &Value, kind_of: &str, kind: &str, field: &str) -> u64 {
    stats
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| {
                    s.get("type").and_then(Value::as_str) == Some(kind_of)
                        && s.get("kind").and_then(Value::as_str) == Some(kind)
                })
                .filter_map(|s| s.get(field).and_then(Value::as_u64))
                .sum()
        })
        .unwrap_or(0)
}

/// An SRTP (not SRTCP) datagram: RTP version 2 and a payload type outside RTCP's range.
pub fn is_rtp(data: &[u8]) -> bool {
    data.first().is_some_and(|b| (128..192).contains(b)) && !sansrtc::rtp::is_rtcp(data)
}

/// Run the core for `slice`, losing every 20th RTP datagram each way; `counters` counts
/// the RTP datagrams (sent, received), lost ones included.
pub fn drive_lossy(
    pc: &mut sansrtc::PeerConnection,
    socket: &std::net::UdpSocket,
    counters: &mut [u64; 2],
    slice: Duration,
) {
    let mut buf = vec![0u8; 2048];
    drive_filtered(pc, socket, &mut buf, slice, |way, data| {
        if !is_rtp(data) {
            return false;
        }
        let count = &mut counters[usize::from(way == Way::In)];
        *count += 1;
        count.is_multiple_of(20)
    });
}

/// The browser's bandwidth estimate: `availableOutgoingBitrate` of its candidate pair in
/// a `getStats()` answer (0 when it has none).
pub fn available_outgoing_bps(stats: &Value) -> u64 {
    stats
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some("candidate-pair"))
        .filter_map(|s| s.get("availableOutgoingBitrate")?.as_f64())
        .fold(0.0, f64::max) as u64
}

/// The packets of a plain RTCP compound, by header only: (packet type, FMT or count, the
/// packet's bytes), stopping at the first that does not fit.
pub fn rtcp_packets(compound: &[u8]) -> impl Iterator<Item = (u8, u8, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = compound.get(at..at + 4)?;
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let packet = compound.get(at..at + len)?;
        at += len;
        Some((header[1], header[0] & 0x1F, packet))
    })
}

/// A call with Chromium: Chromium (launched with extra `args`) offers its fake camera and
/// microphone, a core built from a given configuration answers (with an audio and a video
/// track to echo on, unless built by [`ChromiumEcho::receive_only`]), and
/// [`ChromiumEcho::run`] sends every RTP packet back on the track of its kind over a loop
/// that loses every 20th RTP datagram in each direction (none after
/// [`ChromiumEcho::without_loss`]).
pub struct ChromiumEcho {
    /// The browser.
    pub browser: BrowserPeer,
    /// The core.
    pub pc: sansrtc::PeerConnection,
    /// Chromium's offer.
    pub offer: sansrtc::sdp::SessionDescription,
    /// The core's answer.
    pub answer: sansrtc::sdp::SessionDescription,
    /// RTP datagrams (sent, received) by the lossy loop, lost ones included.
    pub counters: [u64; 2],
    socket: std::net::UdpSocket,
    /// The tracks echoed on: (video, audio).
    out: Option<(sansrtc::TransceiverId, sansrtc::TransceiverId)>,
    lossy: bool,
}

impl ChromiumEcho {
    /// Launch Chromium with `args` and negotiate: Chromium offers, the core answers with
    /// tracks to echo on.
    pub fn start(args: &[&str], config: sansrtc::Config) -> ChromiumEcho {
        Self::negotiate(args, config, true)
    }

    /// As [`ChromiumEcho::start`], but the core only receives: it answers with no tracks
    /// and sends no media back.
    pub fn receive_only(args: &[&str], config: sansrtc::Config) -> ChromiumEcho {
        Self::negotiate(args, config, false)
    }

    /// No RTP datagram is lost by the loop.
    pub fn without_loss(mut self) -> ChromiumEcho {
        self.lossy = false;
        self
    }

    fn negotiate(args: &[&str], config: sansrtc::Config, echo: bool) -> ChromiumEcho {
        use sansrtc::MediaKind;
        let mut browser = BrowserPeer::spawn_with_args(BrowserKind::Chromium, args)
            .expect("spawn browser (scripts/test.sh installs it)");
        browser
            .call(json!({"cmd": "create", "config": {}}))
            .expect("create");
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
        let local = socket.local_addr().expect("addr");
        let start = Instant::now();
        let mut pc = sansrtc::PeerConnection::new(config, start).expect("pc");
        pc.add_local_address(start, local, sansrtc::Protocol::Udp);
        browser
            .call(json!({"cmd": "getUserMedia", "audio": true, "video": true}))
            .expect("getUserMedia");
        let offer = browser.call(json!({"cmd": "createOffer"})).expect("offer");
        browser
            .call(json!({"cmd": "setLocalDescription", "desc": offer}))
            .expect("set local");
        let offer: sansrtc::sdp::SessionDescription =
            serde_json::from_value(offer).expect("offer json");
        pc.set_remote_description(start, offer.clone())
            .expect("remote offer");
        if echo {
            pc.add_track(MediaKind::Audio, vec!["echo".into()])
                .expect("audio");
            pc.add_track(MediaKind::Video, vec!["echo".into()])
                .expect("video");
        }
        let answer = pc.create_answer().expect("answer");
        pc.set_local_description(start, answer.clone())
            .expect("local answer");
        let desc = serde_json::to_value(&answer).expect("json");
        browser
            .call(json!({"cmd": "setRemoteDescription", "desc": desc}))
            .expect("browser takes answer");
        let sender = |kind| {
            pc.transceivers()
                .iter()
                .find(|t| t.kind == kind && t.direction.sends())
                .map(|t| t.id)
        };
        let out = sender(MediaKind::Video).zip(sender(MediaKind::Audio));
        ChromiumEcho {
            browser,
            pc,
            offer,
            answer,
            counters: [0; 2],
            socket,
            out,
            lossy: true,
        }
    }

    /// Run for `duration`: candidates are exchanged, RTP goes back on the track of its
    /// kind, keyframe requests become ours to Chromium; every event is shown to `seen`
    /// first.
    pub fn run(&mut self, duration: Duration, seen: impl FnMut(&sansrtc::peer::Event)) {
        self.run_with(duration, seen, |_, _| {});
    }

    /// As [`ChromiumEcho::run`], and `tick` is called about every 10 ms with the browser
    /// and the time since the run began.
    pub fn run_with(
        &mut self,
        duration: Duration,
        mut seen: impl FnMut(&sansrtc::peer::Event),
        mut tick: impl FnMut(&mut BrowserPeer, Duration),
    ) {
        use sansrtc::peer::Event;
        let begun = Instant::now();
        let mut buf = vec![0u8; 2048];
        let slice = Duration::from_millis(10);
        while begun.elapsed() < duration {
            if self.lossy {
                drive_lossy(&mut self.pc, &self.socket, &mut self.counters, slice);
            } else {
                drive(&mut self.pc, &self.socket, &mut buf, slice);
            }
            tick(&mut self.browser, begun.elapsed());
            while let Some(ev) = self.pc.poll_event() {
                seen(&ev);
                match ev {
                    Event::IceCandidate(c) => self.browser.add_core_candidate(&c),
                    Event::Rtp { track, packet, .. } => {
                        let video = self
                            .pc
                            .transceivers()
                            .iter()
                            .any(|t| t.id == track && t.kind == sansrtc::MediaKind::Video);
                        if let Some((video_out, audio_out)) = self.out {
                            let out = if video { video_out } else { audio_out };
                            let _ = self.pc.send_rtp(out, &packet);
                        }
                    }
                    Event::KeyframeRequest(_) => {
                        if let Some((video_out, _)) = self.out {
                            let _ = self.pc.request_keyframe(video_out);
                        }
                    }
                    _ => {}
                }
            }
            self.browser.forward_candidates(&mut self.pc);
        }
    }

    /// Chromium's `getStats()`.
    pub fn browser_stats(&mut self) -> Value {
        self.browser
            .call(json!({"cmd": "getStats"}))
            .expect("stats")
    }
}
