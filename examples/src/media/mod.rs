//! Codecs and containers of the file examples: VP8 over RTP (RFC 7741), IVF files, and
//! Ogg Opus files (RFC 3533, RFC 7845). Nothing here trusts its input: malformed
//! packets and files are typed errors.

pub mod ivf;
pub mod ogg;
pub mod vp8;
