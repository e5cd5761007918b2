//! systemd's notify protocol, without systemd: the test listens on a
//! NOTIFY_SOCKET and checks that READY=1 comes only once the NFLOG group is
//! bound (a packet sent the moment READY arrives is logged), RELOADING=1 and
//! READY=1 around SIGHUP, STOPPING=1 at SIGTERM, and watchdog pings while
//! the inputs run.

use rulogd_tests as lab;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn rules(group: u16) -> String {
    format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n\
         \x20 udp dport 9998 log prefix \"ready\" group {group} drop\n }}\n}}\n"
    )
}

/// The next notification, within `timeout`.
fn next(rx: &UnixDatagram, timeout: Duration) -> Option<String> {
    rx.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 512];
    let n = rx.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Notifications until one has `key`, within `timeout`; all of them.
fn until(rx: &UnixDatagram, key: &str, timeout: Duration) -> Vec<String> {
    let end = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(m) = next(
        rx,
        end.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1)),
    ) {
        let done = m.lines().any(|l| l == key);
        seen.push(m);
        if done {
            break;
        }
    }
    seen
}

#[test]
fn ready_after_bind_reloading_stopping_and_watchdog() {
    let (ns, dir) = lab::netns_or_skip!("ntfy");
    ns.nft(&rules(63)).unwrap();
    let sock = dir.path().join("notify");
    let rx = UnixDatagram::bind(&sock).unwrap();
    let json = dir.path().join("out.json");
    let log = dir.path().join("rulogd.log");
    let conf = dir.path().join("rulogd.conf");
    let text = lab::json_conf(63, &json).replace("{LOGFILE}", &lab::path_str(&log));
    std::fs::write(&conf, text).unwrap();
    let mut child = ns
        .command(lab::rulogd_bin())
        .arg("-c")
        .arg(&conf)
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "400000")
        .env("STATE_DIRECTORY", dir.path().join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let first = next(&rx, Duration::from_secs(10)).expect("no notification within 10 s");
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    assert!(
        first.lines().any(|l| l == format!("MAINPID={pid}")),
        "{first:?}"
    );
    // The moment READY arrives the group must be bound.
    let sent =
        ns.run_in_thread(|| lab::traffic::udp_send("127.0.0.1:9998".parse().unwrap(), 1, 16));
    assert!(sent.is_ok());
    assert!(
        lab::wait_until(Duration::from_secs(5), || lab::count_lines(&json) >= 1),
        "the packet sent right after READY=1 was not logged\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Pings at half the period while the input runs.
    let pings = until(&rx, "WATCHDOG=1", Duration::from_secs(2));
    assert!(pings.iter().any(|m| m == "WATCHDOG=1"), "{pings:?}");
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    let reload = until(&rx, "READY=1", Duration::from_secs(5));
    let r = reload
        .iter()
        .position(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("no RELOADING=1 after SIGHUP: {reload:?}"));
    assert!(
        reload[r + 1..].iter().any(|m| m == "READY=1"),
        "no READY=1 after the reload: {reload:?}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stop = until(&rx, "STOPPING=1", Duration::from_secs(5));
    assert!(stop.iter().any(|m| m == "STOPPING=1"), "{stop:?}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
