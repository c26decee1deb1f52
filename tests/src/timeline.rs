//! One-line descriptions of events and datagrams for the readable timeline, e.g.
//! `    0.153s  bob    ConnectionState Connected`.

use std::fmt::Write as _;

use sansrtc::peer::Event;
use sansrtc::stun::{Attribute, Class, Message, Method};
use sansrtc::transmit::DatagramKind;

/// One line describing an event.
pub fn describe(ev: &Event) -> String {
    match ev {
        Event::IceCandidate(c) if c.is_end_of_candidates() => {
            "IceCandidate end-of-candidates".to_string()
        }
        Event::IceCandidate(c) => {
            // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
            let parts: Vec<&str> = c.candidate.split(' ').collect();
            let field = |i: usize| parts.get(i).copied().unwrap_or("?");
            let addr = field(4);
            let addr = if addr.contains(':') {
                format!("[{addr}]")
            } else {
                addr.to_string()
            };
            format!("IceCandidate {} {addr}:{}", field(7), field(5))
        }
        Event::UnresolvedCandidate { hostname, .. } => format!("UnresolvedCandidate {hostname}"),
        Event::IceGatheringStateChange(s) => format!("IceGatheringState {s:?}"),
        Event::IceConnectionStateChange(s) => format!("IceConnectionState {s:?}"),
        Event::ConnectionStateChange(s) => format!("ConnectionState {s:?}"),
        Event::SignalingStateChange(s) => format!("SignalingState {s:?}"),
        Event::NegotiationNeeded => "NegotiationNeeded".to_string(),
        other => {
            let mut s = String::new();
            let _ = write!(s, "{other:?}");
            s
        }
    }
}

/// What a datagram is, for the timeline. A Binding request without USERNAME is a
/// gathering request to a STUN server; with one it is a connectivity check, or a consent
/// check when `on_selected_pair` (it travels over its sender's selected pair).
pub fn describe_datagram(data: &[u8], on_selected_pair: bool) -> String {
    match DatagramKind::classify(data) {
        DatagramKind::Stun => match Message::parse(data) {
            Ok(m) if m.method != Method::BINDING => format!("STUN {:?} {:?}", m.class, m.method),
            Ok(m)
                if m.class == Class::Request
                    && !m
                        .attributes
                        .iter()
                        .any(|a| matches!(a, Attribute::Username(_))) =>
            {
                "binding request".into()
            }
            Ok(m) if m.class == Class::Request && m.use_candidate() => {
                "check (USE-CANDIDATE)".into()
            }
            Ok(m) if m.class == Class::Request && on_selected_pair => "consent check".into(),
            Ok(m) if m.class == Class::Request => "check".into(),
            Ok(m) if m.class == Class::Success => "response".into(),
            Ok(m) if m.class == Class::Error => "error response".into(),
            Ok(_) => "STUN indication".into(),
            Err(_) => "malformed STUN".into(),
        },
        DatagramKind::Dtls => format!("DTLS {} bytes", data.len()),
        DatagramKind::ChannelData => format!("TURN ChannelData {} bytes", data.len()),
        DatagramKind::Rtp => format!("SRTP {} bytes", data.len()),
        DatagramKind::Unknown => format!("unknown datagram {} bytes", data.len()),
    }
}
