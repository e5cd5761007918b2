//! The flow table: bidirectional flows in a slab, found through a hash map,
//! and expired from intrusive lists kept in expiry order, so neither a
//! packet nor a timer turn ever scans the whole table.
//!
//! Every flow of one timeout class has the same idle timeout, so the class
//! list ordered by last activity is also ordered by expiry; the report list
//! is ordered by the time of each flow's previous record, for the active
//! timeout.

use hashbrown::HashTable;
use std::collections::VecDeque;

use super::hash::KeyHasher;
pub use super::types::*;

const NIL: u32 = u32::MAX;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// Timeout classes: one idle list each.
const C_TCP: usize = 0;
const C_UDP: usize = 1;
const C_ICMP: usize = 2;
const C_OTHER: usize = 3;
/// TCP after RST, or FIN from both sides.
const C_LINGER: usize = 4;
const NCLASS: usize = 5;
/// The class of a slab entry that holds no flow.
const FREE: u8 = u8::MAX;
/// The report list (active timeout).
const L_REPORT: usize = NCLASS;

#[derive(Clone, Copy, Default)]
struct Link {
    prev: u32,
    next: u32,
}

#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
}

/// Packets and bytes since the flow's previous record: records carry
/// deltas, so no running total is kept.
#[derive(Clone, Copy, Default)]
struct Counts {
    pkts: u64,
    bytes: u64,
}

/// One tracked flow (128 bytes; the index adds a slot position and a
/// control byte).
struct Flow {
    key: FlowKey,
    id: u64,
    start: Usec,
    last: Usec,
    rep_time: Usec,
    orig: Counts,
    reply: Counts,
    /// OR of the TCP flags per direction; with `B_ICMP` (an ICMP flow has
    /// no TCP flags) the type and code of its first ICMP packet instead,
    /// which keeps the entry at 128 bytes with the VLAN in the key.
    flags: [u8; 2],
    seq: u32,
    links: [Link; 2],
    class: u8,
    /// `B_*` bits: one byte for six booleans keeps the entry at 128 bytes,
    /// two cache lines.
    bits: u8,
}

/// Endpoint `a` of the key initiated.
const B_INIT_IS_A: u8 = 1;
/// The initiator was guessed (the first packet was no SYN).
const B_GUESSED: u8 = 2;
const B_FIN_ORIG: u8 = 4;
const B_FIN_REPLY: u8 = 8;
const B_RST: u8 = 16;
/// `icmp` holds a type and code.
const B_ICMP: u8 = 32;

impl Flow {
    #[inline]
    fn has(&self, b: u8) -> bool {
        self.bits & b != 0
    }

    #[inline]
    fn put(&mut self, b: u8, on: bool) {
        if on {
            self.bits |= b;
        } else {
            self.bits &= !b;
        }
    }
}

/// Counters the plugin publishes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Flows created.
    pub created: u64,
    /// Flows ended, by reason (idle, fin, rst, evicted, forced, max life).
    pub ended: [u64; 6],
    /// Update records.
    pub updates: u64,
    /// Times emergency mode began.
    pub emergencies: u64,
    /// Flows ended by a timeout while in emergency mode (also counted by
    /// their reason).
    pub emergency_ended: u64,
}

/// The table.
pub struct FlowTable {
    index: HashTable<u32>,
    hasher: KeyHasher,
    flows: Vec<Flow>,
    free: Vec<u32>,
    lists: [List; NCLASS + 1],
    to: Timeouts,
    max_flows: usize,
    now: Usec,
    /// No timer can fire before this time: `advance` skips its list walk
    /// until then (walking every list head on each new microsecond was a
    /// twentieth of the packet path). Lowered to 0 whenever a deadline may
    /// come earlier: a list gets its first flow, emergency mode turns.
    next_scan: Usec,
    next_id: u64,
    pending: VecDeque<Report>,
    /// `finish` was called: `pop` ends the flows one by one in slab order,
    /// this being the next slot to look at.
    finish_at: Option<usize>,
    /// Flows the walk of `finish` has ended but the index still holds.
    walked: usize,
    /// Whether a flow's first packet makes a start record.
    start_records: bool,
    /// Emergency mode's settings, when on.
    emergency: Option<Emergency>,
    /// Whether the table is in emergency mode now.
    in_emergency: bool,
    /// Counters.
    pub stats: Stats,
}

fn class_of(proto: u8) -> usize {
    match proto {
        PROTO_TCP => C_TCP,
        PROTO_UDP => C_UDP,
        PROTO_ICMP | PROTO_ICMPV6 => C_ICMP,
        _ => C_OTHER,
    }
}

fn reason_index(r: Reason) -> usize {
    match r {
        Reason::New | Reason::Idle => 0,
        Reason::Active => 5,
        Reason::Fin => 1,
        Reason::Rst => 2,
        Reason::Evicted => 3,
        Reason::Forced => 4,
    }
}

impl FlowTable {
    /// A table of at most `max_flows` flows (at least 1).
    pub fn new(to: Timeouts, max_flows: usize) -> Self {
        let max_flows = max_flows.max(1);
        let cap = max_flows.min(1 << 16);
        FlowTable {
            index: HashTable::with_capacity(cap),
            hasher: KeyHasher::new(),
            flows: Vec::with_capacity(cap),
            free: Vec::new(),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; NCLASS + 1],
            to,
            max_flows,
            now: 0,
            next_scan: 0,
            next_id: 1,
            pending: VecDeque::with_capacity(64),
            finish_at: None,
            walked: 0,
            start_records: false,
            emergency: None,
            in_emergency: false,
            stats: Stats::default(),
        }
    }

    /// Flows tracked now.
    pub fn len(&self) -> usize {
        self.index.len() - self.walked
    }

    /// Whether no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The table's clock: the latest time seen.
    pub fn now(&self) -> Usec {
        self.now
    }

    /// Makes each flow's first packet queue a start record.
    pub fn set_start_records(&mut self, on: bool) {
        self.start_records = on;
    }

    /// Turns emergency mode on with these settings (off by default).
    pub fn set_emergency(&mut self, e: Emergency) {
        self.emergency = Some(e);
    }

    /// Whether the table is in emergency mode now.
    pub fn in_emergency(&self) -> bool {
        self.in_emergency
    }

    /// The next record ready for output.
    pub fn pop(&mut self) -> Option<Report> {
        if self.pending.is_empty() {
            if let Some(at) = self.finish_at {
                // One flow at a time, so ending half a million flows queues
                // one record, not half a million; in slab order, so the walk
                // reads memory in sequence instead of chasing list links.
                match (at..self.flows.len()).find(|&i| self.flows[i].class != FREE) {
                    Some(i) => {
                        self.end_forced(i as u32);
                        self.finish_at = Some(i + 1);
                    }
                    None => self.reset(),
                }
            }
        }
        self.pending.pop_front()
    }

    fn unlink(&mut self, which: usize, list: usize, i: u32) {
        let Link { prev, next } = self.flows[i as usize].links[which];
        match prev {
            NIL => self.lists[list].head = next,
            p => self.flows[p as usize].links[which].next = next,
        }
        match next {
            NIL => self.lists[list].tail = prev,
            n => self.flows[n as usize].links[which].prev = prev,
        }
    }

    fn push_back(&mut self, which: usize, list: usize, i: u32) {
        let tail = self.lists[list].tail;
        self.flows[i as usize].links[which] = Link {
            prev: tail,
            next: NIL,
        };
        match tail {
            NIL => {
                self.lists[list].head = i;
                // An empty list had no deadline; this flow's may be the next.
                self.next_scan = 0;
            }
            t => self.flows[t as usize].links[which].next = i,
        }
        self.lists[list].tail = i;
    }

    fn idle_timeout(&self, class: usize) -> Usec {
        // Every class list is ordered by last activity, so shorter timeouts
        // apply from the head just as the normal ones do.
        let to = match self.emergency {
            Some(e) if self.in_emergency => e.to,
            _ => self.to,
        };
        match class {
            C_TCP => to.tcp,
            C_UDP => to.udp,
            C_ICMP => to.icmp,
            C_LINGER => to.linger,
            _ => to.other,
        }
    }

    /// Advances the clock to `t` (never backwards) and ends or updates
    /// every flow whose timer has passed.
    pub fn advance(&mut self, t: Usec) {
        self.complete_finish();
        if t <= self.now {
            return;
        }
        self.now = t;
        if t < self.next_scan {
            return;
        }
        // Each list is in deadline order, so the next deadline is a head's.
        let mut next = Usec::MAX;
        for c in 0..NCLASS {
            while let Some(h) = Some(self.lists[c].head).filter(|&h| h != NIL) {
                // Read each turn: emergency mode may end with this flow.
                let to = self.idle_timeout(c);
                let f = &self.flows[h as usize];
                let due = f.last.saturating_add(to);
                if due > t {
                    next = next.min(due);
                    break;
                }
                let reason = match c {
                    C_LINGER if f.has(B_RST) => Reason::Rst,
                    C_LINGER => Reason::Fin,
                    _ => Reason::Idle,
                };
                self.end(h, reason);
            }
        }
        if self.to.active > 0 {
            while let Some(h) = Some(self.lists[L_REPORT].head).filter(|&h| h != NIL) {
                let due = self.flows[h as usize]
                    .rep_time
                    .saturating_add(self.to.active);
                if due > t {
                    next = next.min(due);
                    break;
                }
                self.report(h, Kind::Update, Reason::Active);
                self.flows[h as usize].rep_time = t;
                self.unlink(1, L_REPORT, h);
                self.push_back(1, L_REPORT, h);
            }
        }
        // Every list head was looked at after the walk changed it; leaving
        // emergency mode in it (longer timeouts) only makes `next` early.
        self.next_scan = next;
    }

    /// Queues a record of flow `i` with the counters since its previous one
    /// (an update with nothing new is skipped).
    fn report(&mut self, i: u32, kind: Kind, reason: Reason) {
        let f = &mut self.flows[i as usize];
        if kind == Kind::Update && f.orig.pkts == 0 && f.reply.pkts == 0 {
            return;
        }
        let dir = |c: Counts, flags: u8| Dir {
            pkts: c.pkts,
            bytes: c.bytes,
            flags,
        };
        f.seq += 1;
        let r = Report {
            key: f.key,
            init_is_a: f.has(B_INIT_IS_A),
            guessed: f.has(B_GUESSED),
            id: f.id,
            seq: f.seq,
            start: f.start,
            end: f.last,
            orig: dir(f.orig, if f.has(B_ICMP) { 0 } else { f.flags[0] }),
            reply: dir(f.reply, if f.has(B_ICMP) { 0 } else { f.flags[1] }),
            icmp: f.has(B_ICMP).then_some((f.flags[0], f.flags[1])),
            kind,
            reason,
        };
        f.orig = Counts::default();
        f.reply = Counts::default();
        self.pending.push_back(r);
        if kind == Kind::Update {
            self.stats.updates += 1;
        }
    }

    fn end(&mut self, i: u32, reason: Reason) {
        self.report(i, Kind::End, reason);
        let class = self.flows[i as usize].class as usize;
        self.unlink(0, class, i);
        if self.to.active > 0 {
            self.unlink(1, L_REPORT, i);
        }
        let key = self.flows[i as usize].key;
        let hash = self.hasher.hash(&key);
        if let Ok(e) = self.index.find_entry(hash, |&j| j == i) {
            e.remove();
        }
        self.free.push(i);
        self.flows[i as usize].class = FREE;
        self.stats.ended[reason_index(reason)] += 1;
        if self.in_emergency {
            if matches!(reason, Reason::Idle | Reason::Fin | Reason::Rst) {
                self.stats.emergency_ended += 1;
            }
            if self
                .emergency
                .is_some_and(|e| self.index.len() <= e.leave_at)
            {
                self.in_emergency = false;
            }
        }
    }

    /// Ends every flow (shutdown, end of file): each as `pop` takes it.
    pub fn finish(&mut self) {
        self.finish_at.get_or_insert(0);
    }

    /// Queues the forced end of slot `i`, whose entry stays in the index
    /// and the lists until the walk of `finish` is over.
    fn end_forced(&mut self, i: u32) {
        self.report(i, Kind::End, Reason::Forced);
        self.flows[i as usize].class = FREE;
        self.walked += 1;
        self.stats.ended[reason_index(Reason::Forced)] += 1;
    }

    /// The walk of `finish` is over: every flow has ended.
    fn reset(&mut self) {
        self.finish_at = None;
        self.walked = 0;
        self.index.clear();
        self.flows.clear();
        self.free.clear();
        self.lists = [List {
            head: NIL,
            tail: NIL,
        }; NCLASS + 1];
    }

    /// A packet or the clock while `finish` still walks: the rest end now,
    /// so the table is consistent again.
    fn complete_finish(&mut self) {
        if let Some(at) = self.finish_at {
            for i in at..self.flows.len() {
                if self.flows[i].class != FREE {
                    self.end_forced(i as u32);
                }
            }
            self.reset();
        }
    }

    /// Ends the least recently active flow: the oldest head of the lists.
    fn evict(&mut self) {
        let victim = (0..NCLASS)
            .map(|c| self.lists[c].head)
            .filter(|&h| h != NIL)
            .min_by_key(|&h| self.flows[h as usize].last);
        if let Some(h) = victim {
            self.end(h, Reason::Evicted);
        }
    }

    /// Counts one packet into its flow, creating the flow if needed.
    pub fn packet(&mut self, p: &Packet) {
        self.advance(p.time);
        let src_is_a = (p.src, p.sport) <= (p.dst, p.dport);
        let key = if src_is_a {
            FlowKey {
                family: p.family,
                proto: p.proto,
                a: p.src,
                b: p.dst,
                pa: p.sport,
                pb: p.dport,
                vlan: p.vlan,
            }
        } else {
            FlowKey {
                family: p.family,
                proto: p.proto,
                a: p.dst,
                b: p.src,
                pa: p.dport,
                pb: p.sport,
                vlan: p.vlan,
            }
        };
        let now = self.now.max(p.time);
        let hash = self.hasher.hash(&key);
        let flows = &self.flows;
        let mut found = self
            .index
            .find(hash, |&j| flows[j as usize].key == key)
            .copied();
        if let Some(i) = found {
            let start = self.flows[i as usize].start;
            if self.to.max_life > 0 && p.time >= start.saturating_add(self.to.max_life) {
                self.end(i, Reason::Active);
                found = None;
            }
        }
        let (i, new) = match found {
            Some(i) => (i, false),
            None => (self.create(key, hash, p, src_is_a, now), true),
        };
        let f = &mut self.flows[i as usize];
        let mut from_orig = src_is_a == f.has(B_INIT_IS_A);
        if p.proto == PROTO_TCP && f.has(B_GUESSED) && p.flags & (tcp::SYN | tcp::ACK) == tcp::SYN {
            // A pure SYN settles who initiated a flow first seen mid-stream.
            if !from_orig {
                std::mem::swap(&mut f.orig, &mut f.reply);
                f.flags.swap(0, 1);
                let (fo, fr) = (f.has(B_FIN_ORIG), f.has(B_FIN_REPLY));
                f.put(B_FIN_ORIG, fr);
                f.put(B_FIN_REPLY, fo);
                f.bits ^= B_INIT_IS_A;
                from_orig = true;
            }
            f.put(B_GUESSED, false);
        }
        let (d, side) = if from_orig {
            (&mut f.orig, 0)
        } else {
            (&mut f.reply, 1)
        };
        d.pkts += 1;
        d.bytes += p.bytes;
        if !f.has(B_ICMP) {
            f.flags[side] |= p.flags;
        }
        f.last = f.last.max(p.time);
        if let (false, Some((t, c))) = (f.has(B_ICMP), p.icmp) {
            f.flags = [t, c];
            f.bits |= B_ICMP;
        }
        let mut class = f.class as usize;
        if p.proto == PROTO_TCP {
            if p.flags & tcp::RST != 0 {
                f.bits |= B_RST;
            }
            if p.flags & tcp::FIN != 0 {
                f.bits |= if from_orig { B_FIN_ORIG } else { B_FIN_REPLY };
            }
            const BOTH_FINS: u8 = B_FIN_ORIG | B_FIN_REPLY;
            if f.has(B_RST) || f.bits & BOTH_FINS == BOTH_FINS {
                class = C_LINGER;
            }
        }
        let old = f.class as usize;
        f.class = class as u8;
        self.unlink(0, old, i);
        self.push_back(0, class, i);
        if new && self.start_records {
            self.report(i, Kind::Start, Reason::New);
        }
    }

    fn create(&mut self, key: FlowKey, hash: u64, p: &Packet, src_is_a: bool, now: Usec) -> u32 {
        while self.index.len() >= self.max_flows {
            self.evict();
        }
        let syn_ack = tcp::SYN | tcp::ACK;
        let (src_init, guessed) = if p.proto == PROTO_TCP {
            match p.flags & syn_ack {
                f if f == syn_ack => (false, true),
                tcp::SYN => (true, false),
                _ => (true, true),
            }
        } else {
            (true, false)
        };
        let flow = Flow {
            key,
            id: self.next_id,
            start: p.time,
            last: p.time,
            rep_time: now,
            orig: Counts::default(),
            reply: Counts::default(),
            flags: [0; 2],
            seq: 0,
            links: [Link::default(); 2],
            class: class_of(p.proto) as u8,
            bits: if src_init == src_is_a { B_INIT_IS_A } else { 0 }
                | if guessed { B_GUESSED } else { 0 },
        };
        self.next_id += 1;
        let i = match self.free.pop() {
            Some(i) => {
                self.flows[i as usize] = flow;
                i
            }
            None => {
                self.flows.push(flow);
                (self.flows.len() - 1) as u32
            }
        };
        let (flows, hasher) = (&self.flows, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash(&flows[j as usize].key));
        // Linked into its class list here so `packet` can move it uniformly.
        let class = self.flows[i as usize].class as usize;
        self.push_back(0, class, i);
        if self.to.active > 0 {
            self.push_back(1, L_REPORT, i);
        }
        self.stats.created += 1;
        if !self.in_emergency
            && self
                .emergency
                .is_some_and(|e| self.index.len() >= e.enter_at)
        {
            self.in_emergency = true;
            self.stats.emergencies += 1;
            // Shorter timeouts: deadlines move earlier.
            self.next_scan = 0;
        }
        i
    }
}

#[cfg(test)]
mod tests;
