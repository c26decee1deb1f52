//! The DTLS transport in the PeerConnection: which datagrams reach DTLS, when the
//! handshake starts, and what its events do (SRTP keys, SCTP packets, states).
//!
//! DTLS (and SCTP inside it) is accepted only from a remote address ICE has validated on
//! the local address it arrived at ([`IceAgent::is_validated`]: the selected pair, or a
//! pair on which the remote proved it knows the ICE password). Anything else is dropped
//! and counted in `PeerStats::dtls_unvalidated_dropped`, so a stranger's ClientHello can
//! neither start nor disturb a handshake.
//!
//! A browser's ClientHello can beat its answer (ARCHITECTURE.md, "DTLS role from the
//! answer"), and a reordering network can deliver it before the check that validates its
//! source: until DTLS starts, up to [`MAX_EARLY_DTLS`] datagrams wait with their
//! addresses. DTLS starts once the role is known and ICE selected a pair or a waiting
//! datagram's source is validated; then the validated ones are fed in order and the rest
//! dropped and counted. A full buffer makes room for a datagram from a validated source
//! by dropping the oldest one from an unvalidated source.
//!
//! [`IceAgent::is_validated`]: crate::ice::IceAgent::is_validated

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{DtlsState, Event, PeerConnection, RemoteClose};
use crate::dtls::{DtlsConfig, DtlsEndpoint, DtlsEvent, DtlsRole};
use crate::ice::IceAgent;
use crate::srtp::SrtpContext;

/// DTLS datagrams kept until DTLS starts (the peer's ClientHello can arrive before its
/// answer, or before the check that validates its address).
pub(super) const MAX_EARLY_DTLS: usize = 8;

/// A DTLS datagram that arrived before DTLS started.
#[derive(Debug)]
struct EarlyDatagram {
    local: SocketAddr,
    remote: SocketAddr,
    data: Vec<u8>,
}

/// The DTLS datagrams waiting for DTLS to start. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct EarlyDtls {
    datagrams: VecDeque<EarlyDatagram>,
}

impl EarlyDtls {
    /// Whether a waiting datagram comes from an address ICE has validated.
    fn any_validated(&self, ice: &IceAgent) -> bool {
        self.datagrams
            .iter()
            .any(|d| ice.is_validated(d.local, d.remote))
    }

    /// Keep a datagram. Returns how many datagrams from unvalidated sources were
    /// dropped (this one, or an older one it replaced), and whether a datagram from a
    /// validated source was dropped for lack of room.
    fn push(&mut self, ice: &IceAgent, datagram: EarlyDatagram) -> (u64, bool) {
        if self.datagrams.len() < MAX_EARLY_DTLS {
            self.datagrams.push_back(datagram);
            return (0, false);
        }
        if !ice.is_validated(datagram.local, datagram.remote) {
            return (1, false);
        }
        let stranger = self
            .datagrams
            .iter()
            .position(|d| !ice.is_validated(d.local, d.remote));
        match stranger {
            Some(i) => {
                self.datagrams.remove(i);
                self.datagrams.push_back(datagram);
                (1, false)
            }
            None => (0, true),
        }
    }
}

impl PeerConnection {
    /// A DTLS datagram arrived on `local` from `remote`.
    pub(super) fn handle_dtls_datagram(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) {
        match self.dtls.as_mut() {
            Some(dtls) if self.ice.is_validated(local, remote) => dtls.handle_datagram(now, data),
            Some(_) => self.count_unvalidated_dtls(1),
            None => {
                let early = EarlyDatagram {
                    local,
                    remote,
                    data: data.to_vec(),
                };
                let (unvalidated, full) = self.early_dtls.push(&self.ice, early);
                self.count_unvalidated_dtls(unvalidated);
                if full {
                    self.stats.datagrams_dropped += 1;
                }
            }
        }
        self.maybe_start_dtls(now);
    }

    fn count_unvalidated_dtls(&mut self, n: u64) {
        self.stats.dtls_unvalidated_dropped += n;
        self.stats.datagrams_dropped += n;
    }

    /// Start DTLS once the role is known and ICE has a pair (or, as server, once the
    /// peer's ClientHello arrived from a validated address).
    pub(super) fn maybe_start_dtls(&mut self, now: Instant) {
        if self.dtls.is_some() || self.closed {
            return;
        }
        let Some((role, fingerprint)) = self.dtls_params.clone() else {
            return;
        };
        let ready =
            self.ice.selected_addresses().is_some() || self.early_dtls.any_validated(&self.ice);
        if !ready {
            return;
        }
        let config = DtlsConfig {
            srtp_profiles: self.config.srtp_profiles.clone(),
            mtu: self.config.mtu,
            // We run ICE first, and only validated addresses reach DTLS: no cookie needed.
            require_cookie: false,
            // ICE already measured that the path works: retransmit sooner than RFC 6347's 1 s.
            initial_retransmit: Duration::from_millis(400),
            max_retransmits: 12,
            max_retransmit_timeout: Duration::from_secs(3),
        };
        let mut dtls = DtlsEndpoint::new(
            role,
            &self.certificate,
            fingerprint,
            config,
            self.rng.fork(),
            now,
        );
        let mut strangers = 0;
        for d in std::mem::take(&mut self.early_dtls.datagrams) {
            if self.ice.is_validated(d.local, d.remote) {
                dtls.handle_datagram(now, &d.data);
            } else {
                strangers += 1;
            }
        }
        self.count_unvalidated_dtls(strangers);
        self.dtls = Some(dtls);
        self.set_dtls_state(DtlsState::Connecting);
        self.pump(now);
    }

    /// The DTLS transport's state, with a `DtlsStateChange` event when it changes.
    pub(super) fn set_dtls_state(&mut self, state: DtlsState) {
        if self.dtls_state != state {
            self.dtls_state = state;
            self.push_event(Event::DtlsStateChange(state));
        }
    }

    /// The authenticated peer said it is done: tell the application, once.
    pub(super) fn remote_closed(&mut self, how: RemoteClose) {
        if !self.remote_closed && !self.closed {
            self.remote_closed = true;
            self.push_event(Event::RemoteClosed(how));
        }
    }

    /// Carry out what DTLS reported: SRTP keys and SCTP on connection, failures, SCTP
    /// packets.
    pub(super) fn pump_dtls(&mut self, now: Instant) {
        while let Some(ev) = self.dtls.as_mut().and_then(DtlsEndpoint::poll_event) {
            match ev {
                DtlsEvent::Connected {
                    srtp_profile,
                    keying_material,
                } => {
                    let is_client = self.dtls_role() == Some(DtlsRole::Client);
                    if let Ok((out, inb)) = SrtpContext::pair_from_keying_material(
                        srtp_profile,
                        &keying_material,
                        is_client,
                    ) {
                        self.media
                            .install_keys(self.last_now, out, inb, &mut self.rng);
                    }
                    // The keying material lives on only inside the SRTP contexts.
                    self.srtp = Some(srtp_profile);
                    self.set_dtls_state(DtlsState::Connected);
                    self.maybe_start_sctp(now);
                }
                DtlsEvent::Failed(e) => {
                    self.set_dtls_state(DtlsState::Failed);
                    self.push_event(Event::DtlsFailed(e));
                }
                // Only an authenticated (epoch-1) close_notify gets here.
                DtlsEvent::Closed => {
                    self.set_dtls_state(DtlsState::Closed);
                    // The transport is gone: every data channel closes with it (W3C), and
                    // the ABORT this queues has no transport left to leave on.
                    self.data.abort();
                    self.pump_data(now);
                    self.remote_closed(RemoteClose::CloseNotify);
                }
                // One SCTP packet per record (RFC 8261).
                DtlsEvent::ApplicationData(packet) => {
                    if self.data_started {
                        self.data.handle_packet(now, &packet);
                    } else {
                        self.stats.datagrams_dropped += 1;
                    }
                }
            }
            self.update_connection_state();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IceConfig;
    use crate::rng::Rng;
    use crate::stun::{Attribute, Class, Message, Method, TransactionId};
    use crate::transmit::Protocol;

    fn datagram(remote: SocketAddr, byte: u8) -> EarlyDatagram {
        EarlyDatagram {
            local: "10.0.0.1:5000".parse().expect("addr"),
            remote,
            data: vec![22, 254, 253, byte],
        }
    }

    /// Strangers fill the early buffer; another stranger is dropped, but a datagram from
    /// a validated address replaces the oldest stranger, so a flood cannot keep the real
    /// ClientHello out.
    #[test]
    fn a_validated_datagram_displaces_a_stranger_in_a_full_buffer() {
        let now = Instant::now();
        let local: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
        let peer: SocketAddr = "10.0.0.2:6000".parse().expect("addr");
        let mut ice = IceAgent::new(&IceConfig::default(), Rng::from_seed(3), false);
        ice.add_local_address(now, local, Protocol::Udp);
        let ufrag = ice.local_credentials().ufrag.clone();
        let pwd = ice.local_credentials().pwd.clone();
        let check = Message::new(Class::Request, Method::BINDING, TransactionId([1; 12]))
            .with(Attribute::Username(format!("{ufrag}:them")))
            .with(Attribute::Priority(1))
            .with(Attribute::IceControlling(1))
            .encode_to_vec(Some(pwd.as_bytes()), true);
        ice.handle_stun(now, local, peer, Protocol::Udp, &check);
        assert!(ice.is_validated(local, peer));

        let mut early = EarlyDtls::default();
        for i in 0..MAX_EARLY_DTLS {
            let stranger = SocketAddr::from(([10, 0, 0, 66], 6000 + i as u16));
            assert_eq!(early.push(&ice, datagram(stranger, 0)), (0, false));
        }
        assert!(!early.any_validated(&ice));
        let stranger: SocketAddr = "10.0.0.67:1".parse().expect("addr");
        assert_eq!(early.push(&ice, datagram(stranger, 1)), (1, false));
        assert_eq!(
            early.push(&ice, datagram(peer, 2)),
            (1, false),
            "a stranger made room"
        );
        assert_eq!(early.datagrams.len(), MAX_EARLY_DTLS);
        assert!(early.any_validated(&ice));
        assert_eq!(
            early.datagrams.front().map(|d| d.remote.port()),
            Some(6001),
            "the oldest stranger went"
        );
        // Full of validated datagrams: the next one has no room.
        for _ in 0..MAX_EARLY_DTLS {
            early.push(&ice, datagram(peer, 3));
        }
        assert_eq!(early.push(&ice, datagram(peer, 4)), (0, true));
    }
}
