//! Signals under load: SIGHUP reopens the JSON file without losing or
//! tearing a line; SIGTERM writes every record already read.
//!
//! Run: `cargo build --release --bins && cargo test -p rulogd-tests --test signals`
//! (root needed). `RULOGD_BIN=/usr/sbin/ulogd` runs ulogd2 as the daemon
//! under test, which must pass too.

use rulogd_tests::traffic::udp_send_paced;
use rulogd_tests::{self as lab, daemon, Daemon, Kind, Netns, TempDir};
use std::time::Duration;

fn rules(group: u16) -> String {
    format!(
        "table inet t {{\n counter c {{}}\n chain in {{\n  type filter hook input priority 0;\n\
         \x20 udp dport 9999 counter name \"c\" log prefix \"sig\" group {group} drop\n }}\n}}\n"
    )
}

/// Logrotate's way: rename the file, then SIGHUP, while 20k packets arrive
/// at a steady 10k/s. A second SIGHUP without a rename reopens the same
/// file (append, no truncation). Every packet must be in exactly one of the
/// two files, and every line must be whole.
#[test]
fn sighup_reopens_while_traffic_runs() {
    if !lab::require_root() {
        return;
    }
    const PACKETS: usize = 20_000;
    let ns = Netns::new("shup").unwrap();
    ns.nft(&rules(61)).unwrap();
    let dir = TempDir::new("shup");
    let json = dir.path().join("out.json");
    let rotated = dir.path().join("out.json.1");
    let d = Daemon::start(
        &ns,
        Kind::Rulogd,
        dir.path(),
        "rulogd",
        &lab::json_conf(61, &json),
        &[61],
        &[&json],
    );
    let sent = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            ns.run_in_thread(|| {
                udp_send_paced("127.0.0.1:9999".parse().unwrap(), PACKETS, 64, 10_000)
            })
        });
        std::thread::sleep(Duration::from_millis(600));
        std::fs::rename(&json, &rotated).unwrap();
        d.signal(libc::SIGHUP);
        assert!(
            lab::wait_until(Duration::from_secs(5), || json.exists()),
            "no new file after SIGHUP\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(600));
        d.signal(libc::SIGHUP);
        sender.join().unwrap().unwrap().1
    });
    assert_eq!(sent, PACKETS);
    std::thread::sleep(Duration::from_millis(200));
    let logged = ns.counter("inet", "t", "c").unwrap() as usize;
    assert_eq!(logged, PACKETS);
    let total = || lab::count_lines(&json) + lab::count_lines(&rotated);
    lab::wait_until(Duration::from_secs(10), || total() >= logged);
    assert!(daemon::wait_drained(&ns, 61, Duration::from_secs(5)));
    let drops = daemon::drops_note(&ns, 61);
    d.stop();
    let (old, bad_old) = lab::json::read_records_lenient(&rotated);
    let (new, bad_new) = lab::json::read_records_lenient(&json);
    assert!(
        bad_old.is_empty(),
        "torn lines in the rotated file: {bad_old:?}"
    );
    assert!(
        bad_new.is_empty(),
        "torn lines in the new file: {bad_new:?}"
    );
    assert!(
        !old.is_empty() && !new.is_empty(),
        "{} / {} lines",
        old.len(),
        new.len()
    );
    assert_eq!(
        old.len() + new.len(),
        PACKETS,
        "old {} + new {} lines ({drops})",
        old.len(),
        new.len()
    );
}

/// With buffered output (sync=0), SIGTERM right after a burst, as soon as
/// the daemon has read every message from the kernel: everything must reach
/// the file.
#[test]
fn sigterm_after_burst_writes_everything() {
    if !lab::require_root() {
        return;
    }
    const PACKETS: usize = 10_000;
    let ns = Netns::new("sterm").unwrap();
    ns.nft(&rules(62)).unwrap();
    let dir = TempDir::new("sterm");
    let json = dir.path().join("out.json");
    let conf = lab::json_conf(62, &json).replace("sync=1", "sync=0");
    let d = Daemon::start(
        &ns,
        Kind::Rulogd,
        dir.path(),
        "rulogd",
        &conf,
        &[62],
        &[&json],
    );
    let (_, sent) = ns
        .run_in_thread(|| udp_send_paced("127.0.0.1:9999".parse().unwrap(), PACKETS, 64, 0))
        .unwrap();
    assert_eq!(sent, PACKETS);
    // "Read" as the kernel sees it: nothing batched for the group and the
    // socket's receive queue empty (the kernel flushes a partial batch
    // after 1 s).
    assert!(
        daemon::wait_drained(&ns, 62, Duration::from_secs(10)),
        "daemon did not read its socket empty\n{}",
        d.log_text()
    );
    let drops = daemon::drops_note(&ns, 62);
    d.stop();
    let logged = ns.counter("inet", "t", "c").unwrap() as usize;
    assert_eq!(logged, PACKETS);
    let recs = lab::read_records(&json);
    assert_eq!(recs.len(), PACKETS, "{drops}");
    assert!(recs.iter().all(|r| r.str("oob.prefix") == Some("sig")));
}
