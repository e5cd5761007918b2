//! MYSQL: rows into a MySQL or MariaDB table with ulogd2's options and
//! schema discovery: the columns of `table` name the keys (`_` for `.`),
//! the first column is the auto-increment id and is skipped, as ulogd2
//! skips it, and `procedure` says how rows go in (`INSERT`, `INSERT INTO
//! …`, `CALL p` or a function such as ulogd2's `INSERT_PACKET_FULL`).
//!
//! Values are what ulogd2's SQL text carries (addresses as ulogd2's number,
//! booleans as 0/1, IP2BIN's `0x…` as the bytes of that hex literal) but
//! travel as bound parameters of prepared statements, never spliced into
//! SQL; plain inserts go as multi-row `INSERT … VALUES (…),(…)`, a batch
//! per transaction.

use super::config::{server_options, Procedure, SqlConfig};
use super::driver::{DbError, Driver};
use super::output::build_output;
use super::row::Val;
use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Params, TxOpts, Value};
use rulogd_plugin::{BuildCtx, BuildError, OptionDef, Output};
use std::time::Duration;

static OPTIONS: &[OptionDef] = server_options![
    OptionDef::str("db", "", "Database name").mandatory(),
    OptionDef::str(
        "host",
        "localhost",
        "Server host; localhost or a path starting with / is a unix socket",
    ),
    OptionDef::str("user", "", "User name").mandatory(),
    OptionDef::str("pass", "", "Password"),
    OptionDef::int("port", "0", "Server port (0: 3306)").range(0, 65535),
];

rulogd_plugin::plugin! {
    Output "MYSQL" wildcard (build): "Writes records as rows of a MySQL/MariaDB table (columns name the keys)";
    options OPTIONS;
}

/// How long a connection attempt may take when `connect_timeout` is 0.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one statement may take before the server counts as away: a
/// hung server must not hold the writer (and, behind it, the spool) forever.
const IO_TIMEOUT: Duration = Duration::from_secs(120);
/// Where libmysqlclient looks for the server when the host is `localhost`
/// (Debian's default socket).
const DEFAULT_SOCKET: &str = "/run/mysqld/mysqld.sock";
/// The protocol's limit on placeholders in one statement.
const MAX_PARAMS: usize = 65_535;
/// Most rows in one multi-row INSERT.
const MAX_ROWS: usize = 1024;

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let o = ctx.options;
    let cfg = SqlConfig::from_options(o)?;
    let port = match o.int("port") {
        0 => 3306,
        p => u16::try_from(p).map_err(|_| BuildError::option("port", "must be 1..65535"))?,
    };
    let host = o.str("host");
    let timeout = match cfg.connect_timeout {
        0 => CONNECT_TIMEOUT,
        s => Duration::from_secs(s),
    };
    let mut opts = OptsBuilder::new()
        .user(Some(o.str("user")))
        .db_name(Some(o.str("db")))
        .tcp_connect_timeout(Some(timeout))
        .read_timeout(Some(IO_TIMEOUT))
        .write_timeout(Some(IO_TIMEOUT))
        // Whatever the host, stay on the transport it names: the client's
        // switch to the server's socket path would leave a network namespace.
        .prefer_socket(false);
    if !o.str("pass").is_empty() {
        opts = opts.pass(Some(o.str("pass")));
    }
    // As libmysqlclient: `localhost` means the unix socket.
    let desc = if host.starts_with('/') || host == "localhost" || host.is_empty() {
        let path = if host.starts_with('/') {
            host
        } else {
            DEFAULT_SOCKET
        };
        opts = opts.socket(Some(path));
        format!("mysql {} on {path}", o.str("db"))
    } else {
        opts = opts.ip_or_hostname(Some(host)).tcp_port(port);
        format!("mysql {} on {host}:{port}", o.str("db"))
    };
    let procedure = cfg.procedure.clone();
    build_output(ctx, "MYSQL", cfg, move || My {
        opts,
        desc,
        procedure,
        conn: None,
        binary: Vec::new(),
        cols: Vec::new(),
    })
}

/// A MySQL or MariaDB database.
pub struct My {
    opts: OptsBuilder,
    desc: String,
    procedure: Procedure,
    conn: Option<Conn>,
    /// Columns last read (the template's) and whether each stores bytes
    /// (binary, varbinary, blob): text for the others must be UTF-8.
    cols: Vec<String>,
    binary: Vec<bool>,
}

/// Quotes a MySQL identifier.
fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn sort(e: mysql::Error) -> DbError {
    match &e {
        mysql::Error::MySqlError(m) => {
            // Data exceptions and integrity violations concern the rows, as
            // do the strict-mode refusals MySQL files under HY000.
            let data = m.state.starts_with("22")
                || m.state.starts_with("23")
                || matches!(m.code, 1264 | 1265 | 1292 | 1366 | 1406);
            let text = format!("{} ({}): {}", m.code, m.state, m.message);
            if data {
                DbError::Data(text)
            } else {
                DbError::Away(text)
            }
        }
        _ => DbError::Away(e.to_string()),
    }
}

/// The bytes of `0x…` (an even number of hex digits), as MySQL reads the
/// hex literal ulogd splices in.
fn hex_literal(t: &[u8]) -> Option<Vec<u8>> {
    let digits = t.strip_prefix(b"0x").or_else(|| t.strip_prefix(b"0X"))?;
    if digits.is_empty() || digits.len() % 2 != 0 {
        return None;
    }
    let nib = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    digits
        .chunks(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// `v` as the parameter ulogd's SQL text would amount to; `binary` when
/// the column stores bytes as they are.
pub fn param(v: &Val<'_>, binary: bool) -> Value {
    match *v {
        Val::Null => Value::NULL,
        Val::Int(i) => Value::Int(i),
        Val::UInt(u) => Value::UInt(u),
        Val::Bool(b) => Value::Int(i64::from(b)),
        Val::V4(a) => Value::UInt(u64::from(Val::ulogd_u32(&a))),
        Val::V6(a) => Value::UInt(u64::from(Val::ulogd_u32(&a))),
        Val::RawStr(t) => match hex_literal(t) {
            Some(b) => Value::Bytes(b),
            None => text(t, binary),
        },
        Val::Text(t) => text(t, binary),
        Val::Raw(r) => Value::Bytes(r.to_vec()),
    }
}

fn text(t: &[u8], binary: bool) -> Value {
    match std::str::from_utf8(t) {
        Ok(_) => Value::Bytes(t.to_vec()),
        // A text column in a UTF-8 connection cannot take invalid bytes
        // (strict mode refuses the row, ulogd loses it): U+FFFD instead.
        Err(_) if !binary => Value::Bytes(String::from_utf8_lossy(t).into_owned().into_bytes()),
        Err(_) => Value::Bytes(t.to_vec()),
    }
}

impl My {
    fn conn(&mut self) -> Result<&mut Conn, DbError> {
        self.conn
            .as_mut()
            .ok_or_else(|| DbError::Away("not connected".into()))
    }

    /// Whether column `c` of the written table stores bytes.
    fn is_binary(&self, c: &str) -> bool {
        self.cols
            .iter()
            .position(|x| x == c)
            .is_some_and(|i| self.binary[i])
    }

    fn params(&self, cols: &[String], rows: &[Val<'_>]) -> Vec<Value> {
        let n = cols.len().max(1);
        let bin: Vec<bool> = cols.iter().map(|c| self.is_binary(c)).collect();
        rows.iter()
            .enumerate()
            .map(|(i, v)| param(v, bin[i % n]))
            .collect()
    }

    /// Multi-row INSERTs in one transaction. Chunks are powers of two, so a
    /// handful of prepared statements (cached by the client) serve any batch.
    fn insert_values(
        &mut self,
        head: &str,
        cols: &[String],
        rows: &[Val<'_>],
    ) -> Result<(), DbError> {
        let n = cols.len().max(1);
        let list: Vec<String> = cols.iter().map(|c| ident(c)).collect();
        let one = format!("({})", vec!["?"; n].join(","));
        let limit = (MAX_PARAMS / n).clamp(1, MAX_ROWS);
        let top = 1usize << (usize::BITS - 1 - limit.leading_zeros());
        let mut params = self.params(cols, rows).into_iter();
        let mut left = rows.len() / n;
        let mut tx = self
            .conn()?
            .start_transaction(TxOpts::default())
            .map_err(sort)?;
        while left > 0 {
            let mut k = top;
            while k > left {
                k /= 2;
            }
            let sql = format!(
                "{head} ({}) VALUES {}",
                list.join(","),
                vec![one.as_str(); k].join(",")
            );
            let chunk: Vec<Value> = params.by_ref().take(k * n).collect();
            tx.exec_drop(sql, Params::Positional(chunk)).map_err(sort)?;
            left -= k;
        }
        tx.commit().map_err(sort)
    }

    /// `SELECT f(…)` or `CALL p(…)` once per row, in one transaction.
    fn call_each(
        &mut self,
        verb: &str,
        name: &str,
        cols: &[String],
        rows: &[Val<'_>],
    ) -> Result<(), DbError> {
        let n = cols.len().max(1);
        let sql = format!("{verb} {name}({})", vec!["?"; cols.len()].join(","));
        let params = self.params(cols, rows);
        let mut tx = self
            .conn()?
            .start_transaction(TxOpts::default())
            .map_err(sort)?;
        let st = tx.prep(&sql).map_err(sort)?;
        for row in params.chunks(n) {
            tx.exec_drop(&st, Params::Positional(row.to_vec()))
                .map_err(sort)?;
        }
        tx.commit().map_err(sort)
    }
}

impl Driver for My {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn connect(&mut self) -> Result<(), DbError> {
        let c = Conn::new(self.opts.clone()).map_err(sort)?;
        self.conn = Some(c);
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    fn close(&mut self) {
        self.conn = None;
    }

    fn columns(&mut self, table: &str) -> Result<Vec<String>, DbError> {
        let rows: Vec<(String, String)> = self
            .conn()?
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? \
                 ORDER BY ORDINAL_POSITION",
                (table,),
            )
            .map_err(sort)?;
        if rows.is_empty() {
            return Err(DbError::Away(format!("table {table} not found")));
        }
        // ulogd: the first column is the auto-increment id, never a key.
        let (cols, binary) = rows
            .into_iter()
            .skip(1)
            .map(|(c, t)| {
                let t = t.to_ascii_lowercase();
                (c, t.contains("binary") || t.contains("blob"))
            })
            .unzip();
        self.cols = cols;
        self.binary = binary;
        Ok(self.cols.clone())
    }

    fn create_like(&mut self, table: &str, template: &str) -> Result<(), DbError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} LIKE {}",
            ident(table),
            ident(template)
        );
        self.conn()?.query_drop(sql).map_err(sort)
    }

    fn write(&mut self, table: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self.procedure.clone() {
            Procedure::Select(f) => self.call_each("SELECT", &f, cols, rows),
            Procedure::Call(p) => self.call_each("CALL", &p, cols, rows),
            Procedure::InsertText(t) => self.insert_values(&t, cols, rows),
            Procedure::Insert => {
                self.insert_values(&format!("INSERT INTO {}", ident(table)), cols, rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_literals_become_their_bytes() {
        assert_eq!(hex_literal(b"0x00ff7F01"), Some(vec![0, 0xff, 0x7f, 1]));
        assert_eq!(hex_literal(b"0x"), None);
        assert_eq!(hex_literal(b"0x123"), None);
        assert_eq!(hex_literal(b"0xzz"), None);
        assert_eq!(hex_literal(b"1234"), None);
    }

    #[test]
    fn values_are_what_ulogd_writes() {
        assert_eq!(param(&Val::Bool(true), false), Value::Int(1));
        let v4 = Val::V4([127, 0, 0, 1]);
        assert_eq!(
            param(&v4, false),
            Value::UInt(u64::from(u32::from_ne_bytes([127, 0, 0, 1])))
        );
        assert_eq!(
            param(&Val::RawStr(b"0x0a0b"), true),
            Value::Bytes(vec![10, 11])
        );
        assert_eq!(
            param(&Val::RawStr(b"abc"), false),
            Value::Bytes(b"abc".to_vec())
        );
        assert_eq!(
            param(&Val::Text(b"a\xffb"), false),
            Value::Bytes("a\u{fffd}b".as_bytes().to_vec())
        );
        assert_eq!(
            param(&Val::Text(b"a\xffb"), true),
            Value::Bytes(b"a\xffb".to_vec())
        );
        assert_eq!(param(&Val::Null, true), Value::NULL);
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(ident("a`b"), "`a``b`");
    }
}
