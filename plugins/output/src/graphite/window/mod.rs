//! GRAPHITE's resend window: the plaintext protocol has no acknowledgement,
//! so lines the kernel accepted just before carbon went down can be lost in
//! carbon's receive buffer. The window keeps what was sent recently and
//! replays it on every new connection, before anything new; carbon stores
//! one value per metric and timestamp, so a replayed datapoint overwrites
//! itself.
//!
//! A datapoint leaves the window when it is `keep` old and the peer's kernel
//! has ACKed it (or the kernel cannot tell), when it was ACKed `acked_keep`
//! ago (carbon reads its socket promptly, so by then it has left the receive
//! buffer), or when `max_bytes` pushes it out: only the last is possible loss.

use rulogd_delivery::{Batch, DeliveryStats, SendError, StreamTransport, Transport};
use rulogd_plugin::{Counter, StatSet};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Evictions are logged at most this often, with the count since the last.
const EVICT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The window's bounds.
#[derive(Clone, Copy, Debug)]
pub struct WindowConfig {
    /// How long a sent datapoint is kept (`resend_window`).
    pub keep: Duration,
    /// Bytes kept at most (`resend_max`).
    pub max_bytes: usize,
    /// How long a datapoint is kept once the peer ACKed it (`resend_acked`);
    /// `None` ignores ACKs.
    pub acked_keep: Option<Duration>,
}

/// One record (a GRAPHITE record is two lines) as it was last sent.
#[derive(Debug)]
struct Entry {
    len: usize,
    lines: u64,
    sent: Instant,
    /// Byte offset on the current connection just past this record.
    end: u64,
    /// When the kernel was first seen to hold none of its bytes unACKed.
    acked: Option<Instant>,
}

/// The datapoints sent in the recent past, oldest first.
#[derive(Debug)]
pub struct ResendWindow {
    cfg: WindowConfig,
    data: VecDeque<u8>,
    entries: VecDeque<Entry>,
    lines: u64,
    /// Bytes written on the current connection, the window's replay included.
    written: u64,
    /// How many entries at the front are ACKed (ACKs come in order).
    acked: usize,
    /// Whether the last look at the kernel's send queue answered.
    ack_known: bool,
}

impl ResendWindow {
    /// An empty window.
    pub fn new(cfg: WindowConfig) -> Self {
        ResendWindow {
            cfg,
            data: VecDeque::new(),
            entries: VecDeque::new(),
            lines: 0,
            written: 0,
            acked: 0,
            ack_known: false,
        }
    }

    /// Datapoints (lines) held.
    pub fn held_lines(&self) -> u64 {
        self.lines
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.data.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The held bytes in order, to write on a new connection (two slices
    /// because the store is a ring).
    pub fn bytes(&self) -> (&[u8], &[u8]) {
        self.data.as_slices()
    }

    /// A new connection: nothing written on it yet.
    pub fn connected(&mut self) {
        self.written = 0;
    }

    /// Everything held was written again on the new connection at `now`:
    /// each datapoint's time and ACK start afresh there.
    pub fn replayed(&mut self, now: Instant) {
        for e in self.entries.iter_mut() {
            self.written += e.len as u64;
            e.end = self.written;
            e.sent = now;
            e.acked = None;
        }
        self.acked = 0;
    }

    /// Holds one record just written on the current connection; returns the
    /// datapoints pushed out by `max_bytes` to make room (the record itself
    /// when it alone is larger).
    pub fn push(&mut self, rec: &[u8], now: Instant) -> u64 {
        self.written += rec.len() as u64;
        let lines = rec.iter().filter(|&&b| b == b'\n').count() as u64;
        if rec.len() > self.cfg.max_bytes {
            return lines;
        }
        let mut evicted = 0;
        while self.data.len() + rec.len() > self.cfg.max_bytes {
            evicted += self.pop();
        }
        self.data.extend(rec);
        self.lines += lines;
        self.entries.push_back(Entry {
            len: rec.len(),
            lines,
            sent: now,
            end: self.written,
            acked: None,
        });
        evicted
    }

    /// Takes the kernel's count of bytes still unACKed on the current
    /// connection (`None`: it cannot tell).
    pub fn observe(&mut self, unacked: Option<usize>, now: Instant) {
        let Some(unacked) = unacked else {
            self.ack_known = false;
            return;
        };
        self.ack_known = true;
        let upto = self.written.saturating_sub(unacked as u64);
        while let Some(e) = self.entries.get_mut(self.acked) {
            if e.end > upto {
                break;
            }
            e.acked = Some(now);
            self.acked += 1;
        }
    }

    /// Drops the datapoints that no longer need a resend.
    pub fn expire(&mut self, now: Instant) {
        while let Some(e) = self.entries.front() {
            let done = match e.acked {
                Some(at) if self.cfg.acked_keep.is_some_and(|k| now - at >= k) => true,
                // Still unACKed after `keep`: carbon is stalled, and the
                // connection that will fail is the one to replay it on.
                None if self.ack_known => false,
                _ => now.saturating_duration_since(e.sent) >= self.cfg.keep,
            };
            if !done {
                break;
            }
            self.pop();
        }
    }

    /// Removes the oldest entry; returns its datapoints.
    fn pop(&mut self) -> u64 {
        let Some(e) = self.entries.pop_front() else {
            return 0;
        };
        self.data.drain(..e.len);
        self.lines -= e.lines;
        self.acked = self.acked.saturating_sub(1);
        e.lines
    }
}

/// The window's counters, in their own set `"<id> (GRAPHITE resend)"`.
#[derive(Clone, Debug)]
pub struct WindowStats {
    /// The registered set.
    pub set: Arc<StatSet>,
    /// Datapoints written again after a reconnect.
    pub resent: Counter,
    /// Gauge: datapoints in the window.
    pub held: Counter,
    /// Datapoints pushed out by `resend_max` (possible loss).
    pub evicted: Counter,
}

impl WindowStats {
    /// The counters of instance `id`.
    pub fn new(id: &str) -> Self {
        let set = StatSet::new(format!("{id} (GRAPHITE resend)"));
        WindowStats {
            resent: set.counter("resent"),
            held: set.gauge("resend_held"),
            evicted: set.counter("resend_evicted"),
            set,
        }
    }
}

/// A TCP client to carbon that replays its window on each new connection.
pub struct ResendTransport {
    inner: StreamTransport,
    window: ResendWindow,
    stats: WindowStats,
    name: String,
    evicted_unlogged: u64,
    evict_logged: Option<Instant>,
}

impl ResendTransport {
    /// Wraps `inner` for instance `name`.
    pub fn new(inner: StreamTransport, cfg: WindowConfig, stats: WindowStats, name: &str) -> Self {
        ResendTransport {
            inner,
            window: ResendWindow::new(cfg),
            stats,
            name: name.to_string(),
            evicted_unlogged: 0,
            evict_logged: None,
        }
    }

    fn evicted(&mut self, n: u64, now: Instant) {
        self.stats.evicted.add(n);
        self.evicted_unlogged += n;
        if self.evict_logged.is_some_and(|t| now - t < EVICT_LOG_EVERY) {
            return;
        }
        log::warn!(
            "{}: resend window: {} datapoints pushed out by resend_max={} before carbon \
             could be known to have them; they are lost if carbon loses its connection now",
            self.name,
            self.evicted_unlogged,
            self.window.cfg.max_bytes
        );
        self.evicted_unlogged = 0;
        self.evict_logged = Some(now);
    }

    fn replay(&mut self) -> io::Result<()> {
        self.window.connected();
        if self.window.is_empty() {
            return Ok(());
        }
        let (a, b) = self.window.bytes();
        let res = self
            .inner
            .write_raw(a)
            .and_then(|()| self.inner.write_raw(b));
        if let Err(e) = res {
            self.inner.close();
            return Err(e);
        }
        let (n, bytes) = (self.window.held_lines(), self.window.held_bytes());
        self.stats.resent.add(n);
        self.window.replayed(Instant::now());
        log::info!(
            "{}: re-sent {n} datapoints ({bytes} bytes) of the resend window to {}",
            self.name,
            self.inner.describe()
        );
        Ok(())
    }
}

impl Transport for ResendTransport {
    fn describe(&self) -> &str {
        self.inner.describe()
    }

    fn is_open(&self) -> bool {
        self.inner.is_open()
    }

    fn open(&mut self) -> io::Result<()> {
        self.inner.open()?;
        self.replay()
    }

    fn send(&mut self, batch: &Batch, from: usize, st: &DeliveryStats) -> Result<(), SendError> {
        let now = Instant::now();
        self.window.observe(self.inner.unacked_bytes(), now);
        self.window.expire(now);
        let res = self.inner.send(batch, from, st);
        let upto = match &res {
            Ok(()) => batch.records(),
            Err(e) => e.next,
        };
        let mut evicted = 0;
        for i in from..upto {
            evicted += self.window.push(batch.record(i), now);
        }
        if evicted > 0 {
            self.evicted(evicted, now);
        }
        self.stats.held.set(self.window.held_lines());
        res
    }

    fn close(&mut self) {
        self.inner.close();
    }

    fn limit_send_time(&mut self, limit: Duration) {
        self.inner.limit_send_time(limit);
    }
}

#[cfg(test)]
mod tests;
