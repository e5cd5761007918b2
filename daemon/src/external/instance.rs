//! Instances of external plugins behind the built-in traits: a filter runs
//! inline on the input thread, an output formats on the input thread into a
//! delivery batch and writes on the delivery's writer thread, exactly as a
//! built-in output does.

use super::host::{Handle, HOST};
use super::{by_info, Loaded};
use rulogd_delivery::{
    Batch, Delivery, DeliveryConfig, DeliveryStats, Producer, SendError, Transport, WhenFull,
};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, Filter, OptType, OptValue, Output, OutputError, Record,
    Signal, Slot, StatSet, Verdict,
};
use rulogd_plugin_abi as abi;
use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::time::{Duration, Instant};

const ERR_LEN: usize = 512;

/// The C view of an instance's options, with the strings it points to.
struct CConfig {
    _instance: CString,
    _strings: Vec<CString>,
    _values: Vec<abi::optval>,
    cfg: abi::config,
}

fn c_config(ctx: &BuildCtx) -> Result<CConfig, BuildError> {
    let nul = |s: &str, what: &str| {
        CString::new(s).map_err(|_| BuildError::Other(format!("{what} holds a NUL byte")))
    };
    let instance = nul(ctx.instance, "the instance id")?;
    let mut strings = Vec::new();
    let mut values = Vec::new();
    for o in ctx.info.options {
        let v = match (o.ty, ctx.options.get(o.name)) {
            (OptType::Int, Some(OptValue::Int(i))) => abi::optval {
                i: *i,
                s: c"".as_ptr(),
                len: 0,
            },
            (_, v) => {
                let text = v.map(|v| v.to_string()).unwrap_or_default();
                let c = nul(&text, &format!("option `{}`", o.name))?;
                let v = abi::optval {
                    i: 0,
                    s: c.as_ptr(),
                    len: text.len(),
                };
                strings.push(c);
                v
            }
        };
        values.push(v);
    }
    let cfg = abi::config {
        instance: instance.as_ptr(),
        n_options: values.len() as u32,
        reserved: 0,
        options: values.as_ptr(),
    };
    Ok(CConfig {
        _instance: instance,
        _strings: strings,
        _values: values,
        cfg,
    })
}

fn err_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    if bytes.is_empty() {
        "the plugin gave no reason".into()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Calls `configure` or `writer_open`; a NULL result is a build error.
fn open_state(ctx: &BuildCtx, what: &str, f: abi::configure_fn) -> Result<*mut c_void, BuildError> {
    let cfg = c_config(ctx)?;
    let mut err = [0 as c_char; ERR_LEN];
    // SAFETY: the header's contract: host and config valid for the call,
    // err writable for ERR_LEN bytes.
    let state = unsafe { f(&HOST, &cfg.cfg, err.as_mut_ptr(), ERR_LEN) };
    if state.is_null() {
        err[ERR_LEN - 1] = 0;
        return Err(BuildError::Other(format!(
            "{} ({}): {what} failed: {}",
            ctx.instance,
            ctx.info.name,
            err_text(&err)
        )));
    }
    Ok(state)
}

fn loaded(ctx: &BuildCtx) -> Result<&'static Loaded, BuildError> {
    by_info(ctx.info).ok_or_else(|| BuildError::Other(format!("{} is not loaded", ctx.info.name)))
}

/// What every external instance holds.
struct Common {
    plugin: &'static Loaded,
    state: *mut c_void,
    who: String,
    inputs: Vec<Option<Slot>>,
    out_base: Slot,
    started: bool,
    failed: Counter,
    failures: u64,
    last_log: Option<Instant>,
}

// SAFETY: the header lets an instance be used from the one thread that
// runs it; the core moves it there once, before the first record.
unsafe impl Send for Common {}

impl Common {
    fn new(ctx: &BuildCtx, plugin: &'static Loaded, state: *mut c_void) -> Self {
        let who = format!("{} ({})", ctx.instance, ctx.info.name);
        // `<id> (<PLUGIN> <part>)`: the metrics endpoint reads the labels.
        let set = StatSet::new(format!("{} ({} plugin)", ctx.instance, ctx.info.name));
        let failed = set.counter("failed");
        ctx.shared.add_stats(set);
        Common {
            plugin,
            state,
            who,
            inputs: Vec::new(),
            out_base: 0,
            started: false,
            failed,
            failures: 0,
            last_log: None,
        }
    }

    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.inputs = b.inputs.clone();
        self.out_base = b.output_base;
        if self.started {
            return Ok(());
        }
        self.started = true;
        let Some(start) = self.plugin.desc.start else {
            return Ok(());
        };
        let mut err = [0 as c_char; ERR_LEN];
        // SAFETY: the instance's own state; err as in configure.
        let r = unsafe { start(self.state, err.as_mut_ptr(), ERR_LEN) };
        if r != 0 {
            err[ERR_LEN - 1] = 0;
            return Err(BuildError::Other(format!(
                "{}: start failed: {}",
                self.who,
                err_text(&err)
            )));
        }
        Ok(())
    }

    fn handle<'a>(&'a self, rec: *mut Record, writable: bool) -> Handle<'a> {
        Handle {
            rec,
            writable,
            inputs: &self.inputs,
            out_base: self.out_base,
            out_types: &self.plugin.out_types,
            who: &self.who,
        }
    }

    /// Counts a failed record; logs at most once a second.
    fn fail(&mut self, what: &str, code: c_int) {
        self.failures += 1;
        self.failed.inc();
        if self
            .last_log
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
        {
            self.last_log = Some(Instant::now());
            log::error!(
                "{}: {what} failed ({code}); {} record(s) failed so far",
                self.who,
                self.failures
            );
        }
    }

    fn tick(&mut self) {
        if let Some(t) = self.plugin.desc.tick {
            // SAFETY: the instance's own state, on its thread.
            unsafe { t(self.state) }
        }
    }

    fn signal(&mut self, sig: Signal) {
        let n = match sig {
            Signal::Hup => libc::SIGHUP,
            Signal::Usr1 => libc::SIGUSR1,
            Signal::Usr2 => libc::SIGUSR2,
        };
        if let Some(s) = self.plugin.desc.signal {
            // SAFETY: as in tick.
            unsafe { s(self.state, n) }
        }
    }
}

impl Drop for Common {
    fn drop(&mut self) {
        if let Some(d) = self.plugin.desc.destroy {
            // SAFETY: the state is not used after this.
            unsafe { d(self.state) }
        }
    }
}

/// An external filter.
struct ExtFilter(Common);

/// Builds an external filter instance.
pub(crate) fn build_filter(ctx: &BuildCtx) -> Result<Box<dyn Filter>, BuildError> {
    let plugin = loaded(ctx)?;
    let configure = plugin.desc.configure.expect("checked at load");
    let state = open_state(ctx, "configure", configure)?;
    Ok(Box::new(ExtFilter(Common::new(ctx, plugin, state))))
}

impl Filter for ExtFilter {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.0.bind(b)
    }

    fn process(&mut self, rec: &mut Record) -> Verdict {
        let process = self.0.plugin.desc.process.expect("checked at load");
        let h = self.0.handle(rec, true);
        // SAFETY: the handle lives across the call; the header's contract.
        let r = unsafe { process(self.0.state, h.as_c()) };
        match r {
            abi::CONTINUE => Verdict::Continue,
            abi::DROP => Verdict::Drop,
            code => {
                self.0.fail("process", code);
                Verdict::Drop
            }
        }
    }

    fn signal(&mut self, sig: Signal) {
        self.0.signal(sig)
    }

    fn tick(&mut self, _now: Instant) {
        self.0.tick()
    }
}

/// An external output: formats on the input thread into its producer's batch.
struct ExtOutput {
    common: Common,
    producer: Producer,
}

/// Builds an external output instance and, once per instance id, its writer.
pub(crate) fn build_output(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let plugin = loaded(ctx)?;
    let configure = plugin.desc.configure.expect("checked at load");
    let state = open_state(ctx, "configure", configure)?;
    // The state is owned from here, so an error below still destroys it.
    let common = Common::new(ctx, plugin, state);
    let cfg = DeliveryConfig::new(ctx.instance, ctx.info.name, WhenFull::Block);
    let delivery = Delivery::shared(ctx, ctx.info.name, &cfg, || {
        let open = plugin.desc.writer_open.expect("checked at load");
        let writer = open_state(ctx, "writer_open", open)?;
        Ok(Box::new(ExtTransport {
            plugin,
            writer,
            desc: format!("{} writer", common.who),
        }))
    })?;
    Ok(Box::new(ExtOutput {
        common,
        producer: delivery.producer(false),
    }))
}

impl Output for ExtOutput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.common.bind(b)
    }

    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        let format = self.common.plugin.desc.format.expect("checked at load");
        let buf = self.producer.batch().buf() as *mut Vec<u8> as *mut abi::out;
        // The record is only read: `writable: false` makes `set` refuse.
        let h = self
            .common
            .handle(rec as *const Record as *mut Record, false);
        // SAFETY: the handle and the batch outlive the call.
        let r = unsafe { format(self.common.state, h.as_c(), buf) };
        match r {
            0 => self.producer.commit(),
            code => {
                self.producer.batch().rollback();
                if code < 0 {
                    self.common.fail("format", code);
                    return Err(OutputError::Io(io::Error::other(format!(
                        "{}: format failed ({code})",
                        self.common.who
                    ))));
                }
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.producer.flush()
    }

    fn signal(&mut self, sig: Signal) {
        self.common.signal(sig)
    }
}

/// The writer side of an external output, owned by the writer thread.
struct ExtTransport {
    plugin: &'static Loaded,
    writer: *mut c_void,
    desc: String,
}

// SAFETY: the header: the writer state is used only on the writer thread,
// which owns this transport once it has started.
unsafe impl Send for ExtTransport {}

impl Transport for ExtTransport {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn is_open(&self) -> bool {
        true
    }

    fn open(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn send(&mut self, batch: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        let write = self.plugin.desc.writer_write.expect("checked at load");
        let data = batch.bytes_from(from);
        let n = batch.records() - from;
        // SAFETY: the writer's state on the writer thread; data valid for the call.
        let r = unsafe { write(self.writer, data.as_ptr(), data.len(), n) };
        if r < 0 {
            return Err(SendError {
                next: from,
                error: io::Error::from_raw_os_error(-r),
            });
        }
        Ok(())
    }

    fn close(&mut self) {}

    fn reopen(&mut self) -> io::Result<()> {
        match self.plugin.desc.writer_reopen {
            // SAFETY: as in send.
            Some(f) => match unsafe { f(self.writer) } {
                r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for ExtTransport {
    fn drop(&mut self) {
        if let Some(f) = self.plugin.desc.writer_close {
            // SAFETY: the last use of the writer state.
            unsafe { f(self.writer) }
        }
    }
}
