//! The PeerConnection's self-signed ECDSA P-256 certificate and its SDP fingerprint.

use std::fmt;

/// Errors making or loading a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// Key generation or self-signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A DTLS certificate with its private key (PKCS#8 DER) and its SHA-256 fingerprint.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    key_pkcs8: Vec<u8>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Generate a fresh self-signed ECDSA P-256 certificate (key from ring's SystemRandom).
    pub fn generate() -> Result<Certificate, CertificateError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec!["sansrtc".to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sansrtc");
        let cert = params.self_signed(&key)?;
        let der = cert.der().to_vec();
        Ok(Certificate {
            fingerprint: Fingerprint::sha256_of(&der),
            der,
            key_pkcs8: key.serialize_der(),
        })
    }

    /// The certificate in DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The private key, PKCS#8 DER.
    pub fn key_pkcs8(&self) -> &[u8] {
        &self.key_pkcs8
    }

    /// The SHA-256 fingerprint that goes into `a=fingerprint`.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
}

/// A certificate fingerprint as in `a=fingerprint:sha-256 AB:CD:...` (RFC 8122).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The hash function name, lower case (`sha-256`).
    pub algorithm: String,
    /// The digest bytes.
    pub value: Vec<u8>,
}

impl Fingerprint {
    /// The SHA-256 fingerprint of a DER certificate.
    pub fn sha256_of(der: &[u8]) -> Fingerprint {
        let d = ring::digest::digest(&ring::digest::SHA256, der);
        Fingerprint {
            algorithm: "sha-256".to_string(),
            value: d.as_ref().to_vec(),
        }
    }
}

impl fmt::Display for Fingerprint {
    /// Formats as `sha-256 AB:CD:...`, the value of `a=fingerprint`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.algorithm)?;
        for (i, b) in self.value.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_p256_with_sha256_fingerprint() {
        let c = Certificate::generate().expect("generate");
        assert_eq!(c.fingerprint().value.len(), 32);
        let s = c.fingerprint().to_string();
        assert!(s.starts_with("sha-256 "));
        assert_eq!(s.len(), "sha-256 ".len() + 32 * 3 - 1);
        assert_eq!(c.fingerprint(), &Fingerprint::sha256_of(c.der()));
        // The key must load in ring as a P-256 ECDSA signing key.
        let rng = ring::rand::SystemRandom::new();
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            c.key_pkcs8(),
            &rng,
        )
        .expect("p256 key");
        let other = Certificate::generate().expect("generate");
        assert_ne!(c.fingerprint(), other.fingerprint());
    }
}
