//! What NFCT does with each entry it hears of: events, dumps, purges.

use super::{
    accepts, fill_record, now_sec_usec, ns_to_sec_usec, with_buf, Flow, FlowKey, FlowRec, Inserted,
    Mode, NfctInput, NKEYS,
};
use crate::common::note_malformed;
use bytes::Bytes;
use rulogd_netlink::conntrack::{messages, Conntrack, CtEvent, Message};
use rulogd_plugin::{Emitter, Record};
use std::io;
use std::time::{Duration, Instant};

/// An emitter that drops everything (the start-up table load emits nothing).
pub(super) struct NoEmit(Record);

impl NoEmit {
    pub(super) fn new() -> NoEmit {
        NoEmit(Record::with_slots(NKEYS))
    }
}

impl Emitter for NoEmit {
    fn record(&mut self) -> &mut Record {
        &mut self.0
    }
    fn emit(&mut self) {
        self.0.clear();
    }
}

/// The time an entry gives for `ns`, else the clock (read once per batch).
#[inline]
fn time_or(ns: Option<u64>, now: &mut Option<(u32, u32)>) -> (u32, u32) {
    match ns {
        Some(ns) => ns_to_sec_usec(ns),
        None => *now.get_or_insert_with(now_sec_usec),
    }
}

impl NfctInput {
    fn emit(&self, em: &mut dyn Emitter, chunk: Option<&Bytes>, f: &FlowRec, ev: CtEvent) {
        fill_record(with_buf(em, chunk), &self.slots, f, ev);
        em.emit();
        self.stats.logged.inc();
    }

    /// Handles every message of one event datagram.
    pub(super) fn on_datagram(&mut self, chunk: &Bytes, em: &mut dyn Emitter) {
        // One clock read per datagram, shared by its entries.
        let mut now = None;
        for m in messages(chunk) {
            let ct = match m {
                Ok((Message::Entry(ct), _)) => ct,
                Ok((Message::Error { errno, .. }, _)) if errno != 0 => {
                    log::debug!("{} (NFCT): kernel reported error {errno}", self.name);
                    continue;
                }
                Ok(_) => continue,
                Err(e) => {
                    let (c, w) = (&self.stats.malformed, &mut self.warned[0]);
                    note_malformed(c, w, &self.name, "NFCT", &e);
                    continue;
                }
            };
            self.stats.received.inc();
            if !accepts(self.mode, &self.s, &ct) {
                self.stats.filtered.inc();
                continue;
            }
            match self.mode {
                Mode::Events => self.event_plain(chunk, &ct, &mut now, em),
                Mode::Hash => self.event_hash(chunk, &ct, &mut now, em),
                Mode::Polling => {}
            }
        }
    }

    /// `hash_enable=0`: NEW and DESTROY become records as they come.
    fn event_plain(
        &mut self,
        chunk: &Bytes,
        ct: &Conntrack,
        now: &mut Option<(u32, u32)>,
        em: &mut dyn Emitter,
    ) {
        let mut f = FlowRec::of(ct);
        match ct.event {
            CtEvent::New => f.start = Some(time_or(ct.start_ns, now)),
            CtEvent::Destroy => {
                f.end = Some(time_or(ct.stop_ns, now));
                f.start = ct.start_ns.map(ns_to_sec_usec);
            }
            CtEvent::Update => {
                // ulogd logs "unsupported message type" for each one.
                self.stats.unsupported.inc();
                if !self.warned[1] {
                    self.warned[1] = true;
                    log::info!(
                        "{} (NFCT): UPDATE events are not logged without the hash table (hash_enable=0); drop 2 from event_mask",
                        self.name
                    );
                }
                return;
            }
        }
        self.emit(em, Some(chunk), &f, ct.event);
    }

    /// Hash mode: NEW and UPDATE keep the table, DESTROY is logged.
    fn event_hash(
        &mut self,
        chunk: &Bytes,
        ct: &Conntrack,
        now: &mut Option<(u32, u32)>,
        em: &mut dyn Emitter,
    ) {
        let key = FlowKey::of(ct);
        let Some(table) = self.table.as_mut() else {
            return;
        };
        match ct.event {
            CtEvent::New | CtEvent::Update => {
                if ct.event == CtEvent::Update {
                    if let Some(f) = table.get_mut(&key) {
                        f.update(ct);
                        return;
                    }
                }
                let flow = Flow::new(ct, time_or(ct.start_ns, now), self.gen);
                match table.insert(key, flow) {
                    Inserted::New => {}
                    Inserted::Replaced => self.stats.replaced.inc(),
                    Inserted::Full => self.table_full(),
                }
            }
            CtEvent::Destroy => {
                let mut f = FlowRec::of(ct);
                // The start noted when the flow was first seen (userspace
                // time for a NEW event, which carries no timestamp).
                f.start = table.remove(&key).map(|fl| fl.start);
                f.end = Some(time_or(ct.stop_ns, now));
                self.emit(em, Some(chunk), &f, CtEvent::Destroy);
            }
        }
    }

    fn table_full(&mut self) {
        self.stats.table_full.inc();
        if !self.warned[2] {
            self.warned[2] = true;
            log::warn!(
                "{} (NFCT): flow table full (hash_max_entries={}); new flows are logged at their end without a start time",
                self.name,
                self.s.max_entries
            );
        }
    }

    /// Loads a dump into the table; with `purge`, then logs (as DESTROY)
    /// every flow the kernel no longer has.
    pub(super) fn refresh(&mut self, em: &mut dyn Emitter, purge: bool) -> io::Result<()> {
        self.gen = self.gen.wrapping_add(1);
        let gen = self.gen;
        let (mode, s) = (self.mode, &self.s);
        let Some(table) = self.table.as_mut() else {
            return Ok(());
        };
        let mut now = None;
        let mut full = 0u64;
        let (_, bad) = self.q.dump(false, |_, ct| {
            if !accepts(mode, s, ct) {
                return;
            }
            let key = FlowKey::of(ct);
            if let Some(f) = table.get_mut(&key) {
                f.update(ct);
                f.seen = gen;
            } else if table.insert(key, Flow::new(ct, time_or(ct.start_ns, &mut now), gen))
                == Inserted::Full
            {
                full += 1;
            }
        })?;
        self.stats.malformed.add(bad as u64);
        if full > 0 {
            self.table_full();
            self.stats.table_full.add(full - 1);
        }
        if purge {
            self.purge(em, gen);
        }
        Ok(())
    }

    /// Logs and forgets the flows the last dump did not show, once a lookup
    /// confirms the kernel has dropped them (a dump is not atomic).
    fn purge(&mut self, em: &mut dyn Emitter, gen: u32) {
        let Some(gone) = self.table.as_ref().map(|t| t.unseen(gen)) else {
            return;
        };
        let end = now_sec_usec();
        for key in gone {
            match self.q.exists(key.family, &key.orig, key.zone) {
                Ok(true) => {
                    if let Some(f) = self.table.as_mut().and_then(|t| t.get_mut(&key)) {
                        f.seen = gen;
                    }
                }
                Ok(false) => {
                    let Some(flow) = self.table.as_mut().and_then(|t| t.remove(&key)) else {
                        continue;
                    };
                    let mut f = FlowRec::of_table(&key, &flow);
                    // ulogd 2.0.9 (2.0.8 leaves the end unset): the time the
                    // flow was found gone.
                    f.end = Some(end);
                    self.emit(em, None, &f, CtEvent::Destroy);
                    self.stats.purged.inc();
                }
                Err(e) => {
                    log::error!("{} (NFCT): conntrack lookup failed: {e}", self.name);
                    return;
                }
            }
        }
    }

    /// SIGUSR2: reads and zeroes every counter in the kernel and logs each
    /// flow as UPDATE with the counts since the last reset.
    pub(super) fn dump_reset(&mut self, em: &mut dyn Emitter) -> io::Result<()> {
        let (mode, s, slots, gen) = (self.mode, &self.s, &self.slots, self.gen);
        let (table, stats) = (&mut self.table, &self.stats);
        let mut now = None;
        let (_, bad) = self.q.dump(true, |chunk, ct| {
            if !accepts(mode, s, ct) {
                return;
            }
            let mut f = FlowRec::of(ct);
            f.start = match table.as_mut() {
                Some(t) => {
                    let key = FlowKey::of(ct);
                    match t.get_mut(&key) {
                        Some(fl) => {
                            fl.update(ct);
                            Some(fl.start)
                        }
                        None => {
                            let start = time_or(ct.start_ns, &mut now);
                            if t.insert(key, Flow::new(ct, start, gen)) == Inserted::Full {
                                stats.table_full.inc();
                            }
                            Some(start)
                        }
                    }
                }
                // Without the table (ulogd 2.0.8 crashes, 2.0.9 does nothing):
                // the kernel's start time when it has one.
                None => ct.start_ns.map(ns_to_sec_usec),
            };
            fill_record(with_buf(em, Some(chunk)), slots, &f, CtEvent::Update);
            em.emit();
            stats.logged.inc();
        })?;
        self.stats.malformed.add(bad as u64);
        Ok(())
    }

    /// The kernel dropped events because the socket buffer was full.
    pub(super) fn on_enobufs(&mut self) {
        if self.mode == Mode::Hash && self.resync_at.is_none() {
            // The table may now hold flows whose DESTROY was lost.
            let t = Duration::from_secs(u64::from(self.s.resync_timeout));
            self.resync_at = Some(Instant::now() + t);
        }
        let st = &self.stats;
        self.rcvbuf
            .on_enobufs(&self.name, self.ev.as_ref(), &st.enobufs, &st.rcvbuf);
    }
}
