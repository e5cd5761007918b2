//! SQL insert throughput: rows/s that land in PostgreSQL for rulogd's PGSQL
//! and ulogd2's PGSQL, side by side in one run, rows/s into SQLite for both
//! SQLITE3 outputs, into MariaDB for both MYSQL outputs, and into
//! ClickHouse for rulogd's CLICKHOUSE beside its PGSQL.
//!
//! Each run: a fresh namespace with `udp dport 9999 log group 7 drop`, one
//! daemon with NFLOG → BASE → IFINDEX → IP2STR → SQL into an 18-column
//! table, `blast` sending `--packets` UDP packets as fast as it can. The
//! rate is the rows that landed divided by the time from the first row to
//! the last (at most `--secs`): the sustained insert rate, whether the
//! bottleneck is the database or the daemon. rulogd runs with a spool, so
//! nothing it reads is dropped; ulogd2 runs with its defaults (one INSERT
//! per row), as a stock config does. PostgreSQL runs with
//! `synchronous_commit=off`, ulogd2's best case (its commits do not wait
//! for the disk). `rulogd-pgsql-drain` measures rulogd's writer alone: the
//! rows are spooled while PostgreSQL is stopped, then written once it is
//! started again, with the input idle (on a 2-core machine the NFLOG input
//! and the sender otherwise bound the live rate); a drain ends when every
//! packet the rule logged has landed. Each run also reports the CPU time
//! per row of the daemon and of the database server, how busy the machine
//! was, and how much of it other processes took (the machine is shared). `rulogd-pgsql-full` and `ulogd2-pgsql-full` write into
//! ulogd2's own schema (Debian's pgsql-ulogd2.sql) through its
//! `INSERT_PACKET_FULL` function, with HWHDR in the stack as ulogd2's sample
//! config has it: `--full-packets` packets for rulogd, a tenth for ulogd2,
//! each run going to its end so that the rows missing (packets the log
//! rule counted, less rows in `ulog2`) are reported. `rulogd-clickhouse`
//! and `rulogd-clickhouse-drain` do what `rulogd-pgsql` and its drain do
//! with rulogd's CLICKHOUSE (its defaults: RowBinary inserts of up to 100K
//! rows) into a MergeTree table with the same 18 columns, on the test lab's
//! throw-away clickhouse-server 18.16 started per run inside the run's
//! namespace; rows are counted with `SELECT count()` over HTTP, and the
//! ratios against PGSQL (COPY) are printed. Results: min / median / max of
//! `--repeats` runs.
//!
//! Run as root after `cargo build --release --bins`:
//! `./target/release/bench-sql [--packets 2M] [--repeats 3] [--secs 20]
//! [--targets LIST]`.

mod ch;
mod count;
mod cpu;

use count::RowCount;
use cpu::Cpu;
use rulogd_bench::{min_med_max, Args};
use rulogd_tests::clickhouse;
use rulogd_tests::maria::{self, Maria, PASS, USER};
use rulogd_tests::pg::Pg;
use rulogd_tests::{self as lab, nfproc, Daemon, Kind, Netns, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: bench-sql [--packets 2M] [--repeats 3] [--secs 20] \
[--full-packets 200K] [--targets rulogd-pgsql,rulogd-pgsql-drain,ulogd2-pgsql,\
rulogd-pgsql-full,ulogd2-pgsql-full,rulogd-sqlite,ulogd2-sqlite,rulogd-mysql,ulogd2-mysql,\
rulogd-clickhouse,rulogd-clickhouse-drain]";

const COLUMNS: &str = "oob_time_sec bigint, oob_time_usec bigint, oob_prefix text, \
oob_hook smallint, oob_mark bigint, oob_in text, oob_out text, oob_family smallint, \
raw_pktlen bigint, ip_saddr_str inet, ip_daddr_str inet, ip_protocol smallint, \
ip_ttl smallint, ip_totlen integer, ip_id integer, udp_sport integer, \
udp_dport integer, udp_len integer";

const STACK: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=5
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,{HWHDR}sql1:{PLUGIN}

[log1]
group=7
netlink_socket_buffer_size=67108864
netlink_socket_buffer_maxsize=134217728

[sql1]
";

#[derive(Clone, Copy, PartialEq)]
enum Target {
    RulogdPg,
    /// rulogd's writer alone: rows spooled while the database was stopped,
    /// then written once it is back (the input no longer competes).
    RulogdPgDrain,
    UlogdPg,
    /// ulogd2's own schema (pgsql-ulogd2.sql) through INSERT_PACKET_FULL.
    RulogdPgFull,
    UlogdPgFull,
    RulogdLite,
    UlogdLite,
    RulogdMy,
    UlogdMy,
    /// CLICKHOUSE into a MergeTree table of clickhouse-server 18.16.
    RulogdCh,
    /// As [`Target::RulogdPgDrain`], into ClickHouse.
    RulogdChDrain,
}

/// Where a target's rows go.
#[derive(Clone, Copy, PartialEq)]
enum Db {
    Pg,
    Lite,
    My,
    Ch,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::RulogdPg => "rulogd-pgsql",
            Target::RulogdPgDrain => "rulogd-pgsql-drain",
            Target::UlogdPg => "ulogd2-pgsql",
            Target::RulogdPgFull => "rulogd-pgsql-full",
            Target::UlogdPgFull => "ulogd2-pgsql-full",
            Target::RulogdLite => "rulogd-sqlite",
            Target::UlogdLite => "ulogd2-sqlite",
            Target::RulogdMy => "rulogd-mysql",
            Target::UlogdMy => "ulogd2-mysql",
            Target::RulogdCh => "rulogd-clickhouse",
            Target::RulogdChDrain => "rulogd-clickhouse-drain",
        }
    }
    fn kind(self) -> Kind {
        match self {
            Target::RulogdPg
            | Target::RulogdPgDrain
            | Target::RulogdPgFull
            | Target::RulogdLite
            | Target::RulogdMy
            | Target::RulogdCh
            | Target::RulogdChDrain => Kind::Rulogd,
            _ => Kind::Ulogd,
        }
    }
    fn db(self) -> Db {
        match self {
            Target::RulogdPg
            | Target::RulogdPgDrain
            | Target::UlogdPg
            | Target::RulogdPgFull
            | Target::UlogdPgFull => Db::Pg,
            Target::RulogdLite | Target::UlogdLite => Db::Lite,
            Target::RulogdMy | Target::UlogdMy => Db::My,
            Target::RulogdCh | Target::RulogdChDrain => Db::Ch,
        }
    }
    /// Rows spooled while the server is stopped, written with the input idle.
    fn drain(self) -> bool {
        matches!(self, Target::RulogdPgDrain | Target::RulogdChDrain)
    }
    fn pg(self) -> bool {
        self.db() == Db::Pg
    }
    /// Into ulogd2's own schema (database `ulog2db`), not the flat table.
    fn full(self) -> bool {
        matches!(self, Target::RulogdPgFull | Target::UlogdPgFull)
    }
    /// The server's name in the report.
    fn server(self) -> Option<&'static str> {
        match self.db() {
            Db::Pg => Some("postgres"),
            Db::My => Some("mariadb"),
            Db::Ch => Some("clickhouse"),
            Db::Lite => None,
        }
    }
}

/// What one run measured.
struct Measured {
    rate: f64,
    rows: u64,
    /// CPU µs per row of the daemon and of the database server.
    daemon_us: f64,
    server_us: f64,
    /// Share of the machine's CPU time that was busy, in percent.
    busy_pct: f64,
    /// The part of it that other work on the (shared) machine took.
    others_pct: f64,
    /// Packets the log rule saw but no row holds, when the run went to
    /// its end (None: cut at `--secs`).
    lost: Option<i64>,
    /// The longest wait between two changes of the count.
    gap: Duration,
}

fn conf(
    t: Target,
    pg: &Pg,
    db: &Path,
    spool: &Path,
    my: Option<&Maria>,
    chs: Option<&clickhouse::ClickHouse>,
) -> String {
    let plugin = match t.db() {
        Db::Pg => "PGSQL",
        Db::Lite => "SQLITE3",
        Db::My => "MYSQL",
        Db::Ch => "CLICKHOUSE",
    };
    let mut c = STACK
        .replace("{PLUGIN}", plugin)
        .replace("{HWHDR}", if t.full() { "hw1:HWHDR," } else { "" });
    match (t.db(), my) {
        (Db::Pg, _) if t.full() => {
            // ulogd2's sample config for its own schema: the `ulog` view
            // names the columns, the function takes them in that order.
            c += &format!(
                "db=\"ulog2db\"\nhost=\"{}\"\nport={}\nuser=\"postgres\"\ntable=\"ulog\"\n\
                 procedure=\"INSERT_PACKET_FULL\"\n",
                pg.host(),
                pg.port()
            );
        }
        (Db::Pg, _) => {
            c += &format!(
                "db=\"b\"\nhost=\"{}\"\nport={}\nuser=\"postgres\"\ntable=\"bench\"\nprocedure=\"INSERT\"\n",
                pg.host(),
                pg.port()
            );
        }
        (Db::My, Some(my)) => {
            c += &format!(
                "db=\"b\"\nhost=\"127.0.0.1\"\nport={}\nuser=\"{USER}\"\npass=\"{PASS}\"\n\
                 table=\"bench\"\nprocedure=\"INSERT\"\n",
                my.port()
            );
        }
        (Db::Ch, _) => c += &chs.map(ch::conf).unwrap_or_default(),
        _ => c += &format!("db=\"{}\"\ntable=\"bench\"\n", db.display()),
    }
    if t.kind() == Kind::Rulogd {
        c += &format!(
            "spool_dir=\"{}\"\nwhen_full=\"block\"\nspool_size=8589934592\n",
            spool.display()
        );
    }
    c
}

/// One measurement: rows/s and rows.
fn run(t: Target, pg: &mut Pg, packets: u64, secs: u64, blast: &Path) -> Result<Measured, String> {
    let dir = TempDir::new("bsql");
    let db = dir.path().join("b.db");
    if t.full() {
        // The script drops and creates its tables: every run starts empty.
        pg.psql_script("ulog2db", &rulogd_tests::pg::ulogd2_schema());
        pg.psql("ulog2db", "checkpoint");
    } else if t.pg() {
        pg.psql("b", "drop table if exists bench");
        pg.psql(
            "b",
            &format!("create table bench (_id bigserial primary key, {COLUMNS})"),
        );
    } else if t.db() == Db::Lite {
        let ddl = format!(
            "create table bench ({});",
            COLUMNS.replace("bigint", "integer")
        );
        let st = Command::new("sqlite3").arg(&db).arg(ddl).status();
        if !st.is_ok_and(|s| s.success()) {
            return Err("sqlite3 failed".into());
        }
    }
    // Every run starts from the same state: the previous run's WAL and
    // dirty pages on disk, and no timed checkpoint (every 5 min) due
    // during the measurement.
    if t.pg() && !t.full() {
        pg.psql("b", "checkpoint");
    }
    let _ = Command::new("sync").status();
    let ns = Netns::new("bsql").map_err(|e| e.to_string())?;
    // MariaDB listens inside the run's namespace, where the daemon is; a
    // fresh server per run. Its buffer pool holds the whole run; commits
    // are not flushed (as PostgreSQL's synchronous_commit=off).
    let my = (t.db() == Db::My).then(|| {
        let my = Maria::start_with(
            "bsql",
            ns.name(),
            &[
                "--innodb-buffer-pool-size=1G",
                "--innodb-log-file-size=512M",
            ],
        );
        my.createdb("b");
        let cols = COLUMNS.replace(" inet", " varchar(39)");
        my.sql(
            "b",
            &format!("create table bench (_id bigint unsigned auto_increment primary key, {cols})"),
        );
        my
    });
    // Likewise ClickHouse, its table made before the daemon reads its columns.
    let mut chs = match t.db() {
        Db::Ch => Some(ch::start(&ns)?),
        _ => None,
    };
    ns.nft(
        "table inet t {\n counter c {}\n chain in {\n  type filter hook input priority 0;\n  \
            udp dport 9999 counter name \"c\" log group 7 drop\n }\n}\n",
    )
    .map_err(|e| e.to_string())?;
    let c = conf(
        t,
        pg,
        &db,
        &dir.path().join("spool"),
        my.as_ref(),
        chs.as_ref(),
    );
    let d = Daemon::start(&ns, t.kind(), dir.path(), t.name(), &c, &[7], &[]);
    if t.drain() {
        match chs.as_mut() {
            Some(s) => s.stop_server(),
            None => pg.stop_server(),
        }
    }
    let mut sender = ns
        .command(blast)
        .args(["--count", &packets.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("blast: {e}"))?;
    if t.drain() {
        let _ = sender.wait();
        // Everything read is in the spool once its size stops changing.
        let spool = dir.path().join("spool/sql1");
        let size = || -> u64 {
            std::fs::read_dir(&spool)
                .map(|it| {
                    it.filter_map(|e| e.ok())
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0)
        };
        let mut prev = u64::MAX;
        while size() != prev {
            prev = size();
            std::thread::sleep(Duration::from_secs(1));
        }
        match chs.as_mut() {
            Some(s) => s.start_server(),
            None => pg.start_server(),
        }
    }
    // A drain knows its end: every packet the rule logged. The writer may
    // pause for seconds on a busy machine; such a pause belongs in the
    // rate, it must not end the run early (as a 2 s idle gap did).
    let expect = t
        .drain()
        .then(|| ns.counter("inet", "t", "c").ok())
        .flatten();
    let quiet = Duration::from_secs(if expect.is_some() { 10 } else { 2 });
    // Wait for the first row, then until the count stops moving.
    let mut count = RowCount::default();
    let limit = Instant::now() + Duration::from_secs(secs + 30);
    let (mut t0, mut n0) = (None, 0);
    let (mut last, mut last_change) = (0u64, Instant::now());
    let mut gap = Duration::ZERO;
    let (mut cpu0, mut cpu_last) = (Cpu::default(), Cpu::default());
    loop {
        // A look at SQLite costs a process: not too often, on 2 cores.
        let look = if t.db() == Db::Lite { 500 } else { 100 };
        std::thread::sleep(Duration::from_millis(look));
        let now = Instant::now();
        let Some(n) = count.get(t, pg, &db, my.as_ref(), chs.as_ref().map(|s| (&ns, s))) else {
            if now > limit {
                return Err("the row count could not be read".into());
            }
            continue;
        };
        let n = n.max(last);
        let server = my
            .as_ref()
            .and_then(Maria::pid)
            .or_else(|| chs.as_ref().and_then(clickhouse::ClickHouse::pid));
        let cpu = Cpu::now(t, d.pid(), pg, server, sender.id());
        if t0.is_none() && n > 0 {
            t0 = Some(now);
            n0 = n;
            cpu0 = cpu;
        }
        if n != last {
            if t0.is_some_and(|s| s != now) {
                gap = gap.max(now.duration_since(last_change));
            }
            last = n;
            last_change = now;
            cpu_last = cpu;
        }
        let Some(start) = t0 else {
            if now > limit {
                return Err("no row arrived".into());
            }
            continue;
        };
        let idle = expect.is_some_and(|e| last >= e) || now.duration_since(last_change) > quiet;
        if idle || now.duration_since(start) > Duration::from_secs(secs) || now > limit {
            let (end, cpu1) = if idle {
                (last_change, cpu_last)
            } else {
                (now, cpu)
            };
            let _ = sender.kill();
            let _ = sender.wait();
            let logged = ns.counter("inet", "t", "c").unwrap_or(0);
            d.stop();
            let secs = end.duration_since(start).as_secs_f64().max(0.001);
            let rows = (last - n0).max(1) as f64;
            let us = |ticks: u64| ticks as f64 * 1e6 / nfproc::ticks_per_sec() as f64 / rows;
            return Ok(Measured {
                rate: (last - n0) as f64 / secs,
                rows: last,
                daemon_us: us(cpu1.daemon.saturating_sub(cpu0.daemon)),
                server_us: us(cpu1.server.saturating_sub(cpu0.server)),
                busy_pct: 100.0 * (cpu1.busy - cpu0.busy) as f64
                    / (cpu1.total - cpu0.total).max(1) as f64,
                others_pct: 100.0 * cpu1.others.saturating_sub(cpu0.others) as f64
                    / (cpu1.total - cpu0.total).max(1) as f64,
                lost: idle.then_some(logged as i64 - last as i64),
                gap,
            });
        }
    }
}

fn main() {
    let args = Args::parse(USAGE);
    if !lab::require_root() {
        std::process::exit(1);
    }
    let packets: u64 = args.get("packets", 2_000_000);
    let repeats: usize = args.get("repeats", 3);
    let secs: u64 = args.get("secs", 20);
    let full_packets: u64 = args.get("full-packets", 200_000);
    let exe_dir: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let blast = exe_dir.join("blast");
    let all = [
        Target::RulogdPg,
        Target::RulogdPgDrain,
        Target::UlogdPg,
        Target::RulogdPgFull,
        Target::UlogdPgFull,
        Target::RulogdLite,
        Target::UlogdLite,
        Target::RulogdMy,
        Target::UlogdMy,
        Target::RulogdCh,
        Target::RulogdChDrain,
    ];
    let wanted = args.str("targets").unwrap_or(
        "rulogd-pgsql,rulogd-pgsql-drain,ulogd2-pgsql,rulogd-pgsql-full,ulogd2-pgsql-full,\
         rulogd-sqlite,ulogd2-sqlite,rulogd-mysql,ulogd2-mysql,rulogd-clickhouse,\
         rulogd-clickhouse-drain",
    );
    let targets: Vec<Target> = all
        .into_iter()
        .filter(|t| wanted.split(',').any(|w| w == t.name()))
        .filter(|t| t.kind() == Kind::Rulogd || Path::new(lab::ULOGD_BIN).exists())
        .filter(|t| t.db() != Db::My || maria::available())
        .filter(|t| t.db() != Db::Ch || clickhouse::available())
        .collect();
    let mut pg = Pg::start_with(
        "bsql",
        &["-c", "synchronous_commit=off", "-c", "max_wal_size=4GB"],
    );
    pg.createdb("b");
    pg.createdb("ulog2db");
    println!(
        "bench-sql: {packets} packets per run, {repeats} repeats, rows/s (min / median / max)"
    );
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    // CPU µs per row of the daemon and of the database server, per target.
    let mut cpu: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); targets.len()];
    // The machine's share taken by other work during each target's runs.
    let mut others: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for r in 0..repeats {
        for (i, &t) in targets.iter().enumerate() {
            // ulogd2 cannot keep up: a smaller burst measures its rate as well.
            // Into ulogd2's schema every row must land: the run goes to its
            // end (up to 10 × --secs) and the loss is counted.
            let (n, secs) = match (t.full(), t.kind()) {
                (true, Kind::Ulogd) => (full_packets / 10, secs * 10),
                (true, _) => (full_packets, secs * 10),
                (false, Kind::Ulogd) => (packets / 5, secs),
                _ => (packets, secs),
            };
            match run(t, &mut pg, n, secs, &blast) {
                Ok(m) => {
                    let pg = t
                        .server()
                        .map_or(String::new(), |s| format!(", {s} {:.2} us", m.server_us));
                    let mut lost = m.lost.map_or(String::new(), |l| format!(", {l} lost"));
                    if m.gap > Duration::from_secs(1) {
                        lost += &format!(", a {:.1} s pause", m.gap.as_secs_f64());
                    }
                    println!(
                        "  run {} {:<23} {:>8.0} rows/s ({} rows{lost})  CPU/row: daemon {:.2} us{pg}; \
                         machine {:.0} % busy, {:.0} % other work",
                        r + 1,
                        t.name(),
                        m.rate,
                        m.rows,
                        m.daemon_us,
                        m.busy_pct,
                        m.others_pct
                    );
                    others[i].push(m.others_pct);
                    results[i].push(m.rate);
                    cpu[i].0.push(m.daemon_us);
                    if t.server().is_some() {
                        cpu[i].1.push(m.server_us);
                    }
                }
                Err(e) => println!("  run {} {:<23} failed: {e}", r + 1, t.name()),
            }
        }
    }
    println!();
    let med = |t: Target| {
        targets
            .iter()
            .position(|&x| x == t)
            .and_then(|i| min_med_max(&results[i]))
    };
    for (i, t) in targets.iter().enumerate() {
        if let Some((a, m, b)) = min_med_max(&results[i]) {
            let us = |v: &[f64]| min_med_max(v).map_or(String::new(), |x| format!("{:.2}", x.1));
            let pg = t
                .server()
                .map_or(String::new(), |s| format!(", {s} {} us", us(&cpu[i].1)));
            let busy = min_med_max(&others[i]).map_or(String::new(), |x| {
                format!("; other work {:.0}-{:.0} %", x.0, x.2)
            });
            println!(
                "{:<23} {:>8.0} / {:>8.0} / {:>8.0} rows/s; median CPU/row: daemon {} us{pg}{busy}",
                t.name(),
                a,
                m,
                b,
                us(&cpu[i].0)
            );
        }
    }
    for (ours, theirs) in [
        (Target::RulogdPg, Target::UlogdPg),
        (Target::RulogdPgFull, Target::UlogdPgFull),
        (Target::RulogdLite, Target::UlogdLite),
        (Target::RulogdMy, Target::UlogdMy),
        (Target::RulogdCh, Target::RulogdPg),
        (Target::RulogdChDrain, Target::RulogdPgDrain),
    ] {
        if let (Some(a), Some(b)) = (med(ours), med(theirs)) {
            println!(
                "{} / {}: {:.1}x (medians)",
                ours.name(),
                theirs.name(),
                a.1 / b.1.max(1.0)
            );
        }
    }
}
