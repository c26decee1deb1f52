//! Remote tracks: announced when negotiation makes a transceiver receive, ended when it
//! stops receiving or the remote says BYE, muted after a quiet spell and unmuted by the
//! next packet.

use std::time::{Duration, Instant};

use crate::media::session::{MediaEvent, MediaSession};
use crate::media::{Direction, TrackInfo, Transceiver, TransceiverId};

/// Without packets for this long a remote track is reported muted.
pub(crate) const MUTE_AFTER: Duration = Duration::from_secs(3);

impl MediaSession {
    /// Fire `Track` for every transceiver the remote now sends on, and `TrackEnded` for
    /// every announced one it no longer does (W3C: when the description that changes it
    /// is applied; the PeerConnection calls this when signaling returns to stable).
    pub(crate) fn announce_tracks(&mut self, transceivers: &[Transceiver]) {
        let new: Vec<TrackInfo> = transceivers
            .iter()
            .filter(|t| t.current_direction.is_some_and(Direction::receives))
            .filter(|t| !self.announced_tracks.contains(&t.id))
            .map(|t| TrackInfo {
                transceiver: t.id,
                kind: t.kind,
                mid: t.mid.clone(),
                stream_ids: t.remote.stream_ids.clone(),
                rids: t.remote.rids.clone(),
            })
            .collect();
        for info in new {
            self.announced_tracks.push(info.transceiver);
            self.push_event(MediaEvent::Track(info));
        }
        let gone: Vec<TransceiverId> = self
            .announced_tracks
            .iter()
            .copied()
            .filter(|id| {
                transceivers.iter().find(|t| t.id == *id).is_none_or(|t| {
                    t.stopped || !t.current_direction.is_some_and(Direction::receives)
                })
            })
            .collect();
        for id in gone {
            self.end_track(id);
        }
    }

    /// The remote track of a transceiver ended (BYE, or renegotiated to not send).
    pub(super) fn end_track(&mut self, transceiver: TransceiverId) {
        self.media_activity.retain(|(t, _, _)| *t != transceiver);
        // Its streams no longer reach it: later packets of those SSRCs are demultiplexed
        // afresh (and dropped while nothing receives them).
        let gone: Vec<u32> = self
            .ssrc_map
            .iter()
            .filter(|(_, t)| **t == transceiver)
            .map(|(s, _)| *s)
            .collect();
        for ssrc in gone {
            self.ssrc_map.remove(&ssrc);
            self.ssrc_rids.remove(&ssrc);
        }
        if let Some(i) = self.announced_tracks.iter().position(|t| *t == transceiver) {
            self.announced_tracks.remove(i);
            self.push_event(MediaEvent::TrackEnded(transceiver));
        }
    }

    /// A packet arrived for a transceiver: refresh its activity, unmute it if muted.
    pub(super) fn note_media(&mut self, now: Instant, id: TransceiverId) {
        // Kept sorted by id: a binary search per packet, not a scan of every track.
        match self
            .media_activity
            .binary_search_by_key(&id, |(t, _, _)| *t)
        {
            Ok(i) => {
                let entry = &mut self.media_activity[i];
                entry.1 = now;
                if std::mem::replace(&mut entry.2, false) {
                    self.note_mute_candidate(now);
                    self.push_event(MediaEvent::TrackUnmuted(id));
                }
            }
            Err(i) => {
                self.media_activity.insert(i, (id, now, false));
                self.note_mute_candidate(now);
            }
        }
    }

    /// A track became unmuted (or new) at `now`: it could go quiet at `now + MUTE_AFTER`.
    fn note_mute_candidate(&mut self, now: Instant) {
        let at = now + MUTE_AFTER;
        self.mute_deadline = Some(self.mute_deadline.map_or(at, |d| d.min(at)));
    }

    /// Report tracks that went quiet for `MUTE_AFTER` as muted.
    pub(super) fn check_muted(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut i = 0;
        while let Some(&(id, last, is_muted)) = self.media_activity.get(i) {
            i += 1;
            if is_muted {
                continue;
            }
            if now.saturating_duration_since(last) >= MUTE_AFTER {
                self.media_activity[i - 1].2 = true;
                self.push_event(MediaEvent::TrackMuted(id));
            } else {
                let at = last + MUTE_AFTER;
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.mute_deadline = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::session::testing::*;

    fn session() -> MediaSession {
        MediaSession::new(1, (Instant::now(), std::time::UNIX_EPOCH))
    }

    #[test]
    fn a_quiet_track_is_muted_then_unmuted_by_its_next_packet() {
        let mut media = session();
        let t0 = Instant::now();
        let (a, b) = (TransceiverId(0), TransceiverId(1));
        media.note_media(t0, a);
        media.note_media(t0 + Duration::from_secs(1), b);
        assert_eq!(media.poll_timeout(), Some(t0 + MUTE_AFTER));
        // Early or spurious timeouts change nothing.
        media.check_muted(t0 + Duration::from_secs(2));
        assert!(drain(&mut media).is_empty());
        media.check_muted(t0 + MUTE_AFTER);
        assert_eq!(drain(&mut media), vec![MediaEvent::TrackMuted(a)]);
        assert_eq!(
            media.poll_timeout(),
            Some(t0 + Duration::from_secs(1) + MUTE_AFTER),
            "b is next"
        );
        media.check_muted(t0 + Duration::from_secs(10));
        assert_eq!(drain(&mut media), vec![MediaEvent::TrackMuted(b)]);
        assert_eq!(media.poll_timeout(), None, "nothing left to mute");
        // Muted once, not again.
        media.check_muted(t0 + Duration::from_secs(20));
        assert!(drain(&mut media).is_empty());
        let t1 = t0 + Duration::from_secs(21);
        media.note_media(t1, a);
        assert_eq!(drain(&mut media), vec![MediaEvent::TrackUnmuted(a)]);
        assert_eq!(media.poll_timeout(), Some(t1 + MUTE_AFTER));
    }

    #[test]
    fn ending_a_track_forgets_its_streams_and_its_activity() {
        let mut media = session();
        let now = Instant::now();
        let t = TransceiverId(0);
        media.announced_tracks.push(t);
        media.ssrc_map.insert(0x1111, t);
        media.ssrc_rids.insert(0x1111, "q".into());
        media.ssrc_map.insert(0x2222, TransceiverId(1));
        media.note_media(now, t);
        media.end_track(t);
        assert_eq!(drain(&mut media), vec![MediaEvent::TrackEnded(t)]);
        assert!(!media.ssrc_map.contains_key(&0x1111));
        assert!(!media.ssrc_rids.contains_key(&0x1111));
        assert!(
            media.ssrc_map.contains_key(&0x2222),
            "other tracks keep theirs"
        );
        media.check_muted(now + MUTE_AFTER);
        assert!(drain(&mut media).is_empty(), "an ended track is not muted");
        // Ending it again fires nothing.
        media.end_track(t);
        assert!(drain(&mut media).is_empty());
    }
}
