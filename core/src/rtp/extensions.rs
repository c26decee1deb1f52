//! Typed RTP header extension values (RFC 8285 elements) and the map from negotiated ids
//! to kinds. Values parse from the element bytes without panicking; unknown extensions are
//! left to the caller as raw bytes.

/// The extensions the core knows by URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExtensionKind {
    /// `urn:ietf:params:rtp-hdrext:sdes:mid`.
    Mid,
    /// `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id`.
    Rid,
    /// `urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id`.
    RepairedRid,
    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time`.
    AbsSendTime,
    /// `http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01`.
    TransportCc,
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (RFC 6464).
    AudioLevel,
    /// `urn:ietf:params:rtp-hdrext:toffset` (RFC 5450).
    TransmissionOffset,
    /// `urn:3gpp:video-orientation`.
    VideoOrientation,
    /// `http://www.webrtc.org/experiments/rtp-hdrext/playout-delay`.
    PlayoutDelay,
}

impl ExtensionKind {
    /// The kind of a negotiated URI.
    pub fn from_uri(uri: &str) -> Option<ExtensionKind> {
        Some(match uri {
            "urn:ietf:params:rtp-hdrext:sdes:mid" => ExtensionKind::Mid,
            "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id" => ExtensionKind::Rid,
            "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id" => ExtensionKind::RepairedRid,
            "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time" => {
                ExtensionKind::AbsSendTime
            }
            "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01" => {
                ExtensionKind::TransportCc
            }
            "urn:ietf:params:rtp-hdrext:ssrc-audio-level" => ExtensionKind::AudioLevel,
            "urn:ietf:params:rtp-hdrext:toffset" => ExtensionKind::TransmissionOffset,
            "urn:3gpp:video-orientation" => ExtensionKind::VideoOrientation,
            "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay" => {
                ExtensionKind::PlayoutDelay
            }
            _ => return None,
        })
    }

    /// The URI.
    pub fn uri(self) -> &'static str {
        match self {
            ExtensionKind::Mid => "urn:ietf:params:rtp-hdrext:sdes:mid",
            ExtensionKind::Rid => "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            ExtensionKind::RepairedRid => "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            ExtensionKind::AbsSendTime => {
                "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
            }
            ExtensionKind::TransportCc => {
                "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
            }
            ExtensionKind::AudioLevel => "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            ExtensionKind::TransmissionOffset => "urn:ietf:params:rtp-hdrext:toffset",
            ExtensionKind::VideoOrientation => "urn:3gpp:video-orientation",
            ExtensionKind::PlayoutDelay => {
                "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay"
            }
        }
    }
}

/// Negotiated ids to kinds, O(1) by id (one-byte ids 1..=14, two-byte up to 255).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionMap {
    by_id: Vec<Option<ExtensionKind>>,
}

impl ExtensionMap {
    /// From negotiated `(id, uri)` pairs.
    pub fn new(negotiated: &[(u16, String)]) -> ExtensionMap {
        let mut by_id = vec![None; 256];
        for (id, uri) in negotiated {
            if let (Some(slot), Some(kind)) = (
                by_id.get_mut(usize::from(*id)),
                ExtensionKind::from_uri(uri),
            ) {
                *slot = Some(kind);
            }
        }
        ExtensionMap { by_id }
    }

    /// The kind of an id.
    pub fn kind(&self, id: u8) -> Option<ExtensionKind> {
        self.by_id.get(usize::from(id)).copied().flatten()
    }

    /// The id of a kind.
    pub fn id(&self, kind: ExtensionKind) -> Option<u8> {
        self.by_id
            .iter()
            .position(|k| *k == Some(kind))
            .and_then(|i| u8::try_from(i).ok())
    }
}

/// A typed extension value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtensionValue<'a> {
    /// mid, rid or repaired-rid text.
    Text(&'a str),
    /// abs-send-time: 24-bit 6.18 fixed-point seconds.
    AbsSendTime(u32),
    /// Transport-wide sequence number.
    TransportCc(u16),
    /// Audio level: voice activity flag and level in -dBov (0..=127).
    AudioLevel {
        /// V flag.
        voice: bool,
        /// Level, 0 (loudest) to 127.
        level: u8,
    },
    /// Transmission time offset (24-bit signed).
    TransmissionOffset(i32),
    /// Coordination of video orientation byte (C, F, R1, R0).
    VideoOrientation(u8),
    /// Playout delay min and max, in 10 ms units (12 bits each).
    PlayoutDelay {
        /// Minimum.
        min: u16,
        /// Maximum.
        max: u16,
    },
}

/// Interpret one element's bytes as `kind`; `None` when the length does not fit.
pub fn parse_extension(kind: ExtensionKind, v: &[u8]) -> Option<ExtensionValue<'_>> {
    Some(match kind {
        ExtensionKind::Mid | ExtensionKind::Rid | ExtensionKind::RepairedRid => {
            ExtensionValue::Text(std::str::from_utf8(v).ok()?)
        }
        ExtensionKind::AbsSendTime => match v {
            [a, b, c] => ExtensionValue::AbsSendTime(u32::from_be_bytes([0, *a, *b, *c])),
            _ => return None,
        },
        ExtensionKind::TransportCc => match v {
            [a, b] => ExtensionValue::TransportCc(u16::from_be_bytes([*a, *b])),
            _ => return None,
        },
        ExtensionKind::AudioLevel => match v {
            [b, ..] => ExtensionValue::AudioLevel {
                voice: b & 0x80 != 0,
                level: b & 0x7F,
            },
            _ => return None,
        },
        ExtensionKind::TransmissionOffset => match v {
            [a, b, c] => {
                ExtensionValue::TransmissionOffset((i32::from_be_bytes([*a, *b, *c, 0])) >> 8)
            }
            _ => return None,
        },
        ExtensionKind::VideoOrientation => match v {
            [b, ..] => ExtensionValue::VideoOrientation(*b),
            _ => return None,
        },
        ExtensionKind::PlayoutDelay => match v {
            [a, b, c] => ExtensionValue::PlayoutDelay {
                min: (u16::from(*a) << 4) | u16::from(b >> 4),
                max: (u16::from(b & 0x0F) << 8) | u16::from(*c),
            },
            _ => return None,
        },
    })
}

/// Write a typed value into `out`; returns its length.
pub fn write_extension(value: &ExtensionValue<'_>, out: &mut [u8]) -> Option<usize> {
    let bytes: ([u8; 16], usize) = match value {
        ExtensionValue::Text(t) => {
            let mut b = [0u8; 16];
            let src = t.as_bytes();
            if src.is_empty() || src.len() > 16 {
                return None;
            }
            b[..src.len()].copy_from_slice(src);
            (b, src.len())
        }
        ExtensionValue::AbsSendTime(v) => {
            let x = v.to_be_bytes();
            let mut b = [0u8; 16];
            b[..3].copy_from_slice(&x[1..]);
            (b, 3)
        }
        ExtensionValue::TransportCc(v) => {
            let mut b = [0u8; 16];
            b[..2].copy_from_slice(&v.to_be_bytes());
            (b, 2)
        }
        ExtensionValue::AudioLevel { voice, level } => {
            let mut b = [0u8; 16];
            b[0] = (u8::from(*voice) << 7) | (level & 0x7F);
            (b, 1)
        }
        ExtensionValue::TransmissionOffset(v) => {
            let x = (v << 8).to_be_bytes();
            let mut b = [0u8; 16];
            b[..3].copy_from_slice(&x[..3]);
            (b, 3)
        }
        ExtensionValue::VideoOrientation(v) => {
            let mut b = [0u8; 16];
            b[0] = *v;
            (b, 1)
        }
        ExtensionValue::PlayoutDelay { min, max } => {
            let mut b = [0u8; 16];
            b[0] = (min >> 4) as u8;
            b[1] = (((min & 0x0F) as u8) << 4) | ((max >> 8) as u8 & 0x0F);
            b[2] = *max as u8;
            (b, 3)
        }
    };
    let dst = out.get_mut(..bytes.1)?;
    dst.copy_from_slice(&bytes.0[..bytes.1]);
    Some(bytes.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    #[test]
    fn quickcheck_values_round_trip() {
        fn prop(which: u8, a: u32, flag: bool) -> TestResult {
            let v = match which % 7 {
                0 => ExtensionValue::AbsSendTime(a & 0xFF_FFFF),
                1 => ExtensionValue::TransportCc(a as u16),
                2 => ExtensionValue::AudioLevel {
                    voice: flag,
                    level: (a & 0x7F) as u8,
                },
                3 => ExtensionValue::TransmissionOffset(((a as i32) << 8) >> 8),
                4 => ExtensionValue::VideoOrientation(a as u8),
                5 => ExtensionValue::PlayoutDelay {
                    min: (a & 0xFFF) as u16,
                    max: ((a >> 12) & 0xFFF) as u16,
                },
                _ => ExtensionValue::Text("q"),
            };
            let kind = match v {
                ExtensionValue::AbsSendTime(_) => ExtensionKind::AbsSendTime,
                ExtensionValue::TransportCc(_) => ExtensionKind::TransportCc,
                ExtensionValue::AudioLevel { .. } => ExtensionKind::AudioLevel,
                ExtensionValue::TransmissionOffset(_) => ExtensionKind::TransmissionOffset,
                ExtensionValue::VideoOrientation(_) => ExtensionKind::VideoOrientation,
                ExtensionValue::PlayoutDelay { .. } => ExtensionKind::PlayoutDelay,
                ExtensionValue::Text(_) => ExtensionKind::Rid,
            };
            let mut buf = [0u8; 16];
            let Some(n) = write_extension(&v, &mut buf) else {
                return TestResult::failed();
            };
            TestResult::from_bool(parse_extension(kind, &buf[..n]) == Some(v))
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(u8, u32, bool) -> TestResult);
    }

    #[test]
    fn map_and_fixtures() {
        let map = ExtensionMap::new(&[
            (3, ExtensionKind::TransportCc.uri().to_string()),
            (1, ExtensionKind::AudioLevel.uri().into()),
            (9, "urn:x".into()),
        ]);
        assert_eq!(map.kind(3), Some(ExtensionKind::TransportCc));
        assert_eq!(map.kind(9), None);
        assert_eq!(map.id(ExtensionKind::AudioLevel), Some(1));
        assert_eq!(
            parse_extension(ExtensionKind::AudioLevel, &[0x9E]),
            Some(ExtensionValue::AudioLevel {
                voice: true,
                level: 30
            })
        );
        assert_eq!(
            parse_extension(ExtensionKind::TransmissionOffset, &[0xFF, 0xFF, 0xFE]),
            Some(ExtensionValue::TransmissionOffset(-2))
        );
        assert_eq!(parse_extension(ExtensionKind::AbsSendTime, &[1, 2]), None);
    }
}
