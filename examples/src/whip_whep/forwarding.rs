//! What each viewer receives of the publisher's media, built on the core's
//! [`sansrtc::media::forward`] pieces:
//!
//! - The caller says which packet starts a keyframe ([`sansrtc::rtp::codec::Codec`]).
//! - Every publisher video stream (a track, and its simulcast layer when it sends
//!   several) keeps its packets since its last keyframe in a bounded [`KeyframeCache`].
//! - Every viewer's video track is fed by a [`StreamForwarder`] that picks one layer and
//!   rewrites sequence numbers and timestamps, so a layer switch (at the new layer's
//!   keyframe) looks like one continuous stream to the viewer's decoder.
//! - A viewer receives nothing before its connection is up (its packets would be lost);
//!   when it comes up it is sent the cached picture group at once, so its first frame
//!   does not wait for the publisher's next keyframe (libwebrtc encoders ignore a
//!   second keyframe request within 300 ms of the last, so asking twice does not help).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use sansrtc::media::forward::{KeyframeCache, KeyframeCacheLimits, StreamForwarder};
use sansrtc::media::RtpPacket;
use sansrtc::MediaKind;

/// A cached group older than this is not worth a new viewer's wait: ask the publisher
/// for a fresh keyframe when one joins, so the group sent at connection is short.
pub(super) const FRESH_GROUP: Duration = Duration::from_millis(500);

/// Where one publisher packet may go: a viewer's transceiver, with the payload type map.
/// (Generic over the peer and transceiver ids so the tests can name their own.)
#[derive(Debug, Clone)]
pub(super) struct Target<P, T> {
    pub peer: P,
    pub transceiver: T,
    /// (publisher payload type, viewer payload type) for each codec both have.
    pub payload_types: Vec<(u8, u8)>,
}

/// A packet to send: to this viewer, on this transceiver.
#[derive(Debug)]
pub(super) struct Outgoing<P, T> {
    pub peer: P,
    pub transceiver: T,
    pub packet: RtpPacket,
}

/// A layer request the publisher's streams cannot satisfy.
#[derive(Debug)]
pub(super) struct UnknownLayer {
    pub requested: String,
    pub available: Vec<String>,
}

impl std::fmt::Display for UnknownLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no such layer {:?}; the publisher sends {:?}",
            self.requested, self.available
        )
    }
}

#[derive(Debug)]
struct Viewer<T> {
    connected: bool,
    /// The simulcast layer (rid) asked for; `None`: the publisher's first.
    layer: Option<String>,
    /// Per publisher video track.
    video: HashMap<T, StreamForwarder<Option<String>>>,
}

/// The forwarding state of one broadcast.
#[derive(Debug)]
pub(super) struct Forwarding<P, T> {
    /// The publisher's simulcast layers (rids) in its offer's order; empty without
    /// simulcast.
    layers: Vec<String>,
    caches: HashMap<(T, Option<String>), KeyframeCache>,
    viewers: HashMap<P, Viewer<T>>,
}

impl<P, T> Default for Forwarding<P, T> {
    fn default() -> Self {
        Forwarding {
            layers: Vec::new(),
            caches: HashMap::new(),
            viewers: HashMap::new(),
        }
    }
}

impl<P: Copy + Eq + Hash + 'static, T: Copy + Eq + Hash + 'static> Forwarding<P, T> {
    /// A publisher arrived with these simulcast layers (or none).
    pub fn publisher_started(&mut self, layers: Vec<String>) {
        self.layers = layers;
        self.caches.clear();
        for viewer in self.viewers.values_mut() {
            viewer.video.clear();
        }
    }

    /// The publisher left: its cached pictures go.
    pub fn publisher_ended(&mut self) {
        self.publisher_started(Vec::new());
    }

    /// The publisher's simulcast layers.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// A viewer joined (not yet connected), asking for a layer or the default.
    pub fn add_viewer(&mut self, peer: P, layer: Option<String>) {
        self.viewers.insert(
            peer,
            Viewer {
                connected: false,
                layer,
                video: HashMap::new(),
            },
        );
    }

    /// A viewer left.
    pub fn remove_viewer(&mut self, peer: P) {
        self.viewers.remove(&peer);
    }

    /// Whether a layer name is one the publisher sends (any name while no publisher
    /// announced layers: the viewer may come first).
    pub fn check_layer(&self, layer: &str) -> Result<(), UnknownLayer> {
        if self.layers.is_empty() || self.layers.iter().any(|l| l == layer) {
            Ok(())
        } else {
            Err(UnknownLayer {
                requested: layer.to_string(),
                available: self.layers.clone(),
            })
        }
    }

    /// Switch a viewer to another layer, from that layer's next keyframe on. False if
    /// the viewer is unknown.
    pub fn select_layer(&mut self, peer: P, layer: String) -> Result<bool, UnknownLayer> {
        self.check_layer(&layer)?;
        let Some(viewer) = self.viewers.get_mut(&peer) else {
            return Ok(false);
        };
        viewer.layer = Some(layer.clone());
        for forwarder in viewer.video.values_mut() {
            forwarder.select(Some(layer.clone()));
        }
        Ok(true)
    }

    /// The cached group for a viewer's layer of this publisher track is young enough
    /// that a viewer joining now can start from it.
    pub fn has_fresh_group(&self, now: Instant, source: T, layer: Option<&str>) -> bool {
        let key = (source, self.effective_layer(layer));
        self.caches
            .get(&key)
            .and_then(|c| c.group(now))
            .is_some_and(|mut g| g.next().is_some())
            && self
                .caches
                .get(&key)
                .and_then(|c| c.keyframe_age(now))
                .is_some_and(|age| age <= FRESH_GROUP)
    }

    /// The layer a viewer's request resolves to.
    fn effective_layer(&self, asked: Option<&str>) -> Option<String> {
        asked
            .map(str::to_string)
            .or_else(|| self.layers.first().cloned())
    }

    /// A viewer's connection came up: from now on it receives media, starting with the
    /// cached picture group of each video track it watches. `routes`: each publisher
    /// video track and its targets.
    pub fn viewer_connected<'a>(
        &mut self,
        now: Instant,
        peer: P,
        routes: impl Iterator<Item = (T, &'a [Target<P, T>])>,
        out: &mut Vec<Outgoing<P, T>>,
    ) {
        let Some(layer) = self
            .viewers
            .get(&peer)
            .map(|v| self.effective_layer(v.layer.as_deref()))
        else {
            return;
        };
        let Some(viewer) = self.viewers.get_mut(&peer) else {
            return;
        };
        viewer.connected = true;
        for (source, targets) in routes {
            let Some(target) = targets.iter().find(|t| t.peer == peer) else {
                continue;
            };
            let forwarder = viewer.video.entry(source).or_insert_with(|| {
                let mut f = StreamForwarder::new(90_000);
                f.select(layer.clone());
                f
            });
            let Some(group) = self
                .caches
                .get(&(source, layer.clone()))
                .and_then(|c| c.group(now))
            else {
                continue;
            };
            for (i, packet) in group.enumerate() {
                if let Some(p) = forwarder.forward(now, &layer, packet, i == 0) {
                    push_mapped(out, target, p);
                }
            }
        }
    }

    /// A publisher packet: cache it (video) and give what each connected viewer should
    /// be sent. `keyframe_start`: the packet begins a keyframe (ignored for audio).
    #[allow(clippy::too_many_arguments)]
    pub fn publisher_packet(
        &mut self,
        now: Instant,
        source: T,
        kind: MediaKind,
        rid: &Option<String>,
        packet: &RtpPacket,
        keyframe_start: bool,
        targets: &[Target<P, T>],
        out: &mut Vec<Outgoing<P, T>>,
    ) {
        if kind == MediaKind::Audio {
            for target in targets {
                if self.viewers.get(&target.peer).is_some_and(|v| v.connected) {
                    push_mapped(out, target, packet.clone());
                }
            }
            return;
        }
        self.caches
            .entry((source, rid.clone()))
            .or_insert_with(|| KeyframeCache::new(KeyframeCacheLimits::default()))
            .push(now, packet, keyframe_start);
        let default_layer = self.layers.first().cloned();
        for target in targets {
            let Some(viewer) = self.viewers.get_mut(&target.peer) else {
                continue;
            };
            if !viewer.connected {
                continue;
            }
            let forwarder = viewer.video.entry(source).or_insert_with(|| {
                let mut f = StreamForwarder::new(90_000);
                f.select(viewer.layer.clone().or_else(|| default_layer.clone()));
                f
            });
            if let Some(p) = forwarder.forward(now, rid, packet, keyframe_start) {
                push_mapped(out, target, p);
            }
        }
    }

    /// Some connected viewer waits for a keyframe (a layer switch, or it started with
    /// no cached group): the publisher should be asked for one.
    pub fn keyframe_wanted(&self) -> bool {
        self.viewers
            .values()
            .any(|v| v.connected && v.video.values().any(|f| f.keyframe_wanted().is_some()))
    }

    /// The simulcast layers (rids) the publisher's video has sent packets on.
    pub fn layers_sending(&self) -> Vec<String> {
        let mut rids: Vec<String> = self.caches.keys().filter_map(|(_, r)| r.clone()).collect();
        rids.sort();
        rids.dedup();
        rids
    }

    /// Layer switches completed, over every viewer (the first layer counts).
    pub fn switches(&self) -> u64 {
        self.viewers
            .values()
            .flat_map(|v| v.video.values())
            .map(|f| f.stats().switches)
            .sum()
    }
}

/// Map the payload type to the viewer's and queue the packet; a codec the viewer lacks
/// is not sent.
fn push_mapped<P: Copy, T: Copy>(
    out: &mut Vec<Outgoing<P, T>>,
    target: &Target<P, T>,
    mut packet: RtpPacket,
) {
    let Some(&(_, pt)) = target
        .payload_types
        .iter()
        .find(|(from, _)| *from == packet.payload_type)
    else {
        return;
    };
    packet.payload_type = pt;
    out.push(Outgoing {
        peer: target.peer,
        transceiver: target.transceiver,
        packet,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn peer(n: u32) -> u32 {
        n
    }

    fn packet(seq: u16, payload: &'static [u8]) -> RtpPacket {
        RtpPacket {
            payload_type: 96,
            sequence_number: seq,
            timestamp: u32::from(seq) * 3000,
            marker: true,
            ssrc: 1,
            payload: Bytes::from_static(payload),
        }
    }

    const KEY: &[u8] = &[0x90, 0x80, 0x81, 0x02, 0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a];
    const DELTA: &[u8] = &[0x90, 0x80, 0x81, 0x03, 0x11, 0x00, 0x00];

    fn target(p: u32) -> Target<u32, u8> {
        Target {
            peer: p,
            transceiver: 5,
            payload_types: vec![(96, 100)],
        }
    }

    #[test]
    fn a_viewer_gets_nothing_before_it_connects_then_the_cached_group_at_once() {
        let now = Instant::now();
        let source = 1u8;
        let mut f: Forwarding<u32, u8> = Forwarding::default();
        f.publisher_started(Vec::new());
        let v = peer(2);
        f.add_viewer(v, None);
        let targets = [target(v)];
        let mut out = Vec::new();
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &None,
            &packet(1, DELTA),
            false,
            &targets,
            &mut out,
        );
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &None,
            &packet(2, KEY),
            true,
            &targets,
            &mut out,
        );
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &None,
            &packet(3, DELTA),
            false,
            &targets,
            &mut out,
        );
        assert!(out.is_empty(), "not connected yet");
        assert!(f.has_fresh_group(now, source, None));
        f.viewer_connected(now, v, [(source, &targets[..])].into_iter(), &mut out);
        let seqs: Vec<u16> = out.iter().map(|o| o.packet.sequence_number).collect();
        assert_eq!(seqs, [2, 3], "the group from the keyframe");
        assert!(out.iter().all(|o| o.packet.payload_type == 100));
        out.clear();
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &None,
            &packet(4, DELTA),
            false,
            &targets,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].packet.sequence_number, 4);
        assert!(!f.keyframe_wanted());
    }

    #[test]
    fn a_switch_waits_for_the_new_layers_keyframe_and_stays_continuous() {
        let now = Instant::now();
        let source = 1u8;
        let mut f: Forwarding<u32, u8> = Forwarding::default();
        f.publisher_started(vec!["q".into(), "f".into()]);
        let v = peer(2);
        f.add_viewer(v, None);
        let targets = [target(v)];
        let q = Some("q".to_string());
        let full = Some("f".to_string());
        let mut out = Vec::new();
        f.viewer_connected(now, v, [(source, &targets[..])].into_iter(), &mut out);
        assert!(f.keyframe_wanted(), "no group cached yet");
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &full,
            &packet(500, KEY),
            true,
            &targets,
            &mut out,
        );
        assert!(out.is_empty(), "the default layer is the first listed");
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &q,
            &packet(10, KEY),
            true,
            &targets,
            &mut out,
        );
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &q,
            &packet(11, DELTA),
            false,
            &targets,
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert!(f.select_layer(v, "x".into()).is_err());
        assert!(f.select_layer(v, "f".into()).expect("known layer"));
        assert!(f.keyframe_wanted());
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &full,
            &packet(501, DELTA),
            false,
            &targets,
            &mut out,
        );
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &q,
            &packet(12, DELTA),
            false,
            &targets,
            &mut out,
        );
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &full,
            &packet(502, KEY),
            true,
            &targets,
            &mut out,
        );
        f.publisher_packet(
            now,
            source,
            MediaKind::Video,
            &q,
            &packet(13, DELTA),
            false,
            &targets,
            &mut out,
        );
        let seqs: Vec<u16> = out.iter().map(|o| o.packet.sequence_number).collect();
        assert_eq!(
            seqs,
            [10, 11, 12, 13],
            "q until f's keyframe, then f, numbered on"
        );
        assert!(!f.keyframe_wanted());
        assert_eq!(f.switches(), 2);
    }

    #[test]
    fn audio_goes_to_connected_viewers_only() {
        let now = Instant::now();
        let source = 0u8;
        let mut f: Forwarding<u32, u8> = Forwarding::default();
        let (a, b) = (peer(1), peer(2));
        f.add_viewer(a, None);
        f.add_viewer(b, None);
        let targets = [target(a), target(b)];
        let mut out = Vec::new();
        f.viewer_connected(now, b, std::iter::empty(), &mut out);
        f.publisher_packet(
            now,
            source,
            MediaKind::Audio,
            &None,
            &packet(1, DELTA),
            false,
            &targets,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].peer, b);
    }
}
