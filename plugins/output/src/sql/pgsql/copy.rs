//! PGSQL's wire forms: values as ulogd2 writes them, as text parameters,
//! COPY text fields and binary COPY tuples, and the two COPY loops.

use super::sort;
use crate::sql::driver::DbError;
use crate::sql::row::Val;
use postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
use postgres::GenericClient;
use std::io::Write;

/// A value bound as text, which the server parses by the column's or the
/// argument's type, exactly as it reads ulogd's SQL literals.
#[derive(Debug)]
pub(super) struct Text<'a>(pub(super) Option<&'a [u8]>);

impl ToSql for Text<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            None => Ok(IsNull::Yes),
            Some(b) => {
                out.extend_from_slice(b);
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// Appends the text of `v` as ulogd2 writes it; false for NULL.
pub fn format(v: &Val<'_>, utf8: bool, out: &mut Vec<u8>) -> bool {
    let mut num = itoa::Buffer::new();
    match *v {
        Val::Null => return false,
        Val::Int(i) => out.extend_from_slice(num.format(i).as_bytes()),
        Val::UInt(u) => out.extend_from_slice(num.format(u).as_bytes()),
        Val::Bool(b) => out.push(if b { b'1' } else { b'0' }),
        Val::V4(a) => out.extend_from_slice(num.format(Val::ulogd_u32(&a)).as_bytes()),
        Val::V6(a) => out.extend_from_slice(num.format(Val::ulogd_u32(&a)).as_bytes()),
        Val::Text(t) | Val::RawStr(t) => match std::str::from_utf8(t) {
            Ok(_) => out.extend_from_slice(t),
            // A UTF-8 database cannot store invalid bytes; ulogd's insert
            // fails and loses the row, rulogd writes U+FFFD instead.
            Err(_) if utf8 => out.extend_from_slice(String::from_utf8_lossy(t).as_bytes()),
            Err(_) => out.extend_from_slice(t),
        },
        Val::Raw(r) => {
            out.extend_from_slice(b"\\x");
            for b in r {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
    }
    true
}

/// Appends `v` as a field of COPY's text format.
fn copy_field(v: &Val<'_>, utf8: bool, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    scratch.clear();
    if !format(v, utf8, scratch) {
        out.extend_from_slice(b"\\N");
        return;
    }
    for &c in scratch.iter() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(c),
        }
    }
}

const OID_BOOL: u32 = 16;
const OID_BYTEA: u32 = 17;
const OID_INT8: u32 = 20;
const OID_INT2: u32 = 21;
const OID_INT4: u32 = 23;
const OID_TEXT: u32 = 25;
const OID_INET: u32 = 869;
const OID_BPCHAR: u32 = 1042;
const OID_VARCHAR: u32 = 1043;

/// The number ulogd2 would print for `v`, if it is a number.
pub(super) fn number(v: &Val<'_>) -> Option<i128> {
    Some(match *v {
        Val::Int(i) => i128::from(i),
        Val::UInt(u) => i128::from(u),
        Val::Bool(b) => i128::from(b),
        Val::V4(a) => i128::from(Val::ulogd_u32(&a)),
        Val::V6(a) => i128::from(Val::ulogd_u32(&a)),
        _ => return None,
    })
}

/// Appends `v` as a binary COPY field of type `oid`. `Ok(false)`: no plain
/// binary form (the batch goes as text, where the server decides); `Data`:
/// the server would refuse the text too (a number out of range).
fn bin_field(v: &Val<'_>, oid: u32, utf8: bool, out: &mut Vec<u8>) -> Result<bool, DbError> {
    fn put(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
        out.extend_from_slice(b);
    }
    if *v == Val::Null {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(true);
    }
    let range = |x: i128, lo: i128, hi: i128, ty: &str| {
        if x < lo || x > hi {
            Err(DbError::Data(format!(
                "value {x} is out of range for type {ty}"
            )))
        } else {
            Ok(())
        }
    };
    match oid {
        OID_INT2 | OID_INT4 | OID_INT8 => {
            let Some(x) = number(v) else { return Ok(false) };
            match oid {
                OID_INT2 => {
                    range(x, i16::MIN.into(), i16::MAX.into(), "smallint")?;
                    put(out, &(x as i16).to_be_bytes());
                }
                OID_INT4 => {
                    range(x, i32::MIN.into(), i32::MAX.into(), "integer")?;
                    put(out, &(x as i32).to_be_bytes());
                }
                _ => {
                    range(x, i64::MIN.into(), i64::MAX.into(), "bigint")?;
                    put(out, &(x as i64).to_be_bytes());
                }
            }
        }
        OID_BOOL => match number(v) {
            Some(x @ (0 | 1)) => put(out, &[x as u8]),
            Some(x) => {
                return Err(DbError::Data(format!(
                    "invalid input syntax for type boolean: \"{x}\""
                )))
            }
            None => return Ok(false),
        },
        OID_TEXT | OID_VARCHAR | OID_BPCHAR => {
            if matches!(v, Val::Raw(_)) {
                return Ok(false);
            }
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            format(v, utf8, out);
            let len = (out.len() - at - 4) as i32;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        OID_INET => {
            let (Val::Text(t) | Val::RawStr(t)) = v else {
                return Ok(false);
            };
            let Some(ip) = std::str::from_utf8(t)
                .ok()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            else {
                return Ok(false);
            };
            // inet's binary form: family (2 or 3), bits, is_cidr, length, address.
            match ip {
                std::net::IpAddr::V4(a) => {
                    let mut b = vec![2, 32, 0, 4];
                    b.extend_from_slice(&a.octets());
                    put(out, &b);
                }
                std::net::IpAddr::V6(a) => {
                    let mut b = vec![3, 128, 0, 16];
                    b.extend_from_slice(&a.octets());
                    put(out, &b);
                }
            }
        }
        OID_BYTEA => match v {
            Val::Raw(r) => put(out, r),
            _ => return Ok(false),
        },
        _ => return Ok(false),
    }
    Ok(true)
}

/// Appends `rows` as binary COPY tuples; `Ok(false)` when some value has
/// no plain binary form.
fn encode_rows(
    rows: &[Val<'_>],
    types: &[u32],
    utf8: bool,
    out: &mut Vec<u8>,
) -> Result<bool, DbError> {
    let n = types.len().max(1);
    for row in rows.chunks(n) {
        out.extend_from_slice(&(row.len() as i16).to_be_bytes());
        for (v, &oid) in row.iter().zip(types) {
            if !bin_field(v, oid, utf8, out)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// COPY in text format.
pub(super) fn copy_text(
    tx: &mut impl GenericClient,
    sql: &str,
    rows: &[Val<'_>],
    n: usize,
    utf8: bool,
    buf: &mut Vec<u8>,
) -> Result<bool, DbError> {
    buf.clear();
    let mut scratch = Vec::with_capacity(64);
    for row in rows.chunks(n) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            copy_field(v, utf8, &mut scratch, buf);
        }
        buf.push(b'\n');
    }
    let mut w = tx.copy_in(sql).map_err(sort)?;
    w.write_all(buf).map_err(|e| DbError::Away(e.to_string()))?;
    w.finish().map_err(sort)?;
    Ok(true)
}

/// Binary COPY (the server parses no text), streamed in chunks so the
/// server works on one while the next is encoded. `Ok(false)` when a value
/// has no plain binary form: the transaction is rolled back and the caller
/// sends the batch as text.
pub(super) fn copy_binary(
    tx: &mut impl GenericClient,
    sql: &str,
    rows: &[Val<'_>],
    types: &[u32],
    utf8: bool,
    buf: &mut Vec<u8>,
) -> Result<bool, DbError> {
    const CHUNK_ROWS: usize = 256;
    let n = types.len().max(1);
    let mut chunks = rows.chunks(n * CHUNK_ROWS).peekable();
    buf.clear();
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&[0; 8]);
    // The first chunk is encoded before the COPY starts: a batch that has
    // to go as text is usually found out there.
    if !encode_rows(chunks.next().unwrap_or(&[]), types, utf8, buf)? {
        return Ok(false);
    }
    let mut w = tx.copy_in(sql).map_err(sort)?;
    loop {
        if chunks.peek().is_none() {
            buf.extend_from_slice(&(-1i16).to_be_bytes());
        }
        w.write_all(buf).map_err(|e| DbError::Away(e.to_string()))?;
        let Some(chunk) = chunks.next() else { break };
        buf.clear();
        if !encode_rows(chunk, types, utf8, buf)? {
            // Dropping the writer unfinished aborts the COPY.
            return Ok(false);
        }
    }
    // tokio-postgres answers at CommandComplete, before the commit: only the
    // caller's COMMIT says the rows are in.
    w.finish().map_err(sort)?;
    Ok(true)
}
