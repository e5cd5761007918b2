//! A fleet of sensors writing into one ClickHouse (issue 16): 8 rulogd
//! instances, each in its own network namespace with its own traffic and
//! its own nft log rule (log prefix `S0` … `S7`), write NFLOG → BASE →
//! IFINDEX → IP2STR → CLICKHOUSE with the output's batching defaults into
//! one Debian 18.16 server in a hub namespace, joined to every sensor by a
//! veth pair with its own /30. The sensors send 100K records/s in all
//! (12.5K/s each, paced) for 60 s, and the server is stopped for 4 s and
//! started again on the same data halfway through. Every record must land
//! exactly once: per sensor (by prefix) as many rows as that sensor's rule
//! counted, and as many distinct (time, ip_id) keys (each sensor sends from
//! one connected socket, so the key is unique per packet of a sensor).
//!
//! The total rate is `RULOGD_FLEET_RATE` records/s (default 100000), the
//! run `RULOGD_FLEET_SECS` seconds (default 60); the test prints what each
//! sensor sent, its kernel socket drops and its daemon's CPU time.
//!
//! Run: `cargo build --release --bins && cargo test -p rulogd-tests --test
//! clickhouse_fleet` (root; clickhouse-server installed).

use rulogd_tests::clickhouse::{self, ClickHouse, Server, PASS, USER};
use rulogd_tests::traffic::udp_send_paced_connected;
use rulogd_tests::{self as lab, daemon, Daemon, Netns, TempDir};
use std::time::{Duration, Instant};

const PACKETS_SQL: &str = include_str!("../conf/sql/clickhouse-packets.sql");

const SENSORS: usize = 8;

/// One sensor's config: the CLICKHOUSE section names only the server and
/// the table, everything else is the output's defaults (batches of up to
/// 100000 rows or 1 s, reconnect after at most 2 s, spool under
/// $STATE_DIRECTORY).
const CONF: &str = concat!(
    lab::conf_global!("log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,ch1:CLICKHOUSE"),
    "\n",
    lab::conf_nflog!(33554432, 67108864),
    "\n",
    lab::conf_clickhouse!("packets")
);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

struct Sensor {
    ns: Netns,
    group: u16,
    prefix: String,
    // Holds the daemon's config, log and spool.
    dir: TempDir,
    daemon: Daemon,
}

/// The hub's and sensor `i`'s address on their link.
fn link_addrs(i: usize) -> (String, String) {
    (format!("10.202.{i}.1"), format!("10.202.{i}.2"))
}

fn sensor(i: usize, hub: &Netns, ch: &ClickHouse) -> Sensor {
    let ns = Netns::new(&format!("chs{i}")).unwrap();
    let (hub_ip, ip) = link_addrs(i);
    hub.veth_to(
        &format!("rlh{i}"),
        &format!("{hub_ip}/30"),
        &ns,
        "rls0",
        &format!("{ip}/30"),
    )
    .unwrap();
    let group = 80 + i as u16;
    let prefix = format!("S{i}");
    // Only the sensor's own datagrams (not the inserts' answers on rls0).
    ns.nft(&lab::counted_ruleset(&format!(
        "  udp dport 9999 counter name \"c\" log prefix \"{prefix}\" group {group} drop"
    )))
    .unwrap();
    let dir = TempDir::new(&format!("chs{i}"));
    let conf = lab::fill(
        CONF,
        &[
            ("GROUP", group.to_string()),
            ("URL", ch.url_at(&hub_ip)),
            ("USER", USER.to_string()),
            ("PASS", PASS.to_string()),
        ],
    );
    let daemon = Daemon::rulogd(&ns, dir.path(), &conf, &[group], &[]);
    Sensor {
        ns,
        group,
        prefix,
        dir,
        daemon,
    }
}

/// User plus system CPU seconds of process `pid` so far.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    f.get(11..13).map_or(0.0, |t| (t[0] + t[1]) as f64 / hz)
}

#[test]
fn fleet_of_eight_sensors_one_server_restart_every_record_once() {
    if !clickhouse::debian_ready() {
        return;
    }
    let total_rate = env_u64("RULOGD_FLEET_RATE", 100_000);
    let secs = env_u64("RULOGD_FLEET_SECS", 60);
    let rate = total_rate / SENSORS as u64;
    let per_sensor = (rate * secs) as usize;
    let hub = Netns::new("chhub").unwrap();
    // tmpfs if there is one: the run's parts are ~60K files, written and
    // deleted (at the end) faster than on a disk shared with other work.
    let shm = std::path::Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let mut ch = ClickHouse::start_in("chfleet", hub.name(), "0.0.0.0", &base);
    ch.query(PACKETS_SQL);
    let sensors: Vec<Sensor> = (0..SENSORS).map(|i| sensor(i, &hub, &ch)).collect();

    let mut server_cpu = 0.0;
    let sent: Vec<(usize, Duration)> = std::thread::scope(|sc| {
        let senders: Vec<_> = sensors
            .iter()
            .map(|s| {
                sc.spawn(move || {
                    s.ns.run_in_thread(|| {
                        let t = Instant::now();
                        let (_, n) = udp_send_paced_connected(
                            "127.0.0.1:9999".parse().unwrap(),
                            per_sensor,
                            32,
                            rate,
                        )
                        .unwrap();
                        (n, t.elapsed())
                    })
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs / 2));
        server_cpu = ch.pid().map_or(0.0, cpu_secs);
        ch.stop_server();
        std::thread::sleep(Duration::from_secs(4));
        ch.start_server();
        senders.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // The main thread also waited for the server to come back.
    let traffic = sent.iter().map(|&(_, t)| t).max().unwrap_or_default();

    for s in &sensors {
        assert!(
            daemon::wait_drained(&s.ns, s.group, Duration::from_secs(10)),
            "{} not drained",
            s.prefix
        );
    }
    let logged: Vec<u64> = sensors
        .iter()
        .map(|s| s.ns.counter("inet", "t", "c").unwrap())
        .collect();
    let all: u64 = logged.iter().sum();
    let t1 = Instant::now();
    let landed = lab::wait_until(Duration::from_secs(60), || {
        ch.count("SELECT count() FROM packets") >= all
    });
    let drain = t1.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let sent_all: usize = sent.iter().map(|(n, _)| n).sum();
    // The senders' CPU (this process) includes the kernel's work on each
    // datagram: loopback, the rule, NFLOG's copy to the daemon.
    eprintln!(
        "fleet: CPU s: senders {:.1}, server {:.1}",
        cpu_secs(std::process::id()),
        server_cpu + ch.pid().map_or(0.0, cpu_secs)
    );
    eprintln!(
        "fleet: {sent_all} sent in {:.1} s ({:.0}/s), {all} logged; all rows in {:.1} s after the traffic",
        traffic.as_secs_f64(),
        sent_all as f64 / traffic.as_secs_f64(),
        drain.as_secs_f64()
    );
    let mut notes = Vec::new();
    for (i, s) in sensors.iter().enumerate() {
        let note = format!(
            "{}: sent {} in {:.1} s, logged {}, {}, rulogd CPU {:.1} s",
            s.prefix,
            sent[i].0,
            sent[i].1.as_secs_f64(),
            logged[i],
            daemon::drops_note(&s.ns, s.group),
            cpu_secs(s.daemon.pid())
        );
        eprintln!("fleet: {note}");
        notes.push(note);
    }
    let logs: Vec<(String, String)> = sensors
        .iter()
        .map(|s| (s.prefix.clone(), s.daemon.log_text()))
        .collect();
    for s in sensors {
        let _keep = s.dir;
        s.daemon.stop();
    }

    let t2 = Instant::now();
    let rows = ch.query(
        "SELECT oob_prefix, count(), uniqExact(oob_time_sec, oob_time_usec, ip_id) \
         FROM packets GROUP BY oob_prefix ORDER BY oob_prefix FORMAT TabSeparated",
    );
    let want: Vec<String> = (0..SENSORS)
        .map(|i| format!("S{i}\t{}\t{}", logged[i], logged[i]))
        .collect();
    let got: Vec<String> = rows.lines().map(str::to_string).collect();
    eprintln!(
        "fleet: rows per sensor counted in {:.1} s",
        t2.elapsed().as_secs_f64()
    );
    let mut why = format!(
        "per sensor (prefix, rows, distinct keys):\nwant {want:?}\ngot  {got:?}\n{}",
        notes.join("\n")
    );
    if got != want {
        for (p, l) in &logs {
            why.push_str(&format!("\n=== {p} ===\n{l}"));
        }
        why.push_str(&format!("\n=== server ===\n{}", ch.server_log()));
    }
    assert!(landed && got == want, "{why}");
    // Each daemon saw the server go away (else the restart tested nothing).
    for (p, l) in &logs {
        assert!(l.contains("is back after"), "{p} saw no outage:\n{l}");
    }
    // The rule saw (nearly) every datagram: the loopback backlog may drop a
    // few before it when a sender catches up after a stall.
    for (i, &n) in logged.iter().enumerate() {
        assert!(
            n >= sent[i].0 as u64 * 99 / 100,
            "S{i}: {n} of {} logged",
            sent[i].0
        );
    }
}
