//! H.264 over RTP (RFC 6184, packetization-mode 0 and 1): single NAL unit packets,
//! STAP-A aggregation and FU-A fragmentation, assembled into an Annex B access unit
//! (each NAL unit after a 4-byte start code `00 00 00 01`).
//!
//! ```text
//!  NAL header  |F|NRI|Type|    1-23: one NAL unit    24: STAP-A    28: FU-A
//!  STAP-A      |F|NRI| 24 | size (16 bits) | NAL unit | size | NAL unit | ...
//!  FU-A        |F|NRI| 28 | |S|E|R| Type | fragment of the NAL unit (after its header)
//! ```
//!
//! A keyframe is an access unit with an IDR slice (type 5). Chromium sends the SPS (7)
//! and PPS (8) in the same access unit as each IDR (usually one STAP-A), so a recording
//! that starts at a keyframe decodes; this module does not insert parameter sets that
//! the sender left out. STAP-B, MTAP and FU-B belong to packetization-mode 2, which is
//! not negotiated, and are [`CodecError::Unsupported`].

use bytes::Bytes;

use super::{append, CodecError};

/// The start code written before each NAL unit.
pub const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// NAL unit type: coded slice of a non-IDR picture.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type: coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type: supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// NAL unit type: sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type: picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type: access unit delimiter.
pub const NAL_AUD: u8 = 9;
/// RTP packet type: single-time aggregation packet.
pub const STAP_A: u8 = 24;
/// RTP packet type: fragmentation unit.
pub const FU_A: u8 = 28;

/// The NAL unit type of a NAL header byte.
pub fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// Whether a NAL unit can begin an access unit: parameter sets, SEI and delimiters do,
/// and a slice does when it is the first of its picture (first_mb_in_slice 0, whose
/// Exp-Golomb code is the single bit `1`).
fn begins_access_unit(nal_type: u8, first_body_byte: Option<u8>) -> bool {
    match nal_type {
        NAL_SLICE | NAL_IDR => first_body_byte.is_some_and(|b| b & 0x80 != 0),
        NAL_SEI | NAL_SPS | NAL_PPS | NAL_AUD => true,
        _ => false,
    }
}

/// Whether a payload can be the first packet of an access unit.
pub fn starts_frame(payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else {
        return false;
    };
    match nal_type(header) {
        STAP_A => payload
            .get(3)
            .is_some_and(|&h| begins_access_unit(nal_type(h), payload.get(4).copied())),
        FU_A => payload.get(1).is_some_and(|&fu| {
            fu & 0x80 != 0 && begins_access_unit(nal_type(fu), payload.get(2).copied())
        }),
        t => begins_access_unit(t, payload.get(1).copied()),
    }
}

/// Whether a payload is the first packet of a keyframe: it begins an access unit with a
/// sequence parameter set (alone or in a STAP-A), as Chromium, Firefox and most encoders
/// send before each IDR picture, so a decoder starting there has what it needs. (An IDR
/// slice without in-band parameter sets is not taken for a start: a fresh decoder could
/// not decode it.)
pub fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(&header) = payload.first() else {
        return false;
    };
    match nal_type(header) {
        STAP_A => {
            // The first aggregated unit (after its 16-bit size) opens the access unit.
            payload.len() > 3 && payload.get(3).is_some_and(|&h| nal_type(h) == NAL_SPS)
        }
        t => t == NAL_SPS && payload.len() > 1,
    }
}

/// Write one NAL unit after a start code; returns whether it is an IDR slice.
fn emit(out: &mut Vec<u8>, nal: &[u8]) -> Result<bool, CodecError> {
    let header = *nal.first().ok_or(CodecError::Empty)?;
    if header & 0x80 != 0 || !(1..=23).contains(&nal_type(header)) {
        return Err(CodecError::Invalid);
    }
    append(out, &START_CODE)?;
    append(out, nal)?;
    Ok(nal_type(header) == NAL_IDR)
}

/// Assemble one access unit from its payloads in order; returns whether it is a
/// keyframe (holds an IDR slice).
pub fn depacketize<'a>(
    payloads: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) -> Result<bool, CodecError> {
    let mut keyframe = false;
    // Inside a FU-A: the fragments so far, and whether the unit is an IDR slice.
    let mut fragment: Option<bool> = None;
    let mut any = false;
    for (i, payload) in payloads.enumerate() {
        let header = *payload.first().ok_or(CodecError::Empty)?;
        if header & 0x80 != 0 {
            return Err(CodecError::Invalid);
        }
        let kind = nal_type(header);
        if kind != FU_A && fragment.is_some() {
            return Err(CodecError::BrokenFragment);
        }
        match kind {
            1..=23 => keyframe |= emit(out, payload)?,
            STAP_A => {
                let mut rest = &payload[1..];
                if rest.is_empty() {
                    return Err(CodecError::Truncated);
                }
                while !rest.is_empty() {
                    let [a, b, ..] = *rest else {
                        return Err(CodecError::Truncated);
                    };
                    let size = usize::from(u16::from_be_bytes([a, b]));
                    let nal = rest.get(2..2 + size).ok_or(CodecError::Truncated)?;
                    keyframe |= emit(out, nal)?;
                    rest = &rest[2 + size..];
                }
            }
            FU_A => {
                let fu = *payload.get(1).ok_or(CodecError::Truncated)?;
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start && end {
                    return Err(CodecError::Invalid);
                }
                let data = &payload[2..];
                if start {
                    if fragment.is_some() {
                        return Err(CodecError::BrokenFragment);
                    }
                    let original = (header & 0xe0) | nal_type(fu);
                    let idr = emit(out, &[original])?;
                    fragment = Some(idr);
                } else if fragment.is_none() {
                    return Err(if i == 0 {
                        CodecError::NotFrameStart
                    } else {
                        CodecError::BrokenFragment
                    });
                }
                append(out, data)?;
                if end {
                    keyframe |= fragment.take().unwrap_or(false);
                }
            }
            25..=27 | 29 => return Err(CodecError::Unsupported(kind)),
            _ => return Err(CodecError::Invalid),
        }
        any = true;
    }
    if fragment.is_some() {
        return Err(CodecError::BrokenFragment);
    }
    if !any {
        return Err(CodecError::Empty);
    }
    Ok(keyframe)
}

/// The NAL units of an Annex B byte stream (start codes of 3 or 4 bytes; the zero bytes
/// before a start code are not part of the unit before it). Fails if the stream does
/// not begin with a start code.
pub fn nal_units(stream: &[u8]) -> Result<Vec<&[u8]>, CodecError> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    // The stream begins with `00 00 01` or `00 00 00 01`.
    let begins_with_start_code = match starts.first() {
        Some(3) => true,
        Some(4) => stream[0] == 0,
        _ => false,
    };
    if !begins_with_start_code {
        return Err(CodecError::Invalid);
    }
    let mut units = Vec::with_capacity(starts.len());
    for (n, &start) in starts.iter().enumerate() {
        let mut end = starts.get(n + 1).map_or(stream.len(), |next| next - 3);
        while end > start && stream[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            units.push(&stream[start..end]);
        }
    }
    Ok(units)
}

/// Split an Annex B access unit into payloads of at most `max_payload` bytes: NAL units
/// that fit are aggregated into STAP-A packets (or sent alone), larger ones fragmented
/// into FU-A packets.
pub fn packetize(access_unit: &[u8], max_payload: usize) -> Result<Vec<Bytes>, CodecError> {
    if max_payload < 3 {
        return Err(CodecError::PayloadSizeTooSmall);
    }
    let units = nal_units(access_unit)?;
    if units.is_empty() {
        return Err(CodecError::Empty);
    }
    if units.iter().any(|u| u[0] & 0x80 != 0) {
        return Err(CodecError::Invalid);
    }
    let stap_limit = max_payload.min(usize::from(u16::MAX));
    let mut packets = Vec::new();
    let mut group: Vec<&[u8]> = Vec::new();
    let mut group_len = 1;
    for unit in units {
        if unit.len() > max_payload {
            flush_group(&mut group, &mut packets);
            group_len = 1;
            fragment(unit, max_payload, &mut packets);
            continue;
        }
        if group_len + 2 + unit.len() > stap_limit {
            flush_group(&mut group, &mut packets);
            group_len = 1;
        }
        group_len += 2 + unit.len();
        group.push(unit);
    }
    flush_group(&mut group, &mut packets);
    Ok(packets)
}

/// Send the NAL units gathered so far: one alone, several in a STAP-A.
fn flush_group(group: &mut Vec<&[u8]>, packets: &mut Vec<Bytes>) {
    match group.as_slice() {
        [] => {}
        [one] => packets.push(Bytes::copy_from_slice(one)),
        several => {
            // The STAP-A header's F is the OR and NRI the maximum of the units'.
            let f = several.iter().fold(0, |a, u| a | (u[0] & 0x80));
            let nri = several.iter().map(|u| u[0] & 0x60).max().unwrap_or(0);
            let mut p = vec![f | nri | STAP_A];
            for unit in several {
                p.extend_from_slice(&(unit.len() as u16).to_be_bytes());
                p.extend_from_slice(unit);
            }
            packets.push(Bytes::from(p));
        }
    }
    group.clear();
}

/// Fragment one NAL unit into FU-A packets.
fn fragment(unit: &[u8], max_payload: usize, packets: &mut Vec<Bytes>) {
    let header = unit[0];
    let body = &unit[1..];
    let room = max_payload - 2;
    let count = body.len().div_ceil(room);
    for (i, chunk) in body.chunks(room).enumerate() {
        let s = if i == 0 { 0x80 } else { 0 };
        let e = if i + 1 == count { 0x40 } else { 0 };
        let mut p = Vec::with_capacity(2 + chunk.len());
        p.extend_from_slice(&[(header & 0xe0) | FU_A, s | e | nal_type(header)]);
        p.extend_from_slice(chunk);
        packets.push(Bytes::from(p));
    }
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
    fn single_stap_a_and_fu_a_packets() {
        let stap = [STAP_A | 0x60, 0, 2, 0x67, 0xaa, 0, 1, 0x68];
        let fu_start = [FU_A | 0x60, 0x80 | NAL_IDR, 0x88, 0x01];
        let fu_end = [FU_A | 0x60, 0x40 | NAL_IDR, 0x02];
        let (frame, key) = frame_of(&[&stap, &fu_start, &fu_end]).expect("valid in this test");
        assert!(key);
        assert_eq!(
            frame,
            [0, 0, 0, 1, 0x67, 0xaa, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 0x88, 0x01, 0x02]
        );
        assert_eq!(
            frame_of(&[&[0x41, 0x9a]]),
            Ok((vec![0, 0, 0, 1, 0x41, 0x9a], false))
        );
        assert!(starts_frame(&stap) && starts_frame(&fu_start) && !starts_frame(&fu_end));
    }

    #[test]
    fn broken_and_unsupported_packets() {
        let fu_start = [FU_A, 0x80 | NAL_SLICE, 0x88];
        let fu_end = [FU_A, 0x40 | NAL_SLICE, 0x02];
        assert_eq!(frame_of(&[&fu_end]), Err(CodecError::NotFrameStart));
        assert_eq!(frame_of(&[&fu_start]), Err(CodecError::BrokenFragment));
        assert_eq!(
            frame_of(&[&fu_start, &[0x41, 1]]),
            Err(CodecError::BrokenFragment)
        );
        assert_eq!(
            frame_of(&[&fu_start, &fu_start]),
            Err(CodecError::BrokenFragment)
        );
        assert_eq!(
            frame_of(&[&[STAP_A, 0, 5, 0x41]]),
            Err(CodecError::Truncated)
        );
        assert_eq!(frame_of(&[&[STAP_A, 0, 0]]), Err(CodecError::Empty));
        assert_eq!(frame_of(&[&[25, 1]]), Err(CodecError::Unsupported(25)));
        assert_eq!(
            frame_of(&[&[0x80 | NAL_SLICE, 1]]),
            Err(CodecError::Invalid)
        );
        assert_eq!(frame_of(&[&[30]]), Err(CodecError::Invalid));
    }

    #[test]
    fn annex_b_with_three_and_four_byte_start_codes() {
        let stream = [0, 0, 1, 0x67, 1, 0, 0, 0, 0, 1, 0x68, 2, 0, 0, 1, 0x65, 3];
        assert_eq!(
            nal_units(&stream).expect("valid in this test"),
            [&[0x67, 1][..], &[0x68, 2], &[0x65, 3]]
        );
        assert_eq!(nal_units(&[0x65, 0, 0, 1, 0x65]), Err(CodecError::Invalid));
    }

    /// An access unit of NAL units with valid headers and no zero bytes in them (so no
    /// start code emulation), with 4-byte start codes as the depacketizer writes them.
    fn access_unit(units: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for unit in units.iter().filter(|u| !u.is_empty()) {
            out.extend_from_slice(&START_CODE);
            out.push((unit[0] & 0x60) | (unit[0] % 23 + 1));
            out.extend(unit[1..].iter().map(|&b| b.max(1)));
        }
        out
    }

    #[test]
    fn quickcheck_packetize_then_depacketize() {
        fn prop(units: Vec<Vec<u8>>, mtu: u16) -> TestResult {
            let au = access_unit(&units);
            if au.is_empty() {
                return TestResult::discard();
            }
            let mtu = usize::from(mtu % 1500) + 3;
            let Ok(packets) = packetize(&au, mtu) else {
                return TestResult::failed();
            };
            let payloads: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
            let idr = nal_units(&au)
                .unwrap_or_default()
                .iter()
                .any(|u| nal_type(u[0]) == NAL_IDR);
            let ok = packets.iter().all(|p| p.len() <= mtu)
                && frame_of(&payloads) == Ok((au.clone(), idr));
            TestResult::from_bool(ok)
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<Vec<u8>>, u16) -> TestResult);
    }

    #[test]
    fn quickcheck_arbitrary_payloads_never_panic() {
        fn prop(payloads: Vec<Vec<u8>>) -> bool {
            let mut out = Vec::new();
            let ok = depacketize(payloads.iter().map(|p| &p[..]), &mut out).is_ok();
            // Whatever is written is an Annex B stream of the units the payloads carry.
            !ok || nal_units(&out).is_ok_and(|u| !u.is_empty())
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<Vec<u8>>) -> bool);
    }
}
