//! Ogg (RFC 3533) pages and Ogg Opus (RFC 7845) files: the page CRC, a writer, a reader
//! that checks every page, the `OpusHead`/`OpusTags` headers, and the duration of an
//! Opus packet from its TOC byte (RFC 6716 section 3.1), which gives granule positions.
//!
//! ```text
//! page: 'OggS' | version 0 | header_type (1 continued, 2 BOS, 4 EOS) | granule (u64)
//!       | serial (u32) | sequence (u32) | CRC (u32) | segment count | lacing values | data
//! ```

use std::fmt;
use std::io::{self, Write};

/// The page header's length without the lacing values.
pub const PAGE_HEADER_LEN: usize = 27;
/// Header type: the page continues a packet from the previous page.
pub const CONTINUED: u8 = 0x01;
/// Header type: the first page of a stream.
pub const BOS: u8 = 0x02;
/// Header type: the last page of a stream.
pub const EOS: u8 = 0x04;
/// Opus granule positions count 48 kHz samples.
pub const OPUS_RATE: u32 = 48_000;
/// The longest packet one page holds (255 lacing values).
pub const MAX_PACKET: usize = 255 * 255 - 1;

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

/// The Ogg CRC-32: polynomial 0x04c11db7, initial value 0, not reflected, no final xor.
/// Over a page, it is computed with the CRC field set to zero.
pub fn crc32(data: &[u8]) -> u32 {
    data.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

/// Why an Ogg stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OggError {
    /// No `OggS` capture pattern where a page should start.
    NoCapture,
    /// A stream structure version other than 0.
    Version(u8),
    /// The data ends inside a page.
    Truncated,
    /// A page's CRC does not match its contents.
    Crc {
        /// The page's sequence number.
        sequence: u32,
    },
    /// Pages out of order, a missing BOS/EOS, or a packet continued from nowhere.
    Structure(&'static str),
    /// The first packet is not a valid `OpusHead`.
    NotOpus,
    /// An Opus packet whose TOC byte gives no valid duration.
    BadOpusPacket,
}

impl fmt::Display for OggError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OggError::NoCapture => f.write_str("no OggS capture pattern"),
            OggError::Version(v) => write!(f, "Ogg version {v}"),
            OggError::Truncated => f.write_str("Ogg data truncated"),
            OggError::Crc { sequence } => write!(f, "Ogg page {sequence}: CRC mismatch"),
            OggError::Structure(what) => write!(f, "Ogg stream: {what}"),
            OggError::NotOpus => f.write_str("not an Ogg Opus stream (no OpusHead)"),
            OggError::BadOpusPacket => f.write_str("malformed Opus packet"),
        }
    }
}

impl std::error::Error for OggError {}

/// One parsed page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The header type flags.
    pub header_type: u8,
    /// The granule position (`u64::MAX`, i.e. -1, when no packet ends here).
    pub granule: u64,
    /// The bitstream serial number.
    pub serial: u32,
    /// The page sequence number.
    pub sequence: u32,
    /// The lacing values.
    pub lacing: Vec<u8>,
    /// The page's data.
    pub body: Vec<u8>,
}

impl Page {
    /// Parse the page at the start of `data`, checking its CRC; returns it and its length.
    pub fn parse(data: &[u8]) -> Result<(Page, usize), OggError> {
        let header = data.get(..PAGE_HEADER_LEN).ok_or(OggError::Truncated)?;
        if &header[0..4] != b"OggS" {
            return Err(OggError::NoCapture);
        }
        if header[4] != 0 {
            return Err(OggError::Version(header[4]));
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let mut granule = [0u8; 8];
        granule.copy_from_slice(&header[6..14]);
        let segments = usize::from(header[26]);
        let lacing = data
            .get(PAGE_HEADER_LEN..PAGE_HEADER_LEN + segments)
            .ok_or(OggError::Truncated)?;
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let len = PAGE_HEADER_LEN + segments + body_len;
        let page = data.get(..len).ok_or(OggError::Truncated)?;
        let sequence = u32_at(18);
        let mut zeroed = page.to_vec();
        zeroed[22..26].fill(0);
        if crc32(&zeroed) != u32_at(22) {
            return Err(OggError::Crc { sequence });
        }
        Ok((
            Page {
                header_type: header[5],
                granule: u64::from_le_bytes(granule),
                serial: u32_at(14),
                sequence,
                lacing: lacing.to_vec(),
                body: page[PAGE_HEADER_LEN + segments..].to_vec(),
            },
            len,
        ))
    }

    /// The page's bytes, CRC filled in.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PAGE_HEADER_LEN + self.lacing.len() + self.body.len());
        b.extend_from_slice(b"OggS");
        b.push(0);
        b.push(self.header_type);
        b.extend_from_slice(&self.granule.to_le_bytes());
        b.extend_from_slice(&self.serial.to_le_bytes());
        b.extend_from_slice(&self.sequence.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.push(self.lacing.len() as u8);
        b.extend_from_slice(&self.lacing);
        b.extend_from_slice(&self.body);
        let crc = crc32(&b);
        b[22..26].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Parse every page of a stream.
pub fn read_pages(mut data: &[u8]) -> Result<Vec<Page>, OggError> {
    let mut pages = Vec::new();
    while !data.is_empty() {
        let (page, len) = Page::parse(data)?;
        pages.push(page);
        data = &data[len..];
    }
    Ok(pages)
}

/// A packet read back, with the granule position of the page it ends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The packet.
    pub data: Vec<u8>,
    /// The granule position of the page where the packet ends.
    pub page_granule: u64,
}

/// The packets of a single logical stream, checking page order and the BOS and EOS flags
/// (a stream without an EOS page is an error: it was not finished).
pub fn read_packets(pages: &[Page]) -> Result<Vec<Packet>, OggError> {
    let first = pages.first().ok_or(OggError::Structure("no pages"))?;
    let mut packets = Vec::new();
    let mut partial: Option<Vec<u8>> = None;
    for (i, page) in pages.iter().enumerate() {
        if page.serial != first.serial || page.sequence != first.sequence.wrapping_add(i as u32) {
            return Err(OggError::Structure("pages out of sequence"));
        }
        if (page.header_type & BOS != 0) != (i == 0) {
            return Err(OggError::Structure(
                "BOS flag only and always on the first page",
            ));
        }
        if (page.header_type & EOS != 0) != (i + 1 == pages.len()) {
            return Err(OggError::Structure(
                "EOS flag only and always on the last page",
            ));
        }
        if (page.header_type & CONTINUED != 0) != partial.is_some() {
            return Err(OggError::Structure("continued-packet flag does not match"));
        }
        let mut offset = 0;
        let mut current = partial.take().unwrap_or_default();
        for &l in &page.lacing {
            let end = offset + usize::from(l);
            current.extend_from_slice(page.body.get(offset..end).ok_or(OggError::Truncated)?);
            offset = end;
            if l < 255 {
                packets.push(Packet {
                    data: std::mem::take(&mut current),
                    page_granule: page.granule,
                });
            }
        }
        if page.lacing.last() == Some(&255) {
            partial = Some(current);
        }
    }
    if partial.is_some() {
        return Err(OggError::Structure("the last packet is unfinished"));
    }
    Ok(packets)
}

/// Writes one logical Ogg stream: packets are gathered into pages; `flush` ends a page;
/// `finish` writes the last page with the EOS flag.
pub struct OggWriter<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    pending: Vec<u8>,
    lacing: Vec<u8>,
    granule: u64,
}

impl<W: Write> OggWriter<W> {
    /// A stream with this serial number.
    pub fn new(out: W, serial: u32) -> OggWriter<W> {
        OggWriter {
            out,
            serial,
            sequence: 0,
            pending: Vec::new(),
            lacing: Vec::new(),
            granule: 0,
        }
    }

    /// Add a packet that ends at `granule`; the current page is written first when the
    /// packet would not fit in it. Packets over `MAX_PACKET` bytes are refused.
    pub fn write_packet(&mut self, packet: &[u8], granule: u64) -> io::Result<()> {
        if packet.len() > MAX_PACKET {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "packet too large for a page",
            ));
        }
        let segments = packet.len() / 255 + 1;
        if self.lacing.len() + segments > 255 {
            self.flush()?;
        }
        self.lacing
            .extend(std::iter::repeat_n(255, packet.len() / 255));
        self.lacing.push((packet.len() % 255) as u8);
        self.pending.extend_from_slice(packet);
        self.granule = granule;
        Ok(())
    }

    /// Packets waiting for their page.
    pub fn pending_packets(&self) -> usize {
        self.lacing.iter().filter(|&&l| l < 255).count()
    }

    fn write_page(&mut self, flags: u8) -> io::Result<()> {
        let page = Page {
            header_type: flags | if self.sequence == 0 { BOS } else { 0 },
            // -1: no packet ends on an empty page.
            granule: if self.lacing.is_empty() {
                u64::MAX
            } else {
                self.granule
            },
            serial: self.serial,
            sequence: self.sequence,
            lacing: std::mem::take(&mut self.lacing),
            body: std::mem::take(&mut self.pending),
        };
        self.out.write_all(&page.to_bytes())?;
        self.sequence += 1;
        Ok(())
    }

    /// Write the gathered packets as a page (nothing when there are none).
    pub fn flush(&mut self) -> io::Result<()> {
        if self.lacing.is_empty() {
            return Ok(());
        }
        self.write_page(0)
    }

    /// Write the last page (EOS; empty when no packet is pending) and flush the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_page(EOS)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The `OpusHead` identification header (channel mapping family 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// 1 or 2.
    pub channels: u8,
    /// Samples (at 48 kHz) to drop from the decoder's output at the start.
    pub pre_skip: u16,
    /// The original input rate (informational).
    pub input_rate: u32,
}

impl OpusHead {
    /// The 19-byte packet.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = b"OpusHead".to_vec();
        b.push(1);
        b.push(self.channels);
        b.extend_from_slice(&self.pre_skip.to_le_bytes());
        b.extend_from_slice(&self.input_rate.to_le_bytes());
        b.extend_from_slice(&0i16.to_le_bytes());
        b.push(0);
        b
    }

    /// Parse the identification header (version 0.x, mapping family 0 or 1).
    pub fn parse(b: &[u8]) -> Result<OpusHead, OggError> {
        if b.len() < 19 || &b[0..8] != b"OpusHead" || b[8] >> 4 != 0 || b[9] == 0 {
            return Err(OggError::NotOpus);
        }
        Ok(OpusHead {
            channels: b[9],
            pre_skip: u16::from_le_bytes([b[10], b[11]]),
            input_rate: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        })
    }
}

/// An `OpusTags` comment header with a vendor string and no comments.
pub fn opus_tags(vendor: &str) -> Vec<u8> {
    let mut b = b"OpusTags".to_vec();
    b.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    b.extend_from_slice(vendor.as_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// An Opus packet's duration in 48 kHz samples, from its TOC byte and frame count.
pub fn opus_samples(packet: &[u8]) -> Result<u32, OggError> {
    let toc = *packet.first().ok_or(OggError::BadOpusPacket)?;
    let config = toc >> 3;
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1).ok_or(OggError::BadOpusPacket)? & 0x3f),
    };
    let samples = frame * frames;
    if frames == 0 || samples > 5760 {
        return Err(OggError::BadOpusPacket);
    }
    Ok(samples)
}

/// Writes an Ogg Opus file: `OpusHead` and `OpusTags` on their own pages, then audio
/// packets with granule positions from their durations, about one page per second.
pub struct OpusWriter<W: Write> {
    ogg: OggWriter<W>,
    granule: u64,
    packets: u64,
}

/// Audio packets per page.
const PACKETS_PER_PAGE: usize = 50;

impl<W: Write> OpusWriter<W> {
    /// Write the two header pages.
    pub fn new(out: W, serial: u32, head: OpusHead) -> io::Result<OpusWriter<W>> {
        let mut ogg = OggWriter::new(out, serial);
        ogg.write_packet(&head.to_bytes(), 0)?;
        ogg.flush()?;
        ogg.write_packet(&opus_tags("sansrtc"), 0)?;
        ogg.flush()?;
        Ok(OpusWriter {
            ogg,
            granule: u64::from(head.pre_skip),
            packets: 0,
        })
    }

    /// Append an audio packet; a malformed one (no valid TOC) is refused.
    pub fn write_packet(&mut self, packet: &[u8]) -> io::Result<()> {
        let samples = opus_samples(packet).map_err(io::Error::other)?;
        if self.ogg.pending_packets() >= PACKETS_PER_PAGE {
            self.ogg.flush()?;
        }
        self.granule += u64::from(samples);
        self.ogg.write_packet(packet, self.granule)?;
        self.packets += 1;
        Ok(())
    }

    /// Audio packets written.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Write the EOS page.
    pub fn finish(self) -> io::Result<W> {
        self.ogg.finish()
    }
}

/// A whole Ogg Opus file read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusFile {
    /// The identification header.
    pub head: OpusHead,
    /// The audio packets in order.
    pub packets: Vec<Vec<u8>>,
    /// The last page's granule position.
    pub final_granule: u64,
}

impl OpusFile {
    /// Parse and check a file: every page's CRC, the page structure, `OpusHead` and
    /// `OpusTags`, and a valid TOC on every audio packet.
    pub fn parse(data: &[u8]) -> Result<OpusFile, OggError> {
        let pages = read_pages(data)?;
        let mut packets = read_packets(&pages)?.into_iter();
        let head = OpusHead::parse(&packets.next().ok_or(OggError::NotOpus)?.data)?;
        let tags = packets.next().ok_or(OggError::NotOpus)?;
        if !tags.data.starts_with(b"OpusTags") {
            return Err(OggError::NotOpus);
        }
        let packets: Vec<Vec<u8>> = packets.map(|p| p.data).collect();
        for p in &packets {
            opus_samples(p)?;
        }
        Ok(OpusFile {
            head,
            packets,
            final_granule: pages.last().map_or(0, |p| p.granule),
        })
    }
}

#[cfg(test)]
#[path = "ogg_tests.rs"]
mod tests;
