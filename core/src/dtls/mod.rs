//! DTLS. For now only the certificate and its fingerprint (the handshake arrives with
//! the secure-media work).

pub mod cert;
