//! Kernel tests: a real nfnetlink_log socket in a private network namespace,
//! fed by nftables rules that exist only inside it.
//!
//! They run when the test process is root (as in CI). Otherwise they skip,
//! unless `RULOGD_KERNEL_TESTS=1` demands them, in which case they fail.
//! `RULOGD_NFLOG_CORPUS=<dir>` saves every datagram received, which is how
//! the fuzz corpus seeds were captured.

use super::tests::{binding, get, Collect, V};
use super::*;
use rulogd_netlink::nflog::parse_packet;
use rulogd_netlink::Attrs;
use rulogd_plugin::{Builder, Options, SharedRegistry};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether to run; panics when kernel tests are demanded but impossible.
fn enabled() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("RULOGD_KERNEL_TESTS").as_deref() == Ok("1") {
        panic!("RULOGD_KERNEL_TESTS=1 but not root: the NFLOG kernel tests need root to create a network namespace and bind an NFLOG group");
    }
    eprintln!(
        "skipping NFLOG kernel test: not root (set RULOGD_KERNEL_TESTS=1 to make this a failure)"
    );
    false
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) {
    let mut c = Command::new(cmd);
    c.args(args).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        w.write_all(text.as_bytes()).expect("write stdin");
    }
    let st = child.wait().expect("wait");
    assert!(st.success(), "{cmd} {args:?} failed: {st}");
}

/// A network namespace that is deleted when dropped, even on panic.
struct Netns(String);

impl Netns {
    fn new(tag: &str, ruleset: &str) -> Netns {
        let name = format!("rulogd-nflog-{}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name], None);
        let ns = Netns(name);
        run("ip", &["-n", &ns.0, "link", "set", "lo", "up"], None);
        run(
            "ip",
            &["netns", "exec", &ns.0, "nft", "-f", "-"],
            Some(ruleset),
        );
        ns
    }

    /// Runs `f` on a thread that has entered this namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let nsf = std::fs::File::open(&path).expect("open netns");
                // SAFETY: a valid netns fd; only this thread changes namespace.
                let r = unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", io::Error::last_os_error());
                f()
            });
            match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stdin(Stdio::null())
            .status();
    }
}

fn build_input(
    shared: &SharedRegistry,
    opts: &[(&str, i64)],
) -> Result<Box<dyn Input>, BuildError> {
    let mut o = Options::defaults(&OPTIONS).expect("defaults");
    for (k, v) in opts {
        let def = OPTIONS.iter().find(|d| d.name == *k).expect("known option");
        o.set_int(def, *v, 1);
    }
    let ctx = BuildCtx {
        instance: "log1",
        info: &INFO,
        options: &o,
        shared,
    };
    let Builder::Input(b) = REGISTRATION.builder else {
        panic!("NFLOG is an input");
    };
    b(&ctx)
}

/// Polls and reads until `n` records arrived or 5 s passed.
fn read_records(inp: &mut dyn Input, em: &mut Collect, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let fd = inp.fd().expect("fd");
    while em.out.len() < n && Instant::now() < deadline {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 100) };
        while inp.read(em).expect("read") == ReadStatus::More {}
    }
    assert_eq!(em.out.len(), n, "records received");
}

fn save_corpus(tag: &str, chunks: &[Vec<u8>]) {
    let Ok(dir) = std::env::var("RULOGD_NFLOG_CORPUS") else {
        return;
    };
    for (i, c) in chunks.iter().enumerate() {
        let p = std::path::Path::new(&dir).join(format!("kernel-{tag}-{i}.bin"));
        std::fs::write(&p, c).expect("write corpus file");
    }
}

fn stat(shared: &SharedRegistry, name: &str) -> u64 {
    let sets = shared.stats();
    let set = sets
        .iter()
        .find(|s| s.name == "log1 (NFLOG)")
        .expect("stats registered as `log1 (NFLOG)`");
    set.snapshot()
        .into_iter()
        .find(|(l, _)| *l == name)
        .map_or(u64::MAX, |(_, v)| v)
}

fn int(v: Option<V>) -> u64 {
    match v {
        Some(V::Int(n)) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn bytes(v: Option<V>) -> Vec<u8> {
    match v {
        Some(V::Bytes(b)) => b,
        other => panic!("not bytes: {other:?}"),
    }
}

#[test]
fn kernel_logs_udp_over_ipv4_and_ipv6() {
    if !enabled() {
        return;
    }
    let ns = Netns::new(
        "udp",
        r#"table inet t { chain out { type filter hook output priority 0; udp dport 9999 log prefix "pfx" group 7; }; }"#,
    );
    let (em, shared) = ns.run(|| {
        let shared = SharedRegistry::default();
        let opts = [
            ("group", 7),
            ("netlink_qthreshold", 1),
            ("seq_local", 1),
            ("numeric_label", 3),
        ];
        let mut inp = build_input(&shared, &opts).expect("build NFLOG input");
        inp.bind(&binding(None)).expect("bind");
        // A second listener on the same group is refused with a clear reason.
        let err = build_input(&SharedRegistry::default(), &[("group", 7)])
            .err()
            .expect("second bind of group 7 must fail");
        assert!(
            err.to_string()
                .contains("group 7 already bound by another process"),
            "{err}"
        );
        let v4 = UdpSocket::bind("127.0.0.1:0").expect("v4 socket");
        v4.send_to(b"0123456789", "127.0.0.1:9999")
            .expect("send v4");
        let v6 = UdpSocket::bind("[::1]:0").expect("v6 socket");
        v6.send_to(b"0123456789", "[::1]:9999").expect("send v6");
        let mut em = Collect::new(&KEYS);
        read_records(&mut *inp, &mut em, 2);
        (em, shared)
    });
    save_corpus("udp", &em.chunks);
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid() as u64, libc::getegid() as u64) };
    let now = now_sec_usec().0 as u64;
    for (r, family, proto, pktlen) in [(&em.out[0], 2, 0x0800, 38), (&em.out[1], 10, 0x86dd, 58)] {
        assert_eq!(bytes(get(r, "oob.prefix")), b"pfx");
        assert_eq!(int(get(r, "oob.family")), family);
        assert_eq!(int(get(r, "oob.protocol")), proto);
        assert_eq!(int(get(r, "oob.hook")), 3, "NF_INET_LOCAL_OUT");
        assert_eq!(int(get(r, "oob.ifindex_out")), 1, "lo");
        assert_eq!(get(r, "oob.ifindex_in"), None);
        assert_eq!(int(get(r, "raw.pktlen")), pktlen);
        let pkt = bytes(get(r, "raw.pkt"));
        assert_eq!(pkt.len() as u64, pktlen);
        assert_eq!(pkt[0] >> 4, if family == 2 { 4 } else { 6 });
        assert_eq!(int(get(r, "raw.pktcount")), 1);
        assert_eq!(int(get(r, "raw.label")), 3);
        assert_eq!(int(get(r, "oob.mark")), 0);
        assert_eq!(int(get(r, "oob.uid")), uid);
        assert_eq!(int(get(r, "oob.gid")), gid);
        assert!(int(get(r, "oob.time.sec")).abs_diff(now) < 10);
        assert!(int(get(r, "oob.time.usec")) < 1_000_000);
        for k in [
            "raw.mac",
            "raw.mac_len",
            "raw.type",
            "raw.mac.saddr",
            "oob.seq.global",
            "ct",
        ] {
            assert_eq!(get(r, k), None, "{k}");
        }
        let raw = bytes(get(r, "raw"));
        let p = parse_packet(&raw).expect("raw is a parseable NFLOG message");
        assert_eq!((p.family as u64, p.group), (family, 7));
    }
    let s0 = int(get(&em.out[0], "oob.seq.local"));
    assert_eq!(int(get(&em.out[1], "oob.seq.local")), s0 + 1);
    assert_eq!(stat(&shared, "received"), 2);
    assert_eq!(stat(&shared, "malformed"), 0);
    assert_eq!(stat(&shared, "seq_gaps"), 0);
}

#[test]
fn kernel_batches_and_attaches_conntrack() {
    if !enabled() {
        return;
    }
    let ns = Netns::new(
        "batch",
        "table inet t { chain out { type filter hook output priority 0; udp dport 9998 ct state new,established log group 8; }; }",
    );
    const N: usize = 8;
    let (em, shared) = ns.run(|| {
        let shared = SharedRegistry::default();
        let opts = [
            ("group", 8),
            ("netlink_qthreshold", 4),
            ("netlink_qtimeout", 10),
            ("netlink_nlbufsiz", 65_536),
            ("attach_conntrack", 1),
            ("seq_global", 1),
            ("netlink_socket_buffer_size", 1 << 20),
            ("netlink_socket_buffer_maxsize", 1 << 21),
        ];
        let mut inp = build_input(&shared, &opts).expect("build NFLOG input");
        inp.bind(&binding(None)).expect("bind");
        let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
        for i in 0..N {
            s.send_to(&[i as u8; 32], "127.0.0.1:9998").expect("send");
        }
        let mut em = Collect::new(&KEYS);
        read_records(&mut *inp, &mut em, N);
        (em, shared)
    });
    save_corpus("batch", &em.chunks);
    assert!(
        em.chunks.len() < N,
        "queue threshold 4 should batch packets: {} datagrams for {N} packets",
        em.chunks.len()
    );
    // Without CONFIG_NETFILTER_NETLINK_GLUE_CT the kernel cannot attach
    // conntrack; then no record may carry `ct`, and the flags that came
    // with it must still be in force.
    let with_ct = em.out.iter().filter(|r| get(r, "ct").is_some()).count();
    assert!(
        with_ct == 0 || with_ct == N,
        "ct on {with_ct} of {N} records"
    );
    if with_ct == 0 {
        eprintln!("note: this kernel does not attach conntrack to NFLOG; `ct` unchecked");
    }
    let mut last_global = None;
    for r in &em.out {
        assert_eq!(
            bytes(get(r, "oob.prefix")),
            b"",
            "nft sends an empty prefix"
        );
        assert_eq!(int(get(r, "raw.pktlen")), 20 + 8 + 32);
        if with_ct != 0 {
            let ct = bytes(get(r, "ct"));
            assert!(!ct.is_empty(), "conntrack attached");
            assert!(
                Attrs::new(&ct, 0, ct.len()).all(|a| a.is_ok()),
                "ct holds attributes"
            );
        }
        let g = int(get(r, "oob.seq.global"));
        if let Some(l) = last_global {
            assert!(g > l, "global sequence increases");
        }
        last_global = Some(g);
    }
    assert_eq!(stat(&shared, "received"), N as u64);
    assert_eq!(stat(&shared, "malformed"), 0);
    assert!(stat(&shared, "rcvbuf") >= 1 << 20, "receive buffer applied");
}

#[test]
fn kernel_overrun_is_counted_and_grows_the_buffer() {
    if !enabled() {
        return;
    }
    let ns = Netns::new(
        "enobufs",
        "table inet t { chain out { type filter hook output priority 0; udp dport 9997 log group 9; }; }",
    );
    const N: usize = 3000;
    let shared = ns.run(|| {
        let shared = SharedRegistry::default();
        let opts = [
            ("group", 9),
            ("netlink_qthreshold", 1),
            ("seq_local", 1),
            ("netlink_socket_buffer_size", 4096),
            ("netlink_socket_buffer_maxsize", 65_536),
        ];
        let mut inp = build_input(&shared, &opts).expect("build NFLOG input");
        inp.bind(&binding(None)).expect("bind");
        // Nobody reads while these are sent, so the tiny buffer overflows.
        let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
        for _ in 0..N {
            s.send_to(&[0; 200], "127.0.0.1:9997").expect("send");
        }
        let mut em = Collect::new(&KEYS);
        let drain = |inp: &mut Box<dyn Input>, em: &mut Collect| {
            let deadline = Instant::now() + Duration::from_secs(1);
            while Instant::now() < deadline {
                if inp.read(em).expect("read") == ReadStatus::Idle {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        drain(&mut inp, &mut em);
        // Packets after the overrun make the lost ones visible as a gap.
        for _ in 0..10 {
            s.send_to(&[0; 200], "127.0.0.1:9997").expect("send");
        }
        drain(&mut inp, &mut em);
        shared
    });
    let (got, gaps, enobufs) = (
        stat(&shared, "received"),
        stat(&shared, "seq_gaps"),
        stat(&shared, "enobufs"),
    );
    assert!(enobufs >= 1, "overrun reported");
    assert!(got > 10 && got < N as u64, "received {got}");
    assert!(gaps > 0, "lost packets show as sequence gaps");
    assert_eq!(
        got + gaps,
        N as u64 + 10,
        "every packet is received or counted lost"
    );
    assert!(stat(&shared, "rcvbuf") > 8192, "buffer grew after ENOBUFS");
}

/// `stop` unbinds the group: the kernel sends the batch it held
/// (qthreshold 100, qtimeout 60 s) and every packet is read before the
/// acknowledgement; the group is gone afterwards.
#[test]
fn kernel_stop_reads_the_pending_batch() {
    if !enabled() {
        return;
    }
    let ns = Netns::new(
        "stop",
        "table inet t { chain out { type filter hook output priority 0; udp dport 9997 log group 9; }; }",
    );
    const N: usize = 10;
    let (before, during, em, shared, after) = ns.run(|| {
        let shared = SharedRegistry::default();
        let opts = [
            ("group", 9),
            ("netlink_qthreshold", 100),
            ("netlink_qtimeout", 6000),
        ];
        let mut inp = build_input(&shared, &opts).expect("build NFLOG input");
        inp.bind(&binding(None)).expect("bind");
        let s = UdpSocket::bind("127.0.0.1:0").expect("socket");
        for i in 0..N {
            s.send_to(&[i as u8; 32], "127.0.0.1:9997").expect("send");
        }
        let mut em = Collect::new(&KEYS);
        std::thread::sleep(Duration::from_millis(50));
        while inp.read(&mut em).expect("read") == ReadStatus::More {}
        let before = em.out.len();
        let listing = || std::fs::read_to_string(stop::PROC_NFLOG).unwrap_or_default();
        let during = stop::batched(&listing(), 9);
        inp.stop(&mut em);
        (before, during, em, shared, stop::batched(&listing(), 9))
    });
    assert_eq!(before, 0, "the kernel sent its batch early: nothing tested");
    assert_eq!(during, Some(N as u32), "packets batched in the kernel");
    assert_eq!(em.out.len(), N, "records read at stop");
    assert_eq!(stat(&shared, "stop_unbound"), 1);
    assert_eq!(stat(&shared, "stop_waited"), 0);
    assert_eq!(after, None, "group 9 still bound after stop");
}
