//! Running built stacks: one thread per input, driving its tree inline.
//!
//! The input thread only reads the kernel socket, decodes, filters and renders;
//! outputs hand rendered batches to their own writer threads, so the socket is
//! never left unread while a disk or a peer is slow.

use crate::stack::{Instance, Node, Tree};
use rulogd_plugin::{
    Counter, Emitter, Input, OutputError, ReadStatus, Record, SharedRegistry, Signal, StatSet,
    Verdict,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Flags the main thread raises for the input threads.
#[derive(Default)]
pub struct Control {
    /// Stop reading, flush, exit.
    pub stop: AtomicBool,
    /// Bumped on every SIGUSR2.
    pub usr2: AtomicU64,
    /// Input threads started.
    pub inputs: AtomicU64,
    /// Inputs that said they have nothing more (the end of a capture file).
    pub finished: AtomicU64,
}

/// Per-node counters, kept as plain integers on the hot path and published
/// to shared atomics when the input flushes.
struct NodeStats {
    seen: u64,
    dropped: u64,
    errors: u64,
    c_seen: Counter,
    c_dropped: Counter,
    c_errors: Counter,
}

struct RtNode {
    base: u32,
    len: u32,
    inst: Instance,
    children: Vec<RtNode>,
    stats: NodeStats,
    last_error_log: Option<Instant>,
    /// For a filter that emits records of its own: the record they are
    /// built in, allocated once with the stack's slot count.
    scratch: Option<Record>,
}

fn convert(
    nodes: Vec<Node>,
    input_id: &str,
    shared: &SharedRegistry,
    nslots: usize,
) -> Vec<RtNode> {
    nodes
        .into_iter()
        .filter_map(|n| {
            let set = StatSet::new(format!("{input_id}/{} ({})", n.id, n.reg.info.name));
            let (c_seen, c_dropped, c_errors) = (
                set.counter("received"),
                set.counter("dropped_by_filter"),
                set.counter("write_errors"),
            );
            shared.add_stats(set);
            let inst = n.inst?;
            let scratch = match &inst {
                Instance::Filter(f) if f.emits() => Some(Record::with_slots(nslots)),
                _ => None,
            };
            Some(RtNode {
                base: n.base,
                len: n.reg.info.output_keys.len() as u32,
                inst,
                children: convert(n.children, input_id, shared, nslots),
                stats: NodeStats {
                    seen: 0,
                    dropped: 0,
                    errors: 0,
                    c_seen,
                    c_dropped,
                    c_errors,
                },
                last_error_log: None,
                scratch,
            })
        })
        .collect()
}

fn run(nodes: &mut [RtNode], rec: &mut Record) {
    for n in nodes.iter_mut() {
        n.stats.seen += 1;
        rec.invalidate(n.base, n.len);
        match &mut n.inst {
            Instance::Filter(f) => {
                match f.process(rec) {
                    Verdict::Continue => run(&mut n.children, rec),
                    Verdict::Drop => n.stats.dropped += 1,
                }
                if let Some(scratch) = &mut n.scratch {
                    drain_own(f.as_mut(), scratch, &mut n.children);
                }
            }
            Instance::Output(o) => {
                if let Err(e) = o.write(rec) {
                    n.stats.errors += 1;
                    // A full queue under the drop policy is counted and
                    // reported by the output itself.
                    if matches!(e, OutputError::QueueFull) {
                        continue;
                    }
                    // One line per second at most: a dead output must not flood the log.
                    if n.last_error_log
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
                    {
                        log::error!("output error ({} so far): {e}", n.stats.errors);
                        n.last_error_log = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// Runs a filter's children on every record the filter emitted itself.
fn drain_own(f: &mut dyn rulogd_plugin::Filter, scratch: &mut Record, children: &mut [RtNode]) {
    while f.take(scratch) {
        run(children, scratch);
        scratch.clear();
    }
}

/// Gives emitting filters their periodic turn (`finish`: end everything)
/// and runs what they emit.
fn tick_filters(nodes: &mut [RtNode], now: Instant, finish: bool) {
    for n in nodes.iter_mut() {
        if let (Instance::Filter(f), Some(scratch)) = (&mut n.inst, &mut n.scratch) {
            if finish {
                f.finish();
            } else {
                f.tick(now);
            }
            drain_own(f.as_mut(), scratch, &mut n.children);
        }
        tick_filters(&mut n.children, now, finish);
    }
}

fn flush(nodes: &mut [RtNode]) {
    for n in nodes.iter_mut() {
        if let Instance::Output(o) = &mut n.inst {
            if let Err(e) = o.flush() {
                n.stats.errors += 1;
                if !matches!(e, OutputError::QueueFull)
                    && n.last_error_log
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
                {
                    log::error!("output flush error ({} so far): {e}", n.stats.errors);
                    n.last_error_log = Some(Instant::now());
                }
            }
        }
        n.stats.c_seen.set(n.stats.seen);
        n.stats.c_dropped.set(n.stats.dropped);
        n.stats.c_errors.set(n.stats.errors);
        flush(&mut n.children);
    }
}

fn signal_all(nodes: &mut [RtNode], sig: Signal) {
    for n in nodes.iter_mut() {
        match &mut n.inst {
            Instance::Filter(f) => f.signal(sig),
            Instance::Output(o) => o.signal(sig),
        }
        signal_all(&mut n.children, sig);
    }
}

struct Em<'a> {
    rec: &'a mut Record,
    roots: &'a mut [RtNode],
    emitted: u64,
}

impl Emitter for Em<'_> {
    fn record(&mut self) -> &mut Record {
        self.rec
    }

    fn emit(&mut self) {
        run(self.roots, self.rec);
        self.rec.clear();
        self.emitted += 1;
    }
}

/// Longest time rendered records may wait in an output's batch under load.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// How long the input must stay idle before outputs hand over what they
/// hold. Under steady load the kernel delivers a datagram (about 17 NFLOG
/// messages with its default batch buffer) every few hundred microseconds
/// and the input drains it in far less; flushing at every drain handed the
/// JSON writer ~17-line batches, each a futex wake-up and a write(2). A
/// millisecond of grace lets batches fill under load and costs a lone
/// record a millisecond of latency.
const IDLE_FLUSH: Duration = Duration::from_millis(1);

fn input_loop(
    id: String,
    mut input: Box<dyn Input>,
    mut roots: Vec<RtNode>,
    nslots: usize,
    ctl: Arc<Control>,
    emitted: Counter,
    beat: Arc<AtomicU64>,
) {
    let mut rec = Record::with_slots(nslots);
    let fd = input.fd();
    let interval = input.interval();
    let mut next_tick = interval.map(|i| Instant::now() + i);
    let mut usr2_seen = ctl.usr2.load(Ordering::Relaxed);
    let mut last_flush = Instant::now();
    let mut total = 0u64;
    let mut read_errors = 0u64;
    // Records emitted since the last flush.
    let mut unflushed = false;
    // The input has nothing more; the loop still turns for signals, timers
    // and the watchdog until the daemon stops.
    let mut finished = false;
    while !ctl.stop.load(Ordering::Relaxed) {
        // The watchdog's proof of life: the loop turns every 100 ms or less.
        beat.fetch_add(1, Ordering::Relaxed);
        let mut timeout = Duration::from_millis(100);
        if unflushed {
            timeout = IDLE_FLUSH;
        }
        if let Some(t) = next_tick {
            timeout = timeout.min(t.saturating_duration_since(Instant::now()));
        }
        let mut readable = false;
        if let Some(fd) = fd.filter(|_| !finished) {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
            readable = r > 0 && pfd.revents != 0;
        } else {
            std::thread::sleep(timeout);
        }
        let mut em = Em {
            rec: &mut rec,
            roots: &mut roots,
            emitted: 0,
        };
        if readable {
            loop {
                match input.read(&mut em) {
                    Ok(ReadStatus::More) => {
                        if last_flush.elapsed() >= FLUSH_EVERY {
                            flush(em.roots);
                            last_flush = Instant::now();
                        }
                        if ctl.stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    Ok(ReadStatus::Idle) => break,
                    Ok(ReadStatus::Finished) => {
                        finished = true;
                        // Flows still open end now, before the daemon stops.
                        tick_filters(em.roots, Instant::now(), true);
                        flush(em.roots);
                        last_flush = Instant::now();
                        let done = ctl.finished.fetch_add(1, Ordering::Relaxed) + 1;
                        if done == ctl.inputs.load(Ordering::Relaxed) {
                            log::warn!(
                                "{id}: every input has finished: draining the outputs and exiting"
                            );
                            // The same path as SIGTERM: stop, drain, exit 0.
                            // SAFETY: kill(2) on our own pid has no memory effects.
                            unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
                        }
                        break;
                    }
                    Err(e) => {
                        read_errors += 1;
                        if read_errors < 10 || read_errors.is_power_of_two() {
                            log::error!("{id}: read error ({read_errors} so far): {e}");
                        }
                        break;
                    }
                }
            }
        }
        if let Some(t) = next_tick {
            if Instant::now() >= t {
                input.tick(Instant::now(), &mut em);
                next_tick = interval.map(|i| t.max(Instant::now() - i) + i);
            }
        }
        tick_filters(em.roots, Instant::now(), false);
        let u = ctl.usr2.load(Ordering::Relaxed);
        if u != usr2_seen {
            usr2_seen = u;
            input.signal(Signal::Usr2, &mut em);
            signal_all(em.roots, Signal::Usr2);
        }
        total += em.emitted;
        unflushed |= em.emitted > 0;
        // Data kept coming within IDLE_FLUSH: let the batches fill, up to
        // FLUSH_EVERY. Otherwise (the poll timed out, or no fd) hand over.
        if !readable || last_flush.elapsed() >= FLUSH_EVERY {
            flush(&mut roots);
            last_flush = Instant::now();
            unflushed = false;
        }
        emitted.set(total);
    }
    // What the kernel still batches for this input goes through the stacks
    // before the outputs hand over their last batches.
    let mut em = Em {
        rec: &mut rec,
        roots: &mut roots,
        emitted: 0,
    };
    input.stop(&mut em);
    total += em.emitted;
    tick_filters(&mut roots, Instant::now(), true);
    flush(&mut roots);
    emitted.set(total);
    // Dropping the outputs hands over their last batches.
    drop(roots);
    log::info!("{id}: input stopped after {total} records");
}

/// The running daemon's threads.
pub struct Runtime {
    threads: Vec<(String, JoinHandle<()>)>,
    /// Shared control flags.
    pub ctl: Arc<Control>,
    /// One loop counter per input thread, for the watchdog.
    pub beats: Vec<Arc<AtomicU64>>,
}

impl Runtime {
    /// Starts one thread per input tree.
    pub fn start(trees: Vec<Tree>, shared: &SharedRegistry) -> std::io::Result<Runtime> {
        let ctl = Arc::new(Control::default());
        let mut threads = Vec::new();
        let mut beats = Vec::new();
        let inputs = trees.iter().filter(|t| t.inst.is_some()).count();
        ctl.inputs.store(inputs as u64, Ordering::Relaxed);
        for t in trees {
            let Some(input) = t.inst else { continue };
            let set = StatSet::new(format!("{} ({} stacks)", t.id, t.reg.info.name));
            let emitted = set.counter("records");
            shared.add_stats(set);
            let roots = convert(t.children, &t.id, shared, t.nslots);
            let (id, ctl2, nslots) = (t.id.clone(), ctl.clone(), t.nslots);
            let beat = Arc::new(AtomicU64::new(0));
            beats.push(beat.clone());
            let h = std::thread::Builder::new()
                .name(format!("in:{}", t.id))
                .spawn(move || input_loop(id, input, roots, nslots, ctl2, emitted, beat))?;
            threads.push((t.id, h));
        }
        Ok(Runtime {
            threads,
            ctl,
            beats,
        })
    }

    /// Stops the inputs, then every output service after it has written
    /// everything it was handed.
    pub fn shutdown(self, shared: &SharedRegistry) {
        self.ctl.stop.store(true, Ordering::Relaxed);
        for (id, h) in self.threads {
            if h.join().is_err() {
                log::error!("input thread {id} panicked");
            }
        }
        for s in shared.services() {
            s.shutdown();
        }
    }

    /// Whether every input thread is still running.
    pub fn all_alive(&self) -> bool {
        self.threads.iter().all(|(_, h)| !h.is_finished())
    }
}
