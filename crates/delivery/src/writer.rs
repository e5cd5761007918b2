//! The writer thread: one loop that takes batches off the queue in order and
//! writes them, over one backlog of what the destination has not taken yet.
//! The backlog is memory only ([`super::backlog_memory`]: held while the
//! destination is away, up to `max_pending`) or has a durable overflow stage
//! ([`super::backlog_spool`]: moved to the spool while it is away). The loop
//! reconnects with backoff and resends from the record a failure interrupted.

use super::backlog_memory::Memory;
use super::backlog_spool::Overflow;
use super::batch::Batch;
use super::stats::DeliveryStats;
use super::transport::Transport;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
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
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest reconnect delay of a delivery without a spool (with one, the
/// spool's `retry_max`).
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Exponential backoff: 100 ms doubling up to its maximum.
pub(crate) struct Backoff {
    cur: Duration,
    max: Duration,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self.cur;
        self.cur = (self.cur * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.cur = BACKOFF_MIN;
    }
}

/// The state of a destination that is away, so it is logged once, not per line.
pub(crate) struct Outage {
    pub(crate) since: Instant,
    pub(crate) dropped_at_start: u64,
    pub(crate) told_dropping: bool,
}

/// What the destination has not taken yet, in order.
pub(crate) enum Backlog {
    /// Held in memory while the destination is away.
    Memory(Memory),
    /// Moved to the durable spool while the destination is away.
    Spool(Overflow),
}

impl Backlog {
    /// The batch to send next and its first record not yet delivered.
    fn front(&self) -> Option<(&Batch, usize)> {
        match self {
            Backlog::Memory(m) => m.front(),
            Backlog::Spool(o) => o.front(),
        }
    }
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
    pub(crate) close_timeout: Duration,
    /// Longest reconnect delay.
    pub(crate) backoff_max: Duration,
}

/// The writer's working state, apart from its configuration.
pub(crate) struct Run {
    pub(crate) w: Writer,
    pub(crate) backlog: Backlog,
    backoff: Backoff,
    /// When the destination is closed: when to try opening it again.
    pub(crate) next_attempt: Instant,
    pub(crate) outage: Option<Outage>,
    opened_once: bool,
    /// Whether the current connection has taken a whole batch: if it fails
    /// before that, retrying at once would spin (a full disk, a peer that
    /// accepts and hangs up), so the retry waits for the backoff. A spooled
    /// delivery always waits: its backlog is on disk, not growing in memory.
    proven: bool,
    /// A file renamed or deleted under us could not be opened again; told
    /// once, retried before every batch (at most once a second).
    move_failing: bool,
}

impl Writer {
    /// Runs until Close (or until every sender is gone).
    pub(crate) fn run(self, backlog: Backlog) {
        let opened_once = self.transport.is_open();
        let backoff = Backoff {
            cur: BACKOFF_MIN,
            max: self.backoff_max,
        };
        let mut r = Run {
            w: self,
            backlog,
            backoff,
            next_attempt: Instant::now(),
            outage: None,
            opened_once,
            proven: false,
            move_failing: false,
        };
        r.started();
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
            if let Backlog::Spool(_) = self.backlog {
                self.sync_if_due();
            }
            if !self.w.transport.is_open()
                && Instant::now() >= self.next_attempt
                && self.wants_open()
            {
                self.try_open();
            }
            if !self.take() {
                return self.finish();
            }
            if self.w.transport.is_open() {
                self.deliver();
            } else if self.backlog.front().is_some() {
                self.gone();
            }
        }
    }

    /// Whether a closed destination is worth opening now: a memory backlog
    /// waits for something to send, so an idle output keeps no connection.
    fn wants_open(&self) -> bool {
        match &self.backlog {
            Backlog::Memory(m) => !m.is_empty(),
            Backlog::Spool(_) => true,
        }
    }

    /// Takes the next message off the queue (or out of the spool) into the
    /// backlog, waiting as the backlog allows; false on Close.
    fn take(&mut self) -> bool {
        match self.backlog {
            Backlog::Memory(_) => self.take_memory(),
            Backlog::Spool(_) => self.take_spool(),
        }
    }

    /// Acts on one message from the queue; false on Close.
    pub(crate) fn handle(&mut self, m: Msg) -> bool {
        match m {
            Msg::Data(b) => {
                let d = self.w.depth.fetch_sub(1, Ordering::Relaxed) - 1;
                self.w.stats.queue_depth.set(d.max(0) as u64);
                if b.is_empty() {
                    self.recycle(b);
                } else {
                    match self.backlog {
                        Backlog::Memory(_) => self.accept_memory(b),
                        Backlog::Spool(ref mut o) => o.hold(b),
                    }
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

    /// Writes the backlog while the destination is open.
    pub(crate) fn deliver(&mut self) {
        while self.backlog.front().is_some() {
            if !self.w.transport.is_open() {
                return;
            }
            if self.w.transport.moved() {
                self.follow_move();
            }
            let Some((front, from)) = self.backlog.front() else {
                return;
            };
            let st = &self.w.stats;
            match self.w.transport.send(front, from, st) {
                Ok(()) => {
                    st.records.add((front.records() - from) as u64);
                    st.bytes.add((front.bytes() - front.start_of(from)) as u64);
                    st.batches.inc();
                    self.sent();
                    self.proven = true;
                    self.backoff.reset();
                    self.back();
                }
                Err(e) => {
                    st.records.add((e.next - from) as u64);
                    st.bytes
                        .add((front.start_of(e.next) - front.start_of(from)) as u64);
                    st.write_errors.inc();
                    self.w.transport.close();
                    self.lost(&e.error);
                    // After a connection that worked, the first retry is
                    // immediate: a restarted peer is usually there already.
                    let at_once = matches!(self.backlog, Backlog::Memory(_));
                    self.next_attempt = if at_once && std::mem::take(&mut self.proven) {
                        Instant::now()
                    } else {
                        Instant::now() + self.backoff.next()
                    };
                    match &mut self.backlog {
                        Backlog::Memory(m) => m.resend_from(e.next, &self.w.stats),
                        Backlog::Spool(o) => o.resend_from(e.next),
                    }
                    self.gone();
                    return;
                }
            }
        }
    }

    /// The front of the backlog was delivered.
    fn sent(&mut self) {
        let b = match &mut self.backlog {
            Backlog::Memory(m) => m.pop(&self.w.stats),
            Backlog::Spool(o) => o.pop(&self.w.name, &self.w.stats),
        };
        if let Some(b) = b {
            self.recycle(b);
        }
    }

    /// The destination is away: a spooled backlog moves to the spool (and
    /// producers spool directly); a memory backlog just holds on.
    fn gone(&mut self) {
        if let Backlog::Spool(_) = self.backlog {
            self.spill();
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

    pub(crate) fn try_open(&mut self) {
        match self.w.transport.open() {
            Ok(()) => {
                self.proven = false;
                if self.opened_once {
                    self.w.stats.reconnects.inc();
                }
                self.opened_once = true;
                if let Backlog::Spool(o) = &self.backlog {
                    o.shared.lock().away = false;
                }
                log::debug!("{}: opened {}", self.w.name, self.w.transport.describe());
            }
            Err(e) => {
                self.w.stats.write_errors.inc();
                self.lost(&e);
                self.next_attempt = Instant::now() + self.backoff.next();
                // Producers may spool directly only once the queue's older
                // batches are in the spool too: spill does both under the lock.
                self.gone();
            }
        }
    }

    /// Notes a failure; warns only on the first one of an outage.
    fn lost(&mut self, e: &io::Error) {
        if self.outage.is_some() {
            log::debug!("{}: {}: {e}", self.w.name, self.w.transport.describe());
            return;
        }
        let doing = match self.backlog {
            Backlog::Memory(_) => "holding",
            Backlog::Spool(_) => "spooling",
        };
        log::warn!(
            "{}: {}: {e}; {doing} records and retrying",
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
        let Some(o) = self.outage.take() else {
            return;
        };
        let (name, desc) = (&self.w.name, self.w.transport.describe());
        let secs = o.since.elapsed().as_secs_f64();
        match self.backlog {
            Backlog::Memory(_) => log::info!(
                "{name}: {desc} is back after {secs:.1} s; {} records dropped meanwhile",
                self.w.stats.dropped_full.get() - o.dropped_at_start
            ),
            // A spooled delivery drops only when its spool is full, and
            // says so there.
            Backlog::Spool(_) => log::info!("{name}: {desc} is back after {secs:.1} s"),
        }
    }

    fn reopen(&mut self) {
        let away = match &self.backlog {
            Backlog::Memory(m) => !m.is_empty(),
            Backlog::Spool(_) => !self.w.transport.is_open(),
        };
        if away {
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

    /// Shutdown: writes what it can within `close_timeout`, then the backlog
    /// decides the fate of the rest (counted as lost, or kept in the spool
    /// for the next start) and the destination is closed.
    fn finish(&mut self) {
        let deadline = Instant::now() + self.w.close_timeout;
        if let Backlog::Memory(_) = self.backlog {
            self.closing_memory();
        }
        loop {
            self.deliver();
            let more = match self.backlog {
                Backlog::Memory(_) => self.more_memory(deadline),
                Backlog::Spool(_) => self.more_spool(deadline),
            };
            if !more {
                break;
            }
        }
        match self.backlog {
            Backlog::Memory(_) => self.left_memory(),
            Backlog::Spool(_) => self.left_spool(),
        }
        self.w.transport.close();
    }

    /// Returns a batch to the producers' pool (a spooled backlog keeps one
    /// to read the spool into).
    pub(crate) fn recycle(&mut self, mut b: Batch) {
        b.clear();
        if let Backlog::Spool(o) = &mut self.backlog {
            if o.spare.is_none() {
                o.spare = Some(b);
                return;
            }
        }
        // A full pool just frees the batch.
        let _ = self.w.recycle.try_send(b);
    }
}
