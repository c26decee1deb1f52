//! SDP: the typed model, its parser and writer, the browser JSON forms, and the JSEP
//! offer/answer rules (which work on the model, never on text).

pub mod jsep;
pub mod json;
pub mod model;
pub mod parse;
pub mod write;

pub use json::{IceCandidateInit, SdpType, SessionDescription};
pub use model::*;
pub use parse::{SdpError, SdpErrorKind};
