//! A throw-away ClickHouse server (Debian's clickhouse-server 18.16) for the
//! CLICKHOUSE tests: its own config, users and data directory under /tmp,
//! listening on free loopback ports inside a network namespace, so rulogd
//! in that namespace reaches it at 127.0.0.1 and nothing else sees it.
//!
//! The test user `rulogd` (password `secret`) authenticates for real.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The server binary.
pub const SERVER: &str = "/usr/sbin/clickhouse-server";
/// The user and password the tests' configs use.
pub const USER: &str = "rulogd";
/// The password of [`USER`].
pub const PASS: &str = "secret";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The head of a CLICKHOUSE section `[ch1]`: the server `{URL}`, the
/// table (a literal), the login `{USER}` and `{PASS}`; as one literal for
/// `concat!`.
#[macro_export]
macro_rules! conf_clickhouse {
    ($table:literal) => {
        concat!(
            "[ch1]\nurl=\"{URL}\"\ntable=\"",
            $table,
            "\"\nuser=\"{USER}\"\npassword=\"{PASS}\"\n"
        )
    };
}

/// Whether the server and client binaries are installed.
pub fn available() -> bool {
    Path::new(SERVER).exists() && Path::new("/usr/bin/clickhouse-client").exists()
}

/// A running (or stopped) throw-away server.
pub struct ClickHouse {
    dir: PathBuf,
    http: u16,
    tcp: u16,
    netns: String,
    server: Option<Child>,
}

impl ClickHouse {
    /// Writes the config and starts the server inside `netns`.
    pub fn start(tag: &str, netns: &str) -> ClickHouse {
        Self::start_listening(tag, netns, "127.0.0.1")
    }

    /// [`ClickHouse::start`] listening on `host` (`0.0.0.0`: every IPv4
    /// address of the namespace, for clients in other namespaces joined to
    /// it by veth pairs); queries still go to 127.0.0.1, so `host` must
    /// cover it.
    pub fn start_listening(tag: &str, netns: &str, host: &str) -> ClickHouse {
        Self::start_in(tag, netns, host, &std::env::temp_dir())
    }

    /// [`ClickHouse::start_listening`] with its directory under `base`
    /// (e.g. /dev/shm: a run of millions of rows leaves tens of thousands
    /// of part files, which take a minute to delete from a busy disk).
    pub fn start_in(tag: &str, netns: &str, host: &str, base: &Path) -> ClickHouse {
        assert!(available(), "clickhouse-server not installed");
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("rl-ch-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("clickhouse dir");
        let mut ch = ClickHouse {
            http: crate::free_port(),
            tcp: crate::free_port(),
            dir,
            netns: netns.to_string(),
            server: None,
        };
        let d = crate::path_str(&ch.dir);
        // The packaged config listens on ::1 too and logs to /var/log;
        // this one has only what a test server needs. UTC: tests never
        // depend on the host's zone.
        let config = format!(
            "<yandex>\n<logger><level>warning</level><log>{d}/server.log</log>\
             <errorlog>{d}/error.log</errorlog></logger>\n\
             <http_port>{}</http_port><tcp_port>{}</tcp_port>\n\
             <listen_host>{host}</listen_host>\n\
             <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>\n\
             <user_files_path>{d}/files/</user_files_path>\n\
             <format_schema_path>{d}/schemas/</format_schema_path>\n\
             <users_config>{d}/users.xml</users_config>\n\
             <default_profile>default</default_profile><default_database>default</default_database>\n\
             <timezone>UTC</timezone>\n\
             <mark_cache_size>67108864</mark_cache_size>\n\
             <uncompressed_cache_size>67108864</uncompressed_cache_size>\n</yandex>\n",
            ch.http, ch.tcp
        );
        std::fs::write(ch.dir.join("config.xml"), config).expect("config.xml");
        let user = |name: &str, pass: &str| {
            format!(
                "<{name}><password>{pass}</password><networks><ip>::/0</ip></networks>\
                 <profile>default</profile><quota>default</quota></{name}>"
            )
        };
        let users = format!(
            "<yandex><profiles><default></default></profiles>\n<users>{}{}</users>\n\
             <quotas><default></default></quotas></yandex>\n",
            user("default", ""),
            user(USER, PASS)
        );
        std::fs::write(ch.dir.join("users.xml"), users).expect("users.xml");
        ch.start_server();
        ch
    }

    /// Starts the server (again) on the same ports and data; waits until
    /// it answers.
    pub fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .expect("server log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, SERVER])
            .arg(format!(
                "--config-file={}",
                self.dir.join("config.xml").display()
            ))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn clickhouse-server");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.try_query("SELECT 1").is_ok_and(|s| s.trim() == "1") {
                return;
            }
            if let Some(c) = self.server.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("clickhouse-server exited ({st}):\n{}", self.server_log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server not ready:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the server and waits for its exit.
    pub fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            // `ip netns exec` execs the server, so the child is the server.
            // SAFETY: kill(2) on our unreaped child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    /// The server's logs, for failure messages.
    pub fn server_log(&self) -> String {
        let r = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", r("stderr.log"), r("error.log"))
    }

    /// The server's pid while it runs (`ip netns exec` execs the server),
    /// for its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }

    /// The HTTP port (on 127.0.0.1 inside the namespace).
    pub fn http_port(&self) -> u16 {
        self.http
    }

    /// `http://127.0.0.1:<port>`, for a config's `url`.
    pub fn url(&self) -> String {
        self.url_at("127.0.0.1")
    }

    /// `http://<host>:<port>`: the server as a client in another namespace
    /// reaches it (see [`ClickHouse::start_listening`]).
    pub fn url_at(&self, host: &str) -> String {
        format!("http://{host}:{}", self.http)
    }

    /// Runs queries (`;`-separated) with clickhouse-client; its stdout
    /// (TabSeparated), or its stderr.
    pub fn try_query(&self, q: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns, "clickhouse-client"])
            .args(["--host", "127.0.0.1", "--port", &self.tcp.to_string()])
            .args(["--user", USER, "--password", PASS, "--multiquery"])
            .args(["--query", q])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JSON value as a TabSeparated query prints the column that holds it
/// (`\\N` for absent or null, booleans as 0/1), to compare JSON records
/// with rows.
pub fn tsv_value(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "\\N".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Bool(b)) => u8::from(*b).to_string(),
        Some(o) => o.to_string(),
    }
}

/// Each record's `fields` keys (the first of each pair) as a TabSeparated
/// row (see [`tsv_value`]), sorted.
pub fn json_rows(recs: &[crate::Record], fields: &[(&str, &str)]) -> Vec<String> {
    let mut rows: Vec<String> = recs
        .iter()
        .map(|r| {
            fields
                .iter()
                .map(|(k, _)| tsv_value(r.get(k)))
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect();
    rows.sort();
    rows
}

/// The rows of `table` as the `fields` expressions (the second of each
/// pair) give them, TabSeparated, sorted: to compare with [`json_rows`].
pub fn table_rows(ch: &dyn Server, table: &str, fields: &[(&str, &str)]) -> Vec<String> {
    let cols: Vec<&str> = fields.iter().map(|(_, e)| *e).collect();
    let mut rows: Vec<String> = ch
        .query(&format!(
            "SELECT {} FROM {table} FORMAT TabSeparated",
            cols.join(", ")
        ))
        .lines()
        .map(str::to_string)
        .collect();
    rows.sort();
    rows
}

/// Whether a test of Debian's server can run: root, and the server
/// installed. Says why when not.
pub fn debian_ready() -> bool {
    let ok = crate::require_root() && available();
    if !ok {
        eprintln!("skipped: needs root and clickhouse-server");
    }
    ok
}

/// Whether a test of a current engine can run: root, curl and chdb. Says
/// why when not.
pub fn chdb_ready() -> bool {
    if !crate::require_root() || !chdb_available() {
        eprintln!(
            "skipped: needs root, curl and the chdb-core wheel unpacked at {}",
            chdb_path().display()
        );
        return false;
    }
    true
}

/// Where the unpacked chdb-core wheel is (`CHDB_PYTHONPATH`, or what
/// scripts/test-all.sh unpacks).
pub fn chdb_path() -> PathBuf {
    std::env::var_os("CHDB_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/rulogd-tests/chdb"))
}

/// Whether the chdb wheel is there.
pub fn chdb_available() -> bool {
    chdb_path().join("chdb").is_dir() && Path::new("/usr/bin/curl").exists()
}

/// A current ClickHouse engine (chdb) behind the lab's HTTP endpoint
/// (`chdb_http.py`), inside a network namespace, its data under /tmp.
pub struct Chdb {
    dir: PathBuf,
    http: u16,
    netns: String,
    server: Option<Child>,
}

impl Chdb {
    /// Starts the endpoint inside `netns`.
    pub fn start(tag: &str, netns: &str) -> Chdb {
        assert!(
            chdb_available(),
            "chdb wheel not at {}",
            chdb_path().display()
        );
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rl-chdb-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("session")).expect("chdb dir");
        let mut c = Chdb {
            dir,
            http: crate::free_port(),
            netns: netns.to_string(),
            server: None,
        };
        c.start_server();
        c
    }

    /// Starts the endpoint (again) on the same port and data.
    pub fn start_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("chdb log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/chdb_http.py");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "python3"])
            .arg(script)
            .arg(self.http.to_string())
            .arg(self.dir.join("session"))
            .args([USER, PASS])
            .env("PYTHONPATH", chdb_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn chdb_http.py");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.try_query("SELECT 1").map_or(true, |s| s.trim() != "1") {
            if let Some(Ok(Some(st))) = self.server.as_mut().map(Child::try_wait) {
                panic!("chdb_http.py exited ({st}):\n{}", self.server_log());
            }
            assert!(
                Instant::now() < deadline,
                "chdb not ready:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The endpoint's log.
    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

/// What the CLICKHOUSE tests need of a server, real 18.16 or chdb.
pub trait Server {
    /// `http://127.0.0.1:<port>`.
    fn url(&self) -> String;
    /// Queries (TabSeparated output) or the error text.
    fn try_query(&self, q: &str) -> Result<String, String>;
    /// Stops the server and waits for its exit.
    fn stop_server(&mut self);
    /// Starts it again on the same port and data.
    fn start(&mut self);
    /// [`Self::try_query`] that must succeed.
    fn query(&self, q: &str) -> String {
        self.try_query(q)
            .unwrap_or_else(|e| panic!("clickhouse query failed: {q}\n{e}"))
    }
    /// A count query's number (0 while the server is away).
    fn count(&self, q: &str) -> u64 {
        self.try_query(q)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Server for ClickHouse {
    fn url(&self) -> String {
        ClickHouse::url(self)
    }
    fn try_query(&self, q: &str) -> Result<String, String> {
        ClickHouse::try_query(self, q)
    }
    fn stop_server(&mut self) {
        ClickHouse::stop_server(self)
    }
    fn start(&mut self) {
        self.start_server()
    }
}

impl Server for Chdb {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }
    fn try_query(&self, q: &str) -> Result<String, String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "curl",
                "-sS",
                "-w",
                "\n%{http_code}",
            ])
            .args(["-H", &format!("X-ClickHouse-User: {USER}")])
            .args(["-H", &format!("X-ClickHouse-Key: {PASS}")])
            .args(["--data-binary", q, &self.url()])
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match text.rsplit_once('\n') {
            Some((body, "200")) if out.status.success() => Ok(body.to_string()),
            _ => Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr))),
        }
    }
    fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            // SAFETY: kill(2) on our unreaped child (ip netns exec execs python3).
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
    fn start(&mut self) {
        self.start_server()
    }
}

impl Drop for Chdb {
    fn drop(&mut self) {
        Server::stop_server(self);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
