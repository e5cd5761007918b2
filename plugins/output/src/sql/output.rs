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

use super::config::{column_key, key_of_column, SqlConfig, LOCAL_DATABASES, SQL_BATCH_BYTES};
use super::driver::Driver;
pub use super::row::{decode, layout_id, Layouts, Renderer, Val, ROW_HEAD};
pub use super::transport::SqlTransport;
use crate::rendered::{Render, Rendered};
use rulogd_delivery::{spool_config, Delivery, DeliveryConfig, Transport};
use rulogd_plugin::{Binding, BuildCtx, BuildError, Counter, Output, Record, StatSet, UpstreamKey};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
pub(crate) fn discover<D: Driver>(
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
    let rows = SqlOutput {
        instance: ctx.instance.to_string(),
        table: cfg.template.clone(),
        partitioned: cfg.partitioned(),
        cols: prep.cols.clone(),
        layouts: prep.layouts.clone(),
        renderer: None,
    };
    Ok(Rendered::boxed(delivery.producer(false), rows))
}

/// One SQL output instance in one stack: renders rows on the input thread.
pub struct SqlOutput {
    instance: String,
    table: String,
    partitioned: bool,
    cols: Option<Vec<String>>,
    layouts: Arc<Layouts>,
    renderer: Option<Renderer>,
}

impl Render for SqlOutput {
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

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        let Some(r) = self.renderer.as_ref() else {
            return false;
        };
        r.render(rec, out);
        true
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
    let names = upstream.iter().map(|u| &*u.def.name);
    let found: Vec<Option<&str>> = cols.iter().map(|c| column_key(c, names.clone())).collect();
    let missing: Vec<String> = cols
        .iter()
        .zip(&found)
        .filter(|(_, k)| k.is_none())
        .map(|(c, _)| format!("{c} (key {})", key_of_column(c)))
        .collect();
    if missing.is_empty() {
        Ok(found.into_iter().flatten().map(str::to_string).collect())
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
