//! SDP model to text: CRLF line endings, lines in the order Chromium writes them.
//!
//! Within a media section the typed attributes come first in Chromium's order and the
//! untyped ones (`other`) last, so unknown attributes survive a round trip but may move
//! within their section.

use std::fmt::{self, Write};

use super::model::{
    Connection, Extmap, FingerprintAttr, Media, RtcpFb, Sdp, Simulcast, SimulcastStream,
};

fn line(f: &mut fmt::Formatter<'_>, args: fmt::Arguments<'_>) -> fmt::Result {
    f.write_fmt(args)?;
    f.write_str("\r\n")
}

fn connection(c: &Connection) -> String {
    format!("{} {} {}", c.net_type, c.addr_type, c.address)
}

fn fingerprint(f: &mut fmt::Formatter<'_>, fp: &FingerprintAttr) -> fmt::Result {
    f.write_str("a=fingerprint:")?;
    f.write_str(&fp.algorithm)?;
    f.write_char(' ')?;
    for (i, b) in fp.value.iter().enumerate() {
        if i > 0 {
            f.write_char(':')?;
        }
        write!(f, "{b:02X}")?;
    }
    f.write_str("\r\n")
}

fn extmap(f: &mut fmt::Formatter<'_>, x: &Extmap) -> fmt::Result {
    write!(f, "a=extmap:{}", x.id)?;
    if let Some(d) = x.direction {
        write!(f, "/{}", d.as_str())?;
    }
    write!(f, " {}", x.uri)?;
    if let Some(a) = &x.attributes {
        write!(f, " {a}")?;
    }
    f.write_str("\r\n")
}

fn simulcast_list(list: &[Vec<SimulcastStream>]) -> String {
    list.iter()
        .map(|alts| {
            alts.iter()
                .map(|s| format!("{}{}", if s.paused { "~" } else { "" }, s.rid))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(";")
}

fn simulcast(s: &Simulcast) -> String {
    let mut parts = Vec::new();
    if !s.send.is_empty() {
        parts.push(format!("send {}", simulcast_list(&s.send)));
    }
    if !s.recv.is_empty() {
        parts.push(format!("recv {}", simulcast_list(&s.recv)));
    }
    parts.join(" ")
}

fn rtcp_fb(f: &mut fmt::Formatter<'_>, fb: &RtcpFb) -> fmt::Result {
    match fb.payload_type {
        Some(pt) => line(f, format_args!("a=rtcp-fb:{pt} {}", fb.value)),
        None => line(f, format_args!("a=rtcp-fb:* {}", fb.value)),
    }
}

fn media(f: &mut fmt::Formatter<'_>, m: &Media) -> fmt::Result {
    write!(f, "m={} {}", m.media_type.as_str(), m.port)?;
    if let Some(c) = m.port_count {
        write!(f, "/{c}")?;
    }
    write!(f, " {}", m.protocol)?;
    for fmt_ in &m.formats {
        write!(f, " {fmt_}")?;
    }
    f.write_str("\r\n")?;
    if let Some(c) = &m.connection {
        line(f, format_args!("c={}", connection(c)))?;
    }
    for b in &m.bandwidths {
        line(f, format_args!("b={}:{}", b.kind, b.value))?;
    }
    if let Some(r) = &m.rtcp {
        match &r.connection {
            Some(c) => line(f, format_args!("a=rtcp:{} {}", r.port, connection(c)))?,
            None => line(f, format_args!("a=rtcp:{}", r.port))?,
        }
    }
    // Chromium writes gathered candidates right after a=rtcp.
    for c in &m.candidates {
        line(f, format_args!("a=candidate:{c}"))?;
    }
    if m.end_of_candidates {
        f.write_str("a=end-of-candidates\r\n")?;
    }
    if let Some(u) = &m.ice_ufrag {
        line(f, format_args!("a=ice-ufrag:{u}"))?;
    }
    if let Some(p) = &m.ice_pwd {
        line(f, format_args!("a=ice-pwd:{p}"))?;
    }
    if !m.ice_options.is_empty() {
        line(f, format_args!("a=ice-options:{}", m.ice_options.join(" ")))?;
    }
    for fp in &m.fingerprints {
        fingerprint(f, fp)?;
    }
    if let Some(s) = m.setup {
        line(f, format_args!("a=setup:{}", s.as_str()))?;
    }
    if let Some(mid) = &m.mid {
        line(f, format_args!("a=mid:{mid}"))?;
    }
    if m.extmap_allow_mixed {
        f.write_str("a=extmap-allow-mixed\r\n")?;
    }
    for x in &m.extmaps {
        extmap(f, x)?;
    }
    if let Some(d) = m.direction {
        line(f, format_args!("a={}", d.as_str()))?;
    }
    for msid in &m.msids {
        match &msid.track_id {
            Some(t) => line(f, format_args!("a=msid:{} {t}", msid.stream_id))?,
            None => line(f, format_args!("a=msid:{}", msid.stream_id))?,
        }
    }
    if m.rtcp_mux {
        f.write_str("a=rtcp-mux\r\n")?;
    }
    if m.rtcp_mux_only {
        f.write_str("a=rtcp-mux-only\r\n")?;
    }
    if m.rtcp_rsize {
        f.write_str("a=rtcp-rsize\r\n")?;
    }
    // rtpmap, rtcp-fb and fmtp grouped per payload type: listed payload types in format
    // order, then the others by first appearance (the parser canonicalizes to this order).
    for fb in m.rtcp_fbs.iter().filter(|fb| fb.payload_type.is_none()) {
        rtcp_fb(f, fb)?;
    }
    for pt in super::parse::payload_type_order(m) {
        for r in m.rtpmaps.iter().filter(|r| r.payload_type == pt) {
            rtpmap(f, r)?;
        }
        for fb in m.rtcp_fbs.iter().filter(|fb| fb.payload_type == Some(pt)) {
            rtcp_fb(f, fb)?;
        }
        for fm in m.fmtps.iter().filter(|fm| fm.payload_type == pt) {
            line(
                f,
                format_args!("a=fmtp:{} {}", fm.payload_type, fm.parameters),
            )?;
        }
    }
    for g in &m.ssrc_groups {
        let ssrcs: Vec<String> = g.ssrcs.iter().map(u32::to_string).collect();
        if ssrcs.is_empty() {
            line(f, format_args!("a=ssrc-group:{}", g.semantics))?;
        } else {
            line(
                f,
                format_args!("a=ssrc-group:{} {}", g.semantics, ssrcs.join(" ")),
            )?;
        }
    }
    for s in &m.ssrcs {
        match &s.value {
            Some(v) => line(f, format_args!("a=ssrc:{} {}:{v}", s.ssrc, s.attribute))?,
            None => line(f, format_args!("a=ssrc:{} {}", s.ssrc, s.attribute))?,
        }
    }
    for r in &m.rids {
        let dir = match r.direction {
            super::model::RidDirection::Send => "send",
            super::model::RidDirection::Recv => "recv",
        };
        match &r.params {
            Some(p) => line(f, format_args!("a=rid:{} {dir} {p}", r.id))?,
            None => line(f, format_args!("a=rid:{} {dir}", r.id))?,
        }
    }
    if let Some(s) = &m.simulcast {
        line(f, format_args!("a=simulcast:{}", simulcast(s)))?;
    }
    if let Some(p) = m.sctp_port {
        line(f, format_args!("a=sctp-port:{p}"))?;
    }
    if let Some(s) = m.max_message_size {
        line(f, format_args!("a=max-message-size:{s}"))?;
    }
    for a in &m.other {
        attribute(f, &a.name, a.value.as_deref())?;
    }
    Ok(())
}

fn rtpmap(f: &mut fmt::Formatter<'_>, r: &super::model::RtpMap) -> fmt::Result {
    match r.channels {
        Some(c) => line(
            f,
            format_args!(
                "a=rtpmap:{} {}/{}/{c}",
                r.payload_type, r.encoding, r.clock_rate
            ),
        ),
        None => line(
            f,
            format_args!(
                "a=rtpmap:{} {}/{}",
                r.payload_type, r.encoding, r.clock_rate
            ),
        ),
    }
}

fn attribute(f: &mut fmt::Formatter<'_>, name: &str, value: Option<&str>) -> fmt::Result {
    match value {
        Some(v) => line(f, format_args!("a={name}:{v}")),
        None => line(f, format_args!("a={name}")),
    }
}

impl fmt::Display for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        f.write_str("v=0\r\n")?;
        line(
            f,
            format_args!(
                "o={} {} {} {} {} {}",
                o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
            ),
        )?;
        line(f, format_args!("s={}", self.session_name))?;
        if let Some(c) = &self.connection {
            line(f, format_args!("c={}", connection(c)))?;
        }
        for b in &self.bandwidths {
            line(f, format_args!("b={}:{}", b.kind, b.value))?;
        }
        line(f, format_args!("t={} {}", self.timing.0, self.timing.1))?;
        for g in &self.groups {
            if g.mids.is_empty() {
                line(f, format_args!("a=group:{}", g.semantics))?;
            } else {
                line(
                    f,
                    format_args!("a=group:{} {}", g.semantics, g.mids.join(" ")),
                )?;
            }
        }
        if self.extmap_allow_mixed {
            f.write_str("a=extmap-allow-mixed\r\n")?;
        }
        if let Some(ms) = &self.msid_semantic {
            // Chromium writes a space after the colon; keep it so its lines survive unchanged.
            if ms.ids.is_empty() {
                line(f, format_args!("a=msid-semantic: {}", ms.semantic))?;
            } else {
                line(
                    f,
                    format_args!("a=msid-semantic: {} {}", ms.semantic, ms.ids.join(" ")),
                )?;
            }
        }
        if self.ice_lite {
            f.write_str("a=ice-lite\r\n")?;
        }
        if let Some(u) = &self.ice_ufrag {
            line(f, format_args!("a=ice-ufrag:{u}"))?;
        }
        if let Some(p) = &self.ice_pwd {
            line(f, format_args!("a=ice-pwd:{p}"))?;
        }
        if !self.ice_options.is_empty() {
            line(
                f,
                format_args!("a=ice-options:{}", self.ice_options.join(" ")),
            )?;
        }
        for fp in &self.fingerprints {
            fingerprint(f, fp)?;
        }
        if let Some(s) = self.setup {
            line(f, format_args!("a=setup:{}", s.as_str()))?;
        }
        for x in &self.extmaps {
            extmap(f, x)?;
        }
        if let Some(d) = self.direction {
            line(f, format_args!("a={}", d.as_str()))?;
        }
        for a in &self.other {
            attribute(f, &a.name, a.value.as_deref())?;
        }
        for m in &self.media {
            media(f, m)?;
        }
        Ok(())
    }
}
