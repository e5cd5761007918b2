//! The memory-only backlog of a writer ([`super::writer`]): batches the
//! destination has not taken yet, held in memory while it is away, up to
//! `max_pending` bytes; beyond that the when-full policy applies (push back
//! on the input, or drop and count). Shutdown counts what is still held
//! after `close_timeout` as lost.

use super::batch::Batch;
use super::stats::DeliveryStats;
use super::writer::Run;
use super::WhenFull;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// How often a writer that may not take more data looks for a shutdown.
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Batches held in memory, oldest first.
pub(crate) struct Memory {
    pending: VecDeque<Batch>,
    /// First record of `pending.front()` not yet delivered.
    front_next: usize,
    pending_bytes: usize,
    pending_records: usize,
    when_full: WhenFull,
    max_pending: usize,
}

impl Memory {
    /// An empty backlog holding at most `max_pending` bytes while away.
    pub(crate) fn new(when_full: WhenFull, max_pending: usize) -> Self {
        Memory {
            pending: VecDeque::new(),
            front_next: 0,
            pending_bytes: 0,
            pending_records: 0,
            when_full,
            max_pending,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(crate) fn front(&self) -> Option<(&Batch, usize)> {
        self.pending.front().map(|b| (b, self.front_next))
    }

    /// Removes the delivered front batch.
    pub(crate) fn pop(&mut self, stats: &DeliveryStats) -> Option<Batch> {
        let b = self.pending.pop_front()?;
        self.pending_bytes -= b.bytes();
        self.pending_records -= b.records();
        self.front_next = 0;
        self.update_pending(stats);
        Some(b)
    }

    /// A send failed at record `next` of the front batch.
    pub(crate) fn resend_from(&mut self, next: usize, stats: &DeliveryStats) {
        self.front_next = next;
        self.update_pending(stats);
    }

    fn update_pending(&self, stats: &DeliveryStats) {
        let n = self.pending_records.saturating_sub(self.front_next);
        stats.pending.set(n as u64);
    }
}

impl Run {
    /// Waits for the next message: without a backlog for as long as it
    /// takes; while away until the next attempt, and not at all while the
    /// backlog is full under the block policy (the queue then fills and
    /// pushes back on the input), though shutdown is still looked for.
    pub(crate) fn take_memory(&mut self) -> bool {
        let (empty, held) = {
            let m = variant!(self, Memory);
            (
                m.is_empty(),
                m.when_full == WhenFull::Block && m.pending_bytes >= m.max_pending,
            )
        };
        let msg = if empty {
            match self.w.rx.recv() {
                Ok(m) => m,
                Err(_) => return false,
            }
        } else {
            let now = Instant::now();
            if now >= self.next_attempt {
                return true;
            }
            let wait = self.next_attempt - now;
            if held && !self.w.closing.load(Ordering::Acquire) {
                std::thread::sleep(wait.min(IDLE_POLL));
                return true;
            }
            match self.w.rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        };
        self.handle(msg)
    }

    /// Adds a batch to the backlog, or drops it while away with the
    /// backlog full.
    pub(crate) fn accept_memory(&mut self, b: Batch) {
        let closing = self.w.closing.load(Ordering::Acquire);
        let m = variant!(self, Memory);
        // While away the writer holds at least one batch even with
        // max_pending = 0: holding something is what drives reconnecting.
        let away = !m.is_empty();
        if away && m.pending_bytes + b.bytes() > m.max_pending && !closing {
            let held = m.pending_bytes;
            self.w.stats.dropped_full.add(b.records() as u64);
            if let Some(o) = self.outage.as_mut() {
                if !o.told_dropping {
                    o.told_dropping = true;
                    log::warn!(
                        "{}: {held} bytes held for {}; dropping records until it is back",
                        self.w.name,
                        self.w.transport.describe()
                    );
                }
            }
            return self.recycle(b);
        }
        m.pending_bytes += b.bytes();
        m.pending_records += b.records();
        m.pending.push_back(b);
        m.update_pending(&self.w.stats);
    }

    /// Shutdown begins: batches sent after Close (or by a sender blocked on
    /// a full queue) were accepted, so they are written too, and no send may
    /// block past the deadline.
    pub(crate) fn closing_memory(&mut self) {
        while let Ok(m) = self.w.rx.try_recv() {
            if let super::writer::Msg::Data(b) = m {
                self.accept_memory(b);
            }
        }
        self.w.transport.limit_send_time(self.w.close_timeout);
    }

    /// Shutdown: whether to try once more, reconnecting until the deadline.
    pub(crate) fn more_memory(&mut self, deadline: Instant) -> bool {
        if variant!(self, Memory).is_empty() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        if now < self.next_attempt {
            std::thread::sleep((self.next_attempt.min(deadline)) - now);
            return true;
        }
        self.try_open();
        true
    }

    /// Shutdown: what the destination did not take by the deadline is lost.
    pub(crate) fn left_memory(&mut self) {
        let m = variant!(self, Memory);
        if !m.is_empty() {
            let n = m.pending_records - m.front_next;
            m.pending.clear();
            m.front_next = 0;
            self.w.stats.dropped_shutdown.add(n as u64);
            log::error!(
                "{}: {} still unreachable at shutdown; {n} records lost",
                self.w.name,
                self.w.transport.describe()
            );
        }
        let m = variant!(self, Memory);
        m.pending_bytes = 0;
        m.pending_records = 0;
        m.update_pending(&self.w.stats);
    }
}
