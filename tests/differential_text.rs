//! LOGEMU, SYSLOG, OPRINT, GPRINT and XML: ulogd2 and rulogd side by side.
//!
//! As in differential_json.rs, every logging rule comes twice, logging the
//! same packet to two NFLOG groups per output: ulogd2 reads the first,
//! rulogd the second, with the same ulogd.conf apart from groups and paths.
//! Each output's records are turned into key/value records (a `name=value`
//! line, a field of a GPRINT line, a LOGEMU line's parts, an XML element)
//! and compared pairwise within each prefix with the JSON tests' comparer:
//! times within 2 s, sequence numbers ignored, key order compared.
//!
//! Run: `cargo build --release -p rulogd && RULOGD_KERNEL_TESTS=1 cargo test
//! -p rulogd-tests --test differential_text` (root needed).
//! `RULOGD_BIN=/usr/sbin/ulogd` compares ulogd with itself.

use rulogd_tests::traffic::{
    icmp_echo, over_veth, tcp_client, tcp_listen, tcp_serve_once, udp_send,
};
use rulogd_tests::{self as lab, daemon, netns, Daemon, Kind, Netns, Record, TempDir};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Keys whose values differ by design (docs/COMPATIBILITY.md, BASE):
/// ulogd2 2.0.8 prints 0 for `tcp.offset`/`tcp.reserved`, never sets `ahesp.spi`.
const ALLOWED_DIFFERENCES: &[&str] = &["tcp.offset", "tcp.reserved", "ahesp.spi"];

/// IP-address keys (type IPADDR), which OPRINT and GPRINT print as addresses.
const ADDR_KEYS: &[&str] = &[
    "ip.saddr",
    "ip.daddr",
    "icmp.gateway",
    "arp.saddr",
    "arp.daddr",
];

/// ulogd's libnetfilter_log buffer: longer XML elements are not written.
const XML_LIMIT: usize = 4096;

const HEAD: &str = "[global]\nlogfile=\"{LOGFILE}\"\nloglevel=3\n";
const FILTERS: &str = "BASE,IFINDEX,IP2STR";

/// A config with one stack per `(id, PLUGIN, options)` output, the k-th
/// fed by NFLOG group `groups[k]` (through BASE, IFINDEX, IP2STR and, for
/// `print` consumers, PRINTPKT; XML takes NFLOG directly).
fn conf(groups: &[u16], outputs: &[(&str, &str, String)]) -> String {
    let mut c = HEAD.to_string();
    for (k, (id, plugin, _)) in outputs.iter().enumerate() {
        let filters = match *plugin {
            "XML" => String::new(),
            "LOGEMU" | "SYSLOG" => format!(",{}", filters_of(k, &format!("{FILTERS},PRINTPKT"))),
            _ => format!(",{}", filters_of(k, FILTERS)),
        };
        c += &format!("stack=log{k}:NFLOG{filters},{id}:{plugin}\n");
    }
    for (k, (id, _, opts)) in outputs.iter().enumerate() {
        c += &format!(
            "\n[log{k}]\ngroup={}\nnetlink_socket_buffer_size=8388608\n\
             netlink_socket_buffer_maxsize=16777216\n\n[{id}]\n{opts}\n",
            groups[k]
        );
    }
    c
}

/// `BASE,IFINDEX` → `b0:BASE,i0:IFINDEX` for stack `k` (own instances, so
/// ulogd builds each stack independently).
fn filters_of(k: usize, list: &str) -> String {
    list.split(',')
        .map(|p| format!("{}{k}:{p}", p.to_lowercase()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The two daemons and their output directories (`u/`, `r/`).
struct Pair {
    dir: TempDir,
    daemons: Vec<Daemon>,
    out: [PathBuf; 2],
    groups: Vec<u16>,
}

impl Pair {
    /// ulogd2 on groups `g0, g0+2, …`, rulogd on `g0+1, g0+3, …`; `outputs(dir)`
    /// gives each output's section for one daemon's directory.
    fn start(
        ns: &Netns,
        tag: &str,
        g0: u16,
        outputs: impl Fn(&Path) -> Vec<(&'static str, &'static str, String)>,
    ) -> Pair {
        let dir = TempDir::new(tag);
        let out = [dir.path().join("u"), dir.path().join("r")];
        let mut daemons = Vec::new();
        let mut all = Vec::new();
        for (side, (kind, name)) in [(Kind::Ulogd, "ulogd"), (Kind::Rulogd, "rulogd")]
            .into_iter()
            .enumerate()
        {
            std::fs::create_dir_all(&out[side]).unwrap();
            let o = outputs(&out[side]);
            let groups: Vec<u16> = (0..o.len() as u16)
                .map(|k| g0 + 2 * k + side as u16)
                .collect();
            let c = conf(&groups, &o);
            daemons.push(Daemon::start(ns, kind, dir.path(), name, &c, &groups, &[]));
            all.extend(groups);
        }
        Pair {
            dir,
            daemons,
            out,
            groups: all,
        }
    }

    /// Waits until both have read everything and their `file`s have as many
    /// lines, then stops them (SIGTERM closes XML documents).
    fn finish(mut self, ns: &Netns, files: &[&str]) -> (TempDir, [PathBuf; 2]) {
        daemon::settle(ns, &self.groups, || {
            files.iter().all(|f| {
                lab::count_lines(&self.out[0].join(f)) == lab::count_lines(&self.out[1].join(f))
            })
        });
        for d in self.daemons.drain(..) {
            d.stop();
        }
        (self.dir, self.out)
    }
}

/// A key/value record for the JSON comparer; numbers become numbers (so
/// `oob.time.sec` gets the time tolerance) and a repeated name gets `#n`.
fn record(pairs: Vec<(String, String)>, line: String) -> Record {
    let mut fields: Vec<(String, Value)> = Vec::new();
    for (k, v) in pairs {
        let n = fields
            .iter()
            .filter(|(f, _)| f.split('#').next() == Some(&k))
            .count();
        let name = if n == 0 { k } else { format!("{k}#{}", n + 1) };
        let val = match v.parse::<u64>() {
            Ok(n) if !v.starts_with('0') || v == "0" => Value::from(n),
            _ => Value::String(v),
        };
        fields.push((name, val));
    }
    Record { fields, line }
}

fn compare(what: &str, u: &[Record], r: &[Record], dir: &TempDir) {
    assert!(!u.is_empty(), "{what}: ulogd2 wrote nothing");
    if let Err(report) = lab::compare_streams(u, r, ALLOWED_DIFFERENCES, ("ulogd2", "rulogd")) {
        panic!(
            "{what}: ulogd2 and rulogd differ ({} vs {} records)\n{report}\nfiles kept in {}",
            u.len(),
            r.len(),
            dir.path().display()
        );
    }
}

/// ulogd 2.0.8's form of an address rulogd prints correctly (a documented
/// fix): OPRINT byte-reverses IPv4 and prints IPv6 as the reversed dotted
/// quad of its first four bytes; GPRINT prints that quad in order.
fn as_ulogd208(v: &str, reversed: bool) -> String {
    let b: Vec<u8> = match v.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.octets().to_vec(),
        Ok(IpAddr::V6(a)) => a.octets()[..4].to_vec(),
        Err(_) => return v.to_string(),
    };
    let mut q: Vec<String> = b[..4].iter().map(u8::to_string).collect();
    if reversed {
        q.reverse();
    }
    q.join(".")
}

/// Applies [`as_ulogd208`] to rulogd's address keys, after checking each
/// against its IP2STR text in the same record.
/// (In oracle mode, where "rulogd" is ulogd too, nothing is done.)
fn addrs_as_ulogd208(pairs: &mut [(String, String)], reversed: bool) {
    if lab::daemon::oracle_mode() {
        return;
    }
    let text: Vec<(String, String)> = pairs.to_vec();
    for (k, v) in pairs.iter_mut() {
        if !ADDR_KEYS.contains(&k.as_str()) {
            continue;
        }
        if let Some((_, s)) = text.iter().find(|(n, _)| *n == format!("{k}.str")) {
            assert_eq!(v, s, "rulogd {k} differs from {k}.str");
        }
        if reversed || v.contains(':') {
            *v = as_ulogd208(v, reversed);
        }
    }
}

fn oprint_records(path: &Path, rulogd: bool) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut chunks = text.split("===>PACKET BOUNDARY\n");
    assert_eq!(
        chunks.next(),
        Some(""),
        "{} starts with a boundary",
        path.display()
    );
    chunks
        .map(|c| {
            let mut pairs: Vec<(String, String)> = c
                .lines()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{l:?}"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            if rulogd {
                addrs_as_ulogd208(&mut pairs, true);
            }
            record(pairs, c.replace('\n', " | "))
        })
        .collect()
}

fn gprint_records(path: &Path, rulogd: bool) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut pairs: Vec<(String, String)> = l
                .split(',')
                .map(|f| {
                    let (k, v) = f.split_once('=').unwrap_or_else(|| panic!("{l:?}"));
                    (k.to_string(), v.to_string())
                })
                .collect();
            // YYYY/MM/DD-HH:MM:SS → the JSON form the comparer reads.
            let (k, ts) = &mut pairs[0];
            assert_eq!(k, "timestamp", "{l}");
            assert_eq!(ts.len(), 19, "{l}");
            *ts = ts
                .replacen('/', "-", 2)
                .replacen('-', "T", 3)
                .replacen('T', "-", 2);
            if rulogd {
                addrs_as_ulogd208(&mut pairs, false);
            }
            record(pairs, l.to_string())
        })
        .collect()
}

/// Seconds of the day of a `Mmm dd hh:mm:ss` stamp.
fn day_secs(stamp: &str) -> u64 {
    let t: Vec<u64> = stamp[7..]
        .split(':')
        .map(|x| x.parse().expect("hh:mm:ss"))
        .collect();
    t[0] * 3600 + t[1] * 60 + t[2]
}

/// LOGEMU lines: the stamp (as a time), the host, the print text.
fn logemu_records(path: &Path) -> Vec<Record> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let (host, print) = l[16..].split_once(' ').expect("host");
            let pfx = print.split(' ').next().unwrap_or("").to_string();
            let pairs = vec![
                ("oob.time.sec".into(), day_secs(&l[..15]).to_string()),
                ("month.day".into(), l[..6].to_string()),
                ("host".into(), host.to_string()),
                ("oob.prefix".into(), pfx),
                ("print".into(), print.to_string()),
            ];
            record(pairs, l.to_string())
        })
        .collect()
}

fn mixed_traffic(ns: &Netns, port: u16, veth: bool) {
    ns.run_in_thread(|| {
        udp_send("127.0.0.1:9999".parse().unwrap(), 3, 64).unwrap();
        udp_send("[::1]:9999".parse().unwrap(), 3, 64).unwrap();
        let l = tcp_listen(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        let srv = tcp_serve_once(l, 300);
        tcp_client(SocketAddr::from(([127, 0, 0, 1], port)), 1000).unwrap();
        srv.join().unwrap().unwrap();
        assert_eq!(
            icmp_echo("127.0.0.1".parse().unwrap(), 0x77, 1, 2).unwrap(),
            2
        );
        assert_eq!(icmp_echo("::1".parse().unwrap(), 0x77, 1, 2).unwrap(), 2);
    });
    if !veth {
        return;
    }
    over_veth(ns, port, (500, 200));
}

/// Input and output rules logging to groups `g0..g0+n` in pairs, with
/// prefixes IN and OUT.
fn rules(ns: &Netns, g0: u16, n: u16) {
    let log = |p: &str| -> String {
        (0..n)
            .map(|i| format!("  log prefix \"{p}\" group {}\n", g0 + i))
            .collect()
    };
    ns.nft(&format!(
        "table inet t {{\n chain in {{\n  type filter hook input priority 0;\n{q}{}  udp dport 9999 drop\n }}\n\
         \x20chain out {{\n  type filter hook output priority 0;\n{q}{} }}\n}}\n",
        log("IN"),
        log("OUT"),
        q = lab::QUIET_MULTICAST
    ))
    .unwrap();
}

fn file_opts(dir: &Path, name: &str, extra: &str) -> String {
    format!(
        "file=\"{}\"\nsync=1\n{extra}",
        lab::path_str(&dir.join(name))
    )
}

/// Whether the rulogd under test has PRINTPKT (LOGEMU and SYSLOG need it).
fn has_printpkt() -> bool {
    let ok = std::process::Command::new(lab::rulogd_bin())
        .args(["-i", "PRINTPKT"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: rulogd has no PRINTPKT yet");
    }
    ok
}

/// OPRINT and GPRINT (with `timestamp=1`) over loopback and a veth pair.
#[test]
fn oprint_and_gprint() {
    lab::skip_unless_root!();
    let ns = Netns::with_peer("tprint").unwrap();
    let pair = Pair::start(&ns, "tprint", 60, |d| {
        vec![
            ("op1", "OPRINT", file_opts(d, "oprint.log", "")),
            ("gp1", "GPRINT", file_opts(d, "gprint.log", "timestamp=1\n")),
        ]
    });
    rules(&ns, 60, 4);
    mixed_traffic(&ns, 5101, true);
    let (dir, out) = pair.finish(&ns, &["gprint.log"]);
    let u = oprint_records(&out[0].join("oprint.log"), false);
    let r = oprint_records(&out[1].join("oprint.log"), true);
    compare("OPRINT", &u, &r, &dir);
    assert!(u.len() > 30, "only {} records", u.len());
    let u = gprint_records(&out[0].join("gprint.log"), false);
    let r = gprint_records(&out[1].join("gprint.log"), true);
    compare("GPRINT", &u, &r, &dir);
    assert!(u.iter().any(|x| x.str("oob.in") == Some(netns::VETH_MAIN)));
}

/// PRINTPKT → LOGEMU: the stamp (packet time, within 2 s), host and line.
#[test]
fn logemu() {
    if !lab::require_root() || !has_printpkt() {
        return;
    }
    let ns = Netns::with_peer("temu").unwrap();
    let pair = Pair::start(&ns, "temu", 70, |d| {
        vec![("emu1", "LOGEMU", file_opts(d, "emu.log", ""))]
    });
    rules(&ns, 70, 2);
    mixed_traffic(&ns, 5102, true);
    let (dir, out) = pair.finish(&ns, &["emu.log"]);
    let u = logemu_records(&out[0].join("emu.log"));
    let r = logemu_records(&out[1].join("emu.log"));
    compare("LOGEMU", &u, &r, &dir);
    assert!(u.len() > 30, "only {} lines", u.len());
}

/// The `<log>` elements without `<when>` (the time of writing), by prefix;
/// rulogd's elements ulogd cannot write (4 KiB and more) are counted apart.
fn xml_records(dir: &Path, limit: bool) -> (Vec<Record>, usize) {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("ulogd-pkt-") && name.len() == 29, "{name}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..2],
        ["<?xml version=\"1.0\" encoding=\"utf-8\"?>", "<packet>"]
    );
    assert_eq!(lines.last(), Some(&"</packet>"), "{name} not closed");
    let mut long = 0;
    let mut recs = Vec::new();
    for l in &lines[2..lines.len() - 1] {
        if limit && l.len() >= XML_LIMIT {
            long += 1;
            continue;
        }
        let a = l.find("<when>").expect("when");
        let b = l.find("</when>").expect("/when") + 7;
        let log = format!("{}{}", &l[..a], &l[b..]);
        let pfx = log
            .split_once("<prefix>")
            .and_then(|(_, x)| x.split_once("</prefix>"))
            .map_or("", |(p, _)| p);
        let pairs = vec![
            ("oob.prefix".into(), pfx.into()),
            ("log".into(), log.clone()),
        ];
        recs.push(record(pairs, log));
    }
    (recs, long)
}

/// NFLOG → XML: the document frame and every `<log>` element.
#[test]
fn xml() {
    lab::skip_unless_root!();
    let ns = Netns::with_peer("txml").unwrap();
    let pair = Pair::start(&ns, "txml", 80, |d| {
        vec![(
            "xml1",
            "XML",
            format!("directory=\"{}\"\nsync=1\n", lab::path_str(d)),
        )]
    });
    rules(&ns, 80, 2);
    mixed_traffic(&ns, 5103, true);
    // A 3000-byte datagram: too long for ulogd's buffer, written by rulogd.
    ns.run_in_thread(|| udp_send("127.0.0.1:9999".parse().unwrap(), 1, 3000).unwrap());
    let (dir, out) = pair.finish(&ns, &[]);
    let (u, _) = xml_records(&out[0], false);
    let (r, long) = xml_records(&out[1], !lab::daemon::oracle_mode());
    compare("XML", &u, &r, &dir);
    assert!(u.len() > 30, "only {} elements", u.len());
    if !lab::daemon::oracle_mode() {
        assert!(long >= 2, "{long} long elements");
    }
}

/// Starts a daemon in its own mount namespace whose /dev is a fresh tmpfs
/// with `log` pointing at `sock`, so its syslog goes to the test.
fn start_with_devlog(
    ns: &Netns,
    kind: Kind,
    dir: &Path,
    name: &str,
    conf: &str,
    sock: &Path,
) -> Child {
    let conf_path = dir.join(format!("{name}.conf"));
    let log = dir.join(format!("{name}.log"));
    let conf = lab::fill(conf, &[("LOGFILE", lab::path_str(&log))]);
    std::fs::write(&conf_path, conf).unwrap();
    let script = "mount -t tmpfs none /dev && ln -s \"$1\" /dev/log && exec \"$2\" -c \"$3\" -v";
    ns.command("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(sock)
        .arg(kind.bin())
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads datagrams from `sock` on a thread until `stop` is set: the
/// senders block once 10 are queued (net.unix.max_dgram_qlen).
fn collect(sock: UnixDatagram, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(_) if stop.load(Ordering::Relaxed) => return got,
                Err(_) => {}
            }
        }
    })
}

/// Datagrams as records: PRI, ident (without the pid), prefix and text; the
/// stamp must be well formed.
fn syslog_records(datagrams: &[Vec<u8>]) -> Vec<Record> {
    let mut recs = Vec::new();
    for dg in datagrams {
        let d = String::from_utf8_lossy(dg).into_owned();
        let (pri, rest) = d[1..].split_once('>').expect("<PRI>");
        let stamp = &rest[..15];
        assert_eq!(&rest[15..16], " ", "{d:?}");
        let (tag, msg) = rest[16..].split_once(": ").expect("tag");
        let ident = tag.split('[').next().unwrap_or(tag);
        assert!(tag.ends_with(']'), "{d:?}");
        // Each stack (PRI) is its own group pair, ordered only within itself.
        let pfx = format!("{pri} {}", msg.split(' ').next().unwrap_or(""));
        let pairs = vec![
            ("pri".into(), pri.into()),
            ("oob.time.sec".into(), day_secs(stamp).to_string()),
            ("ident".into(), ident.into()),
            ("oob.prefix".into(), pfx),
            ("msg".into(), msg.into()),
        ];
        recs.push(record(pairs, d.clone()));
    }
    recs
}

/// PRINTPKT → SYSLOG with `facility=LOG_LOCAL5`/`LOG_INFO` and the defaults,
/// each daemon writing to its own /dev/log (a socket of this test).
#[test]
fn syslog() {
    if !lab::require_root() || !has_printpkt() {
        return;
    }
    let ns = Netns::new("tsys").unwrap();
    let dir = TempDir::new("tsys");
    let mut children = Vec::new();
    let mut readers = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let mut groups = Vec::new();
    for (side, (kind, name)) in [(Kind::Ulogd, "ulogd"), (Kind::Rulogd, "rulogd")]
        .into_iter()
        .enumerate()
    {
        let path = dir.path().join(format!("{name}.sock"));
        readers.push(collect(UnixDatagram::bind(&path).unwrap(), stop.clone()));
        let g = [90 + side as u16, 92 + side as u16];
        let c = conf(
            &g,
            &[
                (
                    "sys1",
                    "SYSLOG",
                    "facility=LOG_LOCAL5\nlevel=LOG_INFO\n".into(),
                ),
                ("sys2", "SYSLOG", String::new()),
            ],
        );
        children.push(start_with_devlog(&ns, kind, dir.path(), name, &c, &path));
        groups.extend(g);
    }
    let up = lab::wait_until(Duration::from_secs(20), || {
        groups.iter().all(|&g| ns.nflog_instance(g).is_some())
    });
    assert!(up, "daemons did not bind {groups:?}");
    // Packets are logged only once both daemons listen, so both see all.
    rules(&ns, 90, 4);
    mixed_traffic(&ns, 5104, false);
    std::thread::sleep(Duration::from_millis(200));
    for &g in &groups {
        assert!(
            daemon::wait_drained(&ns, g, Duration::from_secs(5)),
            "group {g}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for c in &mut children {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let _ = c.wait();
    }
    stop.store(true, Ordering::Relaxed);
    let got: Vec<Vec<Vec<u8>>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let u = syslog_records(&got[0]);
    let r = syslog_records(&got[1]);
    compare("SYSLOG", &u, &r, &dir);
    assert!(u.len() > 30, "only {} messages", u.len());
    let pris: std::collections::BTreeSet<u64> = u.iter().filter_map(|x| x.u64("pri")).collect();
    // local5.info and daemon.notice (LOG_KERN means the openlog facility).
    assert_eq!(pris.into_iter().collect::<Vec<_>>(), [29, 174]);
    assert!(u.iter().all(|x| x.str("ident") == Some("ulogd")));
}
