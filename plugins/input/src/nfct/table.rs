//! The flow table of hash mode: every active conntrack entry NFCT knows of,
//! with the start time it first saw and the last counters it was told.
//!
//! Bounded by `hash_max_entries`: when full, new flows are not tracked (as in
//! ulogd, their DESTROY is still logged, without a start time) and counted.
//! The key is the original tuple plus the zone: the kernel never holds two
//! entries with the same original tuple in one zone. SipHash (std's default,
//! randomly keyed) because tuples are chosen by whoever sends packets.

use rulogd_netlink::conntrack::{Conntrack, Counters, Tuple};
use std::collections::HashMap;

/// What identifies a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// The original-direction tuple.
    pub orig: Tuple,
    /// `nfgen_family`.
    pub family: u8,
    /// `CTA_ZONE` (0 when absent).
    pub zone: u16,
}

impl FlowKey {
    /// The key of an entry message.
    #[inline]
    pub fn of(ct: &Conntrack) -> FlowKey {
        FlowKey {
            orig: ct.orig.unwrap_or_default(),
            family: ct.family,
            zone: ct.zone.unwrap_or(0),
        }
    }
}

/// What the table keeps of a flow: enough to log it if it vanishes without
/// a DESTROY event (polling mode, resync after lost events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The reply-direction tuple.
    pub reply: Tuple,
    /// Original and reply counters, as last reported.
    pub counters: [Counters; 2],
    /// `ct.mark`.
    pub mark: u32,
    /// `ct.id`.
    pub id: u32,
    /// Start time (seconds, microseconds).
    pub start: (u32, u32),
    /// The dump generation that last saw it (polling and resync).
    pub seen: u32,
}

impl Flow {
    /// A new flow from an entry message, started at `start`.
    pub fn new(ct: &Conntrack, start: (u32, u32), seen: u32) -> Flow {
        let mut f = Flow {
            reply: ct.reply.unwrap_or_default(),
            counters: [Counters::default(); 2],
            mark: 0,
            id: 0,
            start,
            seen,
        };
        f.update(ct);
        f
    }

    /// Takes what an update or a dump says (ulogd's `NFCT_CP_META`): every
    /// attribute the message has, the tuples excepted.
    #[inline]
    pub fn update(&mut self, ct: &Conntrack) {
        if let Some(c) = ct.counters_orig {
            self.counters[0] = c;
        }
        if let Some(c) = ct.counters_reply {
            self.counters[1] = c;
        }
        if let Some(m) = ct.mark {
            self.mark = m;
        }
        if let Some(i) = ct.id {
            self.id = i;
        }
    }
}

/// Outcome of [`FlowTable::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A new entry.
    New,
    /// An entry with this key existed (its DESTROY was lost) and was replaced.
    Replaced,
    /// The table is full; the flow is not tracked.
    Full,
}

/// The bounded flow table.
#[derive(Debug)]
pub struct FlowTable {
    map: HashMap<FlowKey, Flow>,
    max: usize,
}

impl FlowTable {
    /// A table with room for `initial` flows at first, never more than `max`.
    pub fn new(initial: usize, max: usize) -> FlowTable {
        FlowTable {
            map: HashMap::with_capacity(initial.min(max)),
            max,
        }
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds a flow unless the table is full.
    pub fn insert(&mut self, key: FlowKey, flow: Flow) -> Inserted {
        if let Some(old) = self.map.get_mut(&key) {
            *old = flow;
            return Inserted::Replaced;
        }
        if self.map.len() >= self.max {
            return Inserted::Full;
        }
        self.map.insert(key, flow);
        Inserted::New
    }

    /// The flow with this key.
    #[inline]
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        self.map.get_mut(key)
    }

    /// Removes and returns the flow with this key.
    #[inline]
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        self.map.remove(key)
    }

    /// The keys of flows no dump of generation `gen` has seen.
    pub fn unseen(&self, gen: u32) -> Vec<FlowKey> {
        self.map
            .iter()
            .filter(|(_, f)| f.seen != gen)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Bytes the table's storage takes: one slot and one control byte per
    /// bucket (std's SwissTable keeps 1/8 of the buckets free), plus a group
    /// of trailing control bytes.
    pub fn memory_bytes(&self) -> usize {
        let cap = self.map.capacity();
        if cap == 0 {
            return 0;
        }
        // Buckets: the next power of two of cap * 8 / 7 (cap < 8 rounds to
        // 4 or 8 buckets; close enough for a gauge).
        let buckets = (cap * 8 / 7).next_power_of_two();
        buckets * (std::mem::size_of::<(FlowKey, Flow)>() + 1) + 16
    }
}
