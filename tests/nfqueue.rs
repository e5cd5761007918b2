//! NFQUEUE → BASE → IP2STR → JSON in a network namespace: packets queued by
//! a `queue num 3 bypass` rule are logged and delivered.
//!
//! - `logged_delivered_and_bypassed`: with rulogd running, every UDP packet
//!   (IPv4 and IPv6) reaches the listener and has its record; while rulogd
//!   stops under steady traffic, nothing is lost (at stop it logs and
//!   accepts what its socket holds, then lets go of the queue with
//!   fail-open); once it is gone traffic flows through the bypass.
//! - `verdict_mark_is_seen_by_later_rules`: with `verdict=mark`, an nft
//!   counter in a later chain that matches the mark counts every packet.
//!
//! The queue rule is nft's `queue num 3 bypass` where the kernel has
//! nft_queue, else the same rule through iptables-nft (`-j NFQUEUE
//! --queue-bypass`, the xt target in an nft table), which kernels without
//! CONFIG_NFT_QUEUE still have.
//!
//! Run: `cargo build --release -p rulogd && cargo test -p rulogd-tests --test nfqueue` (root).

use rulogd_tests::{self as lab, Daemon, Kind, Netns, Record, TempDir};
use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const QUEUE: u16 = 3;
const PORT: u16 = 9999;

const CONF: &str = concat!(
    lab::conf_global!("q1:NFQUEUE,base1:BASE,ip2str1:IP2STR,json1:JSON"),
    "\n\
[q1]
queue_num=3
netlink_socket_buffer_size=8388608
{EXTRA}

[json1]
file=\"{FILE}\"
sync=1
"
);

/// Counters around the queue rule: `seen` before it, `marked` after it
/// (packets it accepted with mark 0x2a).
const COUNTERS: &str = "table inet c {
 counter seen {}
 counter marked {}
 chain before {
  type filter hook input priority -10; policy accept;
  udp dport 9999 counter name \"seen\"
 }
 chain after {
  type filter hook input priority 10; policy accept;
  udp dport 9999 meta mark 0x2a counter name \"marked\"
 }
}
";

/// Loads the counters and the queue rule (see the module comment).
fn ruleset(ns: &Netns) {
    ns.nft(COUNTERS).unwrap();
    let rule = "table inet q {\n chain in {\n  type filter hook input priority 0; policy accept;\n  udp dport 9999 queue num 3 bypass\n }\n}\n";
    let Err(e) = ns.nft(rule) else { return };
    assert!(
        e.to_string().contains("No such file or directory"),
        "nft queue rule: {e}"
    );
    for tool in ["iptables", "ip6tables"] {
        let out = ns
            .command(tool)
            .args([
                "-A", "INPUT", "-p", "udp", "--dport", "9999", "-j", "NFQUEUE",
            ])
            .args(["--queue-num", "3", "--queue-bypass"])
            .output()
            .unwrap_or_else(|e| {
                panic!("this kernel has no nft_queue and {tool} cannot run ({e}): install iptables")
            });
        assert!(
            out.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Whether `queue` is bound in the namespace.
fn bound(ns: &Netns, queue: u16) -> bool {
    ns.read_proc_net("netfilter/nfnetlink_queue")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(&queue.to_string()))
}

fn start(ns: &Netns, dir: &TempDir, extra: &str) -> (Daemon, std::path::PathBuf) {
    let json = dir.path().join("out.json");
    let conf = lab::fill(
        CONF,
        &[("EXTRA", extra.to_string()), ("FILE", lab::path_str(&json))],
    );
    let d = Daemon::rulogd(ns, dir.path(), &conf, &[], &[&json]);
    assert!(
        lab::wait_until(Duration::from_secs(10), || bound(ns, QUEUE)),
        "queue {QUEUE} not bound\n{}",
        d.log_text()
    );
    (d, json)
}

/// UDP listeners on 127.0.0.1 and ::1, each read by a thread that records
/// the index carried in every datagram.
struct Listener {
    got: Arc<Mutex<HashSet<u32>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Listener {
    fn new(ns: &Netns) -> Listener {
        let socks = ns.run_in_thread(|| {
            [
                UdpSocket::bind(("127.0.0.1", PORT)).unwrap(),
                UdpSocket::bind(("::1", PORT)).unwrap(),
            ]
        });
        let got = Arc::new(Mutex::new(HashSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for s in socks {
            let big: libc::c_int = 8 << 20;
            // SAFETY: a valid socket and an int-sized option value.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&big as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let (got, stop) = (got.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut b = [0u8; 64];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = s.recv(&mut b) {
                        if n >= 4 {
                            let i = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                            got.lock().unwrap().insert(i);
                        }
                    }
                }
            }));
        }
        Listener { got, stop, threads }
    }

    /// How many indices of `range` were received.
    fn count(&self, range: std::ops::Range<u32>) -> usize {
        let g = self.got.lock().unwrap();
        range.filter(|i| g.contains(i)).count()
    }

    /// Waits until every index of `range` was received; returns the missing.
    fn wait_for(&self, range: std::ops::Range<u32>) -> Vec<u32> {
        let missing = || {
            let g = self.got.lock().unwrap();
            range.clone().filter(|i| !g.contains(i)).collect::<Vec<_>>()
        };
        lab::wait_until(Duration::from_secs(10), || missing().is_empty());
        missing()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends one datagram per index, alternating IPv4 and IPv6, at `rate`
/// packets/s; returns the source ports (IPv4, IPv6).
fn send(ns: &Netns, range: std::ops::Range<u32>, rate: u64) -> (u16, u16) {
    ns.run_in_thread(move || {
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v6 = UdpSocket::bind("[::1]:0").unwrap();
        let d4: SocketAddr = ("127.0.0.1:9999").parse().unwrap();
        let d6: SocketAddr = ("[::1]:9999").parse().unwrap();
        let t0 = Instant::now();
        for (k, i) in range.enumerate() {
            let due = Duration::from_secs_f64(k as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            let mut p = [0u8; 32];
            p[..4].copy_from_slice(&i.to_be_bytes());
            if i % 2 == 0 {
                v4.send_to(&p, d4).unwrap();
            } else {
                v6.send_to(&p, d6).unwrap();
            }
        }
        (
            v4.local_addr().unwrap().port(),
            v6.local_addr().unwrap().port(),
        )
    })
}

fn counter(ns: &Netns, name: &str) -> u64 {
    ns.counter("inet", "c", name).unwrap()
}

fn check(r: &Record, ports: (u16, u16)) {
    let v6 = r.req_u64("oob.family") == 10;
    let (ip, port) = if v6 {
        ("::1", ports.1)
    } else {
        ("127.0.0.1", ports.0)
    };
    assert_eq!(r.req_str("src_ip"), ip, "{}", r.line);
    assert_eq!(r.req_str("dest_ip"), ip, "{}", r.line);
    assert_eq!(r.req_u64("src_port"), u64::from(port), "{}", r.line);
    assert_eq!(r.req_u64("dest_port"), u64::from(PORT), "{}", r.line);
    assert_eq!(r.req_u64("oob.queue"), u64::from(QUEUE), "{}", r.line);
    assert_eq!(r.req_u64("oob.hook"), 1, "input hook: {}", r.line);
    assert_eq!(r.req_u64("oob.protocol"), if v6 { 0x86dd } else { 0x0800 });
    assert_eq!(r.req_u64("oob.ifindex_in"), 1, "lo: {}", r.line);
    assert_eq!(r.req_u64("ip.protocol"), 17, "{}", r.line);
    assert_eq!(r.req_u64("udp.len"), 40, "{}", r.line);
    assert_eq!(r.req_u64("raw.pktlen"), if v6 { 80 } else { 60 });
    assert!(r.has("timestamp") && r.has("oob.time.sec"), "{}", r.line);
}

#[test]
fn logged_delivered_and_bypassed() {
    let (ns, dir) = lab::netns_or_skip!("nfq");
    ruleset(&ns);
    let listener = Listener::new(&ns);
    let (mut d, json) = start(&ns, &dir, "");

    // 1. Running: every packet is logged and delivered.
    const N: u32 = 400;
    let ports = send(&ns, 0..N, 4000);
    assert_eq!(listener.wait_for(0..N), Vec::<u32>::new(), "not delivered");
    d.wait_lines(&json, N as usize, Duration::from_secs(10));
    assert_eq!(counter(&ns, "seen"), u64::from(N));
    assert_eq!(counter(&ns, "marked"), 0, "verdict=accept sets no mark");

    // 2. Stopping loses nothing. Packets pile up in the queue while the
    // daemon is frozen; it is then told to stop and thawed: it reads a
    // batch, sees the stop, and must let the rest go rather than leave them
    // to the kernel, which drops a closed queue's packets.
    const HELD: u32 = 900;
    d.signal(libc::SIGSTOP);
    send(&ns, 10_000..10_000 + HELD, 20_000);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        listener.count(10_000..10_000 + HELD),
        0,
        "queued packets were delivered while the daemon was frozen"
    );
    let pid = d.pid() as i32;
    let thaw = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on the daemon this test started.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    d.stop();
    thaw.join().unwrap();
    assert_eq!(
        listener.wait_for(10_000..10_000 + HELD),
        Vec::<u32>::new(),
        "held packets lost at stop"
    );
    assert!(!bound(&ns, QUEUE), "queue still bound after stop");

    // 3. Stopped: the bypass lets traffic through.
    send(&ns, 20_000..20_200, 10_000);
    assert_eq!(
        listener.wait_for(20_000..20_200),
        Vec::<u32>::new(),
        "bypass"
    );

    let recs = lab::read_records(&json);
    // The held packets were already in the daemon's socket at stop: each is
    // logged, not just let through.
    assert_eq!(
        recs.len(),
        (N + HELD) as usize,
        "held packets logged at stop"
    );
    let mut last_id = 0;
    for r in &recs[..N as usize] {
        check(r, ports);
        let id = r.req_u64("oob.packet_id");
        assert!(id > last_id, "packet ids increase: {}", r.line);
        last_id = id;
    }
    let v6 = recs[..N as usize]
        .iter()
        .filter(|r| r.req_u64("oob.family") == 10)
        .count();
    assert_eq!(v6, N as usize / 2);
}

#[test]
fn verdict_mark_is_seen_by_later_rules() {
    let (ns, dir) = lab::netns_or_skip!("nfqm");
    ruleset(&ns);
    let listener = Listener::new(&ns);
    let (mut d, json) = start(
        &ns,
        &dir,
        "verdict=\"mark\"\nverdict_mark=0x2a\nnumeric_label=1",
    );
    const N: u32 = 300;
    let ports = send(&ns, 0..N, 4000);
    assert_eq!(listener.wait_for(0..N), Vec::<u32>::new(), "not delivered");
    d.wait_lines(&json, N as usize, Duration::from_secs(10));
    assert_eq!(counter(&ns, "marked"), u64::from(N));
    d.stop();
    let recs = lab::read_records(&json);
    assert_eq!(recs.len(), N as usize);
    for r in &recs {
        check(r, ports);
        // The record shows the packet as queued; the mark comes with the verdict.
        assert_eq!(r.req_u64("oob.mark"), 0, "{}", r.line);
        assert_eq!(r.req_u64("raw.label"), 1, "{}", r.line);
    }
}

/// After `-u nobody` the verdicts still reach the kernel: every queued
/// packet is delivered by the verdict, not by the queue's fail-open.
#[test]
fn verdicts_after_the_uid_drop_still_deliver() {
    let (ns, dir) = lab::netns_or_skip!("nfqu");
    ruleset(&ns);
    // nobody must be able to write its JSON file.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let listener = Listener::new(&ns);
    let json = dir.path().join("out.json");
    let conf = lab::fill(
        CONF,
        &[("EXTRA", String::new()), ("FILE", lab::path_str(&json))],
    );
    let mut d = Daemon::start_with_args(
        &ns,
        Kind::Rulogd,
        dir.path(),
        "rulogd",
        &conf,
        &[],
        &[&json],
        &["-u", "nobody"],
    );
    assert!(lab::wait_until(Duration::from_secs(10), || bound(
        &ns, QUEUE
    )));
    const N: u32 = 200;
    send(&ns, 0..N, 2000);
    assert_eq!(
        listener.wait_for(0..N),
        Vec::<u32>::new(),
        "not delivered\n{}",
        d.log_text()
    );
    d.wait_lines(&json, N as usize, Duration::from_secs(10));
    let log = d.log_text();
    d.stop();
    assert!(!log.contains("verdict"), "verdict errors after -u:\n{log}");
}
