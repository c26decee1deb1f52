//! The PeerConnection's configuration (`RTCConfiguration` plus what a sans-IO core needs:
//! the random seed, the wall-clock origin, codec lists and ICE timing).

use std::time::{Duration, Instant, SystemTime};

use crate::dtls::cert::Certificate;
use crate::media::MediaKind;

/// One STUN or TURN server (`RTCIceServer`). Its `Debug` output never shows the credential.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs (RFC 7064/7065).
    pub urls: Vec<String>,
    /// TURN username.
    pub username: Option<String>,
    /// TURN password.
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl IceServer {
    /// A server with one URL and no credentials (e.g. a STUN server).
    pub fn url(url: impl Into<String>) -> IceServer {
        IceServer {
            urls: vec![url.into()],
            ..Default::default()
        }
    }
}

/// Which candidates ICE may use (`RTCIceTransportPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IceTransportPolicy {
    /// Every candidate type.
    #[default]
    All,
    /// Relay candidates only.
    Relay,
}

/// One RTP codec the PeerConnection offers or accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecConfig {
    /// The payload type used when we are the offerer.
    pub payload_type: u8,
    /// Encoding name as in `a=rtpmap`, e.g. `opus`, `VP8`, `H264`.
    pub name: String,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Audio channels (`None` for video or mono without the field).
    pub channels: Option<u16>,
    /// `a=fmtp` parameters, e.g. `minptime=10;useinbandfec=1`.
    pub fmtp: Option<String>,
    /// `a=rtcp-fb` values, e.g. `nack`, `nack pli`, `transport-cc`.
    pub rtcp_feedback: Vec<String>,
}

impl CodecConfig {
    /// A codec with no fmtp and no feedback.
    pub fn new(payload_type: u8, name: &str, clock_rate: u32, channels: Option<u16>) -> Self {
        CodecConfig {
            payload_type,
            name: name.to_string(),
            clock_rate,
            channels,
            fmtp: None,
            rtcp_feedback: Vec::new(),
        }
    }

    fn with_fmtp(mut self, fmtp: &str) -> Self {
        self.fmtp = Some(fmtp.to_string());
        self
    }

    fn with_feedback(mut self, fb: &[&str]) -> Self {
        self.rtcp_feedback = fb.iter().map(|s| s.to_string()).collect();
        self
    }

    /// The default audio codecs: Opus (with `transport-cc`, as Chromium offers it: the
    /// media session sends transport-wide feedback for what it receives and reads the
    /// remote's; and RFC 8888 `ack ccfb`, written as `a=rtcp-fb:* ack ccfb` and preferred by
    /// an answer when the offer has it too), then G.711. No NACK for audio.
    pub fn default_audio() -> Vec<CodecConfig> {
        vec![
            CodecConfig::new(111, "opus", 48000, Some(2))
                .with_fmtp("minptime=10;useinbandfec=1")
                .with_feedback(&["transport-cc", "ack ccfb"]),
            CodecConfig::new(0, "PCMU", 8000, None),
            CodecConfig::new(8, "PCMA", 8000, None),
        ]
    }

    /// The default video codecs: VP8, VP9, H264 constrained baseline, AV1, each with the
    /// feedback the core implements: PLI and FIR (`Event::KeyframeRequest` when received,
    /// PLI sent by `request_keyframe`) and generic NACK (the media session asks for lost
    /// packets and answers the remote's NACKs from its retransmission history); and an
    /// RTX format (RFC 4588, `apt=`) for each, so retransmissions travel on their own SSRC;
    /// and `transport-cc` (transport-wide congestion feedback sent for what we receive,
    /// read as `Event::TransportFeedback` for what we send) and RFC 8888 `ack ccfb` (the
    /// same, in RFC 8888 congestion control feedback; an answer to an offer that has both
    /// keeps RFC 8888 alone, as libwebrtc does); and `goog-remb`: when it is the only
    /// congestion feedback a video transceiver negotiated (the remote did not accept
    /// `transport-cc` or `ack ccfb`), the media session estimates the bandwidth of what
    /// it receives from the abs-send-time extension (it must be negotiated too) and sends
    /// REMB, at once when the estimate exists, then every second and at most every
    /// 200 ms when it drops 3 % or more; a REMB received is `Event::RemoteBitrateEstimate`
    /// whatever was negotiated. Remove the `rtx` entries to
    /// retransmit plainly, or `nack` to turn loss recovery off.
    pub fn default_video() -> Vec<CodecConfig> {
        let fb = [
            "ccm fir",
            "nack",
            "nack pli",
            "goog-remb",
            "transport-cc",
            "ack ccfb",
        ];
        vec![
            CodecConfig::new(96, "VP8", 90000, None).with_feedback(&fb),
            CodecConfig::rtx(97, 96),
            CodecConfig::new(98, "VP9", 90000, None)
                .with_fmtp("profile-id=0")
                .with_feedback(&fb),
            CodecConfig::rtx(99, 98),
            CodecConfig::new(102, "H264", 90000, None)
                .with_fmtp("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")
                .with_feedback(&fb),
            CodecConfig::rtx(103, 102),
            CodecConfig::new(45, "AV1", 90000, None).with_feedback(&fb),
            CodecConfig::rtx(46, 45),
        ]
    }

    /// The RTX format (RFC 4588) of the video codec with payload type `apt`:
    /// `a=rtpmap:<pt> rtx/90000` and `a=fmtp:<pt> apt=<apt>`.
    pub fn rtx(payload_type: u8, apt: u8) -> Self {
        CodecConfig::new(payload_type, "rtx", 90000, None).with_fmtp(&format!("apt={apt}"))
    }

    /// Whether this is an RTX format.
    pub fn is_rtx(&self) -> bool {
        self.name.eq_ignore_ascii_case("rtx")
    }
}

/// An RTP header extension the PeerConnection offers or accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderExtensionConfig {
    /// The id used when we are the offerer (1..=14 for one-byte headers).
    pub id: u8,
    /// The extension URI.
    pub uri: String,
    /// Which media kinds it applies to (`None`: both).
    pub kind: Option<MediaKind>,
}

impl HeaderExtensionConfig {
    /// The default extensions: mid, rid, repaired-rid, abs-send-time, transport-cc, audio-level.
    pub fn defaults() -> Vec<HeaderExtensionConfig> {
        let e = |id, uri: &str, kind| HeaderExtensionConfig {
            id,
            uri: uri.to_string(),
            kind,
        };
        vec![
            e(
                1,
                "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                Some(MediaKind::Audio),
            ),
            e(
                2,
                "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
                None,
            ),
            e(
                3,
                "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
                None,
            ),
            e(4, "urn:ietf:params:rtp-hdrext:sdes:mid", None),
            e(
                10,
                "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                Some(MediaKind::Video),
            ),
            e(
                11,
                "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
                Some(MediaKind::Video),
            ),
        ]
    }
}

/// ICE timing. Defaults follow RFC 8445, RFC 8489 and RFC 7675.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceConfig {
    /// Pacing of new connectivity checks (Ta, RFC 8445 section 14.2).
    pub check_interval: Duration,
    /// Initial STUN retransmission timeout for checks (RFC 8489 RTO).
    pub initial_rto: Duration,
    /// Largest retransmission timeout.
    pub max_rto: Duration,
    /// Requests sent before a check is given up (Rc, RFC 8489 default 7).
    pub max_retransmits: u32,
    /// Interval of consent-freshness checks on the selected pair, randomised ±20 %. RFC 7675
    /// allows up to 5 s; we check more often so that `disconnected` is noticed within
    /// `disconnected_timeout` (browsers ping the selected pair every 1-2.5 s too).
    pub consent_interval: Duration,
    /// Without a consent response for this long the connection is `disconnected`.
    pub disconnected_timeout: Duration,
    /// Without a consent response for this long consent is lost and ICE `failed` (RFC 7675: 30 s).
    pub consent_timeout: Duration,
    /// How long to keep checking with no pair succeeding before `failed`
    /// (counted from when the check list has nothing left to try).
    pub failed_timeout: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            check_interval: Duration::from_millis(50),
            initial_rto: Duration::from_millis(250),
            max_rto: Duration::from_secs(3),
            max_retransmits: 7,
            consent_interval: Duration::from_secs(2),
            disconnected_timeout: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
            failed_timeout: Duration::from_secs(10),
        }
    }
}

/// The PeerConnection configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// STUN and TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// Which candidates may be used.
    pub ice_transport_policy: IceTransportPolicy,
    /// **For tests and simulation only.** `Some(seed)` keys the PeerConnection's ChaCha20
    /// generator from this 64-bit seed, so the same seed and inputs give the same bytes
    /// out, secrets included (ICE password, DTLS randoms, SCTP tags): anyone who knows or
    /// searches the seed knows them. `None` (the default, and the only setting for real
    /// sessions) keys it with 256 bits from the operating system. ECDHE and ECDSA keys are
    /// always from the operating system.
    pub rng_seed: Option<u64>,
    /// An `(Instant, SystemTime)` pair that maps the monotonic clock to wall-clock time
    /// (for RTCP sender reports). `None`: wall-clock times are counted from the UNIX epoch
    /// at the `now` given to `PeerConnection::new`, which is only right in tests.
    pub clock_origin: Option<(Instant, SystemTime)>,
    /// Audio codecs in order of preference.
    pub audio_codecs: Vec<CodecConfig>,
    /// Video codecs in order of preference.
    pub video_codecs: Vec<CodecConfig>,
    /// RTP header extensions offered and accepted.
    pub header_extensions: Vec<HeaderExtensionConfig>,
    /// Run ICE-lite (servers with a public address): no checks of our own, always controlled.
    pub ice_lite: bool,
    /// ICE timing.
    pub ice: IceConfig,
    /// The DTLS certificate; `None` generates a fresh self-signed ECDSA P-256 one.
    pub certificate: Option<Certificate>,
    /// SRTP protection profiles in our order of preference (DTLS `use_srtp`).
    pub srtp_profiles: Vec<crate::srtp::SrtpProfile>,
    /// Largest datagram we send (DTLS fragments its handshake to fit).
    pub mtu: usize,
    /// What the peer may make us hold through data channels: channels it opens (1,024),
    /// label and protocol lengths, bytes received and not yet polled.
    pub data_channels: crate::datachannel::DataChannelLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ice_servers: Vec::new(),
            ice_transport_policy: IceTransportPolicy::All,
            rng_seed: None,
            clock_origin: None,
            audio_codecs: CodecConfig::default_audio(),
            video_codecs: CodecConfig::default_video(),
            header_extensions: HeaderExtensionConfig::defaults(),
            ice_lite: false,
            ice: IceConfig::default(),
            certificate: None,
            srtp_profiles: crate::srtp::SrtpProfile::ALL.to_vec(),
            mtu: 1200,
            data_channels: crate::datachannel::DataChannelLimits::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `a=rtcp-fb` we offer promises behaviour to the peer: only what the core does.
    #[test]
    fn default_codecs_offer_only_implemented_feedback() {
        let all: Vec<String> = CodecConfig::default_audio()
            .into_iter()
            .chain(CodecConfig::default_video())
            .flat_map(|c| c.rtcp_feedback)
            .collect();
        for fb in &all {
            assert!(
                [
                    "nack pli",
                    "ccm fir",
                    "nack",
                    "transport-cc",
                    "ack ccfb",
                    "goog-remb"
                ]
                .contains(&fb.as_str()),
                "offered feedback the core does not implement: {fb}"
            );
        }
        assert!(all.iter().any(|f| f == "nack pli"));
    }

    #[test]
    fn debug_never_prints_the_turn_credential() {
        let server = IceServer {
            urls: vec!["turn:192.0.2.1:3478".into()],
            username: Some("alice".into()),
            credential: Some("hunter2-secret".into()),
        };
        let text = format!("{server:?} {:?}", vec![server.clone()]);
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(
            text.contains("alice") && text.contains("<redacted>"),
            "{text}"
        );
        let config = Config {
            ice_servers: vec![server],
            ..Default::default()
        };
        assert!(!format!("{config:?}").contains("hunter2-secret"));
    }
}
