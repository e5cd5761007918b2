//! Write a rulogd external plugin in safe Rust.
//!
//! Implement [`Filter`] (or [`Output`] and its [`Writer`]) and export it with
//! [`export_filter!`] (or [`export_output!`]) in a `cdylib` crate; the
//! resulting `.so` is named in ulogd.conf with `plugin="/path/libx.so"`.
//! The SDK builds the C descriptor of `include/rulogd_plugin.h` from the
//! trait's constants and catches every panic at the boundary: a panicking
//! call is logged by the daemon for that instance and its record counted as
//! failed, and the other stacks go on.
//!
//! ```no_run
//! use rulogd_plugin_sdk::{export_filter, Config, Filter, Key, Record, Type, Verdict};
//! struct Pass;
//! impl Filter for Pass {
//!     const NAME: &'static str = "PASS";
//!     const SUMMARY: &'static str = "lets every record through";
//!     const INPUT_KEYS: &'static [Key] = &[];
//!     fn configure(_: &Config) -> Result<Self, String> { Ok(Pass) }
//!     fn process(&mut self, _: &mut Record) -> Verdict { Verdict::Continue }
//! }
//! export_filter!(Pass);
//! ```

mod glue;
mod record;

pub use glue::{filter_descriptor, output_descriptor};
pub use record::{Out, Record, Value};
pub use rulogd_plugin_abi as abi;

/// A key's type (ulogd's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// Signed 8-bit.
    I8,
    /// Signed 16-bit.
    I16,
    /// Signed 32-bit.
    I32,
    /// Signed 64-bit.
    I64,
    /// Unsigned 8-bit.
    U8,
    /// Unsigned 16-bit.
    U16,
    /// Unsigned 32-bit.
    U32,
    /// Unsigned 64-bit.
    U64,
    /// Boolean.
    Bool,
    /// IPv4 or IPv6 address.
    IpAddr,
    /// String.
    String,
    /// Raw bytes.
    Raw,
}

impl Type {
    /// The ABI's `RULOGD_TYPE_*`.
    pub const fn abi(self) -> u16 {
        match self {
            Type::I8 => abi::TYPE_INT8,
            Type::I16 => abi::TYPE_INT16,
            Type::I32 => abi::TYPE_INT32,
            Type::I64 => abi::TYPE_INT64,
            Type::U8 => abi::TYPE_UINT8,
            Type::U16 => abi::TYPE_UINT16,
            Type::U32 => abi::TYPE_UINT32,
            Type::U64 => abi::TYPE_UINT64,
            Type::Bool => abi::TYPE_BOOL,
            Type::IpAddr => abi::TYPE_IPADDR,
            Type::String => abi::TYPE_STRING,
            Type::Raw => abi::TYPE_RAW,
        }
    }
}

/// A key of the plugin's input or output table.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// ulogd's key name.
    pub name: &'static str,
    /// Its type.
    pub ty: Type,
    /// Input keys: the stack builds without a producer.
    pub optional: bool,
}

impl Key {
    /// A required key.
    pub const fn new(name: &'static str, ty: Type) -> Self {
        Key {
            name,
            ty,
            optional: false,
        }
    }

    /// The same key, optional.
    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// An option's kind.
#[derive(Clone, Copy, Debug)]
pub enum OptKind {
    /// An integer within inclusive bounds.
    Int {
        /// Lowest accepted.
        min: i64,
        /// Highest accepted.
        max: i64,
    },
    /// A string.
    Str,
}

/// An option of the plugin's config section.
#[derive(Clone, Copy, Debug)]
pub struct Opt {
    /// Name.
    pub name: &'static str,
    /// Default, as written in a config file.
    pub default: &'static str,
    /// One line for `--info`.
    pub help: &'static str,
    /// Integer or string.
    pub kind: OptKind,
    /// Must be given.
    pub mandatory: bool,
}

impl Opt {
    /// An integer option.
    pub const fn int(
        name: &'static str,
        default: &'static str,
        min: i64,
        max: i64,
        help: &'static str,
    ) -> Self {
        Opt {
            name,
            default,
            help,
            kind: OptKind::Int { min, max },
            mandatory: false,
        }
    }

    /// A string option.
    pub const fn str(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Opt {
            name,
            default,
            help,
            kind: OptKind::Str,
            mandatory: false,
        }
    }

    /// The same option, mandatory.
    pub const fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self
    }
}

/// An instance's configured options (validated by the daemon).
pub struct Config {
    instance: String,
    names: &'static [Opt],
    ints: Vec<i64>,
    strs: Vec<String>,
}

impl Config {
    /// The instance id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// An integer option (0 if the plugin declared no such integer option).
    pub fn int(&self, name: &str) -> i64 {
        self.names
            .iter()
            .position(|o| o.name == name)
            .map_or(0, |i| self.ints[i])
    }

    /// A string option ("" if the plugin declared no such option).
    pub fn str(&self, name: &str) -> &str {
        self.names
            .iter()
            .position(|o| o.name == name)
            .map_or("", |i| self.strs[i].as_str())
    }
}

/// What a filter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the record on.
    Continue,
    /// Stop it for this stack.
    Drop,
}

/// A filter, run inline on its input's thread.
pub trait Filter: Sized + Send + 'static {
    /// The name stack= lines use; must not be a built-in's.
    const NAME: &'static str;
    /// One line for `--info`.
    const SUMMARY: &'static str;
    /// Input keys, bound by name; [`Record::get`] takes their index.
    const INPUT_KEYS: &'static [Key];
    /// Output keys; [`Record::set`] takes their index.
    const OUTPUT_KEYS: &'static [Key] = &[];
    /// Options.
    const OPTIONS: &'static [Opt] = &[];
    /// Makes an instance (main thread).
    fn configure(cfg: &Config) -> Result<Self, String>;
    /// One record.
    fn process(&mut self, rec: &mut Record) -> Verdict;
    /// At least every 100 ms.
    fn tick(&mut self) {}
    /// SIGHUP, SIGUSR1 or SIGUSR2 (their numbers).
    fn signal(&mut self, _signo: i32) {}
}

/// Whether [`Output::format`] put the record in the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The record is in the batch.
    Written,
    /// Nothing for this record.
    Skipped,
}

/// An output: formats on the input thread; its [`Writer`] writes on the
/// writer thread.
pub trait Output: Sized + Send + 'static {
    /// The name stack= lines use.
    const NAME: &'static str;
    /// One line for `--info`.
    const SUMMARY: &'static str;
    /// Input keys.
    const INPUT_KEYS: &'static [Key];
    /// Options.
    const OPTIONS: &'static [Opt] = &[];
    /// The writer-thread side.
    type Writer: Writer;
    /// Makes an instance (main thread, once per stack).
    fn configure(cfg: &Config) -> Result<Self, String>;
    /// Makes the writer (main thread, once per instance id).
    fn open_writer(cfg: &Config) -> Result<Self::Writer, String>;
    /// Renders one record into `out`.
    fn format(&mut self, rec: &Record, out: &mut Out) -> Format;
}

/// The writer-thread side of an [`Output`].
pub trait Writer: Send + 'static {
    /// Writes whole records; an error makes the daemon retry the batch.
    fn write(&mut self, data: &[u8], records: usize) -> std::io::Result<()>;
    /// SIGHUP.
    fn reopen(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exports a [`Filter`] as the plugin of this cdylib.
#[macro_export]
macro_rules! export_filter {
    ($t:ty) => {
        /// The descriptor rulogd looks up.
        #[no_mangle]
        pub extern "C" fn rulogd_plugin_descriptor() -> *const $crate::abi::plugin {
            $crate::filter_descriptor::<$t>()
        }
    };
}

/// Exports an [`Output`] as the plugin of this cdylib.
#[macro_export]
macro_rules! export_output {
    ($t:ty) => {
        /// The descriptor rulogd looks up.
        #[no_mangle]
        pub extern "C" fn rulogd_plugin_descriptor() -> *const $crate::abi::plugin {
            $crate::output_descriptor::<$t>()
        }
    };
}
