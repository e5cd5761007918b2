//! Kernel tests: real ctnetlink sockets in a private network namespace with
//! conntrack accounting and timestamps on. They run as root (as in CI);
//! otherwise they skip, unless `RULOGD_KERNEL_TESTS=1` demands them.
//! `RULOGD_NFCT_CORPUS=<dir>` saves every datagram received (fuzz seeds).

use super::tests::{get, settings, Collect, V};
use super::*;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

pub(crate) fn enabled() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("RULOGD_KERNEL_TESTS").as_deref() == Ok("1") {
        panic!(
            "RULOGD_KERNEL_TESTS=1 but not root: the NFCT kernel tests need a network namespace"
        );
    }
    eprintln!("skipping NFCT kernel test: not root");
    false
}

pub(crate) fn run(args: &[&str], stdin: Option<&str>) {
    let mut c = Command::new(args[0]);
    c.args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    if let (Some(t), Some(mut w)) = (stdin, child.stdin.take()) {
        use std::io::Write;
        w.write_all(t.as_bytes()).expect("stdin");
    }
    assert!(child.wait().expect("wait").success(), "{args:?} failed");
}

/// A namespace where conntrack is active (a `ct state` rule), counting.
pub(crate) struct Netns(pub(crate) String);

impl Netns {
    pub(crate) fn new(tag: &str) -> Netns {
        let ns = Netns(format!("rulogd-nfct-{}-{tag}", std::process::id()));
        run(&["ip", "netns", "add", &ns.0], None);
        run(&["ip", "-n", &ns.0, "link", "set", "lo", "up"], None);
        let rules = "table inet t {\n chain in {\n  type filter hook input priority 0;\n  ct state new counter\n }\n}\n";
        run(
            &["ip", "netns", "exec", &ns.0, "nft", "-f", "-"],
            Some(rules),
        );
        // events=1: entries made before any listener (the start-up dump's)
        // get events too; the default (2) gives them none.
        for s in [
            "nf_conntrack_acct",
            "nf_conntrack_timestamp",
            "nf_conntrack_events",
        ] {
            run(
                &[
                    "ip",
                    "netns",
                    "exec",
                    &ns.0,
                    "sysctl",
                    "-qw",
                    &format!("net.netfilter.{s}=1"),
                ],
                None,
            );
        }
        ns
    }

    pub(crate) fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let nsf = std::fs::File::open(&path).expect("open netns");
                // SAFETY: a valid netns fd; only this thread changes namespace.
                let r = unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(r, 0, "setns: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    fn flush(&self) {
        run(&["ip", "netns", "exec", &self.0, "conntrack", "-F"], None);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn traffic() -> (u16, u16) {
    let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(b"hello", srv.local_addr().unwrap()).unwrap();
    let l = TcpListener::bind("[::1]:0").unwrap();
    let t = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (a, _) = l.accept().unwrap();
    drop((t, a));
    (
        c.local_addr().unwrap().port(),
        srv.local_addr().unwrap().port(),
    )
}

/// The first UDP flow `em` collected.
fn udp_record(em: &Collect) -> &[(&'static str, V)] {
    em.out
        .iter()
        .find(|r| get(r, "orig.ip.protocol") == Some(V::Int(17)))
        .expect("a UDP flow")
}

fn drain(inp: &mut NfctInput, em: &mut Collect, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while em.out.len() < n && Instant::now() < deadline {
        let mut p = libc::pollfd {
            fd: inp.fd().expect("event socket"),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 100) };
        while inp.read(em).expect("read") == ReadStatus::More {}
    }
}

fn save_corpus(tag: &str, chunks: &[Vec<u8>]) {
    let Ok(dir) = std::env::var("RULOGD_NFCT_CORPUS") else {
        return;
    };
    for (i, c) in chunks.iter().enumerate().take(8) {
        let p = std::path::Path::new(&dir).join(format!("kernel-{tag}-{i}.bin"));
        std::fs::write(p, c).expect("write corpus file");
    }
}

fn open(ns: &Netns, opts: &[(&str, &str)]) -> NfctInput {
    let s = settings(opts).expect("settings");
    ns.in_ns(|| {
        let mut i = NfctInput::new("ct1", s, &StatSet::new("t")).expect("input");
        i.start().expect("start");
        i
    })
}

#[test]
fn events_without_the_table() {
    if !enabled() {
        return;
    }
    let ns = Netns::new("ev");
    let mut inp = open(&ns, &[("hash_enable", "0")]);
    let mut em = Collect::new(&KEYS);
    let (cport, sport) = ns.in_ns(traffic);
    ns.flush();
    drain(&mut inp, &mut em, 4);
    save_corpus("events", &em.chunks);
    let ev: Vec<_> = em.out.iter().map(|r| get(r, "ct.event")).collect();
    assert_eq!(em.out.len(), 4, "{:?}", em.out);
    assert_eq!(ev.iter().filter(|e| **e == Some(V::Int(1))).count(), 2);
    let udp = em
        .out
        .iter()
        .find(|r| {
            get(r, "ct.event") == Some(V::Int(4)) && get(r, "orig.ip.protocol") == Some(V::Int(17))
        })
        .expect("UDP destroy");
    assert_eq!(get(udp, "orig.l4.sport"), Some(V::Int(u64::from(cport))));
    assert_eq!(get(udp, "orig.l4.dport"), Some(V::Int(u64::from(sport))));
    assert_eq!(get(udp, "orig.raw.pktcount"), Some(V::Int(1)));
    assert_eq!(get(udp, "orig.raw.pktlen"), Some(V::Int(33)));
    // Kernel timestamps on: DESTROY has both times.
    assert!(get(udp, "flow.start.sec").is_some() && get(udp, "flow.end.sec").is_some());
}

#[test]
fn hash_mode_loads_the_table_and_polling_purges() {
    if !enabled() {
        return;
    }
    let ns = Netns::new("hash");
    // A flow from before the start is loaded from the initial dump.
    ns.in_ns(traffic);
    let mut inp = open(&ns, &[]);
    assert_eq!(inp.table.as_ref().unwrap().len(), 2);
    // A stale entry (its DESTROY lost) is found gone by a resync.
    let ct = rulogd_netlink::conntrack::parse_conntrack(&super::tests::msg(&super::tests::udp4(1)))
        .expect("hand-made entry");
    let t = inp.table.as_mut().unwrap();
    assert_eq!(
        t.insert(FlowKey::of(&ct), Flow::new(&ct, (5, 6), 0)),
        Inserted::New
    );
    let mut em = Collect::new(&KEYS);
    ns.in_ns(|| inp.refresh(&mut em, true)).expect("resync");
    assert_eq!(em.out.len(), 1, "only the stale flow is purged");
    assert_eq!(get(&em.out[0], "flow.start.sec"), Some(V::Int(5)));
    assert!(get(&em.out[0], "flow.end.sec").is_some());
    // SIGUSR2: every flow logged as UPDATE with its counters, then zeroed.
    let mut em = Collect::new(&KEYS);
    inp.signal(Signal::Usr2, &mut em);
    assert_eq!(em.out.len(), 2);
    assert!(em.out.iter().all(|r| get(r, "ct.event") == Some(V::Int(2))));
    let udp = udp_record(&em);
    assert_eq!(get(udp, "orig.raw.pktcount"), Some(V::Int(1)));
    ns.flush();
    let mut em = Collect::new(&KEYS);
    drain(&mut inp, &mut em, 2);
    assert_eq!(em.out.len(), 2);
    let udp = udp_record(&em);
    assert_eq!(
        get(udp, "orig.raw.pktcount"),
        Some(V::Int(0)),
        "zeroed by SIGUSR2"
    );
    assert!(get(udp, "flow.start.sec").is_some());

    // Polling: flows appear in the table, and are logged once gone.
    let mut poll = open(&ns, &[("pollinterval", "1")]);
    assert_eq!(poll.fd(), None);
    let (cport, _) = ns.in_ns(traffic);
    let mut em = Collect::new(&KEYS);
    ns.in_ns(|| poll.tick(Instant::now(), &mut em));
    assert!(em.out.is_empty());
    assert_eq!(poll.table.as_ref().unwrap().len(), 2);
    ns.flush();
    ns.in_ns(|| poll.tick(Instant::now(), &mut em));
    assert_eq!(em.out.len(), 2);
    let udp = udp_record(&em);
    assert_eq!(get(udp, "orig.l4.sport"), Some(V::Int(u64::from(cport))));
    assert_eq!(get(udp, "orig.raw.pktcount"), Some(V::Int(1)));
    assert_eq!(get(udp, "ct.event"), Some(V::Int(4)));
}
