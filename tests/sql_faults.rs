//! PGSQL when things go wrong: the database stopped for 30 s under 20K
//! records/s, rulogd killed with SIGKILL while records sit in its spool, and
//! the database down when rulogd starts. Every record must arrive once and
//! in order; NFLOG's local sequence number (`seq_local=1`) is written with
//! each row, so a gap, a repeat or a swap shows in the table.
//!
//! Run: `cargo build --release -p rulogd && cargo test -p rulogd-tests --test sql_faults`
//! (root; PostgreSQL 15 server binaries).

use rulogd_tests::pg::Pg;
use rulogd_tests::traffic::udp_send_paced;
use rulogd_tests::{self as lab, daemon, Daemon, Kind, Netns, TempDir};
use std::time::{Duration, Instant};

const TABLE: &str = "create table f (_id bigserial primary key, oob_seq_local bigint, \
                     udp_dport integer, oob_prefix text);";

const CONF: &str = concat!(
    lab::conf_global!("log1:NFLOG,base1:BASE,pg1:PGSQL"),
    "\n\
[log1]
group={GROUP}
seq_local=1
netlink_socket_buffer_size=33554432
netlink_socket_buffer_maxsize=67108864

[pg1]
db=\"t\"
host=\"{HOST}\"
port={PORT}
user=\"postgres\"
table=\"f\"
procedure=\"INSERT\"
reconnect=1
spool_dir=\"{SPOOL}\"
when_full=\"block\"
"
);

fn setup(tag: &str, group: u16) -> (Pg, Netns, TempDir, String) {
    let pg = Pg::start(tag);
    pg.createdb("t");
    pg.psql_script("t", TABLE);
    let ns = Netns::new(tag).unwrap();
    // The counter counts what reached the log rule: on a loaded machine
    // loopback's backlog may drop a burst before the input hook, after the
    // sender saw success, so packets sent is not packets logged.
    ns.nft(&lab::counted_ruleset(&format!(
        "  udp dport 9990-9999 counter name \"c\" log prefix \"F\" group {group}\n\
         \x20 udp dport 9990-9999 drop"
    )))
    .unwrap();
    let dir = TempDir::new(tag);
    let conf = lab::fill(
        CONF,
        &[
            ("GROUP", group.to_string()),
            ("HOST", pg.host()),
            ("PORT", pg.port().to_string()),
            ("SPOOL", lab::path_str(&dir.path().join("spool"))),
        ],
    );
    (pg, ns, dir, conf)
}

/// Sends `n` UDP packets to port `port` at `rate`/s from inside `ns`.
fn send(ns: &Netns, port: u16, n: usize, rate: u64) -> usize {
    ns.run_in_thread(move || {
        udp_send_paced(format!("127.0.0.1:{port}").parse().unwrap(), n, 8, rate)
            .unwrap()
            .1
    })
}

/// Packets the log rule has seen so far (the loopback backlog is drained
/// within a moment of the last send).
fn logged(ns: &Netns) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    ns.counter("inet", "t", "c").expect("nft counter")
}

/// The rows in insertion order: (sequence number, destination port).
fn rows(pg: &Pg) -> Vec<(u64, u16)> {
    pg.rows("t", "select oob_seq_local, udp_dport from f order by _id")
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect()
}

fn wait_rows(pg: &Pg, n: u64, stall: Duration) -> u64 {
    // Replaying a large spool on a busy 2-core machine can take minutes: wait
    // while rows keep landing, give up only after `stall` without progress
    // (or a hard cap), so a slow replay is not mistaken for a loss.
    let cap = Instant::now() + Duration::from_secs(300);
    let (mut last, mut since) = (u64::MAX, Instant::now());
    loop {
        let c = pg.count("t", "select count(*) from f");
        if c >= n || Instant::now() >= cap {
            return c;
        }
        if c != last {
            (last, since) = (c, Instant::now());
        } else if since.elapsed() >= stall {
            return c;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What went wrong, for a failure message: the sequence numbers missing or
/// repeated (as ranges), the delivery counters (SIGUSR1) and the daemon log.
fn diagnose(d: &Daemon, rows: &[(u64, u16)]) -> String {
    d.signal(libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(500));
    let mut notes = Vec::new();
    for w in rows.windows(2) {
        let (a, b) = (w[0].0, w[1].0);
        if b != 0 && b != a + 1 && notes.len() < 20 {
            notes.push(if b > a {
                format!("missing {}..={}", a + 1, b - 1)
            } else {
                format!("{b} after {a}")
            });
        }
    }
    format!(
        "last sequence {:?}; {}\n{}",
        rows.last().map(|r| r.0),
        notes.join(", "),
        d.log_text()
    )
}

/// Every row once and in order: the sequence numbers of the rows of each
/// run of the daemon (the kernel starts them at 0 when a daemon binds the
/// group) go up by one, with no gap and no repeat.
fn assert_once_in_order(rows: &[(u64, u16)], runs: usize) {
    let mut starts = 0;
    for (i, w) in rows.windows(2).enumerate() {
        if w[1].0 == 0 {
            starts += 1;
            continue;
        }
        assert_eq!(
            w[1].0,
            w[0].0 + 1,
            "row {}: sequence {} after {}",
            i + 1,
            w[1].0,
            w[0].0
        );
    }
    assert_eq!(rows.first().map(|r| r.0), Some(0), "first row");
    assert_eq!(starts + 1, runs, "sequence restarts");
}

#[test]
fn a_30_second_outage_under_20k_records_per_second_loses_nothing() {
    lab::skip_unless_root!();
    let (mut pg, ns, dir, conf) = setup("pgout", 71);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[71], &[]);
    let rate = 20_000;
    // 5 s up, 30 s down, 5 s up again: 40 s of traffic.
    let start = Instant::now();
    let total = rate as usize * 40;
    let traffic = std::thread::scope(|s| {
        let h = s.spawn(|| send(&ns, 9991, total, rate));
        std::thread::sleep(Duration::from_secs(5));
        pg.stop_server();
        let down = Instant::now();
        std::thread::sleep(Duration::from_secs(30));
        pg.start_server();
        eprintln!("database down for {:.1} s", down.elapsed().as_secs_f64());
        h.join().unwrap()
    });
    eprintln!(
        "sent {traffic} packets in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert!(daemon::wait_drained(&ns, 71, Duration::from_secs(10)));
    let drops = daemon::drops_note(&ns, 71);
    let n = logged(&ns);
    let got = wait_rows(&pg, n, Duration::from_secs(20));
    let r = rows(&pg);
    if got != n {
        panic!(
            "{got} rows for {n} packets logged ({traffic} sent; {drops}); {}",
            diagnose(&d, &r)
        );
    }
    d.stop();
    assert_eq!(r.len() as u64, n);
    assert_once_in_order(&r, 1);
}

#[test]
fn records_in_the_spool_survive_sigkill() {
    lab::skip_unless_root!();
    let (mut pg, ns, dir, conf) = setup("pgkill", 72);
    let mut d = Daemon::start(&ns, Kind::Rulogd, dir.path(), "rulogd1", &conf, &[72], &[]);
    send(&ns, 9991, 1000, 20_000);
    let a = logged(&ns);
    assert_eq!(wait_rows(&pg, a, Duration::from_secs(20)), a);
    pg.stop_server();
    let b = send(&ns, 9992, 5000, 20_000);
    assert!(daemon::wait_drained(&ns, 72, Duration::from_secs(10)));
    // The input goes idle and hands its last batch over; then the rows are
    // in the spool (the database is away), not in memory.
    let spool = dir.path().join("spool/pg1");
    assert!(lab::wait_until(Duration::from_secs(10), || {
        std::fs::read_dir(&spool)
            .map(|it| {
                it.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum::<u64>()
                    > 5000 * 20
            })
            .unwrap_or(false)
    }));
    std::thread::sleep(Duration::from_millis(500));
    d.signal(libc::SIGKILL);
    assert!(lab::wait_until(Duration::from_secs(10), || !d.running()));
    drop(d);
    pg.start_server();
    let d = Daemon::start(&ns, Kind::Rulogd, dir.path(), "rulogd2", &conf, &[72], &[]);
    let c = send(&ns, 9993, 1000, 20_000);
    let n = logged(&ns);
    let got = wait_rows(&pg, n, Duration::from_secs(30));
    let r = rows(&pg);
    if got != n {
        panic!(
            "{got} rows for {n} packets logged ({a} + {b} + {c} sent); {}",
            diagnose(&d, &r)
        );
    }
    d.stop();
    // Phases in order: the spooled rows come before the new run's rows.
    let ports: Vec<u16> = r.iter().map(|x| x.1).collect();
    assert!(
        ports.windows(2).all(|w| w[0] <= w[1]),
        "phases out of order"
    );
    assert_once_in_order(&r, 2);
}

#[test]
fn records_logged_while_the_database_is_down_at_start_arrive_once_it_is_up() {
    lab::skip_unless_root!();
    let (mut pg, ns, dir, conf) = setup("pgdown", 73);
    pg.stop_server();
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[73], &[]);
    let a = send(&ns, 9991, 2000, 10_000);
    std::thread::sleep(Duration::from_secs(2));
    pg.start_server();
    let b = send(&ns, 9992, 1000, 10_000);
    let n = logged(&ns);
    let got = wait_rows(&pg, n, Duration::from_secs(30));
    let r = rows(&pg);
    if got != n {
        panic!(
            "{got} rows for {n} packets logged ({a} + {b} sent); {}",
            diagnose(&d, &r)
        );
    }
    d.stop();
    assert!(r
        .iter()
        .map(|x| x.1)
        .collect::<Vec<_>>()
        .windows(2)
        .all(|w| w[0] <= w[1]));
    assert_once_in_order(&r, 1);
}

#[test]
fn connections_killed_again_and_again_under_load_lose_and_repeat_nothing() {
    lab::skip_unless_root!();
    // Each kill lands somewhere in a batch's life: before the COPY, in it,
    // between its end and the COMMIT (the server rolls back though the
    // COPY was answered), or after the COMMIT but before its answer (the
    // rows are in though the client saw an error). Every case must come
    // out as each row once.
    let (pg, ns, dir, conf) = setup("pgkills", 74);
    let d = Daemon::rulogd(&ns, dir.path(), &conf, &[74], &[]);
    let (rate, secs) = (20_000u64, 10);
    let sent = std::thread::scope(|s| {
        let h = s.spawn(|| send(&ns, 9991, (rate * secs) as usize, rate));
        let end = Instant::now() + Duration::from_secs(secs - 1);
        let mut kills = 0;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(150 + kills % 7 * 20));
            pg.psql(
                "t",
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where application_name = 'rulogd'",
            );
            kills += 1;
        }
        eprintln!("{kills} connections killed");
        h.join().unwrap()
    });
    assert!(daemon::wait_drained(&ns, 74, Duration::from_secs(10)));
    let n = logged(&ns);
    let got = wait_rows(&pg, n, Duration::from_secs(20));
    // Anything more would be a repeat: give it a moment to show.
    std::thread::sleep(Duration::from_secs(2));
    let r = rows(&pg);
    if got != n || r.len() as u64 != n {
        panic!(
            "{} rows for {n} packets logged ({sent} sent); {}",
            r.len(),
            diagnose(&d, &r)
        );
    }
    d.stop();
    assert_once_in_order(&r, 1);
}
