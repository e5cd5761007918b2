//! bench-sql's row counts while a run goes on.

use super::{ch, Target};
use rulogd_tests::clickhouse::ClickHouse;
use rulogd_tests::maria::Maria;
use rulogd_tests::pg::Pg;
use rulogd_tests::Netns;
use std::path::Path;
use std::process::Command;

/// Counts the rows in the table so far, cheaply: the serial's last value
/// (PostgreSQL) or the largest id (MariaDB), each over one kept connection,
/// `SELECT count()` over HTTP (ClickHouse), or the largest rowid (SQLite).
#[derive(Default)]
pub struct RowCount {
    conn: Option<postgres::Client>,
    my: Option<mysql::Conn>,
}

impl RowCount {
    /// None when the count could not be read (the server not up yet,
    /// SQLite locked by a writer), which must not look like an idle writer.
    pub fn get(
        &mut self,
        t: Target,
        pg: &Pg,
        db: &Path,
        my: Option<&Maria>,
        ch: Option<(&Netns, &ClickHouse)>,
    ) -> Option<u64> {
        if let Some((ns, server)) = ch {
            return ch::count(ns, server);
        }
        if let Some(my) = my {
            use mysql::prelude::Queryable;
            if self.my.is_none() {
                let sock = my.socket().to_string_lossy().into_owned();
                let opts = mysql::OptsBuilder::new()
                    .socket(Some(sock))
                    .user(Some("root"));
                self.my = mysql::Conn::new(opts).ok();
            }
            let c = self.my.as_mut()?;
            let n: Option<u64> = c
                .query_first("select coalesce(max(_id), 0) from b.bench")
                .ok()?;
            return n;
        }
        if t.pg() {
            if !matches!(&self.conn, Some(c) if !c.is_closed()) {
                let url = format!(
                    "host={} port={} user=postgres dbname={}",
                    pg.host(),
                    pg.port(),
                    if t.full() { "ulog2db" } else { "b" }
                );
                self.conn = postgres::Client::connect(&url, postgres::NoTls).ok();
            }
            let row = self
                .conn
                .as_mut()?
                .query_one(
                    if t.full() {
                        "select case when is_called then last_value else 0 end from ulog2__id_seq"
                    } else {
                        "select case when is_called then last_value else 0 end from bench__id_seq"
                    },
                    &[],
                )
                .ok()?;
            u64::try_from(row.get::<_, i64>(0)).ok()
        } else {
            let out = Command::new("sqlite3")
                .args(["-cmd", ".timeout 2000"])
                .arg(db)
                .arg("select coalesce(max(rowid), 0) from bench")
                .output();
            out.ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        }
    }
}
