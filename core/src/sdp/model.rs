//! The typed SDP model (RFC 8866 with the WebRTC attributes of RFC 8829/9429, 8839, 8843,
//! 8852, 8853, 8841, 5576, 8285). The offer/answer rules in `jsep` work on this model,
//! never on text. Attributes the model does not type are kept in `other` and written back.

use crate::media::Direction;

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sdp {
    /// `o=` line.
    pub origin: Origin,
    /// `s=` line (browsers write `-`).
    pub session_name: String,
    /// Session-level `c=` line, if any.
    pub connection: Option<Connection>,
    /// Session-level `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `t=` line: start and stop times (browsers write `0 0`).
    pub timing: (u64, u64),
    /// `a=group:` lines (BUNDLE, LS, ...).
    pub groups: Vec<Group>,
    /// Session-level `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Session-level `a=ice-options` tokens (e.g. `trickle`, `ice2`).
    pub ice_options: Vec<String>,
    /// `a=ice-lite`.
    pub ice_lite: bool,
    /// Session-level `a=fingerprint` lines.
    pub fingerprints: Vec<FingerprintAttr>,
    /// Session-level `a=setup`.
    pub setup: Option<Setup>,
    /// `a=extmap-allow-mixed` at session level.
    pub extmap_allow_mixed: bool,
    /// `a=msid-semantic:` line.
    pub msid_semantic: Option<MsidSemantic>,
    /// Session-level `a=extmap` lines.
    pub extmaps: Vec<Extmap>,
    /// Session-level direction attribute, if any.
    pub direction: Option<Direction>,
    /// Other session-level attributes, kept in order.
    pub other: Vec<Attribute>,
    /// The media sections (`m=` lines) in order.
    pub media: Vec<Media>,
}

/// The `o=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name (browsers write `-` or `mozilla...THIS_IS_SDPARTA-...`).
    pub username: String,
    /// Session id (decimal digits; Firefox uses the full u64 range).
    pub session_id: u64,
    /// Session version, incremented on every new local description.
    pub session_version: u64,
    /// Network type (`IN`).
    pub net_type: String,
    /// Address type (`IP4`/`IP6`).
    pub addr_type: String,
    /// Unicast address.
    pub address: String,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            username: "-".into(),
            session_id: 0,
            session_version: 0,
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "127.0.0.1".into(),
        }
    }
}

/// A `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type (`IN`).
    pub net_type: String,
    /// Address type (`IP4`/`IP6`).
    pub addr_type: String,
    /// Connection address (may carry `/ttl`).
    pub address: String,
}

impl Default for Connection {
    fn default() -> Self {
        Connection {
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "0.0.0.0".into(),
        }
    }
}

/// A `b=` line, e.g. `b=AS:30` or `b=TIAS:1000000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// The bandwidth type (`AS`, `TIAS`, `CT`, ...).
    pub kind: String,
    /// The value.
    pub value: u64,
}

/// `a=group:<semantics> <mid>...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `BUNDLE`, `LS`, ...
    pub semantics: String,
    /// Identification tags (mids) in order.
    pub mids: Vec<String>,
}

/// `a=fingerprint:<hash> <hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintAttr {
    /// Hash function name as written (`sha-256`).
    pub algorithm: String,
    /// Digest bytes.
    pub value: Vec<u8>,
}

/// `a=setup:` (RFC 4145 / RFC 8842).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `actpass`: either role (offers).
    ActPass,
    /// `active`: the DTLS client.
    Active,
    /// `passive`: the DTLS server.
    Passive,
    /// `holdconn`.
    HoldConn,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::ActPass => "actpass",
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::HoldConn => "holdconn",
        }
    }
}

/// `a=msid-semantic: WMS [ids]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsidSemantic {
    /// The semantic token (`WMS`).
    pub semantic: String,
    /// Stream ids, or `*`.
    pub ids: Vec<String>,
}

/// `a=extmap:<id>[/<direction>] <uri> [<attributes>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extmap {
    /// Extension id (1..=14 one-byte, up to 255 two-byte).
    pub id: u16,
    /// Optional direction.
    pub direction: Option<Direction>,
    /// Extension URI.
    pub uri: String,
    /// Extension attributes, as written.
    pub attributes: Option<String>,
}

/// An attribute the model does not type: `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute name.
    pub name: String,
    /// The value after the first `:`, if any.
    pub value: Option<String>,
}

/// The media type of an `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// `audio`.
    Audio,
    /// `video`.
    Video,
    /// `application` (data channels).
    Application,
    /// Anything else, as written.
    Other(String),
}

impl MediaType {
    /// The token as written in `m=`.
    pub fn as_str(&self) -> &str {
        match self {
            MediaType::Audio => "audio",
            MediaType::Video => "video",
            MediaType::Application => "application",
            MediaType::Other(s) => s,
        }
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpAttr {
    /// Port.
    pub port: u16,
    /// Optional connection address.
    pub connection: Option<Connection>,
}

/// `a=rtpmap:<pt> <name>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub payload_type: u8,
    /// Encoding name as written (`opus`, `VP8`, `H264`, `rtx`, `red`, `ulpfec`, ...).
    pub encoding: String,
    /// Clock rate.
    pub clock_rate: u32,
    /// Channels (audio), if written.
    pub channels: Option<u16>,
}

/// `a=fmtp:<pt> <parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    /// Payload type.
    pub payload_type: u8,
    /// Format parameters as written (`minptime=10;useinbandfec=1`).
    pub parameters: String,
}

/// `a=rtcp-fb:<pt|*> <type> [<subtype>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpFb {
    /// Payload type, `None` for `*`.
    pub payload_type: Option<u8>,
    /// Feedback type and parameters as written (`nack`, `nack pli`, `ccm fir`, `transport-cc`).
    pub value: String,
}

/// `a=msid:<stream id> [<track id>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msid {
    /// MediaStream id (`-` for none).
    pub stream_id: String,
    /// Track id (application data), if written.
    pub track_id: Option<String>,
}

/// `a=ssrc:<ssrc> <attribute>[:<value>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcAttr {
    /// SSRC.
    pub ssrc: u32,
    /// Attribute name (`cname`, `msid`, ...).
    pub attribute: String,
    /// Attribute value, if written.
    pub value: Option<String>,
}

/// `a=ssrc-group:<semantics> <ssrc>...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    /// `FID`, `SIM`, `FEC-FR`, ...
    pub semantics: String,
    /// SSRCs in order.
    pub ssrcs: Vec<u32>,
}

/// Direction of an `a=rid` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RidDirection {
    /// `send`.
    Send,
    /// `recv`.
    Recv,
}

/// `a=rid:<id> <send|recv> [<params>]` (RFC 8851).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rid {
    /// RTP stream id.
    pub id: String,
    /// Direction.
    pub direction: RidDirection,
    /// Parameters as written (`pt=96,97;max-width=1280`), if any.
    pub params: Option<String>,
}

/// One stream in an `a=simulcast` alternative list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastStream {
    /// The rid.
    pub rid: String,
    /// Written with a leading `~` (paused).
    pub paused: bool,
}

/// `a=simulcast:[send <list>] [recv <list>]` (RFC 8853). Each list is `;`-separated
/// streams, each a `,`-separated set of alternatives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Simulcast {
    /// Send streams.
    pub send: Vec<Vec<SimulcastStream>>,
    /// Receive streams.
    pub recv: Vec<Vec<SimulcastStream>>,
}

/// One media section: the `m=` line and everything up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// Media type.
    pub media_type: MediaType,
    /// Port (0 = rejected / stopped; browsers write 9 otherwise).
    pub port: u16,
    /// `/<count>` after the port, rarely used.
    pub port_count: Option<u16>,
    /// Protocol, e.g. `UDP/TLS/RTP/SAVPF` or `UDP/DTLS/SCTP`.
    pub protocol: String,
    /// Formats: payload types for RTP, `webrtc-datachannel` for SCTP.
    pub formats: Vec<String>,
    /// `c=` line.
    pub connection: Option<Connection>,
    /// `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Direction attribute, if any.
    pub direction: Option<Direction>,
    /// `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// `a=ice-options` tokens.
    pub ice_options: Vec<String>,
    /// `a=fingerprint` lines.
    pub fingerprints: Vec<FingerprintAttr>,
    /// `a=setup`.
    pub setup: Option<Setup>,
    /// `a=extmap-allow-mixed` at media level.
    pub extmap_allow_mixed: bool,
    /// `a=extmap` lines.
    pub extmaps: Vec<Extmap>,
    /// `a=msid` lines.
    pub msids: Vec<Msid>,
    /// `a=rtcp`.
    pub rtcp: Option<RtcpAttr>,
    /// `a=rtcp-mux`.
    pub rtcp_mux: bool,
    /// `a=rtcp-mux-only`.
    pub rtcp_mux_only: bool,
    /// `a=rtcp-rsize`.
    pub rtcp_rsize: bool,
    /// `a=rtpmap` lines.
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp` lines.
    pub fmtps: Vec<Fmtp>,
    /// `a=rtcp-fb` lines.
    pub rtcp_fbs: Vec<RtcpFb>,
    /// `a=ssrc-group` lines.
    pub ssrc_groups: Vec<SsrcGroup>,
    /// `a=ssrc` lines.
    pub ssrcs: Vec<SsrcAttr>,
    /// `a=rid` lines.
    pub rids: Vec<Rid>,
    /// `a=simulcast`.
    pub simulcast: Option<Simulcast>,
    /// `a=sctp-port`.
    pub sctp_port: Option<u16>,
    /// `a=max-message-size`.
    pub max_message_size: Option<u64>,
    /// `a=candidate` values (without the `candidate:` prefix), parsed by `ice::Candidate`.
    pub candidates: Vec<String>,
    /// `a=end-of-candidates`.
    pub end_of_candidates: bool,
    /// Other attributes, kept in order and written back.
    pub other: Vec<Attribute>,
}

impl Media {
    /// An empty media section of the given type with `port` 9 and no attributes.
    pub fn new(media_type: MediaType, protocol: &str) -> Media {
        Media {
            media_type,
            port: 9,
            port_count: None,
            protocol: protocol.to_string(),
            formats: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            mid: None,
            direction: None,
            ice_ufrag: None,
            ice_pwd: None,
            ice_options: Vec::new(),
            fingerprints: Vec::new(),
            setup: None,
            extmap_allow_mixed: false,
            extmaps: Vec::new(),
            msids: Vec::new(),
            rtcp: None,
            rtcp_mux: false,
            rtcp_mux_only: false,
            rtcp_rsize: false,
            rtpmaps: Vec::new(),
            fmtps: Vec::new(),
            rtcp_fbs: Vec::new(),
            ssrc_groups: Vec::new(),
            ssrcs: Vec::new(),
            rids: Vec::new(),
            simulcast: None,
            sctp_port: None,
            max_message_size: None,
            candidates: Vec::new(),
            end_of_candidates: false,
            other: Vec::new(),
        }
    }

    /// The `a=fmtp` parameters for a payload type.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|f| f.payload_type == pt)
            .map(|f| f.parameters.as_str())
    }

    /// The `a=rtpmap` for a payload type.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|r| r.payload_type == pt)
    }

    /// Whether the m-line is rejected or stopped (port 0).
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Whether this is an RTP section (audio or video).
    pub fn is_rtp(&self) -> bool {
        matches!(self.media_type, MediaType::Audio | MediaType::Video)
    }

    /// The direction, defaulting to `sendrecv` (RFC 8866 section 6.7).
    pub fn direction_or_default(&self) -> Direction {
        self.direction.unwrap_or(Direction::SendRecv)
    }
}

impl Sdp {
    /// The mids of the first `a=group:BUNDLE` line, if any.
    pub fn bundle_mids(&self) -> Option<&[String]> {
        self.groups
            .iter()
            .find(|g| g.semantics.eq_ignore_ascii_case("BUNDLE"))
            .map(|g| g.mids.as_slice())
    }

    /// ICE ufrag of a media section, falling back to the session level.
    pub fn ice_ufrag_of<'a>(&'a self, media: &'a Media) -> Option<&'a str> {
        media.ice_ufrag.as_deref().or(self.ice_ufrag.as_deref())
    }

    /// ICE password of a media section, falling back to the session level.
    pub fn ice_pwd_of<'a>(&'a self, media: &'a Media) -> Option<&'a str> {
        media.ice_pwd.as_deref().or(self.ice_pwd.as_deref())
    }

    /// Fingerprints of a media section, falling back to the session level.
    pub fn fingerprints_of<'a>(&'a self, media: &'a Media) -> &'a [FingerprintAttr] {
        if media.fingerprints.is_empty() {
            &self.fingerprints
        } else {
            &media.fingerprints
        }
    }

    /// `a=setup` of a media section, falling back to the session level.
    pub fn setup_of(&self, media: &Media) -> Option<Setup> {
        media.setup.or(self.setup)
    }
}
