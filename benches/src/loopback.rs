//! Over real loopback UDP: 1,200-byte RTP one way between two sansrtc PeerConnections on
//! the tokio runtime (SRTP, the runtime's driver loop, its sockets), against the raw UDP
//! rate of the same machine measured in the same run (plain `send_to`/`recv_from`, one
//! datagram per call, which is also what the runtime uses today: no sendmmsg/recvmmsg or
//! GSO yet). Both bind 127.0.0.1 only. Wall time; received packets per second.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::{ConnectionState, Event, MediaKind};

const PAYLOAD: usize = 1200;

/// Raw loopback UDP: datagrams received per second, one sender thread and this thread
/// receiving, `packets` datagrams of RTP size. The sender keeps at most `WINDOW`
/// datagrams in flight (below the default socket receive buffer), so the figure is the
/// loss-free rate rather than how fast a flood overflows the buffer.
pub fn raw_udp(packets: usize) -> f64 {
    const WINDOW: usize = 96;
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let to = rx.local_addr().expect("addr");
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    let sender = std::thread::spawn(move || {
        let data = [0x80u8; PAYLOAD + 12];
        for sent in 0..packets {
            while sent >= seen.load(Ordering::Relaxed) + WINDOW {
                std::thread::yield_now();
            }
            let _ = tx.send_to(&data, to);
        }
    });
    let mut buf = [0u8; 2048];
    let mut first = None;
    let mut last = Instant::now();
    let mut count = 0usize;
    while count < packets {
        match rx.recv_from(&mut buf) {
            Ok(_) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                count += 1;
                received.store(count, Ordering::Relaxed);
            }
            Err(_) => break,
        }
    }
    // A lost datagram would stall the window: let the sender finish.
    received.store(usize::MAX / 2, Ordering::Relaxed);
    let _ = sender.join();
    rate(count, first, last)
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
/// application got per second while the sender sends `packets` as fast as its handle
/// takes them.
pub fn tokio_rtp(packets: usize) -> f64 {
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
        let done = Arc::new(AtomicBool::new(false));
        let reader_done = done.clone();
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
            rate(received, first, last)
        });
        let payload = Bytes::from(vec![0u8; PAYLOAD]);
        for seq in 0..packets {
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
        let r = reader.await.unwrap_or(f64::NAN);
        a.close().await;
        r
    })
}
