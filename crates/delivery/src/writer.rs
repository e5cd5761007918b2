//! The writer thread: takes batches off the queue in order and writes them,
//! holding them in memory and reconnecting with backoff while the destination
//! is away.

use super::batch::Batch;
use super::stats::DeliveryStats;
use super::transport::Transport;
use super::WhenFull;
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What travels on a delivery queue.
pub(crate) enum Msg {
    /// Rendered records.
    Data(Batch),
    /// SIGHUP: everything before goes to the old file or connection.
    Reopen,
    /// Write everything before, then stop.
    Close,
}

/// First reconnect delay after a failed attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a writer that may not take more data looks for a shutdown.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Exponential backoff: 100 ms doubling up to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        d
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }
}

/// The state of a destination that is away, so it is logged once, not per line.
struct Outage {
    since: Instant,
    dropped_at_start: u64,
    told_dropping: bool,
}

/// Everything the writer thread owns.
pub(crate) struct Writer {
    pub(crate) name: String,
    pub(crate) rx: Receiver<Msg>,
    pub(crate) recycle: SyncSender<Batch>,
    pub(crate) transport: Box<dyn Transport>,
    pub(crate) stats: DeliveryStats,
    pub(crate) depth: Arc<AtomicI64>,
    pub(crate) closing: Arc<AtomicBool>,
    pub(crate) when_full: WhenFull,
    pub(crate) max_pending: usize,
    pub(crate) close_timeout: Duration,
}

/// The writer's working state, apart from its configuration.
struct Run {
    w: Writer,
    pending: VecDeque<Batch>,
    /// First record of `pending.front()` not yet delivered.
    front_next: usize,
    pending_bytes: usize,
    pending_records: usize,
    backoff: Backoff,
    /// When the destination is closed: when to try opening it again.
    next_attempt: Instant,
    outage: Option<Outage>,
    opened_once: bool,
    /// Whether the current connection has taken a whole batch: if it fails
    /// before that, retrying at once would spin (a full disk, a peer that
    /// accepts and hangs up), so the retry waits for the backoff.
    proven: bool,
    /// A file renamed or deleted under us could not be opened again; told
    /// once, retried before every batch (at most once a second).
    move_failing: bool,
}

impl Writer {
    /// Runs until Close (or until every sender is gone).
    pub(crate) fn run(self) {
        let opened_once = self.transport.is_open();
        let mut r = Run {
            w: self,
            pending: VecDeque::new(),
            front_next: 0,
            pending_bytes: 0,
            pending_records: 0,
            backoff: Backoff(BACKOFF_MIN),
            next_attempt: Instant::now(),
            outage: None,
            opened_once,
            proven: false,
            move_failing: false,
        };
        if !r.w.transport.is_open() {
            // Network modes connect here, not at build time, so a stack starts
            // while its peer is still down.
            r.try_open();
        }
        r.main_loop();
    }
}

impl Run {
    fn main_loop(&mut self) {
        loop {
            self.deliver();
            let msg = if self.pending.is_empty() {
                match self.w.rx.recv() {
                    Ok(m) => m,
                    Err(_) => return self.finish(),
                }
            } else {
                let now = Instant::now();
                if now >= self.next_attempt {
                    self.try_open();
                    continue;
                }
                let wait = self.next_attempt - now;
                let closing = self.w.closing.load(Ordering::Acquire);
                if self.w.when_full == WhenFull::Block
                    && self.pending_bytes >= self.w.max_pending
                    && !closing
                {
                    // Leave batches in the queue so that it fills and pushes
                    // back on the input, but keep an eye on shutdown.
                    std::thread::sleep(wait.min(IDLE_POLL));
                    continue;
                }
                match self.w.rx.recv_timeout(wait) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return self.finish(),
                }
            };
            match msg {
                Msg::Data(b) => self.accept(b),
                Msg::Reopen => self.reopen(),
                Msg::Close => return self.finish(),
            }
        }
    }

    fn accept(&mut self, b: Batch) {
        let d = self.w.depth.fetch_sub(1, Ordering::Relaxed) - 1;
        self.w.stats.queue_depth.set(d.max(0) as u64);
        if b.is_empty() {
            return self.recycle(b);
        }
        // While away the writer holds at least one batch even with
        // max_pending = 0: holding something is what drives reconnecting.
        let away = !self.pending.is_empty();
        if away
            && self.pending_bytes + b.bytes() > self.w.max_pending
            && !self.w.closing.load(Ordering::Acquire)
        {
            self.w.stats.dropped_full.add(b.records() as u64);
            if let Some(o) = self.outage.as_mut() {
                if !o.told_dropping {
                    o.told_dropping = true;
                    log::warn!(
                        "{}: {} bytes held for {}; dropping records until it is back",
                        self.w.name,
                        self.pending_bytes,
                        self.w.transport.describe()
                    );
                }
            }
            return self.recycle(b);
        }
        self.pending_bytes += b.bytes();
        self.pending_records += b.records();
        self.pending.push_back(b);
        self.update_pending();
    }

    /// Writes pending batches while the destination is open.
    fn deliver(&mut self) {
        while !self.pending.is_empty() {
            if !self.w.transport.is_open() {
                return;
            }
            if self.w.transport.moved() {
                self.follow_move();
            }
            let Some(front) = self.pending.front() else {
                return;
            };
            let from = self.front_next;
            let st = &self.w.stats;
            match self.w.transport.send(front, from, st) {
                Ok(()) => {
                    st.records.add((front.records() - from) as u64);
                    st.bytes.add((front.bytes() - front.start_of(from)) as u64);
                    st.batches.inc();
                    if let Some(b) = self.pending.pop_front() {
                        self.pending_bytes -= b.bytes();
                        self.pending_records -= b.records();
                        self.recycle(b);
                    }
                    self.front_next = 0;
                    self.update_pending();
                    self.proven = true;
                    self.backoff.reset();
                    self.back();
                }
                Err(e) => {
                    st.records.add((e.next - from) as u64);
                    st.bytes
                        .add((front.start_of(e.next) - front.start_of(from)) as u64);
                    st.write_errors.inc();
                    self.front_next = e.next;
                    self.w.transport.close();
                    self.lost(&e.error);
                    // After a connection that worked, the first retry is
                    // immediate: a restarted peer is usually there already.
                    self.next_attempt = if std::mem::take(&mut self.proven) {
                        Instant::now()
                    } else {
                        Instant::now() + self.backoff.next()
                    };
                    self.update_pending();
                    return;
                }
            }
        }
    }

    /// The file was renamed or deleted without SIGHUP (logrotate without
    /// a signal): reopen it; if that fails the old file stays in use, so
    /// nothing is lost, and the next check tries again.
    fn follow_move(&mut self) {
        let name = &self.w.name;
        let desc = self.w.transport.describe().to_string();
        match self.w.transport.reopen() {
            Ok(()) => {
                self.w.stats.reconnects.inc();
                self.move_failing = false;
                log::info!("{name}: {desc} was renamed or deleted; reopened it");
            }
            Err(e) if !std::mem::replace(&mut self.move_failing, true) => {
                self.w.stats.write_errors.inc();
                log::error!(
                    "{name}: {desc} was renamed or deleted and cannot be opened again: {e}; \
                     writing on into the old file and retrying"
                );
            }
            Err(e) => log::debug!("{name}: cannot reopen {desc}: {e}"),
        }
    }

    fn try_open(&mut self) {
        match self.w.transport.open() {
            Ok(()) => {
                self.proven = false;
                if self.opened_once {
                    self.w.stats.reconnects.inc();
                }
                self.opened_once = true;
                log::debug!("{}: opened {}", self.w.name, self.w.transport.describe());
            }
            Err(e) => {
                self.w.stats.write_errors.inc();
                self.lost(&e);
                self.next_attempt = Instant::now() + self.backoff.next();
            }
        }
    }

    /// Notes a failure; warns only on the first one of an outage.
    fn lost(&mut self, e: &io::Error) {
        if self.outage.is_some() {
            log::debug!("{}: {}: {e}", self.w.name, self.w.transport.describe());
            return;
        }
        log::warn!(
            "{}: {}: {e}; holding records and retrying",
            self.w.name,
            self.w.transport.describe()
        );
        self.outage = Some(Outage {
            since: Instant::now(),
            dropped_at_start: self.w.stats.dropped_full.get(),
            told_dropping: false,
        });
    }

    /// Ends an outage after a successful write.
    fn back(&mut self) {
        if let Some(o) = self.outage.take() {
            log::info!(
                "{}: {} is back after {:.1} s; {} records dropped meanwhile",
                self.w.name,
                self.w.transport.describe(),
                o.since.elapsed().as_secs_f64(),
                self.w.stats.dropped_full.get() - o.dropped_at_start
            );
        }
    }

    fn reopen(&mut self) {
        if !self.pending.is_empty() {
            // Already away: retry now instead of waiting for the backoff.
            self.w.transport.close();
            self.next_attempt = Instant::now();
            return;
        }
        match self.w.transport.reopen() {
            Ok(()) => {
                self.w.stats.reconnects.inc();
                self.opened_once = true;
                self.proven = false;
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
                    self.next_attempt = Instant::now() + self.backoff.next();
                }
            }
        }
    }

    /// Writes everything still queued, waiting at most `close_timeout` for an
    /// absent destination, then closes it.
    fn finish(&mut self) {
        // Batches sent after Close (or by a sender blocked on a full queue)
        // were accepted, so they are written too.
        while let Ok(m) = self.w.rx.try_recv() {
            if let Msg::Data(b) = m {
                self.accept(b);
            }
        }
        let deadline = Instant::now() + self.w.close_timeout;
        self.w.transport.limit_send_time(self.w.close_timeout);
        loop {
            self.deliver();
            if self.pending.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                let n = self.pending_records - self.front_next;
                self.w.stats.dropped_shutdown.add(n as u64);
                log::error!(
                    "{}: {} still unreachable at shutdown; {n} records lost",
                    self.w.name,
                    self.w.transport.describe()
                );
                self.pending.clear();
                self.front_next = 0;
                break;
            }
            if now < self.next_attempt {
                std::thread::sleep((self.next_attempt.min(deadline)) - now);
                continue;
            }
            self.try_open();
        }
        self.pending_bytes = 0;
        self.pending_records = 0;
        self.update_pending();
        self.w.transport.close();
    }

    fn update_pending(&self) {
        let n = self.pending_records.saturating_sub(self.front_next);
        self.w.stats.pending.set(n as u64);
    }

    fn recycle(&self, mut b: Batch) {
        b.clear();
        // A full pool just frees the batch.
        let _ = self.w.recycle.try_send(b);
    }
}
