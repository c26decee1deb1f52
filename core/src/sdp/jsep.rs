//! JSEP (RFC 9429) offer/answer rules, on the SDP model, with BUNDLE (RFC 9143) in
//! max-bundle mode and rtcp-mux required.
//!
//! This module builds media sections and whole descriptions from transceiver state and
//! settles codecs and header extensions; it never holds state itself. The PeerConnection
//! decides which m-line belongs to which transceiver and calls these functions.

use crate::config::{CodecConfig, HeaderExtensionConfig};
use crate::dtls::cert::Fingerprint;
use crate::media::{Direction, MediaKind, NegotiatedCodec, Transceiver};
use crate::sdp::model::{
    Connection, Extmap, FingerprintAttr, Fmtp, Group, Media, MediaType, Msid, MsidSemantic, Origin,
    Rid, RidDirection, RtcpAttr, RtcpFb, RtpMap, Sdp, Setup, Simulcast, SimulcastStream, SsrcAttr,
    SsrcGroup,
};

/// The RTP profile every WebRTC audio/video m-line uses.
pub const RTP_PROTOCOL: &str = "UDP/TLS/RTP/SAVPF";

/// The rid header extension (RFC 8852), required to receive simulcast.
const RID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// Our side of the transport, written into every non-rejected m-line.
#[derive(Debug, Clone)]
pub struct LocalTransport<'a> {
    /// ICE ufrag.
    pub ufrag: &'a str,
    /// ICE password.
    pub pwd: &'a str,
    /// DTLS certificate fingerprint.
    pub fingerprint: &'a Fingerprint,
    /// `a=setup` value.
    pub setup: Setup,
    /// Gathered candidates (attribute values without `candidate:`).
    pub candidates: &'a [String],
    /// Gathering complete: write `a=end-of-candidates`.
    pub end_of_candidates: bool,
    /// We run ICE-lite.
    pub ice_lite: bool,
    /// The CNAME of our RTP senders.
    pub cname: &'a str,
}

/// Build a whole description from its media sections. The BUNDLE group lists every
/// accepted m-line; candidates go into the first of them (the tagged m-line, RFC 9143).
pub fn build_session(origin: Origin, transport: &LocalTransport<'_>, mut media: Vec<Media>) -> Sdp {
    let bundle: Vec<String> = media
        .iter()
        .filter(|m| !m.is_rejected())
        .filter_map(|m| m.mid.clone())
        .collect();
    if let Some(first) = media.iter_mut().find(|m| !m.is_rejected()) {
        first.candidates = transport.candidates.to_vec();
        first.end_of_candidates = transport.end_of_candidates;
    }
    let mut groups = Vec::new();
    if !bundle.is_empty() {
        groups.push(Group {
            semantics: "BUNDLE".into(),
            mids: bundle,
        });
    }
    Sdp {
        origin,
        session_name: "-".into(),
        timing: (0, 0),
        groups,
        ice_lite: transport.ice_lite,
        extmap_allow_mixed: true,
        msid_semantic: Some(MsidSemantic {
            semantic: "WMS".into(),
            ids: Vec::new(),
        }),
        media,
        ..Default::default()
    }
}

/// Write the transport attributes shared by every accepted m-line.
fn add_transport(m: &mut Media, transport: &LocalTransport<'_>) {
    m.connection = Some(Connection::default());
    m.ice_ufrag = Some(transport.ufrag.to_string());
    m.ice_pwd = Some(transport.pwd.to_string());
    m.ice_options = vec!["trickle".into()];
    m.fingerprints = vec![FingerprintAttr {
        algorithm: transport.fingerprint.algorithm.clone(),
        value: transport.fingerprint.value.clone(),
    }];
    m.setup = Some(transport.setup);
}

fn media_type(kind: MediaKind) -> MediaType {
    match kind {
        MediaKind::Audio => MediaType::Audio,
        MediaKind::Video => MediaType::Video,
    }
}

/// The media kind of an m-line, if it is audio or video.
pub fn media_kind(m: &Media) -> Option<MediaKind> {
    match m.media_type {
        MediaType::Audio => Some(MediaKind::Audio),
        MediaType::Video => Some(MediaKind::Video),
        _ => None,
    }
}

/// Feedback signalled for the whole m-line only, never per format: RFC 8888 section 6 allows
/// `ack ccfb` only with the wildcard payload type, and libwebrtc reads it only from
/// `a=rtcp-fb:* ack ccfb` (a per-format line is ignored, so the peer would neither send nor
/// use RFC 8888 feedback).
fn is_wildcard_only_feedback(fb: &str) -> bool {
    fb.eq_ignore_ascii_case("ack ccfb")
}

/// The m-line of one transceiver, for an offer (`direction` is the transceiver's) or an
/// answer (`direction` already intersected with the offer's).
pub fn transceiver_media(
    t: &Transceiver,
    mid: &str,
    direction: Direction,
    codecs: &[NegotiatedCodec],
    extensions: &[(u16, String)],
    transport: &LocalTransport<'_>,
) -> Media {
    let mut m = Media::new(media_type(t.kind), RTP_PROTOCOL);
    m.mid = Some(mid.to_string());
    if t.stopped || t.stopping || codecs.is_empty() {
        m.port = 0;
        m.formats = vec![codecs
            .first()
            .map(|c| c.payload_type.to_string())
            .unwrap_or_else(|| "0".into())];
        return m;
    }
    add_transport(&mut m, transport);
    m.rtcp = Some(RtcpAttr {
        port: 9,
        connection: Some(Connection::default()),
    });
    m.extmaps = extensions
        .iter()
        .map(|(id, uri)| Extmap {
            id: *id,
            direction: None,
            uri: uri.clone(),
            attributes: None,
        })
        .collect();
    m.direction = Some(direction);
    m.rtcp_mux = true;
    m.rtcp_rsize = true;
    for c in codecs {
        m.formats.push(c.payload_type.to_string());
        m.rtpmaps.push(RtpMap {
            payload_type: c.payload_type,
            encoding: c.name.clone(),
            clock_rate: c.clock_rate,
            channels: c.channels,
        });
        for fb in &c.rtcp_feedback {
            if is_wildcard_only_feedback(fb) {
                // One `a=rtcp-fb:*` line for the whole m-line, written below.
                continue;
            }
            m.rtcp_fbs.push(RtcpFb {
                payload_type: Some(c.payload_type),
                value: fb.clone(),
            });
        }
        if let Some(f) = &c.fmtp {
            m.fmtps.push(Fmtp {
                payload_type: c.payload_type,
                parameters: f.clone(),
            });
        }
    }
    let wildcard_only: Vec<&String> = codecs
        .iter()
        .flat_map(|c| &c.rtcp_feedback)
        .filter(|fb| is_wildcard_only_feedback(fb))
        .collect();
    for fb in wildcard_only {
        if !m
            .rtcp_fbs
            .iter()
            .any(|w| w.payload_type.is_none() && &w.value == fb)
        {
            m.rtcp_fbs.push(RtcpFb {
                payload_type: None,
                value: fb.clone(),
            });
        }
    }
    if direction.sends() && t.has_track {
        let stream = t.stream_ids.first().map(String::as_str).unwrap_or("-");
        m.msids = if t.stream_ids.is_empty() {
            vec![Msid {
                stream_id: "-".into(),
                track_id: Some(t.track_id.clone()),
            }]
        } else {
            t.stream_ids
                .iter()
                .map(|s| Msid {
                    stream_id: s.clone(),
                    track_id: Some(t.track_id.clone()),
                })
                .collect()
        };
        m.ssrcs = vec![
            SsrcAttr {
                ssrc: t.sender_ssrc,
                attribute: "cname".into(),
                value: Some(transport.cname.to_string()),
            },
            SsrcAttr {
                ssrc: t.sender_ssrc,
                attribute: "msid".into(),
                value: Some(format!("{stream} {}", t.track_id)),
            },
        ];
        // Our retransmissions travel on their own SSRC when an RTX format is listed.
        if codecs.iter().any(|c| c.name.eq_ignore_ascii_case("rtx")) {
            for attribute in ["cname", "msid"] {
                let value = if attribute == "cname" {
                    transport.cname.to_string()
                } else {
                    format!("{stream} {}", t.track_id)
                };
                m.ssrcs.push(SsrcAttr {
                    ssrc: t.sender_rtx_ssrc,
                    attribute: attribute.into(),
                    value: Some(value),
                });
            }
            m.ssrc_groups.push(SsrcGroup {
                semantics: "FID".into(),
                ssrcs: vec![t.sender_ssrc, t.sender_rtx_ssrc],
            });
        }
    }
    m
}

/// The SDP protocol of data channels (RFC 8841).
pub const SCTP_PROTOCOL: &str = "UDP/DTLS/SCTP";
/// The SCTP port we use (RFC 8841 default).
pub const SCTP_PORT: u16 = 5000;

/// Whether an m-line carries WebRTC data channels.
pub fn is_data_media(m: &Media) -> bool {
    m.media_type == MediaType::Application
        && m.protocol.ends_with("SCTP")
        && m.formats.iter().any(|f| f == "webrtc-datachannel")
}

/// Our data-channel m-line (RFC 8841), for an offer or an answer.
pub fn data_media(mid: &str, max_message_size: u64, transport: &LocalTransport<'_>) -> Media {
    let mut m = Media::new(MediaType::Application, SCTP_PROTOCOL);
    m.formats = vec!["webrtc-datachannel".into()];
    m.mid = Some(mid.to_string());
    add_transport(&mut m, transport);
    m.sctp_port = Some(SCTP_PORT);
    m.max_message_size = Some(max_message_size);
    m
}

/// A rejected (port 0) copy of a remote m-line we cannot or will not accept.
pub fn rejected_media(remote: &Media) -> Media {
    let mut m = Media::new(remote.media_type.clone(), &remote.protocol);
    m.port = 0;
    m.mid = remote.mid.clone();
    m.formats = remote.formats.iter().take(1).cloned().collect();
    if m.formats.is_empty() {
        m.formats.push("0".into());
    }
    m
}

/// Our codecs for an offer: what was negotiated before (keeping its payload types), then
/// every other configured codec whose payload type does not collide.
pub fn offer_codecs(
    configured: &[CodecConfig],
    negotiated: &[NegotiatedCodec],
) -> Vec<NegotiatedCodec> {
    let mut out: Vec<NegotiatedCodec> = negotiated.to_vec();
    for c in configured {
        let known = out.iter().any(|n| same_codec_config(c, n));
        let pt_taken = out.iter().any(|n| n.payload_type == c.payload_type);
        if !known && !pt_taken {
            out.push(from_config(c));
        }
    }
    drop_dangling_rtx(&mut out);
    out
}

/// The payload type an RTX format repairs (`apt=`), `None` for other formats.
pub fn rtx_apt(name: &str, fmtp: Option<&str>) -> Option<u8> {
    if !name.eq_ignore_ascii_case("rtx") {
        return None;
    }
    fmtp_param(fmtp, "apt")?.trim().parse().ok()
}

/// Remove RTX formats whose `apt` names no (non-RTX) codec of the list: an RTX format
/// is only offered or accepted with the codec it repairs.
fn drop_dangling_rtx(codecs: &mut Vec<NegotiatedCodec>) {
    let primaries: Vec<u8> = codecs
        .iter()
        .filter(|c| !c.name.eq_ignore_ascii_case("rtx"))
        .map(|c| c.payload_type)
        .collect();
    codecs.retain(|c| {
        !c.name.eq_ignore_ascii_case("rtx")
            || rtx_apt(&c.name, c.fmtp.as_deref()).is_some_and(|apt| primaries.contains(&apt))
    });
}

fn from_config(c: &CodecConfig) -> NegotiatedCodec {
    NegotiatedCodec {
        payload_type: c.payload_type,
        name: c.name.clone(),
        clock_rate: c.clock_rate,
        channels: c.channels,
        fmtp: c.fmtp.clone(),
        rtcp_feedback: c.rtcp_feedback.clone(),
    }
}

fn same_codec_config(c: &CodecConfig, n: &NegotiatedCodec) -> bool {
    c.name.eq_ignore_ascii_case(&n.name)
        && c.clock_rate == n.clock_rate
        && fmtp_compatible(&c.name, c.fmtp.as_deref(), n.fmtp.as_deref())
}

/// Codecs accepted from a remote m-line: in the remote's order, with the remote's payload
/// types and fmtp, keeping only those we support (H264 by profile and packetization mode,
/// VP9/AV1 by profile) and only feedback both sides support. An RTX format is accepted
/// when we configure RTX at all and its `apt` names a codec accepted here (RFC 4588);
/// RED and FEC formats are not negotiated.
pub fn answer_codecs(ours: &[CodecConfig], remote: &Media) -> Vec<NegotiatedCodec> {
    let mut out: Vec<NegotiatedCodec> = Vec::new();
    let we_rtx = ours.iter().any(CodecConfig::is_rtx);
    for fmt in &remote.formats {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        let Some(map) = remote.rtpmap(pt).cloned().or_else(|| static_rtpmap(pt)) else {
            continue;
        };
        let remote_fmtp = remote.fmtp(pt);
        if map.encoding.eq_ignore_ascii_case("rtx") {
            if we_rtx && rtx_apt(&map.encoding, remote_fmtp).is_some() {
                out.push(NegotiatedCodec {
                    payload_type: pt,
                    name: map.encoding.clone(),
                    clock_rate: map.clock_rate,
                    channels: None,
                    fmtp: remote_fmtp.map(str::to_string),
                    rtcp_feedback: Vec::new(),
                });
            }
            continue;
        }
        let Some(local) = ours.iter().find(|c| {
            c.name.eq_ignore_ascii_case(&map.encoding)
                && c.clock_rate == map.clock_rate
                && channels_match(c.channels, map.channels)
                && fmtp_compatible(&c.name, c.fmtp.as_deref(), remote_fmtp)
        }) else {
            continue;
        };
        if out.iter().any(|n| n.payload_type == pt) {
            continue;
        }
        let remote_fb: Vec<&str> = remote
            .rtcp_fbs
            .iter()
            .filter(|f| f.payload_type.is_none() || f.payload_type == Some(pt))
            .map(|f| f.value.as_str())
            .collect();
        out.push(NegotiatedCodec {
            payload_type: pt,
            name: map.encoding.clone(),
            clock_rate: map.clock_rate,
            channels: map.channels,
            fmtp: remote_fmtp
                .map(str::to_string)
                .or_else(|| local.fmtp.clone()),
            rtcp_feedback: local
                .rtcp_feedback
                .iter()
                .filter(|fb| remote_fb.iter().any(|r| r.eq_ignore_ascii_case(fb)))
                .cloned()
                .collect(),
        });
    }
    drop_dangling_rtx(&mut out);
    out
}

/// Keep from `offered` (what we offered) the codecs the answer accepted, using the answer's
/// order and feedback.
pub fn settle_answer_codecs(offered: &[NegotiatedCodec], answer: &Media) -> Vec<NegotiatedCodec> {
    let mut out = Vec::new();
    for fmt in &answer.formats {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        let Some(ours) = offered.iter().find(|c| c.payload_type == pt) else {
            continue;
        };
        let mut c = ours.clone();
        let fb: Vec<&str> = answer
            .rtcp_fbs
            .iter()
            .filter(|f| f.payload_type.is_none() || f.payload_type == Some(pt))
            .map(|f| f.value.as_str())
            .collect();
        c.rtcp_feedback
            .retain(|f| fb.iter().any(|r| r.eq_ignore_ascii_case(f)));
        out.push(c);
    }
    drop_dangling_rtx(&mut out);
    out
}

fn channels_match(ours: Option<u16>, theirs: Option<u16>) -> bool {
    ours.unwrap_or(1) == theirs.unwrap_or(1)
}

/// The static payload types browsers may list without an rtpmap (RFC 3551).
fn static_rtpmap(pt: u8) -> Option<RtpMap> {
    let (name, rate) = match pt {
        0 => ("PCMU", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        _ => return None,
    };
    Some(RtpMap {
        payload_type: pt,
        encoding: name.into(),
        clock_rate: rate,
        channels: None,
    })
}

/// The value of one `key=value` parameter of an fmtp string.
pub fn fmtp_param<'a>(fmtp: Option<&'a str>, key: &str) -> Option<&'a str> {
    fmtp?.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// H.264 profiles as far as offer/answer matching needs them (RFC 6184 section 8.1,
/// profile_idc plus the constraint flags of profile-iop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H264Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    ConstrainedHigh,
    High,
    Other(u8, u8),
}

fn h264_profile(fmtp: Option<&str>) -> Option<H264Profile> {
    // RFC 6184: the default profile-level-id is 420010 (baseline).
    let plid = fmtp_param(fmtp, "profile-level-id").unwrap_or("420010");
    if plid.len() != 6 || !plid.is_ascii() {
        return None;
    }
    let idc = u8::from_str_radix(plid.get(0..2)?, 16).ok()?;
    let iop = u8::from_str_radix(plid.get(2..4)?, 16).ok()?;
    let set0 = iop & 0x80 != 0;
    let set1 = iop & 0x40 != 0;
    let set3 = iop & 0x10 != 0;
    Some(match idc {
        0x42 if set1 => H264Profile::ConstrainedBaseline,
        0x4d if set0 => H264Profile::ConstrainedBaseline,
        0x58 if set0 && set1 => H264Profile::ConstrainedBaseline,
        0x42 => H264Profile::Baseline,
        0x58 if set0 => H264Profile::Baseline,
        0x4d => H264Profile::Main,
        0x64 if set3 => H264Profile::ConstrainedHigh,
        0x64 => H264Profile::High,
        _ => H264Profile::Other(idc, iop),
    })
}

/// Whether two fmtp strings describe the same codec configuration for offer/answer
/// (RFC 9429 section 5.3.1 codec matching).
pub fn fmtp_compatible(name: &str, ours: Option<&str>, theirs: Option<&str>) -> bool {
    let param = |f: Option<&str>, k: &str, default: &str| -> String {
        fmtp_param(f, k).unwrap_or(default).to_ascii_lowercase()
    };
    if name.eq_ignore_ascii_case("H264") {
        let profiles = h264_profile(ours).is_some() && h264_profile(ours) == h264_profile(theirs);
        profiles
            && param(ours, "packetization-mode", "0") == param(theirs, "packetization-mode", "0")
    } else if name.eq_ignore_ascii_case("VP9") {
        param(ours, "profile-id", "0") == param(theirs, "profile-id", "0")
    } else if name.eq_ignore_ascii_case("AV1") {
        param(ours, "profile", "0") == param(theirs, "profile", "0")
    } else if name.eq_ignore_ascii_case("rtx") {
        rtx_apt(name, ours) == rtx_apt(name, theirs)
    } else {
        true
    }
}

/// Header extensions for an offer: negotiated ones first (keeping their ids), then the
/// configured ones for this kind whose URI and id are both free.
pub fn offer_extensions(
    configured: &[HeaderExtensionConfig],
    kind: MediaKind,
    negotiated: &[(u16, String)],
) -> Vec<(u16, String)> {
    let mut out = negotiated.to_vec();
    for e in configured
        .iter()
        .filter(|e| e.kind.is_none_or(|k| k == kind))
    {
        let id = u16::from(e.id);
        if !out.iter().any(|(i, u)| *i == id || *u == e.uri) {
            out.push((id, e.uri.clone()));
        }
    }
    out
}

/// Header extensions accepted from a remote m-line: those we support, with the remote's ids.
pub fn answer_extensions(
    configured: &[HeaderExtensionConfig],
    kind: MediaKind,
    remote: &Media,
) -> Vec<(u16, String)> {
    remote
        .extmaps
        .iter()
        .filter(|x| x.direction != Some(Direction::Inactive))
        .filter(|x| {
            configured
                .iter()
                .any(|e| e.uri == x.uri && e.kind.is_none_or(|k| k == kind))
        })
        .map(|x| (x.id, x.uri.clone()))
        .collect()
}

/// An answer's single congestion feedback: when RFC 8888 `ack ccfb` was accepted, the
/// transport-wide alternative is left out of the answer (its `transport-cc` feedback and its
/// sequence-number extension), as RFC 8888 intends and as libwebrtc answers: each side then
/// sends and reads one kind of feedback, and no packet carries an extension nobody reads.
pub fn prefer_rfc8888(codecs: &mut [NegotiatedCodec], extensions: &mut Vec<(u16, String)>) {
    if !codecs.iter().any(|c| c.has_feedback("ack ccfb")) {
        return;
    }
    for c in codecs.iter_mut() {
        c.rtcp_feedback
            .retain(|f| !f.eq_ignore_ascii_case("transport-cc"));
    }
    extensions.retain(|(_, uri)| uri != crate::rtp::extensions::ExtensionKind::TransportCc.uri());
}

/// The extensions of an answer that we had offered.
pub fn settle_answer_extensions(offered: &[(u16, String)], answer: &Media) -> Vec<(u16, String)> {
    answer
        .extmaps
        .iter()
        .filter(|x| offered.iter().any(|(id, uri)| *id == x.id && *uri == x.uri))
        .map(|x| (x.id, x.uri.clone()))
        .collect()
}

/// RFC 8853 simulcast in an answer that receives: one `a=rid:<id> recv` for each rid the
/// offer sends in its `a=simulcast:send` list, and `a=simulcast:recv` with that list
/// (alternatives and paused marks kept). Nothing is added when the answer does not receive,
/// or when the rid header extension was not accepted (the streams could not be told apart).
pub fn answer_simulcast(remote: &Media, answer: &mut Media, extensions: &[(u16, String)]) {
    let receives = answer.direction.is_some_and(Direction::receives);
    let rid_ext = extensions.iter().any(|(_, u)| u == RID_URI);
    let Some(offered) = remote.simulcast.as_ref().filter(|_| receives && rid_ext) else {
        return;
    };
    let sent = |rid: &str| {
        remote
            .rids
            .iter()
            .any(|r| r.id == rid && r.direction == RidDirection::Send)
    };
    let recv: Vec<Vec<SimulcastStream>> = offered
        .send
        .iter()
        .map(|alternatives| {
            alternatives
                .iter()
                .filter(|s| sent(&s.rid))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|alternatives| !alternatives.is_empty())
        .collect();
    if recv.is_empty() {
        return;
    }
    answer.rids = recv
        .iter()
        .flatten()
        .map(|s| Rid {
            id: s.rid.clone(),
            direction: RidDirection::Recv,
            params: None,
        })
        .collect();
    answer.simulcast = Some(Simulcast {
        send: Vec::new(),
        recv,
    });
}

/// The direction of an answer: what we want, limited by what the offer allows.
pub fn answer_direction(ours: Direction, offered: Direction) -> Direction {
    Direction::from_parts(
        ours.sends() && offered.receives(),
        ours.receives() && offered.sends(),
    )
}

/// The `a=setup` of our answer for the offer's value: an `actpass` offer gets `active`
/// (we are the DTLS client, as browsers do), `active` gets `passive` and vice versa.
pub fn answer_setup(offered: Setup) -> Setup {
    match offered {
        Setup::Active => Setup::Passive,
        Setup::Passive | Setup::ActPass | Setup::HoldConn => Setup::Active,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote_video(formats: &[(u8, &str, Option<&str>)]) -> Media {
        let mut m = Media::new(MediaType::Video, RTP_PROTOCOL);
        for (pt, name, fmtp) in formats {
            m.formats.push(pt.to_string());
            m.rtpmaps.push(RtpMap {
                payload_type: *pt,
                encoding: (*name).into(),
                clock_rate: 90000,
                channels: None,
            });
            if let Some(f) = fmtp {
                m.fmtps.push(Fmtp {
                    payload_type: *pt,
                    parameters: (*f).into(),
                });
            }
            m.rtcp_fbs.push(RtcpFb {
                payload_type: Some(*pt),
                value: "nack pli".into(),
            });
        }
        m
    }

    #[test]
    fn answer_keeps_offerer_payload_types_and_order() {
        let m = remote_video(&[
            (127, "VP9", Some("profile-id=2")),
            (100, "VP8", None),
            (101, "vp9", Some("profile-id=0")),
        ]);
        let got = answer_codecs(&CodecConfig::default_video(), &m);
        let pts: Vec<u8> = got.iter().map(|c| c.payload_type).collect();
        // VP9 profile 2 is not ours; VP8 and VP9 profile 0 are, with the remote's numbers.
        assert_eq!(pts, vec![100, 101]);
        assert_eq!(got[0].rtcp_feedback, vec!["nack pli".to_string()]);
        assert_eq!(got[1].fmtp.as_deref(), Some("profile-id=0"));
    }

    #[test]
    fn rtx_is_accepted_only_with_the_codec_it_repairs_and_when_configured() {
        let m = remote_video(&[
            (100, "VP8", None),
            (101, "rtx", Some("apt=100")),
            (127, "VP9", Some("profile-id=2")),
            (126, "rtx", Some("apt=127")),
            (125, "rtx", None),
        ]);
        let got = answer_codecs(&CodecConfig::default_video(), &m);
        let pts: Vec<u8> = got.iter().map(|c| c.payload_type).collect();
        // VP9 profile 2 is refused, so is its RTX; an RTX without apt is refused.
        assert_eq!(pts, vec![100, 101]);
        assert_eq!(got[1].rtx_apt(), Some(100));
        assert!(got[1].rtcp_feedback.is_empty());
        // Without an RTX format configured, no RTX is accepted (retransmission is plain).
        let mut no_rtx = CodecConfig::default_video();
        no_rtx.retain(|c| !c.is_rtx());
        let got = answer_codecs(&no_rtx, &m);
        assert_eq!(got.len(), 1);
        // An offer keeps an RTX format only with its codec.
        let mut vp8_only = CodecConfig::default_video();
        vp8_only.retain(|c| c.name == "VP8" || c.is_rtx());
        let offered: Vec<(u8, Option<u8>)> = offer_codecs(&vp8_only, &[])
            .iter()
            .map(|c| (c.payload_type, c.rtx_apt()))
            .collect();
        assert_eq!(offered, vec![(96, None), (97, Some(96))]);
    }

    #[test]
    fn h264_matches_by_profile_and_packetization_mode() {
        let m = remote_video(&[
            (
                102,
                "H264",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"),
            ),
            (
                106,
                "H264",
                Some("level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
            ),
            (
                108,
                "H264",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e034"),
            ),
            (
                112,
                "H264",
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032"),
            ),
        ]);
        let got = answer_codecs(&CodecConfig::default_video(), &m);
        // Only constrained baseline (42e0xx, any level) with packetization-mode 1 matches ours.
        assert_eq!(
            got.iter().map(|c| c.payload_type).collect::<Vec<_>>(),
            vec![108]
        );
        assert_eq!(
            h264_profile(Some("profile-level-id=4d801f")),
            Some(H264Profile::ConstrainedBaseline)
        );
        assert_eq!(
            h264_profile(Some("profile-level-id=4d401f")),
            Some(H264Profile::Main)
        );
        assert_eq!(
            h264_profile(Some("profile-level-id=640c1f")),
            Some(H264Profile::High)
        );
        assert_eq!(h264_profile(Some("profile-level-id=zz")), None);
    }

    #[test]
    fn directions_intersect() {
        use Direction::*;
        assert_eq!(answer_direction(SendRecv, SendOnly), RecvOnly);
        assert_eq!(answer_direction(SendRecv, RecvOnly), SendOnly);
        assert_eq!(answer_direction(RecvOnly, RecvOnly), Inactive);
        assert_eq!(answer_direction(SendRecv, Inactive), Inactive);
        assert_eq!(answer_setup(Setup::ActPass), Setup::Active);
        assert_eq!(answer_setup(Setup::Active), Setup::Passive);
    }

    #[test]
    fn offer_codecs_keep_negotiated_payload_types() {
        let negotiated = vec![NegotiatedCodec {
            payload_type: 120,
            name: "VP8".into(),
            clock_rate: 90000,
            channels: None,
            fmtp: None,
            rtcp_feedback: vec![],
        }];
        let got = offer_codecs(&CodecConfig::default_video(), &negotiated);
        assert_eq!(got[0].payload_type, 120);
        assert!(!got.iter().skip(1).any(|c| c.name == "VP8"));
        assert!(got.iter().any(|c| c.name == "H264"));
    }

    #[test]
    fn extensions_use_remote_ids() {
        let mut m = Media::new(MediaType::Audio, RTP_PROTOCOL);
        m.extmaps = vec![
            Extmap {
                id: 9,
                direction: None,
                uri: "urn:ietf:params:rtp-hdrext:sdes:mid".into(),
                attributes: None,
            },
            Extmap {
                id: 5,
                direction: None,
                uri: "urn:example:unknown".into(),
                attributes: None,
            },
            Extmap {
                id: 10,
                direction: None,
                uri: "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id".into(),
                attributes: None,
            },
        ];
        let got = answer_extensions(&HeaderExtensionConfig::defaults(), MediaKind::Audio, &m);
        // rtp-stream-id is configured for video only.
        assert_eq!(
            got,
            vec![(9, "urn:ietf:params:rtp-hdrext:sdes:mid".to_string())]
        );
    }
}
