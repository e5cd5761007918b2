//! The test lab: network namespaces, nftables rules, traffic, daemons and JSON
//! comparison for rulogd's integration tests and benchmarks.
//!
//! Everything here happens inside network namespaces that the lab creates and
//! deletes itself (see [`Netns`]). Nothing touches the root namespace's rules
//! or any non-loopback interface of the host.
//!
//! Typical use in a test:
//!
//! ```no_run
//! use rulogd_tests as lab;
//! if !lab::require_root() { return; }
//! let ns = lab::Netns::new("udp4").unwrap();
//! ns.nft("table inet t { chain in { type filter hook input priority 0\n\
//!         udp dport 9999 log prefix \"u\" group 3 drop\n } }").unwrap();
//! let dir = lab::TempDir::new("udp4");
//! let json = dir.path().join("out.json");
//! let conf = lab::json_conf(3, &json);
//! let mut d = lab::Daemon::start(&ns, lab::Kind::Rulogd, dir.path(), "rulogd", &conf, &[3], &[&json]);
//! ns.run_in_thread(|| lab::traffic::udp_send("127.0.0.1:9999".parse().unwrap(), 5, 64)).unwrap();
//! d.wait_lines(&json, 5, std::time::Duration::from_secs(5));
//! d.stop();
//! ```

pub mod argus;
pub mod capture;
pub mod carbon;
pub mod clickhouse;
pub mod daemon;
pub mod json;
pub mod maria;
pub mod netns;
pub mod nfcapd;
pub mod nfproc;
pub mod pcapgen;
pub mod pg;
pub mod plugins;
pub mod sql;
pub mod traffic;
pub mod tshark;
pub mod webdriver;

pub use carbon::Carbon;
pub use daemon::{rulogd_bin, Daemon, Kind, ULOGD_BIN};
pub use json::{compare_streams, read_records, Record};
pub use netns::Netns;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The start of most kernel tests: returns from the test when it cannot
/// run (see [`require_root`]), else makes a namespace ([`Netns::new`], or
/// [`Netns::with_peer`] after `peer`) and a [`TempDir`], both named `tag`.
#[macro_export]
macro_rules! netns_or_skip {
    ($tag:expr) => {{
        $crate::skip_unless_root!();
        (
            $crate::Netns::new($tag).unwrap(),
            $crate::TempDir::new($tag),
        )
    }};
    (peer $tag:expr) => {{
        $crate::skip_unless_root!();
        (
            $crate::Netns::with_peer($tag).unwrap(),
            $crate::TempDir::new($tag),
        )
    }};
}

/// The `[global]` section most test configs open with (the log file that
/// [`Daemon::start`] fills in, loglevel 3) and the given `stack=` lines, as
/// one literal for `concat!`.
#[macro_export]
macro_rules! conf_global {
    ($($stack:literal),+ $(,)?) => {
        concat!("[global]\nlogfile=\"{LOGFILE}\"\nloglevel=3\n", $("stack=", $stack, "\n",)+)
    };
}

/// The `[log1]` section of an NFLOG input on `{GROUP}` with the socket
/// buffer of [`JSON_CONF`] (or the given size and maximum), as one literal
/// for `concat!`.
#[macro_export]
macro_rules! conf_nflog {
    () => {
        $crate::conf_nflog!(8388608, 16777216)
    };
    ($size:literal, $max:literal) => {
        concat!(
            "[log1]\ngroup={GROUP}\nnetlink_socket_buffer_size=",
            $size,
            "\nnetlink_socket_buffer_maxsize=",
            $max,
            "\n"
        )
    };
}

/// The stack every JSON test uses, in ulogd.conf syntax: both daemons read the
/// same file, only `{GROUP}`, `{FILE}` (and `{LOGFILE}`, filled by
/// [`Daemon::start`]) differ. The socket buffer follows baseline.md: ulogd
/// 2.0.8 applies `netlink_socket_buffer_size` only if it is strictly smaller
/// than `_maxsize`, hence max = 2 x size.
pub const JSON_CONF: &str = concat!(
    crate::conf_global!("log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON"),
    "\n",
    crate::conf_nflog!(),
    "\n\
[json1]
file=\"{FILE}\"
sync=1
"
);

/// Whether kernel tests can run. Without root they are skipped with a
/// message, except in CI (`CI` set) or when `RULOGD_KERNEL_TESTS=1`: there a
/// skipped kernel test would hide a broken setup, so it is a failure.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let forced = std::env::var_os("CI").is_some()
        || std::env::var("RULOGD_KERNEL_TESTS").is_ok_and(|v| v == "1");
    if forced {
        panic!("kernel tests need root (CI or RULOGD_KERNEL_TESTS=1 is set, so this is a failure)");
    }
    eprintln!("skipped: needs root");
    false
}

/// Returns from the calling test when [`require_root`] says it cannot run.
#[macro_export]
macro_rules! skip_unless_root {
    () => {
        if !$crate::require_root() {
            return;
        }
    };
}

/// Replaces every `{KEY}` in `template`. Panics if an `{UPPERCASE}`
/// placeholder other than `{LOGFILE}` (filled by [`Daemon::start`]) is left
/// over, so a typo in a test cannot produce a config that ulogd reads with a
/// literal `{GROUP}` in it.
pub fn fill(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    if let Some(name) = leftover_placeholder(&out, &["LOGFILE"]) {
        panic!("placeholder {{{name}}} not filled in config template");
    }
    out
}

/// Panics if any `{UPPERCASE}` placeholder is left in `conf`.
pub fn check_filled(conf: &str) {
    if let Some(name) = leftover_placeholder(conf, &[]) {
        panic!("placeholder {{{name}}} not filled in config template");
    }
}

fn leftover_placeholder(s: &str, ignore: &[&str]) -> Option<String> {
    let mut rest = s;
    while let Some(start) = rest.find('{') {
        rest = &rest[start + 1..];
        let end = rest.find('}')?;
        let name = &rest[..end];
        if !name.is_empty()
            && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            && !ignore.contains(&name)
        {
            return Some(name.to_string());
        }
    }
    None
}

/// An nft rule that lets link-local multicast (MLD reports, neighbour
/// discovery) pass unlogged: the kernel sends it at its own times, and one
/// sent as the daemons of a differential test stop reaches rulogd (which
/// reads the kernel's last batch at stop) and not ulogd2.
pub const QUIET_MULTICAST: &str = "  ip6 daddr ff02::/16 accept\n";

/// An nft ruleset: table `t` with a named counter `c` and an input chain
/// (filter hook, priority 0, policy accept) of `rules`, lines each
/// indented by two spaces.
pub fn counted_ruleset(rules: &str) -> String {
    format!(
        "table inet t {{\n counter c {{}}\n chain in {{\n  type filter hook input priority 0; policy accept;\n{rules}\n }}\n}}\n"
    )
}

/// The standard single-stack JSON config ([`JSON_CONF`]) for one group.
pub fn json_conf(group: u16, file: &Path) -> String {
    fill(
        JSON_CONF,
        &[("GROUP", group.to_string()), ("FILE", path_str(file))],
    )
}

/// A path as a string for a config file (the lab only creates UTF-8 paths).
pub fn path_str(p: &Path) -> String {
    p.to_str().expect("lab paths are UTF-8").to_string()
}

/// A TCP port on 127.0.0.1 that nothing listens on (for a throw-away server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The stdout of a helper command (`initdb`, `psql`, `mariadb` …); panics
/// with its stderr and stdout when it did not run or failed.
pub fn check_output(what: &str, out: std::io::Result<std::process::Output>) -> String {
    let out = out.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 20 ms until it returns true or `timeout` passes.
/// Returns whether it became true.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What follows the `Mmm dd hh:mm:ss host ` head of a LOGEMU or syslog
/// line. The stamp is fixed-width (`Dec  3` pads the day with a space), so
/// it is cut by length, never by splitting on spaces.
pub fn after_syslog_head(line: &str) -> &str {
    let Some(rest) = line.get(16..) else {
        return "";
    };
    rest.split_once(' ').map_or("", |(_host, body)| body)
}

/// Number of complete lines (newline-terminated) in a file; 0 if it does not
/// exist yet. Streams, because benchmark outputs reach hundreds of MB.
pub fn count_lines(path: &Path) -> usize {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += buf[..k].iter().filter(|&&c| c == b'\n').count(),
        }
    }
}

static TMP_SEQ: AtomicU32 = AtomicU32::new(0);

/// A temporary directory, removed on drop unless the test is panicking (then
/// it is kept and its path printed, because the configs, daemon logs and JSON
/// files in it are what one needs to debug the failure) or `RULOGD_KEEP_TMP`
/// is set.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        // Short paths: ulogd 2.0.8 rejects config lines of 254+ characters.
        let path = std::env::temp_dir().join(format!("rl-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("RULOGD_KEEP_TMP").is_some() {
            eprintln!("lab: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
