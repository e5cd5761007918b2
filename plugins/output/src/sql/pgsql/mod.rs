//! PGSQL: rows into PostgreSQL with ulogd2's options and schema discovery:
//! the columns of `table` (in `schema`) name the keys, a first column whose
//! name starts with `_` (the serial id) is skipped, and `procedure` says how
//! rows go in: `INSERT` (into the table), `INSERT INTO …`, `CALL p` or a
//! function such as ulogd2's `INSERT_PACKET_FULL`, applied to each batch
//! from a staging table (`stage.rs`) with the semantics of a call per row.
//!
//! Values are written as ulogd2 formats them (addresses as the number
//! ulogd2 prints, booleans as 0/1) but never spliced into SQL: plain
//! inserts go through COPY, everything else through text-format bound
//! parameters, a batch per transaction.

use super::config::{ident, server_options, Procedure, SqlConfig};
use super::driver::{DbError, Driver};
use super::output::build_output;
use super::row::Val;
mod copy;
mod setwise;
mod stage;

pub use copy::format;
use copy::{copy_binary, copy_text, Text};
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Statement, Transaction};
use rulogd_plugin::{BuildCtx, BuildError, OptionDef, Output};
use std::collections::HashMap;
use std::time::Duration;

/// `connstring` parses as libpq's syntax, as the builder will parse it.
fn connstring_parses(
    v: &rulogd_plugin::OptValue,
    _: &rulogd_plugin::Options,
) -> Result<(), String> {
    let s = v.to_string();
    if s.is_empty() {
        return Ok(());
    }
    s.parse::<Config>().map(|_| ()).map_err(|e| e.to_string())
}

static OPTIONS: &[OptionDef] = server_options![
    OptionDef::str("db", "", "Database name").mandatory(),
    OptionDef::str(
        "host",
        "",
        "Server host, or a unix socket directory (empty: /var/run/postgresql)",
    ),
    OptionDef::str("user", "", "User name").mandatory(),
    OptionDef::str("pass", "", "Password"),
    OptionDef::int("port", "0", "Server port (0: 5432)").range(0, 65535),
    OptionDef::str("schema", "public", "Schema of the table"),
    OptionDef::str(
        "connstring",
        "",
        "libpq connection string; replaces db, host, user, pass and port",
    )
    .check(connstring_parses),
    OptionDef::int(
        "connections",
        "2",
        "rulogd only: connections over which a batch for ulogd2's own INSERT_PACKET_FULL, done set-wise, is spread (committed in order)",
    )
    .range(1, 16),
];

rulogd_plugin::plugin! {
    Output "PGSQL" wildcard (build): "Writes records as rows of a PostgreSQL table (columns name the keys)";
    options OPTIONS;
}

/// ulogd's default when `connect_timeout` is 0 (libpq waits forever).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The protocol's limit on bound parameters in one statement.
const MAX_PARAMS: usize = 65_535;

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let o = ctx.options;
    let cfg = SqlConfig::from_options(o)?;
    let mut pc = if o.str("connstring").is_empty() {
        let mut pc = Config::new();
        let host = o.str("host");
        pc.host(if host.is_empty() {
            "/var/run/postgresql"
        } else {
            host
        });
        if o.int("port") != 0 {
            let port = u16::try_from(o.int("port"))
                .map_err(|_| BuildError::option("port", "must be 1..65535"))?;
            pc.port(port);
        }
        pc.dbname(o.str("db")).user(o.str("user"));
        if !o.str("pass").is_empty() {
            pc.password(o.str("pass"));
        }
        pc
    } else {
        o.str("connstring")
            .parse::<Config>()
            .map_err(|e| BuildError::option("connstring", e.to_string()))?
    };
    let t = match cfg.connect_timeout {
        0 => CONNECT_TIMEOUT,
        s => Duration::from_secs(s),
    };
    pc.connect_timeout(t).application_name("rulogd");
    let desc = format!(
        "pgsql {}{}",
        pc.get_dbname().unwrap_or(""),
        pc.get_hosts()
            .first()
            .map_or(String::new(), |h| format!(" on {h:?}"))
    );
    let schema = o.str("schema").to_string();
    let procedure = cfg.procedure.clone();
    let connections = usize::try_from(o.int("connections")).unwrap_or(1).max(1);
    build_output(ctx, "PGSQL", cfg, move || {
        Pg::new(pc, desc, schema, procedure, connections)
    })
}

/// A PostgreSQL database.
pub struct Pg {
    config: Config,
    desc: String,
    schema: String,
    procedure: Procedure,
    client: Option<Client>,
    /// Whether the server wants UTF-8 text (else bytes pass as they are).
    utf8: bool,
    /// `relkind` of each table written to: COPY needs a table.
    kinds: HashMap<String, i8>,
    /// Type OIDs of the columns last read (the template's): binary COPY.
    types: Vec<u32>,
    stmts: HashMap<String, Statement>,
    buf: Vec<u8>,
    /// The last transaction whose COMMIT got no answer.
    unknown: Option<Unknown>,
    /// Procedure mode on this connection (found on its first write).
    stage: Option<stage::Mode>,
    /// Connections a set-wise batch may be spread over (`connections`).
    connections: usize,
    /// The extra connections of a set-wise batch, made on first use.
    lanes: Vec<setwise::Lane>,
}

fn sort(e: postgres::Error) -> DbError {
    let text = match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => e.to_string(),
    };
    match e.code().map(|c| c.code()) {
        // Data exceptions and integrity violations concern the rows.
        Some(c) if c.starts_with("22") || c.starts_with("23") => DbError::Data(text),
        _ => DbError::Away(text),
    }
}

impl Pg {
    /// A database not connected yet.
    fn new(
        config: Config,
        desc: String,
        schema: String,
        procedure: Procedure,
        connections: usize,
    ) -> Pg {
        Pg {
            config,
            desc,
            schema,
            procedure,
            client: None,
            utf8: true,
            kinds: HashMap::new(),
            types: Vec::new(),
            stmts: HashMap::new(),
            buf: Vec::new(),
            unknown: None,
            stage: None,
            connections,
            lanes: Vec::new(),
        }
    }

    fn client(&mut self) -> Result<&mut Client, DbError> {
        self.client
            .as_mut()
            .ok_or_else(|| DbError::Away("not connected".into()))
    }

    fn qualified(&self, table: &str) -> String {
        format!("{}.{}", ident(&self.schema), ident(table))
    }

    /// The table `INSERT INTO x` names, when that is all the text says.
    fn insert_target(&self, table: &str) -> Option<String> {
        match &self.procedure {
            Procedure::Insert => Some(self.qualified(table)),
            Procedure::InsertText(t) => {
                let w: Vec<&str> = t.split_whitespace().collect();
                let simple = w.len() == 3
                    && w[1].eq_ignore_ascii_case("into")
                    && w[2]
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
                simple.then(|| w[2].to_string())
            }
            _ => None,
        }
    }

    /// A connection set up as every one of this output's is: the schema
    /// checked and searched, the client encoding chosen; and whether the
    /// server wants UTF-8.
    fn session(&self) -> Result<(Client, bool), DbError> {
        let mut c = self.config.connect(NoTls).map_err(sort)?;
        let found = c
            .query_opt(
                "SELECT 1 FROM pg_namespace WHERE nspname = $1",
                &[&self.schema],
            )
            .map_err(sort)?;
        if found.is_none() {
            return Err(DbError::Away(format!("schema {} not found", self.schema)));
        }
        if self.schema != "public" {
            // As ulogd: procedures find their tables in the schema.
            c.batch_execute(&format!(
                "SET search_path = {}, \"$user\", public",
                ident(&self.schema)
            ))
            .map_err(sort)?;
        }
        let enc: String = c
            .query_one("SHOW server_encoding", &[])
            .map_err(sort)?
            .get(0);
        let utf8 = enc.eq_ignore_ascii_case("UTF8");
        if !utf8 {
            // Bytes go as they are, as with ulogd (libpq defaults the client
            // encoding to the database's).
            c.batch_execute("SET client_encoding = 'SQL_ASCII'")
                .map_err(sort)?;
        }
        Ok((c, utf8))
    }

    fn prepared(&mut self, sql: String) -> Result<Statement, DbError> {
        if let Some(s) = self.stmts.get(&sql) {
            return Ok(s.clone());
        }
        let st = self.client()?.prepare(&sql).map_err(sort)?;
        self.stmts.insert(sql, st.clone());
        Ok(st)
    }

    /// Runs `f` in a transaction and commits it if `f` returns true (false:
    /// roll back, nothing written). A COMMIT that fails without the server
    /// saying why (the connection dropped, the server shut down) may or may
    /// not have committed: its transaction id is kept so that the retry of
    /// the same rows asks the server first (see `already_written`).
    fn in_tx(
        &mut self,
        rows: &[Val<'_>],
        n: usize,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<bool, DbError>,
    ) -> Result<bool, DbError> {
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| DbError::Away("not connected".into()))?;
        let mut tx = client.transaction().map_err(sort)?;
        let xid: i64 = tx
            .query_one("SELECT txid_current()", &[])
            .map_err(sort)?
            .get(0);
        if !f(&mut tx)? {
            return Ok(false);
        }
        if let Err(e) = tx.commit() {
            let e = sort(e);
            if matches!(e, DbError::Away(_)) {
                self.unknown = Some(Unknown::after(rows, n, 0, xid, rows.len()));
            }
            return Err(e);
        }
        Ok(true)
    }

    /// How many leading values of `rows` a transaction whose COMMIT was
    /// not confirmed wrote, when the server reports it committed: those are
    /// in the table and must not be written twice. The retry may carry more
    /// than the lost batch (a spool replay gathers frames into larger
    /// batches), so the lost batch is matched as a prefix.
    fn already_written(&mut self, rows: &[Val<'_>], n: usize) -> Result<usize, DbError> {
        let Some(u) = self.unknown.take() else {
            return Ok(0);
        };
        let prefix = |k: usize, mark: &str| k <= rows.len() && mark == fingerprint(&rows[..k], n);
        if !prefix(u.sure, &u.sure_mark) {
            return Ok(0);
        }
        let Some(xid) = u.xid.filter(|_| prefix(u.rows, &u.mark)) else {
            return Ok(u.sure);
        };
        let status: Option<String> = self
            .client()?
            .query_one("SELECT txid_status($1)", &[&xid])
            .map_err(sort)?
            .get(0);
        if status.as_deref() != Some("committed") {
            return Ok(u.sure);
        }
        log::info!(
            "{}: a batch whose commit was not confirmed did commit; not writing its {} rows again",
            self.desc,
            (u.rows - u.sure) / n.max(1)
        );
        Ok(u.rows)
    }

    fn copy(&mut self, target: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError> {
        let list = cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(",");
        let n = cols.len().max(1);
        let (types, utf8) = (std::mem::take(&mut self.types), self.utf8);
        let mut buf = std::mem::take(&mut self.buf);
        let res = (|| {
            if types.len() == cols.len() {
                let sql = format!("COPY {target} ({list}) FROM STDIN (FORMAT binary)");
                let binary =
                    |tx: &mut Transaction<'_>| copy_binary(tx, &sql, rows, &types, utf8, &mut buf);
                if self.in_tx(rows, n, binary)? {
                    return Ok(());
                }
            }
            let sql = format!("COPY {target} ({list}) FROM STDIN");
            let text = |tx: &mut Transaction<'_>| copy_text(tx, &sql, rows, n, utf8, &mut buf);
            self.in_tx(rows, n, text).map(|_| ())
        })();
        self.types = types;
        self.buf = buf;
        res
    }

    /// Multi-row `INSERT … VALUES (…),(…)` with text parameters.
    fn insert_values(
        &mut self,
        head: &str,
        cols: &[String],
        rows: &[Val<'_>],
    ) -> Result<(), DbError> {
        let n = cols.len().max(1);
        let list: Vec<String> = cols.iter().map(|c| ident(c)).collect();
        let per = (MAX_PARAMS / n).clamp(1, 1000);
        let utf8 = self.utf8;
        let work = |tx: &mut Transaction<'_>| {
            let mut texts = Vec::new();
            for chunk in rows.chunks(per * n) {
                let k = chunk.len() / n;
                let mut sql = format!("{head} ({}) VALUES ", list.join(","));
                for r in 0..k {
                    sql.push_str(if r == 0 { "(" } else { ",(" });
                    for c in 0..n {
                        if c > 0 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("${}", r * n + c + 1));
                    }
                    sql.push(')');
                }
                texts.clear();
                texts.extend(chunk.iter().map(|v| {
                    let mut b = Vec::new();
                    format(v, utf8, &mut b).then_some(b)
                }));
                let params: Vec<Text<'_>> = texts.iter().map(|t| Text(t.as_deref())).collect();
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                tx.execute(sql.as_str(), &refs).map_err(sort)?;
            }
            Ok(true)
        };
        self.in_tx(rows, n, work).map(|_| ())
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
        let args: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let st = self.prepared(format!("{verb} {name}({})", args.join(",")))?;
        let utf8 = self.utf8;
        let work = |tx: &mut Transaction<'_>| {
            let mut texts: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
            for row in rows.chunks(n) {
                texts.clear();
                texts.extend(row.iter().map(|v| {
                    let mut b = Vec::new();
                    format(v, utf8, &mut b).then_some(b)
                }));
                let params: Vec<Text<'_>> = texts.iter().map(|t| Text(t.as_deref())).collect();
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                tx.execute(&st, &refs).map_err(sort)?;
            }
            Ok(true)
        };
        self.in_tx(rows, n, work).map(|_| ())
    }
}

/// What a failed write left in the table: the values `..sure` committed
/// (a batch spread over several transactions, committed in order), then
/// maybe `sure..rows`, whose COMMIT (transaction `xid`) got no answer.
struct Unknown {
    sure: usize,
    sure_mark: String,
    xid: Option<i64>,
    rows: usize,
    mark: String,
}

impl Unknown {
    /// Values `..sure` of `rows` are in, `sure..end` are in if `xid` committed.
    fn after(rows: &[Val<'_>], n: usize, sure: usize, xid: i64, end: usize) -> Unknown {
        Unknown {
            sure,
            sure_mark: fingerprint(&rows[..sure], n),
            xid: Some(xid),
            rows: end,
            mark: fingerprint(&rows[..end], n),
        }
    }

    /// Values `..sure` of `rows` are in, nothing after them.
    fn committed(rows: &[Val<'_>], n: usize, sure: usize) -> Unknown {
        Unknown {
            sure,
            sure_mark: fingerprint(&rows[..sure], n),
            xid: None,
            rows: sure,
            mark: String::new(),
        }
    }
}

/// Tells a batch of rows from another: its first and last rows.
fn fingerprint(rows: &[Val<'_>], n: usize) -> String {
    let k = n.min(rows.len());
    if k == 0 {
        return String::new();
    }
    format!("{:?}{:?}", &rows[..k], &rows[rows.len() - k..])
}

impl Driver for Pg {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn connect(&mut self) -> Result<(), DbError> {
        let (c, utf8) = self.session()?;
        self.utf8 = utf8;
        self.stmts.clear();
        self.kinds.clear();
        self.stage = None;
        self.lanes.clear();
        self.client = Some(c);
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    fn close(&mut self) {
        self.client = None;
        self.stmts.clear();
        self.stage = None;
        self.lanes.clear();
    }

    fn columns(&mut self, table: &str) -> Result<Vec<String>, DbError> {
        let schema = self.schema.clone();
        let rows = self
            .client()?
            .query(
                "SELECT a.attname::text, c.relkind, a.atttypid::int8 FROM pg_attribute a \
                 JOIN pg_class c ON a.attrelid = c.oid \
                 JOIN pg_namespace n ON c.relnamespace = n.oid \
                 WHERE c.relname = $1 AND n.nspname = $2 AND a.attnum > 0 \
                 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&table, &schema],
            )
            .map_err(sort)?;
        if rows.is_empty() {
            return Err(DbError::Away(format!("table {schema}.{table} not found")));
        }
        let kind: i8 = rows[0].get(1);
        self.kinds.insert(table.to_string(), kind);
        let mut cols: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let mut types: Vec<u32> = rows.iter().map(|r| r.get::<_, i64>(2) as u32).collect();
        // ulogd: a first column named `_…` is the serial id, not a key.
        if cols.first().is_some_and(|c| c.starts_with('_')) {
            cols.remove(0);
            types.remove(0);
        }
        self.types = types;
        Ok(cols)
    }

    fn create_like(&mut self, table: &str, template: &str) -> Result<(), DbError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING ALL)",
            self.qualified(table),
            self.qualified(template)
        );
        self.client()?.batch_execute(&sql).map_err(sort)?;
        self.kinds.insert(table.to_string(), b'r' as i8);
        Ok(())
    }

    fn write(&mut self, table: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError> {
        let done = if rows.is_empty() {
            0
        } else {
            self.already_written(rows, cols.len().max(1))?
        };
        let rows = &rows[done..];
        if rows.is_empty() {
            return Ok(());
        }
        match self.procedure.clone() {
            Procedure::Select(f) => self.call_batch(false, &f, cols, rows),
            Procedure::Call(p) => self.call_batch(true, &p, cols, rows),
            p => {
                let target = self.insert_target(table);
                // COPY into tables (and partitioned tables); views and other
                // relations take INSERT.
                let is_table = matches!(self.kinds.get(table).map(|&k| k as u8), Some(b'r' | b'p'));
                match target {
                    Some(t) if is_table => self.copy(&t, cols, rows),
                    _ => {
                        let head = match p {
                            Procedure::InsertText(t) => t,
                            _ => format!("INSERT INTO {}", self.qualified(table)),
                        };
                        self.insert_values(&head, cols, rows)
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Pg, Unknown};
    use crate::sql::config::Procedure;
    use crate::sql::row::Val;

    fn pg() -> Pg {
        let c = postgres::Config::new();
        Pg::new(c, "test".into(), "public".into(), Procedure::Insert, 2)
    }

    #[test]
    fn a_retry_skips_the_parts_committed_before_a_failure_and_only_those() {
        let rows: Vec<Val<'_>> = (0..12).map(Val::Int).collect();
        // Two values a row; the first two rows of six were committed.
        let mut p = pg();
        p.unknown = Some(Unknown::committed(&rows, 2, 4));
        assert_eq!(p.already_written(&rows, 2).unwrap(), 4);
        // A spool replay that carries more rows after the same prefix.
        let more: Vec<Val<'_>> = (0..20).map(Val::Int).collect();
        p.unknown = Some(Unknown::committed(&rows, 2, 4));
        assert_eq!(p.already_written(&more, 2).unwrap(), 4);
        // Other rows: nothing of theirs is in.
        let other: Vec<Val<'_>> = (100..112).map(Val::Int).collect();
        p.unknown = Some(Unknown::committed(&rows, 2, 4));
        assert_eq!(p.already_written(&other, 2).unwrap(), 0);
        // Nothing noted: nothing skipped, and a note is used once.
        assert_eq!(p.already_written(&rows, 2).unwrap(), 0);
    }
}
