//! Starting and stopping ulogd2 or rulogd inside a namespace.
//!
//! Both daemons take the same command line (`-c conf -v`) and the same
//! ulogd.conf, so the runner does not care which one it starts. Readiness is
//! read from the kernel, not from the daemon's log: the daemon is ready when
//! every NFLOG group of its config is bound in the namespace (from then on
//! the kernel queues messages in its socket, so nothing logged is lost) and
//! every output file exists.

use crate::{count_lines, wait_until, Netns};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Once;
use std::time::Duration;

/// Debian's ulogd2, the oracle.
pub const ULOGD_BIN: &str = "/usr/sbin/ulogd";

/// How long a daemon may take to bind its groups and open its outputs. Long,
/// because a debug build on a loaded 2-core CI machine can be slow to start.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ulogd2 from `/usr/sbin/ulogd`.
    Ulogd,
    /// rulogd (see [`rulogd_bin`]; `RULOGD_BIN=/usr/sbin/ulogd` makes this
    /// ulogd too, which is how the tests validate themselves).
    Rulogd,
}

impl Kind {
    pub fn bin(self) -> PathBuf {
        match self {
            Kind::Ulogd => PathBuf::from(ULOGD_BIN),
            Kind::Rulogd => rulogd_bin(),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Ulogd => "ulogd2",
            Kind::Rulogd => "rulogd",
        }
    }
}

/// True when `RULOGD_BIN` points at ulogd itself ("oracle mode"): the tests
/// then compare ulogd with ulogd, which must always pass.
pub fn oracle_mode() -> bool {
    std::env::var_os("RULOGD_BIN").is_some_and(|p| Path::new(&p).ends_with("ulogd"))
}

/// Where the rulogd binary is: `$RULOGD_BIN`, else the newest of the ones
/// next to the running executable (a test runs from
/// `target/<profile>/deps/`, a bench binary from `target/<profile>/`) and
/// `target/release/rulogd` of this workspace. Newest, because `cargo test`
/// does not rebuild another package's binary: a `target/debug/rulogd` left
/// by an old build would otherwise shadow the release build the README's
/// command just made. Panics with the command to build it if there is none.
pub fn rulogd_bin() -> PathBuf {
    static SAID: Once = Once::new();
    let found = find_rulogd();
    match found {
        Ok(p) => {
            SAID.call_once(|| eprintln!("lab: rulogd = {}", p.display()));
            p
        }
        Err(why) => panic!(
            "{why}\nBuild it first: `cargo build --release --bins` \
             (or set RULOGD_BIN=/path/to/rulogd; RULOGD_BIN=/usr/sbin/ulogd runs ulogd in its place)"
        ),
    }
}

fn find_rulogd() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RULOGD_BIN") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("RULOGD_BIN={} does not exist", p.display()))
        };
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            tried.push(dir.join("rulogd"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    tried.push(target.join("release/rulogd"));
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    tried
        .iter()
        .filter(|p| p.is_file())
        .max_by_key(|p| mtime(p))
        .cloned()
        .ok_or_else(|| format!("rulogd binary not found (tried {tried:?})"))
}

/// libfaketime's library (Debian's faketime package), for RULOGD_FAKETIME.
fn faketime_lib() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    found.expect("RULOGD_FAKETIME is set but libfaketime.so.1 is not installed (package faketime)")
}

/// A running daemon. Killed (SIGKILL) on drop if it was not stopped.
pub struct Daemon {
    child: Option<Child>,
    pid: u32,
    kind: Kind,
    log: PathBuf,
    stderr: PathBuf,
}

impl Daemon {
    /// Writes `conf` to `dir/<name>.conf` (`{LOGFILE}` becomes
    /// `dir/<name>.log`), starts the daemon inside `ns` with `-c conf -v`
    /// (stderr to `dir/<name>.stderr`) and waits until it is ready: every
    /// group in `groups` bound and every file in `outputs` created. Panics,
    /// with the daemon's log, if it exits or is not ready in time.
    pub fn start(
        ns: &Netns,
        kind: Kind,
        dir: &Path,
        name: &str,
        conf: &str,
        groups: &[u16],
        outputs: &[&Path],
    ) -> Daemon {
        Self::start_with_args(ns, kind, dir, name, conf, groups, outputs, &[])
    }

    /// [`Daemon::start`] of rulogd under the name `rulogd`, the common case.
    pub fn rulogd(ns: &Netns, dir: &Path, conf: &str, groups: &[u16], outputs: &[&Path]) -> Daemon {
        Self::start(ns, Kind::Rulogd, dir, "rulogd", conf, groups, outputs)
    }

    /// [`Daemon::start`] of ulogd2 under the name `ulogd`.
    pub fn ulogd(ns: &Netns, dir: &Path, conf: &str, groups: &[u16], outputs: &[&Path]) -> Daemon {
        Self::start(ns, Kind::Ulogd, dir, "ulogd", conf, groups, outputs)
    }

    /// [`Daemon::start`] with `extra` appended to the daemon's arguments
    /// (e.g. `-u nobody`).
    #[allow(clippy::too_many_arguments)]
    pub fn start_with_args(
        ns: &Netns,
        kind: Kind,
        dir: &Path,
        name: &str,
        conf: &str,
        groups: &[u16],
        outputs: &[&Path],
        extra: &[&str],
    ) -> Daemon {
        let conf_path = dir.join(format!("{name}.conf"));
        let log = dir.join(format!("{name}.log"));
        let stderr = dir.join(format!("{name}.stderr"));
        let conf = crate::fill(conf, &[("LOGFILE", crate::path_str(&log))]);
        crate::check_filled(&conf);
        std::fs::write(&conf_path, conf).expect("write config");
        let err = File::create(&stderr).expect("create stderr file");
        let bin = kind.bin();
        let mut argv: Vec<std::ffi::OsString> =
            vec!["-c".into(), conf_path.clone().into_os_string(), "-v".into()];
        argv.extend(extra.iter().map(std::ffi::OsString::from));
        // Through env(1), which execs, so the pid stays the daemon's and
        // signals reach it. STATE_DIRECTORY keeps rulogd's default spools
        // in the test's own directory (ulogd2 ignores it).
        let state = dir.join(format!("{name}.state"));
        let mut pre: Vec<std::ffi::OsString> = vec![{
            let mut v = std::ffi::OsString::from("STATE_DIRECTORY=");
            v.push(&state);
            v
        }];
        // RULOGD_FAKETIME (a libfaketime spec such as `@2026-12-03 10:00:00`)
        // runs the daemons under libfaketime, so the date-sensitive tests can
        // be run on a chosen day (a single-digit day pads syslog's date with
        // a second space).
        if let Some(when) = std::env::var_os("RULOGD_FAKETIME").filter(|w| !w.is_empty()) {
            let mut spec = std::ffi::OsString::from("FAKETIME=");
            spec.push(when);
            pre.push(format!("LD_PRELOAD={}", faketime_lib().display()).into());
            pre.push(spec);
        }
        pre.push(bin.clone().into());
        pre.append(&mut argv);
        let (program, argv) = (PathBuf::from("env"), pre);
        let child = ns
            .spawn_in(&program, &argv, Stdio::null(), Stdio::from(err))
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut d = Daemon {
            pid: child.id(),
            child: Some(child),
            kind,
            log,
            stderr,
        };
        let ready = wait_until(READY_TIMEOUT, || {
            if !d.running() {
                return true;
            }
            groups.iter().all(|&g| ns.nflog_instance(g).is_some())
                && outputs.iter().all(|p| p.exists())
        });
        if !d.running() {
            panic!(
                "{} ({}) exited during start-up\n{}",
                kind.label(),
                bin.display(),
                d.log_text()
            );
        }
        if !ready {
            panic!(
                "{} not ready after {READY_TIMEOUT:?} (groups {groups:?}, outputs {outputs:?})\n{}",
                kind.label(),
                d.log_text()
            );
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the process is still alive (reaps it if it has exited).
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child (not yet reaped while
        // `child` is Some, so the pid cannot have been reused).
        if self.child.is_some() {
            unsafe { libc::kill(self.pid as i32, sig) };
        }
    }

    /// The daemon's logfile and stderr, for failure messages.
    pub fn log_text(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- {} log {} ---\n{}--- stderr ---\n{}",
            self.kind.label(),
            self.log.display(),
            read(&self.log),
            read(&self.stderr)
        )
    }

    /// Waits until rulogd handles signals: it installs its handlers just
    /// after logging "started", and a SIGUSR2 or SIGHUP before that ends it
    /// (the default action). Panics with the log on timeout.
    pub fn wait_signals(&self) {
        let ok = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&self.log).is_ok_and(|l| l.contains(" started: "))
        });
        assert!(
            ok,
            "{} did not start\n{}",
            self.kind.label(),
            self.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Waits until `path` has at least `n` lines (files written with
    /// `sync=1`). Returns the count; panics with the log on timeout.
    pub fn wait_lines(&mut self, path: &Path, n: usize, timeout: Duration) -> usize {
        let ok = wait_until(timeout, || count_lines(path) >= n || !self.running());
        let got = count_lines(path);
        if !ok || got < n {
            panic!(
                "{}: {} has {got} lines, expected {n} (running: {})\n{}",
                self.kind.label(),
                path.display(),
                self.running(),
                self.log_text()
            );
        }
        got
    }

    /// SIGTERM, then waits for the exit status (SIGKILL after 20 s).
    pub fn stop_status(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("daemon already stopped");
        };
        // SAFETY: kill(2) on our unreaped child.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let mut status = None;
        wait_until(STOP_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.kind.label(),
                    self.log_text()
                );
            }
        }
    }

    /// SIGTERM and assert a clean exit (status 0), as ulogd does.
    pub fn stop(mut self) {
        let st = self.stop_status();
        assert!(
            st.success(),
            "{} exited with {st} on SIGTERM\n{}",
            self.kind.label(),
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if std::thread::panicking() {
                eprintln!("{}", self.log_text());
            }
        }
    }
}

/// Whether a packet count from one daemon run can be trusted: the kernel
/// dropped nothing on the socket of `group`. Tests print this on mismatch.
pub fn drops_note(ns: &Netns, group: u16) -> String {
    format!(
        "kernel socket drops on group {group}: {}",
        ns.nflog_socket_drops(group)
    )
}

/// Waits until the listener on `group` has read every message the kernel
/// logged (see [`Netns::nflog_drained`]); false on timeout. The kernel holds
/// a partial batch for up to its flush timeout (1 s by default).
pub fn wait_drained(ns: &Netns, group: u16, timeout: Duration) -> bool {
    wait_until(timeout, || ns.nflog_drained(group))
}

/// The end of a differential run: after a moment for the last packets to
/// be logged, asserts that the listeners on `groups` read everything the
/// kernel logged within 5 s each, then gives them up to 2 s until
/// `same_lines` (their outputs have as many lines; each writes a line once
/// its message is processed).
pub fn settle(ns: &Netns, groups: &[u16], same_lines: impl FnMut() -> bool) {
    std::thread::sleep(Duration::from_millis(200));
    for &g in groups {
        assert!(
            wait_drained(ns, g, Duration::from_secs(5)),
            "group {g} not drained"
        );
    }
    let _ = wait_until(Duration::from_secs(2), same_lines);
}

/// Writes `conf` to `dir/<name>.conf` (`{LOGFILE}` becomes
/// `dir/<name>.log`) and runs rulogd on it in `ns` until it exits: a start
/// that must fail. Returns its exit status and its log followed by its
/// stderr.
pub fn run_in(ns: &Netns, dir: &Path, name: &str, conf: &str) -> (ExitStatus, String) {
    let conf_path = dir.join(format!("{name}.conf"));
    let log = dir.join(format!("{name}.log"));
    let conf = crate::fill(conf, &[("LOGFILE", crate::path_str(&log))]);
    crate::check_filled(&conf);
    std::fs::write(&conf_path, conf).expect("write config");
    let out = ns
        .command(rulogd_bin())
        .arg("-c")
        .arg(&conf_path)
        .output()
        .expect("run rulogd");
    let said =
        std::fs::read_to_string(&log).unwrap_or_default() + &String::from_utf8_lossy(&out.stderr);
    (out.status, said)
}

/// What a run of rulogd that ends by itself (a capture file read to its
/// end) left: its exit code, the records of its JSON file, its log and
/// stderr.
pub struct Finished {
    /// The exit code, `None` if a signal ended it.
    pub code: Option<i32>,
    /// The JSON file's records (none if it was not made).
    pub records: Vec<crate::Record>,
    /// The daemon's log followed by its stderr.
    pub log: String,
}

/// Runs rulogd until it exits (at most 60 s) on a config that reads the
/// capture file `pcap`: `template`'s `{PCAP}` is `pcap`, `{JSON}` and
/// `{LOGFILE}` are `dir/<tag>.json` and `dir/<tag>.log`, its other
/// placeholders are filled from `vars`. Its config is `dir/<tag>.conf`,
/// its state under `dir/state`; in `ns` if given (where a server the
/// config names listens).
pub fn run_capture(
    ns: Option<&Netns>,
    dir: &Path,
    tag: &str,
    template: &str,
    pcap: &Path,
    vars: &[(&str, String)],
) -> Finished {
    let json = dir.join(format!("{tag}.json"));
    let log = dir.join(format!("{tag}.log"));
    let mut all = vec![
        ("LOGFILE", crate::path_str(&log)),
        ("PCAP", crate::path_str(pcap)),
        ("JSON", crate::path_str(&json)),
    ];
    all.extend(vars.iter().cloned());
    let conf_path = dir.join(format!("{tag}.conf"));
    std::fs::write(&conf_path, crate::fill(template, &all)).expect("write config");
    let mut cmd = match ns {
        Some(ns) => ns.command("timeout"),
        None => std::process::Command::new("timeout"),
    };
    let out = cmd
        .arg("60")
        .arg(rulogd_bin())
        .arg("-c")
        .arg(&conf_path)
        .env("STATE_DIRECTORY", dir.join("state"))
        .output()
        .expect("run rulogd");
    let records = if json.exists() {
        crate::read_records(&json)
    } else {
        Vec::new()
    };
    let mut text = std::fs::read_to_string(&log).unwrap_or_default();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Finished {
        code: out.status.code(),
        records,
        log: text,
    }
}
