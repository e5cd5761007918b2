//! PCAP: logged packets are read back with tcpdump, compared record by
//! record with ulogd2's capture of the same packets, and both files stay
//! valid across logrotate's rename + SIGHUP (old file complete, new file with
//! its own header).
//!
//! Run: `cargo build --release -p rulogd && RULOGD_KERNEL_TESTS=1 cargo test
//! -p rulogd-tests --test pcap_output` (root needed).

use rulogd_tests::traffic::{icmp_echo, tcp_session, udp_send};
use rulogd_tests::{self as lab, daemon, Daemon, Kind, Netns};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CONF: &str = concat!(
    lab::conf_global!("log1:NFLOG,base1:BASE,pcap1:PCAP"),
    "\n\
[log1]
group={GROUP}

[pcap1]
file=\"{FILE}\"
sync=1
"
);

/// One pcap record.
#[derive(Debug, PartialEq, Eq)]
struct Pkt {
    sec: u32,
    usec: u32,
    caplen: u32,
    len: u32,
    data: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

/// The records of a pcap file, after checking its header (written in host
/// order: magic a1b2c3d4, version 2.4, snaplen 65536, link type 101) and
/// that it ends on a record boundary.
fn read_pcap(path: &Path) -> Vec<Pkt> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(b.len() >= 24, "{}: no header", path.display());
    assert_eq!(u32_at(&b, 0), 0xa1b2_c3d4, "magic");
    assert_eq!(b[4..8], [2, 0, 4, 0], "version 2.4");
    assert_eq!(u32_at(&b, 16), 65536, "snaplen");
    assert_eq!(u32_at(&b, 20), 101, "link type RAW");
    let mut out = Vec::new();
    let mut at = 24;
    while at < b.len() {
        assert!(at + 16 <= b.len(), "{}: torn record header", path.display());
        let caplen = u32_at(&b, at + 8);
        let end = at + 16 + caplen as usize;
        assert!(end <= b.len(), "{}: torn record", path.display());
        out.push(Pkt {
            sec: u32_at(&b, at),
            usec: u32_at(&b, at + 4),
            caplen,
            len: u32_at(&b, at + 12),
            data: b[at + 16..end].to_vec(),
        });
        at = end;
    }
    out
}

/// `tcpdump -r file -nn -tt` lines (tcpdump must accept the file).
fn tcpdump(path: &Path) -> Vec<String> {
    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(path)
        .args(["-nn", "-tt"])
        .output();
    lab::check_output(&format!("tcpdump -r {}", path.display()), out)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Lines saying `IP[6] <src>.<sport> > <dst>.<dport>: UDP, length <n>`.
fn udp_lines(lines: &[String], src: &str, sport: u16, dst: &str, dport: u16, n: usize) -> usize {
    let v6 = if src.contains(':') { "6" } else { "" };
    let want = format!(" IP{v6} {src}.{sport} > {dst}.{dport}: UDP, length {n}");
    lines.iter().filter(|l| l.ends_with(&want)).count()
}

fn same_packets(u: &[Pkt], r: &[Pkt], what: &str) {
    assert_eq!(
        u.len(),
        r.len(),
        "{what}: ulogd2 {} records, rulogd {}",
        u.len(),
        r.len()
    );
    for (i, (a, b)) in u.iter().zip(r).enumerate() {
        assert_eq!(
            (a.caplen, a.len, &a.data),
            (b.caplen, b.len, &b.data),
            "{what}: record {i} differs"
        );
        let t = |p: &Pkt| p.sec as f64 + p.usec as f64 / 1e6;
        assert!(
            (t(a) - t(b)).abs() <= 2.0,
            "{what}: record {i} times {a:?} {b:?}"
        );
    }
}

#[test]
fn packets_read_back_and_survive_rotation() {
    let (ns, dir) = lab::netns_or_skip!("pcap");
    let files: Vec<PathBuf> = ["u.pcap", "r.pcap"]
        .iter()
        .map(|f| dir.path().join(f))
        .collect();
    let groups = [14u16, 15];
    let mut daemons: Vec<Daemon> = [(Kind::Ulogd, "ulogd"), (Kind::Rulogd, "rulogd")]
        .iter()
        .enumerate()
        .map(|(i, (kind, name))| {
            let conf = lab::fill(
                CONF,
                &[
                    ("GROUP", groups[i].to_string()),
                    ("FILE", lab::path_str(&files[i])),
                ],
            );
            Daemon::start(
                &ns,
                *kind,
                dir.path(),
                name,
                &conf,
                &[groups[i]],
                &[&files[i]],
            )
        })
        .collect();
    ns.nft(
        "table inet t {\n chain in {\n  type filter hook input priority 0;\n\
         \x20 log group 14\n  log group 15\n  udp dport { 9998, 9999 } drop\n }\n}\n",
    )
    .unwrap();
    let drained = |ns: &Netns| {
        std::thread::sleep(Duration::from_millis(200));
        for g in groups {
            assert!(
                daemon::wait_drained(ns, g, Duration::from_secs(5)),
                "group {g}"
            );
        }
    };
    let (p4, p6) = ns.run_in_thread(|| {
        let p4 = udp_send("127.0.0.1:9999".parse().unwrap(), 3, 64).unwrap();
        let p6 = udp_send("[::1]:9999".parse().unwrap(), 3, 1200).unwrap();
        tcp_session("127.0.0.1:5201".parse().unwrap(), 3000, 100).unwrap();
        assert_eq!(icmp_echo("::1".parse().unwrap(), 9, 1, 2).unwrap(), 2);
        (p4, p6)
    });
    drained(&ns);
    // logrotate: rename, then SIGHUP; each daemon starts a new file.
    let rotated: Vec<PathBuf> = files.iter().map(|f| f.with_extension("pcap.1")).collect();
    for (i, d) in daemons.iter().enumerate() {
        std::fs::rename(&files[i], &rotated[i]).unwrap();
        d.signal(libc::SIGHUP);
    }
    let reopened = lab::wait_until(Duration::from_secs(5), || files.iter().all(|f| f.exists()));
    assert!(reopened, "no new file after SIGHUP");
    let p2 = ns.run_in_thread(|| udp_send("127.0.0.1:9998".parse().unwrap(), 2, 10).unwrap());
    drained(&ns);
    let _ = lab::wait_until(Duration::from_secs(2), || {
        read_pcap(&files[0]).len() == read_pcap(&files[1]).len()
    });
    for d in daemons.drain(..) {
        d.stop();
    }

    let old = [read_pcap(&rotated[0]), read_pcap(&rotated[1])];
    let new = [read_pcap(&files[0]), read_pcap(&files[1])];
    same_packets(&old[0], &old[1], "before SIGHUP");
    same_packets(&new[0], &new[1], "after SIGHUP");

    let lines = tcpdump(&rotated[1]);
    assert_eq!(lines.len(), old[1].len(), "{lines:#?}");
    assert_eq!(
        udp_lines(&lines, "127.0.0.1", p4, "127.0.0.1", 9999, 64),
        3,
        "{lines:#?}"
    );
    assert_eq!(
        udp_lines(&lines, "::1", p6, "::1", 9999, 1200),
        3,
        "{lines:#?}"
    );
    let tcp = lines
        .iter()
        .filter(|l| l.contains(".5201: Flags") || l.contains(".5201 >"))
        .count();
    assert!(tcp >= 6, "{tcp} TCP packets: {lines:#?}");
    let echo = lines.iter().filter(|l| l.contains("ICMP6, echo")).count();
    assert_eq!(echo, 4, "{lines:#?}");
    // Wire lengths: IPv4 total length, IPv6 payload length + 40.
    for p in &old[1] {
        let want = match p.data[0] >> 4 {
            4 => u16::from_be_bytes([p.data[2], p.data[3]]) as u32,
            6 => u16::from_be_bytes([p.data[4], p.data[5]]) as u32 + 40,
            v => panic!("IP version {v}"),
        };
        assert_eq!((p.len, p.caplen), (want, want));
    }

    let lines = tcpdump(&files[1]);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(
        udp_lines(&lines, "127.0.0.1", p2, "127.0.0.1", 9998, 10),
        2,
        "{lines:#?}"
    );
}
