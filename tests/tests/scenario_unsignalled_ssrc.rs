//! Demux of SSRCs the remote never signalled. Alice's offer reaches bob with its `a=ssrc`
//! lines and its mid header extension removed (as a sender that signals neither would
//! write it), so bob's answer does not negotiate the mid extension either and alice's
//! packets carry neither a mid nor a signalled SSRC. Bob must still put each stream on the
//! right transceiver, by payload type, from its first packet, audio and video alike, and
//! count nothing as unmatched. With two video transceivers the payload type no longer
//! names one: their packets are dropped and counted rather than put on a guessed one.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use sansrtc::media::RtpPacket;
use sansrtc::peer::IceGatheringState;
use sansrtc::sdp::{Sdp, SessionDescription};
use sansrtc::{Event, MediaKind, TransceiverId};
use sansrtc_tests::{Network, NodeId};

const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// The description without `a=ssrc`/`a=ssrc-group` lines and without the mid extension.
fn strip_ssrcs_and_mid(sdp: &str) -> String {
    sdp.split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=ssrc"))
        .filter(|l| !(l.starts_with("a=extmap:") && l.contains(MID_URI)))
        .collect()
}

/// Alice (audio, video, and `extra_video` more video tracks) and bob, connected with the
/// offer munged on its way.
fn connect_munged(extra_video: usize) -> (Network, NodeId, NodeId) {
    let mut net = Network::new(91);
    let (a, b) = net.two_peers(
        91,
        &["10.0.0.1:5000".parse().expect("addr")],
        &["10.0.0.2:6000".parse().expect("addr")],
    );
    for _ in 0..extra_video {
        net.peer(a)
            .add_track(MediaKind::Video, vec!["stream".into()])
            .expect("track");
    }
    // Offer, all candidates at once, then munged on its way to bob.
    let now = net.now();
    let offer = net.peer(a).create_offer(Default::default()).expect("offer");
    net.peer(a)
        .set_local_description(now, offer)
        .expect("local offer");
    assert!(
        net.run_until(Duration::from_secs(2), |n| n.peer(a).ice_gathering_state()
            == IceGatheringState::Complete)
    );
    let offer = net.peer(a).local_description().expect("offer");
    let munged = strip_ssrcs_and_mid(&offer.sdp);
    let parsed = Sdp::parse(&munged).expect("munged offer parses");
    assert!(parsed.media.iter().all(|m| m.ssrcs.is_empty()));
    assert!(parsed
        .media
        .iter()
        .all(|m| m.extmaps.iter().all(|x| x.uri != MID_URI)));
    let now = net.now();
    net.peer(b)
        .set_remote_description(now, SessionDescription::offer(munged))
        .expect("remote offer");
    let answer = net.peer(b).create_answer().expect("answer");
    net.peer(b)
        .set_local_description(now, answer)
        .expect("local answer");
    assert!(
        net.run_until(Duration::from_secs(2), |n| n.peer(b).ice_gathering_state()
            == IceGatheringState::Complete)
    );
    let answer = net.peer(b).local_description().expect("answer");
    assert!(
        !answer.sdp.contains(MID_URI),
        "bob did not accept a mid extension"
    );
    let now = net.now();
    net.peer(a)
        .set_remote_description(now, answer)
        .expect("remote answer");
    assert!(
        net.run_until(Duration::from_secs(10), |n| n.connected(a, b)),
        "{}",
        net.timeline_text()
    );
    (net, a, b)
}

/// Alice sends 20 packets on each track; what bob received, by the kind of the
/// transceiver it came out of.
fn send_and_collect(net: &mut Network, a: NodeId, b: NodeId) -> HashMap<MediaKind, Vec<String>> {
    let tracks: Vec<(TransceiverId, MediaKind)> = net
        .peer(a)
        .transceivers()
        .iter()
        .map(|t| (t.id, t.kind))
        .collect();
    for seq in 0..20u16 {
        for (id, kind) in &tracks {
            let packet = RtpPacket {
                payload_type: 0,
                sequence_number: seq,
                timestamp: u32::from(seq) * 960,
                marker: false,
                ssrc: 0,
                payload: Bytes::from(format!("{} {seq}", kind.as_str())),
            };
            net.peer(a).send_rtp(*id, &packet).expect("send_rtp");
        }
        net.run_for(Duration::from_millis(20));
    }
    let kinds: HashMap<TransceiverId, MediaKind> = net
        .peer(b)
        .transceivers()
        .iter()
        .map(|t| (t.id, t.kind))
        .collect();
    let mut got: HashMap<MediaKind, Vec<String>> = HashMap::new();
    for ev in net.events_of(b) {
        if let Event::Rtp { track, packet, .. } = ev {
            let text = String::from_utf8(packet.payload.to_vec()).expect("utf8");
            got.entry(kinds[track]).or_default().push(text);
        }
    }
    got
}

#[test]
fn streams_without_ssrc_lines_or_mid_reach_the_right_transceiver() {
    let (mut net, a, b) = connect_munged(0);
    assert_eq!(net.peer(a).transceivers().len(), 2);
    let got = send_and_collect(&mut net, a, b);
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let expected: Vec<String> = (0..20).map(|s| format!("{} {s}", kind.as_str())).collect();
        assert_eq!(got.get(&kind), Some(&expected), "{kind:?}");
    }
    assert_eq!(net.peer(b).stats().rtp_unmatched, 0);
}

#[test]
fn a_shared_payload_type_is_not_guessed() {
    let (mut net, a, b) = connect_munged(1);
    assert_eq!(net.peer(a).transceivers().len(), 3);
    let got = send_and_collect(&mut net, a, b);
    let audio: Vec<String> = (0..20).map(|s| format!("audio {s}")).collect();
    assert_eq!(got.get(&MediaKind::Audio), Some(&audio));
    assert_eq!(got.get(&MediaKind::Video), None, "{got:?}");
    assert_eq!(net.peer(b).stats().rtp_unmatched, 40);
}
