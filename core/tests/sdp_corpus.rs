//! Real SDP captured from Chromium and Firefox (`tests/browser/capture-sdp.mjs`): offers
//! and answers with audio, video, simulcast, data channels, recvonly, renegotiation
//! (added, removed and stopped tracks), ICE restart and gathered candidates. Every one
//! parses, writes and re-parses to the same model; Chromium's are written back byte for
//! byte; every browser offer is answered by a PeerConnection with an answer that parses.

use std::path::PathBuf;
use std::time::Instant;

use sansrtc::sdp::{MediaType, Sdp, SdpType, SessionDescription};
use sansrtc::{Config, PeerConnection};

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdp");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sdp"))
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    files.sort();
    files
}

fn get(files: &[(String, String)], name: &str) -> Sdp {
    let text = &files
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .1;
    Sdp::parse(text).expect("parse")
}

#[test]
fn every_capture_round_trips() {
    let files = corpus();
    assert!(files.len() >= 40, "corpus has {} files", files.len());
    for (name, text) in &files {
        let sdp = Sdp::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = sdp.to_string();
        let again = Sdp::parse(&written).unwrap_or_else(|e| panic!("{name} rewritten: {e}"));
        assert_eq!(again, sdp, "{name}");
    }
}

#[test]
fn chromium_captures_are_written_back_byte_for_byte() {
    for (name, text) in corpus().iter().filter(|(n, _)| n.starts_with("chromium-")) {
        let written = Sdp::parse(text).expect("parse").to_string();
        assert_eq!(&written, text, "{name}");
    }
}

#[test]
fn spot_checks() {
    let files = corpus();
    for browser in ["chromium", "firefox"] {
        let av = get(&files, &format!("{browser}-audio-video-offer.sdp"));
        assert_eq!(av.media.len(), 2);
        assert_eq!(
            av.bundle_mids().map(|m| m.len()),
            Some(2),
            "{browser} bundles both"
        );
        let audio = &av.media[0];
        assert!(audio
            .rtpmaps
            .iter()
            .any(|r| r.encoding.eq_ignore_ascii_case("opus") && r.clock_rate == 48000));
        assert_eq!(av.fingerprints_of(audio)[0].value.len(), 32);
        let dc = get(&files, &format!("{browser}-datachannel-offer.sdp"));
        assert_eq!(dc.media[0].media_type, MediaType::Application);
        assert_eq!(dc.media[0].sctp_port, Some(5000));
        let sim = get(&files, &format!("{browser}-simulcast-offer.sdp"));
        let v = &sim.media[0];
        assert_eq!(v.rids.len(), 3, "{browser} simulcast rids");
        assert_eq!(v.simulcast.as_ref().map(|s| s.send.len()), Some(3));
        let restart = get(&files, &format!("{browser}-ice-restart-offer.sdp"));
        let before = get(
            &files,
            &format!("{browser}-renegotiation-stopped-offer.sdp"),
        );
        assert_ne!(
            restart.ice_ufrag_of(&restart.media[0]),
            before.ice_ufrag_of(&before.media[0])
        );
        let stopped = get(
            &files,
            &format!("{browser}-renegotiation-stopped-offer.sdp"),
        );
        assert!(
            stopped.media.iter().any(|m| m.is_rejected()),
            "{browser} stopped m-line has port 0"
        );
        let gathered = get(&files, &format!("{browser}-gathered-offer.sdp"));
        assert!(
            gathered.media.iter().any(|m| !m.candidates.is_empty()),
            "{browser} gathered candidates"
        );
    }
}

#[test]
fn every_browser_offer_is_answered() {
    for (name, text) in corpus().iter().filter(|(n, _)| n.ends_with("-offer.sdp")) {
        let now = Instant::now();
        let config = Config {
            rng_seed: Some(1),
            ..Default::default()
        };
        let mut pc = PeerConnection::new(config, now).expect("pc");
        pc.set_remote_description(now, SessionDescription::offer(text.clone()))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let answer = pc.create_answer().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(answer.kind, SdpType::Answer);
        let offer = Sdp::parse(text).expect("offer");
        let parsed = Sdp::parse(&answer.sdp).expect("our answer parses");
        assert_eq!(parsed.media.len(), offer.media.len(), "{name}");
        for (o, a) in offer.media.iter().zip(&parsed.media) {
            assert_eq!(o.mid, a.mid, "{name}");
            assert_eq!(o.media_type, a.media_type, "{name}");
            if o.is_rtp() && !o.is_rejected() {
                assert!(!a.is_rejected(), "{name}: audio/video accepted");
                // Every payload type we answer was offered.
                for f in &a.formats {
                    assert!(o.formats.contains(f), "{name}: answered pt {f} not offered");
                }
                // A simulcast send list is answered with the same list to receive.
                if let Some(sim) = &o.simulcast {
                    let answered = a.simulcast.as_ref().map(|s| &s.recv);
                    assert_eq!(answered, Some(&sim.send), "{name}: simulcast answered");
                    assert!(a.simulcast.as_ref().is_some_and(|s| s.send.is_empty()));
                }
            }
        }
        pc.set_local_description(now, answer)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
