//! Opus over RTP (RFC 7587): one RTP packet carries one Opus packet, which is the frame;
//! every frame decodes on its own (for this layer, each is a keyframe).

use bytes::Bytes;

use super::{append, CodecError};

/// Take the single payload of a frame; returns `true` (no Opus packet depends on a lost
/// one to be decodable).
pub fn depacketize<'a>(
    mut payloads: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) -> Result<bool, CodecError> {
    let payload = payloads.next().ok_or(CodecError::Empty)?;
    if payloads.next().is_some() {
        // One packet is one frame: a second payload is not part of it.
        return Err(CodecError::Invalid);
    }
    if payload.is_empty() {
        return Err(CodecError::Empty);
    }
    append(out, payload)?;
    Ok(true)
}

/// One Opus packet as one payload; an Opus packet does not fragment.
pub fn packetize(frame: &[u8], max_payload: usize) -> Result<Vec<Bytes>, CodecError> {
    if frame.is_empty() {
        return Err(CodecError::Empty);
    }
    if frame.len() > max_payload {
        return Err(CodecError::PayloadSizeTooSmall);
    }
    Ok(vec![Bytes::copy_from_slice(frame)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    #[test]
    fn one_packet_is_one_frame() {
        let mut out = Vec::new();
        assert_eq!(
            depacketize([&[0xfc, 1][..]].into_iter(), &mut out),
            Ok(true)
        );
        assert_eq!(out, [0xfc, 1]);
        let two = [&[1u8][..], &[2u8][..]];
        assert_eq!(
            depacketize(two.into_iter(), &mut out),
            Err(CodecError::Invalid)
        );
        assert_eq!(
            depacketize([&[][..]].into_iter(), &mut out),
            Err(CodecError::Empty)
        );
        assert_eq!(packetize(&[0; 10], 9), Err(CodecError::PayloadSizeTooSmall));
    }

    #[test]
    fn quickcheck_packetize_then_depacketize() {
        fn prop(frame: Vec<u8>) -> TestResult {
            if frame.is_empty() {
                return TestResult::discard();
            }
            let Ok(packets) = packetize(&frame, 1200) else {
                return TestResult::from_bool(frame.len() > 1200);
            };
            let mut out = Vec::new();
            let key = depacketize(packets.iter().map(|p| &p[..]), &mut out);
            TestResult::from_bool(key == Ok(true) && out == frame)
        }
        QuickCheck::new()
            .tests(200)
            .quickcheck(prop as fn(Vec<u8>) -> TestResult);
    }
}
