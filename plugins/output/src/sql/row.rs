//! The compact row a record is rendered into on the input thread, and how
//! the writer reads it back: `[layout id u64][time i64]` then one tagged
//! value per key of the layout (little endian).

use rulogd_plugin::{BuildError, KeyType, Record, Slot, UpstreamKey, Value};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One value of a row, as the writer reads it back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    /// No value: SQL NULL.
    Null,
    /// A signed integer key.
    Int(i64),
    /// An unsigned integer key (IP2HBIN's IPv4 numbers too).
    UInt(u64),
    /// A boolean key.
    Bool(bool),
    /// An IPv4 address key, octets as on the wire.
    V4([u8; 4]),
    /// An IPv6 address key.
    V6([u8; 16]),
    /// A string, cut at a NUL as ulogd's C strings are.
    Text(&'a [u8]),
    /// A RAWSTR key's text (IP2BIN's `0x…`), which ulogd splices into SQL
    /// unquoted: MySQL reads it as a hex literal, the others as text.
    RawStr(&'a [u8]),
    /// Opaque bytes (RAW keys).
    Raw(&'a [u8]),
}

impl Val<'_> {
    /// ulogd 2.0.8's number for an address: the first four bytes of its
    /// value union read as a host integer (the network-order IPv4 address
    /// read in host order; for IPv6 only the first 4 bytes).
    pub fn ulogd_u32(a: &[u8]) -> u32 {
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]])
    }
}

const T_NULL: u8 = 0;
const T_INT: u8 = 1;
const T_UINT: u8 = 2;
const T_BOOL: u8 = 3;
const T_V4: u8 = 4;
const T_V6: u8 = 5;
const T_TEXT: u8 = 6;
const T_RAW: u8 = 7;
const T_RAWSTR: u8 = 8;

/// Row header: layout id and the record's time (for partitioned tables).
pub const ROW_HEAD: usize = 16;

/// A layout id: FNV-1a over the key names, stable across restarts so that
/// spooled rows find their layout again.
pub fn layout_id(keys: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for k in keys {
        for &b in k.as_bytes().iter().chain(&[0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Layouts by id, shared by the producers and the writer of one instance,
/// and written to `<spool_dir>/layouts` so a restart can read old rows.
#[derive(Default)]
pub struct Layouts {
    map: Mutex<HashMap<u64, Arc<Vec<String>>>>,
    file: Option<PathBuf>,
}

impl Layouts {
    /// Layouts kept in `file` (loaded now) or only in memory.
    pub fn new(file: Option<PathBuf>) -> Self {
        let mut map = HashMap::new();
        if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                let keys: Vec<String> = line.split('\t').map(str::to_string).collect();
                if !keys.is_empty() && !line.is_empty() {
                    map.insert(layout_id(&keys), Arc::new(keys));
                }
            }
        }
        Layouts {
            map: Mutex::new(map),
            file,
        }
    }

    /// Registers `keys` and returns its id.
    pub fn register(&self, keys: Vec<String>) -> io::Result<u64> {
        let id = layout_id(&keys);
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(&id) {
            return Ok(id);
        }
        if let Some(f) = &self.file {
            use std::io::Write;
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)?;
            writeln!(out, "{}", keys.join("\t"))?;
            out.sync_data()?;
        }
        m.insert(id, Arc::new(keys));
        Ok(id)
    }

    /// The keys of layout `id`.
    pub fn get(&self, id: u64) -> Option<Arc<Vec<String>>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}

/// Renders records into rows of one layout (on the input thread).
pub struct Renderer {
    id: u64,
    /// Each key's slot, and whether it is a RAWSTR key.
    slots: Vec<Option<(Slot, bool)>>,
    /// Where a row's time is, best first: a flow record's end (FLOW's
    /// records sit below a packet input whose oob.time.sec they do not
    /// carry), then the packet's time.
    time: [Option<Slot>; 2],
    partitioned: bool,
}

impl Renderer {
    /// A renderer for `keys`, each bound to the nearest upstream producer.
    pub fn new(
        layouts: &Layouts,
        keys: Vec<String>,
        upstream: &[UpstreamKey],
        partitioned: bool,
    ) -> Result<Self, BuildError> {
        let key = |name: &str| {
            upstream
                .iter()
                .rev()
                .find(|k| k.def.name == name)
                .map(|k| (k.slot, k.def.ty == KeyType::RawStr))
        };
        let slots = keys.iter().map(|k| key(k)).collect();
        let time = [key("flow.end.sec"), key("oob.time.sec")].map(|k| k.map(|k| k.0));
        let id = layouts
            .register(keys)
            .map_err(|e| BuildError::io("cannot record the row layout", e))?;
        Ok(Renderer {
            id,
            slots,
            time,
            partitioned,
        })
    }

    /// Appends the row for `rec` to `out`.
    pub fn render(&self, rec: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        let t = if self.partitioned {
            rec.get_u64(self.time[0])
                .or_else(|| rec.get_u64(self.time[1]))
                .map(|s| s as i64)
                .unwrap_or_else(now_secs)
        } else {
            0
        };
        out.extend_from_slice(&t.to_le_bytes());
        for &k in &self.slots {
            match k.and_then(|(s, raw)| Some((rec.get_opt(Some(s))?, raw))) {
                None => out.push(T_NULL),
                Some((v, raw)) => encode(rec, v, raw, out),
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn encode(rec: &Record, v: &Value, rawstr: bool, out: &mut Vec<u8>) {
    let int = |out: &mut Vec<u8>, tag: u8, x: u64| {
        out.push(tag);
        out.extend_from_slice(&x.to_le_bytes());
    };
    let bytes = |out: &mut Vec<u8>, tag: u8, b: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match v {
        Value::None => out.push(T_NULL),
        Value::I8(x) => int(out, T_INT, *x as i64 as u64),
        Value::I16(x) => int(out, T_INT, *x as i64 as u64),
        Value::I32(x) => int(out, T_INT, *x as i64 as u64),
        Value::I64(x) => int(out, T_INT, *x as u64),
        Value::U8(x) => int(out, T_UINT, u64::from(*x)),
        Value::U16(x) => int(out, T_UINT, u64::from(*x)),
        Value::U32(x) => int(out, T_UINT, u64::from(*x)),
        Value::U64(x) => int(out, T_UINT, *x),
        Value::Bool(b) => {
            out.push(T_BOOL);
            out.push(u8::from(*b));
        }
        Value::Ipv4(a) => {
            out.push(T_V4);
            out.extend_from_slice(&a.octets());
        }
        Value::Ipv6(a) => {
            out.push(T_V6);
            out.extend_from_slice(&a.octets());
        }
        Value::Raw(_) | Value::RawOwned(_) => bytes(out, T_RAW, rec.bytes_of(v).unwrap_or(&[])),
        Value::StrSpan(_) | Value::Str(_) | Value::Shared(_) => {
            let b = rec.bytes_of(v).unwrap_or(&[]);
            // A C string ends at its first NUL; ulogd writes only that much.
            let b = b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n]);
            bytes(out, if rawstr { T_RAWSTR } else { T_TEXT }, b)
        }
    }
}

/// Reads one row back: its layout id, time and values.
pub fn decode<'a>(row: &'a [u8], vals: &mut Vec<Val<'a>>) -> Option<(u64, i64)> {
    vals.clear();
    let head = row.get(..ROW_HEAD)?;
    let id = u64::from_le_bytes(head[..8].try_into().ok()?);
    let t = i64::from_le_bytes(head[8..16].try_into().ok()?);
    let mut p = ROW_HEAD;
    while p < row.len() {
        let tag = row[p];
        p += 1;
        let v = match tag {
            T_NULL => Val::Null,
            T_INT | T_UINT => {
                let x = u64::from_le_bytes(row.get(p..p + 8)?.try_into().ok()?);
                p += 8;
                if tag == T_INT {
                    Val::Int(x as i64)
                } else {
                    Val::UInt(x)
                }
            }
            T_BOOL => {
                p += 1;
                Val::Bool(*row.get(p - 1)? != 0)
            }
            T_V4 => {
                p += 4;
                Val::V4(row.get(p - 4..p)?.try_into().ok()?)
            }
            T_V6 => {
                p += 16;
                Val::V6(row.get(p - 16..p)?.try_into().ok()?)
            }
            T_TEXT | T_RAW | T_RAWSTR => {
                let n = u32::from_le_bytes(row.get(p..p + 4)?.try_into().ok()?) as usize;
                let b = row.get(p + 4..p + 4 + n)?;
                p += 4 + n;
                match tag {
                    T_TEXT => Val::Text(b),
                    T_RAWSTR => Val::RawStr(b),
                    _ => Val::Raw(b),
                }
            }
            _ => return None,
        };
        vals.push(v);
    }
    Some((id, t))
}

pub fn decode_time(row: &[u8]) -> i64 {
    row.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rulogd_plugin::{KeyDef, KeyType, Span};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn up(names: &[&'static str]) -> Vec<UpstreamKey> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| UpstreamKey {
                def: KeyDef::new(n, KeyType::U32),
                slot: i as Slot,
                producer: "p".into(),
            })
            .collect()
    }

    #[test]
    fn rows_read_back_as_written() {
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        let layouts = Layouts::new(None);
        let names: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let r = Renderer::new(&layouts, names.clone(), &up(&keys), false).expect("renderer");
        let mut rec = Record::with_slots(keys.len());
        rec.set_buf(bytes::Bytes::from_static(b"xxpre\0fixyy\x01\x02"));
        rec.set(0, Value::U32(7));
        rec.set(1, Value::I16(-3));
        rec.set(2, Value::Bool(true));
        rec.set(3, Value::Ipv4(Ipv4Addr::new(192, 0, 2, 1)));
        rec.set(4, Value::Ipv6(Ipv6Addr::LOCALHOST));
        // A C string: only up to the NUL.
        rec.set(5, Value::StrSpan(Span::new(2, 7)));
        rec.set(6, Value::Raw(Span::new(11, 2)));
        rec.set(8, Value::U64(u64::MAX));
        let mut out = Vec::new();
        r.render(&rec, &mut out);
        let mut vals = Vec::new();
        let (id, t) = decode(&out, &mut vals).expect("decode");
        assert_eq!((id, t), (layout_id(&names), 0));
        assert_eq!(
            vals,
            [
                Val::UInt(7),
                Val::Int(-3),
                Val::Bool(true),
                Val::V4([192, 0, 2, 1]),
                Val::V6(Ipv6Addr::LOCALHOST.octets()),
                Val::Text(b"pre"),
                Val::Raw(&[1, 2]),
                Val::Null,
                Val::UInt(u64::MAX),
            ]
        );
        // ulogd's number for 192.0.2.1 on a little-endian host.
        if cfg!(target_endian = "little") {
            assert_eq!(Val::ulogd_u32(&[192, 0, 2, 1]), 16_908_480);
        }
        assert!(decode(&out[..out.len() - 3], &mut vals).is_none());
    }

    #[test]
    fn layouts_survive_a_restart_in_their_file() {
        let f = std::env::temp_dir().join(format!("rulogd-layouts-{}", std::process::id()));
        let _ = std::fs::remove_file(&f);
        let keys = vec!["oob.prefix".to_string(), "ip.saddr.str".to_string()];
        let id = Layouts::new(Some(f.clone()))
            .register(keys.clone())
            .expect("register");
        let again = Layouts::new(Some(f.clone()));
        assert_eq!(again.get(id).as_deref(), Some(&keys));
        let _ = std::fs::remove_file(&f);
    }
}
