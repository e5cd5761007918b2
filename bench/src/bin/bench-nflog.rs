//! NFLOG → BASE → IFINDEX → IP2STR → JSON throughput, measured the way
//! shared/research/baseline.md measured ulogd2: rulogd vs ulogd2 vs a bare
//! NFLOG receiver (nflog-sink), each in a fresh network namespace with the
//! rule `udp dport 9999 log group 5 drop`, traffic from `blast`.
//!
//! (a) a sweep of rates (3 s per step, doubling from 12.5k pkt/s) gives the
//!     highest rate with zero loss; (b) an unlimited run of 1M packets gives
//!     records/s, loss % and CPU seconds per 1M records. Each is repeated;
//!     min/median/max are printed with the ratios between daemons.
//!
//! See bench/README.md. Needs root; not a test (CI does not run it).

use rulogd_bench::{kv, min_med_max, Args};
use rulogd_tests::{self as lab, nfproc, Daemon, Kind, Netns, TempDir};
use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: bench-nflog [options]   (as root; build with `cargo build --release --bins`)
  --daemons LIST      comma list of rulogd,ulogd2,sink (default: all available)
  --repeats N         repetitions of everything (default 3)
  --packets N         packets in the unlimited run (default 1M)
  --rates LIST        sweep rates in pkt/s (default: 12.5k doubling up to --sweep-to)
  --sweep-to RATE     last sweep rate (default 1.6M)
  --step-secs S       seconds per sweep step (default 3)
  --queue-threshold N add `queue-threshold N` to the nft log rule (default: none)
  --senders N         parallel blast processes (default 1, as in baseline.md)
  --no-sweep          skip the sweep
  --no-unlimited      skip the unlimited run
Environment: RULOGD_BIN (rulogd binary), RULOGD_KEEP_TMP=1 (keep outputs).";

const GROUP: u16 = 5;

/// baseline.md's settings: 8 MiB socket buffer, max = 2 x size (ulogd 2.0.8
/// applies the size only if strictly smaller than the max), buffered JSON.
const BENCH_CONF: &str = "\
[global]
logfile=\"{LOGFILE}\"
loglevel=5
stack=log1:NFLOG,base1:BASE,ifi1:IFINDEX,ip2str1:IP2STR,json1:JSON

[log1]
group=5
netlink_socket_buffer_size=8388608
netlink_socket_buffer_maxsize=16777216

[json1]
file=\"{FILE}\"
sync=0
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Rulogd,
    Ulogd,
    Sink,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Rulogd => "rulogd",
            Target::Ulogd => "ulogd2",
            Target::Sink => "sink",
        }
    }
}

/// One run: one namespace, one daemon, one (or `--senders`) blast.
#[derive(Clone, Debug)]
struct Run {
    /// pkt/s asked of the sender; 0 = unlimited.
    target_rate: u64,
    sent: u64,
    sender_rate: f64,
    /// Packets that hit the log rule (nft counter): the loss denominator.
    logged: u64,
    received: u64,
    /// ENOBUFS drops the kernel counted on the daemon's socket.
    socket_drops: u64,
    cpu_s: f64,
    /// From the start of the blast to the end of the daemon's busy period.
    active_s: f64,
}

impl Run {
    fn loss_pct(&self) -> f64 {
        if self.logged == 0 {
            return 100.0;
        }
        100.0 * (self.logged.saturating_sub(self.received)) as f64 / self.logged as f64
    }
    fn records_per_s(&self) -> f64 {
        self.received as f64 / self.active_s.max(1e-3)
    }
    fn cpu_per_m(&self) -> f64 {
        self.cpu_s / (self.received.max(1) as f64) * 1e6
    }
    /// The sender, not the daemon, set the pace: it missed its target rate
    /// (sweep), or the daemon kept up with everything (unlimited run), so
    /// the daemon's own limit was not reached.
    fn sender_limited(&self) -> bool {
        if self.target_rate > 0 {
            self.sender_rate < 0.95 * self.target_rate as f64
        } else {
            self.received >= self.logged
        }
    }
    fn line(&self) -> String {
        format!(
            "target={} sent={} sender={:.0}/s logged={} received={} loss={:.2}% \
             records/s={:.0} cpu={:.2}s cpu/1M={:.2}s drops={}{}",
            if self.target_rate == 0 {
                "unlimited".into()
            } else {
                self.target_rate.to_string()
            },
            self.sent,
            self.sender_rate,
            self.logged,
            self.received,
            self.loss_pct(),
            self.records_per_s(),
            self.cpu_s,
            self.cpu_per_m(),
            self.socket_drops,
            if self.sender_limited() {
                " sender_limited=1"
            } else {
                ""
            }
        )
    }
}

struct Bins {
    blast: PathBuf,
    sink: PathBuf,
    /// Parallel blast processes sharing the packets and the rate.
    senders: u64,
}

/// The process under test: a daemon through the lab, or the sink.
enum Proc {
    Daemon(Daemon),
    Sink(Child, PathBuf),
}

impl Proc {
    fn pid(&self) -> u32 {
        match self {
            Proc::Daemon(d) => d.pid(),
            Proc::Sink(c, _) => c.id(),
        }
    }

    /// Stops it (SIGTERM) and returns the records it wrote / counted.
    fn stop(self, json: &Path) -> Result<u64, String> {
        match self {
            Proc::Daemon(mut d) => {
                let st = d.stop_status();
                if !st.success() {
                    return Err(format!("exit {st}\n{}", d.log_text()));
                }
                Ok(lab::count_lines(json) as u64)
            }
            Proc::Sink(mut c, out) => {
                // SAFETY: kill(2) on our unreaped child.
                unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
                let st = c.wait().map_err(|e| e.to_string())?;
                let text = std::fs::read_to_string(&out).unwrap_or_default();
                kv(&text, "received")
                    .map(|v| v as u64)
                    .ok_or_else(|| format!("sink exit {st}, output {text:?}"))
            }
        }
    }
}

fn rules(qthreshold: Option<u32>) -> String {
    let q = qthreshold.map_or(String::new(), |q| format!(" queue-threshold {q}"));
    format!(
        "table inet b {{\n counter c {{}}\n chain in {{\n  type filter hook input priority 0;\n\
         \x20 udp dport 9999 counter name \"c\" log group {GROUP}{q} drop\n }}\n}}\n"
    )
}

fn start(target: Target, ns: &Netns, dir: &Path, json: &Path, bins: &Bins) -> Proc {
    match target {
        Target::Rulogd | Target::Ulogd => {
            let kind = if target == Target::Ulogd {
                Kind::Ulogd
            } else {
                Kind::Rulogd
            };
            let conf = lab::fill(BENCH_CONF, &[("FILE", lab::path_str(json))]);
            Proc::Daemon(Daemon::start(
                ns,
                kind,
                dir,
                target.name(),
                &conf,
                &[GROUP],
                &[json],
            ))
        }
        Target::Sink => {
            let out = dir.join("sink.out");
            let child = ns
                .spawn_in(
                    &bins.sink,
                    ["--group", &GROUP.to_string(), "--rcvbuf", "8388608"],
                    Stdio::from(File::create(&out).expect("sink output")),
                    Stdio::inherit(),
                )
                .expect("spawn nflog-sink");
            assert!(
                lab::wait_until(Duration::from_secs(10), || ns
                    .nflog_instance(GROUP)
                    .is_some()),
                "nflog-sink did not bind group {GROUP}"
            );
            Proc::Sink(child, out)
        }
    }
}

/// One measured run; a panic (daemon failed to start) becomes an error.
fn run_once(
    target: Target,
    bins: &Bins,
    packets: u64,
    rate: u64,
    q: Option<u32>,
) -> Result<Run, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        run_inner(target, bins, packets, rate, q)
    }))
    .unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("{} failed: {msg}", target.name()))
    })
}

fn run_inner(
    target: Target,
    bins: &Bins,
    packets: u64,
    rate: u64,
    q: Option<u32>,
) -> Result<Run, String> {
    let ns = Netns::new("bench").map_err(|e| e.to_string())?;
    ns.nft(&rules(q)).map_err(|e| e.to_string())?;
    let dir = TempDir::new("bench");
    let json = dir.path().join("out.json");
    let proc = start(target, &ns, dir.path(), &json, bins);
    let pid = proc.pid();
    let tick = nfproc::ticks_per_sec() as f64;
    let cpu = || nfproc::cpu_ticks(pid).map_err(|e| format!("cpu of {pid}: {e}"));
    let cpu0 = cpu()?;
    let n = bins.senders.max(1);
    let outs: Vec<PathBuf> = (0..n)
        .map(|i| dir.path().join(format!("blast{i}.out")))
        .collect();
    let t0 = Instant::now();
    let mut blasts = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        // Sender i sends its share; the first takes the remainder.
        let count = packets / n + if i == 0 { packets % n } else { 0 };
        let child = ns
            .spawn_in(
                &bins.blast,
                [
                    "--count",
                    &count.to_string(),
                    "--rate",
                    &(rate / n).to_string(),
                ],
                Stdio::from(File::create(out).map_err(|e| e.to_string())?),
                Stdio::inherit(),
            )
            .map_err(|e| format!("spawn blast: {e}"))?;
        blasts.push(child);
    }
    // Drained: the sender is done, the daemon's CPU time has not moved for
    // 1 s, and the kernel holds nothing for it (no batch waiting for the
    // flush timer, empty socket queue).
    let timeout = Duration::from_secs(60 + packets / 10_000);
    let (mut last_cpu, mut last_change) = (cpu0, t0);
    let mut blast_done: Option<Instant> = None;
    // The end of the busy period: the last CPU change before the first idle
    // gap (>= 300 ms) after the sender finished. A later blip, the kernel's
    // flush timer delivering the final partial batch up to 1 s later, is
    // counted in CPU but not in wall time (baseline.md saw that tail halve
    // one sink run's rate).
    let mut busy_end: Option<Instant> = None;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        let c = cpu()?;
        if c != last_cpu {
            last_cpu = c;
            last_change = now;
        }
        if blast_done.is_none() {
            let mut all = true;
            for b in &mut blasts {
                all &= b.try_wait().map_err(|e| e.to_string())?.is_some();
            }
            if all {
                blast_done = Some(now);
            }
        }
        if let Some(done) = blast_done {
            let idle = now - last_change;
            if busy_end.is_none() && idle >= Duration::from_millis(300) {
                busy_end = Some(last_change.max(done));
            }
            if idle >= Duration::from_secs(1) && ns.nflog_drained(GROUP) {
                break;
            }
        }
        if now - t0 > timeout {
            for b in &mut blasts {
                let _ = b.kill();
            }
            return Err(format!("{} not drained after {timeout:?}", target.name()));
        }
    }
    let cpu_s = (last_cpu - cpu0) as f64 / tick;
    let active_s = (busy_end.unwrap_or(last_change) - t0).as_secs_f64();
    let logged = ns.counter("inet", "b", "c").map_err(|e| e.to_string())?;
    let socket_drops = ns.nflog_socket_drops(GROUP);
    let received = proc.stop(&json)?;
    // Aggregate sender rate: all packets over the slowest sender's time.
    let (mut sent, mut secs) = (0.0, 0.0f64);
    for out in &outs {
        let bl = std::fs::read_to_string(out).unwrap_or_default();
        sent += kv(&bl, "sent").unwrap_or(0.0);
        secs = secs.max(kv(&bl, "secs").unwrap_or(0.0));
    }
    Ok(Run {
        target_rate: rate,
        sent: sent as u64,
        sender_rate: sent / secs.max(1e-9),
        logged,
        received,
        socket_drops,
        cpu_s,
        active_s,
    })
}

/// Results of one sweep: the highest zero-loss rate, and why it stopped.
#[derive(Clone, Debug)]
struct Sweep {
    max_zero_loss: u64,
    first_lossy: Option<(u64, f64)>,
    sender_limited: bool,
    cpu_per_m: Vec<f64>,
}

fn sweep(
    target: Target,
    bins: &Bins,
    rates: &[u64],
    secs: f64,
    q: Option<u32>,
) -> Result<Sweep, String> {
    let mut s = Sweep {
        max_zero_loss: 0,
        first_lossy: None,
        sender_limited: false,
        cpu_per_m: Vec::new(),
    };
    for &rate in rates {
        let r = run_once(target, bins, (rate as f64 * secs) as u64, rate, q)?;
        println!("  {:7} sweep     {}", target.name(), r.line());
        s.cpu_per_m.push(r.cpu_per_m());
        if r.loss_pct() > 0.0 {
            s.first_lossy = Some((rate, r.loss_pct()));
            break;
        }
        if r.sender_limited() {
            // The sender could not reach this rate: higher steps would not
            // test anything more.
            s.sender_limited = true;
            s.max_zero_loss = r.sender_rate as u64;
            break;
        }
        s.max_zero_loss = rate;
    }
    Ok(s)
}

fn fmt3(v: &[f64], unit: f64, prec: usize) -> String {
    match min_med_max(v) {
        None => "-".into(),
        Some((a, b, c)) => format!(
            "{:.p$} / {:.p$} / {:.p$}",
            a / unit,
            b / unit,
            c / unit,
            p = prec
        ),
    }
}

fn median(v: &[f64]) -> Option<f64> {
    min_med_max(v).map(|(_, m, _)| m)
}

#[derive(Default)]
struct Totals {
    sweeps: Vec<Sweep>,
    runs: Vec<Run>,
    errors: Vec<String>,
}

fn main() {
    let args = Args::parse(USAGE);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench-nflog needs root (network namespaces, nftables)");
        std::process::exit(2);
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let bins = Bins {
        blast: exe_dir.join("blast"),
        sink: exe_dir.join("nflog-sink"),
        senders: args.get("senders", 1),
    };
    for p in [&bins.blast, &bins.sink] {
        if !p.is_file() {
            eprintln!(
                "{} missing: run `cargo build --release --bins`",
                p.display()
            );
            std::process::exit(2);
        }
    }
    let targets = args.daemons(
        &[
            ("rulogd", Target::Rulogd),
            ("ulogd2", Target::Ulogd),
            ("ulogd", Target::Ulogd),
            ("sink", Target::Sink),
            ("nflog-sink", Target::Sink),
        ],
        Target::Rulogd,
        Target::Ulogd,
        &[Target::Sink],
    );
    let repeats: usize = args.get("repeats", 3);
    let packets: u64 = args.get("packets", 1_000_000);
    let secs: f64 = args.get("step-secs", 3.0);
    let q: Option<u32> = args
        .str("queue-threshold")
        .map(|_| args.get("queue-threshold", 0));
    let rates: Vec<u64> = match args.str("rates") {
        Some(list) => list
            .split(',')
            .map(|r| rulogd_bench::parse_num(r.trim()).expect("bad --rates"))
            .collect(),
        None => {
            let to: u64 = args.get("sweep-to", 1_600_000);
            std::iter::successors(Some(12_500u64), |r| Some(r * 2))
                .take_while(|&r| r <= to)
                .collect()
        }
    };
    let (do_sweep, do_unlimited) = (!args.flag("no-sweep"), !args.flag("no-unlimited"));
    let uname = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "bench-nflog: kernel {} cpus {} daemons {:?} repeats {repeats} packets {packets} \
         sweep {rates:?} x {secs} s queue-threshold {q:?} senders {}",
        uname.trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
        bins.senders,
    );

    let mut totals: Vec<Totals> = targets.iter().map(|_| Totals::default()).collect();
    for rep in 1..=repeats {
        println!("== repeat {rep}/{repeats}");
        // Daemons interleaved within a repeat, so slow drifts of the machine
        // (other load, page cache) spread over all of them.
        for (i, &t) in targets.iter().enumerate() {
            if do_sweep {
                match sweep(t, &bins, &rates, secs, q) {
                    Ok(s) => totals[i].sweeps.push(s),
                    Err(e) => totals[i].errors.push(e),
                }
            }
            if do_unlimited {
                match run_once(t, &bins, packets, 0, q) {
                    Ok(r) => {
                        println!("  {:7} unlimited {}", t.name(), r.line());
                        totals[i].runs.push(r);
                    }
                    Err(e) => totals[i].errors.push(e),
                }
            }
        }
    }
    report(&targets, &totals, packets);
}

fn report(targets: &[Target], totals: &[Totals], packets: u64) {
    println!("\n== results: min / median / max over repeats");
    let mut rps_med = Vec::new();
    let mut cpu_med = Vec::new();
    for (t, tot) in targets.iter().zip(totals) {
        println!("{}:", t.name());
        if !tot.sweeps.is_empty() {
            let zl: Vec<f64> = tot.sweeps.iter().map(|s| s.max_zero_loss as f64).collect();
            println!("  sweep max zero-loss rate  {} pkt/s", fmt3(&zl, 1.0, 0));
            let lossy: Vec<String> = tot
                .sweeps
                .iter()
                .map(|s| match (s.first_lossy, s.sender_limited) {
                    (Some((r, l)), _) => format!("{r}: {l:.1}%"),
                    (None, true) => "none (sender_limited=1)".into(),
                    (None, false) => "none up to the last rate".into(),
                })
                .collect();
            println!("  sweep first lossy step    {}", lossy.join("; "));
            let cpu: Vec<f64> = tot
                .sweeps
                .iter()
                .flat_map(|s| s.cpu_per_m.clone())
                .collect();
            println!("  sweep CPU s per 1M        {}", fmt3(&cpu, 1.0, 2));
        }
        if !tot.runs.is_empty() {
            let g = |f: fn(&Run) -> f64| tot.runs.iter().map(f).collect::<Vec<f64>>();
            let (rps, cpu) = (g(Run::records_per_s), g(Run::cpu_per_m));
            println!("  unlimited {packets}: records/s  {}", fmt3(&rps, 1.0, 0));
            println!(
                "  unlimited loss %          {}",
                fmt3(&g(Run::loss_pct), 1.0, 2)
            );
            println!("  unlimited CPU s per 1M    {}", fmt3(&cpu, 1.0, 2));
            println!(
                "  sender rate pkt/s         {}",
                fmt3(&g(|r| r.sender_rate), 1.0, 0)
            );
            let limited = tot.runs.iter().filter(|r| r.sender_limited()).count();
            if limited > 0 {
                println!(
                    "  sender_limited=1 in {limited}/{} unlimited runs: no loss, so records/s \
                     is the sender's rate, not this receiver's limit",
                    tot.runs.len()
                );
            }
            rps_med.push((*t, median(&rps)));
            cpu_med.push((*t, median(&cpu)));
        }
        for e in &tot.errors {
            println!("  ERROR {e}");
        }
    }
    let get =
        |v: &[(Target, Option<f64>)], t: Target| v.iter().find(|x| x.0 == t).and_then(|x| x.1);
    for (a, b) in [
        (Target::Rulogd, Target::Ulogd),
        (Target::Rulogd, Target::Sink),
        (Target::Ulogd, Target::Sink),
    ] {
        if let (Some(ra), Some(rb)) = (get(&rps_med, a), get(&rps_med, b)) {
            let (ca, cb) = (
                get(&cpu_med, a).unwrap_or(0.0),
                get(&cpu_med, b).unwrap_or(1.0),
            );
            println!(
                "ratio {}/{} (medians, unlimited): records/s {:.2}x, CPU per record {:.2}x",
                a.name(),
                b.name(),
                ra / rb,
                ca / cb
            );
        }
    }
}
