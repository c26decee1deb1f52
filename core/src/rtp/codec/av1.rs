//! AV1 over RTP (the AOM "RTP Payload Format For AV1", v1.0): the aggregation header, OBU
//! elements (length-prefixed or the last without a length, fragmented across packets
//! with Z and Y), frame assembly into a low-overhead bitstream temporal unit, and a
//! packetizer.
//!
//! ```text
//!  aggregation header |Z|Y| W |N|-|-|-|   Z: the first element continues an OBU
//!                                         Y: the last element continues in the next packet
//!                                         W: elements (0: each has a LEB128 length;
//!                                            1-3: all but the last have one)
//!                                         N: first packet of a coded video sequence
//!  OBU header         |F| type  |X|S|R|   X: extension byte follows  S: size field follows
//! ```
//!
//! In RTP the OBUs usually have no size field; the assembled temporal unit re-emits each
//! with `obu_has_size_field` set, led by a temporal delimiter OBU, as the AV1 bitstream's
//! low-overhead format (and IVF/OBU files) want. Temporal delimiters, tile lists and
//! padding OBUs in the payload are dropped, as the payload format asks of senders. A
//! keyframe is a temporal unit whose first packet has N set or that holds a sequence
//! header OBU.

use bytes::Bytes;

use super::{append, CodecError, MAX_FRAME_LEN};

/// OBU type: sequence header.
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type: temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
/// OBU type: frame header.
pub const OBU_FRAME_HEADER: u8 = 3;
/// OBU type: tile group.
pub const OBU_TILE_GROUP: u8 = 4;
/// OBU type: frame (header and tile group).
pub const OBU_FRAME: u8 = 6;
/// OBU type: tile list.
pub const OBU_TILE_LIST: u8 = 8;
/// OBU type: padding.
pub const OBU_PADDING: u8 = 15;
/// The temporal delimiter OBU (with an empty size field) that leads every temporal unit.
pub const TEMPORAL_DELIMITER: [u8; 2] = [OBU_TEMPORAL_DELIMITER << 3 | 0x02, 0];

/// The type of an OBU header byte.
pub fn obu_type(header: u8) -> u8 {
    (header >> 3) & 0x0f
}

/// Read a LEB128 value (at most 8 bytes, at most `u32::MAX`); returns it and its length.
pub fn read_leb128(data: &[u8]) -> Result<(usize, usize), CodecError> {
    let mut value: u64 = 0;
    for i in 0..8 {
        let b = *data.get(i).ok_or(CodecError::Truncated)?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let value = u32::try_from(value).map_err(|_| CodecError::Invalid)?;
            return Ok((value as usize, i + 1));
        }
    }
    Err(CodecError::Invalid)
}

/// Append `value` as LEB128.
pub fn write_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let b = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The length of `value` as LEB128.
fn leb128_len(value: usize) -> usize {
    (usize::BITS - value.leading_zeros()).max(1).div_ceil(7) as usize
}

/// Whether a payload is the first packet of a keyframe: the aggregation header's N bit
/// (the first packet of a coded video sequence).
pub fn starts_keyframe(payload: &[u8]) -> bool {
    payload
        .first()
        .is_some_and(|&aggregation| aggregation & 0x88 == 0x08 && payload.len() > 1)
}

/// Whether a payload can be the first packet of a temporal unit: the first element
/// begins an OBU (Z clear), and N is set or that OBU is a sequence header, temporal
/// delimiter, frame header or frame.
pub fn starts_frame(payload: &[u8]) -> bool {
    let Some(&aggregation) = payload.first() else {
        return false;
    };
    if aggregation & 0x80 != 0 {
        return false;
    }
    if aggregation & 0x08 != 0 {
        return payload.len() > 1;
    }
    let with_length = (aggregation >> 4) & 0x03 != 1;
    let header_at = if with_length {
        match read_leb128(&payload[1..]) {
            Ok((_, n)) => 1 + n,
            Err(_) => return false,
        }
    } else {
        1
    };
    payload.get(header_at).is_some_and(|&h| {
        matches!(
            obu_type(h),
            OBU_SEQUENCE_HEADER | OBU_TEMPORAL_DELIMITER | OBU_FRAME_HEADER | OBU_FRAME
        )
    })
}

/// Re-emit one whole OBU with a size field; returns whether it is a sequence header.
fn emit_obu(out: &mut Vec<u8>, obu: &[u8]) -> Result<bool, CodecError> {
    let header = *obu.first().ok_or(CodecError::Empty)?;
    if header & 0x80 != 0 {
        return Err(CodecError::Invalid);
    }
    let header_len = if header & 0x04 != 0 { 2 } else { 1 };
    let mut payload = obu.get(header_len..).ok_or(CodecError::Truncated)?;
    if header & 0x02 != 0 {
        let (size, n) = read_leb128(payload)?;
        payload = payload.get(n..n + size).ok_or(CodecError::Truncated)?;
    }
    let kind = obu_type(header);
    if matches!(kind, OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING) {
        return Ok(false);
    }
    if out.len() + header_len + 8 + payload.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge);
    }
    out.push(header | 0x02);
    out.extend_from_slice(&obu[1..header_len]);
    write_leb128(out, payload.len());
    append(out, payload)?;
    Ok(kind == OBU_SEQUENCE_HEADER)
}

/// Assemble one temporal unit from its payloads in order; returns whether it is a
/// keyframe.
pub fn depacketize<'a>(
    payloads: impl Iterator<Item = &'a [u8]>,
    out: &mut Vec<u8>,
) -> Result<bool, CodecError> {
    append(out, &TEMPORAL_DELIMITER)?;
    let mut keyframe = false;
    // An OBU continued from the previous packet.
    let mut pending: Option<Vec<u8>> = None;
    let mut any = false;
    for (i, payload) in payloads.enumerate() {
        let (&aggregation, mut rest) = payload.split_first().ok_or(CodecError::Empty)?;
        let (z, y) = (aggregation & 0x80 != 0, aggregation & 0x40 != 0);
        let w = usize::from((aggregation >> 4) & 0x03);
        if i == 0 {
            if z {
                return Err(CodecError::NotFrameStart);
            }
            keyframe = aggregation & 0x08 != 0;
        }
        if z != pending.is_some() {
            return Err(CodecError::BrokenFragment);
        }
        if rest.is_empty() {
            return Err(CodecError::Truncated);
        }
        let mut element = 0;
        while !rest.is_empty() {
            element += 1;
            let len = if w == 0 || element < w {
                let (len, n) = read_leb128(rest)?;
                rest = &rest[n..];
                len
            } else {
                rest.len()
            };
            let data = rest.get(..len).ok_or(CodecError::Truncated)?;
            rest = &rest[len..];
            if w != 0 && element == w && !rest.is_empty() {
                return Err(CodecError::Invalid);
            }
            let continues = y && rest.is_empty();
            let mut obu = match pending.take() {
                Some(mut p) if element == 1 => {
                    if p.len() + data.len() > MAX_FRAME_LEN {
                        return Err(CodecError::FrameTooLarge);
                    }
                    p.extend_from_slice(data);
                    p
                }
                _ => data.to_vec(),
            };
            if continues {
                pending = Some(std::mem::take(&mut obu));
            } else {
                keyframe |= emit_obu(out, &obu)?;
            }
        }
        any = true;
    }
    if pending.is_some() {
        return Err(CodecError::BrokenFragment);
    }
    if !any {
        return Err(CodecError::Empty);
    }
    Ok(keyframe)
}

/// The OBUs of a low-overhead temporal unit (each with a size field), as RTP carries
/// them: without size fields, and without temporal delimiters, tile lists and padding.
fn rtp_obus(temporal_unit: &[u8]) -> Result<(Vec<Vec<u8>>, bool), CodecError> {
    let mut obus = Vec::new();
    let mut sequence_header = false;
    let mut rest = temporal_unit;
    while let Some(&header) = rest.first() {
        let header_len = if header & 0x04 != 0 { 2 } else { 1 };
        if header & 0x80 != 0 || header & 0x02 == 0 {
            return Err(CodecError::Invalid);
        }
        let after = rest.get(header_len..).ok_or(CodecError::Truncated)?;
        let (size, n) = read_leb128(after)?;
        let payload = after.get(n..n + size).ok_or(CodecError::Truncated)?;
        let kind = obu_type(header);
        if !matches!(kind, OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING) {
            sequence_header |= kind == OBU_SEQUENCE_HEADER;
            let mut obu = Vec::with_capacity(header_len + payload.len());
            obu.push(header & !0x02);
            obu.extend_from_slice(&rest[1..header_len]);
            obu.extend_from_slice(payload);
            obus.push(obu);
        }
        rest = &after[n + size..];
    }
    Ok((obus, sequence_header))
}

/// Split a low-overhead temporal unit (OBUs with size fields) into payloads of at most
/// `max_payload` bytes: OBU elements with LEB128 lengths (W = 0), fragmented across
/// packets with Y and Z; N is set on the first packet when the unit holds a sequence
/// header.
pub fn packetize(temporal_unit: &[u8], max_payload: usize) -> Result<Vec<Bytes>, CodecError> {
    if max_payload < 3 {
        return Err(CodecError::PayloadSizeTooSmall);
    }
    let (obus, sequence_header) = rtp_obus(temporal_unit)?;
    if obus.is_empty() {
        return Err(CodecError::Empty);
    }
    let mut packets = Vec::new();
    let first_header = if sequence_header { 0x08 } else { 0 };
    let mut packet = vec![first_header];
    for obu in &obus {
        let mut rest = &obu[..];
        while !rest.is_empty() {
            let room = max_payload - packet.len();
            let take = rest
                .len()
                .min(room.saturating_sub(leb128_len(rest.len().min(room))));
            if take == 0 {
                // No room for a length and a byte: this packet is done.
                packets.push(Bytes::from(std::mem::replace(&mut packet, vec![0])));
                continue;
            }
            write_leb128(&mut packet, take);
            packet.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if !rest.is_empty() {
                // Y here, Z on the next packet.
                packet[0] |= 0x40;
                packets.push(Bytes::from(std::mem::replace(&mut packet, vec![0x80])));
            }
        }
    }
    if packet.len() > 1 {
        packets.push(Bytes::from(packet));
    }
    Ok(packets)
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
    fn leb128_round_trip_and_limits() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u32::MAX as usize] {
            let mut b = Vec::new();
            write_leb128(&mut b, v);
            assert_eq!(b.len(), leb128_len(v));
            assert_eq!(read_leb128(&b), Ok((v, b.len())));
        }
        assert_eq!(read_leb128(&[0x80; 8]), Err(CodecError::Invalid));
        assert_eq!(read_leb128(&[0x80]), Err(CodecError::Truncated));
    }

    #[test]
    fn counted_elements_with_fragment_across_packets() {
        // W = 2, N: a sequence header with a length, then a frame OBU without one that
        // continues (Y) into the next packet (Z, W = 1).
        let first = [0x68, 2, 0x08, 0xaa, 0x30, 0x01];
        let second = [0x90, 0x02, 0x03];
        let (frame, key) = frame_of(&[&first, &second]).expect("valid in this test");
        assert!(key);
        assert_eq!(
            frame,
            [0x12, 0, 0x0a, 1, 0xaa, 0x32, 3, 0x01, 0x02, 0x03],
            "temporal delimiter, then each OBU with a size field"
        );
        assert!(starts_frame(&first) && !starts_frame(&second));
        assert_eq!(frame_of(&[&second]), Err(CodecError::NotFrameStart));
        assert_eq!(frame_of(&[&first]), Err(CodecError::BrokenFragment));
        assert_eq!(frame_of(&[&[0x10, 0x80 | 0x30]]), Err(CodecError::Invalid));
    }

    #[test]
    fn size_fields_in_rtp_are_honoured_and_delimiters_dropped() {
        // W = 0: a temporal delimiter element, a frame OBU that has its own size field
        // (1 byte of payload, then a byte past it that is not part of the OBU).
        let p = [0x00, 2, 0x12, 0x00, 4, 0x32, 1, 0x07, 0xee];
        assert_eq!(frame_of(&[&p]), Ok((vec![0x12, 0, 0x32, 1, 0x07], false)));
    }

    /// A temporal unit as the depacketizer writes it, from (type, extension, payload).
    fn temporal_unit(obus: &[(u8, Option<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut out = TEMPORAL_DELIMITER.to_vec();
        for (kind, ext, payload) in obus {
            let kind = match kind % 16 {
                OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING => OBU_FRAME,
                k => k,
            };
            out.push(kind << 3 | u8::from(ext.is_some()) << 2 | 0x02);
            out.extend(ext);
            write_leb128(&mut out, payload.len());
            out.extend_from_slice(payload);
        }
        out
    }

    #[test]
    fn quickcheck_packetize_then_depacketize() {
        fn prop(obus: Vec<(u8, Option<u8>, Vec<u8>)>, mtu: u16) -> TestResult {
            if obus.is_empty() {
                return TestResult::discard();
            }
            let tu = temporal_unit(&obus);
            let key = obus.iter().any(|o| o.0 % 16 == OBU_SEQUENCE_HEADER);
            let mtu = usize::from(mtu % 1500) + 3;
            let Ok(packets) = packetize(&tu, mtu) else {
                return TestResult::failed();
            };
            let payloads: Vec<&[u8]> = packets.iter().map(|p| &p[..]).collect();
            let ok = packets.iter().all(|p| p.len() <= mtu)
                && frame_of(&payloads) == Ok((tu.clone(), key));
            TestResult::from_bool(ok)
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<(u8, Option<u8>, Vec<u8>)>, u16) -> TestResult);
    }

    #[test]
    fn quickcheck_arbitrary_payloads_never_panic() {
        fn prop(payloads: Vec<Vec<u8>>) -> bool {
            let mut out = Vec::new();
            let ok = depacketize(payloads.iter().map(|p| &p[..]), &mut out).is_ok();
            // Whatever is written parses back as OBUs with size fields.
            !ok || rtp_obus(&out).is_ok()
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(Vec<Vec<u8>>) -> bool);
    }
}
