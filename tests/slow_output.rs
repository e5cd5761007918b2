//! A stalled output must not make the kernel drop: JSON over TCP to a peer
//! that accepts but never reads fills its queue and then drops (counted),
//! while the NFLOG socket keeps being read and a second JSON output (a file,
//! in a second stack of the same input) gets every record. ulogd2 writes on
//! its only thread, so there the stalled peer would block everything. The
//! durable spool (on by default) is turned off here: this is the memory-only
//! path, whose losses must be counted; the spool's own tests are in
//! tests/sql_faults.rs and the delivery unit tests.

use rulogd_tests::traffic::udp_send_paced;
use rulogd_tests::{self as lab, daemon, Daemon, Netns, TempDir};
use std::io::Read;
use std::time::Duration;

const CONF: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=5
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,file1:JSON
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,tcp1:JSON

[log1]
group=71

[file1]
file=\"{FILE}\"

[tcp1]
mode=tcp
host=127.0.0.1
port=7171
queue_size=4
max_pending=65536
spool_dir=\"\"
";

fn stat(log: &str, set: &str, key: &str) -> Option<u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&format!("exit: {set}:")))?;
    let kv = line
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{key}=")))?;
    kv.split('=').nth(1)?.parse().ok()
}

#[test]
fn stalled_tcp_peer_does_not_stop_reading_or_other_outputs() {
    lab::skip_unless_root!();
    const PACKETS: usize = 20_000;
    let ns = Netns::new("slow").unwrap();
    ns.nft(&lab::counted_ruleset(
        "  udp dport 9999 counter name \"c\" log group 71 drop",
    ))
    .unwrap();
    // The peer: accepts, reads nothing until the end.
    let listener = ns.run_in_thread(|| std::net::TcpListener::bind("127.0.0.1:7171").unwrap());
    let dir = TempDir::new("slow");
    let json = dir.path().join("file.json");
    let conf = lab::fill(CONF, &[("FILE", lab::path_str(&json))]);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[71], &[&json]);
    let (mut peer, _) = listener.accept().unwrap();
    let sent = ns
        .run_in_thread(|| udp_send_paced("127.0.0.1:9999".parse().unwrap(), PACKETS, 64, 20_000))
        .unwrap()
        .1;
    assert_eq!(sent, PACKETS);
    std::thread::sleep(Duration::from_millis(200));
    let logged = ns.counter("inet", "t", "c").unwrap() as usize;
    assert_eq!(logged, PACKETS);
    assert!(
        lab::wait_until(Duration::from_secs(10), || lab::count_lines(&json)
            >= logged),
        "file output got {} of {logged}\n{}",
        lab::count_lines(&json),
        d.log_text()
    );
    assert!(daemon::wait_drained(&ns, 71, Duration::from_secs(5)));
    d.stop();
    let log = std::fs::read_to_string(dir.path().join("rulogd.log")).unwrap();
    assert_eq!(lab::count_lines(&json), PACKETS, "every record in the file");
    assert_eq!(
        stat(&log, "log1 (NFLOG)", "received"),
        Some(PACKETS as u64),
        "{log}"
    );
    assert_eq!(stat(&log, "log1 (NFLOG)", "enobufs"), Some(0), "{log}");
    let dropped = stat(&log, "tcp1 (JSON)", "dropped_full").unwrap_or(0)
        + stat(&log, "tcp1 (JSON)", "dropped_shutdown").unwrap_or(0);
    assert!(
        dropped > 0,
        "the stalled peer should have cost counted drops\n{log}"
    );
    // What the peer did get is whole lines, and with the drops it adds up.
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut got = Vec::new();
    let _ = peer.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    let whole = text.lines().filter(|l| l.ends_with('}')).count();
    assert!(
        whole > 0 && (whole as u64) + dropped <= PACKETS as u64,
        "peer got {whole}, dropped {dropped}"
    );
}
