//! SQLITE3: rows into an SQLite table, as ulogd2's SQLITE3 writes them:
//! every column of `table` (read with `select *`, `_` in a name standing for
//! `.` in a key) takes the value of that key, or NULL.
//!
//! Beyond ulogd2: rows are written in batched transactions on a writer
//! thread with the database in WAL mode, a busy database is retried instead
//! of losing the row, and values keep their full width (ulogd 2.0.8 binds
//! 32-bit unsigned and 64-bit signed keys as a signed 32-bit int).

use super::config::{ident, SqlConfig, OWN_OPTIONS};
use super::driver::{DbError, Driver};
use super::output::build_output;
use super::row::Val;
use rulogd_plugin::{BuildCtx, BuildError, OptionDef, Output};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, DatabaseName, ErrorCode};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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

rulogd_plugin::plugin! {
    Output "SQLITE3" wildcard (build): "Writes records as rows of an SQLite table (columns name the keys)";
    options &OPTIONS;
}

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
    let db = PathBuf::from(&path);
    let out = build_output(ctx, "SQLITE3", cfg, move || {
        let mut d = Sqlite::new(path);
        d.create = create;
        d
    })?;
    // The connection opened at start (as root) is kept, but SIGHUP and a
    // database deleted while running open the files again as the -u user:
    // hand it the database and its WAL files, and check that it can make
    // them anew in their directory.
    let special = db.as_os_str() == ":memory:" || db.starts_with("file:");
    if ctx.shared.env().owner.is_some() && !special {
        for p in [db.clone(), side_file(&db, "-wal"), side_file(&db, "-shm")] {
            ctx.shared.hand_over_later(p);
        }
        ctx.shared.reopens_in(
            db.parent().map(Path::to_path_buf).unwrap_or_default(),
            format!(
                "{} (SQLITE3) reopens {} and its -wal and -shm files",
                ctx.instance,
                db.display()
            ),
        );
    }
    Ok(out)
}

/// `db` with `suffix` appended to its file name (SQLite's `-wal`, `-shm`).
fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The column names of rulogd's packet table, to recognise it.
fn packet_columns() -> Option<Vec<String>> {
    let c = Connection::open_in_memory().ok()?;
    c.execute_batch(&packet_table("t")?).ok()?;
    let st = c.prepare("select * from t").ok()?;
    Some(st.column_names().into_iter().map(str::to_string).collect())
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

/// What became of the database file since it was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// The path still names the file we write.
    Same,
    /// The file has no name left: what goes into it is lost.
    Deleted,
    /// The path names another file, or none, while ours lives on under
    /// another name (a rename, a hard link kept): what went in is kept.
    Replaced,
}

/// An SQLite database file.
pub struct Sqlite {
    path: String,
    desc: String,
    conn: Option<Connection>,
    /// The database file as opened (read-only, for fstat): SQLite keeps
    /// writing into it after it is deleted or renamed, so each batch
    /// compares it with what the path names.
    file: Option<File>,
    /// The path was seen naming another file after the last commit.
    stale: bool,
    /// The table was read once: a later "no such table" means the database
    /// was replaced, and is said loudly.
    seen_table: bool,
    /// The table had rulogd's packet columns: made again in a new database.
    default_schema: bool,
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
            file: None,
            stale: false,
            seen_table: false,
            default_schema: false,
            create: false,
        }
    }

    /// Compares the open database file with what its path names now (an
    /// fstat and a stat; before and after each batch).
    fn fate(&self) -> Fate {
        let Some(f) = &self.file else {
            return Fate::Same;
        };
        let Ok(ours) = f.metadata() else {
            return Fate::Same;
        };
        if ours.nlink() == 0 {
            return Fate::Deleted;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == (ours.dev(), ours.ino()) => Fate::Same,
            _ => Fate::Replaced,
        }
    }

    fn moved_error(&self, fate: Fate, rows: usize) -> DbError {
        let what = match fate {
            Fate::Deleted if rows > 0 => format!(
                "the database file was deleted while in use; the {rows} rows just \
                 committed into it are written again into a new {}",
                self.path
            ),
            Fate::Deleted => format!(
                "the database file was deleted while in use; reopening {}",
                self.path
            ),
            _ => format!(
                "the database file was renamed or replaced while in use; reopening {}",
                self.path
            ),
        };
        log::error!("{}: {what}", self.desc);
        DbError::Away(what)
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
        let db = Path::new(&self.path);
        if !db.exists() {
            // A WAL without its database belongs to a deleted one; SQLite
            // would replay its pages into the new, empty file.
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(side_file(db, suffix));
            }
        }
        let c = Connection::open(&self.path).map_err(sort)?;
        // SQLite opens a file it may not write read-only, without a word,
        // and every insert then fails: say so at once.
        if c.is_readonly(DatabaseName::Main).unwrap_or(false) {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            return Err(DbError::Away(format!(
                "{} is read-only for this process (uid {uid}): its owner or mode, \
                 or its directory's, does not let it write",
                self.path
            )));
        }
        c.busy_timeout(BUSY_TIMEOUT).map_err(sort)?;
        // WAL: readers do not block the writer; NORMAL syncs at checkpoints,
        // which WAL keeps consistent across a crash.
        c.pragma_update(None, "journal_mode", "WAL").map_err(sort)?;
        c.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sort)?;
        self.file = File::open(&self.path).ok();
        self.stale = false;
        self.conn = Some(c);
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            if self.fate() != Fate::Same {
                // SQLite skips its checkpoint at close when the file moved,
                // leaving the WAL at the old path full of the old database's
                // pages: move them into the old file now and empty the WAL.
                let _ = c.query_row("pragma wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                drop(c);
                let db = Path::new(&self.path);
                if !db.exists() {
                    for suffix in ["-wal", "-shm"] {
                        let _ = std::fs::remove_file(side_file(db, suffix));
                    }
                }
            }
        }
        self.file = None;
    }

    fn columns(&mut self, table: &str) -> Result<Vec<String>, DbError> {
        // A new database (the old one deleted) gets rulogd's table again
        // if that is what it had; a user's own schema is the user's to make.
        let create = self.create || self.default_schema;
        let (seen, desc, path) = (self.seen_table, self.desc.clone(), self.path.clone());
        let c = self.conn()?;
        if create {
            if let Some(sql) = packet_table(table) {
                c.execute_batch(&sql).map_err(sort)?;
            }
        }
        let cols: Vec<String> = match c.prepare(&format!("select * from {}", ident(table))) {
            Ok(st) => st.column_names().into_iter().map(str::to_string).collect(),
            Err(e) if seen => {
                let msg = format!(
                    "table `{table}` is gone from {path} ({e}): create it with its schema \
                     (or set create=1 for rulogd's packet table); rows are held until then"
                );
                log::error!("{desc}: {msg}");
                return Err(DbError::Away(msg));
            }
            Err(e) => return Err(sort(e)),
        };
        if !self.seen_table {
            self.seen_table = true;
            self.default_schema = packet_columns().is_some_and(|p| p == cols);
        }
        Ok(cols)
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
        // Checked before and after each batch: before, so nothing goes into
        // a file that lost its name while idle; after, so a batch committed
        // into a file deleted meanwhile is written again (its rows would
        // otherwise vanish with the inode).
        let before = if self.stale {
            Fate::Replaced
        } else {
            self.fate()
        };
        if before != Fate::Same {
            return Err(self.moved_error(before, 0));
        }
        self.insert(table, cols, rows, n)?;
        match self.fate() {
            Fate::Same => Ok(()),
            Fate::Replaced => {
                // Committed into the renamed file, where the rows stay.
                self.stale = true;
                Ok(())
            }
            Fate::Deleted => Err(self.moved_error(Fate::Deleted, rows.len() / n)),
        }
    }
}

impl Sqlite {
    fn insert(
        &mut self,
        table: &str,
        cols: &[String],
        rows: &[Val<'_>],
        n: usize,
    ) -> Result<(), DbError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;

    fn open(path: &Path) -> Sqlite {
        let mut d = Sqlite::new(path.to_str().unwrap().to_string());
        d.connect().unwrap();
        d
    }

    fn put(d: &mut Sqlite, vals: &[i64]) -> Result<(), DbError> {
        let cols = vec!["raw_pktlen".to_string()];
        let rows: Vec<Val<'_>> = vals.iter().map(|v| Val::Int(*v)).collect();
        d.write("t", &cols, &rows)
    }

    fn rows(path: &Path) -> Vec<i64> {
        let c = Connection::open(path).unwrap();
        let mut st = c
            .prepare("select raw_pktlen from t order by rowid")
            .unwrap();
        let v = st
            .query_map([], |r| r.get::<_, i64>(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        v
    }

    /// A database deleted under the writer is noticed before the next
    /// batch, and the new file gets rulogd's table (it had it) but none of
    /// the old WAL's pages.
    #[test]
    fn deleted_database_is_noticed_and_made_again() {
        let dir = temp_dir("sqlite-del");
        let db = dir.join("r.db");
        let mut d = open(&db);
        Connection::open(&db)
            .unwrap()
            .execute_batch(&packet_table("t").unwrap())
            .unwrap();
        assert!(d.columns("t").unwrap().contains(&"raw_pktlen".to_string()));
        assert!(d.default_schema);
        put(&mut d, &[1, 2]).unwrap();
        std::fs::remove_file(&db).unwrap();
        let e = put(&mut d, &[3]).unwrap_err();
        assert!(e.text().contains("deleted"), "{}", e.text());
        d.close();
        d.connect().unwrap();
        d.columns("t").unwrap();
        put(&mut d, &[3, 4]).unwrap();
        d.close();
        assert_eq!(rows(&db), vec![3, 4]);
    }

    /// A database deleted while a batch is being committed: the batch went
    /// into the deleted file, so the write fails (the writer sends it again
    /// into a new database) and says how many rows that is.
    #[test]
    fn batch_committed_into_a_deleted_database_is_refused() {
        let dir = temp_dir("sqlite-mid");
        let db = dir.join("r.db");
        let mut d = open(&db);
        d.create = true;
        d.columns("t").unwrap();
        put(&mut d, &[1]).unwrap();
        let p = db.clone();
        d.conn.as_ref().unwrap().commit_hook(Some(move || {
            let _ = std::fs::remove_file(&p);
            false
        }));
        let e = put(&mut d, &[2, 3, 4]).unwrap_err();
        assert!(
            e.text().contains("the 3 rows just committed"),
            "{}",
            e.text()
        );
        d.close();
        assert!(!db.exists() && !dir.join("r.db-wal").exists());
        d.connect().unwrap();
        d.columns("t").unwrap();
        put(&mut d, &[2, 3, 4]).unwrap();
        d.close();
        assert_eq!(rows(&db), vec![2, 3, 4]);
    }

    /// A user's table is not made again: the error names it.
    #[test]
    fn user_table_is_not_made_up() {
        let dir = temp_dir("sqlite-user");
        let db = dir.join("r.db");
        Connection::open(&db)
            .unwrap()
            .execute_batch("create table t (raw_pktlen INTEGER)")
            .unwrap();
        let mut d = open(&db);
        d.columns("t").unwrap();
        assert!(!d.default_schema);
        std::fs::remove_file(&db).unwrap();
        assert!(put(&mut d, &[1]).is_err());
        d.close();
        d.connect().unwrap();
        let e = d.columns("t").unwrap_err();
        assert!(e.text().contains("table `t` is gone"), "{}", e.text());
    }

    /// A renamed database keeps the rows written before the rename; the
    /// writer moves to a new file at the path.
    #[test]
    fn renamed_database_keeps_its_rows() {
        let dir = temp_dir("sqlite-mv");
        let db = dir.join("r.db");
        let mut d = open(&db);
        d.create = true;
        d.columns("t").unwrap();
        put(&mut d, &[1, 2]).unwrap();
        std::fs::rename(&db, dir.join("r.db.1")).unwrap();
        let e = put(&mut d, &[3]).unwrap_err();
        assert!(e.text().contains("renamed"), "{}", e.text());
        d.close();
        d.connect().unwrap();
        d.columns("t").unwrap();
        put(&mut d, &[3]).unwrap();
        d.close();
        assert_eq!(rows(&dir.join("r.db.1")), vec![1, 2]);
        assert_eq!(rows(&db), vec![3]);
    }
}
