//! STUN and TURN server URLs (RFC 7064 `stun:`/`stuns:`, RFC 7065 `turn:`/`turns:` with
//! `?transport=udp|tcp`), as `RTCIceServer.urls` carries them. The core uses IP literals
//! directly; host names are left to the runtimes to resolve.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `stun:` (RFC 7064).
    Stun,
    /// `stuns:`: STUN over TLS.
    Stuns,
    /// `turn:` (RFC 7065).
    Turn,
    /// `turns:`: TURN over TLS.
    Turns,
}

impl Scheme {
    /// The scheme's name without the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Stun => "stun",
            Scheme::Stuns => "stuns",
            Scheme::Turn => "turn",
            Scheme::Turns => "turns",
        }
    }

    /// TLS to the server (`stuns:`, `turns:`).
    pub fn is_secure(self) -> bool {
        matches!(self, Scheme::Stuns | Scheme::Turns)
    }

    /// A TURN server (relaying), not only STUN.
    pub fn is_turn(self) -> bool {
        matches!(self, Scheme::Turn | Scheme::Turns)
    }

    /// The default port: 3478, or 5349 over TLS.
    pub fn default_port(self) -> u16 {
        if self.is_secure() {
            5349
        } else {
            3478
        }
    }
}

/// The transport to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerTransport {
    /// UDP.
    Udp,
    /// TCP (TLS over TCP for the secure schemes).
    Tcp,
}

/// The server's host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerHost {
    /// An IP literal (IPv6 written in brackets in the URL).
    Ip(IpAddr),
    /// A host name, to be resolved by the runtime (lower-cased).
    Name(String),
}

/// A parsed STUN or TURN server URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerUrl {
    /// The scheme.
    pub scheme: Scheme,
    /// The host.
    pub host: ServerHost,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
    /// The transport: from `?transport=` for TURN; otherwise UDP for `stun:`/`turn:` and
    /// TCP for the secure schemes.
    pub transport: ServerTransport,
}

/// Why a URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not `stun:`, `stuns:`, `turn:` or `turns:`.
    #[error("not a stun:, stuns:, turn: or turns: URL")]
    UnknownScheme,
    /// No host.
    #[error("no host")]
    EmptyHost,
    /// A host with characters a host name cannot have, or a bad IPv6 literal.
    #[error("invalid host")]
    InvalidHost,
    /// A port that is not a number from 1 to 65535.
    #[error("invalid port")]
    InvalidPort,
    /// A query on a STUN URL, or a TURN query other than `transport=udp|tcp`.
    #[error("invalid query (only turn: and turns: take ?transport=udp|tcp)")]
    InvalidQuery,
    /// `turns:` with `transport=udp` (TLS needs a stream).
    #[error("turns: over UDP is not supported")]
    SecureUdp,
}

impl ServerUrl {
    /// Parse a URL such as `stun:stun.example.org`, `turn:192.0.2.1:3479?transport=tcp`
    /// or `turns:[2001:db8::1]`.
    pub fn parse(url: &str) -> Result<ServerUrl, UrlError> {
        let (scheme, rest) = url.split_once(':').ok_or(UrlError::UnknownScheme)?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "stun" => Scheme::Stun,
            "stuns" => Scheme::Stuns,
            "turn" => Scheme::Turn,
            "turns" => Scheme::Turns,
            _ => return Err(UrlError::UnknownScheme),
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let mut transport = if scheme.is_secure() {
            ServerTransport::Tcp
        } else {
            ServerTransport::Udp
        };
        if let Some(query) = query {
            if !scheme.is_turn() {
                return Err(UrlError::InvalidQuery);
            }
            transport = match query.to_ascii_lowercase().as_str() {
                "transport=udp" => ServerTransport::Udp,
                "transport=tcp" => ServerTransport::Tcp,
                _ => return Err(UrlError::InvalidQuery),
            };
            if scheme.is_secure() && transport == ServerTransport::Udp {
                return Err(UrlError::SecureUdp);
            }
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => scheme.default_port(),
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(p) if p != 0 => p,
                    _ => return Err(UrlError::InvalidPort),
                }
            }
            Some(_) => return Err(UrlError::InvalidPort),
        };
        Ok(ServerUrl {
            scheme,
            host,
            port,
            transport,
        })
    }

    /// The server's address when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            ServerHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            ServerHost::Name(_) => None,
        }
    }

    /// Whether a runtime must do something before the core can use this server: resolve
    /// a host name, or open the TCP or TLS stream. The core itself uses `stun:` and
    /// `turn:` URLs with an IP-literal host over UDP; for the others the runtime calls
    /// `PeerConnection::add_stun_server` or `PeerConnection::add_turn_server`.
    pub fn needs_runtime(&self) -> bool {
        matches!(self.host, ServerHost::Name(_))
            || self.scheme.is_secure()
            || self.transport == ServerTransport::Tcp
    }
}

fn split_host_port(authority: &str) -> Result<(ServerHost, Option<&str>), UrlError> {
    if authority.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or(UrlError::InvalidHost)?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| UrlError::InvalidHost)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::InvalidHost)?),
        };
        return Ok((ServerHost::Ip(IpAddr::V6(ip)), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok((ServerHost::Ip(IpAddr::V4(ip)), port));
    }
    let valid = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(UrlError::InvalidHost);
    }
    Ok((ServerHost::Name(host.to_ascii_lowercase()), port))
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        match &self.host {
            ServerHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            ServerHost::Ip(ip) => write!(f, "{ip}")?,
            ServerHost::Name(n) => f.write_str(n)?,
        }
        write!(f, ":{}", self.port)?;
        if self.scheme.is_turn() {
            let t = match self.transport {
                ServerTransport::Udp => "udp",
                ServerTransport::Tcp => "tcp",
            };
            write!(f, "?transport={t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    #[test]
    fn defaults_and_queries() {
        let u = ServerUrl::parse("stun:stun.Example.org").expect("stun");
        assert_eq!(u.host, ServerHost::Name("stun.example.org".into()));
        assert_eq!((u.port, u.transport), (3478, ServerTransport::Udp));
        let u = ServerUrl::parse("turns:turn.example.org").expect("turns");
        assert_eq!((u.port, u.transport), (5349, ServerTransport::Tcp));
        let u = ServerUrl::parse("turn:192.0.2.1:3479?transport=tcp").expect("turn tcp");
        assert_eq!(u.socket_addr(), "192.0.2.1:3479".parse().ok());
        assert_eq!(u.transport, ServerTransport::Tcp);
        let u = ServerUrl::parse("turn:[2001:db8::1]?transport=udp").expect("v6");
        assert_eq!(u.socket_addr(), "[2001:db8::1]:3478".parse().ok());
        assert!(u.scheme.is_turn() && !u.scheme.is_secure());
    }

    #[test]
    fn refusals() {
        for (url, err) in [
            ("http://x", UrlError::UnknownScheme),
            ("stun", UrlError::UnknownScheme),
            ("stun:", UrlError::EmptyHost),
            ("stun::3478", UrlError::EmptyHost),
            ("stun:host:0", UrlError::InvalidPort),
            ("stun:host:65536", UrlError::InvalidPort),
            ("stun:host:+1", UrlError::InvalidPort),
            ("stun:ho st", UrlError::InvalidHost),
            ("stun:[::1", UrlError::InvalidHost),
            ("stun:[zz]", UrlError::InvalidHost),
            ("stun:host?transport=udp", UrlError::InvalidQuery),
            ("turn:host?transport=sctp", UrlError::InvalidQuery),
            ("turn:host?foo=bar", UrlError::InvalidQuery),
            ("turns:host?transport=udp", UrlError::SecureUdp),
        ] {
            assert_eq!(ServerUrl::parse(url), Err(err), "{url}");
        }
    }

    impl Arbitrary for ServerUrl {
        fn arbitrary(g: &mut Gen) -> Self {
            let scheme = *g
                .choose(&[Scheme::Stun, Scheme::Stuns, Scheme::Turn, Scheme::Turns])
                .unwrap_or(&Scheme::Stun);
            let host = match u8::arbitrary(g) % 3 {
                0 => ServerHost::Ip(IpAddr::V4(std::net::Ipv4Addr::from(u32::arbitrary(g)))),
                1 => ServerHost::Ip(IpAddr::V6(std::net::Ipv6Addr::from(u128::arbitrary(g)))),
                _ => {
                    let labels = 1 + usize::arbitrary(g) % 3;
                    let name: Vec<String> = (0..labels)
                        .map(|_| {
                            let n = 1 + usize::arbitrary(g) % 10;
                            (0..n)
                                .map(|_| char::from(b'a' + u8::arbitrary(g) % 26))
                                .collect()
                        })
                        .collect();
                    ServerHost::Name(name.join("."))
                }
            };
            let tcp = scheme.is_secure() || (scheme == Scheme::Turn && bool::arbitrary(g));
            let transport = if tcp {
                ServerTransport::Tcp
            } else {
                ServerTransport::Udp
            };
            ServerUrl {
                scheme,
                host,
                port: 1 + u16::arbitrary(g) % u16::MAX,
                transport,
            }
        }
    }

    #[test]
    fn quickcheck_round_trip_and_no_panic() {
        fn round_trip(u: ServerUrl) -> bool {
            ServerUrl::parse(&u.to_string()) == Ok(u)
        }
        fn no_panic(s: String) -> bool {
            let _ = ServerUrl::parse(&s);
            let _ = ServerUrl::parse(&format!("turn:{s}"));
            true
        }
        QuickCheck::new().quickcheck(round_trip as fn(ServerUrl) -> bool);
        QuickCheck::new().quickcheck(no_panic as fn(String) -> bool);
    }
}
