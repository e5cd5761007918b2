//! The producer side of a delivery: the bounded queue, the when-full policy,
//! batch recycling, and the [`Service`] the core reopens and stops.

use super::backlog_memory::Memory;
use super::backlog_spool::Overflow;
use super::batch::Batch;
use super::overflow::{self, SpoolShared};
use super::stats::DeliveryStats;
use super::transport::Transport;
use super::writer::{Backlog, Msg, Writer, BACKOFF_MAX, BACKOFF_MIN};
use super::{DeliveryConfig, DeliveryError, WhenFull};
use rulogd_plugin::{BuildCtx, BuildError, OutputError, Service};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long `reopen` waits for room in a full queue before it asks the writer
/// out of band (the SIGHUP handler must not hang on a stalled destination).
const REOPEN_WAIT: Duration = Duration::from_secs(1);

/// One writer thread and its queue, shared by every stack that names the
/// same output instance.
pub struct Delivery {
    pub(crate) name: String,
    tx: SyncSender<Msg>,
    recycled: Mutex<Receiver<Batch>>,
    pub(crate) when_full: WhenFull,
    batch_bytes: usize,
    pub(crate) stats: DeliveryStats,
    depth: Arc<AtomicI64>,
    pub(crate) closing: Arc<AtomicBool>,
    dropping: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The durable overflow stage behind the queue, if configured.
    spool: Option<Arc<SpoolShared>>,
}

/// Why the queue did not take a batch; the batch comes back.
pub(crate) enum Refused {
    /// The queue is full (only when not waiting for room).
    Full(Batch),
    /// The writer is gone.
    Closed(Batch),
}

impl Delivery {
    /// Starts the writer thread for `transport` (opened already, or opened by
    /// the thread with backoff).
    pub fn start(
        cfg: &DeliveryConfig,
        transport: Box<dyn Transport>,
    ) -> Result<Arc<Self>, DeliveryError> {
        if cfg.queue_size == 0 {
            return Err(DeliveryError::Config(
                "queue size must be at least 1".into(),
            ));
        }
        let (tx, rx) = mpsc::sync_channel(cfg.queue_size);
        // Enough room for every batch that can be in flight: the queue, the
        // writer's and one per producer; beyond that batches are freed.
        let (recycle_tx, recycle_rx) = mpsc::sync_channel(cfg.queue_size + 8);
        let stats = DeliveryStats::new(cfg.stats_name.clone());
        let depth = Arc::new(AtomicI64::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let spool = match &cfg.spool {
            Some(sc) => Some(overflow::open(sc, &stats)?),
            None => None,
        };
        // One writer loop; only its backlog differs: memory only, or with
        // the spool as an overflow stage.
        let (backlog, backoff_max) = match (&spool, &cfg.spool) {
            (Some(sh), Some(sc)) => (
                Backlog::Spool(Overflow::new(sh.clone())),
                sc.retry_max.max(BACKOFF_MIN),
            ),
            _ => (
                Backlog::Memory(Memory::new(cfg.when_full, cfg.max_pending)),
                BACKOFF_MAX,
            ),
        };
        let writer = Writer {
            name: cfg.name.clone(),
            rx,
            recycle: recycle_tx,
            transport,
            stats: stats.clone(),
            depth: depth.clone(),
            closing: closing.clone(),
            close_timeout: cfg.close_timeout,
            backoff_max,
        };
        let thread = std::thread::Builder::new()
            .name(thread_name(&cfg.name))
            .spawn(move || writer.run(backlog))
            .map_err(DeliveryError::Spawn)?;
        Ok(Arc::new(Delivery {
            name: cfg.name.clone(),
            tx,
            recycled: Mutex::new(recycle_rx),
            when_full: cfg.when_full,
            batch_bytes: cfg.batch_bytes.max(1),
            stats,
            depth,
            closing,
            dropping: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
            spool,
        }))
    }

    /// Returns the delivery stored under `"<plugin>:<instance>"`, starting it
    /// (and registering its service and counters) if this is the first
    /// instance with that id. `transport` is called only then.
    pub fn shared(
        ctx: &BuildCtx,
        plugin: &str,
        cfg: &DeliveryConfig,
        transport: impl FnOnce() -> Result<Box<dyn Transport>, BuildError>,
    ) -> Result<Arc<Self>, BuildError> {
        let key = format!("{plugin}:{}", ctx.instance);
        ctx.shared.get_or_try_insert(&key, || {
            let d = Delivery::start(cfg, transport()?)?;
            ctx.shared.add_service(d.clone());
            ctx.shared.add_stats(d.stats.set.clone());
            Ok(d)
        })
    }

    /// A producer with its own batch, handing over at the configured size
    /// (after every record when `sync`).
    pub fn producer(self: &Arc<Self>, sync: bool) -> Producer {
        Producer {
            batch: self.fresh_batch(),
            delivery: self.clone(),
            sync,
        }
    }

    /// The counters.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// A cleared batch: a recycled one when available, else a new one.
    fn fresh_batch(&self) -> Batch {
        let recycled = self.recycled.lock().ok().and_then(|rx| rx.try_recv().ok());
        // Headroom past the hand-over size, so the last line rarely regrows it.
        recycled.unwrap_or_else(|| Batch::with_capacity(self.batch_bytes + self.batch_bytes / 4))
    }

    /// Queues a non-empty batch, the one submit path: through the overflow
    /// stage when there is one, else straight to the queue under the
    /// when-full policy. On failure the batch comes back (cleared when its
    /// records were dropped) with the reason.
    fn submit(&self, batch: Batch) -> Result<(), (Batch, OutputError)> {
        if let Some(sh) = &self.spool {
            return overflow::submit(sh, self, batch);
        }
        let records = batch.records() as u64;
        match self.enqueue(batch, self.when_full == WhenFull::Block) {
            Ok(()) => {
                if self.dropping.swap(false, Ordering::Relaxed) {
                    log::info!("{}: queue accepts records again", self.name);
                }
                Ok(())
            }
            Err(Refused::Full(mut b)) => {
                b.clear();
                self.stats.dropped_full.add(records);
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    log::warn!("{}: queue full, dropping records", self.name);
                }
                Err((b, OutputError::QueueFull))
            }
            Err(Refused::Closed(mut b)) => {
                b.clear();
                Err((b, OutputError::Closed))
            }
        }
    }

    /// Puts a batch on the queue, waiting for room or not, and keeps the
    /// queue-depth gauge.
    pub(crate) fn enqueue(&self, batch: Batch, wait: bool) -> Result<(), Refused> {
        let d = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        // Only data is sent here, so the batch always comes back.
        let data = |m: Msg| match m {
            Msg::Data(b) => b,
            _ => Batch::default(),
        };
        let res = if wait {
            self.tx
                .send(Msg::Data(batch))
                .map_err(|e| Refused::Closed(data(e.0)))
        } else {
            self.tx.try_send(Msg::Data(batch)).map_err(|e| match e {
                TrySendError::Full(m) => Refused::Full(data(m)),
                TrySendError::Disconnected(m) => Refused::Closed(data(m)),
            })
        };
        match res {
            Ok(()) => {
                self.stats.queue_depth.set(d.max(0) as u64);
                Ok(())
            }
            Err(r) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(r)
            }
        }
    }
}

/// Linux keeps 15 bytes of a thread name.
fn thread_name(id: &str) -> String {
    let mut n = format!("out:{id}");
    let mut cut = n.len().min(15);
    while !n.is_char_boundary(cut) {
        cut -= 1;
    }
    n.truncate(cut);
    n
}

impl Service for Delivery {
    fn name(&self) -> &str {
        &self.name
    }

    fn reopen(&self) {
        // In band, so that every record queued before goes to the old file or
        // connection and every later one to the new.
        let deadline = Instant::now() + REOPEN_WAIT;
        let mut msg = Msg::Reopen;
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    if Instant::now() >= deadline {
                        log::warn!("{}: queue full, reopen skipped", self.name);
                        return;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    fn shutdown(&self) {
        let Some(handle) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        // Lets a writer that holds back (block policy, destination away) take
        // the rest of the queue, so this send cannot wait forever.
        self.closing.store(true, Ordering::Release);
        if let Some(sh) = &self.spool {
            sh.wake();
        }
        let _ = self.tx.send(Msg::Close);
        if handle.join().is_err() {
            log::error!("{}: writer thread panicked", self.name);
        }
    }
}

/// The per-instance side of a delivery: renders go into its batch, which is
/// handed to the writer when large enough, on `flush`, or per record (`sync`).
pub struct Producer {
    delivery: Arc<Delivery>,
    batch: Batch,
    sync: bool,
}

impl Producer {
    /// The batch to render the next record into (then call [`commit`](Self::commit)).
    #[inline]
    pub fn batch(&mut self) -> &mut Batch {
        &mut self.batch
    }

    /// Ends the record being rendered and hands the batch over when due.
    #[inline]
    pub fn commit(&mut self) -> Result<(), OutputError> {
        self.batch.commit();
        if self.sync || self.batch.bytes() >= self.delivery.batch_bytes {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Hands over whatever is committed.
    pub fn flush(&mut self) -> Result<(), OutputError> {
        self.batch.rollback();
        if self.batch.is_empty() {
            return Ok(());
        }
        let full = std::mem::take(&mut self.batch);
        match self.delivery.submit(full) {
            Ok(()) => {
                self.batch = self.delivery.fresh_batch();
                Ok(())
            }
            Err((b, e)) => {
                self.batch = b;
                Err(e)
            }
        }
    }

    /// The shared delivery.
    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
