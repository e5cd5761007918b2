//! Bounded tallies: the page's top lists without a map of every host.
//!
//! [`TopK`] is Metwally's Space-Saving sketch: at most `cap` keys are
//! tracked; a new key takes the place of the one with the smallest count
//! and inherits that count as its possible overestimate, so any key whose
//! true weight exceeds total/cap is guaranteed to be in the table. The
//! smallest entry is found with an indexed min-heap, so a flood of distinct
//! keys costs O(log cap) each, not a scan. After the first `cap` keys,
//! nothing allocates: evicted slots and their payloads are reused.
//!
//! [`Mini`] is the same idea over a small fixed array (a host's peers and
//! ports), scanned linearly.

use std::collections::HashMap;
use std::hash::Hash;

/// What a [`TopK`] entry carries beside its count.
pub trait Payload {
    /// Forgets what the previous key accumulated, keeping allocations.
    fn reset(&mut self);
}

/// One tracked key.
pub struct Entry<K, P> {
    /// The key.
    pub key: K,
    /// Weight counted for it, including `error`.
    pub count: u64,
    /// Weight it may have inherited from the key it replaced.
    pub error: u64,
    /// Per-key detail.
    pub payload: P,
}

/// A Space-Saving sketch of at most `cap` keys.
pub struct TopK<K, P> {
    cap: usize,
    index: HashMap<K, u32>,
    entries: Vec<Entry<K, P>>,
    /// Entry ids ordered as a min-heap by count.
    heap: Vec<u32>,
    /// For each entry id, its position in `heap`.
    pos: Vec<u32>,
    evictions: u64,
}

impl<K: Hash + Eq + Copy, P: Payload> TopK<K, P> {
    /// An empty sketch of `cap` (at least 1) keys.
    pub fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        TopK {
            cap,
            index: HashMap::with_capacity(cap),
            entries: Vec::with_capacity(cap),
            heap: Vec::with_capacity(cap),
            pos: Vec::with_capacity(cap),
            evictions: 0,
        }
    }

    /// Keys replaced by others so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was counted yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Heap bytes of the table itself (index, entries, heap), payloads'
    /// own allocations not included.
    pub fn table_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket beside each (K, u32).
        self.index.capacity() * (size_of::<(K, u32)>() + 1)
            + self.entries.capacity() * size_of::<Entry<K, P>>()
            + (self.heap.capacity() + self.pos.capacity()) * 4
    }

    /// Every tracked entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<K, P>> {
        self.entries.iter()
    }

    /// The entry of `key`, if it is tracked.
    pub fn get(&self, key: &K) -> Option<&Entry<K, P>> {
        self.index.get(key).map(|&i| &self.entries[i as usize])
    }

    /// Counts `w` for `key` and returns its payload; `fresh` makes the
    /// payload of a key seen for the first time.
    pub fn add(&mut self, key: K, w: u64, fresh: impl FnOnce() -> P) -> &mut P {
        if let Some(&i) = self.index.get(&key) {
            self.entries[i as usize].count += w;
            self.sift_down(self.pos[i as usize] as usize);
            return &mut self.entries[i as usize].payload;
        }
        if self.entries.len() < self.cap {
            let i = self.entries.len() as u32;
            self.entries.push(Entry {
                key,
                count: w,
                error: 0,
                payload: fresh(),
            });
            self.index.insert(key, i);
            self.pos.push(self.heap.len() as u32);
            self.heap.push(i);
            self.sift_up(self.heap.len() - 1);
            return &mut self.entries[i as usize].payload;
        }
        // Replace the smallest: it may have been this key's weight all along.
        let i = self.heap[0];
        let e = &mut self.entries[i as usize];
        self.index.remove(&e.key);
        e.key = key;
        e.error = e.count;
        e.count += w;
        e.payload.reset();
        self.index.insert(key, i);
        self.evictions += 1;
        self.sift_down(0);
        &mut self.entries[i as usize].payload
    }

    fn count_at(&self, h: usize) -> u64 {
        self.entries[self.heap[h] as usize].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a] as usize] = a as u32;
        self.pos[self.heap[b] as usize] = b as u32;
    }

    fn sift_up(&mut self, mut h: usize) {
        while h > 0 {
            let parent = (h - 1) / 2;
            if self.count_at(parent) <= self.count_at(h) {
                break;
            }
            self.swap(parent, h);
            h = parent;
        }
    }

    fn sift_down(&mut self, mut h: usize) {
        loop {
            let (l, r) = (2 * h + 1, 2 * h + 2);
            let mut m = h;
            if l < self.heap.len() && self.count_at(l) < self.count_at(m) {
                m = l;
            }
            if r < self.heap.len() && self.count_at(r) < self.count_at(m) {
                m = r;
            }
            if m == h {
                return;
            }
            self.swap(h, m);
            h = m;
        }
    }
}

/// A Space-Saving tally over `N` slots kept inline.
#[derive(Clone, Debug)]
pub struct Mini<K, const N: usize> {
    slots: [Option<(K, u64)>; N],
}

impl<K: Copy + Eq, const N: usize> Default for Mini<K, N> {
    fn default() -> Self {
        Mini { slots: [None; N] }
    }
}

impl<K: Copy + Eq, const N: usize> Mini<K, N> {
    /// Counts `w` for `key`.
    pub fn add(&mut self, key: K, w: u64) {
        // Slots fill in order and empty only all at once: no gaps.
        let (mut min, mut min_c) = (0, u64::MAX);
        for i in 0..N {
            match self.slots[i] {
                Some((k, c)) if k == key => {
                    self.slots[i] = Some((k, c + w));
                    return;
                }
                None => {
                    self.slots[i] = Some((key, w));
                    return;
                }
                Some((_, c)) if c < min_c => (min, min_c) = (i, c),
                Some(_) => {}
            }
        }
        if N > 0 {
            self.slots[min] = Some((key, min_c + w));
        }
    }

    /// The tracked keys, largest first.
    pub fn sorted(&self) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = self.slots.iter().flatten().copied().collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.1));
        v
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.slots = [None; N];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Payload for u64 {
        fn reset(&mut self) {
            *self = 0;
        }
    }

    #[test]
    fn heavy_keys_survive_a_flood_of_distinct_ones() {
        let mut t: TopK<u32, u64> = TopK::new(16);
        for round in 0..1000u32 {
            *t.add(1, 50, || 0) += 50;
            *t.add(2, 20, || 0) += 20;
            // 100 distinct light keys a round.
            for k in 0..100 {
                t.add(1000 + round * 100 + k, 1, || 0);
            }
        }
        assert_eq!(t.len(), 16);
        let e1 = t.get(&1).expect("the heaviest key is tracked");
        assert_eq!(e1.payload, 50_000, "its own weight since it was tracked");
        assert!(e1.count - e1.error <= 50_000 && e1.count >= 50_000);
        assert!(t.get(&2).is_some());
        assert!(t.evictions() > 90_000);
        // The heap still puts the smallest at the top.
        let min = t.iter().map(|e| e.count).min().unwrap();
        assert_eq!(t.count_at(0), min);
    }

    #[test]
    fn exact_while_under_capacity() {
        let mut t: TopK<u8, u64> = TopK::new(4);
        for (k, w) in [(1, 5), (2, 7), (1, 1), (3, 2)] {
            t.add(k, w, || 0);
        }
        let mut v: Vec<_> = t.iter().map(|e| (e.key, e.count, e.error)).collect();
        v.sort();
        assert_eq!(v, [(1, 6, 0), (2, 7, 0), (3, 2, 0)]);
    }

    #[test]
    fn mini_keeps_the_largest() {
        let mut m: Mini<u16, 3> = Mini::default();
        for (k, w) in [(80, 100), (443, 500), (53, 10), (22, 1), (443, 5)] {
            m.add(k, w);
        }
        let v = m.sorted();
        assert_eq!(v[0], (443, 505));
        assert_eq!(v[1], (80, 100));
        assert_eq!(v.len(), 3);
    }
}
