//! NFCT → IP2STR → JSON: conntrack events per second at zero loss, rulogd
//! and ulogd2 side by side, on many short UDP flows. Each run has its own
//! network namespace; one daemon runs at a time.
//!
//! (a) sweep (`hash_enable=0`, `event_mask=1`): new UDP flows (one datagram
//!     each, to 127.a.b.c:9999, so every one is a new conntrack entry) at a
//!     fixed rate, doubling from 12.5k/s; the highest rate where records ==
//!     flows (nft `ct state new` counter) is the zero-loss NEW-event rate.
//! (b) burst (the default hash mode, `hash_max_entries=262144`): N flows go
//!     into the daemon's table, then `conntrack -F` destroys them all at
//!     once: DESTROY records/s, loss, CPU per 1M events, and the daemon's
//!     resident memory per tracked flow (VmRSS with the table full, minus
//!     before).
//!
//! Each part is repeated; min/median/max are printed. Needs root; not a test.

use rulogd_bench::{min_med_max, Args};
use rulogd_tests::{self as lab, nfproc, Daemon, Kind, Netns, TempDir};
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: bench-nfct [options]   (as root; build with `cargo build --release --bins`)
  --daemons LIST     comma list of rulogd,ulogd2 (default: both when available)
  --repeats N        repetitions of everything (default 3)
  --rates LIST       sweep rates in new flows/s (default 12.5k doubling to --sweep-to)
  --sweep-to RATE    last sweep rate (default 400k)
  --step-secs S      seconds per sweep step (default 2; fewer when the conntrack
                     table, 262144 entries, would overflow)
  --flows N          flows in the burst run (default 200k)
  --senders N        sweep sender threads (default 1)
  --no-sweep, --no-burst
Environment: RULOGD_BIN (rulogd binary), RULOGD_KEEP_TMP=1 (keep outputs).";

/// Flows a step may create: below the conntrack table size (262144).
const MAX_FLOWS: u64 = 240_000;

const CONF: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=5
stack=ct1:NFCT,ip2str1:IP2STR,json1:JSON

[ct1]
{NFCT}
netlink_socket_buffer_size=8388608
netlink_socket_buffer_maxsize=16777216

[json1]
file=\"{FILE}\"
sync=0
";

const SWEEP_NFCT: &str = "hash_enable=0\nevent_mask=1";
const BURST_NFCT: &str = "hash_enable=1\nevent_mask=5\nhash_max_entries=262144";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Rulogd,
    Ulogd,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Rulogd => "rulogd",
            Target::Ulogd => "ulogd2",
        }
    }
    fn kind(self) -> Kind {
        match self {
            Target::Rulogd => Kind::Rulogd,
            Target::Ulogd => Kind::Ulogd,
        }
    }
}

/// Subscribed netfilter netlink sockets of the namespace: (rmem, drops).
fn subscribed(ns: &Netns) -> Vec<(u64, u64)> {
    let text = ns.read_proc_net("netlink").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let groups = u32::from_str_radix(f.get(3)?, 16).ok()?;
            (f.get(1) == Some(&"12") && groups & 7 != 0)
                .then(|| Some((f.get(4)?.parse().ok()?, f.get(8)?.parse().ok()?)))?
        })
        .collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends one UDP datagram to each of `count` addresses 127.a.b.c:9999
/// (from `first` on) at `rate` flows/s (0: as fast as possible), 32 per
/// `sendmmsg`. Returns the seconds it took.
fn send_flows(first: u64, count: u64, rate: u64) -> f64 {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
    let payload = [7u8; 16];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    const BATCH: usize = 32;
    // SAFETY: all-zero sockaddr_in and mmsghdr are valid values.
    let mut addrs: [libc::sockaddr_in; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: same.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let start = Instant::now();
    let mut done = 0u64;
    while done < count {
        let n = (count - done).min(BATCH as u64) as usize;
        if rate > 0 {
            let due = Duration::from_secs_f64(done as f64 / rate as f64);
            let now = start.elapsed();
            if due > now + Duration::from_millis(1) {
                std::thread::sleep(due - now);
            }
        }
        for k in 0..n {
            let i = first + done + k as u64;
            let ip = [127, 1 + ((i >> 16) & 0x7f) as u8, (i >> 8) as u8, i as u8];
            addrs[k].sin_family = libc::AF_INET as libc::sa_family_t;
            addrs[k].sin_port = 9999u16.to_be();
            addrs[k].sin_addr.s_addr = u32::from_ne_bytes(ip);
            let h = &mut msgs[k].msg_hdr;
            h.msg_name = (&mut addrs[k] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            h.msg_iov = &mut iov;
            h.msg_iovlen = 1;
        }
        // SAFETY: `n` valid headers pointing at live addresses and payload.
        let r = unsafe { libc::sendmmsg(s.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        done += if r > 0 { r as u64 } else { 1 };
    }
    start.elapsed().as_secs_f64()
}

/// `count` new flows at `rate` from `senders` threads (each its own share of
/// addresses and rate), run on the calling thread's network namespace. A
/// socket bound to :9999 takes the datagrams, so each is delivered (and its
/// conntrack entry confirmed) without an ICMP error. Returns the seconds.
fn new_flows(count: u64, rate: u64, senders: u64) -> f64 {
    let sink = std::net::UdpSocket::bind("0.0.0.0:9999").expect("bind :9999");
    let n = senders.clamp(1, 16);
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for k in 0..n {
            let share = count / n + if k == 0 { count % n } else { 0 };
            let first = k * (count / n) + if k == 0 { 0 } else { count % n };
            // Threads made here stay in this thread's namespace.
            sc.spawn(move || send_flows(first, share, rate / n));
        }
    });
    drop(sink);
    t0.elapsed().as_secs_f64()
}

/// One measured run.
#[derive(Clone, Debug, Default)]
struct Run {
    rate: u64,
    sender_rate: f64,
    /// Events the kernel generated (new flows, or flows destroyed).
    events: u64,
    records: u64,
    socket_drops: u64,
    cpu_s: f64,
    active_s: f64,
    bytes_per_flow: Option<f64>,
}

impl Run {
    fn loss_pct(&self) -> f64 {
        100.0 * self.events.saturating_sub(self.records) as f64 / self.events.max(1) as f64
    }
    fn per_s(&self) -> f64 {
        self.records as f64 / self.active_s.max(1e-3)
    }
    fn cpu_per_m(&self) -> f64 {
        self.cpu_s / self.records.max(1) as f64 * 1e6
    }
    fn line(&self) -> String {
        format!(
            "rate={} sender={:.0}/s events={} records={} loss={:.2}% records/s={:.0} cpu={:.2}s \
             cpu/1M={:.2}s drops={}{}",
            if self.rate == 0 {
                "burst".into()
            } else {
                self.rate.to_string()
            },
            self.sender_rate,
            self.events,
            self.records,
            self.loss_pct(),
            self.per_s(),
            self.cpu_s,
            self.cpu_per_m(),
            self.socket_drops,
            self.bytes_per_flow
                .map_or(String::new(), |b| format!(" mem/flow={b:.0}B")),
        )
    }
}

fn setup(tag: &str) -> Result<Netns, String> {
    let ns = Netns::new(tag).map_err(|e| e.to_string())?;
    ns.nft(
        "table inet b {\n counter c {}\n chain in {\n  type filter hook input priority 0;\n  \
         ct state new counter name \"c\"\n }\n}\n",
    )
    .map_err(|e| e.to_string())?;
    Ok(ns)
}

fn start(t: Target, ns: &Netns, dir: &Path, json: &Path, nfct: &str) -> Daemon {
    let conf = lab::fill(
        CONF,
        &[("NFCT", nfct.to_string()), ("FILE", lab::path_str(json))],
    );
    let d = Daemon::start(ns, t.kind(), dir, t.name(), &conf, &[], &[json]);
    assert!(
        lab::wait_until(Duration::from_secs(10), || !subscribed(ns).is_empty()),
        "{} did not subscribe",
        t.name()
    );
    d
}

/// Waits until the daemon has read everything (socket empty, CPU still for
/// 1 s); returns (CPU seconds used since `cpu0`, end of the busy period).
fn drain(ns: &Netns, pid: u32, cpu0: u64, t0: Instant) -> Result<(f64, Instant), String> {
    let tick = nfproc::ticks_per_sec() as f64;
    let cpu = || nfproc::cpu_ticks(pid).map_err(|e| format!("cpu of {pid}: {e}"));
    let (mut last, mut changed) = (cpu()?, Instant::now());
    let mut busy_end = None;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let c = cpu()?;
        let now = Instant::now();
        if c != last {
            (last, changed) = (c, now);
        }
        let idle = now - changed;
        if busy_end.is_none() && idle >= Duration::from_millis(300) {
            busy_end = Some(changed);
        }
        if idle >= Duration::from_secs(1) && subscribed(ns).iter().all(|s| s.0 == 0) {
            break;
        }
        if now - t0 > Duration::from_secs(120) {
            return Err("not drained after 120 s".into());
        }
    }
    Ok(((last - cpu0) as f64 / tick, busy_end.unwrap_or(changed)))
}

fn guarded(t: Target, f: impl FnOnce() -> Result<Run, String>) -> Result<Run, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("{} failed: {msg}", t.name()))
    })
}

/// (a) `rate` new flows/s for `secs` (capped by the table size).
fn sweep_step(t: Target, rate: u64, secs: f64, senders: u64) -> Result<Run, String> {
    let ns = setup("bnfct")?;
    let dir = TempDir::new("bnfct");
    let json = dir.path().join("out.json");
    let d = start(t, &ns, dir.path(), &json, SWEEP_NFCT);
    let pid = d.pid();
    let cpu0 = nfproc::cpu_ticks(pid).map_err(|e| e.to_string())?;
    let count = ((rate as f64 * secs) as u64).clamp(1, MAX_FLOWS);
    let t0 = Instant::now();
    let send_s = ns.run_in_thread(|| new_flows(count, rate, senders));
    let (cpu_s, end) = drain(&ns, pid, cpu0, t0)?;
    let events = ns.counter("inet", "b", "c").map_err(|e| e.to_string())?;
    let socket_drops = subscribed(&ns).iter().map(|s| s.1).sum();
    let mut d = d;
    let st = d.stop_status();
    if !st.success() {
        return Err(format!("exit {st}\n{}", d.log_text()));
    }
    Ok(Run {
        rate,
        sender_rate: count as f64 / send_s.max(1e-9),
        events,
        records: lab::count_lines(&json) as u64,
        socket_drops,
        cpu_s,
        active_s: (end.max(t0 + Duration::from_secs_f64(send_s)) - t0).as_secs_f64(),
        bytes_per_flow: None,
    })
}

/// (b) `flows` flows into the table, then all destroyed at once.
fn burst(t: Target, flows: u64) -> Result<Run, String> {
    let ns = setup("bnfctb")?;
    let dir = TempDir::new("bnfctb");
    let json = dir.path().join("out.json");
    let d = start(t, &ns, dir.path(), &json, BURST_NFCT);
    let pid = d.pid();
    std::thread::sleep(Duration::from_millis(300));
    let rss0 = rss_kib(pid);
    // Slowly enough that neither daemon loses a NEW (it would be logged
    // without a start time, but still logged).
    ns.run_in_thread(|| new_flows(flows, 40_000, 1));
    let c0 = nfproc::cpu_ticks(pid).map_err(|e| e.to_string())?;
    let (_, _) = drain(&ns, pid, c0, Instant::now())?;
    let rss1 = rss_kib(pid);
    let created = ns.counter("inet", "b", "c").map_err(|e| e.to_string())?;
    let cpu0 = nfproc::cpu_ticks(pid).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let out = ns
        .command("conntrack")
        .arg("-F")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("conntrack -F: {out:?}"));
    }
    let (cpu_s, end) = drain(&ns, pid, cpu0, t0)?;
    let socket_drops = subscribed(&ns).iter().map(|s| s.1).sum();
    let mut d = d;
    let st = d.stop_status();
    if !st.success() {
        return Err(format!("exit {st}\n{}", d.log_text()));
    }
    Ok(Run {
        rate: 0,
        sender_rate: 0.0,
        events: created,
        records: lab::count_lines(&json) as u64,
        socket_drops,
        cpu_s,
        active_s: (end - t0).as_secs_f64(),
        bytes_per_flow: Some((rss1.saturating_sub(rss0) * 1024) as f64 / created.max(1) as f64),
    })
}

fn fmt3(v: &[f64], prec: usize) -> String {
    match min_med_max(v) {
        None => "-".into(),
        Some((a, b, c)) => format!("{a:.p$} / {b:.p$} / {c:.p$}", p = prec),
    }
}

#[derive(Default)]
struct Totals {
    zero_loss: Vec<f64>,
    sweep_cpu: Vec<f64>,
    bursts: Vec<Run>,
    errors: Vec<String>,
}

fn main() {
    let args = Args::parse(USAGE);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench-nfct needs root (network namespaces, nftables, conntrack)");
        std::process::exit(2);
    }
    let targets = args.daemons(
        &[
            ("rulogd", Target::Rulogd),
            ("ulogd2", Target::Ulogd),
            ("ulogd", Target::Ulogd),
        ],
        Target::Rulogd,
        Target::Ulogd,
        &[],
    );
    let repeats: usize = args.get("repeats", 3);
    let senders: u64 = args.get("senders", 1);
    let secs: f64 = args.get("step-secs", 2.0);
    let flows: u64 = args.get::<u64>("flows", 200_000).min(MAX_FLOWS);
    let rates: Vec<u64> = match args.str("rates") {
        Some(list) => list
            .split(',')
            .map(|r| rulogd_bench::parse_num(r.trim()).expect("bad --rates"))
            .collect(),
        None => {
            let to: u64 = args.get("sweep-to", 400_000);
            std::iter::successors(Some(12_500u64), |r| Some(r * 2))
                .take_while(|&r| r <= to)
                .collect()
        }
    };
    println!(
        "bench-nfct: kernel {} cpus {} daemons {:?} repeats {repeats} sweep {rates:?} x {secs} s, \
         burst {flows} flows",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
    );
    let mut totals: Vec<Totals> = targets.iter().map(|_| Totals::default()).collect();
    for rep in 1..=repeats {
        println!("== repeat {rep}/{repeats}");
        for (i, &t) in targets.iter().enumerate() {
            if !args.flag("no-sweep") {
                let mut best = 0.0;
                for &rate in &rates {
                    match guarded(t, || sweep_step(t, rate, secs, senders)) {
                        Ok(r) => {
                            println!("  {:7} sweep {}", t.name(), r.line());
                            totals[i].sweep_cpu.push(r.cpu_per_m());
                            if r.loss_pct() > 0.0 {
                                break;
                            }
                            best = if r.sender_rate < 0.95 * rate as f64 {
                                // The sender, not the daemon, was the limit.
                                println!(
                                    "  {:7} sweep: sender limited at {:.0}/s",
                                    t.name(),
                                    r.sender_rate
                                );
                                r.sender_rate
                            } else {
                                rate as f64
                            };
                            if r.sender_rate < 0.95 * rate as f64 {
                                break;
                            }
                        }
                        Err(e) => {
                            totals[i].errors.push(e);
                            break;
                        }
                    }
                }
                totals[i].zero_loss.push(best);
            }
            if !args.flag("no-burst") {
                match guarded(t, || burst(t, flows)) {
                    Ok(r) => {
                        println!("  {:7} burst {}", t.name(), r.line());
                        totals[i].bursts.push(r);
                    }
                    Err(e) => totals[i].errors.push(e),
                }
            }
        }
    }
    println!("\n== results: min / median / max over repeats");
    let mut med = Vec::new();
    for (t, tot) in targets.iter().zip(&totals) {
        println!("{}:", t.name());
        if !tot.zero_loss.is_empty() {
            println!(
                "  NEW events/s at zero loss     {}",
                fmt3(&tot.zero_loss, 0)
            );
            println!(
                "  sweep CPU s per 1M events     {}",
                fmt3(&tot.sweep_cpu, 2)
            );
        }
        if !tot.bursts.is_empty() {
            let g = |f: fn(&Run) -> f64| tot.bursts.iter().map(f).collect::<Vec<f64>>();
            println!(
                "  DESTROY burst records/s       {}",
                fmt3(&g(Run::per_s), 0)
            );
            println!(
                "  DESTROY burst loss %          {}",
                fmt3(&g(Run::loss_pct), 2)
            );
            println!(
                "  DESTROY burst CPU s per 1M    {}",
                fmt3(&g(Run::cpu_per_m), 2)
            );
            println!(
                "  memory per tracked flow (B)   {}",
                fmt3(&g(|r| r.bytes_per_flow.unwrap_or(0.0)), 0)
            );
        }
        for e in &tot.errors {
            println!("  ERROR {e}");
        }
        med.push(min_med_max(&tot.zero_loss).map(|m| m.1));
    }
    if let (Some(Some(r)), Some(Some(u))) = (med.first(), med.get(1)) {
        if targets.len() == 2 && *u > 0.0 {
            println!(
                "ratio {}/{} (medians): NEW events/s at zero loss {:.2}x",
                targets[0].name(),
                targets[1].name(),
                r / u
            );
        }
    }
}
