//! Process behaviour as an operator meets it: `-d` (the parent exits with the
//! child's start-up verdict), `-p` (pidfile held while running, a second
//! instance refused), `-u` (privileges dropped after the NFLOG socket and the
//! output file are open, and records still flow), the daemon `logfile`
//! reopened on SIGHUP, and `-t` on a config whose NFLOG group is busy (it
//! opens nothing, so it still says OK).

use rulogd_tests::traffic::udp_send;
use rulogd_tests::{self as lab, daemon};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const RULES: &str = "table inet t {\n chain in {\n  type filter hook input priority 0; policy accept;\n  udp dport 9999 log group 21\n }\n}\n";

fn conf(dir: &Path, group: u16, json: &Path) -> std::path::PathBuf {
    let log = dir.join(format!("rulogd-{group}.log"));
    let text = lab::fill(
        &lab::json_conf(group, json),
        &[("LOGFILE", lab::path_str(&log))],
    );
    let p = dir.join(format!("g{group}.conf"));
    std::fs::write(&p, text).unwrap();
    p
}

fn status_uid(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("Uid:"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn daemon_pidfile_and_uid_drop() {
    let (ns, dir) = lab::netns_or_skip!("proc");
    ns.nft(RULES).unwrap();
    // nobody must be able to reach the files it keeps writing to.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let json = dir.path().join("out.json");
    let pidfile = dir.path().join("rulogd.pid");
    let cfg = conf(dir.path(), 21, &json);
    let bin = daemon::rulogd_bin();

    let out = ns
        .command(&bin)
        .args(["-d", "-u", "nobody", "-p"])
        .arg(&pidfile)
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rulogd -d failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    assert_eq!(
        status_uid(pid).as_deref(),
        Some("65534"),
        "privileges not dropped"
    );

    // A second instance with the same pidfile is refused, naming the holder.
    let cfg2 = conf(dir.path(), 22, &dir.path().join("other.json"));
    let second = ns
        .command(&bin)
        .arg("-p")
        .arg(&pidfile)
        .arg("-c")
        .arg(&cfg2)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let e = String::from_utf8_lossy(&second.stderr);
    assert!(
        e.contains(&format!("already running with pid {pid}")),
        "{e}"
    );

    // Records still flow after the uid change (socket and file opened before).
    ns.run_in_thread(|| udp_send("127.0.0.1:9999".parse::<SocketAddr>().unwrap(), 50, 16).unwrap());
    assert!(
        lab::wait_until(Duration::from_secs(5), || lab::count_lines(&json) == 50),
        "got {} lines",
        lab::count_lines(&json)
    );

    // SIGTERM: exits 0 (we cannot wait() a grandchild: poll /proc).
    // SAFETY: kill(2) on the daemon's pid, read from its own pidfile.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert!(
        lab::wait_until(Duration::from_secs(10), || !alive(pid)),
        "still running"
    );
}

#[test]
fn daemon_start_failure_reaches_the_shell_and_logfile_reopens() {
    let (ns, dir) = lab::netns_or_skip!("procfail");
    ns.nft(&RULES.replace("group 21", "group 23")).unwrap();
    let json = dir.path().join("a.json");
    let cfg = conf(dir.path(), 23, &json);
    let bin = daemon::rulogd_bin();
    let mut first = ns
        .spawn_in(
            &bin,
            [std::ffi::OsStr::new("-c"), cfg.as_os_str()],
            std::process::Stdio::null(),
            std::process::Stdio::null(),
        )
        .unwrap();
    assert!(lab::wait_until(Duration::from_secs(5), || ns
        .nflog_instance(23)
        .is_some()));

    // The same group again, daemonized: the failure happens after the fork
    // and still reaches the shell.
    let cfg_b = conf(dir.path(), 23, &dir.path().join("b.json"));
    let std::process::Output { status, stderr, .. } = ns
        .command(&bin)
        .arg("-d")
        .arg("-c")
        .arg(&cfg_b)
        .output()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let e = String::from_utf8_lossy(&stderr);
    assert!(
        e.contains("group 23 already bound by another process"),
        "{e}"
    );

    // -t opens nothing, so the busy group does not matter.
    let t = Command::new(&bin)
        .arg("-t")
        .arg("-c")
        .arg(&cfg_b)
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));

    // The daemon log is reopened on SIGHUP (logrotate): after a rename, new
    // lines go to a new file at the configured path.
    let log = dir.path().join("rulogd-23.log");
    assert!(lab::wait_until(Duration::from_secs(5), || log.exists()));
    std::fs::rename(&log, dir.path().join("rulogd-23.log.1")).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGHUP) };
    assert!(
        lab::wait_until(Duration::from_secs(5), || log.exists()),
        "log not reopened"
    );
    unsafe { libc::kill(first.id() as i32, libc::SIGUSR1) };
    assert!(lab::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("statistics: log1 (NFLOG)")
    }));
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    assert_eq!(first.wait().unwrap().code(), Some(0));
}
