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

use crate::delivery::{
    Batch, Delivery, DeliveryConfig, DeliveryStats, Producer, SendError, SpoolConfig, Transport,
};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, OptionDef, Options, Output, OutputError, Record,
    Signal, Slot, StatSet, UpstreamKey, Value,
};
use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
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
    .mandatory(),
    OptionDef::int(
        "reconnect",
        "2",
        "Longest wait in seconds between reconnect attempts",
    ),
    OptionDef::int(
        "connect_timeout",
        "0",
        "Seconds a connection attempt may take (0: 10)",
    ),
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
    ),
    OptionDef::int(
        "backlog_oneshot_requests",
        "10",
        "Accepted for ulogd configs; rows are written in batches",
    ),
    OptionDef::int(
        "ring_buffer_size",
        "0",
        "Rows the memory queue holds (0: default)",
    ),
];

/// rulogd's own options of every SQL output.
pub const OWN_OPTIONS: [OptionDef; 4] = [
    OptionDef::str(
        "spool_dir",
        "",
        "Directory of the durable spool (empty: memory only)",
    ),
    OptionDef::int(
        "spool_size",
        "1073741824",
        "Most bytes spooled; beyond it when_full applies",
    ),
    OptionDef::str(
        "when_full",
        "drop",
        "Spool (or memory queue) full: block the input, or drop and count",
    ),
    OptionDef::str(
        "template",
        "",
        "Table copied to create a time-partitioned table (table with % fields)",
    ),
];

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
    fn text(&self) -> &str {
        match self {
            DbError::Away(s) | DbError::Data(s) => s,
        }
    }
}

/// One value of a row, as the writer reads it back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Val<'a> {
    /// No value: SQL NULL.
    Null,
    /// A signed integer key.
    Int(i64),
    /// An unsigned integer key (IP2HBIN's IPv4 numbers too).
    UInt(u64),
    /// A boolean key.
    Bool(bool),
    /// An IPv4 address key, octets as on the wire.
    V4([u8; 4]),
    /// An IPv6 address key.
    V6([u8; 16]),
    /// A string (or IP2BIN's RAWSTR), cut at a NUL as ulogd's C strings are.
    Text(&'a [u8]),
    /// Opaque bytes (RAW keys).
    Raw(&'a [u8]),
}

impl Val<'_> {
    /// ulogd 2.0.8's number for an address: the first four bytes of its
    /// value union read as a host integer (the network-order IPv4 address
    /// read in host order; for IPv6 only the first 4 bytes).
    pub fn ulogd_u32(a: &[u8]) -> u32 {
        u32::from_ne_bytes([a[0], a[1], a[2], a[3]])
    }
}

const T_NULL: u8 = 0;
const T_INT: u8 = 1;
const T_UINT: u8 = 2;
const T_BOOL: u8 = 3;
const T_V4: u8 = 4;
const T_V6: u8 = 5;
const T_TEXT: u8 = 6;
const T_RAW: u8 = 7;

/// Row header: layout id and the record's time (for partitioned tables).
pub const ROW_HEAD: usize = 16;

/// A layout id: FNV-1a over the key names, stable across restarts so that
/// spooled rows find their layout again.
pub fn layout_id(keys: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for k in keys {
        for &b in k.as_bytes().iter().chain(&[0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Layouts by id, shared by the producers and the writer of one instance,
/// and written to `<spool_dir>/layouts` so a restart can read old rows.
#[derive(Default)]
pub struct Layouts {
    map: Mutex<HashMap<u64, Arc<Vec<String>>>>,
    file: Option<PathBuf>,
}

impl Layouts {
    /// Layouts kept in `file` (loaded now) or only in memory.
    pub fn new(file: Option<PathBuf>) -> Self {
        let mut map = HashMap::new();
        if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                let keys: Vec<String> = line.split('\t').map(str::to_string).collect();
                if !keys.is_empty() && !line.is_empty() {
                    map.insert(layout_id(&keys), Arc::new(keys));
                }
            }
        }
        Layouts {
            map: Mutex::new(map),
            file,
        }
    }

    /// Registers `keys` and returns its id.
    pub fn register(&self, keys: Vec<String>) -> io::Result<u64> {
        let id = layout_id(&keys);
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.contains_key(&id) {
            return Ok(id);
        }
        if let Some(f) = &self.file {
            use std::io::Write;
            let mut out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)?;
            writeln!(out, "{}", keys.join("\t"))?;
            out.sync_data()?;
        }
        m.insert(id, Arc::new(keys));
        Ok(id)
    }

    /// The keys of layout `id`.
    pub fn get(&self, id: u64) -> Option<Arc<Vec<String>>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}

/// Renders records into rows of one layout (on the input thread).
pub struct Renderer {
    id: u64,
    slots: Vec<Option<Slot>>,
    time: Option<Slot>,
    partitioned: bool,
}

impl Renderer {
    /// A renderer for `keys`, each bound to the nearest upstream producer.
    pub fn new(
        layouts: &Layouts,
        keys: Vec<String>,
        upstream: &[UpstreamKey],
        partitioned: bool,
    ) -> Result<Self, BuildError> {
        let slot = |name: &str| {
            upstream
                .iter()
                .rev()
                .find(|k| k.def.name == name)
                .map(|k| k.slot)
        };
        let slots = keys.iter().map(|k| slot(k)).collect();
        let time = slot("oob.time.sec").or_else(|| slot("flow.end.sec"));
        let id = layouts
            .register(keys)
            .map_err(|e| BuildError::io("cannot record the row layout", e))?;
        Ok(Renderer {
            id,
            slots,
            time,
            partitioned,
        })
    }

    /// Appends the row for `rec` to `out`.
    pub fn render(&self, rec: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_le_bytes());
        let t = if self.partitioned {
            rec.get_u64(self.time)
                .map(|s| s as i64)
                .unwrap_or_else(now_secs)
        } else {
            0
        };
        out.extend_from_slice(&t.to_le_bytes());
        for &s in &self.slots {
            match rec.get_opt(s) {
                None => out.push(T_NULL),
                Some(v) => encode(rec, v, out),
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn encode(rec: &Record, v: &Value, out: &mut Vec<u8>) {
    let int = |out: &mut Vec<u8>, tag: u8, x: u64| {
        out.push(tag);
        out.extend_from_slice(&x.to_le_bytes());
    };
    let bytes = |out: &mut Vec<u8>, tag: u8, b: &[u8]| {
        out.push(tag);
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    };
    match v {
        Value::None => out.push(T_NULL),
        Value::I8(x) => int(out, T_INT, *x as i64 as u64),
        Value::I16(x) => int(out, T_INT, *x as i64 as u64),
        Value::I32(x) => int(out, T_INT, *x as i64 as u64),
        Value::I64(x) => int(out, T_INT, *x as u64),
        Value::U8(x) => int(out, T_UINT, u64::from(*x)),
        Value::U16(x) => int(out, T_UINT, u64::from(*x)),
        Value::U32(x) => int(out, T_UINT, u64::from(*x)),
        Value::U64(x) => int(out, T_UINT, *x),
        Value::Bool(b) => {
            out.push(T_BOOL);
            out.push(u8::from(*b));
        }
        Value::Ipv4(a) => {
            out.push(T_V4);
            out.extend_from_slice(&a.octets());
        }
        Value::Ipv6(a) => {
            out.push(T_V6);
            out.extend_from_slice(&a.octets());
        }
        Value::Raw(_) | Value::RawOwned(_) => bytes(out, T_RAW, rec.bytes_of(v).unwrap_or(&[])),
        Value::StrSpan(_) | Value::Str(_) | Value::Shared(_) => {
            let b = rec.bytes_of(v).unwrap_or(&[]);
            // A C string ends at its first NUL; ulogd writes only that much.
            let b = b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n]);
            bytes(out, T_TEXT, b)
        }
    }
}

/// Reads one row back: its layout id, time and values.
pub fn decode<'a>(row: &'a [u8], vals: &mut Vec<Val<'a>>) -> Option<(u64, i64)> {
    vals.clear();
    let head = row.get(..ROW_HEAD)?;
    let id = u64::from_le_bytes(head[..8].try_into().ok()?);
    let t = i64::from_le_bytes(head[8..16].try_into().ok()?);
    let mut p = ROW_HEAD;
    while p < row.len() {
        let tag = row[p];
        p += 1;
        let v = match tag {
            T_NULL => Val::Null,
            T_INT | T_UINT => {
                let x = u64::from_le_bytes(row.get(p..p + 8)?.try_into().ok()?);
                p += 8;
                if tag == T_INT {
                    Val::Int(x as i64)
                } else {
                    Val::UInt(x)
                }
            }
            T_BOOL => {
                p += 1;
                Val::Bool(*row.get(p - 1)? != 0)
            }
            T_V4 => {
                p += 4;
                Val::V4(row.get(p - 4..p)?.try_into().ok()?)
            }
            T_V6 => {
                p += 16;
                Val::V6(row.get(p - 16..p)?.try_into().ok()?)
            }
            T_TEXT | T_RAW => {
                let n = u32::from_le_bytes(row.get(p..p + 4)?.try_into().ok()?) as usize;
                let b = row.get(p + 4..p + 4 + n)?;
                p += 4 + n;
                if tag == T_TEXT {
                    Val::Text(b)
                } else {
                    Val::Raw(b)
                }
            }
            _ => return None,
        };
        vals.push(v);
    }
    Some((id, t))
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
    /// `spool_dir` (empty: none).
    pub spool_dir: String,
    /// `spool_size`.
    pub spool_size: u64,
    /// `when_full`.
    pub when_full: crate::delivery::WhenFull,
}

/// Hand a batch over at this size: a few thousand rows per transaction.
pub const SQL_BATCH_BYTES: usize = 256 * 1024;

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
        let when_full = crate::delivery::WhenFull::parse(wf).ok_or_else(|| {
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
            spool_dir: o.str("spool_dir").to_string(),
            spool_size: nonneg("spool_size")?,
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
            let spool_dir = (!cfg.spool_dir.is_empty())
                .then(|| PathBuf::from(&cfg.spool_dir).join(ctx.instance));
            let mut dc = DeliveryConfig::new(ctx.instance, plugin, cfg.when_full);
            dc.queue_size = cfg.queue_size;
            dc.batch_bytes = SQL_BATCH_BYTES;
            dc.spool = spool_dir.as_ref().map(|dir| SpoolConfig {
                dir: dir.clone(),
                max_bytes: cfg.spool_size,
                retry_max: Duration::from_secs(cfg.reconnect.max(1)),
            });
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

/// The delivery transport of every SQL output: decodes rows, maps them onto
/// the table's columns and hands them to the driver, setting aside rows the
/// database refuses so one bad value cannot stop the queue.
pub struct SqlTransport<D: Driver> {
    driver: D,
    name: String,
    cfg: SqlConfig,
    layouts: Arc<Layouts>,
    /// Columns of the template (or table), read on every connect.
    cols: Option<Arc<Vec<String>>>,
    /// For a layout: which of its values feeds each column.
    maps: HashMap<u64, Arc<Vec<Option<usize>>>>,
    /// Partitions known to exist.
    made: Vec<String>,
    rejected: Counter,
    told_unmatched: bool,
}

impl<D: Driver> SqlTransport<D> {
    /// A transport for instance `name`; `cols` when read at start-up.
    pub fn new(
        driver: D,
        name: &str,
        cfg: SqlConfig,
        layouts: Arc<Layouts>,
        cols: Option<Vec<String>>,
        rejected: Counter,
    ) -> Self {
        SqlTransport {
            driver,
            name: name.to_string(),
            cfg,
            layouts,
            cols: cols.map(Arc::new),
            maps: HashMap::new(),
            made: Vec::new(),
            rejected,
            told_unmatched: false,
        }
    }

    fn map_for(&mut self, id: u64) -> Option<Arc<Vec<Option<usize>>>> {
        if let Some(m) = self.maps.get(&id) {
            return Some(m.clone());
        }
        let keys = self.layouts.get(id)?;
        let cols = self.cols.clone()?;
        let map: Vec<Option<usize>> = cols
            .iter()
            .map(|c| {
                let k = key_of_column(c);
                keys.iter().position(|x| *x == k)
            })
            .collect();
        let missing: Vec<&str> = cols
            .iter()
            .zip(&map)
            .filter(|(_, m)| m.is_none())
            .map(|(c, _)| c.as_str())
            .collect();
        if !missing.is_empty() && !self.told_unmatched {
            self.told_unmatched = true;
            log::error!(
                "{}: table `{}`: columns {} match no key of the stack; they get NULL",
                self.name,
                self.cfg.template,
                missing.join(", ")
            );
        }
        let map = Arc::new(map);
        self.maps.insert(id, map.clone());
        Some(map)
    }

    fn away(e: &DbError, next: usize) -> SendError {
        SendError {
            next,
            error: io::Error::other(e.text().to_string()),
        }
    }

    /// Writes rows `a..b` of `batch` to `table`, setting aside rows that
    /// the database refuses.
    fn write_range(
        &mut self,
        batch: &Batch,
        table: &str,
        a: usize,
        b: usize,
    ) -> Result<(), DbError> {
        let cols = self
            .cols
            .clone()
            .ok_or_else(|| DbError::Away("no columns".into()))?;
        let mut flat: Vec<Val<'_>> = Vec::with_capacity((b - a) * cols.len());
        let mut v: Vec<Val<'_>> = Vec::with_capacity(cols.len() + 8);
        let mut bad = Vec::new();
        for i in a..b {
            match decode(batch.record(i), &mut v).map(|(id, _)| self.map_for(id)) {
                Some(Some(map)) => flat.extend(
                    map.iter()
                        .map(|m| m.and_then(|j| v.get(j).copied()).unwrap_or(Val::Null)),
                ),
                _ => bad.push(i),
            }
        }
        if !bad.is_empty() {
            self.rejected.add(bad.len() as u64);
            log::error!(
                "{}: {} rows of an unknown layout set aside",
                self.name,
                bad.len()
            );
        }
        let n = cols.len().max(1);
        match self.driver.write(table, &cols, &flat) {
            Err(DbError::Data(msg)) => {
                // Find the rows the database refuses, one at a time.
                let mut refused = 0;
                for row in flat.chunks(n) {
                    match self.driver.write(table, &cols, row) {
                        Ok(()) => {}
                        Err(DbError::Data(m)) => {
                            refused += 1;
                            if refused == 1 {
                                log::error!("{}: {}: row refused: {m}", self.name, table);
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                if refused > 0 {
                    self.rejected.add(refused);
                    log::warn!(
                        "{}: {refused} rows refused by {table} and set aside (first: {msg})",
                        self.name
                    );
                }
                Ok(())
            }
            r => r,
        }
    }
}

impl<D: Driver> Transport for SqlTransport<D> {
    fn describe(&self) -> &str {
        self.driver.describe()
    }

    fn is_open(&self) -> bool {
        self.driver.is_open()
    }

    fn open(&mut self) -> io::Result<()> {
        let res = self
            .driver
            .connect()
            .and_then(|()| self.driver.columns(&self.cfg.template));
        match res {
            Ok(cols) => {
                if self.cols.as_deref() != Some(&cols) {
                    self.maps.clear();
                    self.told_unmatched = false;
                }
                self.cols = Some(Arc::new(cols));
                Ok(())
            }
            Err(e) => {
                self.driver.close();
                Err(io::Error::other(e.text().to_string()))
            }
        }
    }

    fn send(&mut self, batch: &Batch, from: usize, _: &DeliveryStats) -> Result<(), SendError> {
        if !self.cfg.partitioned() {
            let table = self.cfg.table.clone();
            return self
                .write_range(batch, &table, from, batch.records())
                .map_err(|e| Self::away(&e, from));
        }
        // Runs of rows that go to the same partition, in order.
        let mut a = from;
        while a < batch.records() {
            let t = |i: usize| decode_time(batch.record(i));
            let table = table_for(&self.cfg.table, t(a));
            let mut b = a + 1;
            while b < batch.records() && table_for(&self.cfg.table, t(b)) == table {
                b += 1;
            }
            if !self.made.contains(&table) {
                self.driver
                    .create_like(&table, &self.cfg.template)
                    .map_err(|e| Self::away(&e, a))?;
                self.made.push(table.clone());
            }
            // A batch is one unit for the writer: a failure resends it whole,
            // so runs already written would come twice. Partitioned writes
            // are therefore all-or-nothing per run, and `next` is the run.
            self.write_range(batch, &table, a, b)
                .map_err(|e| Self::away(&e, a))?;
            a = b;
        }
        Ok(())
    }

    fn close(&mut self) {
        self.driver.close();
    }
}

fn decode_time(row: &[u8]) -> i64 {
    row.get(8..16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i64::from_le_bytes)
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
