//! Helpers the input plugins' unit tests share: a counting allocator, a
//! datagram socket pair standing in for a netlink socket, options from
//! text, and snapshots of emitted records by key name.

mod standalone;

pub(crate) use standalone::{dgram_pair, send, steady_allocs, Count};

use rulogd_plugin::{Binding, Emitter, KeyDef, OptionDef, Options, Record, Slot, StatSet, Value};
use std::borrow::Cow;

/// A plugin's option defaults with `pairs` (name, text) set over them.
pub(crate) fn options(defs: &'static [OptionDef], pairs: &[(&str, &str)]) -> Options {
    let mut o = Options::defaults(defs).expect("defaults parse");
    for (k, v) in pairs {
        let def = defs
            .iter()
            .find(|d| d.name == *k)
            .unwrap_or_else(|| panic!("no option {k}"));
        o.set(def, v, 1).expect("valid option text");
    }
    o
}

/// The valid slots of `rec` as (key name, `f` of the value), in key order.
pub(crate) fn snapshot<T>(
    rec: &Record,
    keys: &'static [KeyDef],
    mut f: impl FnMut(&Record, &Value) -> T,
) -> Vec<(&'static str, T)> {
    let mut snap = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let Some(v) = rec.get(i as Slot) else {
            continue;
        };
        let Cow::Borrowed(name) = k.name else {
            unreachable!("static key table")
        };
        snap.push((name, f(rec, v)));
    }
    snap
}

/// The value of `key` in a snapshot.
pub(crate) fn lookup<'a, T>(snap: &'a [(&'static str, T)], key: &str) -> Option<&'a T> {
    snap.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// A value copied out of a record, so it outlives the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum V {
    Int(u64),
    Addr(String),
    Bytes(Vec<u8>),
}

impl V {
    /// An address as text, an integer widened, anything else as its bytes.
    pub(crate) fn of(rec: &Record, v: &Value) -> V {
        match v {
            Value::Ipv4(a) => V::Addr(a.to_string()),
            Value::Ipv6(a) => V::Addr(a.to_string()),
            v => match v.as_u64() {
                Some(n) => V::Int(n),
                None => V::Bytes(rec.bytes_of(v).unwrap_or_default().to_vec()),
            },
        }
    }
}

/// The value of `key` in a snapshot of [`V`]s.
pub(crate) fn get(snap: &[(&'static str, V)], key: &str) -> Option<V> {
    lookup(snap, key).cloned()
}

/// An emitter that snapshots every record by key name, each value turned
/// into a `T` by `conv`.
pub(crate) struct Collect<T = V> {
    pub rec: Record,
    pub out: Vec<Vec<(&'static str, T)>>,
    /// Every distinct receive buffer seen (for capturing a corpus).
    pub chunks: Vec<Vec<u8>>,
    keys: &'static [KeyDef],
    conv: fn(&Record, &Value) -> T,
}

impl Collect<V> {
    /// A collector of records with the keys `keys`, values as [`V`]s.
    pub(crate) fn new(keys: &'static [KeyDef]) -> Self {
        Collect::with(keys, V::of)
    }
}

impl<T> Collect<T> {
    /// A collector of records with the keys `keys`, values turned by `conv`.
    pub(crate) fn with(keys: &'static [KeyDef], conv: fn(&Record, &Value) -> T) -> Self {
        Collect {
            rec: Record::with_slots(keys.len()),
            out: Vec::new(),
            chunks: Vec::new(),
            keys,
            conv,
        }
    }
}

impl<T> Emitter for Collect<T> {
    fn record(&mut self) -> &mut Record {
        &mut self.rec
    }
    fn emit(&mut self) {
        let snap = snapshot(&self.rec, self.keys, self.conv);
        let buf = self.rec.buf();
        if !buf.is_empty() && self.chunks.last().map(Vec::as_slice) != Some(&buf[..]) {
            self.chunks.push(buf.to_vec());
        }
        self.out.push(snap);
        self.rec.clear();
    }
}

/// A binding of `keys` as the core makes it, with the keys `active` picks.
pub(crate) fn binding(
    keys: &'static [KeyDef],
    active: impl Fn(&KeyDef) -> bool,
) -> Binding<'static> {
    Binding {
        instance: "t",
        input_keys: &[],
        inputs: vec![],
        upstream: &[],
        output_base: 0,
        active: keys.iter().map(active).collect(),
    }
}

/// A counter's value in `set`, `u64::MAX` if it has none of that name.
pub(crate) fn stat(set: &StatSet, name: &str) -> u64 {
    set.snapshot()
        .into_iter()
        .find(|(l, _)| *l == name)
        .map_or(u64::MAX, |(_, v)| v)
}
