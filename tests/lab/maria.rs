//! A throw-away MariaDB server for the MYSQL tests: `mariadb-install-db`
//! into a temporary directory, `mariadbd` started inside a test's network
//! namespace on 127.0.0.1 and a free port (so daemons in that namespace
//! reach it over TCP, as ulogd2 would), with its unix socket in the
//! directory for the test's own queries; stopped and removed on drop.
//!
//! Authentication is real: the test user `rulogd` (password `secret`) is
//! created through the socket, where root needs no password.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The user and password the tests' configs use.
pub const USER: &str = "rulogd";
/// The password of [`USER`].
pub const PASS: &str = "secret";

/// One server.
pub struct Maria {
    dir: PathBuf,
    port: u16,
    netns: String,
    server: Option<Child>,
    /// Server options beyond the lab's own.
    extra: Vec<String>,
}

/// Whether MariaDB's server binaries are installed.
pub fn available() -> bool {
    Path::new("/usr/sbin/mariadbd").exists()
}

impl Maria {
    /// Creates a data directory and starts the server inside network
    /// namespace `netns` (durability off: tests need none).
    pub fn start(tag: &str, netns: &str) -> Maria {
        Maria::start_with(tag, netns, &[])
    }

    /// Like [`Maria::start`], with more server options (`--name=value`).
    pub fn start_with(tag: &str, netns: &str, extra: &[&str]) -> Maria {
        assert!(available(), "MariaDB server (mariadbd) not installed");
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rl-my-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mariadb dir");
        // Each server its own tmpdir: bootstraps running side by side in
        // one /tmp collide on their temporary table names.
        std::fs::create_dir_all(dir.join("tmp")).expect("mariadb tmpdir");
        let mut m = Maria {
            dir,
            port: crate::free_port(),
            netns: netns.to_string(),
            server: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        crate::check_output(
            "mariadb-install-db",
            Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ])
                .arg(format!("--datadir={}", m.data().display()))
                .arg(format!("--tmpdir={}", m.dir.join("tmp").display()))
                .output(),
        );
        m.start_server();
        m.sql(
            "",
            &format!(
                "CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASS}'; \
                 GRANT ALL ON *.* TO '{USER}'@'%';"
            ),
        );
        m
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Starts the server (again) and waits until it answers.
    pub fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "/usr/sbin/mariadbd"])
            .args(["--no-defaults", "--user=root", "--skip-name-resolve"])
            .args(["--bind-address=127.0.0.1", "--skip-log-bin"])
            .args([
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=64M",
            ])
            .args(&self.extra)
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn mariadbd");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .client("mariadb-admin")
                .arg("ping")
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            if let Some(c) = self.server.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("mariadbd exited ({st}):\n{}", self.server_log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd not ready:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (clients are disconnected) and waits for its exit.
    pub fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            // SAFETY: kill(2) on our unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// The server's error log, for failure messages.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The TCP port (on 127.0.0.1 inside the namespace).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn client(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root");
        c
    }

    /// Runs `sql` (one or more statements) in database `db` ("" for none);
    /// the rows, one per line, fields split by tabs (NULL as `NULL`).
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let mut c = self.client("mariadb");
        c.args(["-N", "-B", "-e", sql]);
        if !db.is_empty() {
            c.arg(db);
        }
        crate::check_output(&format!("mariadb {sql}"), c.output())
    }

    /// Runs an SQL script (text, `DELIMITER` lines allowed) in `db`.
    pub fn script(&self, db: &str, script: &str) {
        let f = self.dir.join(format!(
            "script-{}.sql",
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&f, script).expect("write script");
        let mut c = self.client("mariadb");
        c.arg(db).stdin(std::fs::File::open(&f).expect("script"));
        crate::check_output("mariadb < script", c.output());
    }

    /// Creates database `name`.
    pub fn createdb(&self, name: &str) {
        self.sql("", &format!("CREATE DATABASE {name}"));
    }

    /// Every row of a query, each as its fields.
    pub fn rows(&self, db: &str, sql: &str) -> Vec<Vec<String>> {
        self.sql(db, sql)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// A single number (`select count(*) …`); 0 when the query fails.
    pub fn count(&self, db: &str, sql: &str) -> u64 {
        let mut c = self.client("mariadb");
        c.args(["-N", "-B", "-e", sql, db]);
        c.output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Maria {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() || std::env::var_os("RULOGD_KEEP_TMP").is_some() {
            eprintln!("lab: kept MariaDB directory {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
