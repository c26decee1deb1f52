//! Generic NACK (RFC 4585 section 6.2.1) FCI entries: a packet id and a bitmask of the 16
//! packets after it. Turns a list of missing sequence numbers into `(pid, blp)` pairs for
//! [`RtcpPacket::Nack`](super::RtcpPacket::Nack) and back, without allocating.

/// The `(pid, blp)` pairs that cover `missing`, which must come in sending order (each one
/// after the previous in wrapping sequence order, as a receiver finds them). A sequence
/// number 1..=16 after the current pid sets its bit; anything else starts a new pair.
pub fn nack_pairs<I>(missing: I) -> impl Iterator<Item = (u16, u16)>
where
    I: IntoIterator<Item = u16>,
{
    let mut missing = missing.into_iter().peekable();
    std::iter::from_fn(move || {
        let pid = missing.next()?;
        let mut blp = 0u16;
        while let Some(&next) = missing.peek() {
            let distance = next.wrapping_sub(pid);
            if !(1..=16).contains(&distance) {
                break;
            }
            blp |= 1 << (distance - 1);
            missing.next();
        }
        Some((pid, blp))
    })
}

/// Every sequence number a list of `(pid, blp)` pairs asks for, pair by pair (pid first,
/// then its bitmask's packets in order).
pub fn nack_sequences(pairs: &[(u16, u16)]) -> impl Iterator<Item = u16> + '_ {
    pairs.iter().flat_map(|&(pid, blp)| {
        std::iter::once(pid).chain(
            (0..16u16)
                .filter(move |bit| blp & (1 << bit) != 0)
                .map(move |bit| pid.wrapping_add(bit + 1)),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::QuickCheck;

    #[test]
    fn byte_level_example() {
        // RFC 4585: pid 65534 with bits 0 and 2: 65534, 65535, 1.
        let pairs: Vec<_> = nack_pairs([65534, 65535, 1, 17, 18, 40]).collect();
        assert_eq!(pairs, vec![(65534, 0b101), (17, 0b1), (40, 0)]);
        let back: Vec<_> = nack_sequences(&pairs).collect();
        assert_eq!(back, vec![65534, 65535, 1, 17, 18, 40]);
        // 16 after the pid still fits, 17 does not.
        assert_eq!(nack_pairs([0, 16]).collect::<Vec<_>>(), vec![(0, 0x8000)]);
        assert_eq!(nack_pairs([0, 17]).count(), 2);
        assert_eq!(nack_pairs(std::iter::empty()).count(), 0);
    }

    #[test]
    fn quickcheck_round_trip() {
        fn prop(start: u16, gaps: Vec<u8>) -> bool {
            let mut seq = start;
            let missing: Vec<u16> = gaps
                .iter()
                .take(200)
                .map(|g| {
                    seq = seq.wrapping_add(1 + u16::from(*g % 40));
                    seq
                })
                .collect();
            let pairs: Vec<(u16, u16)> = nack_pairs(missing.iter().copied()).collect();
            let back: Vec<u16> = nack_sequences(&pairs).collect();
            back == missing && pairs.len() <= missing.len()
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(u16, Vec<u8>) -> bool);
    }
}
