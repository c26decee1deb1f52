//! VP9 over RTP (RFC 9628): the payload descriptor in flexible and non-flexible mode,
//! frame assembly and a packetizer, and the keyframe bit of the VP9 uncompressed header.
//!
//! ```text
//!  +-+-+-+-+-+-+-+-+   I: picture id   P: inter-picture predicted   L: layer indices
//!  |I|P|L|F|B|E|V|Z|   F: flexible mode   B/E: start/end of a layer frame
//!  +-+-+-+-+-+-+-+-+   V: scalability structure follows   Z: not a reference upward
//!  |M| PICTURE ID  |   (if I; a second byte if M)
//!  |TID|U| SID |D  |   (if L)
//!  |   TL0PICIDX   |   (if L and not F)
//!  | P_DIFF      |N|   (if F and P; up to 3, N: another follows)
//!  |      SS       |   (if V)
//! ```
//!
//! The frame of one RTP timestamp is a picture: with spatial layers it holds one layer
//! frame per layer, each started by B, and the assembled frame is their concatenation.
//! A keyframe is a picture whose first layer frame (spatial layer 0) has P clear.

use bytes::Bytes;

use super::{append, CodecError};

/// The descriptor the packetizer writes: I with a 15-bit picture id, no layers.
const PACKETIZER_DESCRIPTOR_LEN: usize = 3;
/// P_DIFF entries at most (RFC 9628 4.2).
const MAX_P_DIFF: usize = 3;

/// A parsed VP9 payload descriptor (the fields frame assembly uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// P: the layer frame is predicted from an earlier picture.
    pub inter_predicted: bool,
    /// F: flexible mode.
    pub flexible: bool,
    /// B: the packet starts a layer frame.
    pub start: bool,
    /// E: the packet ends a layer frame.
    pub end: bool,
    /// The picture id (7 or 15 bits), if present.
    pub picture_id: Option<u16>,
    /// The spatial layer id (0 without layer indices).
    pub spatial_id: u8,
    /// The temporal layer id (0 without layer indices).
    pub temporal_id: u8,
    /// The descriptor's length: where the VP9 data starts.
    pub len: usize,
}

impl Descriptor {
    /// Parse the descriptor at the start of an RTP payload (the scalability structure is
    /// checked and skipped).
    pub fn parse(payload: &[u8]) -> Result<Descriptor, CodecError> {
        let mut at = 0usize;
        let mut next = || {
            let b = payload.get(at).copied().ok_or(CodecError::Truncated);
            at += 1;
            b
        };
        let b0 = next()?;
        let mut d = Descriptor {
            inter_predicted: b0 & 0x40 != 0,
            flexible: b0 & 0x10 != 0,
            start: b0 & 0x08 != 0,
            end: b0 & 0x04 != 0,
            ..Descriptor::default()
        };
        if b0 & 0x80 != 0 {
            let p = next()?;
            d.picture_id = Some(if p & 0x80 != 0 {
                u16::from(p & 0x7f) << 8 | u16::from(next()?)
            } else {
                u16::from(p)
            });
        }
        if b0 & 0x20 != 0 {
            let layers = next()?;
            d.temporal_id = layers >> 5;
            d.spatial_id = (layers >> 1) & 0x07;
            if !d.flexible {
                next()?; // TL0PICIDX
            }
        }
        if d.flexible && d.inter_predicted {
            let mut diffs = 0;
            loop {
                diffs += 1;
                if next()? & 0x01 == 0 {
                    break;
                }
                if diffs == MAX_P_DIFF {
                    return Err(CodecError::Invalid);
                }
            }
        }
        if b0 & 0x02 != 0 {
            let ss = next()?;
            let spatial_layers = usize::from(ss >> 5) + 1;
            if ss & 0x10 != 0 {
                for _ in 0..spatial_layers * 4 {
                    next()?;
                }
            }
            if ss & 0x08 != 0 {
                let groups = next()?;
                for _ in 0..groups {
                    let refs = (next()? >> 2) & 0x03;
                    for _ in 0..refs {
                        next()?;
                    }
                }
            }
        }
        d.len = at;
        Ok(d)
    }
}

/// Whether a payload is the first packet of a picture (B set, spatial layer 0).
pub fn starts_frame(payload: &[u8]) -> bool {
    Descriptor::parse(payload).is_ok_and(|d| d.start && d.spatial_id == 0 && d.len < payload.len())
}

/// Whether a payload is the first packet of a keyframe: the start of spatial layer 0's
/// frame, not predicted from an earlier picture.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    Descriptor::parse(payload)
        .is_ok_and(|d| d.start && d.spatial_id == 0 && !d.inter_predicted && d.len < payload.len())
}

/// Whether a VP9 frame's uncompressed header says it is a keyframe (frame_marker 2,
/// not show_existing_frame, frame_type 0).
pub fn is_keyframe(frame: &[u8]) -> bool {
    let Some(&b) = frame.first() else {
        return false;
    };
    if b >> 6 != 0b10 {
        return false;
    }
    let profile = (b >> 5 & 1) | (b >> 4 & 1) << 1;
    // After the marker and profile bits, profile 3 has one reserved bit.
    let at = if profile == 3 { 5 } else { 4 };
    let show_existing = frame_bit(b, at);
    let frame_type = frame_bit(b, at + 1);
    !show_existing && !frame_type
}

/// Bit `i` (0 = most significant) of a byte.
fn frame_bit(b: u8, i: u32) -> bool {
    b << i & 0x80 != 0
}

/// Assemble one picture from its payloads in order; returns whether it is a keyframe.
pub fn depacketize<'a>(
    payloads: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) -> Result<bool, CodecError> {
    let start = out.len();
    let mut keyframe = false;
    let mut in_layer_frame = false;
    for (i, payload) in payloads.enumerate() {
        let d = Descriptor::parse(payload)?;
        if i == 0 {
            if !d.start {
                return Err(CodecError::NotFrameStart);
            }
            keyframe = !d.inter_predicted && d.spatial_id == 0;
        }
        // A layer frame runs from B to E; a packet outside one is a lost start.
        if d.start == in_layer_frame {
            return Err(CodecError::BrokenFragment);
        }
        in_layer_frame = !d.end;
        append(out, &payload[d.len..])?;
    }
    if out.len() == start {
        return Err(CodecError::Empty);
    }
    Ok(keyframe)
}

/// Split a frame into payloads of at most `max_payload` bytes with a descriptor carrying
/// the 15-bit `picture_id`, B on the first, E on the last, and P from the frame header.
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
    let p = if is_keyframe(frame) { 0 } else { 0x40 };
    let [hi, lo] = (picture_id & 0x7fff).to_be_bytes();
    let count = frame.len().div_ceil(room);
    Ok(frame
        .chunks(room)
        .enumerate()
        .map(|(i, chunk)| {
            let b = if i == 0 { 0x08 } else { 0 };
            let e = if i + 1 == count { 0x04 } else { 0 };
            let mut out = Vec::with_capacity(PACKETIZER_DESCRIPTOR_LEN + chunk.len());
            out.extend_from_slice(&[0x80 | p | b | e, 0x80 | hi, lo]);
            out.extend_from_slice(chunk);
            Bytes::from(out)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    fn frame_of(payloads: &[&[u8]]) -> Result<(Vec<u8>, bool), CodecError> {
        let mut out = Vec::new();
        let key = depacketize(payloads.iter().copied(), &mut out)?;
        Ok((out, key))
    }

    #[test]
    fn non_flexible_descriptor_with_layers_and_scalability_structure() {
        // I (7-bit id 5), L, B, E, V; layers TID 1 SID 0; TL0PICIDX; SS with one spatial
        // layer, Y (4 bytes of size), G with one group of one reference.
        let p = [
            0xae, 0x05, 0x20, 0x09, 0x18, 0x02, 0x80, 0x01, 0xe0, 0x01, 0x24, 0x01, 0xaa,
        ];
        let d = Descriptor::parse(&p).expect("valid in this test");
        assert_eq!((d.picture_id, d.temporal_id, d.spatial_id), (Some(5), 1, 0));
        assert!(d.start && d.end && !d.flexible && !d.inter_predicted);
        assert_eq!(d.len, 12);
        assert_eq!(frame_of(&[&p]), Ok((vec![0xaa], true)));
        assert_eq!(Descriptor::parse(&p[..10]), Err(CodecError::Truncated));
    }

    #[test]
    fn flexible_descriptor_with_reference_diffs() {
        // I, P, L, F, B; 15-bit id; layers SID 1; two P_DIFF (N on the first).
        let p = [0xf8, 0x81, 0x02, 0x02, 0x03, 0x04, 0xbb];
        let d = Descriptor::parse(&p).expect("valid in this test");
        assert_eq!((d.picture_id, d.spatial_id, d.len), (Some(0x102), 1, 6));
        assert!(d.flexible && d.inter_predicted);
        // Four P_DIFF entries are more than the format allows.
        assert_eq!(
            Descriptor::parse(&[0x58, 0x01, 0x01, 0x01, 0x01, 0]),
            Err(CodecError::Invalid)
        );
        assert!(
            !starts_frame(&p),
            "spatial layer 1 does not start a picture"
        );
    }

    #[test]
    fn layer_frames_run_from_start_to_end() {
        let first = [0x88, 0x01, 0x01]; // B, not E
        let middle = [0x80, 0x01, 0x02];
        let last = [0x84, 0x01, 0x03];
        assert_eq!(
            frame_of(&[&first, &middle, &last]),
            Ok((vec![1, 2, 3], true))
        );
        assert_eq!(frame_of(&[&middle, &last]), Err(CodecError::NotFrameStart));
        // A second B before the E: the end of the first layer frame was lost.
        assert_eq!(frame_of(&[&first, &first]), Err(CodecError::BrokenFragment));
    }

    #[test]
    fn uncompressed_header_keyframe_bit() {
        assert!(is_keyframe(&[0x82, 0x49, 0x83, 0x42])); // profile 0 keyframe
        assert!(!is_keyframe(&[0x86])); // profile 0, frame_type 1
        assert!(!is_keyframe(&[0x88])); // show_existing_frame
        assert!(is_keyframe(&[0xb0])); // profile 3, reserved bit, keyframe
        assert!(!is_keyframe(&[0x02]));
    }

    #[test]
    fn quickcheck_packetize_then_depacketize() {
        fn prop(frame: Vec<u8>, mtu: u16, id: u16) -> TestResult {
            if frame.is_empty() {
                return TestResult::discard();
            }
            let mtu = usize::from(mtu % 1500) + 4;
            let Ok(packets) = packetize(&frame, mtu, id) else {
                return TestResult::failed();
            };
            let payloads: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
            let ok = packets.iter().all(|p| p.len() <= mtu)
                && frame_of(&payloads) == Ok((frame.clone(), is_keyframe(&frame)));
            TestResult::from_bool(ok)
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<u8>, u16, u16) -> TestResult);
    }

    #[test]
    fn quickcheck_arbitrary_payloads_never_panic() {
        fn prop(payloads: Vec<Vec<u8>>) -> bool {
            let mut out = Vec::new();
            let total: usize = payloads.iter().map(Vec::len).sum();
            let ok = depacketize(payloads.iter().map(|p| &p[..]), &mut out).is_ok();
            !ok || out.len() < total
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<Vec<u8>>) -> bool);
    }
}
