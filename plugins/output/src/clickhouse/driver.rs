//! The ClickHouse server behind the SQL layer's transport: columns from
//! `DESCRIBE TABLE`, rows as one `INSERT … FORMAT RowBinary` POST per batch.
//!
//! Retries: a batch whose POST broke after the server may have read it is
//! sent again whole. On a server that knows `insert_deduplication_token`
//! (22.2 and later) the POST carries a token derived from the rows' bytes,
//! so a table with insert deduplication (Replicated*, or MergeTree with
//! `non_replicated_deduplication_window`) keeps one copy. 18.16 has no token
//! and deduplicates only Replicated tables (by block checksum), so on a
//! plain MergeTree there a retry after a broken answer can double a batch.

use super::http::{encode_query, Endpoint, HttpError};
use super::rowbinary::{encode, parse_type, ColType};
use crate::sql::driver::{DbError, Driver};
use crate::sql::row::Val;
use std::collections::HashMap;

/// Whether retries carry a deduplication token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedup {
    /// When the server knows the setting.
    Auto,
    /// Never.
    Off,
}

/// One ClickHouse table over HTTP.
pub struct ChDriver {
    ep: Endpoint,
    database: String,
    desc: String,
    dedup: Dedup,
    /// Set by a successful `connect`: the server's version.
    version: Option<(u32, u32)>,
    /// Column types of the last `columns` call.
    types: HashMap<String, ColType>,
    body: Vec<u8>,
    scratch: Vec<u8>,
    /// `create=`: the schema a missing table is made from.
    pub create: Option<super::schema::Schema>,
}

fn away(e: HttpError) -> DbError {
    DbError::Away(e.to_string())
}

/// Quotes an identifier with backquotes, as ClickHouse does.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('\\', "\\\\").replace('`', "\\`"))
}

/// Whether a server error is code 60, UNKNOWN_TABLE: `Code: 60, e.displayText()`
/// on 18.16, `Code: 60. DB::Exception` on current servers (not 600-something).
fn unknown_table(body: &str) -> bool {
    body.match_indices("Code: 60")
        .any(|(i, m)| !body[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Undoes TabSeparated's escapes.
fn tsv_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}

/// FNV-1a over the bytes: stable across runs and releases, so a batch
/// read back from the spool after a restart gets the token it had.
fn fnv(data: &[u8], seed: u64) -> u64 {
    let mut h = seed;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The deduplication token of an INSERT body.
pub fn token_of(body: &[u8]) -> String {
    format!(
        "rulogd-{}-{:016x}{:016x}",
        body.len(),
        fnv(body, 0xcbf2_9ce4_8422_2325),
        fnv(body, 0x6c62_272e_07bb_0142)
    )
}

impl ChDriver {
    /// A driver for `database` on `ep`; nothing is connected yet.
    pub fn new(ep: Endpoint, database: &str, table: &str, dedup: Dedup) -> Self {
        ChDriver {
            desc: format!("clickhouse http://{}/ {database}.{table}", ep.authority),
            ep,
            database: database.to_string(),
            dedup,
            version: None,
            types: HashMap::new(),
            body: Vec::new(),
            scratch: Vec::new(),
            create: None,
        }
    }

    fn query(&self, q: &str) -> Result<String, HttpError> {
        let body = self.ep.post(
            &format!("database={}", encode_query(&self.database)),
            q.as_bytes(),
        )?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Whether inserts carry `insert_deduplication_token`.
    pub fn uses_token(&self) -> bool {
        self.dedup == Dedup::Auto && self.version.is_some_and(|v| v >= (22, 2))
    }

    /// Whether `deduplicate=auto`.
    pub fn dedup_auto(&self) -> bool {
        self.dedup == Dedup::Auto
    }

    /// The server's version, once connected.
    pub fn version(&self) -> Option<(u32, u32)> {
        self.version
    }

    /// Encodes `rows` for `cols` into the request body.
    fn encode_rows(&mut self, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError> {
        let types: Vec<&ColType> = cols
            .iter()
            .map(|c| {
                self.types
                    .get(c)
                    .ok_or_else(|| DbError::Away(format!("column {c} is not known")))
            })
            .collect::<Result<_, _>>()?;
        self.body.clear();
        let n = cols.len().max(1);
        for row in rows.chunks(n) {
            for (t, v) in types.iter().zip(row) {
                encode(t, v, &mut self.body, &mut self.scratch);
            }
        }
        Ok(())
    }
}

impl Driver for ChDriver {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn connect(&mut self) -> Result<(), DbError> {
        let v = self.query("SELECT version()").map_err(away)?;
        let mut it = v.trim().split('.').map(|x| x.parse::<u32>().unwrap_or(0));
        self.version = Some((it.next().unwrap_or(0), it.next().unwrap_or(0)));
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.version.is_some()
    }

    fn close(&mut self) {
        self.version = None;
    }

    fn columns(&mut self, table: &str) -> Result<Vec<String>, DbError> {
        let describe = format!(
            "DESCRIBE TABLE {}.{} FORMAT TabSeparated",
            ident(&self.database),
            ident(table)
        );
        let text = match (self.query(&describe), self.create) {
            (Err(HttpError::Status { body, .. }), Some(schema)) if unknown_table(&body) => {
                self.query(&schema.create_sql(&self.database, table))
                    .map_err(away)?;
                log::info!("{}: made table {table} ({schema:?} schema)", self.desc);
                self.query(&describe).map_err(away)?
            }
            (r, _) => r.map_err(away)?,
        };
        let mut cols = Vec::new();
        self.types.clear();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let f: Vec<String> = line.split('\t').map(tsv_unescape).collect();
            let (name, ty) = match (f.first(), f.get(1)) {
                (Some(n), Some(t)) => (n.clone(), t.clone()),
                _ => continue,
            };
            // Computed columns cannot be inserted into.
            if matches!(f.get(2).map(String::as_str), Some("MATERIALIZED" | "ALIAS")) {
                continue;
            }
            // A nested subcolumn (a.b in DESCRIBE of newer servers) is not ours.
            let t = parse_type(&ty).ok_or_else(|| {
                DbError::Away(format!(
                    "table `{table}`: column {name} has type {ty}, which CLICKHOUSE cannot write"
                ))
            })?;
            self.types.insert(name.clone(), t);
            cols.push(name);
        }
        Ok(cols)
    }

    fn create_like(&mut self, _table: &str, _template: &str) -> Result<(), DbError> {
        Err(DbError::Away(
            "CLICKHOUSE partitions on the server; table names take no strftime fields".into(),
        ))
    }

    fn write(&mut self, table: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.encode_rows(cols, rows)?;
        let list: Vec<String> = cols.iter().map(|c| ident(c)).collect();
        let q = format!(
            "INSERT INTO {}.{}({}) FORMAT RowBinary",
            ident(&self.database),
            ident(table),
            list.join(",")
        );
        let mut params = format!(
            "database={}&query={}",
            encode_query(&self.database),
            encode_query(&q)
        );
        if self.uses_token() {
            params.push_str("&insert_deduplicate=1&insert_deduplication_token=");
            params.push_str(&token_of(&self.body));
        }
        match self.ep.post(&params, &self.body) {
            Ok(_) => Ok(()),
            Err(e) => {
                // The next attempt starts with a fresh version probe.
                self.version = None;
                Err(away(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_and_differ() {
        assert_eq!(token_of(b"abc"), token_of(b"abc"));
        assert_ne!(token_of(b"abc"), token_of(b"abd"));
        assert!(token_of(b"").starts_with("rulogd-0-"));
    }

    #[test]
    fn only_code_60_is_a_missing_table() {
        assert!(unknown_table(
            "Code: 60, e.displayText() = DB::Exception: Table default.x doesn't exist."
        ));
        assert!(unknown_table(
            "Code: 60. DB::Exception: Table default.x does not exist. (UNKNOWN_TABLE)"
        ));
        assert!(!unknown_table("Code: 602. DB::Exception: something else"));
        assert!(!unknown_table(
            "Code: 516. DB::Exception: default: Authentication failed"
        ));
    }

    #[test]
    fn escapes() {
        assert_eq!(tsv_unescape(r"Enum8(\'a\' = 1)"), "Enum8('a' = 1)");
        assert_eq!(ident("a`b"), "`a\\`b`");
    }
}
