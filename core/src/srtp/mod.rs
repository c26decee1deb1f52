//! SRTP and SRTCP (RFC 3711, RFC 7714). `context` protects and unprotects packets in place; `profile` names the profiles.

pub mod context;
pub mod profile;

pub use context::{SrtpContext, SrtpError, SrtpStats};
pub use profile::SrtpProfile;
