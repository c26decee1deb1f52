//! stun (work in progress).
