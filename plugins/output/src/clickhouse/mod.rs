//! CLICKHOUSE: records into a ClickHouse table over its HTTP interface,
//! `INSERT … FORMAT RowBinary`, one insert per batch.
//!
//! The table's columns name the keys as in the SQL outputs (`ip_saddr` is
//! `ip.saddr`), read with `DESCRIBE TABLE` at start and on every reconnect;
//! rows go through the SQL layer's row format and transport, so the shared
//! delivery gives a server that is down at start, restarted or slow the
//! memory queue, then the durable spool, then `when_full`, all counted.
//! Batches are handed over at `batch_rows` rows, `batch_bytes` bytes or
//! `batch_age` ms, whichever comes first: ClickHouse wants few, large
//! inserts (about one a second), not one per idle moment of the input.

mod driver;
mod http;
mod rowbinary;
mod schema;

use crate::sql::config::{Procedure, SqlConfig};
use crate::sql::output::{all_keys, check_columns, Layouts, Renderer, SqlTransport};
use driver::{ChDriver, Dedup};
use http::Endpoint;
use rulogd_delivery::{spool_config, Delivery, DeliveryConfig, Producer, Transport, WhenFull};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, Counter, OptionDef, Output, OutputError, Record, Signal, StatSet,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static OPTIONS: [OptionDef; 19] = [
    OptionDef::str("url", "http://127.0.0.1:8123", "Server's HTTP interface, http://host:port"),
    OptionDef::str("database", "default", "Database of the table").check(rulogd_plugin::options::check_not_empty),
    OptionDef::str("table", "", "Table whose columns name the keys to write (ip_saddr: ip.saddr)")
        .check(rulogd_plugin::options::check_not_empty)
        .mandatory(),
    OptionDef::str("user", "default", "User (X-ClickHouse-User)"),
    OptionDef::str("password", "", "Password (X-ClickHouse-Key)"),
    OptionDef::str("password_file", "", "File whose first line is the password (read at start, before -u drops privileges); not with password"),
    OptionDef::str("compression", "none", "Request bodies: none, or gzip (Content-Encoding: gzip, level 1)")
        .one_of(&["none", "gzip"]),
    OptionDef::str("create", "", "Create the table when it does not exist, from a shipped schema: packets, nfct or flow")
        .one_of(&["", "packets", "nfct", "flow"]),
    OptionDef::int("batch_rows", "100000", "Hand a batch over at this many rows").range(1, 10_000_000),
    OptionDef::int("batch_bytes", "8388608", "Hand a batch over at this many bytes of rendered rows")
        .range(1 << 12, 1 << 30),
    OptionDef::int("batch_age", "1000", "Hand a batch over when its first row is this many ms old")
        .range(0, 3_600_000),
    OptionDef::int("connect_timeout", "10", "Seconds a connection attempt may take").range(1, 3600),
    OptionDef::int("request_timeout", "60", "Seconds the server may take to answer an insert").range(1, 86_400),
    OptionDef::int("reconnect", "2", "Longest wait in seconds between reconnect attempts").range(1, 3600),
    OptionDef::int("queue_size", "8", "Batches queued in memory for the writer thread").range(1, 4096),
    OptionDef::str("when_full", "drop", "Spool (or memory queue) full: block the input, or drop and count")
        .one_of(&["block", "drop"]),
    OptionDef::str("deduplicate", "auto", "auto: retries carry insert_deduplication_token where the server has it (22.2+); off: never")
        .one_of(&["auto", "off"]),
    rulogd_delivery::SPOOL_DIR,
    rulogd_delivery::SPOOL_SIZE,
];

rulogd_plugin::plugin! {
    Output "CLICKHOUSE" wildcard (build): "Inserts records into a ClickHouse table (HTTP interface, RowBinary, batched)";
    options &OPTIONS;
}

const PLUGIN: &str = "CLICKHOUSE";

/// What the first instance with an id prepares for the others.
struct Prep {
    driver: Mutex<Option<ChDriver>>,
    cols: Option<Vec<String>>,
    layouts: Arc<Layouts>,
    delivery: DeliveryConfig,
    cfg: SqlConfig,
    refused: Counter,
}

fn int(ctx: &BuildCtx, name: &str) -> u64 {
    // Every int option has a range that starts at 0 or above.
    ctx.options.int(name).max(0) as u64
}

fn prepare(ctx: &BuildCtx) -> Result<Prep, BuildError> {
    let o = ctx.options;
    let authority = http::parse_url(o.str("url")).map_err(|e| BuildError::option("url", e))?;
    for k in ["user", "password"] {
        if o.str(k).chars().any(|c| c.is_control()) {
            return Err(BuildError::option(k, "must not hold control characters"));
        }
    }
    let ep = Endpoint {
        authority,
        user: o.str("user").to_string(),
        password: password(ctx)?,
        connect_timeout: Duration::from_secs(int(ctx, "connect_timeout")),
        request_timeout: Duration::from_secs(int(ctx, "request_timeout")),
        gzip: o.str("compression") == "gzip",
    };
    let table = o.str("table").to_string();
    if table.contains('%') {
        return Err(BuildError::option(
            "table",
            "ClickHouse partitions on the server (PARTITION BY); the table name takes no strftime fields",
        ));
    }
    let dedup = if o.str("deduplicate") == "off" {
        Dedup::Off
    } else {
        Dedup::Auto
    };
    let when_full = WhenFull::option(o)?;
    let cfg = SqlConfig {
        table: table.clone(),
        template: table.clone(),
        procedure: Procedure::Insert,
        reconnect: int(ctx, "reconnect"),
        connect_timeout: int(ctx, "connect_timeout"),
        queue_size: int(ctx, "queue_size") as usize,
        when_full,
    };
    let mut driver = ChDriver::new(ep, o.str("database"), &table, dedup);
    driver.create = schema::Schema::parse(o.str("create"));
    let cols = discover(ctx.instance, &mut driver, &table)?;
    let spool = spool_config(ctx, Duration::from_secs(cfg.reconnect.max(1)))?;
    let spool_dir = spool.as_ref().map(|s| s.dir.clone());
    let mut dc = DeliveryConfig::new(ctx.instance, PLUGIN, when_full);
    dc.queue_size = cfg.queue_size;
    dc.batch_bytes = int(ctx, "batch_bytes") as usize;
    dc.spool = spool;
    let rows = StatSet::new(format!("{} ({PLUGIN} rows)", ctx.instance));
    let refused = rows.counter("refused");
    ctx.shared.add_stats(rows);
    Ok(Prep {
        driver: Mutex::new(Some(driver)),
        cols,
        layouts: Arc::new(Layouts::new(spool_dir.map(|d| d.join("layouts")))),
        delivery: dc,
        cfg,
        refused,
    })
}

/// The password: `password`, or the first line of `password_file`.
fn password(ctx: &BuildCtx) -> Result<String, BuildError> {
    let o = ctx.options;
    let file = o.str("password_file");
    if file.is_empty() {
        return Ok(o.str("password").to_string());
    }
    if !o.str("password").is_empty() {
        return Err(BuildError::option(
            "password_file",
            "set password or password_file, not both",
        ));
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| BuildError::option("password_file", format!("{file}: {e}")))?;
    let pass = text.lines().next().unwrap_or("").to_string();
    if pass.chars().any(|c| c.is_control()) {
        return Err(BuildError::option(
            "password_file",
            format!("{file}: the password must not hold control characters"),
        ));
    }
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(file).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        log::warn!(
            "{}: password_file {file} can be read by others than its owner (chmod 600 it)",
            ctx.instance
        );
    }
    Ok(pass)
}

/// Reads the columns as the SQL outputs do; then says, once the server's
/// version is known, when a retried batch may be inserted twice.
fn discover(
    instance: &str,
    driver: &mut ChDriver,
    table: &str,
) -> Result<Option<Vec<String>>, BuildError> {
    let cols = crate::sql::output::discover(instance, driver, table)?;
    if cols.is_some() && driver.dedup_auto() && !driver.uses_token() {
        log::info!(
            "{instance}: server {:?} has no insert_deduplication_token: a batch retried after a broken answer may be inserted twice unless the table deduplicates blocks (Replicated*)",
            driver.version().unwrap_or((0, 0))
        );
    }
    Ok(cols)
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let prep = ctx
        .shared
        .get_or_try_insert(&format!("{PLUGIN}-prep:{}", ctx.instance), || {
            prepare(ctx).map(Arc::new)
        })?;
    let delivery = Delivery::shared(ctx, PLUGIN, &prep.delivery, || {
        let driver = prep
            .driver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| BuildError::Other("ClickHouse driver already taken".into()))?;
        Ok(Box::new(SqlTransport::new(
            driver,
            ctx.instance,
            prep.cfg.clone(),
            prep.layouts.clone(),
            prep.cols.clone(),
            prep.refused.clone(),
        )) as Box<dyn Transport>)
    })?;
    Ok(Box::new(ClickHouse {
        instance: ctx.instance.to_string(),
        table: prep.cfg.table.clone(),
        producer: delivery.producer(false),
        cols: prep.cols.clone(),
        layouts: prep.layouts.clone(),
        renderer: None,
        batch_rows: int(ctx, "batch_rows") as usize,
        batch_age: Duration::from_millis(int(ctx, "batch_age")),
        first: None,
    }))
}

/// One CLICKHOUSE instance in one stack: renders rows on the input thread.
pub struct ClickHouse {
    instance: String,
    table: String,
    producer: Producer,
    cols: Option<Vec<String>>,
    layouts: Arc<Layouts>,
    renderer: Option<Renderer>,
    batch_rows: usize,
    batch_age: Duration,
    /// When the first row of the batch being filled was rendered.
    first: Option<Instant>,
}

impl ClickHouse {
    fn hand_over(&mut self) -> Result<(), OutputError> {
        self.first = None;
        self.producer.flush()
    }
}

impl Output for ClickHouse {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        let keys = match &self.cols {
            Some(cols) => check_columns(&self.instance, &self.table, cols, b.upstream)?,
            None => all_keys(b.upstream),
        };
        self.renderer = Some(Renderer::new(&self.layouts, keys, b.upstream, false)?);
        Ok(())
    }

    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        let Some(r) = self.renderer.as_ref() else {
            return Ok(());
        };
        r.render(rec, self.producer.batch().buf());
        self.producer.commit()?;
        let n = self.producer.batch().records();
        if n == 0 {
            // The commit handed the batch over (batch_bytes).
            self.first = None;
        } else if n >= self.batch_rows {
            return self.hand_over();
        } else if self.first.is_none() {
            self.first = Some(Instant::now());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        // The input calls this at least every 100 ms; a young batch waits.
        match self.first {
            Some(t) if t.elapsed() >= self.batch_age => self.hand_over(),
            _ => Ok(()),
        }
    }

    fn signal(&mut self, sig: Signal) {
        if sig == Signal::Hup {
            let _ = self.hand_over();
        }
    }
}
