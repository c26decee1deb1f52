//! What the browser measurements share (`browser_quality.rs`, `browser_bandwidth.rs`):
//! the two servers under test (the `whip_whep` example on tokio, in-process, and the
//! str0m-based reference of `str0m_whip`), a publisher and a viewer page driven
//! through [`BrowserPeer`], their `getStats()` figures, and the network conditions of
//! the namespace: random loss with nftables (input hook, per media port) and a
//! bandwidth limit with `tc tbf` on loopback, each a guard that removes itself on drop,
//! also when a test panics.
#![allow(dead_code)]

pub mod str0m_whip;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::whip_whep;
use sansrtc_tests::browser::{wait_until, BrowserKind, BrowserPeer};
use serde_json::{json, Value};

use str0m_whip::Str0mWhip;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Which stack serves WHIP/WHEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// The `whip_whep` example (sansrtc's Endpoint on the tokio runtime).
    Sansrtc,
    /// The str0m 0.25 reference server.
    Str0m,
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stack::Sansrtc => "sansrtc",
            Stack::Str0m => "str0m",
        })
    }
}

/// A running server: its HTTP base URL and the UDP port all its media uses.
pub struct Server {
    /// Which stack.
    pub stack: Stack,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The media socket's port (the loss rules match it).
    pub media_port: u16,
    _sansrtc: Option<whip_whep::Running>,
    _str0m: Option<Str0mWhip>,
    _runtime: Runtime,
}

impl Server {
    /// Start `stack`'s server on 127.0.0.1 with a tokio runtime of its own.
    pub fn start(stack: Stack) -> Server {
        let runtime = Runtime::new(RuntimeKind::Tokio).expect("tokio runtime");
        match stack {
            Stack::Sansrtc => {
                // The Endpoint binds one socket; a port picked here (and released) lets
                // the loss rules name it.
                let port = UdpSocket::bind(SocketAddr::new(LOOPBACK, 0))
                    .and_then(|s| s.local_addr())
                    .expect("a free UDP port")
                    .port();
                let mut options = media_options_for(LOOPBACK);
                options.net.port_range = Some(port..=port);
                let running = whip_whep::start(SocketAddr::new(LOOPBACK, 0), &runtime, options)
                    .expect("whip_whep server");
                Server {
                    stack,
                    base: format!("http://{}", running.addr),
                    media_port: port,
                    _sansrtc: Some(running),
                    _str0m: None,
                    _runtime: runtime,
                }
            }
            Stack::Str0m => {
                let server = Str0mWhip::start(&runtime).expect("str0m server");
                Server {
                    stack,
                    base: format!("http://{}", server.addr),
                    media_port: server.media.port(),
                    _sansrtc: None,
                    _str0m: Some(server),
                    _runtime: runtime,
                }
            }
        }
    }
}

/// Panic unless this process runs in a network namespace whose only interface is
/// loopback: the loss rules and the qdisc must never touch a real machine's network.
pub fn require_loopback_namespace() {
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .expect("/proc/net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|name| name.trim().to_string())
        .collect();
    assert!(
        interfaces.iter().all(|i| i == "lo"),
        "network conditions are set only in a loopback-only namespace (interfaces here: \
         {interfaces:?}); run with scripts/test.sh"
    );
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Random loss of `percent` % of the UDP datagrams to and from one port, dropped in an
/// nftables `input`-hook chain (on loopback every datagram passes input once, so this
/// loses packets toward the server and toward its peers; an `output`-hook drop would
/// return EPERM to the sender instead). The table goes away on drop.
pub struct Loss {
    table: String,
}

impl Loss {
    /// Install the rules.
    pub fn install(port: u16, percent: u32) -> Loss {
        require_loopback_namespace();
        let table = format!("loss_{port}");
        let loss = Loss {
            table: table.clone(),
        };
        let p = port.to_string();
        let n = percent.to_string();
        let steps: [&[&str]; 4] = [
            &["add", "table", "inet", &table],
            &[
                "add",
                "chain",
                "inet",
                &table,
                "c",
                "{ type filter hook input priority 0; }",
            ],
            &[
                "add", "rule", "inet", &table, "c", "udp", "dport", &p, "numgen", "random", "mod",
                "100", "<", &n, "counter", "drop",
            ],
            &[
                "add", "rule", "inet", &table, "c", "udp", "sport", &p, "numgen", "random", "mod",
                "100", "<", &n, "counter", "drop",
            ],
        ];
        for step in steps {
            run("nft", step).unwrap_or_else(|e| panic!("installing the loss rules: {e}"));
        }
        loss
    }

    /// Datagrams the rules dropped so far (both directions).
    pub fn dropped(&self) -> u64 {
        let listing = run("nft", &["list", "table", "inet", &self.table]).unwrap_or_default();
        listing
            .split("counter packets ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        if let Err(e) = run("nft", &["delete", "table", "inet", &self.table]) {
            eprintln!("removing the loss rules: {e}");
        }
    }
}

/// A token-bucket limit on loopback (`tc qdisc add dev lo root tbf ...`): every packet of
/// the namespace passes it, so one test at a time. Loopback's MTU is set to 1500 meanwhile
/// (tbf drops every packet larger than its burst, and loopback's 64 KiB TCP segments would
/// all be). Both are undone on drop.
pub struct Bandwidth {
    mtu: String,
}

impl Bandwidth {
    /// Limit loopback to `rate` (tc syntax, e.g. `1mbit`).
    pub fn limit(rate: &str) -> Bandwidth {
        require_loopback_namespace();
        let mtu = std::fs::read_to_string("/sys/class/net/lo/mtu")
            .map(|m| m.trim().to_string())
            .unwrap_or_else(|_| "65536".into());
        run("ip", &["link", "set", "lo", "mtu", "1500"])
            .unwrap_or_else(|e| panic!("setting loopback's MTU: {e}"));
        let limit = Bandwidth { mtu };
        run(
            "tc",
            &[
                "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate, "burst", "32kbit",
                "latency", "400ms",
            ],
        )
        .unwrap_or_else(|e| panic!("adding the tbf qdisc: {e}"));
        limit
    }

    /// (packets sent, packets dropped) by the qdisc so far.
    pub fn counters(&self) -> (u64, u64) {
        let text = run("tc", &["-s", "qdisc", "show", "dev", "lo"]).unwrap_or_default();
        let number_after = |key: &str| -> u64 {
            text.split(key)
                .nth(1)
                .and_then(|rest| {
                    rest.trim_start()
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        // "Sent 1234 bytes 56 pkt (dropped 7, overlimits ...)"
        let sent = text
            .split(" bytes ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        (sent, number_after("dropped"))
    }
}

impl Drop for Bandwidth {
    fn drop(&mut self) {
        if let Err(e) = run("tc", &["qdisc", "del", "dev", "lo", "root"]) {
            eprintln!("removing the tbf qdisc: {e}");
        }
        if let Err(e) = run("ip", &["link", "set", "lo", "mtu", &self.mtu]) {
            eprintln!("restoring loopback's MTU: {e}");
        }
    }
}

/// The page's first `getStats()` entry of `type` and `kind` with the most bytes, and the
/// report's time.
const STATS_JS: &str = "const r = await window.pc.getStats(); let best = null; \
    r.forEach((s) => { if (s.type === TYPE && s.kind === 'video') { \
      const b = (s.bytesSent || 0) + (s.bytesReceived || 0); \
      if (!best || b > ((best.bytesSent || 0) + (best.bytesReceived || 0))) best = s; } }); \
    return best ? JSON.parse(JSON.stringify(best)) : null;";

fn video_stats(peer: &mut BrowserPeer, kind: &str) -> Value {
    let js = STATS_JS.replace("TYPE", &format!("'{kind}'"));
    peer.eval(&js)
}

fn field(v: &Value, name: &str) -> f64 {
    v.get(name).and_then(Value::as_f64).unwrap_or(0.0)
}

/// A publisher's `outbound-rtp` video figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    /// `timestamp` (ms).
    pub at_ms: f64,
    /// `bytesSent`.
    pub bytes: f64,
    /// `packetsSent`.
    pub packets: f64,
    /// `frameWidth` x `frameHeight`.
    pub width: u64,
    /// See `width`.
    pub height: u64,
    /// NACKs the publisher received.
    pub nacks: u64,
    /// `retransmittedPacketsSent`.
    pub retransmitted: u64,
    /// `qualityLimitationReason` (Chromium).
    pub limitation: String,
    /// `targetBitrate` (the encoder's target, Chromium), in kbit/s.
    pub target_kbps: f64,
}

impl Sent {
    fn read(peer: &mut BrowserPeer) -> Sent {
        let s = video_stats(peer, "outbound-rtp");
        Sent {
            at_ms: field(&s, "timestamp"),
            bytes: field(&s, "bytesSent"),
            packets: field(&s, "packetsSent"),
            width: field(&s, "frameWidth") as u64,
            height: field(&s, "frameHeight") as u64,
            nacks: field(&s, "nackCount") as u64,
            retransmitted: field(&s, "retransmittedPacketsSent") as u64,
            target_kbps: field(&s, "targetBitrate") / 1000.0,
            limitation: s
                .get("qualityLimitationReason")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
        }
    }

    /// The average rate from `earlier` to `self`, in kbit/s.
    pub fn kbps_since(&self, earlier: &Sent) -> f64 {
        let seconds = (self.at_ms - earlier.at_ms) / 1000.0;
        if seconds <= 0.0 {
            return 0.0;
        }
        (self.bytes - earlier.bytes) * 8.0 / seconds / 1000.0
    }
}

/// A viewer's `inbound-rtp` video figures at one moment.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// `framesDecoded`.
    pub frames: u64,
    /// `frameWidth` x `frameHeight`.
    pub width: u64,
    /// See `width`.
    pub height: u64,
    /// `freezeCount`.
    pub freezes: u64,
    /// `packetsLost` (in our runs about as many as the retransmissions received, with
    /// either server: Chromium seems to count RTX-repaired packets as lost).
    pub lost: i64,
    /// `packetsReceived`.
    pub packets: u64,
    /// NACKs the viewer sent.
    pub nacks: u64,
    /// PLIs the viewer sent.
    pub plis: u64,
    /// `retransmittedPacketsReceived` (retransmissions that reached the viewer).
    pub retransmitted: u64,
}

impl Received {
    fn read(peer: &mut BrowserPeer) -> Received {
        let s = video_stats(peer, "inbound-rtp");
        Received {
            frames: field(&s, "framesDecoded") as u64,
            width: field(&s, "frameWidth") as u64,
            height: field(&s, "frameHeight") as u64,
            freezes: field(&s, "freezeCount") as u64,
            lost: field(&s, "packetsLost") as i64,
            packets: field(&s, "packetsReceived") as u64,
            nacks: field(&s, "nackCount") as u64,
            plis: field(&s, "pliCount") as u64,
            retransmitted: field(&s, "retransmittedPacketsReceived") as u64,
        }
    }
}

/// A browser on the server's `/publish` page, connected.
pub struct Publisher {
    /// The browser.
    pub page: BrowserPeer,
    /// When its page reported `connected`.
    pub connected_at: Instant,
}

impl Publisher {
    /// Open `/publish` in a new `kind` browser and wait until it is connected.
    pub fn open(kind: BrowserKind, server: &Server) -> Publisher {
        let mut page =
            BrowserPeer::spawn(kind).expect("spawn browser (scripts/test.sh installs it)");
        page.call(json!({"cmd": "goto", "url": format!("{}/publish", server.base)}))
            .expect("open /publish");
        page.wait_connected(&format!("{} publisher", server.stack));
        Publisher {
            page,
            connected_at: Instant::now(),
        }
    }

    /// Its video sender's figures now.
    pub fn sent(&mut self) -> Sent {
        Sent::read(&mut self.page)
    }
}

/// A browser on the server's `/watch` page.
pub struct Viewer {
    /// The browser.
    pub page: BrowserPeer,
}

impl Viewer {
    /// A new `kind` browser, not yet on the page (launching takes a while; the test
    /// starts it ahead of time).
    pub fn launch(kind: BrowserKind) -> Viewer {
        Viewer {
            page: BrowserPeer::spawn(kind).expect("spawn browser"),
        }
    }

    /// Open `/watch` and wait for the first frame shown; the page's time from its WHEP
    /// POST to that frame, in ms.
    pub fn watch(&mut self, server: &Server) -> u64 {
        self.page
            .call(json!({"cmd": "goto", "url": format!("{}/watch", server.base)}))
            .expect("open /watch");
        let page = &mut self.page;
        wait_until(
            &format!("the {} viewer's first frame", server.stack),
            || {
                let status = page.page_status();
                status["firstFrameMs"].is_null().then(|| status.to_string())
            },
        );
        self.page.page_status()["firstFrameMs"]
            .as_u64()
            .unwrap_or(0)
    }

    /// Its video receiver's figures now.
    pub fn received(&mut self) -> Received {
        Received::read(&mut self.page)
    }
}

/// Sleep until `start + offset`.
pub fn sleep_until(start: Instant, offset: Duration) {
    let left = (start + offset).saturating_duration_since(Instant::now());
    std::thread::sleep(left);
}

/// Run `a` and `b` on two threads at once; if either panics, the panic is resumed after
/// both finished (so the other's guards clean up first).
pub fn side_by_side<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    std::thread::scope(|s| {
        let ha = s.spawn(a);
        let hb = s.spawn(b);
        let (ra, rb) = (ha.join(), hb.join());
        match (ra, rb) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => std::panic::resume_unwind(e),
        }
    })
}
