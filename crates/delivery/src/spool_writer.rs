//! The writer thread of a delivery that has a durable [`Spool`]: delivers
//! the memory queue and the spool in order, and moves both to the spool
//! when the destination goes away (the ordering rules are in
//! [`super::spool_submit`]).

use super::batch::Batch;
use super::spool_submit::SpoolShared;
use super::stats::DeliveryStats;
use super::transport::Transport;
use super::writer::Msg;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First reconnect delay after a failed attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// How often spooled data is pushed to the disk (fdatasync).
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Where the batch the writer holds came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    Queue,
    Spool,
}

/// Most bytes of spooled frames delivered as one batch in a replay (the
/// SQL outputs' batch size).
const REPLAY_BATCH_BYTES: usize = 1024 * 1024;

/// The writer thread of a delivery with a spool.
pub(crate) struct SpoolWriter {
    pub(crate) name: String,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) recycle: SyncSender<Batch>,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) stats: DeliveryStats,
    pub(crate) depth: Arc<AtomicI64>,
    pub(crate) shared: Arc<SpoolShared>,
    pub(crate) close_timeout: Duration,
    /// Longest reconnect delay.
    pub(crate) retry_max: Duration,
}

struct Run {
    w: SpoolWriter,
    hand: Option<(Batch, Src)>,
    /// First record of the batch in hand not yet delivered.
    from: usize,
    backoff: Duration,
    next_attempt: Instant,
    outage: Option<Instant>,
    opened_once: bool,
    last_sync: Instant,
    spare: Option<Batch>,
    /// A Close was taken off the queue while spilling it.
    closing: bool,
    /// Batches the spool could not take (disk full): older than the queue.
    memory: VecDeque<(Batch, usize)>,
}

impl SpoolWriter {
    pub(crate) fn run(self) {
        let opened_once = self.transport.is_open();
        let mut r = Run {
            w: self,
            hand: None,
            from: 0,
            backoff: BACKOFF_MIN,
            next_attempt: Instant::now(),
            outage: None,
            opened_once,
            last_sync: Instant::now(),
            spare: None,
            closing: false,
            memory: VecDeque::new(),
        };
        let left = r.w.shared.lock().spool.records();
        if left > 0 {
            log::info!(
                "{}: {left} records in the spool from before; delivering them first",
                r.w.name
            );
        }
        r.main_loop();
    }
}

impl Run {
    fn main_loop(&mut self) {
        loop {
            if self.last_sync.elapsed() >= SYNC_EVERY {
                self.sync();
            }
            if !self.w.transport.is_open() && Instant::now() >= self.next_attempt {
                self.try_open();
            }
            if self.closing || (self.hand.is_none() && !self.take()) {
                return self.finish();
            }
            if self.hand.is_some() {
                if self.w.transport.is_open() {
                    self.deliver();
                } else {
                    self.spill();
                }
            }
        }
    }

    /// Gets the next batch to deliver, waiting for one; false on Close.
    fn take(&mut self) -> bool {
        if self.w.transport.is_open() {
            if let Some((b, from)) = self.memory.pop_front() {
                self.hand = Some((b, Src::Queue));
                self.from = from;
                return true;
            }
        }
        match self.w.rx.try_recv() {
            Ok(m) => return self.handle(m),
            Err(TryRecvError::Disconnected) => return false,
            Err(TryRecvError::Empty) => {}
        }
        if self.w.transport.is_open() {
            let shared = self.w.shared.clone();
            let mut st = shared.lock();
            if !st.away && st.spool.has_unread() {
                let mut b = self.spare.take().unwrap_or_default();
                match st.spool.read_next(&mut b) {
                    Ok(true) => {
                        st.spool.read_more(&mut b, REPLAY_BATCH_BYTES);
                        self.hand = Some((b, Src::Spool));
                        self.from = 0;
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
        if !self.w.transport.is_open() {
            wait = wait.min(self.next_attempt.saturating_duration_since(now));
        }
        match self.w.rx.recv_timeout(wait.max(Duration::from_millis(1))) {
            Ok(m) => self.handle(m),
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    fn handle(&mut self, m: Msg) -> bool {
        match m {
            Msg::Data(b) => {
                let d = self.w.depth.fetch_sub(1, Ordering::Relaxed) - 1;
                self.w.stats.queue_depth.set(d.max(0) as u64);
                if b.is_empty() {
                    self.recycle(b);
                } else {
                    self.hand = Some((b, Src::Queue));
                    self.from = 0;
                }
                true
            }
            Msg::Reopen => {
                self.reopen();
                true
            }
            Msg::Close => false,
        }
    }

    fn deliver(&mut self) {
        let Some((b, src)) = self.hand.as_ref() else {
            return;
        };
        let (from, src) = (self.from, *src);
        let (n, bytes) = (b.records(), b.bytes() - b.start_of(from));
        let res = self.w.transport.send(b, from, &self.w.stats);
        let st = self.w.stats.clone();
        match res {
            Ok(()) => {
                st.records.add((n - from) as u64);
                st.bytes.add(bytes as u64);
                st.batches.inc();
                if src == Src::Spool {
                    let shared = self.w.shared.clone();
                    let mut sh = shared.lock();
                    if let Err(e) = sh.spool.commit() {
                        log::error!("{}: spool: cannot record progress: {e}", self.w.name);
                    }
                    shared.gauges(&sh, &st);
                    drop(sh);
                    shared.room.notify_all();
                }
                if let Some((b, _)) = self.hand.take() {
                    self.recycle(b);
                }
                self.from = 0;
                self.backoff = BACKOFF_MIN;
                self.back();
            }
            Err(e) => {
                st.records.add((e.next - from) as u64);
                st.write_errors.inc();
                self.from = e.next;
                self.w.transport.close();
                self.lost(&e.error);
                self.next_attempt = Instant::now() + self.step();
                self.spill();
            }
        }
    }

    /// The destination is away: the batch in hand and everything queued go
    /// to the spool, and producers spool directly until it is back. Queued
    /// batches are older than anything producers spooled (they spool only
    /// once the queue was full), so they go in front.
    fn spill(&mut self) {
        let shared = self.w.shared.clone();
        let mut st = shared.lock();
        st.away = true;
        let mut older: Vec<(Batch, usize)> = Vec::new();
        let mut from_spool = false;
        if let Some((b, src)) = self.hand.take() {
            match src {
                Src::Spool => {
                    st.spool.rewind();
                    from_spool = true;
                    self.recycle(b);
                }
                Src::Queue => older.push((b, self.from)),
            }
        }
        older.extend(self.memory.drain(..));
        self.from = 0;
        loop {
            match self.w.rx.try_recv() {
                Ok(Msg::Data(b)) => {
                    self.w.depth.fetch_sub(1, Ordering::Relaxed);
                    older.push((b, 0));
                }
                Ok(Msg::Reopen) => {}
                Ok(Msg::Close) => self.closing = true,
                Err(_) => break,
            }
        }
        self.w.stats.queue_depth.set(0);
        if older.is_empty() {
            shared.gauges(&st, &self.w.stats);
            return;
        }
        debug_assert!(!from_spool, "a queue holds nothing while the spool is read");
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
                self.memory.extend(older);
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

    fn try_open(&mut self) {
        match self.w.transport.open() {
            Ok(()) => {
                if self.opened_once {
                    self.w.stats.reconnects.inc();
                }
                self.opened_once = true;
                self.w.shared.lock().away = false;
                log::debug!("{}: opened {}", self.w.name, self.w.transport.describe());
            }
            Err(e) => {
                self.w.stats.write_errors.inc();
                self.lost(&e);
                self.next_attempt = Instant::now() + self.step();
                // Producers may spool directly only once the queue's older
                // batches are in the spool too: spill does both under the lock.
                self.spill();
            }
        }
    }

    fn step(&mut self) -> Duration {
        let d = self.backoff;
        self.backoff = (self.backoff * 2).min(self.w.retry_max.max(BACKOFF_MIN));
        d
    }

    fn lost(&mut self, e: &io::Error) {
        if self.outage.is_some() {
            log::debug!("{}: {}: {e}", self.w.name, self.w.transport.describe());
            return;
        }
        log::warn!(
            "{}: {}: {e}; spooling records and retrying",
            self.w.name,
            self.w.transport.describe()
        );
        self.outage = Some(Instant::now());
    }

    fn back(&mut self) {
        if let Some(since) = self.outage.take() {
            log::info!(
                "{}: {} is back after {:.1} s",
                self.w.name,
                self.w.transport.describe(),
                since.elapsed().as_secs_f64()
            );
        }
    }

    fn reopen(&mut self) {
        if !self.w.transport.is_open() {
            self.next_attempt = Instant::now();
            return;
        }
        match self.w.transport.reopen() {
            Ok(()) => {
                self.w.stats.reconnects.inc();
                log::info!("{}: reopened {}", self.w.name, self.w.transport.describe());
            }
            Err(e) => {
                self.w.stats.write_errors.inc();
                log::error!(
                    "{}: cannot reopen {}: {e}",
                    self.w.name,
                    self.w.transport.describe()
                );
                if !self.w.transport.is_open() {
                    self.lost(&e);
                    self.next_attempt = Instant::now() + self.step();
                }
            }
        }
    }

    fn sync(&mut self) {
        self.last_sync = Instant::now();
        if let Err(e) = self.w.shared.lock().spool.sync() {
            log::warn!("{}: spool sync: {e}", self.w.name);
        }
    }

    /// Shutdown: delivers what it can within `close_timeout` while the
    /// destination is there; whatever is left goes to the spool for the
    /// next start, so nothing accepted is lost.
    fn finish(&mut self) {
        let deadline = Instant::now() + self.w.close_timeout;
        while Instant::now() < deadline && self.w.transport.is_open() {
            if self.hand.is_none() {
                match self.w.rx.try_recv() {
                    Ok(Msg::Data(b)) => {
                        self.w.depth.fetch_sub(1, Ordering::Relaxed);
                        if !b.is_empty() {
                            self.hand = Some((b, Src::Queue));
                            self.from = 0;
                        }
                        continue;
                    }
                    Ok(_) => continue,
                    Err(_) => {}
                }
                let shared = self.w.shared.clone();
                let mut st = shared.lock();
                if st.away || !st.spool.has_unread() {
                    break;
                }
                let mut b = self.spare.take().unwrap_or_default();
                match st.spool.read_next(&mut b) {
                    Ok(true) => self.hand = Some((b, Src::Spool)),
                    _ => break,
                }
                self.from = 0;
            }
            self.deliver();
        }
        self.spill();
        let mut st = self.w.shared.lock();
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
        self.w.transport.close();
    }

    fn recycle(&mut self, mut b: Batch) {
        b.clear();
        if self.spare.is_none() {
            self.spare = Some(b);
        } else {
            let _ = self.w.recycle.try_send(b);
        }
    }
}

/// The writer thread's body: the plain writer, or the spooling one.
pub(crate) enum Job {
    Plain(super::writer::Writer),
    Spooled(SpoolWriter),
}

impl Job {
    pub(crate) fn new(
        w: super::writer::Writer,
        shared: Option<Arc<SpoolShared>>,
        cfg: Option<super::SpoolConfig>,
    ) -> Job {
        match (shared, cfg) {
            (Some(shared), Some(cfg)) => Job::Spooled(SpoolWriter {
                name: w.name,
                rx: w.rx,
                recycle: w.recycle,
                transport: w.transport,
                stats: w.stats,
                depth: w.depth,
                shared,
                close_timeout: w.close_timeout,
                retry_max: cfg.retry_max,
            }),
            _ => Job::Plain(w),
        }
    }

    pub(crate) fn run(self) {
        match self {
            Job::Plain(w) => w.run(),
            Job::Spooled(w) => w.run(),
        }
    }
}
