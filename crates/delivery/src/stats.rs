//! The counters of one delivery queue and its writer thread.

use rulogd_plugin::{Counter, StatSet};
use std::sync::Arc;

/// Handles on the counters of one delivery, registered once at build time.
#[derive(Clone, Debug)]
pub struct DeliveryStats {
    /// The registered set (`"<id> (<PLUGIN>)"`).
    pub set: Arc<StatSet>,
    /// Records written to the destination.
    pub records: Counter,
    /// Bytes written to the destination.
    pub bytes: Counter,
    /// Batches written completely.
    pub batches: Counter,
    /// Records dropped because the queue or the pending store was full.
    pub dropped_full: Counter,
    /// Records given up on at shutdown because the destination stayed away.
    pub dropped_shutdown: Counter,
    /// Failed writes, connects and reopens.
    pub write_errors: Counter,
    /// Successful reconnects (or file reopens) after a failure or SIGHUP.
    pub reconnects: Counter,
    /// Gauge: batches waiting in the queue.
    pub queue_depth: Counter,
    /// Gauge: records held by the writer while the destination is away.
    pub pending: Counter,
}

impl DeliveryStats {
    /// Creates the counters in a new set called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let set = StatSet::new(name);
        DeliveryStats {
            records: set.counter("records"),
            bytes: set.counter("bytes"),
            batches: set.counter("batches"),
            dropped_full: set.counter("dropped_full"),
            dropped_shutdown: set.counter("dropped_shutdown"),
            write_errors: set.counter("write_errors"),
            reconnects: set.counter("reconnects"),
            queue_depth: set.gauge("queue_depth"),
            pending: set.gauge("pending"),
            set,
        }
    }
}
