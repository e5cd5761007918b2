//! The flow table's hash of a flow key.

use super::types::FlowKey;
use std::hash::{BuildHasher, RandomState};

/// A seeded hash of a flow key: folded 64×64→128-bit multiplies over the
/// key's five words (foldhash's construction). SipHash through `Hash` cost
/// three times as much per packet; the random seed per table keeps the
/// slots unpredictable to whoever chooses the addresses and ports.
#[derive(Clone, Copy)]
pub(super) struct KeyHasher {
    seed: [u64; 2],
}

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn fold_mul(x: u64, y: u64) -> u64 {
    let p = u128::from(x) * u128::from(y);
    (p as u64) ^ ((p >> 64) as u64)
}

impl KeyHasher {
    pub(super) fn new() -> Self {
        let r = RandomState::new();
        KeyHasher {
            seed: [r.hash_one(1u64) | 1, r.hash_one(2u64) | 1],
        }
    }

    #[inline]
    pub(super) fn hash(&self, k: &FlowKey) -> u64 {
        let w = |b: &[u8; 16], i: usize| u64::from_ne_bytes(b[i..i + 8].try_into().unwrap());
        let tail = u64::from(k.family)
            | u64::from(k.proto) << 8
            | u64::from(k.pa) << 16
            | u64::from(k.pb) << 32;
        let [s0, s1] = self.seed;
        let h = fold_mul(w(&k.a, 0) ^ s0, w(&k.a, 8) ^ s1);
        let h = fold_mul(w(&k.b, 0) ^ h, w(&k.b, 8) ^ MUL);
        fold_mul(tail ^ h ^ s1, MUL ^ s0)
    }
}
