//! Receiver Estimated Maximum Bitrate (REMB, draft-alvestrand-rmcat-remb-03): an RTCP
//! payload-specific feedback message (PT 206, FMT 15) whose FCI starts with "REMB".
//!
//! ```text
//!  0                   1                   2                   3
//! |V=2|P| FMT=15  |   PT=206      |             length            |
//! |                  SSRC of packet sender                        |
//! |                  SSRC of media source (0)                     |
//! |  Unique identifier 'R' 'E' 'M' 'B'                            |
//! |  Num SSRC     | BR Exp    |  BR Mantissa (18 bits)            |
//! |   SSRC feedback (Num SSRC times)                              |
//! ```
//! The bitrate is `mantissa << exp` bits per second. Parsing reads a borrowed view after
//! one length check; writing goes into the caller's buffer (no allocation).

use thiserror::Error;

/// The largest mantissa (18 bits).
const MAX_MANTISSA: u64 = 0x3_FFFF;

/// Why a REMB body did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RembError {
    /// Shorter than its header or its SSRC count says.
    #[error("REMB feedback truncated")]
    Truncated,
    /// The FCI does not start with "REMB".
    #[error("not a REMB feedback")]
    NotRemb,
}

/// A parsed REMB body (what follows the RTCP common header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RembView<'a> {
    /// The SSRC of the packet sender.
    pub sender: u32,
    /// The estimate in bits per second (saturating at `u64::MAX`).
    pub bitrate_bps: u64,
    ssrcs: &'a [u8],
}

impl<'a> RembView<'a> {
    /// Parse the body of a PSFB FMT 15 packet (sender SSRC onwards).
    pub fn parse(body: &'a [u8]) -> Result<RembView<'a>, RembError> {
        let header = body.get(..16).ok_or(RembError::Truncated)?;
        if &header[8..12] != b"REMB" {
            return Err(RembError::NotRemb);
        }
        let count = usize::from(header[12]);
        let exponent = u32::from(header[13] >> 2);
        let mantissa = (u64::from(header[13] & 3) << 16)
            | (u64::from(header[14]) << 8)
            | u64::from(header[15]);
        let ssrcs = body.get(16..16 + 4 * count).ok_or(RembError::Truncated)?;
        Ok(RembView {
            sender: u32::from_be_bytes([header[0], header[1], header[2], header[3]]),
            bitrate_bps: decode_bitrate(exponent, mantissa),
            ssrcs,
        })
    }

    /// The SSRCs the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// How many SSRCs it names.
    pub fn ssrc_count(&self) -> usize {
        self.ssrcs.len() / 4
    }
}

/// `mantissa << exponent`, saturating instead of losing high bits.
fn decode_bitrate(exponent: u32, mantissa: u64) -> u64 {
    if mantissa == 0 {
        return 0;
    }
    if mantissa.leading_zeros() < exponent {
        return u64::MAX;
    }
    mantissa << exponent
}

/// The exponent and 18-bit mantissa carrying `bitrate_bps` (rounded down).
pub fn encode_bitrate(bitrate_bps: u64) -> (u8, u32) {
    let mut mantissa = bitrate_bps;
    let mut exponent = 0u8;
    while mantissa > MAX_MANTISSA {
        mantissa >>= 1;
        exponent += 1;
    }
    (exponent, mantissa as u32)
}

/// The length of a REMB packet naming `ssrc_count` SSRCs.
pub fn remb_len(ssrc_count: usize) -> usize {
    20 + 4 * ssrc_count
}

/// Write a whole REMB RTCP packet (common header included) into `out`; its length, or
/// `None` when `out` is too small or there are more than 255 SSRCs.
pub fn write_remb(sender: u32, bitrate_bps: u64, ssrcs: &[u32], out: &mut [u8]) -> Option<usize> {
    let count = u8::try_from(ssrcs.len()).ok()?;
    let len = remb_len(ssrcs.len());
    let buf = out.get_mut(..len)?;
    let words = u16::try_from(len / 4 - 1).ok()?;
    let (exponent, mantissa) = encode_bitrate(bitrate_bps);
    buf[0] = 0x80 | 15;
    buf[1] = 206;
    buf[2..4].copy_from_slice(&words.to_be_bytes());
    buf[4..8].copy_from_slice(&sender.to_be_bytes());
    buf[8..12].copy_from_slice(&0u32.to_be_bytes());
    buf[12..16].copy_from_slice(b"REMB");
    buf[16] = count;
    buf[17] = (exponent << 2) | ((mantissa >> 16) as u8 & 3);
    buf[18] = (mantissa >> 8) as u8;
    buf[19] = mantissa as u8;
    for (i, ssrc) in ssrcs.iter().enumerate() {
        buf[20 + 4 * i..24 + 4 * i].copy_from_slice(&ssrc.to_be_bytes());
    }
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::QuickCheck;

    #[test]
    fn a_chromium_style_remb_parses() {
        // 1 SSRC, exponent 2, mantissa 0x21234.
        let body = [
            0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 1, 0x0A, 0x12, 0x34, 0, 0, 0, 7,
        ];
        let v = RembView::parse(&body).expect("parses");
        assert_eq!(v.sender, 1);
        assert_eq!(v.bitrate_bps, 0x21234 << 2);
        assert_eq!(v.ssrcs().collect::<Vec<_>>(), vec![7]);
        assert_eq!(RembView::parse(&body[..19]), Err(RembError::Truncated));
        let mut other = body;
        other[8] = b'X';
        assert_eq!(RembView::parse(&other), Err(RembError::NotRemb));
    }

    #[test]
    fn a_huge_exponent_saturates_instead_of_wrapping() {
        let body = [
            0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 0, 0xFF, 0xFF, 0xFF,
        ];
        assert_eq!(
            RembView::parse(&body).expect("parses").bitrate_bps,
            u64::MAX
        );
    }

    #[test]
    fn writing_rounds_down_to_18_bits_and_refuses_what_does_not_fit() {
        let mut out = [0u8; 64];
        let n = write_remb(9, 2_500_000, &[1, 2], &mut out).expect("fits");
        assert_eq!(n, 28);
        assert_eq!(&out[16..20], &[2, 0x12, 0x62, 0x5A]);
        let v = RembView::parse(&out[4..n]).expect("parses");
        assert_eq!(v.bitrate_bps, 2_500_000 >> 4 << 4);
        assert_eq!(
            write_remb(9, 1, &[1; 12], &mut out),
            None,
            "too small a buffer"
        );
        assert_eq!(write_remb(9, 1, &[1; 256], &mut [0u8; 2048]), None);
    }

    #[test]
    fn quickcheck_write_then_parse() {
        fn prop(sender: u32, bitrate: u64, ssrcs: Vec<u32>) -> bool {
            let ssrcs = &ssrcs[..ssrcs.len().min(255)];
            let mut out = vec![0u8; remb_len(ssrcs.len())];
            let Some(n) = write_remb(sender, bitrate, ssrcs, &mut out) else {
                return false;
            };
            let Ok(v) = RembView::parse(&out[4..n]) else {
                return false;
            };
            let (e, m) = encode_bitrate(bitrate);
            // What is carried: the top 18 bits, never more than was given, within 2^-17.
            v.sender == sender
                && v.bitrate_bps == u64::from(m) << e
                && v.bitrate_bps <= bitrate
                && bitrate - v.bitrate_bps <= bitrate >> 17
                && v.ssrcs().eq(ssrcs.iter().copied())
                && crate::rtp::RtcpPacket::parse_one(&out[..n]).is_ok()
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(u32, u64, Vec<u32>) -> bool);
    }
}
