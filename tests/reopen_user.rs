//! Files an output reopens while running as `-u nobody`: the SQLite
//! database with its -wal and -shm after SIGHUP, JSON and LOGEMU files
//! rotated with and without SIGHUP (in a directory nobody may write, and
//! in one it may not), and an SQLite database deleted while rows flow.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test reopen_user`
//! (root needed; uses the `sqlite3` shell to read the databases).

use rulogd_tests::{self as lab, daemon, Netns, TempDir};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

const RULES: &str = "table inet t {\n chain in {\n  type filter hook input priority 0; policy accept;\n  udp dport 9000-9099 log group {GROUP}\n  udp dport 9000-9099 drop\n }\n}\n";

/// A payload of 1 + i bytes marks packet i: raw_pktlen is 29 + i.
const PKTLEN_BASE: i64 = 29;

/// nobody's uid and gid.
fn nobody() -> (u32, u32) {
    // SAFETY: getpwnam with a NUL-terminated name; the record is read at once.
    unsafe {
        let pw = libc::getpwnam(c"nobody".as_ptr());
        assert!(!pw.is_null(), "no user nobody");
        ((*pw).pw_uid, (*pw).pw_gid)
    }
}

/// A directory owned by nobody, as a daemon's own log or state directory is.
fn nobody_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    std::fs::create_dir(&d).unwrap();
    let (u, g) = nobody();
    std::os::unix::fs::chown(&d, Some(u), Some(g)).unwrap();
    d
}

/// rulogd started with `-u nobody`; killed on drop.
struct Run {
    child: Option<Child>,
    log: PathBuf,
}

impl Run {
    fn start(ns: &Netns, dir: &Path, conf: &str, group: u16) -> Run {
        let log = dir.join("rulogd.log");
        let conf_path = dir.join("rulogd.conf");
        let text = lab::fill(conf, &[("LOGFILE", lab::path_str(&log))]);
        lab::check_filled(&text);
        std::fs::write(&conf_path, text).unwrap();
        let mut state = OsString::from("STATE_DIRECTORY=");
        state.push(dir.join("state"));
        let args: Vec<OsString> = vec![
            state,
            daemon::rulogd_bin().into(),
            "-v".into(),
            "-u".into(),
            "nobody".into(),
            "-c".into(),
            conf_path.into(),
        ];
        let err = File::create(dir.join("rulogd.stderr")).unwrap();
        let child = ns
            .spawn_in("env", &args, Stdio::null(), Stdio::from(err))
            .unwrap();
        let mut r = Run {
            child: Some(child),
            log,
        };
        let up = lab::wait_until(Duration::from_secs(10), || {
            !r.running() || (ns.nflog_instance(group).is_some() && r.log().contains("started"))
        });
        assert!(up && r.running(), "rulogd did not start\n{}", r.log());
        r
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn log(&self) -> String {
        let mut s = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(d) = self.log.parent() {
            s += &std::fs::read_to_string(d.join("rulogd.stderr")).unwrap_or_default();
        }
        s
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// SIGTERM; asserts a clean exit.
    fn stop(mut self) {
        let mut c = self.child.take().unwrap();
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let mut st = None;
        lab::wait_until(Duration::from_secs(20), || {
            st = c.try_wait().ok().flatten();
            st.is_some()
        });
        if st.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        assert!(
            st.is_some_and(|s| s.success()),
            "exit {st:?}\n{}",
            self.log()
        );
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            eprintln!("{}", self.log());
        }
    }
}

/// Sends packets `from..to` to `port` (packet i with 1 + i bytes), at
/// `rate` packets/s (0: at once).
fn send(ns: &Netns, port: u16, from: usize, to: usize, rate: u64) {
    ns.run_in_thread(move || {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let buf = vec![7u8; to + 1];
        let t0 = std::time::Instant::now();
        for i in from..to {
            if rate > 0 {
                let due = Duration::from_secs_f64((i - from) as f64 / rate as f64);
                if let Some(w) = due.checked_sub(t0.elapsed()) {
                    std::thread::sleep(w);
                }
            }
            s.send_to(&buf[..1 + i], dst).unwrap();
        }
    });
}

/// Runs the sqlite3 shell as nobody, so that a -shm or -wal file it makes
/// is one the daemon can use too.
fn sqlite(db: &Path, sql: &str) -> String {
    lab::sql::sqlite3(db, sql, Some(nobody()))
}

/// The packet numbers in `db`'s table `pkt` for `port`, and how many rows.
fn packets(db: &Path, port: u16) -> (BTreeSet<i64>, usize) {
    let out = sqlite(
        db,
        &format!("select raw_pktlen from pkt where udp_dport = {port}"),
    );
    let all: Vec<i64> = out
        .lines()
        .map(|l| l.trim().parse::<i64>().unwrap() - PKTLEN_BASE)
        .collect();
    (all.iter().copied().collect(), all.len())
}

fn count(db: &Path, port: u16) -> usize {
    packets(db, port).1
}

const SQL_CONF: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=1
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,sql1:SQLITE3

[log1]
group={GROUP}
netlink_socket_buffer_size=8388608

[sql1]
db=\"{DB}\"
table=\"pkt\"
create=1
";

fn sql_conf(db: &Path, group: u16) -> String {
    lab::fill(
        SQL_CONF,
        &[("DB", lab::path_str(db)), ("GROUP", group.to_string())],
    )
}

/// SQLITE3 under -u: the database, -wal and -shm were made as root; after
/// SIGHUP the new connection (as nobody) must still write, and every row
/// lands by SIGTERM.
#[test]
fn sqlite_under_user_writes_after_sighup() {
    lab::skip_unless_root!();
    let ns = Netns::new("rusq").unwrap();
    ns.nft(&RULES.replace("{GROUP}", "61")).unwrap();
    let tmp = TempDir::new("rusq");
    let dir = nobody_dir(tmp.path(), "db");
    let db = dir.join("r.db");
    let r = Run::start(&ns, tmp.path(), &sql_conf(&db, 61), 61);
    send(&ns, 9001, 0, 300, 0);
    assert!(
        lab::wait_until(Duration::from_secs(10), || count(&db, 9001) == 300),
        "{} rows before SIGHUP\n{}",
        count(&db, 9001),
        r.log()
    );
    r.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    send(&ns, 9002, 0, 400, 0);
    assert!(
        lab::wait_until(Duration::from_secs(10), || count(&db, 9002) == 400),
        "{} of 400 rows after SIGHUP\n{}",
        count(&db, 9002),
        r.log()
    );
    let log = r.log();
    r.stop();
    assert_eq!(packets(&db, 9001), ((0..300).collect(), 300));
    assert_eq!(packets(&db, 9002), ((0..400).collect(), 400));
    assert!(!log.contains("read-only"), "{log}");
    let (u, _) = nobody();
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if let Ok(m) = std::fs::metadata(&p) {
            assert_eq!(
                std::os::unix::fs::MetadataExt::uid(&m),
                u,
                "{} not nobody's",
                p.display()
            );
        }
    }
}

/// SQLITE3's database deleted while rows flow: the rows after the delete
/// are in the new database, none is lost, and the rows that went into the
/// deleted file before it was noticed are the ones the log says were
/// written again.
#[test]
fn sqlite_database_deleted_while_running() {
    db_goes_away_while_running(false);
}

/// The same with the database renamed (rotated without SIGHUP): the rows
/// before the rename stay in the renamed file, the later ones are in the
/// new one, each row in exactly one of them.
#[test]
fn sqlite_database_renamed_while_running() {
    db_goes_away_while_running(true);
}

fn db_goes_away_while_running(rename: bool) {
    lab::skip_unless_root!();
    let (tag, group) = if rename {
        ("rusqmv", 65)
    } else {
        ("rusqdel", 62)
    };
    let ns = Netns::new(tag).unwrap();
    ns.nft(&RULES.replace("{GROUP}", &group.to_string()))
        .unwrap();
    let tmp = TempDir::new(tag);
    let dir = nobody_dir(tmp.path(), "db");
    let db = dir.join("r.db");
    let moved = dir.join("r.db.1");
    let r = Run::start(&ns, tmp.path(), &sql_conf(&db, group), group);
    // Kept open to read what went into the deleted inode.
    let old = File::open(&db).unwrap();
    const N: usize = 2000;
    std::thread::scope(|s| {
        s.spawn(|| send(&ns, 9003, 0, N, 2000));
        std::thread::sleep(Duration::from_millis(500));
        if rename {
            std::fs::rename(&db, &moved).unwrap();
        } else {
            std::fs::remove_file(&db).unwrap();
        }
    });
    // Not read before the daemon made it: the shell would make it first.
    assert!(
        lab::wait_until(Duration::from_secs(10), || r
            .log()
            .contains("is back after")),
        "no new database\n{}",
        r.log()
    );
    assert!(daemon::wait_drained(&ns, group, Duration::from_secs(5)));
    assert!(
        lab::wait_until(Duration::from_secs(10), || count(&db, 9003) > 0),
        "no rows in the new database\n{}",
        r.log()
    );
    let log = r.log();
    r.stop();
    if !rename {
        let mut bytes = Vec::new();
        (&old).read_to_end(&mut bytes).unwrap();
        std::fs::write(&moved, bytes).unwrap();
        let (u, g) = nobody();
        std::os::unix::fs::chown(&moved, Some(u), Some(g)).unwrap();
    }
    let (o, o_rows) = packets(&moved, 9003);
    let (n, n_rows) = packets(&db, 9003);
    assert_eq!(o.len(), o_rows, "duplicates in the old file");
    assert_eq!(n.len(), n_rows, "duplicates in the new file");
    let all: BTreeSet<i64> = o.union(&n).copied().collect();
    assert_eq!(
        all.len(),
        N,
        "lost: {:?}\n{log}",
        (0..N as i64)
            .filter(|i| !all.contains(i))
            .collect::<Vec<_>>()
    );
    // The new file holds every packet from some point on.
    let first = *n.first().unwrap();
    assert_eq!(n, (first..N as i64).collect(), "new file not a suffix");
    assert!(first > 0 && (first as usize) < N, "first {first}");
    // Rows in both: committed into the deleted inode and written again;
    // the log must say so, with that number. A renamed file keeps its rows.
    let both = o.intersection(&n).count();
    let said: usize = log
        .lines()
        .filter(|l| !l.contains("holding records"))
        .filter_map(|l| {
            l.split("; the ")
                .nth(1)?
                .split(" rows just committed")
                .next()
        })
        .filter_map(|x| x.trim().parse::<usize>().ok())
        .sum();
    assert_eq!(both, said, "{log}");
    let what = if rename {
        "renamed or replaced"
    } else {
        "deleted"
    };
    assert!(log.contains(&format!("was {what} while in use")), "{log}");
    eprintln!(
        "{what} at ~{first}: {} rows in the old inode, {} in the new file, {both} written again",
        o.len(),
        n.len()
    );
}

/// A user's own table (not rulogd's packet table) in a database deleted
/// while running is not made up: the error says so, rows are held, and
/// once the user has made the table they land.
#[test]
fn sqlite_user_table_in_a_deleted_database_is_waited_for() {
    lab::skip_unless_root!();
    let ns = Netns::new("rusqusr").unwrap();
    ns.nft(&RULES.replace("{GROUP}", "66")).unwrap();
    let tmp = TempDir::new("rusqusr");
    let dir = nobody_dir(tmp.path(), "db");
    let db = dir.join("r.db");
    const TABLE: &str = "create table pkt (raw_pktlen INTEGER, udp_dport INTEGER)";
    sqlite(&db, TABLE);
    let conf = sql_conf(&db, 66).replace("create=1\n", "");
    let r = Run::start(&ns, tmp.path(), &conf, 66);
    send(&ns, 9001, 0, 100, 0);
    assert!(lab::wait_until(Duration::from_secs(10), || count(
        &db, 9001
    ) == 100));
    std::fs::remove_file(&db).unwrap();
    send(&ns, 9002, 0, 100, 0);
    assert!(
        lab::wait_until(Duration::from_secs(10), || r.log().contains("is gone from")),
        "{}",
        r.log()
    );
    // The daemon left an empty database there; the user makes the table.
    sqlite(&db, TABLE);
    assert!(
        lab::wait_until(Duration::from_secs(15), || count(&db, 9002) == 100),
        "{} rows\n{}",
        count(&db, 9002),
        r.log()
    );
    r.stop();
    assert_eq!(packets(&db, 9002), ((0..100).collect(), 100));
    assert_eq!(count(&db, 9001), 0);
}

const FILES_CONF: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=1
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,print1:PRINTPKT,emu1:LOGEMU

[log1]
group={GROUP}

[json1]
file=\"{JSON}\"
sync=1

[emu1]
file=\"{EMU}\"
sync=1
";

/// The JSON and LOGEMU files in `dir`, and a config writing them.
fn files_conf(dir: &Path, group: u16) -> (PathBuf, PathBuf, String) {
    let (json, emu) = (dir.join("out.json"), dir.join("out.log"));
    let conf = lab::fill(
        FILES_CONF,
        &[
            ("GROUP", group.to_string()),
            ("JSON", lab::path_str(&json)),
            ("EMU", lab::path_str(&emu)),
        ],
    );
    (json, emu, conf)
}

fn with_suffix(p: &Path, s: &str) -> PathBuf {
    PathBuf::from(format!("{}{s}", p.display()))
}

/// Waits until every file has its count of lines; panics with the log.
fn wait_counts(r: &Run, want: &[(&Path, usize)]) {
    let ok = lab::wait_until(Duration::from_secs(10), || {
        want.iter().all(|(p, n)| lab::count_lines(p) >= *n)
    });
    let got: Vec<(PathBuf, usize)> = want
        .iter()
        .map(|(p, _)| (p.to_path_buf(), lab::count_lines(p)))
        .collect();
    assert!(
        ok && want.iter().zip(&got).all(|((_, n), (_, g))| g == n),
        "want {want:?}, got {got:?}\n{}",
        r.log()
    );
}

/// JSON and LOGEMU under -u in a directory nobody may write: SIGHUP
/// reopens the same file (made by root at start), a rename then SIGHUP
/// moves to a new file, and a rename without SIGHUP is followed too;
/// not a line lost or doubled.
#[test]
fn json_and_logemu_follow_rotation_under_user() {
    lab::skip_unless_root!();
    let ns = Netns::new("rufile").unwrap();
    ns.nft(&RULES.replace("{GROUP}", "63")).unwrap();
    let tmp = TempDir::new("rufile");
    let dir = nobody_dir(tmp.path(), "log");
    let (json, emu, conf) = files_conf(&dir, 63);
    let r = Run::start(&ns, tmp.path(), &conf, 63);
    send(&ns, 9001, 0, 100, 0);
    wait_counts(&r, &[(&json, 100), (&emu, 100)]);

    r.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    send(&ns, 9001, 0, 100, 0);
    wait_counts(&r, &[(&json, 200), (&emu, 200)]);
    assert!(!r.log().contains("cannot reopen"), "{}", r.log());

    for p in [&json, &emu] {
        std::fs::rename(p, with_suffix(p, ".1")).unwrap();
    }
    r.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    send(&ns, 9001, 0, 100, 0);
    wait_counts(&r, &[(&json, 100), (&emu, 100)]);

    // logrotate without a signal (the 100 lines above go with the file):
    // followed within a second.
    for p in [&json, &emu] {
        std::fs::rename(p, with_suffix(p, ".2")).unwrap();
    }
    send(&ns, 9001, 0, 50, 0);
    std::thread::sleep(Duration::from_millis(1500));
    send(&ns, 9001, 0, 50, 0);
    let ok = lab::wait_until(Duration::from_secs(10), || {
        [&json, &emu]
            .iter()
            .all(|p| lab::count_lines(p) + lab::count_lines(&with_suffix(p, ".2")) == 200)
    });
    assert!(ok, "{}", r.log());
    let log = r.log();
    r.stop();
    for p in [&json, &emu] {
        assert_eq!(lab::count_lines(&with_suffix(p, ".1")), 200);
        let (two, now) = (lab::count_lines(&with_suffix(p, ".2")), lab::count_lines(p));
        assert_eq!(two + now, 200, "{}", p.display());
        assert!(
            now >= 50,
            "{}: {now} lines after the rename\n{log}",
            p.display()
        );
    }
    assert!(log.contains("was renamed or deleted; reopened it"), "{log}");
}

/// In a directory nobody may not write (as /var/log): said at start; a
/// rotation's SIGHUP fails loudly and the renamed file goes on taking
/// lines; once a file the user may write is there (logrotate's `create`),
/// the next batch moves to it.
#[test]
fn rotation_where_the_user_cannot_create_is_loud_and_loses_nothing() {
    lab::skip_unless_root!();
    let ns = Netns::new("rufile2").unwrap();
    ns.nft(&RULES.replace("{GROUP}", "64")).unwrap();
    let tmp = TempDir::new("rufile2");
    let dir = tmp.path().join("log");
    std::fs::create_dir(&dir).unwrap();
    let (json, emu, conf) = files_conf(&dir, 64);
    let r = Run::start(&ns, tmp.path(), &conf, 64);
    let log = r.log();
    for id in ["json1 (JSON)", "emu1 (LOGEMU)"] {
        assert!(
            log.contains(id)
                && log.contains(&format!(
                    "user nobody cannot create files in {}",
                    dir.display()
                )),
            "no start-up warning for {id}\n{log}"
        );
    }
    send(&ns, 9001, 0, 100, 0);
    wait_counts(&r, &[(&json, 100), (&emu, 100)]);
    for p in [&json, &emu] {
        std::fs::rename(p, with_suffix(p, ".1")).unwrap();
    }
    r.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    send(&ns, 9001, 0, 100, 0);
    wait_counts(
        &r,
        &[
            (&with_suffix(&json, ".1"), 200),
            (&with_suffix(&emu, ".1"), 200),
        ],
    );
    let log = r.log();
    for id in ["json1", "emu1"] {
        assert!(log.contains(&format!("{id}: cannot reopen file")), "{log}");
    }
    let (u, g) = nobody();
    for p in [&json, &emu] {
        File::create(p).unwrap();
        std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1200));
    send(&ns, 9001, 0, 100, 0);
    wait_counts(&r, &[(&json, 100), (&emu, 100)]);
    r.stop();
    for p in [&json, &emu] {
        assert_eq!(lab::count_lines(&with_suffix(p, ".1")), 200);
        assert_eq!(lab::count_lines(p), 100);
    }
}
