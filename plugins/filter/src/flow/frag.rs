//! Fragments after the first carry no layer-4 header: their ports (and
//! ICMP type) are taken from the first fragment of the same datagram, kept
//! in a small bounded cache keyed by the datagram's identity.

use std::collections::{HashMap, VecDeque};

/// What identifies one fragmented datagram (RFC 791 / RFC 8200).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct FragKey {
    /// AF_INET or AF_INET6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// The IP identification (IPv6: the fragment header's).
    pub id: u32,
}

/// The layer-4 facts of a first fragment.
pub type L4 = (u16, u16, Option<(u8, u8)>);

/// The cache: the oldest datagram is forgotten when it is full.
pub struct FragCache {
    map: HashMap<FragKey, L4>,
    order: VecDeque<FragKey>,
    cap: usize,
}

impl FragCache {
    /// A cache of at most `cap` datagrams.
    pub fn new(cap: usize) -> Self {
        FragCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Remembers a first fragment's layer-4 facts.
    pub fn first(&mut self, k: FragKey, l4: L4) {
        if self.map.insert(k, l4).is_none() {
            if self.order.len() >= self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
            self.order.push_back(k);
        }
    }

    /// The layer-4 facts for a later fragment, if its first was seen.
    pub fn later(&self, k: &FragKey) -> Option<L4> {
        self.map.get(k).copied()
    }

    /// Datagrams remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            family: 2,
            proto: 17,
            src: [1; 16],
            dst: [2; 16],
            id,
        }
    }

    #[test]
    fn later_fragments_find_their_first_and_the_cache_stays_bounded() {
        let mut c = FragCache::new(3);
        c.first(key(1), (1000, 53, None));
        assert_eq!(c.later(&key(1)), Some((1000, 53, None)));
        assert_eq!(c.later(&key(2)), None);
        for id in 2..10 {
            c.first(key(id), (id as u16, 53, None));
            assert!(c.len() <= 3);
        }
        assert_eq!(c.later(&key(1)), None, "the oldest was forgotten");
        assert_eq!(c.later(&key(9)), Some((9, 53, None)));
        // The same first fragment twice (a retransmission) takes one place.
        c.first(key(9), (9, 53, None));
        assert_eq!(c.len(), 3);
        assert_eq!(c.later(&key(7)), Some((7, 53, None)));
    }
}
