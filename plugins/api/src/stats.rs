//! Counters: cheap relaxed atomics written on the hot path, read by the core
//! for SIGUSR1 and the exit summary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One counter.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Sets the value (gauges such as a queue depth or buffer size).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The named counters of one stage (an input, an output, a queue).
#[derive(Debug)]
pub struct StatSet {
    /// Stage name, e.g. `log1 (NFLOG)`.
    pub name: String,
    entries: Mutex<Vec<(&'static str, Counter)>>,
}

impl StatSet {
    /// An empty set.
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(StatSet {
            name: name.into(),
            entries: Mutex::new(Vec::new()),
        })
    }

    /// Returns the counter called `label`, creating it at zero.
    pub fn counter(&self, label: &'static str) -> Counter {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = e.iter().find(|(l, _)| *l == label) {
            return c.clone();
        }
        let c = Counter::default();
        e.push((label, c.clone()));
        c
    }

    /// A snapshot of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(l, c)| (*l, c.get()))
            .collect()
    }

    /// `name: a=1 b=2` for the log.
    pub fn line(&self) -> String {
        let mut s = format!("{}:", self.name);
        for (l, v) in self.snapshot() {
            s.push_str(&format!(" {l}={v}"));
        }
        s
    }
}
