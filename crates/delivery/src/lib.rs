//! Delivery: the writer-thread machinery every output that does I/O shares.
//!
//! An output renders records on the input thread into a [`Batch`] owned by its
//! [`Producer`]; full batches (or every record with `sync`, or everything on
//! `flush`) go through a bounded queue to one writer thread per output
//! instance id, which owns the [`Transport`] (file, TCP, UDP, unix socket, or
//! later a database) and writes them in order. Batches come back through a
//! recycling channel, so the steady state allocates nothing.
//!
//! When the queue is full the [`WhenFull`] policy either blocks the input
//! (back-pressure) or drops and counts. When the destination is away the
//! writer holds batches in memory (up to `max_pending` bytes), reconnects with
//! backoff and resends from the start of the record a failure interrupted, so
//! a stream never carries a torn line from us twice or half.
//!
//! Reuse from another output (in a builder, [`Delivery::shared`] does the
//! start once per instance id and registers the service and counters):
//! ```
//! use rulogd_delivery::{Delivery, DeliveryConfig, FileTransport, WhenFull};
//! use rulogd_plugin::Service;
//!
//! let cfg = DeliveryConfig::new("graphite1", "GRAPHITE", WhenFull::Drop);
//! let transport = FileTransport::opened("/dev/null").expect("open");
//! let delivery = Delivery::start(&cfg, Box::new(transport)).expect("start");
//! let mut producer = delivery.producer(false);
//! producer.batch().buf().extend_from_slice(b"a.b.c 1 1700000000\n");
//! producer.commit().expect("queued");
//! producer.flush().expect("handed over");
//! delivery.shutdown();
//! assert_eq!(delivery.stats().records.get(), 1);
//! ```

/// The backlog variant of a writer run, borrowing only that field so the
/// run's other fields stay usable beside it.
macro_rules! variant {
    ($run:expr, $v:ident) => {
        match &mut $run.backlog {
            $crate::writer::Backlog::$v(x) => x,
            _ => unreachable!(concat!(stringify!($v), " backlog expected")),
        }
    };
}

mod backlog_memory;
mod backlog_spool;
mod batch;
mod net;
mod overflow;
mod queue;
mod spool;
mod spool_frame;
mod spool_options;
mod stats;
mod transport;
mod writer;

pub use batch::Batch;
pub use net::{resolve, StreamTransport, UdpTransport};
pub use queue::{Delivery, Producer};
pub use spool::{Spool, SpoolConfig};
pub use spool_options::{spool_config, SPOOL_DIR, SPOOL_RETRY_MAX, SPOOL_SIZE};
pub use stats::DeliveryStats;
pub use transport::{prepare_reopen, write_records, FileTransport, OpenHook, SendError, Transport};

use rulogd_plugin::{BuildError, Options};
use std::time::Duration;

/// Hand over a batch once it holds this many bytes.
pub const DEFAULT_BATCH_BYTES: usize = 64 * 1024;
/// Queue length, in batches.
pub const DEFAULT_QUEUE_SIZE: usize = 64;
/// Bytes held in memory while the destination is away.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
/// How long shutdown waits for an absent destination.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a producer does when the queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: back-pressure to the input (default for files).
    Block,
    /// Drop the batch and count its records (default for network peers).
    Drop,
}

impl WhenFull {
    /// Parses `block` or `drop` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("block") {
            Some(WhenFull::Block)
        } else if s.eq_ignore_ascii_case("drop") {
            Some(WhenFull::Drop)
        } else {
            None
        }
    }

    /// The `when_full` option of `o`; the error names the option and the
    /// words it takes.
    pub fn option(o: &Options) -> Result<Self, BuildError> {
        let wf = o.str("when_full");
        Self::parse(wf).ok_or_else(|| {
            BuildError::option(
                "when_full",
                format!("unknown policy `{wf}`; valid: block, drop"),
            )
        })
    }
}

/// How a delivery queues and holds data.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Instance id, for messages and the thread name.
    pub name: String,
    /// Name of the counter set, `"<id> (<PLUGIN>)"`.
    pub stats_name: String,
    /// Queue capacity in batches (at least 1).
    pub queue_size: usize,
    /// Full-queue policy.
    pub when_full: WhenFull,
    /// Bytes held while the destination is away; beyond it the policy applies.
    pub max_pending: usize,
    /// Batch size at which a producer hands over.
    pub batch_bytes: usize,
    /// How long shutdown keeps retrying an absent destination.
    pub close_timeout: Duration,
    /// A durable spool behind the memory queue (see [`Spool`]); `None`
    /// holds an outage in memory up to `max_pending`.
    pub spool: Option<SpoolConfig>,
}

impl DeliveryConfig {
    /// Defaults for instance `id` of `plugin`.
    pub fn new(id: &str, plugin: &str, when_full: WhenFull) -> Self {
        DeliveryConfig {
            name: id.to_string(),
            stats_name: format!("{id} ({plugin})"),
            queue_size: DEFAULT_QUEUE_SIZE,
            when_full,
            max_pending: DEFAULT_MAX_PENDING,
            batch_bytes: DEFAULT_BATCH_BYTES,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            spool: None,
        }
    }
}

/// Why a delivery could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The writer thread could not be spawned.
    #[error("cannot start writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
}

impl From<DeliveryError> for BuildError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::Spawn(source) => BuildError::io("writer thread", source),
            DeliveryError::Config(m) => BuildError::Other(m),
        }
    }
}

#[cfg(test)]
mod tests;
