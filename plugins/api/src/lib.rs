//! The contract between the rulogd core and its plugins.
//!
//! A plugin declares static key tables ([`KeyDef`]) and options ([`OptionDef`]);
//! the core resolves key names to record slots once, when a stack is built, so
//! the per-packet path only indexes arrays ([`Record`]).

pub mod addr_text;
pub mod error;
pub mod homenet;
pub mod key;
pub mod options;
pub mod plugin;
pub mod record;
pub mod shared;
pub mod stats;
pub mod time;
pub mod value;

pub use error::{BuildError, OutputError};
pub use homenet::{Direction, HomeNet};
pub use key::{KeyDef, KeyFlags, KeyType, UpstreamKey};
pub use options::{OptType, OptValue, OptionDef, Options};
pub use plugin::{
    Above, Binding, BuildCtx, Builder, Emitter, Filter, Input, Output, PluginInfo, PluginKind,
    ReadStatus, Registration, Signal, Verdict,
};
pub use record::{Record, Slot};
pub use shared::{ProcessEnv, Service, SharedRegistry, StatsView};
pub use stats::{Counter, Kind, StatSet};
pub use time::{now_sec_usec, now_timeval};
pub use value::{InlineStr, Span, Value};
