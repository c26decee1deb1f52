//! IVF, the simple container libvpx tools use for VP8: a 32-byte file header
//!
//! ```text
//! 0  'DKIF'   4  version (u16, 0)   6  header size (u16, 32)   8  fourcc ('VP80')
//! 12 width (u16)   14 height (u16)   16 timebase denominator (u32)
//! 20 timebase numerator (u32)   24 frame count (u32)   28 unused (u32)
//! ```
//!
//! then per frame a 12-byte header (size u32, pts u64, little endian) and the frame.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// The file header's length.
pub const HEADER_LEN: usize = 32;
/// A frame header's length.
pub const FRAME_HEADER_LEN: usize = 12;
/// Frames larger than this are refused when reading.
pub const MAX_FRAME: u32 = 16 << 20;

/// An IVF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    /// The codec, `VP80` for VP8.
    pub fourcc: [u8; 4],
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Timebase denominator (units per second): 90000 for RTP video clocks.
    pub timebase_den: u32,
    /// Timebase numerator.
    pub timebase_num: u32,
    /// The number of frames (as the writer recorded it).
    pub frames: u32,
}

impl IvfHeader {
    /// A VP8 header with a 1/90000 timebase.
    pub fn vp8(width: u16, height: u16) -> IvfHeader {
        IvfHeader {
            fourcc: *b"VP80",
            width,
            height,
            timebase_den: 90_000,
            timebase_num: 1,
            frames: 0,
        }
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(b"DKIF");
        b[4..6].copy_from_slice(&0u16.to_le_bytes());
        b[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        b[8..12].copy_from_slice(&self.fourcc);
        b[12..14].copy_from_slice(&self.width.to_le_bytes());
        b[14..16].copy_from_slice(&self.height.to_le_bytes());
        b[16..20].copy_from_slice(&self.timebase_den.to_le_bytes());
        b[20..24].copy_from_slice(&self.timebase_num.to_le_bytes());
        b[24..28].copy_from_slice(&self.frames.to_le_bytes());
        b
    }

    /// Parse a header (the signature, version 0 and a header size of at least 32).
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<IvfHeader, IvfError> {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        if &b[0..4] != b"DKIF" {
            return Err(IvfError::NotIvf);
        }
        if u16_at(4) != 0 || usize::from(u16_at(6)) < HEADER_LEN {
            return Err(IvfError::Unsupported);
        }
        let header = IvfHeader {
            fourcc: [b[8], b[9], b[10], b[11]],
            width: u16_at(12),
            height: u16_at(14),
            timebase_den: u32_at(16),
            timebase_num: u32_at(20),
            frames: u32_at(24),
        };
        if header.timebase_den == 0 || header.timebase_num == 0 {
            return Err(IvfError::Unsupported);
        }
        Ok(header)
    }
}

/// Why an IVF file could not be read.
#[derive(Debug)]
pub enum IvfError {
    /// No `DKIF` signature.
    NotIvf,
    /// A version, header size or timebase this reader does not handle.
    Unsupported,
    /// A frame header announces more than `MAX_FRAME` bytes.
    FrameTooLarge(u32),
    /// The file ends inside a header or frame.
    Truncated,
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for IvfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IvfError::NotIvf => f.write_str("not an IVF file (no DKIF signature)"),
            IvfError::Unsupported => f.write_str("unsupported IVF version, header or timebase"),
            IvfError::FrameTooLarge(n) => write!(f, "IVF frame of {n} bytes"),
            IvfError::Truncated => f.write_str("IVF file truncated"),
            IvfError::Io(e) => write!(f, "reading IVF: {e}"),
        }
    }
}

impl std::error::Error for IvfError {}

impl From<io::Error> for IvfError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            IvfError::Truncated
        } else {
            IvfError::Io(e)
        }
    }
}

/// Writes an IVF file; `finish` records the frame count.
pub struct IvfWriter<W: Write + Seek> {
    out: W,
    header: IvfHeader,
}

impl<W: Write + Seek> IvfWriter<W> {
    /// Write the header (frame count 0 until `finish`).
    pub fn new(mut out: W, header: IvfHeader) -> io::Result<IvfWriter<W>> {
        out.write_all(&header.to_bytes())?;
        Ok(IvfWriter { out, header })
    }

    /// Append a frame with its presentation time in timebase units.
    pub fn write_frame(&mut self, pts: u64, frame: &[u8]) -> io::Result<()> {
        let size = u32::try_from(frame.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut h = [0u8; FRAME_HEADER_LEN];
        h[0..4].copy_from_slice(&size.to_le_bytes());
        h[4..12].copy_from_slice(&pts.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)?;
        self.header.frames = self.header.frames.saturating_add(1);
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u32 {
        self.header.frames
    }

    /// Rewrite the header with the frame count, flush, and give the output back.
    pub fn finish(mut self) -> io::Result<W> {
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&self.header.to_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// One frame read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvfFrame {
    /// Presentation time in timebase units.
    pub pts: u64,
    /// The frame.
    pub data: Vec<u8>,
}

/// Reads an IVF file frame by frame (up to the end of the data, whatever the header's
/// frame count says, so an unfinished file reads too).
pub struct IvfReader<R: Read> {
    input: R,
    header: IvfHeader,
}

impl<R: Read> IvfReader<R> {
    /// Read and check the header (skipping any header bytes past 32).
    pub fn new(mut input: R) -> Result<IvfReader<R>, IvfError> {
        let mut b = [0u8; HEADER_LEN];
        input.read_exact(&mut b)?;
        let header = IvfHeader::parse(&b)?;
        let extra = u64::from(u16::from_le_bytes([b[6], b[7]])) - HEADER_LEN as u64;
        io::copy(&mut (&mut input).take(extra), &mut io::sink())?;
        Ok(IvfReader { input, header })
    }

    /// The header.
    pub fn header(&self) -> &IvfHeader {
        &self.header
    }

    /// The next frame, `None` at a clean end of file.
    pub fn next_frame(&mut self) -> Result<Option<IvfFrame>, IvfError> {
        let mut h = [0u8; FRAME_HEADER_LEN];
        let mut got = 0;
        while got < h.len() {
            match self.input.read(&mut h[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(IvfError::Truncated),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if size > MAX_FRAME {
            return Err(IvfError::FrameTooLarge(size));
        }
        let mut pts = [0u8; 8];
        pts.copy_from_slice(&h[4..12]);
        let mut data = vec![0u8; size as usize];
        self.input.read_exact(&mut data)?;
        Ok(Some(IvfFrame {
            pts: u64::from_le_bytes(pts),
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    quickcheck::quickcheck! {
        fn write_then_read(frames: Vec<(u64, Vec<u8>)>, width: u16, height: u16) -> bool {
            let mut w = IvfWriter::new(Cursor::new(Vec::new()), IvfHeader::vp8(width, height))
                .expect("write");
            for (pts, data) in &frames {
                w.write_frame(*pts, data).expect("write");
            }
            let bytes = w.finish().expect("finish").into_inner();
            let mut r = IvfReader::new(&bytes[..]).expect("header");
            let mut read = Vec::new();
            while let Some(f) = r.next_frame().expect("frame") {
                read.push((f.pts, f.data));
            }
            let h = *r.header();
            read == frames
                && h.frames as usize == frames.len()
                && (h.width, h.height) == (width, height)
                && (h.timebase_num, h.timebase_den) == (1, 90_000)
                && &h.fourcc == b"VP80"
        }

        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) -> bool {
            if let Ok(mut r) = IvfReader::new(&bytes[..]) {
                while let Ok(Some(_)) = r.next_frame() {}
            }
            true
        }
    }

    #[test]
    fn header_layout() {
        let mut h = IvfHeader::vp8(640, 480);
        h.frames = 7;
        let b = h.to_bytes();
        assert_eq!(&b[0..4], b"DKIF");
        assert_eq!(&b[4..8], &[0, 0, 32, 0]);
        assert_eq!(&b[8..12], b"VP80");
        assert_eq!(&b[12..16], &[0x80, 0x02, 0xe0, 0x01]);
        assert_eq!(&b[16..24], &[0x90, 0x5f, 0x01, 0, 1, 0, 0, 0]);
        assert_eq!(&b[24..32], &[7, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn bad_files() {
        assert!(matches!(
            IvfReader::new(&b"DKI"[..]),
            Err(IvfError::Truncated)
        ));
        let mut b = IvfHeader::vp8(1, 1).to_bytes();
        b[0] = b'X';
        assert!(matches!(IvfReader::new(&b[..]), Err(IvfError::NotIvf)));
        let mut file = IvfHeader::vp8(1, 1).to_bytes().to_vec();
        file.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        let mut r = IvfReader::new(&file[..]).expect("header");
        assert!(matches!(r.next_frame(), Err(IvfError::Truncated)));
        let mut file = IvfHeader::vp8(1, 1).to_bytes().to_vec();
        file.extend_from_slice(&[0xff; 12]);
        let mut r = IvfReader::new(&file[..]).expect("header");
        assert!(matches!(r.next_frame(), Err(IvfError::FrameTooLarge(_))));
    }
}
