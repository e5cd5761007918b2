//! What the SQL output tests (SQLITE3, PGSQL, MYSQL) share: the sqlite3
//! shell, and the start-up error that names a table's unfed columns.

use std::path::Path;
use std::process::Command;

/// Runs `sql` on `db` with the sqlite3 shell (as `user`, a uid and gid, if
/// given) and returns its output; panics with its stderr if it fails. It
/// waits up to 5 s for the writers' locks (ulogd2 does not use WAL)
/// instead of failing.
pub fn sqlite3(db: &Path, sql: &str, user: Option<(u32, u32)>) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sqlite3");
    if let Some((u, g)) = user {
        cmd.uid(u).gid(g);
    }
    let out = cmd
        .args(["-cmd", ".timeout 5000"])
        .arg(db)
        .arg(sql)
        .output();
    crate::check_output(&format!("sqlite3 {sql}"), out)
}

/// Asserts that a refused start's `log` names the instance, the table and
/// both columns no key feeds (`no_such_key`, `nor_this`), and not the fed
/// `ip_saddr_str`.
pub fn assert_unfed_columns_named(log: &str, instance: &str, table: &str) {
    for needle in [
        instance,
        table,
        "no_such_key (key no.such.key)",
        "nor_this (key nor.this)",
    ] {
        assert!(log.contains(needle), "`{needle}` missing from: {log}");
    }
    assert!(!log.contains("ip_saddr_str ("), "{log}");
}
