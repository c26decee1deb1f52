//! TURN over TCP and TLS (RFC 8656 section 3.1, RFC 7065 `?transport=tcp` and `turns:`):
//! what the core cannot do itself. Written once with blocking sockets and threads, so the
//! tokio, smol and std runtimes share it unchanged.
//!
//! Per stream, one thread resolves the server's name, checks the address against the
//! [`NetConfig`], connects (bound to a configured local address), does the TLS handshake
//! (rustls on ring; SNI from the URL host), reports [`StreamInput::Connected`] and then
//! reads: the byte stream is split into whole TURN messages by [`Framer`] (a STUN message
//! or a padded ChannelData, `stream_frame_len`), each sent on as one
//! [`StreamInput::Frame`]. A second thread writes the frames the driver queues, each
//! exactly one framed message as the core produced it.
//!
//! Bounded everywhere: a frame larger than [`MAX_FRAME`] or bytes that start no TURN
//! message close the stream ([`StreamError::Framing`]), so a peer cannot grow our memory;
//! the reader holds at most one partial frame; the driver's input channel is bounded (a
//! full one stops the reader, and TCP's window then stops the server); the write queue
//! holds [`WRITE_QUEUE`] frames, and a frame meeting a full queue is dropped and counted,
//! as a datagram would be on a congested link.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use sansrtc::turn::wire::stream_frame_len;
use sansrtc::turn::{Scheme, ServerHost, ServerTransport, ServerUrl};

use crate::net::{Interfaces, NetConfig};
use crate::resources::Gauge;

/// The largest TURN message accepted from a stream: a STUN message of the largest length
/// (20 + 65,535 bytes) or a padded ChannelData (4 + 65,535, padded to four).
pub const MAX_FRAME: usize = 20 + 65_535 + 1;
/// Frames queued for one stream's writer.
pub const WRITE_QUEUE: usize = 256;
/// How long connecting and the TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A write that cannot make progress for this long closes the stream.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const READ_CHUNK: usize = 16 * 1024;

/// Why a TURN stream could not be opened or was closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The URL is not a TURN URL over a stream.
    #[error("not a TURN URL over TCP or TLS")]
    NotAStream,
    /// The host name did not resolve (to an address of an allowed family).
    #[error("{host} did not resolve: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        source: io::Error,
    },
    /// The server's address is not one the [`NetConfig`] allows us to reach (in loopback
    /// mode only loopback servers are contacted, and with explicit addresses only servers
    /// of a family we have an address of).
    #[error("the network configuration does not allow connecting to {0}")]
    NotAllowed(SocketAddr),
    /// Connecting, reading or writing failed.
    #[error("TURN stream: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake or a record failed (an untrusted certificate included).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// No trusted root certificate could be loaded.
    #[error("no trusted root certificates for TLS")]
    NoRoots,
    /// The server sent bytes that are not a TURN message, or one larger than [`MAX_FRAME`].
    #[error("TURN stream framing: {0}")]
    Framing(#[from] FrameError),
    /// The server closed the stream.
    #[error("the server closed the stream")]
    Closed,
}

/// Why [`Framer`] gave up on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The stream does not start a STUN or ChannelData message here.
    #[error("bytes that start no TURN message")]
    Junk,
    /// A message longer than the limit.
    #[error("a message of {0} bytes, over the limit")]
    TooLarge(usize),
}

/// Splits a TURN byte stream into whole messages, holding at most one partial message.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    max_frame: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(MAX_FRAME)
    }
}

impl Framer {
    /// A framer refusing messages longer than `max_frame`.
    pub fn new(max_frame: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            max_frame,
        }
    }

    /// Bytes held of an incomplete message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feed bytes read from the stream; `on_frame` gets each whole message in order. After
    /// an error the stream must be closed.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut on_frame: impl FnMut(&[u8]),
    ) -> Result<(), FrameError> {
        // Complete a held partial message first.
        if !self.buf.is_empty() {
            loop {
                match self.frame_len(&self.buf)? {
                    Some(len) => {
                        let need = len - self.buf.len();
                        let take = need.min(data.len());
                        self.buf.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if self.buf.len() < len {
                            return Ok(());
                        }
                        on_frame(&self.buf);
                        self.buf.clear();
                        break;
                    }
                    None => {
                        // Fewer than four bytes held: take one more and look again.
                        let Some((first, rest)) = data.split_first() else {
                            return Ok(());
                        };
                        self.buf.push(*first);
                        data = rest;
                    }
                }
            }
        }
        // Whole messages straight from the caller's buffer, then keep the tail.
        loop {
            match self.frame_len(data)? {
                Some(len) if len <= data.len() => {
                    on_frame(&data[..len]);
                    data = &data[len..];
                }
                _ => {
                    self.buf.extend_from_slice(data);
                    return Ok(());
                }
            }
        }
    }

    /// The length of the message starting `buf`: `None` if fewer than 4 bytes are there.
    fn frame_len(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = stream_frame_len(buf).ok_or(FrameError::Junk)?;
        if len > self.max_frame {
            return Err(FrameError::TooLarge(len));
        }
        Ok(Some(len))
    }
}

/// The certificates a `turns:` connection trusts.
#[derive(Clone, Default)]
pub struct TlsRoots {
    /// Leave out the platform's trusted roots (tests trusting only their own certificate).
    pub no_platform_roots: bool,
    /// Extra trusted certificates, DER (a private CA, or a test server's self-signed one).
    pub extra: Vec<Vec<u8>>,
}

impl std::fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRoots")
            .field("no_platform_roots", &self.no_platform_roots)
            .field("extra", &self.extra.len())
            .finish()
    }
}

impl TlsRoots {
    /// Only these certificates (DER), not the platform's.
    pub fn only(certificates: Vec<Vec<u8>>) -> TlsRoots {
        TlsRoots {
            no_platform_roots: true,
            extra: certificates,
        }
    }

    /// The rustls client configuration: ring's provider, TLS 1.3 and 1.2.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, StreamError> {
        let mut roots = rustls::RootCertStore::empty();
        if !self.no_platform_roots {
            // Unreadable platform certificates are skipped, as every TLS client does.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        for der in &self.extra {
            roots.add(CertificateDer::from(der.clone()))?;
        }
        if roots.is_empty() {
            return Err(StreamError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// A TURN server reached over a stream: what the runtime connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The URL as configured (reported in errors).
    pub url: String,
    /// The parsed URL.
    pub parsed: ServerUrl,
}

impl StreamTarget {
    /// `turn:...?transport=tcp` and `turns:` URLs; `None` for anything else.
    pub fn from_url(url: &str) -> Option<StreamTarget> {
        let parsed = ServerUrl::parse(url).ok()?;
        let stream = match parsed.scheme {
            Scheme::Turns => true,
            Scheme::Turn => parsed.transport == ServerTransport::Tcp,
            Scheme::Stun | Scheme::Stuns => false,
        };
        stream.then(|| StreamTarget {
            url: url.to_owned(),
            parsed,
        })
    }

    /// TLS (`turns:`).
    pub fn is_tls(&self) -> bool {
        self.parsed.scheme.is_secure()
    }

    fn host_string(&self) -> String {
        match &self.parsed.host {
            ServerHost::Ip(ip) => ip.to_string(),
            ServerHost::Name(name) => name.clone(),
        }
    }
}

/// Resolve a URL's host (blocking DNS for names) to the addresses `net` allows, in the
/// resolver's order.
pub fn resolve(url: &ServerUrl, net: &NetConfig) -> Result<Vec<SocketAddr>, StreamError> {
    let found: Vec<SocketAddr> = match &url.host {
        ServerHost::Ip(ip) => vec![SocketAddr::new(*ip, url.port)],
        ServerHost::Name(name) => (name.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|source| StreamError::Resolve {
                host: name.clone(),
                source,
            })?
            .collect(),
    };
    let allowed: Vec<SocketAddr> = found
        .iter()
        .copied()
        .filter(|a| local_ip_for(a, net).is_ok())
        .collect();
    match (allowed.is_empty(), found.first()) {
        (false, _) => Ok(allowed),
        (true, Some(first)) => Err(StreamError::NotAllowed(*first)),
        (true, None) => Err(StreamError::Resolve {
            host: match &url.host {
                ServerHost::Ip(ip) => ip.to_string(),
                ServerHost::Name(n) => n.clone(),
            },
            source: io::Error::new(io::ErrorKind::NotFound, "no address"),
        }),
    }
}

/// The local address to bind before contacting `server`, as `net` says: 127.0.0.1 (or
/// ::1) in loopback mode, and only for loopback servers; a configured address of the
/// server's family that passes the filter; with `Auto`, the kernel's choice (`None`),
/// checked against the filter after connecting.
pub fn local_ip_for(server: &SocketAddr, net: &NetConfig) -> Result<Option<IpAddr>, StreamError> {
    let allowed = |ip: IpAddr| net.ip_filter.as_ref().is_none_or(|f| f(ip));
    match &net.interfaces {
        Interfaces::Loopback => {
            if !server.ip().is_loopback() {
                return Err(StreamError::NotAllowed(*server));
            }
            let ip = match server {
                SocketAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                SocketAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            };
            if allowed(ip) {
                Ok(Some(ip))
            } else {
                Err(StreamError::NotAllowed(*server))
            }
        }
        Interfaces::Addresses(_) => net
            .addresses()
            .into_iter()
            .find(|ip| ip.is_ipv4() == server.is_ipv4())
            .map(Some)
            .ok_or(StreamError::NotAllowed(*server)),
        Interfaces::Auto => {
            if server.is_ipv6() && !net.ipv6 {
                return Err(StreamError::NotAllowed(*server));
            }
            Ok(None)
        }
    }
}

/// rustls reports handshake failures from `complete_io` inside an `io::Error`: take the
/// TLS error back out so the caller sees e.g. an untrusted certificate as such.
fn tls_error(e: io::Error) -> StreamError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => StreamError::Tls(tls.clone()),
        None => StreamError::Io(e),
    }
}

fn connect_tcp(server: SocketAddr, net: &NetConfig) -> Result<TcpStream, StreamError> {
    let local = local_ip_for(&server, net)?;
    let domain = socket2::Domain::for_address(server);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    if let Some(ip) = local {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&server.into(), CONNECT_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    let bound = stream.local_addr()?;
    if net.ip_filter.as_ref().is_some_and(|f| !f(bound.ip())) {
        let _ = stream.shutdown(Shutdown::Both);
        return Err(StreamError::NotAllowed(server));
    }
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connected TURN stream (plain TCP, or TLS over it), blocking. Split it with
/// [`TurnStream::split`] into a reader and a writer for two threads.
pub struct TurnStream {
    tcp: TcpStream,
    tls: Option<rustls::ClientConnection>,
    server: SocketAddr,
    local: SocketAddr,
}

impl std::fmt::Debug for TurnStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnStream")
            .field("server", &self.server)
            .field("local", &self.local)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl TurnStream {
    /// Resolve, connect and (for `turns:`) complete the TLS handshake, blocking. Tries the
    /// allowed addresses in order.
    pub fn connect(
        target: &StreamTarget,
        net: &NetConfig,
        roots: &TlsRoots,
    ) -> Result<TurnStream, StreamError> {
        let tls = if target.is_tls() {
            Some(roots.client_config()?)
        } else {
            None
        };
        let mut last = None;
        for server in resolve(&target.parsed, net)? {
            match TurnStream::connect_addr(target, server, net, tls.clone()) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(StreamError::Closed))
    }

    fn connect_addr(
        target: &StreamTarget,
        server: SocketAddr,
        net: &NetConfig,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<TurnStream, StreamError> {
        let mut tcp = connect_tcp(server, net)?;
        let local = tcp.local_addr()?;
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = match &target.parsed.host {
                    ServerHost::Ip(ip) => ServerName::IpAddress((*ip).into()),
                    ServerHost::Name(_) => ServerName::try_from(target.host_string())
                        .map_err(|_| rustls::Error::General("invalid server name".into()))?,
                };
                let mut conn = rustls::ClientConnection::new(config, name)?;
                tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                tcp.set_write_timeout(Some(CONNECT_TIMEOUT))?;
                while conn.is_handshaking() {
                    let (read, _) = conn.complete_io(&mut tcp).map_err(tls_error)?;
                    if read == 0 && conn.is_handshaking() && !conn.wants_write() {
                        return Err(StreamError::Closed);
                    }
                }
                Some(conn)
            }
        };
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(TurnStream {
            tcp,
            tls,
            server,
            local,
        })
    }

    /// The server's address.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Our end's address (what the core uses as the local address of this transport).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A reader and a writer, usable from two threads, and a control that closes both.
    pub fn split(self) -> io::Result<(StreamReader, StreamWriter, StreamControl)> {
        let control = StreamControl(self.tcp.try_clone()?);
        let write_tcp = self.tcp.try_clone()?;
        let tls = self.tls.map(|c| Arc::new(Mutex::new(c)));
        Ok((
            StreamReader {
                tcp: self.tcp,
                tls: tls.clone(),
                framer: Framer::default(),
                raw: vec![0u8; READ_CHUNK],
                plain: vec![0u8; READ_CHUNK],
                frames: Vec::new(),
            },
            StreamWriter {
                tcp: write_tcp,
                tls,
            },
            control,
        ))
    }
}

/// Closes the stream (both directions) when dropped or told to; the reader then sees
/// the end and its thread ends.
#[derive(Debug)]
pub struct StreamControl(TcpStream);

impl StreamControl {
    /// Shut the stream down now.
    pub fn shutdown(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

impl Drop for StreamControl {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn lock(
    tls: &Mutex<rustls::ClientConnection>,
) -> std::sync::MutexGuard<'_, rustls::ClientConnection> {
    // A panic elsewhere cannot leave the connection half-updated in a way that matters
    // more than closing it: take it anyway.
    tls.lock().unwrap_or_else(|e| e.into_inner())
}

/// The reading half: whole TURN messages.
pub struct StreamReader {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<rustls::ClientConnection>>>,
    framer: Framer,
    raw: Vec<u8>,
    plain: Vec<u8>,
    frames: Vec<Vec<u8>>,
}

impl StreamReader {
    /// Block until bytes arrive and hand every whole message in them to `on_frame`. Returns
    /// an error when the stream ended, failed or broke the framing.
    pub fn read_frames(&mut self, mut on_frame: impl FnMut(&[u8])) -> Result<(), StreamError> {
        let n = match self.tcp.read(&mut self.raw) {
            Ok(0) => return Err(StreamError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let Some(tls) = self.tls.clone() else {
            return Ok(self.framer.feed(&self.raw[..n], on_frame)?);
        };
        // Decrypt under the lock, hand the frames on after releasing it, so a full driver
        // input channel never holds up the writer. What one read yields is bounded: 16 KiB
        // of records plus the one partial message the framer held.
        let mut frames = std::mem::take(&mut self.frames);
        let result = self.decrypt(&tls, n, &mut frames);
        for frame in frames.drain(..) {
            on_frame(&frame);
        }
        self.frames = frames;
        result
    }

    fn decrypt(
        &mut self,
        tls: &Mutex<rustls::ClientConnection>,
        n: usize,
        frames: &mut Vec<Vec<u8>>,
    ) -> Result<(), StreamError> {
        let mut conn = lock(tls);
        let mut input = &self.raw[..n];
        while !input.is_empty() {
            conn.read_tls(&mut input)?;
            let state = conn.process_new_packets()?;
            if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                return Err(StreamError::Closed);
            }
            loop {
                match conn.reader().read(&mut self.plain) {
                    Ok(0) => return Err(StreamError::Closed),
                    Ok(m) => self
                        .framer
                        .feed(&self.plain[..m], |f| frames.push(f.to_vec()))?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Alerts or key updates the record layer wants to send.
        while conn.wants_write() {
            conn.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
}

/// The writing half.
pub struct StreamWriter {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<rustls::ClientConnection>>>,
}

impl StreamWriter {
    /// Write one framed message (blocking, bounded by the write timeout).
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), StreamError> {
        match &self.tls {
            None => self.tcp.write_all(frame)?,
            Some(tls) => {
                let mut conn = lock(tls);
                conn.writer().write_all(frame)?;
                while conn.wants_write() {
                    conn.write_tls(&mut self.tcp)?;
                }
            }
        }
        Ok(())
    }
}

/// What the stream threads tell the driver.
#[derive(Debug)]
pub enum StreamInput {
    /// Stream `index` is open: tell the core about it.
    Connected {
        /// Which configured stream.
        index: usize,
        /// Our end's address.
        local: SocketAddr,
        /// The server's address.
        server: SocketAddr,
        /// Closes the stream when dropped.
        control: StreamControl,
    },
    /// One whole TURN message from stream `index`.
    Frame {
        /// Which stream.
        index: usize,
        /// The message.
        data: Vec<u8>,
    },
    /// Stream `index` could not be opened, or ended.
    Closed {
        /// Which stream.
        index: usize,
        /// Why.
        error: StreamError,
    },
}

/// The driver's side of one stream: where its frames go.
#[derive(Debug)]
pub struct StreamSlot {
    /// The target.
    pub target: StreamTarget,
    writes: SyncSender<Vec<u8>>,
    /// Our end's and the server's address, once connected.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    control: Option<StreamControl>,
}

impl StreamSlot {
    /// Queue one framed message for the writer; false if the queue is full or the stream
    /// is gone (the message is lost, as a datagram would be).
    pub fn try_write(&self, frame: &[u8]) -> bool {
        match self.writes.try_send(frame.to_vec()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }

    /// The stream connected.
    pub fn connected(&mut self, local: SocketAddr, server: SocketAddr, control: StreamControl) {
        self.addresses = Some((local, server));
        self.control = Some(control);
    }

    /// The stream ended: drop its addresses and close it.
    pub fn closed(&mut self) {
        self.addresses = None;
        self.control = None;
    }
}

/// Start the threads of one stream: they connect and report on `inputs`. Returns the
/// driver's slot for it.
pub fn spawn_stream(
    index: usize,
    target: StreamTarget,
    net: NetConfig,
    roots: TlsRoots,
    inputs: async_channel::Sender<StreamInput>,
) -> io::Result<StreamSlot> {
    let (writes, queue) = sync_channel::<Vec<u8>>(WRITE_QUEUE);
    let thread_target = target.clone();
    let held = Gauge::TurnStreamThreads.hold(1);
    thread::Builder::new()
        .name(format!("sansrtc-turn-{index}"))
        .spawn(move || {
            let _held = held;
            stream_thread(index, thread_target, net, roots, inputs, queue)
        })?;
    Ok(StreamSlot {
        target,
        writes,
        addresses: None,
        control: None,
    })
}

fn stream_thread(
    index: usize,
    target: StreamTarget,
    net: NetConfig,
    roots: TlsRoots,
    inputs: async_channel::Sender<StreamInput>,
    queue: Receiver<Vec<u8>>,
) {
    let closed = |error| {
        let _ = inputs.send_blocking(StreamInput::Closed { index, error });
    };
    let stream = match TurnStream::connect(&target, &net, &roots) {
        Ok(s) => s,
        Err(e) => return closed(e),
    };
    let (local, server) = (stream.local_addr(), stream.server());
    let (mut reader, mut writer, control) = match stream.split() {
        Ok(parts) => parts,
        Err(e) => return closed(e.into()),
    };
    let writer_control = match control.0.try_clone() {
        Ok(c) => StreamControl(c),
        Err(e) => return closed(e.into()),
    };
    // Open until this thread's reader returns (the writer shuts the stream as it ends).
    let _open = Gauge::TurnStreams.hold(1);
    let held = Gauge::TurnStreamThreads.hold(1);
    let spawned = thread::Builder::new()
        .name(format!("sansrtc-turn-{index}-w"))
        .spawn(move || {
            let _held = held;
            // Ends when the driver drops its slot (queue closed) or a write fails; either
            // way the stream is shut so the reader ends too.
            while let Ok(frame) = queue.recv() {
                if writer.write_frame(&frame).is_err() {
                    break;
                }
            }
            drop(writer_control);
        });
    if let Err(e) = spawned {
        return closed(e.into());
    }
    if inputs
        .send_blocking(StreamInput::Connected {
            index,
            local,
            server,
            control,
        })
        .is_err()
    {
        return;
    }
    loop {
        let mut gone = false;
        let result = reader.read_frames(|frame| {
            if !gone
                && inputs
                    .send_blocking(StreamInput::Frame {
                        index,
                        data: frame.to_vec(),
                    })
                    .is_err()
            {
                gone = true;
            }
        });
        if gone {
            return;
        }
        if let Err(e) = result {
            return closed(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun(len: u16) -> Vec<u8> {
        let mut m = vec![0u8; 20 + usize::from(len)];
        m[2..4].copy_from_slice(&len.to_be_bytes());
        m[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        m
    }

    fn channel_data(len: u16) -> Vec<u8> {
        let mut m = vec![0x40, 0x00];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, usize::from(len)));
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn frames_split_at_every_byte_boundary() {
        let mut stream = stun(8);
        stream.extend(channel_data(5));
        stream.extend(stun(0));
        stream.extend(channel_data(0));
        let expected = vec![28, 12, 20, 4];
        for cut in 0..=stream.len() {
            for second in cut..=stream.len() {
                let mut framer = Framer::default();
                let mut got = Vec::new();
                for part in [&stream[..cut], &stream[cut..second], &stream[second..]] {
                    framer
                        .feed(part, |f| got.push(f.len()))
                        .expect("valid stream");
                }
                assert_eq!(got, expected, "cut at {cut} and {second}");
                assert_eq!(framer.pending(), 0);
            }
        }
    }

    #[test]
    fn junk_closes_the_stream() {
        let mut framer = Framer::default();
        let mut got = 0;
        let mut bytes = stun(4);
        bytes.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, 0x10]);
        assert_eq!(framer.feed(&bytes, |_| got += 1), Err(FrameError::Junk));
        assert_eq!(got, 1);
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_it_is_buffered() {
        let mut framer = Framer::new(1000);
        let big = stun(2000);
        assert_eq!(framer.feed(&big[..3], |_| {}), Ok(()));
        assert_eq!(
            framer.feed(&big[3..], |_| {}),
            Err(FrameError::TooLarge(2020))
        );
        // The held partial message never grows past the header it was refused on.
        assert!(framer.pending() <= 4);
    }

    #[test]
    fn held_bytes_stay_under_one_frame() {
        let mut framer = Framer::new(64);
        let mut n = 0;
        let msg = stun(40);
        for _ in 0..1000 {
            for b in &msg {
                framer
                    .feed(std::slice::from_ref(b), |_| n += 1)
                    .expect("valid");
                assert!(framer.pending() < 64);
            }
        }
        assert_eq!(n, 1000);
    }

    #[test]
    fn only_stream_turn_urls_are_targets() {
        assert!(StreamTarget::from_url("turn:127.0.0.1:3478?transport=tcp").is_some());
        assert!(StreamTarget::from_url("turns:turn.example.org").is_some_and(|t| t.is_tls()));
        assert!(StreamTarget::from_url("turn:127.0.0.1:3478").is_none());
        assert!(StreamTarget::from_url("stun:127.0.0.1").is_none());
    }

    #[test]
    fn explicit_addresses_bind_the_stream_and_the_filter_applies() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let server = listener.local_addr().expect("addr");
        let net = NetConfig {
            interfaces: Interfaces::Addresses(vec![IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)]),
            ..NetConfig::default()
        };
        let stream = connect_tcp(server, &net).expect("connect");
        assert_eq!(
            stream.local_addr().expect("addr").ip(),
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        );
        // No configured address of the server's family: refused before any packet.
        let v6: SocketAddr = "[::1]:3478".parse().expect("addr");
        assert!(matches!(
            connect_tcp(v6, &net),
            Err(StreamError::NotAllowed(_))
        ));
        // A filter that refuses the only address leaves nothing to connect from.
        let filtered = NetConfig {
            ip_filter: Some(Arc::new(|_| false)),
            ..net
        };
        assert!(matches!(
            connect_tcp(server, &filtered),
            Err(StreamError::NotAllowed(_))
        ));
    }

    #[test]
    fn loopback_mode_never_contacts_other_servers() {
        let net = NetConfig::loopback();
        let far: SocketAddr = "192.0.2.1:3478".parse().expect("addr");
        assert!(matches!(
            local_ip_for(&far, &net),
            Err(StreamError::NotAllowed(_))
        ));
        let url = ServerUrl::parse("turns:192.0.2.1").expect("url");
        assert!(matches!(
            resolve(&url, &net),
            Err(StreamError::NotAllowed(_))
        ));
        let near: SocketAddr = "127.0.0.1:3478".parse().expect("addr");
        assert_eq!(
            local_ip_for(&near, &net).expect("allowed"),
            Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        );
    }
}
