//! Safe views of the record and batch handles a callback is given.

use crate::abi;
use std::ffi::CString;
use std::marker::PhantomData;

/// A key's value; strings and bytes borrow the daemon's record (no copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Signed 8-bit.
    I8(i8),
    /// Signed 16-bit.
    I16(i16),
    /// Signed 32-bit.
    I32(i32),
    /// Signed 64-bit.
    I64(i64),
    /// Unsigned 8-bit.
    U8(u8),
    /// Unsigned 16-bit.
    U16(u16),
    /// Unsigned 32-bit.
    U32(u32),
    /// Unsigned 64-bit.
    U64(u64),
    /// Boolean.
    Bool(bool),
    /// IPv4 address.
    Ipv4([u8; 4]),
    /// IPv6 address.
    Ipv6([u8; 16]),
    /// String bytes.
    Str(&'a [u8]),
    /// Raw bytes.
    Raw(&'a [u8]),
}

impl<'a> Value<'a> {
    /// Any integer or boolean, widened.
    pub fn as_u64(&self) -> Option<u64> {
        Some(match *self {
            Value::I8(v) => v as u64,
            Value::I16(v) => v as u64,
            Value::I32(v) => v as u64,
            Value::I64(v) => v as u64,
            Value::U8(v) => v as u64,
            Value::U16(v) => v as u64,
            Value::U32(v) => v as u64,
            Value::U64(v) => v,
            Value::Bool(v) => v as u64,
            _ => return None,
        })
    }

    /// # Safety
    /// `v` comes from the host's `get`, valid for `'a`.
    unsafe fn from_abi(v: &abi::value) -> Option<Value<'a>> {
        let bytes = || {
            if v.len == 0 || v.v.ptr.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts(v.v.ptr, v.len as usize)
            }
        };
        Some(match v.ty {
            abi::TYPE_INT8 => Value::I8(v.v.i as i8),
            abi::TYPE_INT16 => Value::I16(v.v.i as i16),
            abi::TYPE_INT32 => Value::I32(v.v.i as i32),
            abi::TYPE_INT64 => Value::I64(v.v.i),
            abi::TYPE_UINT8 => Value::U8(v.v.u as u8),
            abi::TYPE_UINT16 => Value::U16(v.v.u as u16),
            abi::TYPE_UINT32 => Value::U32(v.v.u as u32),
            abi::TYPE_UINT64 => Value::U64(v.v.u),
            abi::TYPE_BOOL => Value::Bool(v.v.u != 0),
            abi::TYPE_IPADDR if v.len == 4 => {
                let a = v.v.addr;
                Value::Ipv4([a[0], a[1], a[2], a[3]])
            }
            abi::TYPE_IPADDR => Value::Ipv6(v.v.addr),
            abi::TYPE_STRING | abi::TYPE_RAWSTR => Value::Str(bytes()),
            abi::TYPE_RAW => Value::Raw(bytes()),
            _ => return None,
        })
    }

    /// The C form, for the SDK's own tests.
    #[cfg(test)]
    pub(crate) fn to_abi_for_test(self) -> abi::value {
        self.to_abi()
    }

    fn to_abi(self) -> abi::value {
        let mut v = abi::value::none();
        let (ty, u) = match self {
            Value::I8(x) => (abi::TYPE_INT8, x as i64 as u64),
            Value::I16(x) => (abi::TYPE_INT16, x as i64 as u64),
            Value::I32(x) => (abi::TYPE_INT32, x as i64 as u64),
            Value::I64(x) => (abi::TYPE_INT64, x as u64),
            Value::U8(x) => (abi::TYPE_UINT8, x as u64),
            Value::U16(x) => (abi::TYPE_UINT16, x as u64),
            Value::U32(x) => (abi::TYPE_UINT32, x as u64),
            Value::U64(x) => (abi::TYPE_UINT64, x),
            Value::Bool(x) => (abi::TYPE_BOOL, x as u64),
            Value::Ipv4(a) => {
                v.ty = abi::TYPE_IPADDR;
                v.len = 4;
                let mut addr = [0; 16];
                addr[..4].copy_from_slice(&a);
                v.v = abi::value_u { addr };
                return v;
            }
            Value::Ipv6(a) => {
                v.ty = abi::TYPE_IPADDR;
                v.len = 16;
                v.v = abi::value_u { addr: a };
                return v;
            }
            Value::Str(b) | Value::Raw(b) => {
                v.ty = if matches!(self, Value::Raw(_)) {
                    abi::TYPE_RAW
                } else {
                    abi::TYPE_STRING
                };
                v.len = b.len() as u32;
                v.v = abi::value_u { ptr: b.as_ptr() };
                return v;
            }
        };
        v.ty = ty;
        v.v = abi::value_u { u };
        v
    }
}

/// The record of one call.
pub struct Record<'a> {
    raw: *mut abi::record,
    host: &'static abi::host,
    _life: PhantomData<&'a mut ()>,
}

impl<'a> Record<'a> {
    /// # Safety
    /// `raw` is the handle of the current call.
    pub(crate) unsafe fn new(raw: *mut abi::record, host: &'static abi::host) -> Self {
        Record {
            raw,
            host,
            _life: PhantomData,
        }
    }

    /// Input key number `key` (its index in `INPUT_KEYS`), if bound and valid.
    pub fn get(&self, key: usize) -> Option<Value<'_>> {
        let mut v = abi::value::none();
        // SAFETY: the handle is the current call's; the value borrows the record.
        unsafe {
            if (self.host.get)(self.raw, key as u32, &mut v) != 1 {
                return None;
            }
            Value::from_abi(&v)
        }
    }

    /// An integer input key, widened.
    pub fn get_u64(&self, key: usize) -> Option<u64> {
        self.get(key).and_then(|v| v.as_u64())
    }

    /// Whether input key `key` holds a value.
    pub fn is_valid(&self, key: usize) -> bool {
        // SAFETY: as in get.
        unsafe { (self.host.is_valid)(self.raw, key as u32) == 1 }
    }

    /// Sets output key number `key` (filters); false if refused.
    pub fn set(&mut self, key: usize, v: Value<'_>) -> bool {
        let c = v.to_abi();
        // SAFETY: as in get; the daemon copies or references the bytes
        // before it returns.
        unsafe { (self.host.set)(self.raw, key as u32, &c) == 0 }
    }

    /// The receive buffer (the packet) the record's strings point into.
    pub fn packet(&self) -> &[u8] {
        let (mut p, mut n) = (std::ptr::null(), 0usize);
        // SAFETY: as in get.
        unsafe {
            if (self.host.packet)(self.raw, &mut p, &mut n) != 0 || p.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(p, n)
        }
    }

    /// A line in the daemon's log for this instance.
    pub fn log(&self, level: i32, msg: &str) {
        log_line(self.host, self.raw, level, msg)
    }
}

pub(crate) fn log_line(host: &abi::host, raw: *const abi::record, level: i32, msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    // SAFETY: a NUL-terminated line; raw is the current call's or NULL.
    unsafe { (host.log)(raw, level, c.as_ptr()) }
}

/// The batch an output's `format` appends one record to.
pub struct Out<'a> {
    raw: *mut abi::out,
    host: &'static abi::host,
    _life: PhantomData<&'a mut ()>,
}

impl Out<'_> {
    /// # Safety
    /// `raw` is the batch of the current call.
    pub(crate) unsafe fn new(raw: *mut abi::out, host: &'static abi::host) -> Self {
        Out {
            raw,
            host,
            _life: PhantomData,
        }
    }

    /// Appends bytes to the record.
    pub fn push(&mut self, b: &[u8]) {
        // SAFETY: the current call's batch; the daemon copies the bytes.
        unsafe { (self.host.append)(self.raw, b.as_ptr().cast(), b.len()) }
    }
}

impl std::fmt::Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}
