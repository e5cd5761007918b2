//! Start-up diagnostics for the common mistakes, each provoked for real: a
//! group a running ulogd2 holds, no CAP_NET_ADMIN, conntrack accounting and
//! timestamps off, a spool directory or a logfile that cannot be made. Each
//! is one line that says what to do.

use rulogd_tests::{self as lab, Daemon, Netns};
use std::path::Path;
use std::process::Output;

/// Runs rulogd (under `wrap`, e.g. setpriv) in `ns` with `conf` and waits
/// for it to fail; at most 20 s, so a start that wrongly succeeds ends the
/// test instead of hanging it.
fn failed_start(ns: &Netns, dir: &Path, conf: &str, wrap: &[&str]) -> (Output, String) {
    let conf_path = dir.join("bad.conf");
    let log = dir.join("bad.log");
    std::fs::write(
        &conf_path,
        lab::fill(conf, &[("LOGFILE", lab::path_str(&log))]),
    )
    .unwrap();
    let mut c = ns.command("env");
    c.arg(format!("STATE_DIRECTORY={}", dir.join("state").display()));
    c.args(wrap).args(["timeout", "20"]).arg(lab::rulogd_bin());
    c.arg("-c").arg(&conf_path);
    let out = c.output().expect("run rulogd");
    assert_eq!(
        out.status.code(),
        Some(1),
        "rulogd must fail to start: {out:?}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// The one line of `text` that holds `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

const NFLOG_CONF: &str = "[global]\nstack=log1:NFLOG,base1:BASE,json1:JSON\n[log1]\ngroup={GROUP}\n[json1]\nfile=\"{FILE}\"\n";

#[test]
fn a_group_a_running_ulogd2_holds_says_so_and_what_to_do() {
    let (ns, dir) = lab::netns_or_skip!("diag-busy");
    let json = dir.path().join("ulogd.json");
    let ulogd = Daemon::ulogd(&ns, dir.path(), &lab::json_conf(41, &json), &[41], &[&json]);
    let conf = lab::fill(
        NFLOG_CONF,
        &[
            ("GROUP", "41".into()),
            ("FILE", lab::path_str(&dir.path().join("r.json"))),
        ],
    );
    let (_, err) = failed_start(&ns, dir.path(), &conf, &[]);
    let l = line_with(&err, "group 41 already bound by another process");
    assert!(l.contains("ulogd") && l.contains("another group"), "{l}");
    ulogd.stop();
}

#[test]
fn without_cap_net_admin_the_start_says_which_capability() {
    let (ns, dir) = lab::netns_or_skip!("diag-cap");
    let conf = lab::fill(
        NFLOG_CONF,
        &[
            ("GROUP", "42".into()),
            ("FILE", lab::path_str(&dir.path().join("r.json"))),
        ],
    );
    // Dropped from the bounding set, root's execve grants it no longer.
    let (_, err) = failed_start(
        &ns,
        dir.path(),
        &conf,
        &["setpriv", "--bounding-set=-net_admin"],
    );
    let l = line_with(&err, "need CAP_NET_ADMIN");
    assert!(l.contains("NFLOG"), "{l}");
}

#[test]
fn conntrack_accounting_and_timestamps_off_are_named_with_the_sysctl() {
    let (ns, dir) = lab::netns_or_skip!("diag-ct");
    ns.conntrack_sysctls(false, false);
    let json = dir.path().join("ct.json");
    let conf = format!(
        "[global]\nlogfile=\"{{LOGFILE}}\"\nstack=ct1:NFCT,ip2str1:IP2STR,json1:JSON\n[json1]\nfile=\"{}\"\n",
        lab::path_str(&json)
    );
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[], &[&json]);
    // The output's file can exist before NFCT has said its piece.
    lab::wait_until(std::time::Duration::from_secs(10), || {
        let l = d.log_text();
        l.contains("nf_conntrack_acct is 0") && l.contains("nf_conntrack_timestamp is 0")
    });
    let log = d.log_text();
    d.stop();
    for k in ["acct", "timestamp"] {
        let l = line_with(&log, &format!("net.netfilter.nf_conntrack_{k} is 0"));
        assert!(
            l.contains(&format!("sysctl -w net.netfilter.nf_conntrack_{k}=1"))
                && l.contains(&format!("enable_{k}=1")),
            "{l}"
        );
    }
}

#[test]
fn a_spool_directory_that_cannot_be_made_names_the_path_and_the_way_out() {
    let (ns, dir) = lab::netns_or_skip!("diag-spool");
    // Root may write anywhere, so the directory is made impossible instead:
    // its parent is a regular file.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let conf = format!(
        "[global]\nstack=log1:NFLOG,base1:BASE,json1:JSON\n[log1]\ngroup=43\n[json1]\nmode=\"tcp\"\nhost=\"127.0.0.1\"\nport=9\nspool_dir=\"{}/spool\"\n",
        lab::path_str(&blocker)
    );
    let (_, err) = failed_start(&ns, dir.path(), &conf, &[]);
    let l = line_with(&err, "cannot create the spool directory");
    assert!(l.contains("json1") && l.contains("spool_dir=\"\""), "{l}");
}

#[test]
fn a_logfile_that_cannot_be_opened_names_the_line_and_the_path() {
    let (ns, dir) = lab::netns_or_skip!("diag-log");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let conf = format!(
        "[global]\nlogfile=\"{}/rulogd.log\"\nstack=log1:NFLOG,base1:BASE,json1:JSON\n[log1]\ngroup=44\n[json1]\nfile=\"{}\"\n",
        lab::path_str(&blocker),
        lab::path_str(&dir.path().join("r.json"))
    );
    let (_, err) = failed_start(&ns, dir.path(), &conf, &[]);
    let l = line_with(&err, "cannot open logfile");
    assert!(
        l.contains("bad.conf:2") && l.contains("not-a-dir/rulogd.log"),
        "{l}"
    );
}
