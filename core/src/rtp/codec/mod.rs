//! RTP payload formats of the media codecs: depacketizers that turn the payloads of one
//! frame's RTP packets into the codec's bitstream with a keyframe flag, and packetizers
//! that do the reverse (for senders and for round-trip tests).
//!
//! This layer owns the payload formats only: which packets belong to one frame (same
//! timestamp, marker on the last, none missing) is decided by the caller, usually the
//! [`crate::media::jitter_buffer::JitterBuffer`]. Every depacketizer is a pure function of
//! the payloads; a malformed payload is a typed [`CodecError`], never a panic.
//!
//! | codec | payload format | output | keyframe |
//! |-------|----------------|--------|----------|
//! | VP8 | RFC 7741 descriptor | VP8 frame | P bit clear in the frame tag, start code `9d 01 2a` |
//! | VP9 | RFC 9628 descriptor (flexible and non-flexible) | VP9 frame(s) of one picture | P bit clear on the first packet of spatial layer 0 |
//! | H264 | RFC 6184 single NAL, STAP-A, FU-A | Annex B access unit (4-byte start codes) | an IDR slice (NAL type 5) |
//! | AV1 | AV1 RTP payload (aggregation header, OBU elements) | low-overhead bitstream temporal unit, OBUs with size fields, led by a temporal delimiter | N bit or a sequence header OBU |
//! | Opus | RFC 7587: one packet is one frame | the Opus packet | always |

pub mod av1;
pub mod h264;
pub mod opus;
pub mod vp8;
pub mod vp9;

use bytes::Bytes;

/// Why a frame's payloads (or a frame given to a packetizer) could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// No payloads, or a payload with nothing in it.
    #[error("empty payload")]
    Empty,
    /// A payload ends inside a header or length field.
    #[error("payload truncated")]
    Truncated,
    /// The first packet does not start a frame (VP8 S bit / partition 0, VP9 B bit, a
    /// fragment without its start, an AV1 continuation).
    #[error("the first packet does not start a frame")]
    NotFrameStart,
    /// A fragmented unit (H264 FU-A, AV1 OBU element) is not continued or ended as it
    /// must be.
    #[error("broken fragmentation")]
    BrokenFragment,
    /// A packet type this depacketizer does not support (H264 STAP-B, MTAP, FU-B;
    /// packetization-mode 2 is not negotiated).
    #[error("unsupported packet type {0}")]
    Unsupported(u8),
    /// A value the format forbids (a reserved NAL type, the AV1 forbidden bit, a
    /// length past the payload).
    #[error("invalid payload")]
    Invalid,
    /// A packetizer's payload size leaves no room for data, or one Opus packet is
    /// larger than it.
    #[error("payload size too small")]
    PayloadSizeTooSmall,
    /// The frame grows past [`MAX_FRAME_LEN`].
    #[error("frame too large")]
    FrameTooLarge,
}

/// The largest frame a depacketizer assembles (bytes); more is [`CodecError::FrameTooLarge`].
pub const MAX_FRAME_LEN: usize = 8 << 20;

/// A codec with an RTP payload format this module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// H.264 (RFC 6184, packetization-mode 0 or 1).
    H264,
    /// AV1 (the AOM RTP payload format).
    Av1,
    /// Opus (RFC 7587).
    Opus,
}

impl Codec {
    /// The codec for an SDP `a=rtpmap` encoding name (case-insensitive), if implemented.
    pub fn from_name(name: &str) -> Option<Codec> {
        [
            ("VP8", Codec::Vp8),
            ("VP9", Codec::Vp9),
            ("H264", Codec::H264),
            ("AV1", Codec::Av1),
            ("opus", Codec::Opus),
        ]
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| c)
    }

    /// Whether every RTP packet is a whole frame (audio) rather than frames spanning
    /// packets until the marker bit (video).
    pub fn is_audio(self) -> bool {
        matches!(self, Codec::Opus)
    }

    /// Whether a payload can be the first packet of a frame. A hint for a receiver that
    /// lost the packets before it: `true` for the start of a frame as the format marks
    /// it, `false` for a continuation or a malformed payload.
    pub fn starts_frame(self, payload: &[u8]) -> bool {
        match self {
            Codec::Vp8 => vp8::starts_frame(payload),
            Codec::Vp9 => vp9::starts_frame(payload),
            Codec::H264 => h264::starts_frame(payload),
            Codec::Av1 => av1::starts_frame(payload),
            Codec::Opus => !payload.is_empty(),
        }
    }

    /// Whether a payload is the first packet of a keyframe (every payload, for audio): the
    /// point where a forwarder can start or switch a viewer's stream, or a recorder begin
    /// a file. Judged from this one packet, so a malformed payload is `false`.
    pub fn starts_keyframe(self, payload: &[u8]) -> bool {
        match self {
            Codec::Vp8 => vp8::starts_keyframe(payload),
            Codec::Vp9 => vp9::starts_keyframe(payload),
            Codec::H264 => h264::starts_keyframe(payload),
            Codec::Av1 => av1::starts_keyframe(payload),
            Codec::Opus => !payload.is_empty(),
        }
    }

    /// Assemble one frame from the payloads of its packets in sequence order, appending
    /// the bitstream to `out`; returns whether the frame is a keyframe. On an error
    /// `out` may hold part of the frame.
    pub fn depacketize<'a>(
        self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> Result<bool, CodecError> {
        let payloads = payloads.into_iter();
        match self {
            Codec::Vp8 => vp8::depacketize(payloads, out),
            Codec::Vp9 => vp9::depacketize(payloads, out),
            Codec::H264 => h264::depacketize(payloads, out),
            Codec::Av1 => av1::depacketize(payloads, out),
            Codec::Opus => opus::depacketize(payloads, out),
        }
    }

    /// Split a frame (in the form [`Codec::depacketize`] produces) into RTP payloads of
    /// at most `max_payload` bytes; the marker bit belongs on the last.
    pub fn packetize(self, frame: &[u8], max_payload: usize) -> Result<Vec<Bytes>, CodecError> {
        match self {
            Codec::Vp8 => vp8::packetize(frame, max_payload, 0),
            Codec::Vp9 => vp9::packetize(frame, max_payload, 0),
            Codec::H264 => h264::packetize(frame, max_payload),
            Codec::Av1 => av1::packetize(frame, max_payload),
            Codec::Opus => opus::packetize(frame, max_payload),
        }
    }
}

/// Append `data` to a frame, failing past [`MAX_FRAME_LEN`].
fn append(out: &mut Vec<u8>, data: &[u8]) -> Result<(), CodecError> {
    if out.len().saturating_add(data.len()) > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge);
    }
    out.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod fixture_tests;
