//! A throw-away PostgreSQL cluster for the SQL tests and the benchmark:
//! `initdb` into a temporary directory, `pg_ctl start` on a free port with
//! its unix socket in that directory (visible from every network namespace,
//! so a daemon inside one reaches it), stopped and removed on drop.
//!
//! PostgreSQL refuses to run as root: the cluster runs as the `postgres`
//! user through `runuser`. Binaries come from `/usr/lib/postgresql/15/bin`
//! (or `$PG_BIN`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One cluster. The superuser is `postgres`, trusted on the socket.
pub struct Pg {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    running: bool,
}

fn bin_dir() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// Whether PostgreSQL's server binaries are installed.
pub fn available() -> bool {
    bin_dir().join("pg_ctl").exists()
}

/// ulogd2's own schema, pgsql-ulogd2.sql, as Debian ships it (in ulogd2's
/// documentation or ulogd2-pgsql's).
pub fn ulogd2_schema() -> String {
    let paths = [
        "/usr/share/doc/ulogd2-pgsql/pgsql-ulogd2.sql.gz",
        "/usr/share/doc/ulogd2/pgsql-ulogd2.sql.gz",
    ];
    let path = paths
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("pgsql-ulogd2.sql.gz from Debian's ulogd2-pgsql is not installed");
    let out = Command::new("zcat").arg(path).output().expect("zcat");
    assert!(out.status.success(), "zcat {path}");
    String::from_utf8(out.stdout).expect("pgsql-ulogd2.sql is UTF-8")
}

impl Pg {
    /// Creates and starts a cluster (`fsync=off`: tests need no durability
    /// of the database itself).
    pub fn start(tag: &str) -> Pg {
        Pg::start_with(tag, &["-c", "fsync=off"])
    }

    /// Creates and starts a cluster with extra `postgres` options.
    pub fn start_with(tag: &str, opts: &[&str]) -> Pg {
        assert!(
            available(),
            "PostgreSQL server binaries not found in {}",
            bin_dir().display()
        );
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rl-pg-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("pg dir");
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        assert!(status.is_ok_and(|s| s.success()), "chown {}", dir.display());
        let mut pg = Pg {
            dir,
            port: crate::free_port(),
            bin: bin_dir(),
            running: false,
        };
        let data = pg.data();
        crate::check_output(
            "initdb",
            pg.as_postgres("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data)
                .output(),
        );
        let mut o = format!(
            "-p {} -k {} -c listen_addresses='' -c max_connections=40",
            pg.port,
            pg.dir.display()
        );
        for x in opts {
            o.push(' ');
            o.push_str(x);
        }
        std::fs::write(pg.dir.join("opts"), o).expect("opts");
        pg.start_server();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn as_postgres(&self, prog: &str) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(self.bin.join(prog));
        c
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&mut self) {
        let opts = std::fs::read_to_string(self.dir.join("opts")).expect("opts");
        crate::check_output(
            "pg_ctl start",
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-o", &opts, "start"])
                .output(),
        );
        self.running = true;
    }

    /// Stops the server (fast mode: clients are disconnected).
    pub fn stop_server(&mut self) {
        crate::check_output(
            "pg_ctl stop",
            self.as_postgres("pg_ctl")
                .args(["-w", "-t", "60", "-m", "fast", "-D"])
                .arg(self.data())
                .arg("stop")
                .output(),
        );
        self.running = false;
    }

    /// The socket directory: the `host` of a config.
    pub fn host(&self) -> String {
        self.dir.to_str().expect("utf-8 path").to_string()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the cluster lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn psql_cmd(&self, db: &str) -> Command {
        let mut c = self.as_postgres("psql");
        c.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-At",
            "-F",
            "\x1f",
            "-h",
        ])
        .arg(&self.dir)
        .args(["-p", &self.port.to_string(), "-d", db]);
        c
    }

    /// Runs `sql` in database `db`; the rows, one per line, fields split
    /// by U+001F.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        crate::check_output(
            &format!("psql {sql}"),
            self.psql_cmd(db).args(["-c", sql]).output(),
        )
    }

    /// Runs an SQL script (text) in `db`.
    pub fn psql_script(&self, db: &str, script: &str) {
        let f = self.dir.join(format!(
            "script-{}.sql",
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&f, script).expect("write script");
        let _ = Command::new("chmod").arg("644").arg(&f).status();
        crate::check_output("psql -f", self.psql_cmd(db).arg("-f").arg(&f).output());
    }

    /// Creates database `name`.
    pub fn createdb(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
    }

    /// Every row of a query, each as its fields.
    pub fn rows(&self, db: &str, sql: &str) -> Vec<Vec<String>> {
        self.psql(db, sql)
            .lines()
            .map(|l| l.split('\x1f').map(str::to_string).collect())
            .collect()
    }

    /// A single number (`select count(*) …`).
    pub fn count(&self, db: &str, sql: &str) -> u64 {
        self.psql(db, sql).trim().parse().unwrap_or(0)
    }
}

/// A psql session holding an ACCESS EXCLUSIVE lock on a table until it
/// is dropped: writers to the table wait meanwhile.
pub struct TableLock(std::process::Child);

impl Pg {
    /// Locks `table` of `db` from another session, returning once the
    /// lock is granted.
    pub fn lock_table(&self, db: &str, table: &str) -> TableLock {
        use std::io::Write;
        let mut child = self
            .psql_cmd(db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql runs");
        let stdin = child.stdin.as_mut().expect("piped");
        writeln!(stdin, "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;").expect("psql reads");
        let q = format!(
            "select count(*) from pg_locks where relation = '{table}'::regclass \
             and mode = 'AccessExclusiveLock' and granted"
        );
        let held = crate::wait_until(std::time::Duration::from_secs(10), || {
            self.count(db, &q) >= 1
        });
        assert!(held, "the lock on {table} was not granted");
        TableLock(child)
    }
}

impl Drop for TableLock {
    fn drop(&mut self) {
        use std::io::Write;
        if let Some(mut stdin) = self.0.stdin.take() {
            let _ = writeln!(stdin, "COMMIT;");
        }
        let _ = self.0.wait();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .as_postgres("pg_ctl")
                .args(["-w", "-m", "immediate", "-D"])
                .arg(self.data())
                .arg("stop")
                .output();
        }
        if std::thread::panicking() || std::env::var_os("RULOGD_KEEP_TMP").is_some() {
            eprintln!("lab: kept PostgreSQL cluster {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
