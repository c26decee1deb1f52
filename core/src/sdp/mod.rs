//! sdp (work in progress).
