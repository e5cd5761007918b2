//! The C descriptor built from a trait's constants, and the `extern "C"`
//! trampolines that call the trait with every panic caught.

use crate::record::{log_line, Out, Record};
use crate::{abi, Config, Filter, Format, Key, Opt, OptKind, Output, Verdict, Writer};
use std::any::Any;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::null;
use std::sync::OnceLock;

/// One plugin per cdylib: the descriptor is built once, on first request.
static DESCRIPTOR: OnceLock<usize> = OnceLock::new();

struct State<T> {
    host: &'static abi::host,
    instance: String,
    inner: T,
}

fn cstr(s: &str) -> *const c_char {
    CString::new(s).expect("no NUL in plugin tables").into_raw()
}

fn keys(keys: &[Key]) -> *const abi::key {
    let v: Vec<abi::key> = keys
        .iter()
        .map(|k| abi::key {
            name: cstr(k.name),
            ty: k.ty.abi(),
            flags: if k.optional { abi::KEYF_OPTIONAL } else { 0 },
            reserved: 0,
            cim_name: null(),
        })
        .collect();
    Box::leak(v.into_boxed_slice()).as_ptr()
}

fn options(opts: &[Opt]) -> *const abi::option {
    let v: Vec<abi::option> = opts
        .iter()
        .map(|o| {
            let (ty, min, max) = match o.kind {
                OptKind::Int { min, max } => (abi::OPT_INT, min, max),
                OptKind::Str => (abi::OPT_STRING, 0, 0),
            };
            abi::option {
                name: cstr(o.name),
                ty,
                flags: if o.mandatory { abi::OPTF_MANDATORY } else { 0 },
                default_value: cstr(o.default),
                help: cstr(o.help),
                min,
                max,
            }
        })
        .collect();
    Box::leak(v.into_boxed_slice()).as_ptr()
}

fn empty_descriptor(kind: u32, name: &str, summary: &str) -> abi::plugin {
    abi::plugin {
        abi_version: abi::ABI_VERSION,
        size: std::mem::size_of::<abi::plugin>() as u32,
        kind,
        flags: 0,
        name: cstr(name),
        summary: cstr(summary),
        input_keys: null(),
        n_input_keys: 0,
        n_output_keys: 0,
        output_keys: null(),
        options: null(),
        n_options: 0,
        reserved: 0,
        configure: None,
        start: None,
        destroy: None,
        tick: None,
        signal: None,
        process: None,
        format: None,
        writer_open: None,
        writer_write: None,
        writer_reopen: None,
        writer_close: None,
    }
}

fn publish(d: abi::plugin) -> *const abi::plugin {
    *DESCRIPTOR.get_or_init(|| Box::into_raw(Box::new(d)) as usize) as *const abi::plugin
}

/// The descriptor of filter `T` (what [`crate::export_filter!`] returns).
pub fn filter_descriptor<T: Filter>() -> *const abi::plugin {
    let mut d = empty_descriptor(abi::KIND_FILTER, T::NAME, T::SUMMARY);
    d.input_keys = keys(T::INPUT_KEYS);
    d.n_input_keys = T::INPUT_KEYS.len() as u32;
    d.output_keys = keys(T::OUTPUT_KEYS);
    d.n_output_keys = T::OUTPUT_KEYS.len() as u32;
    d.options = options(T::OPTIONS);
    d.n_options = T::OPTIONS.len() as u32;
    d.configure = Some(configure::<T, FilterSide>);
    d.destroy = Some(destroy::<T>);
    d.tick = Some(f_tick::<T>);
    d.signal = Some(f_signal::<T>);
    d.process = Some(f_process::<T>);
    publish(d)
}

/// The descriptor of output `T` (what [`crate::export_output!`] returns).
pub fn output_descriptor<T: Output>() -> *const abi::plugin {
    let mut d = empty_descriptor(abi::KIND_OUTPUT, T::NAME, T::SUMMARY);
    d.input_keys = keys(T::INPUT_KEYS);
    d.n_input_keys = T::INPUT_KEYS.len() as u32;
    d.options = options(T::OPTIONS);
    d.n_options = T::OPTIONS.len() as u32;
    d.configure = Some(configure::<T, OutputSide>);
    d.destroy = Some(destroy::<T>);
    d.format = Some(o_format::<T>);
    d.writer_open = Some(configure::<T::Writer, WriterSide<T>>);
    d.writer_write = Some(w_write::<T::Writer>);
    d.writer_reopen = Some(w_reopen::<T::Writer>);
    d.writer_close = Some(destroy::<T::Writer>);
    publish(d)
}

fn panic_text(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Runs `f`, turning a panic into a logged error and `None`.
fn guard<R>(
    host: &abi::host,
    rec: *const abi::record,
    what: &str,
    f: impl FnOnce() -> R,
) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(p) => {
            log_line(
                host,
                rec,
                abi::LOG_ERROR,
                &format!("panic in {what}: {}", panic_text(&*p)),
            );
            None
        }
    }
}

fn write_err(err: *mut c_char, len: usize, msg: &str) {
    if err.is_null() || len == 0 {
        return;
    }
    let n = msg.len().min(len - 1);
    // SAFETY: the daemon gives `len` writable bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(msg.as_ptr().cast(), err, n);
        *err.add(n) = 0;
    }
}

/// # Safety
/// `cfg` is the daemon's config of the current call.
unsafe fn read_config(cfg: *const abi::config, opts: &'static [Opt]) -> Config {
    let cfg = &*cfg;
    let instance = CStr::from_ptr(cfg.instance).to_string_lossy().into_owned();
    let vals: &[abi::optval] = if cfg.options.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(cfg.options, cfg.n_options as usize)
    };
    let mut ints = vec![0; opts.len()];
    let mut strs = vec![String::new(); opts.len()];
    for (i, v) in vals.iter().enumerate().take(opts.len()) {
        ints[i] = v.i;
        if !v.s.is_null() {
            strs[i] = CStr::from_ptr(v.s).to_string_lossy().into_owned();
        }
    }
    Config {
        instance,
        names: opts,
        ints,
        strs,
    }
}

/// How one kind of state is made from a config.
trait Make<S> {
    const WHAT: &'static str;
    const OPTIONS: &'static [Opt];
    fn make(cfg: &Config) -> Result<S, String>;
}

struct FilterSide;
impl<T: Filter> Make<T> for FilterSide {
    const WHAT: &'static str = "configure";
    const OPTIONS: &'static [Opt] = T::OPTIONS;
    fn make(cfg: &Config) -> Result<T, String> {
        T::configure(cfg)
    }
}

struct OutputSide;
impl<T: Output> Make<T> for OutputSide {
    const WHAT: &'static str = "configure";
    const OPTIONS: &'static [Opt] = T::OPTIONS;
    fn make(cfg: &Config) -> Result<T, String> {
        T::configure(cfg)
    }
}

struct WriterSide<T>(std::marker::PhantomData<T>);
impl<T: Output> Make<T::Writer> for WriterSide<T> {
    const WHAT: &'static str = "open_writer";
    const OPTIONS: &'static [Opt] = T::OPTIONS;
    fn make(cfg: &Config) -> Result<T::Writer, String> {
        T::open_writer(cfg)
    }
}

unsafe extern "C" fn configure<S: 'static, M: Make<S>>(
    host: *const abi::host,
    cfg: *const abi::config,
    err: *mut c_char,
    errlen: usize,
) -> *mut c_void {
    // The header: the host table lives as long as the process.
    let host: &'static abi::host = &*host;
    let cfg = read_config(cfg, M::OPTIONS);
    let who = format!("{} {}", cfg.instance, M::WHAT);
    match guard(host, null(), &who, || M::make(&cfg)) {
        Some(Ok(inner)) => Box::into_raw(Box::new(State {
            host,
            instance: cfg.instance,
            inner,
        }))
        .cast(),
        Some(Err(m)) => {
            write_err(err, errlen, &m);
            std::ptr::null_mut()
        }
        None => {
            write_err(err, errlen, "panicked (see the log)");
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `st` is a state `configure::<S, _>` returned and not yet destroyed.
unsafe fn state<'a, S>(st: *mut c_void) -> &'a mut State<S> {
    &mut *st.cast::<State<S>>()
}

unsafe extern "C" fn destroy<S>(st: *mut c_void) {
    let b = Box::from_raw(st.cast::<State<S>>());
    let host = b.host;
    let who = format!("{} destroy", b.instance);
    guard(host, null(), &who, move || drop(b));
}

unsafe extern "C" fn f_process<T: Filter>(st: *mut c_void, rec: *mut abi::record) -> c_int {
    let st = state::<T>(st);
    let host = st.host;
    let r = guard(host, rec, "process", || {
        let mut r = Record::new(rec, host);
        st.inner.process(&mut r)
    });
    match r {
        Some(Verdict::Continue) => abi::CONTINUE,
        Some(Verdict::Drop) => abi::DROP,
        None => -1,
    }
}

unsafe extern "C" fn f_tick<T: Filter>(st: *mut c_void) {
    let st = state::<T>(st);
    let who = format!("{} tick", st.instance);
    guard(st.host, null(), &who, || st.inner.tick());
}

unsafe extern "C" fn f_signal<T: Filter>(st: *mut c_void, signo: c_int) {
    let st = state::<T>(st);
    let who = format!("{} signal", st.instance);
    guard(st.host, null(), &who, || st.inner.signal(signo));
}

unsafe extern "C" fn o_format<T: Output>(
    st: *mut c_void,
    rec: *const abi::record,
    out: *mut abi::out,
) -> c_int {
    let st = state::<T>(st);
    let host = st.host;
    let r = guard(host, rec, "format", || {
        let r = Record::new(rec.cast_mut(), host);
        let mut o = Out::new(out, host);
        st.inner.format(&r, &mut o)
    });
    match r {
        Some(Format::Written) => 0,
        Some(Format::Skipped) => 1,
        None => -1,
    }
}

fn errno(e: &std::io::Error) -> c_int {
    -e.raw_os_error().unwrap_or(libc_eio())
}

const fn libc_eio() -> c_int {
    5
}

unsafe extern "C" fn w_write<W: Writer>(
    st: *mut c_void,
    data: *const u8,
    len: usize,
    n: usize,
) -> c_int {
    let st = state::<W>(st);
    let bytes = if len == 0 {
        &[][..]
    } else {
        std::slice::from_raw_parts(data, len)
    };
    let who = format!("{} write", st.instance);
    match guard(st.host, null(), &who, || st.inner.write(bytes, n)) {
        Some(Ok(())) => 0,
        Some(Err(e)) => errno(&e),
        None => -libc_eio(),
    }
}

unsafe extern "C" fn w_reopen<W: Writer>(st: *mut c_void) -> c_int {
    let st = state::<W>(st);
    let who = format!("{} reopen", st.instance);
    match guard(st.host, null(), &who, || st.inner.reopen()) {
        Some(Ok(())) => 0,
        Some(Err(e)) => errno(&e),
        None => -libc_eio(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Type, Value};

    struct T;
    impl Filter for T {
        const NAME: &'static str = "SDKTEST";
        const SUMMARY: &'static str = "s";
        const INPUT_KEYS: &'static [Key] = &[Key::new("ip.saddr", Type::IpAddr).optional()];
        const OUTPUT_KEYS: &'static [Key] = &[Key::new("x.y", Type::String)];
        const OPTIONS: &'static [Opt] = &[Opt::int("n", "3", 1, 9, "h").mandatory()];
        fn configure(_: &Config) -> Result<Self, String> {
            Ok(T)
        }
        fn process(&mut self, _: &mut Record) -> Verdict {
            Verdict::Continue
        }
    }

    #[test]
    fn the_descriptor_carries_the_traits_tables() {
        // SAFETY: the descriptor and its tables are leaked, never freed.
        let d = unsafe { &*filter_descriptor::<T>() };
        assert_eq!(
            (d.abi_version, d.kind),
            (abi::ABI_VERSION, abi::KIND_FILTER)
        );
        assert_eq!(d.size as usize, std::mem::size_of::<abi::plugin>());
        // SAFETY: NUL-terminated strings and tables of the declared lengths.
        unsafe {
            assert_eq!(CStr::from_ptr(d.name).to_str(), Ok("SDKTEST"));
            let k = &*d.input_keys;
            assert_eq!((k.ty, k.flags), (abi::TYPE_IPADDR, abi::KEYF_OPTIONAL));
            assert_eq!(CStr::from_ptr(k.name).to_str(), Ok("ip.saddr"));
            assert_eq!((*d.output_keys).ty, abi::TYPE_STRING);
            let o = &*d.options;
            assert_eq!(
                (o.ty, o.flags, o.min, o.max),
                (abi::OPT_INT, abi::OPTF_MANDATORY, 1, 9)
            );
        }
        assert_eq!((d.n_input_keys, d.n_output_keys, d.n_options), (1, 1, 1));
        assert!(d.configure.is_some() && d.process.is_some() && d.format.is_none());
    }

    #[test]
    fn values_keep_their_width_across_the_abi() {
        let v = Value::I16(-2).to_abi_for_test();
        // SAFETY: an INT16 travels in `i`.
        assert_eq!((v.ty, unsafe { v.v.i }), (abi::TYPE_INT16, -2));
        let v = Value::Ipv4([10, 0, 0, 1]).to_abi_for_test();
        // SAFETY: an address travels in `addr`.
        assert_eq!(
            (v.len, unsafe { v.v.addr[..4].to_vec() }),
            (4, vec![10, 0, 0, 1])
        );
    }
}
