//! JSEP (RFC 9429) offer/answer rules on the SDP model.
