//! CAPTURE reading capture files that tcpdump and dumpcap wrote of real
//! traffic in a namespace: CAPTURE → BASE → IP2STR → JSON gives one record
//! per packet, and each record's addresses, protocol, ports, ICMP type and
//! time equal what tshark reads from the same file. pcap in microseconds and
//! nanoseconds, Ethernet, Linux cooked (SLL2, `-i any`) and pcapng. At the end
//! of the file rulogd exits 0 by itself. Damaged files: a clear error with
//! the byte offset, and every packet before the damage written.

use rulogd_tests::traffic::{icmp_echo, udp_send};
use rulogd_tests::{self as lab, Netns, Record, TempDir};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const CONF: &str = concat!(
    lab::conf_global!("cap1:CAPTURE,base1:BASE,ip2str1:IP2STR,json1:JSON"),
    "\n\
[cap1]
file=\"{PCAP}\"

[json1]
file=\"{JSON}\"
"
);

/// Some pings and UDP datagrams over loopback, IPv4 and IPv6.
fn traffic(ns: &Netns) {
    ns.run_in_thread(|| {
        icmp_echo("127.0.0.1".parse().unwrap(), 7, 1, 3).unwrap();
        let v4: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        let v6: SocketAddr = "[::1]:9999".parse().unwrap();
        udp_send(v4, 4, 32).unwrap();
        udp_send(v6, 3, 40).unwrap();
    });
}

/// Runs rulogd on `pcap` until it exits; its exit code, records and log.
fn run(dir: &Path, tag: &str, pcap: &Path) -> (Option<i32>, Vec<Record>, String) {
    let f = rulogd_tests::daemon::run_capture(None, dir, tag, CONF, pcap, &[]);
    (f.code, f.records, f.log)
}

/// What tshark reads of each packet: time, addresses, protocol, ports, type.
fn tshark(pcap: &Path) -> Vec<Vec<String>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"])
        .args([
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "ipv6.src",
            "-e",
            "ip.dst",
        ])
        .args([
            "-e",
            "ipv6.dst",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "icmp.type",
        ])
        .args(["-e", "icmpv6.type"])
        .env("TZ", "UTC")
        .output();
    lab::check_output("tshark (Debian's tshark package)", out)
        .lines()
        .map(|l| l.split('|').map(String::from).collect())
        .collect()
}

/// Each record against tshark's line for the same packet.
fn compare(tag: &str, recs: &[Record], want: &[Vec<String>]) {
    assert_eq!(recs.len(), want.len(), "{tag}: records != packets");
    for (r, w) in recs.iter().zip(want) {
        let (sec, frac) = w[0].split_once('.').expect("epoch with a fraction");
        assert_eq!(
            r.req_u64("oob.time.sec").to_string(),
            sec,
            "{tag}: {}",
            r.line
        );
        assert_eq!(
            r.req_u64("oob.time.usec"),
            frac[..6].parse::<u64>().unwrap(),
            "{tag}: {}",
            r.line
        );
        let (src, dst) = if w[1].is_empty() {
            (&w[2], &w[4])
        } else {
            (&w[1], &w[3])
        };
        assert_eq!(r.req_str("src_ip"), src.as_str(), "{tag}: {}", r.line);
        assert_eq!(r.req_str("dest_ip"), dst.as_str(), "{tag}: {}", r.line);
        // An ICMP error quotes a UDP header, which tshark reads too.
        if !w[5].is_empty() && w[7].is_empty() && w[8].is_empty() {
            assert_eq!(r.req_u64("src_port").to_string(), w[5], "{tag}: {}", r.line);
            assert_eq!(
                r.req_u64("dest_port").to_string(),
                w[6],
                "{tag}: {}",
                r.line
            );
        }
        if !w[7].is_empty() {
            assert_eq!(
                r.req_u64("icmp.type").to_string(),
                w[7],
                "{tag}: {}",
                r.line
            );
        }
        if !w[8].is_empty() {
            assert_eq!(
                r.req_u64("icmpv6.type").to_string(),
                w[8],
                "{tag}: {}",
                r.line
            );
        }
    }
}

#[test]
fn capture_files_of_every_kind_become_one_record_per_packet() {
    let (ns, dir) = lab::netns_or_skip!("capture");
    let d = dir.path();
    let p = |n: &str| -> PathBuf { d.join(n) };
    let filter = "icmp or udp port 9999";
    let files: Vec<(&str, PathBuf, Vec<String>, &str)> = vec![
        (
            "eth-us",
            p("eth-us.pcap"),
            vec!["-i", "lo"].into_iter().map(String::from).collect(),
            "tcpdump",
        ),
        (
            "eth-ns",
            p("eth-ns.pcap"),
            ["-i", "lo", "--time-stamp-precision=nano"]
                .map(String::from)
                .to_vec(),
            "tcpdump",
        ),
        (
            "sll2",
            p("sll2.pcap"),
            ["-i", "any"].map(String::from).to_vec(),
            "tcpdump",
        ),
        (
            "pcapng",
            p("lo.pcapng"),
            ["-i", "lo"].map(String::from).to_vec(),
            "dumpcap",
        ),
    ];
    for (tag, path, args, program) in &files {
        let mut argv: Vec<String> = args.clone();
        match *program {
            "tcpdump" => {
                argv.extend(lab::capture::TCPDUMP_ARGS.map(String::from));
                argv.push("-w".into());
            }
            // The same snap length and ring room as tcpdump's (-B in MiB).
            _ => {
                argv.extend(["-q", "-s", "65600", "-B", "64", "-f", filter, "-w"].map(String::from))
            }
        }
        argv.push(lab::path_str(path));
        if *program == "tcpdump" {
            argv.push(filter.to_string());
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let c = lab::capture::start(&ns, program, &argv, d);
        // `-i any` binds its socket after saying it listens.
        std::thread::sleep(Duration::from_millis(300));
        traffic(&ns);
        lab::capture::stop(c);
        let want = tshark(path);
        assert!(
            want.len() >= 6,
            "{tag}: only {} packets captured",
            want.len()
        );
        let (code, recs, log) = run(d, tag, path);
        assert_eq!(
            code,
            Some(0),
            "{tag}: rulogd must exit 0 at the end of the file:\n{log}"
        );
        compare(tag, &recs, &want);
    }

    // A file cut inside its last packet: every packet before it, an error
    // with the offset, exit 0 (what was read is good).
    let whole = std::fs::read(&files[0].1).unwrap();
    let cut = p("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 5]).unwrap();
    let (code, recs, log) = run(d, "cut", &cut);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(recs.len(), tshark(&files[0].1).len() - 1);
    assert!(log.contains("truncated at byte "), "{log}");

    // Not a capture at all: the start fails and says why.
    let bad = p("bad.pcap");
    std::fs::write(&bad, b"this is not a capture file at all").unwrap();
    let (code, _, log) = run(d, "bad", &bad);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("bad.pcap: not a pcap or pcapng file: magic 0x74686973 at byte 0"),
        "{log}"
    );
}

const LIVE_CONF: &str = concat!(
    lab::conf_global!("cap1:CAPTURE,base1:BASE,ip2str1:IP2STR,json1:JSON"),
    "\n\
[cap1]
interface=\"rlv0\"
filter=\"icmp or udp port 9999\"

[json1]
file=\"{JSON}\"
sync=1
"
);

#[test]
fn live_capture_on_a_veth_gives_one_record_per_packet_with_its_addresses() {
    lab::skip_unless_root!();
    use rulogd_tests::netns::{MAIN_V4, MAIN_V6, PEER_V4, PEER_V6};
    let ns = Netns::with_peer("caplive").unwrap();
    let dir = TempDir::new("caplive");
    let json = dir.path().join("live.json");
    let conf = lab::fill(LIVE_CONF, &[("JSON", lab::path_str(&json))]);
    let mut d = rulogd_tests::Daemon::rulogd(&ns, dir.path(), &conf, &[], &[&json]);
    // A listener, so the datagrams cause no ICMP errors.
    let (v4, v6) = ns.run_in_thread(|| {
        (
            std::net::UdpSocket::bind(format!("{MAIN_V4}:9999")).unwrap(),
            std::net::UdpSocket::bind(format!("[{MAIN_V6}]:9999")).unwrap(),
        )
    });
    ns.run_in_peer(|| {
        assert_eq!(icmp_echo(MAIN_V4.parse().unwrap(), 9, 1, 5).unwrap(), 5);
        udp_send(format!("{MAIN_V4}:9999").parse().unwrap(), 7, 100).unwrap();
        udp_send(format!("[{MAIN_V6}]:9999").parse().unwrap(), 3, 60).unwrap();
    });
    d.wait_lines(&json, 20, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    d.stop();
    drop((v4, v6));
    let recs = lab::read_records(&json);
    assert_eq!(
        recs.len(),
        20,
        "5 echo requests, 5 replies, 7 + 3 datagrams"
    );
    let count = |src: &str, proto: u64| {
        recs.iter()
            .filter(|r| {
                r.req_str("src_ip") == src
                    && r.u64("ip.protocol").or(r.u64("ip6.nexthdr")) == Some(proto)
            })
            .count()
    };
    assert_eq!(count(PEER_V4, 1), 5);
    assert_eq!(count(MAIN_V4, 1), 5);
    assert_eq!(count(PEER_V4, 17), 7);
    assert_eq!(count(PEER_V6, 17), 3);
    for r in &recs {
        assert_eq!(r.req_u64("raw.mac_len"), 14, "{}", r.line);
        if r.has("udp.len") {
            assert_eq!(r.req_u64("dest_port"), 9999);
            let want = if r.req_str("src_ip") == PEER_V4 {
                108
            } else {
                68
            };
            assert_eq!(r.req_u64("udp.len"), want, "{}", r.line);
        }
    }
    let log = std::fs::read_to_string(dir.path().join("rulogd.log")).unwrap();
    let exit = log
        .lines()
        .find(|l| l.contains("exit: cap1 (CAPTURE):"))
        .expect("exit summary");
    assert!(
        exit.contains("received=20 ") && exit.contains("kernel_drops=0"),
        "{exit}"
    );
}
