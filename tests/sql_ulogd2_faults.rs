//! PGSQL with ulogd2's own schema (Debian's pgsql-ulogd2.sql) and an
//! unchanged ulogd2-style config (`table="ulog"`,
//! `procedure="INSERT_PACKET_FULL"`, no rulogd-only option: the durable
//! spool is the default one under `$STATE_DIRECTORY`) when things go wrong:
//! PostgreSQL stopped for 30 s in a 60 s steady stream, and rulogd killed
//! with SIGKILL while rows sit in its spool.
//!
//! Every record must land once and in order. The schema has no column for
//! a sequence number, so the packets carry one: they come from one
//! connected UDP socket, whose IP ids go up by one per datagram, and
//! `ip_id` is in `ulog2`. In `_id` order each row's id must step forward
//! from the one before (a repeat or a swap steps back), and the rows must
//! be as many as the log rule counted (a loss).
//!
//! The rate is `RULOGD_FAULT_RATE` packets/s, default 20000, the rate the
//! issue asks for. PostgreSQL's own work per row of ulogd2's schema (~25 µs)
//! makes one backend the limit; with the default two connections a loaded
//! 2-core machine drained 600K spooled rows 5–10 s after the traffic (both
//! tests at once), against not within 30 s with one.
//!
//! Run: `cargo build -p rulogd && cargo test -p rulogd-tests --test sql_ulogd2_faults`
//! (root; PostgreSQL 15 server binaries, ulogd2-pgsql's schema).

use rulogd_tests::pg::{ulogd2_schema, Pg};
use rulogd_tests::{self as lab, daemon, Daemon, Netns, TempDir};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// ulogd2's sample PGSQL stack and section, with the lab's server.
const CONF: &str = concat!(
    lab::conf_global!("log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,mac2str1:HWHDR,pg1:PGSQL"),
    "\n",
    lab::conf_nflog!(33554432, 67108864),
    "\n\
[pg1]
db=\"ulog2\"
host=\"{HOST}\"
port={PORT}
user=\"postgres\"
table=\"ulog\"
procedure=\"INSERT_PACKET_FULL\"
"
);

fn rate() -> u64 {
    std::env::var("RULOGD_FAULT_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(20000)
}

fn setup(tag: &str, group: u16) -> (Pg, Netns, TempDir, String) {
    let pg = Pg::start(tag);
    pg.createdb("ulog2");
    pg.psql_script("ulog2", &ulogd2_schema());
    let ns = Netns::new(tag).unwrap();
    ns.nft(&lab::counted_ruleset(&format!(
        "  udp dport 9991 counter name \"c\" log prefix \"F\" group {group}\n\
         \x20 udp dport 9991 drop"
    )))
    .unwrap();
    let dir = TempDir::new(tag);
    let conf = lab::fill(
        CONF,
        &[
            ("GROUP", group.to_string()),
            ("HOST", pg.host()),
            ("PORT", pg.port().to_string()),
        ],
    );
    (pg, ns, dir, conf)
}

/// One connected UDP socket in `ns` (its datagrams' IP ids go up by one).
fn socket(ns: &Netns) -> UdpSocket {
    ns.run_in_thread(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.connect("127.0.0.1:9991").unwrap();
        s
    })
}

/// Sends for `secs` at `rate`/s on `sock`, paced without drift.
fn send(sock: &UdpSocket, rate: u64, secs: u64) -> u64 {
    let start = Instant::now();
    let total = rate * secs;
    for i in 0..total {
        let due = Duration::from_secs_f64(i as f64 / rate as f64);
        let now = start.elapsed();
        if due > now + Duration::from_micros(200) {
            std::thread::sleep(due - now);
        }
        sock.send(b"ulogd2-schema").unwrap();
    }
    total
}

/// Packets the log rule has counted.
fn logged(ns: &Netns) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    ns.counter("inet", "t", "c").expect("nft counter")
}

/// Rows in `ulog2` (the serial's last value would count rolled-back ids).
fn count(pg: &Pg) -> u64 {
    pg.count("ulog2", "select count(*) from ulog2")
}

/// Waits until `n` rows are in or `limit` passes; the time it took.
fn wait_rows(pg: &Pg, n: u64, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    lab::wait_until(limit, || count(pg) >= n).then(|| t.elapsed())
}

/// Checks the rows in `_id` order: as many as `n`, each a UDP row of ours
/// with its hwhdr row, and IP ids stepping forward one row at a time.
fn assert_once_in_order(pg: &Pg, n: u64, d: &Daemon) {
    let rows = pg.rows(
        "ulog2",
        "select u.ip_id, d.udp_dport, h._hw_id is not null from ulog2 u \
         left join udp d on d._udp_id = u._id left join hwhdr h on h._hw_id = u._id \
         order by u._id",
    );
    let ids: Vec<u16> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(
        rows.iter().all(|r| r[1] == "9991" && r[2] == "t"),
        "every row has its udp and hwhdr rows"
    );
    let mut bad = Vec::new();
    for (i, w) in ids.windows(2).enumerate() {
        // Forward by a little (the loopback backlog may drop a datagram
        // before the log rule, so a gap in ids is not a loss); a repeat is
        // a step of 0, a swap a step back (a wrap-around of the 16-bit id).
        let step = w[1].wrapping_sub(w[0]);
        if !(1..1000).contains(&step) && bad.len() < 10 {
            bad.push(format!("row {}: ip_id {} after {}", i + 1, w[1], w[0]));
        }
    }
    assert!(
        bad.is_empty() && ids.len() as u64 == n,
        "{} rows for {n} packets logged; {}\n{}",
        ids.len(),
        bad.join(", "),
        d.log_text()
    );
}

#[test]
fn ulogd2_schema_and_config_lose_nothing_across_a_30_second_outage() {
    lab::skip_unless_root!();
    let (mut pg, ns, dir, conf) = setup("u2out", 75);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[75], &[]);
    let sock = socket(&ns);
    let rate = rate();
    // 60 s of traffic; the database stopped at 15 s and started at 45 s.
    let sent = std::thread::scope(|s| {
        let h = s.spawn(|| send(&sock, rate, 60));
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(15));
        pg.stop_server();
        std::thread::sleep(Duration::from_secs(45).saturating_sub(t0.elapsed()));
        pg.start_server();
        h.join().unwrap()
    });
    let end = Instant::now();
    assert!(daemon::wait_drained(&ns, 75, Duration::from_secs(10)));
    let n = logged(&ns);
    let limit = Duration::from_secs(30).saturating_sub(end.elapsed());
    let waited = wait_rows(&pg, n, limit).map(|_| end.elapsed());
    eprintln!("{sent} sent at {rate}/s, {n} logged; all rows in {waited:?} after the traffic");
    assert_once_in_order(&pg, n, &d);
    assert!(waited.is_some(), "the spool drained within 30 s");
    d.stop();
}

#[test]
fn ulogd2_schema_and_config_lose_nothing_when_killed_with_rows_in_the_spool() {
    lab::skip_unless_root!();
    let (mut pg, ns, dir, conf) = setup("u2kill", 76);
    let mut d = Daemon::rulogd(&ns, dir.path(), &conf, &[76], &[]);
    let sock = socket(&ns);
    let rate = rate();
    // Rows written, then rows spooled while the database is down.
    send(&sock, rate, 3);
    let a = logged(&ns);
    assert!(wait_rows(&pg, a, Duration::from_secs(20)).is_some());
    pg.stop_server();
    send(&sock, rate, 5);
    assert!(daemon::wait_drained(&ns, 76, Duration::from_secs(10)));
    let b = logged(&ns) - a;
    let spool = dir.path().join("rulogd.state/spool/pg1");
    let spooled = || -> u64 {
        std::fs::read_dir(&spool)
            .map(|it| {
                it.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    };
    assert!(
        lab::wait_until(Duration::from_secs(10), || spooled() > b * 20),
        "{b} rows in the default spool {} ({} bytes)",
        spool.display(),
        spooled()
    );
    std::thread::sleep(Duration::from_millis(500));
    d.signal(libc::SIGKILL);
    assert!(lab::wait_until(Duration::from_secs(10), || !d.running()));
    drop(d);
    pg.start_server();
    // Same name: the same state directory, so the same default spool.
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[76], &[]);
    send(&sock, rate, 3);
    assert!(daemon::wait_drained(&ns, 76, Duration::from_secs(10)));
    let n = logged(&ns);
    let done = wait_rows(&pg, n, Duration::from_secs(60));
    eprintln!("{a} written, {b} spooled, {n} logged in all; all in after {done:?}");
    // Anything more would be a repeat: give it a moment to show.
    std::thread::sleep(Duration::from_secs(1));
    assert_once_in_order(&pg, n, &d);
    d.stop();
}
