//! The producers' end of a delivery that has a durable [`Spool`], and the
//! state it shares with the writer thread ([`super::spool_writer`]).
//!
//! Order is kept by three rules, all under one mutex:
//! 1. a producer sends to the memory queue only while the spool is empty
//!    and the destination is not known to be away;
//! 2. otherwise it appends to the spool (the queue was full, or the
//!    destination is away, or the spool already holds older batches);
//! 3. the writer reads the spool only when the queue is empty, and when the
//!    destination goes away it moves the batch in hand and the whole queue
//!    to the spool before producers may append again.
//!
//! So while the spool holds anything, the queue holds only older batches,
//! and nothing the writer has not delivered lives only in memory during an
//! outage: a SIGKILL then loses nothing.

use super::batch::Batch;
use super::spool::Spool;
use super::stats::DeliveryStats;
use super::writer::Msg;
use super::WhenFull;
use rulogd_plugin::{Counter, OutputError};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
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

/// What a producer's `submit` needs from its delivery.
pub(crate) struct SubmitCtx<'a> {
    pub(crate) name: &'a str,
    pub(crate) tx: &'a SyncSender<Msg>,
    pub(crate) when_full: WhenFull,
    pub(crate) stats: &'a DeliveryStats,
    pub(crate) depth: &'a AtomicI64,
    pub(crate) closing: &'a AtomicBool,
}

/// Queues or spools a non-empty batch. On failure the batch comes back
/// (cleared when its records were dropped) with the reason.
pub(crate) fn submit(
    sh: &SpoolShared,
    c: &SubmitCtx,
    mut batch: Batch,
) -> Result<(), (Batch, OutputError)> {
    let records = batch.records() as u64;
    let mut st = sh.lock();
    loop {
        if st.broken || (!st.away && st.spool.is_empty()) {
            c.depth.fetch_add(1, Ordering::Relaxed);
            match c.tx.try_send(Msg::Data(batch)) {
                Ok(()) => {
                    let d = c.depth.load(Ordering::Relaxed);
                    c.stats.queue_depth.set(d.max(0) as u64);
                    return Ok(());
                }
                Err(e) => {
                    c.depth.fetch_sub(1, Ordering::Relaxed);
                    let (m, gone) = match e {
                        TrySendError::Full(m) => (m, false),
                        TrySendError::Disconnected(m) => (m, true),
                    };
                    batch = match m {
                        Msg::Data(b) => b,
                        _ => Batch::default(),
                    };
                    if gone {
                        batch.clear();
                        return Err((batch, OutputError::Closed));
                    }
                }
            }
        }
        let closing = c.closing.load(Ordering::Acquire);
        if !st.broken && (closing || st.spool.has_room(&batch)) {
            match st.spool.append(&batch, 0) {
                Ok(()) => {
                    sh.spooled.add(records);
                    sh.gauges(&st, c.stats);
                    if st.told_full {
                        st.told_full = false;
                        log::info!("{}: spool accepts records again", c.name);
                    }
                    return Ok(());
                }
                Err(e) => {
                    log::error!(
                        "{}: cannot write the spool: {e}; using the memory queue only",
                        c.name
                    );
                    st.broken = true;
                    continue;
                }
            }
        }
        if st.broken || c.when_full == WhenFull::Drop || closing {
            if st.broken && c.when_full == WhenFull::Block && !closing {
                // No spool to fall back on: wait for the queue, as without one.
                drop(st);
                c.depth.fetch_add(1, Ordering::Relaxed);
                return match c.tx.send(Msg::Data(batch)) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        c.depth.fetch_sub(1, Ordering::Relaxed);
                        let mut b = match e.0 {
                            Msg::Data(b) => b,
                            _ => Batch::default(),
                        };
                        b.clear();
                        Err((b, OutputError::Closed))
                    }
                };
            }
            c.stats.dropped_full.add(records);
            if !st.told_full {
                st.told_full = true;
                log::warn!(
                    "{}: spool full ({} bytes), dropping records",
                    c.name,
                    st.spool.bytes()
                );
            }
            batch.clear();
            return Err((batch, OutputError::QueueFull));
        }
        if !st.told_full {
            st.told_full = true;
            log::warn!(
                "{}: spool full ({} bytes), holding the input back",
                c.name,
                st.spool.bytes()
            );
        }
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
