//! SDP text to model (RFC 8866 grammar with the WebRTC attributes).
//!
//! Lines may end in CRLF or LF. `v=`, `o=`, `s=` and `t=` are required at session level;
//! the other RFC 8866 line types that WebRTC does not use (`i=`, `u=`, `e=`, `p=`, `k=`,
//! `r=`, `z=`) are accepted and skipped. Every attribute the model does not type is kept in
//! `other`, in order. Errors name the 1-based line.

use super::model::{
    Attribute, Bandwidth, Connection, Extmap, FingerprintAttr, Fmtp, Group, Media, MediaType, Msid,
    MsidSemantic, Origin, Rid, RidDirection, RtcpAttr, RtcpFb, RtpMap, Sdp, Setup, Simulcast,
    SimulcastStream, SsrcAttr, SsrcGroup,
};
use crate::media::Direction;

/// Largest SDP accepted, in bytes.
pub const MAX_SDP_LEN: usize = 1 << 20;
/// Most lines accepted.
pub const MAX_SDP_LINES: usize = 16_384;
/// Most media sections accepted.
pub const MAX_MEDIA_SECTIONS: usize = 512;

/// An SDP parse error, naming the 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {kind}")]
pub struct SdpError {
    /// 1-based line number (0 for whole-document problems).
    pub line: usize,
    /// What is wrong.
    pub kind: SdpErrorKind,
}

/// What is wrong with an SDP line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpErrorKind {
    /// The text is empty.
    #[error("empty description")]
    Empty,
    /// The text is over the size, line or media-section limits.
    #[error("description too large")]
    TooLarge,
    /// The first line is not `v=0`.
    #[error("the first line must be v=0")]
    MissingVersion,
    /// A line is not `<letter>=<value>`.
    #[error("not a <type>=<value> line")]
    Malformed,
    /// A required session line is missing.
    #[error("missing {0} line")]
    MissingLine(&'static str),
    /// A line appears where it may not (e.g. a session line after `m=`).
    #[error("unexpected {0} line")]
    UnexpectedLine(&'static str),
    /// A field is missing from a line.
    #[error("missing field: {0}")]
    MissingField(&'static str),
    /// A number does not parse or is out of range.
    #[error("invalid number in {0}")]
    InvalidNumber(&'static str),
    /// An attribute's value does not follow its grammar.
    #[error("invalid a={0} attribute")]
    InvalidAttribute(&'static str),
}

fn err(line: usize, kind: SdpErrorKind) -> SdpError {
    SdpError { line, kind }
}

impl Sdp {
    /// Parse SDP text (CRLF or LF line endings).
    pub fn parse(text: &str) -> Result<Sdp, SdpError> {
        if text.len() > MAX_SDP_LEN {
            return Err(err(0, SdpErrorKind::TooLarge));
        }
        let mut sdp = Sdp::default();
        let mut seen_origin = false;
        let mut seen_name = false;
        let mut seen_timing = false;
        let mut seen_version = false;
        let mut lines = 0usize;
        for (index, raw) in text.split('\n').enumerate() {
            let n = index + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            lines += 1;
            if lines > MAX_SDP_LINES {
                return Err(err(n, SdpErrorKind::TooLarge));
            }
            if line.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F) {
                return Err(err(n, SdpErrorKind::Malformed));
            }
            let (kind, value) = match line.as_bytes() {
                [k, b'=', ..] => (*k, line.get(2..).unwrap_or("")),
                _ => return Err(err(n, SdpErrorKind::Malformed)),
            };
            if !seen_version {
                if kind != b'v' || value != "0" {
                    return Err(err(n, SdpErrorKind::MissingVersion));
                }
                seen_version = true;
                continue;
            }
            let in_media = !sdp.media.is_empty();
            match kind {
                b'v' => return Err(err(n, SdpErrorKind::UnexpectedLine("v="))),
                b'o' if !in_media => {
                    sdp.origin = parse_origin(value).map_err(|k| err(n, k))?;
                    seen_origin = true;
                }
                b's' if !in_media => {
                    sdp.session_name = value.to_string();
                    seen_name = true;
                }
                b't' if !in_media => {
                    let mut it = value.split(' ');
                    let start = number::<u64>(it.next(), "t=").map_err(|k| err(n, k))?;
                    let stop = number::<u64>(it.next(), "t=").map_err(|k| err(n, k))?;
                    sdp.timing = (start, stop);
                    seen_timing = true;
                }
                b'o' | b's' | b't' => return Err(err(n, SdpErrorKind::UnexpectedLine("session"))),
                b'c' => {
                    let c = parse_connection(value).map_err(|k| err(n, k))?;
                    match sdp.media.last_mut() {
                        Some(m) => m.connection = Some(c),
                        None => sdp.connection = Some(c),
                    }
                }
                b'b' => {
                    let b = parse_bandwidth(value).map_err(|k| err(n, k))?;
                    match sdp.media.last_mut() {
                        Some(m) => m.bandwidths.push(b),
                        None => sdp.bandwidths.push(b),
                    }
                }
                b'm' => {
                    if !(seen_origin && seen_name && seen_timing) {
                        let missing = if !seen_origin {
                            "o="
                        } else if !seen_name {
                            "s="
                        } else {
                            "t="
                        };
                        return Err(err(n, SdpErrorKind::MissingLine(missing)));
                    }
                    if sdp.media.len() >= MAX_MEDIA_SECTIONS {
                        return Err(err(n, SdpErrorKind::TooLarge));
                    }
                    sdp.media
                        .push(parse_media_line(value).map_err(|k| err(n, k))?);
                }
                b'a' => {
                    let (name, val) = match value.split_once(':') {
                        Some((name, val)) => (name, Some(val)),
                        None => (value, None),
                    };
                    let result = match sdp.media.last_mut() {
                        Some(m) => media_attribute(m, name, val),
                        None => session_attribute(&mut sdp, name, val),
                    };
                    result.map_err(|k| err(n, k))?;
                }
                b'i' | b'u' | b'e' | b'p' | b'k' | b'r' | b'z' => {}
                _ => return Err(err(n, SdpErrorKind::Malformed)),
            }
        }
        if !seen_version {
            return Err(err(0, SdpErrorKind::Empty));
        }
        for m in &mut sdp.media {
            canonicalize_payload_attributes(m);
        }
        for (flag, name) in [(seen_origin, "o="), (seen_name, "s="), (seen_timing, "t=")] {
            if !flag {
                return Err(err(0, SdpErrorKind::MissingLine(name)));
            }
        }
        Ok(sdp)
    }
}

/// The order in which the writer groups rtpmap, rtcp-fb and fmtp lines: payload types
/// listed on the m= line first, in that order, then any others by first appearance.
pub(crate) fn payload_type_order(m: &Media) -> Vec<u8> {
    let mut order: Vec<u8> = Vec::new();
    let listed = m.formats.iter().filter_map(|f| f.parse::<u8>().ok());
    let others = m
        .rtpmaps
        .iter()
        .map(|r| r.payload_type)
        .chain(m.rtcp_fbs.iter().filter_map(|f| f.payload_type))
        .chain(m.fmtps.iter().map(|f| f.payload_type));
    for pt in listed.chain(others) {
        if !order.contains(&pt) {
            order.push(pt);
        }
    }
    order
}

/// Order the per-payload-type attributes as the writer writes them (a stable sort by the
/// payload type's place in [`payload_type_order`]; `*` feedback first), so that writing a
/// parsed description and parsing it again gives the same model. The relative order of
/// attributes of different payload types carries no meaning.
fn canonicalize_payload_attributes(m: &mut Media) {
    let order = payload_type_order(m);
    let key = |pt: u8| order.iter().position(|p| *p == pt).unwrap_or(usize::MAX);
    m.rtpmaps.sort_by_key(|r| key(r.payload_type));
    m.rtcp_fbs
        .sort_by_key(|f| f.payload_type.map_or(0, |pt| key(pt).saturating_add(1)));
    m.fmtps.sort_by_key(|f| key(f.payload_type));
}

fn number<T: std::str::FromStr>(s: Option<&str>, what: &'static str) -> Result<T, SdpErrorKind> {
    let s = s.ok_or(SdpErrorKind::MissingField(what))?;
    s.trim()
        .parse()
        .map_err(|_| SdpErrorKind::InvalidNumber(what))
}

fn token(s: Option<&str>, what: &'static str) -> Result<String, SdpErrorKind> {
    match s {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => Err(SdpErrorKind::MissingField(what)),
    }
}

fn parse_origin(v: &str) -> Result<Origin, SdpErrorKind> {
    let mut it = v.split(' ');
    Ok(Origin {
        username: token(it.next(), "o= username")?,
        session_id: number(it.next(), "o= session id")?,
        session_version: number(it.next(), "o= session version")?,
        net_type: token(it.next(), "o= nettype")?,
        addr_type: token(it.next(), "o= addrtype")?,
        address: token(it.next(), "o= address")?,
    })
}

fn parse_connection(v: &str) -> Result<Connection, SdpErrorKind> {
    let mut it = v.split(' ');
    Ok(Connection {
        net_type: token(it.next(), "c= nettype")?,
        addr_type: token(it.next(), "c= addrtype")?,
        address: token(it.next(), "c= address")?,
    })
}

fn parse_bandwidth(v: &str) -> Result<Bandwidth, SdpErrorKind> {
    let (kind, value) = v
        .split_once(':')
        .ok_or(SdpErrorKind::MissingField("b= value"))?;
    if kind.is_empty() {
        return Err(SdpErrorKind::MissingField("b= type"));
    }
    Ok(Bandwidth {
        kind: kind.to_string(),
        value: number(Some(value), "b=")?,
    })
}

fn parse_media_line(v: &str) -> Result<Media, SdpErrorKind> {
    let mut it = v.split(' ');
    let media_type = match it.next() {
        Some("audio") => MediaType::Audio,
        Some("video") => MediaType::Video,
        Some("application") => MediaType::Application,
        Some(t) if !t.is_empty() => MediaType::Other(t.to_string()),
        _ => return Err(SdpErrorKind::MissingField("m= media")),
    };
    let port_field = it.next().ok_or(SdpErrorKind::MissingField("m= port"))?;
    let (port, port_count) = match port_field.split_once('/') {
        Some((p, c)) => (
            number(Some(p), "m= port")?,
            Some(number(Some(c), "m= port count")?),
        ),
        None => (number(Some(port_field), "m= port")?, None),
    };
    let protocol = token(it.next(), "m= proto")?;
    let formats: Vec<String> = it.filter(|f| !f.is_empty()).map(str::to_string).collect();
    if formats.len() > 512 {
        return Err(SdpErrorKind::TooLarge);
    }
    let mut m = Media::new(media_type, &protocol);
    m.port = port;
    m.port_count = port_count;
    m.formats = formats;
    Ok(m)
}

fn required<'a>(v: Option<&'a str>, name: &'static str) -> Result<&'a str, SdpErrorKind> {
    v.ok_or(SdpErrorKind::InvalidAttribute(name))
}

fn parse_fingerprint(v: &str) -> Result<FingerprintAttr, SdpErrorKind> {
    let bad = SdpErrorKind::InvalidAttribute("fingerprint");
    let (alg, hex) = v.trim().split_once(' ').ok_or(bad.clone())?;
    let mut value = Vec::with_capacity(64);
    for byte in hex.trim().split(':') {
        if byte.len() != 2 {
            return Err(bad);
        }
        value.push(u8::from_str_radix(byte, 16).map_err(|_| bad.clone())?);
    }
    if alg.is_empty() || value.is_empty() || value.len() > 64 {
        return Err(bad);
    }
    Ok(FingerprintAttr {
        algorithm: alg.to_ascii_lowercase(),
        value,
    })
}

fn parse_setup(v: &str) -> Result<Setup, SdpErrorKind> {
    Ok(match v.trim() {
        "actpass" => Setup::ActPass,
        "active" => Setup::Active,
        "passive" => Setup::Passive,
        "holdconn" => Setup::HoldConn,
        _ => return Err(SdpErrorKind::InvalidAttribute("setup")),
    })
}

fn parse_group(v: &str) -> Result<Group, SdpErrorKind> {
    let mut it = v.split(' ');
    let semantics = token(it.next(), "group semantics")?;
    Ok(Group {
        semantics,
        mids: it.filter(|m| !m.is_empty()).map(str::to_string).collect(),
    })
}

fn parse_extmap(v: &str) -> Result<Extmap, SdpErrorKind> {
    let bad = SdpErrorKind::InvalidAttribute("extmap");
    let (head, rest) = v.split_once(' ').ok_or(bad.clone())?;
    let (id, direction) = match head.split_once('/') {
        Some((id, d)) => (id, Some(Direction::from_sdp(d).ok_or(bad.clone())?)),
        None => (head, None),
    };
    let id: u16 = id.parse().map_err(|_| bad.clone())?;
    if id == 0 || id > 255 {
        return Err(bad);
    }
    let (uri, attributes) = match rest.split_once(' ') {
        Some((u, a)) => (u, Some(a.to_string())),
        None => (rest, None),
    };
    if uri.is_empty() {
        return Err(bad);
    }
    Ok(Extmap {
        id,
        direction,
        uri: uri.to_string(),
        attributes,
    })
}

fn parse_msid_semantic(v: &str) -> Result<MsidSemantic, SdpErrorKind> {
    let mut it = v.split(' ').filter(|s| !s.is_empty());
    let semantic = token(it.next(), "msid-semantic")?;
    Ok(MsidSemantic {
        semantic,
        ids: it.map(str::to_string).collect(),
    })
}

fn session_attribute(sdp: &mut Sdp, name: &str, v: Option<&str>) -> Result<(), SdpErrorKind> {
    match name {
        "group" => sdp.groups.push(parse_group(required(v, "group")?)?),
        "ice-ufrag" => sdp.ice_ufrag = Some(required(v, "ice-ufrag")?.to_string()),
        "ice-pwd" => sdp.ice_pwd = Some(required(v, "ice-pwd")?.to_string()),
        "ice-options" => {
            sdp.ice_options = required(v, "ice-options")?
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }
        "ice-lite" => sdp.ice_lite = true,
        "fingerprint" => sdp
            .fingerprints
            .push(parse_fingerprint(required(v, "fingerprint")?)?),
        "setup" => sdp.setup = Some(parse_setup(required(v, "setup")?)?),
        "extmap-allow-mixed" => sdp.extmap_allow_mixed = true,
        "msid-semantic" => {
            sdp.msid_semantic = Some(parse_msid_semantic(required(v, "msid-semantic")?)?)
        }
        "extmap" => sdp.extmaps.push(parse_extmap(required(v, "extmap")?)?),
        _ => match Direction::from_sdp(name).filter(|_| v.is_none()) {
            Some(d) => sdp.direction = Some(d),
            None => sdp.other.push(Attribute {
                name: name.to_string(),
                value: v.map(str::to_string),
            }),
        },
    }
    Ok(())
}

fn parse_pt(s: &str, what: &'static str) -> Result<u8, SdpErrorKind> {
    s.parse::<u8>()
        .ok()
        .filter(|pt| *pt < 128)
        .ok_or(SdpErrorKind::InvalidAttribute(what))
}

fn media_attribute(m: &mut Media, name: &str, v: Option<&str>) -> Result<(), SdpErrorKind> {
    match name {
        "mid" => m.mid = Some(required(v, "mid")?.to_string()),
        "ice-ufrag" => m.ice_ufrag = Some(required(v, "ice-ufrag")?.to_string()),
        "ice-pwd" => m.ice_pwd = Some(required(v, "ice-pwd")?.to_string()),
        "ice-options" => {
            m.ice_options = required(v, "ice-options")?
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        }
        "fingerprint" => m
            .fingerprints
            .push(parse_fingerprint(required(v, "fingerprint")?)?),
        "setup" => m.setup = Some(parse_setup(required(v, "setup")?)?),
        "extmap-allow-mixed" => m.extmap_allow_mixed = true,
        "extmap" => m.extmaps.push(parse_extmap(required(v, "extmap")?)?),
        "msid" => {
            let v = required(v, "msid")?;
            let (stream_id, track_id) = match v.split_once(' ') {
                Some((s, t)) => (s, Some(t.to_string())),
                None => (v, None),
            };
            if stream_id.is_empty() {
                return Err(SdpErrorKind::InvalidAttribute("msid"));
            }
            m.msids.push(Msid {
                stream_id: stream_id.to_string(),
                track_id,
            });
        }
        "rtcp" => {
            let v = required(v, "rtcp")?;
            let (port, rest) = match v.split_once(' ') {
                Some((p, r)) => (p, Some(r)),
                None => (v, None),
            };
            let port = port
                .parse()
                .map_err(|_| SdpErrorKind::InvalidAttribute("rtcp"))?;
            let connection = rest.map(parse_connection).transpose()?;
            m.rtcp = Some(RtcpAttr { port, connection });
        }
        "rtcp-mux" => m.rtcp_mux = true,
        "rtcp-mux-only" => m.rtcp_mux_only = true,
        "rtcp-rsize" => m.rtcp_rsize = true,
        "rtpmap" => {
            let bad = SdpErrorKind::InvalidAttribute("rtpmap");
            let (pt, rest) = required(v, "rtpmap")?.split_once(' ').ok_or(bad.clone())?;
            let mut parts = rest.split('/');
            let encoding = parts.next().filter(|s| !s.is_empty()).ok_or(bad.clone())?;
            let clock_rate = parts
                .next()
                .and_then(|c| c.parse().ok())
                .ok_or(bad.clone())?;
            let channels = match parts.next() {
                Some(c) => Some(c.parse().map_err(|_| bad.clone())?),
                None => None,
            };
            if parts.next().is_some() {
                return Err(bad);
            }
            m.rtpmaps.push(RtpMap {
                payload_type: parse_pt(pt, "rtpmap")?,
                encoding: encoding.to_string(),
                clock_rate,
                channels,
            });
        }
        "fmtp" => {
            let v = required(v, "fmtp")?;
            let (pt, params) = v
                .split_once(' ')
                .ok_or(SdpErrorKind::InvalidAttribute("fmtp"))?;
            m.fmtps.push(Fmtp {
                payload_type: parse_pt(pt, "fmtp")?,
                parameters: params.to_string(),
            });
        }
        "rtcp-fb" => {
            let v = required(v, "rtcp-fb")?;
            let (pt, value) = v
                .split_once(' ')
                .ok_or(SdpErrorKind::InvalidAttribute("rtcp-fb"))?;
            let payload_type = if pt == "*" {
                None
            } else {
                Some(parse_pt(pt, "rtcp-fb")?)
            };
            if value.is_empty() {
                return Err(SdpErrorKind::InvalidAttribute("rtcp-fb"));
            }
            m.rtcp_fbs.push(RtcpFb {
                payload_type,
                value: value.to_string(),
            });
        }
        "ssrc" => {
            let v = required(v, "ssrc")?;
            let bad = SdpErrorKind::InvalidAttribute("ssrc");
            let (ssrc, rest) = v.split_once(' ').ok_or(bad.clone())?;
            let ssrc = ssrc.parse().map_err(|_| bad.clone())?;
            let (attribute, value) = match rest.split_once(':') {
                Some((a, val)) => (a, Some(val.to_string())),
                None => (rest, None),
            };
            if attribute.is_empty() {
                return Err(bad);
            }
            m.ssrcs.push(SsrcAttr {
                ssrc,
                attribute: attribute.to_string(),
                value,
            });
        }
        "ssrc-group" => {
            let v = required(v, "ssrc-group")?;
            let mut it = v.split(' ');
            let semantics = it
                .next()
                .filter(|s| !s.is_empty())
                .ok_or(SdpErrorKind::InvalidAttribute("ssrc-group"))?;
            let ssrcs = it
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u32>()
                        .map_err(|_| SdpErrorKind::InvalidAttribute("ssrc-group"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            m.ssrc_groups.push(SsrcGroup {
                semantics: semantics.to_string(),
                ssrcs,
            });
        }
        "rid" => {
            let v = required(v, "rid")?;
            let bad = SdpErrorKind::InvalidAttribute("rid");
            let mut it = v.splitn(3, ' ');
            let id = it.next().filter(|s| !s.is_empty()).ok_or(bad.clone())?;
            let direction = match it.next() {
                Some("send") => RidDirection::Send,
                Some("recv") => RidDirection::Recv,
                _ => return Err(bad),
            };
            m.rids.push(Rid {
                id: id.to_string(),
                direction,
                params: it.next().map(str::to_string),
            });
        }
        "simulcast" => m.simulcast = Some(parse_simulcast(required(v, "simulcast")?)?),
        "sctp-port" => {
            m.sctp_port = Some(
                required(v, "sctp-port")?
                    .parse()
                    .map_err(|_| SdpErrorKind::InvalidAttribute("sctp-port"))?,
            )
        }
        "max-message-size" => {
            m.max_message_size = Some(
                required(v, "max-message-size")?
                    .parse()
                    .map_err(|_| SdpErrorKind::InvalidAttribute("max-message-size"))?,
            )
        }
        "candidate" => m.candidates.push(required(v, "candidate")?.to_string()),
        "end-of-candidates" => m.end_of_candidates = true,
        _ => match Direction::from_sdp(name).filter(|_| v.is_none()) {
            Some(d) => m.direction = Some(d),
            None => m.other.push(Attribute {
                name: name.to_string(),
                value: v.map(str::to_string),
            }),
        },
    }
    Ok(())
}

fn parse_simulcast_list(s: &str) -> Result<Vec<Vec<SimulcastStream>>, SdpErrorKind> {
    s.split(';')
        .map(|alternatives| {
            alternatives
                .split(',')
                .map(|rid| {
                    let (paused, rid) = match rid.strip_prefix('~') {
                        Some(r) => (true, r),
                        None => (false, rid),
                    };
                    if rid.is_empty() || rid.contains(' ') {
                        return Err(SdpErrorKind::InvalidAttribute("simulcast"));
                    }
                    Ok(SimulcastStream {
                        rid: rid.to_string(),
                        paused,
                    })
                })
                .collect()
        })
        .collect()
}

fn parse_simulcast(v: &str) -> Result<Simulcast, SdpErrorKind> {
    let mut out = Simulcast::default();
    let mut it = v.split(' ').filter(|s| !s.is_empty());
    let mut any = false;
    while let Some(dir) = it.next() {
        let list = it
            .next()
            .ok_or(SdpErrorKind::InvalidAttribute("simulcast"))?;
        let parsed = parse_simulcast_list(list)?;
        match dir {
            "send" if out.send.is_empty() => out.send = parsed,
            "recv" if out.recv.is_empty() => out.recv = parsed,
            _ => return Err(SdpErrorKind::InvalidAttribute("simulcast")),
        }
        any = true;
    }
    if !any {
        return Err(SdpErrorKind::InvalidAttribute("simulcast"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_OFFER: &str = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=ice-options:trickle\r\na=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\na=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:4/recvonly urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:stream track1\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=ssrc:1001 cname:abc\r\na=ssrc:1001 msid:stream track1\r\na=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0\r\na=end-of-candidates\r\na=x-unknown:42\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:2000\r\na=mid:1\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:* nack\r\na=rid:h send pt=96;max-width=1280\r\na=rid:l send\r\na=simulcast:send h;~l\r\na=ssrc-group:FID 1 2\r\n";

    #[test]
    fn parses_a_browser_like_offer() {
        let sdp = Sdp::parse(CHROME_OFFER).expect("parse");
        assert_eq!(sdp.origin.session_id, 4611731400430051336);
        assert_eq!(
            sdp.bundle_mids(),
            Some(&["0".to_string(), "1".to_string()][..])
        );
        assert!(sdp.extmap_allow_mixed);
        assert_eq!(
            sdp.msid_semantic.as_ref().map(|m| m.ids.clone()),
            Some(vec!["stream".to_string()])
        );
        let a = &sdp.media[0];
        assert_eq!(a.media_type, MediaType::Audio);
        assert_eq!(a.formats, vec!["111", "0"]);
        assert_eq!(a.fingerprints[0].value.len(), 32);
        assert_eq!(a.setup, Some(Setup::ActPass));
        assert_eq!(a.extmaps[1].direction, Some(Direction::RecvOnly));
        assert_eq!(a.direction, Some(Direction::SendRecv));
        assert_eq!(a.rtpmap(111).map(|r| r.channels), Some(Some(2)));
        assert_eq!(a.fmtp(111), Some("minptime=10;useinbandfec=1"));
        assert_eq!(a.ssrcs[1].value.as_deref(), Some("stream track1"));
        assert_eq!(a.candidates.len(), 1);
        assert!(a.end_of_candidates);
        assert_eq!(a.other[0].name, "x-unknown");
        let v = &sdp.media[1];
        assert_eq!(v.bandwidths[0].value, 2000);
        assert_eq!(v.rtcp_fbs[0].payload_type, None);
        assert_eq!(v.rids.len(), 2);
        assert_eq!(v.rids[0].params.as_deref(), Some("pt=96;max-width=1280"));
        let sim = v.simulcast.as_ref().expect("simulcast");
        assert_eq!(sim.send.len(), 2);
        assert!(sim.send[1][0].paused);
        assert_eq!(v.ssrc_groups[0].ssrcs, vec![1, 2]);
    }

    #[test]
    fn writes_back_what_it_parsed() {
        let sdp = Sdp::parse(CHROME_OFFER).expect("parse");
        let text = sdp.to_string();
        assert_eq!(Sdp::parse(&text).expect("reparse"), sdp);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(Sdp::parse("").map_err(|e| e.kind), Err(SdpErrorKind::Empty));
        assert_eq!(
            Sdp::parse("v=1\r\n").map_err(|e| (e.line, e.kind)),
            Err((1, SdpErrorKind::MissingVersion))
        );
        let bad_rtpmap = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n";
        assert_eq!(
            Sdp::parse(bad_rtpmap).map_err(|e| (e.line, e.kind)),
            Err((6, SdpErrorKind::InvalidAttribute("rtpmap")))
        );
        let no_timing = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nm=audio 9 RTP/AVP 0\n";
        assert_eq!(
            Sdp::parse(no_timing).map_err(|e| (e.line, e.kind)),
            Err((4, SdpErrorKind::MissingLine("t=")))
        );
        let bad_port = "v=0\no=- 1 1 IN IP4 0.0.0.0\ns=-\nt=0 0\nm=audio 99999 RTP/AVP 0\n";
        assert_eq!(
            Sdp::parse(bad_port).map_err(|e| (e.line, e.kind)),
            Err((5, SdpErrorKind::InvalidNumber("m= port")))
        );
        assert!(Sdp::parse("v=0\r\nxyz\r\n").is_err());
        let big = "v=0\r\n".to_string() + &"a=x\r\n".repeat(MAX_SDP_LINES + 1);
        assert_eq!(
            Sdp::parse(&big).map_err(|e| e.kind),
            Err(SdpErrorKind::TooLarge)
        );
    }

    #[test]
    fn bad_fingerprints_are_rejected() {
        for f in ["sha-256", "sha-256 ZZ:00", "sha-256 A:BB", "sha-256 "] {
            assert!(parse_fingerprint(f).is_err(), "{f}");
        }
    }
}

#[cfg(test)]
mod quickcheck_tests {
    use super::*;
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    /// A token without spaces, colons or line breaks (what SDP grammar allows in most fields).
    fn token(g: &mut Gen) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+/";
        let len = 1 + usize::arbitrary(g) % 12;
        (0..len)
            .map(|_| *g.choose(CHARS).unwrap_or(&b'a') as char)
            .collect()
    }

    fn tokens(g: &mut Gen, max: usize) -> Vec<String> {
        (0..usize::arbitrary(g) % (max + 1))
            .map(|_| token(g))
            .collect()
    }

    fn opt<T>(g: &mut Gen, f: impl FnOnce(&mut Gen) -> T) -> Option<T> {
        bool::arbitrary(g).then(|| f(g))
    }

    fn direction(g: &mut Gen) -> Direction {
        *g.choose(&[
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ])
        .unwrap_or(&Direction::SendRecv)
    }

    fn connection(g: &mut Gen) -> Connection {
        Connection {
            net_type: "IN".into(),
            addr_type: if bool::arbitrary(g) {
                "IP4".into()
            } else {
                "IP6".into()
            },
            address: token(g),
        }
    }

    fn fingerprint(g: &mut Gen) -> FingerprintAttr {
        FingerprintAttr {
            algorithm: "sha-256".into(),
            value: (0..32).map(|_| u8::arbitrary(g)).collect(),
        }
    }

    fn extmap(g: &mut Gen) -> Extmap {
        Extmap {
            id: 1 + u16::arbitrary(g) % 255,
            direction: opt(g, direction),
            uri: format!("urn:{}", token(g)),
            attributes: opt(g, token),
        }
    }

    fn other(g: &mut Gen) -> Attribute {
        Attribute {
            name: format!("x-{}", token(g)),
            value: opt(g, token),
        }
    }

    fn simulcast_list(g: &mut Gen) -> Vec<Vec<SimulcastStream>> {
        (0..1 + usize::arbitrary(g) % 3)
            .map(|_| {
                (0..1 + usize::arbitrary(g) % 2)
                    .map(|_| SimulcastStream {
                        rid: token(g).replace('~', "x"),
                        paused: bool::arbitrary(g),
                    })
                    .collect()
            })
            .collect()
    }

    fn media(g: &mut Gen) -> Media {
        let media_type = match u8::arbitrary(g) % 4 {
            0 => MediaType::Audio,
            1 => MediaType::Video,
            2 => MediaType::Application,
            _ => MediaType::Other(format!("x{}", token(g))),
        };
        let mut m = Media::new(media_type, "UDP/TLS/RTP/SAVPF");
        m.port = u16::arbitrary(g);
        m.port_count = opt(g, u16::arbitrary);
        let pts: Vec<u8> = (0..usize::arbitrary(g) % 5)
            .map(|_| u8::arbitrary(g) % 128)
            .collect();
        m.formats = pts.iter().map(u8::to_string).collect();
        m.connection = opt(g, connection);
        m.bandwidths = (0..usize::arbitrary(g) % 2)
            .map(|_| Bandwidth {
                kind: "AS".into(),
                value: u64::from(u32::arbitrary(g)),
            })
            .collect();
        m.mid = opt(g, token);
        m.direction = opt(g, direction);
        m.ice_ufrag = opt(g, token);
        m.ice_pwd = opt(g, token);
        m.ice_options = tokens(g, 2);
        m.fingerprints = (0..usize::arbitrary(g) % 2)
            .map(|_| fingerprint(g))
            .collect();
        m.setup = opt(g, |g| {
            *g.choose(&[
                Setup::ActPass,
                Setup::Active,
                Setup::Passive,
                Setup::HoldConn,
            ])
            .unwrap_or(&Setup::ActPass)
        });
        m.extmap_allow_mixed = bool::arbitrary(g);
        m.extmaps = (0..usize::arbitrary(g) % 3).map(|_| extmap(g)).collect();
        m.msids = (0..usize::arbitrary(g) % 2)
            .map(|_| Msid {
                stream_id: token(g),
                track_id: opt(g, token),
            })
            .collect();
        m.rtcp = opt(g, |g| RtcpAttr {
            port: u16::arbitrary(g),
            connection: opt(g, connection),
        });
        m.rtcp_mux = bool::arbitrary(g);
        m.rtcp_mux_only = bool::arbitrary(g);
        m.rtcp_rsize = bool::arbitrary(g);
        // Per payload type attributes, in format order, as the writer groups them.
        for pt in &pts {
            if m.rtpmaps.iter().any(|r| r.payload_type == *pt) {
                continue;
            }
            m.rtpmaps.push(RtpMap {
                payload_type: *pt,
                encoding: token(g).replace('/', "x"),
                clock_rate: u32::arbitrary(g),
                channels: opt(g, u16::arbitrary),
            });
            if bool::arbitrary(g) {
                m.rtcp_fbs.push(RtcpFb {
                    payload_type: Some(*pt),
                    value: format!("{} {}", token(g), token(g)),
                });
            }
            if bool::arbitrary(g) {
                m.fmtps.push(Fmtp {
                    payload_type: *pt,
                    parameters: format!("{}={}", token(g), token(g)),
                });
            }
        }
        m.ssrc_groups = (0..usize::arbitrary(g) % 2)
            .map(|_| SsrcGroup {
                semantics: "FID".into(),
                ssrcs: vec![u32::arbitrary(g), u32::arbitrary(g)],
            })
            .collect();
        m.ssrcs = (0..usize::arbitrary(g) % 3)
            .map(|_| SsrcAttr {
                ssrc: u32::arbitrary(g),
                attribute: token(g),
                value: opt(g, |g| format!("{} {}", token(g), token(g))),
            })
            .collect();
        m.rids = (0..usize::arbitrary(g) % 3)
            .map(|_| Rid {
                id: token(g),
                direction: if bool::arbitrary(g) {
                    RidDirection::Send
                } else {
                    RidDirection::Recv
                },
                params: opt(g, |g| format!("max-width={}", u16::arbitrary(g))),
            })
            .collect();
        m.simulcast = opt(g, |g| Simulcast {
            send: simulcast_list(g),
            recv: if bool::arbitrary(g) {
                simulcast_list(g)
            } else {
                Vec::new()
            },
        });
        m.sctp_port = opt(g, u16::arbitrary);
        m.max_message_size = opt(g, |g| u64::from(u32::arbitrary(g)));
        m.candidates = (0..usize::arbitrary(g) % 3)
            .map(|_| {
                format!(
                    "1 1 udp {} 10.0.0.1 {} typ host",
                    u32::arbitrary(g),
                    u16::arbitrary(g)
                )
            })
            .collect();
        m.end_of_candidates = bool::arbitrary(g);
        m.other = (0..usize::arbitrary(g) % 3).map(|_| other(g)).collect();
        m
    }

    #[derive(Debug, Clone)]
    struct AnySdp(Sdp);

    impl Arbitrary for AnySdp {
        fn arbitrary(g: &mut Gen) -> Self {
            let sdp = Sdp {
                origin: Origin {
                    username: token(g),
                    session_id: u64::arbitrary(g),
                    session_version: u64::arbitrary(g),
                    net_type: "IN".into(),
                    addr_type: "IP4".into(),
                    address: token(g),
                },
                session_name: token(g),
                connection: opt(g, connection),
                bandwidths: Vec::new(),
                timing: (u64::from(u32::arbitrary(g)), 0),
                groups: (0..usize::arbitrary(g) % 2)
                    .map(|_| Group {
                        semantics: "BUNDLE".into(),
                        mids: tokens(g, 4),
                    })
                    .collect(),
                ice_ufrag: opt(g, token),
                ice_pwd: opt(g, token),
                ice_options: tokens(g, 2),
                ice_lite: bool::arbitrary(g),
                fingerprints: (0..usize::arbitrary(g) % 2)
                    .map(|_| fingerprint(g))
                    .collect(),
                setup: opt(g, |g| {
                    *g.choose(&[Setup::ActPass, Setup::Active])
                        .unwrap_or(&Setup::ActPass)
                }),
                extmap_allow_mixed: bool::arbitrary(g),
                msid_semantic: opt(g, |g| MsidSemantic {
                    semantic: "WMS".into(),
                    ids: tokens(g, 2),
                }),
                extmaps: (0..usize::arbitrary(g) % 2).map(|_| extmap(g)).collect(),
                direction: opt(g, direction),
                other: (0..usize::arbitrary(g) % 2).map(|_| other(g)).collect(),
                media: (0..usize::arbitrary(g) % 4).map(|_| media(g)).collect(),
            };
            AnySdp(sdp)
        }
    }

    #[test]
    fn write_then_parse_gives_the_model_back() {
        fn prop(s: AnySdp) -> bool {
            let text = s.0.to_string();
            match Sdp::parse(&text) {
                Ok(parsed) if parsed == s.0 => true,
                Ok(parsed) => {
                    eprintln!("{text}\n{:#?}\n{:#?}", parsed, s.0);
                    false
                }
                Err(e) => {
                    eprintln!("{text}\n{e}");
                    false
                }
            }
        }
        QuickCheck::new()
            .tests(500)
            .quickcheck(prop as fn(AnySdp) -> bool);
    }

    #[test]
    fn arbitrary_text_never_panics() {
        fn prop(lines: Vec<String>) -> bool {
            let text = format!(
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n{}",
                lines.join("\r\n")
            );
            let _ = Sdp::parse(&text);
            let _ = Sdp::parse(&lines.join("\n"));
            true
        }
        QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<String>) -> bool);
    }
}
