//! PGSQL: rows into PostgreSQL with ulogd2's options and schema discovery:
//! the columns of `table` (in `schema`) name the keys, a first column whose
//! name starts with `_` (the serial id) is skipped, and `procedure` says how
//! rows go in: `INSERT` (into the table), `INSERT INTO …`, `CALL p` or a
//! function such as ulogd2's `INSERT_PACKET_FULL`, called once per row.
//!
//! Values are written as ulogd2 formats them (addresses as the number
//! ulogd2 prints, booleans as 0/1) but never spliced into SQL: plain
//! inserts go through COPY, everything else through text-format bound
//! parameters, a batch per transaction.

use super::common::{
    build_output, ident, DbError, Driver, Procedure, SqlConfig, Val, DB_OPTIONS, OWN_OPTIONS,
};
use postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
use postgres::{Client, Config, NoTls, Statement};
use rulogd_plugin::{
    BuildCtx, BuildError, Builder, OptionDef, Output, PluginInfo, PluginKind, Registration,
};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

static OPTIONS: [OptionDef; 18] = [
    DB_OPTIONS[0],
    DB_OPTIONS[1],
    DB_OPTIONS[2],
    DB_OPTIONS[3],
    DB_OPTIONS[4],
    DB_OPTIONS[5],
    DB_OPTIONS[6],
    OptionDef::str("db", "", "Database name").mandatory(),
    OptionDef::str(
        "host",
        "",
        "Server host, or a unix socket directory (empty: /var/run/postgresql)",
    ),
    OptionDef::str("user", "", "User name").mandatory(),
    OptionDef::str("pass", "", "Password"),
    OptionDef::int("port", "0", "Server port (0: 5432)"),
    OptionDef::str("schema", "public", "Schema of the table"),
    OptionDef::str(
        "connstring",
        "",
        "libpq connection string; replaces db, host, user, pass and port",
    ),
    OWN_OPTIONS[0],
    OWN_OPTIONS[1],
    OWN_OPTIONS[2],
    OWN_OPTIONS[3],
];

/// `--info` description of PGSQL.
pub static INFO: PluginInfo = PluginInfo {
    name: "PGSQL",
    kind: PluginKind::Output,
    summary: "Writes records as rows of a PostgreSQL table (columns name the keys)",
    options: &OPTIONS,
    input_keys: &[],
    output_keys: &[],
    wildcard_input: true,
};

/// PGSQL's registration for the core.
pub const REGISTRATION: Registration = Registration {
    info: &INFO,
    builder: Builder::Output(build),
};

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
    build_output(ctx, "PGSQL", cfg, move || Pg {
        config: pc,
        desc,
        schema,
        procedure,
        client: None,
        utf8: true,
        kinds: HashMap::new(),
        types: Vec::new(),
        stmts: HashMap::new(),
        buf: Vec::new(),
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

/// A value bound as text, which the server parses by the column's or the
/// argument's type, exactly as it reads ulogd's SQL literals.
#[derive(Debug)]
struct Text<'a>(Option<&'a [u8]>);

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
fn number(v: &Val<'_>) -> Option<i128> {
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

impl Pg {
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

    fn prepared(&mut self, sql: String) -> Result<Statement, DbError> {
        if let Some(s) = self.stmts.get(&sql) {
            return Ok(s.clone());
        }
        let st = self.client()?.prepare(&sql).map_err(sort)?;
        self.stmts.insert(sql, st.clone());
        Ok(st)
    }

    fn copy(&mut self, target: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError> {
        let list: Vec<String> = cols.iter().map(|c| ident(c)).collect();
        if self.types.len() == cols.len() {
            let sql = format!(
                "COPY {target} ({}) FROM STDIN (FORMAT binary)",
                list.join(",")
            );
            if self.copy_binary(&sql, rows)? {
                return Ok(());
            }
        }
        let n = cols.len().max(1);
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut scratch = Vec::with_capacity(64);
        for row in rows.chunks(n) {
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    buf.push(b'\t');
                }
                copy_field(v, self.utf8, &mut scratch, &mut buf);
            }
            buf.push(b'\n');
        }
        let sql = format!("COPY {target} ({}) FROM STDIN", list.join(","));
        let res = (|| {
            let mut w = self.client()?.copy_in(&sql).map_err(sort)?;
            w.write_all(&buf)
                .map_err(|e| DbError::Away(e.to_string()))?;
            w.finish().map_err(sort)?;
            Ok(())
        })();
        self.buf = buf;
        res
    }

    /// Binary COPY (the server parses no text), streamed in chunks so the
    /// server works on one while the next is encoded. `Ok(false)` when a
    /// value has no plain binary form: the COPY is abandoned (rolled back)
    /// and the caller sends the batch as text.
    fn copy_binary(&mut self, sql: &str, rows: &[Val<'_>]) -> Result<bool, DbError> {
        const CHUNK_ROWS: usize = 256;
        let (types, utf8) = (std::mem::take(&mut self.types), self.utf8);
        let mut buf = std::mem::take(&mut self.buf);
        let n = types.len().max(1);
        let res = (|| {
            let client = self
                .client
                .as_mut()
                .ok_or_else(|| DbError::Away("not connected".into()))?;
            let mut chunks = rows.chunks(n * CHUNK_ROWS).peekable();
            buf.clear();
            buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
            buf.extend_from_slice(&[0; 8]);
            // The first chunk is encoded before the COPY starts: a batch
            // that has to go as text is usually found out there.
            if !encode_rows(chunks.next().unwrap_or(&[]), &types, utf8, &mut buf)? {
                return Ok(false);
            }
            let mut w = client.copy_in(sql).map_err(sort)?;
            loop {
                if chunks.peek().is_none() {
                    buf.extend_from_slice(&(-1i16).to_be_bytes());
                }
                w.write_all(&buf)
                    .map_err(|e| DbError::Away(e.to_string()))?;
                let Some(chunk) = chunks.next() else { break };
                buf.clear();
                if !encode_rows(chunk, &types, utf8, &mut buf)? {
                    // Dropping the writer unfinished aborts the COPY.
                    return Ok(false);
                }
            }
            w.finish().map_err(sort).map(|_| true)
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
        let (utf8, mut texts) = (self.utf8, Vec::new());
        let mut tx = self.client()?.transaction().map_err(sort)?;
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
        let args: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let st = self.prepared(format!("{verb} {name}({})", args.join(",")))?;
        let utf8 = self.utf8;
        let mut tx = self.client()?.transaction().map_err(sort)?;
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
        tx.commit().map_err(sort)
    }
}

impl Driver for Pg {
    fn describe(&self) -> &str {
        &self.desc
    }

    fn connect(&mut self) -> Result<(), DbError> {
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
        self.utf8 = enc.eq_ignore_ascii_case("UTF8");
        if !self.utf8 {
            // Bytes go as they are, as with ulogd (libpq defaults the client
            // encoding to the database's).
            c.batch_execute("SET client_encoding = 'SQL_ASCII'")
                .map_err(sort)?;
        }
        self.stmts.clear();
        self.kinds.clear();
        self.client = Some(c);
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    fn close(&mut self) {
        self.client = None;
        self.stmts.clear();
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
        if rows.is_empty() {
            return Ok(());
        }
        match self.procedure.clone() {
            Procedure::Select(f) => self.call_each("SELECT", &f, cols, rows),
            Procedure::Call(p) => self.call_each("CALL", &p, cols, rows),
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
