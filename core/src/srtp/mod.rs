//! SRTP and SRTCP (RFC 3711, RFC 7714). (The protection contexts arrive with the secure-media work.)

pub mod profile;

pub use profile::SrtpProfile;
