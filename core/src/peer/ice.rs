//! The ICE agent in the PeerConnection: the configured STUN servers it uses, its events
//! translated into the PeerConnection's (candidates, gathering and connection states),
//! and `connectionState` from the ICE and DTLS states.

use std::net::SocketAddr;
use std::time::Instant;

use super::{
    ConnectionState, DtlsState, Event, IceConnectionState, IceGatheringState, PeerConnection,
};
use crate::ice::{CandidateAddress, IceEvent};

impl PeerConnection {
    pub(super) fn add_configured_stun_servers(&mut self, now: Instant) {
        let urls: Vec<String> = self
            .config
            .ice_servers
            .iter()
            .flat_map(|s| s.urls.iter().cloned())
            .collect();
        for url in urls {
            match stun_url_address(&url) {
                Some(addr) => self.ice.add_stun_server(now, addr),
                // TURN URLs are the relay module's (and counted there).
                None if !is_turn_url(&url) => self.stats.ice_servers_skipped += 1,
                None => {}
            }
        }
    }

    /// Move the ICE agent's events into ours, translating them.
    pub(super) fn pump(&mut self, now: Instant) {
        if !self.relays.is_empty() {
            for ev in self.relays.pump(now, &mut self.ice) {
                self.push_event(ev);
            }
        }
        while let Some(ev) = self.ice.poll_event() {
            match ev {
                IceEvent::LocalCandidate(c) => {
                    let text = c.to_string();
                    let value = text.strip_prefix("candidate:").unwrap_or(&text).to_string();
                    let init = self.neg.local_candidate_init(
                        format!("candidate:{value}"),
                        &self.ice.local_credentials().ufrag,
                    );
                    self.local_candidates.push(value);
                    self.push_event(Event::IceCandidate(init));
                }
                IceEvent::GatheringStateChange(state) => {
                    if state == IceGatheringState::Complete && !self.gathering_complete {
                        self.gathering_complete = true;
                        let end = self.neg.local_candidate_init(
                            String::new(),
                            &self.ice.local_credentials().ufrag,
                        );
                        self.push_event(Event::IceCandidate(end));
                    }
                    if state != IceGatheringState::Complete {
                        self.gathering_complete = false;
                    }
                    if self.ice_gathering != state {
                        self.ice_gathering = state;
                        self.push_event(Event::IceGatheringStateChange(state));
                    }
                }
                IceEvent::ConnectionStateChange(state) => {
                    if self.ice_connection != state {
                        self.ice_connection = state;
                        self.push_event(Event::IceConnectionStateChange(state));
                    }
                    self.update_connection_state();
                }
                IceEvent::SelectedPairChange(pair) => {
                    self.relays.on_selected(now, pair);
                    self.maybe_start_dtls(now);
                }
                IceEvent::MdnsCandidate(c) => {
                    if let CandidateAddress::Mdns { hostname, .. } = &c.address {
                        let candidate = self.neg.remote_candidate_init(
                            c.to_string(),
                            self.ice.remote_credentials().map(|r| r.ufrag.clone()),
                        );
                        self.push_event(Event::UnresolvedCandidate {
                            hostname: hostname.clone(),
                            candidate,
                        });
                    }
                }
            }
        }
        self.pump_dtls(now);
        self.pump_data(now);
    }

    /// `connectionState` from the ICE and DTLS transports' states (W3C 4.4.3).
    pub(super) fn update_connection_state(&mut self) {
        let ice = self.ice_connection;
        let dtls = self.dtls_state;
        let state = if ice == IceConnectionState::Closed {
            ConnectionState::Closed
        } else if ice == IceConnectionState::Failed || dtls == DtlsState::Failed {
            ConnectionState::Failed
        } else if ice == IceConnectionState::Disconnected {
            ConnectionState::Disconnected
        } else if ice == IceConnectionState::New && dtls == DtlsState::New {
            ConnectionState::New
        } else if matches!(
            ice,
            IceConnectionState::Connected | IceConnectionState::Completed
        ) && matches!(dtls, DtlsState::Connected | DtlsState::Closed)
        {
            // W3C: "connected" when every transport is connected, completed or closed
            // (a DTLS transport the peer closed counts as done, not as connecting).
            ConnectionState::Connected
        } else {
            ConnectionState::Connecting
        };
        if state != self.connection {
            self.connection = state;
            self.push_event(Event::ConnectionStateChange(state));
        }
    }
}

fn is_turn_url(url: &str) -> bool {
    crate::turn::ServerUrl::parse(url).is_ok_and(|u| u.scheme.is_turn())
        || url.to_ascii_lowercase().starts_with("turn")
}

/// The address of a `stun:` URL whose host is an IP literal (RFC 7064): `stun:1.2.3.4`,
/// `stun:1.2.3.4:3478`, `stun:[::1]:3478`. Host names and other schemes give `None`.
fn stun_url_address(url: &str) -> Option<SocketAddr> {
    crate::turn::ServerUrl::parse(url)
        .ok()
        .filter(|u| u.scheme == crate::turn::Scheme::Stun)
        .and_then(|u| u.socket_addr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_urls() {
        assert_eq!(
            stun_url_address("stun:10.0.0.1:3479"),
            "10.0.0.1:3479".parse().ok()
        );
        assert_eq!(
            stun_url_address("stun:10.0.0.1"),
            "10.0.0.1:3478".parse().ok()
        );
        assert_eq!(
            stun_url_address("stun:[::1]:5000"),
            "[::1]:5000".parse().ok()
        );
        assert_eq!(stun_url_address("stun:[::1]"), "[::1]:3478".parse().ok());
        assert_eq!(stun_url_address("stun:stun.l.google.com:19302"), None);
        assert_eq!(stun_url_address("turn:10.0.0.1"), None);
    }
}
