//! Over real loopback UDP: 1,200-byte RTP one way between two sansrtc PeerConnections on
//! the tokio runtime (SRTP, the runtime's driver loop, its sockets), against the raw UDP
//! rate of the same machine measured in the same run, both one datagram per call
//! (`send_to`/`recv_from`) and batched (`sendmmsg`/`recvmmsg`, what the runtimes use on
//! Linux). All bind 127.0.0.1 only. Each gives received packets per second (wall time)
//! and the whole process's CPU time per packet (both ends, every thread: steadier than
//! the rate on a machine where other work competes for the cores).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{ConnectionState, Event, MediaKind};

const PAYLOAD: usize = 1200;
/// Packets in flight at most, in every loopback scenario: below what the default socket
/// receive buffer holds (212,992 bytes take about 92 of these datagrams at their kernel
/// size; a window of 96 lost a few per run), so each figure is a loss-free rate rather than how fast a flood
/// overflows the buffer. Senders sleep (park, or await a notification) while the window
/// is full, so the CPU figures do not count spinning.
const WINDOW: usize = 64;

/// A loopback run's figures.
#[derive(Debug, Clone, Copy)]
pub struct Loopback {
    /// Packets received per second.
    pub rate: f64,
    /// Process CPU (user + system, all threads) per packet received, in µs.
    pub cpu_us: f64,
    /// Share of the packets sent that arrived (a flood overflows socket buffers).
    pub delivered: f64,
}

/// CPU time this process has used so far (user + system, all threads), from
/// `/proc/self/stat` in clock ticks (USER_HZ, 100 on Linux): 10 ms resolution, so runs
/// should last a second or more. `None` off Linux.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: state is
    // field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The medians of some runs' figures (rate, CPU, delivered), each over the runs that
/// have it.
pub fn medians(runs: &[Loopback]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let pick = |m: fn(&Loopback) -> f64| {
        let v: Vec<f64> = runs.iter().map(m).filter(|x| x.is_finite()).collect();
        (!v.is_empty()).then(|| crate::median(v))
    };
    (pick(|l| l.rate), pick(|l| l.cpu_us), pick(|l| l.delivered))
}

/// Measure `f`, which returns (packets received, first arrival, last arrival).
fn measure(sent: usize, f: impl FnOnce() -> (usize, Option<Instant>, Instant)) -> Loopback {
    let cpu0 = process_cpu();
    let (received, first, last) = f();
    figures(sent, (received, first, last), cpu0)
}

/// A run's figures from what it received and the process CPU time at its start.
fn figures(
    sent: usize,
    (received, first, last): (usize, Option<Instant>, Instant),
    cpu0: Option<Duration>,
) -> Loopback {
    let cpu = match (cpu0, process_cpu()) {
        (Some(a), Some(b)) if received > 0 => (b - a).as_secs_f64() * 1e6 / received as f64,
        _ => f64::NAN,
    };
    eprintln!("  {received} of {sent} received");
    Loopback {
        rate: rate(received, first, last),
        cpu_us: cpu,
        delivered: received as f64 / sent.max(1) as f64,
    }
}

/// Raw loopback UDP: datagrams received per second, one sender thread and this thread
/// receiving, `packets` datagrams of RTP size, at most [`WINDOW`] in flight, one
/// `send_to`/`recv_from` per datagram.
pub fn raw_udp(packets: usize) -> Loopback {
    measure(packets, || raw_run(packets, false))
}

/// Raw loopback UDP the way the runtimes do it on Linux: `sendmmsg` batches of
/// [`sansrtc_std::batch::SEND_BATCH`] and `recvmmsg`, otherwise as [`raw_udp`] (same
/// window, same sizes). NaN where batched calls are missing.
pub fn raw_udp_batched(packets: usize) -> Loopback {
    if cfg!(target_os = "linux") {
        measure(packets, || raw_run(packets, true))
    } else {
        measure(packets, || (0, None, Instant::now()))
    }
}

/// Send `n` copies of `data` to `to`: how many went (a refused one counts as gone, so a
/// loss shows at the receiver).
fn raw_send(
    tx: &UdpSocket,
    to: std::net::SocketAddr,
    data: &[u8],
    n: usize,
    batched: bool,
) -> usize {
    #[cfg(target_os = "linux")]
    if batched {
        use sansrtc_std::batch::{send_batch, Outgoing};
        use std::os::fd::AsFd;
        let items: [_; sansrtc_std::batch::SEND_BATCH] =
            std::array::from_fn(|_| (to, 0..data.len()));
        let out = Outgoing::new(data, items.get(..n).unwrap_or_default());
        return send_batch(tx.as_fd(), out).unwrap_or(0);
    }
    let _ = batched;
    for _ in 0..n {
        let _ = tx.send_to(data, to);
    }
    n
}

/// Wait for datagrams: how many arrived (0 on timeout).
fn raw_recv(rx: &UdpSocket, buf: &mut [u8], batched: bool) -> usize {
    #[cfg(target_os = "linux")]
    if batched {
        use std::os::fd::AsFd;
        let Ok(local) = rx.local_addr() else {
            return 0;
        };
        let mut got = 0;
        let _ = sansrtc_std::batch::recv_batch(rx.as_fd(), local, true, &mut |_, _| got += 1);
        return got;
    }
    let _ = batched;
    usize::from(rx.recv_from(buf).is_ok())
}

fn raw_run(packets: usize, batched: bool) -> (usize, Option<Instant>, Instant) {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let to = rx.local_addr().expect("addr");
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    let per_call = if batched {
        sansrtc_std::batch::SEND_BATCH
    } else {
        1
    };
    let sender = std::thread::spawn(move || {
        let data = [0x80u8; PAYLOAD + 12];
        let mut sent = 0;
        while sent < packets {
            let room = (seen.load(Ordering::Relaxed) + WINDOW).saturating_sub(sent);
            let n = room.min(per_call).min(packets - sent);
            if n == 0 {
                std::thread::park_timeout(Duration::from_millis(5));
                continue;
            }
            sent += raw_send(&tx, to, &data, n, batched);
        }
    });
    let mut buf = [0u8; 2048];
    let mut first = None;
    let mut last = Instant::now();
    let mut count = 0usize;
    while count < packets {
        let got = raw_recv(&rx, &mut buf, batched);
        if got == 0 {
            break;
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        count += got;
        received.store(count, Ordering::Relaxed);
        sender.thread().unpark();
    }
    // A lost datagram would stall the window: let the sender finish.
    received.store(usize::MAX / 2, Ordering::Relaxed);
    sender.thread().unpark();
    let _ = sender.join();
    (count, first, last)
}

fn rate(received: usize, first: Option<Instant>, last: Instant) -> f64 {
    match first {
        Some(first) if received > 1 && last > first => {
            (received - 1) as f64 / (last - first).as_secs_f64()
        }
        _ => f64::NAN,
    }
}

/// RTP through two tokio-runtime PeerConnections over loopback: packets the receiving
/// application got per second while the sender sends `packets`, at most [`WINDOW`]
/// ahead of what the receiving application has read. The CPU figure covers the media phase only, not the set-up.
pub fn tokio_rtp(packets: usize) -> Loopback {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let options = sansrtc_std::Options {
            capacity: sansrtc_std::Capacity {
                commands: 4096,
                events: 4096,
            },
            ..sansrtc_std::Options::loopback()
        };
        let a = sansrtc_tokio::PeerConnection::with_options(Default::default(), options.clone())
            .await
            .expect("a");
        let b = sansrtc_tokio::PeerConnection::with_options(Default::default(), options)
            .await
            .expect("b");
        let track = a
            .add_track(MediaKind::Video, vec!["s".into()])
            .await
            .expect("track");
        let offer = a.create_offer(Default::default()).await.expect("offer");
        a.set_local_description(offer.clone()).await.expect("local");
        b.set_remote_description(offer).await.expect("remote");
        let answer = b.create_answer().await.expect("answer");
        b.set_local_description(answer.clone())
            .await
            .expect("local");
        a.set_remote_description(answer).await.expect("remote");
        // Trickle both ways until both are connected.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut connected = [false, false];
        while !(connected[0] && connected[1]) {
            assert!(Instant::now() < deadline, "no connection over loopback");
            let mut idle = true;
            for (i, (me, other)) in [(&a, &b), (&b, &a)].into_iter().enumerate() {
                while let Some(ev) = me.try_next_event() {
                    idle = false;
                    match ev {
                        Event::IceCandidate(c) => {
                            let _ = other.add_ice_candidate(c).await;
                        }
                        Event::ConnectionStateChange(ConnectionState::Connected) => {
                            connected[i] = true
                        }
                        _ => {}
                    }
                }
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let cpu0 = process_cpu();
        let done = Arc::new(AtomicBool::new(false));
        let reader_done = done.clone();
        let progress = Arc::new(AtomicUsize::new(0));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (reader_progress, reader_notify) = (progress.clone(), notify.clone());
        let reader = tokio::spawn(async move {
            let mut first = None;
            let mut last = Instant::now();
            let mut received = 0usize;
            loop {
                let next = tokio::time::timeout(Duration::from_millis(300), b.next_event()).await;
                match next {
                    Ok(Some(Event::Rtp { .. })) => {
                        let now = Instant::now();
                        first.get_or_insert(now);
                        last = now;
                        received += 1;
                        reader_progress.store(received, Ordering::Relaxed);
                        reader_notify.notify_one();
                        if received >= packets {
                            break;
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) if reader_done.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
            (received, first, last)
        });
        let payload = Bytes::from(vec![0u8; PAYLOAD]);
        for seq in 0..packets {
            while seq >= progress.load(Ordering::Relaxed) + WINDOW {
                // A lost packet would stall the window: give up waiting after a while.
                let wait = tokio::time::timeout(Duration::from_millis(20), notify.notified());
                if wait.await.is_err() {
                    break;
                }
            }
            let packet = RtpPacket {
                payload_type: 0,
                sequence_number: seq as u16,
                timestamp: seq as u32 * 3000,
                marker: false,
                ssrc: 0,
                payload: payload.clone(),
            };
            if a.send_rtp(track, packet).await.is_err() {
                break;
            }
        }
        done.store(true, Ordering::Relaxed);
        let got = reader.await.unwrap_or((0, None, Instant::now()));
        let result = figures(packets, got, cpu0);
        a.close().await;
        result
    })
}

/// Each stack's core over real loopback UDP, the same way for all three: one thread, one
/// transceiver; the client end protects [`WINDOW`] packets (`Pair::client_packets`),
/// they cross the kernel with one `send_to` each, and the server end takes each from
/// `recv_from` and unprotects it (`Pair::server_receive`). No runtime of any stack: the
/// minimal loop their documentation shows. The cores keep the in-memory addresses they
/// negotiated (the sockets only carry the bytes), and virtual time stands still during
/// the media phase, as in the receive row.
pub fn core_loopback<P: crate::Pair>(packets: usize) -> Loopback {
    let start = Instant::now();
    let opts = crate::Opts {
        client_tracks: 1,
        ..Default::default()
    };
    let mut pair = P::new(0, opts, start);
    pair.negotiate();
    pair.run_until_ready();
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let to = rx.local_addr().expect("addr");
    measure(packets, || {
        let mut buf = vec![0u8; 2048];
        let mut out = Vec::with_capacity(WINDOW);
        let mut first = None;
        let mut last = Instant::now();
        let mut received = 0;
        let mut seq = 0usize;
        'run: while seq < packets {
            let n = WINDOW.min(packets - seq);
            let batch = pair.client_packets(0, seq as u16, n);
            for data in &batch {
                let _ = tx.send_to(data, to);
            }
            for _ in 0..batch.len() {
                let Ok((len, _)) = rx.recv_from(&mut buf) else {
                    break 'run;
                };
                out.clear();
                pair.server_receive(buf.get(..len).unwrap_or_default(), &mut out);
                if !out.is_empty() {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    received += out.len();
                }
            }
            seq += n;
        }
        (received, first, last)
    })
}
