//! Values held in record slots.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// A byte range inside the record's receive buffer ([`crate::Record::buf`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset from the start of the buffer.
    pub off: u32,
    /// Length in bytes.
    pub len: u32,
}

impl Span {
    /// A span from offset and length.
    pub fn new(off: usize, len: usize) -> Self {
        Span {
            off: off as u32,
            len: len as u32,
        }
    }
}

/// Capacity of an [`InlineStr`]: enough for any IPv6 text form and an
/// Ethernet header printed as `aa:bb:…`.
pub const INLINE_CAP: usize = 46;

/// A short string stored inside the value itself, so filters such as IP2STR
/// and HWHDR never allocate.
#[derive(Clone, Copy)]
pub struct InlineStr {
    len: u8,
    buf: [u8; INLINE_CAP],
}

impl InlineStr {
    /// An empty string.
    pub const fn new() -> Self {
        InlineStr {
            len: 0,
            buf: [0; INLINE_CAP],
        }
    }

    /// Copies `s` if it fits.
    pub fn from_bytes(s: &[u8]) -> Option<Self> {
        if s.len() > INLINE_CAP {
            return None;
        }
        let mut v = InlineStr::new();
        v.buf[..s.len()].copy_from_slice(s);
        v.len = s.len() as u8;
        Some(v)
    }

    /// Appends bytes; returns false (and appends nothing) if they do not fit.
    pub fn push_bytes(&mut self, s: &[u8]) -> bool {
        let l = self.len as usize;
        if l + s.len() > INLINE_CAP {
            return false;
        }
        self.buf[l..l + s.len()].copy_from_slice(s);
        self.len += s.len() as u8;
        true
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl Default for InlineStr {
    fn default() -> Self {
        InlineStr::new()
    }
}

impl std::fmt::Debug for InlineStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl std::fmt::Write for InlineStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.push_bytes(s.as_bytes()) {
            Ok(())
        } else {
            Err(std::fmt::Error)
        }
    }
}

/// The value of one key for the current event.
///
/// Strings are bytes (an NFLOG prefix need not be UTF-8); consumers decide how
/// to render bytes that are not UTF-8.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// No value.
    #[default]
    None,
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
    Ipv4(Ipv4Addr),
    /// IPv6 address.
    Ipv6(Ipv6Addr),
    /// A string inside the receive buffer (no copy).
    StrSpan(Span),
    /// A short string held inline.
    Str(InlineStr),
    /// A shared string (interface names, long text).
    Shared(Arc<[u8]>),
    /// Opaque bytes inside the receive buffer (no copy).
    Raw(Span),
    /// Opaque bytes owned by the value.
    RawOwned(Arc<[u8]>),
}

impl Value {
    /// The value as an unsigned integer, widening any integer or bool.
    pub fn as_u64(&self) -> Option<u64> {
        Some(match *self {
            Value::U8(v) => v as u64,
            Value::U16(v) => v as u64,
            Value::U32(v) => v as u64,
            Value::U64(v) => v,
            Value::Bool(v) => v as u64,
            Value::I8(v) => v as u64,
            Value::I16(v) => v as u64,
            Value::I32(v) => v as u64,
            Value::I64(v) => v as u64,
            _ => return None,
        })
    }

    /// A string value from text, inline when short.
    pub fn text(s: &[u8]) -> Value {
        match InlineStr::from_bytes(s) {
            Some(i) => Value::Str(i),
            None => Value::Shared(Arc::from(s)),
        }
    }
}
