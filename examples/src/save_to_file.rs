//! The `save_to_file` example's server: the page sends camera and microphone (WebSocket
//! signaling with trickle ICE, as in `echo`), and the server writes what it receives:
//! VP8 frames to `video.ivf`, or H264 access units to an Annex B `video.h264` when the
//! browser sends H264, and Opus packets to an Ogg Opus `audio.ogg` in the output
//! directory. The files are finished (IVF frame count, Ogg EOS page) when the page
//! leaves; each recording replaces the files. One recording at a time; a second page is
//! refused while one records.
//!
//! Every stream goes through the core's jitter buffer
//! ([`sansrtc::media::jitter_buffer`]) and depacketizers ([`sansrtc::rtp::codec`]):
//! packets are put back in order, a missing one is waited for (the browser's NACK
//! repairs it) and, when it does not come, the frames that depend on it are not written.
//!
//! The IVF header has the first keyframe's size (a later keyframe may change it, as
//! VP8 allows); `OpusHead` says two channels (WebRTC's Opus is always signalled as
//! stereo) and granule positions follow the packets' TOC durations. The two files each
//! start at their first usable packet; they are not aligned to each other.
//!
//! Frames are kept only from the first keyframe on; after a loss the jitter buffer gives
//! up on, the broken frame and those after it are skipped until the next keyframe, and
//! the browser is asked for one (at most every 250 ms), so that the file always decodes.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sansrtc::media::jitter_buffer::{Frame, JitterBuffer, JitterBufferConfig};
use sansrtc::media::RtpPacket;
use sansrtc::rtp::codec::{vp8, Codec};
use sansrtc::{Config, Event, MediaKind, TransceiverId};
use sansrtc_std::{Options, PeerHandle};

use crate::http::{self, Reply, Request, Response};
use crate::media::ivf::{IvfHeader, IvfWriter};
use crate::media::ogg::{OpusHead, OpusWriter};
use crate::runtime::Runtime;
use crate::session::{self, run_events, Answer, Candidates, Signaling};

/// The video file's name in the output directory (VP8).
pub const VIDEO_FILE: &str = "video.ivf";
/// The video file's name in the output directory when the browser sends H264.
pub const H264_FILE: &str = "video.h264";
/// The audio file's name in the output directory.
pub const AUDIO_FILE: &str = "audio.ogg";
/// Keyframe requests are sent at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(250);
/// The encoder delay of libopus at 48 kHz, as `OpusHead` pre-skip.
const PRE_SKIP: u16 = 312;

/// The session configuration of the files' media: Opus and VP8 only (what
/// `send_from_file` sends).
pub fn config() -> Config {
    crate::whip_whep::broadcast_config()
}

/// The recorder's session configuration: [`config`] and H264 after VP8 (the browser
/// sends the first it supports).
pub fn recording_config() -> Config {
    let mut config = config();
    config.video_codecs.extend(
        Config::default()
            .video_codecs
            .into_iter()
            .filter(|c| c.name.eq_ignore_ascii_case("h264")),
    );
    config
}

/// Counters the tests read (over all recordings so far).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecorderStats {
    /// Recordings finished (files closed).
    pub recordings: u64,
    /// Video frames written (VP8 or H264).
    pub frames: u64,
    /// Of which keyframes.
    pub keyframes: u64,
    /// Opus packets written.
    pub audio_packets: u64,
    /// Packets that could not be used (other codecs) and frames not written (broken by
    /// a loss, malformed, or before a keyframe).
    pub dropped: u64,
    /// Keyframe requests sent.
    pub keyframe_requests: u64,
}

/// The recording service.
pub struct Recorder {
    signaling: Signaling,
    out_dir: PathBuf,
    busy: AtomicBool,
    stats: Mutex<RecorderStats>,
}

/// A running server.
pub struct Running {
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The service, for its counters.
    pub recorder: Arc<Recorder>,
}

/// Start the server on `addr` (port 0 picks one), writing into `out_dir` (created if
/// missing), with `config()` for every session.
pub fn start(
    addr: SocketAddr,
    runtime: Runtime,
    options: Options,
    out_dir: &Path,
) -> std::io::Result<Running> {
    std::fs::create_dir_all(out_dir)?;
    let spawner = runtime.spawner();
    let recorder = Arc::new(Recorder {
        signaling: Signaling::new(runtime, options, recording_config()),
        out_dir: out_dir.to_path_buf(),
        busy: AtomicBool::new(false),
        stats: Mutex::new(RecorderStats::default()),
    });
    let routes = recorder.clone();
    let page: Arc<str> = page().into();
    let addr = http::spawn(
        addr,
        &spawner,
        Arc::new(move |req| routes.route(req, &page)),
    )?;
    Ok(Running { addr, recorder })
}

impl Recorder {
    /// The counters.
    pub fn stats(&self) -> RecorderStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut RecorderStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn route(self: &Arc<Self>, req: Request, page: &str) -> Reply {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/") => Response::html(page).into(),
            ("GET", "/stats") => {
                crate::stats::response(crate::stats::signaling_json(&self.signaling)).into()
            }
            ("GET", "/ws") => {
                let recorder = self.clone();
                Reply::WebSocket(Box::new(move |ws| {
                    if recorder.busy.swap(true, Ordering::SeqCst) {
                        let message = "another page is recording; try again when it stops";
                        return session::refuse(ws, message);
                    }
                    let session = recorder.clone();
                    recorder.signaling.websocket_session(
                        ws,
                        Answer::Receive,
                        move |pc, candidates| session.record(&pc, candidates),
                    );
                    recorder.busy.store(false, Ordering::SeqCst);
                }))
            }
            (_, "/" | "/ws") => Response::text(405, "method not allowed").into(),
            _ => Response::text(404, format!("no such resource: {}", req.path)).into(),
        }
    }

    /// One session's recording: until the PeerConnection closes, then finish the files.
    fn record(&self, pc: &PeerHandle, candidates: Candidates) {
        let mut rec = Recording {
            recorder: self,
            tracks: HashMap::new(),
            video: None,
            audio: JitterBuffer::new(Codec::Opus, JitterBufferConfig::default()),
            video_file: None,
            timestamps: Unwrap::default(),
            pts_origin: None,
            opus: None,
            last_request: None,
        };
        run_events(pc, candidates, |pc, event| {
            if let Event::Rtp {
                track: transceiver,
                packet,
                ..
            } = event
            {
                rec.packet(pc, transceiver, packet);
            }
            true
        });
        rec.finish();
    }
}

/// What a transceiver carries: its kind and the payload types of the codecs recorded.
#[derive(Debug, Clone)]
struct TrackCodecs {
    kind: MediaKind,
    codecs: Vec<(u8, Codec)>,
}

/// The video file being written.
enum VideoFile {
    /// VP8 in IVF.
    Ivf(IvfWriter<BufWriter<File>>),
    /// H264 as an Annex B byte stream.
    AnnexB(BufWriter<File>),
}

/// Extends 32-bit RTP timestamps to 64 bits across wrap-around (steps of less than half
/// the range either way).
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<(u32, u64)>,
}

impl Unwrap {
    fn extend(&mut self, ts: u32) -> u64 {
        let extended = match self.last {
            // Start high so that a step back does not go below zero.
            None => 1 << 32,
            Some((last, e)) => e.saturating_add_signed(i64::from(ts.wrapping_sub(last) as i32)),
        };
        self.last = Some((ts, extended));
        extended
    }
}

struct Recording<'a> {
    recorder: &'a Recorder,
    tracks: HashMap<TransceiverId, TrackCodecs>,
    /// The video stream's jitter buffer, for the first video codec received.
    video: Option<JitterBuffer>,
    audio: JitterBuffer,
    video_file: Option<VideoFile>,
    timestamps: Unwrap,
    /// The extended timestamp of the first frame written.
    pts_origin: Option<u64>,
    opus: Option<OpusWriter<BufWriter<File>>>,
    last_request: Option<Instant>,
}

impl Recording<'_> {
    fn track(&mut self, pc: &PeerHandle, id: TransceiverId) -> Option<&TrackCodecs> {
        let vacant = match self.tracks.entry(id) {
            Entry::Occupied(known) => return Some(known.into_mut()),
            Entry::Vacant(vacant) => vacant,
        };
        let track = block_on(pc.call(move |pc, _| {
            pc.transceiver(id).map(|t| TrackCodecs {
                kind: t.kind,
                codecs: t
                    .codecs
                    .iter()
                    .filter_map(|c| {
                        let codec = Codec::from_name(&c.name)?;
                        let recorded = match t.kind {
                            MediaKind::Video => matches!(codec, Codec::Vp8 | Codec::H264),
                            MediaKind::Audio => codec == Codec::Opus,
                        };
                        recorded.then_some((c.payload_type, codec))
                    })
                    .collect(),
            })
        }))
        .ok()
        .flatten()?;
        Some(vacant.insert(track))
    }

    fn packet(&mut self, pc: &PeerHandle, id: TransceiverId, packet: RtpPacket) {
        let now = Instant::now();
        let track = self.track(pc, id).and_then(|t| {
            let codec = t.codecs.iter().find(|c| c.0 == packet.payload_type)?.1;
            Some((t.kind, codec))
        });
        let jitter = match track {
            Some((MediaKind::Video, codec)) => {
                let jitter = self
                    .video
                    .get_or_insert_with(|| JitterBuffer::new(codec, JitterBufferConfig::default()));
                // One video codec per recording: the first one received.
                (jitter.codec() == codec).then_some(jitter)
            }
            // Padding-only packets are skipped by the jitter buffer.
            Some((MediaKind::Audio, _)) => Some(&mut self.audio),
            None => None,
        };
        let Some(jitter) = jitter else {
            self.recorder.count(|s| s.dropped += 1);
            return;
        };
        let before = dropped_frames(jitter);
        jitter.insert(now, packet);
        jitter.handle_timeout(now);
        let frames: Vec<Frame> = std::iter::from_fn(|| jitter.poll_frame()).collect();
        let keyframe_needed = jitter.poll_keyframe_request();
        let codec = jitter.codec();
        let dropped = dropped_frames(jitter) - before;
        self.recorder.count(|s| s.dropped += dropped);
        for frame in frames {
            let written = if codec.is_audio() {
                self.audio_frame(&frame)
            } else {
                self.video_frame(codec, &frame)
            };
            if !written {
                self.recorder.count(|s| s.dropped += 1);
            }
        }
        if keyframe_needed
            && self
                .last_request
                .is_none_or(|t| t.elapsed() >= KEYFRAME_INTERVAL)
        {
            self.last_request = Some(now);
            if block_on(pc.request_keyframe(id)).is_ok() {
                self.recorder.count(|s| s.keyframe_requests += 1);
            }
        }
    }

    fn open_video(&mut self, codec: Codec, frame: &Frame) -> Option<VideoFile> {
        let name = if codec == Codec::H264 {
            H264_FILE
        } else {
            VIDEO_FILE
        };
        let path = self.recorder.out_dir.join(name);
        let file = match File::create(&path) {
            Ok(f) => BufWriter::new(f),
            Err(e) => {
                eprintln!("save_to_file: cannot write {}: {e}", path.display());
                return None;
            }
        };
        if codec == Codec::H264 {
            return Some(VideoFile::AnnexB(file));
        }
        let (width, height) = vp8::keyframe_size(&frame.data)?;
        match IvfWriter::new(file, IvfHeader::vp8(width, height)) {
            Ok(w) => Some(VideoFile::Ivf(w)),
            Err(e) => {
                eprintln!("save_to_file: cannot write {}: {e}", path.display());
                None
            }
        }
    }

    /// Write one whole video frame (the jitter buffer hands out the first keyframe
    /// first, and nothing that depends on a lost packet).
    fn video_frame(&mut self, codec: Codec, frame: &Frame) -> bool {
        if self.video_file.is_none() {
            self.video_file = self.open_video(codec, frame);
        }
        // Presentation times in the 90 kHz RTP clock, from the first frame on.
        let extended = self.timestamps.extend(frame.timestamp);
        let origin = *self.pts_origin.get_or_insert(extended);
        let written = match self.video_file.as_mut() {
            None => return false,
            Some(VideoFile::Ivf(ivf)) => {
                ivf.write_frame(extended.saturating_sub(origin), &frame.data)
            }
            Some(VideoFile::AnnexB(file)) => std::io::Write::write_all(file, &frame.data),
        };
        if let Err(e) = written {
            eprintln!("save_to_file: writing the video file: {e}");
            return false;
        }
        let key = frame.is_keyframe;
        self.recorder.count(|s| {
            s.frames += 1;
            s.keyframes += u64::from(key);
        });
        true
    }

    fn audio_frame(&mut self, frame: &Frame) -> bool {
        if self.opus.is_none() {
            let path = self.recorder.out_dir.join(AUDIO_FILE);
            let serial = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos());
            let head = OpusHead {
                channels: 2,
                pre_skip: PRE_SKIP,
                input_rate: 48_000,
            };
            let file = File::create(&path).map(BufWriter::new);
            match file.and_then(|f| OpusWriter::new(f, serial, head)) {
                Ok(w) => self.opus = Some(w),
                Err(e) => {
                    eprintln!("save_to_file: cannot write {}: {e}", path.display());
                    return false;
                }
            }
        }
        let Some(opus) = self.opus.as_mut() else {
            return false;
        };
        // A malformed packet (no valid TOC) is refused and not counted.
        if opus.write_packet(&frame.data).is_err() {
            return false;
        }
        self.recorder.count(|s| s.audio_packets += 1);
        true
    }

    /// Write what the jitter buffers still hold: frames complete but waiting behind a
    /// missing packet are given up on now (as their wait would have ended), so nothing
    /// whole is lost at the end of a recording.
    fn drain(&mut self) {
        let end = Instant::now() + Duration::from_secs(3600);
        let mut pending = Vec::new();
        for jitter in self
            .video
            .iter_mut()
            .chain(std::iter::once(&mut self.audio))
        {
            let before = dropped_frames(jitter);
            jitter.handle_timeout(end);
            let codec = jitter.codec();
            pending.extend(std::iter::from_fn(|| jitter.poll_frame()).map(|f| (codec, f)));
            let dropped = dropped_frames(jitter) - before;
            self.recorder.count(|s| s.dropped += dropped);
        }
        for (codec, frame) in pending {
            let written = if codec.is_audio() {
                self.audio_frame(&frame)
            } else {
                self.video_frame(codec, &frame)
            };
            if !written {
                self.recorder.count(|s| s.dropped += 1);
            }
        }
    }

    fn finish(mut self) {
        self.drain();
        let finished = match self.video_file {
            Some(VideoFile::Ivf(ivf)) => ivf.finish().map(drop),
            Some(VideoFile::AnnexB(mut file)) => std::io::Write::flush(&mut file),
            None => Ok(()),
        };
        if let Err(e) = finished {
            eprintln!("save_to_file: finishing the video file: {e}");
        }
        if let Some(opus) = self.opus {
            if let Err(e) = opus.finish() {
                eprintln!("save_to_file: finishing {AUDIO_FILE}: {e}");
            }
        }
        self.recorder.count(|s| s.recordings += 1);
    }
}

/// The page: camera and microphone out, a preview, and a button that stops recording.
pub fn page() -> String {
    session::page(
        "sansrtc save_to_file",
        r#"<p>Your camera and microphone are recorded by the server to video.ivf (VP8) or
video.h264 (H264) and audio.ogg (Opus). The files are finished when you press Stop or leave the page.</p>
<video id="local" autoplay muted playsinline></video>
<p><button onclick="window.sansrtcStop()">Stop recording</button></p>"#,
        r#"  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  document.getElementById('local').srcObject = stream;
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  // `?codec=h264` (or vp8) puts that video codec first in the offer.
  const codec = new URLSearchParams(location.search).get('codec');
  if (codec) {
    const wanted = RTCRtpReceiver.getCapabilities('video').codecs
      .filter((c) => c.mimeType.toLowerCase() === `video/${codec.toLowerCase()}`);
    for (const t of pc.getTransceivers()) {
      if (t.sender.track && t.sender.track.kind === 'video' && wanted.length) t.setCodecPreferences(wanted);
    }
  }"#,
    )
}

/// Frames a jitter buffer did not hand out (broken by a loss, before a keyframe, or
/// malformed).
fn dropped_frames(jitter: &JitterBuffer) -> u64 {
    let stats = jitter.stats();
    stats.frames_dropped + stats.malformed
}

#[cfg(test)]
mod tests {
    use super::Unwrap;

    #[test]
    fn timestamps_extend_across_wrap_around() {
        let mut u = Unwrap::default();
        let first = u.extend(u32::MAX - 2999);
        assert_eq!(u.extend(u32::MAX), first + 2999);
        assert_eq!(u.extend(2000), first + 5000);
        // A step back (reordering) stays below, without underflow.
        assert_eq!(u.extend(1000), first + 4000);
        let mut u = Unwrap::default();
        let first = u.extend(0);
        assert_eq!(u.extend(u32::MAX - 9), first - 10);
    }
}
