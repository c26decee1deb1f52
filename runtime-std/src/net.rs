//! What every runtime does before the core can run: choose local addresses, bind UDP
//! sockets on them (port range, IP filter) and resolve STUN server host names.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Arc;

/// Which local addresses the runtime binds and offers as host candidates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Interfaces {
    /// Every non-loopback address of every interface that is up (IPv6 link-local
    /// addresses excluded); loopback only when nothing else exists.
    #[default]
    Auto,
    /// 127.0.0.1 only: tests, and servers that sit behind a local proxy. Nothing is
    /// sent to any other address of this machine.
    Loopback,
    /// Exactly these addresses.
    Addresses(Vec<IpAddr>),
}

/// A predicate on local addresses (`NetConfig::ip_filter`).
pub type IpFilter = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// How the runtime binds its sockets.
#[derive(Clone, Default)]
pub struct NetConfig {
    /// Which addresses.
    pub interfaces: Interfaces,
    /// Ports to try, in order (the first free one is taken); `None`: any port.
    pub port_range: Option<RangeInclusive<u16>>,
    /// Addresses for which this returns false are skipped.
    pub ip_filter: Option<IpFilter>,
    /// Also bind IPv6 addresses (with `Interfaces::Auto`).
    pub ipv6: bool,
}

impl std::fmt::Debug for NetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetConfig")
            .field("interfaces", &self.interfaces)
            .field("port_range", &self.port_range)
            .field("ip_filter", &self.ip_filter.as_ref().map(|_| "fn"))
            .field("ipv6", &self.ipv6)
            .finish()
    }
}

impl NetConfig {
    /// Loopback only (127.0.0.1), any port.
    pub fn loopback() -> NetConfig {
        NetConfig {
            interfaces: Interfaces::Loopback,
            ..NetConfig::default()
        }
    }

    /// The addresses this configuration binds, in order.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let candidates = match &self.interfaces {
            Interfaces::Loopback => vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Interfaces::Addresses(list) => list.clone(),
            Interfaces::Auto => {
                let found: Vec<IpAddr> = interface_addresses()
                    .into_iter()
                    .filter(|ip| !ip.is_loopback())
                    .filter(|ip| match ip {
                        IpAddr::V4(_) => true,
                        IpAddr::V6(v6) => self.ipv6 && (v6.segments()[0] & 0xffc0) != 0xfe80,
                    })
                    .collect();
                if found.is_empty() {
                    vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
                } else {
                    found
                }
            }
        };
        candidates
            .into_iter()
            .filter(|ip| self.ip_filter.as_ref().is_none_or(|f| f(*ip)))
            .collect()
    }

    /// Bind one UDP socket per address (blocking mode; runtimes switch it as they need).
    /// Fails when no address could be bound.
    pub fn bind_udp(&self) -> io::Result<Vec<UdpSocket>> {
        let mut sockets = Vec::new();
        let mut last_error = None;
        for ip in self.addresses() {
            match self.bind_one(ip) {
                Ok(socket) => sockets.push(socket),
                Err(e) => last_error = Some(e),
            }
        }
        if sockets.is_empty() {
            return Err(last_error.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::AddrNotAvailable, "no local address to bind")
            }));
        }
        Ok(sockets)
    }

    fn bind_one(&self, ip: IpAddr) -> io::Result<UdpSocket> {
        match &self.port_range {
            None => UdpSocket::bind(SocketAddr::new(ip, 0)),
            Some(range) => {
                let mut last = None;
                for port in range.clone() {
                    match UdpSocket::bind(SocketAddr::new(ip, port)) {
                        Ok(s) => return Ok(s),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrInUse, "empty port range")
                }))
            }
        }
    }
}

/// The addresses of the machine's interfaces that are up.
pub fn interface_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// `stun:` URLs of the configuration whose host is a name, as `(host, port)`: the core
/// uses literal addresses itself; runtimes resolve these and call `add_stun_server`.
pub fn stun_host_names(config: &sansrtc::Config) -> Vec<(String, u16)> {
    use sansrtc::turn::{Scheme, ServerHost, ServerUrl};
    config
        .ice_servers
        .iter()
        .flat_map(|s| s.urls.iter())
        .filter_map(|url| ServerUrl::parse(url).ok())
        .filter(|u| u.scheme == Scheme::Stun)
        .filter_map(|u| match u.host {
            ServerHost::Name(name) => Some((name, u.port)),
            ServerHost::Ip(_) => None,
        })
        .collect()
}

/// Resolve the configuration's STUN host names (blocking DNS; the async runtimes run
/// it off their executor). Names that do not resolve are skipped.
pub fn resolve_stun_servers(config: &sansrtc::Config) -> Vec<SocketAddr> {
    stun_host_names(config)
        .into_iter()
        .filter_map(|(host, port)| (host.as_str(), port).to_socket_addrs().ok())
        .flatten()
        .collect()
}

/// A `turn:`/`turns:` URL of the configuration that the runtime must handle (a host name,
/// `?transport=tcp`, `turns:`: `ServerUrl::needs_runtime`), with its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct RuntimeTurnServer {
    /// The URL as configured.
    pub url: String,
    /// The parsed URL.
    pub parsed: sansrtc::turn::ServerUrl,
    /// The username (empty when the configuration has none).
    pub username: String,
    /// The password (empty when the configuration has none).
    pub password: String,
}

/// Never prints the password.
impl std::fmt::Debug for RuntimeTurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeTurnServer")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl RuntimeTurnServer {
    /// Over a stream (TCP, or TLS for `turns:`) rather than UDP.
    pub fn is_stream(&self) -> bool {
        self.parsed.transport == sansrtc::turn::ServerTransport::Tcp
    }
}

/// The configuration's TURN URLs the core leaves to the runtime, in order.
pub fn runtime_turn_servers(config: &sansrtc::Config) -> Vec<RuntimeTurnServer> {
    use sansrtc::turn::ServerUrl;
    let mut out = Vec::new();
    for server in &config.ice_servers {
        for url in &server.urls {
            let Ok(parsed) = ServerUrl::parse(url) else {
                continue;
            };
            if parsed.scheme.is_turn() && parsed.needs_runtime() {
                out.push(RuntimeTurnServer {
                    url: url.clone(),
                    parsed,
                    username: server.username.clone().unwrap_or_default(),
                    password: server.credential.clone().unwrap_or_default(),
                });
            }
        }
    }
    out
}

/// Resolve the configuration's UDP `turn:` URLs with host names (blocking DNS) into
/// servers for `PeerConnection::add_turn_server`, each from a bound socket of the
/// server's address family, to addresses `net` allows (loopback only in loopback mode).
/// The URLs of names that do not resolve, or of servers no socket can reach, come back
/// second, for `PeerConnection::turn_server_unreachable`.
pub fn resolve_udp_turn_servers(
    config: &sansrtc::Config,
    net: &NetConfig,
    sockets: &[SocketAddr],
) -> (Vec<sansrtc::TurnServer>, Vec<String>) {
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for turn in runtime_turn_servers(config)
        .into_iter()
        .filter(|t| !t.is_stream())
    {
        let Ok(addresses) = crate::stream::resolve(&turn.parsed, net) else {
            failed.push(turn.url);
            continue;
        };
        let found = addresses.iter().find_map(|server| {
            sockets
                .iter()
                .find(|local| local.is_ipv4() == server.is_ipv4())
                .map(|local| (*local, *server))
        });
        if let Some((local, server)) = found {
            out.push(sansrtc::TurnServer {
                url: turn.url,
                local,
                server,
                protocol: sansrtc::Protocol::Udp,
                username: turn.username,
                password: turn.password,
            });
        } else {
            failed.push(turn.url);
        }
    }
    (out, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_binds_127_0_0_1_only() {
        let sockets = NetConfig::loopback().bind_udp().expect("bind");
        assert_eq!(sockets.len(), 1);
        let addr = sockets[0].local_addr().expect("addr");
        assert_eq!(addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_ne!(addr.port(), 0);
    }

    #[test]
    fn port_range_takes_the_first_free_port() {
        let first = NetConfig::loopback().bind_udp().expect("bind");
        let taken = first[0].local_addr().expect("addr").port();
        let config = NetConfig {
            port_range: Some(taken..=taken.saturating_add(20)),
            ..NetConfig::loopback()
        };
        let second = config.bind_udp().expect("bind");
        let port = second[0].local_addr().expect("addr").port();
        assert!(port > taken && port <= taken.saturating_add(20));
    }

    #[test]
    fn ip_filter_can_exclude_everything() {
        let config = NetConfig {
            ip_filter: Some(Arc::new(|_| false)),
            ..NetConfig::loopback()
        };
        assert!(config.addresses().is_empty());
        assert!(config.bind_udp().is_err());
    }

    #[test]
    fn turn_urls_the_core_cannot_handle_go_to_the_runtime() {
        let config = sansrtc::Config {
            ice_servers: vec![sansrtc::IceServer {
                urls: vec![
                    "turn:127.0.0.1:3478".into(),
                    "turn:127.0.0.1:3478?transport=tcp".into(),
                    "turns:127.0.0.1:5349".into(),
                    "turn:localhost:3478".into(),
                    "stun:localhost".into(),
                ],
                username: Some("u".into()),
                credential: Some("p".into()),
            }],
            ..Default::default()
        };
        let urls: Vec<(String, bool)> = runtime_turn_servers(&config)
            .into_iter()
            .map(|t| (t.url.clone(), t.is_stream()))
            .collect();
        assert_eq!(
            urls,
            vec![
                ("turn:127.0.0.1:3478?transport=tcp".to_owned(), true),
                ("turns:127.0.0.1:5349".to_owned(), true),
                ("turn:localhost:3478".to_owned(), false),
            ]
        );
        let local: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let (udp, failed) = resolve_udp_turn_servers(&config, &NetConfig::loopback(), &[local]);
        assert!(failed.is_empty());
        assert_eq!(udp.len(), 1);
        assert_eq!(udp[0].local, local);
        assert!(udp[0].server.ip().is_loopback());
        assert_eq!(udp[0].server.port(), 3478);
        assert_eq!(udp[0].password, "p");
        // No socket of the server's family: reported, not silently skipped.
        let v6: SocketAddr = "[::1]:40000".parse().expect("addr");
        let (udp, failed) = resolve_udp_turn_servers(&config, &NetConfig::loopback(), &[v6]);
        assert!(udp.is_empty());
        assert_eq!(failed, vec!["turn:localhost:3478".to_owned()]);
    }

    #[test]
    fn stun_names_are_left_to_the_runtime_and_literals_to_the_core() {
        let config = sansrtc::Config {
            ice_servers: vec![sansrtc::IceServer {
                urls: vec![
                    "stun:stun.example.org".into(),
                    "stun:stun.example.net:19302".into(),
                    "stun:10.0.0.1:3478".into(),
                    "stun:[::1]:3478".into(),
                    "turn:turn.example.org".into(),
                ],
                username: None,
                credential: None,
            }],
            ..Default::default()
        };
        assert_eq!(
            stun_host_names(&config),
            vec![
                ("stun.example.org".to_owned(), 3478),
                ("stun.example.net".to_owned(), 19302)
            ]
        );
    }
}
