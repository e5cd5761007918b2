//! Column types as `DESCRIBE TABLE` names them, and each rendered value
//! encoded for its column in ClickHouse's RowBinary format (little endian,
//! strings with a LEB128 length, `Nullable` with a leading null flag).
//!
//! RowBinary rather than TabSeparated: 18.16 and current servers read it
//! alike, it needs no escaping, and FixedString(16) addresses go in as
//! their 16 bytes. Values are converted here to what the column holds, so
//! the server never refuses a row for its type: an IPv4 address becomes
//! `::ffff:a.b.c.d` in FixedString(16)/IPv6, its number in UInt32/IPv4,
//! its text in String; a missing value the column's default (0, empty)
//! unless the column is Nullable.

use crate::sql::row::Val;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a column holds, as far as encoding is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum ColType {
    /// UInt8..UInt64 (and Bool): width in bytes.
    UInt(u8),
    /// Int8..Int64: width in bytes.
    Int(u8),
    /// Float32.
    F32,
    /// Float64.
    F64,
    /// String.
    Str,
    /// FixedString(n).
    Fixed(usize),
    /// DateTime: seconds in a UInt32.
    DateTime,
    /// DateTime64(p): Int64 in units of 10^-p s.
    DateTime64(u32),
    /// Date: days in a UInt16.
    Date,
    /// IPv4 (current servers): the address as a UInt32.
    Ipv4,
    /// IPv6 (current servers): 16 bytes.
    Ipv6,
    /// Enum8/Enum16: width and the names with their values.
    Enum(u8, Vec<(String, i16)>),
    /// Nullable(T).
    Nullable(Box<ColType>),
}

fn unquote(s: &str) -> Option<String> {
    let s = s.trim().strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Parses a type name; `None` for types this output cannot write.
pub fn parse_type(t: &str) -> Option<ColType> {
    let t = t.trim();
    let inner = |p: &str| t.strip_prefix(p)?.strip_prefix('(')?.strip_suffix(')');
    if let Some(x) = inner("Nullable") {
        return Some(ColType::Nullable(Box::new(parse_type(x)?)));
    }
    if let Some(x) = inner("LowCardinality") {
        return parse_type(x);
    }
    if let Some(x) = inner("FixedString") {
        return x.trim().parse().ok().map(ColType::Fixed);
    }
    if let Some(x) = inner("DateTime64") {
        let p = x.split(',').next()?.trim().parse().ok()?;
        return Some(ColType::DateTime64(p));
    }
    if let Some(x) = inner("DateTime") {
        // DateTime('UTC'): the zone changes only how it prints.
        let _ = x;
        return Some(ColType::DateTime);
    }
    for (p, w) in [("Enum8", 1u8), ("Enum16", 2)] {
        if let Some(x) = inner(p) {
            let mut vals = Vec::new();
            for item in split_items(x) {
                let (name, v) = item.rsplit_once('=')?;
                vals.push((unquote(name)?, v.trim().parse().ok()?));
            }
            return Some(ColType::Enum(w, vals));
        }
    }
    Some(match t {
        "UInt8" | "Bool" => ColType::UInt(1),
        "UInt16" => ColType::UInt(2),
        "UInt32" => ColType::UInt(4),
        "UInt64" => ColType::UInt(8),
        "Int8" => ColType::Int(1),
        "Int16" => ColType::Int(2),
        "Int32" => ColType::Int(4),
        "Int64" => ColType::Int(8),
        "Float32" => ColType::F32,
        "Float64" => ColType::F64,
        "String" => ColType::Str,
        "DateTime" => ColType::DateTime,
        "Date" => ColType::Date,
        "IPv4" => ColType::Ipv4,
        "IPv6" => ColType::Ipv6,
        _ => return None,
    })
}

/// Splits `'a' = 1, 'b,c' = 2` at the commas outside quotes.
fn split_items(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut esc) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' => esc = true,
            '\'' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A value as an unsigned number: addresses as their number (IPv4 in
/// network order read big-endian), text parsed, anything else 0.
fn as_u64(v: &Val<'_>) -> u64 {
    match *v {
        Val::UInt(x) => x,
        Val::Int(x) => x as u64,
        Val::Bool(b) => u64::from(b),
        Val::V4(a) => u64::from(u32::from_be_bytes(a)),
        Val::Text(t) | Val::RawStr(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .map_or(0, |x| x as u64),
        _ => 0,
    }
}

fn v6_of(v: &Val<'_>) -> [u8; 16] {
    match *v {
        Val::V4(a) => Ipv4Addr::from(a).to_ipv6_mapped().octets(),
        Val::V6(a) => a,
        Val::Text(t) | Val::RawStr(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| {
                s.parse::<Ipv6Addr>()
                    .ok()
                    .or_else(|| s.parse::<Ipv4Addr>().ok().map(|a| a.to_ipv6_mapped()))
            })
            .map_or([0; 16], |a| a.octets()),
        _ => [0; 16],
    }
}

fn text_of(v: &Val<'_>, out: &mut Vec<u8>) {
    match *v {
        Val::Null => {}
        Val::Int(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Val::UInt(x) => out.extend_from_slice(x.to_string().as_bytes()),
        Val::Bool(b) => out.push(if b { b'1' } else { b'0' }),
        Val::V4(a) => out.extend_from_slice(Ipv4Addr::from(a).to_string().as_bytes()),
        Val::V6(a) => out.extend_from_slice(Ipv6Addr::from(a).to_string().as_bytes()),
        Val::Text(t) | Val::RawStr(t) | Val::Raw(t) => out.extend_from_slice(t),
    }
}

fn leb128(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Appends `v` encoded for a column of type `t`.
pub fn encode(t: &ColType, v: &Val<'_>, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    let le =
        |out: &mut Vec<u8>, x: u64, w: u8| out.extend_from_slice(&x.to_le_bytes()[..w as usize]);
    match t {
        ColType::Nullable(inner) => {
            if matches!(v, Val::Null) {
                out.push(1);
            } else {
                out.push(0);
                encode(inner, v, out, scratch);
            }
        }
        ColType::UInt(w) | ColType::Int(w) => le(out, as_u64(v), *w),
        ColType::DateTime | ColType::Ipv4 => le(out, as_u64(v), 4),
        ColType::Date => le(out, as_u64(v) / 86_400, 2),
        ColType::DateTime64(p) => {
            let scale = 10u64.saturating_pow(*p);
            le(out, as_u64(v).saturating_mul(scale), 8)
        }
        ColType::F32 => out.extend_from_slice(&(as_f64(v) as f32).to_le_bytes()),
        ColType::F64 => out.extend_from_slice(&as_f64(v).to_le_bytes()),
        ColType::Ipv6 => out.extend_from_slice(&v6_of(v)),
        ColType::Str => {
            scratch.clear();
            text_of(v, scratch);
            leb128(scratch.len(), out);
            out.extend_from_slice(scratch);
        }
        ColType::Fixed(n) => {
            scratch.clear();
            match v {
                Val::V4(_) | Val::V6(_) if *n == 16 => scratch.extend_from_slice(&v6_of(v)),
                Val::V4(a) if *n == 4 => scratch.extend_from_slice(a),
                _ => text_of(v, scratch),
            }
            scratch.resize(*n, 0);
            out.extend_from_slice(scratch);
        }
        ColType::Enum(w, vals) => {
            let x = match v {
                Val::Text(t) | Val::RawStr(t) => vals
                    .iter()
                    .find(|(name, _)| name.as_bytes() == *t)
                    .map(|(_, x)| *x),
                Val::Null => None,
                other => Some(as_u64(other) as i16),
            };
            // An unknown name takes the first value, so the row still goes in.
            let x = x.or_else(|| vals.first().map(|(_, x)| *x)).unwrap_or(0);
            le(out, x as u16 as u64, *w)
        }
    }
}

fn as_f64(v: &Val<'_>) -> f64 {
    match *v {
        Val::Int(x) => x as f64,
        Val::Text(t) | Val::RawStr(t) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0.0),
        ref o => as_u64(o) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(t: &str, v: Val<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&parse_type(t).expect(t), &v, &mut out, &mut Vec::new());
        out
    }

    #[test]
    fn types() {
        assert_eq!(
            parse_type("Nullable(UInt16)"),
            Some(ColType::Nullable(Box::new(ColType::UInt(2))))
        );
        assert_eq!(parse_type("LowCardinality(String)"), Some(ColType::Str));
        assert_eq!(parse_type("DateTime('UTC')"), Some(ColType::DateTime));
        assert_eq!(
            parse_type("DateTime64(3, 'UTC')"),
            Some(ColType::DateTime64(3))
        );
        assert_eq!(
            parse_type(r"Enum8('a,b' = 1, 'it\'s' = -2)"),
            Some(ColType::Enum(
                1,
                vec![("a,b".into(), 1), ("it's".into(), -2)]
            ))
        );
        assert_eq!(parse_type("Array(UInt8)"), None);
    }

    #[test]
    fn values() {
        assert_eq!(enc("UInt16", Val::UInt(0x1234)), [0x34, 0x12]);
        assert_eq!(enc("Int8", Val::Int(-1)), [0xff]);
        assert_eq!(enc("Nullable(UInt8)", Val::Null), [1]);
        assert_eq!(enc("Nullable(UInt8)", Val::UInt(7)), [0, 7]);
        assert_eq!(enc("UInt8", Val::Null), [0]);
        assert_eq!(enc("String", Val::Text(b"ab")), [2, b'a', b'b']);
        assert_eq!(enc("String", Val::V4([10, 0, 0, 1])), b"\x0810.0.0.1");
        assert_eq!(enc("UInt32", Val::V4([10, 0, 0, 1])), [1, 0, 0, 10]);
        let mapped = enc("FixedString(16)", Val::V4([10, 0, 0, 1]));
        assert_eq!(
            mapped,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]
        );
        assert_eq!(enc("IPv6", Val::Text(b"10.0.0.1")), mapped);
        assert_eq!(enc("FixedString(3)", Val::Text(b"abcd")), b"abc");
        assert_eq!(enc("Enum8('in' = 1, 'out' = 2)", Val::Text(b"out")), [2]);
        assert_eq!(enc("Enum8('in' = 1, 'out' = 2)", Val::Text(b"x")), [1]);
        assert_eq!(enc("DateTime64(3)", Val::UInt(2)), 2000u64.to_le_bytes());
        assert_eq!(enc("Date", Val::UInt(86_400 * 3 + 5)), [3, 0]);
        let long = vec![b'x'; 300];
        let e = enc("String", Val::Text(&long));
        assert_eq!(&e[..2], [0xac, 0x02]);
        assert_eq!(e.len(), 302);
    }
}
