//! The `send_from_file` example's server: the page only receives (recvonly
//! transceivers, WebSocket signaling with trickle ICE as in `echo`); once a session is
//! connected the server sends an IVF (VP8) file and an Ogg Opus file in real time,
//! looping at the end: VP8 frames packetized per RFC 7741 (payloads of at most
//! `MAX_PAYLOAD` bytes, 90 kHz timestamps from the IVF presentation times, the marker
//! on a frame's last packet), one Opus packet per RTP packet (48 kHz timestamps from
//! the packets' durations). A keyframe request from the browser makes playback resume
//! at the last keyframe, with timestamps running on.

use std::fmt;
use std::fs::File;
use std::io::BufReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use sansrtc::media::RtpPacket;
use sansrtc::{ConnectionState, Event, MediaKind, TransceiverId};
use sansrtc_std::{Options, PeerHandle};

use crate::http::{self, Reply, Request, Response};
use crate::media::ivf::{IvfError, IvfReader};
use crate::media::ogg::{opus_samples, OggError, OpusFile, OPUS_RATE};
use crate::media::vp8::{self, Packetizer};
use crate::runtime::Runtime;
use crate::session::{self, run_events, Answer, Candidates, Signaling};

/// The largest RTP payload sent.
pub const MAX_PAYLOAD: usize = 1200;
const VIDEO_RATE: u64 = 90_000;

/// One timed unit of a track: a VP8 frame or an Opus packet.
#[derive(Debug, Clone)]
struct Unit {
    /// Media time in the track's clock, from the track's start.
    time: u64,
    keyframe: bool,
    data: Bytes,
}

/// A track read from a file.
#[derive(Debug, Clone)]
struct TrackData {
    units: Vec<Unit>,
    /// The clock rate.
    rate: u64,
    /// How long one pass takes, in the clock (the last unit's duration included).
    period: u64,
}

/// The media to send, read once at start.
#[derive(Debug, Clone)]
pub struct Media {
    video: TrackData,
    audio: TrackData,
}

/// Why the files could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// Opening or reading a file failed.
    Io(std::io::Error),
    /// The IVF file is malformed.
    Ivf(IvfError),
    /// The Ogg Opus file is malformed.
    Ogg(OggError),
    /// A file holds no frames or packets, or the IVF file is not VP8 starting with a
    /// keyframe.
    Unusable(&'static str),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "{e}"),
            LoadError::Ivf(e) => write!(f, "{e}"),
            LoadError::Ogg(e) => write!(f, "{e}"),
            LoadError::Unusable(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for LoadError {}

impl Media {
    /// Read a VP8 IVF file and an Ogg Opus file.
    pub fn load(video: &Path, audio: &Path) -> Result<Media, LoadError> {
        let file = File::open(video).map_err(LoadError::Io)?;
        let mut ivf = IvfReader::new(BufReader::new(file)).map_err(LoadError::Ivf)?;
        let header = *ivf.header();
        if &header.fourcc != b"VP80" {
            return Err(LoadError::Unusable("the IVF file is not VP8"));
        }
        let mut units = Vec::new();
        while let Some(frame) = ivf.next_frame().map_err(LoadError::Ivf)? {
            let time =
                u128::from(frame.pts) * u128::from(VIDEO_RATE) * u128::from(header.timebase_num)
                    / u128::from(header.timebase_den);
            units.push(Unit {
                time: u64::try_from(time).unwrap_or(u64::MAX),
                keyframe: vp8::is_keyframe(&frame.data),
                data: frame.data.into(),
            });
        }
        if !units.first().is_some_and(|u| u.keyframe) {
            return Err(LoadError::Unusable(
                "the IVF file does not start with a keyframe",
            ));
        }
        let first = units.first().map_or(0, |u| u.time);
        for u in &mut units {
            u.time = u.time.saturating_sub(first);
        }
        let last = units.last().map_or(0, |u| u.time);
        // One more frame interval (the average) after the last frame.
        let step = if units.len() > 1 {
            last / (units.len() as u64 - 1)
        } else {
            3000
        };
        let video = TrackData {
            units,
            rate: VIDEO_RATE,
            period: last + step.max(1),
        };

        let bytes = std::fs::read(audio).map_err(LoadError::Io)?;
        let opus = OpusFile::parse(&bytes).map_err(LoadError::Ogg)?;
        let mut time = 0u64;
        let mut units = Vec::with_capacity(opus.packets.len());
        for packet in opus.packets {
            let samples = opus_samples(&packet).map_err(LoadError::Ogg)?;
            units.push(Unit {
                time,
                keyframe: false,
                data: packet.into(),
            });
            time += u64::from(samples);
        }
        if units.is_empty() {
            return Err(LoadError::Unusable(
                "the Ogg Opus file has no audio packets",
            ));
        }
        let audio = TrackData {
            units,
            rate: u64::from(OPUS_RATE),
            period: time,
        };
        Ok(Media { video, audio })
    }

    /// VP8 frames and Opus packets in one pass.
    pub fn counts(&self) -> (usize, usize) {
        (self.video.units.len(), self.audio.units.len())
    }
}

/// Counters the tests read.
#[derive(Debug, Default)]
pub struct PlayerStats {
    /// Video RTP packets handed to the runtime.
    pub video_packets: AtomicU64,
    /// Audio RTP packets handed to the runtime.
    pub audio_packets: AtomicU64,
    /// Keyframe requests answered by resuming at a keyframe.
    pub keyframe_requests: AtomicU64,
}

/// The sending service.
pub struct Player {
    signaling: Signaling,
    media: Arc<Media>,
    stats: Arc<PlayerStats>,
}

/// A running server.
pub struct Running {
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The service, for its counters.
    pub player: Arc<Player>,
}

/// Start the server on `addr` (port 0 picks one), sending `media` to every page that
/// connects (Opus and VP8 only are negotiated).
pub fn start(
    addr: SocketAddr,
    runtime: Runtime,
    options: Options,
    media: Media,
) -> std::io::Result<Running> {
    let spawner = runtime.spawner();
    let player = Arc::new(Player {
        signaling: Signaling::new(runtime, options, crate::save_to_file::config()),
        media: Arc::new(media),
        stats: Arc::default(),
    });
    let routes = player.clone();
    let page: Arc<str> = page().into();
    let addr = http::spawn(
        addr,
        &spawner,
        Arc::new(move |req| routes.route(req, &page)),
    )?;
    Ok(Running { addr, player })
}

impl Player {
    /// The counters.
    pub fn stats(&self) -> &PlayerStats {
        &self.stats
    }

    fn route(self: &Arc<Self>, req: Request, page: &str) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::html(page).into(),
            ("GET", "/stats") => {
                crate::stats::response(crate::stats::signaling_json(&self.signaling)).into()
            }
            ("GET", "/ws") => {
                let player = self.clone();
                Reply::WebSocket(Box::new(move |ws| {
                    let session = player.clone();
                    player
                        .signaling
                        .websocket_session(ws, Answer::Send, move |pc, candidates| {
                            session.play(&pc, candidates)
                        })
                }))
            }
            (_, "/" | "/ws") => Response::text(405, "method not allowed").into(),
            _ => Response::text(404, format!("no such resource: {}", req.path)).into(),
        }
    }

    /// One session: start sending once connected; stop when the session ends.
    fn play(&self, pc: &PeerHandle, candidates: Candidates) {
        let stop = Arc::new(AtomicBool::new(false));
        let rewind = Arc::new(AtomicBool::new(false));
        let mut sender = None;
        let mut video_transceiver = None;
        run_events(pc, candidates, |pc, event| {
            match event {
                Event::ConnectionStateChange(ConnectionState::Connected) if sender.is_none() => {
                    let tracks = sending_tracks(pc);
                    video_transceiver =
                        tracks.iter().find(|t| t.1 == MediaKind::Video).map(|t| t.0);
                    let pacer = Pacer {
                        pc: pc.clone(),
                        media: self.media.clone(),
                        stats: self.stats.clone(),
                        stop: stop.clone(),
                        rewind: rewind.clone(),
                    };
                    sender = std::thread::Builder::new()
                        .name("send-from-file".into())
                        .spawn(move || pacer.run(&tracks))
                        .ok();
                }
                Event::KeyframeRequest(t) if Some(t) == video_transceiver => {
                    rewind.store(true, Ordering::SeqCst);
                }
                _ => {}
            }
            true
        });
        stop.store(true, Ordering::SeqCst);
        if let Some(sender) = sender {
            let _ = sender.join();
        }
    }
}

/// The transceivers we send on: (id, kind, payload type of VP8 or Opus).
fn sending_tracks(pc: &PeerHandle) -> Vec<(TransceiverId, MediaKind, u8)> {
    block_on(pc.call(|pc, _| {
        pc.transceivers()
            .iter()
            .filter(|t| t.has_track && !t.stopped && t.current_direction.is_some_and(|d| d.sends()))
            .filter_map(|t| {
                let name = match t.kind {
                    MediaKind::Video => "vp8",
                    MediaKind::Audio => "opus",
                };
                let codec = t
                    .codecs
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(name))?;
                Some((t.id, t.kind, codec.payload_type))
            })
            .collect()
    }))
    .unwrap_or_default()
}

/// Sends one session's media in real time.
struct Pacer {
    pc: PeerHandle,
    media: Arc<Media>,
    stats: Arc<PlayerStats>,
    stop: Arc<AtomicBool>,
    rewind: Arc<AtomicBool>,
}

/// One track being sent: where, and how far.
struct Stream<'a> {
    cursor: Cursor<'a>,
    transceiver: TransceiverId,
    payload_type: u8,
    kind: MediaKind,
    sequence: u16,
    timestamp_base: u32,
}

/// Playback position in one track.
struct Cursor<'a> {
    track: &'a TrackData,
    /// The next unit to send.
    index: usize,
    /// Added to a unit's time: grows by a period per loop and by the skipped time on a
    /// rewind, so that time never runs backwards.
    offset: u64,
}

impl Cursor<'_> {
    fn time(&self) -> u64 {
        self.track.units.get(self.index).map_or(0, |u| u.time) + self.offset
    }

    fn due(&self, start: Instant) -> Instant {
        let micros = u128::from(self.time()) * 1_000_000 / u128::from(self.track.rate);
        start + Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    fn advance(&mut self) {
        self.index += 1;
        if self.index >= self.track.units.len() {
            self.index = 0;
            self.offset += self.track.period;
        }
    }

    /// Resume at the last keyframe at or before the next unit.
    fn rewind(&mut self) {
        let now = self.time();
        let units = &self.track.units;
        let last = self.index.min(units.len().saturating_sub(1));
        if let Some(k) = units
            .get(..=last)
            .and_then(|before| before.iter().rposition(|u| u.keyframe))
        {
            self.index = k;
            self.offset = now.saturating_sub(units[k].time);
        }
    }
}

impl Pacer {
    fn run(&self, tracks: &[(TransceiverId, MediaKind, u8)]) {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut streams: Vec<Stream<'_>> = tracks
            .iter()
            .map(|&(transceiver, kind, payload_type)| Stream {
                cursor: Cursor {
                    track: match kind {
                        MediaKind::Video => &self.media.video,
                        MediaKind::Audio => &self.media.audio,
                    },
                    index: 0,
                    offset: 0,
                },
                transceiver,
                payload_type,
                kind,
                sequence: seed as u16,
                timestamp_base: seed.rotate_left(16),
            })
            .collect();
        let mut packetizer = Packetizer::new(seed as u16);
        let start = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            if self.rewind.swap(false, Ordering::SeqCst) {
                for s in streams.iter_mut().filter(|s| s.kind == MediaKind::Video) {
                    s.cursor.rewind();
                    self.stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                }
            }
            let Some(next) = streams.iter_mut().min_by_key(|s| s.cursor.due(start)) else {
                return;
            };
            let due = next.cursor.due(start);
            let now = Instant::now();
            if due > now {
                // Sleep in short steps so that stopping is quick.
                std::thread::sleep((due - now).min(Duration::from_millis(20)));
                continue;
            }
            let Some(unit) = next.cursor.track.units.get(next.cursor.index) else {
                return;
            };
            let timestamp = next.timestamp_base.wrapping_add(next.cursor.time() as u32);
            let payloads = match next.kind {
                MediaKind::Video => packetizer
                    .packetize(&unit.data, MAX_PAYLOAD)
                    .into_iter()
                    .map(Bytes::from)
                    .collect(),
                MediaKind::Audio => vec![unit.data.clone()],
            };
            let count = payloads.len();
            for (i, payload) in payloads.into_iter().enumerate() {
                let packet = RtpPacket {
                    payload_type: next.payload_type,
                    sequence_number: next.sequence,
                    timestamp,
                    marker: i + 1 == count,
                    ssrc: 0,
                    payload,
                };
                next.sequence = next.sequence.wrapping_add(1);
                if block_on(self.pc.send_rtp(next.transceiver, packet)).is_err() {
                    // The session's driver has stopped.
                    return;
                }
            }
            let counter = match next.kind {
                MediaKind::Video => &self.stats.video_packets,
                MediaKind::Audio => &self.stats.audio_packets,
            };
            counter.fetch_add(count as u64, Ordering::Relaxed);
            next.cursor.advance();
        }
    }
}

/// The page: receives audio and video only, and plays them.
pub fn page() -> String {
    session::page(
        "sansrtc send_from_file",
        r#"<p>The server sends a VP8 IVF file and an Ogg Opus file, looping (unmute with the controls).</p>
<video id="remote" autoplay playsinline muted controls></video>"#,
        r#"  pc.ontrack = (e) => {
    const v = document.getElementById('remote');
    if (!v.srcObject) v.srcObject = new MediaStream();
    v.srcObject.addTrack(e.track);
  };
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });"#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ivf::{IvfHeader, IvfWriter};
    use crate::media::ogg::{OpusHead, OpusWriter};

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("sansrtc-send-{}-{name}", std::process::id()))
    }

    /// Files with frames at 0, 3000, 6000 (keyframes at 0 and 6000) and three 20 ms
    /// Opus packets.
    fn write_files(video: &Path, audio: &Path) {
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x10, 0, 0x10, 0];
        let file = File::create(video).expect("create");
        let mut ivf = IvfWriter::new(file, IvfHeader::vp8(16, 16)).expect("ivf");
        ivf.write_frame(0, &key).expect("frame");
        ivf.write_frame(3000, &[0x31, 0, 0]).expect("frame");
        ivf.write_frame(6000, &key).expect("frame");
        ivf.finish().expect("finish");
        let head = OpusHead {
            channels: 2,
            pre_skip: 312,
            input_rate: 48_000,
        };
        let mut ogg = OpusWriter::new(Vec::new(), 1, head).expect("ogg");
        for _ in 0..3 {
            ogg.write_packet(&[0xf8, 1, 2]).expect("packet");
        }
        std::fs::write(audio, ogg.finish().expect("finish")).expect("write");
    }

    #[test]
    fn load_loop_and_rewind() {
        let (video, audio) = (temp("v.ivf"), temp("a.ogg"));
        write_files(&video, &audio);
        let media = Media::load(&video, &audio).expect("load");
        assert_eq!(media.counts(), (3, 3));
        assert_eq!(media.video.period, 9000);
        assert_eq!(media.audio.period, 2880);
        let times: Vec<u64> = media.audio.units.iter().map(|u| u.time).collect();
        assert_eq!(times, [0, 960, 1920]);

        let mut c = Cursor {
            track: &media.video,
            index: 0,
            offset: 0,
        };
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(c.time());
            c.advance();
        }
        // Looping: time runs on by the period.
        assert_eq!(seen, [0, 3000, 6000, 9000, 12000]);
        // Next is frame 2 (an interframe, at 15000): resume at keyframe 0 at that time.
        assert_eq!(c.index, 2);
        c.advance();
        c.advance();
        assert_eq!((c.index, c.time()), (1, 21000));
        c.rewind();
        assert_eq!((c.index, c.time()), (0, 21000));
        c.advance();
        assert_eq!(c.time(), 24000);
        let start = Instant::now();
        assert_eq!(
            c.due(start) - start,
            Duration::from_micros(24000 * 1_000_000 / 90_000)
        );
        let _ = std::fs::remove_file(&video);
        let _ = std::fs::remove_file(&audio);
    }

    #[test]
    fn unusable_files_are_errors() {
        let (video, audio) = (temp("bad.ivf"), temp("bad.ogg"));
        write_files(&video, &audio);
        assert!(matches!(
            Media::load(&audio, &audio),
            Err(LoadError::Ivf(IvfError::NotIvf))
        ));
        assert!(matches!(
            Media::load(&video, &video),
            Err(LoadError::Ogg(_))
        ));
        assert!(matches!(
            Media::load(&temp("missing"), &audio),
            Err(LoadError::Io(_))
        ));
        // A file that starts with an interframe.
        let mut ivf = IvfWriter::new(
            File::create(&video).expect("create"),
            IvfHeader::vp8(16, 16),
        )
        .expect("ivf");
        ivf.write_frame(0, &[0x31, 0, 0]).expect("frame");
        ivf.finish().expect("finish");
        assert!(matches!(
            Media::load(&video, &audio),
            Err(LoadError::Unusable(_))
        ));
        let _ = std::fs::remove_file(&video);
        let _ = std::fs::remove_file(&audio);
    }
}
