//! The `whip_whep` server over plain HTTP with sansrtc cores as WHIP/WHEP clients (no
//! browser): bad requests get clear 4xx answers and the server keeps serving; a core
//! publishes, trickles its candidates with PATCH and restarts ICE with PATCH (RFC 8840,
//! RFC 9725 4.4.1); and peers that vanish without a word are cleaned up once consent
//! expires, over several connect/vanish rounds, with the server's memory reported.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sansrtc::sdp::SdpType;
use sansrtc::{Config, ConnectionState, Event, MediaKind, PeerConnection, SessionDescription};
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::whip_whep::{self, broadcast_config, Running};
use sansrtc_std::{Driver, NetConfig};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    // The server may answer (413) before reading a large body: ignore a reset here.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn start(config: Config) -> (Runtime, Running) {
    let rt = Runtime::new(RuntimeKind::Tokio).expect("runtime");
    let running = whip_whep::start_with_config(
        SocketAddr::new(LOOPBACK, 0),
        &rt,
        media_options_for(LOOPBACK),
        config,
    )
    .expect("server");
    (rt, running)
}

/// A WHIP or WHEP client: a core on the thread-free game-loop driver.
struct Client {
    driver: Driver,
    resource: String,
    connected: bool,
}

impl Client {
    fn publish(addr: SocketAddr, endpoint: &str, kinds: &[MediaKind]) -> Client {
        let now = Instant::now();
        let mut driver =
            Driver::new(Config::default(), &NetConfig::loopback(), now).expect("driver");
        let pc: &mut PeerConnection = driver.core();
        for kind in kinds {
            pc.add_track(*kind, vec!["c".into()]).expect("track");
        }
        let offer = pc.create_offer(Default::default()).expect("offer");
        pc.set_local_description(now, offer.clone()).expect("local");
        let reply = request(
            addr,
            "POST",
            endpoint,
            Some("application/sdp"),
            offer.sdp.as_bytes(),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.header("Content-Type"), Some("application/sdp"));
        let resource = reply.header("Location").expect("Location").to_string();
        let answer = SessionDescription {
            kind: SdpType::Answer,
            sdp: reply.body,
        };
        driver
            .core()
            .set_remote_description(now, answer)
            .expect("answer");
        Client {
            driver,
            resource,
            connected: false,
        }
    }

    /// One frame: poll the driver, trickle candidates with PATCH.
    fn frame(&mut self, addr: SocketAddr, patches: &mut Vec<u16>) {
        let events: Vec<Event> = self.driver.poll(Instant::now()).collect();
        for event in events {
            match event {
                Event::IceCandidate(c) if !c.candidate.is_empty() => {
                    let frag = format!(
                        "a=mid:{}\r\na={}\r\n",
                        c.sdp_mid.unwrap_or_default(),
                        c.candidate
                    );
                    let r = request(
                        addr,
                        "PATCH",
                        &self.resource,
                        Some("application/trickle-ice-sdpfrag"),
                        frag.as_bytes(),
                    );
                    patches.push(r.status);
                }
                Event::ConnectionStateChange(ConnectionState::Connected) => self.connected = true,
                _ => {}
            }
        }
    }
}

fn run_until(what: &str, limit: Duration, mut step: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !step() {
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Method, path, content type, body, expected status.
type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [u8], u16);

#[test]
fn bad_requests_get_clear_4xx_and_the_server_keeps_serving() {
    let (_rt, running) = start(broadcast_config());
    let addr = running.addr;
    let cases: [Case; 9] = [
        ("POST", "/whip", Some("text/plain"), b"v=0", 415),
        (
            "POST",
            "/whip",
            Some("application/sdp"),
            b"this is not SDP",
            400,
        ),
        ("POST", "/whep", Some("application/sdp"), b"", 400),
        ("GET", "/whip", None, b"", 405),
        ("DELETE", "/whip/999", None, b"", 404),
        (
            "PATCH",
            "/whep/999",
            Some("application/trickle-ice-sdpfrag"),
            b"a=end-of-candidates",
            404,
        ),
        ("GET", "/no/such/page", None, b"", 404),
        ("PUT", "/whip/0", None, b"", 404),
        (
            "POST",
            "/whip",
            Some("application/sdp"),
            &[b'a'; 2 * 1024 * 1024],
            413,
        ),
    ];
    for (method, path, ct, body, status) in cases {
        let r = request(addr, method, path, ct, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        assert!(
            !r.body.trim().is_empty() || status == 413,
            "{method} {path} explains itself"
        );
    }
    assert_eq!(
        running.broadcast.sessions(),
        0,
        "no bad request left a session behind"
    );
    // Still serving: a real publisher gets in and a PATCH with the wrong type is refused.
    let mut client = Client::publish(addr, "/whip", &[MediaKind::Audio, MediaKind::Video]);
    let r = request(
        addr,
        "PATCH",
        &client.resource,
        Some("text/plain"),
        b"a=end-of-candidates",
    );
    assert_eq!(r.status, 415);
    let r = request(
        addr,
        "PATCH",
        &client.resource,
        Some("application/trickle-ice-sdpfrag"),
        b"a=candidate:1 1 udp\r\n",
    );
    assert_eq!(r.status, 400, "a malformed candidate line: {}", r.body);
    let mut patches = Vec::new();
    run_until("publisher connected", Duration::from_secs(20), || {
        client.frame(addr, &mut patches);
        client.connected
    });
    assert!(
        !patches.is_empty() && patches.iter().all(|s| *s == 204),
        "trickled: {patches:?}"
    );
    let r = request(addr, "DELETE", &client.resource, None, b"");
    assert_eq!(r.status, 200);
    assert_eq!(running.broadcast.sessions(), 0);
}

#[test]
fn ice_restart_over_patch() {
    let (_rt, running) = start(broadcast_config());
    let addr = running.addr;
    let mut client = Client::publish(addr, "/whip", &[MediaKind::Audio]);
    let mut patches = Vec::new();
    run_until("connected", Duration::from_secs(20), || {
        client.frame(addr, &mut patches);
        client.connected
    });
    let old_answer = client
        .driver
        .core()
        .remote_description()
        .expect("answer")
        .sdp;
    // The client restarts: new credentials in a fragment, as a WHIP client sends them.
    let now = Instant::now();
    let pc = client.driver.core();
    pc.restart_ice();
    let offer = pc.create_offer(Default::default()).expect("offer");
    pc.set_local_description(now, offer.clone()).expect("local");
    let line = |sdp: &str, prefix: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .expect("credential line")
    };
    let (ufrag, pwd) = (
        line(&offer.sdp, "a=ice-ufrag:"),
        line(&offer.sdp, "a=ice-pwd:"),
    );
    let frag = format!(
        "a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
    );
    let r = request(
        addr,
        "PATCH",
        &client.resource,
        Some("application/trickle-ice-sdpfrag"),
        frag.as_bytes(),
    );
    assert_eq!(
        r.status, 200,
        "restart answered with a fragment: {}",
        r.body
    );
    assert_eq!(
        r.header("Content-Type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let (new_ufrag, new_pwd) = (line(&r.body, "a=ice-ufrag:"), line(&r.body, "a=ice-pwd:"));
    assert_ne!(
        new_ufrag,
        line(&old_answer, "a=ice-ufrag:"),
        "the server restarted too"
    );
    // Apply the server's new credentials and candidates as the new answer.
    let mut sdp = String::new();
    for l in old_answer.lines() {
        if l.starts_with("a=ice-ufrag:") {
            sdp.push_str(&format!("a=ice-ufrag:{new_ufrag}\r\n"));
        } else if l.starts_with("a=ice-pwd:") {
            sdp.push_str(&format!("a=ice-pwd:{new_pwd}\r\n"));
        } else if !l.starts_with("a=candidate:") && l != "a=end-of-candidates" {
            sdp.push_str(l);
            sdp.push_str("\r\n");
        }
    }
    let pc = client.driver.core();
    pc.set_remote_description(
        Instant::now(),
        SessionDescription {
            kind: SdpType::Answer,
            sdp,
        },
    )
    .expect("restart answer");
    for c in r.body.lines().filter(|l| l.starts_with("a=candidate:")) {
        let init = sansrtc::IceCandidateInit {
            candidate: c.trim_start_matches("a=").to_string(),
            sdp_mid: Some("0".into()),
            sdp_m_line_index: Some(0),
            username_fragment: Some(new_ufrag.clone()),
        };
        pc.add_ice_candidate(Instant::now(), init)
            .expect("server candidate");
    }
    let before = client.driver.core().stats().ice.responses_received;
    // Checks with the new credentials only succeed if the server took them.
    run_until(
        "checks answered with the new credentials",
        Duration::from_secs(20),
        || {
            client.frame(addr, &mut patches);
            client.driver.core().stats().ice.responses_received > before + 2
        },
    );
    assert_eq!(
        client.driver.core().connection_state(),
        ConnectionState::Connected
    );
    assert_eq!(running.broadcast.sessions(), 1);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn vanished_peers_are_cleaned_up_after_consent_expires() {
    let mut config = broadcast_config();
    config.ice.disconnected_timeout = Duration::from_millis(500);
    config.ice.consent_timeout = Duration::from_secs(2);
    let (_rt, running) = start(config);
    let addr = running.addr;
    const ROUNDS: usize = 4;
    const PEERS: usize = 10;
    let mut rss = Vec::new();
    for round in 0..ROUNDS {
        let mut clients: Vec<Client> = (0..PEERS)
            .map(|i| {
                let endpoint = if i == 0 { "/whip" } else { "/whep" };
                Client::publish(addr, endpoint, &[MediaKind::Audio, MediaKind::Video])
            })
            .collect();
        let mut patches = Vec::new();
        run_until("every client connected", Duration::from_secs(30), || {
            for c in clients.iter_mut() {
                c.frame(addr, &mut patches);
            }
            clients.iter().all(|c| c.connected)
        });
        assert_eq!(running.broadcast.sessions(), PEERS);
        // Vanish: the clients' sockets close without a goodbye.
        drop(clients);
        run_until("every session cleaned up", Duration::from_secs(20), || {
            running.broadcast.sessions() == 0 && running.broadcast.endpoint_peers() == 0
        });
        rss.push(rss_kib());
        eprintln!(
            "round {round}: {PEERS} peers connected and vanished; process RSS {} KiB",
            rss[round]
        );
    }
    assert_eq!(
        running.broadcast.stats().sessions_ended,
        (ROUNDS * PEERS) as u64
    );
}
