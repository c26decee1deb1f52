//! The address pairs ICE has validated: a `(local, remote)` pair on which the remote
//! proved it knows the ICE password, either by answering one of our checks with a
//! success response that carries a valid MESSAGE-INTEGRITY (and came back on the pair
//! the request left on), or by sending us a request with a valid MESSAGE-INTEGRITY that
//! we answered. The PeerConnection accepts DTLS only from these, and the Endpoint routes
//! by them.
//!
//! The two proofs differ: an answered check shows the remote receives at that address
//! (return routability), while a request only shows that whoever sent it knows the
//! password, and UDP sources can be forged. [`Validation`] says which one a pair has.
//!
//! A hash map gives the O(1) question asked for every DTLS datagram; a queue in
//! insertion order bounds it: past the capacity the oldest pair is forgotten first,
//! except the one the caller asks to keep (the selected pair).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// A local and a remote transport address.
pub type AddressPair = (SocketAddr, SocketAddr);

/// How the remote proved an address pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Validation {
    /// It sent a request with valid MESSAGE-INTEGRITY from that address, which we
    /// answered: it knows the password, but the source address could be forged.
    Request,
    /// It answered our check sent to that address with a success response carrying
    /// valid MESSAGE-INTEGRITY, on the pair the check left on: it also receives there.
    Response,
}

/// A bounded set of validated address pairs. See the module documentation.
#[derive(Debug, Clone)]
pub struct ValidatedAddresses {
    members: HashMap<AddressPair, Validation>,
    /// The members, oldest first.
    order: VecDeque<AddressPair>,
    capacity: usize,
    evicted: u64,
}

impl ValidatedAddresses {
    /// An empty set holding at most `capacity` pairs (at least one).
    pub fn new(capacity: usize) -> ValidatedAddresses {
        ValidatedAddresses {
            members: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    /// Whether `(local, remote)` was validated (and not forgotten since).
    pub fn contains(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        self.get(local, remote).is_some()
    }

    /// How `(local, remote)` was validated, if it was (and is not forgotten).
    pub fn get(&self, local: SocketAddr, remote: SocketAddr) -> Option<Validation> {
        if self.members.is_empty() {
            // No hashing while nothing is validated (a connecting peer's strangers).
            return None;
        }
        self.members.get(&(local, remote)).copied()
    }

    /// How many pairs are remembered.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// How many pairs were forgotten to make room.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Remember a validated pair (a response proof upgrades a request proof, never the
    /// reverse); past the capacity the oldest other than `keep` is forgotten. Returns
    /// true when the pair is new.
    pub fn insert(
        &mut self,
        pair: AddressPair,
        proof: Validation,
        keep: Option<AddressPair>,
    ) -> bool {
        if let Some(known) = self.members.get_mut(&pair) {
            *known = (*known).max(proof);
            return false;
        }
        while self.members.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if Some(oldest) == keep && self.order.iter().any(|p| Some(*p) != keep) {
                self.order.push_back(oldest);
                continue;
            }
            self.members.remove(&oldest);
            self.evicted += 1;
        }
        self.members.insert(pair, proof);
        self.order.push_back(pair);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(port: u16) -> AddressPair {
        (
            "10.0.0.1:4000".parse().expect("addr"),
            SocketAddr::from(([10, 0, 0, 2], port)),
        )
    }

    #[test]
    fn holds_at_most_its_capacity_forgetting_the_oldest() {
        let mut set = ValidatedAddresses::new(4);
        for port in 1..=100 {
            assert!(set.insert(pair(port), Validation::Request, None));
            assert!(set.len() <= 4);
        }
        assert_eq!(set.evicted(), 96);
        assert!(set.contains(pair(100).0, pair(100).1));
        assert!(set.contains(pair(97).0, pair(97).1));
        assert!(!set.contains(pair(96).0, pair(96).1));
        assert!(
            !set.insert(pair(100), Validation::Request, None),
            "already there"
        );
    }

    #[test]
    fn the_kept_pair_survives_eviction() {
        let mut set = ValidatedAddresses::new(3);
        set.insert(pair(1), Validation::Request, None);
        for port in 2..50 {
            set.insert(pair(port), Validation::Request, Some(pair(1)));
        }
        assert!(set.contains(pair(1).0, pair(1).1));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_response_upgrades_a_request_proof_and_not_the_reverse() {
        let mut set = ValidatedAddresses::new(3);
        let (l, r) = pair(1);
        assert!(set.insert((l, r), Validation::Request, None));
        assert_eq!(set.get(l, r), Some(Validation::Request));
        assert!(!set.insert((l, r), Validation::Response, None));
        assert_eq!(set.get(l, r), Some(Validation::Response));
        set.insert((l, r), Validation::Request, None);
        assert_eq!(set.get(l, r), Some(Validation::Response));
        assert_eq!(set.get(l, pair(2).1), None);
    }
}
