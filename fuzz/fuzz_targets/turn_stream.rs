//! A TURN byte stream (STUN messages and ChannelData over TCP/TLS) split by the runtimes'
//! `Framer`: never panics, never holds more than one message, and gives the same frames
//! (and the same verdict) whether the bytes come at once or in arbitrary pieces.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sansrtc_std::stream::Framer;

const MAX: usize = 2048;

fn split(data: &[u8], cuts: &[u8]) -> (Vec<Vec<u8>>, bool, usize) {
    let mut framer = Framer::new(MAX);
    let mut frames = Vec::new();
    let mut rest = data;
    let mut most = 0;
    for c in cuts {
        let n = (usize::from(*c) + 1).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let ok = framer.feed(piece, |f| {
            assert!(f.len() <= MAX);
            frames.push(f.to_vec());
        });
        most = most.max(framer.pending());
        if ok.is_err() {
            return (frames, false, most);
        }
        if rest.is_empty() {
            break;
        }
    }
    if !rest.is_empty() {
        let ok = framer.feed(rest, |f| frames.push(f.to_vec()));
        most = most.max(framer.pending());
        if ok.is_err() {
            return (frames, false, most);
        }
    }
    (frames, true, most)
}

fuzz_target!(|input: &[u8]| {
    let Some((&n, rest)) = input.split_first() else { return };
    let (cuts, data) = rest.split_at(usize::from(n).min(rest.len()));
    let (whole, whole_ok, _) = split(data, &[]);
    let (pieces, pieces_ok, most) = split(data, cuts);
    assert!(most <= MAX, "held {most} bytes");
    // The same verdict, and the same frames (up to the bad spot when there is one).
    assert_eq!(whole_ok, pieces_ok);
    assert_eq!(whole, pieces);
});
