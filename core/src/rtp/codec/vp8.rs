//! VP8 over RTP (RFC 7741): the payload descriptor, frame assembly and a packetizer, and
//! the two facts of the VP8 frame header (RFC 6386 9.1) a receiver needs: keyframe or
//! not, and a keyframe's size.
//!
//! ```text
//!  +-+-+-+-+-+-+-+-+   X: extension byte follows   S: start of a partition
//!  |X|R|N|S|R| PID |   N: non-reference frame      PID: partition index
//!  +-+-+-+-+-+-+-+-+
//!  |I|L|T|K| RSV   |   (if X) I: picture id, L: TL0PICIDX, T/K: TID|Y|KEYIDX byte
//!  |M| PictureID   |   (if I; a second byte if M)
//!  |   TL0PICIDX   |   (if L)
//!  |TID|Y| KEYIDX  |   (if T or K)
//! ```

use bytes::Bytes;

use super::{append, CodecError};

/// The descriptor the packetizer writes: X, I with a 15-bit picture id.
const PACKETIZER_DESCRIPTOR_LEN: usize = 4;

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
    /// The temporal layer index, if present.
    pub temporal_id: Option<u8>,
    /// The descriptor's length: where the VP8 data starts.
    pub len: usize,
}

impl Descriptor {
    /// Parse the descriptor at the start of an RTP payload.
    pub fn parse(payload: &[u8]) -> Result<Descriptor, CodecError> {
        let byte = |i: usize| payload.get(i).copied().ok_or(CodecError::Truncated);
        let b0 = byte(0)?;
        let mut d = Descriptor {
            non_reference: b0 & 0x20 != 0,
            start: b0 & 0x10 != 0,
            partition: b0 & 0x07,
            len: 1,
            ..Descriptor::default()
        };
        if b0 & 0x80 == 0 {
            return Ok(d);
        }
        let x = byte(1)?;
        d.len = 2;
        if x & 0x80 != 0 {
            let p = byte(d.len)?;
            if p & 0x80 != 0 {
                d.picture_id = Some(u16::from(p & 0x7f) << 8 | u16::from(byte(d.len + 1)?));
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
            let t = byte(d.len)?;
            if x & 0x20 != 0 {
                d.temporal_id = Some(t >> 6);
            }
            d.len += 1;
        }
        Ok(d)
    }

    /// Whether this packet starts a frame (S set, partition 0).
    pub fn starts_frame(&self) -> bool {
        self.start && self.partition == 0
    }
}

/// Whether a payload is the first packet of a frame.
pub fn starts_frame(payload: &[u8]) -> bool {
    Descriptor::parse(payload).is_ok_and(|d| d.starts_frame() && d.len < payload.len())
}

/// Whether a payload is the first packet of a keyframe: the start of partition 0 whose
/// frame tag has the P (inter-frame) bit clear.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    Descriptor::parse(payload)
        .is_ok_and(|d| d.starts_frame() && payload.get(d.len).is_some_and(|tag| tag & 0x01 == 0))
}

/// Whether a VP8 frame is a keyframe: the frame tag's P bit clear and the start code
/// `9d 01 2a` after it.
pub fn is_keyframe(frame: &[u8]) -> bool {
    frame.len() >= 10 && frame[0] & 0x01 == 0 && frame[3..6] == [0x9d, 0x01, 0x2a]
}

/// A keyframe's width and height (the 14-bit sizes, without the scaling bits).
pub fn keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if !is_keyframe(frame) {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// Assemble one frame from its payloads in order; returns whether it is a keyframe.
pub fn depacketize<'a>(
    payloads: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) -> Result<bool, CodecError> {
    let start = out.len();
    for (i, payload) in payloads.enumerate() {
        let d = Descriptor::parse(payload)?;
        // The first packet starts partition 0 and carries the frame header's first
        // bytes: a descriptor alone cannot begin a frame.
        if i == 0 && !(d.starts_frame() && d.len < payload.len()) {
            return Err(CodecError::NotFrameStart);
        }
        append(out, &payload[d.len..])?;
    }
    let frame = &out[start..];
    if frame.is_empty() {
        return Err(CodecError::Empty);
    }
    Ok(is_keyframe(frame))
}

/// Split a frame into payloads of at most `max_payload` bytes, each with a descriptor
/// carrying the 15-bit `picture_id`; the first has S set. The frame is one partition as
/// far as the descriptor says (partition 0), which RFC 7741 allows.
pub fn packetize(
    frame: &[u8],
    max_payload: usize,
    picture_id: u16,
) -> Result<Vec<Bytes>, CodecError> {
    if frame.is_empty() {
        return Err(CodecError::Empty);
    }
    let room = max_payload
        .checked_sub(PACKETIZER_DESCRIPTOR_LEN)
        .filter(|r| *r > 0)
        .ok_or(CodecError::PayloadSizeTooSmall)?;
    let [hi, lo] = (picture_id & 0x7fff).to_be_bytes();
    Ok(frame
        .chunks(room)
        .enumerate()
        .map(|(i, chunk)| {
            let s = if i == 0 { 0x10 } else { 0 };
            let mut p = Vec::with_capacity(PACKETIZER_DESCRIPTOR_LEN + chunk.len());
            p.extend_from_slice(&[0x80 | s, 0x80, 0x80 | hi, lo]);
            p.extend_from_slice(chunk);
            Bytes::from(p)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    fn frame_of(payloads: &[Bytes]) -> Result<(Vec<u8>, bool), CodecError> {
        let mut out = Vec::new();
        let key = depacketize(payloads.iter().map(|p| &p[..]), &mut out)?;
        Ok((out, key))
    }

    #[test]
    fn descriptor_with_every_optional_field() {
        // X, S, PID 0; I with M (15-bit id 0x1234), L, T (TID 2).
        let d = Descriptor::parse(&[0x90, 0xe0, 0x92, 0x34, 0x07, 0x80, 0xaa])
            .expect("valid in this test");
        assert_eq!(d.picture_id, Some(0x1234));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert_eq!(d.temporal_id, Some(2));
        assert_eq!(d.len, 6);
        assert!(d.starts_frame());
        assert_eq!(
            Descriptor::parse(&[0x80, 0x80, 0x92]),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn keyframe_header_and_size() {
        let key = [0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x41];
        assert!(is_keyframe(&key));
        assert_eq!(keyframe_size(&key), Some((640, 480)));
        let mut inter = key;
        inter[0] |= 1;
        assert!(!is_keyframe(&inter));
        assert_eq!(keyframe_size(&inter), None);
    }

    #[test]
    fn a_frame_must_start_with_partition_zero_start() {
        let packets = packetize(&[1, 2, 3, 4, 5, 6], 6, 1).expect("valid in this test");
        assert_eq!(packets.len(), 3);
        assert_eq!(frame_of(&packets[1..]), Err(CodecError::NotFrameStart));
        assert!(starts_frame(&packets[0]) && !starts_frame(&packets[1]));
    }

    #[test]
    fn quickcheck_packetize_then_depacketize() {
        fn prop(frame: Vec<u8>, mtu: u16, key: bool, id: u16) -> TestResult {
            let mut frame = frame;
            if key {
                frame.splice(0..0, [0x10, 0, 0, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
            } else {
                frame.insert(0, 0x31);
            }
            let mtu = usize::from(mtu % 1500) + 5;
            let Ok(packets) = packetize(&frame, mtu, id) else {
                return TestResult::failed();
            };
            let ok = packets.iter().all(|p| p.len() <= mtu)
                && frame_of(&packets) == Ok((frame.clone(), key));
            TestResult::from_bool(ok)
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<u8>, u16, bool, u16) -> TestResult);
    }

    #[test]
    fn a_start_packet_without_data_begins_no_frame() {
        // Found by the property below: a descriptor with S set and nothing after it.
        let mut out = Vec::new();
        assert_eq!(
            depacketize([&[240u8, 0][..], &[0, 0][..]].into_iter(), &mut out),
            Err(CodecError::NotFrameStart)
        );
    }

    #[test]
    fn quickcheck_arbitrary_payloads_never_panic() {
        fn prop(payloads: Vec<Vec<u8>>) -> bool {
            let mut out = Vec::new();
            let total: usize = payloads.iter().map(Vec::len).sum();
            let ok = depacketize(payloads.iter().map(|p| &p[..]), &mut out).is_ok();
            // A frame is the payloads less their descriptors, and only from a start.
            !ok || (out.len() < total && payloads.first().is_some_and(|p| starts_frame(p)))
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<Vec<u8>>) -> bool);
    }
}
