//! The host side of the ABI: the record handle a callback is given and the
//! functions of `struct rulogd_host` that read and write through it.

use rulogd_plugin::{KeyType, Record, Slot, Span, Value};
use rulogd_plugin_abi as abi;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Arc;

/// What a `struct rulogd_record *` points to for the length of one call:
/// the record and the calling instance's binding.
pub(crate) struct Handle<'a> {
    /// The record; written only when `writable`.
    pub rec: *mut Record,
    /// Filters may set keys; outputs see the record read-only.
    pub writable: bool,
    /// The slot of each input key, by input key number.
    pub inputs: &'a [Option<Slot>],
    /// The slot of output key 0.
    pub out_base: Slot,
    /// Declared output key types, by output key number.
    pub out_types: &'a [KeyType],
    /// `instance (PLUGIN)`, for the log.
    pub who: &'a str,
}

impl Handle<'_> {
    /// The opaque pointer the plugin sees.
    pub fn as_c(&self) -> *mut abi::record {
        self as *const Self as *mut abi::record
    }
}

/// The host table every plugin is given.
pub(crate) static HOST: abi::host = abi::host {
    abi_version: abi::ABI_VERSION,
    size: std::mem::size_of::<abi::host>() as u32,
    get,
    is_valid,
    set,
    packet,
    append,
    log,
};

/// # Safety
/// `r` comes from [`Handle::as_c`] and the handle outlives the call.
unsafe fn handle<'a>(r: *const abi::record) -> Option<&'a Handle<'a>> {
    (r as *const Handle).as_ref()
}

fn bytes_value(ty: u16, b: &[u8]) -> abi::value {
    abi::value {
        ty,
        reserved: 0,
        len: b.len() as u32,
        v: abi::value_u { ptr: b.as_ptr() },
    }
}

/// The C form of a value; strings point into the record or its buffer.
fn to_c(rec: &Record, v: &Value) -> Option<abi::value> {
    let int = |ty, i: i64| abi::value {
        ty,
        reserved: 0,
        len: 0,
        v: abi::value_u { i },
    };
    let uint = |ty, u: u64| abi::value {
        ty,
        reserved: 0,
        len: 0,
        v: abi::value_u { u },
    };
    Some(match v {
        Value::None => return None,
        Value::I8(x) => int(abi::TYPE_INT8, *x as i64),
        Value::I16(x) => int(abi::TYPE_INT16, *x as i64),
        Value::I32(x) => int(abi::TYPE_INT32, *x as i64),
        Value::I64(x) => int(abi::TYPE_INT64, *x),
        Value::U8(x) => uint(abi::TYPE_UINT8, *x as u64),
        Value::U16(x) => uint(abi::TYPE_UINT16, *x as u64),
        Value::U32(x) => uint(abi::TYPE_UINT32, *x as u64),
        Value::U64(x) => uint(abi::TYPE_UINT64, *x),
        Value::Bool(x) => uint(abi::TYPE_BOOL, *x as u64),
        Value::Ipv4(a) => {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&a.octets());
            abi::value {
                ty: abi::TYPE_IPADDR,
                reserved: 0,
                len: 4,
                v: abi::value_u { addr },
            }
        }
        Value::Ipv6(a) => abi::value {
            ty: abi::TYPE_IPADDR,
            reserved: 0,
            len: 16,
            v: abi::value_u { addr: a.octets() },
        },
        Value::StrSpan(s) => bytes_value(abi::TYPE_STRING, rec.span(*s)),
        Value::Str(s) => bytes_value(abi::TYPE_STRING, s.as_bytes()),
        Value::Shared(s) => bytes_value(abi::TYPE_STRING, s),
        Value::Raw(s) => bytes_value(abi::TYPE_RAW, rec.span(*s)),
        Value::RawOwned(s) => bytes_value(abi::TYPE_RAW, s),
    })
}

unsafe extern "C" fn get(r: *const abi::record, key: u32, out: *mut abi::value) -> c_int {
    let Some(h) = handle(r) else { return 0 };
    let Some(Some(slot)) = h.inputs.get(key as usize) else {
        return 0;
    };
    let rec = &*h.rec;
    match rec.get(*slot).and_then(|v| to_c(rec, v)) {
        Some(v) if !out.is_null() => {
            *out = v;
            1
        }
        _ => 0,
    }
}

unsafe extern "C" fn is_valid(r: *const abi::record, key: u32) -> c_int {
    let Some(h) = handle(r) else { return 0 };
    match h.inputs.get(key as usize) {
        Some(Some(slot)) => (*h.rec).is_valid(*slot) as c_int,
        _ => 0,
    }
}

/// Bytes that lie inside the receive buffer become a span of it (no copy).
fn span_in(rec: &Record, b: &[u8]) -> Option<Span> {
    let buf = rec.buf();
    let (start, end) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
    let p = b.as_ptr() as usize;
    (!b.is_empty() && p >= start && p + b.len() <= end).then(|| Span::new(p - start, b.len()))
}

/// The value a C value stands for, or `None` when it is unusable.
///
/// # Safety
/// A string's `ptr` must point to `len` readable bytes.
unsafe fn from_c(rec: &Record, v: &abi::value) -> Option<Value> {
    let (i, u) = (v.v.i, v.v.u);
    Some(match v.ty {
        abi::TYPE_INT8 => Value::I8(i as i8),
        abi::TYPE_INT16 => Value::I16(i as i16),
        abi::TYPE_INT32 => Value::I32(i as i32),
        abi::TYPE_INT64 => Value::I64(i),
        abi::TYPE_UINT8 => Value::U8(u as u8),
        abi::TYPE_UINT16 => Value::U16(u as u16),
        abi::TYPE_UINT32 => Value::U32(u as u32),
        abi::TYPE_UINT64 => Value::U64(u),
        abi::TYPE_BOOL => Value::Bool(u != 0),
        abi::TYPE_IPADDR if v.len == 4 => {
            let a = v.v.addr;
            Value::Ipv4([a[0], a[1], a[2], a[3]].into())
        }
        abi::TYPE_IPADDR if v.len == 16 => Value::Ipv6(v.v.addr.into()),
        abi::TYPE_STRING | abi::TYPE_RAWSTR | abi::TYPE_RAW => {
            let b: &[u8] = if v.len == 0 {
                &[]
            } else if v.v.ptr.is_null() {
                return None;
            } else {
                std::slice::from_raw_parts(v.v.ptr, v.len as usize)
            };
            let raw = v.ty == abi::TYPE_RAW;
            match (span_in(rec, b), raw) {
                (Some(s), false) => Value::StrSpan(s),
                (Some(s), true) => Value::Raw(s),
                (None, false) => Value::text(b),
                (None, true) => Value::RawOwned(Arc::from(b)),
            }
        }
        _ => return None,
    })
}

unsafe extern "C" fn set(r: *mut abi::record, key: u32, v: *const abi::value) -> c_int {
    let Some(h) = handle(r) else { return -1 };
    if !h.writable || v.is_null() || key as usize >= h.out_types.len() {
        return -1;
    }
    let (want, got) = (h.out_types[key as usize], super::key_type((*v).ty));
    let strings = [Some(KeyType::String), Some(KeyType::RawStr)];
    let fits = want == KeyType::None
        || got == Some(want)
        || (strings.contains(&Some(want)) && strings.contains(&got));
    if !fits {
        // A value of another type than declared would reach consumers that
        // bound the key by its declared type.
        return -1;
    }
    let rec = &mut *h.rec;
    match from_c(rec, &*v) {
        Some(val) => {
            rec.set(h.out_base + key, val);
            0
        }
        None => -1,
    }
}

unsafe extern "C" fn packet(r: *const abi::record, ptr: *mut *const u8, len: *mut usize) -> c_int {
    let Some(h) = handle(r) else { return -1 };
    if ptr.is_null() || len.is_null() {
        return -1;
    }
    let buf = (*h.rec).buf();
    *ptr = buf.as_ptr();
    *len = buf.len();
    0
}

unsafe extern "C" fn append(out: *mut abi::out, data: *const c_void, len: usize) {
    if out.is_null() || (data.is_null() && len > 0) {
        return;
    }
    let v = &mut *(out as *mut Vec<u8>);
    if len > 0 {
        v.extend_from_slice(std::slice::from_raw_parts(data as *const u8, len));
    }
}

unsafe extern "C" fn log(r: *const abi::record, level: c_int, msg: *const c_char) {
    if msg.is_null() {
        return;
    }
    let text = CStr::from_ptr(msg).to_string_lossy();
    let who = handle(r).map_or("external plugin", |h| h.who);
    if level <= abi::LOG_DEBUG {
        log::debug!("{who}: {text}");
    } else if level <= abi::LOG_INFO {
        log::info!("{who}: {text}");
    } else if level <= abi::LOG_NOTICE {
        log::warn!("{who}: {text}");
    } else {
        log::error!("{who}: {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn strings_inside_the_buffer_stay_references() {
        let mut rec = Record::with_slots(4);
        rec.set_buf(Bytes::from_static(b"hello world"));
        rec.set(0, Value::StrSpan(Span::new(6, 5)));
        let inputs = [Some(0)];
        let types = [KeyType::String, KeyType::U16];
        let h = Handle {
            rec: &mut rec,
            writable: true,
            inputs: &inputs,
            out_base: 2,
            out_types: &types,
            who: "t",
        };
        let mut v = abi::value::none();
        // SAFETY: the handle and the record outlive the calls.
        unsafe {
            assert_eq!((HOST.get)(h.as_c(), 0, &mut v), 1);
            assert_eq!(v.len, 5);
            assert_eq!(std::slice::from_raw_parts(v.v.ptr, 5), b"world");
            // Set back what was read: a span, not a copy.
            assert_eq!((HOST.set)(h.as_c(), 0, &v), 0);
            assert_eq!((HOST.get)(h.as_c(), 7, &mut v), 0);
            let port = abi::value {
                ty: abi::TYPE_UINT16,
                reserved: 0,
                len: 0,
                v: abi::value_u { u: 53 },
            };
            assert_eq!((HOST.set)(h.as_c(), 1, &port), 0);
            assert_eq!(
                (HOST.set)(h.as_c(), 0, &port),
                -1,
                "a u16 into a string key"
            );
            assert_eq!((HOST.set)(h.as_c(), 2, &port), -1, "no output key 2");
        }
        assert!(matches!(rec.get(2), Some(Value::StrSpan(s)) if *s == Span::new(6, 5)));
        assert!(matches!(rec.get(3), Some(Value::U16(53))));
    }
}
