//! VP8 over RTP (RFC 7741): the payload descriptor, a packetizer and a depacketizer that
//! assembles frames by RTP timestamp and marker bit, plus the few facts of the VP8
//! bitstream (RFC 6386) the examples need: keyframe or not, and a keyframe's size.
//!
//! ```text
//!  payload descriptor            X: extension byte follows      S: start of a partition
//!  +-+-+-+-+-+-+-+-+             N: non-reference frame         PID: partition index
//!  |X|R|N|S|R| PID |             I: picture id follows (M: 15 bits, else 7)
//!  +-+-+-+-+-+-+-+-+             L: TL0PICIDX byte follows
//!  |I|L|T|K| RSV   | (if X)      T/K: TID|Y|KEYIDX byte follows
//!  |M| PictureID   | (if I)  [second PictureID byte if M]
//!  |   TL0PICIDX   | (if L)
//!  |TID|Y| KEYIDX  | (if T or K)
//! ```

use std::fmt;

/// Why a packet could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vp8Error {
    /// The payload ends inside the payload descriptor.
    Truncated,
}

impl fmt::Display for Vp8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Vp8Error::Truncated => "VP8 payload descriptor truncated",
        })
    }
}

impl std::error::Error for Vp8Error {}

/// A parsed VP8 payload descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// S: the packet starts a partition.
    pub start: bool,
    /// The partition index.
    pub partition: u8,
    /// The picture id (7 or 15 bits), if present.
    pub picture_id: Option<u16>,
    /// TL0PICIDX, if present.
    pub tl0_pic_idx: Option<u8>,
    /// The temporal layer index, if present (T).
    pub tid: Option<u8>,
    /// KEYIDX, if present (K).
    pub key_idx: Option<u8>,
    /// Where the VP8 payload starts.
    pub len: usize,
}

impl Descriptor {
    /// Parse the descriptor at the start of an RTP payload.
    pub fn parse(payload: &[u8]) -> Result<Descriptor, Vp8Error> {
        let byte = |i: usize| payload.get(i).copied().ok_or(Vp8Error::Truncated);
        let b0 = byte(0)?;
        let mut d = Descriptor {
            non_reference: b0 & 0x20 != 0,
            start: b0 & 0x10 != 0,
            partition: b0 & 0x07,
            len: 1,
            ..Descriptor::default()
        };
        if b0 & 0x80 != 0 {
            let x = byte(1)?;
            d.len = 2;
            if x & 0x80 != 0 {
                let p = byte(d.len)?;
                if p & 0x80 != 0 {
                    let low = byte(d.len + 1)?;
                    d.picture_id = Some(u16::from(p & 0x7f) << 8 | u16::from(low));
                    d.len += 2;
                } else {
                    d.picture_id = Some(u16::from(p));
                    d.len += 1;
                }
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(byte(d.len)?);
                d.len += 1;
            }
            if x & 0x30 != 0 {
                let tk = byte(d.len)?;
                d.len += 1;
                if x & 0x20 != 0 {
                    d.tid = Some(tk >> 6);
                }
                if x & 0x10 != 0 {
                    d.key_idx = Some(tk & 0x1f);
                }
            }
        }
        Ok(d)
    }

    /// Whether this packet begins a frame: S set and partition 0.
    pub fn starts_frame(&self) -> bool {
        self.start && self.partition == 0
    }
}

/// Whether a VP8 frame is a keyframe: the P bit (lowest bit of the first byte of the
/// frame tag) is 0.
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// A keyframe's width and height (the 14-bit sizes after the start code `9d 01 2a`).
pub fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if !is_keyframe(frame) || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let le = |i: usize| Some(u16::from_le_bytes([*frame.get(i)?, *frame.get(i + 1)?]) & 0x3fff);
    Some((le(6)?, le(8)?))
}

/// Splits frames into RTP payloads: a 4-byte descriptor (X, S on the first packet,
/// partition 0, a 15-bit picture id counting frames) and the frame's bytes.
#[derive(Debug, Clone, Default)]
pub struct Packetizer {
    picture_id: u16,
}

/// The descriptor the packetizer writes is this long.
pub const PACKETIZER_DESCRIPTOR_LEN: usize = 4;

impl Packetizer {
    /// A packetizer whose first picture id is `picture_id` (15 bits are used).
    pub fn new(picture_id: u16) -> Packetizer {
        Packetizer {
            picture_id: picture_id & 0x7fff,
        }
    }

    /// The payloads of one frame, each at most `max_payload` bytes (at least
    /// `PACKETIZER_DESCRIPTOR_LEN + 1` is used). An empty frame gives one packet.
    pub fn packetize(&mut self, frame: &[u8], max_payload: usize) -> Vec<Vec<u8>> {
        let chunk = max_payload.max(PACKETIZER_DESCRIPTOR_LEN + 1) - PACKETIZER_DESCRIPTOR_LEN;
        let pid = self.picture_id;
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        let header = |start: bool| {
            let [hi, lo] = pid.to_be_bytes();
            [0x80 | if start { 0x10 } else { 0 }, 0x80, 0x80 | hi, lo]
        };
        if frame.is_empty() {
            return vec![header(true).to_vec()];
        }
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, part)| {
                let mut p = Vec::with_capacity(PACKETIZER_DESCRIPTOR_LEN + part.len());
                p.extend_from_slice(&header(i == 0));
                p.extend_from_slice(part);
                p
            })
            .collect()
    }
}

/// An assembled frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// Whether it is a keyframe.
    pub keyframe: bool,
    /// The VP8 frame.
    pub data: Vec<u8>,
}

/// What one packet gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// A complete frame.
    pub frame: Option<Frame>,
    /// Packets were lost (or unusable) and an incomplete frame was dropped or frames
    /// are now being skipped until a keyframe: ask the sender for one.
    pub lost: bool,
}

struct Partial {
    timestamp: u32,
    data: Vec<u8>,
}

/// Assembles frames from RTP packets in order. A frame starts with S set and
/// partition 0 and ends with the marker bit (or when the timestamp changes). After a
/// sequence gap the incomplete frame is dropped and frames are skipped until the next
/// keyframe, so that every frame given out decodes.
pub struct Depacketizer {
    partial: Option<Partial>,
    last_seq: Option<u16>,
    need_keyframe: bool,
    /// The largest frame assembled; bigger ones are dropped.
    max_frame: usize,
}

impl Default for Depacketizer {
    fn default() -> Self {
        Depacketizer::new()
    }
}

impl Depacketizer {
    /// A depacketizer waiting for the first keyframe (frames up to 4 MiB).
    pub fn new() -> Depacketizer {
        Depacketizer {
            partial: None,
            last_seq: None,
            need_keyframe: true,
            max_frame: 4 << 20,
        }
    }

    /// Take one RTP packet (its payload with padding removed; an empty one is padding
    /// and only keeps the sequence). A malformed payload is an error (the frame it belonged to
    /// is dropped as incomplete); a packet older than the last one is ignored.
    pub fn push(
        &mut self,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<Pushed, Vp8Error> {
        let mut out = Pushed::default();
        if let Some(last) = self.last_seq {
            let delta = sequence_number.wrapping_sub(last);
            if delta == 0 || delta >= 0x8000 {
                // A duplicate or a late packet: its frame is gone already.
                return Ok(out);
            }
            if delta != 1 {
                out.lost |= self.lose();
            }
        }
        self.last_seq = Some(sequence_number);
        if payload.is_empty() {
            // Padding only (senders probe bandwidth this way on the media SSRC when they
            // have no RTX): it takes a sequence number and carries no frame data.
            return Ok(out);
        }
        let descriptor = match Descriptor::parse(payload) {
            Ok(d) => d,
            Err(e) => {
                self.lose();
                return Err(e);
            }
        };
        let data = payload.get(descriptor.len..).unwrap_or_default();
        if descriptor.starts_frame() {
            if self.partial.take().is_some() {
                // The previous frame never saw its marker.
                out.lost |= self.lose();
            }
            self.partial = Some(Partial {
                timestamp,
                data: Vec::with_capacity(data.len() * 2),
            });
        }
        let Some(partial) = self.partial.as_mut() else {
            // The middle of a frame whose start we missed.
            out.lost |= self.lose();
            return Ok(out);
        };
        if partial.timestamp != timestamp || partial.data.len() + data.len() > self.max_frame {
            out.lost |= self.lose();
            return Ok(out);
        }
        partial.data.extend_from_slice(data);
        if marker {
            if let Some(p) = self.partial.take() {
                let keyframe = is_keyframe(&p.data);
                if keyframe {
                    self.need_keyframe = false;
                }
                if self.need_keyframe {
                    out.lost = true;
                } else {
                    out.frame = Some(Frame {
                        timestamp: p.timestamp,
                        keyframe,
                        data: p.data,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Drop the incomplete frame and wait for a keyframe; always true (lost).
    fn lose(&mut self) -> bool {
        self.partial = None;
        self.need_keyframe = true;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{quickcheck, TestResult};

    fn keyframe(width: u16, height: u16, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        f.extend_from_slice(&width.to_le_bytes());
        f.extend_from_slice(&height.to_le_bytes());
        f.extend_from_slice(body);
        f
    }

    fn interframe(body: &[u8]) -> Vec<u8> {
        let mut f = vec![0x31, 0x02, 0x00];
        f.extend_from_slice(body);
        f
    }

    /// Packetize frames (the first a keyframe) with consecutive sequence numbers and
    /// depacketize them again.
    fn round_trip(frames: &[Vec<u8>], max_payload: usize, seq0: u16, ts0: u32) -> Vec<Frame> {
        let mut p = Packetizer::new(seq0);
        let mut d = Depacketizer::new();
        let mut seq = seq0;
        let mut out = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let ts = ts0.wrapping_add(3000 * i as u32);
            let packets = p.packetize(frame, max_payload);
            for (j, payload) in packets.iter().enumerate() {
                assert!(payload.len() <= max_payload.max(PACKETIZER_DESCRIPTOR_LEN + 1));
                let pushed = d
                    .push(seq, ts, j + 1 == packets.len(), payload)
                    .expect("well-formed");
                assert!(!pushed.lost);
                out.extend(pushed.frame);
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    quickcheck! {
        fn depacketize_packetize_is_identity(
            bodies: Vec<Vec<u8>>, max_payload: u16, seq0: u16, ts0: u32
        ) -> TestResult {
            let max_payload = 5 + usize::from(max_payload % 1400);
            let mut frames = vec![keyframe(640, 480, &[])];
            frames.extend(bodies.iter().map(|b| interframe(b)));
            let out = round_trip(&frames, max_payload, seq0, ts0);
            let data: Vec<Vec<u8>> = out.iter().map(|f| f.data.clone()).collect();
            TestResult::from_bool(
                data == frames
                    && out[0].keyframe
                    && out.iter().skip(1).all(|f| !f.keyframe)
                    && out.iter().enumerate().all(|(i, f)| {
                        f.timestamp == ts0.wrapping_add(3000 * i as u32)
                    }),
            )
        }

        fn arbitrary_packets_never_panic(packets: Vec<(u16, u32, bool, Vec<u8>)>) -> bool {
            let mut d = Depacketizer::new();
            for (seq, ts, marker, payload) in &packets {
                let _ = d.push(*seq, *ts, *marker, payload);
            }
            true
        }
    }

    #[test]
    fn descriptor_fields() {
        // X, N, S, PID 2; I (7-bit 0x55), L, T and K.
        let d = Descriptor::parse(&[0xb2, 0xf0, 0x55, 0x07, 0b1010_0011, 0xaa]).expect("ok");
        assert!(d.non_reference && d.start);
        assert_eq!(d.partition, 2);
        assert_eq!(d.picture_id, Some(0x55));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.tid, Some(2));
        assert_eq!(d.key_idx, Some(3));
        assert_eq!(d.len, 5);
        assert!(!d.starts_frame());
        // 15-bit picture id, K only.
        let d = Descriptor::parse(&[0x90, 0x90, 0x81, 0x23, 0x1f]).expect("ok");
        assert_eq!(d.picture_id, Some(0x0123));
        assert_eq!((d.tid, d.key_idx, d.len), (None, Some(31), 5));
        assert!(d.starts_frame());
        // No extension.
        assert_eq!(Descriptor::parse(&[0x10]).expect("ok").len, 1);
        for truncated in [
            &[][..],
            &[0x80],
            &[0x80, 0x80],
            &[0x80, 0x80, 0x80],
            &[0x80, 0x40],
        ] {
            assert_eq!(Descriptor::parse(truncated), Err(Vp8Error::Truncated));
        }
    }

    #[test]
    fn keyframe_header() {
        let k = keyframe(640, 360, &[1, 2, 3]);
        assert!(is_keyframe(&k));
        assert_eq!(keyframe_size(&k), Some((640, 360)));
        let i = interframe(&[1]);
        assert!(!is_keyframe(&i));
        assert_eq!(keyframe_size(&i), None);
        assert_eq!(keyframe_size(&k[..8]), None);
    }

    #[test]
    fn gap_drops_the_frame_and_waits_for_a_keyframe() {
        let mut p = Packetizer::new(0);
        let mut d = Depacketizer::new();
        // An interframe first: skipped (no keyframe yet) and reported.
        let pushed = d.push(1, 0, true, &p.packetize(&interframe(&[9]), 1200)[0]);
        assert_eq!(
            pushed,
            Ok(Pushed {
                frame: None,
                lost: true
            })
        );
        let key = p.packetize(&keyframe(320, 240, &[7; 30]), 20);
        assert!(key.len() > 2);
        // Lose the keyframe's second packet.
        let mut lost = false;
        for (i, payload) in key.iter().enumerate() {
            if i == 1 {
                continue;
            }
            let pushed = d
                .push(2 + i as u16, 3000, i + 1 == key.len(), payload)
                .expect("ok");
            assert_eq!(pushed.frame, None);
            lost |= pushed.lost;
        }
        assert!(lost);
        // An interframe after it is still skipped; a whole keyframe then passes.
        let mut seq = 2 + key.len() as u16;
        let inter = p.packetize(&interframe(&[1]), 1200);
        assert_eq!(d.push(seq, 6000, true, &inter[0]).expect("ok").frame, None);
        seq += 1;
        let key = p.packetize(&keyframe(320, 240, &[5; 3]), 1200);
        let pushed = d.push(seq, 9000, true, &key[0]).expect("ok");
        assert!(pushed
            .frame
            .is_some_and(|f| f.keyframe && f.timestamp == 9000));
    }

    /// A frame in two partitions, with 7-bit picture ids, TL0PICIDX and TID fields (as
    /// a temporally layered sender writes them): S on partition 1 does not start a frame.
    #[test]
    fn partitions_and_extended_fields() {
        let key = keyframe(32, 16, &[1, 2, 3]);
        let (first, second) = key.split_at(5);
        let mut d = Depacketizer::new();
        let packet = |b0: u8, data: &[u8]| {
            let mut p = vec![b0, 0xe0, 0x11, 0x05, 0x40];
            p.extend_from_slice(data);
            p
        };
        let p1 = packet(0x90, first);
        let p2 = packet(0x91, &second[..2]);
        let p3 = packet(0x81, &second[2..]);
        assert_eq!(d.push(7, 90, false, &p1).expect("ok"), Pushed::default());
        assert_eq!(d.push(8, 90, false, &p2).expect("ok"), Pushed::default());
        let pushed = d.push(9, 90, true, &p3).expect("ok");
        assert!(!pushed.lost);
        let frame = pushed.frame.expect("a frame");
        assert_eq!(frame.data, key);
        assert!(frame.keyframe);
        assert_eq!(keyframe_size(&frame.data), Some((32, 16)));
    }

    #[test]
    fn padding_between_frames_is_no_loss() {
        let mut p = Packetizer::new(0);
        let mut d = Depacketizer::new();
        let key = p.packetize(&keyframe(16, 16, &[1]), 1200);
        assert!(d.push(10, 0, true, &key[0]).expect("ok").frame.is_some());
        assert_eq!(d.push(11, 0, false, &[]), Ok(Pushed::default()));
        assert_eq!(d.push(12, 0, false, &[]), Ok(Pushed::default()));
        let inter = p.packetize(&interframe(&[2]), 1200);
        let pushed = d.push(13, 3000, true, &inter[0]).expect("ok");
        assert!(!pushed.lost);
        assert!(pushed.frame.is_some_and(|f| !f.keyframe));
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut d = Depacketizer::new();
        assert_eq!(d.push(1, 0, true, &[0x80]), Err(Vp8Error::Truncated));
        assert_eq!(d.push(2, 0, true, &[0x80, 0x80]), Err(Vp8Error::Truncated));
        // A duplicate is ignored.
        assert_eq!(d.push(2, 0, true, &[0x10, 0]), Ok(Pushed::default()));
    }
}
