//! The SQL outputs' configuration: ulogd's options and rulogd's, the
//! column-to-key rule, the procedure a config names, table names by date.

use rulogd_plugin::{BuildError, OptionDef, Options};

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
            $crate::sql::config::DB_OPTIONS[0],
            $crate::sql::config::DB_OPTIONS[1],
            $crate::sql::config::DB_OPTIONS[2],
            $crate::sql::config::DB_OPTIONS[3],
            $crate::sql::config::DB_OPTIONS[4],
            $crate::sql::config::DB_OPTIONS[5],
            $crate::sql::config::DB_OPTIONS[6],
            $($o,)*
            $crate::sql::config::OWN_OPTIONS[0],
            $crate::sql::config::OWN_OPTIONS[1],
            $crate::sql::config::OWN_OPTIONS[2],
            $crate::sql::config::OWN_OPTIONS[3],
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
pub(crate) const LOCAL_DATABASES: &[&str] = &["SQLITE3"];

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

/// Whether a column whose key (after [`key_of_column`]) is `col_key` takes
/// key `name`: the same name, or one with `_` where the column has `.`
/// (column `flow_end_reason` takes key `flow.end_reason`, which ulogd's
/// rule alone could never feed). An exact name wins: see [`column_key`].
pub fn column_takes(col_key: &str, name: &str) -> bool {
    name == col_key || (name.contains('_') && name.replace('_', ".") == col_key)
}

/// The key of `keys` a column feeds from: the exact name if there is one,
/// else the first that [`column_takes`].
pub fn column_key<'a>(col: &str, keys: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    let k = key_of_column(col);
    keys.clone()
        .find(|n| *n == k)
        .or_else(|| keys.into_iter().find(|n| column_takes(&k, n)))
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
        let when_full = rulogd_delivery::WhenFull::option(o)?;
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

#[cfg(test)]
#[test]
fn a_column_takes_its_key_with_dots_or_with_underscores_the_exact_name_first() {
    let keys = [
        "flow.end_reason",
        "oob.ifindex_in",
        "raw.mac.len",
        "raw.mac_len",
    ];
    let k = |c: &str| column_key(c, keys.iter().copied());
    assert_eq!(k("flow_end_reason"), Some("flow.end_reason"));
    assert_eq!(k("oob_ifindex_in"), Some("oob.ifindex_in"));
    assert_eq!(
        k("raw_mac_len"),
        Some("raw.mac.len"),
        "ulogd's reading wins"
    );
    assert_eq!(k("flow_end"), None);
    assert!(!column_takes("flow.end", "flow_end_reason"));
}
