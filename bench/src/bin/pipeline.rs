//! In-process CPU cost of the NFLOG → BASE → IFINDEX → IP2STR → JSON path,
//! without the kernel's variance: NFLOG datagrams captured from the kernel
//! (`nflog-sink --dump FILE`) are replayed through a Unix socketpair into the
//! real NFLOG read loop, the real stack builder and the real runtime.
//!
//! It prints the CPU time of the input thread (recv, decode, filters, JSON
//! render, hand-over) and of the JSON writer thread per record, read from
//! `/proc/self/task/*/schedstat` (nanoseconds). The feeder thread is not
//! counted. Needs no privileges; does not touch any netfilter state.
//!
//! Capture (as root, see bench/README.md), then e.g.
//! `pipeline --replay /tmp/nflog.dump --records 3M --repeats 5`.

use rulogd::config;
use rulogd::runtime::Runtime;
use rulogd::stack;
use rulogd_input::nflog::{NflogInput, Settings};
use rulogd_netlink::socket::NlSocket;
use rulogd_plugin::{BuildCtx, BuildError, Builder, Input, Registration, SharedRegistry, StatSet};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rulogd_bench::{min_med_max, Args};

const USAGE: &str = "\
usage: pipeline --replay FILE [options]
  --replay FILE     datagrams captured with `nflog-sink --dump FILE`
  --records N       records per repeat (default 2M; the capture is replayed in a loop)
  --repeats N       repeats (default 5); min / median / max are printed
  --out PATH        JSON file (default /dev/null)
  --conf-extra TEXT extra lines for the [json1] section (\\n separated)
  --filters LIST    the filters after BASE (default ifi1:IFINDEX,ip2str1:IP2STR; \"\" for none)
  --plugin PATH     an external filter (.so) run right after BASE as ext1, to
                    measure what crossing the plugin ABI costs";

const CONF: &str = "\
[global]
loglevel=5
stack=log1:NFLOG,base1:BASE{EXT}{FILTERS},json1:JSON

[log1]
group=5

[json1]
file=\"{FILE}\"
sync=0
";

/// The socket end the replayed NFLOG input reads, handed to its builder.
static SOCK: Mutex<Option<OwnedFd>> = Mutex::new(None);

fn build_replay(ctx: &BuildCtx) -> Result<Box<dyn Input>, BuildError> {
    let s = Settings::from_options(ctx.options)?;
    let fd = SOCK
        .lock()
        .unwrap()
        .take()
        .expect("socketpair prepared before the build");
    let set = StatSet::new(format!("{} (NFLOG)", ctx.instance));
    ctx.shared.add_stats(set.clone());
    Ok(Box::new(NflogInput::new(
        ctx.instance,
        &s,
        NlSocket::from_fd(fd),
        &set,
    )))
}

fn find(name: &str) -> Option<Registration> {
    let r = rulogd::registry::find(name)?;
    if r.info.name == "NFLOG" {
        return Some(Registration {
            info: r.info,
            builder: Builder::Input(build_replay),
        });
    }
    Some(r)
}

fn load_dump(p: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    std::fs::File::open(p)?.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= data.len() {
        let n = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap()) as usize;
        off += 4;
        if off + n > data.len() {
            break;
        }
        out.push(data[off..off + n].to_vec());
        off += n;
    }
    Ok(out)
}

/// NFULNL_MSG_PACKET messages in one datagram.
fn count_packets(buf: &[u8]) -> u64 {
    let (mut off, mut n) = (0, 0);
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < 16 {
            break;
        }
        if ty == 4 << 8 {
            n += 1;
        }
        off += (len + 3) & !3;
    }
    n
}

/// CPU nanoseconds of this process's thread called `name`.
fn thread_ns(name: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let s = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
            return s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        }
    }
    0
}

fn counter(shared: &SharedRegistry, set: &str, label: &str) -> u64 {
    shared
        .stats()
        .iter()
        .find(|s| s.name == set)
        .and_then(|s| s.snapshot().into_iter().find(|(l, _)| *l == label))
        .map_or(0, |(_, v)| v)
}

fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair() writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for (fd, opt) in [(&a, libc::SO_RCVBUFFORCE), (&b, libc::SO_SNDBUFFORCE)] {
        let v: libc::c_int = 16 << 20;
        // SAFETY: valid fd; the option value is an int. Without root the
        // FORCE variants fail and the default sizes stay: still correct.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
    (a, b)
}

struct Result1 {
    records: u64,
    input_ns: u64,
    writer_ns: u64,
    wall: Duration,
}

/// The stack between BASE and JSON: an external filter, then built-ins.
struct Middle {
    ext: String,
    filters: String,
}

fn run_once(
    dump: &[Vec<u8>],
    per_pass: u64,
    records: u64,
    out: &str,
    extra: &str,
    mid: &Middle,
) -> Result1 {
    let text = CONF
        .replace("{FILE}", out)
        .replace("{EXT}", &mid.ext)
        .replace("{FILTERS}", &mid.filters)
        + extra;
    let cfg = config::parse_ulogd(Path::new("<pipeline>"), &text).expect("config");
    let (rx, tx) = socketpair();
    *SOCK.lock().unwrap() = Some(rx);
    let shared = Arc::new(SharedRegistry::default());
    let mut trees = stack::plan_with(&cfg, &find).expect("plan");
    stack::resolve(&cfg, &mut trees).expect("resolve");
    stack::instantiate(&cfg, &mut trees, &shared).expect("instantiate");
    stack::resolve(&cfg, &mut trees).expect("resolve");
    stack::bind(&cfg, &mut trees).expect("bind");
    let rt = Runtime::start(trees, &shared).expect("start");
    // Lets the threads come up and name themselves.
    std::thread::sleep(Duration::from_millis(50));
    let (in0, wr0) = (thread_ns("in:log1"), thread_ns("out:json1"));
    let t0 = Instant::now();
    let passes = records.div_ceil(per_pass);
    for _ in 0..passes {
        for d in dump {
            // SAFETY: valid fd and buffer; blocking send waits for room.
            let r = unsafe { libc::send(tx.as_raw_fd(), d.as_ptr().cast(), d.len(), 0) };
            assert!(r >= 0, "send: {}", io::Error::last_os_error());
        }
    }
    // Done when the input has decoded everything and gone idle.
    let want = passes * per_pass;
    while counter(&shared, "log1 (NFLOG)", "received") < want {
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = t0.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let (in1, wr1) = (thread_ns("in:log1"), thread_ns("out:json1"));
    rt.shutdown(&shared);
    let written = counter(&shared, "json1 (JSON)", "records");
    Result1 {
        records: written,
        input_ns: in1 - in0,
        writer_ns: wr1.saturating_sub(wr0),
        wall,
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse(USAGE);
    let Some(replay) = args.str("replay") else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let dump = load_dump(Path::new(replay))?;
    let per_pass: u64 = dump.iter().map(|d| count_packets(d)).sum();
    assert!(per_pass > 0, "no NFLOG packets in {replay}");
    let records: u64 = args.get("records", 2_000_000);
    let repeats: usize = args.get("repeats", 5);
    let out = args.str("out").unwrap_or("/dev/null").to_string();
    let extra = args
        .str("conf-extra")
        .map(|e| e.replace("\\n", "\n") + "\n")
        .unwrap_or_default();
    rulogd::logging::init(4);
    let filters = args.str("filters").unwrap_or("ifi1:IFINDEX,ip2str1:IP2STR");
    let mid = Middle {
        ext: match args.str("plugin") {
            Some(p) => {
                let info = rulogd::external::load(Path::new(p))
                    .unwrap_or_else(|e| panic!("plugin {p}: {e}"));
                format!(",ext1:{}", info.name)
            }
            None => String::new(),
        },
        filters: if filters.is_empty() {
            String::new()
        } else {
            format!(",{filters}")
        },
    };
    println!(
        "stack: log1:NFLOG,base1:BASE{}{},json1:JSON",
        mid.ext, mid.filters
    );
    println!(
        "capture: {} datagrams, {per_pass} records, {:.1} records per datagram",
        dump.len(),
        per_pass as f64 / dump.len() as f64
    );
    let mut inp = Vec::new();
    let mut rate = Vec::new();
    let mut wr = Vec::new();
    for i in 0..repeats {
        let r = run_once(&dump, per_pass, records, &out, &extra, &mid);
        let ns = r.input_ns as f64 / r.records as f64;
        let wns = r.writer_ns as f64 / r.records as f64;
        println!(
            "run {}: records={} input thread {ns:.0} ns/record, writer {wns:.0} ns/record, {:.0} records/s",
            i + 1,
            r.records,
            r.records as f64 / r.wall.as_secs_f64(),
        );
        inp.push(ns);
        wr.push(wns);
        rate.push(r.records as f64 / r.wall.as_secs_f64());
    }
    let (a, b, c) = min_med_max(&inp).unwrap();
    println!("input thread ns/record: {a:.0} / {b:.0} / {c:.0}");
    let (a, b, c) = min_med_max(&wr).unwrap();
    println!("writer thread ns/record: {a:.0} / {b:.0} / {c:.0}");
    let (a, b, c) = min_med_max(&rate).unwrap();
    println!("records/s: {a:.0} / {b:.0} / {c:.0}");
    Ok(())
}
