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

/// Whether a value only grows (a counter) or goes up and down (a gauge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic: events since start.
    Counter,
    /// A level: a queue depth, a buffer size, flows in a table.
    Gauge,
}

/// Who a set of counters belongs to, read from its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The stack's input instance for a per-stack node (`log1/json1 (JSON)`).
    pub stack: Option<&'a str>,
    /// The plugin instance (`json1`).
    pub instance: &'a str,
    /// The plugin (`JSON`), when the name carries it.
    pub plugin: Option<&'a str>,
}

/// The named counters of one stage (an input, an output, a queue).
#[derive(Debug)]
pub struct StatSet {
    /// Stage name: `<instance> (<PLUGIN>)`, `<input>/<instance> (<PLUGIN>)`
    /// for a stack's node, `<instance> (<PLUGIN> <part>)` for a second set
    /// of one instance. The metrics endpoint reads its labels from it.
    pub name: String,
    entries: Mutex<Vec<(&'static str, Kind, Counter)>>,
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
        self.entry(label, Kind::Counter)
    }

    /// Returns the gauge called `label`, creating it at zero.
    pub fn gauge(&self, label: &'static str) -> Counter {
        self.entry(label, Kind::Gauge)
    }

    fn entry(&self, label: &'static str, kind: Kind) -> Counter {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = e.iter().find(|(l, _, _)| *l == label) {
            return c.clone();
        }
        let c = Counter::default();
        e.push((label, kind, c.clone()));
        c
    }

    /// A snapshot of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(l, _, c)| (*l, c.get()))
            .collect()
    }

    /// A snapshot of every counter with its kind.
    pub fn snapshot_kinds(&self) -> Vec<(&'static str, Kind, u64)> {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(l, k, c)| (*l, *k, c.get()))
            .collect()
    }

    /// The stack, instance and plugin the name gives.
    pub fn identity(&self) -> Identity<'_> {
        let (head, plugin) = match self
            .name
            .strip_suffix(')')
            .and_then(|n| n.rsplit_once(" ("))
        {
            Some((h, p)) => (h, Some(p.split(' ').next().unwrap_or(p))),
            None => (self.name.as_str(), None),
        };
        let (stack, instance) = match head.split_once('/') {
            Some((s, i)) => (Some(s), i),
            None => (None, head),
        };
        Identity {
            stack,
            instance,
            plugin,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_read_from_each_name_form() {
        let id = |n: &str| {
            let s = StatSet::new(n);
            let i = s.identity();
            (
                i.stack.map(String::from),
                i.instance.to_string(),
                i.plugin.map(String::from),
            )
        };
        assert_eq!(
            id("log1 (NFLOG)"),
            (None, "log1".into(), Some("NFLOG".into()))
        );
        assert_eq!(
            id("log1/json1 (JSON)"),
            (Some("log1".into()), "json1".into(), Some("JSON".into()))
        );
        assert_eq!(
            id("pg1 (PGSQL rows)"),
            (None, "pg1".into(), Some("PGSQL".into()))
        );
        assert_eq!(id("t"), (None, "t".into(), None));
    }

    #[test]
    fn a_gauge_keeps_its_kind_and_a_label_is_one_entry() {
        let s = StatSet::new("q (JSON)");
        s.gauge("queue_depth").set(5);
        s.counter("records").add(2);
        s.counter("records").add(1);
        assert_eq!(
            s.snapshot_kinds(),
            vec![
                ("queue_depth", Kind::Gauge, 5),
                ("records", Kind::Counter, 3)
            ]
        );
    }
}
