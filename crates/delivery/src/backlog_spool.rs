//! The backlog of a writer ([`super::writer`]) with a durable overflow
//! stage: it holds one batch at a time (from the queue, or read back from
//! the spool once the queue is empty), and when the destination goes away
//! it moves that batch and the whole queue to the spool, where producers
//! then append directly (the ordering rules are in [`super::overflow`]).
//! Shutdown keeps what the destination did not take in the spool.

use super::batch::Batch;
use super::overflow::SpoolShared;
use super::stats::DeliveryStats;
use super::writer::{Backlog, Msg, Run};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often spooled data is pushed to the disk (fdatasync).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Most bytes of spooled frames delivered as one batch in a replay (the
/// SQL outputs' batch size).
const REPLAY_BATCH_BYTES: usize = 1024 * 1024;

/// Where the batch the writer holds came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    Queue,
    Spool,
}

/// The writer's side of the overflow stage.
pub(crate) struct Overflow {
    pub(crate) shared: Arc<SpoolShared>,
    hand: Option<(Batch, Src)>,
    /// First record of the batch in hand not yet delivered.
    from: usize,
    /// A cleared batch to read the spool into.
    pub(crate) spare: Option<Batch>,
    last_sync: Instant,
    /// A Close was taken off the queue while spilling it.
    closing: bool,
    /// Batches the spool could not take (disk full): older than the queue.
    memory: VecDeque<(Batch, usize)>,
}

impl Overflow {
    /// The writer's side of the stage around `shared`.
    pub(crate) fn new(shared: Arc<SpoolShared>) -> Self {
        Overflow {
            shared,
            hand: None,
            from: 0,
            spare: None,
            last_sync: Instant::now(),
            closing: false,
            memory: VecDeque::new(),
        }
    }

    pub(crate) fn front(&self) -> Option<(&Batch, usize)> {
        self.hand.as_ref().map(|(b, _)| (b, self.from))
    }

    /// Takes a batch from the queue in hand.
    pub(crate) fn hold(&mut self, b: Batch) {
        self.hand = Some((b, Src::Queue));
        self.from = 0;
    }

    /// The batch in hand was delivered: a spooled one is marked done.
    pub(crate) fn pop(&mut self, name: &str, stats: &DeliveryStats) -> Option<Batch> {
        let (b, src) = self.hand.take()?;
        if src == Src::Spool {
            let mut sh = self.shared.lock();
            if let Err(e) = sh.spool.commit() {
                log::error!("{name}: spool: cannot record progress: {e}");
            }
            self.shared.gauges(&sh, stats);
            drop(sh);
            self.shared.room.notify_all();
        }
        self.from = 0;
        Some(b)
    }

    /// A send failed at record `next` of the batch in hand.
    pub(crate) fn resend_from(&mut self, next: usize) {
        self.from = next;
    }
}

impl Run {
    /// Says at start whether an earlier run left records to deliver.
    pub(crate) fn started(&mut self) {
        let Backlog::Spool(o) = &self.backlog else {
            return;
        };
        let left = o.shared.lock().spool.records();
        if left > 0 {
            log::info!(
                "{}: {left} records in the spool from before; delivering them first",
                self.w.name
            );
        }
    }

    pub(crate) fn sync_if_due(&mut self) {
        let o = variant!(self, Spool);
        if o.last_sync.elapsed() < SYNC_EVERY {
            return;
        }
        o.last_sync = Instant::now();
        if let Err(e) = o.shared.lock().spool.sync() {
            log::warn!("{}: spool sync: {e}", self.w.name);
        }
    }

    /// Gets the next batch in hand, waiting for one; false on Close. The
    /// spool is read only while the queue is empty: it holds only batches
    /// newer than the queue's.
    pub(crate) fn take_spool(&mut self) -> bool {
        let open = self.w.transport.is_open();
        let o = variant!(self, Spool);
        if o.closing {
            return false;
        }
        if o.hand.is_some() {
            return true;
        }
        if open {
            if let Some((b, from)) = o.memory.pop_front() {
                o.hand = Some((b, Src::Queue));
                o.from = from;
                return true;
            }
        }
        match self.w.rx.try_recv() {
            Ok(m) => return self.handle(m),
            Err(TryRecvError::Disconnected) => return false,
            Err(TryRecvError::Empty) => {}
        }
        if open {
            let o = variant!(self, Spool);
            let shared = o.shared.clone();
            let mut st = shared.lock();
            if !st.away && st.spool.has_unread() {
                // Producers queue under this lock, and only while the spool is
                // empty; one may have done so since the queue was found empty
                // above. Those batches are older than the spool's: first.
                match self.w.rx.try_recv() {
                    Ok(m) => {
                        drop(st);
                        return self.handle(m);
                    }
                    Err(TryRecvError::Disconnected) => return false,
                    Err(TryRecvError::Empty) => {}
                }
                let mut b = o.spare.take().unwrap_or_default();
                match st.spool.read_next(&mut b) {
                    Ok(true) => {
                        st.spool.read_more(&mut b, REPLAY_BATCH_BYTES);
                        o.hand = Some((b, Src::Spool));
                        o.from = 0;
                        return true;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        // A damaged frame cannot be delivered; skip it rather
                        // than stop the delivery of everything behind it.
                        log::error!("{}: spool: {e}; skipping the damaged part", self.w.name);
                        self.w.stats.set.counter("spool_damaged").inc();
                        if let Err(e) = st.spool.skip_damaged() {
                            log::error!("{}: spool: {e}", self.w.name);
                        }
                        return true;
                    }
                }
            }
        }
        let now = Instant::now();
        let mut wait = SYNC_EVERY;
        if !open {
            wait = wait.min(self.next_attempt.saturating_duration_since(now));
        }
        match self.w.rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(m) => self.handle(m),
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// The destination is away: the batch in hand and everything queued go
    /// to the spool, and producers spool directly until it is back. Queued
    /// batches are older than anything producers spooled (they spool only
    /// once the queue was full), so they go in front.
    pub(crate) fn spill(&mut self) {
        let o = variant!(self, Spool);
        let shared = o.shared.clone();
        let mut st = shared.lock();
        st.away = true;
        let mut older: Vec<(Batch, usize)> = Vec::new();
        let mut from_spool = None;
        if let Some((b, src)) = o.hand.take() {
            match src {
                Src::Spool => {
                    st.spool.rewind();
                    from_spool = Some(b);
                }
                Src::Queue => older.push((b, o.from)),
            }
        }
        older.extend(o.memory.drain(..));
        o.from = 0;
        loop {
            match self.w.rx.try_recv() {
                Ok(Msg::Data(b)) => {
                    self.w.depth.fetch_sub(1, Ordering::Relaxed);
                    older.push((b, 0));
                }
                Ok(Msg::Reopen) => {}
                Ok(Msg::Close) => o.closing = true,
                Err(_) => break,
            }
        }
        self.w.stats.queue_depth.set(0);
        if let Some(b) = from_spool.take() {
            // Read back from the spool, so still in it: the copy is spare.
            if o.spare.is_none() {
                let mut b = b;
                b.clear();
                o.spare = Some(b);
            }
            debug_assert!(
                older.is_empty(),
                "a queue holds nothing while the spool is read"
            );
        }
        if older.is_empty() {
            shared.gauges(&st, &self.w.stats);
            return;
        }
        let refs: Vec<(&Batch, usize)> = older.iter().map(|(b, f)| (b, *f)).collect();
        let n: u64 = older.iter().map(|(b, f)| (b.records() - f) as u64).sum();
        match st.spool.prepend(&refs) {
            Ok(()) => shared.spooled.add(n),
            Err(e) => {
                // Keep them in memory, in order: retried when it is back.
                log::error!(
                    "{}: cannot write the spool: {e}; {n} records held in memory",
                    self.w.name
                );
                st.broken = true;
                drop(refs);
                shared.gauges(&st, &self.w.stats);
                drop(st);
                o.memory.extend(older);
                return;
            }
        }
        shared.gauges(&st, &self.w.stats);
        drop(refs);
        drop(st);
        for (b, _) in older {
            self.recycle(b);
        }
    }

    /// Shutdown: while the destination is there and the deadline not past,
    /// takes the rest of the queue, then the spool, one batch at a time.
    pub(crate) fn more_spool(&mut self, deadline: Instant) -> bool {
        loop {
            if Instant::now() >= deadline || !self.w.transport.is_open() {
                return false;
            }
            let o = variant!(self, Spool);
            if o.hand.is_some() {
                return true;
            }
            match self.w.rx.try_recv() {
                Ok(Msg::Data(b)) => {
                    self.w.depth.fetch_sub(1, Ordering::Relaxed);
                    if !b.is_empty() {
                        o.hold(b);
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(_) => {}
            }
            let shared = o.shared.clone();
            let mut st = shared.lock();
            if st.away || !st.spool.has_unread() {
                return false;
            }
            // As in `take_spool`: a batch queued since the look above is
            // older than the spool's.
            match self.w.rx.try_recv() {
                Ok(Msg::Data(b)) => {
                    drop(st);
                    self.w.depth.fetch_sub(1, Ordering::Relaxed);
                    if !b.is_empty() {
                        o.hold(b);
                    }
                    continue;
                }
                Ok(_) => continue,
                Err(_) => {}
            }
            let mut b = o.spare.take().unwrap_or_default();
            return match st.spool.read_next(&mut b) {
                Ok(true) => {
                    o.hand = Some((b, Src::Spool));
                    o.from = 0;
                    true
                }
                _ => false,
            };
        }
    }

    /// Shutdown: whatever is left goes to the spool for the next start, so
    /// nothing accepted is lost.
    pub(crate) fn left_spool(&mut self) {
        self.spill();
        let o = variant!(self, Spool);
        let mut st = o.shared.lock();
        let left = st.spool.records();
        if let Err(e) = st.spool.sync() {
            log::error!("{}: spool sync at exit: {e}", self.w.name);
        }
        drop(st);
        if left > 0 {
            log::warn!(
                "{}: {} not reachable at shutdown; {left} records kept in the spool for the next start",
                self.w.name,
                self.w.transport.describe()
            );
        }
    }
}
