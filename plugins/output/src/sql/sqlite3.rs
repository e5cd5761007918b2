//! SQLITE3: rows into an SQLite table, as ulogd2's SQLITE3 writes them:
//! every column of `table` (read with `select *`, `_` in a name standing for
//! `.` in a key) takes the value of that key, or NULL.
//!
//! Beyond ulogd2: rows are written in batched transactions on a writer
//! thread with the database in WAL mode, a busy database is retried instead
//! of losing the row, and values keep their full width (ulogd 2.0.8 binds
//! 32-bit unsigned and 64-bit signed keys as a signed 32-bit int).

use super::common::{build_output, ident, DbError, Driver, SqlConfig, Val, OWN_OPTIONS};
use rulogd_plugin::{
    BuildCtx, BuildError, Builder, OptionDef, Output, PluginInfo, PluginKind, Registration,
};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode};
use std::time::Duration;

static OPTIONS: [OptionDef; 7] = [
    OptionDef::str("db", "", "SQLite database file")
        .check(rulogd_plugin::options::check_not_empty)
        .mandatory(),
    OptionDef::str("table", "", "Table whose columns name the keys to write").mandatory(),
    OptionDef::int(
        "create",
        "0",
        "1: create a missing table with rulogd's packet columns (conf/sql/sqlite3.sql)",
    )
    .flag(),
    OWN_OPTIONS[0],
    OWN_OPTIONS[1],
    OWN_OPTIONS[2],
    OWN_OPTIONS[3],
];

/// `--info` description of SQLITE3.
pub static INFO: PluginInfo = PluginInfo {
    name: "SQLITE3",
    kind: PluginKind::Output,
    summary: "Writes records as rows of an SQLite table (columns name the keys)",
    options: &OPTIONS,
    input_keys: &[],
    output_keys: &[],
    wildcard_input: true,
};

/// SQLITE3's registration for the core.
pub const REGISTRATION: Registration = Registration {
    info: &INFO,
    builder: Builder::Output(build),
};

/// How long a write waits for another connection's lock before the batch
/// is retried later (ulogd waits 300 ms, then drops the row).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let cfg = SqlConfig::from_options(ctx.options)?;
    let path = ctx.options.str("db").to_string();
    if path.is_empty() {
        return Err(BuildError::option("db", "must not be empty"));
    }
    let create = ctx.options.int("create") != 0;
    build_output(ctx, "SQLITE3", cfg, move || {
        let mut d = Sqlite::new(path);
        d.create = create;
        d
    })
}

/// rulogd's packet table, for `create=1`.
const PACKET_TABLE_SQL: &str = include_str!("../../../../conf/sql/sqlite3.sql");

/// The `create table` statement of the packet table, named `table`.
fn packet_table(table: &str) -> Option<String> {
    let start = PACKET_TABLE_SQL.find("CREATE TABLE IF NOT EXISTS ulog_pkt (")?;
    let body = &PACKET_TABLE_SQL[start..];
    let end = body.find(");")?;
    Some(body[..end + 2].replacen("ulog_pkt", &ident(table), 1))
}

/// An SQLite database file.
pub struct Sqlite {
    path: String,
    desc: String,
    conn: Option<Connection>,
    /// Create a missing table (`create=1`).
    pub create: bool,
}

impl Sqlite {
    /// A driver for the file `path` (opened by `connect`).
    pub fn new(path: String) -> Self {
        Sqlite {
            desc: format!("sqlite3 {path}"),
            path,
            conn: None,
            create: false,
        }
    }

    fn conn(&mut self) -> Result<&mut Connection, DbError> {
        self.conn
            .as_mut()
            .ok_or_else(|| DbError::Away("not open".into()))
    }
}

fn sort(e: rusqlite::Error) -> DbError {
    let text = e.to_string();
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => {
            DbError::Data(text)
        }
        _ => DbError::Away(text),
    }
}

/// A value bound the way ulogd's SQLITE3 binds it, without its truncations.
struct Bind<'a>(Val<'a>);

impl rusqlite::ToSql for Bind<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(i),
            // u64 beyond i64 wraps, as ulogd's sqlite3_bind_int64 of it does.
            Val::UInt(u) => ValueRef::Integer(u as i64),
            Val::Bool(b) => ValueRef::Integer(i64::from(b)),
            // ulogd binds an address as the 64-bit integer in its value
            // union: the network-order IPv4 address read in host order.
            Val::V4(a) => ValueRef::Integer(i64::from(Val::ulogd_u32(&a))),
            Val::V6(a) => ValueRef::Integer(i64::from_ne_bytes([
                a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
            ])),
            Val::Text(t) | Val::RawStr(t) => ValueRef::Text(t),
            Val::Raw(r) => ValueRef::Blob(r),
        }))
    }
}

impl Driver for Sqlite {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn connect(&mut self) -> Result<(), DbError> {
        let c = Connection::open(&self.path).map_err(sort)?;
        c.busy_timeout(BUSY_TIMEOUT).map_err(sort)?;
        // WAL: readers do not block the writer; NORMAL syncs at checkpoints,
        // which WAL keeps consistent across a crash.
        c.pragma_update(None, "journal_mode", "WAL").map_err(sort)?;
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sort)?;
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
        let create = self.create;
        let c = self.conn()?;
        if create {
            if let Some(sql) = packet_table(table) {
                c.execute_batch(&sql).map_err(sort)?;
            }
        }
        let st = c
            .prepare(&format!("select * from {}", ident(table)))
            .map_err(sort)?;
        Ok(st.column_names().into_iter().map(str::to_string).collect())
    }

    fn create_like(&mut self, table: &str, template: &str) -> Result<(), DbError> {
        let c = self.conn()?;
        let sql: String = c
            .query_row(
                "select sql from sqlite_master where type = 'table' and name = ?1",
                [template],
                |r| r.get(0),
            )
            .map_err(sort)?;
        let Some(open) = sql.find('(') else {
            return Err(DbError::Away(format!(
                "cannot read the definition of {template}"
            )));
        };
        c.execute_batch(&format!(
            "create table if not exists {} {}",
            ident(table),
            &sql[open..]
        ))
        .map_err(sort)
    }

    fn write(&mut self, table: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError> {
        let n = cols.len().max(1);
        let c = self.conn()?;
        let tx = c.transaction().map_err(sort)?;
        {
            let list: Vec<String> = cols.iter().map(|c| ident(c)).collect();
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "insert into {} ({}) values ({})",
                ident(table),
                list.join(","),
                marks.join(",")
            );
            let mut st = tx.prepare_cached(&sql).map_err(sort)?;
            for row in rows.chunks(n) {
                for (i, v) in row.iter().enumerate() {
                    st.raw_bind_parameter(i + 1, Bind(*v)).map_err(sort)?;
                }
                st.raw_execute().map_err(sort)?;
            }
        }
        tx.commit().map_err(sort)
    }
}
