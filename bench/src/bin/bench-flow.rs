//! The sensor path on a capture file: packets/s, CPU per packet and
//! resident memory per tracked flow of rulogd (CAPTURE file → BASE → FLOW
//! → IP2STR → JSON: without IP2STR the JSON lines have no addresses), softflowd (`-r`, IPFIX to a local nfcapd) and argus (`-r`,
//! writing its file), side by side on the same generated pcaps; with
//! `--ipfix`, flow records/s exported to nfcapd by rulogd (FLOW → IPFIX
//! over UDP) and softflowd.
//!
//! Each tool is a child process of this one and is reaped with wait4(2),
//! whose rusage gives its user+sys CPU (all threads) and its peak resident
//! set (VmHWM, polled). Memory per tracked flow = (peak RSS on the file
//! with the most flows − peak RSS on the one with the fewest) / (the
//! difference in flows): both files have the same packets, so buffers and
//! fixed costs cancel, and every flow of a generated file is open from its
//! first segment to its last, so the peak table holds all of them. The tools run interleaved within each repeat.
//! Needs root (a network namespace for the collectors); not a test.

use rulogd_bench::{min_med_max, pcapgen, Args};
use rulogd_tests::nfcapd::Nfcapd;
use rulogd_tests::{self as lab, Netns, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: bench-flow [options]   (as root; build with `cargo build --release --bins`)
  --targets LIST   comma list of rulogd,softflowd,argus (default: all available)
  --repeats N      repetitions of everything (default 3)
  --packets N      packets per file (default 1M)
  --flows LIST     flows per file, one file each (default 10k,500k)
  --seed N         generator seed (default 1)
  --ipfix          also the IPFIX export part (rulogd and softflowd to nfcapd)
  --no-flow        skip the packets/s part
  --gen DIR        only write the pcaps into DIR, for profiling
Environment: RULOGD_BIN (rulogd binary), RULOGD_KEEP_TMP=1 (keep the files).";

const FLOW_CONF: &str = "\
[global]
logfile=\"{LOG}\"
loglevel=5
stack=cap1:CAPTURE,base1:BASE,flow1:FLOW,{OUT}

[cap1]
file=\"{PCAP}\"

[flow1]
max_flows=1048576

[json1]
file=\"{JSON}\"
sync=0

[ipfix1]
oid=1
host=\"127.0.0.1\"
port={PORT}
proto=\"udp\"
mtu=1400
when_full=\"block\"
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Rulogd,
    Softflowd,
    Argus,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Rulogd => "rulogd",
            Tool::Softflowd => "softflowd",
            Tool::Argus => "argus",
        }
    }
}

/// What one run of one tool cost.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    wall: f64,
    cpu: f64,
    maxrss_kib: u64,
    /// Records the tool produced (JSON lines; flows nfcapd stored), if
    /// counted.
    records: Option<u64>,
}

/// Reaps `child` with wait4 and returns (exit code, rusage, peak RSS in
/// KiB). The peak is VmHWM of /proc/PID/status, read every 2 ms until the
/// process is gone (the high-water mark only grows, so the last reading is
/// the peak but for the final 2 ms): ru_maxrss would also count what `ip
/// netns exec` held before it exec'd the tool.
fn wait_rusage(child: Child) -> (i32, libc::rusage, u64) {
    let pid = child.id() as i32;
    let status_path = format!("/proc/{pid}/status");
    let mut status = 0;
    let mut hwm = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        if let Some(v) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|t| vm_hwm(&t))
        {
            hwm = v;
        }
        // SAFETY: wait4 on our own child; status and ru are valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert_eq!(r, 0, "wait4: {}", std::io::Error::last_os_error());
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, ru, hwm)
}

/// The `VmHWM:` line of a /proc/PID/status text, in KiB.
fn vm_hwm(status: &str) -> Option<u64> {
    let l = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    l.trim().trim_end_matches("kB").trim().parse().ok()
}

fn secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

struct Bench {
    ns: Netns,
    dir: PathBuf,
    seq: u32,
}

impl Bench {
    /// Runs `tool` on `pcap` to its end; `ipfix`: rulogd exports IPFIX
    /// instead of writing JSON.
    fn run(&mut self, tool: Tool, pcap: &Path, ipfix: bool) -> Run {
        // What one tool wrote must not slow the next one's reading.
        let _ = Command::new("sync").status();
        self.seq += 1;
        let tag = format!("{}-{}", tool.name(), self.seq);
        let d = self.dir.join(&tag);
        std::fs::create_dir_all(&d).unwrap();
        let port = lab::free_port();
        let collector = (tool == Tool::Softflowd || ipfix)
            .then(|| Nfcapd::start(&self.ns, port, &d.join("nfcapd"), Some(1 << 22)));
        let json = d.join("out.json");
        let mut cmd = match tool {
            Tool::Rulogd => {
                let out = if ipfix {
                    "ipfix1:IPFIX"
                } else {
                    "ip2str1:IP2STR,json1:JSON"
                };
                let conf = lab::fill(
                    FLOW_CONF,
                    &[
                        ("LOG", lab::path_str(&d.join("rulogd.log"))),
                        ("PCAP", lab::path_str(pcap)),
                        ("JSON", lab::path_str(&json)),
                        ("OUT", out.to_string()),
                        ("PORT", port.to_string()),
                    ],
                );
                let path = d.join("rulogd.conf");
                std::fs::write(&path, conf).unwrap();
                let mut c = self.ns.command(lab::rulogd_bin());
                c.arg("-c")
                    .arg(path)
                    .env("STATE_DIRECTORY", d.join("state"));
                c
            }
            Tool::Softflowd => {
                let mut c = self.ns.command("softflowd");
                c.arg("-r").arg(pcap);
                c.args(["-n", &format!("127.0.0.1:{port}")]);
                c.args(["-v", "10", "-b", "-A", "milli", "-m", "1048576"]);
                // No -c: with a control socket, softflowd -r waits in
                // accept(2) at the end of the file instead of exiting.
                c.arg("-p").arg(d.join("sf.pid"));
                c
            }
            Tool::Argus => {
                let mut c = self.ns.command("argus");
                c.arg("-r").arg(pcap).arg("-w").arg(d.join("out.argus"));
                c
            }
        };
        let err = std::fs::File::create(d.join("stderr")).unwrap();
        let start = Instant::now();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", tool.name()));
        let (code, ru, hwm) = wait_rusage(child);
        let wall = start.elapsed().as_secs_f64();
        let stderr = std::fs::read_to_string(d.join("stderr")).unwrap_or_default();
        assert_eq!(code, 0, "{} failed: {stderr}", tool.name());
        let records = match collector {
            Some(c) => {
                // The last datagrams reach nfcapd before it is stopped.
                std::thread::sleep(Duration::from_millis(300));
                Some(c.stop_count())
            }
            None if tool == Tool::Rulogd => Some(lab::count_lines(&json) as u64),
            None => None,
        };
        if std::env::var_os("RULOGD_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&d);
        }
        Run {
            wall,
            cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
            maxrss_kib: hwm,
            records,
        }
    }
}

fn fmt3(v: &[f64], f: impl Fn(f64) -> String) -> String {
    match min_med_max(v) {
        Some((a, b, c)) => format!("{} / {} / {}", f(a), f(b), f(c)),
        None => "-".into(),
    }
}

fn med(v: &[f64]) -> f64 {
    min_med_max(v).map_or(f64::NAN, |m| m.1)
}

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let a = Args::parse(USAGE);
    let repeats: usize = a.get("repeats", 3);
    let packets: u64 = a.get("packets", 1_000_000);
    let seed: u64 = a.get("seed", 1);
    let flows: Vec<u64> = a
        .str("flows")
        .unwrap_or("10k,500k")
        .split(',')
        .map(|f| rulogd_bench::parse_num(f).expect("--flows: numbers"))
        .collect();
    let mut tools: Vec<Tool> = match a.str("targets") {
        Some(l) => l
            .split(',')
            .map(|t| match t {
                "rulogd" => Tool::Rulogd,
                "softflowd" => Tool::Softflowd,
                "argus" => Tool::Argus,
                _ => panic!("unknown target {t}"),
            })
            .collect(),
        None => vec![Tool::Rulogd, Tool::Softflowd, Tool::Argus],
    };
    tools.retain(|&t| match t {
        Tool::Rulogd => lab::rulogd_bin().exists(),
        Tool::Softflowd => have("softflowd") && have("nfcapd"),
        Tool::Argus => have("argus"),
    });
    if let Some(dir) = a.str("gen") {
        let dir = Path::new(dir);
        std::fs::create_dir_all(dir).unwrap();
        for &n in &flows {
            let s = pcapgen::write(&dir.join(format!("f{n}.pcap")), packets, n, seed).unwrap();
            println!("{}/f{n}.pcap: {s:?}", dir.display());
        }
        return;
    }
    assert!(lab::require_root(), "bench-flow needs root");
    let tmp = TempDir::new("bflow");
    let mut b = Bench {
        ns: Netns::new("bflow").expect("network namespace"),
        dir: tmp.path().to_path_buf(),
        seq: 0,
    };
    println!("rulogd: {}", lab::rulogd_bin().display());
    let mut files = Vec::new();
    for &n in &flows {
        let p = tmp.path().join(format!("f{n}.pcap"));
        let t = Instant::now();
        let s = pcapgen::write(&p, packets, n, seed).unwrap();
        println!(
            "file {}: {} packets, {} flows ({} TCP), {:.0} MB of IP, {:.1} MB on disk, written in {:.1} s",
            p.display(),
            s.packets,
            s.flows,
            s.tcp_flows,
            s.ip_bytes as f64 / 1e6,
            std::fs::metadata(&p).unwrap().len() as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        files.push((p, s));
    }
    if !a.flag("no-flow") {
        flow_part(&mut b, &tools, &files, repeats);
    }
    if a.flag("ipfix") {
        let t: Vec<Tool> = tools
            .iter()
            .copied()
            .filter(|&t| t != Tool::Argus)
            .collect();
        ipfix_part(&mut b, &t, &files, repeats);
    }
}

fn flow_part(b: &mut Bench, tools: &[Tool], files: &[(PathBuf, pcapgen::Summary)], repeats: usize) {
    // [file][tool][repeat] → peak RSS in KiB.
    let mut peaks = vec![vec![Vec::new(); tools.len()]; files.len()];
    for (fi, (pcap, s)) in files.iter().enumerate() {
        println!(
            "\n== {} packets over {} flows: CAPTURE→FLOW ==",
            s.packets, s.flows
        );
        // [tool] → (pkt/s, ns CPU per packet)
        let mut res = vec![(Vec::new(), Vec::new()); tools.len()];
        for rep in 0..repeats {
            for (ti, &t) in tools.iter().enumerate() {
                let r = b.run(t, pcap, false);
                let pps = s.packets as f64 / r.wall;
                let cpu_ns = r.cpu / s.packets as f64 * 1e9;
                println!(
                    "rep {rep} {:<9} wall={:.3}s cpu={:.3}s pkt/s={:.0} cpu/pkt={:.0}ns peak_rss={}KiB records={}",
                    t.name(),
                    r.wall,
                    r.cpu,
                    pps,
                    cpu_ns,
                    r.maxrss_kib,
                    r.records.map_or("-".into(), |n| n.to_string())
                );
                if t == Tool::Rulogd {
                    assert_eq!(r.records, Some(s.flows), "rulogd: one record per flow");
                }
                res[ti].0.push(pps);
                res[ti].1.push(cpu_ns);
                peaks[fi][ti].push(r.maxrss_kib);
            }
        }
        println!("summary (min / median / max over {repeats} repeats):");
        for (ti, &t) in tools.iter().enumerate() {
            println!(
                "  {:<9} pkt/s {}   CPU/pkt ns {}",
                t.name(),
                fmt3(&res[ti].0, |v| format!("{:.2}M", v / 1e6)),
                fmt3(&res[ti].1, |v| format!("{v:.0}")),
            );
        }
        let find = |x: Tool| tools.iter().position(|&t| t == x);
        if let (Some(r), Some(sf)) = (find(Tool::Rulogd), find(Tool::Softflowd)) {
            println!(
                "  rulogd/softflowd: pkt/s {:.2}x, CPU per packet {:.2}x (medians; target pkt/s >= 1.5x)",
                med(&res[r].0) / med(&res[sf].0),
                med(&res[r].1) / med(&res[sf].1)
            );
        }
    }
    memory_summary(tools, files, &peaks);
}

/// Memory per tracked flow from the files with the fewest and the most
/// flows, per tool and repeat.
fn memory_summary(tools: &[Tool], files: &[(PathBuf, pcapgen::Summary)], peaks: &[Vec<Vec<u64>>]) {
    let lo = (0..files.len()).min_by_key(|&i| files[i].1.flows).unwrap();
    let hi = (0..files.len()).max_by_key(|&i| files[i].1.flows).unwrap();
    let d = files[hi].1.flows.saturating_sub(files[lo].1.flows);
    if d == 0 {
        return;
    }
    println!(
        "\n== resident memory per tracked flow: (peak RSS at {} flows - at {}) / {d} ==",
        files[hi].1.flows, files[lo].1.flows
    );
    for (ti, &t) in tools.iter().enumerate() {
        let v: Vec<f64> = peaks[hi][ti]
            .iter()
            .zip(&peaks[lo][ti])
            .map(|(h, l)| (h.saturating_sub(*l) * 1024) as f64 / d as f64)
            .collect();
        println!(
            "  {:<9} B/flow {}  (min / median / max; target for rulogd <= 150)",
            t.name(),
            fmt3(&v, |x| format!("{x:.0}"))
        );
    }
}

fn ipfix_part(
    b: &mut Bench,
    tools: &[Tool],
    files: &[(PathBuf, pcapgen::Summary)],
    repeats: usize,
) {
    for (pcap, s) in files {
        println!(
            "\n== {} packets over {} flows: FLOW→IPFIX (UDP) to nfcapd ==",
            s.packets, s.flows
        );
        let mut res = vec![(Vec::new(), Vec::new()); tools.len()];
        for rep in 0..repeats {
            for (ti, &t) in tools.iter().enumerate() {
                let r = b.run(t, pcap, true);
                let stored = r.records.unwrap_or(0);
                let rps = s.flows as f64 / r.wall;
                println!(
                    "rep {rep} {:<9} wall={:.3}s cpu={:.3}s records/s={:.0} stored={} lost={}",
                    t.name(),
                    r.wall,
                    r.cpu,
                    rps,
                    stored,
                    s.flows as i64 - stored as i64
                );
                res[ti].0.push(rps);
                res[ti].1.push(stored as f64);
            }
        }
        println!("summary (min / median / max over {repeats} repeats):");
        for (ti, &t) in tools.iter().enumerate() {
            println!(
                "  {:<9} flow records/s (whole run) {}   stored by nfcapd {}",
                t.name(),
                fmt3(&res[ti].0, |v| format!("{:.0}k", v / 1e3)),
                fmt3(&res[ti].1, |v| format!("{v:.0}"))
            );
        }
    }
}
