use super::*;
use quickcheck::quickcheck;

/// The CRC catalogue's check value for this parameter set (CRC-32/CKSUM without its
/// final xor: 0x765e7680 ^ 0xffffffff) over the ASCII digits 1 to 9.
#[test]
fn crc_check_value() {
    assert_eq!(crc32(b"123456789"), 0x89a1_897f);
    assert_eq!(crc32(b""), 0);
}

/// A page built by hand byte by byte (an OpusHead BOS page of serial 0x01020304),
/// with its CRC computed bit by bit here, independently of the table.
#[test]
fn crc_of_a_known_page() {
    let mut page = Vec::new();
    page.extend_from_slice(b"OggS\x00\x02");
    page.extend_from_slice(&[0; 8]); // granule 0
    page.extend_from_slice(&[4, 3, 2, 1]); // serial
    page.extend_from_slice(&[0; 4]); // sequence 0
    page.extend_from_slice(&[0; 4]); // CRC placeholder
    page.push(1);
    page.push(19);
    page.extend_from_slice(b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00");
    let mut bitwise = 0u32;
    for &byte in &page {
        bitwise ^= u32::from(byte) << 24;
        for _ in 0..8 {
            bitwise = if bitwise & 0x8000_0000 != 0 {
                (bitwise << 1) ^ 0x04c1_1db7
            } else {
                bitwise << 1
            };
        }
    }
    assert_eq!(crc32(&page), bitwise);
    let head = OpusHead {
        channels: 2,
        pre_skip: 312,
        input_rate: 48_000,
    };
    let mut w = OggWriter::new(Vec::new(), 0x0102_0304);
    w.write_packet(&head.to_bytes(), 0).expect("write");
    w.flush().expect("flush");
    let written = w.finish().expect("finish");
    let mut expected = page.clone();
    expected[22..26].copy_from_slice(&bitwise.to_le_bytes());
    assert_eq!(&written[..expected.len()], &expected[..]);
    let (parsed, len) = Page::parse(&written).expect("valid page");
    assert_eq!(len, expected.len());
    assert_eq!(parsed.header_type, BOS);
    assert_eq!(OpusHead::parse(&parsed.body), Ok(head));
    // Any changed byte is caught.
    for i in 0..expected.len() {
        let mut bad = expected.clone();
        bad[i] ^= 0x10;
        assert!(Page::parse(&bad).is_err(), "byte {i}");
    }
}

fn audio_packet(toc: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![toc];
    p.extend_from_slice(body);
    p
}

quickcheck! {
    fn opus_write_then_read(bodies: Vec<Vec<u8>>, pre_skip: u16) -> bool {
        let head = OpusHead { channels: 2, pre_skip, input_rate: 48_000 };
        let mut w = OpusWriter::new(Vec::new(), 7, head).expect("header");
        // CELT fullband 20 ms, one frame.
        let packets: Vec<Vec<u8>> = bodies.iter().map(|b| audio_packet(0xf8, b)).collect();
        for p in &packets {
            w.write_packet(p).expect("packet");
        }
        let bytes = w.finish().expect("finish");
        let file = OpusFile::parse(&bytes).expect("valid file");
        let pages = read_pages(&bytes).expect("pages");
        file.head == head
            && file.packets == packets
            && file.final_granule == if packets.is_empty() {
                u64::MAX
            } else {
                u64::from(pre_skip) + 960 * packets.len() as u64
            }
            && pages[0].lacing == [19]
            && pages[0].header_type == BOS
            && pages.last().is_some_and(|p| p.header_type & EOS != 0)
            && pages[1..].iter().all(|p| p.header_type & BOS == 0)
    }

    fn packets_spanning_lacing_limits(sizes: Vec<u16>) -> bool {
        let mut w = OggWriter::new(Vec::new(), 1);
        let packets: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&s| vec![(s % 251) as u8; usize::from(s) % 2000])
            .collect();
        for (i, p) in packets.iter().enumerate() {
            w.write_packet(p, i as u64).expect("write");
        }
        let bytes = w.finish().expect("finish");
        let pages = read_pages(&bytes).expect("pages");
        let read: Vec<Vec<u8>> = read_packets(&pages).expect("packets").into_iter().map(|p| p.data).collect();
        read == packets && pages.iter().all(|p| p.lacing.len() <= 255)
    }

    fn arbitrary_bytes_never_panic(bytes: Vec<u8>) -> bool {
        let _ = OpusFile::parse(&bytes);
        let mut ogg = b"OggS\x00".to_vec();
        ogg.extend_from_slice(&bytes);
        let _ = OpusFile::parse(&ogg);
        true
    }
}

#[test]
fn opus_durations() {
    assert_eq!(opus_samples(&[0xf8]), Ok(960)); // CELT FB 20 ms
    assert_eq!(opus_samples(&[0x08]), Ok(960)); // SILK NB 20 ms
    assert_eq!(opus_samples(&[0x18 | 1]), Ok(2 * 2880)); // SILK 60 ms, two frames
    assert_eq!(opus_samples(&[0x60]), Ok(480)); // hybrid SWB 10 ms
    assert_eq!(opus_samples(&[0x80 | 3, 48]), Ok(5760)); // CELT 2.5 ms x 48
    assert_eq!(opus_samples(&[0x18 | 3, 3]), Err(OggError::BadOpusPacket)); // 180 ms
    assert_eq!(opus_samples(&[0xfb]), Err(OggError::BadOpusPacket)); // no count byte
    assert_eq!(opus_samples(&[0xfb, 0]), Err(OggError::BadOpusPacket)); // zero frames
    assert_eq!(opus_samples(&[]), Err(OggError::BadOpusPacket));
}

#[test]
fn unfinished_or_bad_streams_are_errors() {
    let head = OpusHead {
        channels: 1,
        pre_skip: 0,
        input_rate: 8000,
    };
    let mut w = OggWriter::new(Vec::new(), 1);
    w.write_packet(&head.to_bytes(), 0).expect("write");
    w.flush().expect("flush");
    // No EOS page.
    let bytes = w.finish().expect("finish");
    let pages = read_pages(&bytes).expect("pages");
    assert_eq!(pages.len(), 2);
    assert_eq!(
        OpusFile::parse(&bytes[..bytes.len() - 27]),
        Err(OggError::Structure(
            "EOS flag only and always on the last page"
        ))
    );
    // No OpusTags.
    assert_eq!(OpusFile::parse(&bytes), Err(OggError::NotOpus));
    assert_eq!(OpusFile::parse(&bytes[..30]), Err(OggError::Truncated));
    assert_eq!(OpusHead::parse(b"OpusHead"), Err(OggError::NotOpus));
}
