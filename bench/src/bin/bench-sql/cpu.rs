//! bench-sql's CPU accounting: the daemon's, the database server's and the
//! machine's clock ticks.

use super::{Db, Target};
use rulogd_tests::nfproc;
use rulogd_tests::pg::Pg;

/// CPU clock ticks so far: the daemon's, the database server's (every
/// process of the PostgreSQL cluster, mariadbd or clickhouse-server) and
/// the whole machine's busy and total time.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    pub daemon: u64,
    pub server: u64,
    pub busy: u64,
    pub total: u64,
    /// The machine's user + system time less the run's own (daemon, server,
    /// sender, this process): what the machine's other work took.
    pub others: u64,
}

impl Cpu {
    /// `server`: the pid of a server that is one process (MariaDB,
    /// ClickHouse); PostgreSQL's processes are found from `pg`.
    /// `sender`: blast's pid (its ticks stay readable until it is reaped).
    pub fn now(t: Target, daemon: u32, pg: &Pg, server: Option<u32>, sender: u32) -> Cpu {
        let (busy, total, procs) = machine_ticks();
        let server = match t.db() {
            Db::Pg => pg_ticks(pg),
            Db::My | Db::Ch => server.map_or(0, |p| nfproc::cpu_ticks(p).unwrap_or(0)),
            Db::Lite => 0,
        };
        let daemon = nfproc::cpu_ticks(daemon).unwrap_or(0);
        let ticks = |p: u32| nfproc::cpu_ticks(p).unwrap_or(0);
        let own = daemon + server + ticks(sender) + ticks(std::process::id());
        Cpu {
            daemon,
            server,
            busy,
            total,
            others: procs.saturating_sub(own),
        }
    }
}

/// Busy and total ticks of all CPUs (`/proc/stat`; iowait counts as idle),
/// and the user + nice + system part of busy (what processes' utime and
/// stime add up to; irq, softirq and steal are not charged to a process).
fn machine_ticks() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3).copied().unwrap_or(0) + f.get(4).copied().unwrap_or(0);
    let procs = f.iter().take(3).sum();
    (total - idle, total, procs)
}

/// utime + stime of the postmaster and its children (backends, WAL writer,
/// checkpointer, …).
fn pg_ticks(pg: &Pg) -> u64 {
    let pm: u32 = std::fs::read_to_string(pg.dir().join("data/postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0);
    if pm == 0 {
        return 0;
    }
    let mut sum = nfproc::cpu_ticks(pm).unwrap_or(0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pm) {
            sum += nfproc::cpu_ticks(pid).unwrap_or(0);
        }
    }
    sum
}
