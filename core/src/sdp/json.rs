//! JSON forms exactly as the browser's `RTCSessionDescriptionInit` and `RTCIceCandidateInit`,
//! so `JSON.stringify(pc.localDescription)` and `JSON.stringify(event.candidate)` parse unchanged.

use serde::{Deserialize, Serialize};

/// `RTCSdpType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
    /// `pranswer`.
    Pranswer,
    /// `rollback`.
    Rollback,
}

impl SdpType {
    /// The W3C string.
    pub fn as_str(self) -> &'static str {
        match self {
            SdpType::Offer => "offer",
            SdpType::Answer => "answer",
            SdpType::Pranswer => "pranswer",
            SdpType::Rollback => "rollback",
        }
    }
}

/// `RTCSessionDescriptionInit`: `{"type":"offer","sdp":"v=0\r\n..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// The description's type.
    #[serde(rename = "type")]
    pub kind: SdpType,
    /// The SDP text (empty for rollback).
    #[serde(default)]
    pub sdp: String,
}

impl SessionDescription {
    /// An offer.
    pub fn offer(sdp: impl Into<String>) -> Self {
        SessionDescription {
            kind: SdpType::Offer,
            sdp: sdp.into(),
        }
    }

    /// An answer.
    pub fn answer(sdp: impl Into<String>) -> Self {
        SessionDescription {
            kind: SdpType::Answer,
            sdp: sdp.into(),
        }
    }

    /// A rollback.
    pub fn rollback() -> Self {
        SessionDescription {
            kind: SdpType::Rollback,
            sdp: String::new(),
        }
    }
}

/// `RTCIceCandidateInit`: `{"candidate":"candidate:...","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}`.
/// An empty `candidate` string means end of candidates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidateInit {
    /// The `candidate:...` attribute value, or empty for end of candidates.
    #[serde(default)]
    pub candidate: String,
    /// The mid of the media section it belongs to.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The index of that media section.
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_m_line_index: Option<u16>,
    /// The ICE ufrag it belongs to.
    #[serde(default)]
    pub username_fragment: Option<String>,
}

impl IceCandidateInit {
    /// Whether this is the end-of-candidates marker (empty candidate string).
    pub fn is_end_of_candidates(&self) -> bool {
        self.candidate.trim().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_description_json_matches_browser() {
        let js = r#"{"type":"offer","sdp":"v=0\r\n"}"#;
        let d: SessionDescription = serde_json::from_str(js).expect("parse");
        assert_eq!(d.kind, SdpType::Offer);
        assert_eq!(d.sdp, "v=0\r\n");
        assert_eq!(serde_json::to_string(&d).expect("json"), js);
        let r: SessionDescription = serde_json::from_str(r#"{"type":"rollback"}"#).expect("parse");
        assert_eq!(r, SessionDescription::rollback());
        assert!(
            serde_json::from_str::<SessionDescription>(r#"{"type":"bogus","sdp":""}"#).is_err()
        );
    }

    #[test]
    fn candidate_json_matches_browser() {
        let js = r#"{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#;
        let c: IceCandidateInit = serde_json::from_str(js).expect("parse");
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.sdp_m_line_index, Some(0));
        assert_eq!(c.username_fragment.as_deref(), Some("abcd"));
        assert_eq!(serde_json::to_string(&c).expect("json"), js);
        // Chromium's end-of-candidates form and a null-heavy form.
        let end: IceCandidateInit = serde_json::from_str(
            r#"{"candidate":"","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":null}"#,
        )
        .expect("parse");
        assert!(end.is_end_of_candidates());
        let bare: IceCandidateInit = serde_json::from_str("{}").expect("parse");
        assert!(bare.is_end_of_candidates());
    }
}
