//! SDP text to model. (Being written: see the SDP work.)

use super::model::Sdp;

/// An SDP parse error, naming the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {kind}")]
pub struct SdpError {
    /// 1-based line number (0 for whole-document problems).
    pub line: usize,
    /// What is wrong.
    pub kind: SdpErrorKind,
}

/// What is wrong with an SDP line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpErrorKind {
    /// Not implemented yet.
    #[error("parser not implemented")]
    Unimplemented,
}

impl Sdp {
    /// Parse SDP text (CRLF or LF line endings).
    pub fn parse(_text: &str) -> Result<Sdp, SdpError> {
        Err(SdpError {
            line: 0,
            kind: SdpErrorKind::Unimplemented,
        })
    }
}
