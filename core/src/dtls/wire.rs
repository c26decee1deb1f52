//! DTLS 1.2 wire formats (RFC 6347, RFC 5246, RFC 8422, RFC 5764, RFC 7627): records,
//! handshake headers and the handshake messages WebRTC uses. Parsing checks lengths before
//! every read and never panics; writing appends to a caller's vector.
//!
//! ```text
//! record:    type(1) version(2) epoch(2) sequence(6) length(2) fragment
//! handshake: msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3) body
//! ```

/// DTLS 1.2 version on the wire.
pub const DTLS_1_2: u16 = 0xFEFD;
/// DTLS 1.0 version (initial ClientHello records, HelloVerifyRequest).
pub const DTLS_1_0: u16 = 0xFEFF;
/// Record header size.
pub const RECORD_HEADER_LEN: usize = 13;
/// Handshake header size.
pub const HANDSHAKE_HEADER_LEN: usize = 12;
/// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.
pub const CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256: u16 = 0xC02B;
/// Named group x25519.
pub const GROUP_X25519: u16 = 29;
/// Named group secp256r1.
pub const GROUP_P256: u16 = 23;
/// ecdsa_secp256r1_sha256.
pub const SIG_ECDSA_P256_SHA256: u16 = 0x0403;

/// Record content types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// change_cipher_spec (20).
    ChangeCipherSpec,
    /// alert (21).
    Alert,
    /// handshake (22).
    Handshake,
    /// application_data (23).
    ApplicationData,
}

impl ContentType {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<ContentType> {
        Some(match v {
            20 => ContentType::ChangeCipherSpec,
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            _ => return None,
        })
    }
}

/// A wire format error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its header or declared length.
    #[error("truncated DTLS data")]
    Truncated,
    /// A field has a value the grammar forbids.
    #[error("invalid DTLS field: {0}")]
    Invalid(&'static str),
}

/// A cursor over bytes with checked reads.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Take `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Big-endian u24.
    pub fn u24(&mut self) -> Result<u32, WireError> {
        let b = self.take(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// Big-endian u48.
    pub fn u48(&mut self) -> Result<u64, WireError> {
        let b = self.take(6)?;
        Ok(u64::from_be_bytes([
            0, 0, b[0], b[1], b[2], b[3], b[4], b[5],
        ]))
    }

    /// A vector with a one-byte length prefix.
    pub fn vec8(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    /// A vector with a two-byte length prefix.
    pub fn vec16(&mut self) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    /// A vector with a three-byte length prefix.
    pub fn vec24(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u24()? as usize;
        self.take(n)
    }

    /// The rest.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        s
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, v: usize) {
    let b = (v as u32).to_be_bytes();
    out.extend_from_slice(&b[1..]);
}

fn put_vec8(out: &mut Vec<u8>, v: &[u8]) {
    out.push(v.len().min(255) as u8);
    out.extend_from_slice(v.get(..v.len().min(255)).unwrap_or_default());
}

fn put_vec16(out: &mut Vec<u8>, v: &[u8]) {
    put_u16(out, v.len().min(65535) as u16);
    out.extend_from_slice(v.get(..v.len().min(65535)).unwrap_or_default());
}

/// A record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Content type.
    pub content_type: ContentType,
    /// Version.
    pub version: u16,
    /// Epoch.
    pub epoch: u16,
    /// 48-bit sequence number.
    pub sequence: u64,
    /// Fragment length.
    pub length: u16,
}

impl RecordHeader {
    /// Parse one record from the front of `buf`: its header and fragment, and the rest.
    pub fn parse(buf: &[u8]) -> Result<(RecordHeader, &[u8], &[u8]), WireError> {
        let mut r = Reader::new(buf);
        let content_type =
            ContentType::from_u8(r.u8()?).ok_or(WireError::Invalid("content type"))?;
        let version = r.u16()?;
        if version >> 8 != 0xFE {
            return Err(WireError::Invalid("version"));
        }
        let epoch = r.u16()?;
        let sequence = r.u48()?;
        let length = r.u16()?;
        let fragment = r.take(usize::from(length))?;
        let rest = r.rest();
        Ok((
            RecordHeader {
                content_type,
                version,
                epoch,
                sequence,
                length,
            },
            fragment,
            rest,
        ))
    }

    /// Append the 13-byte header.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.content_type.to_u8());
        put_u16(out, self.version);
        put_u16(out, self.epoch);
        out.extend_from_slice(&self.sequence.to_be_bytes()[2..]);
        put_u16(out, self.length);
    }
}

/// Handshake message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeType {
    /// client_hello (1).
    ClientHello,
    /// server_hello (2).
    ServerHello,
    /// hello_verify_request (3).
    HelloVerifyRequest,
    /// certificate (11).
    Certificate,
    /// server_key_exchange (12).
    ServerKeyExchange,
    /// certificate_request (13).
    CertificateRequest,
    /// server_hello_done (14).
    ServerHelloDone,
    /// certificate_verify (15).
    CertificateVerify,
    /// client_key_exchange (16).
    ClientKeyExchange,
    /// finished (20).
    Finished,
}

impl HandshakeType {
    /// The wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            HandshakeType::ClientHello => 1,
            HandshakeType::ServerHello => 2,
            HandshakeType::HelloVerifyRequest => 3,
            HandshakeType::Certificate => 11,
            HandshakeType::ServerKeyExchange => 12,
            HandshakeType::CertificateRequest => 13,
            HandshakeType::ServerHelloDone => 14,
            HandshakeType::CertificateVerify => 15,
            HandshakeType::ClientKeyExchange => 16,
            HandshakeType::Finished => 20,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Option<HandshakeType> {
        Some(match v {
            1 => HandshakeType::ClientHello,
            2 => HandshakeType::ServerHello,
            3 => HandshakeType::HelloVerifyRequest,
            11 => HandshakeType::Certificate,
            12 => HandshakeType::ServerKeyExchange,
            13 => HandshakeType::CertificateRequest,
            14 => HandshakeType::ServerHelloDone,
            15 => HandshakeType::CertificateVerify,
            16 => HandshakeType::ClientKeyExchange,
            20 => HandshakeType::Finished,
            _ => return None,
        })
    }
}

/// A handshake fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeHeader {
    /// Message type (raw, so unknown types can be skipped).
    pub msg_type: u8,
    /// Total message length.
    pub length: u32,
    /// Message sequence number.
    pub message_seq: u16,
    /// Offset of this fragment.
    pub fragment_offset: u32,
    /// Length of this fragment.
    pub fragment_length: u32,
}

impl HandshakeHeader {
    /// Parse one fragment from the front of a handshake record's plaintext.
    pub fn parse(buf: &[u8]) -> Result<(HandshakeHeader, &[u8], &[u8]), WireError> {
        let mut r = Reader::new(buf);
        let h = HandshakeHeader {
            msg_type: r.u8()?,
            length: r.u24()?,
            message_seq: r.u16()?,
            fragment_offset: r.u24()?,
            fragment_length: r.u24()?,
        };
        if h.fragment_offset
            .checked_add(h.fragment_length)
            .is_none_or(|end| end > h.length)
        {
            return Err(WireError::Invalid("fragment range"));
        }
        let body = r.take(h.fragment_length as usize)?;
        Ok((h, body, r.rest()))
    }

    /// Append the 12-byte header.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.msg_type);
        put_u24(out, self.length as usize);
        put_u16(out, self.message_seq);
        put_u24(out, self.fragment_offset as usize);
        put_u24(out, self.fragment_length as usize);
    }
}

/// A whole handshake message with its DTLS header as it enters the transcript
/// (one fragment covering everything).
pub fn full_message(msg_type: HandshakeType, message_seq: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HANDSHAKE_HEADER_LEN + body.len());
    HandshakeHeader {
        msg_type: msg_type.to_u8(),
        length: body.len() as u32,
        message_seq,
        fragment_offset: 0,
        fragment_length: body.len() as u32,
    }
    .write(&mut out);
    out.extend_from_slice(body);
    out
}

/// Extension types we use or recognize.
pub mod ext {
    /// supported_groups.
    pub const SUPPORTED_GROUPS: u16 = 10;
    /// ec_point_formats.
    pub const EC_POINT_FORMATS: u16 = 11;
    /// signature_algorithms.
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    /// use_srtp.
    pub const USE_SRTP: u16 = 14;
    /// extended_master_secret.
    pub const EXTENDED_MASTER_SECRET: u16 = 23;
    /// renegotiation_info.
    pub const RENEGOTIATION_INFO: u16 = 0xFF01;
}

/// The hello extensions we care about; the rest are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelloExtensions {
    /// supported_groups.
    pub groups: Vec<u16>,
    /// signature_algorithms.
    pub signature_algorithms: Vec<u16>,
    /// use_srtp protection profiles.
    pub srtp_profiles: Vec<u16>,
    /// extended_master_secret present.
    pub extended_master_secret: bool,
    /// renegotiation_info present (and empty, as in an initial handshake).
    pub renegotiation_info: bool,
    /// ec_point_formats present.
    pub ec_point_formats: bool,
}

impl HelloExtensions {
    /// Parse an extensions block (without its outer length).
    pub fn parse(buf: &[u8]) -> Result<HelloExtensions, WireError> {
        let mut out = HelloExtensions::default();
        let mut r = Reader::new(buf);
        let mut count = 0;
        while r.remaining() > 0 {
            count += 1;
            if count > 64 {
                return Err(WireError::Invalid("too many extensions"));
            }
            let kind = r.u16()?;
            let data = r.vec16()?;
            let mut d = Reader::new(data);
            match kind {
                ext::SUPPORTED_GROUPS => {
                    let list = d.vec16()?;
                    out.groups = list
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                }
                ext::SIGNATURE_ALGORITHMS => {
                    let list = d.vec16()?;
                    out.signature_algorithms = list
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                }
                ext::USE_SRTP => {
                    let list = d.vec16()?;
                    out.srtp_profiles = list
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    let _mki = d.vec8()?;
                }
                ext::EXTENDED_MASTER_SECRET => out.extended_master_secret = true,
                ext::RENEGOTIATION_INFO => {
                    let info = d.vec8()?;
                    out.renegotiation_info = info.is_empty();
                }
                ext::EC_POINT_FORMATS => out.ec_point_formats = true,
                _ => {}
            }
        }
        Ok(out)
    }

    /// Write as a ClientHello offers them.
    pub fn write_client(&self, out: &mut Vec<u8>) {
        let mut block = Vec::new();
        let mut one = |kind: u16, data: &[u8]| {
            put_u16(&mut block, kind);
            put_vec16(&mut block, data);
        };
        let groups: Vec<u8> = self.groups.iter().flat_map(|g| g.to_be_bytes()).collect();
        let mut d = Vec::new();
        put_vec16(&mut d, &groups);
        one(ext::SUPPORTED_GROUPS, &d);
        if self.ec_point_formats {
            one(ext::EC_POINT_FORMATS, &[1, 0]);
        }
        let sigs: Vec<u8> = self
            .signature_algorithms
            .iter()
            .flat_map(|g| g.to_be_bytes())
            .collect();
        let mut d = Vec::new();
        put_vec16(&mut d, &sigs);
        one(ext::SIGNATURE_ALGORITHMS, &d);
        let profiles: Vec<u8> = self
            .srtp_profiles
            .iter()
            .flat_map(|g| g.to_be_bytes())
            .collect();
        let mut d = Vec::new();
        put_vec16(&mut d, &profiles);
        d.push(0);
        one(ext::USE_SRTP, &d);
        if self.extended_master_secret {
            one(ext::EXTENDED_MASTER_SECRET, &[]);
        }
        if self.renegotiation_info {
            one(ext::RENEGOTIATION_INFO, &[0]);
        }
        put_vec16(out, &block);
    }

    /// Write as a ServerHello answers them (one chosen profile, our choices only).
    pub fn write_server(&self, out: &mut Vec<u8>) {
        let mut block = Vec::new();
        let mut one = |kind: u16, data: &[u8]| {
            put_u16(&mut block, kind);
            put_vec16(&mut block, data);
        };
        if let Some(p) = self.srtp_profiles.first() {
            let mut d = Vec::new();
            put_vec16(&mut d, &p.to_be_bytes());
            d.push(0);
            one(ext::USE_SRTP, &d);
        }
        if self.extended_master_secret {
            one(ext::EXTENDED_MASTER_SECRET, &[]);
        }
        if self.renegotiation_info {
            one(ext::RENEGOTIATION_INFO, &[0]);
        }
        if self.ec_point_formats {
            one(ext::EC_POINT_FORMATS, &[1, 0]);
        }
        put_vec16(out, &block);
    }
}

/// ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// client_version.
    pub version: u16,
    /// client random.
    pub random: [u8; 32],
    /// session id (we never resume).
    pub session_id: Vec<u8>,
    /// The cookie from HelloVerifyRequest (empty at first).
    pub cookie: Vec<u8>,
    /// Offered cipher suites.
    pub cipher_suites: Vec<u16>,
    /// Extensions.
    pub extensions: HelloExtensions,
}

impl ClientHello {
    /// Parse a ClientHello body.
    pub fn parse(body: &[u8]) -> Result<ClientHello, WireError> {
        let mut r = Reader::new(body);
        let version = r.u16()?;
        let mut random = [0u8; 32];
        random.copy_from_slice(r.take(32)?);
        let session_id = r.vec8()?.to_vec();
        let cookie = r.vec8()?;
        if cookie.len() > 255 {
            return Err(WireError::Invalid("cookie"));
        }
        let suites = r.vec16()?;
        let cipher_suites = suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        let _compression = r.vec8()?;
        let extensions = if r.remaining() > 0 {
            HelloExtensions::parse(r.vec16()?)?
        } else {
            HelloExtensions::default()
        };
        Ok(ClientHello {
            version,
            random,
            session_id,
            cookie: cookie.to_vec(),
            cipher_suites,
            extensions,
        })
    }

    /// Write a ClientHello body.
    pub fn write(&self, out: &mut Vec<u8>) {
        put_u16(out, self.version);
        out.extend_from_slice(&self.random);
        put_vec8(out, &self.session_id);
        put_vec8(out, &self.cookie);
        let suites: Vec<u8> = self
            .cipher_suites
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect();
        put_vec16(out, &suites);
        put_vec8(out, &[0]);
        self.extensions.write_client(out);
    }
}

/// ServerHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// server_version.
    pub version: u16,
    /// server random.
    pub random: [u8; 32],
    /// session id.
    pub session_id: Vec<u8>,
    /// Chosen suite.
    pub cipher_suite: u16,
    /// Extensions (srtp_profiles holds the one chosen).
    pub extensions: HelloExtensions,
}

impl ServerHello {
    /// Parse a ServerHello body.
    pub fn parse(body: &[u8]) -> Result<ServerHello, WireError> {
        let mut r = Reader::new(body);
        let version = r.u16()?;
        let mut random = [0u8; 32];
        random.copy_from_slice(r.take(32)?);
        let session_id = r.vec8()?.to_vec();
        let cipher_suite = r.u16()?;
        let _compression = r.u8()?;
        let extensions = if r.remaining() > 0 {
            HelloExtensions::parse(r.vec16()?)?
        } else {
            HelloExtensions::default()
        };
        Ok(ServerHello {
            version,
            random,
            session_id,
            cipher_suite,
            extensions,
        })
    }

    /// Write a ServerHello body.
    pub fn write(&self, out: &mut Vec<u8>) {
        put_u16(out, self.version);
        out.extend_from_slice(&self.random);
        put_vec8(out, &self.session_id);
        put_u16(out, self.cipher_suite);
        out.push(0);
        self.extensions.write_server(out);
    }
}

/// HelloVerifyRequest: parse the cookie.
pub fn parse_hello_verify_request(body: &[u8]) -> Result<Vec<u8>, WireError> {
    let mut r = Reader::new(body);
    let _version = r.u16()?;
    Ok(r.vec8()?.to_vec())
}

/// HelloVerifyRequest body.
pub fn write_hello_verify_request(cookie: &[u8], out: &mut Vec<u8>) {
    put_u16(out, DTLS_1_0);
    put_vec8(out, cookie);
}

/// Certificate: the end-entity certificate first.
pub fn parse_certificate(body: &[u8]) -> Result<Vec<Vec<u8>>, WireError> {
    let mut r = Reader::new(body);
    let list = r.vec24()?;
    let mut l = Reader::new(list);
    let mut certs = Vec::new();
    while l.remaining() > 0 {
        certs.push(l.vec24()?.to_vec());
        if certs.len() > 8 {
            return Err(WireError::Invalid("certificate chain too long"));
        }
    }
    Ok(certs)
}

/// Certificate body with one certificate.
pub fn write_certificate(der: &[u8], out: &mut Vec<u8>) {
    put_u24(out, der.len() + 3);
    put_u24(out, der.len());
    out.extend_from_slice(der);
}

/// ServerKeyExchange for ECDHE: the parameters as signed, the group, the point and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyExchange {
    /// Named group.
    pub group: u16,
    /// The server's ephemeral public key.
    pub public_key: Vec<u8>,
    /// Signature algorithm.
    pub signature_algorithm: u16,
    /// DER ECDSA signature over client_random + server_random + params.
    pub signature: Vec<u8>,
}

impl ServerKeyExchange {
    /// The ServerECDHParams bytes (what is signed after the randoms).
    pub fn params(group: u16, public_key: &[u8]) -> Vec<u8> {
        let mut p = vec![3];
        put_u16(&mut p, group);
        put_vec8(&mut p, public_key);
        p
    }

    /// Parse.
    pub fn parse(body: &[u8]) -> Result<ServerKeyExchange, WireError> {
        let mut r = Reader::new(body);
        if r.u8()? != 3 {
            return Err(WireError::Invalid("curve type"));
        }
        let group = r.u16()?;
        let public_key = r.vec8()?.to_vec();
        let signature_algorithm = r.u16()?;
        let signature = r.vec16()?.to_vec();
        Ok(ServerKeyExchange {
            group,
            public_key,
            signature_algorithm,
            signature,
        })
    }

    /// Write.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Self::params(self.group, &self.public_key));
        put_u16(out, self.signature_algorithm);
        put_vec16(out, &self.signature);
    }
}

/// CertificateRequest asking for an ECDSA P-256/SHA-256 certificate.
pub fn write_certificate_request(out: &mut Vec<u8>) {
    put_vec8(out, &[64]); // ecdsa_sign
    put_vec16(out, &SIG_ECDSA_P256_SHA256.to_be_bytes());
    put_vec16(out, &[]);
}

/// ClientKeyExchange: the client's ephemeral public key.
pub fn parse_client_key_exchange(body: &[u8]) -> Result<Vec<u8>, WireError> {
    Ok(Reader::new(body).vec8()?.to_vec())
}

/// ClientKeyExchange body.
pub fn write_client_key_exchange(public_key: &[u8], out: &mut Vec<u8>) {
    put_vec8(out, public_key);
}

/// CertificateVerify / digitally-signed: (algorithm, signature).
pub fn parse_signed(body: &[u8]) -> Result<(u16, Vec<u8>), WireError> {
    let mut r = Reader::new(body);
    let alg = r.u16()?;
    Ok((alg, r.vec16()?.to_vec()))
}

/// CertificateVerify body.
pub fn write_signed(alg: u16, signature: &[u8], out: &mut Vec<u8>) {
    put_u16(out, alg);
    put_vec16(out, signature);
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    #[test]
    fn record_header_round_trip_and_truncation() {
        let h = RecordHeader {
            content_type: ContentType::Handshake,
            version: DTLS_1_2,
            epoch: 1,
            sequence: 0x0000_1234_5678_9ABC,
            length: 3,
        };
        let mut out = Vec::new();
        h.write(&mut out);
        out.extend_from_slice(&[1, 2, 3, 9]);
        let (p, frag, rest) = RecordHeader::parse(&out).expect("parse");
        assert_eq!((p, frag, rest), (h, &[1u8, 2, 3][..], &[9u8][..]));
        for n in 0..out.len() - 1 {
            assert!(RecordHeader::parse(&out[..n]).is_err() || n >= 16);
        }
        assert!(
            RecordHeader::parse(&[22, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(),
            "TLS version refused"
        );
    }

    #[test]
    fn handshake_fragment_bounds() {
        let mut out = Vec::new();
        HandshakeHeader {
            msg_type: 1,
            length: 10,
            message_seq: 0,
            fragment_offset: 8,
            fragment_length: 4,
        }
        .write(&mut out);
        out.extend_from_slice(&[0; 4]);
        assert_eq!(
            HandshakeHeader::parse(&out),
            Err(WireError::Invalid("fragment range"))
        );
    }

    #[derive(Debug, Clone)]
    struct AnyHello(ClientHello, ServerHello);

    impl Arbitrary for AnyHello {
        fn arbitrary(g: &mut Gen) -> Self {
            let mut random = [0u8; 32];
            random.iter_mut().for_each(|b| *b = u8::arbitrary(g));
            let ext = HelloExtensions {
                groups: Vec::<u16>::arbitrary(g).into_iter().take(4).collect(),
                signature_algorithms: Vec::<u16>::arbitrary(g).into_iter().take(4).collect(),
                srtp_profiles: Vec::<u16>::arbitrary(g).into_iter().take(4).collect(),
                extended_master_secret: bool::arbitrary(g),
                renegotiation_info: bool::arbitrary(g),
                ec_point_formats: bool::arbitrary(g),
            };
            let ch = ClientHello {
                version: DTLS_1_2,
                random,
                session_id: Vec::<u8>::arbitrary(g).into_iter().take(32).collect(),
                cookie: Vec::<u8>::arbitrary(g).into_iter().take(32).collect(),
                cipher_suites: Vec::<u16>::arbitrary(g).into_iter().take(10).collect(),
                extensions: ext.clone(),
            };
            let mut sext = ext;
            sext.srtp_profiles.truncate(1);
            sext.groups.clear();
            sext.signature_algorithms.clear();
            let sh = ServerHello {
                version: DTLS_1_2,
                random,
                session_id: Vec::new(),
                cipher_suite: u16::arbitrary(g),
                extensions: sext,
            };
            AnyHello(ch, sh)
        }
    }

    #[test]
    fn quickcheck_hellos_round_trip() {
        fn prop(h: AnyHello) -> bool {
            let mut a = Vec::new();
            h.0.write(&mut a);
            let mut b = Vec::new();
            h.1.write(&mut b);
            ClientHello::parse(&a).as_ref() == Ok(&h.0)
                && ServerHello::parse(&b).as_ref() == Ok(&h.1)
        }
        QuickCheck::new()
            .tests(300)
            .quickcheck(prop as fn(AnyHello) -> bool);
    }

    #[test]
    fn quickcheck_parsers_never_panic() {
        fn prop(data: Vec<u8>) -> bool {
            let _ = RecordHeader::parse(&data);
            let _ = HandshakeHeader::parse(&data);
            let _ = ClientHello::parse(&data);
            let _ = ServerHello::parse(&data);
            let _ = ServerKeyExchange::parse(&data);
            let _ = parse_certificate(&data);
            let _ = parse_signed(&data);
            let _ = HelloExtensions::parse(&data);
            true
        }
        QuickCheck::new()
            .tests(3000)
            .quickcheck(prop as fn(Vec<u8>) -> bool);
    }

    #[test]
    fn server_key_exchange_round_trip() {
        let ske = ServerKeyExchange {
            group: GROUP_X25519,
            public_key: vec![7; 32],
            signature_algorithm: SIG_ECDSA_P256_SHA256,
            signature: vec![1, 2, 3],
        };
        let mut out = Vec::new();
        ske.write(&mut out);
        assert_eq!(ServerKeyExchange::parse(&out), Ok(ske));
        let mut c = Vec::new();
        write_certificate(&[1, 2, 3], &mut c);
        assert_eq!(parse_certificate(&c), Ok(vec![vec![1, 2, 3]]));
    }
}
