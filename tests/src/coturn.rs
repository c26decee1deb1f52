//! A real TURN server for tests: Debian's `coturn` (`turnserver`), started on 127.0.0.1
//! only, with long-term credentials, FINGERPRINT, loopback peers allowed (coturn refuses
//! them by default), no CLI, no configuration file and no database of its own, and a TLS
//! listener whose self-signed certificate is generated at start. Logs go to a file in a
//! fresh temporary directory ([`Coturn::log`] reads it back for a failing test).
//!
//! ```no_run
//! let turn = sansrtc_tests::coturn::Coturn::start().expect("turnserver");
//! println!("{} {} {}", turn.udp_url(), turn.tcp_url(), turn.tls_url());
//! // `turn.certificate_der()` is the certificate to trust for `turns:`.
//! ```
//!
//! Dropping it kills the `turnserver` child by its own PID and waits for it.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The test user's name.
pub const USERNAME: &str = "sansrtc";
/// The test user's password.
pub const PASSWORD: &str = "relay-me-please";
/// The realm coturn announces.
pub const REALM: &str = "sansrtc.test";

/// Relay ports per server; each started server takes its own block.
const RELAY_PORTS: u16 = 64;
/// Relay port blocks are taken below Linux's ephemeral range (32768-60999), so they never
/// collide with the ports the tests' own sockets get from the kernel.
const RELAY_BASE: u16 = 20_000;
const RELAY_BLOCKS: u16 = 190;
/// How long `turnserver` may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// Why the server could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoturnError {
    /// `turnserver` is not installed (`apt-get install coturn`; scripts/test.sh does it).
    #[error("turnserver is not installed (Debian package coturn): {0}")]
    NotInstalled(io::Error),
    /// A file, port or process operation failed.
    #[error("coturn fixture: {0}")]
    Io(#[from] io::Error),
    /// Generating the certificate failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// `turnserver` exited before it listened.
    #[error("turnserver exited early ({status}); log:\n{log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: String,
    },
    /// `turnserver` did not listen in time.
    #[error("turnserver did not listen within {timeout:?}; log:\n{log}")]
    NotListening {
        /// How long we waited.
        timeout: Duration,
        /// Its log.
        log: String,
    },
}

/// A running `turnserver`.
pub struct Coturn {
    child: Child,
    dir: TempDir,
    port: u16,
    tls_port: u16,
    relay_ports: RangeInclusive<u16>,
    certificate_der: Vec<u8>,
}

impl Coturn {
    /// Start a server on free loopback ports and wait until it answers on UDP and accepts
    /// TCP and TLS connections.
    pub fn start() -> Result<Coturn, CoturnError> {
        let dir = TempDir::new("coturn")?;
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])?;
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.cert.pem())?;
        std::fs::write(&key_path, cert.key_pair.serialize_pem())?;
        let port = free_port()?;
        let tls_port = loop {
            let p = free_port()?;
            if p != port {
                break p;
            }
        };
        let block = NEXT_BLOCK.fetch_add(1, Ordering::Relaxed);
        // Spread concurrent test processes over the blocks too.
        let slot = (block + (std::process::id() % u32::from(RELAY_BLOCKS)) as u16) % RELAY_BLOCKS;
        let low = RELAY_BASE + slot * RELAY_PORTS;
        let relay_ports = low..=low + RELAY_PORTS - 1;
        let log_path = dir.path().join("turnserver.log");
        let mut cmd = Command::new("turnserver");
        cmd.arg("-n") // no configuration file
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--tls-listening-port", &tls_port.to_string()])
            .args(["--min-port", &relay_ports.start().to_string()])
            .args(["--max-port", &relay_ports.end().to_string()])
            .arg("--allow-loopback-peers")
            .arg("--lt-cred-mech")
            .args(["--user", &format!("{USERNAME}:{PASSWORD}")])
            .args(["--realm", REALM])
            .arg("--fingerprint")
            .arg("--no-cli")
            .arg("--no-dtls")
            .arg("--no-rfc5780")
            .arg("--no-software-attribute")
            .arg("--cert")
            .arg(&cert_path)
            .arg("--pkey")
            .arg(&key_path)
            // Its own database file and pid file, so nothing outside the temp dir is used.
            .arg("--userdb")
            .arg(dir.path().join("turndb"))
            .arg("--pidfile")
            .arg(dir.path().join("turnserver.pid"))
            .arg("--log-file")
            .arg(&log_path)
            .arg("--simple-log")
            .arg("--no-stdout-log")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CoturnError::NotInstalled(e)
            } else {
                CoturnError::Io(e)
            }
        })?;
        let mut server = Coturn {
            child,
            dir,
            port,
            tls_port,
            relay_ports,
            certificate_der: cert.cert.der().to_vec(),
        };
        server.wait_listening()?;
        Ok(server)
    }

    fn wait_listening(&mut self) -> Result<(), CoturnError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        probe.set_read_timeout(Some(Duration::from_millis(100)))?;
        let mut answered = false;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(CoturnError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if !answered {
                answered = binding_answered(&probe, self.udp_addr());
            }
            if answered && accepts(self.tcp_addr()) && accepts(self.tls_addr()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CoturnError::NotListening {
                    timeout: START_TIMEOUT,
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The UDP (and plain TCP) listening address.
    pub fn udp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
    /// The plain TCP listening address (the same port as UDP).
    pub fn tcp_addr(&self) -> SocketAddr {
        self.udp_addr()
    }
    /// The TLS listening address.
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.tls_port))
    }
    /// `turn:127.0.0.1:PORT?transport=udp`.
    pub fn udp_url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=udp", self.port)
    }
    /// `turn:127.0.0.1:PORT?transport=tcp`.
    pub fn tcp_url(&self) -> String {
        format!("turn:127.0.0.1:{}?transport=tcp", self.port)
    }
    /// `turns:127.0.0.1:TLSPORT` (TLS over TCP).
    pub fn tls_url(&self) -> String {
        format!("turns:127.0.0.1:{}", self.tls_port)
    }
    /// The test user's name.
    pub fn username(&self) -> &'static str {
        USERNAME
    }
    /// The test user's password.
    pub fn password(&self) -> &'static str {
        PASSWORD
    }
    /// The realm.
    pub fn realm(&self) -> &'static str {
        REALM
    }
    /// The self-signed TLS certificate (DER), for the client's trusted roots.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }
    /// The ports relayed addresses are taken from.
    pub fn relay_ports(&self) -> RangeInclusive<u16> {
        self.relay_ports.clone()
    }
    /// The temporary directory (certificate, key, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The PID of the `turnserver` child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("turnserver.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only, and wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 right now (the kernel's choice for TCP,
/// checked on UDP too).
fn free_port() -> io::Result<u16> {
    for _ in 0..64 {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free for both TCP and UDP",
    ))
}

/// Send a STUN Binding request and wait briefly for any Binding success answer.
fn binding_answered(socket: &UdpSocket, server: SocketAddr) -> bool {
    let mut request = [0u8; 20];
    request[..2].copy_from_slice(&0x0001u16.to_be_bytes());
    request[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    request[8..20].copy_from_slice(b"sansrtcprobe");
    if socket.send_to(&request, server).is_err() {
        return false;
    }
    let mut buf = [0u8; 1500];
    match socket.recv_from(&mut buf) {
        Ok((n, from)) => {
            from == server && n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == request[8..20]
        }
        Err(_) => false,
    }
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> io::Result<TempDir> {
        static COUNTER: AtomicU16 = AtomicU16::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "sansrtc-{prefix}-{}-{n}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
