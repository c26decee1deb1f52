//! The file examples with a real browser (inside the loopback-only network namespace of
//! `scripts/test.sh`):
//! - `save_to_file`: a browser's fake camera and microphone go to the example's page;
//!   once the server has written enough, the page stops, and the files must be finished
//!   and valid: the IVF header ('DKIF', VP80, a plausible size matching the first
//!   keyframe, the frame count), at least 10 frames starting with a keyframe, and an
//!   Ogg Opus file whose every page's CRC checks, with OpusHead and at least 50 packets
//!   that the browser's own decoder turns into about as much audio as their TOCs say.
//! - `send_from_file` with those files: a receive-only page decodes the video
//!   (`framesDecoded > 0`) and receives the audio (`packetsReceived > 0`), and goes on
//!   decoding past the end of the file (looping). A second page is refused while one
//!   records. Once with Chromium, once with Firefox ESR.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use sansrtc_examples::media::ivf::IvfReader;
use sansrtc_examples::media::ogg::{opus_samples, OpusFile};
use sansrtc_examples::media::vp8;
use sansrtc_examples::runtime::{media_options_for, Runtime, RuntimeKind};
use sansrtc_examples::save_to_file::{self, AUDIO_FILE, VIDEO_FILE};
use sansrtc_examples::send_from_file::{self, Media};
use sansrtc_tests::browser::{wait_until, BrowserKind, BrowserPeer};
use serde_json::{json, Value};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn any_port() -> SocketAddr {
    SocketAddr::new(LOOPBACK, 0)
}

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("sansrtc-files-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Record with `save_to_file` and check the files; returns the number of frames and
/// audio packets written.
fn record(kind: BrowserKind, browser: &mut BrowserPeer, dir: &std::path::Path) -> (usize, usize) {
    let rt = Runtime::new(RuntimeKind::Tokio).expect("runtime");
    let running =
        save_to_file::start(any_port(), rt, media_options_for(LOOPBACK), dir).expect("server");
    browser
        .call(json!({"cmd": "goto", "url": format!("http://{}/", running.addr)}))
        .expect("open the save_to_file page");
    browser.wait_connected("save_to_file page");
    wait_until("30 frames and 100 audio packets recorded", || {
        let s = running.recorder.stats();
        (s.frames < 30 || s.audio_packets < 100).then(|| format!("{s:?}"))
    });
    // A second page is refused while this one records.
    let mut second = BrowserPeer::spawn(kind).expect("spawn browser");
    second
        .call(json!({"cmd": "goto", "url": format!("http://{}/", running.addr)}))
        .expect("open the page again");
    wait_until("the second page refused", || {
        let status = second.page_status();
        let error = status
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default();
        (!error.contains("another page is recording")).then(|| status.to_string())
    });
    drop(second);
    // Stopping on the page closes the WebSocket: the server finishes the files.
    browser.eval("window.sansrtcStop(); return true;");
    wait_until("the recording finished", || {
        let s = running.recorder.stats();
        (s.recordings == 0).then(|| format!("{s:?}"))
    });
    let stats = running.recorder.stats();
    eprintln!("save_to_file from {kind:?}: {stats:?}");

    // The IVF file.
    let file = std::fs::File::open(dir.join(VIDEO_FILE)).expect("video.ivf written");
    let mut ivf = IvfReader::new(std::io::BufReader::new(file)).expect("a valid IVF header");
    let header = *ivf.header();
    assert_eq!(&header.fourcc, b"VP80");
    assert_eq!((header.timebase_num, header.timebase_den), (1, 90_000));
    let mut frames = Vec::new();
    while let Some(frame) = ivf.next_frame().expect("well-formed frames") {
        frames.push(frame);
    }
    assert_eq!(
        header.frames as usize,
        frames.len(),
        "the frame count was recorded"
    );
    assert_eq!(frames.len() as u64, stats.frames);
    assert!(frames.len() >= 10, "{} frames", frames.len());
    assert!(
        vp8::is_keyframe(&frames[0].data),
        "the file starts with a keyframe"
    );
    assert_eq!(
        vp8::keyframe_size(&frames[0].data),
        Some((header.width, header.height)),
        "the header's size is the first keyframe's"
    );
    assert!(
        (16..=4096).contains(&header.width) && (16..=4096).contains(&header.height),
        "{}x{}",
        header.width,
        header.height
    );
    assert_eq!(frames[0].pts, 0);
    assert!(
        frames.windows(2).all(|w| w[0].pts < w[1].pts),
        "presentation times increase"
    );

    // The Ogg Opus file: parsing checks every page's CRC and structure.
    let ogg = std::fs::read(dir.join(AUDIO_FILE)).expect("audio.ogg written");
    let opus = OpusFile::parse(&ogg).expect("a valid, finished Ogg Opus file");
    assert!(opus.packets.len() >= 50, "{} packets", opus.packets.len());
    assert_eq!(opus.packets.len() as u64, stats.audio_packets);
    let samples: u64 = opus
        .packets
        .iter()
        .map(|p| u64::from(opus_samples(p).expect("valid TOC")))
        .sum();
    assert_eq!(opus.final_granule, u64::from(opus.head.pre_skip) + samples);
    // The browser's decoder reads the file: about as long as the packets say.
    let bytes: Vec<u8> = ogg.clone();
    let decoded = browser
        .eval(&format!(
            "const bytes = new Uint8Array({}); \
             const ctx = new OfflineAudioContext(1, 48000, 48000); \
             const audio = await ctx.decodeAudioData(bytes.buffer); return audio.duration;",
            serde_json::to_string(&bytes).expect("json")
        ))
        .as_f64()
        .expect("decodeAudioData gave a duration");
    let expected = (samples - u64::from(opus.head.pre_skip)) as f64 / 48_000.0;
    assert!(
        (decoded - expected).abs() < 0.1 * expected + 0.05,
        "{kind:?} decoded {decoded} s, the packets hold {expected} s"
    );
    (frames.len(), opus.packets.len())
}

/// Record from `kind`, then play the files back to the same browser.
fn save_then_send(kind: BrowserKind) {
    let dir = temp_dir();
    let mut browser =
        BrowserPeer::spawn(kind).expect("spawn browser (scripts/test.sh installs it)");
    let (frames, packets) = record(kind, &mut browser, &dir);

    let media = Media::load(&dir.join(VIDEO_FILE), &dir.join(AUDIO_FILE)).expect("load the files");
    assert_eq!(media.counts(), (frames, packets));
    let rt = Runtime::new(RuntimeKind::Std).expect("runtime");
    let running =
        send_from_file::start(any_port(), rt, media_options_for(LOOPBACK), media).expect("server");
    browser
        .call(json!({"cmd": "goto", "url": format!("http://{}/", running.addr)}))
        .expect("open the send_from_file page");
    browser.wait_connected("send_from_file page");
    wait_until("video from the file decoded", || {
        let decoded = browser.inbound("video", "framesDecoded");
        (decoded == 0).then(|| format!("{} / {:?}", browser.page_status(), running.player.stats()))
    });
    wait_until("audio from the file received", || {
        let received = browser.inbound("audio", "packetsReceived");
        (received == 0).then(|| format!("{:?}", running.player.stats()))
    });
    // Looping: the page goes on decoding past the end of the file.
    wait_until("more frames decoded than the file holds", || {
        let decoded = browser.inbound("video", "framesDecoded");
        (decoded <= frames as u64 + 5).then(|| format!("{decoded} of {frames}"))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn save_to_file_then_send_from_file_chromium() {
    save_then_send(BrowserKind::Chromium);
}

#[test]
fn save_to_file_then_send_from_file_firefox() {
    save_then_send(BrowserKind::Firefox);
}

/// H264 recording: Chromium, asked to prefer H264 (`?codec=h264`), sends it, and
/// `save_to_file` writes an Annex B file through its jitter buffer and the core's H264
/// depacketizer: it opens with a sequence and a picture parameter set and an IDR slice,
/// and holds one picture start (a slice with first_mb_in_slice 0) per frame recorded.
#[test]
fn save_to_file_h264_from_chromium() {
    let dir = temp_dir();
    let rt = Runtime::new(RuntimeKind::Tokio).expect("runtime");
    let running =
        save_to_file::start(any_port(), rt, media_options_for(LOOPBACK), &dir).expect("server");
    let mut browser = BrowserPeer::spawn(BrowserKind::Chromium).expect("spawn browser");
    browser
        .call(json!({"cmd": "goto", "url": format!("http://{}/?codec=h264", running.addr)}))
        .expect("open the save_to_file page");
    browser.wait_connected("save_to_file page");
    wait_until("30 H264 frames recorded", || {
        let s = running.recorder.stats();
        (s.frames < 30).then(|| format!("{s:?}"))
    });
    browser.eval("window.sansrtcStop(); return true;");
    wait_until("the recording finished", || {
        let s = running.recorder.stats();
        (s.recordings == 0).then(|| format!("{s:?}"))
    });
    let stats = running.recorder.stats();
    let data = std::fs::read(dir.join(save_to_file::H264_FILE)).expect("video.h264 written");
    // NAL units after 4-byte start codes: (type, first body byte).
    let mut nals = Vec::new();
    let mut at = 0;
    while let Some(i) = data[at..].windows(4).position(|w| w == [0, 0, 0, 1]) {
        let start = at + i + 4;
        if let Some(&h) = data.get(start) {
            nals.push((h & 0x1f, data.get(start + 1).copied().unwrap_or(0)));
        }
        at = start;
    }
    assert!(
        data.starts_with(&[0, 0, 0, 1]),
        "Annex B from the first byte"
    );
    let types: Vec<u8> = nals.iter().take(3).map(|n| n.0).collect();
    assert_eq!(types, [7, 8, 5], "SPS, PPS, then the IDR slice");
    let pictures = nals
        .iter()
        .filter(|(t, body)| matches!(t, 1 | 5) && body & 0x80 != 0)
        .count();
    eprintln!(
        "save_to_file H264 from Chromium: {stats:?}, {} NAL units, {pictures} pictures, {} bytes",
        nals.len(),
        data.len()
    );
    assert_eq!(
        pictures as u64, stats.frames,
        "one picture per frame recorded"
    );
    assert!(stats.keyframes >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}
