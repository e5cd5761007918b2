//! Plugin traits and the static descriptor every plugin registers.
//!
//! All runtime traits are synchronous: an input runs on its own thread and
//! drives its stacks' filters and outputs inline; an output that does I/O
//! hands rendered batches to its own writer thread (see the rulogd-delivery
//! crate), so the input thread never waits on a disk or a peer.

use crate::error::{BuildError, OutputError};
use crate::key::{KeyDef, UpstreamKey};
use crate::options::{OptionDef, Options};
use crate::record::{Record, Slot};
use crate::shared::SharedRegistry;
use std::borrow::Cow;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// What a plugin is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    /// A source of records (NFLOG, NFCT, …).
    Input,
    /// A record transformer or gate (BASE, IP2STR, MARK, …).
    Filter,
    /// A sink (JSON, LOGEMU, PGSQL, …).
    Output,
}

/// The static description of a plugin: what `rulogd --info` prints.
#[derive(Debug)]
pub struct PluginInfo {
    /// ulogd's plugin name, e.g. `NFLOG`, `BASE`, `JSON`.
    pub name: &'static str,
    /// Input, filter or output.
    pub kind: PluginKind,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Accepted options with defaults.
    pub options: &'static [OptionDef],
    /// Input keys (unless `wildcard_input`, or computed at configure time).
    pub input_keys: &'static [KeyDef],
    /// Output keys, in ulogd's order.
    pub output_keys: &'static [KeyDef],
    /// Whether the plugin takes every upstream key as input (JSON, GPRINT, …).
    pub wildcard_input: bool,
}

/// Signals forwarded to plugin instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: reopen files, reconnect.
    Hup,
    /// SIGUSR1: statistics.
    Usr1,
    /// SIGUSR2: plugin specific (NFCT counter dump, NFACCT poll).
    Usr2,
}

/// What a filter decided for the current record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the record on down the stack.
    Continue,
    /// Stop this record for the rest of this stack (ulogd's IRET_STOP).
    Drop,
}

/// Everything a plugin needs to build an instance.
pub struct BuildCtx<'a> {
    /// The instance id (`json1` in `json1:JSON`), which names the config section.
    pub instance: &'a str,
    /// The plugin's descriptor.
    pub info: &'static PluginInfo,
    /// The instance's validated options, defaults filled in.
    pub options: &'a Options,
    /// Resources shared between instances with the same id (one file, one
    /// writer thread) and the registry of services and statistics.
    pub shared: &'a SharedRegistry,
}

/// How an instance's keys were bound when its stack was built.
pub struct Binding<'a> {
    /// The instance id.
    pub instance: &'a str,
    /// The input keys that were resolved, in declaration order.
    pub input_keys: &'a [KeyDef],
    /// For each input key, the slot of its nearest upstream producer.
    pub inputs: Vec<Option<Slot>>,
    /// Every output key of every upstream instance, in stack order, each bound
    /// to the nearest producer of its name (for wildcard consumers).
    pub upstream: &'a [UpstreamKey],
    /// The slot of this instance's first output key; key `i` is at `output_base + i`.
    pub output_base: Slot,
    /// For each output key, whether anything downstream reads it.
    pub active: Vec<bool>,
}

impl Binding<'_> {
    /// The slot bound to the input key named `name`, if any.
    pub fn input(&self, name: &str) -> Option<Slot> {
        self.input_keys
            .iter()
            .position(|k| k.name == name)
            .and_then(|i| self.inputs[i])
    }

    /// The slot of output key number `i`.
    pub fn output(&self, i: usize) -> Slot {
        self.output_base + i as Slot
    }

    /// The slot of output key `i`, or `None` when nothing downstream reads it.
    pub fn output_if_active(&self, i: usize) -> Option<Slot> {
        if self.active.get(i).copied().unwrap_or(true) {
            Some(self.output(i))
        } else {
            None
        }
    }
}

/// Where an input puts its records.
pub trait Emitter {
    /// The record to fill; its validity bits are clear.
    fn record(&mut self) -> &mut Record;
    /// Runs the filled record through every stack of this input, then clears it.
    fn emit(&mut self);
}

/// Whether an input may have more to read right away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// The socket is drained (EAGAIN); the core flushes outputs now.
    Idle,
    /// More may be pending; call `read` again.
    More,
    /// The input has nothing more, ever (a capture file has ended). Once
    /// every input is finished the daemon drains its outputs and exits 0.
    Finished,
}

/// A source of records, run on its own thread.
pub trait Input: Send {
    /// Takes note of which output keys are read downstream (`output_base` is 0).
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError>;
    /// The fd to wait on, if any.
    fn fd(&self) -> Option<RawFd>;
    /// How often `tick` must run, for timer-driven inputs.
    fn interval(&self) -> Option<Duration> {
        None
    }
    /// Reads what is available without blocking and emits records.
    fn read(&mut self, em: &mut dyn Emitter) -> std::io::Result<ReadStatus>;
    /// Periodic work (polling inputs).
    fn tick(&mut self, _now: Instant, _em: &mut dyn Emitter) {}
    /// A signal for this instance.
    fn signal(&mut self, _sig: Signal, _em: &mut dyn Emitter) {}
    /// The daemon is stopping: emit what the kernel (or a peer) still holds
    /// for this input, then let go of it. Called once, on the input's
    /// thread, after the last `read` and before the outputs are flushed and
    /// drained; a second SIGTERM exits without waiting for it.
    fn stop(&mut self, _em: &mut dyn Emitter) {}
}

/// An instance above a filter in its stack, as [`Filter::plan_inputs`]
/// sees it (the input first, the nearest last).
pub struct Above<'a> {
    /// The instance id.
    pub instance: &'a str,
    /// Its plugin's name (`BASE`).
    pub plugin: &'static str,
    /// The keys it declares as outputs.
    pub outputs: &'a [KeyDef],
}

/// A per-record transformer or gate, run inline on its input's thread.
pub trait Filter: Send {
    /// Input keys computed at configure time; `None` uses the static table.
    fn input_keys(&self) -> Option<Cow<'static, [KeyDef]>> {
        None
    }
    /// Input keys chosen knowing the instances above this one in its
    /// stack; asked once, after the build, in place of
    /// [`Filter::input_keys`] (which is the default).
    fn plan_inputs(&mut self, _above: &[Above<'_>]) -> Option<Cow<'static, [KeyDef]>> {
        self.input_keys()
    }
    /// Stores the slots it reads and writes.
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError>;
    /// Reads its inputs from the record and writes its outputs.
    fn process(&mut self, rec: &mut Record) -> Verdict;
    /// A signal for this instance.
    fn signal(&mut self, _sig: Signal) {}
    /// Whether this filter emits records of its own (FLOW); asked once when
    /// the stack starts, so filters that do not pay nothing per record.
    fn emits(&self) -> bool {
        false
    }
    /// Whether a record given to this filter may go on to its children.
    /// A filter that drops every record it is given and feeds its children
    /// only records of its own (FLOW) says false: then what its children
    /// read above it is never there for them, and the filters above need
    /// not make it (a JSON behind FLOW would otherwise make BASE decode
    /// every key of every packet). Asked once, at binding.
    fn passes(&self) -> bool {
        true
    }
    /// Fills the next pending record of its own into `rec` (its validity
    /// bits clear); true if one was filled. The core runs the filter's
    /// children on it and asks again until false.
    fn take(&mut self, _rec: &mut Record) -> bool {
        false
    }
    /// Periodic work on the input's thread (at least every 100 ms), so a
    /// quiet input still ends its timed-out state.
    fn tick(&mut self, _now: Instant) {}
    /// The input has ended or the daemon stops: end every piece of state
    /// held, queueing what must be emitted for `take`.
    fn finish(&mut self) {}
}

/// A sink; `write` runs inline on the input thread and must not wait on I/O
/// (hand the rendered record to a writer thread instead).
pub trait Output: Send {
    /// Input keys computed at configure time; `None` uses the static table
    /// (or every upstream key for wildcard outputs).
    fn input_keys(&self) -> Option<Cow<'static, [KeyDef]>> {
        None
    }
    /// Stores the slots it reads.
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError>;
    /// Takes one record.
    fn write(&mut self, rec: &Record) -> Result<(), OutputError>;
    /// The input is idle: hand over anything buffered.
    fn flush(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    /// A signal for this instance. By default SIGHUP hands over what is
    /// buffered, so records taken before the signal go to the file or
    /// connection the writer had before it reopens.
    fn signal(&mut self, sig: Signal) {
        if sig == Signal::Hup {
            let _ = self.flush();
        }
    }
}

/// A constructor for one plugin kind.
#[derive(Clone, Copy)]
pub enum Builder {
    /// Builds an input.
    Input(fn(&BuildCtx) -> Result<Box<dyn Input>, BuildError>),
    /// Builds a filter.
    Filter(fn(&BuildCtx) -> Result<Box<dyn Filter>, BuildError>),
    /// Builds an output.
    Output(fn(&BuildCtx) -> Result<Box<dyn Output>, BuildError>),
}

/// A built-in plugin: its descriptor and constructor.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The descriptor.
    pub info: &'static PluginInfo,
    /// The constructor.
    pub builder: Builder,
}

/// Declares a built-in plugin's descriptor, `pub static INFO` (what
/// `rulogd --info` prints), and its `pub const REGISTRATION` in one place, so
/// every plugin spells them the same way and the kind of the descriptor and of
/// the constructor cannot differ. The `options`, `input` and `output` lines
/// are optional (an empty table when left out); `wildcard` after the name
/// makes the plugin take every upstream key. `(default T)` in place of the
/// constructor builds every instance as `T::default()`.
///
/// ```
/// use rulogd_plugin::{Binding, BuildError, Filter, KeyDef, KeyType, Record, Slot, Value, Verdict};
/// /// Sets `a` to 1 on every record.
/// #[derive(Default)]
/// struct Demo(Option<Slot>);
/// impl Filter for Demo {
///     fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
///         self.0 = Some(b.output(0));
///         Ok(())
///     }
///     fn process(&mut self, rec: &mut Record) -> Verdict {
///         if let Some(s) = self.0 {
///             rec.set(s, Value::U8(1));
///         }
///         Verdict::Continue
///     }
/// }
/// static OUT: [KeyDef; 1] = [KeyDef::new("a", KeyType::U8)];
/// rulogd_plugin::plugin! {
///     Filter "DEMO" (default Demo): "Makes a";
///     output &OUT;
/// }
/// assert_eq!((INFO.name, INFO.output_keys.len(), INFO.wildcard_input), ("DEMO", 1, false));
/// assert!(matches!(REGISTRATION.builder, rulogd_plugin::Builder::Filter(_)));
/// ```
#[macro_export]
macro_rules! plugin {
    // `(default T)`: the instance is `T::default()`, built without options.
    (
        $kind:ident $name:literal $($wild:ident)? (default $ty:ty): $summary:literal;
        $($rest:tt)*
    ) => {
        fn build(
            _: &$crate::BuildCtx,
        ) -> ::std::result::Result<::std::boxed::Box<dyn $crate::$kind>, $crate::BuildError> {
            ::std::result::Result::Ok(::std::boxed::Box::new(<$ty>::default()))
        }
        $crate::plugin! { $kind $name $($wild)? (build): $summary; $($rest)* }
    };
    (
        $kind:ident $name:literal $($wild:ident)? ($build:path): $summary:literal;
        $(options $opts:expr;)?
        $(input $input:expr;)?
        $(output $output:expr;)?
    ) => {
        /// The descriptor `rulogd --info` prints.
        pub static INFO: $crate::PluginInfo = $crate::PluginInfo {
            name: $name,
            kind: $crate::PluginKind::$kind,
            summary: $summary,
            options: $crate::__table_or_empty!($($opts)?),
            input_keys: $crate::__table_or_empty!($($input)?),
            output_keys: $crate::__table_or_empty!($($output)?),
            wildcard_input: $crate::__wildcard!($($wild)?),
        };
        /// The built-in registration: the descriptor and the constructor.
        pub const REGISTRATION: $crate::Registration = $crate::Registration {
            info: &INFO,
            builder: $crate::Builder::$kind($build),
        };
    };
}

/// An optional table of [`plugin!`]: the one given, or an empty one.
#[doc(hidden)]
#[macro_export]
macro_rules! __table_or_empty {
    () => {
        &[]
    };
    ($t:expr) => {
        $t
    };
}

/// The `wildcard` word of [`plugin!`]; any other word is a compile error.
#[doc(hidden)]
#[macro_export]
macro_rules! __wildcard {
    () => {
        false
    };
    (wildcard) => {
        true
    };
}
