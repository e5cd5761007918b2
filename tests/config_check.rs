//! `rulogd -t` and a start agree: every bad config from issue 9 is refused
//! by `-t` with the offending option's (or section's) file:line, a start of
//! the same config fails with the same message before opening anything, and
//! values at the edge of each range that `-t` accepts do start. Bundled
//! short options (`-vt -c`, `-tc`) reach the check instead of starting.

use rulogd_tests::{self as lab, daemon, Netns, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A stack on NFLOG group 41; `{LOG1}` and `{JSON1}` are the sections' bodies.
const BASE: &str = "[global]
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON

[log1]
{LOG1}

[json1]
file=\"{FILE}\"
{JSON1}
";

/// One bad config: its text, the line that must be named, and a fragment
/// of the message.
struct Case {
    name: &'static str,
    text: String,
    toml: bool,
    line: u32,
    needle: &'static str,
}

fn ulogd_case(
    name: &'static str,
    log1: &str,
    json1: &str,
    line: u32,
    needle: &'static str,
) -> Case {
    Case {
        name,
        text: BASE
            .replace("{LOG1}", log1)
            .replace("{JSON1}", json1)
            .replace("{FILE}", "/nonexistent-dir/out.json"),
        toml: false,
        line,
        needle,
    }
}

fn cases() -> Vec<Case> {
    // Lines: [log1] is 4, its first option 5; [json1] 7, file 8, then 9.
    let mut v = vec![
        ulogd_case(
            "group-neg",
            "group=-1",
            "",
            5,
            "`group`: -1 is out of range 0..=65535",
        ),
        ulogd_case(
            "group-65536",
            "group=65536",
            "",
            5,
            "65536 is out of range 0..=65535",
        ),
        ulogd_case(
            "group-huge",
            "group=99999999999",
            "",
            5,
            "99999999999 is out of range",
        ),
        ulogd_case(
            "bufsize",
            "group=41\nbufsize=10",
            "",
            6,
            "`bufsize`: 10 is out of range 64..=",
        ),
        ulogd_case(
            "rcvbuf",
            "group=41\nnetlink_socket_buffer_size=99999999999",
            "",
            6,
            "`netlink_socket_buffer_size`: 99999999999 is out of range 0..=2147483647",
        ),
        ulogd_case(
            "label",
            "group=41\nnumeric_label=256",
            "",
            6,
            "`numeric_label`: 256 is out of range 0..=255",
        ),
        ulogd_case(
            "when-full",
            "group=41",
            "when_full=maybe",
            9,
            "`when_full`: `maybe` is not one of: auto, block, drop",
        ),
        ulogd_case(
            "ts-format",
            "group=41",
            "timestamp_format=iso",
            9,
            "`timestamp_format`: `iso` is not one of: ulogd, rfc3339, epoch",
        ),
        ulogd_case(
            "queue-size",
            "group=41",
            "queue_size=0",
            9,
            "`queue_size`: 0 is out of range 1..=",
        ),
        ulogd_case(
            "port",
            "group=41",
            "mode=tcp\nport=70000",
            10,
            "`port`: port 70000 is out of range 1..=65535",
        ),
        ulogd_case("flag", "group=41", "sync=2", 9, "`sync`: 2 is not 0 or 1"),
        ulogd_case("misspelt", "group=41", "", 0, ""),
        ulogd_case("orphan", "group=41", "", 0, ""),
    ];
    // A section written for json1 under another name: the instance would
    // silently run on its defaults.
    let m = v.iter_mut().find(|c| c.name == "misspelt").unwrap();
    m.text = m.text.replace("[json1]", "[jsno1]");
    m.line = 7;
    m.needle = "section [jsno1] is not an instance of any stack; did you mean [json1]?";
    let o = v.iter_mut().find(|c| c.name == "orphan").unwrap();
    o.text.push_str("\n[orphan]\nfoo=1\n");
    o.line = 11;
    o.needle = "section [orphan] is not an instance of any stack";
    // Rules the builders applied only at start, now in the option tables.
    let mut unix = ulogd_case(
        "unix-path",
        "group=41",
        "mode=unix",
        8,
        "`file`: unix socket path is longer than 107",
    );
    let long = format!("/nonexistent-dir/{}", "s".repeat(100));
    unix.text = unix.text.replace("/nonexistent-dir/out.json", &long);
    v.push(unix);
    v.push(Case {
        name: "sql-template",
        text: "[global]\nstack=log1:NFLOG,base1:BASE,s1:SQLITE3\n\n[s1]\ndb=\"/nonexistent-dir/x.db\"\ntable=\"t_%Y\"\n".into(),
        toml: false,
        line: 4,
        needle: "[s1]: option `template` (left at its default): table `t_%Y` has strftime fields",
    });
    // Two NFLOG instances on one group: the kernel gives it to one socket.
    v.push(Case {
        name: "shared-group",
        text: "[global]\nstack=log1:NFLOG,base1:BASE,json1:JSON\nstack=log2:NFLOG,base1:BASE,json1:JSON\n\n[log1]\ngroup=41\n\n[log2]\ngroup=41\n\n[json1]\nfile=\"/nonexistent-dir/out.json\"\n".into(),
        toml: false,
        line: 9,
        needle: "[log2]: option `group`: group 41 is already used by instance `log1` (line 6)",
    });
    for (name, value, needle) in [
        ("toml-neg", "-1", "`group`: -1 is out of range 0..=65535"),
        (
            "toml-bool",
            "true",
            "`group`: `true` is a boolean, but `group` takes an integer",
        ),
        (
            "toml-string",
            "\"41\"",
            "`group`: \"41\" is a string, but `group` takes an integer",
        ),
    ] {
        v.push(Case {
            name,
            text: format!("[global]\nstack = [\"log1:NFLOG,base1:BASE,json1:JSON\"]\n\n[log1]\ngroup = {value}\n\n[json1]\nfile = \"/nonexistent-dir/out.json\"\n"),
            toml: true,
            line: 5,
            needle,
        });
    }
    v
}

fn write(dir: &Path, c: &Case) -> PathBuf {
    let p = dir.join(format!(
        "{}.{}",
        c.name,
        if c.toml { "toml" } else { "conf" }
    ));
    std::fs::write(&p, &c.text).unwrap();
    p
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` to its end, killing it (and failing) if it outlives `limit`:
/// a start that got past the config would otherwise run on.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn check_refuses_each_bad_config_at_the_option_line() {
    let dir = TempDir::new("cfgcheck");
    let bin = daemon::rulogd_bin();
    for c in cases() {
        let p = write(dir.path(), &c);
        let out = run_bounded(
            {
                let mut cmd = Command::new(&bin);
                cmd.arg("-t").arg("-c").arg(&p);
                cmd
            },
            Duration::from_secs(20),
        );
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {all}", c.name);
        let want = format!("{}:{}: ", p.display(), c.line);
        assert!(all.contains(&want), "{}: `{all}` lacks `{want}`", c.name);
        assert!(
            all.contains(c.needle),
            "{}: `{all}` lacks `{}`",
            c.name,
            c.needle
        );
        assert!(!all.contains(": OK"), "{}: {all}", c.name);
    }
}

#[test]
fn a_start_fails_exactly_where_check_does_and_opens_nothing() {
    let (ns, dir) = lab::netns_or_skip!("cfgstart");
    let bin = daemon::rulogd_bin();
    for c in cases() {
        let p = write(dir.path(), &c);
        let check = {
            let mut cmd = Command::new(&bin);
            cmd.arg("-t").arg("-c").arg(&p);
            run_bounded(cmd, Duration::from_secs(20))
        };
        let mut cmd = ns.command(&bin);
        cmd.arg("-c")
            .arg(&p)
            .env("STATE_DIRECTORY", dir.path().join("state"));
        let start = run_bounded(cmd, Duration::from_secs(20));
        assert_eq!(start.status.code(), Some(1), "{}: {}", c.name, text(&start));
        // The error line -t printed, word for word.
        let line = String::from_utf8_lossy(&check.stderr)
            .lines()
            .find(|l| l.starts_with("rulogd: "))
            .unwrap_or_else(|| panic!("{}: no error line in {}", c.name, text(&check)))
            .to_string();
        assert!(
            String::from_utf8_lossy(&start.stderr).contains(&line),
            "{}: start said `{}`, -t said `{line}`",
            c.name,
            text(&start)
        );
        assert!(
            ns.nflog_instance(41).is_none(),
            "{}: group 41 was bound",
            c.name
        );
    }
}

#[test]
fn values_at_the_edges_that_check_accepts_also_start() {
    let (ns, dir) = lab::netns_or_skip!("cfgedge");
    let json = dir.path().join("edge.json");
    let conf = BASE
        .replace("[global]\n", "[global]\nlogfile=\"{LOGFILE}\"\n")
        .replace(
            "{LOG1}",
            "group=65535\nbufsize=64\nnumeric_label=255\nnetlink_socket_buffer_size=2147483647",
        )
        .replace("{FILE}", &lab::path_str(&json))
        .replace(
            "{JSON1}",
            "queue_size=1\nwhen_full=BLOCK\ntimestamp_format=EPOCH\nport=65535\nsync=1",
        );
    let p = dir.path().join("edge-check.conf");
    let log = lab::path_str(&dir.path().join("edge-check.log"));
    std::fs::write(&p, lab::fill(&conf, &[("LOGFILE", log)])).unwrap();
    let out = Command::new(daemon::rulogd_bin())
        .arg("-t")
        .arg("-c")
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let d = daemon::Daemon::start(
        &ns,
        daemon::Kind::Rulogd,
        dir.path(),
        "edge",
        &conf,
        &[65535],
        &[&json],
    );
    d.stop();
}

#[test]
fn bundled_flags_check_instead_of_starting() {
    let dir = TempDir::new("cfgbundle");
    let p = dir.path().join("ok.conf");
    let json = dir.path().join("never.json");
    std::fs::write(
        &p,
        BASE.replace("{LOG1}", "group=41")
            .replace("{JSON1}", "")
            .replace("{FILE}", &lab::path_str(&json)),
    )
    .unwrap();
    let bin = daemon::rulogd_bin();
    let p_s = lab::path_str(&p);
    let glued = format!("-tc{p_s}");
    let forms: [Vec<&str>; 4] = [
        vec!["-vt", "-c", &p_s],
        vec!["-tc", &p_s],
        vec![&glued],
        vec!["--conf", &p_s, "--che"],
    ];
    // Were a bundle misread, the daemon would start and bind group 41:
    // inside a namespace of ours when we may make one, and bounded.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ns = root.then(|| Netns::new("cfgbundle").unwrap());
    for argv in forms {
        let mut cmd = match &ns {
            Some(ns) => ns.command(&bin),
            None => Command::new(&bin),
        };
        cmd.args(&argv);
        let out = run_bounded(cmd, Duration::from_secs(20));
        let all = text(&out);
        assert!(out.status.success(), "{argv:?}: {all}");
        assert!(all.contains(&format!("{p_s}: OK")), "{argv:?}: {all}");
        assert!(!json.exists(), "{argv:?} started the daemon");
    }
    let out = Command::new(&bin).arg("-dv").arg("-x").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown option `-x`"),
        "{}",
        text(&out)
    );
}

#[test]
fn debians_ulogd_conf_passes_check_with_spare_sections_as_notices() {
    let etc = Path::new("/etc/ulogd.conf");
    if !etc.exists() {
        panic!("/etc/ulogd.conf missing: apt-get install ulogd2 (scripts/test-all.sh does)");
    }
    let out = Command::new(daemon::rulogd_bin())
        .arg("-t")
        .arg("-c")
        .arg(etc)
        .output()
        .unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("/etc/ulogd.conf: OK"), "{all}");
    for spare in ["log2", "pgsql1", "sqlite3_ct", "graphite1"] {
        assert!(
            all.contains(&format!("spare section [{spare}]: no stack uses it")),
            "{spare}: {all}"
        );
    }
}
