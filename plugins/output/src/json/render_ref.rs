//! The renderer as it was before the fixed-size-copy rewrite, kept as the
//! oracle of a randomized differential test (tests.rs): its field plan and
//! its write loop, the parts the rewrite changed. Escaping and value
//! conversion, which it did not change, are the live module's.
#![allow(dead_code)]

use super::render::{json_int, json_str, push_string, PlanOptions, RenderCtx, Src};
use rulogd_plugin::{KeyType, Record, UpstreamKey, Value};
use std::collections::HashMap;

/// One JSON member: its pre-escaped `"name": ` and every source that sets it,
/// in stack order (jansson keeps the first position and the last value).
#[derive(Debug)]
pub struct Field {
    name: Box<[u8]>,
    srcs: Box<[Src]>,
}

/// A source in stack order: field `field`, source `idx` of that field.
#[derive(Clone, Copy, Debug)]
struct Entry {
    field: u32,
    idx: u32,
}

/// The members of the object in the order ulogd inserts them.
#[derive(Debug, Default)]
pub struct Plan {
    fields: Vec<Field>,
    entries: Vec<Entry>,
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
        out.push(b'{');
        let mut first = true;
        for e in &self.entries {
            let f = &self.fields[e.field as usize];
            let idx = e.idx as usize;
            let mark = out.len();
            if !first {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(&f.name);
            let ok = if f.srcs.len() == 1 {
                // The common case: one source, written or rolled back.
                write_value(f.srcs[0], rec, ctx, out)
            } else {
                // A repeated name: jansson inserted it at the first source
                // that set a value and overwrote it with each later one.
                let here = settable(f.srcs[idx], rec, ctx)
                    && !f.srcs[..idx].iter().any(|&s| settable(s, rec, ctx));
                // `here` guarantees a settable source at or after idx.
                here && f.srcs[idx..]
                    .iter()
                    .rev()
                    .find(|&&s| settable(s, rec, ctx))
                    .is_some_and(|&s| write_value(s, rec, ctx, out))
            };
            if ok {
                first = false;
            } else {
                out.truncate(mark);
            }
        }
        out.push(b'}');
    }
}

fn settable(s: Src, rec: &Record, ctx: &RenderCtx) -> bool {
    match s {
        Src::Version | Src::Device => true,
        Src::Timestamp => ctx.timestamp.is_some(),
        Src::Int(slot) => rec.get(slot).and_then(json_int).is_some(),
        Src::Label(slot) => rec.get(slot).and_then(Value::as_u64).is_some(),
        Src::Str(slot) => rec
            .get(slot)
            .and_then(|v| rec.bytes_of(v))
            .and_then(json_str)
            .is_some(),
    }
}

/// Appends the value of `s`, or returns false (appending nothing) if it has none.
fn write_value(s: Src, rec: &Record, ctx: &RenderCtx, out: &mut Vec<u8>) -> bool {
    match s {
        Src::Version => out.push(b'1'),
        Src::Device => out.extend_from_slice(ctx.device),
        Src::Timestamp => {
            let Some(t) = ctx.timestamp else {
                return false;
            };
            if ctx.ts_quoted {
                out.push(b'"');
                out.extend_from_slice(t);
                out.push(b'"');
            } else {
                out.extend_from_slice(t);
            }
        }
        Src::Int(slot) => {
            let Some(v) = rec.get(slot).and_then(json_int) else {
                return false;
            };
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        }
        Src::Label(slot) => match rec.get(slot).and_then(Value::as_u64) {
            Some(0) => out.extend_from_slice(b"\"blocked\""),
            Some(_) => out.extend_from_slice(b"\"allowed\""),
            None => return false,
        },
        Src::Str(slot) => {
            let Some(b) = rec
                .get(slot)
                .and_then(|v| rec.bytes_of(v))
                .and_then(json_str)
            else {
                return false;
            };
            push_string(out, b);
        }
    }
    true
}

#[derive(Default)]
struct PlanBuilder {
    index: HashMap<String, usize>,
    fields: Vec<(String, Vec<Src>)>,
    entries: Vec<Entry>,
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
        self.entries.push(Entry {
            field: field as u32,
            idx: (srcs.len() - 1) as u32,
        });
    }

    fn finish(self) -> Plan {
        let fields = self
            .fields
            .into_iter()
            .map(|(name, srcs)| {
                let mut n = Vec::with_capacity(name.len() + 4);
                push_string(&mut n, name.as_bytes());
                n.extend_from_slice(b": ");
                Field {
                    name: n.into_boxed_slice(),
                    srcs: srcs.into_boxed_slice(),
                }
            })
            .collect();
        Plan {
            fields,
            entries: self.entries,
        }
    }
}
