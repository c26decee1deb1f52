//! ice (work in progress).
