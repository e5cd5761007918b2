//! Rendering one record as jansson's `json_dumps(obj, 0)` would print the
//! object ulogd builds: the field plan is fixed at bind time, so writing a
//! record only indexes slots and appends bytes.

use super::out::{is_plain, Out};
use rulogd_plugin::{KeyType, Record, Slot, UpstreamKey, Value};
use std::collections::HashMap;

/// How jansson escapes each byte below 0x80 inside a string: 0 = as is,
/// `b'u'` = `\u00XX` (upper-case hex), anything else = backslash and that byte.
static ESCAPE: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    // 0x7f and `/` are left alone, as jansson does without JSON_ESCAPE_SLASH.
    t
};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `s` (valid UTF-8) as a quoted JSON string, escaped as jansson does.
/// Non-ASCII is written as is (no JSON_ENSURE_ASCII).
pub fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut run = 0;
    for (i, &c) in s.iter().enumerate() {
        let e = if c < 0x80 { ESCAPE[c as usize] } else { 0 };
        if e == 0 {
            continue;
        }
        out.extend_from_slice(&s[run..i]);
        if e == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        run = i + 1;
    }
    out.extend_from_slice(&s[run..]);
    out.push(b'"');
}

/// The string jansson would accept for a C string value: cut at the first NUL
/// (ulogd hands jansson a `char *`), and `None` if that is not valid UTF-8
/// (`json_string` returns NULL and the field is left out).
#[inline]
pub fn json_str(b: &[u8]) -> Option<&[u8]> {
    let b = match memchr_nul(b) {
        Some(i) => &b[..i],
        None => b,
    };
    std::str::from_utf8(b).ok().map(str::as_bytes)
}

#[inline]
fn memchr_nul(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == 0)
}

/// An integer value as jansson's `json_int_t`: signed types sign-extend,
/// unsigned 64-bit values are reinterpreted as signed (ulogd's cast).
#[inline]
pub fn json_int(v: &Value) -> Option<i64> {
    Some(match *v {
        Value::I8(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::I64(x) => x,
        Value::U8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::U64(x) => x as i64,
        Value::Bool(x) => x.into(),
        _ => return None,
    })
}

/// Where a field's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// `"@version": 1` (eventv1).
    Version,
    /// The timestamp, formatted once per record.
    Timestamp,
    /// The `device` option.
    Device,
    /// An integer key.
    Int(Slot),
    /// A string key.
    Str(Slot),
    /// `raw.label` with `boolean_label`: `"allowed"` or `"blocked"`.
    Label(Slot),
}

/// One JSON member: its pre-escaped `, "name": ` and every source that
/// sets it, in stack order (jansson keeps the first position and the last
/// value).
#[derive(Debug)]
pub struct Field {
    name: Box<[u8]>,
    srcs: Box<[Src]>,
}

/// The longest `, "name": ` written by one fixed-size copy; longer names
/// take [`Out::bytes`].
const NAME_PAD: usize = 32;

/// A source in stack order: field `field`, source `idx` of that field, with
/// the field's `, "name": ` padded for [`Out::padded`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    src: Src,
    field: u32,
    idx: u32,
    /// The field has this one source (the common case).
    single: bool,
    /// For a field with several sources: its bit in the per-record mask of
    /// fields already written (0 beyond 64 such fields: not tracked).
    rep_bit: u64,
    name_len: u8,
    /// `, "name": ` and zeros; a first member skips the leading `, `.
    name: [u8; NAME_PAD + 2],
}

/// The members of the object in the order ulogd inserts them.
#[derive(Debug, Default)]
pub struct Plan {
    fields: Vec<Field>,
    entries: Vec<Entry>,
}

/// Per-record rendering state.
struct State {
    /// No member written yet.
    first: bool,
    /// Repeated fields already written (`Entry::rep_bit`).
    done: u64,
}

/// What a plan needs besides the upstream keys.
#[derive(Clone, Copy, Debug)]
pub struct PlanOptions {
    /// `eventv1`.
    pub eventv1: bool,
    /// `timestamp`.
    pub timestamp: bool,
    /// `boolean_label`.
    pub boolean_label: bool,
}

impl Plan {
    /// The plan for a stack's upstream keys.
    pub fn new(upstream: &[UpstreamKey], o: PlanOptions) -> Plan {
        let mut b = PlanBuilder::default();
        if o.eventv1 {
            b.add("@version", Src::Version);
        }
        if o.timestamp {
            b.add(
                if o.eventv1 { "@timestamp" } else { "timestamp" },
                Src::Timestamp,
            );
        }
        b.add("dvc", Src::Device);
        for k in upstream {
            let d = &k.def;
            let (name, src) = match d.ty {
                KeyType::U8 if o.boolean_label && d.name == "raw.label" => {
                    ("action", Src::Label(k.slot))
                }
                t if t.is_integer() => (d.cim.unwrap_or(&d.name), Src::Int(k.slot)),
                KeyType::String => (d.cim.unwrap_or(&d.name), Src::Str(k.slot)),
                // ulogd's switch has no case for the others: never written.
                _ => continue,
            };
            b.add(name, src);
        }
        b.finish()
    }

    /// Number of distinct members.
    pub fn fields(&self) -> usize {
        self.fields.len()
    }

    /// Appends the object for `rec` (without the newline).
    pub fn render(&self, rec: &Record, ctx: &RenderCtx, out: &mut Vec<u8>) {
        let mut w = Out::new(out);
        w.byte(b'{');
        let mut st = State {
            first: true,
            done: 0,
        };
        for e in &self.entries {
            self.entry(e, &mut st, rec, ctx, &mut w);
        }
        w.byte(b'}');
    }

    /// Writes entry `e` if it has a value.
    #[inline(always)]
    fn entry(&self, e: &Entry, st: &mut State, rec: &Record, ctx: &RenderCtx, w: &mut Out) {
        let wrote = if e.single {
            self.single(e, st.first, rec, ctx, w)
        } else if st.done & e.rep_bit != 0 || !may_be_settable(e.src, rec, ctx) {
            // Written already, or this source has no value (tcp.sport in a
            // UDP record): the common outcomes, decided without a call.
            false
        } else {
            self.repeated(e, st.first, rec, ctx, w, &mut st.done)
        };
        st.first &= !wrote;
    }

    /// Appends `, "name": ` (without the `, ` for the first member).
    #[inline(always)]
    fn name(&self, e: &Entry, first: bool, w: &mut Out) {
        let skip = if first { 2 } else { 0 };
        let len = e.name_len as usize;
        if len <= NAME_PAD {
            let src: &[u8; NAME_PAD] = e.name[skip..skip + NAME_PAD]
                .try_into()
                .expect("NAME_PAD bytes");
            w.padded(src, len - skip);
        } else {
            w.bytes(&self.fields[e.field as usize].name[skip..]);
        }
    }

    /// A member with one source: written if the source has a value.
    #[inline(always)]
    fn single(&self, e: &Entry, first: bool, rec: &Record, ctx: &RenderCtx, w: &mut Out) -> bool {
        if let Src::Int(slot) = e.src {
            // The bulk of a record: checked before anything is written.
            let Some(v) = rec.get(slot).and_then(json_int) else {
                return false;
            };
            self.name(e, first, w);
            w.int(v);
            return true;
        }
        self.name_and_value(e, e.src, first, rec, ctx, w)
    }

    /// Writes the name of `e` and the value of `s`, or nothing if `s` has none.
    #[inline(always)]
    fn name_and_value(
        &self,
        e: &Entry,
        s: Src,
        first: bool,
        rec: &Record,
        ctx: &RenderCtx,
        w: &mut Out,
    ) -> bool {
        let mark = w.len();
        self.name(e, first, w);
        if write_value(s, rec, ctx, w) {
            true
        } else {
            w.truncate(mark);
            false
        }
    }

    /// A member whose name several sources share: jansson inserted it at
    /// the first source that set a value and overwrote it with each later
    /// one, so it is written at the first settable source with the value of
    /// the last.
    #[inline(never)]
    fn repeated(
        &self,
        e: &Entry,
        first: bool,
        rec: &Record,
        ctx: &RenderCtx,
        w: &mut Out,
        done: &mut u64,
    ) -> bool {
        // `entry` checked the mask and that this source may have a value.
        let bit = e.rep_bit;
        let f = &self.fields[e.field as usize];
        let idx = e.idx as usize;
        // With a bit, an earlier settable source would have written the
        // field and set it (a settable source always writes); without one,
        // look.
        let earlier = || bit == 0 && f.srcs[..idx].iter().any(|&s| settable(s, rec, ctx));
        // The value is the last settable source from here on; usually the
        // later ones have no value at all, and then writing this one (which
        // fails, writing nothing, if it has none) is the whole check.
        let later = f.srcs[idx + 1..]
            .iter()
            .rev()
            .find(|&&s| settable(s, rec, ctx))
            .copied();
        let s = match later {
            Some(s) => {
                if !settable(f.srcs[idx], rec, ctx) || earlier() {
                    return false;
                }
                s
            }
            None => {
                if earlier() {
                    return false;
                }
                f.srcs[idx]
            }
        };
        let wrote = self.name_and_value(e, s, first, rec, ctx, w);
        if wrote {
            *done |= bit;
        }
        wrote
    }
}

/// Per-record values that are not in the record.
pub struct RenderCtx<'a> {
    /// The formatted timestamp (`None`: omitted).
    pub timestamp: Option<&'a [u8]>,
    /// Whether the timestamp is a JSON string.
    pub ts_quoted: bool,
    /// The `device` string, already quoted and escaped.
    pub device: &'a [u8],
}

/// False when `s` certainly has no value (an invalid slot, no timestamp):
/// the cheap half of [`settable`].
#[inline(always)]
fn may_be_settable(s: Src, rec: &Record, ctx: &RenderCtx) -> bool {
    match s {
        Src::Int(slot) | Src::Str(slot) | Src::Label(slot) => rec.is_valid(slot),
        Src::Timestamp => ctx.timestamp.is_some(),
        Src::Version | Src::Device => true,
    }
}

/// Whether `s` has a value to write (what [`write_value`] would write).
#[inline]
fn settable(s: Src, rec: &Record, ctx: &RenderCtx) -> bool {
    match s {
        Src::Version | Src::Device => true,
        Src::Timestamp => ctx.timestamp.is_some(),
        Src::Int(slot) => rec.get(slot).and_then(json_int).is_some(),
        Src::Label(slot) => rec.get(slot).and_then(Value::as_u64).is_some(),
        Src::Str(slot) => rec
            .get(slot)
            .and_then(|v| rec.bytes_of(v))
            .is_some_and(|b| is_plain(b) || json_str(b).is_some()),
    }
}

/// Appends the value of `s`, or returns false (appending nothing) if it has none.
#[inline(always)]
fn write_value(s: Src, rec: &Record, ctx: &RenderCtx, w: &mut Out) -> bool {
    match s {
        Src::Version => w.byte(b'1'),
        Src::Device => w.bytes(ctx.device),
        Src::Timestamp => {
            let Some(t) = ctx.timestamp else {
                return false;
            };
            if ctx.ts_quoted {
                w.byte(b'"');
                w.bytes(t);
                w.byte(b'"');
            } else {
                w.bytes(t);
            }
        }
        Src::Int(slot) => {
            let Some(v) = rec.get(slot).and_then(json_int) else {
                return false;
            };
            w.int(v);
        }
        Src::Label(slot) => match rec.get(slot).and_then(Value::as_u64) {
            Some(0) => w.bytes(b"\"blocked\""),
            Some(_) => w.bytes(b"\"allowed\""),
            None => return false,
        },
        Src::Str(slot) => {
            let Some(b) = rec.get(slot).and_then(|v| rec.bytes_of(v)) else {
                return false;
            };
            if !w.plain_string(b) {
                // Escapes, a NUL or non-ASCII: jansson's rules in full.
                let Some(b) = json_str(b) else {
                    return false;
                };
                push_string(w.vec(), b);
            }
        }
    }
    true
}

#[derive(Default)]
struct PlanBuilder {
    index: HashMap<String, usize>,
    fields: Vec<(String, Vec<Src>)>,
    /// (field, index of the source within the field), in stack order.
    entries: Vec<(u32, u32)>,
}

impl PlanBuilder {
    fn add(&mut self, name: &str, src: Src) {
        let field = match self.index.get(name) {
            Some(&i) => i,
            None => {
                self.fields.push((name.to_string(), Vec::new()));
                self.index.insert(name.to_string(), self.fields.len() - 1);
                self.fields.len() - 1
            }
        };
        let srcs = &mut self.fields[field].1;
        srcs.push(src);
        self.entries.push((field as u32, (srcs.len() - 1) as u32));
    }

    fn finish(self) -> Plan {
        let fields: Vec<Field> = self
            .fields
            .into_iter()
            .map(|(name, srcs)| {
                let mut n = Vec::with_capacity(name.len() + 6);
                n.extend_from_slice(b", ");
                push_string(&mut n, name.as_bytes());
                n.extend_from_slice(b": ");
                Field {
                    name: n.into_boxed_slice(),
                    srcs: srcs.into_boxed_slice(),
                }
            })
            .collect();
        // Dense numbers for the fields with several sources.
        let mut reps = vec![0u64; fields.len()];
        let mut next_rep = 0;
        for (i, f) in fields.iter().enumerate() {
            if f.srcs.len() > 1 && next_rep < 64 {
                reps[i] = 1u64 << next_rep;
                next_rep += 1;
            }
        }
        let entries: Vec<Entry> = self
            .entries
            .iter()
            .map(|&(field, idx)| {
                let f = &fields[field as usize];
                let mut name = [0u8; NAME_PAD + 2];
                if f.name.len() <= NAME_PAD {
                    name[..f.name.len()].copy_from_slice(&f.name);
                }
                Entry {
                    src: f.srcs[idx as usize],
                    field,
                    idx,
                    single: f.srcs.len() == 1,
                    rep_bit: reps[field as usize],
                    name_len: f.name.len().min(u8::MAX as usize) as u8,
                    name,
                }
            })
            .collect();
        Plan { fields, entries }
    }
}
