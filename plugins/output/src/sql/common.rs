//! What every SQL output shares: ulogd's options, the column-to-key rule,
//! the compact row a record is rendered into on the input thread, and the
//! [`Transport`] that turns rows into database writes on the writer thread.
//!
//! A row carries the values of a *layout* (a list of key names): the table's
//! columns when they were read at start-up, or every key of the stack when
//! the database was away then. The writer maps layouts onto the columns it
//! finds when it connects, so rows rendered before the database was known,
//! or spooled by an earlier run against an older table, still land in the
//! right columns.

pub use super::row::{decode, layout_id, Layouts, Renderer, Val, ROW_HEAD};
pub use super::transport::SqlTransport;
use rulogd_delivery::{spool_config, Delivery, DeliveryConfig, Producer, Transport};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, OptionDef, Options, Output, OutputError, Record,
    Signal, StatSet, UpstreamKey,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// ulogd's longest key name; longer column names are cut, as ulogd does.
pub const MAX_KEYLEN: usize = 31;

/// The options ulogd's SQL layer (`DB_CES`) gives PGSQL and MYSQL.
pub const DB_OPTIONS: [OptionDef; 7] = [
    OptionDef::str(
        "table",
        "",
        "Table or view whose columns name the keys to write",
    )
    .check(rulogd_plugin::options::check_not_empty)
    .mandatory(),
    OptionDef::int(
        "reconnect",
        "2",
        "Longest wait in seconds between reconnect attempts",
    )
    .range(0, i32::MAX as i64),
    OptionDef::int(
        "connect_timeout",
        "0",
        "Seconds a connection attempt may take (0: 10)",
    )
    .range(0, i32::MAX as i64),
    OptionDef::str(
        "procedure",
        "",
        "INSERT, INSERT INTO <table>, CALL <proc> or a function name",
    )
    .mandatory(),
    OptionDef::int(
        "backlog_memcap",
        "0",
        "Bytes of rows the memory queue holds (0: default)",
    )
    .range(0, i64::MAX),
    OptionDef::int(
        "backlog_oneshot_requests",
        "10",
        "Accepted for ulogd configs; rows are written in batches",
    )
    .range(0, i32::MAX as i64),
    OptionDef::int(
        "ring_buffer_size",
        "0",
        "Rows the memory queue holds (0: default)",
    )
    .range(0, i64::MAX / 256),
];

/// The option table of an SQL output that talks to a server (PGSQL,
/// MYSQL): ulogd's shared options, the plugin's connection options, then
/// rulogd's own.
#[cfg(any(feature = "pgsql", feature = "mysql"))]
macro_rules! server_options {
    ($($o:expr),* $(,)?) => {
        &[
            $crate::sql::common::DB_OPTIONS[0],
            $crate::sql::common::DB_OPTIONS[1],
            $crate::sql::common::DB_OPTIONS[2],
            $crate::sql::common::DB_OPTIONS[3],
            $crate::sql::common::DB_OPTIONS[4],
            $crate::sql::common::DB_OPTIONS[5],
            $crate::sql::common::DB_OPTIONS[6],
            $($o,)*
            $crate::sql::common::OWN_OPTIONS[0],
            $crate::sql::common::OWN_OPTIONS[1],
            $crate::sql::common::OWN_OPTIONS[2],
            $crate::sql::common::OWN_OPTIONS[3],
        ]
    };
}
#[cfg(any(feature = "pgsql", feature = "mysql"))]
pub(crate) use server_options;

/// A `table` with strftime fields is created from `template`.
fn template_for_strftime(v: &rulogd_plugin::OptValue, o: &Options) -> Result<(), String> {
    let table = o.str("table");
    if table.contains('%') && v.to_string().is_empty() {
        return Err(format!(
            "table `{table}` has strftime fields: set template= to the table to copy"
        ));
    }
    Ok(())
}

/// rulogd's own options of every SQL output.
pub const OWN_OPTIONS: [OptionDef; 4] = [
    rulogd_delivery::SPOOL_DIR,
    rulogd_delivery::SPOOL_SIZE,
    OptionDef::str(
        "when_full",
        "drop",
        "Spool (or memory queue) full: block the input, or drop and count",
    )
    .one_of(&["block", "drop"]),
    OptionDef::str(
        "template",
        "",
        "Table copied to create a time-partitioned table (table with % fields)",
    )
    .check(template_for_strftime),
];

/// SQL outputs whose database is a local file: there is no server to lose,
/// so they spool only when `spool_dir` says so.
const LOCAL_DATABASES: &[&str] = &["SQLITE3"];

/// Quotes an SQL identifier (a column, table or schema name).
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The key a column feeds: `_` becomes `.`, cut to ulogd's 31 bytes.
pub fn key_of_column(col: &str) -> String {
    let mut k: String = col.replace('_', ".");
    if k.len() > MAX_KEYLEN {
        let mut cut = MAX_KEYLEN;
        while !k.is_char_boundary(cut) {
            cut -= 1;
        }
        k.truncate(cut);
    }
    k
}

/// A database failure, sorted by what the writer does about it.
#[derive(Debug)]
pub enum DbError {
    /// The database is away or refused (connection, permissions, a table
    /// that is missing for now): keep the rows and retry later.
    Away(String),
    /// These rows cannot go in (a value out of range, a constraint): the
    /// writer retries row by row and sets the bad ones aside.
    Data(String),
}

impl DbError {
    /// The message.
    pub fn text(&self) -> &str {
        match self {
            DbError::Away(s) | DbError::Data(s) => s,
        }
    }
}

/// How rows go in (`procedure`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Procedure {
    /// `INSERT`: into the configured table.
    Insert,
    /// `INSERT INTO x…`: this text, then the column list and the values.
    InsertText(String),
    /// `CALL p`: a stored procedure, one call per row.
    Call(String),
    /// Anything else: `SELECT f(…)`, one call per row.
    Select(String),
}

impl Procedure {
    /// ulogd's reading of the `procedure` option.
    pub fn parse(p: &str) -> Procedure {
        let up = p.to_ascii_uppercase();
        if up == "INSERT" {
            Procedure::Insert
        } else if up.starts_with("INSERT ") {
            Procedure::InsertText(p.to_string())
        } else if up.starts_with("CALL") {
            Procedure::Call(p[4..].trim().to_string())
        } else {
            Procedure::Select(p.to_string())
        }
    }
}

/// The options every SQL output shares, validated.
#[derive(Clone, Debug)]
pub struct SqlConfig {
    /// `table`; may hold strftime fields.
    pub table: String,
    /// `template`, the table partitions are created from.
    pub template: String,
    /// `procedure`.
    pub procedure: Procedure,
    /// `reconnect`, seconds.
    pub reconnect: u64,
    /// `connect_timeout`, seconds (0: 10).
    pub connect_timeout: u64,
    /// Memory queue length in batches.
    pub queue_size: usize,
    /// `when_full`.
    pub when_full: rulogd_delivery::WhenFull,
}

/// Hand a batch over at this size: several thousand rows per transaction.
/// PostgreSQL sets up each COPY (slots, resource owners) anew, so 256 KiB
/// batches cost it a fifth more per row than 1 MiB ones; 4 MiB gained
/// nothing more in bench-sql.
pub const SQL_BATCH_BYTES: usize = 1024 * 1024;

impl SqlConfig {
    /// Validates the shared options; `procedure` only where the plugin has it.
    pub fn from_options(o: &Options) -> Result<Self, BuildError> {
        let table = o.str("table").to_string();
        if table.is_empty() {
            return Err(BuildError::option("table", "must not be empty"));
        }
        let template = o.str("template").to_string();
        if table.contains('%') && template.is_empty() {
            return Err(BuildError::option(
                "template",
                format!("table `{table}` has strftime fields: set template= to the table to copy"),
            ));
        }
        let wf = o.str("when_full");
        let when_full = rulogd_delivery::WhenFull::parse(wf).ok_or_else(|| {
            BuildError::option(
                "when_full",
                format!("unknown policy `{wf}`; valid: block, drop"),
            )
        })?;
        let nonneg = |name: &str| -> Result<u64, BuildError> {
            u64::try_from(o.int(name)).map_err(|_| BuildError::option(name, "must not be negative"))
        };
        // ulogd's ring (rows) and backlog (bytes) both size the memory queue;
        // a row is a few hundred bytes.
        let ring = nonneg("ring_buffer_size")?;
        let memcap = nonneg("backlog_memcap")?;
        let want = (ring * 256).max(memcap);
        let queue_size = if want == 0 {
            16
        } else {
            (want as usize).div_ceil(SQL_BATCH_BYTES).clamp(2, 4096)
        };
        Ok(SqlConfig {
            procedure: Procedure::parse(o.str("procedure")),
            template: if template.is_empty() {
                table.clone()
            } else {
                template
            },
            table,
            reconnect: nonneg("reconnect")?,
            connect_timeout: nonneg("connect_timeout")?,
            queue_size,
            when_full,
        })
    }

    /// Whether the table name has strftime fields.
    pub fn partitioned(&self) -> bool {
        self.table.contains('%')
    }
}

/// The table a row at time `t` goes to (strftime in local time).
pub fn table_for(pattern: &str, t: i64) -> String {
    if !pattern.contains('%') {
        return pattern.to_string();
    }
    let Ok(fmt) = std::ffi::CString::new(pattern) else {
        return pattern.to_string();
    };
    // SAFETY: localtime_r and strftime write only into the buffers given.
    unsafe {
        let tt = t as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&tt, &mut tm);
        let mut buf = [0u8; 256];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// A database behind the shared transport.
pub trait Driver: Send {
    /// For messages: `pgsql dbname=ulog table=ulog2`.
    fn describe(&self) -> &str;
    /// Connects.
    fn connect(&mut self) -> Result<(), DbError>;
    /// Whether connected.
    fn is_open(&self) -> bool;
    /// Drops the connection.
    fn close(&mut self);
    /// The columns of `table` in order, the ones to skip already removed
    /// (ulogd's INACTIVE id column). `Away` when the table is missing.
    fn columns(&mut self, table: &str) -> Result<Vec<String>, DbError>;
    /// Creates `table` with the layout of `template` unless it exists.
    fn create_like(&mut self, table: &str, template: &str) -> Result<(), DbError>;
    /// Writes `rows` (row-major, `cols.len()` values each) into `table`,
    /// all or nothing.
    fn write(&mut self, table: &str, cols: &[String], rows: &[Val<'_>]) -> Result<(), DbError>;
}

/// What the first instance with an id prepares for the others: the
/// columns read at start-up and, until the writer takes it, the driver.
struct Prep<D> {
    driver: Mutex<Option<D>>,
    cols: Option<Vec<String>>,
    layouts: Arc<Layouts>,
    delivery: DeliveryConfig,
    refused: Counter,
}

/// Reads the columns; `None` (with a warning) when the database is away.
fn discover<D: Driver>(
    instance: &str,
    driver: &mut D,
    table: &str,
) -> Result<Option<Vec<String>>, BuildError> {
    if let Err(e) = driver.connect() {
        log::warn!(
            "{instance}: {} is not reachable at start ({}); keeping every key of the stack until it is",
            driver.describe(),
            e.text()
        );
        return Ok(None);
    }
    match driver.columns(table) {
        Ok(c) if c.is_empty() => Err(BuildError::Other(format!(
            "table `{table}` has no columns to write"
        ))),
        Ok(c) => Ok(Some(c)),
        Err(e) => Err(BuildError::Other(format!(
            "cannot read the columns of table `{table}`: {}",
            e.text()
        ))),
    }
}

/// Builds an SQL output instance: reads the columns once per instance id
/// (the database may be away: then every key of the stack is kept until
/// the writer can read them), and starts the writer with its spool.
pub fn build_output<D: Driver + 'static>(
    ctx: &BuildCtx,
    plugin: &'static str,
    cfg: SqlConfig,
    make: impl FnOnce() -> D,
) -> Result<Box<dyn Output>, BuildError> {
    let prep = ctx
        .shared
        .get_or_try_insert(&format!("{plugin}-sql:{}", ctx.instance), || {
            let mut driver = make();
            let cols = discover(ctx.instance, &mut driver, &cfg.template)?;
            let retry_max = Duration::from_secs(cfg.reconnect.max(1));
            let spool = if LOCAL_DATABASES.contains(&plugin) && !ctx.options.is_set("spool_dir") {
                None
            } else {
                spool_config(ctx, retry_max)?
            };
            let spool_dir = spool.as_ref().map(|s| s.dir.clone());
            let mut dc = DeliveryConfig::new(ctx.instance, plugin, cfg.when_full);
            dc.queue_size = cfg.queue_size;
            dc.batch_bytes = SQL_BATCH_BYTES;
            dc.spool = spool;
            let rows = StatSet::new(format!("{} ({plugin} rows)", ctx.instance));
            let refused = rows.counter("refused");
            ctx.shared.add_stats(rows);
            Ok::<_, BuildError>(Arc::new(Prep {
                driver: Mutex::new(Some(driver)),
                cols,
                layouts: Arc::new(Layouts::new(spool_dir.map(|d| d.join("layouts")))),
                delivery: dc,
                refused,
            }))
        })?;
    let delivery = Delivery::shared(ctx, plugin, &prep.delivery, || {
        let driver = prep
            .driver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| BuildError::Other("SQL driver already taken".into()))?;
        Ok(Box::new(SqlTransport::new(
            driver,
            ctx.instance,
            cfg.clone(),
            prep.layouts.clone(),
            prep.cols.clone(),
            prep.refused.clone(),
        )) as Box<dyn Transport>)
    })?;
    Ok(Box::new(SqlOutput {
        instance: ctx.instance.to_string(),
        table: cfg.template.clone(),
        partitioned: cfg.partitioned(),
        producer: delivery.producer(false),
        cols: prep.cols.clone(),
        layouts: prep.layouts.clone(),
        renderer: None,
    }))
}

/// One SQL output instance in one stack: renders rows on the input thread.
pub struct SqlOutput {
    instance: String,
    table: String,
    partitioned: bool,
    producer: Producer,
    cols: Option<Vec<String>>,
    layouts: Arc<Layouts>,
    renderer: Option<Renderer>,
}

impl Output for SqlOutput {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        let keys = match &self.cols {
            Some(cols) => check_columns(&self.instance, &self.table, cols, b.upstream)?,
            None => all_keys(b.upstream),
        };
        self.renderer = Some(Renderer::new(
            &self.layouts,
            keys,
            b.upstream,
            self.partitioned,
        )?);
        Ok(())
    }

    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        let Some(r) = self.renderer.as_ref() else {
            return Ok(());
        };
        r.render(rec, self.producer.batch().buf());
        self.producer.commit()
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.producer.flush()
    }

    fn signal(&mut self, sig: Signal) {
        if sig == Signal::Hup {
            let _ = self.producer.flush();
        }
    }
}

/// Checks at start-up that every column feeds from some key of the stack;
/// the error names the instance, the table and every column that does not.
pub fn check_columns(
    instance: &str,
    table: &str,
    cols: &[String],
    upstream: &[UpstreamKey],
) -> Result<Vec<String>, BuildError> {
    let keys: Vec<String> = cols.iter().map(|c| key_of_column(c)).collect();
    let missing: Vec<String> = cols
        .iter()
        .zip(&keys)
        .filter(|(_, k)| !upstream.iter().any(|u| u.def.name == k.as_str()))
        .map(|(c, k)| format!("{c} (key {k})"))
        .collect();
    if missing.is_empty() {
        Ok(keys)
    } else {
        Err(BuildError::Other(format!(
            "{instance}: table `{table}`: no key of the stack feeds column{} {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", ")
        )))
    }
}

/// Every distinct key name upstream, in stack order: the layout of rows
/// rendered before the table's columns are known.
pub fn all_keys(upstream: &[UpstreamKey]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in upstream {
        if !out.iter().any(|k| *k == u.def.name) {
            out.push(u.def.name.to_string());
        }
    }
    out
}
