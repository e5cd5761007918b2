//! The delivery transport every SQL output shares (writer thread side).

use super::config::{column_key, table_for, SqlConfig};
use super::driver::{DbError, Driver};
use super::row::{decode, decode_time, Layouts, Val};
use rulogd_delivery::{Batch, DeliveryStats, SendError, Transport};
use rulogd_plugin::Counter;
use std::collections::HashMap;
use std::io;
use std::sync::Arc;

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
                let k = column_key(c, keys.iter().map(String::as_str))?;
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
                // A new database (SQLite's file deleted and made again) has
                // none of the partitions made before.
                self.made.clear();
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
