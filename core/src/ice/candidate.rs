//! ICE candidates: the `candidate-attribute` grammar of RFC 8839 section 5.1, priorities
//! and foundations (RFC 8445 section 5.1.2).
//!
//! ```text
//! candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type>
//!           [raddr <address> rport <port>] [tcptype <active|passive|so>] *(<name> <value>)
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::transmit::Protocol;

/// The candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CandidateKind {
    /// A local interface address.
    Host,
    /// The address a STUN server saw.
    ServerReflexive,
    /// An address learned from a connectivity check.
    PeerReflexive,
    /// A TURN relay address.
    Relay,
}

impl CandidateKind {
    /// The `typ` token.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relay => "relay",
        }
    }

    /// The recommended type preference (RFC 8445 5.1.2.2).
    pub fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => 126,
            CandidateKind::PeerReflexive => 110,
            CandidateKind::ServerReflexive => 100,
            CandidateKind::Relay => 0,
        }
    }
}

/// The `tcptype` of a TCP candidate (RFC 6544).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpType {
    /// `active`.
    Active,
    /// `passive`.
    Passive,
    /// `so` (simultaneous open).
    SimultaneousOpen,
}

impl TcpType {
    fn as_str(self) -> &'static str {
        match self {
            TcpType::Active => "active",
            TcpType::Passive => "passive",
            TcpType::SimultaneousOpen => "so",
        }
    }
}

/// Where a candidate is: an IP address, or an mDNS `.local` name the application resolves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CandidateAddress {
    /// An IP address and port.
    Ip(SocketAddr),
    /// An mDNS host name (RFC 8445 / draft-ietf-mmusic-mdns-ice-candidates) and port.
    Mdns {
        /// The `.local` name.
        hostname: String,
        /// The port.
        port: u16,
    },
}

impl CandidateAddress {
    /// The socket address, if this is an IP candidate.
    pub fn ip(&self) -> Option<SocketAddr> {
        match self {
            CandidateAddress::Ip(a) => Some(*a),
            CandidateAddress::Mdns { .. } => None,
        }
    }
}

/// An ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Candidate {
    /// Foundation (1 to 32 ice-chars).
    pub foundation: String,
    /// Component id (1 = RTP; with rtcp-mux always 1).
    pub component: u16,
    /// Transport.
    pub protocol: Protocol,
    /// Priority.
    pub priority: u32,
    /// Address.
    pub address: CandidateAddress,
    /// Type.
    pub kind: CandidateKind,
    /// `raddr`/`rport`.
    pub related_address: Option<SocketAddr>,
    /// `tcptype`.
    pub tcp_type: Option<TcpType>,
    /// Extension attributes (`generation 0`, `ufrag x`, `network-id 1`...), in order.
    pub extensions: Vec<(String, String)>,
}

/// A candidate string that does not follow the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateError {
    /// A required field is missing.
    #[error("candidate is missing its {0}")]
    Missing(&'static str),
    /// A field has an invalid value.
    #[error("candidate has an invalid {0}")]
    Invalid(&'static str),
    /// Longer than any real candidate (1 KiB).
    #[error("candidate too long")]
    TooLong,
}

/// The priority formula of RFC 8445 5.1.2.1.
pub fn candidate_priority(kind: CandidateKind, local_preference: u16, component: u16) -> u32 {
    (kind.type_preference() << 24)
        + (u32::from(local_preference) << 8)
        + (256 - u32::from(component.clamp(1, 256)))
}

fn is_ice_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

impl Candidate {
    /// A host candidate for a local socket.
    pub fn host(addr: SocketAddr, protocol: Protocol, local_preference: u16) -> Candidate {
        let kind = CandidateKind::Host;
        Candidate {
            foundation: foundation_for(kind, addr.ip(), None, protocol),
            component: 1,
            protocol,
            priority: candidate_priority(kind, local_preference, 1),
            address: CandidateAddress::Ip(addr),
            kind,
            related_address: None,
            tcp_type: (protocol == Protocol::Tcp).then_some(TcpType::Passive),
            extensions: Vec::new(),
        }
    }

    /// Parse a candidate attribute value, with or without `candidate:` / `a=candidate:`.
    pub fn parse(text: &str) -> Result<Candidate, CandidateError> {
        if text.len() > 1024 {
            return Err(CandidateError::TooLong);
        }
        let t = text.trim();
        // Only visible ASCII and spaces: no control characters that would not survive a
        // write and re-parse (found by fuzzing).
        if !t.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(CandidateError::Invalid("characters"));
        }
        let t = t.strip_prefix("a=").unwrap_or(t);
        let t = t.strip_prefix("candidate:").unwrap_or(t);
        let mut it = t.split(' ').filter(|s| !s.is_empty());
        let foundation = it.next().ok_or(CandidateError::Missing("foundation"))?;
        if foundation.len() > 32 || !foundation.chars().all(is_ice_char) {
            return Err(CandidateError::Invalid("foundation"));
        }
        let component: u16 = it
            .next()
            .ok_or(CandidateError::Missing("component"))?
            .parse()
            .map_err(|_| CandidateError::Invalid("component"))?;
        if component == 0 {
            return Err(CandidateError::Invalid("component"));
        }
        let protocol = match it.next().ok_or(CandidateError::Missing("transport"))? {
            t if t.eq_ignore_ascii_case("udp") => Protocol::Udp,
            t if t.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
            _ => return Err(CandidateError::Invalid("transport")),
        };
        let priority: u32 = it
            .next()
            .ok_or(CandidateError::Missing("priority"))?
            .parse()
            .map_err(|_| CandidateError::Invalid("priority"))?;
        let host = it.next().ok_or(CandidateError::Missing("address"))?;
        let port: u16 = it
            .next()
            .ok_or(CandidateError::Missing("port"))?
            .parse()
            .map_err(|_| CandidateError::Invalid("port"))?;
        let address = match host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => CandidateAddress::Ip(SocketAddr::new(ip, port)),
            Err(_)
                if host.len() <= 255
                    && host.ends_with(".local")
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') =>
            {
                CandidateAddress::Mdns {
                    hostname: host.to_string(),
                    port,
                }
            }
            Err(_) => return Err(CandidateError::Invalid("address")),
        };
        if it.next() != Some("typ") {
            return Err(CandidateError::Missing("typ"));
        }
        let kind = match it.next().ok_or(CandidateError::Missing("type"))? {
            "host" => CandidateKind::Host,
            "srflx" => CandidateKind::ServerReflexive,
            "prflx" => CandidateKind::PeerReflexive,
            "relay" => CandidateKind::Relay,
            _ => return Err(CandidateError::Invalid("type")),
        };
        let mut raddr: Option<IpAddr> = None;
        let mut rport: Option<u16> = None;
        let mut tcp_type = None;
        let mut extensions = Vec::new();
        while let Some(name) = it.next() {
            let value = it
                .next()
                .ok_or(CandidateError::Missing("extension value"))?;
            match name {
                "raddr" => {
                    raddr = Some(
                        value
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .parse()
                            .map_err(|_| CandidateError::Invalid("raddr"))?,
                    )
                }
                "rport" => {
                    rport = Some(
                        value
                            .parse()
                            .map_err(|_| CandidateError::Invalid("rport"))?,
                    )
                }
                "tcptype" => {
                    tcp_type = Some(match value {
                        "active" => TcpType::Active,
                        "passive" => TcpType::Passive,
                        "so" => TcpType::SimultaneousOpen,
                        _ => return Err(CandidateError::Invalid("tcptype")),
                    })
                }
                _ => {
                    if extensions.len() >= 16 {
                        return Err(CandidateError::TooLong);
                    }
                    extensions.push((name.to_string(), value.to_string()));
                }
            }
        }
        let related_address = match (raddr, rport) {
            (Some(ip), Some(port)) => Some(SocketAddr::new(ip, port)),
            (None, None) => None,
            _ => return Err(CandidateError::Missing("raddr/rport pair")),
        };
        Ok(Candidate {
            foundation: foundation.to_string(),
            component,
            protocol,
            priority,
            address,
            kind,
            related_address,
            tcp_type,
            extensions,
        })
    }

    /// The value of an extension attribute (e.g. `ufrag`).
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A foundation: equal for candidates of the same type, base IP, server and transport
/// (RFC 8445 5.1.1.3), as a short stable hash written in decimal like browsers do.
pub fn foundation_for(
    kind: CandidateKind,
    base: IpAddr,
    server: Option<SocketAddr>,
    protocol: Protocol,
) -> String {
    // FNV-1a: stable across runs and platforms (no RandomState).
    let mut h: u32 = 0x811C_9DC5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(kind.as_str().as_bytes());
    match base {
        IpAddr::V4(ip) => eat(&ip.octets()),
        IpAddr::V6(ip) => eat(&ip.octets()),
    }
    if let Some(s) = server {
        eat(s.to_string().as_bytes());
    }
    eat(&[protocol as u8]);
    h.to_string()
}

impl fmt::Display for Candidate {
    /// Writes `candidate:...` as browsers do.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        };
        let (host, port) = match &self.address {
            CandidateAddress::Ip(a) => (a.ip().to_string(), a.port()),
            CandidateAddress::Mdns { hostname, port } => (hostname.clone(), *port),
        };
        write!(
            f,
            "candidate:{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            proto,
            self.priority,
            host,
            port,
            self.kind.as_str()
        )?;
        if let Some(r) = self.related_address {
            write!(f, " raddr {} rport {}", r.ip(), r.port())?;
        }
        if let Some(t) = self.tcp_type {
            write!(f, " tcptype {}", t.as_str())?;
        }
        for (n, v) in &self.extensions {
            write!(f, " {n} {v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    #[test]
    fn parses_browser_candidates() {
        let c = Candidate::parse(
            "candidate:3574209376 1 udp 2122260223 192.168.1.2 54321 typ host generation 0 ufrag abcd network-id 1",
        )
        .expect("chrome host");
        assert_eq!(c.kind, CandidateKind::Host);
        assert_eq!(
            c.address,
            CandidateAddress::Ip("192.168.1.2:54321".parse().expect("addr"))
        );
        assert_eq!(c.extension("ufrag"), Some("abcd"));
        assert_eq!(
            c.to_string(),
            "candidate:3574209376 1 udp 2122260223 192.168.1.2 54321 typ host generation 0 ufrag abcd network-id 1"
        );
        let s = Candidate::parse(
            "a=candidate:1 1 UDP 1686052607 203.0.113.7 40000 typ srflx raddr 10.0.0.2 rport 5000",
        )
        .expect("srflx");
        assert_eq!(
            s.related_address,
            Some("10.0.0.2:5000".parse().expect("addr"))
        );
        let m = Candidate::parse("candidate:1 1 udp 2113937151 4b6c0f4a-1d1e-4e1c-9c1a-2b3c4d5e6f70.local 50123 typ host generation 0")
            .expect("mdns");
        assert!(matches!(
            m.address,
            CandidateAddress::Mdns { port: 50123, .. }
        ));
        let v6 =
            Candidate::parse("candidate:2 1 udp 2122262783 2001:db8::1 9 typ host").expect("v6");
        assert_eq!(
            v6.address.ip(),
            Some("[2001:db8::1]:9".parse().expect("addr"))
        );
        let t = Candidate::parse("candidate:3 1 tcp 1518280447 10.0.0.1 9 typ host tcptype active")
            .expect("tcp");
        assert_eq!(t.tcp_type, Some(TcpType::Active));
        // Firefox's form.
        let ff = Candidate::parse("candidate:0 1 UDP 2122252543 127.0.0.1 38476 typ host")
            .expect("firefox");
        assert_eq!(ff.protocol, Protocol::Udp);
    }

    #[test]
    fn rejects_malformed_candidates() {
        for bad in [
            "",
            "candidate:",
            "candidate:1 1 udp",
            "candidate:1 0 udp 1 1.2.3.4 5 typ host",
            "candidate:1 1 sctp 1 1.2.3.4 5 typ host",
            "candidate:1 1 udp x 1.2.3.4 5 typ host",
            "candidate:1 1 udp 1 not-an-ip 5 typ host",
            "candidate:1 1 udp 1 1.2.3.4 70000 typ host",
            "candidate:1 1 udp 1 1.2.3.4 5 type host",
            "candidate:1 1 udp 1 1.2.3.4 5 typ bogus",
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr 1.2.3.4",
            "candidate:1 1 udp 1 1.2.3.4 5 typ host generation",
            "candidate:f@@ 1 udp 1 1.2.3.4 5 typ host",
        ] {
            assert!(Candidate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn priorities_follow_rfc8445() {
        assert_eq!(
            candidate_priority(CandidateKind::Host, 65535, 1),
            2_130_706_431
        );
        assert!(
            candidate_priority(CandidateKind::Host, 0, 1)
                > candidate_priority(CandidateKind::PeerReflexive, 65535, 1)
        );
        assert!(
            candidate_priority(CandidateKind::ServerReflexive, 65535, 1)
                > candidate_priority(CandidateKind::Relay, 65535, 1)
        );
        let a = foundation_for(
            CandidateKind::Host,
            "10.0.0.1".parse().expect("ip"),
            None,
            Protocol::Udp,
        );
        let b = foundation_for(
            CandidateKind::Host,
            "10.0.0.2".parse().expect("ip"),
            None,
            Protocol::Udp,
        );
        assert_ne!(a, b);
        assert_eq!(
            a,
            foundation_for(
                CandidateKind::Host,
                "10.0.0.1".parse().expect("ip"),
                None,
                Protocol::Udp
            )
        );
    }

    #[derive(Debug, Clone)]
    struct AnyCandidate(Candidate);

    impl Arbitrary for AnyCandidate {
        fn arbitrary(g: &mut Gen) -> Self {
            let ip = if bool::arbitrary(g) {
                IpAddr::from(u32::arbitrary(g).to_be_bytes())
            } else {
                IpAddr::from(u128::arbitrary(g).to_be_bytes())
            };
            let kind = *g
                .choose(&[
                    CandidateKind::Host,
                    CandidateKind::ServerReflexive,
                    CandidateKind::PeerReflexive,
                    CandidateKind::Relay,
                ])
                .expect("kind");
            let protocol = if bool::arbitrary(g) {
                Protocol::Udp
            } else {
                Protocol::Tcp
            };
            let address = if u8::arbitrary(g) % 5 == 0 {
                CandidateAddress::Mdns {
                    hostname: format!("{:x}-{:x}.local", u32::arbitrary(g), u16::arbitrary(g)),
                    port: u16::arbitrary(g),
                }
            } else {
                CandidateAddress::Ip(SocketAddr::new(ip, u16::arbitrary(g)))
            };
            let related_address =
                bool::arbitrary(g).then(|| SocketAddr::new(ip, u16::arbitrary(g)));
            let extensions = (0..usize::arbitrary(g) % 4)
                .map(|i| (format!("ext{i}"), u32::arbitrary(g).to_string()))
                .collect();
            AnyCandidate(Candidate {
                foundation: (u32::arbitrary(g) % 100_000).to_string(),
                component: 1 + u16::arbitrary(g) % 256,
                protocol,
                priority: u32::arbitrary(g),
                address,
                kind,
                related_address,
                tcp_type: (protocol == Protocol::Tcp && bool::arbitrary(g))
                    .then_some(TcpType::Passive),
                extensions,
            })
        }
    }

    #[test]
    fn quickcheck_write_then_parse() {
        fn prop(c: AnyCandidate) -> bool {
            Candidate::parse(&c.0.to_string()).as_ref() == Ok(&c.0)
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(AnyCandidate) -> bool);
    }

    #[test]
    fn quickcheck_garbage_never_panics() {
        fn prop(s: String) -> bool {
            let _ = Candidate::parse(&s);
            let _ = Candidate::parse(&format!("candidate:1 1 udp 1 {s} typ host"));
            true
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(String) -> bool);
    }
}
