//! RTP and RTCP wire formats (being written).
