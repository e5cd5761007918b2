//! The overflow stage of a delivery that has a durable [`Spool`]: the state
//! producers share with the writer's spool backlog
//! ([`super::backlog_spool`]) and the producers' side of the one submit
//! path ([`Delivery`]'s), which diverts to the spool.
//!
//! Order is kept by three rules, all under one mutex:
//! 1. a producer sends to the memory queue only while the spool is empty
//!    and the destination is not known to be away;
//! 2. otherwise it appends to the spool (the queue was full, or the
//!    destination is away, or the spool already holds older batches);
//! 3. the writer reads the spool only when the queue is empty, as seen
//!    under that mutex (a producer may queue between an unlocked look and
//!    the read), and when the
//!    destination goes away it moves the batch in hand and the whole queue
//!    to the spool before producers may append again.
//!
//! So while the spool holds anything, the queue holds only older batches,
//! and nothing the writer has not delivered lives only in memory during an
//! outage: a SIGKILL then loses nothing.

use super::batch::Batch;
use super::queue::{Delivery, Refused};
use super::spool::Spool;
use super::stats::DeliveryStats;
use super::WhenFull;
use rulogd_plugin::{Counter, OutputError};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long a blocked producer sleeps between looks at a full spool.
const ROOM_WAIT: Duration = Duration::from_millis(100);

/// The spool and the outage flag, shared by producers and the writer.
pub(crate) struct SpoolShared {
    state: Mutex<SpoolState>,
    /// Signalled when the spool has room again.
    pub(crate) room: Condvar,
    /// Records appended to the spool.
    pub(crate) spooled: Counter,
    spool_bytes: Counter,
}

pub(crate) struct SpoolState {
    pub(crate) spool: Spool,
    /// The writer found the destination away: producers spool directly.
    pub(crate) away: bool,
    pub(crate) told_full: bool,
    /// The spool could not be written (disk full, I/O error): producers
    /// fall back to the queue and its policy until a write works again.
    pub(crate) broken: bool,
}

impl SpoolState {
    /// Warns once per episode that the spool is full, and what happens now.
    fn tell_full(&mut self, name: &str, doing: &str) {
        if !std::mem::replace(&mut self.told_full, true) {
            log::warn!("{name}: spool full ({} bytes), {doing}", self.spool.bytes());
        }
    }
}

impl SpoolShared {
    pub(crate) fn new(spool: Spool, stats: &DeliveryStats) -> Arc<Self> {
        let sh = SpoolShared {
            spooled: stats.set.counter("spooled"),
            spool_bytes: stats.set.gauge("spool_bytes"),
            state: Mutex::new(SpoolState {
                spool,
                away: false,
                told_full: false,
                broken: false,
            }),
            room: Condvar::new(),
        };
        let st = sh.lock();
        sh.gauges(&st, stats);
        drop(st);
        Arc::new(sh)
    }

    /// The shared state; a poisoned lock is taken as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Updates the spool's size gauges.
    pub(crate) fn gauges(&self, st: &SpoolState, stats: &DeliveryStats) {
        self.spool_bytes.set(st.spool.bytes());
        stats.pending.set(st.spool.records());
    }

    /// Wakes producers blocked on a full spool (shutdown).
    pub(crate) fn wake(&self) {
        self.room.notify_all();
    }
}

/// Queues or spools a non-empty batch of `d`, the submit path of a
/// delivery with a spool. On failure the batch comes back (cleared when its
/// records were dropped) with the reason.
pub(crate) fn submit(
    sh: &SpoolShared,
    d: &Delivery,
    mut batch: Batch,
) -> Result<(), (Batch, OutputError)> {
    let records = batch.records() as u64;
    let mut st = sh.lock();
    loop {
        if st.broken || (!st.away && st.spool.is_empty()) {
            match d.enqueue(batch, false) {
                Ok(()) => return Ok(()),
                Err(Refused::Full(b)) => batch = b,
                Err(Refused::Closed(mut b)) => {
                    b.clear();
                    return Err((b, OutputError::Closed));
                }
            }
        }
        let closing = d.closing.load(Ordering::Acquire);
        if !st.broken && (closing || st.spool.has_room(&batch)) {
            match st.spool.append(&batch, 0) {
                Ok(()) => {
                    sh.spooled.add(records);
                    sh.gauges(&st, &d.stats);
                    if st.told_full {
                        st.told_full = false;
                        log::info!("{}: spool accepts records again", d.name);
                    }
                    return Ok(());
                }
                Err(e) => {
                    log::error!(
                        "{}: cannot write the spool: {e}; using the memory queue only",
                        d.name
                    );
                    st.broken = true;
                    continue;
                }
            }
        }
        if st.broken || d.when_full == WhenFull::Drop || closing {
            if st.broken && d.when_full == WhenFull::Block && !closing {
                // No spool to fall back on: wait for the queue, as without one.
                drop(st);
                return match d.enqueue(batch, true) {
                    Ok(()) => Ok(()),
                    Err(Refused::Full(mut b) | Refused::Closed(mut b)) => {
                        b.clear();
                        Err((b, OutputError::Closed))
                    }
                };
            }
            d.stats.dropped_full.add(records);
            st.tell_full(&d.name, "dropping records");
            batch.clear();
            return Err((batch, OutputError::QueueFull));
        }
        st.tell_full(&d.name, "holding the input back");
        st = sh
            .room
            .wait_timeout(st, ROOM_WAIT)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Opens the spool of a delivery, for [`super::Delivery::start`].
pub(crate) fn open(
    cfg: &super::SpoolConfig,
    stats: &DeliveryStats,
) -> Result<Arc<SpoolShared>, super::DeliveryError> {
    let spool = Spool::open(cfg).map_err(|e| {
        super::DeliveryError::Config(format!(
            "cannot open the spool in {}: {e} (set spool_dir to a writable directory, \
             or spool_dir=\"\" to hold outages in memory only)",
            cfg.dir.display()
        ))
    })?;
    Ok(SpoolShared::new(spool, stats))
}
